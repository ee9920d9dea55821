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
import python_speech_features
import torch
import torch.nn.functional as F
from scipy.signal import medfilt

from .syncnet import SyncNet
from .wav2lip import mel_window, mel_window_count, melspectrogram

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

    @property
    def vshift(self) -> int:
        return (len(self.curve) - 1) // 2

    def framewise_confidence(self) -> np.ndarray:
        """Per window: median(curve) - its distance at the best offset, median-filtered over 9 windows
        (the reference's "framewise conf")."""
        conf = float(np.median(self.curve)) - self.distances[:, self.vshift - self.offset]
        return medfilt(conf, kernel_size=9) if len(conf) >= 9 else conf

    def as_dict(self) -> dict:
        return {"offset": self.offset, "lse_c": self.lse_c, "lse_d": self.lse_d, "windows": self.windows,
                "curve": [float(x) for x in self.curve]}


def mfcc(audio: np.ndarray) -> np.ndarray:
    """(13, steps) MFCCs of 16 kHz audio given as float in [-1, 1) (from 16-bit samples) or int16."""
    samples = audio if audio.dtype == np.int16 else np.round(np.asarray(audio) * 32768).astype(np.int16)
    return python_speech_features.mfcc(samples, SAMPLE_RATE).T


class _WindowStream:
    """Video embeddings of overlapping 5-frame windows of crops that arrive in chunks: computed per
    batch of ``batch`` windows; between chunks only the last 4 frames are kept."""

    def __init__(self, batch: int):
        self.batch, self.frames = batch, 0
        self._tail: np.ndarray | None = None
        self._video: list[torch.Tensor] = []

    def _push(self, frames: np.ndarray) -> None:
        pending = frames if self._tail is None else np.concatenate([self._tail, frames])
        while len(pending) >= self.batch + WINDOW - 1:
            self._embed(pending[:self.batch + WINDOW - 1])
            pending = pending[self.batch:]
        self._tail = pending

    def _flush(self) -> torch.Tensor:
        """All window embeddings so far, the pending windows included."""
        if self._tail is not None and len(self._tail) >= WINDOW:
            self._embed(self._tail)
            self._tail = self._tail[-(WINDOW - 1):]
        return torch.cat(self._video) if self._video else torch.zeros(0)

    def _embed(self, frames: np.ndarray) -> None:
        raise NotImplementedError


class SyncScorer(_WindowStream):
    """Streaming LSE of one face-crop sequence: ``add_frames`` takes 224x224 BGR crops as they are
    decoded (embeddings are computed per batch of windows, only the last 4 frames are kept), ``result``
    computes the audio embeddings and the distance curve."""

    def __init__(self, model: SyncNet, audio: np.ndarray, vshift: int = 15, batch: int = 32,
                 device: str | torch.device = "cpu"):
        super().__init__(batch)
        self.model, self.vshift, self.device = model, vshift, torch.device(device)
        self.samples = len(audio)
        self.coeffs = torch.from_numpy(mfcc(audio)).float() if len(audio) else torch.zeros(13, 0)

    @torch.no_grad()
    def add_frames(self, faces_bgr: np.ndarray) -> None:
        faces_bgr = np.asarray(faces_bgr)
        if faces_bgr.shape[1:] != (224, 224, 3) or faces_bgr.dtype != np.uint8:
            raise ValueError(f"face crops must be uint8 (n, 224, 224, 3), not {faces_bgr.dtype} {faces_bgr.shape}")
        limit = self.samples // SAMPLES_PER_FRAME  # frames past the audio end are never scored: skip them
        useful = faces_bgr[:max(0, limit - self.frames)]
        self.frames += len(faces_bgr)
        self._push(useful)

    def _embed(self, frames: np.ndarray) -> None:
        video = torch.from_numpy(frames).to(self.device).permute(3, 0, 1, 2).float()  # 3, T, H, W
        clips = video.unfold(1, WINDOW, 1).permute(1, 0, 4, 2, 3)  # windows, 3, 5, H, W
        self._video.append(self.model.embed_video(clips).cpu())

    @torch.no_grad()
    def result(self) -> SyncScore:
        video = self._flush()
        length = min(self.frames, self.samples // SAMPLES_PER_FRAME)
        n = length - WINDOW  # the reference's range(0, length - 5)
        if n < 1:
            raise ValueError(f"{length} usable frames (video {self.frames}, audio "
                             f"{self.samples / SAMPLE_RATE:.2f} s): LSE needs at least {WINDOW + 1}")
        im = video[:n]
        audio_in = self.coeffs[:, :MFCC_PER_FRAME * (n - 1) + MFCC_PER_FRAME * WINDOW]
        audio_in = audio_in.unfold(1, MFCC_PER_FRAME * WINDOW, MFCC_PER_FRAME).permute(1, 0, 2)[:, None]
        cc = torch.cat([self.model.embed_audio(audio_in[i:i + 256].to(self.device)).cpu()
                        for i in range(0, n, 256)])
        return distance_curve(im, cc, self.vshift)


class ExpertSyncScorer(_WindowStream):
    """The same procedure with Wav2Lip's SyncNet or AVSyncNet (``experts.Expert``): 5-frame windows of
    the expert's face crops (RGB uint8, ``add_frames`` as they are decoded) against its 16-step mel
    windows, offsets -vshift .. vshift, mean over windows. Their embeddings are unit vectors (trained
    on cosine similarity), so the distance is the Euclidean distance between unit vectors,
    sqrt(2 - 2 cos) in [0, 2]: LSE-D and LSE-C on this scale are not comparable with SyncNet's. Every
    window whose frames and mel window exist is scored (no one-window margin: that is a quirk of the
    reference's MFCC indexing)."""

    def __init__(self, expert, audio: np.ndarray, vshift: int = 15, batch: int = 32):
        super().__init__(batch)
        self.expert, self.vshift = expert, vshift
        self.samples = len(audio)
        self.mel = melspectrogram(audio) if len(audio) else np.zeros((80, 0), np.float32)

    def add_frames(self, faces_rgb: np.ndarray) -> None:
        faces_rgb = np.asarray(faces_rgb)
        self.frames += len(faces_rgb)
        self._push(faces_rgb)

    def _embed(self, frames: np.ndarray) -> None:
        windows = torch.from_numpy(np.lib.stride_tricks.sliding_window_view(frames, WINDOW, axis=0)
                                   .transpose(0, 4, 1, 2, 3).copy())
        self._video.append(self.expert.video(windows).cpu())

    @torch.no_grad()
    def result(self) -> SyncScore:
        video = self._flush()
        n = mel_window_count(self.frames, self.samples)
        if n < 1:
            raise ValueError(f"{self.frames} frames and {self.samples / SAMPLE_RATE:.2f} s of audio: no 5-frame "
                             "window with its 0.2 s of audio")
        im = video[:n]
        mels = torch.from_numpy(np.stack([mel_window(self.mel, s) for s in range(n)]))[:, None]
        cc = torch.cat([self.expert.model.embed_audio(mels[i:i + 256].to(self.expert.device)).cpu()
                        for i in range(0, n, 256)])
        return distance_curve(im, cc, self.vshift)


def distance_curve(im: torch.Tensor, cc: torch.Tensor, vshift: int) -> SyncScore:
    """Window i's video embedding against the audio embeddings of windows i-vshift .. i+vshift (zero
    beyond the ends), Euclidean distance; the mean over windows is the curve."""
    n = len(im)
    padded = F.pad(cc, (0, 0, vshift, vshift))
    shifted = padded.unfold(0, 2 * vshift + 1, 1).permute(0, 2, 1)  # (n, 2 vshift + 1, D)
    dists = F.pairwise_distance(im[:, None, :].expand_as(shifted), shifted)  # (n, 2 vshift + 1)
    curve = dists.mean(dim=0)
    minval, minidx = torch.min(curve, 0)
    return SyncScore(offset=int(vshift - minidx), lse_d=float(minval), lse_c=float(torch.median(curve) - minval),
                     curve=curve.numpy(), windows=n, distances=dists.numpy())


def sync_score(model: SyncNet, faces_bgr: np.ndarray, audio: np.ndarray, vshift: int = 15,
               batch: int = 32, device: str | torch.device = "cpu") -> SyncScore:
    """LSE of 224x224 BGR uint8 face crops (T, 224, 224, 3) at 25 fps against 16 kHz audio."""
    scorer = SyncScorer(model, audio, vshift, batch, device)
    scorer.add_frames(faces_bgr)
    return scorer.result()
