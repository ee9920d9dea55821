"""The original SyncNet (Chung & Zisserman 2016) as syncnet_python defines it, with the same
parameter names, so the published ``syncnet_v2.model`` (a plain state dict of its module ``S``) loads
directly with ``torch.load(weights_only=True)``.

Inputs: video windows (N, 3, 5, 224, 224) of face crops, BGR, float 0-255, not normalised; audio
windows (N, 1, 13, 20) of MFCCs (4 MFCC steps a video frame at 25 fps). Outputs: 1024-d embeddings.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _stack(layers: list[tuple]) -> nn.Sequential:
    """Build a Sequential from compact specs; index positions (and so state-dict keys) follow the list."""
    made = []
    for kind, *args in layers:
        made.append({"conv2": nn.Conv2d, "conv3": nn.Conv3d, "bn2": nn.BatchNorm2d, "bn3": nn.BatchNorm3d,
                     "bn1": nn.BatchNorm1d, "pool2": nn.MaxPool2d, "pool3": nn.MaxPool3d,
                     "linear": nn.Linear}.get(kind, None)(*args[:-1], **args[-1]) if kind != "relu"
                    else nn.ReLU(inplace=args[0]))
    return nn.Sequential(*made)


def _audio_layers() -> list[tuple]:
    return [
        ("conv2", 1, 64, {"kernel_size": 3, "padding": 1}), ("bn2", 64, {}), ("relu", True),
        ("pool2", {"kernel_size": 1, "stride": 1}),
        ("conv2", 64, 192, {"kernel_size": 3, "padding": 1}), ("bn2", 192, {}), ("relu", True),
        ("pool2", {"kernel_size": 3, "stride": (1, 2)}),
        ("conv2", 192, 384, {"kernel_size": 3, "padding": 1}), ("bn2", 384, {}), ("relu", True),
        ("conv2", 384, 256, {"kernel_size": 3, "padding": 1}), ("bn2", 256, {}), ("relu", True),
        ("conv2", 256, 256, {"kernel_size": 3, "padding": 1}), ("bn2", 256, {}), ("relu", True),
        ("pool2", {"kernel_size": 3, "stride": 2}),
        ("conv2", 256, 512, {"kernel_size": (5, 4)}), ("bn2", 512, {}), ("relu", False),
    ]


def _lip_layers() -> list[tuple]:
    return [
        ("conv3", 3, 96, {"kernel_size": (5, 7, 7), "stride": (1, 2, 2)}), ("bn3", 96, {}), ("relu", True),
        ("pool3", {"kernel_size": (1, 3, 3), "stride": (1, 2, 2)}),
        ("conv3", 96, 256, {"kernel_size": (1, 5, 5), "stride": (1, 2, 2), "padding": (0, 1, 1)}),
        ("bn3", 256, {}), ("relu", True),
        ("pool3", {"kernel_size": (1, 3, 3), "stride": (1, 2, 2), "padding": (0, 1, 1)}),
        ("conv3", 256, 256, {"kernel_size": (1, 3, 3), "padding": (0, 1, 1)}), ("bn3", 256, {}), ("relu", True),
        ("conv3", 256, 256, {"kernel_size": (1, 3, 3), "padding": (0, 1, 1)}), ("bn3", 256, {}), ("relu", True),
        ("conv3", 256, 256, {"kernel_size": (1, 3, 3), "padding": (0, 1, 1)}), ("bn3", 256, {}), ("relu", True),
        ("pool3", {"kernel_size": (1, 3, 3), "stride": (1, 2, 2)}),
        ("conv3", 256, 512, {"kernel_size": (1, 6, 6)}), ("bn3", 512, {}), ("relu", True),
    ]


def _head(dim: int) -> list[tuple]:
    return [("linear", 512, 512, {}), ("bn1", 512, {}), ("relu", False), ("linear", 512, dim, {})]


class SyncNet(nn.Module):
    """Audio and lip towers of SyncNet; ``embed_audio`` / ``embed_video`` give (N, 1024) embeddings."""

    def __init__(self, embedding_dim: int = 1024):
        super().__init__()
        self.netcnnaud = _stack(_audio_layers())
        self.netfcaud = _stack(_head(embedding_dim))
        self.netfclip = _stack(_head(embedding_dim))
        self.netcnnlip = _stack(_lip_layers())

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_video(self, clips: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(clips).flatten(1))


def load_syncnet(path: str | Path, device: str | torch.device = "cpu") -> SyncNet:
    """SyncNet with the weights of ``syncnet_v2.model`` (or a file in its layout), in eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = SyncNet()
    model.load_state_dict(state)
    return model.eval().to(device)
