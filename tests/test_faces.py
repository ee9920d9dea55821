"""Face pipeline and LMD on the real clips: detection rate, plausible mouths, LMD behaviour, cache,
and the syncnet_python tracking and crop procedure on hand-made cases."""
from __future__ import annotations

import numpy as np
import pytest

import lipsync_bench
from lipsync_bench import media
from lipsync_bench.faces import FaceAnalyzer, TrackParams, link_tracks, mouth_box, smoothed_centres, syncnet_crop
from lipsync_bench.faces.backends import DlibBackend
from lipsync_bench.metrics.lmd import lmd_frames
from tests.helpers import EXTRA, GRID, data_file, write_lossless

pytest.importorskip("dlib")


def analyze(frames: np.ndarray):
    a = FaceAnalyzer()
    a.update(frames)
    return a.result()


@pytest.fixture(scope="module")
def swwp2s():
    frames = media.read_frames(data_file("grid/id2_vcd_swwp2s.mpg"))
    return frames, analyze(frames)


@pytest.fixture()
def detector_calls(monkeypatch):
    """Counts the face detector's calls (frames analysed), to show when the cache was used."""
    calls = {"n": 0}
    detect = DlibBackend.detect

    def counting(self, frame):
        calls["n"] += 1
        return detect(self, frame)

    monkeypatch.setattr(DlibBackend, "detect", counting)
    return calls


# ---------------------------------------------------------------- detection and landmarks

def test_a_strided_frame_gives_what_its_copy_gives(swwp2s):
    """Frames that are views (BGR flipped to RGB by [..., ::-1], as OpenCV readers do) are read by their
    values: dlib alone read such a view as other memory, so landmarks changed from call to call."""
    from lipsync_bench.faces.backends import get_backend

    backend = get_backend("dlib")
    frames = swwp2s[0][::10]
    for bgr in np.ascontiguousarray(frames[..., ::-1]):
        view = bgr[..., ::-1]  # a strided view of an RGB frame
        copy = np.ascontiguousarray(view)
        boxes = backend.detect(copy)
        assert np.array_equal(backend.detect(view), boxes) and len(boxes)
        for _ in range(3):
            assert np.array_equal(backend.landmarks(view, boxes[0]), backend.landmarks(copy, boxes[0]))


@pytest.mark.slow
def test_the_offline_default_finds_the_face_in_95_percent_of_frames():
    clips = sorted(EXTRA.glob("retalking/*.mp4")) + sorted(GRID.glob("*.mpg"))
    if len(clips) < 5:
        pytest.skip(f"clips not found under {GRID}")
    for clip in clips:
        data = analyze(media.read_frames(clip))
        assert data.face_fraction >= 0.95, f"{clip.name}: {data.face_fraction:.0%}"


def test_mouth_opens_during_words_not_during_silence(swwp2s):
    frames, data = swwp2s
    words, silence, segments = [], [], []
    for line in data_file("grid/swwp2s.align").read_text().split("\n"):
        if not line.strip():
            continue
        start, end, word = line.split()
        span = list(range(int(start) // 1000, min(int(end) // 1000, len(frames))))
        (silence if word == "sil" else words).extend(span)
        segments.append((word, span))
    opening = np.linalg.norm(data.landmarks[:, 62] - data.landmarks[:, 66], axis=1)  # inner lips, pixels
    assert np.nanmean(opening[words]) > np.nanmean(opening[silence])
    # The speaker's lips are already apart in the leading "sil" (teeth show in frame 5); after the
    # last word they close: there the contrast is large.
    trailing = segments[-1][1]
    assert segments[-1][0] == "sil" and np.nanmean(opening[words]) > 3 * np.nanmean(opening[trailing])


def test_landmarks_sit_on_the_face(swwp2s):
    _, data = swwp2s
    f = int(np.argmax(data.detected))
    x1, y1, x2, y2 = data.boxes[f]
    mouth = data.landmarks[f, 48:68]
    assert ((mouth[:, 0] > x1) & (mouth[:, 0] < x2)).all()
    assert (mouth[:, 1] > (y1 + y2) / 2).all()  # the mouth is in the lower half of the face box
    mb = mouth_box(data.landmarks[f])
    assert mb[0] < mouth[:, 0].min() and mb[3] > mouth[:, 1].max()


# ---------------------------------------------------------------- LMD

def shift_mouth(frames: np.ndarray, data, k: int) -> np.ndarray:
    """Move the mouth region k pixels to the right (the rest of the face stays)."""
    out = frames.copy()
    for f in range(len(frames)):
        if not data.detected[f]:
            continue
        x1, y1, x2, y2 = mouth_box(data.landmarks[f], margin=0.4).astype(int)
        out[f, y1:y2, x1 + k:x2 + k] = frames[f, y1:y2, x1:x2]
    return out


def test_lmd_is_zero_for_itself_and_grows_with_the_mouth_shift(swwp2s):
    frames, data = swwp2s
    assert np.nanmean(lmd_frames(data, data)) == 0.0
    values = [np.nanmean(lmd_frames(analyze(shift_mouth(frames, data, k)), data)) for k in (1, 2, 4)]
    assert 0 < values[0] < values[1] < values[2]
    assert values[2] == pytest.approx(4, rel=0.5)  # pixels: the mouth moved by 4


def test_another_speakers_mouth_is_far(swwp2s):
    frames, data = swwp2s
    other = analyze(media.read_frames(data_file("grid/lbax4n.mpg")))
    shifted = np.nanmean(lmd_frames(analyze(shift_mouth(frames, data, 1)), data))
    assert np.nanmean(lmd_frames(other, data)) > 3 * shifted


def test_lmd_in_eval_is_cached_per_video(tmp_path, swwp2s, detector_calls):
    frames, _ = swwp2s
    write_lossless(tmp_path / "gt" / "a", frames[:30])
    write_lossless(tmp_path / "gen" / "a", frames[:30])
    out = tmp_path / "r"
    first = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lmd"], out=out).videos
    assert detector_calls["n"] == 60 and first.value.item() == 0.0
    lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lmd", "ssim"], out=out, force=True)
    assert detector_calls["n"] == 60  # the second run read the cached landmarks


def test_a_video_without_a_face_is_a_clear_error(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (10, 96, 96, 3), dtype=np.uint8)
    write_lossless(tmp_path / "gt" / "n", noise)
    write_lossless(tmp_path / "gen" / "n", noise)
    df = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lmd"]).videos
    assert "a face was found in 0% of 10 frames" in df.error.item()


# ---------------------------------------------------------------- tracking and crops by hand

def box(x, y, s=100, score=1.0):
    return [x, y, x + s, y + s, score]


def test_tracks_link_interpolate_and_pick_the_main_speaker():
    dets = []
    for f in range(30):
        faces = [box(100 + f, 50)]  # the speaker drifts right by a pixel a frame
        if f in (10, 11):
            faces = []  # missed detections
        if f < 8:
            faces.append(box(400, 50, 60))  # a short second face
        dets.append(np.array(faces, dtype=float).reshape(-1, 5))
    tracks = link_tracks(dets, TrackParams(min_track=5, min_face_size=30))
    assert len(tracks) == 2
    main = tracks[0]
    assert main.start == 0 and len(main.boxes) == 30 and main.detected.sum() == 28
    assert main.boxes[10, 0] == pytest.approx(110) and not main.detected[10]  # interpolated
    assert tracks[1].boxes[0, 0] == 400
    assert link_tracks(dets, TrackParams(min_track=5, min_face_size=80))[0] is not None
    assert len(link_tracks(dets, TrackParams(min_track=5, min_face_size=80))) == 1  # small face dropped


def test_a_gap_longer_than_max_missed_splits_the_track():
    dets = [np.array([box(100, 50)]) if f < 10 or f > 40 else np.zeros((0, 5)) for f in range(60)]
    tracks = link_tracks(dets, TrackParams(min_track=5, max_missed=25))
    assert [len(t.boxes) for t in tracks] == [19, 10]


def test_median_smoothing_removes_a_jump():
    dets = [np.array([box(100, 50)]) for _ in range(30)]
    dets[15] = np.array([box(140, 50)])  # one jumpy detection, still IoU > 0.5
    track = link_tracks(dets)[0]
    cx = smoothed_centres(track)[:, 0]
    assert cx[15] == pytest.approx(150)  # back to the median
    drifting = link_tracks([np.array([box(100 + f, 50)]) for f in range(30)])[0]
    # syncnet_python's zero-padded medfilt takes the smallest real value in the window at the ends:
    # the last centre lags by 6 frames of drift; edge padding does not
    assert smoothed_centres(drifting)[-1, 0] == pytest.approx(150 + 23)
    assert smoothed_centres(drifting, ends="edge")[-1, 0] == pytest.approx(150 + 29)


def test_syncnet_crop_geometry():
    import cv2

    frame = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    cx, cy, s = 200.0, 180.0, 50.0
    crop = syncnet_crop(frame, cx, cy, s)
    # rows [cy - s, cy + 1.8 s), columns [cx - 1.4 s, cx + 1.4 s): here inside the frame
    expected = cv2.resize(frame[130:270, 130:270], (224, 224))
    assert crop.shape == (224, 224, 3) and np.array_equal(crop, expected)
    edge = syncnet_crop(frame, 10.0, 10.0, 50.0)
    assert (edge[:20, :20] == 110).all()  # padding value outside the frame


def test_faces_command_writes_an_overlay(tmp_path):
    from click.testing import CliRunner

    from lipsync_bench.cli import main

    out = tmp_path / "overlay.mp4"
    result = CliRunner().invoke(main, ["faces", str(data_file("grid/bbaf2n.mpg")), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.output)
    assert doc["face_fraction"] >= 0.95 and doc["face_pipeline"]["backend"] == "dlib"
    frames = media.read_frames(out)
    assert frames.shape == (75, 288, 360, 3) and len(media.read_audio(out)) > 40000


# ---------------------------------------------------------------- regions for the frame metrics

def test_region_boxes_have_one_size_and_stay_inside():
    from lipsync_bench.faces import FaceData, region_boxes

    n = 20
    boxes = np.array([[10 + i, 20, 110 + i, 120] for i in range(n)], dtype=float)
    landmarks = np.full((n, 68, 2), np.nan)
    for i in range(n):  # a mouth 40 x 10 pixels centred at (60 + i, 100)
        landmarks[i, 48:68, 0] = np.linspace(40 + i, 80 + i, 20)
        landmarks[i, 48:68, 1] = np.linspace(95, 105, 20)
    data = FaceData(boxes, np.ones(n, bool), landmarks, {})
    face = region_boxes(data, "face", 200, 200)
    assert (face[:, 2] - face[:, 0] == 100).all() and (face[:, 3] - face[:, 1] == 100).all()
    assert face[0, 0] == 10 and face[-1, 0] == 29
    mouth = region_boxes(data, "mouth", 200, 200)
    assert (mouth[:, 2] - mouth[:, 0] == 60).all() and (mouth[:, 3] - mouth[:, 1] == 15).all()
    assert mouth[5, 0] == round(65 - 30)
    edge = region_boxes(data, "face", 105, 105)  # the face box reaches past the frame: shifted inside
    assert (edge[:, 2] <= 105).all() and (edge[:, 0] >= 0).all() and (edge[:, 3] <= 105).all()


def test_mouth_region_sees_mouth_damage_and_ignores_the_rest(tmp_path, swwp2s):
    frames, data = swwp2s
    frames = frames[:25]
    mouth_noise, corner_noise = frames.copy(), frames.copy()
    rng = np.random.default_rng(0)
    for f in range(25):
        x1, y1, x2, y2 = mouth_box(data.landmarks[f]).astype(int)
        mouth_noise[f, y1:y2, x1:x2] = np.clip(frames[f, y1:y2, x1:x2] + rng.normal(0, 20, (y2 - y1, x2 - x1, 3)),
                                               0, 255)
        corner_noise[f, :40, :40] = rng.integers(0, 256, (40, 40, 3))
    write_lossless(tmp_path / "gt" / "a", frames)
    write_lossless(tmp_path / "mouth" / "a", mouth_noise)
    write_lossless(tmp_path / "corner" / "a", corner_noise)

    def ssim(gen, region):
        df = lipsync_bench.evaluate(tmp_path / gen, tmp_path / "gt", ["ssim", "psnr"], region=region).videos
        return df.set_index("metric").value

    assert ssim("mouth", "mouth")["ssim"] < ssim("mouth", "full")["ssim"] - 0.05  # concentrated on the mouth
    corner = ssim("corner", "mouth")
    assert corner["ssim"] == pytest.approx(1.0) and np.isinf(corner["psnr"])  # outside the mouth: unseen


def test_region_run_detects_faces_once(tmp_path, swwp2s, detector_calls):
    frames, _ = swwp2s
    write_lossless(tmp_path / "gt" / "a", frames[:20])
    write_lossless(tmp_path / "gen" / "a", np.clip(frames[:20].astype(int) + 5, 0, 255).astype(np.uint8))
    out = tmp_path / "r"
    df = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lmd", "ssim"], out=out, region="mouth").videos
    assert df.error.isna().all() and detector_calls["n"] == 40  # GT once (shared by region and LMD), generated once
    lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lmd", "ssim"], out=out, region="mouth", force=True)
    assert detector_calls["n"] == 40


# ---------------------------------------------------------------- the face-alignment backend

@pytest.mark.slow
def test_face_alignment_backend_with_weights_in_the_published_layout(tmp_path, monkeypatch, swwp2s):
    pytest.importorskip("face_alignment")
    from lipsync_bench.faces import backends
    from tests.helpers import make_face_alignment_weights

    frames, _ = swwp2s
    assert backends.face_alignment_missing() is not None  # the tests' empty torch home
    assert "2DFAN4-11f355bf06.pth.tar" in backends.face_alignment_missing()
    assert backends.get_backend("auto").name == "dlib"
    monkeypatch.setenv("LIPSYNC_BENCH_WEIGHTS", str(make_face_alignment_weights(tmp_path / "w")))
    monkeypatch.setattr(backends, "_BACKENDS", {})
    fa = backends.get_backend("auto")
    assert fa.name == "face-alignment"
    params = fa.params()
    assert params["weights"]["2dfan4"]["official"] is False  # random weights are marked
    boxes = fa.detect(frames[0])
    assert boxes.ndim == 2 and boxes.shape[1] == 5
    points = fa.landmarks(frames[0], [120, 120, 245, 245, 1.0])
    assert points.shape == (68, 2) and np.isfinite(points).all()
    # the same pipeline runs on it: detection, tracking, landmarks, cached params
    analyzer = FaceAnalyzer("face-alignment", max_faces=2)  # random S3FD finds ~1000 "faces" a frame
    analyzer.update(frames[:1])
    assert analyzer.result().params["backend"] == "face-alignment" and len(analyzer.detections[0]) <= 2
