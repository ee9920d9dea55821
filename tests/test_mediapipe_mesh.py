"""The mediapipe landmarker (``faces.mediapipe_mesh``) against mediapipe 0.10.21's own FaceMesh, run in
a reference venv (tests/reference/mediapipe_face_mesh.py), on the GRID clips; its missing-file error;
and the 68-point backend through ``eval --metrics lmd``.

The reference venv's python: $LIPSYNC_BENCH_MEDIAPIPE_PYTHON, default ``<repo>/.venv-mediapipe/bin/python``
(made by tests/reference/make_mediapipe_venv.sh). The model files come from that venv's mediapipe
package, copied into a temporary weights folder (conftest's ``mediapipe_weights``).
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

import lipsync_bench
from lipsync_bench import weights
from lipsync_bench.errors import UnavailableError
from lipsync_bench.faces import mediapipe_mesh
from lipsync_bench.faces.mediapipe_mesh import DETECTOR, MESH, MESH_ATTENTION, FaceMeshTracker
from lipsync_bench.faces.mediapipe_ops import CustomOpModel
from tests.helpers import MEDIAPIPE_PYTHON, write_lossless

REFERENCE = Path(__file__).parent / "reference" / "mediapipe_face_mesh.py"
MODELS = (DETECTOR, MESH, MESH_ATTENTION)
#: Pixels between our landmarks and mediapipe's on a 360x288 frame, by refine_landmarks: (mean, max),
#: also the bound on z's difference (in x's pixels). Measured on the 8 GRID clips in video mode: 468 points
#: mean 0.010-0.022, max 0.05-0.17 (z 0.07-0.18); 478 points mean 0.014-0.032, max 0.06-0.39 (z 0.07-0.30).
#: XNNPACK builds and OpenCV's bilinear warp differ in the last bits, and tracking carries a frame's
#: difference into the next frame's crop; a custom op off by half a pixel would give mean 0.37, max 2.0.
TOLERANCE_PX = {False: (0.1, 0.5), True: (0.1, 0.75)}


def reference_landmarks(frames: np.ndarray, tmp_path: Path, refine: bool) -> np.ndarray:
    """mediapipe's FaceMesh (video mode) on the frames, in the reference venv: (N, 468|478, 3), NaN without a face."""
    np.save(tmp_path / "frames.npy", frames)
    subprocess.run([str(MEDIAPIPE_PYTHON), str(REFERENCE), str(tmp_path / "frames.npy"), str(tmp_path / "ref.npy")]
                   + (["--refine"] if refine else []), check=True, capture_output=True)
    return np.load(tmp_path / "ref.npy")


@pytest.mark.parametrize("refine", [False, True])
def test_landmarks_equal_mediapipe_face_mesh(grid_frames, mediapipe_weights, tmp_path, refine):
    """Video mode on 3 GRID clips: the same frames with a face, every point within TOLERANCE_PX."""
    tracker = FaceMeshTracker(refine_landmarks=refine, weights_dir=mediapipe_weights)
    mean_px, max_px = TOLERANCE_PX[refine]
    assert len(grid_frames) >= 3
    for stem, frames in grid_frames.items():
        tracker.reset()
        ref = reference_landmarks(frames, tmp_path, refine)
        ours = np.stack([p if (p := tracker.process(f)) is not None else np.full(ref.shape[1:], np.nan)
                         for f in frames])
        assert ours.shape == ref.shape
        assert np.array_equal(np.isnan(ours[:, 0, 0]), np.isnan(ref[:, 0, 0])), f"{stem}: frames with a face differ"
        assert np.isfinite(ref[:, 0, 0]).mean() > 0.9
        h, w = frames.shape[1:3]
        px = np.hypot((ours[..., 0] - ref[..., 0]) * w, (ours[..., 1] - ref[..., 1]) * h)
        assert ours.shape[1] == (478 if refine else 468)
        assert np.nanmean(px) < mean_px and np.nanmax(px) < max_px, (stem, np.nanmean(px), np.nanmax(px))
        assert np.nanmax(np.abs(ours[..., 2] - ref[..., 2]) * w) < max_px  # z is in units of x


def test_refinement_maps_are_the_attention_models_own(mediapipe_weights):
    """The lips and eye index maps (from tensors_to_face_landmarks_with_attention.pbtxt) are the subsets
    the model's Landmarks2TransformMatrix ops crop around; params() names the attention model."""
    model = CustomOpModel(mediapipe_weights / weights.KNOWN[MESH_ATTENTION].filename)
    subsets = [tuple(options["subset_idxs"]) for name, options in model.custom_ops
               if name == "Landmarks2TransformMatrix"]
    assert [name for name, _ in model.custom_ops] == ["Landmarks2TransformMatrix"] * 3 + [
        "TransformTensorBilinear"] * 3 + ["TransformLandmarks"] * 5
    assert subsets == [mediapipe_mesh._LIPS, mediapipe_mesh._LEFT_EYE, mediapipe_mesh._RIGHT_EYE]
    tracker = FaceMeshTracker(refine_landmarks=True, weights_dir=mediapipe_weights)
    assert {m["file"] for m in tracker.params()["models"]} == {"face_detection_short_range.tflite",
                                                               "face_landmark_with_attention.tflite"}
    assert tracker.params()["refine_landmarks"] is True


def test_tracking_state_is_forgotten_on_reset(grid_frames, mediapipe_weights):
    frames = next(iter(grid_frames.values()))
    tracker = FaceMeshTracker(weights_dir=mediapipe_weights)
    first = tracker.process(frames[0])
    tracker.process(frames[1])
    tracker.reset()
    assert np.array_equal(tracker.process(frames[0]), first)
    assert {m["file"] for m in tracker.params()["models"]} == {"face_detection_short_range.tflite",
                                                               "face_landmark.tflite"}
    assert all(m["official"] for m in tracker.params()["models"])


def test_a_missing_model_file_says_what_and_how(tmp_path, monkeypatch):
    for name in MODELS:  # no installed mediapipe package either
        monkeypatch.setitem(weights.KNOWN, name, dataclasses.replace(weights.KNOWN[name], package_file=None))
    with pytest.raises(UnavailableError) as err:
        FaceMeshTracker(weights_dir=tmp_path)
    message = str(err.value)
    assert "face_detection_short_range.tflite" in message and str(tmp_path) in message
    assert "pip download --no-deps mediapipe==0.10.21" in message and "weights fetch" in message


def test_the_68_point_backend_runs_lmd_through_eval(grid_clips, mediapipe_weights, tmp_path, monkeypatch):
    """GT: a GRID clip; generated: its frames shifted by 2 px (LMD small but not zero)."""
    from lipsync_bench import media
    from lipsync_bench.cli import main
    from lipsync_bench.faces.backends import get_backend

    monkeypatch.setenv(weights.ENV_VAR, str(mediapipe_weights))
    clip = grid_clips[0]
    frames = media.read_frames(clip)
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / clip.name).symlink_to(clip)
    write_lossless(tmp_path / "gen" / (clip.stem + ".avi"), np.roll(frames, 2, axis=2))

    backend = get_backend("mediapipe")
    boxes = backend.detect(frames[0])
    points = backend.landmarks(frames[0], boxes[0])
    assert boxes.shape == (1, 5) and points.shape == (68, 2) and np.isfinite(points).all()
    x1, y1, x2, y2 = boxes[0, :4]
    mouth = points[48:68]
    assert (mouth[:, 0] > x1).all() and (mouth[:, 0] < x2).all() and (mouth[:, 1] > (y1 + y2) / 2).all()

    run = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lmd"], landmarker="mediapipe",
                                 out=tmp_path / "api")
    value = float(run.summary.loc["lmd", "mean"])
    assert run.videos.shape[0] == 1
    assert 0 < value < 5, value

    args = ["eval", "--gen", str(tmp_path / "gen"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "cli"),
            "--metrics", "lmd", "--landmarker", "mediapipe", "--json"]
    command = main.get_command(click.Context(main), "eval")
    choices = next(p for p in command.params if p.name == "landmarker").type.choices
    if "mediapipe" not in choices:
        pytest.skip("the eval command's --landmarker choices lack mediapipe (commands/evaluate_commands.py "
                    "should take faces.settings.BACKENDS)")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.dumps(value)[:6] in result.output


def test_find_model_prefers_the_weights_folder(mediapipe_weights):
    assert mediapipe_mesh.find_model(MESH, mediapipe_weights) == mediapipe_weights / "face_landmark.tflite"


def test_weights_list_shows_the_mesh_detector_and_vad_with_checksums_and_licences(mediapipe_weights, monkeypatch):
    from lipsync_bench.cli import main

    monkeypatch.setenv(weights.ENV_VAR, str(mediapipe_weights))
    out = CliRunner().invoke(main, ["weights", "list"]).output
    present = out[out.index("present:"):out.index("missing:")]
    for name in (*MODELS, "silero-vad"):
        line = next(line for line in present.splitlines() if line.strip().startswith(name + ":"))
        digest = weights.sha256(weights.find(name))
        assert digest in line and weights.KNOWN[name].is_official(digest), line
        assert ("Apache-2.0" if name != "silero-vad" else "MIT") in line, line
