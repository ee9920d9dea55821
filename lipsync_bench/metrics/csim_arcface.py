"""CSIM with ArcFace: the identity similarity of generated and ground-truth frames, the cosine
similarity of their 512-d ArcFace embeddings, averaged over the frames where both videos have a
detected face; higher is better.

- **Network**: insightface's ``arcface_torch`` IResNet-100 (``iresnet100``: blocks 3, 13, 30, 3; PReLU;
  a 512x7x7 -> 512 linear layer and a final BatchNorm1d), trained on MS1MV3 — the ``backbone.pth`` of
  its ``ms1mv3_arcface_r100_fp16`` model, the one the ViCo evaluation uses. Its licence is research
  use; it is not downloadable by a stable URL, so it is placed by hand (``weights list`` says how) and
  read with ``torch.load(weights_only=True)`` in arcface_torch's state-dict layout.
- **Crop** (``crop``): ``aligned`` (default): the 112x112 face aligned as insightface's
  ``face_align.norm_crop`` does — a similarity transform (scikit-image's ``SimilarityTransform``, least
  squares) of five points to ArcFace's template, then ``cv2.warpAffine`` (bilinear, black borders). The
  five points come from the face stage's 68 landmarks: the centres of the two eyes (points 36–41 and
  42–47), the nose tip (30) and the mouth corners (48, 54). ``frame``: the ViCo variant, the whole
  frame resized to 112x112 (``cv2.resize``, bilinear), no alignment.
- **Input**: RGB, (x / 255 - 0.5) / 0.5, as arcface_torch's ``inference.py`` (and insightface's ONNX
  path, mean and std 127.5).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.transform import SimilarityTransform
from torch import nn

from ..checkpoints import load_state, read_checkpoint, state_dict_of
from ..errors import MetricError
from .face_identity import IdentityAccumulator
from .streaming import Accumulator, MetricContext

SIZE = 112
#: ArcFace's five-point template in the 112x112 crop (insightface's ``arcface_dst``).
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
LAYERS = (3, 13, 30, 3)
FRAMES_AT_ONCE = 16

_MODELS: dict[tuple[str, str], nn.Module] = {}


class _Block(nn.Module):
    """IResNet's residual block: BN, 3x3 conv, BN, PReLU, 3x3 conv (strided), BN; plus the shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """arcface_torch's IResNet (``iresnet100`` by default) in its state-dict layout: 112x112 RGB in
    [-1, 1] -> 512-d embeddings."""

    def __init__(self, layers: tuple[int, ...] = LAYERS, features: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            setattr(self, f"layer{i + 1}", nn.Sequential(*[_Block(cin if b == 0 else width, width, 2 if b == 0 else 1)
                                                           for b in range(blocks)]))
            cin = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, features)
        self.features = nn.BatchNorm1d(features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(torch.flatten(self.bn2(x), 1)))  # dropout: identity in eval mode


def load_arcface(path: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    key = (str(path), str(device))
    if key not in _MODELS:
        model = IResNet()
        state = state_dict_of(read_checkpoint(path, "ArcFace weights"), path)
        load_state(model, state, path, "arcface_torch iresnet100")
        _MODELS[key] = model.eval().to(device)
    return _MODELS[key]


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """ArcFace's five points (eye centres, nose tip, mouth corners, in image left-to-right order) from
    68-point landmarks (68, 2) -> (5, 2) float32."""
    lm = np.asarray(landmarks, dtype=np.float64)
    points = [lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]
    return np.array(points, dtype=np.float32)


def align(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 112x112 crop of ``frame`` aligned by the similarity transform that takes the five ``points``
    to ArcFace's template (insightface's ``norm_crop``)."""
    points = np.asarray(points, dtype=np.float32)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        transform = SimilarityTransform.from_estimate(points, TEMPLATE)
    else:
        transform = SimilarityTransform()
        transform = transform if transform.estimate(points, TEMPLATE) else None
    if not transform:
        raise MetricError("the five face points are degenerate: no similarity transform to ArcFace's template")
    return cv2.warpAffine(np.ascontiguousarray(frame), transform.params[0:2, :], (SIZE, SIZE), borderValue=0.0)


def network_input(crops: np.ndarray) -> torch.Tensor:
    """uint8 RGB crops (n, 112, 112, 3) -> float32 (n, 3, 112, 112) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).to(torch.float32)
    return x.div(255).sub(0.5).div(0.5)


@torch.no_grad()
def embeddings(model: nn.Module, frames: np.ndarray, landmarks: np.ndarray | None, crop: str = "aligned",
               device: torch.device | str = "cpu") -> np.ndarray:
    """ArcFace embeddings (n, 512) of RGB uint8 frames (n, H, W, 3), aligned by their 68 landmarks
    (``crop="aligned"``) or resized whole (``crop="frame"``)."""
    if crop == "aligned":
        crops = [align(f, five_points(lm)) for f, lm in zip(frames, landmarks, strict=True)]
    else:
        crops = [cv2.resize(np.ascontiguousarray(f), (SIZE, SIZE)) for f in frames]
    out = [model(network_input(np.stack(crops[i:i + FRAMES_AT_ONCE])).to(device)).cpu().numpy()
           for i in range(0, len(crops), FRAMES_AT_ONCE)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 512))


class _ArcfaceAccumulator(IdentityAccumulator):
    def __init__(self, params: dict, ctx: MetricContext):
        model = load_arcface(ctx.weights_path, ctx.device)
        super().__init__(ctx, lambda frames, boxes, landmarks: embeddings(model, frames, landmarks, params["crop"],
                                                                           ctx.device), params["frames"])


def make_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """CSIM's accumulator (``declarations.CSIM_ARCFACE``)."""
    return _ArcfaceAccumulator(params, ctx)
