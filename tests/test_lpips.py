"""LPIPS (AlexNet and VGG-16) against the ``lpips`` package on the same real frames, with the same seeded
random backbone weights saved in torchvision's published layout and the package's own linear heads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lipsync_bench
from lipsync_bench import weights
from lipsync_bench.errors import ParameterError
from lipsync_bench.metrics.lpips_distance import BACKBONES, LAYERS, heads_file, load_network, lpips_frames
from tests.helpers import blur, write_lossless

lpips = pytest.importorskip("lpips")

FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict:
    """Seeded random AlexNet and VGG-16 state dicts under torchvision's published file names."""
    folder = tmp_path_factory.mktemp("lpips_weights")
    for i, (net, file) in enumerate(FILES.items()):
        torch.manual_seed(i)
        torch.save(BACKBONES[net][1](weights=None).state_dict(), folder / file)
    return folder


def reference(net: str, state: dict):
    """``lpips.LPIPS`` with the same backbone weights (its slices hold torchvision's feature modules)."""
    model = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    mine = {}
    for k, (a, b) in enumerate(LAYERS[net], start=1):
        for i in range(a, b):
            for key in ("weight", "bias"):
                if f"features.{i}.{key}" in state:
                    mine[f"net.slice{k}.{i}.{key}"] = state[f"features.{i}.{key}"]
    missing = model.load_state_dict(mine, strict=False)
    assert not missing.unexpected_keys
    return model.eval()


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_equals_the_reference_on_real_frames(net, backbones, grid_frames):
    frames = np.ascontiguousarray(next(iter(grid_frames.values()))[:3, 40:232, 80:272])  # the face, 192x192
    gen = blur(frames, 1.5).astype(np.uint8)
    state = torch.load(backbones / FILES[net], weights_only=True)
    ours = lpips_frames(load_network(net, backbones / FILES[net], heads_file(net), torch.device("cpu")),
                        torch.from_numpy(gen), torch.from_numpy(frames)).numpy()
    model = reference(net, state)
    with torch.no_grad():
        ref = np.array([model(lpips.im2tensor(g), lpips.im2tensor(t)).item() for g, t in zip(gen, frames, strict=True)])
    assert np.abs(ours - ref).max() < 1e-5
    assert (ours > 0).all()


def test_lpips_in_eval_records_both_weights_files(backbones, grid_frames, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(backbones))
    stem, frames = next(iter(grid_frames.items()))
    write_lossless(tmp_path / "gt" / stem, frames[:8])
    write_lossless(tmp_path / "gen" / stem, blur(frames[:8], 1.0).astype(np.uint8))
    result = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lpips"], out=tmp_path / "r")
    assert result.failures.empty and result.summary.loc["lpips", "n"] == 1
    files = result.protocol["metric_params"]["lpips"]["weights"]
    assert [f["file"] for f in files] == [FILES["alex"], "lpips/weights/v0.1/alex.pth"]
    assert files[0]["official"] is False and files[1]["source"].startswith("lpips ")
    assert "unofficial weights" in result.text()


def test_without_the_backbone_lpips_named_is_refused_with_how_to_get_it(grid_frames, tmp_path):
    stem, frames = next(iter(grid_frames.items()))
    write_lossless(tmp_path / "gt" / stem, frames[:4])
    write_lossless(tmp_path / "gen" / stem, frames[:4])
    with pytest.raises(ParameterError, match="lpips cannot run here: .*lipsync-bench weights fetch alexnet"):
        lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lpips", "ssim"], out=tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before any work


def test_a_wrong_backbone_file_fails_lpips_alone(tmp_path, grid_frames, monkeypatch):
    folder = tmp_path / "w"
    folder.mkdir()
    torch.save({"features.0.weight": torch.zeros(3)}, folder / FILES["alex"])
    monkeypatch.setenv(weights.ENV_VAR, str(folder))
    stem, frames = next(iter(grid_frames.items()))
    write_lossless(tmp_path / "gt" / stem, frames[:4])
    write_lossless(tmp_path / "gen" / stem, frames[:4])
    result = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["lpips", "ssim"])
    rows = result.videos.set_index("metric")
    assert "not a torchvision alexnet state dict" in rows.error["lpips"] and rows.value["ssim"] == 1.0
