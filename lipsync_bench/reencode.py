"""The peer pipelines' lossy chains (``decode.reencode``), done in memory: nothing is written to disk, and
each step gives what the command or library it stands for gives on the same frames (measured on the GRID
clips: ffmpeg 9.0.2, OpenCV 5.1). ``CHAINS`` says which steps each chain takes.

syncnet_python's ``run_pipeline.py`` (``syncnet-python``; the ``syncnet-python`` package keeps it:
``syncnet-python-0.2.3``, which reads the speech as it is):

1. ``ffmpeg -i VIDEO -qscale:v 2 -async 1 -r 25 video.avi``: the frames of the 25 fps output (repeats
   included) encoded by libavcodec's MPEG-4 encoder at quantiser 2 (lambda pinned at 2 x 118, as the
   command line's -qscale sets each frame's quality), decoded back: ``PipelineFrames``. The command's
   bitstream depends on the machine it runs on (one slice a thread: min(cores + 1, 16)); this one
   encodes 16 slices, as a machine of 15 cores or more does; on a 2-core machine the command's frames
   differ by up to 16 grey levels from these.
2. The AVI holds MP3 audio (its default codec), whose encoder delay makes the muxer shift every stream
   by one frame and leave an empty chunk after frame 0: ``-f image2`` then writes frame 1 twice (76
   JPEGs from a 75-frame clip, frames 1 onwards 40 ms late against the audio). ``repeat_second_frame``
   does the same for an input with an audio stream.
3. ``ffmpeg -i video.avi -qscale:v 2 -f image2 -threads 1 %06d.jpg`` + ``cv2.imread``: MJPEG at
   quantiser 2 of the frames converted to full-range 4:2:0 by swscale's bicubic scaler, decoded by
   OpenCV (the JPEG bytes equal the command's but for the encoder's version in the comment).
4. ``cv2.VideoWriter(..., 'XVID', 25, (224, 224))`` of each track's crops, read back by
   ``SyncNetInstance.evaluate`` as default-quality JPEGs: ``CropVideo`` (OpenCV's settings: MPEG-4 with
   the XVID tag, quantiser at least 3, 12-frame groups, a bit rate of 2 x fps x width x height, one
   thread; BGR to 4:2:0 by swscale's bicubic scaler). Packets equal OpenCV's but for the version string.
5. ``audio.wav`` from ``video.avi`` (syncnet_python's, not the package's): the audio through LAME at
   128 kb/s and back, 16 kHz mono (``read_audio_through``). The LAME build inside PyAV encodes otherwise
   than the one in the ffmpeg binary: same length and alignment (the encoder delay moves the audio 1105
   samples at the input's rate, ~25 ms, later), samples within an RMS of ~1-4% of the signal's
   (measured 24-197 against 2500-4500 on the GRID clips).

LatentSync's ``eval/syncnet_detect.py`` (``latentsync``):

1. ``ffmpeg -i VIDEO -qscale:v 2 -async 1 -r 25 video/video.mp4``: H.264 by libx264 at its defaults
   (CRF 23, preset medium; it ignores -qscale; the input's chroma and depth where x264 takes them, RGB as
   4:4:4) and AAC: ``H264Frames``, bit-exact against the binary's x264 (core 165) with the same threads.
   x264's output depends on its lookahead threads (auto: threads / 6, threads = 1.5 x cores): this one
   runs 24 threads, as a machine of 8 cores or more does (12 to 24 threads give the same frames; 1-9
   threads other frames, by 0.6 grey levels on average). The MP4 keeps the frames in time (no repeated
   frame).
2. ``-qscale:v 2 -f image2`` JPEG frames (its thread count changes nothing at a fixed quantiser).
3. ``audio.wav`` from video.mp4: the audio through libavcodec's AAC encoder at 128 kb/s and back, its
   1024-sample priming dropped and its length kept, as the MP4's edit list has the decoder do. The
   decoding side is exact; PyAV's libavcodec (62) encodes otherwise than ffmpeg 9's (63): an RMS
   difference of ~2.5% of the signal's.
4. ``cv2.VideoWriter(..., 'mp4v', ...)`` crop videos (OpenCV's MPEG-4 settings: the frames of the XVID
   ones), each muxed with its slice of audio.wav (``-ss``/``-to``) re-encoded to AAC (``-c:a aac``),
   which ``SyncNetEval.evaluate`` reads back as PCM (``samples_through``).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np

from .errors import MediaError
from .media import (
    DecodeLimits,
    DisplayConverter,
    JpegRoundTrip,
    chroma_subsampling,
    isolated_call,
    jpeg_format,
    open_container,
)

#: libavcodec's lambda for one quantiser step (FF_QP2LAMBDA).
QP2LAMBDA = 118
#: Slices of the re-encoded MPEG-4 video: what ffmpeg's command line writes on a machine of 15 cores or more.
SLICES = 16
#: libx264's threads: what ffmpeg's command line runs on a machine of 16 cores (any of 8 or more gives these
#: frames: its lookahead runs on threads / 6 threads).
X264_THREADS = 24
#: The bit rate of the peers' compressed audio (LAME's and libavcodec AAC's default).
AUDIO_BIT_RATE = 128_000
#: libavcodec's AAC encoder delay (its priming), which an MP4's edit list has the decoder drop.
AAC_PRIMING = 1024
_NO_PICTURE_TYPE = av.video.frame.PictureType.NONE
#: libavutil's default channel layout of each channel count (av_channel_layout_default).
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0(side)", 6: "5.1(side)", 7: "6.1", 8: "7.1"}


def _fixed_quantiser(enc, q: int) -> None:
    """The command line's ``-qscale:v q``: the rate control pinned at quantiser q and its lambda."""
    enc.qmin = enc.qmax = q
    enc.options = {"lmin": str(q * QP2LAMBDA), "lmax": str(q * QP2LAMBDA)}


class _QualityJpeg:
    """``ffmpeg -qscale:v 2 -f image2`` + ``cv2.imread`` of decoded frames: MJPEG at quantiser 2 of the
    frames converted to full range (their chroma subsampling kept) as the command line converts them;
    RGB uint8."""

    def __init__(self, rate: Fraction):
        self.rate = rate
        self._yuvj: DisplayConverter | None = None
        self._encoder = None
        self._index = 0

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        if self._yuvj is None:
            self._yuvj = DisplayConverter(jpeg_format(frame.format.name))
        full = self._yuvj(frame)
        if self._encoder is None:
            enc = av.CodecContext.create("mjpeg", "w")
            enc.width, enc.height, enc.pix_fmt = full.width, full.height, full.format.name
            enc.time_base, enc.framerate = 1 / self.rate, self.rate
            enc.thread_count = 1  # run_pipeline.py's -threads 1 (a fixed quantiser: any count gives these)
            _fixed_quantiser(enc, 2)
            self._encoder = enc
        full.pts, full.time_base, full.pict_type = self._index, self._encoder.time_base, _NO_PICTURE_TYPE
        self._index += 1
        packets = self._encoder.encode(full)
        bgr = cv2.imdecode(np.frombuffer(bytes(packets[0]), np.uint8), cv2.IMREAD_COLOR)
        return np.ascontiguousarray(bgr[..., ::-1])


class PipelineFrames:
    """A ``media.iter_frames`` conversion: each decoded frame of the 25 fps output through syncnet_python's
    steps 1 and 3 (MPEG-4 at q2, decoded, JPEG at q2, decoded by OpenCV), as RGB uint8."""

    def __init__(self, rate: Fraction = Fraction(25)):
        self.rate = Fraction(rate)
        self._yuv = DisplayConverter("yuv420p")
        self._jpeg = _QualityJpeg(self.rate)
        self._mpeg4 = self._decoder = None
        self._index = 0

    def _open(self, frame: av.VideoFrame) -> None:
        enc = av.CodecContext.create("mpeg4", "w")
        enc.width, enc.height, enc.pix_fmt = frame.width, frame.height, "yuv420p"
        enc.time_base, enc.framerate = 1 / self.rate, self.rate
        enc.thread_count = SLICES
        _fixed_quantiser(enc, 2)
        self._mpeg4, self._decoder = enc, av.CodecContext.create("mpeg4", "r")
        self._decoder.thread_count = 1

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        yuv = self._yuv(frame)
        if self._mpeg4 is None:
            self._open(yuv)
        yuv.pts, yuv.time_base, yuv.pict_type = self._index, self._mpeg4.time_base, _NO_PICTURE_TYPE
        self._index += 1
        decoded = [f for packet in self._mpeg4.encode(yuv) for f in self._decoder.decode(packet)]
        if len(decoded) != 1:
            raise MediaError("MPEG-4 round trip", f"{len(decoded)} frames back for one")
        return self._jpeg(decoded[0])


def _x264_format(name: str) -> str:
    """The pixel format ffmpeg's command line hands libx264 for frames of format ``name``: the same where
    libx264 takes it, else the nearest it takes (RGB: 4:4:4; alpha dropped; 10-bit kept at 10 bits)."""
    taken = {f.name for f in av.codec.Codec("libx264", "w").video_formats}
    if name in taken:
        return name
    deep = "10le" if max(c.bits for c in av.VideoFormat(name, 16, 16).components) > 8 else ""
    chroma = chroma_subsampling(name)
    return f"yuv{chroma}p{deep}" if chroma else f"gray{deep}"


class H264Frames:
    """A delayed ``media.iter_frames`` conversion (``delayed``: each call gives the frames ready, 0 or
    more, and ``flush()`` the rest): LatentSync's steps 1 and 2 (H.264 by libx264 at its defaults,
    decoded, JPEG at q2, decoded by OpenCV), as RGB uint8."""

    delayed = True

    def __init__(self, rate: Fraction = Fraction(25)):
        self.rate = Fraction(rate)
        self.sample_aspect_ratio: Fraction | None = None
        self._yuv: DisplayConverter | None = None  # to the format libx264 gets (``_x264_format``)
        self._jpeg = _QualityJpeg(self.rate)
        self._x264 = self._decoder = None
        self._index = 0

    def open_stream(self, stream) -> None:
        sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
        self.sample_aspect_ratio = Fraction(sar) if sar else None

    def _open(self, frame: av.VideoFrame) -> None:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = frame.width, frame.height, frame.format.name
        enc.time_base, enc.framerate = 1 / self.rate, self.rate
        if self.sample_aspect_ratio:
            enc.sample_aspect_ratio = self.sample_aspect_ratio
        enc.thread_count, enc.thread_type = X264_THREADS, "FRAME"
        self._x264, self._decoder = enc, av.CodecContext.create("h264", "r")

    def __call__(self, frame: av.VideoFrame) -> list[np.ndarray]:
        if self._yuv is None:
            self._yuv = DisplayConverter(_x264_format(frame.format.name))
        yuv = self._yuv(frame)
        if self._x264 is None:
            self._open(yuv)
        yuv.pts, yuv.time_base, yuv.pict_type = self._index, self._x264.time_base, _NO_PICTURE_TYPE
        self._index += 1
        return self._decoded(self._x264.encode(yuv))

    def flush(self) -> list[np.ndarray]:
        return [] if self._x264 is None else self._decoded([*self._x264.encode(None), None])

    def _decoded(self, packets: list) -> list[np.ndarray]:
        return [self._jpeg(f) for packet in packets for f in self._decoder.decode(packet)]


def repeat_second_frame(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Chunks of frames with frame 1 given twice (the AVI's empty chunk after frame 0)."""
    first = True
    for chunk in chunks:
        if first and len(chunk) > 1:
            chunk = np.concatenate([chunk[:2], chunk[1:]])
            first = False
        yield chunk


class CropVideo:
    """A track's crop video: BGR uint8 crops (n, H, W, 3), fed in order, come back as the crop video holds
    them (OpenCV's MPEG-4 writer with the fourcc ``tag``): read back as the peers' evaluate reads them
    (default-quality JPEGs, ``jpeg``), or decoded (BGR). ``flush()`` gives the frames the encoder still
    holds at the end."""

    def __init__(self, rate: int = 25, jpeg: bool = True, tag: str = "XVID"):
        self.rate, self.tag = rate, tag
        self._encoder = self._decoder = None
        # OpenCV's AVI and MP4 give the crops a 1:1 sample aspect ratio, which the read-back passes on
        self._read = JpegRoundTrip(Fraction(rate), Fraction(1)) if jpeg else DisplayConverter("bgr24")
        self._index = 0

    def _open(self, width: int, height: int) -> None:
        enc = av.CodecContext.create("mpeg4", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.time_base = Fraction(1, self.rate)
        enc.codec_tag = self.tag
        enc.gop_size, enc.qmin = 12, 3
        enc.bit_rate = enc.bit_rate_tolerance = 2 * self.rate * width * height
        enc.thread_count = 1  # OpenCV passes none: libavcodec's default
        self._encoder, self._decoder = enc, av.CodecContext.create("mpeg4", "r")
        self._decoder.codec_tag = self.tag  # as the file tells the decoder
        self._decoder.thread_count = 1

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        packets = []
        for crop in crops:
            if self._encoder is None:
                self._open(crop.shape[1], crop.shape[0])
            yuv = av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="bgr24").reformat(
                format="yuv420p", interpolation="BICUBIC")
            yuv.pts, yuv.time_base, yuv.pict_type = self._index, self._encoder.time_base, _NO_PICTURE_TYPE
            self._index += 1
            packets += self._encoder.encode(yuv)
        return self._decoded(packets, crops.shape[1:])

    def flush(self) -> np.ndarray:
        if self._encoder is None:
            return np.zeros((0, 0, 0, 3), np.uint8)
        packets = self._encoder.encode(None)
        return self._decoded([*packets, None], (self._encoder.height, self._encoder.width, 3))

    def _decoded(self, packets: list, shape: tuple) -> np.ndarray:
        out = []
        for packet in packets:
            for frame in self._decoder.decode(packet):
                read = self._read(frame)
                out.append(read if isinstance(read, np.ndarray) else read.to_ndarray())
        return np.stack(out) if out else np.zeros((0, *shape), np.uint8)


def _bare(packet: av.Packet | None) -> av.Packet | None:
    """The packet's bytes alone (zero-padded, as the decoder needs), as a file holds them: without the
    side data that would make the decoder drop the encoder's delay, which ffmpeg's command line keeps."""
    if packet is None:
        return None
    bare = av.Packet(packet.size)
    memoryview(bare)[:] = bytes(packet)
    return bare


class _AudioRoundTrip:
    """Audio frames through an encoder and back, as a file of that codec holds and returns them: "mp3"
    (LAME in an AVI: its encoder delay kept) or "aac" (libavcodec's AAC in an MP4: the priming dropped and
    the input's length kept, as the edit list has it). ``feed`` frames, then ``finish()``: the decoded
    frames."""

    def __init__(self, codec: str):
        self.codec = codec
        self.encoder = self.decoder = self.convert = None
        self.decoded: list[av.AudioFrame] = []
        self.samples = 0

    def _open(self, frame: av.AudioFrame) -> None:
        name, decoder = {"mp3": ("libmp3lame", "mp3float"), "aac": ("aac", "aac")}[self.codec]
        enc = av.CodecContext.create(name, "w")
        # a layout of unknown order is taken as its channel count's default, as the command line does
        count = frame.layout.nb_channels
        layout = frame.layout.name if "channels" not in frame.layout.name else DEFAULT_LAYOUTS.get(count,
                                                                                                  frame.layout.name)
        enc.sample_rate, enc.layout = frame.sample_rate, layout
        # the input's sample format, else its planar form, else the encoder's first, as ffmpeg negotiates
        formats = [f.name for f in enc.codec.audio_formats]
        name = frame.format.name
        enc.format = next((f for f in (name, name + "p") if f in formats), formats[0])
        enc.time_base = Fraction(1, frame.sample_rate)
        if self.codec == "aac":
            enc.bit_rate = AUDIO_BIT_RATE
        self.encoder = enc
        if (enc.format.name, layout) != (frame.format.name, frame.layout.name):  # as the command line converts
            self.convert = av.AudioResampler(format=enc.format.name, layout=layout, rate=frame.sample_rate)

    def feed(self, frame: av.AudioFrame) -> None:
        if self.encoder is None:
            self._open(frame)
        self.samples += frame.samples
        frame.pts = None
        for ready in self.convert.resample(frame) if self.convert else [frame]:
            self._decode(self.encoder.encode(ready))

    def _decode(self, packets) -> None:
        if self.decoder is None:
            self.decoder = av.CodecContext.create("mp3float" if self.codec == "mp3" else "aac", "r")
            if self.encoder.extradata:
                self.decoder.extradata = self.encoder.extradata
        for packet in packets:
            for frame in self.decoder.decode(_bare(packet)):
                frame.pts = None
                self.decoded.append(frame)

    def finish(self) -> list[av.AudioFrame]:
        if self.encoder is None:
            return []
        self._decode(self.encoder.encode(None))
        self._decode([None])
        if self.codec != "aac":
            return self.decoded
        samples = np.concatenate([f.to_ndarray() for f in self.decoded], axis=1)
        kept = np.ascontiguousarray(samples[:, AAC_PRIMING:AAC_PRIMING + self.samples])
        frame = av.AudioFrame.from_ndarray(kept, format=self.decoded[0].format.name,
                                           layout=self.decoded[0].layout.name)
        frame.sample_rate = self.decoded[0].sample_rate
        return [frame]


def _resampled(frames: list[av.AudioFrame], sample_rate: int) -> np.ndarray:
    """Frames resampled to ``sample_rate`` mono 16-bit, as ``ffmpeg -ac 1 -ar RATE -acodec pcm_s16le``
    does; float32 in [-1, 1)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    parts = [out.to_ndarray().reshape(-1) for frame in frames for out in resampler.resample(frame)]
    parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32) / np.float32(32768)


def read_audio_through(path: str | Path, codec: str, sample_rate: int = 16000,
                       limits: DecodeLimits | None = None) -> np.ndarray:
    """An input's first audio stream, at its own rate and channels, through ``codec`` ("mp3": the AVI's
    audio, syncnet_python's step 5; "aac": the MP4's, LatentSync's step 3) and back, resampled to
    ``sample_rate`` mono as ``ffmpeg -ac 1 -ar 16000 -acodec pcm_s16le`` does; float32 in [-1, 1).
    ``limits``: as ``media.read_audio``."""
    return isolated_call(limits, _read_audio_through, Path(path), codec, sample_rate)


def _read_audio_through(path: Path, codec: str, sample_rate: int) -> np.ndarray:
    with open_container(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio stream")
        trip = _AudioRoundTrip(codec)
        for frame in container.decode(container.streams.audio[0]):
            trip.feed(frame)
        frames = trip.finish()
    if not frames:
        raise MediaError(path, "audio stream holds no samples")
    return _resampled(frames, sample_rate)


def samples_through(samples: np.ndarray, codec: str, sample_rate: int = 16000) -> np.ndarray:
    """Mono float samples at ``sample_rate`` (a track's slice of the audio) through ``codec`` and back:
    LatentSync's crop videos hold their slice as AAC."""
    pcm = np.round(np.clip(samples, -1, 32767 / 32768) * 32768).astype(np.int16)
    trip = _AudioRoundTrip(codec)
    step = 1024
    for start in range(0, len(pcm), step):
        frame = av.AudioFrame.from_ndarray(pcm[None, start:start + step], format="s16", layout="mono")
        frame.sample_rate = sample_rate
        trip.feed(frame)
    frames = trip.finish()
    return _resampled(frames, sample_rate) if frames else np.zeros(0, np.float32)


@dataclass(frozen=True)
class Chain:
    """The steps of one peer chain: the frames' conversion (``media.iter_frames(convert=...)``), whether
    the AVI repeats the second frame, the codec the scored audio went through ("mp3", "aac", or None: read
    as it is), the crop video's fourcc and the codec of the crop video's audio (None: PCM)."""

    frames: Callable[[], object]
    repeats_second_frame: bool
    audio: str | None
    crop_tag: str
    crop_audio: str | None


#: The chains of ``decode.reencode``.
CHAINS = {
    "syncnet-python": Chain(PipelineFrames, True, "mp3", "XVID", None),
    "syncnet-python-0.2.3": Chain(PipelineFrames, True, None, "XVID", None),
    "latentsync": Chain(H264Frames, False, "aac", "mp4v", "aac"),
}
