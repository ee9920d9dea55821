"""`eval` end to end on real clips: values, directions, resume, bad inputs, protocol checks."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import lipsync_bench
from lipsync_bench import media
from lipsync_bench.cli import main
from lipsync_bench.errors import StoreError
from tests.helpers import blur, data_file, jpeg, noise, shift, write_frame_folder, write_lossless
from tests.test_metrics import sk_psnr, sk_ssim

FRAME_METRICS = ["ssim", "psnr", "ifc"]


def evaluate(gen, gt, metrics=FRAME_METRICS, **kwargs):
    """The per-video table of the frame metrics this file checks (the default would add every metric
    available here)."""
    return lipsync_bench.evaluate(gen, gt, metrics, **kwargs).videos


class _Degraded(dict):
    """The generated folders, each written when a test first asks for it (name -> folder)."""

    def __init__(self, root, frames, methods):
        super().__init__()
        self.root, self.frames, self.methods = root, frames, methods

    def __missing__(self, name):
        for stem, f in self.frames.items():
            if name == "jpeg":  # frame folders, Wav2Lip layout
                write_frame_folder(self.root / name / stem, self.methods[name](f))
            else:
                write_lossless(self.root / name / stem, self.methods[name](f))
        self[name] = self.root / name
        return self[name]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, grid_clips):
    """GT: three real GRID clips (as they are). Generated: their decoded frames degraded at two
    strengths, written losslessly (FFV1 .avi, or PNG frame folders) so decoded frames are exact."""
    root = tmp_path_factory.mktemp("eval")
    gt = root / "gt"
    gt.mkdir()
    frames = {}
    for clip in grid_clips[:3]:
        (gt / clip.name).symlink_to(clip)
        frames[clip.stem] = media.read_frames(clip)
    methods = {"mild": lambda f: noise(blur(f, 0.5), 2), "strong": lambda f: noise(blur(f, 1.5), 8),
               "jpeg": lambda f: jpeg(f, 20), "shifted": lambda f: shift(f, 3)}
    return {"root": root, "gt": gt, "gen": _Degraded(root, frames, methods), "frames": frames, "methods": methods}


def test_values_equal_skimage_through_the_whole_pipeline(dataset, tmp_path):
    df = evaluate(dataset["gen"]["strong"], dataset["gt"], out=tmp_path / "r", method="strong",
                                dataset="grid")
    assert set(df.columns) >= {"video", "metric", "value", "method", "dataset", "error"}
    assert df.error.isna().all() and len(df) == 9
    for stem, gt in list(dataset["frames"].items())[:2]:  # scikit-image is slow: two clips of three
        gen = dataset["methods"]["strong"](gt)
        row = df[df.video == stem].set_index("metric").value
        assert abs(row["ssim"] - sk_ssim(gen, gt).mean()) < 1e-6
        assert abs(row["psnr"] - sk_psnr(gen, gt).mean()) < 1e-6
        d = (gt[1:].astype(np.int64) - gt[:-1]) - (gen[1:].astype(np.int64) - gen[:-1])
        ifc_ref = np.sqrt((d.reshape(len(d), -1) ** 2).mean(axis=1)).mean() / 255
        assert abs(row["ifc"] - ifc_ref) < 1e-12


@pytest.mark.slow
def test_frame_folders_are_inputs_too(dataset):
    df = evaluate(dataset["gen"]["jpeg"], dataset["gt"])
    assert df.error.isna().all()
    stem, gt = next(iter(dataset["frames"].items()))
    ssim = df[(df.video == stem) & (df.metric == "ssim")].value.item()
    assert abs(ssim - sk_ssim(dataset["methods"]["jpeg"](gt), gt).mean()) < 1e-6


@pytest.mark.slow
def test_stronger_degradation_ranks_lower(dataset, tmp_path):
    out = tmp_path / "r"
    means = {}
    for name in ("mild", "strong"):
        df = evaluate(dataset["gen"][name], dataset["gt"], out=out, method=name, dataset="grid")
        means[name] = df.groupby("metric").value.mean()
    assert means["mild"]["ssim"] > means["strong"]["ssim"]
    assert means["mild"]["psnr"] > means["strong"]["psnr"]
    assert means["mild"]["ifc"] < means["strong"]["ifc"]
    # the table ranks them the same way, best in bold
    result = CliRunner().invoke(main, ["table", "--dataset", "grid", "--results", str(out)])
    assert result.exit_code == 0, result.output
    mild_line = next(line for line in result.output.splitlines() if line.startswith("| mild"))
    assert mild_line.count("**") == 6  # SSIM, PSNR and IFC in bold


def test_identical_videos(dataset):
    df = evaluate(dataset["gt"], dataset["gt"])
    v = df.groupby("metric").value
    assert np.allclose(v.min()["ssim"], 1.0) and np.isinf(v.min()["psnr"]) and v.max()["ifc"] == 0.0
    assert any("identical to GT" in w for ws in df.warnings for w in ws)


def test_a_time_shift_is_seen_by_ifc_and_ssim(dataset):
    df = evaluate(dataset["gen"]["shifted"], dataset["gt"])
    means = df.groupby("metric").value.mean()
    assert means["ifc"] > 0.005 and means["ssim"] < 1.0


def test_cli_json_and_exported_files(dataset, tmp_path):
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["eval", "--metrics", "ssim,psnr,ifc", "--gen", str(dataset["gen"]["mild"]),
                                       "--gt", str(dataset["gt"]),
                                       "--out", str(out), "--name", "mild", "--dataset", "grid", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["method"] == "mild" and doc["dataset"] == "grid"
    from lipsync_bench.protocol import load_protocol

    assert doc["protocol"] == load_protocol("lipsync-bench").as_dict()
    assert doc["protocol"]["protocol"] == "lipsync-bench" and doc["protocol"]["decode.fps"] == 25.0
    assert len(doc["protocol"]["protocol_sha256"]) == 64
    assert set(doc["summary"]) == {"ssim", "psnr", "ifc"} and doc["summary"]["ssim"]["n"] == 3
    lo, hi = doc["summary"]["ssim"]["ci95"]
    assert lo <= doc["summary"]["ssim"]["mean"] <= hi
    assert len(doc["videos"]) == 3 and doc["environment"]["versions"]["torch"]
    assert doc["metric_params"]["ifc"] == {"scale": 255.0, "norm": "rms", "reduce": "mean", "pool": "videos"}
    csv = (out / "results.csv").read_text().splitlines()
    assert csv[0].startswith("method,dataset,video,metric,value") and len(csv) == 10
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"][0]["summary"]["ssim"]["mean"] == pytest.approx(doc["summary"]["ssim"]["mean"])


@pytest.mark.slow
def test_workers_give_the_same_values(dataset):
    one = evaluate(dataset["gen"]["mild"], dataset["gt"])
    two = evaluate(dataset["gen"]["mild"], dataset["gt"], workers=2)
    key = ["video", "metric"]
    assert np.allclose(one.sort_values(key).value.to_numpy(), two.sort_values(key).value.to_numpy(), atol=0)


# ---------------------------------------------------------------- protocol and store

def test_protocol_and_parameters_are_never_mixed(dataset, tmp_path):
    out = tmp_path / "r"
    gen, gt = dataset["gen"]["mild"], dataset["gt"]
    metrics = ["psnr", "ifc"]
    evaluate(gen, gt, metrics, out=out, method="m", dataset="d")
    with pytest.raises(StoreError, match="another protocol .*fps: stored 25.0, now 30.0"):
        evaluate(gen, gt, metrics, out=out, method="m", dataset="d", fps=30)
    with pytest.raises(StoreError, match="other parameters .*norm: stored 'rms', now 'l2'"):
        evaluate(gen, gt, metrics, out=out, method="m", dataset="d", params={"ifc": {"norm": "l2"}})
    df = evaluate(gen, gt, metrics, out=out, method="m", dataset="d", fps=30, force=True)
    assert df.error.isna().all() and len(df) == 6
    runner = CliRunner()
    result = runner.invoke(main, ["eval", "--metrics", "psnr,ifc", "--gen", str(gen), "--gt", str(gt),
                                  "--out", str(out), "--name", "m",
                                  "--dataset", "d"])
    assert result.exit_code == 1 and result.output.startswith("error: ") and "Traceback" not in result.output


@pytest.mark.slow
def test_adding_a_metric_keeps_the_others(dataset, tmp_path):
    out = tmp_path / "r"
    gen, gt = dataset["gen"]["mild"], dataset["gt"]
    first = evaluate(gen, gt, ["ssim"], out=out, method="m", dataset="d")
    both = evaluate(gen, gt, ["ssim", "psnr"], out=out, method="m", dataset="d")
    ssim = both[both.metric == "ssim"]
    assert (ssim.session.to_numpy() == first.session.to_numpy()).all()  # not recomputed
    assert set(both.metric) == {"ssim", "psnr"}


@pytest.mark.slow
def test_changed_input_file_is_recomputed(dataset, tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    stems = list(dataset["frames"])
    for stem in stems:
        (gen / f"{stem}.avi").write_bytes((dataset["gen"]["mild"] / f"{stem}.avi").read_bytes())
    out = tmp_path / "r"
    first = evaluate(gen, dataset["gt"], out=out)
    write_lossless(gen / stems[0], dataset["methods"]["strong"](dataset["frames"][stems[0]]))
    second = evaluate(gen, dataset["gt"], out=out)
    changed = second[second.video == stems[0]]
    assert (changed.session > first.session.max()).all()
    assert (second[second.video != stems[0]].session == first.session.max()).all()


def test_corrupt_store_is_refused_clearly(tmp_path, dataset):
    out = tmp_path / "r"
    out.mkdir()
    (out / "lipsync_bench.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(StoreError, match="not a readable lipsync-bench results store"):
        evaluate(dataset["gen"]["mild"], dataset["gt"], out=out)
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "lipsync_bench.sqlite").execute("CREATE TABLE x (a)")
    with pytest.raises(StoreError, match="not a lipsync-bench results store"):
        evaluate(dataset["gen"]["mild"], dataset["gt"], out=other)


# ---------------------------------------------------------------- bad inputs never stop a run

def test_bad_videos_are_one_line_each_and_the_others_go_on(dataset, tmp_path):
    gen = tmp_path / "gen"
    gen.mkdir()
    stems = list(dataset["frames"])
    good = stems[0]
    (gen / f"{good}.avi").write_bytes((dataset["gen"]["mild"] / f"{good}.avi").read_bytes())
    (gen / f"{stems[1]}.mp4").write_bytes(b"")  # zero bytes
    (gen / f"{stems[2]}.mp4").write_text("not a video at all\n")  # text named .mp4
    src = data_file("retalking/face_3.mp4").read_bytes()
    (gen / "truncated.mp4").write_bytes(src[: len(src) // 3])
    gt = tmp_path / "gt"
    gt.mkdir()
    for stem in stems:
        (gt / f"{stem}.mpg").symlink_to(dataset["gt"] / f"{stem}.mpg")
    (gt / "truncated.mp4").symlink_to(data_file("retalking/face_3.mp4"))
    (gen / "lonely.avi").write_bytes((dataset["gen"]["mild"] / f"{good}.avi").read_bytes())
    result = CliRunner().invoke(main, ["eval", "--metrics", "ssim,psnr,ifc", "--gen", str(gen), "--gt", str(gt),
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    failed = [line for line in result.output.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 3
    assert any(f"FAILED {stems[1]}: " in line and "empty file (0 bytes)" in line for line in failed)
    assert any(f"FAILED {stems[2]}: " in line and "not a readable video" in line for line in failed)
    assert any("FAILED truncated: " in line and "truncated.mp4" in line for line in failed)
    assert "unpaired in --gen (1): lonely" in result.output
    df = evaluate(gen, gt, out=tmp_path / "r")
    assert df[df.video == good].error.isna().all()


def test_frame_count_gaps_and_size_mismatch(dataset, tmp_path):
    stem, frames = next(iter(dataset["frames"].items()))
    gt = tmp_path / "gt"
    gen = tmp_path / "gen"
    write_lossless(gt / "short_gap", frames)
    write_lossless(gen / "short_gap", frames[:-2])
    write_lossless(gt / "long_gap", frames)
    write_lossless(gen / "long_gap", frames[:-20])
    write_lossless(gt / "sizes", frames)
    write_lossless(gen / "sizes", frames[:, :200, :300])
    df = evaluate(gen, gt)
    rows = df.set_index(["video", "metric"])
    assert pd.isna(rows.loc[("short_gap", "ssim")].error)
    assert "frame counts differ by 2 (generated 73, ground truth 75); truncated to 73" in \
        rows.loc[("short_gap", "ssim")].warnings
    assert rows.loc[("long_gap", "psnr")].error.startswith(
        "frame counts differ by more than 3 at 25 fps: generated has 55 frames, ground truth at least ")
    assert rows.loc[("sizes", "ifc")].error.startswith("frame sizes differ: generated 300x200, ground truth 360x288 "
                                                       "(--set decode.resize=area compares them")


def test_no_pairs_is_an_error(tmp_path, dataset):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["eval", "--metrics", "ssim,psnr,ifc", "--gen", str(empty),
                                       "--gt", str(dataset["gt"]),
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "error: no pairs" in result.output


# ---------------------------------------------------------------- interrupted runs resume

@pytest.mark.slow
def test_killed_run_resumes_without_recomputing(tmp_path):
    clips = [data_file(f"retalking/face_{i}.mp4") for i in (1, 2, 3)]
    gt = tmp_path / "gt"
    gen = tmp_path / "gen"
    gt.mkdir()
    gen.mkdir()
    for i in range(6):
        (gt / f"v{i}.mp4").symlink_to(clips[i % 3])
        (gen / f"v{i}.mp4").symlink_to(clips[i % 3])
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "lipsync_bench.cli", "eval", "--metrics", "ssim,psnr,ifc", "--gen", str(gen),
           "--gt", str(gt), "--out", str(out),
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = out / "lipsync_bench.sqlite"
    deadline = time.time() + 400  # generous: a loaded machine must not turn this into a race
    done = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                done = sqlite3.connect(db).execute("SELECT COUNT(DISTINCT video) FROM results").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if done >= 2:
                break
    assert proc.poll() is None, "the run finished before it could be interrupted"
    assert done >= 2, "two videos were not finished in time to interrupt the run after them"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    con = sqlite3.connect(db)
    before = dict(con.execute("SELECT video || metric, session_id FROM results").fetchall())
    assert 2 <= len({k[:2] for k in before}) < 6
    con.close()
    rerun = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert doc["counts"]["resumed"] == len(before) // 3 and doc["counts"]["computed"] == 6 - len(before) // 3
    con = sqlite3.connect(db)
    after = dict(con.execute("SELECT video || metric, session_id FROM results").fetchall())
    assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 18  # no duplicates
    assert all(after[k] == v for k, v in before.items())  # finished videos kept from the first session
