"""LSE-C / LSE-D: the syncnet_python procedure (``SyncNetInstance.evaluate``), batched, from frames
and audio in memory.

- MFCC: ``python_speech_features.mfcc(samples, 16000)`` with its defaults (13 coefficients, 25 ms
  window, 10 ms step) on the 16-bit samples; 4 MFCC steps a video frame.
- Usable length L = min(frames, floor(samples / 640)); windows start at 0 .. L-6 (the reference's
  ``range(0, L - 5)``: it leaves out the last full window, and so does this, for equal numbers).
- For window i, the Euclidean distance (``pairwise_distance``, eps 1e-6) between its video embedding
  and the audio embeddings of windows i-vshift .. i+vshift (zero embeddings beyond the ends); the mean
  over i is a curve of 2 vshift + 1 values. LSE-D = its minimum, LSE-C = median - minimum,
  offset = vshift - argmin.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .syncnet import SyncNet

SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
MFCC_PER_FRAME = 4
WINDOW = 5


@dataclass
class SyncScore:
    offset: int
    lse_d: float
    lse_c: float
    curve: np.ndarray  # mean distance per offset, (2 vshift + 1,)
    windows: int
    distances: np.ndarray  # per window and offset, (windows, 2 vshift + 1)


def mfcc(audio: np.ndarray) -> np.ndarray:
    """(13, steps) MFCCs of 16 kHz audio given as float in [-1, 1) (from 16-bit samples) or int16."""
    import python_speech_features

    samples = audio if audio.dtype == np.int16 else np.round(np.asarray(audio) * 32768).astype(np.int16)
    return python_speech_features.mfcc(samples, SAMPLE_RATE).T


@torch.no_grad()
def sync_score(model: SyncNet, faces_bgr: np.ndarray, audio: np.ndarray, vshift: int = 15,
               batch: int = 64, device: str | torch.device = "cpu") -> SyncScore:
    """LSE of 224x224 BGR uint8 face crops (T, 224, 224, 3) at 25 fps against 16 kHz audio."""
    samples = len(audio)
    length = min(len(faces_bgr), samples // SAMPLES_PER_FRAME)
    n = length - WINDOW
    if n < 1:
        raise ValueError(f"{length} usable frames: LSE needs at least {WINDOW + 1} (video and audio)")
    coeffs = torch.from_numpy(mfcc(audio)).float()
    video = torch.from_numpy(np.ascontiguousarray(faces_bgr[:length])).permute(3, 0, 1, 2).float()  # 3,T,H,W
    im, cc = [], []
    for start in range(0, n, batch):
        idx = range(start, min(n, start + batch))
        clips = torch.stack([video[:, i:i + WINDOW] for i in idx]).to(device)
        audio_in = torch.stack([coeffs[:, i * MFCC_PER_FRAME:i * MFCC_PER_FRAME + MFCC_PER_FRAME * WINDOW]
                                for i in idx]).unsqueeze(1).to(device)
        im.append(model.embed_video(clips).cpu())
        cc.append(model.embed_audio(audio_in).cpu())
    im, cc = torch.cat(im), torch.cat(cc)
    padded = F.pad(cc, (0, 0, vshift, vshift))
    shifted = padded.unfold(0, 2 * vshift + 1, 1).permute(0, 2, 1)  # (n, 2 vshift + 1, D)
    dists = F.pairwise_distance(im[:, None, :].expand_as(shifted), shifted)  # (n, 2 vshift + 1)
    curve = dists.mean(dim=0)
    minval, minidx = torch.min(curve, 0)
    return SyncScore(offset=int(vshift - minidx), lse_d=float(minval), lse_c=float(torch.median(curve) - minval),
                     curve=curve.numpy(), windows=n, distances=dists.numpy())
