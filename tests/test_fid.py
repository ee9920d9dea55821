"""FID against pytorch-fid: the same random weights loaded by both, the same frames (as PNG for
pytorch-fid), features to 5e-4 and FID to 1e-3; the Fréchet distance to 1e-6."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import lipsync_bench
from lipsync_bench import weights
from lipsync_bench.cli import main
from lipsync_bench.metrics.fid import FEATURE_DIM, MomentSum, frechet_distance, inception_features, load_inception
from tests.helpers import blur, make_fid_weights, noise, write_lossless

pytest.importorskip("pytorch_fid")
from pytorch_fid.fid_score import calculate_fid_given_paths, calculate_frechet_distance, get_activations  # noqa: E402
from pytorch_fid.inception import InceptionV3  # noqa: E402

FID_FILE = "pt_inception-2015-12-05-6726825d.pth"


def ref_frechet(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy's sqrtm(disp=) inside pytorch-fid
        return calculate_frechet_distance(*args)


@pytest.fixture(scope="module")
def fid_home(tmp_path_factory, grid_frames):
    """A torch home whose hub cache holds random, calibrated FID weights (where pytorch-fid looks)."""
    home = tmp_path_factory.mktemp("torch_home")
    calibration = np.concatenate([f[::10] for f in grid_frames.values()])
    make_fid_weights(home / "hub" / "checkpoints" / FID_FILE, calibration)
    return home


@pytest.fixture()
def with_weights(fid_home, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(fid_home))
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    return fid_home / "hub" / "checkpoints" / FID_FILE


def save_pngs(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    return folder


# ---------------------------------------------------------------- Fréchet distance

def _close_to_pytorch_fid(args, identical: bool = False) -> None:
    """Within 1e-3 and 1e-6 relative; identical statistics (a distance of 0 up to rounding): within 1e-5."""
    ours, theirs = frechet_distance(*args), ref_frechet(*args)
    if identical:
        assert abs(ours) < 1e-5 and abs(theirs) < 1e-5, (ours, theirs)
    else:
        assert abs(ours - theirs) < 1e-3 and abs(ours - theirs) <= 1e-6 * abs(theirs), (ours, theirs)


def _stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("n,d", [(200, 16), (10, 32), (300, 64)])  # the second: singular covariances
def test_frechet_distance_equals_pytorch_fid(n, d):
    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, d))
    b = rng.normal(0.3, 1.5, size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d)
    _close_to_pytorch_fid((*_stats(a), *_stats(b)))
    _close_to_pytorch_fid((*_stats(a), *_stats(a)), identical=True)


@pytest.mark.slow
def test_frechet_distance_equals_pytorch_fid_at_2048_dimensions(with_weights, grid_frames):
    """The four kinds of statistics the speed claim is made on: real features, random, rank-deficient
    (fewer samples than dimensions) and identical."""
    model = load_inception(weights.require("inception-fid"))
    real = [inception_features(model, torch.from_numpy(f)) for f in grid_frames.values()]
    rng = np.random.default_rng(0)
    d = FEATURE_DIM
    _close_to_pytorch_fid((*_stats(np.concatenate(real[:2])), *_stats(real[2])))  # real, rank-deficient
    _close_to_pytorch_fid((*_stats(rng.normal(size=(2500, d))), *_stats(rng.normal(0.1, 1.2, size=(2600, d)))))
    _close_to_pytorch_fid((*_stats(rng.normal(size=(400, d))), *_stats(rng.normal(0.1, 1.0, size=(900, d)))))
    same = _stats(rng.normal(size=(2200, d)))
    _close_to_pytorch_fid((*same, *same), identical=True)


def test_moments_equal_numpy():
    f = np.random.default_rng(0).normal(size=(300, 24)).astype(np.float32)
    m = MomentSum(24)
    for part in np.array_split(f, 7):
        m.add(part)
    mu, cov = m.mean_cov()
    assert np.allclose(mu, f.astype(np.float64).mean(0), atol=1e-12)
    assert np.allclose(cov, np.cov(f.astype(np.float64), rowvar=False), atol=1e-10)


# ---------------------------------------------------------------- features and FID

def test_features_equal_pytorch_fid_on_png_files(with_weights, grid_frames, tmp_path):
    frames = next(iter(grid_frames.values()))[:20]
    model = load_inception(with_weights)
    ours = inception_features(model, torch.from_numpy(frames))
    ref_model = InceptionV3([3]).eval()  # pytorch-fid finds the same file in the hub cache
    ref = get_activations(sorted(save_pngs(tmp_path / "png", frames).glob("*.png")), ref_model, batch_size=50,
                          dims=2048, device="cpu", num_workers=0)
    # channels-last convolutions round otherwise than pytorch-fid's NCHW ones: 8e-5 here, 2e-4 on noise frames
    assert np.abs(ours - ref).max() <= 5e-4
    assert ours.std(axis=0).mean() > 1e-3  # calibrated weights: informative features


@pytest.mark.slow
def test_eval_fid_equals_pytorch_fid_on_png_folders(with_weights, grid_frames, tmp_path):
    gt_dir, gen_dir = tmp_path / "gt", tmp_path / "gen"
    gen_png, gt_png = tmp_path / "gen_png", tmp_path / "gt_png"
    for k, (stem, frames) in enumerate(list(grid_frames.items())[:2]):
        frames = frames[:30]
        degraded = noise(blur(frames, 1.0), 4, seed=k)
        write_lossless(gt_dir / stem, frames)
        write_lossless(gen_dir / stem, degraded)
        save_pngs(gen_png / stem, degraded)
        save_pngs(gt_png / stem, frames)
    # pytorch-fid reads one folder: put every frame of every video in it
    for png in (gen_png, gt_png):
        for i, f in enumerate(sorted(png.glob("*/*.png"))):
            f.rename(png / f"{f.parent.name}_{i:05d}.png")
    out = tmp_path / "r"
    result = lipsync_bench.run_eval(gen_dir, gt_dir, ["fid", "ssim"], out=out, method="blur", dataset="grid",
                                    progress=False)
    ours = result.dataset_values["fid"]["value"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = calculate_fid_given_paths([str(gen_png), str(gt_png)], 50, "cpu", 2048, num_workers=0)
    assert ours == pytest.approx(ref, abs=1e-3)
    assert result.dataset_values["fid"]["frames"] == 60 and result.dataset_values["fid"]["videos"] == 2
    assert any("covariance is singular" in w for w in result.dataset_values["fid"]["warnings"])
    # the protocol carries the weights' checksum, and random weights are marked unofficial
    w = result.run.metric_params["fid"]["weights"]
    assert w["sha256"] == weights.sha256(with_weights) and w["official"] is False
    assert result.unofficial_weights()["fid"]["file"] == FID_FILE
    table = CliRunner().invoke(main, ["table", "--dataset", "grid", "--results", str(out)])
    assert re.search(rf"{ours:.2f}(\*\*)?†", table.output) and "unofficial weights" in table.output
    summary = json.loads((out / "summary.json").read_text())["runs"][0]["summary"]["fid"]
    assert summary["mean"] == pytest.approx(ours) and summary["n"] == 2


@pytest.mark.slow
def test_gt_features_are_computed_once_per_dataset(with_weights, grid_frames, tmp_path):
    gt_dir = tmp_path / "gt"
    frames = {s: f[:12] for s, f in list(grid_frames.items())[:2]}
    for stem, f in frames.items():
        write_lossless(gt_dir / stem, f)
        write_lossless(tmp_path / "a" / stem, noise(f, 3))
        write_lossless(tmp_path / "b" / stem, noise(f, 9))
    out = tmp_path / "r"
    lipsync_bench.evaluate(tmp_path / "a", gt_dir, ["fid"], out=out, method="a", dataset="d")
    cached = {p: p.stat().st_mtime_ns for p in (out / "state" / "fid").glob("*.npy")}
    assert len(cached) == 4  # 2 generated + 2 GT
    lipsync_bench.evaluate(tmp_path / "b", gt_dir, ["fid"], out=out, method="b", dataset="d")
    after = {p: p.stat().st_mtime_ns for p in (out / "state" / "fid").glob("*.npy")}
    assert len(after) == 6 and all(after[p] == t for p, t in cached.items())  # GT features reused


@pytest.mark.slow
def test_fid_frames_subsamples_evenly(with_weights, grid_frames, tmp_path):
    stem, frames = next(iter(grid_frames.items()))
    write_lossless(tmp_path / "gt" / stem, frames)
    write_lossless(tmp_path / "gen" / stem, noise(frames, 5))
    result = CliRunner().invoke(main, ["eval", "--gen", str(tmp_path / "gen"), "--gt", str(tmp_path / "gt"),
                                       "--metrics", "fid", "--fid-frames", "8", "--out", str(tmp_path / "r"),
                                       "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["metric_params"]["fid"]["frames"] == 8
    assert doc["summary"]["fid"]["mean"] is not None
    cached = list((tmp_path / "r" / "state" / "fid").glob("*.npy"))
    assert sorted(np.load(p).shape[0] for p in cached) == [8, 8]


def test_without_weights_fid_named_is_refused_with_one_clear_line(grid_frames, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    monkeypatch.delenv(weights.ENV_VAR, raising=False)
    stem, frames = next(iter(grid_frames.items()))
    write_lossless(tmp_path / "gt" / stem, frames[:10])
    write_lossless(tmp_path / "gen" / stem, frames[:10])
    result = CliRunner().invoke(main, ["eval", "--gen", str(tmp_path / "gen"), "--gt", str(tmp_path / "gt"),
                                       "--metrics", "ssim,fid", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output  # named and unrunnable: refused before any work
    refused = result.output.strip()
    assert refused.startswith("error: fid cannot run here: needs ") and len(refused.splitlines()) == 1
    assert FID_FILE in refused and "releases/download/fid_weights" in refused
    assert str(tmp_path / "empty_home" / "hub" / "checkpoints") in refused
    assert not (tmp_path / "r").exists()
    listing = CliRunner().invoke(main, ["weights", "list"])
    assert "inception-fid" in listing.output and "missing" in listing.output


def test_weights_commands_and_folder_option(fid_home, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    monkeypatch.setenv(weights.ENV_VAR, str(fid_home / "hub" / "checkpoints"))
    runner = CliRunner()
    path = runner.invoke(main, ["weights", "path", "inception-fid"])
    assert path.exit_code == 0 and path.output.strip().endswith(FID_FILE)
    verify = runner.invoke(main, ["weights", "verify"])
    assert verify.exit_code == 1 and "UNOFFICIAL" in verify.output
    doc = {r["name"]: r for r in json.loads(runner.invoke(main, ["weights", "list", "--json"]).output)}
    fid = doc["inception-fid"]
    assert fid["status"] == "unofficial" and fid["sha256"] == weights.sha256(path.output.strip())
    assert doc["syncnet"]["status"] == "missing"


def test_official_checksum_rule():
    info = weights.KNOWN["inception-fid"]
    assert info.is_official("6726825d" + "0" * 56)
    assert not info.is_official("0" * 64)


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / FID_FILE
    torch.save({"x": Payload()}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported global"):
        load_inception(path)
