"""The recipe of docs/recipe.md as written, at its smallest size (its smoke-run lines, on GRID clips):
prepare -> train-syncnet -> stability -> train-silent -> train-generator -> generate -> eval (whole frame, mouth)
-> table.
Around it: prepare's resumption after a kill and its shards, the crop geometry recorded from prepare
to generate, generate's lower-face paste, and the setup files of configs/."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lipsync_bench import media
from lipsync_bench.cli import main
from lipsync_bench.errors import LipsyncBenchError

REPO = Path(__file__).resolve().parents[1]


def smoke_lines() -> list[str]:
    """The commands of docs/recipe.md's smoke run, in order."""
    text = (REPO / "docs" / "recipe.md").read_text()
    block = text.split("<!-- smoke-run -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [ln.strip() for ln in block.strip().splitlines() if ln.strip()]


def raw_videos(folder: Path, clips: list[Path]) -> Path:
    """Two 'videos' of LRS2's <video>/<utterance> kind: two utterances of s1, one of s2."""
    for sub, clip in zip(["s1", "s1", "s2"], clips, strict=True):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, folder / sub / clip.name)
    return folder


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, grid_clips) -> dict:
    root = tmp_path_factory.mktemp("recipe")
    paths = {"$RAW": str(raw_videos(root / "raw", grid_clips[:3])), "$GT": str(root / "gt"),
             "$WORK": str(root / "work"), "configs/": f"{REPO / 'configs'}/"}
    (root / "gt").mkdir()
    shutil.copy(grid_clips[3], root / "gt" / "clip.mpg")
    steps = []
    for line in smoke_lines():
        for key, value in paths.items():
            line = line.replace(key, value)
        args = shlex.split(line)
        assert args[0] == "lipsync-bench"
        started = time.perf_counter()
        result = CliRunner().invoke(main, args[1:])
        steps.append({"command": args[1], "exit_code": result.exit_code, "output": result.output,
                      "seconds": time.perf_counter() - started})
        assert result.exit_code == 0, f"{line}\n{result.output}"
    return {"root": root, "work": root / "work", "gt": root / "gt" / "clip.mpg", "steps": steps}


@pytest.mark.slow
def test_the_smoke_recipe_runs_as_written_and_records_one_crop_geometry(recipe):
    from lipsync_bench.syncnets.inputs import FACE_CROP

    assert [s["command"] for s in recipe["steps"]] == ["prepare", "train-syncnet", "stability", "train-silent",
                                                       "train-generator", "generate", "eval", "eval", "table"]
    work = recipe["work"]
    manifest = json.loads((work / "prepared" / "prepared.json").read_text())
    assert manifest["crop_geometry"] == FACE_CROP.as_dict()
    assert manifest["fps"] == 25 and manifest["sample_rate"] == 16000
    assert sorted(p.relative_to(work / "prepared").as_posix() for p in (work / "prepared").rglob("*.npz")) == [
        "s1/bbaf2n.npz", "s1/brbk7n.npz", "s2/id2_vcd_swwp2s.npz"]
    # every step read the prepared folder, and every checkpoint and study names the geometry
    for run in ("expert", "silent", "setup-H"):
        meta = json.loads((work / run / "run.json").read_text())
        assert meta["layout"] == "prepared" and meta["crop_geometry"]["name"] == FACE_CROP.name, run
        ckpt = torch.load(work / run / "last.pt", map_location="cpu", weights_only=True)
        assert ckpt["crop_geometry"] == FACE_CROP.as_dict(), run
    expert = json.loads((work / "expert" / "run.json").read_text())
    assert expert["train_clips"] + expert["val_clips"] == 3
    study = json.loads((work / "stability" / "stability.json").read_text())
    assert study["protocol"]["crop_geometry"] == FACE_CROP.name
    setup = json.loads((work / "setup-H" / "run.json").read_text())["config"]
    assert setup["setup"] == "H" and setup["w_sync"] == 2.0 and setup["w_at"] == 0.5 and setup["base"] == 4  # tiny wins
    table = recipe["steps"][-1]["output"]
    assert "setup-H" in table and "Ours w/o FR (reported, yaman2024)" in table
    assert "SSIM [mouth]↑" in table and "SSIM [full]↑" in table and "setup-H-mouth" in table
    for run in ("silent", "setup-H"):  # stopped by --max-steps: validated, best kept, a snapshot, a sample
        assert (work / run / "best.pt").is_file() and (work / run / "snapshots" / "step_0000002.pt").is_file()
        assert (work / run / "samples" / "step_0000002.png").is_file()
        assert ",val," in (work / run / "log.csv").read_text()


@pytest.mark.slow
def test_generate_changes_the_lower_face_only(recipe):
    """Against the input, frame by frame: the upper face (brows to the base of the nose) and the area
    below the chin are unchanged (SSIM >= 0.99; the feathered rectangle pasted before reached below the
    chin: SSIM down to 0.89 there on this clip), while the mouth changed."""
    from skimage.metrics import structural_similarity

    from lipsync_bench.faces import FaceAnalyzer

    before = media.read_frames(recipe["gt"])
    after = media.read_frames(recipe["work"] / "generated" / "clip.mkv")
    assert len(after) == len(before) - 1  # the audio's length: 2.96 s
    analyzer = FaceAnalyzer("dlib")
    analyzer.update(before)
    landmarks = analyzer.result().landmarks
    upper, below, mouth = [], [], []
    for i in range(len(after)):
        p = landmarks[i]
        if not np.isfinite(p).all():
            continue
        x0, x1 = int(p[0, 0]), int(p[16, 0])
        width = x1 - x0
        top, nose, chin = int(p[17:27, 1].min() - 0.2 * width), int(p[31:36, 1].min()) - 2, int(p[8, 1]) + 2
        for store, rows in ((upper, slice(max(0, top), nose)), (below, slice(chin, chin + int(0.4 * width)))):
            store.append(structural_similarity(before[i, rows, x0:x1], after[i, rows, x0:x1], channel_axis=-1,
                                               data_range=255))
        m0, m1 = p[48:68].min(0).astype(int), p[48:68].max(0).astype(int)
        mouth.append(np.abs(before[i, m0[1]:m1[1], m0[0]:m1[0]].astype(int)
                            - after[i, m0[1]:m1[1], m0[0]:m1[0]].astype(int)).mean())
    assert len(upper) > 60
    assert min(upper) >= 0.99 and min(below) >= 0.99, (min(upper), min(below))
    assert np.mean(mouth) > 5  # a 2-step model: the mouth is redrawn, badly


@pytest.mark.slow
def test_generate_warns_about_a_checkpoint_of_another_crop_geometry(recipe, tmp_path):
    from lipsync_bench.syncnets.inputs import WAV2LIP_CROP

    ckpt = torch.load(recipe["work"] / "setup-H" / "last.pt", map_location="cpu", weights_only=True)
    ckpt["crop_geometry"] = WAV2LIP_CROP.as_dict()
    torch.save(ckpt, tmp_path / "w2l.pt")
    result = CliRunner().invoke(main, ["generate", "--face", str(recipe["gt"]), "--audio", str(recipe["gt"]), "--ckpt",
                                       str(tmp_path / "w2l.pt"), "--out", str(tmp_path / "o.mp4"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "trained on crops of geometry wav2lip-preprocess" in result.output
    ok = CliRunner().invoke(main, ["generate", "--face", str(recipe["gt"]), "--audio", str(recipe["gt"]), "--ckpt",
                                   str(recipe["work"] / "setup-H" / "last.pt"), "--out", str(tmp_path / "p.mp4"),
                                   "--json", "--quiet"])
    assert ok.exit_code == 0 and json.loads(ok.output)["warnings"] == []


def _npz_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*.npz")}


@pytest.mark.slow
def test_prepare_resumes_after_a_kill(grid_clips, tmp_path):
    """prepare killed (SIGKILL) once its first clip is written, then run again: the clip written before
    is kept as it is, the others are done, no temporary file is left, and the folder equals one
    prepared without interruption."""
    raw = raw_videos(tmp_path / "raw", grid_clips[:3])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "lipsync_bench", "prepare", "--data", str(raw), "--out", str(out),
                             "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not [p for p in _npz_files(out) if not Path(p).name.startswith(".")] and proc.poll() is None:
        assert time.monotonic() < deadline, "prepare wrote nothing in 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {k: p.stat().st_mtime_ns for k, p in _npz_files(out).items() if not Path(k).name.startswith(".")}
    assert 1 <= len(first) < 3
    result = CliRunner().invoke(main, ["prepare", "--data", str(raw), "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert sorted(doc["already"]) == sorted(k[:-4] for k in first) and len(doc["prepared"]) == 3 - len(first)
    files = _npz_files(out)
    assert sorted(files) == ["s1/bbaf2n.npz", "s1/brbk7n.npz", "s2/id2_vcd_swwp2s.npz"]  # no temporary file left
    assert all(files[k].stat().st_mtime_ns == t for k, t in first.items())
    clean = CliRunner().invoke(main, ["prepare", "--data", str(raw), "--out", str(tmp_path / "clean"), "--quiet"])
    assert clean.exit_code == 0, clean.output
    for name, path in files.items():
        with np.load(path) as a, np.load(tmp_path / "clean" / name) as b:
            assert sorted(a.files) == sorted(b.files)
            assert all(np.array_equal(a[k], b[k]) for k in a.files), name


@pytest.mark.slow
def test_prepare_shards_write_one_folder_and_refuse_what_they_cannot_use(grid_clips, tmp_path):
    raw = raw_videos(tmp_path / "raw", grid_clips[:3])
    out = tmp_path / "out"
    done = []
    for shard in ("0/2", "1/2"):
        result = CliRunner().invoke(main, ["prepare", "--data", str(raw), "--out", str(out), "--shard", shard, "--json",
                                           "--quiet"])
        assert result.exit_code == 0, result.output
        done += json.loads(result.output)["prepared"]
    assert sorted(done) == ["s1/bbaf2n", "s1/brbk7n", "s2/id2_vcd_swwp2s"]
    assert (out / "prepare-report-shard-0-of-2.json").is_file() and (out / "prepare-report-shard-1-of-2.json").is_file()
    listed = tmp_path / "train.txt"
    listed.write_text("s1/brbk7n\n")
    from lipsync_bench.research.datasets import open_clips

    assert [c.name for c in open_clips(out, filelist=listed).clips] == ["s1/brbk7n"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    for args, message in ((["--out", str(other)], "not empty and not a prepared folder"),
                          (["--out", str(raw / "sub")], "inside --data"),
                          (["--out", str(out), "--shard", "2/2"], "expected I/N with 0 <= I < N")):
        result = CliRunner().invoke(main, ["prepare", "--data", str(raw), *args])
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


# --------------------------------------------------------------------------------------------------
# configs/


def test_every_setup_file_trains_its_setup():
    from lipsync_bench.research.generator.config import SETUPS, config_from_file

    files = sorted((REPO / "configs").glob("setup-*.toml"))
    assert [f.stem[-1] for f in files] == list("ABCDEFGH")
    for path in files:
        setup = path.stem[-1]
        if setup == "C":
            with pytest.raises(LipsyncBenchError, match="Wav2Vec2"):
                config_from_file(path, None, False, False)
            continue
        config = config_from_file(path, None, False, False)
        assert config.setup == setup and all(getattr(config, k) == v for k, v in SETUPS[setup].items())
        assert (config.w_gan, config.w_pixel, config.w_per, config.w_sync, config.w_at) == (1, 10, 1, 2, 0.5)
        assert config.batch_size == 16 and config.size == 96
        assert config_from_file(path, setup.lower(), False, False) == config  # --setup may repeat the file's
        tiny = config_from_file(path, None, False, True, batch_size=2)
        assert (tiny.base, tiny.batch_size, tiny.perceptual) == (4, 2, False)
    with pytest.raises(LipsyncBenchError, match="--setup A but .*setup-H.toml is setup 'H'"):
        config_from_file(REPO / "configs" / "setup-H.toml", "A", False, False)
    silent = config_from_file(REPO / "configs" / "silent.toml", None, True, False)
    assert silent.setup == "silent" and silent.w_sync == 0 and silent.batch_size == 16
    with pytest.raises(LipsyncBenchError, match="train-silent takes"):
        config_from_file(REPO / "configs" / "setup-H.toml", None, True, False)
