"""LMD, mouth landmark distance (Chen et al. 2019): the mean Euclidean distance between the 20 mouth
landmarks (48-67 of the 68-point layout) of generated and GT frames, averaged over the frames where
both have a detected face (the fraction used is reported as a warning when it is below 100%).

Coordinate frame (parameter ``normalize``): ``"none"`` (default) = pixels of the evaluated frames,
as the paper's tables are usually computed — so LMD depends on the frame size, which is why the
protocol records it per video in the row's frame count and the run's inputs; ``"face"`` = pixels
after scaling each frame so that the GT face box is 256 pixels wide, comparable across datasets.

Two further defining parameters reproduce the ViCo challenge's ``compute_lmd.py``:

- ``distance``: ``"l2"`` (default) = the Euclidean distance of each point, averaged over the 20 points;
  ``"l1-mean"`` = the mean absolute difference of the x and y coordinates over the 20 points (ViCo);
- ``frames``: ``"both"`` (default) = the frames where both videos have landmarks; ``"gt"`` = the frames
  where the GT has landmarks, and a generated frame without landmarks among them is an error for the
  video (ViCo's script stops there).

Landmarks come from the face stage of the pipeline (``lipsync_bench.faces``: one analysis per input
per run, with the protocol's landmarker, cached): LMD only reads them.
"""
from __future__ import annotations

import numpy as np

from ..errors import MetricError
from ..faces import FaceData, require_faces
from .declarations import LMD_DISTANCES as DISTANCES
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue, per_frame_details

MOUTH = slice(48, 68)
NORMALIZED_FACE = 256.0


def lmd_frames(gen: FaceData, gt: FaceData, normalize: str = "none", distance: str = "l2") -> np.ndarray:
    """Per-frame LMD over frames where both videos have landmarks (NaN elsewhere)."""
    n = min(gen.frames, gt.frames)
    delta = gen.landmarks[:n, MOUTH] - gt.landmarks[:n, MOUTH]
    if distance == "l2":
        d = np.linalg.norm(delta, axis=-1).mean(axis=1)
    elif distance == "l1-mean":
        d = np.abs(delta).mean(axis=(1, 2))
    else:
        raise ValueError(f"lmd distance must be one of {DISTANCES}, not {distance!r}")
    if normalize == "face":
        width = gt.boxes[:n, 2] - gt.boxes[:n, 0]
        d = d * NORMALIZED_FACE / width
    elif normalize != "none":
        raise ValueError(f"lmd normalize must be 'none' or 'face', not {normalize!r}")
    return d


class _LmdAccumulator(Accumulator):
    def __init__(self, params: dict, ctx: MetricContext):
        self.params, self.ctx = params, ctx

    def update(self, batch: FrameBatch) -> None:
        pass  # the face stage sees the frames; LMD needs only its landmarks

    def result(self) -> MetricValue:
        data = {}
        for side, path in (("gen", self.ctx.gen), ("gt", self.ctx.gt)):
            data[side] = self.ctx.faces(path)
            require_faces(data[side], path)
        d = lmd_frames(data["gen"], data["gt"], self.params["normalize"], self.params["distance"])
        used = np.isfinite(d)
        if self.params["frames"] == "gt":
            with_gt = np.isfinite(data["gt"].landmarks[:len(d), 48, 0])
            missing = np.flatnonzero(with_gt & ~used)
            if len(missing):
                raise MetricError(f"{self.ctx.gen}: frame {missing[0]} has GT landmarks but no generated ones "
                                  f"({len(missing)} such frames; lmd.frames=gt counts every frame with GT landmarks)")
        if not used.any():
            raise MetricError("no frame has a face in both the generated and the GT video")
        warnings = [] if used.all() else [f"LMD over {used.sum()} of {len(d)} frames (faces found in both)"]
        return MetricValue(float(d[used].mean()), int(used.sum()), warnings, details=per_frame_details(d))


def make_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """LMD's accumulator (``declarations.LMD``): the landmarks of both videos, at the end."""
    return _LmdAccumulator(params, ctx)
