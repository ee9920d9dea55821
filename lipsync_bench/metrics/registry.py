"""The metric registry: each metric declares what it is and what it needs; adding a metric is adding
one module that calls ``register``.

Per-video metrics stream: the runner decodes a generated/GT pair once, in chunks, and feeds every
selected metric's accumulator with the same ``FrameBatch``; ``result()`` then gives the video's value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import LipsyncBenchError

#: What a metric may need; ``lipsync-bench metrics`` shows these.
NEEDS = ("gt_frames", "audio", "landmarks", "weights")


@dataclass
class FrameBatch:
    """A chunk of aligned frames of one pair: uint8 RGB tensors (n, H, W, 3) on the run's device.

    ``gen``/``gt`` are cropped to the protocol's region (the full frames when it is "full");
    ``gen_full``/``gt_full`` are always the full frames (face metrics need them). ``start`` is the
    index of the chunk's first frame in the (resampled) video.
    """

    gen: torch.Tensor
    gt: torch.Tensor
    start: int
    gen_full: torch.Tensor | None = None
    gt_full: torch.Tensor | None = None

    def __post_init__(self):
        if self.gen_full is None:
            self.gen_full, self.gt_full = self.gen, self.gt


@dataclass
class MetricContext:
    """What an accumulator may need beyond its parameters: the device, the pair's input files, the
    protocol frame rate, a cache folder for per-video intermediate results, the weights file, and a
    dict shared by the accumulators of one pair (metrics computed together, e.g. LSE-C and LSE-D)."""

    device: torch.device
    gen: Path | None = None
    gt: Path | None = None
    fps: float = 25.0
    cache_dir: Path | None = None
    weights_path: Path | None = None
    shared: dict = field(default_factory=dict)


@dataclass
class MetricValue:
    """One video's value of one metric, with the number of frames it used, any warnings, and optional
    details kept beside it in the store (JSON-able, small: e.g. LSE's distance curve, for reports)."""

    value: float
    frames: int
    warnings: list[str] = field(default_factory=list)
    details: dict | None = None


class Accumulator:
    """Streaming state of one metric over one video."""

    def update(self, batch: FrameBatch) -> None:
        raise NotImplementedError

    def result(self) -> MetricValue:
        raise NotImplementedError


#: Pixels (frames x height x width) a metric processes at once on CPU: bounded temporaries.
CPU_PIXELS_AT_ONCE = 4 * 256 * 256


def frames_per_step(frames: torch.Tensor) -> int:
    """How many frames of a (n, H, W, C) batch to process at once: all on a GPU, a bounded number of
    pixels on CPU (large temporaries cost more in allocation than in arithmetic there)."""
    if frames.device.type != "cpu":
        return max(1, frames.shape[0])
    return max(1, CPU_PIXELS_AT_ONCE // (frames.shape[1] * frames.shape[2]))


class PerFrameMean(Accumulator):
    """Mean over frames of a per-frame function ``fn(gen, gt, **params) -> (n,) tensor``."""

    def __init__(self, fn: Callable[..., torch.Tensor], params: dict[str, Any]):
        self.fn, self.params = fn, params
        self.total = 0.0
        self.count = 0
        self.infinite = 0

    def update(self, batch: FrameBatch) -> None:
        values = self.fn(batch.gen, batch.gt, **self.params)
        self.infinite += int(torch.isinf(values).sum())
        self.total += float(values.sum())
        self.count += values.numel()

    def result(self) -> MetricValue:
        warnings = []
        if self.infinite:
            warnings.append(f"{self.infinite} of {self.count} frames are identical to GT (value inf)")
        return MetricValue(self.total / self.count if self.count else math.nan, self.count, warnings)


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    ``defaults`` holds every parameter with its default value; the parameters a run uses are part of
    its protocol. ``available(params)`` returns None when the metric can run here with these
    parameters, else the reason it cannot. ``weights`` names the entry of ``lipsync_bench.weights.KNOWN``
    the metric loads, if any; ``weights_for(params)``, where given, decides instead (e.g. LSE with a
    user-trained AVSyncNet checkpoint) and returns the file and its description for the protocol.

    A per-video metric's accumulator gives the video's value. A dataset metric (scope "dataset", e.g.
    FID) keeps per-video intermediate results in the cache (its rows have no value) and
    ``dataset_value(videos, params, contexts)`` combines those of the videos that succeeded.
    """

    name: str
    label: str  # column header, e.g. "LSE-C"
    higher_is_better: bool | None  # None: no direction (e.g. the AV offset, best at 0)
    needs: frozenset[str]
    scope: str  # "video" or "dataset"
    decimals: int
    description: str
    defaults: dict[str, Any]
    make_accumulator: Callable[[dict[str, Any], MetricContext], Accumulator]
    available: Callable[[dict[str, Any]], str | None] = lambda params: None
    weights: str | None = None
    weights_for: Callable[[dict[str, Any]], tuple[Path, dict]] | None = None
    dataset_value: Callable[[dict[str, Any], list[MetricContext]], MetricValue] | None = None
    # What the parameters resolve to on this machine (e.g. "auto" -> the landmarker's settings), for the protocol
    protocol_extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Whether the metric sees the protocol's region (--region face|mouth) or always full frames
    uses_region: bool = True

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]

    def resolve_weights(self, params: dict[str, Any]) -> tuple[Path, dict] | None:
        """The weights file a run with ``params`` loads and its description (name, file, sha256,
        official), or None for a metric without weights. Missing files raise ``UnavailableError``."""
        from .. import weights

        if self.weights_for is not None:
            return self.weights_for(params)
        if self.weights is None:
            return None
        path = weights.require(self.weights)
        return path, weights.describe(self.weights, path)

    def resolve_params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The defaults with ``overrides`` applied; unknown names and ill-typed values are refused."""
        params = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key in ("weights", "resolved"):
                params[key] = value  # set by the runner: what the run actually used
                continue
            if key not in params:
                known = ", ".join(sorted(params)) or "none"
                raise LipsyncBenchError(f"metric '{self.name}' has no parameter '{key}' (it has: {known})")
            params[key] = _coerce(self.name, key, value, self.defaults[key])
        return params


def _coerce(metric: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        if default is None:
            return value
        return type(default)(value)
    except ValueError:
        raise LipsyncBenchError(f"{metric}.{key}={value!r}: expected a {type(default).__name__}") from None


_REGISTRY: dict[str, Metric] = {}

#: The paper's column order (Tab. B); metrics not in it follow in registration order.
PAPER_ORDER = ("ssim", "psnr", "fid", "ifc", "lmd", "lse_c", "lse_d", "av_offset")


def register(metric: Metric) -> Metric:
    if metric.name in _REGISTRY:
        raise ValueError(f"metric {metric.name!r} registered twice")
    _REGISTRY[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(all_metrics())
        raise LipsyncBenchError(f"unknown metric '{name}' (known: {known})") from None


def all_metrics() -> list[str]:
    """Registered metric names, in the paper's column order first."""
    ordered = [m for m in PAPER_ORDER if m in _REGISTRY]
    return ordered + [m for m in _REGISTRY if m not in ordered]
