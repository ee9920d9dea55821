"""Face tracks from per-frame detections, and the crops taken from them — the syncnet_python
procedure (``run_pipeline.py``), with its thresholds as parameters:

- linking: a track grows greedily through the frames, taking a detection whose IoU with the track's
  last box exceeds ``iou`` (0.5) within ``max_missed`` (25) frames of it; detections left over start
  further tracks;
- a track is kept if it has more than ``min_track`` detections and its mean box width or height
  exceeds ``min_face_size`` pixels (syncnet_python: 100 and 100; here 5 and 50 by default, so short
  clips and small faces are kept — pass the originals to reproduce it);
- boxes are interpolated linearly over missed frames, then the crop centre and half-size
  (max(w, h) / 2) are median-filtered with a kernel of 13 (zero-padded at the ends, as scipy's
  ``medfilt``, and so syncnet_python, does);
- the main speaker is the track with the most detections (ties: the larger face).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import signal

from .settings import DEFAULT_TRACK, LINKINGS, TrackParams


@dataclass
class Track:
    """A face track over frames ``start .. start + len(boxes) - 1``.

    ``boxes``: (n, 4) interpolated x1, y1, x2, y2; ``detected``: (n,) whether the frame had its own
    detection; ``det_index``: (n,) which detection of the frame (-1 where interpolated).
    """

    start: int
    boxes: np.ndarray
    detected: np.ndarray
    det_index: np.ndarray

    @property
    def frames(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self.boxes))


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def link_tracks(detections: list[np.ndarray], params: TrackParams = DEFAULT_TRACK, linking: str = "joonson",
                order: str = "longest", first_frame: int = 0) -> list[Track]:
    """Tracks from per-frame detections ((k, >=4) arrays, one per frame, best first), each pass of the
    frames building one track from the first detection left, as syncnet_python's ``track_shot`` does:
    a detection within ``max_missed`` frames of the track's last one and overlapping it above ``iou``
    continues it. Tracks of at most ``min_track`` detections, or whose mean box side is at most
    ``min_face_size``, are dropped; the boxes are interpolated over the frames without a detection.
    ``order``: "longest" first, or as "found" (the reference's order); frame indices start at
    ``first_frame`` (a shot's first frame). ``linking`` (``settings.LINKINGS``): "joonson"
    (syncnet_python's ``run_pipeline.py``: a detection that overlaps too little is passed over and the
    frame's next one tried) or "first-face" (the ``syncnet-python`` package's ``_track``: the frame's
    first remaining detection continues the track or ends the frame's scan, so beside a higher-scoring
    other face the frame counts as missed)."""
    if linking not in LINKINGS:
        raise ValueError(f"linking must be one of {LINKINGS}, not {linking!r}")
    left = [list(range(len(d))) for d in detections]
    tracks = []
    while True:
        members: list[tuple[int, int]] = []  # (frame, detection index)
        for f, idx in enumerate(left):
            for j in list(idx):
                if not members:
                    members.append((f, j))
                    idx.remove(j)
                    if linking == "first-face":
                        break  # the reference goes on with the face after next, which cannot overlap it
                elif f - members[-1][0] <= params.max_missed and \
                        iou(detections[f][j], detections[members[-1][0]][members[-1][1]]) > params.iou:
                    members.append((f, j))
                    idx.remove(j)
                    break  # one detection a frame
                elif linking == "first-face" or f - members[-1][0] > params.max_missed:
                    break
        if not members:
            break
        if len(members) <= params.min_track:
            continue
        frames = np.array([f for f, _ in members])
        boxes = np.array([detections[f][j][:4] for f, j in members], dtype=np.float64)
        span = np.arange(frames[0], frames[-1] + 1)
        full = np.stack([np.interp(span, frames, boxes[:, k]) for k in range(4)], axis=1)
        size = max(np.mean(full[:, 2] - full[:, 0]), np.mean(full[:, 3] - full[:, 1]))
        if size <= params.min_face_size:
            continue
        detected = np.isin(span, frames)
        det_index = np.full(len(span), -1)
        det_index[frames - frames[0]] = [j for _, j in members]
        tracks.append(Track(first_frame + int(frames[0]), full, detected, det_index))
    if order == "longest":
        tracks.sort(key=main_track_key, reverse=True)
    return tracks


def main_track_key(track: Track) -> tuple[int, float]:
    """The main speaker's track is the one with the most detections (then the widest)."""
    return int(track.detected.sum()), float(np.mean(track.boxes[:, 2] - track.boxes[:, 0]))


def smoothed_centres(track: Track, kernel: int = 13, ends: str = "zeros") -> np.ndarray:
    """(n, 3) crop centre x, centre y and half-size s = max(w, h) / 2, median-filtered.

    ``ends="zeros"`` pads with zeros as scipy's ``medfilt`` and so syncnet_python do (the first and last
    kernel//2 values are pulled towards the smaller values); ``"edge"`` repeats the end values instead.
    """
    b = track.boxes
    s = np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2
    x = (b[:, 0] + b[:, 2]) / 2
    y = (b[:, 1] + b[:, 3]) / 2
    k = min(kernel, len(b) if len(b) % 2 else len(b) - 1)
    if k >= 3:
        s, x, y = (median_filter(v, k, ends) for v in (s, x, y))
    return np.stack([x, y, s], axis=1)


def median_filter(values: np.ndarray, kernel: int, ends: str = "zeros") -> np.ndarray:
    if ends == "zeros":
        return signal.medfilt(values, kernel_size=kernel)
    if ends != "edge":
        raise ValueError(f"ends must be 'zeros' or 'edge', not {ends!r}")
    half = kernel // 2
    return signal.medfilt(np.pad(values, half, mode="edge"), kernel_size=kernel)[half:len(values) + half]


def crop_window(cx: float, cy: float, s: float, crop_scale: float = 0.4) -> tuple[int, int, int, int, int]:
    """The rows y0:y1 and columns x0:x1 (frame pixels, possibly outside the frame) that ``syncnet_crop``
    takes, with its padding: (y0, y1, x0, x1, pad)."""
    pad = int(s * (1 + 2 * crop_scale))
    my, mx = cy + pad, cx + pad
    return (int(my - s) - pad, int(my + s * (1 + 2 * crop_scale)) - pad,
            int(mx - s * (1 + crop_scale)) - pad, int(mx + s * (1 + crop_scale)) - pad, pad)


def syncnet_crop(frame: np.ndarray, cx: float, cy: float, s: float, crop_scale: float = 0.4,
                 size: int = 224) -> np.ndarray:
    """syncnet_python's face crop: pad by int(s*(1+2*cs)) with value 110, take rows
    [cy - s, cy + s(1+2cs)) and columns [cx - s(1+cs), cx + s(1+cs)), resize to size x size (bilinear)."""
    y0, y1, x0, x1, pad = crop_window(cx, cy, s, crop_scale)
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
    face = padded[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
    return cv2.resize(face, (size, size))


def mouth_box(landmarks: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """x1, y1, x2, y2 around the mouth points 48-67, widened by ``margin`` of their extent a side."""
    mouth = landmarks[48:68]
    lo, hi = mouth.min(axis=0), mouth.max(axis=0)
    pad = (hi - lo) * margin
    return np.concatenate([lo - pad, hi + pad])
