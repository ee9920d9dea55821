"""THEval's global aesthetic (pyiqa's TOPIQ-IAA) against pyiqa's own CFANet (0.1.16; the architecture is
unchanged from the 0.1.13 that THEval pins) on real GRID frames, with the same seeded random weights
saved in pyiqa's published layout (``{"params": state dict}``).

pyiqa's package ``__init__`` imports every model it has; the test loads only its TOPIQ module. That
module imports facexlib (for the face variants, never built here) and its ``arch_util`` imports
huggingface_hub (to name download URLs, never called here): both are stood in for. Its Swin backbone is
timm's (pyiqa's copy needs the ``timm`` package); with ``pretrained=False`` CFANet still asks for the
ImageNet Swin weights, so the test builds the backbone seeded instead.

THEval's mouth quality (pyiqa's MUSIQ, KonIQ-10k) against pyiqa's own MUSIQ arch (``pretrained=False``:
KonIQ's one-output head; seeded weights saved as pyiqa's published file, a plain state dict) on GRID mouth
crops cut as THEval's mouth_quality.py cuts them (the box of its 40 lip points, +10 px) from the face mesh
(``faces.mediapipe_mesh``, static-image mode), THEval's PIL padding and ToTensor done here with PIL."""
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
from lipsync_bench.faces import mediapipe_mesh
from lipsync_bench.metrics import get_metric
from lipsync_bench.metrics.theval_quality import (
    crop_box,
    load_musiq,
    load_topiq_iaa,
    mouth_box,
    musiq_scores,
    topiq_iaa_scores,
)
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
    mouth = get_metric("theval_mouth_quality")
    assert mouth.higher_is_better and not mouth.uses_region and mouth.params["pad_batch"].defines
    assert "facexlib" in get_metric("theval_face_quality").available({})


# --------------------------------------------------------------------------------------------------
# Mouth quality: MUSIQ on mouth crops

#: Ours against pyiqa's MUSIQ, on KonIQ's 0-100 score scale (float32 throughout; measured: 0.0, the same
#: operations in the same order, scores spread over more than 10).
MUSIQ_TOLERANCE = 1e-4
MUSIQ_FILE = "musiq_koniq_ckpt-e95806b9.pth"


def _pyiqa_musiq():
    """pyiqa's musiq_arch, imported without pyiqa's package ``__init__`` nor ``pyiqa.data``'s (its
    multi-scale patching lives there); huggingface_hub stood in for when absent (URLs only)."""
    import_without_init("pyiqa.archs", ("pyiqa", "pyiqa.archs", "pyiqa.utils"), "pyiqa==0.1.16")
    root = sys.modules["pyiqa"].__path__[0]
    if "pyiqa.data" not in sys.modules:  # an earlier import_without_init named the three packages only
        package = types.ModuleType("pyiqa.data")
        package.__path__ = [f"{root}/data"]
        sys.modules["pyiqa.data"] = package
    for name in ("pyiqa.archs.arch_util", "pyiqa.utils.download_util"):  # test_niqe's one-name stand-ins
        if name in sys.modules and not hasattr(sys.modules[name], "__file__"):
            del sys.modules[name]
    added = []
    if "huggingface_hub" not in sys.modules and importlib.util.find_spec("huggingface_hub") is None:
        module = types.ModuleType("huggingface_hub")
        module.hf_hub_url = lambda *args, **kwargs: None
        sys.modules["huggingface_hub"] = module
        added.append("huggingface_hub")
    try:
        return importlib.import_module("pyiqa.archs.musiq_arch")
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _theval_batch(crops: list[np.ndarray]) -> torch.Tensor:
    """THEval's pad_images and ToTensor, with PIL: each crop pasted at (0, 0) on a black canvas of the
    largest width and height."""
    from PIL import Image

    images = [Image.fromarray(c) for c in crops]
    width, height = max(i.width for i in images), max(i.height for i in images)
    padded = []
    for image in images:
        canvas = Image.new(image.mode, (width, height), (0, 0, 0))
        canvas.paste(image, (0, 0))
        padded.append(torch.from_numpy(np.array(canvas)).permute(2, 0, 1).float().div(255))
    return torch.stack(padded)


@pytest.fixture(scope="module")
def mouth_reference(tmp_path_factory, grid_frames, mediapipe_weights):
    """Seeded MUSIQ weights (pyiqa's file name and layout) beside the mesh's model files, 6 GRID frames
    (2 clips, one frame blurred), their THEval mouth crops and pyiqa's scores of them: as one padded
    batch (THEval) and each crop alone."""
    clips = list(grid_frames.values())
    frames = np.ascontiguousarray(np.concatenate([clips[0][[0, 30, 60]], clips[1][[10, 50]],
                                                  blur(clips[1][[50]], 2.0).astype(np.uint8)]))
    mesh = mediapipe_mesh.FaceMeshTracker(static_image_mode=True, weights_dir=mediapipe_weights)
    crops = []
    for frame in frames:
        points = mesh.process(frame)
        assert points is not None
        crops.append(crop_box(frame, mouth_box(points, frame.shape[1], frame.shape[0])))
    musiq = _pyiqa_musiq()
    torch.manual_seed(0)
    net = musiq.MUSIQ(pretrained=False).eval()  # create_metric("musiq"): koniq10k, one output
    seen = []  # calibrate the head on the crops (KonIQ-like 50 +- 10) so that their scores differ
    hook = net.head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        net(_theval_batch(crops))
        hook.remove()
        centred = (seen[0] - seen[0].mean(dim=0)) @ net.head.weight.T
        net.head.weight.mul_(10.0 / centred.std())
        net.head.bias.copy_(50.0 - net.head.weight @ seen[0].mean(dim=0))
        padded = net(_theval_batch(crops)).reshape(-1)
        alone = torch.cat([net(_theval_batch([c])).reshape(-1) for c in crops])
    folder = tmp_path_factory.mktemp("musiq")
    torch.save(net.state_dict(), folder / MUSIQ_FILE)
    for model in mediapipe_weights.iterdir():
        (folder / model.name).write_bytes(model.read_bytes())
    return {"folder": folder, "file": folder / MUSIQ_FILE, "frames": frames, "crops": crops,
            "padded": padded.double().numpy(), "alone": alone.double().numpy()}


@pytest.mark.slow
def test_musiq_equals_pyiqa_on_grid_mouth_crops(mouth_reference):
    network = load_musiq(mouth_reference["file"])
    crops = mouth_reference["crops"]
    assert len({c.shape for c in crops}) > 1  # the padding is exercised
    padded = musiq_scores(network, crops, pad=True).numpy()
    assert np.abs(padded - mouth_reference["padded"]).max() < MUSIQ_TOLERANCE, (padded, mouth_reference["padded"])
    alone = musiq_scores(network, crops, pad=False).numpy()
    assert np.abs(alone - mouth_reference["alone"]).max() < MUSIQ_TOLERANCE, (alone, mouth_reference["alone"])
    assert np.ptp(mouth_reference["alone"]) > 5  # the crops score apart: the comparison can tell them apart
    assert np.abs(padded - alone).max() > 0.1  # THEval's padding changes the scores (the quirk is real)
    one_by_one = musiq_scores(network, crops, pad=True, batch=1).numpy()
    assert np.abs(one_by_one - padded).max() < MUSIQ_TOLERANCE  # the network's batch changes nothing


@pytest.mark.slow
def test_mouth_quality_in_eval_is_theval_per_batch_mean(mouth_reference, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(mouth_reference["folder"]))
    write_lossless(tmp_path / "gen" / "clip", mouth_reference["frames"])
    for pad_batch, expected in ((64, "padded"), (0, "alone")):
        run = lipsync_bench.evaluate(tmp_path / "gen", None, ["theval_mouth_quality"], out=tmp_path / f"r{pad_batch}",
                                     params={"theval_mouth_quality": {"pad_batch": pad_batch}})
        assert run.failures.empty
        # THEval: float(np.mean(scores)) over the crops of the frames with a face
        assert run.summary.loc["theval_mouth_quality", "mean"] == pytest.approx(
            float(np.mean(mouth_reference[expected])), abs=MUSIQ_TOLERANCE)
    described = run.protocol["metric_params"]["theval_mouth_quality"]["weights"]  # MUSIQ's, then the mesh's
    assert described[0]["file"] == MUSIQ_FILE and described[0]["official"] is False  # no published checksum
    assert [d["file"] for d in described[1:]] == ["face_detection_short_range.tflite", "face_landmark.tflite"]


def test_mouth_box_is_thevals():
    points = np.zeros((468, 3), np.float32)
    points[:, :2] = 0.5
    points[61, :2], points[291, :2] = (0.3999, 0.61), (0.6, 0.7)  # int() truncates: 143.96 -> 143
    assert mouth_box(points, 360, 288) == (133, 134, 226, 211)
    points[61, 0], points[291, 1] = -0.01, 0.99  # clipped to the frame
    assert mouth_box(points, 360, 288) == (0, 134, 226, 288)
    frame = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    assert np.array_equal(crop_box(frame, (1, 1, 4, 3)), frame[1:3, 1:4])
    assert np.array_equal(crop_box(frame, (3, 2, 7, 4))[:, 2:], np.zeros((2, 2, 3), np.uint8))  # PIL: zeros outside


def test_without_weights_mouth_quality_says_what_and_where(tmp_path, monkeypatch):
    metric = get_metric("theval_mouth_quality")
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))
    reason = metric.available(metric.defaults)
    assert MUSIQ_FILE in reason and "huggingface.co/chaofengc/IQA-PyTorch-Weights" in reason
    assert "no such file" in metric.available(metric.resolve_params({"weights": str(tmp_path / "none.pth")}))
    (tmp_path / MUSIQ_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(MetricError, match="cannot be loaded as MUSIQ weights"):
        load_musiq(tmp_path / MUSIQ_FILE)
    torch.save({"conv_root.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(MetricError, match="not in pyiqa's MUSIQ"):
        load_musiq(tmp_path / "other.pth")
