"""SSIM, PSNR and IFC against scikit-image and hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lipsync_bench.errors import LipsyncBenchError, MetricError
from lipsync_bench.metrics import FrameBatch, MetricContext, all_metrics, get_metric
from lipsync_bench.metrics.ifc import ifc_pairs
from lipsync_bench.metrics.psnr import psnr_frames
from lipsync_bench.metrics.ssim import ssim_frames
from tests.helpers import blur, jpeg, noise, shift

CPU = MetricContext(torch.device("cpu"))


def sk_ssim(gen, gt):
    """The reference, with the parameters lipsync-bench pins (Wang et al. 2004)."""
    return np.array([structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False)
                     for a, b in zip(gen, gt, strict=True)])


def sk_psnr(gen, gt):
    with np.errstate(divide="ignore"):  # identical frames: inf, as we give
        return np.array([peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(gen, gt, strict=False)])


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


DEGRADATIONS = {
    "jpeg30": lambda f: jpeg(f, 30),
    "blur1": lambda f: blur(f, 1.0),
    "noise8": lambda f: noise(f, 8),
    "shift2": lambda f: shift(f, 2),
}


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_ssim_and_psnr_equal_skimage_per_frame_on_real_clips(grid_frames, name):
    for gt in grid_frames.values():
        gt = gt[:25]
        gen = DEGRADATIONS[name](gt)
        ours = ssim_frames(t(gen), t(gt)).numpy()
        assert np.abs(ours - sk_ssim(gen, gt)).max() < 1e-6
        ours_p = psnr_frames(t(gen), t(gt)).numpy()
        ref_p = sk_psnr(gen, gt)
        finite = np.isfinite(ref_p)
        assert np.array_equal(finite, np.isfinite(ours_p))
        assert np.abs(ours_p[finite] - ref_p[finite]).max() < 1e-6


def test_ssim_on_a_large_real_frame_and_another_speaker(grid_frames):
    a, b = list(grid_frames.values())[:2]
    assert np.abs(ssim_frames(t(a[:10]), t(b[:10])).numpy() - sk_ssim(a[:10], b[:10])).max() < 1e-6


@pytest.mark.parametrize("shape", [(11, 11), (37, 53), (96, 96), (64, 200)])
def test_ssim_any_frame_size(shape):
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (3, *shape, 3), dtype=np.uint8)
    gen = noise(gt, 20, seed=2)
    assert np.abs(ssim_frames(t(gen), t(gt)).numpy() - sk_ssim(gen, gt)).max() < 1e-6


def test_ssim_flat_saturated_frames():
    """Flat regions far from mid-grey are where float32 cancellation would show."""
    h, w = 72, 90
    gen = np.stack([np.full((h, w, 3), 255, np.uint8)] * 3)
    gt = np.stack([np.full((h, w, 3), 250, np.uint8), np.zeros((h, w, 3), np.uint8),
                   np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)])
    assert np.abs(ssim_frames(t(gen), t(gt)).numpy() - sk_ssim(gen, gt)).max() < 1e-6


def test_ssim_float64_path_is_exact(grid_frames):
    gt = next(iter(grid_frames.values()))[:4]
    gen = noise(gt, 5)
    ours = ssim_frames(t(gen), t(gt), dtype="float64").numpy()
    assert np.abs(ours - sk_ssim(gen, gt)).max() < 1e-12


def test_ssim_rejects_frames_smaller_than_the_window():
    x = torch.zeros((1, 10, 40, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match="smaller than the 11-pixel SSIM window"):
        ssim_frames(x, x)


def test_identical_frames(grid_frames):
    gt = next(iter(grid_frames.values()))[:8]
    assert np.allclose(ssim_frames(t(gt), t(gt)).numpy(), 1.0, atol=1e-12)
    assert np.isinf(psnr_frames(t(gt), t(gt)).numpy()).all()
    assert np.isinf(sk_psnr(gt, gt)).all()  # scikit-image agrees: inf, not an error
    assert ifc_pairs(t(gt), t(gt)).abs().max().item() == 0.0


@pytest.mark.parametrize("make", [lambda f, s: noise(f, s), lambda f, s: blur(f, s / 4)])
def test_stronger_degradation_moves_every_metric_the_expected_way(grid_frames, make):
    gt = next(iter(grid_frames.values()))[:20]
    values = []
    for strength in (2, 5, 10):
        gen = make(gt, strength)
        values.append((ssim_frames(t(gen), t(gt)).mean().item(), psnr_frames(t(gen), t(gt)).mean().item(),
                       ifc_pairs(t(gen), t(gt)).mean().item()))
    ssim, psnr, ifc = zip(*values, strict=False)
    assert ssim[0] > ssim[1] > ssim[2]
    assert psnr[0] > psnr[1] > psnr[2]
    assert ifc[0] < ifc[1] < ifc[2]


# ---------------------------------------------------------------- IFC by hand

def _constant_frames(values, shape=(4, 4, 3)):
    return np.stack([np.full(shape, v, np.uint8) for v in values])


def test_ifc_hand_computed():
    gt = _constant_frames([0, 10, 10])
    gen = _constant_frames([0, 0, 10])
    # d_2 = (10 - 0) - (0 - 0) = 10 ; d_3 = (10 - 10) - (10 - 0) = -10 ; 48 values a frame
    pairs = ifc_pairs(t(gen), t(gt)).numpy()
    assert np.allclose(pairs, [10 / 255, 10 / 255], atol=1e-15)
    l2 = ifc_pairs(t(gen), t(gt), norm="l2").numpy()
    assert np.allclose(l2, [math.sqrt(48 * 100) / 255] * 2, atol=1e-15)
    ifc = get_metric("ifc")
    for params, expected in [({}, 10 / 255), ({"reduce": "sum"}, 20 / 255),
                             ({"norm": "l2", "reduce": "sum", "scale": 1.0}, 2 * math.sqrt(4800))]:
        acc = ifc.make_accumulator(ifc.resolve_params(params), CPU)
        acc.update(FrameBatch(t(gen), t(gt), 0))
        assert acc.result().value == pytest.approx(expected, rel=1e-12)


def test_ifc_streams_across_chunk_boundaries(grid_frames):
    gt = next(iter(grid_frames.values()))[:30]
    gen = noise(gt, 6)
    whole = ifc_pairs(t(gen), t(gt)).mean().item()
    ifc = get_metric("ifc")
    acc = ifc.make_accumulator(ifc.resolve_params({}), CPU)
    for start in range(0, 30, 7):  # chunks of 7, 7, 7, 7, 2
        acc.update(FrameBatch(t(gen[start:start + 7]), t(gt[start:start + 7]), start))
    result = acc.result()
    assert result.value == pytest.approx(whole, rel=1e-12)
    assert result.frames == 30


def test_ifc_needs_two_frames():
    ifc = get_metric("ifc")
    acc = ifc.make_accumulator(ifc.resolve_params({}), CPU)
    one = t(_constant_frames([5]))
    acc.update(FrameBatch(one, one, 0))
    with pytest.raises(MetricError, match="at least 2 frames"):
        acc.result()


# ---------------------------------------------------------------- registry

def test_registry_order_and_declarations():
    assert all_metrics()[:4] == ["ssim", "psnr", "fid", "ifc"]  # the paper's column order
    ssim = get_metric("ssim")
    assert ssim.higher_is_better and ssim.scope == "video" and "gt_frames" in ssim.needs
    assert not get_metric("ifc").higher_is_better


def test_parameters_are_typed_and_checked():
    assert get_metric("ssim").resolve_params({"sigma": "2"})["sigma"] == 2.0
    with pytest.raises(LipsyncBenchError, match="has no parameter 'bogus'"):
        get_metric("ssim").resolve_params({"bogus": 1})
    with pytest.raises(LipsyncBenchError, match="expected a float"):
        get_metric("psnr").resolve_params({"data_range": "abc"})
    with pytest.raises(LipsyncBenchError, match="unknown metric 'nope'"):
        get_metric("nope")


def test_psnr_accumulator_warns_about_identical_frames():
    psnr = get_metric("psnr")
    acc = psnr.make_accumulator(psnr.resolve_params({}), CPU)
    x = t(_constant_frames([3, 4]))
    acc.update(FrameBatch(x, x, 0))
    result = acc.result()
    assert math.isinf(result.value) and "2 of 2 frames are identical" in result.warnings[0]
