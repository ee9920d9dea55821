"""Decoding: videos and frame folders into RGB uint8 frames at the protocol frame rate, audio into
16 kHz mono float32, and pairing of generated with ground-truth inputs.

Frames are always RGB, uint8, shaped (n, H, W, 3): the frames ``ffmpeg -i IN -r 25 -f rawvideo
-pix_fmt rgb24 -`` writes. Videos are decoded once, streamed in chunks, turned upright by their display
matrix (rotation and flips, as the command line's autorotate does), converted to RGB by swscale with the
command line's bicubic flags (``DisplayConverter``), and resampled to the protocol frame rate by
timestamp exactly as ``-r 25`` does (``FpsResampler``): frames are duplicated or dropped, never
blended. Audio goes through libswresample (PyAV), the same resampler ffmpeg's ``-ar 16000 -ac 1`` uses.
The decoding catalogue in the tests checks both against ffmpeg's command line (docs: evaluation).

A frame folder (``000001.jpg``, ``000002.jpg``… or ``0.jpg``, ``1.jpg``…, the Wav2Lip preprocessed
layout) is taken to be at the protocol frame rate already; its audio is ``audio.wav`` beside the frames.
"""
from __future__ import annotations

import atexit
import io
import math
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np
from PIL import Image

from .errors import MediaError

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".avi", ".mpg", ".mpeg", ".mov", ".mkv", ".webm", ".flv", ".wmv", ".ogv", ".3gp",
                    ".ts", ".mts", ".m2ts")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FOLDER_AUDIO_NAME = "audio.wav"


# --------------------------------------------------------------------------------------------------
# Frame-rate conversion


class FpsResampler:
    """Streaming constant-frame-rate conversion by timestamp, as ffmpeg's ``-r 25`` output option does
    it (the CLI's CFR video sync; checked frame by frame against ffmpeg 9 on a variable-rate clip).

    Each input frame takes the next output slot; with ``delta0`` its drift from that slot and
    ``delta = delta0 + duration`` (both in output frames), a frame with ``delta < -1.1`` is dropped
    and one with ``delta > 1.1`` is repeated ``round(delta)`` times (the first ``round(delta0 - 0.6)``
    of them showing the previous frame when the frame comes late). Rounding is half to even on float32,
    as C's ``llrintf``. Times count from ``t0``, the input's start time (ffmpeg subtracts the container's
    start time, the earliest of its streams); without it the first frame's time is used.
    """

    def __init__(self, fps: Fraction, t0: Fraction | None = None):
        self.fps = Fraction(fps)
        self._t0 = t0
        self._next = 0  # index of the next output slot
        self._last = None
        self._late = [0, 0, 0]  # repeats of the previous frame, last three decisions

    def push(self, t: Fraction, duration: Fraction, frame) -> list:
        """Output frames for an input frame shown at ``t`` for ``duration`` seconds."""
        if self._t0 is None:
            self._t0 = t
        delta0 = float((t - self._t0) * self.fps) - self._next
        delta = delta0 + float(duration * self.fps)
        if delta0 < 0 < delta:
            delta0 = 0.0  # a frame slightly early is clipped to its slot
        repeats, late = 1, 0
        if delta < -1.1:
            repeats = 0
        elif delta > 1.1:
            repeats = round(float(np.float32(delta)))
            if delta0 > 1.1:
                late = round(float(np.float32(delta0 - 0.6)))
        self._late = [late] + self._late[:2]
        out = [self._last if i < late and self._last is not None else frame for i in range(repeats)]
        self._next += repeats
        self._last = frame
        return out

    def finish(self) -> list:
        """At the end ffmpeg repeats the last frame by the median of the last three late counts."""
        if self._last is None:
            return []
        out = [self._last] * int(np.median(self._late))
        self._last = None
        return out


# --------------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class MediaInfo:
    """What a quick look at an input tells: kind, frame size as stored (the frames ``read_frames``
    gives are upright: a quarter-turn display matrix swaps width and height), native frame rate, audio
    present."""

    path: Path
    kind: str  # "video" or "frames"
    width: int
    height: int
    native_fps: float | None
    has_audio: bool


def open_container(path: Path):
    if not path.exists():
        raise MediaError(path, "file not found")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as exc:
        raise MediaError(path, f"not a readable video ({_ffmpeg_reason(exc)})") from None


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":", 1)[0].strip() if ": '" in text else text.strip()


def _frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if all(p.stem.isdigit() for p in files):
        return sorted(files, key=lambda p: int(p.stem))
    return sorted(files)


def probe(path: str | os.PathLike, limits: DecodeLimits | None = None) -> MediaInfo:
    """Kind, size, native fps and audio presence of a video file or frame folder, without decoding."""
    return isolated_call(limits, _probe, Path(path))


def _probe(path: Path) -> MediaInfo:
    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise MediaError(path, "frame folder holds no images (.jpg/.png/.bmp)")
        first = _read_image(files[0])
        return MediaInfo(path, "frames", first.shape[1], first.shape[0], None,
                         (path / FOLDER_AUDIO_NAME).is_file())
    with open_container(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        vs = container.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate
        return MediaInfo(path, "video", vs.codec_context.width, vs.codec_context.height,
                         float(rate) if rate else None, bool(container.streams.audio))


def estimate_frame_count(path: str | os.PathLike, fps: float | None = 25,
                         limits: DecodeLimits | None = None) -> int | None:
    """Frames an input will have at ``fps``, from its container duration (images in a frame folder);
    None when the container does not say. Used to spread a frame subsample evenly before decoding."""
    return isolated_call(limits, _estimate_frame_count, Path(path), fps)


def _estimate_frame_count(path: Path, fps: float | None) -> int | None:
    if path.is_dir():
        return len(_frame_files(path))
    with open_container(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        vs = container.streams.video[0]
        if vs.duration and vs.time_base:
            seconds = float(vs.duration * vs.time_base)
        elif container.duration:
            seconds = container.duration / av.time_base
        else:
            return vs.frames or None
        rate = fps or float(vs.average_rate or 0) or None
        return max(1, round(seconds * rate)) if rate else (vs.frames or None)


def input_signature(path: str | os.PathLike) -> str:
    """Size and modification time of a file, or of a frame folder's images; changes when it is replaced."""
    path = Path(path)
    if path.is_dir():
        files = [p.stat() for p in path.iterdir() if p.is_file()]
        return f"dir:{len(files)}:{sum(s.st_size for s in files)}:{max((s.st_mtime_ns for s in files), default=0)}"
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise MediaError(path, f"{im.mode} frames (16-bit or float) are not supported; "
                                       "save frames as 8-bit RGB")
            return np.asarray(im.convert("RGB"))
    except MediaError:
        raise
    except Exception as exc:  # PIL raises many types for broken files
        raise MediaError(path, f"not a readable image ({exc})") from None


def _chunked(frames: Iterator[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    buf: list[np.ndarray] = []
    for frame in frames:
        buf.append(frame)
        if len(buf) == chunk:
            yield np.stack(buf)
            buf = []
    if buf:
        yield np.stack(buf)


def display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    """The frame's display matrix (9 int32 in 16.16 / 2.30 fixed point), or None."""
    for data in frame.side_data:
        if data.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            return tuple(np.frombuffer(bytes(data), "<i4").tolist())
    return None


def upright_filters(matrix: tuple[int, ...] | None) -> list[tuple[str, str | None]]:
    """The filters ffmpeg's command line inserts to show a frame upright (its autorotate): the angle
    is libavutil's ``av_display_rotation_get`` rounded and folded into [0, 360); quarter turns become
    ``transpose`` (with a flip where the matrix mirrors), a half turn ``hflip``/``vflip`` by the
    matrix's signs, any other angle ``rotate``."""
    if matrix is None:
        return []
    m = [v / 65536.0 for v in matrix]
    scale_x, scale_y = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    theta = 0.0
    if scale_x and scale_y:  # -round(av_display_rotation_get), C's round: half away from zero
        angle = math.degrees(math.atan2(m[1] / scale_y, m[0] / scale_x))
        theta = math.copysign(math.floor(abs(angle) + 0.5), angle)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        return [("transpose", "cclock_flip" if matrix[3] > 0 else "clock")]
    if abs(theta - 180) < 1:
        return [f for f, cond in ((("hflip", None), matrix[0] < 0), (("vflip", None), matrix[4] < 0)) if cond]
    if abs(theta - 270) < 1:
        return [("transpose", "clock_flip" if matrix[3] < 0 else "cclock")]
    if abs(theta) > 1:
        return [("rotate", f"{theta:f}*PI/180")]
    return [("vflip", None)] if matrix[4] < 0 else []


class DisplayConverter:
    """Decoded frames as ffmpeg's command line hands them to its encoder: turned upright by the display
    matrix, then converted to ``pix_fmt`` by swscale with the command line's default flags (bicubic;
    PyAV's own conversion uses bilinear, which moves 10-bit, odd-sized and interlaced frames by up to
    20 levels). One libavfilter graph per run of frames of one size, format and matrix."""

    def __init__(self, pix_fmt: str = "rgb24"):
        self.pix_fmt = pix_fmt
        self._graph = None
        self._key = None

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        matrix = display_matrix(frame)
        key = (frame.width, frame.height, frame.format.name, matrix)
        if key != self._key:
            self._graph, self._key = self._build(frame, matrix), key
        pts, frame.pts = frame.pts, None  # the graph needs no timing; the frame-rate conversion has it
        try:
            self._graph.push(frame)
            return self._graph.pull()
        finally:
            frame.pts = pts

    def _build(self, frame: av.VideoFrame, matrix) -> av.filter.Graph:
        graph = av.filter.Graph()
        last = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                time_base=Fraction(1, 1000))
        steps = [*upright_filters(matrix), ("scale", "flags=bicubic"), ("format", self.pix_fmt)]
        for name, args in steps:
            node = graph.add(name, args) if args else graph.add(name)
            last.link_to(node)
            last = node
        last.link_to(graph.add("buffersink"))
        graph.configure()
        return graph


def jpeg_format(name: str) -> str:
    """The full-range format ffmpeg's command line hands the MJPEG encoder for decoded frames of format
    ``name``: the same chroma subsampling (4:2:0, 4:2:2, 4:4:4; RGB as 4:4:4, grey as 4:2:0)."""
    return "yuvj" + chroma_subsampling(name, grey="420") + "p"


def chroma_subsampling(name: str, grey: str = "") -> str:
    """A pixel format's chroma subsampling: "420", "422" or "444" (RGB: "444"; ``grey`` for one without
    chroma)."""
    source = av.VideoFormat(name, 16, 16)
    if source.is_rgb:
        return "444"
    components = source.components
    if len(components) < 3:
        return grey
    width, height = components[1].width, components[1].height
    return "420" if (width, height) == (8, 8) else "422" if width == 8 else "444"


class JpegRoundTrip:
    """Frames as the peer scripts read them after ``ffmpeg -i VIDEO -threads 1 -f image2 %06d.jpg``
    (syncnet_python's ``SyncNetInstance.evaluate``, Wav2Lip's and TalkLip's LSE scripts) and
    ``cv2.imread``: the same libavcodec MJPEG encoder and settings as that command (its defaults: 200 kb/s
    rate control, qscale 2-31, one thread; full-range 4:2:0 YUV from the decoded frame, upright), fed the
    frames of the constant-rate output in order, repeats included (the rate control depends on the
    sequence); the JPEG bytes decoded by OpenCV. The bytes equal ffmpeg 9's files but for the encoder's
    version string in the JPEG comment.

    Called on ``av.VideoFrame``s (``iter_frames(convert=...)``) or RGB arrays (``from_rgb``: crops made
    from decoded frames); returns BGR uint8, as ``cv2.imread``. ``sample_aspect_ratio``: the input's, which
    the command passes on to the encoder (``iter_frames`` sets it from the stream): a known one adds a JFIF
    header, whose bits the rate control counts (without it, a frame now and then gets another quantiser).
    """
    def __init__(self, rate: Fraction = Fraction(25), sample_aspect_ratio: Fraction | None = None):
        self.rate = Fraction(rate)
        self.sample_aspect_ratio = sample_aspect_ratio
        self.pix_fmt: str | None = None  # the JPEG's, from the first frame's (``jpeg_format``) unless set
        self._display: DisplayConverter | None = None  # upright, converted as the command line does
        self._encoder = None
        self._index = 0

    def open_stream(self, stream) -> None:
        """The decoded stream's sample aspect ratio, as the command line reads it (0 or none: unknown)."""
        sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        self.sample_aspect_ratio = Fraction(sar) if sar else None

    def _open(self, width: int, height: int) -> None:
        enc = av.CodecContext.create("mjpeg", "w")
        enc.width, enc.height = width, height
        enc.pix_fmt = self.pix_fmt
        enc.time_base = 1 / self.rate
        enc.framerate = self.rate
        enc.bit_rate = 200_000  # libavcodec's default, which the reference's command keeps
        enc.thread_count = 1  # the command's -threads 1
        if self.sample_aspect_ratio:
            enc.sample_aspect_ratio = self.sample_aspect_ratio
        self._encoder = enc

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if self._display is None:
            self.pix_fmt = self.pix_fmt or jpeg_format(frame.format.name)
            self._display = DisplayConverter(self.pix_fmt)
        yuv = self._display(frame)
        if self._encoder is None:
            self._open(yuv.width, yuv.height)
        yuv.pts, yuv.time_base = self._index, self._encoder.time_base
        yuv.pict_type = av.video.frame.PictureType.NONE
        self._index += 1
        packets = self._encoder.encode(yuv)
        if len(packets) != 1:
            raise RuntimeError(f"MJPEG encoder returned {len(packets)} packets for one frame")
        return cv2.imdecode(np.frombuffer(bytes(packets[0]), np.uint8), cv2.IMREAD_COLOR)

    def from_rgb(self, image: np.ndarray) -> np.ndarray:
        """An RGB crop as read back from the 4:2:0 crop video the peers write."""
        self.pix_fmt = self.pix_fmt or "yuvj420p"
        return self(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))


class _ToRgb:
    """Decoded frame -> upright RGB array; a frame repeated by the frame-rate conversion is converted once."""

    def __init__(self):
        self._display = DisplayConverter("rgb24")
        self._frame = self._image = None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if frame is not self._frame:
            self._frame, self._image = frame, self._display(frame).to_ndarray()
        return self._image


def _decoded(container, stream, path: Path) -> Iterator[av.VideoFrame]:
    """The stream's frames; a stream broken partway ends where it breaks (frame-count checks against
    the GT catch it), one that decodes nothing is an error. Only decoding errors are caught here."""
    frames = container.decode(stream)
    decoded = 0
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            if decoded == 0:
                raise MediaError(path, f"video stream cannot be decoded ({_ffmpeg_reason(exc)})") from None
            return
        decoded += 1
        yield frame


def _video_frames(path: Path, fps: Fraction | None, convert=None) -> Iterator[np.ndarray]:
    convert = convert or _ToRgb()
    with open_container(path) as container:
        if not container.streams.video:
            raise MediaError(path, "no video stream")
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        if hasattr(convert, "open_stream"):
            convert.open_stream(vs)
        rate = vs.average_rate or vs.guessed_rate
        start = None if container.start_time is None else Fraction(container.start_time, av.time_base)
        resampler = FpsResampler(fps, start) if fps else None
        frame_time = 1 / Fraction(rate) if rate else None
        last_t: Fraction | None = None
        delayed = getattr(convert, "delayed", False)  # gives the frames ready, 0 or more, and flush() the rest

        def converted(frames) -> Iterator[np.ndarray]:
            for frame in frames:
                yield from convert(frame) if delayed else [convert(frame)]

        for index, frame in enumerate(_decoded(container, vs, path)):
            if resampler is None:
                yield from converted([frame])
                continue
            if frame.pts is not None and frame.time_base is not None:
                t = Fraction(frame.pts) * frame.time_base
            elif frame_time:
                t = index * frame_time
            else:
                raise MediaError(path, "frames have no timestamps and the stream no frame rate")
            if frame.duration and frame.time_base is not None:
                duration = Fraction(frame.duration) * frame.time_base
            elif frame_time:
                duration = frame_time
            else:
                duration = t - last_t if last_t is not None and t > last_t else 1 / Fraction(fps)
            last_t = t
            yield from converted(resampler.push(t, duration, frame))
        if resampler is not None:
            yield from converted(resampler.finish())
        if delayed:
            yield from convert.flush()


def _folder_frames(path: Path) -> Iterator[np.ndarray]:
    files = _frame_files(path)
    if not files:
        raise MediaError(path, "frame folder holds no images (.jpg/.png/.bmp)")
    shape = None
    for f in files:
        image = _read_image(f)
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise MediaError(f, f"frame size {image.shape[1]}x{image.shape[0]} differs from the "
                                f"folder's first frame ({shape[1]}x{shape[0]})")
        yield image


def iter_frames(path: str | os.PathLike, fps: float | Fraction | None = 25,
                chunk: int = 32, convert=None, limits: DecodeLimits | None = None) -> Iterator[np.ndarray]:
    """Stream an input's frames as RGB uint8 chunks of shape (n<=chunk, H, W, 3).

    ``fps`` is the protocol frame rate (None keeps the native frames). Frame folders are taken as
    already at the protocol rate. ``convert`` (videos only) replaces the decoded frame -> RGB
    conversion: it is called on each output frame (an ``av.VideoFrame``) in order, repeats included;
    one with ``delayed`` set returns a list of the frames it has ready and gives the rest at ``flush()``;
    one with ``open_stream`` is first shown the video stream.
    ``limits``: how the input is decoded (``DecodeLimits``; default: in a worker process, 120 s).
    """
    yield from _isolated_stream(limits, _iter_frames, Path(path), fps, chunk, convert)


def _iter_frames(path: Path, fps, chunk: int, convert) -> Iterator[np.ndarray]:
    if path.is_dir():
        if convert is not None:
            raise MediaError(path, "this mode needs a video file, not a frame folder")
        frames = _folder_frames(path)
    else:
        frames = _video_frames(path, Fraction(fps).limit_denominator(1001) if fps else None, convert)
    yield from _chunked(frames, chunk)


class _WithJpeg:
    """One decode, two views: each output frame as RGB and as its JPEG round trip (BGR), 6 channels."""

    def __init__(self, rate: Fraction):
        self.rgb, self.jpeg = _ToRgb(), JpegRoundTrip(rate)

    def open_stream(self, stream) -> None:
        self.jpeg.open_stream(stream)

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        return np.concatenate([self.rgb(frame), self.jpeg(frame)], axis=-1)


def iter_frames_with_jpeg(path: str | os.PathLike, fps: float | Fraction | None = 25,
                          chunk: int = 32, limits: DecodeLimits | None = None) -> Iterator[np.ndarray]:
    """``iter_frames`` from the same decode, each chunk (n, H, W, 6): the RGB frames in channels 0-2
    and, in 3-5, the same frames as the peer scripts read them from ffmpeg's image2 JPEGs (BGR,
    ``JpegRoundTrip`` at the output's frame rate)."""
    path = Path(path)
    if path.is_dir():
        raise MediaError(path, "the JPEG round trip of a frame folder is not defined (it needs a video file)")
    rate = fps if fps else probe(path, limits).native_fps or 25
    yield from iter_frames(path, fps, chunk, convert=_WithJpeg(Fraction(rate).limit_denominator(1001)), limits=limits)


def read_frames(path: str | os.PathLike, fps: float | Fraction | None = 25) -> np.ndarray:
    """All frames of an input at the protocol frame rate (ffmpeg's ``-r`` semantics).

    Args:
        path: a video file, or a folder of frames.
        fps: the frame rate to resample to, frames per second; None keeps the native frames.

    Returns:
        RGB uint8 frames, shape (T, H, W, 3).

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> frames = np.random.default_rng(0).integers(0, 256, (10, 48, 64, 3), dtype=np.uint8)
        >>> video = write_video(Path(tempfile.mkdtemp()) / "clip.avi", frames, fps=25, codec="ffv1")
        >>> back = read_frames(video)
        >>> back.shape, bool((back == frames).all())
        ((10, 48, 64, 3), True)
    """
    chunks = list(iter_frames(path, fps, chunk=256))
    if not chunks:
        raise MediaError(path, "no frames could be decoded")
    return np.concatenate(chunks)


def _declared_end(container, stream, first_pts: int | None) -> Fraction | None:
    """Where ffmpeg's command line ends an MP4/MOV audio stream, in seconds: at its declared duration
    (its edit list) when the edit list also skips the encoder's priming samples (the first packet lies
    before the stream's start), so that the padding in the last AAC frame is dropped; an edit list that
    starts at the first sample keeps every decoded sample (measured on ffmpeg 9, see the decoding
    catalogue in docs/evaluation.md)."""
    if "mp4" not in container.format.name or not stream.duration or stream.time_base is None:
        return None
    start = stream.start_time or 0
    if first_pts is None or first_pts >= start:
        return None
    return (Fraction(start) + stream.duration) * stream.time_base


def _trim_audio_frame(frame: av.AudioFrame, end: Fraction) -> av.AudioFrame | None:
    """The part of a decoded audio frame before ``end`` (None when nothing is left)."""
    if frame.pts is None or frame.time_base is None:
        return frame
    keep = round((end - Fraction(frame.pts) * frame.time_base) * frame.sample_rate)
    if keep >= frame.samples:
        return frame
    if keep <= 0:
        return None
    data = frame.to_ndarray()
    data = data[:, :keep] if frame.format.is_planar else data[:, :keep * len(frame.layout.channels)]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=frame.format.name, layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


def read_audio(path: str | os.PathLike, sample_rate: int = 16000, limits: DecodeLimits | None = None) -> np.ndarray:
    """The first audio stream as mono float32 in [-1, 1) at ``sample_rate``.

    The samples are those ffmpeg writes with ``-ac 1 -ar 16000 -acodec pcm_s16le`` (the syncnet_python
    recipe): libswresample to signed 16-bit mono, whose downmix matrix is normalised so stereo becomes
    (L + R) / 2, then divided by 32768; MP4 audio whose edit list skips the encoder's priming ends at its
    declared duration, as the CLI trims it. As the CLI, audio that starts after the video is not padded:
    the first sample is the stream's first. Checked sample for sample against ffmpeg 9 on the decoding
    catalogue of the tests. For a frame folder, the audio is its ``audio.wav``.

    Args:
        path: a video or audio file, or a frame folder.
        sample_rate: the output rate, Hz.
        limits: how the input is decoded (``DecodeLimits``; default: in a worker process, 120 s).

    Returns:
        float32 samples, shape (N,).

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> tone = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440).astype(np.float32) / 2
        >>> frames = np.zeros((25, 32, 32, 3), np.uint8)
        >>> video = write_video(Path(tempfile.mkdtemp()) / "tone.avi", frames, 25, tone, codec="ffv1")
        >>> audio = read_audio(video)
        >>> audio.shape, float(np.abs(audio - tone).max()) < 1e-4
        ((16000,), True)
    """
    return isolated_call(limits, _read_audio, Path(path), sample_rate)


def _read_audio(path: Path, sample_rate: int) -> np.ndarray:
    if path.is_dir():
        path = path / FOLDER_AUDIO_NAME
        if not path.is_file():
            raise MediaError(path.parent, f"frame folder has no {FOLDER_AUDIO_NAME}")
    with open_container(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        parts = []
        first_pts = end = None
        try:
            for packet in container.demux(stream):
                if first_pts is None and packet.pts is not None:
                    first_pts = packet.pts
                    end = _declared_end(container, stream, first_pts)
                for frame in packet.decode():
                    if end is not None:
                        frame = _trim_audio_frame(frame, end)
                        if frame is None:
                            continue
                    frame.pts = None  # let the resampler follow the samples, not gaps in timestamps
                    for out in resampler.resample(frame):
                        parts.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            if not parts:
                raise MediaError(path, f"audio stream cannot be decoded ({_ffmpeg_reason(exc)})") from None
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    if not parts:
        raise MediaError(path, "audio stream holds no samples")
    return np.concatenate(parts).astype(np.float32) / np.float32(32768)


# --------------------------------------------------------------------------------------------------
# Decoding in a child process


@dataclass(frozen=True)
class DecodeLimits:
    """How inputs are decoded. ``isolated``: in a worker process (``decode_worker``), so that a decoder
    that crashes (a segfault inside FFmpeg on a damaged file) or stalls becomes that input's error instead
    of taking the run down; ``timeout_s``: how long the worker may go without giving a chunk of frames or
    its result before it is stopped. Neither changes a number: the worker runs the same code."""

    isolated: bool = True
    timeout_s: float = 120.0

    def as_dict(self) -> dict:
        return {"isolated": self.isolated, "timeout_s": self.timeout_s}


#: What a decoding function uses without ``limits``: a worker process, stopped after 120 s without a frame.
DEFAULT_LIMITS = DecodeLimits()


class _Worker:
    """A decoding process (``python -m lipsync_bench.decode_worker``): it runs one request at a time and
    is reused while it stays healthy; one that crashes or stalls is killed and replaced, so a damaged
    file costs its own input only. A process of its own, not a fork: this one may hold torch's threads."""

    def __init__(self):
        to_child, self._child_in = os.pipe()
        self._child_out, from_child = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # what we can import
        self.proc = subprocess.Popen([sys.executable, "-m", "lipsync_bench.decode_worker", str(to_child),
                                      str(from_child)], pass_fds=(to_child, from_child), env=env,
                                     stdin=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self.send = Connection(self._child_in, readable=False)
        self.recv = Connection(self._child_out, writable=False)

    def close(self) -> None:
        for conn in (self.send, self.recv):
            conn.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


_IDLE: list[_Worker] = []
_POOL_LOCK = threading.Lock()


def _stop_workers() -> None:
    while _IDLE:
        _IDLE.pop().close()


atexit.register(_stop_workers)
# a forked process (a data loader's worker) must not share its parent's workers: it starts its own
os.register_at_fork(after_in_child=_IDLE.clear)


def serve(requests: Connection, replies: Connection) -> None:
    """The worker's loop: for each request (fn, path, args, stream), each array of ``fn``'s stream as a
    header and its bytes, or its one value; then the end, or the error as (path, problem)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its workers itself
    while True:
        try:
            fn, path, args, stream = requests.recv()
        except EOFError:
            return
        try:
            if stream:
                for item in fn(path, *args):
                    item = np.ascontiguousarray(item)
                    replies.send(("array", item.shape, item.dtype.str))
                    replies.send_bytes(memoryview(item).cast("B"))
                replies.send(("end",))
            else:
                replies.send(("value", fn(path, *args)))
        except MediaError as exc:
            replies.send(("error", exc.path, exc.problem))
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises is that file's error
            replies.send(("error", str(path), f"cannot be decoded ({type(exc).__name__}: {exc})"))


class _Decoder:
    """The parent's side of one request: a worker from the pool, its messages in order, each within the
    time limit."""

    def __init__(self, limits: DecodeLimits, fn, path: Path, args: tuple, stream: bool, shown: Path):
        self.path, self.limits, self.done = shown, limits, False
        with _POOL_LOCK:
            self.worker = _IDLE.pop() if _IDLE else None
        try:
            self.worker.send.send((fn, path, args, stream))
        except (AttributeError, OSError):  # none idle, or an idle one that has gone away
            if self.worker is not None:
                self.worker.close()
            self.worker = _Worker()
            self.worker.send.send((fn, path, args, stream))

    def receive(self):
        conn = self.worker.recv
        try:
            if not conn.poll(self.limits.timeout_s):
                raise MediaError(self.path, f"the decoder gave nothing for {self.limits.timeout_s:g} s and was "
                                            "stopped (a stalled decode; the limit is eval's --decode-timeout)")
            message = conn.recv()
            if message[0] == "array":
                data = bytearray(int(np.prod(message[1])) * np.dtype(message[2]).itemsize)
                if data:
                    if not conn.poll(self.limits.timeout_s):
                        raise EOFError
                    conn.recv_bytes_into(data)
                return "array", np.frombuffer(data, np.dtype(message[2])).reshape(message[1])
            self.done = True
            return message
        except (EOFError, OSError):
            code = self.worker.proc.wait()
            how = (f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
                   else f"exit status {code}")
            raise MediaError(self.path, f"the decoder crashed on this file ({how})") from None

    def close(self) -> None:
        """Back to the pool when the request ended; killed when it was stopped midway (its output is
        not read)."""
        if self.done and self.worker.proc.poll() is None:
            with _POOL_LOCK:
                _IDLE.append(self.worker)
        else:
            self.worker.close()


def _as_given(path: Path) -> tuple[Path, Callable[[str], str]]:
    """The path as the worker must see it (its working folder is the one it started in), and what turns
    a path in its errors back into the one the caller gave."""
    absolute = path if path.is_absolute() else Path.cwd() / path
    prefix = str(absolute)

    def shown(text: str) -> str:
        return str(path) + text[len(prefix):] if text == prefix or text.startswith(prefix + os.sep) else text

    return absolute, shown


def isolated_call(limits: DecodeLimits | None, fn, path: Path, *args):
    """``fn(path, *args)`` decoded as ``limits`` says (in a worker process by default); a module-level
    function, as the worker imports it. Its ``MediaError`` names ``path`` as the caller gave it."""
    limits = limits or DEFAULT_LIMITS
    if not limits.isolated:
        return fn(path, *args)
    absolute, shown = _as_given(path)
    decoder = _Decoder(limits, fn, absolute, args, stream=False, shown=path)
    try:
        message = decoder.receive()
    finally:
        decoder.close()
    if message[0] == "error":
        raise MediaError(shown(message[1]), message[2])
    return message[1]


def _isolated_stream(limits: DecodeLimits | None, fn, path: Path, *args) -> Iterator[np.ndarray]:
    limits = limits or DEFAULT_LIMITS
    if not limits.isolated:
        yield from fn(path, *args)
        return
    absolute, shown = _as_given(path)
    decoder = _Decoder(limits, fn, absolute, args, stream=True, shown=path)
    try:
        while True:
            message = decoder.receive()
            if message[0] == "end":
                return
            if message[0] == "error":
                raise MediaError(shown(message[1]), message[2])
            yield message[1]
    finally:
        decoder.close()


# --------------------------------------------------------------------------------------------------
# Pairing generated with ground-truth inputs


@dataclass(frozen=True)
class Pair:
    """One generated input and its ground truth, under a key: the relative path without extension."""

    key: str
    gen: Path
    gt: Path


@dataclass
class Pairing:
    pairs: list[Pair] = field(default_factory=list)
    unpaired_gen: list[str] = field(default_factory=list)
    unpaired_gt: list[str] = field(default_factory=list)
    # key -> problem, for keys that cannot be evaluated (e.g. two files with the same stem)
    problems: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # folders not entered, with the reason


def find_inputs(root: str | os.PathLike) -> tuple[dict[str, Path], dict[str, str], list[str]]:
    """Videos and frame folders below ``root``, keyed by relative path without extension.

    Returns (inputs, problems, skipped): a key found twice (``a.mp4`` and ``a.avi``) is a problem, not
    an input. Symbolic links are followed (two names may link to one folder: two inputs), except a link
    to a folder that contains it (a loop), which is skipped with a note; files that are neither videos
    nor frames are counted and named in one note.
    """
    root = Path(root)
    if not root.is_dir():
        raise MediaError(root, "not a folder")
    found: dict[str, list[Path]] = {}
    skipped: list[str] = []
    ignored: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        rel = here.relative_to(root)
        # the real folders on the way here: a link back to one of them is a loop, however many links lie between
        chain = {os.path.realpath(root / Path(*rel.parts[:i])) for i in range(len(rel.parts) + 1)}
        for d in list(dirnames):
            target = os.path.realpath(here / d)
            if os.path.islink(here / d) and any(target == c or c.startswith(target + os.sep) for c in chain):
                dirnames.remove(d)
                skipped.append(f"{here / d}: a symbolic link to {target}, which contains it (a loop); not entered")
        if here != root and any(f.lower().endswith(IMAGE_EXTENSIONS) for f in filenames):
            found.setdefault(rel.as_posix(), []).append(here)
            dirnames[:] = []  # a frame folder is a leaf
            continue
        for name in filenames:
            if name.lower().endswith(VIDEO_EXTENSIONS):
                key = (rel / Path(name).stem).as_posix()
                found.setdefault(key, []).append(here / name)
            else:
                ignored.append((rel / name).as_posix())
        dirnames.sort()
    if ignored:
        ignored.sort()
        skipped.append(f"ignored in {root}: {len(ignored)} file{'s' * (len(ignored) != 1)}, neither a video "
                       f"({' '.join(VIDEO_EXTENSIONS)}) nor in a frame folder: {', '.join(ignored[:10])}"
                       + (" …" if len(ignored) > 10 else ""))
    inputs, problems = {}, {}
    for key, paths in sorted(found.items()):
        if len(paths) > 1:
            names = ", ".join(sorted(p.name for p in paths))
            problems[key] = f"several inputs share the name '{key}' ({names}); keep one"
        else:
            inputs[key] = paths[0]
    return inputs, problems, skipped


def pair_inputs(gen_root: str | os.PathLike, gt_root: str | os.PathLike | None) -> Pairing:
    """Pair generated and GT inputs by relative path stem (nested folders allowed). Without ``gt_root``,
    each generated input stands alone (its pair is itself: for the metrics that read it alone). Two
    files (or one file and no ``gt_root``) are one pair, named by the generated file's stem."""
    gen_root, gt_root = Path(gen_root), Path(gt_root) if gt_root is not None else None
    if gen_root.is_file() or (gt_root is not None and gt_root.is_file()):
        for path in (gen_root, gt_root):
            if path is not None and not path.is_file():
                raise MediaError(path, "a folder, while the other input is a file: give two files (one pair) or two "
                                       "folders")
        return Pairing(pairs=[Pair(gen_root.stem, gen_root, gt_root or gen_root)])
    gen, gen_problems, gen_skipped = find_inputs(gen_root)
    gt, gt_problems, gt_skipped = find_inputs(gt_root) if gt_root is not None else (gen, {}, [])
    result = Pairing(skipped=gen_skipped + gt_skipped)
    for key in sorted(set(gen) | set(gt) | set(gen_problems) | set(gt_problems)):
        if key in gen_problems or key in gt_problems:
            result.problems[key] = gen_problems.get(key) or gt_problems[key]
        elif key in gen and key in gt:
            result.pairs.append(Pair(key, gen[key], gt[key]))
        elif key in gen:
            result.unpaired_gen.append(key)
        else:
            result.unpaired_gt.append(key)
    return result


# --------------------------------------------------------------------------------------------------
# Writing


#: Audio codec and sample format by container: AAC in MP4/MOV, Opus in WebM, 16-bit PCM otherwise.
AUDIO_CODECS = {"mp4": ("aac", "fltp"), "mov": ("aac", "fltp"), "webm": ("libopus", "flt")}


def write_video(path: str | os.PathLike | io.BytesIO, frames, fps: float = 25, audio: np.ndarray | None = None,
                sample_rate: int = 16000, codec: str = "libx264", crf: int = 12, bit_rate: int | None = None,
                container_format: str | None = None) -> Path | io.BytesIO:
    """Write RGB uint8 frames (T, H, W, 3) — or an iterable of such chunks, written as they come — and
    optional mono float audio in [-1, 1] to a video file (or to a ``BytesIO``, with its
    ``container_format``).

    ``codec`` "libx264" (yuv420p, ``crf``) for .mp4/.mov, "ffv1" (lossless, for tests) for .avi/.mkv,
    "libvpx" (VP8, yuv420p, ``bit_rate``) for .webm. Audio: ``AUDIO_CODECS``.
    """
    if isinstance(path, io.BytesIO):
        target, kind = path, container_format
    else:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        target, kind = str(path), container_format or path.suffix.lower().lstrip(".")
    chunks = iter([frames] if isinstance(frames, np.ndarray) else frames)
    first = np.asarray(next(chunks))
    if first.ndim != 4 or first.shape[-1] != 3 or first.dtype != np.uint8:
        raise ValueError("frames must be uint8 of shape (T, H, W, 3)")
    with av.open(target, "w", format=container_format) as container:
        vs = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height = first.shape[2], first.shape[1]
        if codec == "libx264":
            vs.pix_fmt = "yuv420p"
            vs.options = {"crf": str(crf), "preset": "veryfast"}
        elif codec == "ffv1":
            vs.pix_fmt = "bgr0"
        else:
            vs.pix_fmt = "yuv420p"
        if bit_rate:
            vs.bit_rate = bit_rate
        astream = None
        if audio is not None:
            acodec, fmt = AUDIO_CODECS.get(kind, ("pcm_s16le", "s16"))
            astream = container.add_stream(acodec, rate=sample_rate, layout="mono")
        for chunk in (first, *chunks):
            for image in chunk:
                for packet in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                    container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        if astream is not None:
            samples = np.clip(np.asarray(audio, dtype=np.float32), -1, 1).reshape(1, -1)
            data = samples if fmt != "s16" else (samples * 32767).astype(np.int16)
            step = 1024
            for i in range(0, data.shape[1], step):
                aframe = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, i:i + step]), format=fmt,
                                                    layout="mono")
                aframe.sample_rate = sample_rate
                aframe.pts = i
                for packet in astream.encode(aframe):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path
