"""LSE-C / LSE-D / AV offset as metrics, as a command, end to end against syncnet_python's own
``evaluate()``, and the weights they need (fetched from a local HTTP server)."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import types

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from lipsync_bench import media, weights
from lipsync_bench.cli import main
from lipsync_bench.evaluation import run_eval
from lipsync_bench.media import JpegRoundTrip
from lipsync_bench.protocol import load_protocol
from lipsync_bench.store import GROUND_TRUTH
from lipsync_bench.syncnets.syncnet import SyncNet, load_syncnet
from tests.helpers import GRID, data_file, ffmpeg_exe

pytest.importorskip("python_speech_features")
pytest.importorskip("dlib")

LSE = ["lse_c", "lse_d", "av_offset"]


@pytest.fixture(scope="module")
def syncnet_dir(tmp_path_factory):
    """A folder holding seeded random SyncNet weights under the published name."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), folder / "syncnet_v2.model")
    return folder


@pytest.fixture
def with_weights(syncnet_dir, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(syncnet_dir))
    return syncnet_dir


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    """Two GRID clips as GT and as 'generated' (the same files: real, in-sync videos)."""
    clips = sorted((GRID).glob("*.mpg"))[:2]
    if len(clips) < 2:
        pytest.skip(f"GRID clips not found under {GRID}")
    root = tmp_path_factory.mktemp("pairs")
    for side in ("gen", "gt"):
        (root / side).mkdir()
        for c in clips:
            shutil.copy(c, root / side / c.name)
    return root


def test_without_weights_lse_named_is_refused_with_the_reason(pair_dirs, tmp_path):
    result = CliRunner().invoke(main, ["eval", "--gen", str(pair_dirs / "gen"), "--gt", str(pair_dirs / "gt"),
                                       "--out", str(tmp_path / "r"), "--metrics", "psnr,lse_c,lse_d", "--quiet"])
    assert result.exit_code == 2, result.output
    reasons = result.output.strip().removeprefix("error: ").split("; lse_d cannot run here: ")
    assert reasons[0].startswith("lse_c cannot run here: ") and len(reasons) == 2
    assert all("syncnet_v2.model" in s and "lipsync-bench weights fetch syncnet" in s for s in reasons)
    assert not (tmp_path / "r").exists()
    listing = CliRunner().invoke(main, ["weights", "list"]).output
    line = next(line for line in listing.splitlines() if line.startswith("syncnet "))
    assert "missing" in line and "lipsync-bench weights fetch syncnet" in line
    assert "robots.ox.ac.uk" in listing


@pytest.mark.slow
def test_eval_lse_equals_the_single_file_score_and_fills_the_ground_truth_row(pair_dirs, with_weights, tmp_path):
    run = run_eval(pair_dirs / "gen", pair_dirs / "gt", LSE + ["psnr"], method="copy", dataset="grid",
                   out=tmp_path, progress=False)
    res = run.videos.set_index(["video", "metric"]).value
    from lipsync_bench.metrics.lse import score_video

    for clip in sorted((pair_dirs / "gen").iterdir()):
        score, protocol = score_video(clip)
        assert res[(clip.stem, "lse_c")] == pytest.approx(score.lse_c, abs=1e-6)
        assert res[(clip.stem, "lse_d")] == pytest.approx(score.lse_d, abs=1e-6)
        assert res[(clip.stem, "av_offset")] == score.offset
        assert protocol["weights"]["official"] is False and protocol["fps"] == 25
    # the protocol of the stored results names the weights by checksum and the face pipeline
    digest = weights.sha256(with_weights / "syncnet_v2.model")
    assert run.run.metric_params["lse_c"]["weights"]["sha256"] == digest
    assert run.unofficial_weights().keys() == set(LSE)
    # the GT videos' own LSE: a run of its own, computed once per dataset
    assert run.ground_truth["computed"] == 2
    assert run.ground_truth["summary"]["lse_c"]["n"] == 2
    again = run_eval(pair_dirs / "gen", pair_dirs / "gt", LSE, method="other", dataset="grid", out=tmp_path,
                     progress=False)
    assert again.ground_truth["computed"] == 0
    table = CliRunner().invoke(main, ["table", "--dataset", "grid", "--results", str(tmp_path)])
    lines = [line for line in table.output.splitlines() if line.startswith("| ")]
    assert lines[1].split("|")[1].strip() == GROUND_TRUTH  # first row after the header
    gt_cells = lines[1].split("|")
    assert "**" not in "".join(gt_cells)  # the real videos are a reference, never "best"
    assert "unofficial weights" in table.output


@pytest.mark.slow
def test_implausible_ground_truth_lse_c_is_warned_with_official_weights(pair_dirs, with_weights, tmp_path,
                                                                        monkeypatch):
    """Random weights give LSE-C near 0 on real videos: with the official checksum that means a broken
    protocol, so eval says so (with unofficial weights it says nothing: the number means nothing)."""
    digest = weights.sha256(with_weights / "syncnet_v2.model")
    monkeypatch.setitem(weights.KNOWN, "syncnet", dataclasses.replace(weights.KNOWN["syncnet"], sha256=digest))
    result = CliRunner().invoke(main, ["eval", "--gen", str(pair_dirs / "gen"), "--gt", str(pair_dirs / "gt"),
                                       "--out", str(tmp_path), "--metrics", "lse_c", "--quiet"])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning ground truth")]
    assert len(warned) == 2 and all("implausibly low" in w and "frame rate" in w for w in warned)
    assert "unofficial" not in result.output


@pytest.mark.slow
def test_per_video_errors_short_clip_no_audio_and_min_track(pair_dirs, with_weights, tmp_path):
    clip = sorted((pair_dirs / "gt").iterdir())[0]
    frames, audio = media.read_frames(clip), media.read_audio(clip)
    gen, gt = tmp_path / "gen", tmp_path / "gt"
    media.write_video(gen / "short.avi", frames[:5], 25, audio[:5 * 640], codec="ffv1")
    media.write_video(gt / "short.avi", frames[:5], 25, audio[:5 * 640], codec="ffv1")
    media.write_video(gen / "silent.avi", frames, 25, None, codec="ffv1")
    media.write_video(gt / "silent.avi", frames, 25, audio, codec="ffv1")
    shutil.copy(clip, gen / "ok.mpg")
    shutil.copy(clip, gt / "ok.mpg")
    run = run_eval(gen, gt, ["psnr", "lse_c"], out=tmp_path / "r", progress=False)
    err = run.videos.set_index(["video", "metric"]).error
    assert "shorter than 6" in err[("short", "lse_c")] and "short.avi" in err[("short", "lse_c")]
    assert "no audio stream" in err[("silent", "lse_c")] and "lse.audio=gt" in err[("silent", "lse_c")]
    assert pd.isna(err[("silent", "psnr")]) and pd.isna(err[("ok", "lse_c")])  # the rest is intact
    # the GT's audio, for generators that write silent videos
    run = run_eval(gen, gt, ["lse_c"], params={"lse": {"audio": "gt"}}, out=tmp_path / "r2", progress=False)
    assert pd.isna(run.videos.set_index(["video", "metric"]).error[("silent", "lse_c")])
    # syncnet_python's min_track=100 drops this 75-frame clip; here it is a clear error instead
    run = run_eval(gen, gt, ["lse_c"], params={"lse_c": {"min_track": "100"}}, out=tmp_path / "r3", progress=False)
    assert "shorter than 100 (min_track=100)" in run.videos.set_index(["video", "metric"]).error[("ok", "lse_c")]


def test_lse_command_json_plot_and_wrong_crop(with_weights, tmp_path):
    clip = data_file("grid/bbaf2n.mpg")
    result = CliRunner().invoke(main, ["lse", str(clip), "--json", "--plot", str(tmp_path / "curve.png")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert {"offset", "lse_c", "lse_d", "protocol"} <= set(doc) and len(doc["curve"]) == 31
    assert doc["lse_d"] == pytest.approx(min(doc["curve"]))
    assert doc["lse_c"] == pytest.approx(float(np.median(doc["curve"])) - min(doc["curve"]), abs=1e-5)
    assert doc["protocol"]["weights"]["file"] == "syncnet_v2.model" and doc["protocol"]["crop"] == "track"
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wrong = CliRunner().invoke(main, ["lse", str(clip), "--crop", "none"])
    assert wrong.exit_code == 1 and "224x224" in wrong.output and "Traceback" not in wrong.output


def test_jpeg_round_trip_equals_ffmpeg_image2_and_imread(tmp_path):
    """The compat step gives exactly the pixels syncnet_python reads: ffmpeg's default image2 JPEGs
    (frames repeated by its constant-rate output included), decoded by cv2.imread."""
    import cv2

    clip = data_file("grid/lbax4n.mpg")
    frames = media.read_frames(clip)[:, 40:264, 60:284]  # a 224x224 window
    video = media.write_video(tmp_path / "crop.mp4", frames, 25, media.read_audio(clip))
    (tmp_path / "jpg").mkdir()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-threads", "1", "-f", "image2",
                    str(tmp_path / "jpg" / "%06d.jpg")], check=True)
    ref = [cv2.imread(str(p)) for p in sorted((tmp_path / "jpg").glob("*.jpg"))]
    ours = np.concatenate(list(media.iter_frames(video, 25, convert=JpegRoundTrip())))
    assert len(ours) == len(ref)
    assert all(np.array_equal(a, b) for a, b in zip(ours, ref, strict=False))
    lossless = media.read_frames(video)[..., ::-1]
    assert np.abs(ours.astype(int) - lossless).mean() > 0.1  # the JPEG step is lossy: it matters


@pytest.mark.slow
def test_compat_mode_equals_the_reference_evaluate_end_to_end(tmp_path):
    """224x224 face videos of 5 real clips: syncnet_python's evaluate() (after its own two ffmpeg commands,
    run with a real ffmpeg) and `lse --crop none --compat syncnet_python` give the same offset, LSE-C and
    LSE-D with the same random weights."""
    from lipsync_bench.faces import FaceAnalyzer, syncnet_crops
    from lipsync_bench.metrics.lse import score_video
    from tests.test_syncnet import reference_modules

    exe = ffmpeg_exe()
    ref_model, ref_instance = reference_modules()
    torch.manual_seed(1)
    net = ref_model.S(num_layers_in_fc_layers=1024).eval()
    (tmp_path / "w").mkdir()
    torch.save(net.state_dict(), tmp_path / "w" / "syncnet_v2.model")
    instance = ref_instance.SyncNetInstance(net, device="cpu")
    clips = sorted((GRID).glob("*.mpg"))[:5]
    if len(clips) < 5:
        pytest.skip("GRID clips not found")
    for clip in clips:
        frames = media.read_frames(clip)
        analyzer = FaceAnalyzer()
        analyzer.update(frames)
        video = media.write_video(tmp_path / f"{clip.stem}.mp4", syncnet_crops(frames, analyzer.result()), 25,
                                  media.read_audio(clip))
        work = tmp_path / clip.stem
        work.mkdir()
        # the two commands of syncnet_python's SyncNetInstance.evaluate
        subprocess.run([exe, "-v", "error", "-y", "-i", str(video), "-threads", "1", "-f", "image2",
                        str(work / "%06d.jpg")], check=True)
        subprocess.run([exe, "-v", "error", "-y", "-i", str(video), "-async", "1", "-ac", "1", "-vn", "-acodec",
                        "pcm_s16le", "-ar", "16000", str(work / "audio.wav")], check=True)
        offset, conf, minval = instance.evaluate(types.SimpleNamespace(tmp_dir=str(work), batch_size=20, vshift=15))
        score, _ = score_video(video, crop="none", compat="syncnet_python", weights_dir=tmp_path / "w")
        assert score.offset == offset, clip.stem
        assert abs(score.lse_c - conf) < 1e-3 and abs(score.lse_d - minval) < 1e-3, clip.stem
        plain, _ = score_video(video, crop="none", weights_dir=tmp_path / "w")
        assert plain.windows == score.windows


@pytest.mark.slow
def test_wav2lip_lrs_protocol_equals_its_script(tmp_path, monkeypatch):
    """eval --protocol wav2lip-lrs against Wav2Lip's calculate_scores_LRS.py on two generated (H.264 +
    AAC) clips: syncnet_python's evaluate() on ffmpeg's image2 JPEGs of the whole frames, each resized
    to 224x224 after cv2.imread (the script's one change, applied to the reference here), with the same
    random weights. The JPEGs come from the same decode as every other metric (a stage of the pipeline)."""
    import cv2

    from tests.test_syncnet import reference_modules

    exe = ffmpeg_exe()
    ref_model, ref_instance = reference_modules()
    torch.manual_seed(1)
    net = ref_model.S(num_layers_in_fc_layers=1024).eval()
    (tmp_path / "w").mkdir()
    torch.save(net.state_dict(), tmp_path / "w" / "syncnet_v2.model")
    instance = ref_instance.SyncNetInstance(net, device="cpu")
    (tmp_path / "gen").mkdir()
    for clip in sorted(GRID.glob("*.mpg"))[:2]:
        subprocess.run([exe, "-v", "error", "-y", "-i", str(clip), "-c:v", "libx264", "-crf", "20", "-c:a", "aac",
                        str(tmp_path / "gen" / f"{clip.stem}.mp4")], check=True)
    monkeypatch.setenv("LIPSYNC_BENCH_WEIGHTS", str(tmp_path / "w"))
    result = run_eval(tmp_path / "gen", tmp_path / "gen", LSE, protocol=load_protocol("wav2lip-lrs"), progress=False)
    assert result.failures.empty and result.skipped_metrics == {}
    ours = result.videos.pivot(index="video", columns="metric", values="value")
    imread = ref_instance.cv2.imread
    ref_instance.cv2.imread = lambda f: cv2.resize(imread(f), (224, 224))  # calculate_scores_LRS.py's change
    try:
        for video in sorted((tmp_path / "gen").iterdir()):
            work = tmp_path / video.stem
            work.mkdir()
            subprocess.run([exe, "-v", "error", "-y", "-i", str(video), "-threads", "1", "-f", "image2",
                            str(work / "%06d.jpg")], check=True)
            subprocess.run([exe, "-v", "error", "-y", "-i", str(video), "-async", "1", "-ac", "1", "-vn", "-acodec",
                            "pcm_s16le", "-ar", "16000", str(work / "audio.wav")], check=True)
            offset, conf, minval = instance.evaluate(types.SimpleNamespace(tmp_dir=str(work), batch_size=20,
                                                                           vshift=15))
            row = ours.loc[video.stem]
            assert row.av_offset == offset
            assert abs(row.lse_c - conf) < 1e-4 and abs(row.lse_d - minval) < 1e-4
    finally:
        ref_instance.cv2.imread = imread


def test_checkpoints_that_are_not_syncnet_weights_are_refused_clearly(tmp_path):
    from lipsync_bench.errors import LipsyncBenchError

    good = tmp_path / "good.model"
    torch.save(SyncNet().state_dict(), good)
    truncated = tmp_path / "truncated.model"
    truncated.write_bytes(good.read_bytes()[:5000])
    other = tmp_path / "other.model"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    code = tmp_path / "code.model"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, code, _use_new_zipfile_serialization=True)
    for path, words in [(truncated, "cannot be loaded"), (other, "not in syncnet_v2.model's layout"),
                        (code, "cannot be loaded")]:
        with pytest.raises(LipsyncBenchError) as exc:
            load_syncnet(path)
        assert str(path) in str(exc.value) and words in str(exc.value)


class _Server:
    """A file server on 127.0.0.1 for the duration of a test."""

    def __init__(self, folder):
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
        handler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_fetch_verifies_the_checksum_from_a_local_server(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    torch.manual_seed(3)
    torch.save(SyncNet().state_dict(), served / "syncnet_v2.model")
    digest = hashlib.sha256((served / "syncnet_v2.model").read_bytes()).hexdigest()
    target = tmp_path / "weights"
    with _Server(served) as base:
        # the published checksum differs from this file's: refused, nothing kept
        result = CliRunner().invoke(main, ["weights", "fetch", "syncnet", "--weights-dir", str(target),
                                           "--url", f"{base}/syncnet_v2.model"])
        assert result.exit_code == 1 and "checksum mismatch" in result.output and digest in result.output
        assert not any(target.iterdir())
        missing = CliRunner().invoke(main, ["weights", "fetch", "syncnet", "--weights-dir", str(target),
                                            "--url", f"{base}/nothing.model"])
        assert missing.exit_code == 1 and "cannot download" in missing.output and "404" in missing.output
        # a file whose checksum is the known one is kept under its published name
        monkeypatch.setitem(weights.KNOWN, "syncnet",
                            dataclasses.replace(weights.KNOWN["syncnet"], sha256=digest))
        path = weights.fetch("syncnet", target, url=f"{base}/syncnet_v2.model", progress=False)
    assert path == target / "syncnet_v2.model" and weights.sha256(path) == digest
    assert sorted(p.name for p in target.iterdir()) == ["syncnet_v2.model"]
    monkeypatch.setenv(weights.ENV_VAR, str(target))
    verify = CliRunner().invoke(main, ["weights", "verify"])
    assert "syncnet: official" in verify.output
