"""Regions for the frame metrics (``--region face|mouth``): one box of fixed size per video, taken
from the ground truth's face analysis and applied to generated and GT frames alike, so both are
cropped (never resampled) at the same place.

- ``face``: a square of side 2 x the median half-size of the main track, centred on the track's
  centre median-filtered over 13 frames (syncnet_python's smoothing, but with the ends repeated
  rather than zero-padded, so the first and last frames do not drift);
- ``mouth``: a box of the median size of the mouth landmarks' extent (48-67) widened by 25% a side,
  centred on the mouth centre, median-filtered over 5 frames.

Frames outside the track (or without mouth landmarks) take the nearest frame's centre. Boxes are
shifted, not shrunk, to stay inside the frame.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import MetricError
from .analysis import FaceData
from .track import median_filter, mouth_box, smoothed_centres

REGIONS = ("full", "face", "mouth")


def _fill(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation over invalid frames, holding the ends."""
    idx = np.arange(len(values))
    return np.interp(idx, idx[valid], values[valid])


def region_boxes(data: FaceData, region: str, height: int, width: int) -> np.ndarray:
    """(T, 4) integer boxes x1, y1, x2, y2 (exclusive ends), all of one size."""
    if region not in ("face", "mouth"):
        raise ValueError(f"region must be 'face' or 'mouth', not {region!r}")
    if region == "face":
        track = data.main_track()
        if track is None:
            raise MetricError("no face track to take the face region from")
        cx, cy, s = smoothed_centres(track, ends="edge").T
        cxs, cys = np.full(data.frames, np.nan), np.full(data.frames, np.nan)
        cxs[track.frames], cys[track.frames] = cx, cy
        valid = np.isfinite(cxs)
        cxs, cys = _fill(cxs, valid), _fill(cys, valid)
        bw = bh = int(round(2 * np.median(s)))
    else:
        have = data.detected & np.isfinite(data.landmarks[:, 48, 0])
        if not have.any():
            raise MetricError("no mouth landmarks to take the mouth region from")
        boxes = np.array([mouth_box(data.landmarks[f]) if have[f] else [np.nan] * 4 for f in range(data.frames)])
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        cxs, cys = _fill(centres[:, 0], have), _fill(centres[:, 1], have)
        if len(cxs) >= 5:
            cxs, cys = median_filter(cxs, 5, "edge"), median_filter(cys, 5, "edge")
        bw = int(round(np.median(boxes[have, 2] - boxes[have, 0])))
        bh = int(round(np.median(boxes[have, 3] - boxes[have, 1])))
    bw, bh = min(max(bw, 11), width), min(max(bh, 11), height)  # at least the SSIM window
    x1 = np.clip(np.round(cxs - bw / 2).astype(int), 0, width - bw)
    y1 = np.clip(np.round(cys - bh / 2).astype(int), 0, height - bh)
    return np.stack([x1, y1, x1 + bw, y1 + bh], axis=1)


def crop_frames(frames, boxes: np.ndarray):
    """Crop each frame (n, H, W, C) (numpy or torch) with its box; all boxes have one size."""

    crops = [frames[i, y1:y2, x1:x2] for i, (x1, y1, x2, y2) in enumerate(boxes)]
    return torch.stack(crops) if isinstance(frames, torch.Tensor) else np.stack(crops)
