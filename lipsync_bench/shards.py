"""Shards of one evaluation and their merge.

``eval --shard I/N`` evaluates the pairs of one shard (a fixed split by a hash of the file name) into
its own results folder; ``merge`` copies the shards' runs, rows and per-video state into one folder
and computes each run's dataset metrics again over all its videos from that state — never as a
mean of the shards' values, and without reading the inputs.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterable

from .dataset_metrics import compute_dataset_metrics
from .environment import environment
from .errors import LipsyncBenchError, ParameterError
from .jsontext import json_float
from .metrics.registry import all_metrics, get_metric
from .rendering import Rows
from .report import write_exports
from .store import STATE_DIR, STORE_NAME, ResultStore, Run


def parse_shard(text: str) -> tuple[int, int]:
    """``"0/4"`` -> (0, 4)."""
    i, slash, n = text.partition("/")
    if not (slash and i.isdigit() and n.isdigit()):
        raise ParameterError(f"--shard {text}: expected I/N, e.g. 0/4")
    shard = (int(i), int(n))
    check_shard(shard)
    return shard


def check_shard(shard: tuple[int, int]) -> None:
    i, n = shard
    if not (n >= 1 and 0 <= i < n):
        raise ParameterError(f"--shard {i}/{n}: expected I/N with 0 <= I < N, e.g. 0/4")


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether a pair belongs to shard i of n: by a hash of its key, so the split is the same on every
    machine and does not move when other files are added."""
    i, n = shard
    return int(hashlib.sha1(key.encode()).hexdigest()[:12], 16) % n == i


class Merged(Rows):
    """What ``merge`` did: the runs of the merged folder (a list of ``Run``), with each one's videos and
    dataset values, and the folders merged."""

    def __init__(self, runs: list[Run], summary: list[dict], sources: int, out: Path):
        super().__init__(runs)
        self.summary, self.sources, self.out = summary, sources, out

    def text(self) -> str:
        lines = []
        for r in self.summary:
            extra = "".join(f", {m} {d['value']:.4g}" if d["value"] is not None else f", {m}: {d['error']}"
                            for m, d in r["dataset_values"].items())
            lines.append(f"{r['method']} on {r['dataset']}: {r['videos']} videos{extra}")
        return "\n".join(lines + [f"merged {self.sources} folders into {self.out}"])

    def to_json(self) -> dict:
        return {"out": str(self.out), "sources": self.sources,
                "runs": [{**r, "dataset_values": {m: {k: json_float(v) if isinstance(v, float) else v
                                                      for k, v in d.items()} for m, d in r["dataset_values"].items()}}
                         for r in self.summary]}


def merge(sources: Iterable[str | os.PathLike], out: str | os.PathLike, device: str = "cpu",
          command: str | None = None) -> Merged:
    """Combine result stores (the shards of one evaluation, or any stores) into ``out``.

    Runs must agree in protocol and parameters. Rows, sessions and per-video state files are copied;
    each run's dataset metrics are computed again over all its videos from the merged state.

    Args:
        sources: results folders written by ``eval --out`` (e.g. with ``--shard I/N``).
        out: the results folder to merge into (created if new).
        device: where dataset metrics are recomputed.
        command: the command line, recorded with the sessions.

    Returns:
        The runs of ``out`` (a ``Merged`` list, which also renders what ``merge`` prints).

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> from lipsync_bench import evaluate, media
        >>> root = Path(tempfile.mkdtemp())
        >>> frames = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
        >>> _ = media.write_video(root / "gt" / "clip.avi", frames, 25, codec="ffv1")
        >>> _ = media.write_video(root / "gen" / "clip.avi", frames[::-1], 25, codec="ffv1")
        >>> for method in ("m1", "m2"):  # e.g. two machines, each with its own results folder
        ...     _ = evaluate(root / "gen", root / "gt", ["ssim"], out=root / method, method=method)
        >>> runs = merge([root / "m1", root / "m2"], root / "all")
        >>> [(r.method, r.dataset) for r in runs]
        [('m1', 'gt'), ('m2', 'gt')]
    """
    out = Path(out)
    sources = [Path(s) for s in sources]
    for src in sources:
        if src.resolve() == out.resolve():
            raise ParameterError(f"{src}: a source is the output folder itself")
    opened = [ResultStore.open_existing(src) for src in sources]
    for other in opened:  # a folder from elsewhere is checked before anything is written
        other.check_state_records()
    existed = out.exists()
    created = not (out / STORE_NAME).exists()
    store = ResultStore(out)
    try:
        try:
            with store.transaction():  # all sources or none: a run refused (another protocol) undoes the others
                for other in opened:
                    for run in other.runs():
                        store.import_run(other, run)
        except LipsyncBenchError:
            store.close()
            if created:  # the folder as it was: no store, no state files copied for it
                (out / STORE_NAME).unlink(missing_ok=True)
                shutil.rmtree(out / STATE_DIR, ignore_errors=True)
                if not existed:
                    shutil.rmtree(out, ignore_errors=True)
            raise
        finally:
            for other in opened:
                other.close()
        env = environment(device)
        for run in store.runs():
            dataset_metrics = [get_metric(m) for m in run.metric_params
                               if m in all_metrics() and get_metric(m).scope == "dataset"]
            if not dataset_metrics:
                continue
            session = store.start_session(run, env, command)
            try:
                compute_dataset_metrics(store, run, session, dataset_metrics, run.metric_params, recompute=True)
            finally:
                store.finish_session(session)
        runs = store.runs()
        write_exports(store, out)
        summary = [{"method": run.method, "dataset": run.dataset, "videos": int(store.results([run]).video.nunique()),
                    "dataset_values": store.dataset_results(run)} for run in runs]
    finally:
        store.close()
    return Merged(runs, summary, len(sources), out)
