"""THEval's global aesthetic (pyiqa's TOPIQ-IAA) against pyiqa's own CFANet (0.1.16; the architecture is
unchanged from the 0.1.13 that THEval pins) on real GRID frames, with the same seeded random weights
saved in pyiqa's published layout (``{"params": state dict}``).

pyiqa's package ``__init__`` imports every model it has; the test loads only its TOPIQ module. That
module imports facexlib (for the face variants, never built here) and its ``arch_util`` imports
huggingface_hub (to name download URLs, never called here): both are stood in for. Its Swin backbone is
timm's (pyiqa's copy needs the ``timm`` package); with ``pretrained=False`` CFANet still asks for the
ImageNet Swin weights, so the test builds the backbone seeded instead."""
from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

import lipsync_bench
from lipsync_bench import weights
from lipsync_bench.errors import MetricError
from lipsync_bench.metrics import get_metric
from lipsync_bench.metrics.theval_quality import load_topiq_iaa, topiq_iaa_scores
from tests.helpers import blur, import_without_init, write_lossless

#: Ours against pyiqa's, on the 1-10 score scale (float32 throughout; measured: 2.0e-5 at most, scores
#: spread over 1.9).
TOLERANCE = 1e-4
WEIGHTS_FILE = "cfanet_iaa_ava_swin-393b41b4.pth"
#: pyiqa's DEFAULT_CONFIGS["topiq_iaa"]["metric_opts"] (0.1.13 and 0.1.16 alike), less its type.
TOPIQ_IAA_OPTS = dict(semantic_model_name="swin_base_patch4_window12_384", model_name="cfanet_iaa_ava_swin",
                      use_ref=False, inter_dim=512, num_heads=8, num_class=10)
#: Modules that only fetch files or serve the face variants, never called here, and what they must provide.
_STAND_INS = {"facexlib": (), "facexlib.utils": (), "facexlib.utils.face_restoration_helper": ("FaceRestoreHelper",),
              "huggingface_hub": ("hf_hub_url",)}


def _pyiqa_topiq():
    pytest.importorskip("timm", reason="needs timm (pyiqa's Swin backbone): pip install --no-deps timm")
    absent = {top for top in ("facexlib", "huggingface_hub") if top not in sys.modules
              and importlib.util.find_spec(top) is None}
    added = []
    for name, attrs in _STAND_INS.items():
        if name.partition(".")[0] in absent:
            module = types.ModuleType(name)
            module.__path__ = []
            for attr in attrs:
                setattr(module, attr, lambda *args, **kwargs: None)
            sys.modules[name] = module
            added.append(name)
    # an earlier test (test_niqe) may have stood in for these two with a single name each: use the real ones
    for name in ("pyiqa.archs.arch_util", "pyiqa.utils.download_util"):
        if name in sys.modules and not hasattr(sys.modules[name], "__file__"):
            del sys.modules[name]
    try:
        return import_without_init("pyiqa.archs.topiq_arch", ("pyiqa", "pyiqa.archs", "pyiqa.utils"), "pyiqa==0.1.16")
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _seeded_cfanet(topiq, x: torch.Tensor, seed: int = 0):
    """pyiqa's CFANet as topiq_iaa, pretrained=False, with a seeded backbone instead of the ImageNet one;
    its last linear layer calibrated on the frames ``x`` (zero mean logit, amplified spread) so that their
    scores differ (at initialisation every frame's 10-way softmax is nearly the same and uniform)."""
    create_swin = topiq.create_swin
    topiq.create_swin = lambda name, pretrained=True, **kwargs: create_swin(name, pretrained=False, **kwargs)
    try:
        torch.manual_seed(seed)
        net = topiq.CFANet(**TOPIQ_IAA_OPTS, pretrained=False).eval()
    finally:
        topiq.create_swin = create_swin
    seen = []
    hook = net.score_linear[6].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        net(x)
        hook.remove()
        last = net.score_linear[6]
        centred = (seen[0] - seen[0].mean(dim=0)) @ last.weight.T
        last.weight.mul_(2.0 / centred.std())
        last.bias.copy_(-last.weight @ seen[0].mean(dim=0))
    return net


@pytest.fixture(scope="module")
def reference(tmp_path_factory, grid_frames):
    """The weights file (pyiqa's layout and file name), 4 GRID frames (2 clips, one frame blurred) and
    pyiqa's scores of them."""
    clips = list(grid_frames.values())
    frames = np.ascontiguousarray(np.concatenate([clips[0][[0, 40]], clips[1][[20]],
                                                  blur(clips[1][[20]], 2.0).astype(np.uint8)]))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)  # THEval: ToTensor, one batch
    net = _seeded_cfanet(_pyiqa_topiq(), x)
    folder = tmp_path_factory.mktemp("topiq_iaa")
    torch.save({"params": net.state_dict()}, folder / WEIGHTS_FILE)
    with torch.no_grad():  # THEval: metric(batch).reshape(-1)
        scores = net(x).reshape(-1)
    return {"folder": folder, "file": folder / WEIGHTS_FILE, "frames": frames, "scores": scores.double().numpy()}


@pytest.mark.slow
def test_topiq_iaa_equals_pyiqa_on_grid_frames(reference):
    network = load_topiq_iaa(reference["file"])
    ours = topiq_iaa_scores(network, torch.from_numpy(reference["frames"])).numpy()
    assert np.abs(ours - reference["scores"]).max() < TOLERANCE, (ours, reference["scores"])
    assert np.ptp(reference["scores"]) > 0.5  # the frames score apart: the comparison can tell them apart
    one_by_one = np.concatenate([topiq_iaa_scores(network, torch.from_numpy(f[None]), batch=1).numpy()
                                 for f in reference["frames"]])
    assert np.abs(one_by_one - ours).max() < TOLERANCE  # a frame's score does not depend on its batch


@pytest.mark.slow
def test_global_aesthetic_in_eval_is_the_per_frame_mean(reference, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(reference["folder"]))
    write_lossless(tmp_path / "gen" / "clip", reference["frames"])
    run = lipsync_bench.evaluate(tmp_path / "gen", None, ["theval_global_aesthetic"], out=tmp_path / "r")
    assert run.failures.empty
    # THEval: float(np.mean(scores)) over the video's frames
    assert run.summary.loc["theval_global_aesthetic", "mean"] == pytest.approx(float(np.mean(reference["scores"])),
                                                                               abs=TOLERANCE)
    described = run.protocol["metric_params"]["theval_global_aesthetic"]["weights"]
    assert described["file"] == WEIGHTS_FILE and described["official"] is False  # no published checksum


def test_without_weights_global_aesthetic_says_what_and_where(tmp_path, monkeypatch):
    metric = get_metric("theval_global_aesthetic")
    reason = metric.available(metric.defaults)
    assert WEIGHTS_FILE in reason and "huggingface.co/chaofengc/IQA-PyTorch-Weights" in reason
    assert "no such file" in metric.available(metric.resolve_params({"weights": str(tmp_path / "none.pth")}))
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    assert metric.available(metric.defaults) is None
    with pytest.raises(MetricError, match="cannot be loaded as TOPIQ-IAA weights"):
        load_topiq_iaa(tmp_path / WEIGHTS_FILE)
    torch.save({"params": {"semantic_model.foo.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(MetricError, match="not pyiqa's TOPIQ-IAA"):
        load_topiq_iaa(tmp_path / "other.pth")


def test_declarations():
    aesthetic = get_metric("theval_global_aesthetic")
    assert aesthetic.higher_is_better and not (aesthetic.needs & {"gt_frames", "landmarks", "face_frames"})
    assert not aesthetic.uses_region and aesthetic.per_frame == "per_frame"
    assert "MUSIQ" in get_metric("theval_mouth_quality").available({})
    assert "facexlib" in get_metric("theval_face_quality").available({})
