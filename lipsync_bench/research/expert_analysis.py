"""The sync experts on training clips (``datasets.FaceClip``): the analyses' crops and audio embeddings of
a clip's windows (stability, robustness, validation), seeded random experts with calibrated batch-norm
statistics for smoke runs, the cosine similarity (the paper's P_sync, Eq. A) and the lip-sync loss
(Eq. B) of ground-truth pairs.

``random_expert`` builds a seeded random network and calibrates its batch-norm statistics on the given
clips (momentum None: the exact mean over the calibration batches), so that random embeddings are
informative enough for smoke tests; results are labelled "random-init".
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LipsyncBenchError
from ..faces.track import Track, smoothed_centres, syncnet_crop
from ..media import iter_frames
from ..syncnets.experts import SYNCNET_CROP_SCALE, Expert, build_model
from ..syncnets.inputs import FRAMES
from ..syncnets.scoring import SAMPLES_PER_FRAME, WINDOW, mfcc
from .datasets import FaceClip, mel_windows


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


def clip_crops(expert: Expert, clip: FaceClip, starts=None) -> Crops:
    """The frames of ``clip`` that the 5-frame windows at ``starts`` (default: all frames) cover,
    in this expert's crop geometry (RGB uint8): only those are decoded and kept, so a few windows
    of a long video cost a few frames."""
    frames = range(clip.frames) if starts is None else window_frames(starts)
    if expert.name != "syncnet":
        kept = {}
        for first, count in _runs(frames):
            kept.update(zip(range(first, first + count), clip.faces(first, count, expert.crop_size), strict=False))
        return Crops(kept)
    return syncnet_crops_of(clip, set(frames))


@torch.no_grad()
def clip_audio(expert: Expert, clip: FaceClip, starts) -> torch.Tensor:
    """Unit embeddings of the audio windows of ``clip`` starting at the given frames."""
    starts = np.asarray(starts, int)
    if expert.name == "syncnet":
        coeffs = torch.from_numpy(mfcc(clip.audio)).float()  # (13, 4 per frame)
        feats = torch.stack([coeffs[:, 4 * s:4 * s + 20] for s in starts])[:, None]
        return F.normalize(expert.model.embed_audio(feats.to(expert.device)), dim=1)
    return expert.model.embed_audio(mel_windows(clip, starts).to(expert.device))


def usable_windows(expert: Expert, clip: FaceClip) -> int:
    """Window starts 0 .. n-1 whose audio window lies inside the audio, for this expert's features."""
    if expert.name == "syncnet":
        # the reference's range(0, L - 5): the MFCC of the last full window may be short
        return max(0, min(clip.frames, clip.samples // SAMPLES_PER_FRAME) - WINDOW)
    return clip.window_starts()


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
        n = usable_windows(expert, clip)
        if n < 1:
            continue
        starts = np.linspace(0, n - 1, min(per_clip, n)).astype(int)
        feeds.append((clip, clip_crops(expert, clip, starts), starts))
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
                clip_audio(expert, clip, s)
    finally:
        model.eval()
        for m in norms:
            m.momentum = 0.1


def cosine_similarities(expert: Expert, clip: FaceClip, starts=None, audio_starts=None, crops: Crops | None = None,
                        transform=None, before_half: bool = False, batch: int = 32) -> np.ndarray:
    """Cosine similarity (Eq. A) of each 5-frame window of ``clip`` starting at ``starts`` (default:
    every usable start) with the audio window at ``audio_starts`` (default: the same frames)."""
    n = usable_windows(expert, clip)
    starts = np.arange(n) if starts is None else np.asarray(starts, int)
    audio_starts = starts if audio_starts is None else np.asarray(audio_starts, int)
    crops = clip_crops(expert, clip, starts) if crops is None else crops
    out = []
    for i in range(0, len(starts), batch):
        s = starts[i:i + batch]
        v = expert.video(crops.windows(s), transform, before_half)
        a = clip_audio(expert, clip, audio_starts[i:i + batch])
        out.append((v * a).sum(dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def sync_loss_of(similarity: np.ndarray) -> np.ndarray:
    """The lip-sync loss of a ground-truth pair, -log P_sync (Eq. B), P clamped to [1e-7, 1]."""
    return -np.log(np.clip(similarity, 1e-7, 1.0))
