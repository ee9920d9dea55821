"""``lipsync-bench verify RESULTS``: whether a results folder holds what its store says.

A folder may have travelled (copied from a cluster, received from somebody else) or been edited. The
check reads it and writes nothing: SQLite's own integrity check; each row that holds or defines a number
against its digest (``store.DIGESTED``), which finds a row changed behind the store's back; each state
file against its SHA-256; each dataset metric's value recomputed from those state files; and the plain
exports (results.csv, summary.json) against what the store gives now. Stray temporary files of a
killed run and state files no row uses are listed as notes: they hold no number that is read.
"""
from __future__ import annotations

import hashlib
import math
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from .dataset_metrics import combine_states
from .errors import StoreError
from .metrics import all_metrics, get_metric
from .rendering import Result
from .report import export_texts
from .store import DIGESTED, SCHEMA_VERSION, STATE_DIR, STORE_NAME, ResultStore, row_digest

#: Relative difference allowed between a stored dataset value and the one recomputed from its state
#: (the same arithmetic on another machine's BLAS may differ in the last digits).
RECOMPUTE_RTOL = 1e-6


@dataclass
class Verification(Result):
    """What ``verify`` found: ``problems`` (each one line naming what is wrong), ``notes`` (harmless),
    and the counts of what was checked."""

    folder: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict:
        return {"folder": self.folder, "ok": self.ok, "problems": self.problems, "notes": self.notes,
                "counts": self.counts}

    def text(self) -> str:
        checked = ", ".join(f"{n} {k}" for k, n in self.counts.items())
        head = f"{self.folder}: " + ("ok" if self.ok else f"{len(self.problems)} problems") + f" ({checked} checked)"
        return "\n".join([head, *(f"problem: {p}" for p in self.problems), *(f"note: {n}" for n in self.notes)])


def verify(folder: str | os.PathLike) -> Verification:
    """Check a results folder; see the module's description.

    Args:
        folder: a folder written by ``eval --out`` or ``merge``.

    Returns:
        A ``Verification``; ``.ok`` is False when a problem was found.
    """
    folder = Path(folder)
    found = Verification(str(folder))
    db_path = folder / STORE_NAME
    if not db_path.is_file():
        found.problems.append(f"{db_path}: no results store here")
        return found
    try:
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
        integrity = [r[0] for r in db.execute("PRAGMA integrity_check")]
        version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.DatabaseError as exc:
        found.problems.append(f"{db_path}: not a readable SQLite results store ({exc})")
        return found
    if integrity != ["ok"]:
        found.problems += [f"{db_path}: SQLite integrity check: {line}" for line in integrity]
        return found
    if version is None or version[0] != str(SCHEMA_VERSION):
        found.problems.append(f"{db_path}: store schema version {None if version is None else version[0]}; this "
                              f"lipsync-bench verifies version {SCHEMA_VERSION} (an older store is migrated by "
                              "'lipsync-bench merge' into a new folder)")
        return found
    try:
        _check_rows(db, found)
        db.close()
        store = ResultStore.open_existing(folder)
    except (sqlite3.DatabaseError, StoreError) as exc:
        found.problems.append(f"{db_path}: {exc}")
        return found
    try:
        _check_states(store, folder, found)
        _check_dataset_values(store, found)
        _check_exports(store, folder, found)
    finally:
        store.close()
    return found


def _check_rows(db: sqlite3.Connection, found: Verification) -> None:
    runs = {run_id: f"'{m}' on '{d}'" for run_id, m, d in db.execute("SELECT run_id, method, dataset FROM runs")}
    for problem in db.execute("PRAGMA foreign_key_check"):
        found.problems.append(f"{problem[0]}: a row refers to a missing {problem[2]} row")
    for table, columns in DIGESTED.items():
        n = 0
        for row in db.execute(f"SELECT digest, {', '.join(columns)} FROM {table}"):
            n += 1
            if row[0] != row_digest(table, row[1:]):
                where = dict(zip(columns, row[1:], strict=True))
                run = runs.get(where.pop("run_id", None), "")
                key = ", ".join(f"{k} {where[k]!r}" for k in ("method", "dataset", "video", "metric", "side")
                                if k in where)
                found.problems.append(f"{table}: the row of {run + ', ' if run else ''}{key} differs from its digest "
                                      "(changed outside lipsync-bench)")
        found.counts[f"{table} rows"] = n


def _check_states(store: ResultStore, folder: Path, found: Verification) -> None:
    used = set()
    n = 0
    methods = {run.run_id: run.method for run in store.runs()}
    for run_id, video, metric, side, digest in store.db.execute(
            "SELECT run_id, video, metric, side, sha256 FROM states ORDER BY run_id, video, metric, side"):
        n += 1
        try:
            path = store.state_file(metric, digest)
        except StoreError as exc:
            found.problems.append(str(exc))
            continue
        used.add(path.resolve())
        what = f"{metric} state of {video}, {side}, '{methods.get(run_id)}'"
        if not path.is_file():
            found.problems.append(f"{path}: missing ({what})")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            found.problems.append(f"{path}: damaged, its checksum differs ({what})")
    found.counts["state files"] = n
    state_dir = folder / STATE_DIR
    if state_dir.is_dir():
        for path in sorted(p for p in state_dir.rglob("*") if p.is_file()):
            if path.name.endswith(".tmp"):
                found.notes.append(f"{path}: a temporary file left by an interrupted write (safe to delete)")
            elif path.resolve() not in used:
                found.notes.append(f"{path}: a state file no row uses (safe to delete)")


def _check_dataset_values(store: ResultStore, found: Verification) -> None:
    n = 0
    for run in store.runs():
        rows = None
        for metric, stored in store.dataset_results(run).items():
            if stored["value"] is None:
                continue
            if metric not in all_metrics():
                found.notes.append(f"'{run.method}' {metric}: not a metric of this installation; not recomputed")
                continue
            rows = store.results([run]) if rows is None else rows
            # its errors (a damaged or missing state file, records that do not fit) come back as "error"
            again = combine_states(store, run, rows, get_metric(metric), run.metric_params[metric])
            n += 1
            value = again["value"]
            if value is None:
                found.problems.append(f"'{run.method}' on '{run.dataset}' {metric}: cannot be recomputed from the "
                                      f"folder ({again.get('error')})")
            elif not math.isclose(value, stored["value"], rel_tol=RECOMPUTE_RTOL, abs_tol=1e-12):
                found.problems.append(f"'{run.method}' on '{run.dataset}' {metric}: stored {stored['value']!r}, "
                                      f"recomputed from the state files {value!r}")
    found.counts["dataset values"] = n


def _check_exports(store: ResultStore, folder: Path, found: Verification) -> None:
    stopped = [s["session"] for run in store.runs() for s in store.sessions(run) if s["finished"] is None]
    for name, text in export_texts(store).items():
        path = folder / name
        if not path.is_file():
            found.notes.append(f"{path}: missing (written again by the next eval or merge)")
        elif path.read_text(encoding="utf-8") == text:
            continue
        elif stopped:  # written before a run that was stopped: its rows are in the store, not in the file yet
            found.notes.append(f"{path}: older than the rows of a stopped run (session {stopped[-1]}); the next "
                               "eval or merge writes it again")
        else:
            found.problems.append(f"{path}: differs from what the store holds (edited after it was written)")
