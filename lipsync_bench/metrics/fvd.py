"""FVD, the Fréchet video distance (Unterthiner et al. 2018): the Fréchet distance between the I3D
features of all generated and all ground-truth 16-frame clips of a run; lower is better. A dataset
metric, like FID: each video's clip features are its state in the results folder, so ``merge``,
``table`` and a rerun recompute FVD from them (never a mean of per-shard FVDs).

The procedure is ``cd-fvd``'s (0.1.1, the ``cdfvd.fvd.cdfvd`` class with ``model='i3d'`` on a folder of
videos):

- **clips**: 16 consecutive frames at the protocol's frame rate (and region); cd-fvd draws one clip a
  video at random, lipsync-bench takes them deterministically: from frame ``start`` on, every
  non-overlapping clip (``clips=all``, default) or the first (``clips=one``); recorded in the protocol;
- **resizing** (cd-fvd's ``preprocess``): frames /255, the shorter side resized to ``resolution``
  (256, cd-fvd's ``load_videos`` default) bilinearly with antialiasing, centre crop, back to uint8 by
  truncation (``(x * 255).byte()``); then (``preprocess_i3d``) resized bilinearly to 224x224 without
  antialiasing and scaled to [-1, 1];
- **network**: the Inception-v1 I3D of ``pytorch_i3d`` (TensorFlow "same" padding, batch norm eps 1e-5,
  400 Kinetics logits averaged over time) with the weights ``i3d_pretrained_400.pt`` (the file cd-fvd
  and TATS download), loaded with ``torch.load(weights_only=True)``, never downloaded here;
- **statistics**: mean and covariance of the 400-d logits over all clips, the covariance divided by
  n (cd-fvd's ``FeatureStats``), float64; **distance**: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)),
  FID's ``frechet_distance`` (from eigenvalues; cd-fvd takes the real part of ``scipy.linalg.sqrtm``).

LatentSync's variant (frames 20–35 of the face crop at 224x224) is ``--region face --param
fvd.start=20 --param fvd.clips=one --param fvd.resolution=224``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_state, read_checkpoint, state_dict_of
from ..errors import MetricError
from .fid import MomentSum, frechet_distance, side_moments, video_state
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue

CLIP = 16
FEATURE_DIM = 400
I3D_SIZE = 224
CLIPS_AT_ONCE = 4

_MODELS: dict[tuple[str, str], nn.Module] = {}


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis (before, after)."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple, stride: tuple) -> torch.Tensor:
    pads = [_same_padding(s, k, st) for s, k, st in zip(x.shape[2:], kernel, stride, strict=True)]
    return F.pad(x, [p for pair in reversed(pads) for p in pair])


class _Unit(nn.Module):
    """A 3-D convolution with "same" padding, then batch norm and ReLU (the logits: bias, neither)."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), head: bool = False):
        super().__init__()
        self.kernel, self.stride, self.head = tuple(kernel), tuple(stride), head
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=head)
        if not head:
            self.bn = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        return x if self.head else F.relu(self.bn(x))


class _Pool(nn.Module):
    """Max pooling with "same" padding (zeros, as the reference pads)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class _Mixed(nn.Module):
    """An inception block: 1x1; 1x1 then 3x3x3; 1x1 then 3x3x3; 3x3x3 max pool then 1x1."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        self.b0 = _Unit(cin, widths[0])
        self.b1a, self.b1b = _Unit(cin, widths[1]), _Unit(widths[1], widths[2], (3, 3, 3))
        self.b2a, self.b2b = _Unit(cin, widths[3]), _Unit(widths[3], widths[4], (3, 3, 3))
        self.b3a, self.b3b = _Pool((3, 3, 3), (1, 1, 1)), _Unit(cin, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


# The inception blocks' branch widths; the module names are those of the published state dict.
_BLOCKS = {"Mixed_3b": (64, 96, 128, 16, 32, 32), "Mixed_3c": (128, 128, 192, 32, 96, 64),
           "Mixed_4b": (192, 96, 208, 16, 48, 64), "Mixed_4c": (160, 112, 224, 24, 64, 64),
           "Mixed_4d": (128, 128, 256, 24, 64, 64), "Mixed_4e": (112, 144, 288, 32, 64, 64),
           "Mixed_4f": (256, 160, 320, 32, 128, 128), "Mixed_5b": (256, 160, 320, 32, 128, 128),
           "Mixed_5c": (384, 192, 384, 48, 128, 128)}


def _width(widths: tuple[int, ...]) -> int:
    return widths[0] + widths[2] + widths[4] + widths[5]


class I3D(nn.Module):
    """Inception-v1 I3D (Carreira & Zisserman 2017) to its 400 logits, in the state-dict layout of
    ``pytorch_i3d.InceptionI3d`` (the layout of ``i3d_pretrained_400.pt``)."""

    def __init__(self, classes: int = FEATURE_DIM):
        super().__init__()
        self.Conv3d_1a_7x7 = _Unit(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = _Pool((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = _Unit(64, 64)
        self.Conv3d_2c_3x3 = _Unit(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = _Pool((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = _Mixed(192, _BLOCKS["Mixed_3b"])
        self.Mixed_3c = _Mixed(_width(_BLOCKS["Mixed_3b"]), _BLOCKS["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = _Pool((3, 3, 3), (2, 2, 2))
        names = ["Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"]
        previous = "Mixed_3c"
        for name in names:
            setattr(self, name, _Mixed(_width(_BLOCKS[previous]), _BLOCKS[name]))
            previous = name
        self.MaxPool3d_5a_2x2 = _Pool((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = _Mixed(_width(_BLOCKS["Mixed_4f"]), _BLOCKS["Mixed_5b"])
        self.Mixed_5c = _Mixed(_width(_BLOCKS["Mixed_5b"]), _BLOCKS["Mixed_5c"])
        self.logits = _Unit(_width(_BLOCKS["Mixed_5c"]), classes, head=True)
        self.order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
                      "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", *names, "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, T, 224, 224) in [-1, 1] -> (n, 400) logits averaged over time."""
        for name in self.order:
            x = getattr(self, name)(x)
        x = self.logits(F.avg_pool3d(x, (2, 7, 7), stride=1))  # dropout: identity in eval mode
        return x.squeeze(4).squeeze(3).mean(2)


def load_i3d(path, device: torch.device | str = "cpu") -> nn.Module:
    """The I3D with the weights at ``path`` (a state dict, read with ``weights_only=True``), in eval mode."""
    key = (str(path), str(device))
    if key not in _MODELS:
        model = I3D()
        load_state(model, state_dict_of(read_checkpoint(path, "I3D weights"), path), path, "pytorch_i3d")
        _MODELS[key] = model.eval().to(device)
    return _MODELS[key]


def clip_input(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    """cd-fvd's preprocessing of clips: uint8 RGB (n, T, H, W, 3) -> float32 (n, 3, T, 224, 224) in [-1, 1]."""
    n, t, h, w, _ = frames.shape
    x = frames.reshape(n * t, h, w, 3).permute(0, 3, 1, 2).to(torch.float32) / 255.0
    scale = resolution / min(h, w)
    size = (resolution, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), resolution)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = (x.shape[2] - resolution) // 2, (x.shape[3] - resolution) // 2
    x = x[:, :, top:top + resolution, left:left + resolution]
    x = (x * 255).to(torch.uint8).to(torch.float32)  # truncated to uint8 between the two resizes, as cd-fvd does
    x = F.interpolate(x, size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False)
    x = x.reshape(n, t, 3, I3D_SIZE, I3D_SIZE).transpose(1, 2)
    return 2.0 * x / 255.0 - 1


@torch.no_grad()
def clip_features(model: nn.Module, clips: torch.Tensor, resolution: int) -> np.ndarray:
    """I3D logits (n, 400) float32 of uint8 clips (n, 16, H, W, 3)."""
    out = [model(clip_input(clips[i:i + CLIPS_AT_ONCE], resolution).contiguous()).cpu().numpy()
           for i in range(0, len(clips), CLIPS_AT_ONCE)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, FEATURE_DIM), np.float32)


class _FvdAccumulator(Accumulator):
    def __init__(self, params: dict, ctx: MetricContext):
        self.params, self.ctx = params, ctx
        self.model = load_i3d(ctx.weights_path, ctx.device)
        self.need_gt = "gt" not in ctx.reuse  # the GT's features of an earlier method are reused
        self.sides = {"gen": [], "gt": []} if self.need_gt else {"gen": []}
        self.pending = {side: [] for side in self.sides}  # frames of the clip being filled
        self.features = {side: [] for side in self.sides}
        self.frames = 0

    def _wanted(self, index: int) -> bool:
        start = self.params["start"]
        if index < start:
            return False
        return self.params["clips"] == "all" or index < start + CLIP

    def update(self, batch: FrameBatch) -> None:
        n = batch.gen.shape[0]
        keep = [i for i in range(n) if self._wanted(batch.start + i)]
        self.frames = batch.start + n
        for side in self.sides:
            frames = batch.gen if side == "gen" else batch.gt
            for i in keep:
                self.pending[side].append(frames[i])
                if len(self.pending[side]) == CLIP:
                    clip = torch.stack(self.pending[side])[None]
                    self.features[side].append(clip_features(self.model, clip, self.params["resolution"]))
                    self.pending[side] = []

    def result(self) -> MetricValue:
        if not self.features["gen"]:
            raise MetricError(f"FVD needs at least {self.params['start'] + CLIP} frames (clips of {CLIP} from "
                              f"frame {self.params['start']}), the video has {self.frames}")
        gen = np.concatenate(self.features["gen"])
        gt = np.concatenate(self.features["gt"]) if self.need_gt else None
        return MetricValue(math.nan, len(gen) * CLIP, state=video_state(self.ctx, gen, gt))


def dataset_value(params: dict, states: list[dict]) -> MetricValue:
    """FVD over the videos' clip features: ``states`` holds, per video, a loader of each side's features."""
    gen, gt = side_moments(states, MomentSum(FEATURE_DIM, "FVD", "clips"), MomentSum(FEATURE_DIM, "FVD", "clips"))
    mu1, s1 = gen.mean_cov(ddof=0)
    mu2, s2 = gt.mean_cov(ddof=0)
    value = frechet_distance(mu1, s1, mu2, s2)
    warnings = [] if gen.n > FEATURE_DIM else [
        f"FVD from {gen.n} clips: fewer than {FEATURE_DIM} features, the covariance is singular; compare with care"]
    return MetricValue(value, gen.n * CLIP, warnings)


def make_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """FVD's accumulator (``declarations.FVD``): each side's I3D features of 16-frame clips."""
    return _FvdAccumulator(params, ctx)
