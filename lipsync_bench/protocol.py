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
import sys
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .errors import ParameterError
from .faces.settings import BACKENDS, DEFAULT_TRACK, INTERPOLATIONS, LINKINGS, REGIONS, TrackParams
from .jsontext import canonical
from .metrics.registry import FACE_NEEDS, PAIRED_NEEDS, Param, all_metrics, get_metric, group_members
from .rendering import Result, Rows, text_table
from .stats import POOLS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT = "lipsync-bench"
_T = DEFAULT_TRACK

#: What a run-level choice reaches, besides the needs of a metric (``registry.NEEDS``): "every" metric;
#: the metrics that see the region ("region": ``Metric.uses_region``); those that see a region crop
#: ("cropped": the region is not the full frame).
EVERY, REGION, CROPPED = "every", "region", "cropped"


@dataclass(frozen=True)
class Choice(Param):
    """A run-level choice of a protocol: a ``Param`` and what it ``reaches``: a metric's numbers depend
    on the choice when the metric has one of these needs (``registry.NEEDS``), or "every", "region",
    "cropped" (see above). ``definition`` reads it: tables, ``compare``, the report and ``merge`` put
    two results in one column only when every choice that reaches their metric agrees.

    ``recorded_when_set``: the choice is recorded (in a run's protocol, in the named protocol's sha256,
    in a definition) only when it holds another value than its default: a choice added after stores held
    runs, so that those runs and new ones at the default stay one protocol."""

    reaches: frozenset = frozenset({EVERY})
    recorded_when_set: bool = False


def recorded(choices: Mapping[str, Any]) -> dict:
    """The choices a record holds: each, but a ``recorded_when_set`` choice at its default."""
    return {k: v for k, v in choices.items() if not (CHOICES[k].recorded_when_set and v == CHOICES[k].default)}


_FACES = FACE_NEEDS

#: The run-level choices: the name, the lipsync-bench default, what is allowed, what it reaches.
CHOICES: dict[str, Choice] = {
    "decode.fps": Choice(25.0, "frame rate every input is resampled to, as ffmpeg's -r (frames per second); "
                               "0: each video's frames as stored", min=0),
    "decode.sample_rate": Choice(16000, "audio rate of the sync metrics, Hz (mono, 16-bit as pcm_s16le)",
                                 choices=(16000,), reaches=frozenset({"audio"})),
    "decode.max_frame_gap": Choice(3, "frame counts differing by at most this many are truncated to the shorter; "
                                      "-1: any gap", min=-1, reaches=PAIRED_NEEDS),
    "decode.resize": Choice("none", "generated frames of another size than their ground truth's: an error (none), "
                                    "or resized to the ground truth's size with this interpolation (OpenCV's)",
                            choices=("none", *INTERPOLATIONS), recorded_when_set=True),
    "decode.reencode": Choice("none", "lossy re-encodings before scoring: none, or a peer pipeline's chain: "
                                      "syncnet-python (run_pipeline.py: MPEG-4 q2 video with MP3 audio, q2 JPEG "
                                      "frames, XVID face crops), syncnet-python-0.2.3 (its video chain, the audio "
                                      "as PCM), latentsync (H.264 and AAC video, q2 JPEG frames, mp4v crops, AAC)",
                              choices=("none", "syncnet-python", "syncnet-python-0.2.3", "latentsync")),
    "faces.landmarker": Choice("auto", "the face stage's landmarker (auto: face-alignment when its weights are "
                                       "present, else dlib)", choices=BACKENDS, reaches=_FACES),
    "faces.detector": Choice("landmarker", "face detector: the landmarker's own, or syncnet_python's S3FD "
                                           "(sfd_face.pth, image scale 0.25, confidence 0.9)",
                             choices=("landmarker", "s3fd-syncnet-python"), reaches=_FACES),
    "faces.flip_input": Choice(False, "face-alignment also landmarks the mirrored face and averages", reaches=_FACES),
    "faces.min_track": Choice(_T.min_track, "tracks with at most this many detections are dropped", min=0,
                              reaches=_FACES),
    "faces.min_face_size": Choice(_T.min_face_size, "tracks whose mean box side is at most this many pixels "
                                                        "are dropped", min=0, reaches=_FACES),
    "faces.max_missed": Choice(_T.max_missed, "a track ends after this many frames without a detection", min=0,
                               reaches=_FACES),
    "faces.iou": Choice(_T.iou, "a detection joins a track above this overlap with its last box", min=0, max=1,
                        reaches=_FACES),
    "faces.smooth_kernel": Choice(_T.smooth_kernel, "median filter of the crop centre and size, frames (odd)",
                                  min=1, reaches=_FACES),
    "faces.shots": Choice("none", "shot boundaries that split face tracks: none, or PySceneDetect's content "
                                  "detector (0.6.x defaults; shots shorter than faces.min_track frames hold no "
                                  "track)", choices=("none", "pyscenedetect"), reaches=_FACES),
    "faces.linking": Choice("joonson", "how a frame's detections continue a track: joonson (syncnet_python's "
                                       "run_pipeline.py: a detection that overlaps too little is passed over), or "
                                       "first-face (the syncnet-python package: the frame's first detection "
                                       "continues the track or the frame counts as missed)", choices=LINKINGS,
                            reaches=_FACES, recorded_when_set=True),
    "region.kind": Choice("full", "what the frame metrics see: the full frame; a fixed box on the GT's face or "
                                  "mouth track; or each frame's own GT face detection (face-box)", choices=REGIONS,
                          reaches=frozenset({REGION})),
    "region.size": Choice(0, "crops resized to size x size pixels (0: not resized)", min=0,
                          reaches=frozenset({CROPPED})),
    "region.interpolation": Choice("bilinear", "the resize's interpolation (OpenCV's)",
                                   choices=tuple(INTERPOLATIONS), reaches=frozenset({CROPPED})),
    "region.fallback": Choice(96, "face-box: side of the centred box of a frame without a detection, pixels", min=1,
                              reaches=frozenset({CROPPED})),
    "summary.failed_videos": Choice("excluded", "a failed video is reported and left out of the mean (excluded), "
                                                "or voids the mean (fatal: scripts that stop at the first failure)",
                                    choices=("excluded", "fatal")),
}
#: The choices that have options of their own: ``eval --fps`` and ``evaluate(fps=...)`` set ``decode.fps``.
OPTIONS = {"fps": "decode.fps", "region": "region.kind", "max_frame_gap": "decode.max_frame_gap",
           "landmarker": "faces.landmarker"}
#: What a run records beside its choices, how they resolved on the machine, and what that reaches: the
#: face stage that placed a region crop (its landmarker and weights).
RESOLVED: dict[str, frozenset] = {"face_pipeline": frozenset({CROPPED})}

#: Old store keys (before named protocols) -> choices.
_LEGACY_KEYS = {"fps": "decode.fps", "sample_rate": "decode.sample_rate", "region": "region.kind",
                "max_frame_gap": "decode.max_frame_gap", "landmarker": "faces.landmarker"}


def read_toml(text: str) -> dict:
    """A TOML document (tomllib, or tomli on Python 3.10)."""
    return tomllib.loads(text)


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
class Protocol(Result):
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
        return replace(_T, min_track=c["faces.min_track"], min_face_size=c["faces.min_face_size"],
                       max_missed=c["faces.max_missed"], iou=c["faces.iou"], smooth_kernel=c["faces.smooth_kernel"])

    def landmarker_options(self) -> dict:
        """Options of the landmarker backend (``faces.get_backend``)."""
        return {"flip_input": True} if self.choices["faces.flip_input"] else {}

    def face_options(self) -> dict:
        """The face stage's detector, shots and linking (``faces.FaceAnalyzer``'s options)."""
        c = self.choices
        return {"detector": c["faces.detector"], "shots": c["faces.shots"], "linking": c["faces.linking"]}

    def pool(self, metric: str) -> str:
        """How ``metric``'s per-video values make one number: "videos" (each video one sample) or "frames"
        (each frame one sample: the mean weighted by frames)."""
        return self.pooling.get(metric, "videos")

    # -- checks

    def problems(self) -> list[str]:
        """What keeps this protocol from running here (choices that contradict each other)."""
        out = []
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

    def with_options(self, choices: Mapping[str, Any] | None = None, **options: Any) -> "Protocol":
        """This protocol with the choices that have options of their own (``OPTIONS``: ``fps=25``,
        ``region="mouth"``...; None leaves a choice as it is) changed, then any other ``choices``
        (``{"faces.min_track": 100}``): what ``eval``'s options and ``evaluate``'s arguments do alike.

        Example:
            >>> load_protocol().with_options({"faces.min_track": 100}, fps=30).modified
            {'decode.fps': (25.0, 30.0), 'faces.min_track': (5, 100)}
        """
        unknown = set(options) - set(OPTIONS)
        if unknown:
            raise ParameterError(f"unknown options {sorted(unknown)} (known: {', '.join(OPTIONS)})")
        protocol = self
        for name, value in options.items():
            if value is not None:
                protocol = protocol.with_choices({OPTIONS[name]: value}, f"--{name.replace('_', '-')}")
        return protocol.with_choices(choices or {}, "--set")

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

    def as_dict(self) -> dict:
        """What a run records of the protocol itself: the name, the named protocol's sha256, every
        run-level choice and what a derived protocol changed (``pipeline.protocol_record`` adds how the
        face stage resolved on the machine)."""
        d = {"protocol": self.name, "protocol_sha256": self.sha256, **recorded(self.choices)}
        if self.modified:
            d["modified"] = {k: list(v) for k, v in sorted(self.modified.items())}
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

    def to_json(self) -> dict:
        """``protocols show --json``: the protocol, what keeps it from running here, every choice."""
        return {"name": self.name, "title": self.title, "reference": self.reference, "sha256": self.sha256,
                "cannot_run": self.problems(),
                "choices": [{"choice": k, "value": v, "source": src} for k, v, src in self.rows()]}

    def text(self) -> str:
        """``protocols show``: the protocol's name, reference and checksum, then every choice."""
        lines = [f"{self.name}: {self.title}", f"reference: {self.reference}", f"sha256: {self.sha256}"]
        lines += [f"cannot run here: {problem}" for problem in self.problems()]
        return "\n".join(lines + [text_table(self.rows(), ["choice", "value", "source"])])

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


class ProtocolListing(Rows):
    """``lipsync-bench protocols``: the named protocols, one line each, and per protocol the metrics that
    cannot run here and why (``missing``, filled by ``evaluation.protocol_listing``)."""

    def __init__(self, protocols=()):
        super().__init__(protocols)
        self.missing: dict[str, dict[str, str]] = {}

    def to_json(self) -> list[dict]:
        return [{"name": p.name, "title": p.title, "reference": p.reference, "sha256": p.sha256,
                 "metrics": p.default_metrics(), "cannot_run": p.problems(),
                 "metrics_not_runnable_here": self.missing.get(p.name, {}), "unknown": sorted(p.unknown)}
                for p in self]

    def _runs_here(self, p: "Protocol") -> str:
        if p.problems():
            return "no: " + "; ".join(x.split(":")[0] for x in p.problems())
        missing, names = self.missing.get(p.name, {}), p.default_metrics()
        if not missing:
            return "yes"
        if len(missing) == len(names):
            return "no (0 of {0} metrics)".format(len(names))
        return f"partly ({len(names) - len(missing)} of {len(names)} metrics)"

    def text(self) -> str:
        body = [[p.name, p.title, ", ".join(p.metrics) if p.metrics else "all", self._runs_here(p)] for p in self]
        lines = [text_table(body, ["protocol", "procedure", "metrics", "runs here"])]
        reasons: dict[str, list[str]] = {}  # one line per reason, however many protocols it stops
        for p in self:
            for metric, reason in self.missing.get(p.name, {}).items():
                reasons.setdefault(reason, [])
                if metric not in reasons[reason]:
                    reasons[reason].append(metric)
        if reasons:
            lines.append("cannot run here:")
            lines += [f"  {', '.join(metrics)}: {reason}" for reason, metrics in reasons.items()]
        return "\n".join(lines)


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
    content = {"choices": recorded(choices), "metrics": metrics, "metric_params": metric_params, "pooling": pooling,
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
    return {**derived.as_dict(), **{k: d[k] for k in RESOLVED if k in d}}


class ProtocolDiff(Rows):
    """``protocols diff A B``: the rows (choice, value in A, value in B) of the choices that differ."""

    def __init__(self, a: str, b: str, rows=()):
        super().__init__(rows)
        self.a, self.b = a, b

    def text(self) -> str:
        if not self:
            return f"{self.a} and {self.b} make the same choices"
        return text_table(self, ["choice", self.a, self.b])

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b,
                "differences": [{"choice": k, "a": va, "b": vb} for k, va, vb in self]}


def diff(a: Protocol, b: Protocol) -> ProtocolDiff:
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
    differ = {key: (rows_a.get(key, "(not defined)"), rows_b.get(key, "(not defined)"))
              for key in dict.fromkeys([*rows_a, *rows_b]) if rows_a.get(key) != rows_b.get(key)}
    named = set()
    for key, (value_a, value_b) in differ.items():
        head, _, rest = key.partition(".")
        group = get_metric(head).group if rest and head in both else None
        members = [f"{m}.{rest}" for m in group_members(group) if m in both] if group else []
        if members and all(differ.get(k) == (value_a, value_b) for k in members):
            key = f"{group}.{rest}"  # every member differs alike: one row, named as 'protocols show' names it
        if key not in named:
            named.add(key)
            out.append((key, value_a, value_b))
    return ProtocolDiff(a.name, b.name, out)


CHOICES_SECTIONS = ("decode", "faces", "region", "summary")


# --------------------------------------------------------------------------------------------------
# What defines a number


def definition(protocol: Mapping[str, Any], metric: str, params: Mapping[str, Any] | None = None) -> dict:
    """Every choice the numbers of ``metric`` depend on, under a run's recorded ``protocol`` and the
    metric's recorded ``params``: the run-level choices that reach the metric (``Choice.reaches``, by
    what it needs with these parameters), its defining parameters, its pooling, the weights (their
    checksums) and what resolved on the machine (the face stage, the sync expert). Two results are
    comparable exactly when their definitions are equal; the protocol's name is not part of it (two
    protocols that agree on a metric define the same numbers). Tables, ``compare``, the report and
    ``merge`` read it; nothing else decides what shares a column.

    Example:
        >>> d = definition(load_protocol("talklip").as_dict(), "psnr", {"identical": "100"})
        >>> d["region.kind"], d["psnr.identical"], "faces.min_track" in d
        ('face-box', '100', False)
    """
    m = get_metric(metric)
    params = {**m.defaults, **(params or {})}
    reached = set(m.needs_of(params)) | {EVERY}
    if m.uses_region:
        reached.add(REGION)
        if protocol.get("region.kind", "full") != "full":
            reached.add(CROPPED)
    out = {k: protocol.get(k) for k, choice in CHOICES.items() if choice.reaches & reached
           and not (choice.recorded_when_set and protocol.get(k, choice.default) == choice.default)}
    out.update({k: protocol.get(k) for k, reaches in RESOLVED.items() if reaches & reached})
    out.update({f"{metric}.{k}": params[k] for k, p in m.params.items() if p.defines})
    out["pool"] = params.get("pool", "videos")
    files = params.get("weights")
    files = [files] if isinstance(files, dict) else files or []
    out["weights"] = [f.get("sha256") for f in files if isinstance(f, dict)]
    out["resolved"] = params.get("resolved", {})
    return out


__all__ = ["CHOICES", "DEFAULT", "OPTIONS", "Choice", "Protocol", "ProtocolDiff", "ProtocolListing", "check_choice",
           "definition", "diff", "load_protocol", "parse_choices", "protocol_names", "read_toml",
           "upgrade"]
