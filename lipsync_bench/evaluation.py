"""Evaluation of a folder of generated videos against their ground truth: the orchestration.

Options are checked against the metric declarations before any input is read; then each pair goes
through the pipeline (``lipsync_bench.pipeline``) once, its rows committed to the store together, so
an interrupted run resumes where it stopped and a failing video is recorded as that video's error
while the others go on. Reference runs (a metric computed on the GT videos themselves, e.g. the GT's
own sync scores) ride on the same decode of each GT; dataset metrics are combined at the end from the
per-video state kept in the results folder.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd
import torch
from tqdm import tqdm

from . import media
from .dataset_metrics import compute_dataset_metrics
from .environment import environment
from .errors import LipsyncBenchError, PairingError, ParameterError, UnavailableError
from .faces.analysis import content_hash
from .jsontext import json_float, summary_json
from .metrics.registry import (
    DIRECTIONS,
    FACE_NEEDS,
    GT_NEEDS,
    PAIRED_NEEDS,
    Metric,
    all_metrics,
    get_metric,
    resolve_run_params,
)
from .pipeline import (
    CHUNK_FRAMES,
    PairJob,
    PairOutcome,
    RunSetup,
    evaluate_pair,
    face_analyzer,
    pair_signature,
    protocol_record,
    reference_signature,
    state_key,
)
from .protocol import DEFAULT, Protocol, ProtocolListing, load_protocol, protocol_names
from .rendering import Result, Rows, text_table
from .report import eval_text, metric_summary, write_exports
from .shards import check_shard, in_shard
from .stats import dataset_summary
from .store import ResultRow, ResultStore, Run, ground_truth_name, is_ground_truth
from .weights import ENV_VAR

SUMMARY_COLUMNS = ["mean", "std", "ci_low", "ci_high", "n", "failed"]
#: Seconds a decoder may go without giving a frame (``eval --decode-timeout``).
DEFAULT_DECODE_TIMEOUT = 120.0


@dataclass
class EvalRun(Result):
    """What one ``eval`` did and found; everything the command prints comes from here.

    ``videos``: the long table, one row per video and metric of the run (``value`` NaN and the
    reason in ``error`` for a failed video). ``dataset_values``: dataset metrics by name.
    ``ground_truth``: the reference runs' summary, warnings and failures. ``evaluate`` returns one
    (its example shows its tables).
    """

    run: Run
    session_id: int
    metrics: list[str]
    skipped_metrics: dict[str, str]  # metric -> why it cannot run here
    pairs: int
    computed: int  # videos computed in this session
    resumed: int  # videos whose results were already in the store
    unpaired_gen: list[str]
    unpaired_gt: list[str]
    videos: pd.DataFrame
    dataset_values: dict[str, dict] = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    ground_truth: dict = field(default_factory=dict)
    skipped_inputs: list[str] = field(default_factory=list)  # folders not entered (symbolic link loops)
    shard: tuple[int, int] | None = None
    out: Path | None = None  # the results folder (None: nothing kept)
    tracks: dict[str, list[dict]] = field(default_factory=dict)  # video -> every face track scored, where kept
    notes: list[str] = field(default_factory=list)  # what looks wrong with the inputs, though it runs

    @property
    def protocol(self) -> dict:
        """The run's protocol and each metric's parameters (weights and their checksums included)."""
        return {**self.run.protocol, "metric_params": self.run.metric_params}

    def summary_dict(self) -> dict[str, dict]:
        """Per metric: mean, std, 95% bootstrap CI, n videos with a value, failed videos (pooled and
        with failures counted as the run's protocol says)."""
        out = {}
        for metric in self.metrics:
            rows = self.videos[self.videos.metric == metric]
            if get_metric(metric).scope == "dataset":
                out[metric] = dataset_summary(self.dataset_values.get(metric, {}), int(rows.error.notna().sum()))
            else:
                out[metric] = metric_summary(rows, self.run, metric)
        return out

    @property
    def summary(self) -> pd.DataFrame:
        """Indexed by metric name: ``mean``, ``std``, ``ci_low``, ``ci_high``, ``n``, ``failed`` (a
        dataset metric's value in ``mean``)."""
        records = {m: {"mean": s["mean"], "std": s["std"], "ci_low": s["ci95"][0], "ci_high": s["ci95"][1],
                       "n": s["n"], "failed": s["failed"]} for m, s in self.summary_dict().items()}
        df = pd.DataFrame.from_dict(records, orient="index", columns=SUMMARY_COLUMNS)
        df.index.name = "metric"
        return df.astype({"mean": float, "std": float, "ci_low": float, "ci_high": float})

    @property
    def dataset(self) -> pd.DataFrame:
        """Dataset metrics, indexed by name: ``value``, ``videos``, ``frames``, ``error``, ``warnings``."""
        cols = ["value", "videos", "frames", "error", "warnings"]
        df = pd.DataFrame.from_dict({m: {c: d.get(c) for c in cols} for m, d in self.dataset_values.items()},
                                    orient="index", columns=cols)
        df.index.name = "metric"
        return df

    def unofficial_weights(self) -> dict[str, dict]:
        """Metrics computed with weights whose checksum is not the published one."""
        return {m: w for m, w in self.run.unofficial_weights().items() if m in self.metrics}

    @property
    def failures(self) -> pd.DataFrame:
        """One row per failed video: its first error message, and ``metrics``: the metrics that failed,
        or "" when all of them did (a video that could not be read at all)."""
        bad = self.videos[self.videos.error.notna()]
        first = bad.drop_duplicates("video")[["video", "metric", "error"]].reset_index(drop=True)
        failed = bad.groupby("video").metric.apply(list)
        total = self.videos.groupby("video").metric.nunique()
        first["metrics"] = [("" if len(failed[v]) == total[v] else ", ".join(failed[v])) for v in first.video]
        return first

    def to_json(self) -> dict:
        """The document ``eval --json`` prints."""
        ok = self.videos[self.videos.error.isna()]
        return {
            "method": self.run.method,
            "dataset": self.run.dataset,
            "protocol": self.run.protocol,
            "metric_params": self.run.metric_params,
            "environment": self.environment,
            "summary": summary_json(self.summary_dict()),
            "unofficial_weights": self.unofficial_weights(),
            "skipped_metrics": self.skipped_metrics,
            "videos": {video: {r.metric: json_float(r.value) for r in rows.itertuples() if r.value == r.value}
                       for video, rows in ok.groupby("video")},
            "failures": self.failures.to_dict(orient="records"),
            "skipped_inputs": self.skipped_inputs,
            "unpaired": {"generated": self.unpaired_gen, "ground_truth": self.unpaired_gt},
            "counts": {"pairs": self.pairs, "computed": self.computed, "resumed": self.resumed},
            "ground_truth": ({**self.ground_truth, "summary": summary_json(self.ground_truth.get("summary", {}))}
                             if self.ground_truth else {}),
            **({"tracks": self.tracks} if self.tracks else {}),
            "notes": self.notes,
        }

    def text(self, out: str | os.PathLike | None = None) -> str:
        """What ``eval`` prints: the summary table, failures, warnings and notes."""
        return eval_text(self, self.out if out is None else out)

    @property
    def exit_code(self) -> int:
        """1 when no video could be evaluated, else 0."""
        return 1 if self.error or self.pairs and self.videos.error.notna().all() else 0

    @property
    def error(self) -> str | None:
        if not self.pairs and self.shard is None:
            if self.run.gt_dir is None:
                return f"no video in {self.run.gen_dir} could be read"
            return f"no pairs: no file name in {self.run.gen_dir} matches one in {self.run.gt_dir}"
        return None


# --------------------------------------------------------------------------------------------------
# Options, checked before any work


def plan_metrics(names: list[str], overrides: dict[str, dict], protocol: Protocol, ground_truth: bool = True,
                 named: bool = True) -> tuple[list[Metric], dict[str, dict], dict[str, list], dict[str, str]]:
    """The runnable metrics, their resolved parameters (the protocol's, then ``overrides``; weights,
    pooling and what resolves on this machine recorded), their weights files, and the skipped ones with
    why. Bad options, and protocols that cannot run here, raise here. A metric that cannot run here (no
    weights, no ground truth, another frame rate) is refused when ``named`` (asked for by name), else
    skipped, saying why; a run left with no metric at all is refused."""
    problems = protocol.problems()
    if problems:
        raise ParameterError(f"protocol '{protocol.name}' cannot run here: " + "; ".join(problems)
                             + " (another protocol, or a changed choice, e.g. --set faces.detector=landmarker, runs "
                               "as a derived protocol)")
    protocol.check_metrics(names)
    base = {m: dict(p) for m, p in protocol.metric_params.items() if m in names}
    from_protocol = resolve_run_params(names, base)
    resolved = resolve_run_params(names, base, overrides)
    chosen = [get_metric(n) for n in names]
    skipped = {}
    if not ground_truth:
        if protocol.region != "full":
            raise ParameterError(f"region {protocol.region} is placed on the ground truth's faces: give --gt")
        need_gt = [m.name for m in chosen if m.needs_of(resolved[m.name]) & GT_NEEDS]
        if need_gt and named:
            alone = [n for n in all_metrics() if not get_metric(n).needs_of(get_metric(n).defaults) & GT_NEEDS]
            raise ParameterError(f"{', '.join(need_gt)} {'needs' if len(need_gt) == 1 else 'need'} ground-truth "
                                 f"videos: give --gt, or choose metrics that read the generated video alone "
                                 f"({', '.join(alone)})")
        skipped.update({name: "needs ground-truth videos (--gt)" for name in need_gt})
    unavailable, face_pipeline = _unavailable([m for m in chosen if m.name not in skipped], resolved, protocol)
    skipped.update(unavailable)
    runnable = [m for m in chosen if m.name not in skipped]
    if skipped and (named or not runnable):
        why = "; ".join(f"{name} cannot run here: {reason}" for name, reason in skipped.items())
        if not named:
            raise ParameterError(f"no metric of protocol '{protocol.name}' can run here: {why}")
        raise ParameterError(why + (" (leave them out, or leave --metrics out: the protocol's metrics that cannot "
                                    "run are then skipped, saying why)" if runnable else ""))
    weights_paths: dict[str, list] = {}
    params = {}
    for m in runnable:
        p = dict(resolved[m.name])
        changed = {k: from_protocol[m.name][k] for k in m.params if p[k] != from_protocol[m.name][k]}
        if changed:  # the protocol's values of the parameters the command line changed
            p["protocol_values"] = changed
        p["pool"] = protocol.pool(m.name)
        found = m.resolve_weights(p)
        if found:  # the files' checksums are part of the protocol of every result they give
            weights_paths[m.name] = [path for path, _ in found]
            p["weights"] = found[0][1] if len(found) == 1 else [d for _, d in found]
        extra = dict(m.protocol_extra(p)) if m.protocol_extra else {}
        if m.needs_of(p) & FACE_NEEDS:
            extra["face_pipeline"] = face_pipeline
        if extra:
            p["resolved"] = extra
        params[m.name] = p
    return runnable, params, weights_paths, skipped


def _unavailable(chosen: list[Metric], resolved: dict[str, dict], protocol: Protocol) -> tuple[dict[str, str], dict]:
    """Why each of ``chosen`` cannot run here under ``protocol`` (not reproduced, another frame rate, no
    weights, no face stage), and the face stage's record (its models loaded once here; {} if unused)."""
    reasons = {}
    for m in chosen:
        reason = (protocol.unsupported_metrics.get(m.name) and
                  f"not reproduced by protocol '{protocol.name}': {protocol.unsupported_metrics[m.name]}")
        if not reason and m.frame_rate is not None and protocol.fps is not None \
                and abs(protocol.fps - m.frame_rate) > 0.01:
            reason = f"needs {m.frame_rate:g} fps (its procedure's frame rate); this protocol's is {protocol.fps:g}"
        reason = reason or m.available(resolved[m.name])
        if reason:
            reasons[m.name] = reason
    face_pipeline = {}
    if any(m.needs_of(resolved[m.name]) & FACE_NEEDS for m in chosen) or protocol.region != "full":
        try:
            face_pipeline = face_analyzer(protocol).params()
        except UnavailableError as exc:
            if protocol.region != "full":
                raise ParameterError(f"protocol '{protocol.name}': region {protocol.region} needs the face stage: "
                                     f"{exc}") from None
            reasons.update({m.name: str(exc) for m in chosen
                            if m.needs_of(resolved[m.name]) & FACE_NEEDS and m.name not in reasons})
    return reasons, face_pipeline


def protocol_listing() -> ProtocolListing:
    """Every named protocol (``lipsync-bench protocols``), with which of its metrics can run here now.

    Example:
        >>> listing = protocol_listing()
        >>> "ssim" in listing.missing["lipsync-bench"], listing[0].name
        (False, 'lipsync-bench')
    """
    listing = ProtocolListing(load_protocol(n) for n in protocol_names())
    for p in listing:
        names = p.default_metrics()
        if p.problems():
            continue
        try:
            resolved = resolve_run_params(names, {m: dict(v) for m, v in p.metric_params.items() if m in names})
            listing.missing[p.name] = _unavailable([get_metric(n) for n in names], resolved, p)[0]
        except ParameterError as exc:  # a region the face stage cannot place here: nothing runs
            listing.missing[p.name] = {n: str(exc) for n in names}
    return listing


def run_eval(gen: str | os.PathLike, gt: str | os.PathLike | None, metrics: Iterable[str] | None = None, *,
             method: str | None = None, dataset: str | None = None, out: str | os.PathLike | None = None,
             protocol: Protocol | None = None, params: dict[str, dict] | None = None,
             device: str = "cpu", workers: int = 1, force: bool = False, progress: bool = True,
             chunk: int = CHUNK_FRAMES, command: str | None = None,
             shard: tuple[int, int] | None = None, decode_timeout: float | None = DEFAULT_DECODE_TIMEOUT) -> EvalRun:
    """Evaluate every generated/GT pair and store the rows; see ``evaluate`` for the arguments.

    ``shard=(i, n)`` evaluates only the pairs of shard i of n (``in_shard``); dataset metrics
    are then left to ``merge``, which combines the shards' per-video state."""
    gen, gt = Path(gen), Path(gt) if gt is not None else None
    protocol = protocol or load_protocol()
    # default: every metric the protocol defines; those that cannot run here are skipped, saying why
    names = list(dict.fromkeys(metrics or protocol.default_metrics()))
    if shard is not None:
        check_shard(shard)
    limits = _decode_limits(decode_timeout)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    for name in names:
        get_metric(name)  # an unknown name fails first, before the inputs are listed or a model loaded
    pairing = media.pair_inputs(gen, gt)
    if not pairing.pairs and not pairing.problems:
        if gt is None:
            raise PairingError(f"no videos or frame folders in {gen}")
        raise PairingError(f"no pairs: no file name in {gen} matches one in {gt} ({len(pairing.unpaired_gen)} "
                           f"inputs in --gen, {len(pairing.unpaired_gt)} in --gt)")
    runnable, resolved, weights_paths, skipped = plan_metrics(names, params or {}, protocol, gt is not None,
                                                              named=bool(metrics))
    compares = any(m.needs_of(resolved[m.name]) & PAIRED_NEEDS for m in runnable) or protocol.region != "full"
    notes = _input_notes(pairing, protocol, limits, compares) if gt is not None else []

    if shard is not None:
        pairing.pairs = [p for p in pairing.pairs if in_shard(p.key, shard)]
        pairing.problems = {k: v for k, v in pairing.problems.items() if in_shard(k, shard)}
    method = method or _input_name(gen)
    dataset = dataset or _input_name(gt or gen)
    scratch = None if out is not None else tempfile.TemporaryDirectory(prefix="lipsync-bench-")
    store = ResultStore(out, state_dir=None if out is not None else Path(scratch.name) / "state")
    cache_dir = Path(out) / "cache" if out is not None else Path(scratch.name)
    try:
        run = store.open_run(method, dataset, protocol_record(protocol), resolved, str(gen.resolve()),
                             str(gt.resolve()) if gt is not None else None, force=force)
        env = {**environment(device), "decoding": limits.as_dict()}
        session = store.start_session(run, env, command)
        references, truth_error = ({}, None) if is_ground_truth(method) or gt is None else _open_references(
            store, dataset, gt, runnable, resolved, protocol, force)
        ref_sessions = {name: store.start_session(ref_run, env, command) for name, (ref_run, _) in references.items()}
        setup = RunSetup(resolved, {name: p for name, (_, p) in references.items()}, protocol, device, cache_dir,
                         store.state_dir, weights_paths, chunk, limits)
        names_run = [m.name for m in runnable]
        for key, problem in pairing.problems.items():
            store.write(run, session, [ResultRow(key, m, None, None, (), problem) for m in names_run])
        jobs, resumed = _jobs(store, run, references, pairing.pairs, names_run, setup)
        try:
            _compute(store, run, session, references, ref_sessions, jobs, setup, workers, progress, f"eval {method}")
            if shard is None:  # a shard's dataset value would cover a fraction of the videos: merge combines them
                compute_dataset_metrics(store, run, session, [m for m in runnable if m.scope == "dataset"],
                                        resolved, recompute=any(j.metrics for j in jobs))
        finally:
            store.finish_session(session)
            for _name, s in ref_sessions.items():
                store.finish_session(s)
        ground_truth = _reference_summary(store, references, pairing.pairs, jobs) if references else {}
        if truth_error:
            ground_truth["error"] = truth_error
        results = store.results([run])
        results = results[results.metric.isin(names_run)].reset_index(drop=True)
        if out is not None:
            write_exports(store, Path(out))
        dataset_values = store.dataset_results(run)
        tracks = {video: d["tracks"] for name in names_run for video, d in store.details(run, name).items()
                  if video in set(results.video) and "tracks" in d}
    finally:
        store.close()
        if scratch is not None:
            scratch.cleanup()
    return EvalRun(run, session, names_run, skipped, len(pairing.pairs), sum(bool(j.metrics) for j in jobs),
                   resumed, pairing.unpaired_gen, pairing.unpaired_gt, results, dataset_values, env, ground_truth,
                   pairing.skipped, shard, Path(out) if out is not None else None, tracks, notes)


RATE_SAMPLE = 4  # pairs whose native frame rates are read before any work


def _input_notes(pairing: media.Pairing, protocol: Protocol, limits: media.DecodeLimits,
                 compares: bool) -> list[str]:
    """What looks wrong with the inputs before any work: folders that look swapped, generated inputs
    byte-identical to their GT, native frame rates that differ (read on the first pairs). Frames
    compared as stored (``decode.fps`` 0) at rates that differ on every pair read are refused: each
    video would fail on its frame count after its decoding."""
    notes = []
    if len(pairing.unpaired_gen) > len(pairing.unpaired_gt) and len(pairing.unpaired_gen) > len(pairing.pairs):
        notes.append(f"--gen holds more unpaired inputs ({len(pairing.unpaired_gen)}) than pairs "
                     f"({len(pairing.pairs)}): are --gen (the generated videos) and --gt (the ground truth) swapped?")
    same = [p.key for p in pairing.pairs if p.gen != p.gt and p.gen.is_file() and p.gt.is_file()
            and p.gen.stat().st_size == p.gt.stat().st_size and content_hash(p.gen) == content_hash(p.gt)]
    if same:
        notes.append(f"{len(same)} of {len(pairing.pairs)} generated inputs are byte-identical to their GT (a copy of "
                     f"the ground truth, or --gen and --gt naming the same videos?): {', '.join(same[:5])}"
                     + (" …" if len(same) > 5 else ""))
    differ = []
    for pair in [p for p in pairing.pairs if p.gen != p.gt][:RATE_SAMPLE]:
        try:
            rates = [media.probe(path, limits).native_fps for path in (pair.gen, pair.gt)]
        except LipsyncBenchError:
            continue  # the video's own error, in its turn
        if None not in rates and abs(rates[0] - rates[1]) > 0.01:
            differ.append(f"{pair.key} (generated {rates[0]:g} fps, ground truth {rates[1]:g} fps)")
    if differ and compares and protocol.fps is None and len(differ) == min(RATE_SAMPLE, len(pairing.pairs)):
        raise ParameterError("frames are compared as stored (decode.fps 0), and the native frame rates of the "
                             f"generated videos and their GT differ: {'; '.join(differ)}; every such pair would fail "
                             "on its frame count. --fps 25 resamples both to 25 fps")
    if differ:
        how = f"both resampled to {protocol.fps:g} fps" if protocol.fps else "compared frame by frame as stored"
        sampled = min(RATE_SAMPLE, len(pairing.pairs))
        notes.append(f"native frame rates differ in {len(differ)} of the first {sampled} pairs ({how}): "
                     + "; ".join(differ))
    return notes


def _input_name(path: Path) -> str:
    """A default method or dataset name: the folder's name, or a single file's stem."""
    return path.stem if path.is_file() else path.resolve().name


def _open_references(store: ResultStore, dataset: str, gt: Path, metrics: list[Metric], params: dict[str, dict],
                     protocol: Protocol, force: bool) -> tuple[dict[str, tuple[Run, dict]], str | None]:
    """The reference runs the metrics declare: name -> (run, metric -> parameters).
    A store that holds them under another protocol keeps them; the reason is returned."""
    groups: dict[str, dict[str, dict]] = {}
    for m in metrics:
        if m.reference is not None:
            p = {**params[m.name], **m.reference.params}
            groups.setdefault(ground_truth_name(m.definition_suffix(p), protocol.name), {})[m.name] = p
    out, error = {}, None
    for name, p in groups.items():
        try:
            out[name] = (store.open_run(name, dataset, protocol_record(protocol), p, str(gt.resolve()),
                                        str(gt.resolve()), force=force), p)
        except LipsyncBenchError as exc:
            error = f"ground-truth {', '.join(get_metric(m).label for m in p)} not computed: {exc}"
    return out, error


def _jobs(store: ResultStore, run: Run, references: dict[str, tuple[Run, dict]], pairs: list[media.Pair],
          names: list[str], setup: RunSetup) -> tuple[list[PairJob], int]:
    """The pairs with metrics not yet in the store for their current inputs, and how many are complete."""
    done = _complete(store, run, names)
    ref_done = {name: _complete(store, ref_run, list(p)) for name, (ref_run, p) in references.items()}
    jobs, resumed = [], 0
    for pair in pairs:
        sig = pair_signature(pair)
        missing = [m for m in names if done.get((pair.key, m), "-") != sig]
        ref_sig = reference_signature(pair)
        refs = {name: [m for m in p if ref_done[name].get((pair.key, m), "-") != ref_sig]
                for name, (_, p) in references.items()}
        refs = {k: v for k, v in refs.items() if v}
        if not missing:
            resumed += 1
        if missing or refs:
            jobs.append(PairJob(pair, missing, refs, _reuse(store, pair, missing, setup)))
    return jobs, resumed


def _complete(store: ResultStore, run: Run, names: list[str]) -> dict[tuple[str, str], str | None]:
    """(video, metric) -> input signature of the rows that are complete: a value, and for a dataset
    metric every state file present and intact (a damaged one is computed again)."""
    done = store.completed(run)
    for name in names:
        if get_metric(name).scope != "dataset":
            continue
        states = store.states(run, name)
        for video, metric in [k for k in done if k[1] == name]:
            sides = states.get(video, {})
            if not sides or not all(store.state_ok(name, digest) for digest, _ in sides.values()):
                del done[(video, metric)]
    return done


def _reuse(store: ResultStore, pair: media.Pair, names: list[str], setup: RunSetup) -> dict[str, dict[str, Path]]:
    """State of the GT that an earlier run computed under the same definition."""
    out = {}
    for name in names:
        if get_metric(name).scope == "dataset":
            digest = store.find_state(name, state_key(pair.gt, setup.protocol, setup.params[name]))
            if digest is not None:
                out[name] = {"gt": store.state_file(name, digest)}
    return out


def _decode_limits(timeout: float | None) -> media.DecodeLimits:
    """Each input decoded in a worker process, stopped after ``timeout`` seconds without a frame; None
    or 0 decodes in this process (no isolation: a crashing decoder takes the run down)."""
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0 or timeout != timeout):
        raise ParameterError(f"--decode-timeout {timeout!r}: a number of seconds, 0 or more")
    return media.DecodeLimits(True, float(timeout)) if timeout else media.DecodeLimits(False, 0.0)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _compute(store: ResultStore, run: Run, session: int, references: dict[str, tuple[Run, dict]],
             ref_sessions: dict[str, int], jobs: list[PairJob], setup: RunSetup, workers: int, progress: bool,
             desc: str) -> None:
    """Evaluate the jobs (in ``workers`` processes), storing each video's rows as it finishes."""
    bar = tqdm(total=len(jobs), desc=desc, unit="video", disable=not progress or not jobs, file=sys.stderr,
               dynamic_ncols=True)

    def finish(outcome: PairOutcome) -> None:
        if outcome.rows:
            store.write(run, session, outcome.rows)
        for name, rows in outcome.references.items():
            ref_run = references[name][0]
            store.write(ref_run, ref_sessions[name], _checked(rows, not ref_run.unofficial_weights()))
        bar.update()

    try:
        if workers <= 1 or len(jobs) <= 1:
            # the frames of the video at hand: decoding and the face stage take most of a video's time
            frames = tqdm(desc="frames", unit="frame", disable=bar.disable, file=sys.stderr, dynamic_ncols=True,
                          position=1, leave=False, bar_format="{desc}: {n_fmt} [{elapsed}, {rate_fmt}]")
            try:
                for job in jobs:
                    frames.reset()
                    frames.set_description(f"{job.pair.key}: frames" + (" and faces" if _reads_faces(job, setup)
                                                                         else ""))
                    finish(evaluate_pair(job, setup, frames.update))
            finally:
                frames.close()
            return
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(threads,)) as pool:
            futures = [pool.submit(evaluate_pair, job, setup) for job in jobs]
            try:
                for future in as_completed(futures):
                    finish(future.result())
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        bar.close()


def _reads_faces(job: PairJob, setup: RunSetup) -> bool:
    params = [setup.params[m] for m in job.metrics] + [p[m] for name, ms in job.references.items()
                                                        for p in [setup.reference_params[name]] for m in ms]
    names = job.metrics + [m for ms in job.references.values() for m in ms]
    return setup.protocol.region != "full" or any(get_metric(n).needs_of(p) & FACE_NEEDS
                                                  for n, p in zip(names, params, strict=True))


def _checked(rows: list[ResultRow], official: bool) -> list[ResultRow]:
    """Reference rows with the declared plausibility warning (with the official weights only: random
    or retrained weights give other scales)."""
    for r in rows:
        check = get_metric(r.metric).reference.check
        if official and check is not None and r.value is not None and (warning := check(r.value)):
            r.warnings = r.warnings + (warning,)
    return rows


def _reference_summary(store: ResultStore, references: dict[str, tuple[Run, dict]], pairs: list[media.Pair],
                       jobs: list[PairJob]) -> dict:
    keys = {p.key for p in pairs}
    summary, warnings, failures = {}, [], []
    for _name, (ref_run, p) in references.items():
        rows = store.results([ref_run])
        rows = rows[rows.video.isin(keys) & rows.metric.isin(list(p))]
        for m in p:
            summary[m] = metric_summary(rows[rows.metric == m], ref_run, m)
        warnings += [(r.video, w) for r in rows.itertuples() for w in r.warnings]
        failures += [(r.video, r.error) for r in rows[rows.error.notna()].drop_duplicates("video").itertuples()]
    return {"summary": summary, "computed": sum(bool(j.references) for j in jobs), "warnings": warnings,
            "failures": failures}


def evaluate(gen: str | os.PathLike, gt: str | os.PathLike | None, metrics: Iterable[str] | None = None, *,
             method: str | None = None, dataset: str | None = None, out: str | os.PathLike | None = None,
             protocol: str | os.PathLike | Protocol = DEFAULT, fps: float | None = None, region: str | None = None,
             max_frame_gap: int | None = None, landmarker: str | None = None, choices: dict | None = None,
             params: dict[str, dict] | None = None, device: str = "cpu", workers: int = 1, force: bool = False,
             progress: bool = False, decode_timeout: float | None = DEFAULT_DECODE_TIMEOUT,
             weights_dir: str | os.PathLike | None = None, shard: tuple[int, int] | None = None,
             command: str | None = None) -> EvalRun:
    """Evaluate generated videos in ``gen`` against ground truth in ``gt``; the API twin of ``eval``.

    Files are paired by relative path without extension. ``metrics`` defaults to every metric the
    protocol defines (those that cannot run here, e.g. without their weights, are skipped); ``params``
    overrides metric parameters (``{"ifc": {"norm": "l2"}}``, or a group's: ``{GROUP: {NAME: VALUE}}``).
    With ``out``, results go to the store in that folder and a rerun resumes; without it nothing is kept
    on disk. ``fps``, ``region``, ``max_frame_gap``, ``landmarker`` and ``choices`` change single choices
    of the protocol (which then records itself as "NAME (modified)").

    Args:
        gen: folder of generated videos (or frame folders).
        gt: folder of ground-truth videos, paired with ``gen`` by relative path without extension; None:
            only the metrics that read the generated video alone (``lipsync-bench metrics`` lists
            what each needs).
        metrics: metric names (``lipsync-bench metrics``); default: every metric of the protocol.
        method: the method's name in tables [default: the ``gen`` folder's name].
        dataset: the dataset's name [default: the ``gt`` folder's name, else the ``gen`` folder's].
        out: the results folder; None keeps nothing on disk.
        protocol: a protocol name (``lipsync-bench protocols``), a ``.toml`` file, or a ``Protocol``.
        fps: the frame rate inputs are resampled to (0: as stored) [default: the protocol's].
        region: "full", "face", "mouth" or "face-box": what the frame metrics see [default: the protocol's].
        max_frame_gap: frame counts differing by at most this many frames are truncated to the shorter
            (-1: any) [default: the protocol's].
        landmarker: the face stage's landmarker (``faces.settings.BACKENDS``) [default: the protocol's].
        choices: other run-level choices, e.g. ``{"faces.min_track": 100}`` (``protocol.CHOICES``).
        params: parameter overrides per metric or group.
        device: "cpu", "cuda" or "cuda:N".
        workers: videos evaluated in parallel processes.
        force: recompute the videos already in the store.
        progress: show a progress bar.
        decode_timeout: each input is decoded in a worker process, so that a decoder that crashes on
            a damaged file is that video's error; one that gives no frame for this many seconds is
            stopped, also that video's error. None or 0: decode in this process. Recorded with the
            session; it changes no number.
        weights_dir: a folder of pretrained weights under their published names, searched first (set
            as ``$LIPSYNC_BENCH_WEIGHTS`` for this process and its workers).
        shard: ``(i, n)``: only the pairs of shard i of n (``shards.in_shard``); dataset metrics are
            left to ``merge``.
        command: the command line, recorded with the session.

    Returns:
        An ``EvalRun``: ``.videos`` (one row per video and metric: ``video``, ``metric``, ``value``,
        ``error``, ...), ``.summary`` (indexed by metric: ``mean``, ``std``, ``ci_low``, ``ci_high``,
        ``n``, ``failed``; a dataset metric's value in ``mean``), ``.dataset``, ``.failures``,
        ``.protocol``, ``.to_json()`` (what ``eval --json`` prints) and ``.text()`` (what ``eval``
        prints).

    Raises:
        ParameterError: a bad option, before any input is read.

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> from lipsync_bench import media
        >>> root = Path(tempfile.mkdtemp())
        >>> frames = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
        >>> for side in ("gen", "gt"):
        ...     _ = media.write_video(root / side / "clip.avi", frames, 25, codec="ffv1")
        >>> result = evaluate(root / "gen", root / "gt", ["ssim", "psnr"])
        >>> float(result.summary.loc["ssim", "mean"]), int(result.summary.loc["ssim", "n"])
        (1.0, 1)
        >>> result.videos[["video", "metric", "value"]].values.tolist()
        [['clip', 'psnr', inf], ['clip', 'ssim', 1.0]]
    """
    protocol = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    protocol = protocol.with_options(choices, fps=fps, region=region, max_frame_gap=max_frame_gap,
                                     landmarker=landmarker)
    if weights_dir:
        os.environ[ENV_VAR] = str(weights_dir)  # read by this process and by its --workers processes
    return run_eval(gen, gt, metrics, method=method, dataset=dataset, out=out, protocol=protocol, params=params,
                    device=device, workers=workers, force=force, progress=progress, decode_timeout=decode_timeout,
                    shard=shard, command=command)


class MetricListing(Rows):
    """``lipsync-bench metrics``: one row per metric (``available_metrics``)."""

    def text(self) -> str:
        body = [[r["name"], r["label"], r["better"], ", ".join(r["needs"]), r["scope"],
                 "yes" if r["available"] else "no (below)",
                 ", ".join(f"{(r['group'] + '.') if r['group'] else ''}{k}={v}" for k, v in r["parameters"].items())]
                for r in self]
        lines = [text_table(body, ["metric", "label", "better", "needs", "scope", "runs here", "parameters"])]
        return "\n".join(lines + [f"{r['name']}: {r['reason']}" for r in self if not r["available"]])


def available_metrics() -> MetricListing:
    """Every registered metric with its declaration and whether it can run here now.

    Returns:
        One dict per metric: name, label, better, needs, scope, group, available, reason (why it
        cannot run here, or None), parameters (defaults), schema, description.

    Example:
        >>> rows = {r["name"]: r for r in available_metrics()}
        >>> rows["ifc"]["schema"]["norm"]["allowed"], rows["ssim"]["available"]
        ('one of rms, l2', True)
    """
    rows = MetricListing()
    for name in all_metrics():
        m = get_metric(name)
        reason = m.available(m.resolve_params())
        rows.append({"name": m.name, "label": m.label, "better": DIRECTIONS[m.higher_is_better],
                     "needs": sorted(m.needs), "scope": m.scope, "group": m.group, "available": reason is None,
                     "reason": reason, "parameters": m.defaults,
                     "schema": {k: {"default": p.default, "allowed": p.allowed(), "defines": p.defines,
                                    "help": p.help} for k, p in m.params.items()},
                     "description": m.description})
    return rows


__all__ = ["evaluate", "run_eval", "available_metrics", "plan_metrics", "EvalRun", "MetricListing", "protocol_listing"]
