"""THEval's face-mesh and VAD metrics (metrics/theval_metrics.py) and Silero VAD (speech_segments.py).

(a) Silero VAD through the project's decode equals ``silero_vad.get_speech_timestamps`` on the same samples.
(b) Each metric against THEval's procedure run on mediapipe 0.10.21's own FaceMesh in the reference venv
    (tests/reference/theval_mediapipe.py): exactly (1e-9) when our metric math is given mediapipe's landmarks,
    and within ``REL_TOL`` through our offline mesh (faces/mediapipe_mesh.py, about a pixel off mediapipe's).
(c) A video without an audio track or without a face is an error naming the file.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import silero_vad
import torch

from lipsync_bench import media, speech_segments, weights
from lipsync_bench.errors import MetricError
from lipsync_bench.metrics import theval_metrics as tm
from lipsync_bench.metrics.registry import get_metric
from lipsync_bench.metrics.streaming import FrameBatch, MetricContext
from tests.helpers import MEDIAPIPE_PYTHON, ROOT

DRIVER = ROOT / "tests" / "reference" / "theval_mediapipe.py"
#: Our offline mesh against mediapipe's: landmarks about a pixel apart, so the values agree to this relative
#: tolerance (measured on the GRID clips; see docs/theval.md).
REL_TOL = {"theval_lip_sync": 0.02, "theval_silent_lip_stability": 0.05, "theval_lip_dynamics": 0.01,
           "theval_eyebrow_dynamics": 0.03}
#: Silent lip stability is a median of sub-pixel differences: under THEval's seek-only reading the tracker
#: re-detects after every gap (the detector's ROI is the loosest step, ~0.5 px), and brbk7n's MAD moves by
#: 6e-4 of the eye distance (15% of its 0.004) while every other clip stays within 1.5%.
ABS_TOL = {"theval_silent_lip_stability": 1e-3}
#: Our metric math on mediapipe's own landmarks against the reference's step-by-step procedure.
EXACT = 1e-9
METRICS = ("theval_lip_sync", "theval_silent_lip_stability", "theval_lip_dynamics", "theval_eyebrow_dynamics")
#: (name, lipsync-bench parameters overriding the defaults) of the settings compared
SETTINGS = {"default": {},
            "theval": {"theval_lip_sync": {"color": "bgr", "refine_landmarks": False, "vad_seconds": "0.1",
                                           "rms_rate": 44100},
                                "theval_silent_lip_stability": {"resize": 256, "frames": "silent",
                                                                "vad_seconds": "0.1"},
                                "theval_lip_dynamics": {"resize": 256}, "theval_eyebrow_dynamics": {}}}


def _reference_python() -> Path:
    if not MEDIAPIPE_PYTHON.is_file():
        pytest.skip(f"the mediapipe reference venv is absent ({MEDIAPIPE_PYTHON}; make it with "
                    "tests/reference/make_mediapipe_venv.sh or set LIPSYNC_BENCH_MEDIAPIPE_PYTHON)")
    return MEDIAPIPE_PYTHON


# ---------------------------------------------------------------- (a) Silero VAD


def test_speech_timestamps_equal_silero_on_the_grid_clips(grid_clips):
    model = silero_vad.load_silero_vad()
    for clip in grid_clips:
        samples = media.read_audio(clip)
        ours = speech_segments.speech_timestamps(samples)
        theirs = silero_vad.get_speech_timestamps(torch.from_numpy(samples), model)
        assert ours == theirs and ours, clip.name
        seconds = speech_segments.speech_timestamps(samples, return_seconds=True)
        assert seconds == silero_vad.get_speech_timestamps(torch.from_numpy(samples), model, return_seconds=True)
        # THEval reads return_seconds=True: silero's round(sample / 16000, 1)
        assert speech_segments.speech_seconds(samples, rounding="0.1") == [
            (round(s["start"] / 16000, 1), round(s["end"] / 16000, 1)) for s in ours]
        assert speech_segments.speech_seconds(samples) == [(s["start"] / 16000, s["end"] / 16000) for s in ours]


#: silero-vad 5.1.2's segments (THEval's pin) on the first 3 GRID clips, seconds rounded to 0.1: the same from
#: THEval's own read_audio input (moviepy's 44.1 kHz wav, torchaudio-resampled) and from our 16 kHz decode.
VAD_5_1_2_GRID = {"bbaf2n": [(1.0, 2.1)], "brbk7n": [(0.5, 2.1)], "id2_vcd_swwp2s": [(0.5, 2.2)]}


def test_silero_vad_5_1_2_gives_thevals_segments(grid_clips, mediapipe_weights, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(mediapipe_weights))
    path = weights.find("silero-vad-5.1.2")
    if path is None:
        how = weights.KNOWN["silero-vad-5.1.2"].by_hand
        pytest.skip(f"silero-vad 5.1.2's model is not beside the reference venv ({how})")
    assert weights.describe("silero-vad-5.1.2", path)["official"]
    for clip in grid_clips[:3]:
        samples = media.read_audio(clip)
        assert speech_segments.speech_seconds(samples, rounding="0.1", model="silero-vad-5.1.2") == \
            VAD_5_1_2_GRID[clip.stem], clip.name


def test_the_vad_model_choice_loads_the_weights_file(grid_clips, monkeypatch):
    """A stand-in for 5.1.2's file (CI has none): the installed wheel's model under the 5.1.2 entry's name, loaded
    from the file weights.find gives, yields the default model's segments."""
    stand_in = weights.find("silero-vad")
    monkeypatch.setattr(weights, "find", lambda name, weights_dir=None: stand_in)
    monkeypatch.setattr(speech_segments, "_MODELS", {})
    samples = media.read_audio(grid_clips[0])
    assert speech_segments.speech_seconds(samples, rounding="0.1", model="silero-vad-5.1.2") == \
        speech_segments.speech_seconds(samples, rounding="0.1")


def test_a_missing_vad_5_1_2_says_how_to_get_it(monkeypatch):
    from lipsync_bench.errors import UnavailableError

    monkeypatch.setattr(weights, "find", lambda name, weights_dir=None: None)
    with pytest.raises(UnavailableError, match=r"pip download --no-deps silero-vad==5\.1\.2"):
        speech_segments.vad_model_path("silero-vad-5.1.2")


def test_opencv_seeks_return_thevals_frames(grid_clips):
    """silent_lip_stability.py's cap.set(CAP_PROP_POS_FRAMES, i): in the GRID clips (MPEG-1, 12-frame GOPs) a seek
    to frame 0 returns frame 12 and seeks to 1-13 return frame 13; later seeks are exact (measured with THEval's
    OpenCV 4.11 in its own run, where every frame it fed was compared with a sequential decode)."""
    clip = grid_clips[0]
    frames = media.read_frames(clip, fps=None)
    asked = [0, 1, 7, 12, 13, 14, 40, len(frames) - 1]
    got = dict(tm.read_seeked_frames(clip, asked))
    expected = {0: 12, 1: 13, 7: 13, 12: 13, 13: 13, 14: 14, 40: 40, len(frames) - 1: len(frames) - 1}
    for i, j in expected.items():
        assert np.array_equal(got[i], frames[j]), (i, j)


def test_the_vad_model_is_a_known_packaged_file():

    path = weights.find("silero-vad")
    assert path is not None and path.name == "silero_vad.jit"
    assert weights.describe("silero-vad", path)["official"]


def test_frame_rms_equals_librosa():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    for rate, n in ((16000, 47_713), (44100, 131_000)):
        y = (rng.standard_normal(n) * 0.1).astype(np.float32)
        times = np.arange(75) / 25
        hop = int(rate * 0.05)
        rms = librosa.feature.rms(y=y, frame_length=hop, hop_length=hop)[0]
        expected = np.interp(times, librosa.frames_to_time(range(len(rms)), sr=rate, hop_length=hop), rms)
        np.testing.assert_allclose(tm.frame_rms(y, rate, times), expected, rtol=2e-6)


# ---------------------------------------------------------------- (b) against mediapipe's FaceMesh


def _jobs(tmp_path: Path, clips: list[Path]) -> tuple[list[dict], list[tuple]]:
    """The reference jobs (one per clip x setting x metric) and what each stands for."""
    jobs, keys = [], []
    for clip in clips:
        frames = media.read_frames(clip, fps=None)
        frames_file = tmp_path / f"{clip.stem}.npy"
        np.save(frames_file, frames)
        samples = media.read_audio(clip)
        for setting, overrides in SETTINGS.items():
            for metric in METRICS:
                params = get_metric(metric).resolve_params(overrides.get(metric, {}))
                job = {"metric": metric.removeprefix("theval_"), "frames": str(frames_file), "color": params["color"],
                       "resize": params["resize"], "refine": params["refine_landmarks"], "feed": None,
                       "landmarks": str(tmp_path / f"{clip.stem}-{setting}-{metric}.npy")}
                if metric in tm.SPEECH_METRICS:
                    segments = speech_segments.speech_seconds(samples, rounding=params["vad_seconds"])
                    # the reference finds the speech and silent frames from the segments itself
                    job["segments"], job["fps"], job["total"] = [list(seg) for seg in segments], 25.0, len(frames)
                    if metric == "theval_lip_sync":
                        rate = params["rms_rate"]
                        job["speech_frames"] = np.flatnonzero(tm.speech_frame_mask(segments, 25, len(frames))).tolist()
                        job["volume"] = tm.frame_rms(media.read_audio(clip, rate), rate,
                                                     np.arange(len(frames)) / 25).tolist()
                    else:
                        job["silent_frames"] = tm.silent_frames(segments, 25, len(frames))
                        if params["frames"] == "silent":
                            job["feed"] = job["silent_frames"]
                jobs.append(job)
                keys.append((clip, setting, metric, params, frames))
    return jobs, keys


def _ours_from_landmarks(metric: str, job: dict, landmarks: np.ndarray, size: tuple[int, int]) -> float:
    if metric == "theval_lip_sync":
        speech = np.zeros(len(landmarks), bool)
        speech[job["speech_frames"]] = True
        return tm.lip_sync_value(tm.mouth_openness(landmarks), np.array(job["volume"]), speech)
    if metric == "theval_silent_lip_stability":
        fed = job["feed"] if job["feed"] is not None else list(range(len(landmarks)))
        rows = [fed.index(f) for f in job["silent_frames"]]
        return tm.silent_lip_mad(tm.lip_opening(landmarks[rows], *size))
    if metric == "theval_lip_dynamics":
        return tm.lip_dynamics_value(landmarks, *size)
    return tm.eyebrow_dynamics_value(landmarks, *size)


def _run_ours(clip: Path, frames: np.ndarray, metrics: dict[str, dict]) -> dict[str, float]:
    """The metrics of one video through their accumulators, sharing one context (as the pipeline does)."""
    ctx = MetricContext(torch.device("cpu"), gen=clip, fps=None)
    accs = {m: tm.make_accumulator(m, params, ctx) for m, params in metrics.items()}
    for start in range(0, len(frames), 32):
        batch = FrameBatch(torch.from_numpy(frames[start:start + 32]), None, start)
        for acc in accs.values():
            acc.update(batch)
    return {m: acc.result().value for m, acc in accs.items()}


@pytest.mark.slow
def test_metrics_equal_thevals_procedure_on_mediapipes_landmarks(grid_clips, tmp_path, monkeypatch,
                                                                 mediapipe_weights):
    python = _reference_python()
    clips = grid_clips[:3]
    jobs, keys = _jobs(tmp_path, clips)
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run([str(python), str(DRIVER), str(tmp_path / "jobs.json"), str(tmp_path / "out.json")], check=True,
                   timeout=600)
    reference = [r["value"] for r in json.loads((tmp_path / "out.json").read_text())]
    # our metric math on mediapipe's own landmarks: the same numbers
    for job, (clip, setting, metric, params, frames), value in zip(jobs, keys, reference, strict=True):
        size = (params["resize"], params["resize"]) if params["resize"] else (frames.shape[2], frames.shape[1])
        ours = _ours_from_landmarks(metric, job, np.load(job["landmarks"]).astype(np.float64), size)
        assert value is not None, (clip.name, setting, metric)
        assert abs(ours - value) <= EXACT * max(1.0, abs(value)), (clip.name, setting, metric, ours, value)
    # our metrics through our offline mesh: within the stated tolerance
    monkeypatch.setenv("LIPSYNC_BENCH_WEIGHTS", str(mediapipe_weights))
    if get_metric("theval_lip_dynamics").available(get_metric("theval_lip_dynamics").defaults):
        pytest.skip("the offline mesh (faces/mediapipe_mesh.py) does not run here")
    measured = []
    for clip in clips:
        for setting in SETTINGS:
            mine = [(m, p, f, v) for (c, s, m, p, f), v in zip(keys, reference, strict=True)
                    if c == clip and s == setting]
            ours = _run_ours(clip, mine[0][2], {m: p for m, p, _, _ in mine})
            for metric, _, _, value in mine:
                measured.append((clip.name, setting, metric, ours[metric], value))
                assert ours[metric] == pytest.approx(value, rel=REL_TOL[metric], abs=ABS_TOL.get(metric, 0)), \
                    measured[-1]
    print("\n".join(f"{c} {s} {m}: ours {o:.6f} mediapipe {r:.6f}" for c, s, m, o, r in measured))


def test_the_default_metrics_share_one_mesh_pass(grid_clips):
    """With lipsync-bench's defaults the four metrics run the mesh once a video; THEval's settings, four times."""
    calls = []

    class Fake:
        def process(self, rgb):
            calls.append(rgb.shape)
            points = np.random.default_rng(len(calls)).random((468, 3))
            return points

        def reset(self):
            pass

    clip = grid_clips[0]
    frames = media.read_frames(clip, fps=None)
    ctx = MetricContext(torch.device("cpu"), gen=clip, fps=None)
    accs = [tm.TheValAccumulator(m, get_metric(m).defaults, ctx, tracker_factory=lambda s: Fake()) for m in METRICS]
    for acc in accs:
        acc.update(FrameBatch(torch.from_numpy(frames), None, 0))
    assert len(calls) == len(frames)
    assert all(np.isfinite(acc.result().value) for acc in accs)


# ---------------------------------------------------------------- (c) bad inputs


class _NoFace:
    def process(self, rgb):
        return None

    def reset(self):
        pass


def test_no_audio_track_is_an_error_naming_the_file(tmp_path):
    video = media.write_video(tmp_path / "mute.avi", np.zeros((10, 64, 64, 3), np.uint8), 25, codec="ffv1")
    ctx = MetricContext(torch.device("cpu"), gen=video, fps=None)
    for metric in tm.SPEECH_METRICS:
        with pytest.raises(MetricError, match=r"mute\.avi: no audio stream; THEval's lip sync"):
            tm.TheValAccumulator(metric, get_metric(metric).defaults, ctx, tracker_factory=lambda s: _NoFace())


def test_no_face_is_an_error_naming_the_file(tmp_path, grid_clips):
    audio = media.read_audio(grid_clips[0])
    video = media.write_video(tmp_path / "blank.avi", np.full((75, 64, 64, 3), 90, np.uint8), 25, audio,
                              codec="ffv1")
    ctx = MetricContext(torch.device("cpu"), gen=video, fps=None)
    for metric in METRICS:
        acc = tm.TheValAccumulator(metric, get_metric(metric).defaults, ctx, tracker_factory=lambda s: _NoFace())
        acc.update(FrameBatch(torch.from_numpy(np.full((75, 64, 64, 3), 90, np.uint8)), None, 0))
        with pytest.raises(MetricError, match=r"blank\.avi: the face mesh found no face"):
            acc.result()


def test_declarations():
    for metric in METRICS:
        m = get_metric(metric)
        assert m.group == "theval" and not (m.needs & {"gt_frames", "landmarks", "face_frames"})
    assert get_metric("theval_lip_sync").needs == {"audio"}
    assert get_metric("theval_lip_dynamics").higher_is_better is None
    head = get_metric("theval_head_motion_dynamics")
    assert "RetinaFace" in head.available({})
    assert get_metric("theval_lip_sync").column_key({**get_metric("theval_lip_sync").defaults, "color": "bgr"}) == \
        "theval_lip_sync@color=bgr"


def test_a_videos_value_does_not_depend_on_the_video_beside_it(grid_clips, tmp_path, mediapipe_weights, monkeypatch):
    """The pipeline feeds a generated video and its GT chunk by chunk side by side: the GT's own run must
    equal the GT measured alone (the two never share a tracking state)."""
    from lipsync_bench.evaluation import run_eval
    from lipsync_bench.store import ResultStore, is_ground_truth

    monkeypatch.setenv("LIPSYNC_BENCH_WEIGHTS", str(mediapipe_weights))
    metrics = ["theval_lip_dynamics", "theval_eyebrow_dynamics"]
    for side, clip in (("gen", grid_clips[1]), ("gt", grid_clips[0])):
        (tmp_path / side).mkdir()
        (tmp_path / side / "clip.mpg").symlink_to(clip)
    run_eval(tmp_path / "gen", tmp_path / "gt", metrics, method="other", dataset="d", out=tmp_path / "paired",
             progress=False)
    run_eval(tmp_path / "gt", None, metrics, method="alone", dataset="d", out=tmp_path / "alone", progress=False)
    values = {}
    for out in ("paired", "alone"):
        store = ResultStore.open_existing(tmp_path / out)
        df = store.results(store.runs("d"))
        store.close()
        for row in df.itertuples():
            values[(out, "gt" if is_ground_truth(row.method) or out == "alone" else "gen", row.metric)] = row.value
    for metric in metrics:
        assert values[("paired", "gt", metric)] == values[("alone", "gt", metric)], metric
        assert values[("paired", "gen", metric)] != values[("paired", "gt", metric)], metric
