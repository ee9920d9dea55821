"""The studies of the sync experts (``research.studies``) beyond test_sync_analysis: stability per file list
(Tab. A's train and test rows), --random-init against --weights, SyncNet on a prepared folder, and the
Fig. B example images of robustness. Most tests run stand-in experts (``StubNet``: embeddings of window
means, no training) so that they check the studies' bookkeeping in seconds; the end-to-end runs with
seeded random networks are marked slow."""
from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from lipsync_bench import media
from lipsync_bench.cli import main
from lipsync_bench.errors import LipsyncBenchError, ParameterError
from lipsync_bench.research import studies
from lipsync_bench.research.datasets import FaceClip, open_clips
from lipsync_bench.research.expert_analysis import syncnet_crops_of
from lipsync_bench.research.studies import ModelSpec, expert_view, make_transform, robustness, stability
from lipsync_bench.syncnets.experts import Expert
from tests.helpers import GRID

FRAMES_PER_CLIP = 40  # about 35 windows a clip: enough for references, quick to score


class StubNet(torch.nn.Module):
    """A stand-in expert network: unit embeddings of a window's channel means and of its mel window's band
    means. Deterministic, instant, and it keeps the inputs it was given (``seen``)."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def embed_faces(self, x: torch.Tensor) -> torch.Tensor:  # (N, 15, H, W): Wav2Lip's expert, AVSyncNet
        self.seen.append(x)
        return F.normalize(x.mean((2, 3)) + 0.1, dim=1)

    def embed_video(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, 5, H, W), BGR 0-255: SyncNet
        self.seen.append(x)
        return x.mean((3, 4)).reshape(len(x), -1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:  # (N, 1, 80, 16) mel windows
        return F.normalize(mel.mean(-1)[:, 0, :15] + 5, dim=1)


def stub_expert(name: str) -> Expert:
    return Expert(name, StubNet(), {"file": f"stub-{name}", "sha256": "0", "official": False}, torch.device("cpu"))


@pytest.fixture
def stub_experts(monkeypatch):
    """The studies build stand-in experts of the models they are given."""
    monkeypatch.setattr(studies, "make_experts", lambda specs, *args, **kwargs: [stub_expert(s.name) for s in specs])


@pytest.fixture
def decoded(monkeypatch) -> list[tuple[str, int, int]]:
    """(clip source, frame, crop size) of every face crop the studies read, in order."""
    calls: list[tuple[str, int, int]] = []
    faces = FaceClip.faces

    def counting(self, start, count, size):
        calls.extend((str(self.source), start + k, size) for k in range(count))
        return faces(self, start, count, size)

    monkeypatch.setattr(FaceClip, "faces", counting)
    return calls


def write_wav2lip_clip(folder: Path, video: Path, frames: int = FRAMES_PER_CLIP, size: int = 96) -> None:
    """A clip of Wav2Lip's layout (0.jpg, 1.jpg, ... and audio.wav) from the first frames of a GRID video:
    centre squares, no face detection (the stand-in experts do not need faces)."""
    folder.mkdir(parents=True)
    imgs = media.read_frames(video)[:frames]
    side = min(imgs.shape[1:3])
    top, left = (imgs.shape[1] - side) // 2, (imgs.shape[2] - side) // 2
    for i, img in enumerate(imgs):
        crop = cv2.resize(img[top:top + side, left:left + side], (size, size), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"{i}.jpg"), crop[..., ::-1])
    audio = media.read_audio(video)[:frames * 640]
    with wave.open(str(folder / "audio.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((audio * 32767).astype(np.int16).tobytes())


@pytest.fixture(scope="module")
def lrs2_like(tmp_path_factory, grid_clips) -> dict:
    """Three GRID clips in Wav2Lip's layout named as LRS2's (<video>/<utterance>), a 'generated' folder
    with a twin of one of them, and LRS2-style lists: train.txt names s1/a twice and s2/c, test.txt
    names s1/b and a clip that is not there."""
    root = tmp_path_factory.mktemp("lrs2_like")
    names = {"s1/a": grid_clips[0], "s1/b": grid_clips[1], "s2/c": grid_clips[2]}
    for name, video in names.items():
        write_wav2lip_clip(root / "data" / name, video)
    write_wav2lip_clip(root / "gen" / "s1/b", names["s1/b"])
    lists = root / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("s1/a\ns1/a\ns2/c\n")
    (lists / "test.txt").write_text("s1/b\ns9/missing\n")
    (root / "other").mkdir()
    (root / "other" / "train.txt").write_text("s1/b\n")
    return {"data": root / "data", "gen": root / "gen", "train": lists / "train.txt", "test": lists / "test.txt",
            "other_train": root / "other" / "train.txt"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, grid_clips) -> dict:
    """Two GRID videos and the folder 'lipsync-bench prepare' makes of them."""
    pytest.importorskip("dlib")
    from lipsync_bench.research.prepare import prepare

    root = tmp_path_factory.mktemp("prepared")
    videos = root / "videos"
    videos.mkdir()
    for clip in grid_clips[:2]:
        shutil.copy(clip, videos / clip.name)
    prepare(videos, root / "prepared", progress=False)
    return {"videos": videos, "prepared": root / "prepared", "root": root}


# --------------------------------------------------------------------------------------------------
# --random-init against --weights


@pytest.mark.parametrize("command", [["stability"], ["robustness", "--transform", "shift"]])
def test_random_init_with_weights_is_refused_before_any_work(command, tmp_path):
    """A random network labelled "(random-init)" is not the trained expert the weights name: both
    together are one line and exit status 2, before any clip is read or --out made."""
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [*command, "--data", str(GRID), "--model", "wav2lip", "--weights",
                                       "experts/lipsync_expert.pth", "--random-init", "--out", str(out), "--quiet"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: --random-init and --weights (experts/lipsync_expert.pth) contradict "
                                     "each other: --random-init studies seeded random networks, not trained weights; "
                                     "give one of them")
    assert not out.exists()
    with pytest.raises(ParameterError, match="contradict"):
        robustness(GRID, [ModelSpec("avsyncnet", Path("ckpt.pt"))], "shear", out, random_init=True, progress=False)


# --------------------------------------------------------------------------------------------------
# stability per file list


def test_filelists_are_checked_before_any_work(lrs2_like, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["stability", "--data", str(lrs2_like["data"]), "--model", "wav2lip",
                                       "--filelist", str(lrs2_like["train"]), "--filelist",
                                       str(lrs2_like["other_train"]), "--out", str(out), "--quiet"])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: --filelist {lrs2_like['train']} and {lrs2_like['other_train']} share "
                                     "the name 'train', which labels each list's rows; rename one")
    with pytest.raises(ParameterError, match="no such file"):
        stability(lrs2_like["data"], [ModelSpec("wav2lip")], out, filelists=[lrs2_like["test"], tmp_path / "val.txt"],
                  progress=False)
    assert not out.exists()  # no weights looked up, no clip read, nothing written


def test_stability_gives_rows_per_filelist_labelled_by_its_stem(lrs2_like, stub_experts, decoded, tmp_path):
    out = tmp_path / "lists"
    result = CliRunner().invoke(main, ["stability", "--data", str(lrs2_like["data"]), "--gen", str(lrs2_like["gen"]),
                                       "--model", "wav2lip", "--model", "avsyncnet", "--filelist",
                                       str(lrs2_like["train"]), "--filelist", str(lrs2_like["test"]),
                                       "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    frame = pd.read_csv(out / "stability.csv")
    assert frame.columns[0] == "split"
    assert {s: sorted(set(frame[frame.split == s].video)) for s in ("train", "test")} == {
        "train": ["s1/a", "s2/c"], "test": ["s1/b"]}
    # s1/a is listed twice in train.txt and read once: no frame decoded twice at one crop size
    assert decoded and len(decoded) == len(set(decoded))
    assert {size for _, _, size in decoded} == {96, 224}  # Wav2Lip's expert's crops, AVSyncNet's
    # one row per split, model and kind of pair; generated and reference pairs only where a twin exists
    rows = {(r["split"], r["model"], r["pairs"]): r for r in doc["summary"]}
    assert set(rows) == {("train", m, "ground truth") for m in ("Wav2Lip SyncNet", "AVSyncNet")} | {
        ("test", m, p) for m in ("Wav2Lip SyncNet", "AVSyncNet") for p in ("ground truth", "generated", "reference")}
    train = frame[(frame.split == "train") & (frame.model == "AVSyncNet")]
    assert rows[("train", "AVSyncNet", "ground truth")]["cos_sim"] == pytest.approx(train.gt_cos.mean())
    assert rows[("train", "AVSyncNet", "ground truth")]["samples"] == len(train)
    assert doc["missing_generated"] == ["s1/a", "s2/c"]
    splits = doc["protocol"]["splits"]
    assert [(s["split"], s["filelist"], s["clips"]) for s in splits] == [
        ("train", str(lrs2_like["train"]), 2), ("test", str(lrs2_like["test"]), 1)]
    assert doc["protocol"]["samples"] == sum(s["samples"] for s in splits) == len(frame) // 2
    assert any(p.startswith("test.txt: ") and "s9/missing" in p for p in doc["protocol"]["skipped"])
    text = studies.StabilityStudy(doc).text().splitlines()
    assert [c.strip() for c in text[0].split("|")[1:4]] == ["split", "model", "pairs"]
    assert [ln.split("|")[1].strip() for ln in text[2:10]] == ["train"] * 2 + ["test"] * 6
    with Image.open(out / "stability.png") as png:  # a row of panels per split and model
        assert png.size[1] > 4 * 250

    # without lists: all clips, no split, and the same numbers for the same clip (windows from (seed, clip))
    whole = stability(lrs2_like["data"], [ModelSpec("wav2lip"), ModelSpec("avsyncnet")], tmp_path / "all",
                      progress=False)
    plain = pd.read_csv(tmp_path / "all" / "stability.csv")
    assert "split" not in plain and all("split" not in r for r in whole["summary"])
    assert "splits" not in whole["protocol"] and "split" not in whole.text().splitlines()[0]
    pd.testing.assert_frame_equal(plain[plain.video == "s1/a"].reset_index(drop=True),
                                  frame.loc[frame.video == "s1/a", list(plain.columns)].reset_index(drop=True))


# --------------------------------------------------------------------------------------------------
# robustness: the example images (Fig. B)


@pytest.mark.parametrize("name", ["syncnet", "wav2lip", "avsyncnet"])
@pytest.mark.parametrize("kind", ["shear", "rotation-mouth"])
def test_the_example_is_what_the_expert_was_given(name, kind):
    """``expert_view`` is frame 0 of window 0 of the very input the expert's network received for the
    same batch and transform (shear draws its sign per window of a batch; rotation-mouth turns the whole
    crop before the half is taken)."""
    expert = stub_expert(name)
    windows = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (7, 5, expert.crop_size, expert.crop_size,
                                                                            3), dtype=np.uint8))
    fn = make_transform(kind, 30, seed=3)
    expert.video(windows, fn, kind == "rotation-mouth")
    (given,) = expert.model.seen
    first = given[0, :, 0] / 255 if name == "syncnet" else given[0, :3]  # SyncNet: (N, 3, 5, H, W), 0-255
    rgb = first.flip(0) if name in ("syncnet", "wav2lip") else first  # both take BGR
    view = expert_view(expert, windows, fn, kind == "rotation-mouth")
    assert view.shape == (*rgb.shape[1:], 3)
    assert np.allclose(view, rgb.permute(1, 2, 0).clamp(0, 1).numpy(), atol=1e-6)
    plain = expert_view(expert, windows, None)
    assert not np.allclose(view, plain, atol=1e-3)  # the transform is in the picture


def test_robustness_writes_the_examples_of_each_magnitude(lrs2_like, stub_experts, tmp_path):
    result = CliRunner().invoke(main, ["robustness", "--transform", "shift", "--data", str(lrs2_like["data"]),
                                       "--model", "wav2lip", "--model", "avsyncnet", "--magnitudes", "0,20,40",
                                       "--samples", "12", "--out", str(tmp_path), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    path = tmp_path / "examples_shift.png"
    assert doc["examples"] == {"file": str(path), "clip": "s1/a", "frame": 0} and str(path) in doc["files"]
    with Image.open(path) as png:  # two rows (the models), three columns (the magnitudes)
        assert png.size[0] > png.size[1] > 300
    assert "examples_shift.png" in studies.RobustnessStudy(doc).text()


# --------------------------------------------------------------------------------------------------
# SyncNet on a prepared folder


def test_syncnet_reads_a_prepared_clip_from_its_source_video(prepared):
    """The cause of "…npz: not a readable video": a prepared clip's source is its .npz, and SyncNet's wider
    crop (margin 0.4) cannot be cut from the folder's 0.15 crops. It is cut from the video the clip was
    prepared from; the clip's own crops and audio still come from the folder."""
    clipset = open_clips(prepared["prepared"])
    with pytest.raises(LipsyncBenchError, match="not a readable video"):
        syncnet_crops_of(clipset.clips[0], {0})
    clips = studies.syncnet_sources(clipset, prepared["prepared"], [ModelSpec("wav2lip"), ModelSpec("syncnet")])
    assert [c.source for c in clips] == sorted(prepared["videos"].glob("*.mpg"))
    crops = syncnet_crops_of(clips[0], set(range(5)))
    assert sorted(crops.frames) == list(range(5)) and crops.frames[0].shape == (224, 224, 3)
    assert np.array_equal(clips[0].faces(0, 5, 96), clipset.clips[0].faces(0, 5, 96))
    assert studies.syncnet_sources(clipset, prepared["prepared"], [ModelSpec("wav2lip")]) == clipset.clips


def test_syncnet_on_a_prepared_folder_without_its_videos_is_refused_before_work(prepared, tmp_path):
    folder = tmp_path / "moved"
    shutil.copytree(prepared["prepared"], folder)
    manifest = json.loads((folder / "prepared.json").read_text())
    elsewhere = tmp_path / "videos"
    elsewhere.mkdir()
    first, second = sorted(prepared["videos"].glob("*.mpg"))
    shutil.copy(second, elsewhere / first.name)  # the first clip's name, another video's bytes; the second absent
    (folder / "prepared.json").write_text(json.dumps({**manifest, "source": str(elsewhere)}))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["robustness", "--transform", "shift", "--data", str(folder), "--model",
                                       "syncnet", "--random-init", "--out", str(out), "--quiet"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {folder}: --model syncnet takes syncnet_python's crop of the full frame (margin 0.4), wider than "
        "this prepared folder's face crops (margin 0.15), so it is cut from the videos the folder was prepared "
        f"from, and 2 of 2 are not in {elsewhere} as prepared (first: {elsewhere / first.name}: not the video "
        f"{first.stem} was prepared from (its bytes differ)): give --data those videos, or leave out --model syncnet")
    assert not out.exists()


def test_syncnet_on_wav2lips_layout_is_refused_before_work(lrs2_like, tmp_path):
    with pytest.raises(LipsyncBenchError, match="Wav2Lip's layout holds face crops only"):
        stability(lrs2_like["data"], [ModelSpec("syncnet")], tmp_path / "out", random_init=True, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_robustness_of_syncnet_on_a_prepared_folder_equals_the_run_on_its_videos(prepared, tmp_path):
    """The issue's command runs, and SyncNet sees on the prepared folder what it sees on the videos."""
    docs = {}
    for name, data in (("prepared", prepared["prepared"]), ("videos", prepared["videos"])):
        result = CliRunner().invoke(main, ["robustness", "--transform", "rotation", "--data", str(data), "--model",
                                           "syncnet", "--random-init", "--magnitudes", "0,20", "--samples", "6",
                                           "--out", str(tmp_path / name), "--cache", str(prepared["root"] / "cache"),
                                           "--json", "--quiet"])
        assert result.exit_code == 0, result.output
        docs[name] = json.loads(result.output)
    assert docs["prepared"]["protocol"]["layout"] == "prepared"
    assert [r["cos_sim"] for r in docs["prepared"]["rows"]] == pytest.approx(
        [r["cos_sim"] for r in docs["videos"]["rows"]], abs=1e-6)
    assert (tmp_path / "prepared" / "examples_rotation.png").is_file()
