"""IFC, inter-frame consistency (supplementary Eq. G): how differently the generated video changes
from frame to frame than the ground truth does.

    d_t = (b_t - b_{t-1}) - (b^_t - b^_{t-1})      for t = 2..T, b = GT frame, b^ = generated frame

The paper writes IFC = sum_t ||d_t||_2 and gives no scale; its values (0.2-0.35 on HDTF) cannot be
reproduced without its code. This implementation makes every choice a parameter, recorded in the
protocol of each result:

- ``scale`` (default 255): pixel values are divided by it, so differences are in [0, 1] units;
- ``norm``: ``"rms"`` (default) = ||d_t||_2 / sqrt(H*W*3), the root-mean-square per-pixel difference,
  independent of resolution; ``"l2"`` = the plain norm ||d_t||_2 of Eq. G;
- ``reduce``: ``"mean"`` (default) over the T-1 frame pairs, independent of clip length; ``"sum"`` as
  in Eq. G.

The defaults make IFC comparable across datasets and clip lengths. Lower is better; identical videos
give 0. Differences of uint8 frames are integers, summed exactly.
"""
from __future__ import annotations

import torch

from ..errors import MetricError
from .declarations import NORMS, REDUCTIONS
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue, frames_per_step


def ifc_pairs(gen: torch.Tensor, gt: torch.Tensor, *, scale: float = 255.0, norm: str = "rms") -> torch.Tensor:
    """||d_t|| (Eq. G) for t = 2..n, in units of ``scale``.

    Args:
        gen: generated frames, uint8 (n, H, W, C), n >= 2.
        gt: ground-truth frames of the same shape.
        scale: pixel values are divided by it.
        norm: "rms" (the per-pixel root mean square of d_t) or "l2" (its plain norm).

    Returns:
        float64 tensor (n - 1,).

    Example:
        >>> import torch
        >>> gt = torch.zeros(3, 2, 2, 3, dtype=torch.uint8)
        >>> gen = gt.clone(); gen[1] = 51  # a one-frame flash of 51/255 = 0.2
        >>> ifc_pairs(gen, gt).tolist()
        [0.2, 0.2]
    """
    if norm not in NORMS:
        raise ValueError(f"ifc norm must be one of {NORMS}, not {norm!r}")
    step = frames_per_step(gen)
    # pairs (t-1, t) for t in [i+1, i+step]: consecutive steps overlap by one frame
    sq = torch.cat([_pair_sse(gen[i:i + step + 1], gt[i:i + step + 1])
                    for i in range(0, gen.shape[0] - 1, step)]).to(torch.float64)
    if norm == "rms":
        sq = sq / gen[0].numel()
    return torch.sqrt(sq) / scale


def _pair_sse(gen: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    g = gen.to(torch.int32)
    r = gt.to(torch.int32)
    d = (r[1:] - r[:-1]) - (g[1:] - g[:-1])
    return (d * d).flatten(1).sum(dim=1, dtype=torch.int64)


class _IfcAccumulator(Accumulator):
    def __init__(self, scale: float, norm: str, reduce: str):
        if reduce not in REDUCTIONS:
            raise ValueError(f"ifc reduce must be one of {REDUCTIONS}, not {reduce!r}")
        self.scale, self.norm, self.reduce = scale, norm, reduce
        self.prev: tuple[torch.Tensor, torch.Tensor] | None = None
        self.total = 0.0
        self.pairs = 0

    def update(self, batch: FrameBatch) -> None:
        gen, gt = batch.gen, batch.gt
        if self.prev is not None:  # carry the last frame over the chunk boundary
            gen = torch.cat([self.prev[0], gen])
            gt = torch.cat([self.prev[1], gt])
        if gen.shape[0] >= 2:
            values = ifc_pairs(gen, gt, scale=self.scale, norm=self.norm)
            self.total += float(values.sum())
            self.pairs += values.numel()
        self.prev = (gen[-1:], gt[-1:])

    def result(self) -> MetricValue:
        if self.pairs == 0:
            raise MetricError("IFC needs at least 2 frames")
        value = self.total / self.pairs if self.reduce == "mean" else self.total
        return MetricValue(value, self.pairs + 1)


def make_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """IFC's accumulator (``declarations.IFC``)."""
    return _IfcAccumulator(**params)
