"""What the identity-similarity metrics (CSIM with dlib's or ArcFace's embeddings) share: the cosine
similarity of the generated and GT frames' face embeddings, averaged over the frames where both videos
have a detected face."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import MetricError
from ..faces import require_faces
from ..media import estimate_frame_count
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue

#: frames (n, H, W, 3) uint8 RGB, face boxes (n, 4), 68 landmarks (n, 68, 2) -> embeddings (n, d)
Embedder = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (n, d) arrays."""
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


class IdentityAccumulator(Accumulator):
    """Embeds the full frames of both videos where both have a face (the face stage's boxes and
    landmarks, read before the first frames) and averages the cosine similarities."""

    def __init__(self, ctx: MetricContext, embed: Embedder, frames: int = 0):
        self.ctx, self.embed = ctx, embed
        self.similarities: list[np.ndarray] = []
        self.frames = 0
        self.data = None
        self.wanted = None  # with ``frames``: at most that many frames, spread evenly (as FID's option)
        if frames:
            total = estimate_frame_count(ctx.gen, ctx.fps, ctx.decode) or frames
            self.wanted = np.unique(np.round(np.linspace(0, total - 1, min(frames, total))).astype(int))

    def update(self, batch: FrameBatch) -> None:
        if self.data is None:
            self.data = [self.ctx.faces(path) for path in (self.ctx.gen, self.ctx.gt)]
            for data, path in zip(self.data, (self.ctx.gen, self.ctx.gt), strict=True):
                require_faces(data, path)
        gen, gt = self.data
        n = len(batch.gen_full)
        idx = np.arange(batch.start, batch.start + n)
        if self.wanted is not None:
            idx = idx[np.isin(idx, self.wanted)]
        self.frames += len(idx)
        idx = idx[idx < min(gen.frames, gt.frames)]
        both = idx[gen.detected[idx] & gt.detected[idx]]
        if len(both):
            local = both - batch.start
            a = self.embed(batch.gen_full[local].cpu().numpy(), gen.boxes[both], gen.landmarks[both])
            b = self.embed(batch.gt_full[local].cpu().numpy(), gt.boxes[both], gt.landmarks[both])
            self.similarities.append(cosine_similarity(a, b))

    def result(self) -> MetricValue:
        values = np.concatenate(self.similarities) if self.similarities else np.zeros(0)
        if not len(values):
            raise MetricError("no frame has a face in both the generated and the GT video")
        warnings = [] if len(values) == self.frames else [
            f"CSIM over {len(values)} of {self.frames} frames (faces found in both)"]
        return MetricValue(float(values.mean()), len(values), warnings)
