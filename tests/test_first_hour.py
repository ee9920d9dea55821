"""What a new user meets in the first hour, each a defect once: explicit metrics that cannot run refused
before work, a size mismatch failing only the metrics that compare frames, notes and advice that read
right, ``calibrate`` and ``protocols`` that do not claim more than they did."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lipsync_bench
from lipsync_bench import media
from lipsync_bench.cli import main
from lipsync_bench.syncnets.syncnet import SyncNet
from tests.helpers import GRID, ROOT, ffmpeg_exe, write_lossless


@pytest.fixture(scope="module")
def clip():
    path = GRID / "bbaf2n.mpg"
    if not path.is_file():
        pytest.skip(f"GRID clip not found: {path}")
    return path


@pytest.fixture(scope="module")
def syncnet_file(tmp_path_factory):
    """Seeded random SyncNet weights under a user's own name (not the published one)."""
    path = tmp_path_factory.mktemp("expert") / "last.pt"
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), path)
    return path


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", *args], check=True)


def test_a_named_metric_that_cannot_run_is_refused_before_any_work(clip, tmp_path):
    frames = media.read_frames(clip)[:6]
    for side in ("gen", "gt"):
        write_lossless(tmp_path / side / clip.stem, frames)
    runner = CliRunner()
    args = ["eval", "--gen", str(tmp_path / "gen"), "--gt", str(tmp_path / "gt"), "--out", str(tmp_path / "r")]
    result = runner.invoke(main, [*args, "--metrics", "lse_c,ssim"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: lse_c cannot run here: needs syncnet_v2.model")
    assert "lipsync-bench weights fetch syncnet" in result.output and "leave --metrics out" in result.output
    assert not (tmp_path / "r").exists()  # no store, no results.csv, no summary.json
    # the protocol's own metrics that cannot run are skipped, saying why, and the others computed
    default = runner.invoke(main, [*args, "--protocol", "lipsync-bench", "--quiet"])
    assert default.exit_code == 0, default.output
    assert "skipped lse_c: needs syncnet_v2.model" in default.output and "SSIM↑" in default.output


def test_another_frame_size_fails_only_the_metrics_that_compare_frames(clip, tmp_path):
    (tmp_path / "gen").mkdir()
    (tmp_path / "gt").mkdir()
    shutil.copy(clip, tmp_path / "gt" / clip.name)
    _ffmpeg("-i", str(clip), "-vf", "scale=320:240", "-c:v", "libx264", "-crf", "18", "-an",
            str(tmp_path / "gen" / f"{clip.stem}.mp4"))
    both = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["ssim", "psnr", "lmd", "cpbd", "niqe"],
                                  out=tmp_path / "r")
    alone = lipsync_bench.evaluate(tmp_path / "gen", None, ["cpbd", "niqe"])
    s = both.summary
    assert s.loc["ssim", "failed"] == 1 and s.loc["psnr", "failed"] == 1 and s.loc["lmd", "failed"] == 1
    assert "frame sizes differ: generated 320x240, ground truth 360x288" in both.failures.error[0]
    assert both.failures.metrics[0] == "lmd, psnr, ssim"
    from lipsync_bench.faces import FaceData

    cached = list((tmp_path / "r" / "cache").rglob("*.npz"))  # the GT's analysis never ran: none cached empty
    assert all(len(FaceData.load(f).boxes) > 0 for f in cached)
    for metric in ("cpbd", "niqe"):  # as they are on the generated video alone
        assert s.loc[metric, "n"] == 1 and s.loc[metric, "mean"] == alone.summary.loc[metric, "mean"]


def test_a_changed_choice_with_an_unset_protocol_value_reads_unset(clip, syncnet_file, tmp_path):
    for side in ("gen", "gt"):
        (tmp_path / side).mkdir()
        shutil.copy(clip, tmp_path / side / clip.name)
    result = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lse_c"],
                                    params={"lse": {"sync_weights": str(syncnet_file)}})
    note = next(line for line in result.text().splitlines() if "lse_c.sync_weights" in line)
    assert note == f"note: lse_c.sync_weights = {syncnet_file} (protocol lipsync-bench leaves it unset)"


def test_a_gt_without_audio_is_not_told_to_take_the_gts_audio(clip, syncnet_file, tmp_path):
    (tmp_path / "gen").mkdir()
    (tmp_path / "gt").mkdir()
    shutil.copy(clip, tmp_path / "gen" / clip.name)
    _ffmpeg("-i", str(clip), "-c:v", "copy", "-an", str(tmp_path / "gt" / clip.name))
    gen_audio = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lse_c"],
                                       params={"lse": {"sync_weights": str(syncnet_file)}})
    assert gen_audio.summary.loc["lse_c", "n"] == 1  # the generated video carries the audio
    gt_errors = json.dumps(gen_audio.ground_truth)
    assert "LSE needs the driving audio" in gt_errors and "lse.audio=gt" not in gt_errors
    gt_audio = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lse_c"],
                                      params={"lse": {"sync_weights": str(syncnet_file), "audio": "gt"}})
    assert "(--param lse.audio=gen takes the generated video's)" in gt_audio.failures.error[0]
    assert np.isnan(gt_audio.videos.value[0])


def test_the_readmes_api_example_runs_offline_and_prints_what_eval_prints(clip, tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    example = readme.split("## Python API")[1].split("```python\n")[1].split("```")[0]
    frames = media.read_frames(clip)[:10]
    write_lossless(tmp_path / "out" / "wav2lip" / clip.stem, frames[::-1].copy())
    write_lossless(tmp_path / "data" / "hdtf" / clip.stem, frames)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    result = namespace["result"]
    assert 0 < result.summary.loc["ssim", "mean"] < 1 and result.summary.loc["cpbd", "n"] == 1
    printed = CliRunner().invoke(main, ["eval", "--gen", "out/wav2lip", "--gt", "data/hdtf", "--metrics",
                                        "ssim,psnr,cpbd", "--name", "wav2lip", "--dataset", "hdtf", "--out",
                                        "results/", "--json"])
    assert printed.exit_code == 0, printed.output
    cli, api = json.loads(printed.output), json.loads(result.json_text())
    for key in ("summary", "videos", "protocol", "metric_params", "failures", "skipped_metrics"):
        assert cli[key] == api[key], key


def test_one_pair_of_files_and_a_misspelled_metric(clip, tmp_path):
    frames = media.read_frames(clip)[:6]
    gen, gt = write_lossless(tmp_path / "mine", frames), write_lossless(tmp_path / "theirs", frames)
    runner = CliRunner()
    result = runner.invoke(main, ["eval", "--gen", str(gen), "--gt", str(gt), "--metrics", "ssim", "--out",
                                  str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["method"] == "mine" and doc["dataset"] == "theirs" and doc["videos"] == {"mine": {"ssim": 1.0}}
    (tmp_path / "empty").mkdir()
    typo = runner.invoke(main, ["eval", "--gen", str(tmp_path / "empty"), "--gt", str(tmp_path / "empty"),
                                "--metrics", "sism", "--out", str(tmp_path / "r2")])
    # the name is checked before the folders are listed or a model loaded
    assert typo.exit_code == 2 and typo.output.startswith("error: unknown metric 'sism' (did you mean ssim? known: ")


def test_native_rates_that_differ_are_refused_as_stored_and_noted_when_resampled(clip, tmp_path):
    frames = media.read_frames(clip)[:25]
    write_lossless(tmp_path / "gen" / "a", frames[:30], fps=30)
    write_lossless(tmp_path / "gt" / "a", frames, fps=25)
    runner = CliRunner()
    args = ["eval", "--gen", str(tmp_path / "gen"), "--gt", str(tmp_path / "gt"), "--metrics", "ssim"]
    stored = runner.invoke(main, [*args, "--fps", "0", "--out", str(tmp_path / "r0")])
    assert stored.exit_code == 2 and "a (generated 30 fps, ground truth 25 fps)" in stored.output
    assert stored.output.rstrip().endswith("--fps 25 resamples both to 25 fps") and not (tmp_path / "r0").exists()
    resampled = runner.invoke(main, [*args, "--out", str(tmp_path / "r"), "--quiet"])
    assert resampled.exit_code == 0, resampled.output
    assert ("note: native frame rates differ in 1 of the first 1 pairs (both resampled to 25 fps): a (generated 30 "
            "fps, ground truth 25 fps)") in resampled.output


def test_inputs_that_look_swapped_or_copied_are_noted(clip, tmp_path):
    frames = media.read_frames(clip)[:6]
    for name in ("a", "b", "c"):
        write_lossless(tmp_path / "gen" / name, frames)
    (tmp_path / "gt").mkdir()
    shutil.copy(tmp_path / "gen" / "a.avi", tmp_path / "gt" / "a.avi")
    result = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["ssim"])
    assert ("--gen holds more unpaired inputs (2) than pairs (1): are --gen (the generated videos) and --gt (the "
            "ground truth) swapped?") in result.notes
    assert ("1 of 1 generated inputs are byte-identical to their GT (a copy of the ground truth, or --gen and --gt "
            "naming the same videos?): a") in result.notes
    assert "note: 1 of 1 generated inputs are byte-identical" in result.text()


def test_niqe_on_frames_too_small_for_its_model_warns(clip, tmp_path):
    small = media.read_frames(clip)[:3, 60:210, 100:250]  # 150x150: one 96x96 block a frame
    write_lossless(tmp_path / "gen" / "small", np.ascontiguousarray(small))
    result = lipsync_bench.evaluate(tmp_path / "gen", None, ["niqe"])
    assert result.summary.loc["niqe", "n"] == 1
    assert any("too few for its covariance, not comparable with NIQE of larger frames" in w
               for w in result.videos.warnings[0])
    assert "warning small: NIQE from 1 96x96 block(s) a frame" in result.text()


def test_lse_with_an_audio_file_of_another_length_warns(clip, syncnet_file, tmp_path):
    from lipsync_bench.metrics.lse import score_file

    samples = media.read_audio(clip)
    wav = tmp_path / "long.wav"
    from scipy.io import wavfile

    wavfile.write(wav, 16000, (np.concatenate([samples, samples, samples]) * 32767).astype(np.int16))
    doc = score_file(clip, wav, sync_weights=syncnet_file)
    assert doc["protocol"]["seconds"] == {"video": 3.0, "audio": pytest.approx(9.0, abs=0.1)}
    assert doc["warnings"] == [f"{wav} lasts {doc['protocol']['seconds']['audio']:.2f} s and the video 3.00 s: is it "
                               "this video's audio? (scores read the audio from the video's first frame on)"]
    assert "warning: " in doc.text()
    assert score_file(clip, sync_weights=syncnet_file)["warnings"] == []  # its own audio


def test_the_face_stage_shows_its_frames_and_keeps_its_time(clip, tmp_path, capsys):
    frames = media.read_frames(clip)[:8]
    for side in ("gen", "gt"):
        write_lossless(tmp_path / side / clip.stem, frames)
    result = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["ssim", "lmd"], out=tmp_path / "r",
                                    progress=True)
    assert f"{clip.stem}: frames and faces: " in capsys.readouterr().err  # its own bar, under the videos bar
    from lipsync_bench.store import ResultStore

    store = ResultStore.open_existing(tmp_path / "r")
    try:
        lmd, ssim = (store.details(result.run, m)[clip.stem] for m in ("lmd", "ssim"))
    finally:
        store.close()
    assert lmd["face_seconds"] > 0 and "face_seconds" not in ssim  # the face stage's time, with its metrics
    assert len(lmd["per_frame"]) == len(ssim["per_frame"]) == 8  # the per-frame values the report draws
