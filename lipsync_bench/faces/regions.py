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

- ``face-box`` (TalkLip's ``visual_quality.py``): each frame's own highest-scoring GT detection, clipped
  at 0 and truncated to whole pixels, without tracking or smoothing; a frame without a detection takes
  a centred square of side ``fallback``. These boxes differ in size, so their crops are resized.

``crop_resized`` resizes crops to a square size with OpenCV (as the peer scripts do).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..errors import MetricError
from .analysis import FaceData
from .settings import INTERPOLATIONS, REGIONS  # noqa: F401 - REGIONS: API
from .track import median_filter, mouth_box, smoothed_centres


def _fill(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation over invalid frames, holding the ends."""
    idx = np.arange(len(values))
    return np.interp(idx, idx[valid], values[valid])


def region_boxes(data: FaceData, region: str, height: int, width: int, fallback: int = 96) -> np.ndarray:
    """(T, 4) integer boxes x1, y1, x2, y2 (exclusive ends): all of one size for "face" and "mouth",
    each frame's own for "face-box"."""
    if region == "face-box":
        return detection_boxes(data, height, width, fallback)
    if region not in ("face", "mouth"):
        raise ValueError(f"region must be 'face', 'mouth' or 'face-box', not {region!r}")
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


def detection_boxes(data: FaceData, height: int, width: int, fallback: int = 96) -> np.ndarray:
    """Each frame's top detection as TalkLip takes it: clipped at 0, truncated to int; the centred
    ``fallback`` square where there is none."""
    if data.top_boxes is None:
        raise MetricError("the face analysis holds no per-frame detections (an older cache): analyse it again")
    top = data.top_boxes
    found = np.isfinite(top).all(axis=1)
    boxes = np.zeros((data.frames, 4), dtype=np.int64)
    boxes[found] = np.clip(top[found], 0, None).astype(np.int64)  # int() of non-negative values: truncation
    y0, x0 = int((height - fallback) / 2), int((width - fallback) / 2)
    boxes[~found] = [x0, y0, x0 + fallback, y0 + fallback]
    return boxes


def crop_resized(frames: np.ndarray, boxes: np.ndarray, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """Crop each frame (n, H, W, C) with its box (numpy slicing: ends past the frame are cut) and
    resize the crop to ``size`` x ``size`` with OpenCV."""
    out = np.empty((len(frames), size, size, frames.shape[-1]), dtype=frames.dtype)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        crop = frames[i, max(y1, 0):y2, max(x1, 0):x2]
        if crop.size == 0:
            raise MetricError(f"frame {i}: an empty face box ({x1}, {y1}, {x2}, {y2})")
        out[i] = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=INTERPOLATIONS[interpolation])
    return out


def crop_frames(frames, boxes: np.ndarray):
    """Crop each frame (n, H, W, C) (numpy or torch) with its box; all boxes have one size."""

    crops = [frames[i, y1:y2, x1:x2] for i, (x1, y1, x2, y2) in enumerate(boxes)]
    return torch.stack(crops) if isinstance(frames, torch.Tensor) else np.stack(crops)
