"""Wav2Lip's lip-sync expert (``SyncNet_color``) and its mel-spectrogram front end.

Model: the face encoder takes the lower halves of 5 consecutive 96x96 face crops stacked on
channels (15 x 48 x 96, values in [0, 1]; frame-major, each frame **BGR** as Wav2Lip's training reads
it with ``cv2.imread``); the audio encoder one mel window (1 x 80 x 16); both give
512-d embeddings, L2-normalised; sync probability = cosine similarity, trained with BCE (the paper's
Eq. A/B). Parameter names follow Wav2Lip's ``models/syncnet.py`` (``face_encoder.<i>.conv_block.<0|1>``,
``audio_encoder...``), so the published ``lipsync_expert.pth`` (a dict whose ``state_dict`` holds them)
loads directly with ``torch.load(weights_only=True)``.

Mel front end (Wav2Lip ``audio.py`` / ``hparams.py``): 16 kHz, pre-emphasis 0.97, STFT n_fft 800,
hop 200, window 800 (periodic Hann, centred, reflect padding as librosa 0.7 which Wav2Lip pins),
magnitude, 80 Slaney mel bands 55-7600 Hz with Slaney area normalisation, 20 log10(max(1e-5, x)) - 20 dB,
then symmetric normalisation to [-4, 4] (min level -100 dB). 80 mel steps a second: video frame i
at 25 fps starts at mel step int(80 * i / 25) and a window is 16 steps (0.2 s).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import lfilter
from torch import nn

from ..checkpoints import load_state, read_checkpoint, state_dict_of

SAMPLE_RATE = 16000
N_FFT, HOP, WIN = 800, 200, 800
N_MELS, FMIN, FMAX = 80, 55.0, 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB, REF_LEVEL_DB, MAX_ABS = -100.0, 20.0, 4.0
MEL_STEPS_PER_SECOND = SAMPLE_RATE / HOP  # 80
MEL_WINDOW = 16
WINDOW_FRAMES = 5  # video frames of one sync window


class ConvBlock(nn.Module):
    """Wav2Lip's ``Conv2d``: convolution, batch norm, optional residual, ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        return self.act(out + x if self.residual else out)


def _blocks(spec: list[tuple]) -> nn.Sequential:
    """(cin, cout, kernel, stride, padding[, residual]) per block, in order (state-dict indices)."""
    return nn.Sequential(*[ConvBlock(*s) for s in spec])


def _residuals(channels: int, count: int) -> list[tuple]:
    return [(channels, channels, 3, 1, 1, True)] * count


class Wav2LipSyncNet(nn.Module):
    """``SyncNet_color``: ``forward(mel, faces)`` -> (audio, face) embeddings, each (N, 512), unit norm."""

    def __init__(self):
        super().__init__()
        self.face_encoder = _blocks([
            (15, 32, 7, 1, 3),
            (32, 64, 5, (1, 2), 1), *_residuals(64, 2),
            (64, 128, 3, 2, 1), *_residuals(128, 3),
            (128, 256, 3, 2, 1), *_residuals(256, 2),
            (256, 512, 3, 2, 1), *_residuals(512, 2),
            (512, 512, 3, 2, 1), (512, 512, 3, 1, 0), (512, 512, 1, 1, 0),
        ])
        self.audio_encoder = _blocks([
            (1, 32, 3, 1, 1), *_residuals(32, 2),
            (32, 64, 3, (3, 1), 1), *_residuals(64, 2),
            (64, 128, 3, 3, 1), *_residuals(128, 2),
            (128, 256, 3, (3, 2), 1), *_residuals(256, 2),
            (256, 512, 3, 1, 0), (512, 512, 1, 1, 0),
        ])

    #: The size of both embeddings (what a generator's frozen copy of the audio encoder gives).
    embedding_dim = 512

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        """(N, 15, 48, 96) lower halves of 5 BGR frames in [0, 1] -> (N, 512)."""
        return F.normalize(self.face_encoder(faces).flatten(1), p=2, dim=1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """(N, 1, 80, 16) mel windows -> (N, 512)."""
        return F.normalize(self.audio_encoder(mel).flatten(1), p=2, dim=1)

    def forward(self, mel: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_audio(mel), self.embed_faces(faces)


def sync_loss(audio: torch.Tensor, faces: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE on the cosine similarity of unit embeddings (Wav2Lip's ``cosine_loss``; the paper's Eq. A/B)."""
    similarity = F.cosine_similarity(audio, faces).clamp(1e-7, 1 - 1e-7)  # BCE needs a probability
    return F.binary_cross_entropy(similarity, target.float())


def load_wav2lip_syncnet(path: str | Path, device: str | torch.device = "cpu") -> Wav2LipSyncNet:
    """The expert from ``lipsync_expert.pth`` (or a checkpoint in its layout: a dict holding
    ``state_dict``, or the state dict itself; ``module.`` prefixes of DataParallel are removed)."""

    model = Wav2LipSyncNet()
    state = state_dict_of(read_checkpoint(path, "Wav2Lip SyncNet weights"), path)
    load_state(model, state, path, "lipsync_expert.pth")
    return model.eval().to(device)


# --------------------------------------------------------------------------------------------------
# Mel spectrogram


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log_region = f >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
                   fmax: float = FMAX) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangular filters on the Slaney mel scale, area-normalised."""
    freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def melspectrogram(audio: np.ndarray) -> np.ndarray:
    """(80, 1 + len(audio) // 200) normalised mel spectrogram of 16 kHz float audio in [-1, 1]."""
    y = lfilter([1.0, -PREEMPHASIS], [1.0], np.asarray(audio, dtype=np.float64))
    padded = np.pad(y, N_FFT // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)  # periodic Hann
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1)).T  # (1 + n_fft/2, T)
    mel = mel_filterbank() @ magnitude
    db = 20 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    return np.clip(2 * MAX_ABS * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS, -MAX_ABS, MAX_ABS).astype(np.float32)


def mel_window(mel: np.ndarray, frame: int, fps: float = 25.0) -> np.ndarray | None:
    """The 16 mel steps starting at video frame ``frame`` (Wav2Lip's ``crop_audio_window``), or None
    when the audio ends before the window does."""
    start = int(MEL_STEPS_PER_SECOND * (frame / fps))
    if start + MEL_WINDOW > mel.shape[1]:
        return None
    return mel[:, start:start + MEL_WINDOW]


def mel_window_count(frames: int, samples: int) -> int:
    """Window starts 0 .. n-1 of a video of ``frames`` frames (25 fps) whose 5 frames exist and whose
    16-step mel window lies inside ``samples`` of 16 kHz audio (Wav2Lip's mel has 1 + samples // 200 steps)."""
    mel_steps = 1 + samples // HOP
    n = 0
    while n <= frames - WINDOW_FRAMES and int(MEL_STEPS_PER_SECOND * n / 25) + MEL_WINDOW <= mel_steps:
        n += 1
    return n
