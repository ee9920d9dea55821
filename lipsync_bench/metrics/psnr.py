"""PSNR (supplementary Eq. D/E) per frame, averaged over frames; equal to scikit-image's
``peak_signal_noise_ratio(gt, gen, data_range=255)`` per frame.

MSE is taken over all pixels and the three RGB channels. The squared differences of uint8 frames are
integers, summed exactly in int64, so the only rounding is in the final division and logarithm.
A frame identical to its GT has MSE 0 and PSNR inf, as in scikit-image; the video's mean is then inf
and the result carries a warning (a generated video identical to GT is usually a wrong folder).
"""
from __future__ import annotations

import torch

from .registry import Metric, Param, PerFrameMean, frames_per_step, register


def psnr_frames(gen: torch.Tensor, gt: torch.Tensor, *, data_range: float = 255.0) -> torch.Tensor:
    """Per-frame PSNR in dB, equal to scikit-image's ``peak_signal_noise_ratio(gt, gen, data_range=255)``.

    Args:
        gen: generated frames, uint8 (n, H, W, C).
        gt: ground-truth frames of the same shape.
        data_range: the pixels' value range.

    Returns:
        float64 tensor (n,); inf for a frame identical to its GT.

    Example:
        >>> import torch
        >>> gt = torch.full((1, 4, 4, 3), 100, dtype=torch.uint8)
        >>> psnr_frames(gt + 1, gt).tolist()  # MSE 1: 10 log10(255^2)
        [48.1308036086791]
    """
    if gen.shape != gt.shape:
        raise ValueError(f"frame shapes differ: {tuple(gen.shape)} vs {tuple(gt.shape)}")
    step = frames_per_step(gen)
    sse = torch.cat([_sse(gen[i:i + step], gt[i:i + step]) for i in range(0, gen.shape[0], step)])
    mse = sse.to(torch.float64) / gen[0].numel()
    return 10 * torch.log10(data_range * data_range / mse)


def _sse(gen: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    diff = gen.to(torch.int32) - gt.to(torch.int32)
    return (diff * diff).flatten(1).sum(dim=1, dtype=torch.int64)


PSNR = register(Metric(
    name="psnr", label="PSNR", higher_is_better=True, needs=frozenset({"gt_frames"}), scope="video",
    decimals=3,
    description="peak signal-to-noise ratio in dB per frame, averaged (= skimage, data_range 255)",
    params={"data_range": Param(255.0, "value range of the pixels", min=1e-9, defines=True)},
    make_accumulator=lambda params, ctx: PerFrameMean(psnr_frames, params),
))
