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

``downsample="piq"`` reproduces piq's ``ssim`` (the ViCo challenge's scripts): each frame is first
average-pooled by f = max(1, round(min(H, W) / 256)) (``avg_pool2d``, kernel and stride f), then SSIM as
above; piq's own float32 sums move its values by up to about 1e-5 from this exact computation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .declarations import DOWNSAMPLING
from .streaming import MetricContext, PerFrameMean, frames_per_step

K1, K2 = 0.01, 0.03
# Output tile side: the valid filter output of a tile depends only on the tile and its halo.
TILE = 32
# Tile pixels filtered at once on CPU: keeps the 15 maps of a group (~14 MB) below glibc's mmap
# threshold, so large frames do not cost a page-zeroing mmap/munmap per temporary.
CPU_TILE_PIXELS_AT_ONCE = 230_000


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


def _ssim_tiles(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float) -> torch.Tensor:
    """SSIM map (N, C, tile, tile) of float tiles (N, tile+halo, tile+halo, C)."""
    size = window.numel()
    n, th, tw, c = x.shape
    # Centre x and y of each tile at their own integer means: exact algebra for the valid filter output,
    # and it keeps E[x^2] - E[x]^2 free of float32 cancellation in flat regions far from mid-grey.
    cx = torch.round(x.mean(dim=(1, 2), keepdim=True))
    cy = torch.round(y.mean(dim=(1, 2), keepdim=True))
    # The five maps side by side, (N, th, tw, 5C): channels-last memory for the depthwise conv.
    maps = torch.empty((n, th, tw, 5 * c), dtype=x.dtype, device=x.device)
    xc, yc = maps[..., :c], maps[..., c:2 * c]
    torch.sub(x, cx, out=xc)
    torch.sub(y, cy, out=yc)
    torch.mul(xc, xc, out=maps[..., 2 * c:3 * c])
    torch.mul(yc, yc, out=maps[..., 3 * c:4 * c])
    torch.mul(xc, yc, out=maps[..., 4 * c:])
    k = 5 * c
    kh = window.view(1, 1, 1, size).expand(k, 1, 1, size).contiguous(memory_format=torch.channels_last)
    kv = window.view(1, 1, size, 1).expand(k, 1, size, 1).contiguous(memory_format=torch.channels_last)
    maps = F.conv2d(F.conv2d(maps.permute(0, 3, 1, 2), kh, groups=k), kv, groups=k)
    # One copy to a map-major layout makes every map contiguous for the elementwise formula.
    mx, my, mxx, myy, mxy = maps.permute(1, 0, 2, 3).contiguous().view(5, c, n, *maps.shape[2:]).unbind(0)
    vx = mxx.sub_(mx * mx)
    vy = myy.sub_(my * my)
    vxy = mxy.sub_(mx * my)  # covariance is unchanged by centring x and y by different constants
    mx = mx.add_(cx.permute(3, 0, 1, 2))
    my = my.add_(cy.permute(3, 0, 1, 2))
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    num = (mx * my).mul_(2).add_(c1).mul_(vxy.mul_(2).add_(c2))
    den = mx.mul_(mx).add_(my.mul_(my)).add_(c1).mul_(vx.add_(vy).add_(c2))
    return num.div_(den).permute(1, 0, 2, 3)


def _ssim_chunk(gen: torch.Tensor, gt: torch.Tensor, window: torch.Tensor, data_range: float,
                tiles_at_once: int) -> torch.Tensor:
    n, h, w, c = gen.shape
    halo = window.numel() - 1
    ty, tx = -(-(h - halo) // TILE), -(-(w - halo) // TILE)
    x = _tiles(gen.to(window.dtype), TILE, halo)
    y = _tiles(gt.to(window.dtype), TILE, halo)
    s = torch.empty((x.shape[0], c, TILE, TILE), dtype=window.dtype, device=gen.device)
    for i in range(0, x.shape[0], tiles_at_once):  # bounded temporaries for large frames
        s[i:i + tiles_at_once] = _ssim_tiles(x[i:i + tiles_at_once], y[i:i + tiles_at_once], window, data_range)
    # Tiles back to frames, cropped to the valid region, then the mean over channels and pixels.
    s = s.reshape(n, ty, tx, c, TILE, TILE).permute(0, 3, 1, 4, 2, 5).reshape(n, c, ty * TILE, tx * TILE)
    return s[:, :, : h - halo, : w - halo].to(torch.float64).mean(dim=(1, 2, 3))


def piq_downsample(frames: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """piq's pre-SSIM average pooling of (n, H, W, C) frames by max(1, round(min(H, W) / 256))."""
    f = max(1, round(min(frames.shape[1:3]) / 256))
    if f == 1:
        return frames
    pooled = F.avg_pool2d(frames.permute(0, 3, 1, 2).to(dtype), kernel_size=f)
    return pooled.permute(0, 2, 3, 1).contiguous()


def ssim_frames(gen: torch.Tensor, gt: torch.Tensor, *, sigma: float = 1.5, truncate: float = 3.5,
                data_range: float = 255.0, dtype: str = "float32", downsample: str = "none") -> torch.Tensor:
    """Per-frame SSIM of uint8 RGB frames, equal to scikit-image's (see the module docstring).

    Args:
        gen: generated frames, uint8 (n, H, W, 3), on any device.
        gt: ground-truth frames of the same shape.
        sigma: the Gaussian window's standard deviation, pixels.
        truncate: the window's radius in standard deviations.
        data_range: the pixels' value range.
        dtype: "float32" (fast, within 1e-6 of float64) or "float64" (exact).
        downsample: "none", or "piq" (average-pooled first, as piq's ``ssim``).

    Returns:
        float64 tensor (n,): each frame's SSIM, averaged over channels and pixels.

    Example:
        >>> import torch
        >>> rng = torch.Generator().manual_seed(0)
        >>> frames = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8, generator=rng)
        >>> ssim_frames(frames, frames).tolist()
        [1.0, 1.0]
        >>> bool(ssim_frames(frames, frames.flip(0))[0] < 0.1)
        True
    """
    if dtype not in ("float32", "float64"):
        raise ValueError(f"ssim dtype must be float32 or float64, not {dtype!r}")
    if gen.shape != gt.shape:
        raise ValueError(f"frame shapes differ: {tuple(gen.shape)} vs {tuple(gt.shape)}")
    if downsample not in DOWNSAMPLING:
        raise ValueError(f"ssim downsample must be one of {DOWNSAMPLING}, not {downsample!r}")
    if downsample == "piq":  # pooled in float64: exact means of integers
        gen, gt = piq_downsample(gen, torch.float64), piq_downsample(gt, torch.float64)
    window = gaussian_window(sigma, truncate, getattr(torch, dtype)).to(gen.device)
    if min(gen.shape[1:3]) < window.numel():
        raise ValueError(f"frames of {gen.shape[2]}x{gen.shape[1]} are smaller than the "
                         f"{window.numel()}-pixel SSIM window")
    step = frames_per_step(gen)
    halo = window.numel() - 1
    tiles_at_once = max(1, CPU_TILE_PIXELS_AT_ONCE // (TILE + halo) ** 2) if gen.device.type == "cpu" else 1 << 30
    return torch.cat([_ssim_chunk(gen[i:i + step], gt[i:i + step], window, data_range, tiles_at_once)
                      for i in range(0, gen.shape[0], step)])


def make_accumulator(params: dict, ctx: MetricContext) -> PerFrameMean:
    """SSIM's accumulator (``declarations.SSIM``): the mean over frames of ``ssim_frames``."""
    return PerFrameMean(ssim_frames, params)
