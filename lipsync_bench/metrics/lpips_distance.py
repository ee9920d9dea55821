"""LPIPS (Zhang et al. 2018), the learned perceptual image patch similarity, per frame, averaged over
frames; lower is better. Two metrics, as their scales differ: ``lpips`` (AlexNet, the reference's
default) and ``lpips_vgg`` (VGG-16).

The procedure of the ``lpips`` package (version 0.1 of its linear heads, ``lpips.LPIPS(net=...)``):

- input: uint8 RGB frames scaled to [-1, 1] as ``lpips.im2tensor`` does (x / 127.5 - 1), then the
  package's scaling layer, (x - shift) / scale with shift (-0.030, -0.088, -0.188) and scale
  (0.458, 0.448, 0.450);
- features of the ImageNet backbone at five ReLU outputs (AlexNet: relu1-relu5; VGG-16: relu1_2,
  relu2_2, relu3_3, relu4_3, relu5_3), each unit-normalised over channels (x / (||x|| + 1e-10));
- per layer, the squared difference of the two frames' features through the layer's linear head (a
  1x1 convolution to one channel, no bias), averaged over space; LPIPS is the sum over the layers.

Weights: the backbone is torchvision's (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``), found
in the weights folder or torch's hub cache and never downloaded at evaluation time (``lipsync-bench
weights fetch alexnet``); the linear heads are the ones that ship inside the ``lpips`` wheel
(``lpips/weights/v0.1/{alex,vgg}.pth``, BSD-2-Clause), read offline. Both files' checksums go into
the protocol of every result.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from .. import weights
from ..checkpoints import read_checkpoint
from ..errors import LipsyncBenchError, MetricError
from .declarations import LPIPS_BACKBONES
from .declarations import lpips_heads_file as heads_file  # noqa: F401 - heads_file: API
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# The torchvision ``features`` modules each layer's output follows, and its channels.
LAYERS = {"alex": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
          "vgg": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
#: Each network's backbone: its weights entry and torchvision's constructor.
BACKBONES = {"alex": (LPIPS_BACKBONES["alex"], torchvision.models.alexnet),
             "vgg": (LPIPS_BACKBONES["vgg"], torchvision.models.vgg16)}
FRAMES_AT_ONCE = 16

_MODELS: dict[tuple, nn.Module] = {}


class LpipsNetwork(nn.Module):
    """The backbone's feature slices and the five linear heads, in eval mode."""

    def __init__(self, net: str, backbone: dict, heads: dict):
        super().__init__()
        features = BACKBONES[net][1](weights=None).features
        features.load_state_dict({k.removeprefix("features."): v for k, v in backbone.items()
                                  if k.startswith("features.")})
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in LAYERS[net])
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS[net])
        for i, head in enumerate(self.heads):
            head.weight.data.copy_(heads[f"lin{i}.model.1.weight"])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        out = []
        for part in self.slices:
            x = part(x)
            out.append(x / (torch.sqrt(torch.sum(x * x, dim=1, keepdim=True)) + 1e-10))
        return out

    @torch.no_grad()
    def forward(self, gen: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """LPIPS of float frames in [-1, 1], (n, 3, H, W) each -> (n,)."""
        total = 0
        for head, a, b in zip(self.heads, self.features(gen), self.features(gt), strict=True):
            total = total + head((a - b) ** 2).mean(dim=(2, 3))
        return total.flatten()


def load_network(net: str, backbone: Path, heads: Path, device: torch.device) -> LpipsNetwork:
    """The network of a backbone and a heads file, loaded safely once per process and device."""
    key = (net, weights.sha256(backbone), weights.sha256(heads), str(device))
    if key not in _MODELS:
        try:  # a bad file fails this metric, the others go on
            state = read_checkpoint(backbone, f"the {BACKBONES[net][0]} backbone")
            head_state = read_checkpoint(heads, "the LPIPS linear heads")
            _MODELS[key] = LpipsNetwork(net, state, head_state).to(device)
        except LipsyncBenchError as exc:
            raise MetricError(str(exc)) from None
        except (RuntimeError, KeyError, AttributeError) as exc:
            reason = str(exc).splitlines()[0][:160]
            raise MetricError(f"{backbone}: not a torchvision {BACKBONES[net][0]} state dict ({reason})") from None
    return _MODELS[key]


def lpips_frames(network: LpipsNetwork, gen: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-frame LPIPS of uint8 RGB frames (n, H, W, 3) -> float64 (n,)."""
    out = []
    for i in range(0, gen.shape[0], FRAMES_AT_ONCE):
        a, b = (f[i:i + FRAMES_AT_ONCE].permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1 for f in (gen, gt))
        out.append(network(a, b).to(torch.float64))
    return torch.cat(out)


class _LpipsAccumulator(Accumulator):
    def __init__(self, net: str, ctx: MetricContext):
        backbone, heads = ctx.weights_paths
        self.network = load_network(net, backbone, heads, ctx.device)
        self.total, self.count = 0.0, 0

    def update(self, batch: FrameBatch) -> None:
        values = lpips_frames(self.network, batch.gen, batch.gt)
        self.total += float(values.sum())
        self.count += values.numel()

    def result(self) -> MetricValue:
        if not self.count:
            raise MetricError("no frames")
        return MetricValue(self.total / self.count, self.count)


def make_accumulator(net: str, params: dict, ctx: MetricContext) -> Accumulator:
    """The accumulator of LPIPS with the backbone ``net`` (``declarations.LPIPS``, ``LPIPS_VGG``)."""
    return _LpipsAccumulator(net, ctx)
