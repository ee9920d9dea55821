"""The field's LSE on real videos: syncnet_python's S3FD, shots, tracks and per-track scores, against the
``syncnet-python`` package (0.2.3, MoChaBench's pipeline) and joonson's run_pipeline.py as its text reads.

S3FD is compared with the package's detector on real frames with seeded random weights in the published
layout (random weights score faces at about 0.6, so the comparison lowers the confidence threshold).
Shots are compared with PySceneDetect's own SceneManager on the same frames; tracking with the package's
``_track`` on recorded detections; the whole pipeline (the lossy chain, shots, tracks, crops, scores) with
the package's ``SyncNetPipeline.inference``, its ffmpeg commands run by imageio-ffmpeg's binary."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

import lipsync_bench
from lipsync_bench import media
from lipsync_bench.faces.backends import get_backend
from lipsync_bench.faces.s3fd import S3FD, S3FDNet, frame_detections, load_s3fd, prior_boxes
from lipsync_bench.faces.settings import TrackParams
from lipsync_bench.faces.shots import ContentShots
from lipsync_bench.faces.track import link_tracks
from tests.helpers import GRID, import_without_init, write_lossless

PACKAGES = ("syncnet_python", "syncnet_python.detectors")


def reference_s3fd():
    """The package's detectors/s3fd (its __init__ imports scenedetect-free modules only)."""
    detector = import_without_init("syncnet_python.detectors.s3fd", PACKAGES, "syncnet-python 0.2.3")
    import syncnet_python.detectors.s3fd.nets as nets

    return detector, nets


def reference_pipeline():
    """syncnet-python 0.2.3's syncnet_pipeline module (it calls ffmpeg through ffmpeg-python)."""
    pytest.importorskip("ffmpeg", reason="needs ffmpeg-python (the test extra)")
    return import_without_init("syncnet_python.syncnet_pipeline", PACKAGES, "syncnet-python 0.2.3")


def seeded_lse_weights(folder):
    """Seeded random S3FD and SyncNet weights in their published layouts (plain state dicts), in
    ``folder``: sfd_face.pth and syncnet_v2.model."""
    from lipsync_bench.syncnets.syncnet import SyncNet

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(S3FDNet().state_dict(), folder / "sfd_face.pth")
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), folder / "syncnet_v2.model")
    return folder


def package_pipeline(weights, detect=None, **config):
    """syncnet-python 0.2.3's SyncNetPipeline on CPU with the weights in ``weights`` (``config`` overrides
    its PipelineConfig); ``detect(rgb_frame)``, when given, stands for its S3FD's detect_faces."""
    pipe = reference_pipeline().SyncNetPipeline({"s3fd_weights": str(weights / "sfd_face.pth"),
                                                 "syncnet_weights": str(weights / "syncnet_v2.model"), **config},
                                                device="cpu")
    if detect is not None:
        pipe.s3fd.detect_faces = lambda image, conf_th, scales: detect(image)
    return pipe


def ffmpeg_wrapper(folder):
    """imageio-ffmpeg's binary as ``folder/ffmpeg``, as the package calls it, encoding video.avi in 16
    slices as the command does on a machine of 15 cores or more (one slice a thread: the 2-core CI would
    otherwise encode 3, and every frame after would differ from ``reencode.PipelineFrames``)."""
    import stat
    import sys

    from tests.helpers import ffmpeg_exe

    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "ffmpeg"
    wrapper.write_text(f"""#!{sys.executable}
import os, sys
args = sys.argv[1:]
for i, arg in enumerate(args):
    if arg.endswith("video.avi") and i and args[i - 1] != "-i":
        args[i:i] = ["-threads", "16"]
        break
os.execv({ffmpeg_exe()!r}, [{ffmpeg_exe()!r}, "-hide_banner", "-loglevel", "error", *args])
""")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return wrapper


@pytest.fixture(scope="module")
def s3fd_weights(tmp_path_factory):
    """Seeded random S3FD weights saved as syncnet_python saves sfd_face.pth (a plain state dict)."""
    folder = tmp_path_factory.mktemp("sfd")
    torch.manual_seed(0)
    torch.save(S3FDNet().state_dict(), folder / "sfd_face.pth")
    return folder / "sfd_face.pth"


def test_s3fd_is_syncnet_pythons_network_and_detector(s3fd_weights):
    """The same state-dict layout (65 tensors, 22,459,110 parameters); the same 750 best detections
    after the network, its anchors, decoding and first suppression (scores within 1e-6, boxes within
    1e-6 of the input); and detect_faces' boxes on real frames within 1e-3 px, scores within 1e-5
    (threshold 0.5 for the random weights), frame by frame and for a batch of frames."""
    detector, nets = reference_s3fd()
    ref = nets.S3FDNet(device="cpu")
    ref.load_state_dict(torch.load(s3fd_weights, weights_only=True))
    ref.eval()
    ours = load_s3fd(s3fd_weights)
    assert list(ours.state_dict()) == list(ref.state_dict()) and len(ref.state_dict()) == 65
    assert sum(p.numel() for p in ours.parameters()) == 22_459_110
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 60, (1, 3, 72, 90)).astype(np.float32))
    with torch.no_grad():
        expected = ref(x)[0, 1].numpy()  # (750, 5): score, x1, y1, x2, y2 in [0, 1], zero rows after
        loc, prob, maps = ours(x)
    kept = frame_detections(loc[0], prob[0], prior_boxes(72, 90, maps), 1, 1, conf_th=-1.0)
    rows = int((expected[:, 0] > 0).sum())
    assert len(kept) == rows > 50
    assert np.abs(kept[:, 4] - expected[:rows, 0]).max() < 1e-6
    assert np.abs(kept[:, :4] - expected[:rows, 1:]).max() < 1e-6
    frames = media.read_frames(sorted(GRID.glob("*.mpg"))[0])[:6]
    theirs = detector.S3FD(ref, device="cpu")
    ours_det = S3FD(ours, conf_th=0.5)
    batch = ours_det.detect(frames)
    for frame, in_batch in zip(frames, batch, strict=True):
        a = theirs.detect_faces(frame, conf_th=0.5, scales=[0.25])
        b = ours_det.detect(frame[None])[0]
        assert a.shape == b.shape and len(a) > 3
        assert np.abs(a[:, :4] - b[:, :4]).max() < 1e-3 and np.abs(a[:, 4] - b[:, 4]).max() < 1e-5
        assert in_batch.shape == b.shape and np.abs(in_batch - b).max() < 1e-3


def test_face_alignments_s3fd_file_is_refused_naming_why(tmp_path):
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.save(s3fd().state_dict(), tmp_path / "s3fd-619a316812.pth")
    with pytest.raises(lipsync_bench.errors.LipsyncBenchError, match="face-alignment's S3FD"):
        load_s3fd(tmp_path / "s3fd-619a316812.pth")


def two_shot_frames(clips) -> np.ndarray:
    """A GRID clip, then another zoomed 1.6x and centre-cropped: a hard cut PySceneDetect finds."""
    import cv2

    a, b = (media.read_frames(c) for c in clips[:2])
    h, w = b.shape[1:3]
    zoomed = np.stack([cv2.resize(f, None, fx=1.6, fy=1.6)[int(h * .3):int(h * .3) + h, int(w * .3):int(w * .3) + w]
                       for f in b])
    return np.concatenate([a, zoomed])


def test_shots_equal_pyscenedetects_scene_manager(grid_clips, tmp_path):
    """The shots of a two-shot clip (lossless, so both read the same frames) equal those of
    PySceneDetect's VideoManager + SceneManager + ContentDetector, as the peers call them."""
    from scenedetect import ContentDetector, SceneManager, StatsManager
    from scenedetect.video_manager import VideoManager

    frames = two_shot_frames(grid_clips)
    video = write_lossless(tmp_path / "two", frames)
    manager = VideoManager([str(video)])
    scenes = SceneManager(StatsManager())
    scenes.add_detector(ContentDetector())
    manager.start()
    scenes.detect_scenes(frame_source=manager)
    expected = [(s.frame_num, e.frame_num) for s, e in scenes.get_scene_list(manager.get_base_timecode())]
    ours = ContentShots()
    ours.update(frames[:40])
    ours.update(frames[40:])
    assert ours.shots(len(frames)) == expected == [(0, 75), (75, 150)]


def side_by_side_detections(frames: int = 150) -> list[np.ndarray]:
    """Two faces side by side, each detected in every frame; the left one scores higher in the first
    and last 38 frames, the right one in between (as a detector's scores trade places)."""
    out = []
    for f in range(frames):
        left = [40.0 + f * 0.1, 60.0, 170.0 + f * 0.1, 190.0, 0.99 if f < 38 or f >= 113 else 0.95]
        right = [220.0, 62.0, 350.0, 192.0, 0.97]
        out.append(np.array(sorted([left, right], key=lambda d: -d[4])))
    return out


def reference_track(detections: list[np.ndarray], min_track: int, min_face_size: float) -> list[dict]:
    """syncnet-python 0.2.3's SyncNetPipeline._track on the same detections (its own code)."""
    pipeline_module = reference_pipeline()
    pipe = object.__new__(pipeline_module.SyncNetPipeline)
    pipe.cfg = pipeline_module.PipelineConfig(min_track=min_track, min_face_size=min_face_size)
    dets = [[{"frame": i, "bbox": list(d[:4]), "conf": float(d[4])} for d in frame]
            for i, frame in enumerate(detections)]
    return pipe._track(dets)


def test_first_face_linking_is_the_packages_tracker_and_joonsons_differs():
    """Two faces side by side whose scores trade places: the package's tracker (first-face linking)
    stops a frame's scan at the first face that does not continue the track, so its first pass holds
    the left face for 38 frames only (dropped: not above min_track 50) and the next passes mix the two
    faces' frames into tracks of 113 and 112; joonson's run_pipeline.py passes a non-matching face over
    and tracks each face over its 150 frames. Ours equal the package's tracks box for box."""
    dets = side_by_side_detections()
    params = TrackParams(min_track=50, min_face_size=100)
    expected = reference_track([d.copy() for d in dets], 50, 100)
    ours = link_tracks([d.copy() for d in dets], params, "first-face", order="found")
    assert [len(t["frame"]) for t in expected] == [len(t.boxes) for t in ours] == [113, 112]
    for t, mine in zip(expected, ours, strict=True):
        assert t["frame"][0] == mine.start and np.abs(t["bbox"] - mine.boxes).max() < 1e-9
    joonson = link_tracks([d.copy() for d in dets], params, "joonson", order="found")
    assert [len(t.boxes) for t in joonson] == [150, 150]
    assert joonson[0].boxes[0, 0] == 40.0 and joonson[1].boxes[0, 0] == 220.0


@pytest.fixture(scope="module")
def two_shot_video(tmp_path_factory, grid_clips):
    """The two-shot clip with the GRID clips' own audio, losslessly."""
    frames = two_shot_frames(grid_clips)
    audio = np.concatenate([media.read_audio(c)[:75 * 640] for c in grid_clips[:2]])
    root = tmp_path_factory.mktemp("two_shot")
    media.write_video(root / "gen" / "two.avi", frames, 25, audio, codec="ffv1")
    return root


@pytest.fixture
def dlib_boxes_for_s3fd(monkeypatch, tmp_path):
    """S3FD's weights present (seeded random) and its detections replaced by dlib's boxes, which find the
    GRID faces (random S3FD weights find none above 0.9)."""
    dlib = get_backend("dlib")
    monkeypatch.setattr(S3FD, "detect", lambda self, frames: [dlib.detect(f) for f in frames])
    return seeded_lse_weights(tmp_path / "w")


def test_every_track_of_a_two_shot_clip_is_scored_and_aggregated_as_asked(two_shot_video, dlib_boxes_for_s3fd,
                                                                          tmp_path):
    """Shots split the clip's face into two tracks; each is scored as a video of its own would be
    (the same scores as each shot's frames and audio alone), listed with its frames in eval --json and
    in the report, and the video's number is their mean (each, mean) or the best of them (best)."""
    choices = {"faces.detector": "s3fd-syncnet-python", "faces.shots": "pyscenedetect", "faces.min_track": 20}
    runs = {which: lipsync_bench.evaluate(two_shot_video / "gen", None, ["lse_c", "lse_d", "av_offset"],
                                          choices=choices, params={"lse": {"tracks": which}},
                                          weights_dir=dlib_boxes_for_s3fd, out=tmp_path / which)
            for which in ("each", "mean", "best")}
    tracks = runs["each"].tracks["two"]
    assert [(t["start"], t["frames"]) for t in tracks] == [(0, 75), (75, 75)]
    conf, dist = [t["lse_c"] for t in tracks], [t["lse_d"] for t in tracks]
    values = {w: r.videos.set_index("metric").value for w, r in runs.items()}
    close = {"abs": 1e-6}  # the per-track details keep six decimals
    assert values["each"]["lse_c"] == pytest.approx(np.mean(conf), **close)
    assert values["each"]["lse_d"] == pytest.approx(np.mean(dist), **close)
    assert values["mean"]["lse_c"] == pytest.approx(np.mean(conf), **close)
    assert values["best"]["lse_c"] == pytest.approx(max(conf), **close)
    assert values["best"]["lse_d"] == pytest.approx(min(dist), **close)
    assert runs["each"].to_json()["tracks"]["two"] == tracks and "tracks two: frames 0-74" in runs["each"].text()
    from lipsync_bench.report_html import build_report

    page = tmp_path / "report.html"
    build_report(tmp_path / "each", page)
    text = page.read_text()
    assert "Face tracks, each scored" in text and "2 tracks in 1 videos (tracks = each)" in text
    assert "<td>75–149</td>" in text and f"<td>{tracks[1]['lse_d']:.3f}</td>" in text
    # each track scores as its shot alone would: the second shot cut out with its audio
    frames, audio = media.read_frames(two_shot_video / "gen" / "two.avi"), media.read_audio(two_shot_video / "gen" /
                                                                                            "two.avi")
    alone = two_shot_video / "alone"
    media.write_video(alone / "second.avi", frames[75:], 25, audio[75 * 640:], codec="ffv1")
    second = lipsync_bench.evaluate(alone, None, ["lse_c", "lse_d"], choices={**choices, "faces.shots": "none"},
                                    weights_dir=dlib_boxes_for_s3fd).videos.set_index("metric").value
    assert abs(second["lse_c"] - conf[1]) < 1e-3 and abs(second["lse_d"] - dist[1]) < 1e-3


def test_a_clip_without_a_usable_track_is_one_line_naming_why(two_shot_video, dlib_boxes_for_s3fd):
    result = lipsync_bench.evaluate(two_shot_video / "gen", None, ["lse_c"], weights_dir=dlib_boxes_for_s3fd,
                                    choices={"faces.detector": "s3fd-syncnet-python", "faces.shots": "pyscenedetect",
                                             "faces.min_track": 100}, params={"lse": {"tracks": "each"}})
    assert result.summary.loc["lse_c", "n"] == 0 and result.summary.loc["lse_c", "failed"] == 1
    assert "no face track" in result.failures.error[0] and "more than 100 detections" in result.failures.error[0]


@pytest.fixture
def ffmpeg_on_path(tmp_path, monkeypatch):
    """``ffmpeg_wrapper`` first on PATH."""
    import os

    monkeypatch.setenv("PATH", f"{ffmpeg_wrapper(tmp_path / 'bin').parent}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.slow
def test_mochabench_protocol_equals_the_syncnet_python_package_end_to_end(grid_clips, tmp_path, ffmpeg_on_path,
                                                                           dlib_boxes_for_s3fd):
    """``eval --protocol mochabench`` against syncnet-python 0.2.3's ``SyncNetPipeline.inference`` (its
    ffmpeg commands run by a real ffmpeg, its files on disk) on three GRID clips, both given dlib's boxes
    for S3FD's (random S3FD weights find no face above 0.9) and the same random SyncNet weights: the same
    tracks (frames 0-74 of the 76 JPEGs: the shots are numbered over video.avi's 75 frames), the same
    offsets, and confidences and distances within 2e-5 (measured 6e-6 on the eight clips; without the
    chain, decode.reencode none, the distances move by up to 0.03)."""
    pipe = package_pipeline(dlib_boxes_for_s3fd, get_backend("dlib").detect)
    gen = tmp_path / "gen"
    gen.mkdir()
    expected = {}
    for clip in grid_clips[:3]:
        (gen / clip.name).symlink_to(clip)
        offsets, confs, dists, best_conf, best_dist, _, has_face = pipe.inference(str(clip), None)
        assert has_face and len(offsets) == 1
        expected[clip.stem] = (offsets[0], confs[0], dists[0], best_conf, best_dist)
    result = lipsync_bench.evaluate(gen, None, protocol="mochabench", weights_dir=dlib_boxes_for_s3fd)
    values = result.videos.pivot(index="video", columns="metric", values="value")
    for stem, (offset, conf, dist, best_conf, best_dist) in expected.items():
        [track] = result.tracks[stem]
        assert (track["start"], track["frames"], track["offset"]) == (0, 75, offset), stem
        assert abs(track["lse_c"] - conf) < 2e-5 and abs(track["lse_d"] - dist) < 2e-5, stem
        assert values.loc[stem, "lse_c"] == pytest.approx(best_conf, abs=2e-5)
        assert values.loc[stem, "lse_d"] == pytest.approx(best_dist, abs=2e-5)
        assert values.loc[stem, "av_offset"] == offset


@pytest.mark.slow
def test_syncnet_python_protocol_equals_run_pipelines_chain_within_the_mp3_encoders(grid_clips, tmp_path,
                                                                                    ffmpeg_on_path,
                                                                                    dlib_boxes_for_s3fd):
    """run_pipeline.py scores against audio.wav made from video.avi (the audio through MP3), where the
    package reads the speech as it is: the package given that audio.wav (made by the same two commands)
    is run_pipeline.py's chain on one-face clips. ``--protocol syncnet-python`` (min_track lowered to 50
    for the 3 s clips) gives its tracks and offsets, and confidences and distances within 1e-3: its MP3
    encoder (PyAV's LAME build) is not the binary's (measured 3e-4 on the eight clips)."""
    pipe = package_pipeline(dlib_boxes_for_s3fd, get_backend("dlib").detect, min_track=50)
    gen = tmp_path / "gen"
    gen.mkdir()
    expected = {}
    for clip in grid_clips[:2]:
        (gen / clip.name).symlink_to(clip)
        work = tmp_path / clip.stem
        work.mkdir()
        # run_pipeline.py's first and third commands
        subprocess.run(["ffmpeg", "-y", "-i", str(clip), "-qscale:v", "2", "-async", "1", "-r", "25",
                        str(work / "video.avi")], check=True)
        subprocess.run(["ffmpeg", "-y", "-i", str(work / "video.avi"), "-ac", "1", "-vn", "-acodec", "pcm_s16le",
                        "-ar", "16000", str(work / "audio.wav")], check=True)
        offsets, confs, dists, *_ = pipe.inference(str(clip), str(work / "audio.wav"))
        expected[clip.stem] = (offsets, confs, dists)
    result = lipsync_bench.evaluate(gen, None, protocol="syncnet-python", weights_dir=dlib_boxes_for_s3fd,
                                    choices={"faces.min_track": 50})
    for stem, (offsets, confs, dists) in expected.items():
        tracks = result.tracks[stem]
        assert [(t["start"], t["frames"], t["offset"]) for t in tracks] == [(0, 75, o) for o in offsets], stem
        assert np.abs(np.array([t["lse_c"] for t in tracks]) - confs).max() < 1e-3, stem
        assert np.abs(np.array([t["lse_d"] for t in tracks]) - dists).max() < 1e-3, stem


@pytest.mark.slow
def test_latentsync_protocol_runs_its_chain_and_takes_the_mean_over_tracks(two_shot_video, dlib_boxes_for_s3fd,
                                                                          tmp_path):
    """``--protocol latentsync`` on the two-shot clip (min_track lowered to 20 for its 75-frame shots): its
    H.264 frames keep the clip's 150 frames in time (no repeated frame: the shots end at 75 and 150), each
    shot a track, LSE-C the mean of the tracks' and the offset int() of their mean; no LSE-D (its script
    reports none). The same tracks scored without the chain (decode.reencode none) differ."""
    choices = {"faces.min_track": 20}
    result = lipsync_bench.evaluate(two_shot_video / "gen", None, protocol="latentsync", choices=choices,
                                    weights_dir=dlib_boxes_for_s3fd, out=tmp_path / "ls")
    tracks = result.tracks["two"]
    assert [(t["start"], t["frames"]) for t in tracks] == [(0, 75), (75, 75)]
    values = result.videos.set_index("metric").value
    assert set(values.index) == {"lse_c", "av_offset"}
    assert values["lse_c"] == pytest.approx(np.mean([t["lse_c"] for t in tracks]), abs=1e-6)
    assert values["av_offset"] == int(np.mean([t["offset"] for t in tracks]))
    plain = lipsync_bench.evaluate(two_shot_video / "gen", None, protocol="latentsync",
                                   choices={**choices, "decode.reencode": "none"}, weights_dir=dlib_boxes_for_s3fd,
                                   out=tmp_path / "plain")
    assert [(t["start"], t["frames"]) for t in plain.tracks["two"]] == [(0, 75), (75, 75)]
    assert all(a["lse_d"] != b["lse_d"] for a, b in zip(tracks, plain.tracks["two"], strict=True))
