"""What a metric's implementation streams through: the frames of a pair (``FrameBatch``), its context
(``MetricContext``), the accumulator it feeds and the value it gives (``MetricValue``, with the
per-video ``StateFile`` of a dataset metric).

The pipeline decodes a generated/GT pair once, in chunks, and feeds every selected metric's
accumulator with the same ``FrameBatch``; ``result()`` then gives the video's value. Declarations
(``registry``) do not import this module: tables read them without loading torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..media import DecodeLimits


@dataclass
class FrameBatch:
    """A chunk of aligned frames of one pair: uint8 RGB tensors (n, H, W, 3) on the run's device.

    ``gen``/``gt`` are cropped to the protocol's region (the full frames when it is "full");
    ``gen_full``/``gt_full`` are always the full frames (face metrics need them). ``gt`` is None when
    no selected metric needs GT frames (it is then not decoded). ``start`` is the index of the
    chunk's first frame in the (resampled) video. ``gen_jpeg``: the full generated frames as the peer
    scripts read them back from ffmpeg's JPEGs (numpy BGR uint8), for a metric that needs "jpeg_frames".
    """

    gen: torch.Tensor
    gt: torch.Tensor | None
    start: int
    gen_full: torch.Tensor | None = None
    gt_full: torch.Tensor | None = None
    gen_jpeg: np.ndarray | None = None

    def __post_init__(self):
        if self.gen_full is None:
            self.gen_full, self.gt_full = self.gen, self.gt


@dataclass
class MetricContext:
    """What an accumulator may need beyond its parameters: the device, the pair's input files, the
    protocol frame rate, the pair's face analyses (``faces(path)``, available before the frames of a
    metric that needs "face_track" or "face_frames", and at ``result()`` for "landmarks"), the weights files
    (``weights_paths``, in the order the declaration resolves them), a folder for per-video state of
    dataset metrics (``state_dir``) with state of earlier videos it may reuse (``reuse``: side ->
    file), a dict shared by the accumulators of one pair (metrics computed together, e.g. LSE-C
    and LSE-D), how the run decodes (``decode``: pass it to any ``media`` call) and the peer chain its
    inputs went through (``reencode``: the protocol's ``decode.reencode``)."""

    device: torch.device
    gen: Path | None = None
    gt: Path | None = None
    fps: float = 25.0
    faces: Callable[[Path], Any] | None = None
    weights_paths: list[Path] = field(default_factory=list)
    state_dir: Path | None = None
    reuse: dict[str, Path] = field(default_factory=dict)
    shared: dict = field(default_factory=dict)
    decode: DecodeLimits | None = None
    reencode: str = "none"

    @property
    def weights_path(self) -> Path | None:
        """The first (for most metrics, the only) weights file."""
        return self.weights_paths[0] if self.weights_paths else None


@dataclass(frozen=True)
class StateFile:
    """Per-video state of a dataset metric, kept in the results folder: a ``.npy`` file named by its
    sha256 under ``<out>/state/<metric>/``; the store records the checksum."""

    sha256: str
    rows: int


@dataclass
class MetricValue:
    """One video's value of one metric, with the number of frames it used, any warnings, optional
    details kept beside it in the store (JSON-able, small: e.g. LSE's distance curve, for reports) and,
    for a dataset metric, its per-video state (side -> ``StateFile``)."""

    value: float
    frames: int
    warnings: list[str] = field(default_factory=list)
    details: dict | None = None
    state: dict[str, StateFile] | None = None


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


#: Per-frame values kept in a video's details (for the report's per-frame curves): the first minute at
#: 25 fps, so that a long video's details stay small.
PER_FRAME_KEPT = 1500


def per_frame_details(values) -> dict:
    """``{"per_frame": [...]}``: the first ``PER_FRAME_KEPT`` per-frame values, 5 significant digits
    (NaN, a frame without a value, as None)."""
    return {"per_frame": [None if v != v else float(f"{v:.5g}") for v in list(values)[:PER_FRAME_KEPT]]}


class PerFrameMean(Accumulator):
    """Mean over frames of a per-frame function ``fn(gen, gt, **params) -> (n,) tensor``; the first
    frames' values kept in the details (``per_frame_details``)."""

    def __init__(self, fn: Callable[..., torch.Tensor], params: dict[str, Any]):
        self.fn, self.params = fn, params
        self.total = 0.0
        self.count = 0
        self.infinite = 0
        self.kept: list[float] = []

    def update(self, batch: FrameBatch) -> None:
        values = self.fn(batch.gen, batch.gt, **self.params)
        self.infinite += int(torch.isinf(values).sum())
        self.total += float(values.sum())
        self.count += values.numel()
        if len(self.kept) < PER_FRAME_KEPT:
            self.kept += values.flatten()[:PER_FRAME_KEPT - len(self.kept)].double().cpu().tolist()

    def result(self) -> MetricValue:
        warnings_ = []
        if self.infinite:
            warnings_.append(f"{self.infinite} of {self.count} frames are identical to GT (value inf)")
        return MetricValue(self.total / self.count if self.count else math.nan, self.count, warnings_,
                           details=per_frame_details(self.kept) if self.kept else None)


__all__ = ["CPU_PIXELS_AT_ONCE", "PER_FRAME_KEPT", "Accumulator", "FrameBatch", "MetricContext", "MetricValue",
           "PerFrameMean", "StateFile", "frames_per_step", "per_frame_details"]
