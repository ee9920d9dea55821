"""Sharded evaluation: `eval --shard i/N` into separate folders, `merge` into one, gives the table of
one unsharded run — FID from the merged feature statistics, not a mean of the shards' FIDs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lipsync_bench import media, weights
from lipsync_bench.cli import main
from lipsync_bench.shards import in_shard
from lipsync_bench.syncnets.syncnet import SyncNet
from tests.helpers import GRID, blur, make_fid_weights

pytest.importorskip("python_speech_features")
pytest.importorskip("dlib")
FID_FILE = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    clips = sorted((GRID).glob("*.mpg"))[:3]  # two in shard 0/2, one in 1/2
    if len(clips) < 3:
        pytest.skip(f"GRID clips not found under {GRID}")
    root = tmp_path_factory.mktemp("shards")
    (root / "gt").mkdir()
    frames = {}
    for i, clip in enumerate(clips):
        frames[clip.stem] = media.read_frames(clip)
        shutil.copy(clip, root / "gt" / clip.name)
        media.write_video(root / "gen" / f"{clip.stem}.avi", blur(frames[clip.stem], 0.5 + 0.5 * i), 25,
                          media.read_audio(clip), codec="ffv1")
    folder = root / "weights"
    make_fid_weights(folder / FID_FILE, np.concatenate([f[::10] for f in frames.values()]))
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), folder / "syncnet_v2.model")
    return root


def eval_args(root, out, *extra):
    return ["eval", "--gen", str(root / "gen"), "--gt", str(root / "gt"), "--out", str(out), "--name", "blur",
            "--dataset", "grid", "--metrics", "ssim,psnr,fid,lse_c,lse_d", "--fid-frames", "12", "--quiet", *extra]


def table(out) -> dict:
    result = CliRunner().invoke(main, ["table", "--dataset", "grid", "--results", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return {r["method"]: r for r in json.loads(result.output)["rows"]}


@pytest.mark.slow
def test_shards_merged_equal_one_run(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(dataset / "weights"))
    runner = CliRunner()
    whole = runner.invoke(main, eval_args(dataset, tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output
    stems = sorted(p.stem for p in (dataset / "gt").iterdir())
    parts = [[s for s in stems if in_shard(s, (i, 2))] for i in range(2)]
    assert all(parts) and sorted(parts[0] + parts[1]) == stems  # disjoint, covering, both non-empty
    for i in range(2):
        shard = runner.invoke(main, eval_args(dataset, tmp_path / f"shard{i}", "--shard", f"{i}/2"))
        assert shard.exit_code == 0, shard.output
        assert f"{len(parts[i])} pairs" in shard.output and "merge" in shard.output
    merged = runner.invoke(main, ["merge", str(tmp_path / "shard0"), str(tmp_path / "shard1"),
                                  "--out", str(tmp_path / "merged")])
    assert merged.exit_code == 0, merged.output
    a, b = table(tmp_path / "whole"), table(tmp_path / "merged")
    assert set(a) == set(b) == {"blur", "Ground truth"}
    for method in a:
        assert a[method]["videos"] == b[method]["videos"]
        for metric, value in a[method]["values"].items():
            assert b[method]["values"][metric] == pytest.approx(value, rel=1e-9, abs=1e-9), (method, metric)
    assert a["blur"]["values"]["fid@frames=12"] > 0  # FID on 12 frames a video: a column of its own
    # a shard alone has no FID (it would cover a fraction of the frames)
    assert table(tmp_path / "shard0")["blur"]["values"].get("fid@frames=12") is None


def test_bad_shard_argument_is_one_line(tmp_path):
    for side in ("gen", "gt"):
        (tmp_path / side).mkdir()
    result = CliRunner().invoke(main, eval_args(tmp_path, tmp_path / "r", "--shard", "2/2"))
    assert result.exit_code == 2 and "0 <= I < N" in result.output and "Traceback" not in result.output
