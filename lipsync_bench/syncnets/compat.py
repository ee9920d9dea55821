"""``--compat syncnet_python``: the lossy steps of syncnet_python's ``SyncNetInstance.evaluate``,
reproduced in memory so that LSE numbers can be matched to published ones.

The reference extracts the frames of its (cropped) video with ``ffmpeg -i VIDEO -threads 1 -f image2
%06d.jpg`` and reads them back with ``cv2.imread``; the audio with ``ffmpeg -ac 1 -vn -acodec pcm_s16le
-ar 16000`` (libswresample; ``media.read_audio`` gives the same samples). The JPEG step is what the
default mode leaves out: ffmpeg's MJPEG encoder at its defaults (200 kb/s rate control, qscale 2-31,
one thread) costs a few grey levels per pixel and moves LSE by a few hundredths.

``JpegRoundTrip`` encodes frames as that command does — same libavcodec encoder and settings, full-range
4:2:0 YUV, the frames of ffmpeg's constant-rate output in order (repeats included, since the encoder's
rate control depends on the sequence) — and decodes the JPEG bytes with OpenCV as ``cv2.imread`` does.
The bytes equal ffmpeg 9's files except for the encoder version string in the JPEG comment.
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

COMPAT_MODES = ("none", "syncnet_python")


class JpegRoundTrip:
    """Callable on ``av.VideoFrame``s (for ``media.iter_frames(convert=...)``) or RGB arrays
    (``from_rgb``): returns each frame as ``cv2.imread`` reads the JPEG ffmpeg writes of it, BGR uint8."""

    def __init__(self, rate: Fraction = Fraction(25)):
        self.rate = Fraction(rate)
        self._encoder = None
        self._index = 0

    def _open(self, width: int, height: int) -> None:
        enc = av.CodecContext.create("mjpeg", "w")
        enc.width, enc.height = width, height
        enc.pix_fmt = "yuvj420p"  # what ffmpeg negotiates for MJPEG from 4:2:0 input (full range)
        enc.time_base = 1 / self.rate
        enc.framerate = self.rate
        enc.bit_rate = 200_000  # libavcodec's default, which the reference's command keeps
        enc.thread_count = 1  # the command's -threads 1
        self._encoder = enc

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        import cv2

        if self._encoder is None:
            self._open(frame.width, frame.height)
        yuv = frame.reformat(format="yuvj420p")
        yuv.pts, yuv.time_base = self._index, self._encoder.time_base
        yuv.pict_type = av.video.frame.PictureType.NONE
        self._index += 1
        packets = self._encoder.encode(yuv)
        if len(packets) != 1:
            raise RuntimeError(f"MJPEG encoder returned {len(packets)} packets for one frame")
        return cv2.imdecode(np.frombuffer(bytes(packets[0]), np.uint8), cv2.IMREAD_COLOR)

    def from_rgb(self, image: np.ndarray) -> np.ndarray:
        return self(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))
