"""The command line as a user meets it: the demo, the metric list, help texts, clean errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from lipsync_bench.cli import main


@pytest.mark.slow
def test_demo_runs_offline_and_prints_a_ranked_table(tmp_path):
    # no time bound: a loaded machine is not a failure (the demo's speed is measured in benchmarks/)
    result = subprocess.run([sys.executable, "-m", "lipsync_bench.cli", "demo", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert {"blur-mild", "blur-strong", "noise", "frozen-mouth"} <= set(lines)

    def cells(name):
        return [float(c.strip().strip("*")) for c in lines[name].split("|")[2:5]]

    mild, strong = cells("blur-mild"), cells("blur-strong")
    assert mild[0] > strong[0] and mild[1] > strong[1] and mild[2] < strong[2]  # SSIM, PSNR up; IFC down
    assert (tmp_path / "results" / "results.csv").is_file() and (tmp_path / "example" / "gt").is_dir()


@pytest.mark.slow
def test_demo_json():
    result = CliRunner().invoke(main, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [c["metric"] for c in doc["columns"]] == ["ssim", "psnr", "ifc", "lmd", "cpbd", "csim_dlib"]  # offline
    assert len(doc["rows"]) == 4 and all(r["videos"] == 3 for r in doc["rows"])


def test_metrics_lists_needs_and_availability():
    result = CliRunner().invoke(main, ["metrics"])
    assert result.exit_code == 0
    ssim = next(line for line in result.output.splitlines() if line.startswith("ssim"))
    assert "higher" in ssim and "gt_frames" in ssim and "yes" in ssim and "sigma=1.5" in ssim
    doc = json.loads(CliRunner().invoke(main, ["metrics", "--json"]).output)
    assert {m["name"] for m in doc} >= {"ssim", "psnr", "ifc"}


def test_help_matches_the_commands():
    runner = CliRunner()
    top = runner.invoke(main, ["--help"]).output
    for command in ("eval", "table", "compare", "metrics", "demo"):
        assert command in top
    eval_help = runner.invoke(main, ["eval", "--help"]).output
    for option in ("--gen", "--gt", "--metrics", "--name", "--dataset", "--out", "--device", "--workers", "--json",
                   "--force", "--param", "--fps", "--max-frame-gap"):
        assert option in eval_help
    assert "--paper" in runner.invoke(main, ["table", "--help"]).output


def test_bad_arguments_are_one_clean_line(tmp_path):
    runner = CliRunner()
    (tmp_path / "a").mkdir()
    r = runner.invoke(main, ["eval", "--gen", str(tmp_path / "a"), "--gt", str(tmp_path / "a"), "--metrics", "nope",
                             "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and r.output.startswith("error: unknown metric 'nope'")
    r = runner.invoke(main, ["eval", "--gen", str(tmp_path / "a"), "--gt", str(tmp_path / "a"), "--param", "ifc.norm",
                             "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "expected METRIC.NAME=VALUE" in r.output
    r = runner.invoke(main, ["eval", "--gen", str(tmp_path / "a"), "--gt", str(tmp_path / "a"), "--fps", "-1",
                             "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "decode.fps=-1.0: expected a float >= 0" in r.output
    r = runner.invoke(main, ["eval", "--gen", str(tmp_path / "a"), "--gt", str(tmp_path / "a"), "--protocol", "nope",
                             "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and r.output.startswith("error: unknown protocol 'nope' (known: lipsync-bench, ")
    r = runner.invoke(main, ["eval", "--gen", str(tmp_path / "a"), "--gt", str(tmp_path / "a"), "--set",
                             "faces.min_track=many", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "faces.min_track='many': expected a int >= 0" in r.output
    r = runner.invoke(main, ["eval", "--gen", str(tmp_path / "a"), "--gt", str(tmp_path / "a"), "--device", "cuda:0",
                             "--out", str(tmp_path / "r")])
    import torch

    if not torch.cuda.is_available():
        assert r.exit_code == 2 and "CUDA is not available" in r.output
    assert not (tmp_path / "r").exists()  # a bad option writes nothing


def test_ci_runs_the_readmes_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    test_command = next(line for line in readme.splitlines() if line.endswith("python -m pytest -q"))
    assert test_command in (root / ".ci" / "run").read_text()
