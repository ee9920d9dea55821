"""AVSyncNet, the paper's sync expert (supplementary A.2-A.3): a ResNetSE34 audio encoder and a
ResNet-50 image encoder, each followed by one extra convolutional layer, giving 512-d embeddings
whose cosine similarity is trained with binary cross-entropy (Eq. A/B), like Wav2Lip's SyncNet.

What the supplementary fixes: ResNetSE34 audio encoder (conv layers, SE blocks, self-attentive
pooling); ResNet-50 image encoder with its input layer changed for the 112x224 bottom half of the face
(five frames); an extra conv layer after each encoder; F_I, F_A in R^{1x1x512}; cosine similarity + BCE;
positives aligned, negatives audio from a non-overlapping position of the same video.

Choices it leaves open, made here (each a field of ``AVSyncNetConfig``, stored in every checkpoint):

- Audio input: Wav2Lip's 80-band mel window of 16 steps (0.2 s = 5 frames at 25 fps, the
  ``wav2lip.melspectrogram`` front end), not voxceleb_trainer's 40/64-band log filterbank: the
  generator uses the frozen AVSyncNet audio encoder on exactly these windows (docs/generator.md), so the
  expert and the generator must share the front end.
- ResNetSE34 variant: ResNetSE34V2 of clovaai/voxceleb_trainer (basic SE blocks, SE reduction 8, layers
  3-4-6-3, 32-64-128-256 filters, conv -> ReLU -> BN stem, strides 2 in layers 2-4), with SAP (one
  attention weight per channel and time step, softmax over time). On 80x16 it leaves a 256 x 10 x 2
  map, pooled over the 2 time steps.
- Image input: 5 RGB frames stacked on channels (15 x 112 x 224, values in [0, 1], frame-major:
  channels 3k..3k+2 are frame k), like Wav2Lip's expert; ResNet-50's first convolution takes 15
  channels (7x7, stride 2). Random initialisation (ImageNet weights would need 3-channel input and
  are not reachable offline).
- Extra layers: image: 3x3 conv 2048 -> 512 + BN + ReLU on the 4 x 7 map, then global average pooling;
  audio: SAP, then a 1x1 conv 2560 -> 512 + BN + ReLU. The final ReLU (as in Wav2Lip's expert) keeps
  embeddings non-negative, so the cosine similarity lies in [0, 1] and is a probability for the BCE.
- ``tiny``: the same structure with fewer, narrower blocks, for tests and smoke runs on a CPU.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_state, read_checkpoint, state_dict_of
from ..errors import LipsyncBenchError

ARCH = "avsyncnet"
FACE_HEIGHT, FACE_WIDTH = 112, 224  # the bottom half of a 224x224 face crop
FRAMES = 5


@dataclass(frozen=True)
class AVSyncNetConfig:
    image_layers: tuple[int, ...] = (3, 4, 6, 3)  # ResNet-50
    image_block: str = "bottleneck"  # torchvision's Bottleneck (ResNet-50) or BasicBlock
    audio_filters: tuple[int, ...] = (32, 64, 128, 256)  # ResNetSE34V2
    audio_layers: tuple[int, ...] = (3, 4, 6, 3)
    se_reduction: int = 8
    n_mels: int = 80
    embedding: int = 512

    @classmethod
    def from_dict(cls, d: dict) -> "AVSyncNetConfig":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


TINY = AVSyncNetConfig(image_layers=(1, 1, 1, 1), image_block="basic", audio_filters=(8, 16, 32, 64),
                       audio_layers=(1, 1, 1, 1), embedding=128)


class _ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SELayer(nn.Module):
    """Squeeze-and-excitation: channel weights from the global average, through a bottleneck MLP."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, max(1, channels // reduction)), nn.ReLU(inplace=True),
                                nn.Linear(max(1, channels // reduction), channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class SEBasicBlock(nn.Module):
    """ResNetSE34's block: conv-ReLU-BN, conv-BN, SE, residual, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, reduction: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SELayer(cout, reduction)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(F.relu(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class AudioEncoder(nn.Module):
    """ResNetSE34V2 trunk + self-attentive pooling over time + the extra 1x1 conv: (N, 1, 80, 16) ->
    (N, embedding)."""

    def __init__(self, cfg: AVSyncNetConfig):
        super().__init__()
        f = cfg.audio_filters
        self.conv1 = nn.Conv2d(1, f[0], 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(f[0])
        layers, cin = [], f[0]
        for i, (cout, n) in enumerate(zip(f, cfg.audio_layers, strict=False)):
            blocks = [SEBasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1, cfg.se_reduction)
                      for j in range(n)]
            layers.append(nn.Sequential(*blocks))
            cin = cout
        self.layers = nn.Sequential(*layers)
        channels = f[-1] * (cfg.n_mels // 2 ** (len(f) - 1))  # channels x remaining mel bands
        self.attention = nn.Sequential(nn.Conv1d(channels, 128, 1), nn.ReLU(), nn.BatchNorm1d(128),
                                       nn.Conv1d(128, channels, 1), nn.Softmax(dim=2))
        self.extra = _ConvBNReLU(channels, cfg.embedding, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.bn1(F.relu(self.conv1(mel))))
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # (N, channels x bands, time)
        pooled = (x * self.attention(x)).sum(dim=2)
        return self.extra(pooled[:, :, None, None]).flatten(1)


class ImageEncoder(nn.Module):
    """torchvision's ResNet-50 trunk with a 15-channel input layer + the extra 3x3 conv, averaged over
    space: (N, 15, 112, 224) -> (N, embedding)."""

    def __init__(self, cfg: AVSyncNetConfig):
        super().__init__()
        from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

        block = {"bottleneck": Bottleneck, "basic": BasicBlock}[cfg.image_block]
        self.resnet = ResNet(block, list(cfg.image_layers))
        self.resnet.conv1 = nn.Conv2d(3 * FRAMES, 64, 7, 2, 3, bias=False)
        self.resnet.fc = nn.Identity()  # no parameters: the trunk ends at layer4
        self.extra = _ConvBNReLU(512 * block.expansion, cfg.embedding, 3)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(faces))))
        x = r.layer4(r.layer3(r.layer2(r.layer1(x))))
        return self.extra(x).mean(dim=(2, 3))


class AVSyncNet(nn.Module):
    """``forward(mel, faces)`` -> (audio, face) embeddings, each (N, embedding), unit norm, as Wav2Lip's
    expert, so that ``wav2lip.sync_loss`` and the sync-expert trainer serve both."""

    arch = ARCH

    def __init__(self, config: AVSyncNetConfig = AVSyncNetConfig()):
        super().__init__()
        if config.n_mels % 2 ** (len(config.audio_filters) - 1):
            raise ValueError(f"n_mels {config.n_mels} must be divisible by {2 ** (len(config.audio_filters) - 1)}")
        self.config = config
        self.audio_encoder = AudioEncoder(config)
        self.face_encoder = ImageEncoder(config)

    @property
    def embedding_dim(self) -> int:
        """The size of both embeddings (what a generator's frozen copy of the audio encoder gives)."""
        return self.config.embedding

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        """(N, 15, 112, 224) bottom halves of 5 RGB face crops in [0, 1] -> (N, embedding)."""
        return F.normalize(self.face_encoder(faces), p=2, dim=1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(N, 1, 80, 16) mel windows -> (N, embedding)."""
        return F.normalize(self.audio_encoder(mel), p=2, dim=1)

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_audio(mel), self.embed_faces(faces)

    def checkpoint(self, **extra) -> dict:
        """This project's AVSyncNet checkpoint layout: ``arch``, ``config`` and ``state_dict`` (plus
        training state in ``extra``); read back by ``load_avsyncnet``."""
        return {"arch": ARCH, "config": asdict(self.config), "state_dict": self.state_dict(), **extra}


def load_avsyncnet(path: str | Path, device: str | torch.device = "cpu") -> AVSyncNet:
    """AVSyncNet from a checkpoint in this project's layout (``AVSyncNet.checkpoint``), in eval mode."""

    checkpoint = read_checkpoint(path, "AVSyncNet weights")
    if not isinstance(checkpoint, dict) or checkpoint.get("arch") != ARCH or "config" not in checkpoint:
        found = checkpoint.get("arch") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise LipsyncBenchError(f"{path}: not an AVSyncNet checkpoint (arch {found!r}; expected a dict with "
                                f"arch 'avsyncnet', config and state_dict, as train-syncnet writes)")
    try:
        model = AVSyncNet(AVSyncNetConfig.from_dict(checkpoint["config"]))
    except (TypeError, ValueError, KeyError) as exc:
        raise LipsyncBenchError(f"{path}: invalid AVSyncNet config ({exc})") from None
    load_state(model, state_dict_of(checkpoint, path), path, "AVSyncNet")
    return model.eval().to(device)
