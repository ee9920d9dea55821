"""CSIM with ArcFace against insightface (2.1): the aligned crop pixel for pixel against
``face_align.norm_crop``, and the whole path (alignment, input scaling, network) against insightface's
own recognition path (``ArcFaceONNX.get``) running the same seeded random network exported to ONNX.

arcface_torch (the network's source) is not on PyPI: the architecture is checked by its state-dict
layout and its parameter count (65.2M, the figure arcface_torch publishes for IResNet-100). The
official weights cannot be fetched here."""
from __future__ import annotations

import types
import warnings

import cv2
import numpy as np
import pytest
import torch

import lipsync_bench
from lipsync_bench import media, weights
from lipsync_bench.errors import MetricError
from lipsync_bench.faces import FaceAnalyzer
from lipsync_bench.metrics.csim_arcface import IResNet, align, embeddings, five_points, load_arcface
from lipsync_bench.metrics.face_identity import cosine_similarity
from tests.helpers import data_file, import_without_init, noise, write_lossless

pytest.importorskip("dlib")


def _insightface(module: str):
    """An insightface module, loaded without the package's ``__init__`` (which imports every model)."""
    return import_without_init(module, ("insightface", "insightface.utils", "insightface.model_zoo"),
                               "insightface==2.1")


@pytest.fixture(scope="module")
def faces():
    frames = media.read_frames(data_file("grid/bbaf2n.mpg"))[:8]
    analyzer = FaceAnalyzer("dlib")
    analyzer.update(frames)
    return frames, analyzer.result()


def test_aligned_crops_equal_insightface_norm_crop(faces):
    face_align = _insightface("insightface.utils.face_align")
    frames, data = faces
    for frame, landmarks in zip(frames[:4], data.landmarks[:4], strict=True):
        points = five_points(landmarks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # it calls scikit-image's deprecated estimate()
            expected = face_align.norm_crop(frame, points, image_size=112)
        assert np.array_equal(align(frame, points), expected)


def test_five_points_are_the_eye_centres_nose_tip_and_mouth_corners():
    landmarks = np.arange(136, dtype=np.float64).reshape(68, 2)
    points = five_points(landmarks)
    assert np.allclose(points[0], landmarks[36:42].mean(0)) and np.allclose(points[1], landmarks[42:48].mean(0))
    assert np.allclose(points[2:], landmarks[[30, 48, 54]])
    with pytest.raises(MetricError, match="degenerate"):
        align(np.zeros((100, 100, 3), np.uint8), np.zeros((5, 2)))


def test_the_architecture_is_iresnet100_in_arcface_torchs_layout():
    model = IResNet()
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(65.2e6, rel=1e-3)
    assert state["fc.weight"].shape == (512, 512 * 7 * 7) and state["features.running_var"].shape == (512,)
    assert "layer3.29.bn3.running_mean" in state and "layer3.30.bn1.weight" not in state
    assert state["layer1.0.downsample.0.weight"].shape == (64, 64, 1, 1) and "layer1.1.downsample.0.weight" not in state
    assert state["layer4.0.prelu.weight"].shape == (512,)


def test_embeddings_equal_insightfaces_recognition_path(faces, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    arcface_onnx = _insightface("insightface.model_zoo.arcface_onnx")
    torch.manual_seed(0)
    model = IResNet(layers=(1, 1, 1, 1)).eval()  # a small IResNet: the same path, a quick export
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "arcface.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 112, 112), str(path), dynamo=False, input_names=["input"],
                      output_names=["embedding"], dynamic_axes={"input": {0: "n"}})
    reference = arcface_onnx.ArcFaceONNX(model_file=str(path))
    frames, data = faces
    ours = embeddings(model, frames[:4], data.landmarks[:4])
    for i in range(4):
        face = types.SimpleNamespace(kps=five_points(data.landmarks[i]))
        theirs = reference.get(cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR), face)  # insightface reads BGR
        assert np.abs(ours[i] - theirs).max() < 1e-4 * np.abs(theirs).max()
    whole = embeddings(model, frames[:2], None, crop="frame")
    resized = np.stack([cv2.resize(f, (112, 112)) for f in frames[:2]])
    expected = reference.forward(resized.transpose(0, 3, 1, 2).astype(np.float32))  # RGB, scaled inside
    assert np.abs(whole - expected).max() < 1e-4 * np.abs(expected).max()


@pytest.mark.slow
def test_csim_arcface_in_eval(faces, tmp_path, monkeypatch):
    torch.manual_seed(0)
    (tmp_path / "w").mkdir()
    torch.save(IResNet().state_dict(), tmp_path / "w" / weights.KNOWN["arcface-r100"].filename)
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path / "w"))
    frames, data = faces
    write_lossless(tmp_path / "gt" / "a", frames)
    write_lossless(tmp_path / "same" / "a", frames)
    write_lossless(tmp_path / "noisy" / "a", noise(frames, 25.0))
    same = lipsync_bench.evaluate(tmp_path / "same", tmp_path / "gt", ["csim_arcface"])
    noisy = lipsync_bench.evaluate(tmp_path / "noisy", tmp_path / "gt", ["csim_arcface"])
    assert same.summary.loc["csim_arcface", "mean"] == pytest.approx(1.0, abs=1e-6)
    model = load_arcface(tmp_path / "w" / weights.KNOWN["arcface-r100"].filename)
    gen = media.read_frames(tmp_path / "noisy" / "a.avi")
    dg = FaceAnalyzer("dlib")
    dg.update(gen)
    dg = dg.result()
    both = dg.detected & data.detected
    expected = cosine_similarity(embeddings(model, gen[both], dg.landmarks[both]),
                                 embeddings(model, frames[both], data.landmarks[both])).mean()
    assert noisy.summary.loc["csim_arcface", "mean"] == pytest.approx(expected, abs=1e-6)
    assert noisy.summary.loc["csim_arcface", "mean"] < 1.0
    # At most 3 frames a video, spread evenly: frames 0, 4 and 7 of 8, in a column of its own.
    few = lipsync_bench.evaluate(tmp_path / "noisy", tmp_path / "gt", ["csim_arcface"],
                                 params={"csim_arcface": {"frames": 3}})
    picked = np.array([0, 4, 7])
    picked = picked[both[picked]]
    expected = cosine_similarity(embeddings(model, gen[picked], dg.landmarks[picked]),
                                 embeddings(model, frames[picked], data.landmarks[picked])).mean()
    assert few.summary.loc["csim_arcface", "mean"] == pytest.approx(expected, abs=1e-6)
    assert few.summary.loc["csim_arcface", "n"] == 1


def test_without_weights_csim_arcface_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    reason = lipsync_bench.metrics.get_metric("csim_arcface").available({"crop": "aligned"})
    assert "ms1mv3_arcface_r100_fp16.pth" in reason and "arcface_torch" in reason
