"""One interface over the three sync experts, for LSE with an expert other than SyncNet and for the
analyses (stability, robustness: ``research.expert_analysis``): each gives unit-norm embeddings of
5-frame windows of face crops, in the crop geometry and colour order it was trained on.

| expert | crop (from the face track) | frames fed | audio |
|---|---|---|---|
| ``syncnet`` | syncnet_python's (margin 0.4), 224x224, whole crop | BGR, 0-255 | MFCC 13 x 20 |
| ``wav2lip`` | face crop (margin 0.15), 96x96, bottom half | BGR, [0, 1] | mel 80 x 16 |
| ``avsyncnet`` | face crop (margin 0.15), 224x224, bottom half | RGB, [0, 1] | mel 80 x 16 |

Cosine similarity is the paper's P_sync (Eq. A) and -log of it (clamped to [1e-7, 1]) the lip-sync
loss of a ground-truth pair (Eq. B with label 1). SyncNet was trained on Euclidean distance, not on
cosine similarity; its cosine similarity is computed all the same, as the paper does for Fig. 1 / A.

An expert with seeded random weights (``research.expert_analysis.random_expert``, smoke tests) is
labelled "random-init".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import LipsyncBenchError
from .avsyncnet import TINY, AVSyncNet, AVSyncNetConfig, load_avsyncnet
from .expert_names import EXPERTS, LABELS, describe_weights
from .inputs import FACE_CROP, FRAMES, INPUTS, expert_input
from .syncnet import SyncNet, load_syncnet
from .wav2lip import Wav2LipSyncNet, load_wav2lip_syncnet

SYNCNET_CROP_SCALE = 0.4


@dataclass
class Expert:
    name: str
    model: torch.nn.Module
    weights: dict  # {"file", "sha256", "official"} or {"random_init": seed}
    device: torch.device

    @property
    def label(self) -> str:
        return LABELS[self.name] + (" (random-init)" if self.weights.get("random_init") is not None else "")

    @property
    def similarity_range(self) -> tuple[float, float]:
        """The cosine similarity's range: SyncNet's embeddings have both signs; Wav2Lip's expert and
        AVSyncNet end in a ReLU, so theirs lies in [0, 1]."""
        return (-1.0, 1.0) if self.name == "syncnet" else (0.0, 1.0)

    @property
    def crop_scale(self) -> float:
        return SYNCNET_CROP_SCALE if self.name == "syncnet" else FACE_CROP.crop_scale

    @property
    def crop_size(self) -> int:
        return 224 if self.name == "syncnet" else INPUTS[self.name].size

    @torch.no_grad()
    def video(self, windows: torch.Tensor, transform=None, before_half: bool = False) -> torch.Tensor:
        """(N, 5, S, S, 3) RGB uint8 windows -> (N, D) unit embeddings. ``transform`` maps float
        (M, 3, H, W) images to images of the same size: applied to the expert's input (the bottom half
        for the experts that take one) or, with ``before_half``, to the whole crop before it is halved."""
        n = windows.shape[0]
        x = windows.to(self.device)
        if self.name == "syncnet":
            x = x.flip(-1).permute(0, 4, 1, 2, 3).float()  # N, 3 (BGR), 5, H, W; 0-255
            if transform is not None:
                imgs = transform(x.permute(0, 2, 1, 3, 4).reshape(-1, 3, *x.shape[-2:]))
                x = imgs.reshape(n, FRAMES, 3, *x.shape[-2:]).permute(0, 2, 1, 3, 4)
            return F.normalize(self.model.embed_video(x.contiguous()), dim=1)
        return self.model.embed_faces(expert_input(x, INPUTS[self.name], transform, before_half))


def build_model(name: str, tiny: bool = False) -> torch.nn.Module:
    if name == "syncnet":
        return SyncNet()
    if name == "wav2lip":
        return Wav2LipSyncNet()
    if name == "avsyncnet":
        return AVSyncNet(TINY if tiny else AVSyncNetConfig())
    raise LipsyncBenchError(f"unknown sync expert {name!r} (known: {', '.join(EXPERTS)})")


def load_expert(name: str, path: str | Path, device: str | torch.device = "cpu") -> Expert:
    """An expert from its weights file: ``syncnet_v2.model``, ``lipsync_expert.pth`` (or a
    train-syncnet checkpoint of either Wav2Lip's layout), or an AVSyncNet checkpoint."""
    device = torch.device(device)
    path = Path(path)
    if name not in EXPERTS:
        raise LipsyncBenchError(f"unknown sync expert {name!r} (known: {', '.join(EXPERTS)})")
    if not path.is_file():
        raise LipsyncBenchError(f"{path}: no such weights file for {LABELS[name]}")
    if name == "syncnet":
        model = load_syncnet(path, device)
    elif name == "wav2lip":
        model = load_wav2lip_syncnet(path, device)
    else:
        model = load_avsyncnet(path, device)
    return Expert(name, model.eval(), describe_weights(name, path), device)
