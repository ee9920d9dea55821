"""CSIM with dlib's face-recognition network: the descriptors equal dlib's own on the face chips it
aligns, and the metric is the mean cosine similarity over frames with a face in both videos."""
from __future__ import annotations

import numpy as np
import pytest

import lipsync_bench
from lipsync_bench import media
from lipsync_bench.faces import FaceAnalyzer
from lipsync_bench.metrics.csim_dlib import cosine_similarity, descriptors, load_model, model_file
from tests.helpers import data_file, noise, write_lossless

dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def two_speakers():
    a = media.read_frames(data_file("grid/bbaf2n.mpg"))[:8]
    b = media.read_frames(data_file("grid/lbax4n.mpg"))[:8]
    return a, b


def analysis(frames):
    analyzer = FaceAnalyzer("dlib")
    analyzer.update(frames)
    return analyzer.result()


def test_descriptors_equal_dlibs_on_its_own_face_chips(two_speakers):
    data = analysis(two_speakers[0])  # a track needs more than 5 detections
    frames = two_speakers[0][:3]
    model = load_model(model_file())
    ours = descriptors(model, frames, data.boxes[:3], data.landmarks[:3])
    for i, frame in enumerate(frames):
        x1, y1, x2, y2 = (int(round(v)) for v in data.boxes[i])
        shape = dlib.full_object_detection(dlib.rectangle(x1, y1, x2, y2),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in data.landmarks[i]])
        chip = dlib.get_face_chip(frame, shape, size=150, padding=0.25)
        ref = np.asarray(model.compute_face_descriptor(chip))
        assert np.abs(ours[i] - ref).max() < 1e-6


@pytest.mark.slow
def test_csim_in_eval_is_the_mean_cosine_and_tells_speakers_apart(two_speakers, tmp_path):
    a, b = two_speakers
    write_lossless(tmp_path / "gt" / "clip", a)
    write_lossless(tmp_path / "same" / "clip", noise(a, 4))
    write_lossless(tmp_path / "other" / "clip", b)
    same = lipsync_bench.evaluate(tmp_path / "same", tmp_path / "gt", ["csim_dlib"])
    other = lipsync_bench.evaluate(tmp_path / "other", tmp_path / "gt", ["csim_dlib"])
    assert same.failures.empty and other.failures.empty
    gen, gt = media.read_frames(tmp_path / "same" / "clip.avi"), media.read_frames(tmp_path / "gt" / "clip.avi")
    dg, dt = analysis(gen), analysis(gt)
    model = load_model(model_file())
    expected = cosine_similarity(descriptors(model, gen, dg.boxes, dg.landmarks),
                                 descriptors(model, gt, dt.boxes, dt.landmarks)).mean()
    assert same.summary.loc["csim_dlib", "mean"] == pytest.approx(expected, abs=1e-9)
    assert same.summary.loc["csim_dlib", "mean"] > other.summary.loc["csim_dlib", "mean"] + 0.02
    weights = same.protocol["metric_params"]["csim_dlib"]["weights"]
    assert weights["file"] == "dlib_face_recognition_resnet_model_v1.dat" and len(weights["sha256"]) == 64
