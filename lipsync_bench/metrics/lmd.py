"""LMD, mouth landmark distance (Chen et al. 2019): the mean Euclidean distance between the 20 mouth
landmarks (48-67 of the 68-point layout) of generated and GT frames, averaged over the frames where
both have a detected face (the fraction used is reported as a warning when it is below 100%).

Coordinate frame (parameter ``normalize``): ``"none"`` (default) = pixels of the evaluated frames,
as the paper's tables are usually computed — so LMD depends on the frame size, which is why the
protocol records it per video in the row's frame count and the run's inputs; ``"face"`` = pixels
after scaling each frame so that the GT face box is 256 pixels wide, comparable across datasets.

Landmarks come from the face pipeline (``lipsync_bench.faces``), cached per video: a second run
with other metrics does not detect faces again.
"""
from __future__ import annotations

import numpy as np

from ..errors import MetricError
from ..faces import FaceAnalyzer, FaceData, cache_file, require_faces
from .registry import Accumulator, FrameBatch, Metric, MetricContext, MetricValue, register

MOUTH = slice(48, 68)
NORMALIZED_FACE = 256.0


def lmd_frames(gen: FaceData, gt: FaceData, normalize: str = "none") -> np.ndarray:
    """Per-frame LMD over frames where both videos have landmarks (NaN elsewhere)."""
    n = min(gen.frames, gt.frames)
    d = np.linalg.norm(gen.landmarks[:n, MOUTH] - gt.landmarks[:n, MOUTH], axis=-1).mean(axis=1)
    if normalize == "face":
        width = gt.boxes[:n, 2] - gt.boxes[:n, 0]
        d = d * NORMALIZED_FACE / width
    elif normalize != "none":
        raise ValueError(f"lmd normalize must be 'none' or 'face', not {normalize!r}")
    return d


class _LmdAccumulator(Accumulator):
    def __init__(self, params: dict, ctx: MetricContext):
        self.normalize = params["normalize"]
        self.sides = {}
        for side, path in (("gen", ctx.gen), ("gt", ctx.gt)):
            analyzer = FaceAnalyzer(params["landmarker"])
            file = cache_file(ctx.cache_dir, path, ctx.fps, analyzer.params())
            self.sides[side] = (path, file, None if file.is_file() else analyzer)

    def update(self, batch: FrameBatch) -> None:
        for side, frames in (("gen", batch.gen_full), ("gt", batch.gt_full)):
            analyzer = self.sides[side][2]
            if analyzer is not None:
                analyzer.update(frames.cpu().numpy())

    def result(self) -> MetricValue:
        data = {}
        for side, (path, file, analyzer) in self.sides.items():
            if analyzer is None:
                data[side] = FaceData.load(file)
            else:
                data[side] = analyzer.result()
                data[side].save(file)
            require_faces(data[side], path)
        d = lmd_frames(data["gen"], data["gt"], self.normalize)
        used = np.isfinite(d)
        if not used.any():
            raise MetricError("no frame has a face in both the generated and the GT video")
        warnings = [] if used.all() else [f"LMD over {used.sum()} of {len(d)} frames (faces found in both)"]
        return MetricValue(float(d[used].mean()), int(used.sum()), warnings)


def _available(params: dict) -> str | None:
    from ..errors import UnavailableError
    from ..faces import get_backend

    try:
        get_backend("auto")
    except UnavailableError as exc:
        return str(exc)
    return None


LMD = register(Metric(
    name="lmd", label="LMD", higher_is_better=False, needs=frozenset({"gt_frames", "landmarks"}), scope="video",
    decimals=3,
    description="mouth landmark distance: mean distance of landmarks 48-67, pixels, over frames",
    defaults={"normalize": "none", "landmarker": "auto"},
    make_accumulator=lambda params, ctx: _LmdAccumulator(params, ctx),
    available=_available,
    protocol_extra=lambda params: {"face_pipeline": FaceAnalyzer(params["landmarker"]).params()},
    uses_region=False,
))
