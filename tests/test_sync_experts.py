"""The sync experts (issue 6): Wav2Lip's SyncNet and AVSyncNet in their checkpoint layouts, Wav2Lip's
mel front end against librosa (the library Wav2Lip's audio.py calls), the clip readers and pair
sampling, the trainer (loss falls, exact resume, validation), and LSE with an expert other than SyncNet."""
from __future__ import annotations

import json
import pickle
import wave

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lipsync_bench import media
from lipsync_bench.cli import main
from lipsync_bench.errors import LipsyncBenchError
from lipsync_bench.research.datasets import FaceClip, SyncPairs, open_clips, split_clips, video_clip
from lipsync_bench.syncnets.avsyncnet import TINY, AVSyncNet, load_avsyncnet
from lipsync_bench.syncnets.inputs import INPUTS
from lipsync_bench.syncnets.wav2lip import Wav2LipSyncNet, load_wav2lip_syncnet, mel_window, melspectrogram
from tests.helpers import GRID, data_file

pytest.importorskip("dlib")


# --------------------------------------------------------------------------------------------------
# Models and checkpoint layouts


def test_wav2lip_expert_loads_lipsync_expert_pth_layout(tmp_path):
    """Random weights saved as Wav2Lip's save_checkpoint writes lipsync_expert.pth (state_dict,
    optimizer, global_step, global_epoch; DataParallel's 'module.' prefix too) load with weights_only
    and give the same embeddings; the keys are Wav2Lip's."""
    torch.manual_seed(0)
    net = Wav2LipSyncNet().eval()
    state = net.state_dict()
    assert state["face_encoder.0.conv_block.0.weight"].shape == (32, 15, 7, 7)
    assert state["audio_encoder.0.conv_block.0.weight"].shape == (32, 1, 3, 3)
    assert max(int(k.split(".")[1]) for k in state if k.startswith("face_encoder.")) == 16
    assert max(int(k.split(".")[1]) for k in state if k.startswith("audio_encoder.")) == 13
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    plain, dp = tmp_path / "lipsync_expert.pth", tmp_path / "dp.pth"
    torch.save({"state_dict": state, "optimizer": opt.state_dict(), "global_step": 10, "global_epoch": 2}, plain)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, dp)
    faces, mel = torch.rand(3, 15, 48, 96), torch.randn(3, 1, 80, 16)
    with torch.no_grad():
        want = net(mel, faces)
        for path in (plain, dp):
            got = load_wav2lip_syncnet(path)(mel, faces)
            for w, g in zip(want, got, strict=False):
                assert torch.equal(w, g)
    assert want[0].shape == want[1].shape == (3, 512)


def test_forward_shapes_match_the_supplementary():
    """512-d unit embeddings from 112x224 bottom halves (5 frames) and 80x16 mel windows (AVSyncNet),
    from 48x96 halves (Wav2Lip's); cosine similarity in [0, 1] (non-negative embeddings, for the BCE)."""
    torch.manual_seed(0)
    mel = torch.randn(2, 1, 80, 16)
    for net, faces, dim in [(AVSyncNet().eval(), torch.rand(2, 15, 112, 224), 512),
                            (AVSyncNet(TINY).eval(), torch.rand(2, 15, 112, 224), 128),
                            (Wav2LipSyncNet().eval(), torch.rand(2, 15, 48, 96), 512)]:
        with torch.no_grad():
            a, v = net(mel, faces)
        assert a.shape == v.shape == (2, dim)
        assert torch.allclose(a.norm(dim=1), torch.ones(2)) and torch.allclose(v.norm(dim=1), torch.ones(2))
        assert (a >= 0).all() and (v >= 0).all()
    resnet = AVSyncNet().face_encoder.resnet
    assert resnet.conv1.in_channels == 15 and type(resnet.layer1[0]).__name__ == "Bottleneck"
    assert [len(resnet.layer1), len(resnet.layer2), len(resnet.layer3), len(resnet.layer4)] == [3, 4, 6, 3]


def test_avsyncnet_checkpoint_round_trip_and_refusals(tmp_path):
    torch.manual_seed(1)
    net = AVSyncNet(TINY).eval()
    path = tmp_path / "av.pt"
    torch.save(net.checkpoint(global_step=3), path)
    mel, faces = torch.randn(2, 1, 80, 16), torch.rand(2, 15, 112, 224)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(net(mel, faces), load_avsyncnet(path)(mel, faces), strict=False))
    other = tmp_path / "w2l.pt"
    torch.save({"state_dict": Wav2LipSyncNet().state_dict()}, other)
    with pytest.raises(LipsyncBenchError, match="not an AVSyncNet checkpoint"):
        load_avsyncnet(other)
    code = tmp_path / "code.pt"
    with open(code, "wb") as f:
        pickle.dump(type("Payload", (), {"__reduce__": lambda self: (print, ("pwned",))})(), f, protocol=2)
    with pytest.raises(LipsyncBenchError, match="cannot be loaded as AVSyncNet weights"):
        load_avsyncnet(code)
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(LipsyncBenchError, match="cannot be loaded"):
        load_avsyncnet(truncated)


# --------------------------------------------------------------------------------------------------
# Wav2Lip's mel front end


def wav2lip_mel_with_librosa(wav: np.ndarray) -> np.ndarray:
    """Wav2Lip's audio.melspectrogram, step by step with librosa (as its audio.py does; pad_mode
    'reflect' was librosa 0.7's default, which Wav2Lip pins)."""
    import librosa
    from scipy import signal

    y = signal.lfilter([1, -0.97], [1], wav)
    d = librosa.stft(y=y, n_fft=800, hop_length=200, win_length=800, pad_mode="reflect")
    basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    s = 20 * np.log10(np.maximum(1e-5, basis @ np.abs(d))) - 20
    return np.clip(8 * ((s + 100) / 100) - 4, -4, 4)


def test_mel_equals_wav2lip_recipe_with_librosa():
    pytest.importorskip("librosa")
    audio = media.read_audio(data_file("grid/bbaf2n.mpg")).astype(np.float64)
    ours, ref = melspectrogram(audio), wav2lip_mel_with_librosa(audio)
    assert ours.shape == ref.shape == (80, 1 + len(audio) // 200)
    assert np.abs(ours - ref).max() < 1e-4
    assert ref.std() > 0.5  # real speech, not a flat spectrogram


def test_mel_window_follows_crop_audio_window():
    mel = np.arange(80 * 100, dtype=np.float32).reshape(80, 100)
    assert mel_window(mel, 7)[0, 0] == int(80 * 7 / 25)  # frame 7 starts at mel step 22
    assert mel_window(mel, 7).shape == (80, 16)
    assert mel_window(mel, 28) is None  # step 89 + 16 > 100


# --------------------------------------------------------------------------------------------------
# Data


@pytest.mark.slow
def test_video_clips_are_cropped_once_and_cached(sync_clips, monkeypatch):
    clips = open_clips(sync_clips["videos"], sync_clips["cache"]).clips
    assert len(clips) >= 4 and all(c.frames >= 70 for c in clips)
    clip = clips[0]
    assert clip.samples == len(clip.audio) and abs(clip.samples - 640 * clip.frames) <= 640
    faces = clip.faces(10, 5, 224)
    assert faces.shape == (5, 224, 224, 3) and faces.dtype == np.uint8 and faces.std() > 10
    assert clip.boxes.shape == (clip.frames, 4)
    # a second opening reads the cache: the face detector is never called
    import lipsync_bench.faces.analysis as analysis

    monkeypatch.setattr(analysis.FaceAnalyzer, "update", lambda *a: pytest.fail("face pipeline ran again"))
    again = video_clip(clip.source, sync_clips["cache"])
    assert np.array_equal(again.faces(10, 5, 224), faces)


def test_crops_are_cached_in_the_users_cache_folder_and_the_data_folder_is_only_read(tmp_path, monkeypatch):
    import os
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sorted(GRID.glob("*.mpg"))[0], data / "clip.mpg")
    data.chmod(0o555)  # read-only (root writes anyway: the listing below is the check)
    monkeypatch.setenv("LIPSYNC_BENCH_CACHE", str(tmp_path / "cache"))
    try:
        clips = open_clips(data).clips
    finally:
        data.chmod(0o755)
    assert len(clips) == 1 and os.listdir(data) == ["clip.mpg"]
    assert len(list((tmp_path / "cache" / "syncnet_crops").glob("*.npz"))) == 1


@pytest.mark.slow
def test_wav2lip_layout_is_read_with_its_file_list(sync_clips, tmp_path):
    """A folder in Wav2Lip's preprocessed layout (0.jpg... + audio.wav, filelists/*.txt) is read as it is."""
    import cv2

    src = open_clips(sync_clips["videos"], sync_clips["cache"]).clips[:2]
    root = tmp_path / "lrs2_preprocessed"
    for clip in src:
        folder = root / "spk" / clip.name
        folder.mkdir(parents=True)
        for i, face in enumerate(clip.faces(0, clip.frames, 96)):
            cv2.imwrite(str(folder / f"{i}.jpg"), face[..., ::-1])
        with wave.open(str(folder / "audio.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(np.round(clip.audio * 32768).clip(-32768, 32767).astype("<i2").tobytes())
    listing = tmp_path / "train.txt"
    listing.write_text(f"spk/{src[1].name}\n")
    everything = open_clips(root)
    assert everything.layout == "wav2lip" and len(everything.clips) == 2
    assert everything.geometry.name == "wav2lip-preprocess"  # named as its own, not as the prepared crops'
    assert open_clips(sync_clips["videos"], sync_clips["cache"]).geometry.name == "lipsync-bench-face-0.15"
    listed = open_clips(root, filelist=listing).clips
    assert [c.name for c in listed] == [f"spk/{src[1].name}"]
    clip = listed[0]
    assert clip.frames == src[1].frames and clip.samples == src[1].samples
    assert np.abs(clip.audio - src[1].audio).max() < 1e-4
    assert clip.faces(3, 5, 96).shape == (5, 96, 96, 3)
    broken = tmp_path / "bad" / "v1"
    broken.mkdir(parents=True)
    (broken / "0.jpg").write_bytes(b"")
    (broken / "audio.wav").write_bytes(b"")
    with pytest.raises(LipsyncBenchError, match="no usable clip"):
        open_clips(tmp_path / "bad", layout="wav2lip")


@pytest.mark.slow
def test_pairs_are_aligned_or_non_overlapping_and_reproducible(sync_clips):
    clips = open_clips(sync_clips["videos"], sync_clips["cache"]).clips
    pairs = SyncPairs(clips, INPUTS["avsyncnet"], seed=3)
    kinds = [pairs.pair(i) for i in range(len(pairs))]
    aligned = [k for k in kinds if k[3]]
    assert 0.4 < len(aligned) / len(kinds) < 0.6
    for c, s, t, ok in kinds:
        assert (t == s) if ok else abs(t - s) >= 5  # a misaligned window shares no frame with the video window
        assert mel_window(clips[c].mel, t) is not None and s + 5 <= clips[c].frames
    assert kinds == [SyncPairs(clips, INPUTS["avsyncnet"], seed=3).pair(i) for i in range(len(pairs))]
    pairs.set_epoch(1)
    assert [pairs.pair(i) for i in range(len(pairs))] != kinds
    faces, mel, label = SyncPairs(clips, INPUTS["wav2lip"])[0]
    assert faces.shape == (15, 48, 96) and mel.shape == (1, 80, 16)
    assert 0 <= float(faces.min()) <= float(faces.max()) <= 1
    # Wav2Lip's expert gets BGR: channel 0 of frame 0 is the blue channel of the crop
    crop = clips[0].faces(0, 5, 96)
    assert torch.allclose(faces[0], torch.from_numpy(crop[0, 48:, :, 2]).float() / 255)
    train, val = split_clips(clips, 0.2)
    assert val and train and not {c.name for c in train} & {c.name for c in val}
    assert [c.name for c in split_clips(list(reversed(clips)), 0.2)[1]] == [c.name for c in val]


def test_the_default_split_keeps_each_videos_utterances_on_one_side():
    """LRS2 names clips <video>/<utterance>: a video's utterances (one speaker, one session) all go to
    training or all to validation (the split hashed clip names before, and cut videos in two)."""
    import types

    clips = [types.SimpleNamespace(name=f"{6300000 + v}/{u:05d}") for v in range(40) for u in range(4)]
    train, val = split_clips(clips, 0.2)
    video = lambda c: c.name.split("/")[0]  # noqa: E731
    assert val and train and not {video(c) for c in train} & {video(c) for c in val}
    assert 0.1 < len(val) / len(clips) < 0.3 and len(val) % 4 == 0
    assert split_clips(list(reversed(clips)), 0.2)[1] == list(reversed(val))
    flat = [types.SimpleNamespace(name=f"clip{i}") for i in range(10)]  # a flat folder: each clip its own video
    assert 1 <= len(split_clips(flat, 0.2)[1]) < 10


@pytest.mark.slow
def test_a_validation_list_is_never_trained_on_and_lists_may_not_overlap(sync_clips, tmp_path):
    from lipsync_bench.research.expert_training import TrainConfig, train_syncnet

    names = sorted(c.stem for c in sync_clips["videos"].glob("*.mpg"))
    (tmp_path / "val.txt").write_text(names[0] + "\n")
    config = TrainConfig(arch="avsyncnet", tiny=True, epochs=1, max_steps=1, batch_size=4, stride=8)
    result = train_syncnet(sync_clips["videos"], tmp_path / "a", config, cache_dir=sync_clips["cache"],
                           val_list=tmp_path / "val.txt", progress=False)
    assert (result["train_clips"], result["val_clips"]) == (len(names) - 1, 1)  # was (5, 1) of 5
    (tmp_path / "train.txt").write_text("\n".join(names[:3]) + "\n")
    with pytest.raises(LipsyncBenchError, match="share 1 clips .e.g. " + names[0] + ".: a clip is for training or"):
        train_syncnet(sync_clips["videos"], tmp_path / "b", config, cache_dir=sync_clips["cache"],
                      train_list=tmp_path / "train.txt", val_list=tmp_path / "val.txt", progress=False)


# --------------------------------------------------------------------------------------------------
# Training


@pytest.mark.slow
def test_training_lowers_the_loss_and_reports_validation(tiny_avsyncnet):
    result = tiny_avsyncnet["result"]
    history = result["history"]
    assert len(history) == 3 and result["train_windows"] >= 100 and result["val_windows"] > 0
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for rec in history:
        assert 0 <= rec["val_sync_acc"] <= 1 and 0 <= rec["val_gt_cos"] <= 1 and np.isfinite(rec["val_loss"])
    log = (tiny_avsyncnet["out"] / "log.csv").read_text().splitlines()
    assert log[0].startswith("step,epoch,split,loss,sync_acc,gt_cos") and sum(",val," in ln for ln in log) == 3
    assert (tiny_avsyncnet["out"] / "best.pt").is_file()
    assert load_avsyncnet(tiny_avsyncnet["checkpoint"]).config == TINY


@pytest.mark.slow
def test_a_checkpoint_written_mid_run_resumes_to_the_same_state(sync_clips, tmp_path):
    """Stopping after 3 steps (mid-epoch) and resuming to 7 gives exactly the weights of 7 steps straight."""
    from lipsync_bench.research.expert_training import TrainConfig, train_syncnet

    def config(steps):
        return TrainConfig(arch="avsyncnet", tiny=True, epochs=2, batch_size=8, stride=4, max_steps=steps,
                           val_fraction=0.2)

    kw = dict(cache_dir=sync_clips["cache"], progress=False)
    straight = train_syncnet(sync_clips["videos"], tmp_path / "a", config(7), **kw)
    first = train_syncnet(sync_clips["videos"], tmp_path / "b", config(3), **kw)
    assert first["step"] == 3 and first["batch_in_epoch"] == 3 and first["epoch"] == 0
    resumed = train_syncnet(sync_clips["videos"], tmp_path / "b", config(7), resume=True, **kw)
    assert resumed["step"] == straight["step"] == 7
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]
    other = TrainConfig(arch="avsyncnet", tiny=True, epochs=2, batch_size=16, stride=4, max_steps=9)
    with pytest.raises(LipsyncBenchError, match="batch_size 8 \\(now 16\\)"):
        train_syncnet(sync_clips["videos"], tmp_path / "b", other, resume=True, **kw)


@pytest.mark.slow
def test_train_syncnet_command_wav2lip(sync_clips, tmp_path):
    """The command end to end with Wav2Lip's architecture; its checkpoint loads as lipsync_expert.pth does."""
    out = tmp_path / "w2l"
    result = CliRunner().invoke(main, ["train-syncnet", "--arch", "wav2lip", "--data", str(sync_clips["videos"]),
                                       "--cache", str(sync_clips["cache"]), "--out", str(out), "--epochs", "1",
                                       "--batch-size", "8", "--stride", "8", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "epoch 1 (step" in result.output and "sync accuracy" in result.output and "GT cos-sim" in result.output
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert {"state_dict", "optimizer", "global_step", "global_epoch"} <= set(ckpt)
    load_wav2lip_syncnet(out / "last.pt")
    again = CliRunner().invoke(main, ["train-syncnet", "--data", str(sync_clips["videos"]), "--out", str(out),
                                      "--resume", "--quiet", "--cache", str(sync_clips["cache"])])
    assert again.exit_code == 1 and "arch 'wav2lip' (now 'avsyncnet')" in again.output
    assert "Traceback" not in again.output


# --------------------------------------------------------------------------------------------------
# LSE with another expert


@pytest.mark.slow
@pytest.mark.parametrize("k", [5, 10])
def test_expert_lse_distances_shift_with_delayed_audio(sync_clips, tiny_avsyncnet, k):
    """Audio delayed by k frames (a whole number of mel windows: 5 frames = 16 mel steps) moves every
    window's distance curve by exactly k wherever both audio windows are real, as with SyncNet. The
    original's first audio window is left out: its first STFT frames see the reflect padding of the
    signal's start, the delayed clip's see real samples there."""
    from lipsync_bench.syncnets.experts import load_expert
    from lipsync_bench.syncnets.scoring import ExpertSyncScorer

    expert = load_expert("avsyncnet", tiny_avsyncnet["checkpoint"])
    clip = open_clips(sync_clips["videos"], sync_clips["cache"]).clips[0]
    crops = clip.faces(0, clip.frames, 224)
    delayed = np.concatenate([np.zeros(640 * k, np.float32), clip.audio])[: len(clip.audio)]
    scores = []
    for audio in (clip.audio, delayed):
        scorer = ExpertSyncScorer(expert, audio, vshift=15, batch=16)
        scorer.add_frames(crops[:40])
        scorer.add_frames(crops[40:])  # streaming across a chunk boundary
        scores.append(scorer.result())
    base, moved = scores
    vshift, compared = 15, 0
    for i in range(base.windows):
        for s in range(k, 2 * vshift + 1):
            m = i + s - vshift
            if k + 1 <= m < base.windows:
                assert abs(moved.distances[i, s] - base.distances[i, s - k]) < 1e-4, (i, s)
                compared += 1
    assert compared > 0.5 * base.distances.size
    assert np.ptp(base.curve) > 1e-4 and 0 <= base.lse_d <= 2


@pytest.mark.slow
def test_eval_with_avsyncnet_keeps_its_own_columns_and_ground_truth(sync_clips, tiny_avsyncnet, tmp_path,
                                                                     monkeypatch):
    from lipsync_bench import weights
    from lipsync_bench.syncnets.syncnet import SyncNet

    folder = tmp_path / "weights"
    folder.mkdir()
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), folder / "syncnet_v2.model")
    monkeypatch.setenv(weights.ENV_VAR, str(folder))
    gt = tmp_path / "gt"
    gt.mkdir()
    source = sorted(sync_clips["videos"].glob("*.mpg"))[0]
    (gt / source.name).write_bytes(source.read_bytes())
    runner = CliRunner()
    common = ["eval", "--gen", str(gt), "--gt", str(gt), "--dataset", "grid", "--out", str(tmp_path / "res"),
              "--metrics", "lse_c,lse_d", "--quiet"]
    r1 = runner.invoke(main, common + ["--name", "syncnet"])
    r2 = runner.invoke(main, common + ["--name", "av", "--sync-model", "avsyncnet", "--sync-weights",
                                       str(tiny_avsyncnet["checkpoint"])])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    table = runner.invoke(main, ["table", "--dataset", "grid", "--results", str(tmp_path / "res"), "--json"])
    doc = json.loads(table.output)
    labels = [c["label"] for c in doc["columns"]]
    assert labels == ["LSE-C", "LSE-C [AVSyncNet]", "LSE-D", "LSE-D [AVSyncNet]"]
    rows = {r["method"]: r for r in doc["rows"]}
    assert set(rows) == {"Ground truth", "Ground truth [AVSyncNet]", "syncnet", "av"}
    assert set(rows["av"]["values"]) == {"lse_c@avsyncnet", "lse_d@avsyncnet"}
    assert set(rows["syncnet"]["values"]) == {"lse_c", "lse_d"}
    assert 0 <= rows["av"]["values"]["lse_d@avsyncnet"] <= 2
    # the GT videos are the generated ones here: the GT rows equal the methods' rows
    assert rows["Ground truth [AVSyncNet]"]["values"]["lse_d@avsyncnet"] == pytest.approx(
        rows["av"]["values"]["lse_d@avsyncnet"])
    # the expert, its weights' checksum and the distance used are in the protocol of the results
    runs = {r["method"]: r for r in json.loads((tmp_path / "res" / "summary.json").read_text())["runs"]}
    params = runs["av"]["metric_params"]["lse_c"]
    assert params["sync_model"] == "avsyncnet" and params["weights"]["official"] is False
    assert len(params["weights"]["sha256"]) == 64 and "Euclidean distance" in params["resolved"]["sync_model"]
    assert runs["syncnet"]["metric_params"]["lse_c"]["sync_model"] == "syncnet"
    single = runner.invoke(main, ["lse", str(gt / source.name), "--sync-model", "avsyncnet", "--sync-weights",
                                  str(tiny_avsyncnet["checkpoint"]), "--json"])
    assert single.exit_code == 0, single.output
    assert json.loads(single.output)["lse_d"] == pytest.approx(rows["av"]["values"]["lse_d@avsyncnet"], abs=1e-5)


def test_lse_with_avsyncnet_needs_weights_and_no_compat(tmp_path):
    from lipsync_bench.metrics import get_metric

    lse = get_metric("lse_c")
    reason = lse.available(lse.resolve_params({"sync_model": "avsyncnet"}))
    assert reason.startswith("LSE with avsyncnet needs its weights: --sync-weights CHECKPOINT")
    result = CliRunner().invoke(main, ["lse", str(data_file("grid/bbaf2n.mpg")), "--sync-model", "avsyncnet",
                                       "--compat", "syncnet_python", "--sync-weights", __file__])
    assert result.exit_code == 1
    assert "lse compat syncnet_python reproduces syncnet_python: it needs sync_model syncnet" in result.output


def test_face_clip_reads_lazily():
    """A clip holds no frames or audio until asked (bounded caches), so a data set of any size fits."""
    calls = []
    clip = FaceClip("x", 10, 6400, lambda s, n: calls.append((s, n)) or [np.zeros((8, 8, 3), np.uint8)] * n,
                    lambda: calls.append("audio") or np.zeros(6400, np.float32))
    assert calls == []
    assert clip.faces(2, 3, 8).shape == (3, 8, 8, 3) and calls == [(2, 3)]
    assert clip.window_starts() == 6 and "audio" not in calls  # from the sample count alone


def test_wav2lip_expert_weights_are_listed_but_never_fetched_unverified(tmp_path, monkeypatch):
    from lipsync_bench import weights

    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    listed = CliRunner().invoke(main, ["weights", "list"])
    line = next(ln for ln in listed.output.splitlines() if ln.startswith("wav2lip-expert"))
    assert "missing" in line and "by hand: see its URL below" in line
    fetched = CliRunner().invoke(main, ["weights", "fetch", "wav2lip-expert"])
    assert fetched.exit_code == 1 and "no direct download with a published checksum" in fetched.output
    assert not list(tmp_path.iterdir())
    (tmp_path / "lipsync_expert.pth").write_bytes(b"x")
    assert weights.describe("wav2lip-expert", tmp_path / "lipsync_expert.pth")["official"] is False
    verified = CliRunner().invoke(main, ["weights", "verify"])
    assert verified.exit_code == 0, verified.output  # nothing to verify it against is not a failure
    assert "wav2lip-expert: present, no published checksum to verify" in verified.output


@pytest.mark.slow
def test_train_syncnet_under_torchrun_on_cpu(sync_clips, tmp_path):
    """Two processes (gloo, CPU) under torchrun: DistributedDataParallel trains, process 0 writes."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "lipsync_bench.cli",
           "train-syncnet", "--tiny", "--data", str(sync_clips["videos"]), "--cache", str(sync_clips["cache"]),
           "--out", str(out), "--epochs", "1", "--batch-size", "4", "--stride", "8", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("checkpoint:") == 1  # process 0 reports
    meta = json.loads((out / "run.json").read_text())
    assert meta["world_size"] == 2
    ckpt = torch.load(out / "last.pt", weights_only=True)
    # each process takes n // 2 items in batches of 4 (a last batch of one dropped)
    per_rank = meta["train_windows"] // 2
    assert ckpt["global_step"] == per_rank // 4 + (per_rank % 4 >= 2)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
