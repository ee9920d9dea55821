"""Evaluation of a folder of generated videos against their ground truth.

Each pair is decoded once, in lockstep chunks, and every selected metric's accumulator sees the same
frames; each video's rows are committed to the store together, so an interrupted run resumes where
it stopped and a failing video is recorded as that video's error while the others go on.
"""
from __future__ import annotations

import hashlib
import math
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import faces, media
from .errors import LipsyncBenchError, MetricError, PairingError
from .metrics import FrameBatch, Metric, MetricContext, all_metrics, get_metric
from .protocol import Protocol, environment
from .report import json_float, summary_json, write_exports
from .stats import dataset_summary, summarize
from .store import ResultRow, ResultStore, Run, ground_truth_name, is_ground_truth

CHUNK_FRAMES = 32


@dataclass
class EvalRun:
    """What one ``eval`` did: the run, this session's counts, pairing problems, and the results."""

    run: Run
    session_id: int
    metrics: list[str]
    skipped_metrics: dict[str, str]  # metric -> why it cannot run here
    pairs: int
    computed: int  # videos computed in this session
    resumed: int  # videos whose results were already in the store
    unpaired_gen: list[str]
    unpaired_gt: list[str]
    results: pd.DataFrame  # long format, every video of the run
    dataset_values: dict[str, dict] = field(default_factory=dict)  # dataset metrics (FID): value, videos, ...
    environment: dict = field(default_factory=dict)
    ground_truth: dict = field(default_factory=dict)  # LSE of the GT videos: summary, warnings, failures
    skipped_inputs: list[str] = field(default_factory=list)  # folders not entered (symbolic link loops)

    def summary(self) -> dict[str, dict]:
        """Per metric: mean, std, 95% bootstrap CI, n videos with a value, failed videos."""
        out = {}
        for metric in self.metrics:
            rows = self.results[self.results.metric == metric]
            failed = int(rows.error.notna().sum())
            if get_metric(metric).scope == "dataset":
                out[metric] = dataset_summary(self.dataset_values.get(metric, {}), failed)
            else:
                out[metric] = summarize(rows[rows.error.isna()].value.tolist(), failed=failed)
        return out

    def unofficial_weights(self) -> dict[str, dict]:
        """Metrics computed with weights whose checksum is not the published one."""
        return {m: w for m, w in self.run.unofficial_weights().items() if m in self.metrics}

    def failures(self) -> pd.DataFrame:
        """One row per failed video: its first error message, and ``metrics``: the metrics that failed,
        or "" when all of them did (a video that could not be read at all)."""
        bad = self.results[self.results.error.notna()]
        first = bad.drop_duplicates("video")[["video", "metric", "error"]].reset_index(drop=True)
        failed = bad.groupby("video").metric.apply(list)
        total = self.results.groupby("video").metric.nunique()
        first["metrics"] = [("" if len(failed[v]) == total[v] else ", ".join(failed[v])) for v in first.video]
        return first

    def to_json(self) -> dict:
        ok = self.results[self.results.error.isna()]
        return {
            "method": self.run.method,
            "dataset": self.run.dataset,
            "protocol": self.run.protocol,
            "metric_params": self.run.metric_params,
            "environment": self.environment,
            "summary": summary_json(self.summary()),
            "unofficial_weights": self.unofficial_weights(),
            "skipped_metrics": self.skipped_metrics,
            "videos": {video: {r.metric: json_float(r.value) for r in rows.itertuples() if r.value == r.value}
                       for video, rows in ok.groupby("video")},
            "failures": self.failures().to_dict(orient="records"),
            "skipped_inputs": self.skipped_inputs,
            "unpaired": {"generated": self.unpaired_gen, "ground_truth": self.unpaired_gt},
            "counts": {"pairs": self.pairs, "computed": self.computed, "resumed": self.resumed},
            "ground_truth": {**self.ground_truth,
                             "summary": summary_json(self.ground_truth.get("summary", {}))} if self.ground_truth else {},
        }


def _pair_signature(pair: media.Pair) -> str | None:
    try:
        return f"{media.input_signature(pair.gen)}|{media.input_signature(pair.gt)}"
    except OSError:
        return None


# --------------------------------------------------------------------------------------------------
# One pair


def _aligned_chunks(pair: media.Pair, protocol: Protocol, chunk: int, warnings: list[str]):
    """Yield (gen, gt) uint8 chunks of equal length; check sizes and the frame-count gap at the end."""
    if pair.gen == pair.gt:  # a video against itself (the GT's own LSE): decode once
        frames = 0
        for chunk_ in media.iter_frames(pair.gen, protocol.fps, chunk):
            frames += len(chunk_)
            yield chunk_, chunk_
        if frames == 0:
            raise PairingError("no frames could be decoded")
        return
    gen_iter = media.iter_frames(pair.gen, protocol.fps, chunk)
    gt_iter = media.iter_frames(pair.gt, protocol.fps, chunk)
    n_gen = n_gt = used = 0
    gen_left, gt_left = None, None
    while True:
        g = next(gen_iter, None) if gen_left is None else gen_left
        t = next(gt_iter, None) if gt_left is None else gt_left
        gen_left = gt_left = None
        if g is None or t is None:
            # Count the longer input's remaining frames, stopping once the gap is too large anyway.
            rest, count = (gt_iter, t) if g is None else (gen_iter, g)
            extra = 0 if count is None else len(count)
            for c in rest:
                extra += len(c)
                if extra > protocol.max_frame_gap:
                    break
            if g is None:
                n_gt += extra
            else:
                n_gen += extra
            break
        if used == 0 and g.shape[1:] != t.shape[1:]:
            raise PairingError(f"frame sizes differ: generated {g.shape[2]}x{g.shape[1]}, "
                               f"ground truth {t.shape[2]}x{t.shape[1]}")
        m = min(len(g), len(t))
        n_gen += m
        n_gt += m
        if len(g) > m:
            gen_left = g[m:]
        if len(t) > m:
            gt_left = t[m:]
        used += m
        yield g[:m], t[:m]
    if used == 0:
        raise PairingError("no frames could be decoded")
    gap = abs(n_gen - n_gt)
    if gap > protocol.max_frame_gap:
        (short, n_short), (long_, n_long) = sorted([("generated", n_gen), ("ground truth", n_gt)],
                                                   key=lambda x: x[1])
        raise PairingError(f"frame counts differ by more than {protocol.max_frame_gap} at {protocol.fps:g} fps: "
                           f"{short} has {n_short} frames, {long_} at least {n_long} (--max-frame-gap)"
                           + _native_rates_note(pair))
    if gap:
        warnings.append(f"frame counts differ by {gap} (generated {n_gen}, ground truth {n_gt}); "
                        f"truncated to {used}")


def _native_rates_note(pair: media.Pair) -> str:
    """When the two inputs declare different frame rates, say so: a wrong rate in a file's metadata
    (0, 1000 fps) is the usual cause of a frame-count mismatch."""
    try:
        rates = [media.probe(p).native_fps for p in (pair.gen, pair.gt)]
    except LipsyncBenchError:
        return ""
    if None in rates or abs(rates[0] - rates[1]) < 0.01:
        return ""
    return f"; their native frame rates differ: generated {rates[0]:g} fps, ground truth {rates[1]:g} fps"


def _context(pair: media.Pair, metric: Metric, protocol: Protocol, device: str, cache_dir: Path | None,
             weights_paths: dict[str, Path], shared: dict | None = None) -> MetricContext:
    return MetricContext(torch.device(device), pair.gen, pair.gt, protocol.fps, cache_dir,
                         weights_paths.get(metric.name), {} if shared is None else shared)


def evaluate_pair(pair: media.Pair, metric_names: list[str], params: dict[str, dict],
                  protocol: Protocol, device: str = "cpu", chunk: int = CHUNK_FRAMES,
                  cache_dir: Path | None = None, weights_paths: dict[str, Path] | None = None) -> list[ResultRow]:
    """All selected metrics of one pair. Never raises for a bad input: errors become rows."""
    start = time.perf_counter()
    signature = _pair_signature(pair)
    dev = torch.device(device)
    warnings: list[str] = []
    metrics = [get_metric(m) for m in metric_names]
    try:
        region = None
        if protocol.region != "full" and any(m.uses_region for m in metrics):
            # The region comes from the GT's face analysis (cached; computed here when missing, before
            # the accumulators look in the cache, so that LMD reuses it).
            region = faces.analyze_file(pair.gt, protocol.fps, cache_dir)
            faces.require_faces(region, pair.gt)
        shared: dict = {}  # one per pair: metrics computed together (LSE-C/D, offset) meet here
        accumulators, refused = {}, {}
        for m in metrics:  # a metric that cannot start on this video (e.g. LSE without audio) leaves the others
            try:
                accumulators[m.name] = m.make_accumulator(params[m.name], _context(
                    pair, m, protocol, device, cache_dir, weights_paths or {}, shared))
            except MetricError as exc:
                refused[m.name] = str(exc)
        boxes = None
        index = 0
        for g, t in _aligned_chunks(pair, protocol, chunk, warnings):
            gen_full, gt_full = torch.from_numpy(g).to(dev), torch.from_numpy(t).to(dev)
            batch = FrameBatch(gen_full, gt_full, index)
            if region is not None:
                if boxes is None:
                    boxes = faces.region_boxes(region, protocol.region, t.shape[1], t.shape[2])
                # hold the last box past the analysed frames (an analysis cached from a truncated pair)
                sel = boxes[np.minimum(np.arange(index, index + len(g)), len(boxes) - 1)]
                batch = FrameBatch(faces.crop_frames(gen_full, sel), faces.crop_frames(gt_full, sel), index,
                                   gen_full, gt_full)
            for acc in accumulators.values():
                acc.update(batch)
            index += len(g)
    except LipsyncBenchError as exc:
        return _error_rows(pair, metric_names, str(exc), start, signature)
    except Exception as exc:  # a bug must not lose the other videos: record it, with where it happened
        where = traceback.extract_tb(exc.__traceback__)[-1]
        message = f"internal error {type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})"
        return _error_rows(pair, metric_names, message, start, signature)
    seconds = (time.perf_counter() - start) / max(1, len(metrics))
    rows = [ResultRow(pair.key, name, None, None, tuple(warnings), message, seconds, signature)
            for name, message in refused.items()]
    for name, acc in accumulators.items():
        try:
            value = acc.result()
            rows.append(ResultRow(pair.key, name, None if math.isnan(value.value) else float(value.value),
                                  value.frames,
                                  tuple(warnings + value.warnings), None, seconds, signature, value.details))
        except MetricError as exc:
            rows.append(ResultRow(pair.key, name, None, None, tuple(warnings), str(exc), seconds, signature))
    return rows


def _error_rows(pair, metric_names, message, start, signature) -> list[ResultRow]:
    seconds = time.perf_counter() - start
    return [ResultRow(pair.key, m, None, None, (), message, seconds, signature) for m in metric_names]


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------
# A folder


def parse_params(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``["ifc.norm=l2", "ssim.sigma=2"]`` -> ``{"ifc": {"norm": "l2"}, "ssim": {"sigma": "2"}}``.
    ``lse.NAME`` sets the parameter of every LSE metric of the run (lse_c, lse_d, av_offset) at once."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        metric, dot, key = name.partition(".")
        if not (eq and dot and metric and key):
            raise LipsyncBenchError(f"--param {item!r}: expected METRIC.NAME=VALUE, e.g. ifc.norm=l2")
        out.setdefault(metric, {})[key] = value
    return out


def _expand_lse_params(params: dict[str, dict], names: list[str]) -> dict[str, dict]:
    """``lse`` parameters go to each LSE metric of the run (a metric's own parameters win)."""
    from .metrics.lse import LSE_METRICS

    if "lse" not in params:
        return params
    params = {k: dict(v) for k, v in params.items()}
    common = params.pop("lse")
    targets = [m for m in LSE_METRICS if m in names]
    if not targets:
        raise LipsyncBenchError("--param lse.* given, but this run computes no LSE metric")
    for m in targets:
        params[m] = {**common, **params.get(m, {})}
    return params


def run_eval(gen: str | os.PathLike, gt: str | os.PathLike, metrics: Iterable[str] | None = None, *,
             method: str | None = None, dataset: str | None = None, out: str | os.PathLike | None = None,
             protocol: Protocol | None = None, params: dict[str, dict] | None = None,
             device: str = "cpu", workers: int = 1, force: bool = False, progress: bool = True,
             chunk: int = CHUNK_FRAMES, command: str | None = None,
             shard: tuple[int, int] | None = None) -> EvalRun:
    """Evaluate every generated/GT pair and store the rows; see ``evaluate`` for the arguments.

    ``shard=(i, n)`` evaluates only the pairs of shard i of n (``in_shard``); dataset metrics (FID)
    are then left to ``merge``, which combines the shards' feature statistics."""
    gen, gt = Path(gen), Path(gt)
    protocol = protocol or Protocol()
    names = list(dict.fromkeys(metrics or all_metrics()))  # default: every metric; unavailable ones are skipped
    params = _expand_lse_params(params or {}, names)
    for name in params:
        if name not in names:
            get_metric(name)  # unknown metric names fail here
            raise LipsyncBenchError(f"--param given for '{name}', which this run does not compute")
    chosen: list[Metric] = [get_metric(n) for n in names]
    resolved = {m.name: m.resolve_params(params.get(m.name)) for m in chosen}
    skipped = {m.name: reason for m in chosen if (reason := m.available(resolved[m.name]))}
    runnable = [m for m in chosen if m.name not in skipped]
    resolved = {m.name: resolved[m.name] for m in runnable}
    weights_paths: dict[str, Path] = {}
    for m in runnable:
        found = m.resolve_weights(resolved[m.name])
        if found is not None:  # the file's checksum is part of the protocol of every result it gives
            weights_paths[m.name], resolved[m.name]["weights"] = found
        if m.protocol_extra:
            resolved[m.name]["resolved"] = m.protocol_extra(resolved[m.name])
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LipsyncBenchError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")

    pairing = media.pair_inputs(gen, gt)
    if not pairing.pairs and not pairing.problems:
        raise PairingError(f"no pairs: no file name in {gen} matches one in {gt} ({len(pairing.unpaired_gen)} "
                           f"inputs in --gen, {len(pairing.unpaired_gt)} in --gt)")
    if shard is not None:
        check_shard(shard)
        pairing.pairs = [p for p in pairing.pairs if in_shard(p.key, shard)]
        pairing.problems = {k: v for k, v in pairing.problems.items() if in_shard(k, shard)}
    method = method or gen.resolve().name
    dataset = dataset or gt.resolve().name
    store = ResultStore(out)
    scratch = None if out is not None else tempfile.TemporaryDirectory(prefix="lipsync-bench-")
    cache_dir = Path(out) / "cache" if out is not None else Path(scratch.name)
    run = store.open_run(method, dataset, protocol.as_dict(), resolved, str(gen.resolve()), str(gt.resolve()),
                         force=force)
    env = environment(device)
    session = store.start_session(run, env, command)

    for key, problem in pairing.problems.items():
        store.write(run, session, [ResultRow(key, m.name, None, None, (), problem) for m in runnable])
    todo, resumed = _pending(store, run, pairing.pairs, [m.name for m in runnable])
    ground_truth: dict = {}
    try:
        _compute(store, run, session, todo, resolved, protocol, device, chunk, cache_dir, weights_paths, workers,
                 progress, f"eval {method}")
        if shard is None:  # a shard's FID would cover a fraction of the videos: merge combines them
            _dataset_metrics(store, run, session, runnable, resolved, pairing.pairs, protocol, device, cache_dir,
                             weights_paths, recompute=bool(todo))
        if not is_ground_truth(method):
            ground_truth = _ground_truth_sync(store, dataset, gt, pairing.pairs, runnable, resolved, protocol,
                                              device, chunk, cache_dir, weights_paths, workers, progress, force,
                                              env, command)
    finally:
        store.finish_session(session)
        if scratch is not None:
            scratch.cleanup()

    results = store.results([run])
    results = results[results.metric.isin([m.name for m in runnable])].reset_index(drop=True)
    if out is not None:
        write_exports(store, Path(out))
    dataset_values = store.dataset_results(run)
    store.close()
    return EvalRun(run, session, [m.name for m in runnable], skipped, len(pairing.pairs), len(todo), resumed,
                   pairing.unpaired_gen, pairing.unpaired_gt, results, dataset_values, env, ground_truth,
                   pairing.skipped)


def check_shard(shard: tuple[int, int]) -> None:
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise LipsyncBenchError(f"--shard {i}/{n}: expected I/N with 0 <= I < N, e.g. 0/4")


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether a pair belongs to shard i of n: by a hash of its key, so the split is the same on every
    machine and does not move when other files are added."""
    i, n = shard
    return int(hashlib.sha1(key.encode()).hexdigest()[:12], 16) % n == i


def merge(sources: Iterable[str | os.PathLike], out: str | os.PathLike, device: str = "cpu",
          command: str | None = None) -> list[Run]:
    """Combine result stores (the shards of one evaluation, or any stores) into ``out``.

    Runs must agree in protocol and parameters. Rows and sessions are copied; caches (face analyses,
    FID feature statistics) are copied too, and each run's dataset metrics are computed again over all
    its videos from the merged per-video statistics — never as a mean of the shards' values. That needs
    the run's input folders (recorded in the store) to be readable from here."""
    import shutil

    out = Path(out)
    store = ResultStore(out)
    for src in sources:
        src = Path(src)
        if src.resolve() == out.resolve():
            raise LipsyncBenchError(f"{src}: a source is the output folder itself")
        other = ResultStore.open_existing(src)
        for run in other.runs():
            store.import_run(other, run)
        other.close()
        if (src / "cache").is_dir():
            shutil.copytree(src / "cache", out / "cache", dirs_exist_ok=True)
    env = environment(device)
    for run in store.runs():
        dataset_metrics = [get_metric(m) for m in run.metric_params
                           if m in all_metrics() and get_metric(m).scope == "dataset"]
        if not dataset_metrics:
            continue
        session = store.start_session(run, env, command)
        try:
            protocol = Protocol(**{k: run.protocol[k] for k in ("fps", "sample_rate", "region", "max_frame_gap")})
            pairs = media.pair_inputs(run.gen_dir, run.gt_dir).pairs
            weights_paths = {m.name: found[0] for m in dataset_metrics
                             if (found := m.resolve_weights(run.metric_params[m.name])) is not None}
        except LipsyncBenchError as exc:
            for m in dataset_metrics:
                store.write_dataset(run, session, m.name, None, 0, None,
                                    error=f"not combined: {exc} (the inputs of the run must be readable)")
            store.finish_session(session)
            continue
        _dataset_metrics(store, run, session, dataset_metrics, run.metric_params, pairs, protocol, device,
                         out / "cache", weights_paths, recompute=True)
        store.finish_session(session)
    runs = store.runs()
    write_exports(store, out)
    store.close()
    return runs


def _pending(store: ResultStore, run: Run, pairs: list[media.Pair], names: list[str]):
    """The pairs with metrics not yet in the store for their current inputs, and how many are complete."""
    done = store.completed(run)
    todo, resumed = [], 0
    for pair in pairs:
        sig = _pair_signature(pair)
        missing = [m for m in names if done.get((pair.key, m), "-") != sig]
        if missing:
            todo.append((pair, missing))
        else:
            resumed += 1
    return todo, resumed


def _compute(store: ResultStore, run: Run, session: int, todo: list, params: dict[str, dict], protocol: Protocol,
             device: str, chunk: int, cache_dir: Path, weights_paths: dict[str, Path], workers: int,
             progress: bool, desc: str, postprocess=None) -> None:
    """Evaluate the pending pairs (in ``workers`` processes), storing each video's rows as it finishes."""
    bar = tqdm(total=len(todo), desc=desc, unit="video", disable=not progress or not todo, file=sys.stderr,
               dynamic_ncols=True)
    finish = postprocess or (lambda rows: rows)
    try:
        if workers <= 1 or len(todo) <= 1:
            for pair, missing in todo:
                store.write(run, session, finish(evaluate_pair(pair, missing, params, protocol, device, chunk,
                                                               cache_dir, weights_paths)))
                bar.update()
            return
        threads = max(1, (os.cpu_count() or 1) // workers)
        ctx = multiprocessing.get_context("spawn")  # torch and fork do not mix
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(evaluate_pair, pair, missing, params, protocol, device, chunk, cache_dir,
                                   weights_paths) for pair, missing in todo]
            try:
                for future in as_completed(futures):
                    store.write(run, session, finish(future.result()))
                    bar.update()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        bar.close()


def _ground_truth_sync(store: ResultStore, dataset: str, gt: Path, pairs: list[media.Pair], metrics: list[Metric],
                       params: dict[str, dict], protocol: Protocol, device: str, chunk: int, cache_dir: Path,
                       weights_paths: dict[str, Path], workers: int, progress: bool, force: bool, env: dict,
                       command: str | None) -> dict:
    """LSE of the GT videos themselves, the "Ground truth" row papers print beside the methods: a run
    of its own on the dataset, computed once (later evals of other methods find it in the store).
    Each GT's own audio is used. A GT whose LSE-C is implausibly low with the official weights gets
    a warning: the protocol is probably broken for it."""
    from .metrics.lse import LSE_METRICS, PLAUSIBLE_GT_LSE_C

    lse = [m.name for m in metrics if m.name in LSE_METRICS]
    if not lse:
        return {}
    gt_params = {m: {**params[m], "audio": "gen"} for m in lse}
    try:
        run = store.open_run(ground_truth_name(gt_params[lse[0]]["sync_model"]), dataset, protocol.as_dict(),
                             gt_params, str(gt.resolve()), str(gt.resolve()), force=force)
    except LipsyncBenchError as exc:
        return {"error": f"ground-truth LSE not computed: {exc}"}
    official = not run.unofficial_weights()

    def flag(rows: list[ResultRow]) -> list[ResultRow]:
        for r in rows:
            if official and r.metric == "lse_c" and r.value is not None and r.value < PLAUSIBLE_GT_LSE_C:
                r.warnings = r.warnings + (
                    f"ground-truth LSE-C {r.value:.2f} is implausibly low for a real video (below "
                    f"{PLAUSIBLE_GT_LSE_C:g}): the protocol is probably broken for it (frame rate, audio track, "
                    "face crop or audio offset)",)
        return rows

    gt_pairs = [media.Pair(p.key, p.gt, p.gt) for p in pairs]
    todo, _ = _pending(store, run, gt_pairs, lse)
    session = store.start_session(run, env, command)
    try:
        _compute(store, run, session, todo, gt_params, protocol, device, chunk, cache_dir, weights_paths, workers,
                 progress, "ground truth LSE", flag)
    finally:
        store.finish_session(session)
    rows = store.results([run])
    rows = rows[rows.video.isin({p.key for p in pairs}) & rows.metric.isin(lse)]
    ok = rows[rows.error.isna()]
    return {"summary": {m: summarize(ok[ok.metric == m].value.tolist(), failed=int(
                (rows.error.notna() & (rows.metric == m)).sum())) for m in lse},
            "computed": len(todo),
            "warnings": [(r.video, w) for r in rows.itertuples() for w in r.warnings],
            "failures": [(r.video, r.error) for r in rows[rows.error.notna()].drop_duplicates("video").itertuples()]}


def _dataset_metrics(store: ResultStore, run: Run, session: int, metrics: list[Metric], params: dict[str, dict],
                     pairs: list[media.Pair], protocol: Protocol, device: str, cache_dir: Path,
                     weights_paths: dict[str, Path], recompute: bool) -> None:
    """Combine the per-video parts of dataset metrics (FID) over the videos that succeeded."""
    existing = store.dataset_results(run)
    rows = store.results([run])
    for m in metrics:
        if m.scope != "dataset" or (not recompute and m.name in existing):
            continue
        ok = set(rows[(rows.metric == m.name) & rows.error.isna()].video)
        contexts = [_context(p, m, protocol, device, cache_dir, weights_paths) for p in pairs if p.key in ok]
        if not contexts:
            store.write_dataset(run, session, m.name, None, 0, None, error="no video could be evaluated")
            continue
        try:
            value = m.dataset_value(params[m.name], contexts)
            store.write_dataset(run, session, m.name, value.value, len(contexts), value.frames, value.warnings)
        except LipsyncBenchError as exc:
            store.write_dataset(run, session, m.name, None, len(contexts), None, error=str(exc))


def evaluate(gen: str | os.PathLike, gt: str | os.PathLike, metrics: Iterable[str] | None = None, *,
             method: str | None = None, dataset: str | None = None, out: str | os.PathLike | None = None,
             fps: float = 25.0, region: str = "full", max_frame_gap: int = 3, params: dict[str, dict] | None = None,
             device: str = "cpu", workers: int = 1, force: bool = False, progress: bool = False) -> pd.DataFrame:
    """Evaluate generated videos in ``gen`` against ground truth in ``gt``; the API twin of ``eval``.

    Files are paired by relative path without extension. ``metrics`` defaults to every registered metric
    (those that cannot run here, e.g. without their weights, are skipped);
    ``params`` overrides metric parameters (``{"ifc": {"norm": "l2"}}``). With ``out``, results go to
    the store in that folder and a rerun resumes; without it nothing is kept on disk.

    Returns a long DataFrame, one row per video and metric, with columns ``video``, ``metric``,
    ``value``, ``method``, ``dataset``, ``error`` (plus ``frames``, ``warnings``, ``seconds``,
    ``session``). A failed video has ``value`` NaN and its reason in ``error``.
    """
    result = run_eval(gen, gt, metrics, method=method, dataset=dataset, out=out,
                      protocol=Protocol(fps=fps, region=region, max_frame_gap=max_frame_gap), params=params,
                      device=device, workers=workers, force=force, progress=progress)
    return result.results


def available_metrics() -> list[dict]:
    """Every registered metric with its declaration and whether it can run here now."""
    rows = []
    for name in all_metrics():
        m = get_metric(name)
        reason = m.available(m.resolve_params())
        rows.append({"name": m.name, "label": m.label, "better": {True: "higher", False: "lower", None: "-"}[m.higher_is_better],
                     "needs": sorted(m.needs), "scope": m.scope, "available": reason is None,
                     "reason": reason, "parameters": m.defaults, "description": m.description})
    return rows


__all__ = ["evaluate", "run_eval", "evaluate_pair", "available_metrics", "parse_params", "EvalRun"]
