"""FVD against cd-fvd (0.1.1) with the same seeded random I3D weights (in ``pytorch_i3d``'s layout, the
layout of ``i3d_pretrained_400.pt``) on the same clips of real videos: its network, its preprocessing
(``data_utils.preprocess``, the uint8 truncation of ``compute_fake_stats``, ``preprocess_i3d``), its
statistics (``FeatureStats``) and its distance (``cdfvd.compute_fvd_from_stats``)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lipsync_bench
from lipsync_bench import media, weights
from lipsync_bench.cli import main
from lipsync_bench.metrics.fid import frechet_distance
from lipsync_bench.metrics.fvd import I3D, clip_features
from lipsync_bench.store import ResultStore
from tests.helpers import GRID, blur

cdfvd = pytest.importorskip("cdfvd", reason="needs cd-fvd==0.1.1 (the README's test command installs it)")
pytorch_i3d = pytest.importorskip("cdfvd.third_party.i3d.pytorch_i3d")
from cdfvd.third_party.i3d.utils import preprocess_i3d  # noqa: E402
from cdfvd.utils.data_utils import preprocess  # noqa: E402
from cdfvd.utils.metric_utils import FeatureStats  # noqa: E402

I3D_FILE = "i3d_pretrained_400.pt"


@pytest.fixture(scope="module")
def reference_i3d():
    torch.manual_seed(0)
    model = pytorch_i3d.InceptionI3d(400, in_channels=3).eval()
    with torch.no_grad():  # default init gives FVDs near 1e-11 here: scale the logits so that FVD is O(10)
        model.logits.conv3d.weight.mul_(3e6)
        model.logits.conv3d.bias.normal_()
    return model


@pytest.fixture(scope="module")
def clips_folder(tmp_path_factory, reference_i3d):
    """GT: four GRID clips (first 40 frames); generated: the next clip's frames, blurred (so that the
    distributions differ clearly); the reference's weights."""
    root = tmp_path_factory.mktemp("fvd")
    clips = sorted(GRID.glob("*.mpg"))[:4]
    frames = [media.read_frames(clip)[:40] for clip in clips]
    for i, clip in enumerate(clips):
        media.write_video(root / "gt" / f"{clip.stem}.avi", frames[i], 25, codec="ffv1")
        other = blur(frames[(i + 1) % len(clips)], 1.0 + i).astype(np.uint8)
        media.write_video(root / "gen" / f"{clip.stem}.avi", other, 25, codec="ffv1")
    (root / "weights").mkdir()
    torch.save(reference_i3d.state_dict(), root / "weights" / I3D_FILE)
    return root


def reference_features(model, clips: torch.Tensor, resolution: int = 256) -> np.ndarray:
    """cd-fvd's path from uint8 clips (n, T, H, W, 3) to I3D logits."""
    videos = torch.stack([preprocess(c, resolution)["video"] for c in clips])  # (n, C, T, H, W) in [0, 1]
    videos = (videos * 255).permute(0, 2, 3, 4, 1).byte().numpy()  # as compute_fake_stats hands them on
    with torch.no_grad():
        return model(preprocess_i3d(videos)).numpy()


def reference_fvd(gen: np.ndarray, gt: np.ndarray) -> float:
    from cdfvd.fvd import cdfvd as CdFvd

    fake, real = FeatureStats(capture_mean_cov=True), FeatureStats(capture_mean_cov=True)
    fake.append(gen)
    real.append(gt)
    return float(CdFvd.compute_fvd_from_stats(object.__new__(CdFvd), fake, real))


@pytest.mark.parametrize("resolution", [256, 128])
def test_network_and_preprocessing_equal_cd_fvd(reference_i3d, grid_frames, resolution):
    ours = I3D().eval()
    ours.load_state_dict(reference_i3d.state_dict())
    frames = torch.from_numpy(next(iter(grid_frames.values()))[:32])
    clips = frames.reshape(2, 16, *frames.shape[1:])
    expected = reference_features(reference_i3d, clips, resolution)
    assert np.abs(clip_features(ours, clips, resolution) - expected).max() < 1e-4 * np.abs(expected).max()


@pytest.mark.slow
def test_eval_fvd_equals_cd_fvd_and_merges_from_shards(clips_folder, reference_i3d, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(clips_folder / "weights"))
    run = lipsync_bench.evaluate(clips_folder / "gen", clips_folder / "gt", ["fvd"], out=tmp_path / "whole",
                                 method="blur")
    gen, gt = [], []
    for path in sorted((clips_folder / "gt").glob("*.avi")):
        for side, out in (("gen", gen), ("gt", gt)):
            frames = torch.from_numpy(media.read_frames(clips_folder / side / path.name)[:32])
            out.append(reference_features(reference_i3d, frames.reshape(2, 16, *frames.shape[1:])))
    expected = reference_fvd(np.concatenate(gen), np.concatenate(gt))
    value = run.dataset.loc["fvd", "value"]
    print(f"FVD {value!r}, cd-fvd {expected!r}, difference {abs(value - expected):.3g}")
    assert value == pytest.approx(expected, rel=1e-6, abs=1e-3)
    assert expected > 0

    # Two shards, merged: the FVD of all clips again, from the per-video state (never a mean of FVDs).
    runner = CliRunner()
    for i in range(2):
        result = runner.invoke(main, ["eval", "--gen", str(clips_folder / "gen"), "--gt", str(clips_folder / "gt"),
                                      "--out", str(tmp_path / f"shard{i}"), "--name", "blur", "--metrics", "fvd",
                                      "--shard", f"{i}/2", "--quiet"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["merge", str(tmp_path / "shard0"), str(tmp_path / "shard1"),
                                  "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    merged = ResultStore(tmp_path / "merged")
    (merged_run,) = [r for r in merged.runs() if r.method == "blur"]
    assert merged.dataset_results(merged_run)["fvd"]["value"] == pytest.approx(value, rel=1e-9)


@pytest.mark.slow
def test_one_clip_from_a_start_frame_and_short_videos(clips_folder, reference_i3d, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(clips_folder / "weights"))
    run = lipsync_bench.evaluate(clips_folder / "gen", clips_folder / "gt", ["fvd"],
                                 params={"fvd": {"clips": "one", "start": 20}})
    gen, gt = [], []
    for path in sorted((clips_folder / "gt").glob("*.avi")):
        for side, out in (("gen", gen), ("gt", gt)):
            frames = torch.from_numpy(media.read_frames(clips_folder / side / path.name)[20:36])
            out.append(reference_features(reference_i3d, frames[None]))
    expected = reference_fvd(np.concatenate(gen), np.concatenate(gt))
    assert run.dataset.loc["fvd", "value"] == pytest.approx(expected, rel=1e-6, abs=1e-3)
    short = tmp_path / "short"
    shutil.copytree(clips_folder / "gt", short / "gt")
    path = next((short / "gt").glob("*.avi"))
    media.write_video(path, media.read_frames(path)[:10], 25, codec="ffv1")
    run = lipsync_bench.evaluate(short / "gt", short / "gt", ["fvd"])
    assert run.failures.error.str.contains("FVD needs at least 16 frames").any(), run.failures


def test_distance_equals_cd_fvds_on_singular_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 40)), rng.standard_normal((6, 40)) + 0.3  # singular covariances
    s1, s2 = np.cov(a, rowvar=False, ddof=0), np.cov(b, rowvar=False, ddof=0)
    ours = frechet_distance(a.mean(0), s1, b.mean(0), s2)
    assert ours == pytest.approx(reference_fvd(a, b), rel=1e-6, abs=1e-3)


def test_without_weights_fvd_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    reason = lipsync_bench.metrics.get_metric("fvd").available({})
    assert I3D_FILE in reason and "TATS" in reason and "place it in" in reason and "weights fetch" not in reason
