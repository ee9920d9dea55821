"""The evaluation core: declarations checked before any work, one decode per input whatever the metrics,
GT decoding driven by the metrics' needs, the API's result object, results folders that reproduce
their own dataset metrics, and metrics added by another package through an entry point."""
from __future__ import annotations

import collections
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lipsync_bench
from lipsync_bench import media, weights
from lipsync_bench.cli import main
from lipsync_bench.errors import ParameterError
from lipsync_bench.evaluation import run_eval
from lipsync_bench.metrics import get_metric, resolve_run_params
from lipsync_bench.syncnets.syncnet import SyncNet
from tests.helpers import make_fid_weights, noise

ROOT = Path(__file__).resolve().parents[1]
FID_FILE = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(scope="module")
def clips(grid_clips, tmp_path_factory) -> dict:
    """Two short GRID pairs (20 frames, with their audio): gt/ and a noisy gen/."""
    root = tmp_path_factory.mktemp("core")
    for clip in grid_clips[:2]:
        frames = media.read_frames(clip)[:20]
        audio = media.read_audio(clip)[: 20 * 640]
        media.write_video(root / "gt" / f"{clip.stem}.avi", frames, 25, audio=audio, codec="ffv1")
        media.write_video(root / "gen" / f"{clip.stem}.avi", noise(frames, 4), 25, audio=audio, codec="ffv1")
    return {"root": root, "gen": root / "gen", "gt": root / "gt"}


@pytest.fixture(scope="module")
def weights_dir(clips, tmp_path_factory) -> Path:
    """Seeded random SyncNet and FID-Inception weights under their published names."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), folder / "syncnet_v2.model")
    frames = np.concatenate([media.read_frames(p) for p in sorted(clips["gt"].iterdir())])
    make_fid_weights(folder / FID_FILE, frames)
    return folder


@pytest.fixture
def with_weights(weights_dir, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(weights_dir))
    return weights_dir


@pytest.fixture
def decodes(monkeypatch):
    """How many times each input file is opened for video decoding."""
    counts: collections.Counter = collections.Counter()
    real = media.iter_frames

    def counting(path, *args, **kwargs):
        counts[str(Path(path).resolve())] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(media, "iter_frames", counting)
    return counts


def test_a_bad_parameter_is_one_line_before_any_video_and_writes_nothing(clips, tmp_path, decodes):
    out = tmp_path / "r"
    args = ["eval", "--gen", str(clips["gen"]), "--gt", str(clips["gt"]), "--out", str(out), "--metrics", "ssim,ifc",
            "--quiet"]
    bad = CliRunner().invoke(main, args + ["--param", "ifc.reduce=median"])
    assert bad.exit_code == 2
    assert bad.output.strip().splitlines() == ["error: ifc.reduce='median': expected one of mean, sum"]
    assert not decodes and not out.exists()
    for wrong, message in ((["--param", "ifc.nrom=l2"], "metric 'ifc' has no parameter 'nrom' (it has: norm, reduce, "
                                                          "scale)"),
                           (["--param", "ssim.sigma=-1"], "ssim.sigma='-1': expected a float >= 0.1"),
                           (["--param", "ssim.sigma=wide"], "ssim.sigma='wide': expected a float >= 0.1"),
                           (["--param", "lmd.normalize=face"], "--param given for 'lmd', which this run does not "
                                                               "compute"),
                           (["--param", "lse.vshift=4"], "this run computes no metric of group 'lse'")):
        r = CliRunner().invoke(main, args + wrong)
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not decodes and not out.exists()
    good = CliRunner().invoke(main, args + ["--param", "ifc.reduce=sum"])  # no --force needed
    assert good.exit_code == 0, good.output
    assert "IFC" in good.output and "FAILED" not in good.output


def test_group_parameters_reach_every_member_and_a_members_own_wins():
    params = resolve_run_params(["lse_c", "lse_d"], {"lse": {"vshift": "10"}, "lse_d": {"vshift": 12}})
    assert params["lse_c"]["vshift"] == 10 and params["lse_d"]["vshift"] == 12
    with pytest.raises(ParameterError, match="unknown metric 'nope'"):
        resolve_run_params(["ssim"], {"nope": {"x": 1}})


def test_definition_changing_parameters_name_their_column():
    ifc, lse = get_metric("ifc"), get_metric("lse_c")
    assert ifc.column_key(ifc.resolve_params({"norm": "l2"})) == "ifc@norm=l2"
    assert ifc.column_label(ifc.resolve_params({"norm": "l2"})) == "IFC [norm=l2]"
    assert ifc.column_key(ifc.resolve_params()) == "ifc"
    assert lse.column_label(lse.resolve_params({"sync_model": "avsyncnet"})) == "LSE-C [AVSyncNet]"
    # a minimum track length changes which videos count, and so the mean: a definition of its own
    assert lse.column_key(lse.resolve_params({"sync_model": "avsyncnet", "min_track": 9})) == \
        "lse_c@min_track=9,avsyncnet"
    assert lse.column_key(lse.resolve_params({"sync_model": "avsyncnet", "sync_weights": ""})) == "lse_c@avsyncnet"


def test_no_metric_is_named_in_orchestration_store_tables_or_report():
    core = ["evaluation.py", "pipeline.py", "shards.py", "store.py", "report.py", "report_html.py"]
    for name in core:
        text = (ROOT / "lipsync_bench" / name).read_text()
        found = re.findall(r"(?i)\blse\w*|\bfid\w*|sync_model", text)
        assert not found, f"{name} names {sorted(set(found))}"


@pytest.mark.slow
def test_adding_metrics_adds_no_decode(clips, with_weights, tmp_path, decodes):
    lipsync_bench.evaluate(clips["gen"], clips["gt"], ["ssim"], out=tmp_path / "one")
    one = dict(decodes)
    assert sorted(one.values()) == [1, 1, 1, 1]  # each generated and each GT file once
    decodes.clear()
    result = lipsync_bench.evaluate(clips["gen"], clips["gt"], out=tmp_path / "all")
    assert set(result.metrics) >= {"ssim", "psnr", "fid", "ifc", "lmd", "lse_c", "lse_d", "av_offset"}
    assert result.failures.empty, result.failures
    assert result.ground_truth["summary"]["lse_c"]["n"] == 2  # the GT's own LSE, from the same decode
    assert dict(decodes) == one


@pytest.mark.slow
def test_lse_alone_does_not_decode_or_check_the_gt(clips, with_weights, tmp_path, decodes):
    gt = tmp_path / "gt"
    for path in sorted(clips["gt"].iterdir()):  # the GT at another frame size
        frames = media.read_frames(path)
        small = torch.nn.functional.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(),
                                                scale_factor=0.5).round().byte().permute(0, 2, 3, 1).numpy()
        media.write_video(gt / path.name, small, 25, audio=media.read_audio(path), codec="ffv1")
    result = lipsync_bench.evaluate(clips["gen"], gt, ["lse_c"], method="m")
    assert result.failures.empty and result.summary.loc["lse_c", "n"] == 2
    frame_metrics = lipsync_bench.evaluate(clips["gen"], gt, ["ssim"], method="m")
    assert "frame sizes differ" in frame_metrics.failures.error.iloc[0]
    # a generated video shorter than its GT by more than a chunk: the GT's own LSE still sees every frame
    short = tmp_path / "short"
    for path in sorted(clips["gen"].iterdir()):
        media.write_video(short / path.name, media.read_frames(path)[:7], 25, audio=media.read_audio(path),
                          codec="ffv1")
    truth = run_eval(short, gt, ["lse_c"], method="short", chunk=4, progress=False)
    alone = lipsync_bench.evaluate(gt, gt, ["lse_c"], method="gt itself")
    assert truth.ground_truth["summary"]["lse_c"]["mean"] == pytest.approx(alone.summary.loc["lse_c", "mean"],
                                                                          abs=1e-9)


@pytest.mark.slow
def test_the_api_returns_what_eval_prints(clips, with_weights, tmp_path):
    out = tmp_path / "r"
    result = lipsync_bench.evaluate(clips["gen"], clips["gt"], ["fid", "ssim"], out=out, method="m")
    assert list(result.summary.columns) == ["mean", "std", "ci_low", "ci_high", "n", "failed"]
    fid = result.summary.loc["fid", "mean"]
    assert np.isfinite(fid) and fid == result.dataset.loc["fid", "value"]
    assert result.summary.loc["ssim", "n"] == 2 and result.summary.loc["ssim", "ci_low"] <= result.summary.loc[
        "ssim", "mean"]
    printed = CliRunner().invoke(main, ["eval", "--gen", str(clips["gen"]), "--gt", str(clips["gt"]), "--out", str(out),
                                        "--metrics", "fid,ssim", "--name", "m", "--json"])
    assert printed.exit_code == 0, printed.output
    doc = json.loads(printed.output)
    assert doc["summary"]["fid"]["mean"] == pytest.approx(fid, abs=0, rel=1e-12)
    mine = result.to_json()
    assert {k: mine[k] for k in ("summary", "videos", "failures", "protocol", "metric_params")} == \
           {k: doc[k] for k in ("summary", "videos", "failures", "protocol", "metric_params")}
    assert result.protocol["decode.fps"] == 25.0
    assert result.protocol["metric_params"]["fid"]["weights"]["file"] == FID_FILE
    text = CliRunner().invoke(main, ["eval", "--gen", str(clips["gen"]), "--gt", str(clips["gt"]), "--out", str(out),
                                     "--metrics", "fid,ssim", "--name", "m"]).output
    again = lipsync_bench.evaluate(clips["gen"], clips["gt"], ["fid", "ssim"], out=out, method="m")
    assert text == again.text(out) + "\n" and "FID↓" in text


@pytest.mark.slow
def test_merge_and_table_reproduce_fid_from_the_results_alone(clips, with_weights, tmp_path):
    inputs = tmp_path / "inputs"
    shutil.copytree(clips["root"], inputs)
    whole = lipsync_bench.evaluate(inputs / "gen", inputs / "gt", ["fid"], out=tmp_path / "whole", method="m",
                                   dataset="d").summary.loc["fid", "mean"]
    shards = []
    for i in range(2):
        runner = CliRunner().invoke(main, ["eval", "--gen", str(inputs / "gen"), "--gt", str(inputs / "gt"),
                                           "--metrics", "fid", "--name", "m", "--dataset", "d", "--quiet",
                                           "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2"])
        assert runner.exit_code == 0, runner.output
        shards.append(str(tmp_path / f"s{i}"))
    shutil.rmtree(inputs)  # the results folders alone must do
    merged = CliRunner().invoke(main, ["merge", *shards, "--out", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.output
    table = CliRunner().invoke(main, ["table", "--dataset", "d", "--results", str(tmp_path / "merged"), "--json"])
    row = json.loads(table.output)["rows"][0]
    assert row["values"]["fid"] == pytest.approx(whole, rel=1e-9)
    shutil.rmtree(tmp_path / "merged")
    state = next((tmp_path / "s0" / "state" / "fid").glob("*.npy"))
    data = bytearray(state.read_bytes())
    data[-1] ^= 0xFF  # a flipped byte in a state file is found, never read as numbers
    state.write_bytes(bytes(data))
    damaged = CliRunner().invoke(main, ["merge", *shards, "--out", str(tmp_path / "merged")])
    assert "m on d: 2 videos, fid: " in damaged.output and "is damaged" in damaged.output, damaged.output


@pytest.mark.slow
def test_a_metric_from_another_package_shows_everywhere(clips, tmp_path):
    plugin = tmp_path / "plugin"
    (plugin / "mad_metric-0.1.dist-info").mkdir(parents=True)
    (plugin / "mad_metric-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: mad-metric\n"
                                                                   "Version: 0.1\n")
    (plugin / "mad_metric-0.1.dist-info" / "entry_points.txt").write_text(
        "[lipsync_bench.metrics]\nmad = mad_metric\n")
    (plugin / "mad_metric.py").write_text(textwrap.dedent('''
        """Mean absolute difference per frame, averaged: a metric of another package."""
        import torch

        from lipsync_bench.metrics import Metric, Param, PerFrameMean, register


        def mad_frames(gen, gt, scale=1.0):
            return (gen.double() - gt.double()).abs().flatten(1).mean(dim=1) / scale


        register(Metric(name="mad", label="MAD", higher_is_better=False, needs=frozenset({"gt_frames"}),
                        scope="video", decimals=3, description="mean absolute difference per frame",
                        params={"scale": Param(1.0, "divisor", min=1e-9, defines=True)},
                        make_accumulator=lambda params, ctx: PerFrameMean(mad_frames, params)))
        '''))
    env = {**__import__("os").environ, "PYTHONPATH": f"{plugin}:{ROOT}"}
    cli = [sys.executable, "-m", "lipsync_bench.cli"]
    listed = subprocess.run(cli + ["metrics"], capture_output=True, text=True, env=env)
    assert re.search(r"^mad\s+MAD\s+lower", listed.stdout, re.M), listed.stdout + listed.stderr
    out = tmp_path / "r"
    run = subprocess.run(cli + ["eval", "--gen", str(clips["gen"]), "--gt", str(clips["gt"]), "--out", str(out),
                                "--metrics", "mad,ssim", "--name", "m", "--dataset", "d", "--json"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    expected = np.mean([np.abs(media.read_frames(clips["gen"] / f).astype(float)
                               - media.read_frames(clips["gt"] / f).astype(float)).mean()
                        for f in sorted(p.name for p in clips["gt"].iterdir())])
    assert doc["summary"]["mad"]["mean"] == pytest.approx(expected, rel=1e-12)
    table = subprocess.run(cli + ["table", "--dataset", "d", "--results", str(out)], capture_output=True, text=True,
                           env=env)
    assert "MAD↓" in table.stdout, table.stdout + table.stderr
    report = subprocess.run(cli + ["report", str(out), "--out", str(tmp_path / "report.html")], capture_output=True,
                            text=True, env=env)
    assert report.returncode == 0 and "MAD" in (tmp_path / "report.html").read_text(), report.stderr
    api = subprocess.run([sys.executable, "-c", "import lipsync_bench, sys; print(lipsync_bench.evaluate(sys.argv[1], "
                          "sys.argv[2], ['mad']).summary.loc['mad', 'mean'])", str(clips["gen"]), str(clips["gt"])],
                         capture_output=True, text=True, env=env)
    assert float(api.stdout) == pytest.approx(expected, rel=1e-12), api.stderr


@pytest.mark.slow
def test_a_damaged_state_file_is_recomputed_by_a_rerun_on_the_inputs(clips, with_weights, tmp_path):
    out = tmp_path / "r"
    first = lipsync_bench.evaluate(clips["gen"], clips["gt"], ["fid"], out=out, method="m")
    files = sorted((out / "state" / "fid").glob("*.npy"))
    assert len(files) == 4  # two generated and two GT videos
    files[0].write_bytes(files[0].read_bytes()[:-8])  # truncated behind the store's back
    again = lipsync_bench.evaluate(clips["gen"], clips["gt"], ["fid"], out=out, method="m")
    assert again.computed >= 1 and again.summary.loc["fid", "mean"] == first.summary.loc["fid", "mean"]
    files[1].unlink()  # and a missing one
    table = CliRunner().invoke(main, ["table", "--dataset", "gt", "--results", str(out), "--json"])
    assert json.loads(table.output)["rows"][0]["values"]["fid"] == pytest.approx(first.summary.loc["fid", "mean"])
    third = lipsync_bench.evaluate(clips["gen"], clips["gt"], ["fid"], out=out, method="m")
    assert third.computed >= 1 and third.summary.loc["fid", "mean"] == first.summary.loc["fid", "mean"]
