"""The original SyncNet (Chung & Zisserman 2016) as syncnet_python defines it, with the same
parameter names, so the published ``syncnet_v2.model`` (a plain state dict of its module ``S``) loads
directly with ``torch.load(weights_only=True)``.

Inputs: video windows (N, 3, 5, 224, 224) of face crops, BGR, float 0-255, not normalised; audio
windows (N, 1, 13, 20) of MFCCs (4 MFCC steps a video frame at 25 fps). Outputs: 1024-d embeddings.

For evaluation, ``load_syncnet`` also builds an equivalent 2D lip tower (``fuse_for_inference``): the
first Conv3d spans all 5 frames and every later one has temporal size 1, so each is a Conv2d (the
frames stacked on channels), with the eval-mode BatchNorm folded into it. Same function, about 1.6x
faster on CPU (oneDNN's 2D kernels, channels-last); embeddings agree to ~1e-6.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checkpoints import load_state, read_checkpoint
from ..errors import LipsyncBenchError


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
        fused = self.__dict__.get("_lip2d")  # not a submodule: the state dict keeps the published keys
        if fused is not None and not self.training:
            n, c, t, h, w = clips.shape
            x = clips.reshape(n, c * t, h, w).contiguous(memory_format=torch.channels_last)
            return self.netfclip(fused(x).flatten(1))
        return self.netfclip(self.netcnnlip(clips).flatten(1))

    @torch.no_grad()
    def fuse_for_inference(self) -> "SyncNet":
        """Build the 2D lip tower from the current weights (call again after changing them)."""
        self.__dict__["_lip2d"] = _conv3d_tower_as_2d(self.netcnnlip).to(memory_format=torch.channels_last)
        return self

    def _apply(self, fn, *args, **kwargs):  # .to(device) moves the fused tower too
        super()._apply(fn, *args, **kwargs)
        if self.__dict__.get("_lip2d") is not None:
            self.__dict__["_lip2d"]._apply(fn, *args, **kwargs)
        return self


def _triple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x, x)


def _conv3d_tower_as_2d(tower: nn.Sequential) -> nn.Sequential:
    """The lip tower with each Conv3d (+ eval BatchNorm3d) as one Conv2d over (channels x frames)."""
    mods, out, i = list(tower), [], 0
    while i < len(mods):
        layer = mods[i]
        if isinstance(layer, nn.Conv3d):
            w = layer.weight.detach()
            conv = nn.Conv2d(w.shape[1] * w.shape[2], w.shape[0], tuple(w.shape[3:]),
                             stride=_triple(layer.stride)[1:], padding=_triple(layer.padding)[1:])
            weight, bias = w.reshape(w.shape[0], -1, *w.shape[3:]).clone(), layer.bias.detach().clone()
            if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm3d):
                bn = mods[i + 1]
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                weight, bias = weight * scale[:, None, None, None], (bias - bn.running_mean) * scale + bn.bias
                i += 1
            conv.weight.data, conv.bias.data = weight, bias
            out.append(conv)
        elif isinstance(layer, nn.MaxPool3d):
            out.append(nn.MaxPool2d(_triple(layer.kernel_size)[1:], _triple(layer.stride)[1:],
                                    _triple(layer.padding)[1:]))
        elif isinstance(layer, nn.ReLU):
            out.append(nn.ReLU(inplace=layer.inplace))
        else:
            raise TypeError(f"cannot convert {type(layer).__name__} to 2D")
        i += 1
    return nn.Sequential(*out).eval()


def load_syncnet(path: str | Path, device: str | torch.device = "cpu") -> SyncNet:
    """SyncNet with the weights of ``syncnet_v2.model`` (or a file in its layout), in eval mode.
    A file that is not such a state dict (corrupt, truncated, other keys, pickled code, which
    ``weights_only`` refuses to run) is a ``LipsyncBenchError`` naming the file."""

    state = read_checkpoint(path, "SyncNet weights")
    if not isinstance(state, dict):
        raise LipsyncBenchError(f"{path}: holds a {type(state).__name__}, not a SyncNet state dict")
    model = SyncNet()
    load_state(model, state, path, "syncnet_v2.model")
    return model.eval().fuse_for_inference().to(device)
