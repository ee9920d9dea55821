"""The bad-input catalogue: every case gets its exact user-facing message, no traceback, and the other
videos' results stay intact. Most cases share one `eval` over a folder that mixes them with good pairs."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lipsync_bench import media, weights
from lipsync_bench.cli import main
from lipsync_bench.syncnets.syncnet import SyncNet
from tests.helpers import GRID

pytest.importorskip("python_speech_features")
pytest.importorskip("dlib")

LSE_NEEDS_AUDIO = "LSE needs the driving audio (--param lse.audio=gt takes the GT's)"
TOO_SHORT = "shorter than 6: LSE needs at least 6 (one 5-frame window and the reference's one-window margin)"


def _write(path, frames, fps=25, audio=None, pix_fmt="bgr0", fmt="rgb24"):
    """Lossless video of ``frames`` with any pixel format and (possibly absurd) frame rate."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for image in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(image, format=fmt)):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """gen/ and gt/ with one case per name (and good pairs), evaluated once; the CLI output by line."""
    clip = GRID / "bbaf2n.mpg"
    if not clip.is_file():
        pytest.skip(f"GRID clip not found under {GRID}")
    root = tmp_path_factory.mktemp("bad")
    gen, gt, wdir = root / "gen", root / "gt", root / "weights"
    for d in (gen, gt, wdir):
        d.mkdir()
    frames, audio = media.read_frames(clip), media.read_audio(clip)

    def gt_copy(name):
        shutil.copy(clip, gt / f"{name}.mpg")

    def pair(name, gen_frames, gt_frames=frames, gen_audio=audio, gt_audio=audio):
        media.write_video(gen / f"{name}.avi", gen_frames, 25, gen_audio, codec="ffv1")
        media.write_video(gt / f"{name}.avi", gt_frames, 25, gt_audio, codec="ffv1")

    shutil.copy(clip, gen / "good.mpg")
    gt_copy("good")
    shutil.copy(clip, gen / "ünï cödé 1.mpg")  # unicode and spaces in a name
    gt_copy("ünï cödé 1")
    (gen / "zero.mp4").write_bytes(b"")
    gt_copy("zero")
    real = media.write_video(root / "real.mp4", frames, 25, audio)
    (gen / "truncated.mp4").write_bytes(real.read_bytes()[:4000])
    gt_copy("truncated")
    (gen / "text.mp4").write_text("a text file, not a video\n")
    gt_copy("text")
    with av.open(str(gen / "audio_only.mkv"), "w") as c:  # no video stream
        s = c.add_stream("pcm_s16le", rate=16000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.round(audio[None] * 32767).astype(np.int16), format="s16", layout="mono")
        f.sample_rate = 16000
        for p in [*s.encode(f), *s.encode(None)]:
            c.mux(p)
    gt_copy("audio_only")
    pair("silent", frames, gen_audio=None)  # no audio stream: LSE fails, the rest runs
    pair("one_frame", frames[:1], frames[:1], audio[:640], audio[:640])
    pair("four_frames", frames[:4], frames[:4], audio[:2560], audio[:2560])
    pair("other_size", np.ascontiguousarray(frames[:, ::2, ::2]))
    pair("small_gap", frames[:73])
    pair("large_gap", frames[:50])
    media.write_video(gen / "variable_rate.mp4", frames, 30, audio)  # a native rate other than the protocol's
    shutil.copy(gen / "variable_rate.mp4", gt / "variable_rate.mp4")
    _write(gen / "fps_1000.mkv", frames, fps=1000)  # absurd frame-rate metadata
    gt_copy("fps_1000")
    gray = np.round(frames.mean(axis=3)).astype(np.uint8)
    _write(gen / "grayscale.mkv", gray, pix_fmt="gray", fmt="gray")
    media.write_video(gt / "grayscale.avi", np.repeat(gray[..., None], 3, axis=3), 25, audio, codec="ffv1")
    for name in ("rgba", "png16"):
        folder = gen / name
        folder.mkdir()
        for i, image in enumerate(frames):
            if name == "rgba":
                Image.fromarray(np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]), "RGBA").save(
                    folder / f"{i}.png")
            else:
                Image.fromarray((gray[i].astype(np.uint16) * 257)).save(folder / f"{i}.png")
        gt_copy(name)
    shutil.copy(clip, gen / "dup.mpg")  # two inputs with one stem
    shutil.copy(clip, gen / "dup.avi")
    gt_copy("dup")
    shutil.copy(clip, gen / "only_in_gen.mpg")
    gt_copy("only_in_gt")
    (gen / "loop").symlink_to(root, target_is_directory=True)  # a folder that is a symlink loop
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), wdir / "syncnet_v2.model")

    cwd = os.getcwd()
    os.chdir(root)  # messages name files as the user typed them
    try:
        result = CliRunner().invoke(main, ["eval", "--gen", "gen", "--gt", "gt", "--out", "res", "--weights-dir",
                                           "weights", "--metrics", "ssim,ifc,lse_c", "--quiet"])
        doc = json.loads(CliRunner().invoke(main, ["eval", "--gen", "gen", "--gt", "gt", "--out", "res",
                                                   "--weights-dir", "weights", "--metrics", "ssim,ifc,lse_c",
                                                   "--json"]).output)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return root, result.output.splitlines(), doc


def line_of(lines, prefix):
    found = [line for line in lines if line.startswith(prefix)]
    assert len(found) == 1, (prefix, lines)
    return found[0]


@pytest.mark.parametrize("case, message", [
    ("zero", "FAILED zero: gen/zero.mp4: empty file (0 bytes)"),
    ("truncated", "FAILED truncated: gen/truncated.mp4: not a readable video (Invalid data found when processing "
                  "input)"),
    ("text", "FAILED text: gen/text.mp4: not a readable video (Invalid data found when processing input)"),
    ("audio_only", "FAILED audio_only: gen/audio_only.mkv: no video stream"),
    ("silent", f"FAILED silent (lse_c): gen/silent.avi: no audio stream; {LSE_NEEDS_AUDIO}"),
    ("one_frame", "FAILED one_frame (ifc, lse_c): IFC needs at least 2 frames"),
    ("four_frames", f"FAILED four_frames (lse_c): gen/four_frames.avi: 4 frames, {TOO_SHORT}"),
    ("other_size", "FAILED other_size (ifc, ssim): frame sizes differ: generated 180x144, ground truth 360x288 "
                   "(--set decode.resize=area compares them with the generated frames resized to the ground truth's "
                   "size, recorded in the protocol)"),
    ("large_gap", "FAILED large_gap: frame counts differ by more than 3 at 25 fps: generated has 50 frames, "
                  "ground truth at least 75 (--max-frame-gap)"),
    ("fps_1000", "FAILED fps_1000: frame counts differ by more than 3 at 25 fps: generated has 3 frames, ground "
                 "truth at least 64 (--max-frame-gap); their native frame rates differ: generated 1000 fps, "
                 "ground truth 25 fps"),
    ("png16", "FAILED png16: gen/png16/0.png: I;16 frames (16-bit or float) are not supported; save frames as "
              "8-bit RGB"),
    ("rgba", f"FAILED rgba (lse_c): gen/rgba: frame folder has no audio.wav; {LSE_NEEDS_AUDIO}"),
    ("grayscale", f"FAILED grayscale (lse_c): gen/grayscale.mkv: no audio stream; {LSE_NEEDS_AUDIO}"),
    ("dup", "FAILED dup: several inputs share the name 'dup' (dup.avi, dup.mpg); keep one"),
    ("small_gap", "warning small_gap: frame counts differ by 2 (generated 73, ground truth 75); truncated to 73"),
    ("loop", "skipped gen/loop: a symbolic link to {root}, which contains it (a loop); not entered"),
    ("only_in_gen", "unpaired in --gen (1): only_in_gen"),
    ("only_in_gt", "unpaired in --gt (1): only_in_gt"),
    ("ground truth", f"FAILED ground truth four_frames: gt/four_frames.avi: 4 frames, {TOO_SHORT}"),
])
@pytest.mark.slow
def test_each_case_has_its_exact_message(catalogue, case, message):
    root, lines, _ = catalogue
    message = message.replace("{root}", os.path.realpath(root))
    assert line_of(lines, message.split(":")[0] + ":") == message


@pytest.mark.slow
def test_the_good_and_the_recoverable_inputs_keep_their_values(catalogue):
    _, _, doc = catalogue
    videos = doc["videos"]
    for name in ("good", "ünï cödé 1", "variable_rate", "small_gap"):
        assert videos[name]["ssim"] > 0.99 and np.isfinite(videos[name]["lse_c"]), name
    assert videos["good"]["ssim"] == 1.0 and videos["variable_rate"]["ssim"] == 1.0
    # metrics that can run on a partly bad input still do
    assert videos["silent"]["ssim"] == 1.0 and "lse_c" not in videos["silent"]
    assert videos["one_frame"]["ssim"] == 1.0
    assert videos["rgba"]["ssim"] == 1.0  # RGBA PNG frames: the alpha channel is dropped
    assert videos["grayscale"]["ssim"] == 1.0  # a gray video decodes to equal R, G, B
    assert videos["good"]["lse_c"] == pytest.approx(videos["ünï cödé 1"]["lse_c"])
    assert doc["counts"]["pairs"] == 17  # "dup" is a problem, not a pair


def test_empty_folder(tmp_path):
    (tmp_path / "gen").mkdir()
    (tmp_path / "gt").mkdir()
    result = CliRunner().invoke(main, ["eval", "--gen", str(tmp_path / "gen"), "--gt", str(tmp_path / "gt"),
                                       "--out", str(tmp_path / "r"), "--metrics", "psnr", "--quiet"])
    assert result.exit_code == 1
    assert result.output == (f"error: no pairs: no file name in {tmp_path / 'gen'} matches one in "
                             f"{tmp_path / 'gt'} (0 inputs in --gen, 0 in --gt)\n")
    assert not (tmp_path / "r").exists()  # nothing written


def _pair_dir(tmp_path):
    clip = GRID / "bbaf2n.mpg"
    if not clip.is_file():
        pytest.skip("GRID clip not found")
    for side in ("gen", "gt"):
        (tmp_path / side).mkdir()
        shutil.copy(clip, tmp_path / side / clip.name)
    return ["--gen", str(tmp_path / "gen"), "--gt", str(tmp_path / "gt"), "--quiet"]


def test_corrupt_store_and_store_of_another_protocol(tmp_path):
    args = _pair_dir(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "lipsync_bench.sqlite").write_bytes(b"not a database at all" * 100)
    result = CliRunner().invoke(main, ["eval", *args, "--out", str(tmp_path / "broken"), "--metrics", "psnr"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"error: {tmp_path / 'broken' / 'lipsync_bench.sqlite'}: not a readable "
                                    "lipsync-bench results store")
    ok = CliRunner().invoke(main, ["eval", *args, "--out", str(tmp_path / "r"), "--metrics", "psnr"])
    assert ok.exit_code == 0
    other = CliRunner().invoke(main, ["eval", *args, "--out", str(tmp_path / "r"), "--metrics", "psnr",
                                      "--fps", "30"])
    assert other.exit_code == 1
    assert ("under another protocol (protocol: stored 'lipsync-bench', now 'lipsync-bench (modified)'; decode.fps: "
            "stored 25.0, now 30.0); results of two protocols are never mixed") \
        in other.output


@pytest.mark.parametrize("kind", ["truncated", "pickled code", "wrong layout"])
def test_bad_checkpoint_fails_lse_only(tmp_path, monkeypatch, kind):
    args = _pair_dir(tmp_path)
    wdir = tmp_path / "w"
    wdir.mkdir()
    path = wdir / "syncnet_v2.model"
    if kind == "truncated":
        torch.save(SyncNet().state_dict(), path)
        path.write_bytes(path.read_bytes()[:100_000])
    elif kind == "pickled code":
        class Payload:
            def __reduce__(self):
                return (print, ("this must never run",))

        torch.save({"x": Payload()}, path)
    else:
        torch.save({"conv.weight": torch.zeros(3)}, path)
    monkeypatch.setenv(weights.ENV_VAR, str(wdir))
    result = CliRunner().invoke(main, ["eval", *args, "--out", str(tmp_path / "r"), "--metrics", "psnr,lse_c"])
    assert result.exit_code == 0 and "Traceback" not in result.output and "this must never run" not in result.output
    line = line_of(result.output.splitlines(), "FAILED bbaf2n (lse_c):")
    expected = {"truncated": "cannot be loaded as SyncNet weights", "pickled code": "Weights only load failed",
                "wrong layout": "not in syncnet_v2.model's layout"}[kind]
    assert str(path) in line and expected in line
    assert "PSNR" in result.output


@pytest.mark.slow
def test_weights_with_another_checksum_are_marked_unofficial(tmp_path, monkeypatch):
    args = _pair_dir(tmp_path)
    wdir = tmp_path / "w"
    wdir.mkdir()
    torch.save(SyncNet().state_dict(), wdir / "syncnet_v2.model")
    monkeypatch.setenv(weights.ENV_VAR, str(wdir))
    result = CliRunner().invoke(main, ["eval", *args, "--out", str(tmp_path / "r"), "--metrics", "lse_d"])
    digest = weights.sha256(wdir / "syncnet_v2.model")
    assert f"note: lse_d used unofficial weights (syncnet_v2.model, sha256 {digest[:16]}…): not comparable " \
           "with published numbers" in result.output
    table = CliRunner().invoke(main, ["table", "--dataset", "gt", "--results", str(tmp_path / "r")])
    assert "†" in table.output and "unofficial weights" in table.output
    verify = CliRunner().invoke(main, ["weights", "verify"])
    assert verify.exit_code == 1 and f"syncnet: UNOFFICIAL sha256 {digest}" in verify.output


@pytest.mark.slow
def test_store_rows_are_not_lost_when_a_video_fails(catalogue):
    """The store holds one row per video and metric: values for good ones, the error for bad ones."""
    root, _, _ = catalogue
    db = sqlite3.connect(root / "res" / "lipsync_bench.sqlite")
    rows = dict(db.execute("SELECT video || '/' || metric, coalesce(value, error) FROM results r JOIN runs u "
                           "ON r.run_id = u.run_id WHERE u.method = 'gen'"))
    assert rows["good/ssim"] == 1.0 and rows["zero/ssim"].endswith("empty file (0 bytes)")
