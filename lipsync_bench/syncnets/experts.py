"""One interface over the three sync experts, for the analyses (stability, robustness) and for LSE
with an expert other than SyncNet: each gives unit-norm video and audio embeddings of 5-frame windows
of a clip, in the crop geometry and colour order it was trained on.

| expert | crop (from the face track) | frames fed | audio |
|---|---|---|---|
| ``syncnet`` | syncnet_python's (margin 0.4), 224x224, whole crop | BGR, 0-255 | MFCC 13 x 20 |
| ``wav2lip`` | face crop (margin 0.15), 96x96, bottom half | BGR, [0, 1] | mel 80 x 16 |
| ``avsyncnet`` | face crop (margin 0.15), 224x224, bottom half | RGB, [0, 1] | mel 80 x 16 |

Cosine similarity is the paper's P_sync (Eq. A) and -log of it (clamped to [1e-7, 1]) the lip-sync
loss of a ground-truth pair (Eq. B with label 1). SyncNet was trained on Euclidean distance, not on
cosine similarity; its cosine similarity is computed all the same, as the paper does for Fig. 1 / A.

``random_init=True`` builds a seeded random network and calibrates its batch-norm statistics on the
given clips (momentum None: the exact mean over the calibration batches), so that random embeddings
are informative enough for smoke tests; results are labelled "random-init".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import weights
from ..errors import LipsyncBenchError
from ..faces.track import Track, smoothed_centres, syncnet_crop
from ..media import iter_frames
from .avsyncnet import TINY, AVSyncNet, AVSyncNetConfig, load_avsyncnet
from .clips import FACE_CROP, FRAMES, INPUTS, FaceClip, expert_input, mel_windows
from .scoring import SAMPLES_PER_FRAME, WINDOW, mfcc
from .syncnet import SyncNet, load_syncnet
from .wav2lip import Wav2LipSyncNet, load_wav2lip_syncnet

EXPERTS = ("syncnet", "wav2lip", "avsyncnet")
LABELS = {"syncnet": "SyncNet", "wav2lip": "Wav2Lip SyncNet", "avsyncnet": "AVSyncNet"}
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

    def crops(self, clip: FaceClip, starts=None) -> "Crops":
        """The frames of ``clip`` that the 5-frame windows at ``starts`` (default: all frames) cover,
        in this expert's crop geometry (RGB uint8): only those are decoded and kept, so a few windows
        of a long video cost a few frames."""
        frames = range(clip.frames) if starts is None else window_frames(starts)
        if self.name != "syncnet":
            kept = {}
            for first, count in _runs(frames):
                kept.update(zip(range(first, first + count), clip.faces(first, count, self.crop_size), strict=False))
            return Crops(kept)
        return syncnet_crops_of(clip, set(frames))

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

    @torch.no_grad()
    def audio(self, clip: FaceClip, starts) -> torch.Tensor:
        """Unit embeddings of the audio windows of ``clip`` starting at the given frames."""
        starts = np.asarray(starts, int)
        if self.name == "syncnet":

            coeffs = torch.from_numpy(mfcc(clip.audio)).float()  # (13, 4 per frame)
            feats = torch.stack([coeffs[:, 4 * s:4 * s + 20] for s in starts])[:, None]
            return F.normalize(self.model.embed_audio(feats.to(self.device)), dim=1)
        return self.model.embed_audio(mel_windows(clip, starts).to(self.device))

    def usable_windows(self, clip: FaceClip) -> int:
        """Window starts 0 .. n-1 whose audio window lies inside the audio, for this expert's features."""
        if self.name == "syncnet":

            # the reference's range(0, L - 5): the MFCC of the last full window may be short
            return max(0, min(clip.frames, clip.samples // SAMPLES_PER_FRAME) - WINDOW)
        return clip.window_starts()


class Crops:
    """Crops of some frames of a clip, by frame index; ``windows(starts)`` stacks 5-frame windows."""

    def __init__(self, frames: dict[int, np.ndarray]):
        self.frames = frames

    def windows(self, starts) -> torch.Tensor:
        """(len(starts), 5, S, S, 3) uint8."""
        return torch.from_numpy(np.stack([np.stack([self.frames[int(t) + k] for k in range(FRAMES)]) for t in starts]))


def window_frames(starts) -> list[int]:
    """The frame indices that 5-frame windows at ``starts`` cover, sorted."""
    return sorted({int(t) + k for t in starts for k in range(FRAMES)})


def _runs(frames) -> list[tuple[int, int]]:
    """Sorted frame indices as (first, count) runs of consecutive frames."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][0] + runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([f, 1])
    return [(a, n) for a, n in runs]


def syncnet_crops_of(clip: FaceClip, frames: set[int] | None = None) -> Crops:
    """syncnet_python's 224x224 crops of a clip read from a video: its face track's boxes smoothed as
    LSE smooths them, cut from the decoded frames. Face-crop folders (Wav2Lip's layout) hold no full
    frames to take them from."""

    if clip.boxes is None or clip.source is None:
        raise LipsyncBenchError(f"{clip.name}: the original SyncNet takes syncnet_python's wide crop of the full "
                                "frame; this clip has face crops only (Wav2Lip's layout): use a folder of videos")
    centres = smoothed_centres(Track(clip.first_frame, clip.boxes, np.ones(len(clip.boxes), bool),
                                     np.zeros(len(clip.boxes), int)))
    wanted = set(range(clip.frames)) if frames is None else frames
    crops, index = {}, 0
    for chunk in iter_frames(clip.source, 25):  # decoded once, only the wanted frames kept
        for frame in chunk:
            i = index - clip.first_frame
            if i in wanted:
                crops[i] = syncnet_crop(frame, *centres[i], crop_scale=SYNCNET_CROP_SCALE)
            index += 1
        if index - clip.first_frame > max(wanted, default=-1):
            break
    return Crops(crops)


def build_model(name: str, tiny: bool = False) -> torch.nn.Module:
    if name == "syncnet":

        return SyncNet()
    if name == "wav2lip":

        return Wav2LipSyncNet()
    if name == "avsyncnet":

        return AVSyncNet(TINY if tiny else AVSyncNetConfig())
    raise LipsyncBenchError(f"unknown sync expert {name!r} (known: {', '.join(EXPERTS)})")


#: The weights entry (``lipsync_bench.weights.KNOWN``) of each expert that has published weights.
KNOWN_WEIGHTS = {"syncnet": "syncnet", "wav2lip": "wav2lip-expert"}


def describe_weights(name: str, path: str | Path) -> dict:
    """What goes into the protocol for an expert's weights file: name, file, sha256, official."""

    if name in KNOWN_WEIGHTS:
        return weights.describe(KNOWN_WEIGHTS[name], path)
    return {"name": name, "file": Path(path).name, "sha256": weights.sha256(path), "official": False}


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


def random_expert(name: str, clips: list[FaceClip], seed: int = 0, tiny: bool = True,
                  device: str | torch.device = "cpu", windows: int = 64) -> Expert:
    """A seeded random expert with batch-norm statistics calibrated on aligned windows of ``clips``."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(name, tiny).to(device)
    expert = Expert(name, model, {"random_init": seed, "tiny": tiny and name == "avsyncnet"}, device)
    calibrate_batchnorm(expert, clips, windows)
    if name == "syncnet":
        model.fuse_for_inference()
    return expert


@torch.no_grad()
def calibrate_batchnorm(expert: Expert, clips: list[FaceClip], windows: int = 64, batch: int = 16) -> None:
    """Reset every batch norm's running statistics and set them to the exact mean over up to
    ``windows`` aligned windows of ``clips`` (spread over the clips), then put the model in eval mode."""
    model = expert.model
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    per_clip = max(1, windows // max(1, len(clips)))
    feeds = []
    for clip in clips:
        n = expert.usable_windows(clip)
        if n < 1:
            continue
        starts = np.linspace(0, n - 1, min(per_clip, n)).astype(int)
        feeds.append((clip, expert.crops(clip, starts), starts))
    if not feeds:
        raise LipsyncBenchError("no clip long enough to calibrate the random expert's batch norms")
    model.train()
    try:
        for clip, crops, starts in feeds:
            for i in range(0, len(starts), batch):
                s = starts[i:i + batch]
                if len(s) < 2:
                    continue  # batch norm needs two samples
                expert.video(crops.windows(s))
                expert.audio(clip, s)
    finally:
        model.eval()
        for m in norms:
            m.momentum = 0.1


def cosine_similarities(expert: Expert, clip: FaceClip, starts=None, audio_starts=None, crops: Crops | None = None,
                        transform=None, before_half: bool = False, batch: int = 32) -> np.ndarray:
    """Cosine similarity (Eq. A) of each 5-frame window of ``clip`` starting at ``starts`` (default:
    every usable start) with the audio window at ``audio_starts`` (default: the same frames)."""
    n = expert.usable_windows(clip)
    starts = np.arange(n) if starts is None else np.asarray(starts, int)
    audio_starts = starts if audio_starts is None else np.asarray(audio_starts, int)
    crops = expert.crops(clip, starts) if crops is None else crops
    out = []
    for i in range(0, len(starts), batch):
        s = starts[i:i + batch]
        v = expert.video(crops.windows(s), transform, before_half)
        a = expert.audio(clip, audio_starts[i:i + batch])
        out.append((v * a).sum(dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def sync_loss_of(similarity: np.ndarray) -> np.ndarray:
    """The lip-sync loss of a ground-truth pair, -log P_sync (Eq. B), P clamped to [1e-7, 1]."""
    return -np.log(np.clip(similarity, 1e-7, 1.0))
