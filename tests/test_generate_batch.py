"""`generate` over folders of clips in one process: names mirrored, a file list of LRS2 names, one bad
clip failing alone, resumable reruns, options checked before any work, and the single-file form
unchanged and drawing the same video as the folder form."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.io import wavfile

from lipsync_bench import media
from lipsync_bench.checkpoints import save_checkpoint
from lipsync_bench.cli import main
from lipsync_bench.research.generator import inference
from lipsync_bench.research.generator.config import GeneratorConfig
from lipsync_bench.research.generator.trainer import generator_checkpoint, make_generator
from lipsync_bench.syncnets.avsyncnet import TINY, AVSyncNet
from lipsync_bench.syncnets.inputs import FACE_CROP

pytest.importorskip("dlib")

FRAMES = 10  # 0.4 s a clip (a face track needs more than 5 frames): about a second each on 2 cores


def write_tiny_checkpoint(path):
    """A setup-H checkpoint of the tiny configuration as train-generator writes it (seeded random G_L,
    G_S and tiny AVSyncNet audio encoder, the crop geometry of generate): built, not trained."""
    torch.manual_seed(0)
    config = GeneratorConfig.for_setup("H", tiny=True)
    source = {"arch": "avsyncnet", "config": asdict(TINY)}
    expert = AVSyncNet(TINY)
    g_l = make_generator(config, source, expert)
    g_s = make_generator(GeneratorConfig.silent(base=config.base, sync_size=config.sync_size, perceptual=False),
                         source, expert)
    ckpt = generator_checkpoint("generator", g_l, source, global_step=0,
                                sync_expert={"random_init": 0, "tiny": True}, silent_generator={"random_init": 1},
                                perceptual="off in the config", crop_geometry=FACE_CROP.as_dict(),
                                silent_state_dict=g_s.state_dict(), silent_config=g_s.config.as_dict(),
                                silent_audio_source=source)
    return save_checkpoint(ckpt, path)


@pytest.fixture(scope="module")
def kit(tmp_path_factory, grid_clips) -> dict:
    """The tiny checkpoint and three short GRID clips (lossless, with their audio) by stem."""
    root = tmp_path_factory.mktemp("generate_batch")
    clips = {}
    for clip in grid_clips[:3]:
        clips[clip.stem] = media.write_video(root / "clips" / f"{clip.stem}.mkv", media.read_frames(clip)[:FRAMES], 25,
                                             media.read_audio(clip)[:FRAMES * 640], codec="ffv1")
    return {"ckpt": write_tiny_checkpoint(root / "tiny.pt"), "clips": clips, "names": sorted(clips)}


def place(clips: dict, folder, layout: dict) -> None:
    """Copy clips into ``folder``: ``layout`` maps a relative path to a clip's stem."""
    for rel, stem in layout.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clips[stem], folder / rel)


def run(*args):
    return CliRunner().invoke(main, ["generate", *map(str, args), "--landmarker", "dlib", "--quiet"])


def test_folder_form_mirrors_names_with_the_models_loaded_once(kit, tmp_path, monkeypatch, capsys):
    """Nested faces, each driven by its own audio (--audio is the --face folder): outputs under the same
    relative names, of the audio's length with the audio muxed in; the checkpoint read once for all
    clips; the progress bar counts clips."""
    a, b, _ = kit["names"]
    faces = tmp_path / "faces"
    place(kit["clips"], faces, {"spk1/00001.mkv": a, "spk2/00002.mkv": b})
    loads = []
    real = inference.load_generator
    monkeypatch.setattr(inference, "load_generator", lambda *args: loads.append(args) or real(*args))
    result = inference.generate(faces, faces, kit["ckpt"], tmp_path / "out", landmarker="dlib", progress=True)
    assert len(loads) == 1
    err = capsys.readouterr().err
    assert "2/2" in err and "clip/s" in err
    assert result.exit_code == 0 and not result["failed"] and result["clips"] == 2
    assert [g["name"] for g in result["generated"]] == ["spk1/00001", "spk2/00002"]
    for rel in ("spk1/00001.mp4", "spk2/00002.mp4"):
        out = tmp_path / "out" / rel
        assert media.probe(out).has_audio and len(media.read_frames(out, None)) == FRAMES
    assert result["frames"] == 2 * FRAMES and result["generated"][0]["generated_frames"] == FRAMES
    assert result.text().startswith(f"{tmp_path / 'out'}: 2 clips generated ({2 * FRAMES} frames")
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == ["00001.mp4", "00002.mp4"]


def test_single_form_is_unchanged_and_draws_what_the_folder_form_draws(kit, tmp_path):
    """One --face file: the same JSON document as before; its lossless output is frame for frame the
    folder form's output of that clip."""
    clip = kit["clips"][kit["names"][0]]
    single = run("--face", clip, "--audio", clip, "--ckpt", kit["ckpt"], "--out", tmp_path / "one.mkv", "--json")
    assert single.exit_code == 0, single.output
    doc = json.loads(single.output)
    assert list(doc) == ["out", "frames", "seconds", "generated_frames", "face_frames", "face_fraction", "checkpoint",
                         "crop_geometry", "warnings"]
    assert doc["frames"] == FRAMES and doc["checkpoint"]["setup"] == "H" and doc["warnings"] == []
    place(kit["clips"], tmp_path / "faces", {clip.name: kit["names"][0]})
    folder = run("--face", tmp_path / "faces", "--audio", tmp_path / "faces", "--ckpt", kit["ckpt"], "--out",
                 tmp_path / "out", "--ext", ".mkv")
    assert folder.exit_code == 0, folder.output
    assert np.array_equal(media.read_frames(tmp_path / "one.mkv", None),
                          media.read_frames(tmp_path / "out" / clip.name, None))
    assert np.array_equal(media.read_audio(tmp_path / "one.mkv"), media.read_audio(tmp_path / "out" / clip.name))


def test_filelist_picks_lrs2_names_and_audio_comes_from_its_own_folder(kit, tmp_path):
    """--filelist with <video>/<utterance> names (one with an extension, one absent): only those are
    generated; each face is driven by the .wav of its name under --audio; the absent one is a failure."""
    a, b, c = kit["names"]
    faces, audio = tmp_path / "main", tmp_path / "audio"
    place(kit["clips"], faces, {"111/00001.mkv": a, "111/00002.mkv": b, "222/00001.mkv": c})
    for rel, stem in (("111/00001.wav", b), ("222/00001.wav", c)):
        (audio / rel).parent.mkdir(parents=True, exist_ok=True)
        samples = media.read_audio(kit["clips"][stem])[:8 * 640]
        wavfile.write(audio / rel, 16000, np.round(samples * 32767).astype(np.int16))
    filelist = tmp_path / "test.txt"
    filelist.write_text("111/00001\n222/00001.mp4 NF\n333/00009\n")
    result = run("--face", faces, "--audio", audio, "--ckpt", kit["ckpt"], "--out", tmp_path / "gen",
                 "--filelist", filelist, "--json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    assert [g["name"] for g in doc["generated"]] == ["111/00001", "222/00001"]
    assert all(g["frames"] == 8 for g in doc["generated"])  # the .wav's length, not the face video's
    assert list(doc["failed"]) == ["333/00009"] and "listed in" in doc["failed"]["333/00009"]
    assert not (tmp_path / "gen" / "111" / "00002.mp4").exists()


def test_one_bad_clip_fails_alone_with_one_line_naming_its_file(kit, tmp_path):
    """A damaged video, a face without a driving audio, a name with two audio files: each one FAILED line
    naming the file; the good clip is generated; exit status 1."""
    a, b, c = kit["names"]
    faces, audio = tmp_path / "faces", tmp_path / "audio"
    place(kit["clips"], faces, {"good.mkv": a, "lonely.mkv": b, "twice.mkv": c})
    (faces / "broken.mp4").write_bytes(b"\x00not a video" * 300)
    place(kit["clips"], audio, {"good.mkv": a, "twice.mkv": c, "twice.mp4": c})
    (audio / "broken.mp4").write_bytes(b"\x00not a video" * 300)
    result = run("--face", faces, "--audio", audio, "--ckpt", kit["ckpt"], "--out", tmp_path / "gen")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"{tmp_path / 'gen'}: 1 clips generated") and "3 failed" in lines[0]
    failed = {ln.split(":")[0]: ln for ln in lines if ln.startswith("FAILED ")}
    assert set(failed) == {"FAILED broken", "FAILED lonely", "FAILED twice"}
    assert f"{faces / 'broken.mp4'}: {audio / 'broken.mp4'}: not a readable" in failed["FAILED broken"]
    assert str(faces / "lonely.mkv") in failed["FAILED lonely"] and "no driving audio" in failed["FAILED lonely"]
    assert "twice.mkv, twice.mp4" in failed["FAILED twice"]
    assert len(media.read_frames(tmp_path / "gen" / "good.mp4", None)) == FRAMES


def test_rerun_skips_existing_outputs_unless_overwrite(kit, tmp_path):
    """An output already there is left as it is (a rerun finishes a killed run); --overwrite redoes it."""
    faces = tmp_path / "faces"
    place(kit["clips"], faces, {"a.mkv": kit["names"][0]})
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "a.mp4").write_bytes(b"done before")
    first = run("--face", faces, "--audio", faces, "--ckpt", kit["ckpt"], "--out", tmp_path / "gen", "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.output)
    assert doc["already"] == ["a"] and doc["generated"] == [] and doc["frames"] == 0
    assert (tmp_path / "gen" / "a.mp4").read_bytes() == b"done before"
    again = run("--face", faces, "--audio", faces, "--ckpt", kit["ckpt"], "--out", tmp_path / "gen", "--overwrite")
    assert again.exit_code == 0 and "1 clips generated" in again.output and "0 already there" in again.output
    assert len(media.read_frames(tmp_path / "gen" / "a.mp4", None)) == FRAMES


def test_an_interrupted_clip_leaves_no_partial_output(kit, tmp_path, monkeypatch):
    """Ctrl-C while a clip is written: no output of that name (a rerun must not take it for done), no
    temporary file; a rerun removes a killed run's temporary file and writes the clip."""
    faces = tmp_path / "faces"
    place(kit["clips"], faces, {"a.mkv": kit["names"][0]})

    def killed(path, frames, *args, **kwargs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a video")
        next(iter(frames))
        raise KeyboardInterrupt

    monkeypatch.setattr(inference, "write_video", killed)
    with pytest.raises(KeyboardInterrupt):
        inference.generate(faces, faces, kit["ckpt"], tmp_path / "gen", landmarker="dlib", progress=False)
    assert list((tmp_path / "gen").iterdir()) == []
    (tmp_path / "gen" / ".a.999.tmp.mp4").write_bytes(b"left by a killed process")
    monkeypatch.undo()
    result = inference.generate(faces, faces, kit["ckpt"], tmp_path / "gen", landmarker="dlib", progress=False)
    assert [g["name"] for g in result["generated"]] == ["a"]
    assert [p.name for p in (tmp_path / "gen").iterdir()] == ["a.mp4"]


def test_options_are_checked_before_any_work(kit, tmp_path):
    """Each bad combination is refused with exit status 2 before the checkpoint (here not one) is read
    and before anything is written."""
    clip = kit["clips"][kit["names"][0]]
    faces = tmp_path / "faces"
    place(kit["clips"], faces, {"a.mkv": kit["names"][0]})
    not_ckpt = tmp_path / "x.pt"
    not_ckpt.write_bytes(b"not a checkpoint")
    filelist = tmp_path / "list.txt"
    filelist.write_text("a\n")
    cases = {
        ("--face", faces, "--audio", clip, "--out", tmp_path / "gen"): "give two files (one clip) or two folders",
        ("--face", faces, "--audio", faces, "--out", tmp_path / "gen", "--ext", "webm"): "--ext 'webm': expected one",
        ("--face", faces, "--audio", faces, "--out", faces / "gen"): "inside the input folder",
        ("--face", faces, "--audio", faces, "--out", clip): "a file; with folders",
        ("--face", clip, "--audio", clip, "--out", tmp_path / "o.mp4", "--filelist", filelist):
            "--filelist is for folders",
        ("--face", clip, "--audio", clip, "--out", tmp_path / "o.mp4", "--ext", ".mkv"): "--ext is for folders",
        ("--face", clip, "--audio", clip, "--out", tmp_path / "o.webm"): "expected a .mp4, .mov, .mkv, .avi file",
    }
    for args, message in cases.items():
        result = run(*args, "--ckpt", not_ckpt)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces", "list.txt", "x.pt"]
    assert [p.name for p in faces.iterdir()] == ["a.mkv"]
    bad_ckpt = run("--face", faces, "--audio", faces, "--out", tmp_path / "gen", "--ckpt", not_ckpt)
    assert bad_ckpt.exit_code == 1 and "cannot be loaded as generator weights" in bad_ckpt.output
    assert not (tmp_path / "gen").exists()
