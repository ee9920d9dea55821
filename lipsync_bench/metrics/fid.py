"""FID (supplementary Eq. F) between all generated and all ground-truth frames of a run, as
pytorch-fid computes it — from the decoded frames in memory, without writing PNGs.

- Network: pytorch-fid's own ``InceptionV3([3])`` (pool3, 2048-d) with the FID weights
  ``pt_inception-2015-12-05-6726825d.pth``, loaded from the weights folder or the torch hub cache
  (never downloaded here) with ``torch.load(weights_only=True)``.
- Preprocessing, identical to ``pytorch_fid.fid_score`` on PNG files of the same frames: uint8 RGB ->
  float in [0, 1] (``ToTensor``), resized to 299x299 bilinearly and scaled to [-1, 1] inside the model.
- Statistics: mean and covariance (rowvar=False) over all frames of all videos of the run, streamed
  from per-video features (float64 sums). The features are each video's state in the results folder
  (``<out>/state/fid/<sha256>.npy``, checksum in the store), so ``merge``, ``table`` and a rerun
  recompute FID from the results alone, and adding a method to a dataset reuses the GT's features.
- Distance: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)). The paper's Eq. F prints the mean term
  without the square; the standard definition, and pytorch-fid, square it, and so does this. The trace
  of the square root comes from eigenvalues (``trace_sqrt_product``), not ``scipy.linalg.sqrtm``.
- ``frames`` (parameter, ``--fid-frames``): at most this many frames a video, spread evenly over it
  (0 = all), for quick runs; recorded in the protocol.
"""
from __future__ import annotations

import hashlib
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pytorch_fid.inception as pfi
import torch
import torch.nn.functional as F

from ..errors import MetricError
from ..files import atomic_write_bytes
from ..media import estimate_frame_count
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue, StateFile

FEATURE_DIM = 2048
# Frames through Inception at once: pytorch-fid's default batch size, so that a video's batches are
# those pytorch-fid forms on a folder of its frames, and float rounding matches too.
BATCH = 50
#: The Inception's input size (pytorch-fid resizes every frame to it), and the float bytes of frames
#: resized at once before it.
INPUT_SIZE = 299
RESIZE_BYTES = 256 * 2**20

_MODELS: dict[tuple[str, str], torch.nn.Module] = {}


def load_inception(path: str | Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """pytorch-fid's FID Inception with the weights at ``path``, in eval mode (cached per process)."""
    key = (str(Path(path).resolve()), str(device))
    if key not in _MODELS:
        state = torch.load(path, map_location="cpu", weights_only=True)
        # pytorch-fid builds its network and then fetches the weights by URL; hand it the file we
        # loaded safely instead, so that the architecture is exactly pytorch-fid's and nothing is fetched.
        fetch = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = lambda *args, **kwargs: state
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torchvision's init-weights notice
                model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
        finally:
            pfi.load_state_dict_from_url = fetch
        # channels-last: oneDNN's fastest convolutions on a CPU (1.2-1.6x over NCHW on 2 cores) and
        # tensor cores' layout on a GPU
        _MODELS[key] = model.eval().to(device).to(memory_format=torch.channels_last)
    return _MODELS[key]


@torch.no_grad()
def inception_features(model: torch.nn.Module, frames: torch.Tensor) -> np.ndarray:
    """Pool3 features (n, 2048) float32 of uint8 RGB frames (n, H, W, 3)."""
    out = []
    for i in range(0, frames.shape[0], BATCH):
        x = _model_input(frames[i:i + BATCH])
        out.append(model(x)[0].reshape(x.shape[0], FEATURE_DIM).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, FEATURE_DIM), np.float32)


def _model_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (n, H, W, 3) frames as the model's float input, channels-last. Frames larger than the
    model's 299x299 are resized here with the model's own call (bilinear, per image), a few at a time,
    so that a batch of 4K frames never holds gigabytes of floats; the model's resize of 299x299 input is
    then a copy, and the features are those of resizing the whole batch at once."""
    # channels-last, the model's layout; the kernels differ from pytorch-fid's NCHW ones in rounding
    # only: features within 5e-4 of its (8e-5 on GRID frames, 2e-4 on noise), FID within 1e-3
    # (2e-5; tests/test_fid.py)
    def floats(part: torch.Tensor) -> torch.Tensor:
        return part.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last).to(torch.float32).div(255)

    per = max(1, RESIZE_BYTES // max(1, frames[0].numel() * 4))
    if frames.shape[0] <= per:
        return floats(frames)
    parts = [F.interpolate(floats(frames[j:j + per]), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                           align_corners=False) for j in range(0, frames.shape[0], per)]
    return torch.cat(parts).contiguous(memory_format=torch.channels_last)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance (eigenvalues below 0, from rounding, taken as 0)."""
    values, vectors = np.linalg.eigh(sigma)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr(sqrt(sigma1 sigma2)) for covariances, from eigenvalues: with sigma1 = A A^T (Cholesky, or the
    symmetric square root when sigma1 is singular), sigma1 sigma2 is similar to the symmetric
    A^T sigma2 A, whose eigenvalues are real and >= 0, so the trace is the sum of their square roots.
    A factorisation and one symmetric eigenvalue problem in float64 replace the Schur-based
    ``scipy.linalg.sqrtm`` of the product (several times faster at 2048-d), with no imaginary part to
    drop and no singular case: a rank-deficient product just has zero eigenvalues."""
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    try:
        factor = np.linalg.cholesky(sigma1)
    except np.linalg.LinAlgError:  # singular (fewer samples than dimensions): the PSD square root
        factor = _psd_sqrt(sigma1)
    inner = factor.T @ sigma2 @ factor
    values = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(values, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2): the value pytorch-fid's
    ``calculate_frechet_distance`` computes, with Tr(sqrt(S1 S2)) from eigenvalues
    (``trace_sqrt_product``) instead of a matrix square root. Where pytorch-fid needs its rules — an
    ``eps`` added to both diagonals when the product is singular, an imaginary part dropped — this
    needs none; on singular products it is the more accurate of the two (the eigenvalues of a
    symmetric matrix are computed stably, the Schur form of a defective product is not).

    Args:
        mu1: mean of the first distribution, (d,).
        sigma1: its covariance, (d, d).
        mu2: mean of the second distribution, (d,).
        sigma2: its covariance, (d, d).

    Returns:
        ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2)).

    Example:
        >>> import numpy as np
        >>> round(frechet_distance(np.zeros(2), np.eye(2), np.array([3.0, 4.0]), 4 * np.eye(2)), 6)
        27.0
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError("means or covariances of different dimensions")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


class MomentSum:
    """Streaming mean and covariance (rowvar=False, ddof=1) of feature rows, in float64."""

    def __init__(self, dim: int = FEATURE_DIM, metric: str = "FID", unit: str = "frames"):
        self.n, self.metric, self.unit = 0, metric, unit
        self.total = np.zeros(dim)
        self.outer = np.zeros((dim, dim))

    def add(self, features: np.ndarray) -> None:
        f = features.astype(np.float64)
        self.n += f.shape[0]
        self.total += f.sum(axis=0)
        self.outer += f.T @ f

    def mean_cov(self, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance, divided by n - ddof (FID: 1, as numpy.cov; FVD: 0, as cd-fvd)."""
        if self.n < 2:
            raise MetricError(f"{self.metric} needs at least 2 {self.unit} on each side, got {self.n}")
        mu = self.total / self.n
        cov = (self.outer - self.n * np.outer(mu, mu)) / (self.n - ddof)
        return mu, cov


# --------------------------------------------------------------------------------------------------
# Per-video features, the state of each video in the results folder


def save_state(folder: Path, array: np.ndarray) -> StateFile:
    """Write ``array`` as ``<folder>/<sha256>.npy`` (atomically; content-addressed, so equal states
    share a file) and return its record."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = Path(folder) / f"{digest}.npy"
    if not (path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest):  # absent or damaged
        atomic_write_bytes(path, data)
    return StateFile(digest, int(array.shape[0]))


def video_state(ctx: MetricContext, gen: np.ndarray, gt: np.ndarray | None) -> dict[str, StateFile]:
    """A dataset metric's state of one video: each side's features as a state file; ``gt`` None when
    the GT's features of an earlier method are reused (``ctx.reuse["gt"]``)."""
    state = {"gen": save_state(ctx.state_dir, gen)}
    if gt is not None:
        state["gt"] = save_state(ctx.state_dir, gt)
    else:
        reused = ctx.reuse["gt"]
        state["gt"] = StateFile(reused.stem, int(np.load(reused, mmap_mode="r", allow_pickle=False).shape[0]))
    return state


def side_moments(states: list[dict], gen: MomentSum, gt: MomentSum) -> tuple[MomentSum, MomentSum]:
    """The generated and GT moments over the videos' states (one dict side -> loader a video)."""
    for state in states:
        gen.add(state["gen"]())
        gt.add(state["gt"]())
    return gen, gt


class _FidAccumulator(Accumulator):
    def __init__(self, params: dict, ctx: MetricContext):
        self.params, self.ctx = params, ctx
        self.model = load_inception(ctx.weights_path, ctx.device)
        self.need_gt = "gt" not in ctx.reuse  # the GT's features of an earlier method are reused
        self.gen, self.gt = [], []  # features
        self.pending_gen, self.pending_gt = [], []  # frames waiting for a full batch
        self.pending = 0
        self.wanted = None
        if params["frames"]:
            total = estimate_frame_count(ctx.gen, ctx.fps, ctx.decode) or params["frames"]
            k = min(params["frames"], total)
            self.wanted = set(np.round(np.linspace(0, total - 1, k)).astype(int).tolist())

    def update(self, batch: FrameBatch) -> None:
        n = batch.gen.shape[0]
        if self.wanted is None:
            pick = slice(None)
        else:
            idx = [i for i in range(n) if batch.start + i in self.wanted]
            if not idx:
                return
            pick = torch.tensor(idx, device=batch.gen.device)
        self.pending_gen.append(batch.gen[pick])
        if self.need_gt:
            self.pending_gt.append(batch.gt[pick])
        self.pending += self.pending_gen[-1].shape[0]
        if self.pending >= BATCH:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Run whole batches of BATCH frames (and, at the end, the remainder) through Inception."""
        for pending, out in ((self.pending_gen, self.gen), (self.pending_gt, self.gt)):
            if not pending:
                continue
            frames = torch.cat(pending)
            whole = frames.shape[0] if final else frames.shape[0] // BATCH * BATCH
            out.append(inception_features(self.model, frames[:whole]))
            pending[:] = [frames[whole:]] if whole < frames.shape[0] else []
        self.pending = sum(p.shape[0] for p in self.pending_gen)

    def result(self) -> MetricValue:
        self._flush(final=True)
        gen = np.concatenate(self.gen) if self.gen else np.zeros((0, FEATURE_DIM), np.float32)
        if len(gen) == 0:
            raise MetricError("no frames selected for FID")
        gt = np.concatenate(self.gt) if self.need_gt else None
        return MetricValue(math.nan, len(gen), state=video_state(self.ctx, gen, gt))


def dataset_value(params: dict, states: list[dict]) -> MetricValue:
    """FID over the videos' features: ``states`` holds, per video, a loader of each side's features."""
    gen, gt = side_moments(states, MomentSum(), MomentSum())
    mu1, s1 = gen.mean_cov()
    mu2, s2 = gt.mean_cov()
    return MetricValue(frechet_distance(mu1, s1, mu2, s2), gen.n,
                       [] if gen.n > FEATURE_DIM else [f"FID from {gen.n} frames: fewer than {FEATURE_DIM} "
                                                       "features, the covariance is singular; compare with care"])


def make_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """FID's accumulator (``declarations.FID``): each side's Inception features, the video's state."""
    return _FidAccumulator(params, ctx)
