"""The lossy chain of syncnet_python's ``run_pipeline.py`` (and of the ``syncnet-python`` package, which
keeps it), done in memory: nothing is written to disk, and each step gives what the command or library
it stands for gives on the same frames (measured on the GRID clips: ffmpeg 9.0.2, OpenCV 5.1).

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
   OpenCV (``PipelineFrames`` returns these, in RGB: the JPEG bytes equal the command's but for the
   encoder's version in the comment).
4. ``cv2.VideoWriter(..., 'XVID', 25, (224, 224))`` of each track's crops, read back by
   ``SyncNetInstance.evaluate`` as default-quality JPEGs: ``CropVideo`` (OpenCV's settings: MPEG-4 with
   the XVID tag, quantiser at least 3, 12-frame groups, a bit rate of 2 x fps x width x height, one
   thread; BGR to 4:2:0 by swscale's bicubic scaler). Packets equal OpenCV's but for the version string.
5. ``audio.wav`` from ``video.avi`` (syncnet_python's, not the package's): the audio through LAME at
   128 kb/s and back, 16 kHz mono (``read_audio_through_mp3``). The LAME build inside PyAV encodes
   otherwise than the one in the ffmpeg binary: same length and alignment (the encoder delay moves the
   audio 1105 samples at the input's rate, ~25 ms, later), samples within an RMS of ~1-4% of the
   signal's (measured 24-197 against 2500-4500 on the GRID clips).
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from .errors import MediaError
from .media import DecodeLimits, DisplayConverter, JpegRoundTrip, isolated_call, open_container

#: libavcodec's lambda for one quantiser step (FF_QP2LAMBDA).
QP2LAMBDA = 118
#: Slices of the re-encoded video: what ffmpeg's command line writes on a machine of 15 cores or more.
SLICES = 16
_NO_PICTURE_TYPE = av.video.frame.PictureType.NONE


def _fixed_quantiser(enc, q: int) -> None:
    """The command line's ``-qscale:v q``: the rate control pinned at quantiser q and its lambda."""
    enc.qmin = enc.qmax = q
    enc.options = {"lmin": str(q * QP2LAMBDA), "lmax": str(q * QP2LAMBDA)}


class PipelineFrames:
    """A ``media.iter_frames`` conversion: each decoded frame of the 25 fps output through steps 1 and 3
    above (MPEG-4 at q2, decoded, JPEG at q2, decoded by OpenCV), as RGB uint8."""

    def __init__(self, rate: Fraction = Fraction(25)):
        self.rate = Fraction(rate)
        self._yuv, self._yuvj = DisplayConverter("yuv420p"), DisplayConverter("yuvj420p")
        self._mpeg4 = self._decoder = self._mjpeg = None
        self._index = 0

    def _open(self, frame: av.VideoFrame) -> None:
        enc = av.CodecContext.create("mpeg4", "w")
        enc.width, enc.height, enc.pix_fmt = frame.width, frame.height, "yuv420p"
        enc.time_base, enc.framerate = 1 / self.rate, self.rate
        enc.thread_count = SLICES
        _fixed_quantiser(enc, 2)
        self._mpeg4, self._decoder = enc, av.CodecContext.create("mpeg4", "r")
        self._decoder.thread_count = 1
        jpeg = av.CodecContext.create("mjpeg", "w")
        jpeg.width, jpeg.height, jpeg.pix_fmt = frame.width, frame.height, "yuvj420p"
        jpeg.time_base, jpeg.framerate = 1 / self.rate, self.rate
        jpeg.thread_count = 1  # the command's -threads 1
        _fixed_quantiser(jpeg, 2)
        self._mjpeg = jpeg

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        yuv = self._yuv(frame)
        if self._mpeg4 is None:
            self._open(yuv)
        yuv.pts, yuv.time_base, yuv.pict_type = self._index, self._mpeg4.time_base, _NO_PICTURE_TYPE
        self._index += 1
        decoded = [f for packet in self._mpeg4.encode(yuv) for f in self._decoder.decode(packet)]
        if len(decoded) != 1:
            raise MediaError("MPEG-4 round trip", f"{len(decoded)} frames back for one")
        full = self._yuvj(decoded[0])
        full.pts, full.time_base, full.pict_type = yuv.pts, self._mjpeg.time_base, _NO_PICTURE_TYPE
        packets = self._mjpeg.encode(full)
        bgr = cv2.imdecode(np.frombuffer(bytes(packets[0]), np.uint8), cv2.IMREAD_COLOR)
        return np.ascontiguousarray(bgr[..., ::-1])


def repeat_second_frame(chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Chunks of frames with frame 1 given twice (step 2 above: the AVI's empty chunk after frame 0)."""
    first = True
    for chunk in chunks:
        if first and len(chunk) > 1:
            chunk = np.concatenate([chunk[:2], chunk[1:]])
            first = False
        yield chunk


class CropVideo:
    """Step 4 above for one track: BGR uint8 crops (n, 224, 224, 3), fed in order, come back as the
    crop video holds them: read back as ``SyncNetInstance.evaluate`` reads them (default-quality JPEGs,
    ``jpeg``), or decoded (BGR). ``flush()`` gives the frames the encoder still holds at the end."""

    def __init__(self, rate: int = 25, jpeg: bool = True):
        self.rate = rate
        self._encoder = self._decoder = None
        # OpenCV's AVI gives the crops a 1:1 sample aspect ratio, which the read-back passes on
        self._read = JpegRoundTrip(Fraction(rate), Fraction(1)) if jpeg else DisplayConverter("bgr24")
        self._index = 0

    def _open(self, width: int, height: int) -> None:
        enc = av.CodecContext.create("mpeg4", "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.time_base = Fraction(1, self.rate)
        enc.codec_tag = "XVID"
        enc.gop_size, enc.qmin = 12, 3
        enc.bit_rate = enc.bit_rate_tolerance = 2 * self.rate * width * height
        enc.thread_count = 1  # OpenCV passes none: libavcodec's default
        self._encoder, self._decoder = enc, av.CodecContext.create("mpeg4", "r")
        self._decoder.codec_tag = "XVID"  # as the file's tag tells the decoder: Xvid's IDCT
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
    """The packet's bytes alone (zero-padded, as the decoder needs), as an AVI holds them: without the
    side data that would make the decoder drop the encoder's delay, which ffmpeg's command line keeps."""
    if packet is None:
        return None
    bare = av.Packet(packet.size)
    memoryview(bare)[:] = bytes(packet)
    return bare


def read_audio_through_mp3(path: str | Path, sample_rate: int = 16000,
                           limits: DecodeLimits | None = None) -> np.ndarray:
    """Step 5 above: an input's first audio stream, at its own rate and channels, encoded by LAME at
    128 kb/s (the AVI's default audio), decoded, and resampled to ``sample_rate`` mono as ``ffmpeg -ac 1
    -ar 16000 -acodec pcm_s16le`` does; float32 in [-1, 1). ``limits``: as ``media.read_audio``."""
    return isolated_call(limits, _read_audio_through_mp3, Path(path), sample_rate)


def _read_audio_through_mp3(path: Path, sample_rate: int) -> np.ndarray:
    with open_container(path) as container:
        if not container.streams.audio:
            raise MediaError(path, "no audio stream")
        stream = container.streams.audio[0]
        encoder = decoder = None
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        parts = []

        def decode(packets) -> None:
            for packet in packets:
                for frame in decoder.decode(_bare(packet)):
                    frame.pts = None
                    parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))

        convert = None
        for frame in container.decode(stream):
            if encoder is None:
                encoder = av.CodecContext.create("libmp3lame", "w")
                encoder.sample_rate, encoder.layout = frame.sample_rate, frame.layout.name
                names = [f.name for f in encoder.codec.audio_formats]
                encoder.format = frame.format.name if frame.format.name in names else "s16p"
                encoder.time_base = Fraction(1, frame.sample_rate)
                decoder = av.CodecContext.create("mp3float", "r")
                if encoder.format.name != frame.format.name:  # as the command line converts for LAME
                    convert = av.AudioResampler(format=encoder.format.name, layout=frame.layout.name,
                                                rate=frame.sample_rate)
            frame.pts = None
            for ready in convert.resample(frame) if convert else [frame]:
                decode(encoder.encode(ready))
        if encoder is None:
            raise MediaError(path, "audio stream holds no samples")
        decode(encoder.encode(None))
        decode([None])
        parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(parts).astype(np.float32) / np.float32(32768)
