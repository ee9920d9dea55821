"""The lip generator G_L and the silent-lip generator G_S (the same network), and the discriminator.

Generator (docs/generator.md: a U-Net with separate identity and pose encoders and a face decoder with
transposed convolutions and skip connections), at ``size`` x ``size`` (96, Wav2Lip's):

- identity encoder: the identity reference frame (through G_S first, in setups D-H), RGB [0, 1];
- pose encoder: the target frame with its bottom half zeroed (Wav2Lip's masking);
- both: 7 stages of conv + batch norm + ReLU with residual blocks (Wav2Lip's face-encoder shape:
  96 -> 48 -> 24 -> 12 -> 6 -> 3 -> 1), ``base`` channels doubling per stage up to 512;
- audio: a 16-step mel window centred on the frame -> an embedding: the sync expert's audio encoder,
  frozen (setups B-H, the paper's choice), or a Wav2Lip-style audio encoder trained with the generator
  (setup A); a 1x1 conv maps it to the bottleneck's width;
- decoder: from the 1x1 bottleneck (audio + both encoders' last features), transposed convolutions
  up to 96x96, each stage fed the two encoders' features of its resolution (skip connections), and a
  final conv + sigmoid to RGB; the two input images join the last skip connection.
- output: the network draws the masked part; the target's visible pixels are kept (the usual
  inpainting composition): rows above 40% of the height are the target's own, a linear ramp to
  mid-height joins them to the drawn bottom half. So the upper face is the input's by construction and
  training spends itself on the mouth (the paste-back of ``generate`` uses the bottom half only anyway).

Discriminator: Wav2Lip-HQ's visual-quality idea, on the bottom half of each face (where the generator
draws): strided convs with leaky ReLU, no normalisation, global average, one logit.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ...syncnets.wav2lip import Wav2LipSyncNet
from .config import GeneratorConfig

STAGES = 7


def _widths(base: int) -> list[int]:
    return [min(512, base * 2 ** min(i, 5)) for i in range(STAGES)]


class Block(nn.Module):
    """conv + batch norm (+ residual) + ReLU: Wav2Lip's ``Conv2d`` block."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, residual: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.bn = nn.BatchNorm2d(cout)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.conv(x))
        return F.relu(out + x if self.residual else out)


class UpBlock(nn.Module):
    """transposed conv + batch norm + ReLU, then a residual block."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, output_padding: int = 0):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding)
        self.bn = nn.BatchNorm2d(cout)
        self.res = Block(cout, cout, 3, 1, 1, residual=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(F.relu(self.bn(self.up(x))))


class FaceEncoder(nn.Module):
    """7 stages, 96 -> 1; returns the features of every stage (for the skip connections)."""

    def __init__(self, base: int):
        super().__init__()
        w = _widths(base)
        self.stages = nn.ModuleList([
            nn.Sequential(Block(3, w[0], 7, 1, 3)),
            nn.Sequential(Block(w[0], w[1], 3, 2, 1), Block(w[1], w[1], 3, 1, 1, True)),
            nn.Sequential(Block(w[1], w[2], 3, 2, 1), Block(w[2], w[2], 3, 1, 1, True)),
            nn.Sequential(Block(w[2], w[3], 3, 2, 1), Block(w[3], w[3], 3, 1, 1, True)),
            nn.Sequential(Block(w[3], w[4], 3, 2, 1), Block(w[4], w[4], 3, 1, 1, True)),
            nn.Sequential(Block(w[4], w[5], 3, 2, 1)),
            nn.Sequential(Block(w[5], w[6], 3, 1, 0)),
        ])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class TrainedAudioEncoder(nn.Module):
    """Setup A's audio encoder, trained with the generator: Wav2Lip's audio conv stack, (N, 1, 80, 16) ->
    (N, 512)."""

    def __init__(self):
        super().__init__()

        self.net = Wav2LipSyncNet().audio_encoder

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(mel).flatten(1)


class FrozenAudioEncoder(nn.Module):
    """The sync expert's audio encoder (AVSyncNet's ResNetSE34, or Wav2Lip's), frozen and always in eval
    mode; its weights are part of the generator's checkpoint, so inference needs no expert file."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.net = encoder
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.eval()  # batch norm statistics stay those of the expert
        return self

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(mel).flatten(1)


class Generator(nn.Module):
    """``forward(reference, masked, mel)``: (N, 3, S, S) identity references, (N, 3, S, S) targets with
    their bottom half zeroed, (N, 1, 80, 16) mel windows -> (N, 3, S, S) faces in [0, 1]."""

    def __init__(self, config: GeneratorConfig, audio_encoder: nn.Module, audio_dim: int):
        super().__init__()
        if config.size != 96:
            raise ValueError("the generator works at 96x96 (the encoders' 7 stages end at 1x1)")
        self.config = config
        w = _widths(config.base)
        self.identity_encoder = FaceEncoder(config.base)
        self.pose_encoder = FaceEncoder(config.base)
        self.audio_encoder = audio_encoder
        self.audio_proj = nn.Conv2d(audio_dim, w[6], 1)
        self.bottleneck = Block(3 * w[6], w[6], 1)
        self.up = nn.ModuleList([
            UpBlock(w[6], w[5], 3, 1, 0),  # 1 -> 3
            UpBlock(w[5] * 3, w[4], 3, 2, 1, 1),  # 3 -> 6
            UpBlock(w[4] * 3, w[3], 3, 2, 1, 1),  # 6 -> 12
            UpBlock(w[3] * 3, w[2], 3, 2, 1, 1),  # 12 -> 24
            UpBlock(w[2] * 3, w[1], 3, 2, 1, 1),  # 24 -> 48
            UpBlock(w[1] * 3, w[0], 3, 2, 1, 1),  # 48 -> 96
        ])
        self.head = nn.Sequential(Block(w[0] * 3 + 6, w[0], 3, 1, 1), nn.Conv2d(w[0], 3, 1))
        # where the output is drawn (1) and where the visible pixels of the target are kept (0): rows
        # above 40% of the height keep the target, a linear ramp to mid-height joins the two
        rows = torch.arange(config.size, dtype=torch.float32) / config.size
        self.register_buffer("draw", ((rows - 0.4) / 0.1).clamp(0, 1).view(1, 1, -1, 1), persistent=False)

    def forward(self, reference: torch.Tensor, masked: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        ident, pose = self.identity_encoder(reference), self.pose_encoder(masked)
        audio = self.audio_proj(self.audio_encoder(mel)[:, :, None, None])
        x = self.bottleneck(torch.cat([audio, ident[6], pose[6]], dim=1))
        x = self.up[0](x)
        for k, up in enumerate(self.up[1:], start=1):
            x = up(torch.cat([x, ident[6 - k], pose[6 - k]], dim=1))
        # the input images join the last skip connection (continuity at the join)
        drawn = torch.sigmoid(self.head(torch.cat([x, ident[0], pose[0], reference, masked], dim=1)))
        return drawn * self.draw + masked * (1 - self.draw)


class Discriminator(nn.Module):
    """One logit per face from its bottom half (N, 3, S/2, S)."""

    def __init__(self, base: int):
        super().__init__()
        w = [min(512, base * 2 * 2 ** i) for i in range(5)]
        layers, cin = [], 3
        for cout in w:
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        self.net = nn.Sequential(*layers)
        self.out = nn.Conv2d(cin, 1, 1)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        half = faces[:, :, faces.shape[2] // 2:]
        return self.out(self.net(half)).mean(dim=(1, 2, 3))


def mask_lower_half(faces: torch.Tensor) -> torch.Tensor:
    """Wav2Lip's masking of the target: the bottom half of each face set to 0."""
    masked = faces.clone()
    masked[:, :, faces.shape[2] // 2:] = 0
    return masked


def build_generator(config: GeneratorConfig, expert=None) -> Generator:
    """The generator of ``config``; setups with a frozen audio encoder take a copy of the sync
    expert's audio encoder (AVSyncNet's or Wav2Lip's: any expert with ``audio_encoder`` and
    ``embedding_dim``)."""
    if config.frozen_audio:
        if expert is None:
            raise ValueError("a frozen audio encoder needs the sync expert")

        audio = FrozenAudioEncoder(copy.deepcopy(expert.audio_encoder))
        dim = expert.embedding_dim
    else:
        audio, dim = TrainedAudioEncoder(), 512
    return Generator(config, audio, dim)
