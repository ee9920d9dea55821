"""The results store: one SQLite file, ``<out>/lipsync_bench.sqlite``.

Why SQLite: it is in the standard library, one file a user can copy, and transactional — each video's
rows are committed together, so a run killed midway loses at most the video in progress and a rerun
resumes without duplicates (rows are keyed by run, video and metric). DuckDB would add a large
dependency for queries this size does not need.

A *run* is one method evaluated on one dataset under one protocol. A *session* is one invocation of
``eval`` on a run; each row records the session that computed it, and each session its software
environment. Rows carry a signature (size and modification time) of the input files, so a video whose
file changed is computed again.

Per-video state of dataset metrics (e.g. features of each video) lives beside the store, in
``<out>/state/<metric>/<sha256>.npy``, each file named by its checksum and listed in the ``states``
table: a results folder alone reproduces every number, and a damaged or missing file is detected
(``load_state``), never read as numbers.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import LipsyncBenchError, StoreError
from .files import RESUME, atomic_write_bytes, write_failed
from .jsontext import canonical
from .metrics.registry import get_metric
from .protocol import DEFAULT, definition, upgrade

STORE_NAME = "lipsync_bench.sqlite"
STATE_DIR = "state"
# 2: the states table (version 1 stores are migrated: their dataset metrics recompute);
# 3: named protocols (older runs' protocols and metric parameters are rewritten in today's form);
# 4: a digest on every row that holds or defines a number (``verify`` finds a row changed behind the store's back)
SCHEMA_VERSION = 4
#: How long a writer waits for another one's transaction (several eval processes may share a folder).
BUSY_TIMEOUT_S = 300

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY, method TEXT NOT NULL, dataset TEXT NOT NULL,
    gen_dir TEXT, gt_dir TEXT, protocol TEXT NOT NULL, created TEXT NOT NULL, digest TEXT,
    UNIQUE (method, dataset));
CREATE TABLE IF NOT EXISTS run_metrics (
    run_id INTEGER NOT NULL REFERENCES runs, metric TEXT NOT NULL, params TEXT NOT NULL, digest TEXT,
    PRIMARY KEY (run_id, metric));
CREATE TABLE IF NOT EXISTS sessions (
    session_id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs,
    started TEXT NOT NULL, finished TEXT, environment TEXT NOT NULL, command TEXT);
CREATE TABLE IF NOT EXISTS results (
    run_id INTEGER NOT NULL REFERENCES runs, video TEXT NOT NULL, metric TEXT NOT NULL,
    value REAL, frames INTEGER, warnings TEXT NOT NULL DEFAULT '[]', error TEXT,
    seconds REAL, inputs TEXT, session_id INTEGER REFERENCES sessions, digest TEXT,
    PRIMARY KEY (run_id, video, metric));
CREATE TABLE IF NOT EXISTS details (
    run_id INTEGER NOT NULL REFERENCES runs, video TEXT NOT NULL, metric TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (run_id, video, metric));
CREATE TABLE IF NOT EXISTS dataset_results (
    run_id INTEGER NOT NULL REFERENCES runs, metric TEXT NOT NULL, value REAL, videos INTEGER,
    frames INTEGER, warnings TEXT NOT NULL DEFAULT '[]', error TEXT, session_id INTEGER REFERENCES sessions,
    digest TEXT, PRIMARY KEY (run_id, metric));
CREATE TABLE IF NOT EXISTS states (
    run_id INTEGER NOT NULL REFERENCES runs, video TEXT NOT NULL, metric TEXT NOT NULL, side TEXT NOT NULL,
    sha256 TEXT NOT NULL, rows INTEGER NOT NULL, input_key TEXT NOT NULL, digest TEXT,
    PRIMARY KEY (run_id, video, metric, side));
CREATE INDEX IF NOT EXISTS states_by_key ON states (metric, input_key);
"""

#: The columns of each table a row's digest covers: what defines or holds a number (not timings, sessions).
DIGESTED = {
    "runs": ("method", "dataset", "protocol"),
    "run_metrics": ("run_id", "metric", "params"),
    "results": ("run_id", "video", "metric", "value", "frames", "warnings", "error", "inputs"),
    "dataset_results": ("run_id", "metric", "value", "videos", "frames", "warnings", "error"),
    "states": ("run_id", "video", "metric", "side", "sha256", "rows", "input_key"),
}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_METRIC_NAME = re.compile(r"[a-z0-9_]+")


def row_digest(table: str, values) -> str:
    """The digest of a row's ``DIGESTED`` columns, as stored. It finds a row edited by hand or by
    another program; it is not a signature (whoever edits a row on purpose can recompute it)."""
    return hashlib.sha256(json.dumps([table, *values]).encode()).hexdigest()


#: The method name of reference runs: metrics of the GT videos themselves (e.g. the GT videos' own sync scores).
GROUND_TRUTH = "Ground truth"


def ground_truth_name(suffix: str = "", protocol: str = DEFAULT) -> str:
    """The reference run's name: one per protocol and definition of its metrics (``Ground truth``,
    ``Ground truth [AVSyncNet]``, ``Ground truth (talklip)``)."""
    return GROUND_TRUTH + ("" if protocol == DEFAULT else f" ({protocol})") + suffix


def is_ground_truth(method: str) -> bool:
    return method == GROUND_TRUTH or method.startswith((GROUND_TRUTH + " [", GROUND_TRUTH + " ("))


def normalised_params(metric: str, params: dict) -> dict:
    """A metric's recorded parameters with those it did not record yet (declared after the run, or the
    pooling recorded since named protocols) at their defaults: the values it was computed with."""
    try:
        declared = get_metric(metric).defaults
    except LipsyncBenchError:  # a metric of a plugin that is not installed here
        return params
    return {**declared, "pool": "videos", **params}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Run:
    run_id: int
    method: str
    dataset: str
    protocol: dict
    metric_params: dict[str, dict]
    gen_dir: str | None
    gt_dir: str | None

    def definition(self, metric: str) -> dict:
        """Every choice the numbers of ``metric`` in this run depend on (``protocol.definition``)."""
        return definition(self.protocol, metric, self.metric_params.get(metric, {}))

    def unofficial_weights(self) -> dict[str, dict]:
        """metric -> its weights description, for metrics computed with weights whose checksum is not
        the published one."""
        out = {}
        for m, p in self.metric_params.items():
            files = p.get("weights")
            files = [files] if isinstance(files, dict) else files or []
            if any(isinstance(f, dict) and not f.get("official", True) for f in files):
                out[m] = p["weights"]
        return out


@dataclass
class ResultRow:
    """One video's outcome for one metric: a value, or an error message."""

    video: str
    metric: str
    value: float | None
    frames: int | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None
    seconds: float | None = None
    inputs: str | None = None
    details: dict | None = None  # e.g. a curve per video (MetricValue.details)
    state: dict[str, dict] | None = None  # dataset metrics: side -> {"sha256", "rows", "key"}


class ResultStore:
    """Results of every run under one output folder (``folder=None``: in memory, nothing kept)."""

    def __init__(self, folder: str | Path | None, state_dir: str | Path | None = None):
        self.path = None if folder is None else Path(folder) / STORE_NAME
        # where state files live: beside the store (a folder-less store keeps them in ``state_dir``)
        self.state_dir = Path(folder) / STATE_DIR if folder is not None else (
            Path(state_dir) if state_dir is not None else None)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise write_failed(self.path.parent, exc) from None
        target = ":memory:" if self.path is None else str(self.path)
        try:
            self.db = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S)
            self.db.execute("PRAGMA foreign_keys = ON")
            self._check_or_create()
        except sqlite3.OperationalError as exc:
            raise self._write_error(exc) from None
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a readable lipsync-bench results store ({exc}); "
                             "move it away or choose another --out") from None

    @classmethod
    def open_existing(cls, folder: str | Path) -> "ResultStore":
        """Open the store of an earlier run; a folder without one is an error, not a new store."""
        if not (Path(folder) / STORE_NAME).is_file():
            raise StoreError(f"{folder}: no results store ({STORE_NAME}) here; run 'lipsync-bench eval "
                             f"--out {folder}' first")
        return cls(folder)

    def _check_or_create(self) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if tables and "meta" not in tables:
            raise StoreError(f"{self.path}: an SQLite file, but not a lipsync-bench results store")
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() if tables else None
        if row is not None and row[0] == str(SCHEMA_VERSION):
            return
        with self.transaction():  # created or migrated by one process at a time
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() if tables else None
            version = None if row is None else int(row[0]) if str(row[0]).isdigit() else row[0]
            if version not in (None, 1, 2, 3, SCHEMA_VERSION):
                raise StoreError(f"{self.path}: a results store of schema version {version}; this lipsync-bench "
                                 f"(schema version {SCHEMA_VERSION}) reads versions 1 to {SCHEMA_VERSION} "
                                 "only: open it with the lipsync-bench that wrote it, or a newer one")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            if version is None:
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                return
            if version in (1, 2):  # the tables above added what version 2 has more
                self._migrate_protocols()
            if version != SCHEMA_VERSION:
                self._add_digests()
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

    def _add_digests(self) -> None:
        """Version 4: a digest on every row of the tables ``DIGESTED`` names."""
        for table, columns in DIGESTED.items():
            if "digest" not in {c[1] for c in self.db.execute(f"PRAGMA table_info({table})")}:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN digest TEXT")
            rows = self.db.execute(f"SELECT rowid, {', '.join(columns)} FROM {table}").fetchall()
            self.db.executemany(f"UPDATE {table} SET digest=? WHERE rowid=?",
                                [(row_digest(table, r[1:]), r[0]) for r in rows])

    def _migrate_protocols(self) -> None:
        """Version 3: each run's protocol and metric parameters in today's form (what they were computed
        with, recorded as named protocols record it)."""
        for run_id, protocol in self.db.execute("SELECT run_id, protocol FROM runs").fetchall():
            self.db.execute("UPDATE runs SET protocol=? WHERE run_id=?", (canonical(upgrade(json.loads(protocol))),
                                                                          run_id))
        for run_id, metric, params in self.db.execute("SELECT run_id, metric, params FROM run_metrics").fetchall():
            self.db.execute("UPDATE run_metrics SET params=? WHERE run_id=? AND metric=?",
                            (canonical(normalised_params(metric, json.loads(params))), run_id, metric))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self):
        """One write transaction, all or nothing. It takes the write lock at its start (BEGIN
        IMMEDIATE), so processes sharing the folder wait their turn instead of failing with "database is
        locked" when a read would turn into a write."""
        if self.db.in_transaction:  # nested: part of the enclosing one
            yield
            return
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self.db.commit()
            except BaseException:
                if self.db.in_transaction:
                    self.db.rollback()
                raise
        except sqlite3.OperationalError as exc:
            raise self._write_error(exc) from None

    def _write_error(self, exc: sqlite3.OperationalError) -> StoreError:
        """SQLite's reason for a failed write, as one line saying what to do."""
        text = str(exc)
        reason = ("no space left on the device" if "full" in text else
                  "read-only: the folder or file is not writable" if "readonly" in text or "read-only" in text else
                  f"another process kept the store locked for {BUSY_TIMEOUT_S} s" if "locked" in text else
                  "cannot open or create the store file (is the folder writable?)" if "unable to open" in text else
                  f"{text} (a full disk gives this too)" if "I/O" in text else text)
        return StoreError(f"{self._where()}: cannot write ({reason}); {RESUME}")

    def _put(self, table: str, records: list[dict]) -> None:
        """Insert or replace rows of ``table`` (column -> value), each with its digest."""
        if not records:
            return
        columns = list(records[0]) + ["digest"]
        self.db.executemany(
            f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [[*r.values(), row_digest(table, [r[c] for c in DIGESTED[table]])] for r in records])

    # ---------------------------------------------------------------------------------------------
    # Runs

    def open_run(self, method: str, dataset: str, protocol: dict, metric_params: dict[str, dict],
                 gen_dir: str | None = None, gt_dir: str | None = None, force: bool = False) -> Run:
        """The run of ``method`` on ``dataset``, created if new.

        An existing run must have the same protocol, and each metric it already holds the same
        parameters; otherwise the results would mix two protocols, and this refuses unless ``force``,
        which deletes the conflicting results first. ``force`` also deletes the rows of the metrics in
        ``metric_params``, so that they are computed again.
        """
        with self.transaction():
            row = self.db.execute("SELECT run_id, protocol FROM runs WHERE method=? AND dataset=?",
                                  (method, dataset)).fetchone()
            if row is None:
                cur = self.db.execute(
                    "INSERT INTO runs (method, dataset, gen_dir, gt_dir, protocol, created, digest) "
                    "VALUES (?,?,?,?,?,?,?)", (method, dataset, gen_dir, gt_dir, canonical(protocol), _now(),
                                               row_digest("runs", [method, dataset, canonical(protocol)])))
                run_id = cur.lastrowid
            else:
                run_id, stored = row[0], upgrade(json.loads(row[1]))
                if stored != protocol:
                    if not force:
                        raise StoreError(
                            f"{self._where()} already holds '{method}' on '{dataset}' under another protocol "
                            f"({_diff(stored, protocol)}); results of two protocols are never mixed: "
                            "use another --out or --name, or --force to replace them")
                    for table in ("results", "dataset_results", "run_metrics", "details", "states"):
                        self.db.execute(f"DELETE FROM {table} WHERE run_id=?", (run_id,))
                self.db.execute("UPDATE runs SET protocol=?, gen_dir=?, gt_dir=?, digest=? WHERE run_id=?",
                                (canonical(protocol), gen_dir, gt_dir,
                                 row_digest("runs", [method, dataset, canonical(protocol)]), run_id))
            for metric, params in metric_params.items():
                old = self.db.execute("SELECT params FROM run_metrics WHERE run_id=? AND metric=?",
                                      (run_id, metric)).fetchone()
                old = None if old is None else normalised_params(metric, json.loads(old[0]))
                if old is not None and old != params:
                    if not force:
                        raise StoreError(
                            f"{self._where()} holds '{metric}' of '{method}' on '{dataset}' computed with "
                            f"other parameters ({_diff(old, params)}); use another --out "
                            "or --name, or --force to recompute it")
                    self._delete_metric(run_id, metric)
                elif force:
                    self._delete_metric(run_id, metric)
                self._put("run_metrics", [{"run_id": run_id, "metric": metric, "params": canonical(params)}])
        return self.get_run(method, dataset)

    def _delete_metric(self, run_id: int, metric: str) -> None:
        for table in ("results", "dataset_results", "details", "states"):
            self.db.execute(f"DELETE FROM {table} WHERE run_id=? AND metric=?", (run_id, metric))

    def _where(self) -> str:
        return str(self.path) if self.path else "the in-memory store"

    def get_run(self, method: str, dataset: str) -> Run:
        row = self.db.execute("SELECT run_id, protocol, gen_dir, gt_dir FROM runs WHERE method=? AND dataset=?",
                              (method, dataset)).fetchone()
        if row is None:
            raise StoreError(f"{self._where()} has no results of '{method}' on '{dataset}'")
        params = {m: normalised_params(m, json.loads(p)) for m, p in
                  self.db.execute("SELECT metric, params FROM run_metrics WHERE run_id=?", (row[0],))}
        return Run(row[0], method, dataset, upgrade(json.loads(row[1])), params, row[2], row[3])

    def runs(self, dataset: str | None = None) -> list[Run]:
        query = "SELECT method, dataset FROM runs" + (" WHERE dataset=?" if dataset else "") + " ORDER BY run_id"
        return [self.get_run(m, d) for m, d in self.db.execute(query, (dataset,) if dataset else ())]

    # ---------------------------------------------------------------------------------------------
    # Sessions and rows

    def start_session(self, run: Run, environment: dict, command: str | None = None) -> int:
        with self.transaction():
            cur = self.db.execute("INSERT INTO sessions (run_id, started, environment, command) VALUES (?,?,?,?)",
                                  (run.run_id, _now(), canonical(environment), command))
        return cur.lastrowid

    def finish_session(self, session_id: int) -> None:
        with self.transaction():
            self.db.execute("UPDATE sessions SET finished=? WHERE session_id=?", (_now(), session_id))

    def sessions(self, run: Run) -> list[dict]:
        rows = self.db.execute("SELECT session_id, started, finished, environment, command FROM sessions "
                               "WHERE run_id=? ORDER BY session_id", (run.run_id,))
        return [{"session": s, "started": a, "finished": b, "environment": json.loads(e), "command": c}
                for s, a, b, e, c in rows]

    def completed(self, run: Run) -> dict[tuple[str, str], str | None]:
        """(video, metric) -> input signature, for rows that hold a value (errors are retried)."""
        rows = self.db.execute("SELECT video, metric, inputs FROM results WHERE run_id=? AND error IS NULL",
                               (run.run_id,))
        return {(v, m): s for v, m, s in rows}

    def write(self, run: Run, session_id: int, rows: list[ResultRow]) -> None:
        """Write one video's rows in one transaction (all or nothing)."""
        with self.transaction():
            self._put("results", [{"run_id": run.run_id, "video": r.video, "metric": r.metric, "value": r.value,
                                   "frames": r.frames, "warnings": json.dumps(list(r.warnings)), "error": r.error,
                                   "seconds": r.seconds, "inputs": r.inputs, "session_id": session_id}
                                  for r in rows])
            self.db.executemany("DELETE FROM details WHERE run_id=? AND video=? AND metric=?",
                                [(run.run_id, r.video, r.metric) for r in rows])
            self.db.executemany("INSERT INTO details VALUES (?,?,?,?)",
                                [(run.run_id, r.video, r.metric, json.dumps(r.details)) for r in rows if r.details])
            self.db.executemany("DELETE FROM states WHERE run_id=? AND video=? AND metric=?",
                                [(run.run_id, r.video, r.metric) for r in rows])
            self._put("states", [{"run_id": run.run_id, "video": r.video, "metric": r.metric, "side": side,
                                  "sha256": st["sha256"], "rows": st["rows"], "input_key": st["key"]}
                                 for r in rows for side, st in (r.state or {}).items()])

    # ---------------------------------------------------------------------------------------------
    # Per-video state of dataset metrics

    def state_file(self, metric: str, sha256: str) -> Path:
        """Where a state file lives. The names come from the store, which may come from elsewhere: only a
        metric name and a SHA-256 make a path, so no row can point outside the state folder."""
        if self.state_dir is None:
            raise StoreError("this store keeps no state files")
        if not (_METRIC_NAME.fullmatch(metric) and _SHA256.fullmatch(sha256)):
            raise StoreError(f"{self._where()}: a state record names {metric!r}/{sha256!r}, not a metric and a "
                             "SHA-256 checksum; the store is damaged or was not written by lipsync-bench")
        return self.state_dir / metric / f"{sha256}.npy"

    def states(self, run: Run, metric: str) -> dict[str, dict[str, tuple[str, int]]]:
        """video -> side -> (sha256, rows) of a dataset metric's per-video state."""
        out: dict[str, dict] = {}
        for video, side, digest, n in self.db.execute(
                "SELECT video, side, sha256, rows FROM states WHERE run_id=? AND metric=?", (run.run_id, metric)):
            out.setdefault(video, {})[side] = (digest, n)
        return out

    def find_state(self, metric: str, input_key: str) -> str | None:
        """The checksum of a verified state file of ``metric`` for this input key (any run), else None."""
        for (digest,) in self.db.execute("SELECT DISTINCT sha256 FROM states WHERE metric=? AND input_key=?",
                                         (metric, input_key)):
            if self.state_ok(metric, digest):
                return digest
        return None

    def state_ok(self, metric: str, sha256: str) -> bool:
        """Whether the state file exists and its bytes have the recorded checksum."""
        try:
            return hashlib.sha256(self.state_file(metric, sha256).read_bytes()).hexdigest() == sha256
        except OSError:
            return False

    def load_state(self, metric: str, sha256: str, video: str = "") -> np.ndarray:
        """A state file's array, after checking its checksum; a missing or damaged file raises
        ``StoreError`` naming it (it is never read as numbers)."""
        path = self.state_file(metric, sha256)
        try:
            data = path.read_bytes()
        except OSError:
            raise StoreError(f"{path}: the {metric} state of {video or 'a video'} is missing from the results "
                             "folder; run eval again on the inputs to recompute it") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"{path}: the {metric} state of {video or 'a video'} is damaged (its checksum differs "
                             "from the one in the store); run eval again on the inputs to recompute it")
        return np.load(io.BytesIO(data), allow_pickle=False)

    def details(self, run: Run, metric: str) -> dict[str, dict]:
        """video -> the details stored with its value of ``metric``."""
        rows = self.db.execute("SELECT video, data FROM details WHERE run_id=? AND metric=?", (run.run_id, metric))
        return {v: json.loads(d) for v, d in rows}

    def write_dataset(self, run: Run, session_id: int, metric: str, value: float | None, videos: int,
                      frames: int | None, warnings: list[str] = (), error: str | None = None) -> None:
        """The value of a dataset metric over the run's videos."""
        with self.transaction():
            self._put("dataset_results", [{"run_id": run.run_id, "metric": metric, "value": value, "videos": videos,
                                           "frames": frames, "warnings": json.dumps(list(warnings)), "error": error,
                                           "session_id": session_id}])

    def import_run(self, other: "ResultStore", run: Run) -> Run:
        """Copy a run of another store (e.g. one shard of an evaluation) into this one, with its sessions
        and rows; the run here must have the same protocol and metric parameters (else refused, as for
        eval). State files are copied with their rows; dataset metric values are not: the caller
        recombines them over all the videos."""
        dst = self.open_run(run.method, run.dataset, run.protocol, run.metric_params, run.gen_dir, run.gt_dir)
        with self.transaction():
            sessions = {}
            for s in other.sessions(run):
                cur = self.db.execute(
                    "INSERT INTO sessions (run_id, started, finished, environment, command) VALUES (?,?,?,?,?)",
                    (dst.run_id, s["started"], s["finished"], canonical(s["environment"]), s["command"]))
                sessions[s["session"]] = cur.lastrowid
            results = other._records("results", run.run_id)
            for r in results:
                r["session_id"] = sessions.get(r["session_id"])
            states = other._records("states", run.run_id)
            for records in (results, states):
                for r in records:
                    r["run_id"] = dst.run_id
            self._put("results", results)
            self._put("states", states)
            self.db.executemany("INSERT OR REPLACE INTO details VALUES (?,?,?,?)",
                                [(dst.run_id, *r) for r in other.db.execute(
                                    "SELECT video, metric, data FROM details WHERE run_id=?", (run.run_id,))])
        for r in states:  # the state files travel with their rows (a damaged one too: checked on use, it says so)
            metric, digest = r["metric"], r["sha256"]
            src = other.state_file(metric, digest)
            if not self.state_ok(metric, digest) and src.is_file():
                atomic_write_bytes(self.state_file(metric, digest), src.read_bytes())
        return dst

    def check_state_records(self) -> None:
        """Raise ``StoreError`` if a state record names anything but a metric and a checksum (before a
        merge copies anything from a folder that came from elsewhere)."""
        for metric, digest in self.db.execute("SELECT DISTINCT metric, sha256 FROM states"):
            self.state_file(metric, digest)

    def _records(self, table: str, run_id: int) -> list[dict]:
        """A run's rows of ``table`` (without their digest), column -> value."""
        cursor = self.db.execute(f"SELECT * FROM {table} WHERE run_id=?", (run_id,))
        names = [d[0] for d in cursor.description]
        return [{k: v for k, v in zip(names, row, strict=True) if k != "digest"} for row in cursor]

    def dataset_results(self, run: Run) -> dict[str, dict]:
        rows = self.db.execute("SELECT metric, value, videos, frames, warnings, error, session_id "
                               "FROM dataset_results WHERE run_id=?", (run.run_id,))
        return {m: {"value": v, "videos": n, "frames": f, "warnings": json.loads(w), "error": e, "session": s}
                for m, v, n, f, w, e, s in rows}

    def results(self, runs: list[Run] | None = None) -> pd.DataFrame:
        """Long format: one row per run, video and metric."""
        runs = self.runs() if runs is None else runs
        columns = ["method", "dataset", "video", "metric", "value", "frames", "error", "warnings",
                   "seconds", "session"]
        frames = []
        for run in runs:
            rows = self.db.execute(
                "SELECT video, metric, value, frames, error, warnings, seconds, session_id FROM results "
                "WHERE run_id=? ORDER BY video, metric", (run.run_id,)).fetchall()
            df = pd.DataFrame(rows, columns=columns[2:])
            df.insert(0, "dataset", run.dataset)
            df.insert(0, "method", run.method)
            frames.append(df)
        if not frames:
            return pd.DataFrame(columns=columns)
        df = pd.concat(frames, ignore_index=True)
        df["value"] = df["value"].astype(float)
        df["warnings"] = df["warnings"].map(json.loads)
        return df


def _diff(old: dict, new: dict) -> str:
    """What differs, the protocol's name first; a derived protocol's list of changes is not repeated."""
    keys = sorted(set(old) | set(new) - {"modified"}, key=lambda k: (k != "protocol", k))
    parts = [f"{k}: stored {old.get(k)!r}, now {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(parts) or "same values"
