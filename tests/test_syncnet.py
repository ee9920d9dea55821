"""SyncNet and the LSE procedure against syncnet_python's own code (the PyPI port ``syncnet-python``
0.2.3, loaded by file path: its package __init__ needs ffmpeg-python and scenedetect), with the same
random weights in both, on face crops of real clips."""
from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch

from lipsync_bench import media
from lipsync_bench.faces import FaceAnalyzer, syncnet_crops
from lipsync_bench.syncnets.scoring import sync_score
from lipsync_bench.syncnets.syncnet import SyncNet, load_syncnet
from tests.helpers import GRID

pytest.importorskip("python_speech_features")
pytest.importorskip("dlib")


def reference_modules():
    spec = importlib.util.find_spec("syncnet_python")
    if spec is None:
        pytest.skip("reference not installed: pip install --no-deps syncnet-python==0.2.3")
    folder = spec.submodule_search_locations[0]
    sys.path.insert(0, folder)  # SyncNetInstance does `from SyncNetModel import *`
    try:
        mods = []
        for name in ("SyncNetModel", "SyncNetInstance"):
            s = importlib.util.spec_from_file_location(f"ref_{name}", f"{folder}/{name}.py")
            m = importlib.util.module_from_spec(s)
            s.loader.exec_module(m)
            mods.append(m)
        return mods
    finally:
        sys.path.remove(folder)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A seeded random reference network, saved as syncnet_v2.model is (a state dict of S)."""
    ref_model, _ = reference_modules()
    torch.manual_seed(0)
    net = ref_model.S(num_layers_in_fc_layers=1024).eval()
    path = tmp_path_factory.mktemp("w") / "syncnet_v2.model"
    torch.save(net.state_dict(), path)
    return path, net


@pytest.fixture(scope="module")
def clips():
    found = sorted((GRID).glob("*.mpg"))[:2]
    if len(found) < 2:
        pytest.skip(f"GRID clips not found under {GRID}")
    out = []
    for clip in found:
        frames = media.read_frames(clip)
        a = FaceAnalyzer()
        a.update(frames)
        crops = syncnet_crops(frames, a.result())[..., ::-1]  # RGB -> BGR, as cv2.imread gives
        out.append((clip.stem, np.ascontiguousarray(crops), media.read_audio(clip)))
    return out


def reference_score(net, ref_instance, crops_bgr, audio, vshift=15, batch_size=20):
    """SyncNetInstance.evaluate's steps after its ffmpeg/JPEG I/O, with its own calc_pdist."""
    import python_speech_features

    samples = np.round(audio * 32768).astype(np.int16)
    im = np.expand_dims(np.stack(list(crops_bgr), axis=3), 0).transpose(0, 3, 4, 1, 2)
    imtv = torch.from_numpy(im.astype(float)).float()
    cc = np.stack([np.array(i) for i in zip(*python_speech_features.mfcc(samples, 16000), strict=False)])
    cct = torch.from_numpy(cc[None, None].astype(float)).float()
    lastframe = min(len(crops_bgr), math.floor(len(samples) / 640)) - 5
    im_feat, cc_feat = [], []
    with torch.no_grad():
        for i in range(0, lastframe, batch_size):
            r = range(i, min(lastframe, i + batch_size))
            im_feat.append(net.forward_lip(torch.cat([imtv[:, :, v:v + 5] for v in r], 0)))
            cc_feat.append(net.forward_aud(torch.cat([cct[:, :, :, v * 4:v * 4 + 20] for v in r], 0)))
    dists = ref_instance.calc_pdist(torch.cat(im_feat), torch.cat(cc_feat), vshift=vshift)
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return int(vshift - minidx), float(minval), float(torch.median(mdist) - minval), mdist.numpy()


def test_published_layout_loads_with_weights_only(weights):
    path, net = weights
    ours = load_syncnet(path)
    x = torch.rand(2, 3, 5, 224, 224) * 255
    a = torch.randn(2, 1, 13, 20)
    with torch.no_grad():
        assert torch.allclose(ours.embed_video(x), net.forward_lip(x), atol=1e-4)
        assert torch.allclose(ours.embed_audio(a), net.forward_aud(a), atol=1e-5)
    assert list(SyncNet().state_dict()) == list(net.state_dict())


def test_lse_equals_the_reference_procedure_on_real_clips(weights, clips):
    path, net = weights
    _, ref_instance = reference_modules()
    ours = load_syncnet(path)
    for stem, crops, audio in clips:
        score = sync_score(ours, crops, audio)
        offset, lse_d, lse_c, curve = reference_score(net, ref_instance, crops, audio)
        assert score.offset == offset, stem
        assert abs(score.lse_d - lse_d) < 1e-3 and abs(score.lse_c - lse_c) < 1e-3, stem
        assert np.abs(score.curve - curve).max() < 1e-3
        assert np.ptp(curve) > 1e-3  # the random weights give a non-degenerate curve


@pytest.mark.parametrize("k", [2, pytest.param(5, marks=pytest.mark.slow)])
def test_delayed_audio_shifts_the_distances_by_k(weights, clips, k):
    """Audio delayed by k frames: window i's distance at offset s equals the original's at s - k
    wherever both audio windows are real (away from the zero-padded ends and the silent prefix), so a
    trained SyncNet's offset moves by exactly k."""
    ours = load_syncnet(weights[0])
    stem, crops, audio = clips[0]
    delayed = np.concatenate([np.zeros(640 * k, np.float32), audio])[: len(audio)]
    base = sync_score(ours, crops, audio)
    moved = sync_score(ours, crops, delayed)
    vshift = (base.distances.shape[1] - 1) // 2
    compared = 0
    for i in range(base.windows):
        for s in range(k, 2 * vshift + 1):
            m = i + s - vshift  # the delayed clip's audio window
            if k + 1 <= m < base.windows:
                assert abs(moved.distances[i, s] - base.distances[i, s - k]) < 1e-3, (i, s)
                compared += 1
    assert compared > 0.6 * base.distances.size
