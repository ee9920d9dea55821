"""Shot boundaries as the field's LSE pipelines find them: PySceneDetect's ``ContentDetector`` (its
defaults: threshold 27, scenes of at least 15 frames, cuts closer than that merged) fed the frames the
face stage sees, one by one, as its ``SceneManager`` feeds them: downscaled to about 256 pixels across
(the frame's larger side divided by 256, OpenCV's bilinear resize, sizes rounded), in BGR, numbered
from 0. Face tracks never cross a shot boundary; a video without a cut is one shot.

The package's own code scores the frames (``scenedetect`` from PyPI, 0.6.x: the versions MoChaBench,
LatentSync, ``syncnet-python`` and syncnet_python's current environment pin); only the decoding is
lipsync-bench's, once for every stage. syncnet_python's original ``requirements.txt`` pinned 0.5.1,
whose defaults differ (threshold 30, downscaling by an integer factor); it no longer runs beside
OpenCV 4.5.4 or later. The version a run used is recorded with its face stage.
"""
from __future__ import annotations

from importlib import metadata

import cv2
import numpy as np
from scenedetect import ContentDetector

#: The largest frame side PySceneDetect's SceneManager scales frames down to (its DEFAULT_MIN_WIDTH).
SCENE_WIDTH = 256


class ContentShots:
    """Streams a video's RGB frames through PySceneDetect's ContentDetector; ``shots(n)`` gives the
    shots of the first ``n`` frames as (start, end) frame ranges, end excluded.

    ``skip``: the index of a frame the scene detector never saw (the frame syncnet_python's JPEG step
    repeats, absent from the video.avi its scene detection reads): it is left out, so that the cuts and
    the shots' ends are numbered as the reference numbers them (and applied, as the reference applies
    them, to every frame)."""

    def __init__(self, skip: int | None = None):
        self.detector = ContentDetector()
        self.cuts: list[int] = []
        self.index = 0  # frames the detector has seen
        self.seen = 0  # frames given
        self.skip = skip

    @staticmethod
    def params() -> dict:
        return {"detector": "pyscenedetect ContentDetector", "version": metadata.version("scenedetect"),
                "threshold": 27.0, "min_scene_len": 15, "width": SCENE_WIDTH}

    def update(self, frames: np.ndarray) -> None:
        for frame in frames:
            self.seen += 1
            if self.seen - 1 == self.skip:
                continue
            self.cuts += self.detector.process_frame(self.index, _scene_frame(frame))
            self.index += 1

    def shots(self, frames: int) -> list[tuple[int, int]]:
        frames = min(frames, self.index)  # the frames the detector saw
        cuts = sorted(c for c in self.cuts if 0 < c < frames)
        edges = [0, *cuts, frames]
        return [(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]


def _scene_frame(rgb: np.ndarray) -> np.ndarray:
    """A frame as the SceneManager passes it to its detectors: BGR, scaled down by larger side / 256."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    height, width = bgr.shape[:2]
    side = max(width, height)
    if side <= SCENE_WIDTH:
        return bgr
    factor = side / float(SCENE_WIDTH)
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
