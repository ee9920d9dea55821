"""CPBD against the ``cpbd`` package (1.0.7) on the same grey frames of real clips. Its module imports
``scipy.ndimage.imread``, which modern SciPy lacks: the test gives it a stand-in before the import."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from scipy.ndimage import gaussian_filter

import lipsync_bench
from lipsync_bench import media
from lipsync_bench.metrics.cpbd_sharpness import cpbd_image, grey
from tests.helpers import blur, write_lossless

if not hasattr(scipy.ndimage, "imread"):
    scipy.ndimage.imread = None  # never called: the tests pass arrays
cpbd = pytest.importorskip("cpbd", reason="needs cpbd==1.0.7 (the README's test command installs it)")


def test_grey_is_opencvs(grid_frames):
    import cv2

    frames = next(iter(grid_frames.values()))[:2]
    assert (grey(frames)[1] == cv2.cvtColor(frames[1], cv2.COLOR_RGB2GRAY)).all()


@pytest.mark.parametrize("sigma", [0, 1.0, 3.0])
def test_cpbd_equals_the_reference_on_real_grey_frames(grid_frames, sigma):
    for frames in grid_frames.values():
        for image in grey(frames[::25]):
            image = gaussian_filter(image, sigma).astype(np.uint8) if sigma else image
            assert abs(cpbd_image(image) - cpbd.compute(image)) < 1e-6


def test_cpbd_on_synthetic_edges_and_flat_images():
    rng = np.random.default_rng(0)
    for _ in range(5):
        image = np.kron(rng.integers(0, 256, (6, 6)), np.ones((24, 24))).astype(np.uint8)
        for sigma in (0, 0.7, 2.0):
            im = gaussian_filter(image, sigma).astype(np.uint8) if sigma else image
            assert abs(cpbd_image(im) - cpbd.compute(im)) < 1e-6
    flat = np.full((70, 70), 128, np.uint8)
    assert cpbd_image(flat) == cpbd.compute(flat) == 0.0


def test_cpbd_in_eval_needs_no_gt_frames_and_falls_with_blur(grid_frames, tmp_path):
    stem, frames = next(iter(grid_frames.items()))
    write_lossless(tmp_path / "gt" / stem, frames[:6])
    write_lossless(tmp_path / "sharp" / stem, frames[:6])
    write_lossless(tmp_path / "blurred" / stem, blur(frames[:6], 2.0).astype(np.uint8))
    sharp = lipsync_bench.evaluate(tmp_path / "sharp", tmp_path / "gt", ["cpbd"]).summary.loc["cpbd", "mean"]
    blurred = lipsync_bench.evaluate(tmp_path / "blurred", tmp_path / "gt", ["cpbd"]).summary.loc["cpbd", "mean"]
    expected = np.mean([cpbd.compute(g) for g in grey(media.read_frames(tmp_path / "sharp" / f"{stem}.avi"))])
    assert sharp == pytest.approx(expected, abs=1e-9) and blurred < sharp - 0.1
