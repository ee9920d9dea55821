"""SSIM (supplementary Eq. C), batched in torch, equal to scikit-image's

    skimage.metrics.structural_similarity(gen, gt, channel_axis=-1, data_range=255,
                                          gaussian_weights=True, sigma=1.5, use_sample_covariance=False)

per frame (Wang et al. 2004 settings: 11x11 Gaussian window with sigma 1.5 truncated at 3.5 sigma,
K1 = 0.01, K2 = 0.03, population covariance). scikit-image filters with mode 'reflect' and then drops
a border of 5 pixels; the pixels it keeps never reach the padding, so a 'valid' filter gives the same
values. SSIM is computed per RGB channel and averaged over channels and pixels.

Precision: the Gaussian filtering runs in float32 (oneDNN has no fast float64 path on CPU) on tiles of
the frame, each centred at its own mean, which keeps the cancellation in E[x^2] - E[x]^2 small; tests
hold the result to 1e-6 of scikit-image's float64 on real and on flat saturated frames.
``dtype="float64"`` gives the exact path, much slower on CPU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import Metric, PerFrameMean, register

K1, K2 = 0.01, 0.03
# Output tile side: the valid filter output of a tile depends only on the tile and its halo.
TILE = 32
# Frames filtered at once on CPU: keeps the 15 filtered maps of a chunk in cache.
CPU_SUBBATCH = 4


def gaussian_window(sigma: float, truncate: float, dtype: torch.dtype) -> torch.Tensor:
    """The 1-D kernel of scipy.ndimage.gaussian_filter: radius int(truncate*sigma + 0.5), sum 1."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 / (sigma * sigma) * x * x)
    return (w / w.sum()).to(dtype)


def _tiles(x: torch.Tensor, tile: int, halo: int) -> torch.Tensor:
    """(n, H, W, C) -> (n*ty*tx, tile+halo, tile+halo, C): overlapping tiles whose valid filter output
    is (tile, tile); the frame is padded at the bottom/right so the tiles cover it."""
    n, h, w, c = x.shape
    ty = -(-(h - halo) // tile)
    tx = -(-(w - halo) // tile)
    # Edge replication keeps the padded tiles' means close to their real pixels (outputs there are dropped).
    x = F.pad(x.permute(0, 3, 1, 2), (0, tx * tile + halo - w, 0, ty * tile + halo - h), mode="replicate")
    t = x.unfold(2, tile + halo, tile).unfold(3, tile + halo, tile)  # (n, C, ty, tx, th, tw)
    return t.permute(0, 2, 3, 4, 5, 1).reshape(n * ty * tx, tile + halo, tile + halo, c)


def _ssim_chunk(gen: torch.Tensor, gt: torch.Tensor, window: torch.Tensor, data_range: float) -> torch.Tensor:
    n, h, w, c = gen.shape
    size = window.numel()
    halo = size - 1
    tile = TILE
    ty, tx = -(-(h - halo) // tile), -(-(w - halo) // tile)
    x = _tiles(gen.to(window.dtype), tile, halo)
    y = _tiles(gt.to(window.dtype), tile, halo)
    # Centre x and y of each tile at their own integer means: exact algebra for the valid filter output, and it
    # keeps E[x^2] - E[x]^2 free of float32 cancellation in flat regions far from mid-grey.
    cx = torch.round(x.mean(dim=(1, 2), keepdim=True))
    cy = torch.round(y.mean(dim=(1, 2), keepdim=True))
    x = x.sub_(cx)
    y = y.sub_(cy)
    # (N, th, tw, 5C) is channels-last memory for the (N, 5C, th, tw) view the depthwise conv takes.
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=-1).permute(0, 3, 1, 2)
    k = 5 * c
    kh = window.view(1, 1, 1, size).expand(k, 1, 1, size).contiguous(memory_format=torch.channels_last)
    kv = window.view(1, 1, size, 1).expand(k, 1, size, 1).contiguous(memory_format=torch.channels_last)
    maps = F.conv2d(F.conv2d(maps, kh, groups=k), kv, groups=k)
    mx, my, mxx, myy, mxy = maps.split(c, dim=1)
    vx = mxx - mx * mx
    vy = myy - my * my
    vxy = mxy - mx * my  # covariance is unchanged by centring x and y by different constants
    mx = mx + cx.permute(0, 3, 1, 2)
    my = my + cy.permute(0, 3, 1, 2)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    # Tiles back to frames, cropped to the valid region, then the mean over channels and pixels.
    s = s.reshape(n, ty, tx, c, tile, tile).permute(0, 3, 1, 4, 2, 5).reshape(n, c, ty * tile, tx * tile)
    return s[:, :, : h - halo, : w - halo].to(torch.float64).mean(dim=(1, 2, 3))


def ssim_frames(gen: torch.Tensor, gt: torch.Tensor, *, sigma: float = 1.5, truncate: float = 3.5,
                data_range: float = 255.0, dtype: str = "float32") -> torch.Tensor:
    """Per-frame SSIM of uint8 RGB frames (n, H, W, 3) -> float64 tensor (n,)."""
    if dtype not in ("float32", "float64"):
        raise ValueError(f"ssim dtype must be float32 or float64, not {dtype!r}")
    if gen.shape != gt.shape:
        raise ValueError(f"frame shapes differ: {tuple(gen.shape)} vs {tuple(gt.shape)}")
    window = gaussian_window(sigma, truncate, getattr(torch, dtype)).to(gen.device)
    if min(gen.shape[1:3]) < window.numel():
        raise ValueError(f"frames of {gen.shape[2]}x{gen.shape[1]} are smaller than the "
                         f"{window.numel()}-pixel SSIM window")
    step = CPU_SUBBATCH if gen.device.type == "cpu" else max(1, gen.shape[0])
    return torch.cat([_ssim_chunk(gen[i:i + step], gt[i:i + step], window, data_range)
                      for i in range(0, gen.shape[0], step)])


SSIM = register(Metric(
    name="ssim", label="SSIM", higher_is_better=True, needs=frozenset({"gt_frames"}), scope="video",
    decimals=3,
    description="structural similarity per frame, averaged (= skimage, gaussian 11x11 sigma 1.5, data_range 255)",
    defaults={"sigma": 1.5, "truncate": 3.5, "data_range": 255.0, "dtype": "float32"},
    make_accumulator=lambda params, device: PerFrameMean(ssim_frames, params),
))
