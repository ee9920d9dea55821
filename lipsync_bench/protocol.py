"""Protocols: every choice that changes a number, as data.

A protocol fixes the run-level choices (``CHOICES``: decoding, the face stage, the region the frame
metrics see, what a failed video does to a mean), the parameters of the metrics it defines, and how each
metric's per-video values are pooled into one number. The field's published procedures are files in
``lipsync_bench/protocols/NAME.toml``, each choice with the source it follows (a repository and file, or
"lipsync-bench default"), unknowns marked as such; ``lipsync-bench protocols`` lists them. A user's own
file may ``extends = "NAME"`` one of them.

Every result records its protocol's name and the sha256 of its content (the values, not the notes).
A command-line option that changes a choice gives a derived protocol, "NAME (modified)", that records
what it changed. Choices the procedure needs but lipsync-bench cannot carry out (a detector it does not
implement, lossy re-encodings) make ``eval`` refuse the protocol with the reason, never substitute.
"""
from __future__ import annotations

import hashlib
import json
import platform
import sys
from dataclasses import dataclass, field, replace
from importlib import metadata, resources
from pathlib import Path
from typing import Any, Mapping

import av
import torch

from .errors import ParameterError
from .faces import BACKENDS, REGIONS, FaceAnalyzer, TrackParams
from .faces.regions import INTERPOLATIONS
from .metrics.registry import Param, all_metrics, get_metric, group_members
from .stats import POOLS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT = "lipsync-bench"
_TRACK = TrackParams()

#: The run-level choices: the name, the lipsync-bench default, what is allowed.
CHOICES: dict[str, Param] = {
    "decode.fps": Param(25.0, "frame rate every input is resampled to, as ffmpeg's -r (frames per second); "
                              "0: each video's frames as stored", min=0),
    "decode.sample_rate": Param(16000, "audio rate of the sync metrics, Hz (mono, 16-bit as pcm_s16le)",
                                choices=(16000,)),
    "decode.max_frame_gap": Param(3, "frame counts differing by at most this many are truncated to the shorter; "
                                     "-1: any gap", min=-1),
    "decode.reencode": Param("none", "lossy re-encodings before scoring: none, or syncnet_python's run_pipeline.py "
                                     "chain (MPEG-4 q2 video, q2 JPEG frames, XVID face crops)",
                             choices=("none", "syncnet-python")),
    "faces.landmarker": Param("auto", "the face stage's landmarker (auto: face-alignment when its weights are "
                                      "present, else dlib)", choices=BACKENDS),
    "faces.detector": Param("landmarker", "face detector: the landmarker's own, or syncnet_python's S3FD "
                                          "(sfd_face.pth, image scale 0.25, confidence 0.9)",
                            choices=("landmarker", "s3fd-syncnet-python")),
    "faces.flip_input": Param(False, "face-alignment also landmarks the mirrored face and averages"),
    "faces.min_track": Param(_TRACK.min_track, "tracks with at most this many detections are dropped", min=0),
    "faces.min_face_size": Param(_TRACK.min_face_size, "tracks whose mean box side is at most this many pixels "
                                                       "are dropped", min=0),
    "faces.max_missed": Param(_TRACK.max_missed, "a track ends after this many frames without a detection", min=0),
    "faces.iou": Param(_TRACK.iou, "a detection joins a track above this overlap with its last box", min=0, max=1),
    "faces.smooth_kernel": Param(_TRACK.smooth_kernel, "median filter of the crop centre and size, frames (odd)",
                                 min=1),
    "faces.shots": Param("none", "shot boundaries that split face tracks: none, or PySceneDetect's content "
                                 "detector", choices=("none", "pyscenedetect")),
    "region.kind": Param("full", "what the frame metrics see: the full frame; a fixed box on the GT's face or "
                                 "mouth track; or each frame's own GT face detection (face-box)", choices=REGIONS),
    "region.size": Param(0, "crops resized to size x size pixels (0: not resized)", min=0),
    "region.interpolation": Param("bilinear", "the resize's interpolation (OpenCV's)", choices=tuple(INTERPOLATIONS)),
    "region.fallback": Param(96, "face-box: side of the centred box of a frame without a detection, pixels", min=1),
    "summary.failed_videos": Param("excluded", "a failed video is reported and left out of the mean (excluded), "
                                               "or voids the mean (fatal: scripts that stop at the first failure)",
                                   choices=("excluded", "fatal")),
}

#: Values that name a step of a published procedure that lipsync-bench does not carry out.
UNSUPPORTED = {
    ("decode.reencode", "syncnet-python"): "syncnet_python's lossy chain (ffmpeg MPEG-4 -qscale:v 2 video, "
                                           "-qscale:v 2 JPEG frames, OpenCV XVID face crops) is not reproduced",
    ("faces.detector", "s3fd-syncnet-python"): "syncnet_python's S3FD detector (sfd_face.pth at image scale 0.25, "
                                               "confidence 0.9) is not implemented",
    ("faces.shots", "pyscenedetect"): "PySceneDetect's shot detection (ContentDetector, threshold 30) is not "
                                      "implemented",
}

#: Old store keys (before named protocols) -> choices.
_LEGACY_KEYS = {"fps": "decode.fps", "sample_rate": "decode.sample_rate", "region": "region.kind",
                "max_frame_gap": "decode.max_frame_gap", "landmarker": "faces.landmarker"}
_RESOLVED = ("face_pipeline",)  # what a run records beside its choices: how they resolved on the machine


def read_toml(text: str) -> dict:
    """A TOML document (tomllib, or tomli on Python 3.10)."""
    return tomllib.loads(text)


def canonical(obj) -> str:
    """A stable JSON text for comparing protocols and parameters."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def check_choice(key: str, value: Any) -> Any:
    """A run-level choice in its canonical type; an unknown name or a value outside its schema raises
    ``ParameterError`` naming both."""
    if key not in CHOICES:
        raise ParameterError(f"unknown protocol choice '{key}' (known: {', '.join(CHOICES)})")
    section, name = key.split(".")
    return CHOICES[key].check(section, name, value)


def parse_choices(items) -> dict[str, str]:
    """``["faces.min_track=100"]`` -> ``{"faces.min_track": "100"}`` (checked by ``Protocol.with_choices``)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or key not in CHOICES:
            raise ParameterError(f"--set {item!r}: expected SECTION.NAME=VALUE with a choice of "
                                 f"{', '.join(CHOICES)}")
        out[key] = value
    return out


@dataclass(frozen=True)
class Protocol:
    """A protocol: its run-level ``choices`` (every key of ``CHOICES``), the metrics it defines (None:
    every registered metric), their parameters and pooling, and where each choice comes from.

    ``sha256`` identifies the named protocol's content; ``modified`` lists the choices a derived
    protocol changed: choice -> (the named protocol's value, the value used).

    Example:
        >>> p = load_protocol("talklip")
        >>> p.region, p.choices["region.size"], p.pooling["psnr"]
        ('face-box', 96, 'frames')
        >>> q = p.with_choices({"region.size": 128}, "--set")
        >>> q.name, q.modified
        ('talklip (modified)', {'region.size': (96, 128)})
    """

    choices: Mapping[str, Any] = field(default_factory=lambda: {k: p.default for k, p in CHOICES.items()})
    name: str = DEFAULT
    title: str = ""
    reference: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)
    unknown: frozenset = frozenset()
    metrics: tuple[str, ...] | None = None
    metric_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pooling: Mapping[str, str] = field(default_factory=dict)
    unsupported_metrics: Mapping[str, str] = field(default_factory=dict)
    sha256: str = ""
    modified: Mapping[str, tuple] = field(default_factory=dict)

    # -- the run-level choices the pipeline reads most

    @property
    def fps(self) -> float | None:
        """Frames per second inputs are resampled to; None: each video's frames as stored."""
        return self.choices["decode.fps"] or None

    @property
    def sample_rate(self) -> int:
        return self.choices["decode.sample_rate"]

    @property
    def region(self) -> str:
        return self.choices["region.kind"]

    @property
    def max_frame_gap(self) -> int | None:
        """Frames; None: any gap."""
        gap = self.choices["decode.max_frame_gap"]
        return None if gap < 0 else gap

    @property
    def landmarker(self) -> str:
        return self.choices["faces.landmarker"]

    @property
    def base(self) -> str:
        """The named protocol this one derives from (itself when unmodified)."""
        return self.name.removesuffix(" (modified)")

    def track(self) -> TrackParams:
        c = self.choices
        return replace(_TRACK, min_track=c["faces.min_track"], min_face_size=c["faces.min_face_size"],
                       max_missed=c["faces.max_missed"], iou=c["faces.iou"], smooth_kernel=c["faces.smooth_kernel"])

    def landmarker_options(self) -> dict:
        """Options of the landmarker backend (``faces.get_backend``)."""
        return {"flip_input": True} if self.choices["faces.flip_input"] else {}

    def face_analyzer(self) -> FaceAnalyzer:
        """The face stage of this protocol (landmarker, detector options, tracking thresholds)."""
        return FaceAnalyzer(self.landmarker, self.track(), **self.landmarker_options())

    def face_pipeline(self) -> dict:
        """The face stage's settings as they resolve on this machine (backend, its weights, tracking)."""
        return self.face_analyzer().params()

    def pool(self, metric: str) -> str:
        """How ``metric``'s per-video values make one number: "videos" (each video one sample) or "frames"
        (each frame one sample: the mean weighted by frames)."""
        return self.pooling.get(metric, "videos")

    # -- checks

    def problems(self) -> list[str]:
        """What keeps this protocol from running here (named steps lipsync-bench does not carry out)."""
        out = []
        for key, value in self.choices.items():
            reason = UNSUPPORTED.get((key, value))
            if reason:
                out.append(f"{key}={value}: {reason}")
        if self.choices["faces.flip_input"] and self.landmarker == "dlib":
            out.append("faces.flip_input=true needs the face-alignment landmarker (dlib has no flipped pass)")
        if self.region == "face-box" and not self.choices["region.size"]:
            out.append("region.kind=face-box needs region.size (crops of each frame's box differ in size)")
        return out

    def check_metrics(self, names: list[str]) -> None:
        """Refuse metrics this protocol does not define (a named procedure has its own metric set)."""
        if self.metrics is None:
            return
        foreign = [n for n in names if n not in self.metrics]
        if foreign:
            raise ParameterError(f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not part of protocol "
                                 f"'{self.name}' (it defines {', '.join(self.metrics)}); use a protocol that defines "
                                 "them, or a protocol file that extends this one")

    def default_metrics(self) -> list[str]:
        return list(self.metrics) if self.metrics is not None else all_metrics()

    # -- derived protocols

    def with_choices(self, overrides: Mapping[str, Any], where: str = "the command line") -> "Protocol":
        """This protocol with some run-level choices changed; any change makes it "NAME (modified)"."""
        choices, sources, modified = dict(self.choices), dict(self.sources), dict(self.modified)
        for key, value in overrides.items():
            value = check_choice(key, value)
            if value == choices[key]:
                continue
            original = modified.get(key, (choices[key], None))[0]
            choices[key], sources[key] = value, f"set by {where}"
            if value == original:
                modified.pop(key, None)
            else:
                modified[key] = (original, value)
        if not modified:
            return replace(self, choices=choices, name=self.base)
        return replace(self, choices=choices, sources=sources, modified=modified, name=f"{self.base} (modified)")

    def as_dict(self, resolve: bool = True) -> dict:
        """What a run records: the name, the named protocol's sha256, every run-level choice, what a
        derived protocol changed, and (``resolve``) how the face stage resolved here where the region
        needs it (which needs the face stage to be available)."""
        d = {"protocol": self.name, "protocol_sha256": self.sha256, **self.choices}
        if self.modified:
            d["modified"] = {k: list(v) for k, v in sorted(self.modified.items())}
        if resolve and self.region != "full":  # the face pipeline that placed the region is part of it
            d["face_pipeline"] = self.face_pipeline()
        return d

    # -- what people read

    def rows(self) -> list[tuple[str, str, str]]:
        """Every choice as (name, value, source): run-level, then each metric's parameters and pooling."""
        def note(key: str) -> str:
            text = self.sources.get(key, "lipsync-bench default")
            return f"UNKNOWN: {text}" if key in self.unknown else text

        out = [(k, "0 (as stored)" if k == "decode.fps" and not v else "-1 (any)" if k == "decode.max_frame_gap"
                and v < 0 else _show(v), note(k)) for k, v in self.choices.items()]
        for name, members in self._metric_groups():
            first = members[0]
            if first in self.unsupported_metrics:
                out.append((name, "not reproduced", self.unsupported_metrics[first]))
                continue
            params = {**get_metric(first).defaults, **self.metric_params.get(first, {}), "pool": self.pool(first)}
            out += [(f"{name}.{k}", _show(v), note(f"{first}.{k}")) for k, v in params.items()]
        return out

    def _metric_groups(self) -> list[tuple[str, list[str]]]:
        """The protocol's metrics, a parameter group (``lse``) as one entry where its members agree."""
        out, seen = [], set()
        names = self.default_metrics()
        for metric in names:
            group = get_metric(metric).group
            members = [m for m in names if group and get_metric(m).group == group]
            if group and metric in members and group not in seen and len({
                    canonical([self.metric_params.get(m, {}), self.pool(m), self.unsupported_metrics.get(m)])
                    for m in members}) == 1:
                seen.add(group)
                out.append((group, members))
            elif not (group and group in seen):
                out.append((metric, [metric]))
        return out


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    return str(value)


# --------------------------------------------------------------------------------------------------
# Named protocols and protocol files


def protocol_names() -> list[str]:
    """The named protocols that ship with lipsync-bench (the default first)."""
    files = resources.files(__package__).joinpath("protocols")
    names = sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))
    return [DEFAULT] + [n for n in names if n != DEFAULT]


def _is_named(name: str) -> bool:
    return name.removesuffix(" (modified)") in protocol_names()


def load_protocol(name_or_file: str | Path = DEFAULT) -> Protocol:
    """A named protocol (``lipsync-bench protocols`` lists them), or a TOML file that defines one
    (usually ``extends = "NAME"`` and a few changed choices).

    Args:
        name_or_file: a protocol name, or the path of a ``.toml`` file.

    Returns:
        The ``Protocol``, every choice checked against its schema.

    Raises:
        ParameterError: an unknown name, an unreadable file, a choice or metric parameter outside its
            schema.

    Example:
        >>> load_protocol("vico").metric_params["lmd"]["distance"]
        'l1-mean'
    """
    text = str(name_or_file)
    if text in protocol_names():
        source = resources.files(__package__).joinpath("protocols", f"{text}.toml").read_text(encoding="utf-8")
        where = f"protocol {text}"
    elif text.endswith(".toml"):
        path = Path(text).expanduser()
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ParameterError(f"--protocol {text}: cannot read the file ({exc.strerror or exc})") from None
        where = str(path)
    else:
        raise ParameterError(f"unknown protocol '{text}' (known: {', '.join(protocol_names())}; or a .toml file)")
    try:
        doc = read_toml(source)
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"{where}: not valid TOML ({exc})") from None
    return _parse(doc, where, default_name=Path(text).stem if text.endswith(".toml") else text)


_TOP_KEYS = {"name", "title", "reference", "extends", "metrics", "decode", "faces", "region", "summary", "params"}


def _parse(doc: dict, where: str, default_name: str) -> Protocol:
    """A protocol document: run-level choices in [decode], [faces], [region], [summary]; the metrics it
    defines in ``metrics``; their parameters, pooling and what is not reproduced in [params.METRIC]."""
    extra = set(doc) - _TOP_KEYS
    if extra:
        raise ParameterError(f"{where}: unknown entries {sorted(extra)} (a protocol has: name, title, reference, "
                             "extends, metrics, [decode], [faces], [region], [summary], [params.METRIC])")
    base = None
    if "extends" in doc:
        if doc["extends"] not in protocol_names():
            raise ParameterError(f"{where}: extends '{doc['extends']}', which is not a named protocol "
                                 f"({', '.join(protocol_names())})")
        base = load_protocol(doc["extends"])
    base = base or Protocol(sources={})
    choices, sources, unknown = dict(base.choices), dict(base.sources), set(base.unknown)

    def entry(key: str, raw: Any) -> Any:
        """``value``, or ``{ value = ..., source = "...", unknown = true }``."""
        if isinstance(raw, dict):
            if "value" not in raw or set(raw) - {"value", "source", "unknown"}:
                raise ParameterError(f"{where}: {key} must be a value or {{ value = ..., source = \"...\" }}")
            sources[key] = str(raw.get("source", where))
            (unknown.add if raw.get("unknown") else unknown.discard)(key)
            return raw["value"]
        sources[key] = where
        unknown.discard(key)
        return raw

    def table(name: str) -> dict:
        value = doc.get(name, {})
        if not isinstance(value, dict):
            raise ParameterError(f"{where}: [{name}] must be a table")
        return value

    try:
        for section in ("decode", "faces", "region", "summary"):
            for name, raw in table(section).items():
                key = f"{section}.{name}"
                choices[key] = check_choice(key, entry(key, raw))
        metrics = base.metrics
        if "metrics" in doc:
            listed = doc["metrics"]
            if listed == "all":
                metrics = None
            elif isinstance(listed, list) and listed and all(isinstance(m, str) for m in listed):
                metrics = tuple(get_metric(m).name for m in listed)
            else:
                raise ParameterError("metrics must be \"all\" or a list of metric names")
        metric_params = {m: dict(v) for m, v in base.metric_params.items()}
        pooling, unsupported = dict(base.pooling), dict(base.unsupported_metrics)
        for target, entries in table("params").items():
            if not isinstance(entries, dict):
                raise ParameterError(f"[params.{target}] must be a table")
            for metric in group_members(target) or [get_metric(target).name]:  # a group sets each member
                m = get_metric(metric)
                for name, raw in entries.items():
                    key = f"{metric}.{name}"
                    if name == "unsupported":
                        unsupported[metric] = str(raw)
                    elif name == "pool":
                        value = entry(key, raw)
                        if value not in POOLS:
                            raise ParameterError(f"{key}={value!r}: expected one of {', '.join(POOLS)}")
                        pooling[metric] = value
                    else:
                        metric_params.setdefault(metric, {})[name] = m.resolve_params({name: entry(key, raw)})[name]
    except ParameterError as exc:
        raise ParameterError(f"{where}: {exc}") from None
    content = {"choices": choices, "metrics": metrics, "metric_params": metric_params, "pooling": pooling,
               "unsupported": unsupported}
    return Protocol(choices=choices, name=str(doc.get("name", default_name)), title=str(doc.get("title", base.title)),
                    reference=str(doc.get("reference", base.reference)), sources=sources, unknown=frozenset(unknown),
                    metrics=metrics, metric_params=metric_params, pooling=pooling, unsupported_metrics=unsupported,
                    sha256=hashlib.sha256(canonical(content).encode()).hexdigest())


def upgrade(d: dict) -> dict:
    """A run's recorded protocol in today's form: stores written before named protocols recorded fps,
    sample rate, region, frame gap and landmarker only, all else being lipsync-bench's defaults then."""
    if "protocol" in d:
        return d
    choices = {k: p.default for k, p in CHOICES.items()}
    for old, new in _LEGACY_KEYS.items():
        if old in d:
            choices[new] = check_choice(new, d[old])
    default = load_protocol(DEFAULT)
    derived = default.with_choices({k: v for k, v in choices.items() if v != default.choices[k]}, "an older store")
    return {**derived.as_dict(resolve=False), **{k: d[k] for k in _RESOLVED if k in d}}


def diff(a: Protocol, b: Protocol) -> list[tuple[str, str, str]]:
    """Every choice whose value differs: (choice, value in a, value in b); the metric sets first where
    they differ, then the parameters of the metrics both define.

    Example:
        >>> [row for row in diff(load_protocol("syncnet-python"), load_protocol()) if row[0] == "faces.min_track"]
        [('faces.min_track', '100', '5')]
    """
    out = []
    metrics_a, metrics_b = a.default_metrics(), b.default_metrics()
    if metrics_a != metrics_b:
        out.append(("metrics", ", ".join(metrics_a), ", ".join(metrics_b)))
    both = set(metrics_a) & set(metrics_b)

    def rows(p: Protocol) -> dict[str, str]:  # per metric, so that groups compare member by member
        expanded = {}
        for key, value, _ in p.rows():
            head, _, rest = key.partition(".")
            members = group_members(head) if head not in CHOICES_SECTIONS else []
            for name in [m for m in members if m in both] if members else [head]:
                if name in CHOICES_SECTIONS or name in both:
                    expanded[f"{name}.{rest}" if rest else name] = value
        return expanded

    rows_a, rows_b = rows(a), rows(b)
    for key in dict.fromkeys([*rows_a, *rows_b]):
        if rows_a.get(key) != rows_b.get(key):
            out.append((key, rows_a.get(key, "(not defined)"), rows_b.get(key, "(not defined)")))
    return out


CHOICES_SECTIONS = ("decode", "faces", "region", "summary")


# --------------------------------------------------------------------------------------------------
# The software a session ran

PACKAGES = ("lipsync-bench", "torch", "torchvision", "av", "numpy", "scipy", "scikit-image", "pandas")


def environment(device: str) -> dict:
    """Versions and machine that computed a session's results, for telling two runs apart."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    device_name = "cpu"
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    return {
        "versions": versions,
        "ffmpeg": {lib: ".".join(map(str, v)) for lib, v in av.library_versions.items()},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "device_name": device_name,
        "torch_threads": torch.get_num_threads(),
    }


__all__ = ["CHOICES", "DEFAULT", "Protocol", "canonical", "check_choice", "diff", "environment", "load_protocol",
           "parse_choices", "protocol_names", "read_toml", "upgrade"]
