"""The metric registry: each metric is one declaration (``Metric``) that is the only place that knows
it. Orchestration, store, tables and report read declarations and never name a metric.

A declaration holds what the rest of the program needs: a typed parameter schema (checked before any
video is read), the parameter group it shares with its siblings, the parameters that change its
definition or scale (their values split table columns), its reference run on the ground truth with
its plausibility check, the weights it loads, its command-line aliases, and how it streams.

Declarations are light: this module imports neither torch nor any implementation, so that tables,
comparisons and protocol listings read them at once. A declaration names its implementation's
callables (its accumulator, its dataset combination...) as ``"module:function"`` strings, imported
on first call (``Hook``); a plugin may give plain callables. The metrics that ship with lipsync-bench
are declared in ``metrics/declarations.py``, each implemented in a module of its own; other packages
add metrics through the ``lipsync_bench.metrics`` entry-point group (an entry point names a module that
calls ``register``, or a ``Metric`` object). What an implementation streams through (frames,
context, accumulators) is in ``metrics/streaming.py``.
"""
from __future__ import annotations

import difflib
import importlib
import math
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from .. import weights
from ..errors import ParameterError

if TYPE_CHECKING:  # the implementation side's types, named in the declaration's annotations only
    from .streaming import Accumulator, MetricContext, MetricValue

#: What a metric may need; ``lipsync-bench metrics`` shows these. "landmarks": the face analysis of
#: both videos, read at the end; "face_track": the generated video's face track, needed before its
#: frames (crops that follow the face); "face_frames": the face analysis of both videos, needed before
#: their frames (per-frame face crops of both); "audio": the generated video's audio track;
#: "jpeg_frames": the generated video's frames also as the peer scripts read them back from ffmpeg's
#: image2 JPEGs (``media.JpegRoundTrip``, BGR), from the same decode; "gt_audio": the GT's audio track.
NEEDS = ("gt_frames", "audio", "landmarks", "face_track", "face_frames", "weights", "jpeg_frames", "gt_audio")
#: The needs that the face stage serves.
FACE_NEEDS = frozenset({"landmarks", "face_track", "face_frames"})
#: The needs that read the ground truth beside the generated video (a pair, aligned frame by frame).
PAIRED_NEEDS = frozenset({"gt_frames", "landmarks", "face_frames"})
#: The needs that a run without ground-truth videos cannot serve.
GT_NEEDS = PAIRED_NEEDS | {"gt_audio"}
#: A direction's arrow: higher is better, lower is better, no direction (e.g. an offset, best at 0).
ARROWS = {True: "↑", False: "↓", None: ""}
#: A direction in words.
DIRECTIONS = {True: "higher", False: "lower", None: "-"}

#: The entry-point group through which other packages add metrics.
ENTRY_POINT_GROUP = "lipsync_bench.metrics"
#: The module that declares the metrics that ship with lipsync-bench.
BUILTIN_DECLARATIONS = "lipsync_bench.metrics.declarations"


@dataclass(frozen=True)
class Hook:
    """A function of an implementation module, ``"package.module:function"``, imported on its first
    call, so that a declaration is read without importing its implementation; ``args`` are passed
    before the call's own.

    Example:
        >>> Hook("math:hypot", (3.0,))(4.0)
        5.0
    """

    target: str
    args: tuple = ()

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    def resolve(self) -> Callable:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args, **kwargs):
        return self.resolve()(*self.args, *args, **kwargs)


def hook(target: str, *args) -> Hook:
    """``Hook(target, args)``: the declarations' shorthand."""
    return Hook(target, args)


# --------------------------------------------------------------------------------------------------
# The declaration


@dataclass(frozen=True)
class Param:
    """One parameter of a metric: its default, and what values are allowed.

    ``defines``: another value is another definition or scale of the metric (IFC's norm, LSE's sync
    expert); tables then give such results a column of their own, labelled with the value (``labels``
    maps values to their label; others show as ``name=value``). ``kind`` is the value's type (default:
    the default's type; "path" for a file, stored as an absolute path).

    Example:
        >>> norm = Param("rms", "the norm of d_t", choices=("rms", "l2"), defines=True)
        >>> norm.check("ifc", "norm", "l2")
        'l2'
        >>> Param(1.5, min=0.1).check("ssim", "sigma", "2")
        2.0
        >>> norm.check("ifc", "norm", "max")
        Traceback (most recent call last):
        ...
        lipsync_bench.errors.ParameterError: ifc.norm='max': expected one of rms, l2
    """

    default: Any
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    defines: bool = False
    labels: dict | None = None
    kind: str | None = None

    @property
    def type_name(self) -> str:
        return self.kind or type(self.default).__name__

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        bounds = []
        if self.min is not None:
            bounds.append(f">= {self.min:g}")
        if self.max is not None:
            bounds.append(f"<= {self.max:g}")
        return f"a {self.type_name}" + (f" {' and '.join(bounds)}" if bounds else "")

    def check(self, metric: str, key: str, value: Any) -> Any:
        """The value in its canonical type; a wrong one raises ``ParameterError`` naming all of it."""
        bad = ParameterError(f"{metric}.{key}={value!r}: expected {self.allowed()}")
        kind = self.type_name
        try:
            if kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                        raise ValueError(value)
                    value = value.lower() in ("1", "true", "yes")
                elif not isinstance(value, (bool, np.bool_)):
                    raise ValueError(value)
                value = bool(value)
            elif kind == "int":
                if isinstance(value, float) and not value.is_integer() or isinstance(value, bool):
                    raise ValueError(value)
                value = int(value)
            elif kind == "float":
                if isinstance(value, bool):
                    raise ValueError(value)
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError(value)
            elif kind == "path":
                value = str(Path(str(value)).expanduser().resolve()) if str(value) else ""
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise bad from None
        if self.choices is not None and value not in self.choices:
            raise bad
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise bad
        return value


@dataclass(frozen=True)
class Alias:
    """A command-line option of ``eval`` that sets one parameter: ``--fid-frames N`` = ``--param
    fid.frames=N``. ``target`` is the metric, or its group to set the parameter of every member."""

    option: str
    param: str
    help: str


@dataclass(frozen=True)
class Reference:
    """The metric computed on the ground-truth videos themselves, each GT as its own generated video:
    the "Ground truth" row papers print beside the methods (e.g. LSE of the real videos). Stored as a
    run of its own per dataset (one per definition), computed from the same decode of the GT.

    ``params``: overrides for that run (e.g. the GT's own audio). ``check(value)``: a warning when a
    reference value is implausible for a real video with the official weights (the protocol is then
    probably broken for it), else None.

    Example:
        >>> reference = get_metric("lse_c").reference
        >>> reference.params, reference.check(8.1) is None, reference.check(1.2) is not None
        ({'audio': 'gen'}, True, True)
    """

    params: dict[str, Any] = field(default_factory=dict)
    check: Callable[[float], str | None] | None = None


@dataclass(frozen=True)
class Curve:
    """Per-video details that hold a curve (``details[key]``, a list of numbers) the report plots."""

    key: str
    x_label: str
    y_label: Callable[[dict], str]
    x_values: Callable[[int], list] | None = None
    title: str = ""


@dataclass(frozen=True)
class Metric:
    """A registered metric.

    ``params`` is the parameter schema; the values a run uses are part of its protocol.
    ``available(params)`` returns None when the metric can run here with these parameters, else the
    reason it cannot (missing declared ``weights`` are checked with it). ``weights`` names the entries
    of ``lipsync_bench.weights.KNOWN`` the metric loads; ``weights_for(params)``, where given, decides
    instead (e.g. LSE with a user-trained checkpoint) and returns (file, description) pairs for the
    protocol. ``group`` names the parameters its siblings share (``--param lse.vshift=…`` sets every
    metric of group "lse").

    A per-video metric's accumulator gives the video's value. A dataset metric (scope "dataset", e.g.
    FID) keeps per-video state in the results folder (its rows have no value) and
    ``dataset_value(params, states)`` combines the states (one dict side -> loader a video) of the
    videos that succeeded. Every callable may be given as a ``"module:function"`` string (a ``Hook``):
    its module is imported on the first call.

    Example:
        >>> ifc = get_metric("ifc")
        >>> params = ifc.resolve_params({"norm": "l2"})
        >>> params, ifc.column_key(params), ifc.column_label(params)
        ({'scale': 255.0, 'norm': 'l2', 'reduce': 'mean'}, 'ifc@norm=l2', 'IFC [norm=l2]')
    """

    name: str
    label: str  # column header, e.g. "LSE-C"
    higher_is_better: bool | None  # None: no direction (e.g. the AV offset, best at 0)
    needs: frozenset[str]
    scope: str  # "video" or "dataset"
    decimals: int
    description: str
    params: dict[str, Param]
    make_accumulator: Callable[[dict[str, Any], MetricContext], Accumulator] | str
    available: Callable[[dict[str, Any]], str | None] | str = lambda params: None
    weights: tuple[str, ...] = ()
    weights_for: Callable[[dict[str, Any]], list[tuple[Path, dict]]] | str | None = None
    dataset_value: Callable[[dict[str, Any], list[dict]], MetricValue] | str | None = None
    # What the parameters resolve to on this machine (e.g. the expert's label), for the protocol
    protocol_extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Whether the metric sees the protocol's region (--region face|mouth) or always full frames
    uses_region: bool = True
    group: str | None = None
    aliases: tuple[Alias, ...] = ()
    reference: Reference | None = None
    curve: Curve | None = None
    # The key of its per-video details that holds a value per frame (or window), drawn by the report
    # under the video's clip
    per_frame: str | None = None
    # What the metric needs under given parameters, where it depends on them (e.g. LSE on whole frames
    # needs no face track); default: ``needs``
    needs_for: Callable[[dict[str, Any]], frozenset[str]] | None = None
    # The frame rate the metric's procedure assumes (LSE: SyncNet's 25 fps); None: any
    frame_rate: float | None = None

    def __post_init__(self):
        for name in _HOOKS:  # a frozen declaration, completed once: "module:function" becomes its Hook
            if isinstance(getattr(self, name), str):
                object.__setattr__(self, name, Hook(getattr(self, name)))
        unknown = set(self.needs) - set(NEEDS)
        if unknown:
            raise ValueError(f"metric {self.name!r} needs unknown inputs {sorted(unknown)} (known: {NEEDS})")
        if self.scope not in ("video", "dataset"):
            raise ValueError(f"metric {self.name!r}: scope must be 'video' or 'dataset'")
        if self.scope == "dataset" and self.dataset_value is None:
            raise ValueError(f"dataset metric {self.name!r} has no dataset_value")
        if self.weights:  # declared weights that are missing make the metric unavailable, saying how to get them
            own, names = self.available, self.weights

            def available(params: dict[str, Any]) -> str | None:
                return own(params) or next((weights.missing_message(n) for n in names if weights.find(n) is None),
                                           None)

            object.__setattr__(self, "available", available)  # a frozen declaration, completed once

    def needs_of(self, params: dict[str, Any]) -> frozenset[str]:
        """What the metric needs when computed with ``params``."""
        return self.needs_for(params) if self.needs_for is not None else self.needs

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.params.items()}

    @property
    def arrow(self) -> str:
        """"↑", "↓" or "" (no direction)."""
        return ARROWS[self.higher_is_better]

    @property
    def header(self) -> str:
        """The column header: ``SSIM↑``."""
        return self.label + self.arrow

    @property
    def implementation(self) -> str:
        """The module of the accumulator (for ordering and for people: where to read the code)."""
        make = self.make_accumulator
        return make.module if isinstance(make, Hook) else getattr(make, "__module__", None) or ""

    def resolve_weights(self, params: dict[str, Any]) -> list[tuple[Path, dict]]:
        """The weights files a run with ``params`` loads and their descriptions (name, file, sha256,
        official); empty for a metric without weights. Missing files raise ``UnavailableError``."""

        if self.weights_for is not None:
            return self.weights_for(params)
        return [(path, weights.describe(name, path)) for name in self.weights
                for path in [weights.require(name)]]

    def resolve_params(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The defaults with ``overrides`` applied; unknown names and values outside the schema raise
        ``ParameterError``."""
        params = self.defaults
        for key, value in (overrides or {}).items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise ParameterError(f"metric '{self.name}' has no parameter '{key}' (it has: {known})")
            params[key] = self.params[key].check(self.name, key, value)
        return params

    def definition(self, params: dict[str, Any]) -> list[tuple[str, Any, str]]:
        """The defining parameters whose value differs from the default: (name, value, label)."""
        out = []
        for key, p in self.params.items():
            if p.defines and key in params and params[key] != p.default:
                value = params[key]
                out.append((key, value, (p.labels or {}).get(value, f"{key}={value}")))
        return out

    def column_key(self, params: dict[str, Any]) -> str:
        """The table column of a result computed with ``params``: the metric's name, with the values
        of its non-default defining parameters (``lse_c@avsyncnet``, ``ifc@norm=l2``)."""
        parts = [str(v) if self.params[k].labels else f"{k}={v}" for k, v, _ in self.definition(params)]
        return self.name + ("@" + ",".join(parts) if parts else "")

    def column_label(self, params: dict[str, Any]) -> str:
        """``LSE-C``, or ``LSE-C [AVSyncNet]`` for another definition."""
        labels = [label for _, _, label in self.definition(params)]
        return self.label + (f" [{', '.join(labels)}]" if labels else "")

    def definition_suffix(self, params: dict[str, Any]) -> str:
        """`` [AVSyncNet]`` for another definition, else ""."""
        labels = [label for _, _, label in self.definition(params)]
        return f" [{', '.join(labels)}]" if labels else ""


#: The declaration's fields that may name a function of the implementation as "module:function".
_HOOKS = ("make_accumulator", "available", "weights_for", "dataset_value", "protocol_extra", "needs_for")

_REGISTRY: dict[str, Metric] = {}
_DISCOVERED = False

#: The paper's column order (Tab. B); metrics not in it follow in registration order.
PAPER_ORDER = ("ssim", "psnr", "fid", "ifc", "lmd", "lse_c", "lse_d", "av_offset")


def register(metric: Metric) -> Metric:
    """Add a metric to the registry (a metric module calls it once, at import).

    Args:
        metric: the declaration; its name must be new and hold no "@" or ".".

    Returns:
        The metric, so a module can keep it (``SSIM = register(Metric(...))``).

    Example:
        >>> from lipsync_bench.metrics.streaming import PerFrameMean
        >>> mad = Metric(name="doc_mad", label="MAD", higher_is_better=False, needs=frozenset({"gt_frames"}),
        ...              scope="video", decimals=3, description="mean absolute difference",
        ...              params={"scale": Param(1.0, "divisor", min=1e-9, defines=True)},
        ...              make_accumulator=lambda params, ctx: PerFrameMean(
        ...                  lambda g, t, scale: (g.double() - t.double()).abs().flatten(1).mean(1) / scale, params))
        >>> register(mad) is get_metric("doc_mad")
        True
    """
    if metric.name in _REGISTRY:
        if _REGISTRY[metric.name] is metric:
            return metric
        raise ValueError(f"metric {metric.name!r} registered twice")
    if "@" in metric.name or "." in metric.name or not metric.name:
        raise ValueError(f"metric name {metric.name!r}: no '@' or '.'")
    _REGISTRY[metric.name] = metric
    return metric


def discover() -> None:
    """Read the declarations of the metrics that ship with lipsync-bench, then the entry points of other
    packages (once). Implementations are not imported: each is imported on its first use."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    importlib.import_module(BUILTIN_DECLARATIONS)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin must not take the built-in metrics down
            warnings.warn(f"metric plugin {entry.name!r} ({entry.value}) could not be loaded: {exc}", stacklevel=2)
            continue
        if isinstance(loaded, Metric):
            register(loaded)


def get_metric(name: str) -> Metric:
    discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), all_metrics(), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ParameterError(f"unknown metric '{name}' ({hint}known: {', '.join(all_metrics())})") from None


def all_metrics() -> list[str]:
    """Registered metric names, in the paper's column order first, then by the module that declares
    them (and their order there), so that columns do not depend on which module was imported first."""
    discover()
    ordered = [m for m in PAPER_ORDER if m in _REGISTRY]
    index = {name: i for i, name in enumerate(_REGISTRY)}
    return ordered + sorted((m for m in _REGISTRY if m not in ordered),
                            key=lambda m: (_REGISTRY[m].implementation, index[m]))


def group_members(group: str) -> list[str]:
    """The metrics of a parameter group (``lse``: LSE-C, LSE-D and the offset); empty for a metric's name."""
    return [m for m in all_metrics() if get_metric(m).group == group]


def parse_params(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["ifc.norm=l2", "ssim.sigma=2"]`` -> ``{"ifc": {"norm": "l2"}, "ssim": {"sigma": "2"}}``; the
    target may also be a group (``lse.vshift=10``). Values are checked by ``resolve_run_params``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        metric, dot, key = name.partition(".")
        if not (eq and dot and metric and key):
            raise ParameterError(f"--param {item!r}: expected METRIC.NAME=VALUE, e.g. ifc.norm=l2")
        out.setdefault(metric, {})[key] = value
    return out


def resolve_run_params(names: list[str], *layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every parameter of every metric of a run: the defaults, then each layer in turn (the protocol's
    values, then the command line's). In a layer, a group's values (``lse``) set each member of the run
    and a metric's own win over its group's.

    Raises ``ParameterError`` (before any work) for an unknown metric or group, a parameter for a metric
    the run does not compute, an unknown parameter, or a value outside the schema.

    Example:
        >>> resolve_run_params(["lse_c", "lse_d"], {"lse": {"vshift": 10}, "lse_d": {"vshift": 12}})["lse_d"]["vshift"]
        12
    """
    metrics = [get_metric(n) for n in names]
    groups = {m.group for m in metrics if m.group}
    all_groups = {get_metric(n).group for n in all_metrics()} - {None}
    per_metric: dict[str, dict[str, Any]] = {m.name: {} for m in metrics}
    for layer in layers:
        for target, values in layer.items():
            if target in per_metric:
                continue
            if target in groups:
                for m in metrics:
                    if m.group == target:
                        per_metric[m.name].update(values)
                continue
            if target in all_groups:
                raise ParameterError(f"--param {target}.* given, but this run computes no metric of group '{target}'")
            get_metric(target)  # unknown names fail here
            raise ParameterError(f"--param given for '{target}', which this run does not compute")
        for target, values in layer.items():
            if target in per_metric:
                per_metric[target].update(values)  # a metric's own parameters win over its group's
    return {m.name: m.resolve_params(per_metric[m.name]) for m in metrics}


def metric_aliases() -> list[tuple[str, Alias, Param]]:
    """Every declared command-line alias: (target metric or group, alias, the parameter's schema)."""
    seen, out = set(), []
    for name in all_metrics():
        m = get_metric(name)
        for alias in m.aliases:
            if alias.option not in seen:
                seen.add(alias.option)
                out.append((m.group or m.name, alias, m.params[alias.param]))
    return out
