"""Validation of G_L and G_S while they train (``train-generator``, ``train-silent``): fixed windows of
held-out clips scored every ``val_every`` steps and at the last step, a sample grid, and the number
that picks ``best.pt``.

- Windows: up to ``VAL_WINDOWS`` windows spread evenly over the validation clips, each with its fixed
  identity reference (epoch 0 of ``GeneratorWindows``): the same windows at every validation.
- ``l1``: mean absolute difference from the GT over the whole face crop ([0, 1] RGB); ``l1_mouth``:
  the same over ``mouth_box`` — the central half of the crop's bottom half, where the lips lie in the
  face crop geometry (a fixed box of the working crop: the crops come without landmarks).
- ``sync_x`` / ``sync_y``: the sync expert's mean similarity of the generated / GT windows with their
  audio, and ``sync_loss`` = mean -log(sync_x), the plain lip-sync loss, whatever loss the setup
  trains (so that setups compare).
- ``lse_c`` / ``lse_d``: LSE-C/D of up to ``LSE_CLIPS`` whole validation clips, every frame generated
  (its own frame as the identity reference, as ``generate`` does), scored by the run's sync expert with
  the LSE procedure (``syncnets.scoring.ExpertSyncScorer``: offsets -15..15). The expert is the one the
  generator is trained against, so these numbers flatter it; SyncNet's LSE needs the generated face
  pasted into the frame (its crop is wider than the generator's) and stays with ``generate`` + ``eval``.
- ``score``: ``w_pixel * l1_mouth + w_sync * sync_loss`` — the generator's own weights on the two
  terms that measure the mouth and its sync (``w_pixel * l1_mouth`` for G_S, which has no sync
  loss); ``best.pt`` is the checkpoint of the lowest score.
- Sample grid (``samples/step_<step>.png``): per window (a row, its middle frame) the identity
  reference as G_L sees it (after G_S), the masked target, the generated face and the GT.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ...syncnets.scoring import ExpertSyncScorer
from ..datasets import FaceClip
from .models import mask_lower_half
from .windows import SILENT_MEL, GeneratorWindows, centred_mel

VAL_WINDOWS = 64
LSE_CLIPS = 3
SAMPLE_ROWS = 4


def mouth_box(size: int) -> tuple[slice, slice]:
    """(rows, columns) of the mouth region in a ``size`` x ``size`` face crop: the central half of the
    bottom half."""
    return slice(size // 2, size), slice(size // 4, size - size // 4)


def validation_windows(windows: GeneratorWindows, count: int = VAL_WINDOWS) -> list[int]:
    """Indices of up to ``count`` windows spread evenly over ``windows`` (fixed: epoch 0)."""
    windows.set_epoch(0)
    return sorted({int(i) for i in np.linspace(0, len(windows) - 1, min(count, len(windows)))})


def best_criterion(silent_mode: bool) -> str:
    return "w_pixel * l1_mouth" if silent_mode else "w_pixel * l1_mouth + w_sync * sync_loss"


@torch.no_grad()
def validate_generator(generator, silent_net, judge, windows: GeneratorWindows, indices: list[int], config,
                       device: torch.device, silent_mode: bool, amp: bool, batch_size: int = 16,
                       lse_clips: list[FaceClip] = ()) -> tuple[dict, np.ndarray]:
    """(the validation values, the sample grid as an RGB uint8 image); see the module docstring."""
    was_training = generator.training
    generator.eval()
    rows, cols = mouth_box(config.size)
    sums = {"l1": 0.0, "l1_mouth": 0.0, "sync_x": 0.0, "sync_y": 0.0, "sync_loss": 0.0}
    count, grid = 0, []
    for start in range(0, len(indices), batch_size):
        items = [windows[i] for i in indices[start:start + batch_size]]
        target = torch.stack([it["target"] for it in items]).to(device).flatten(0, 1)
        reference = torch.stack([it["reference"] for it in items]).to(device).flatten(0, 1)
        mels = torch.stack([it["mels"] for it in items]).to(device).flatten(0, 1)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            if silent_net is not None:
                reference = silent_net(reference, mask_lower_half(reference), torch.full_like(mels, SILENT_MEL))
            fake = generator(reference, mask_lower_half(target), mels).float().clamp(0, 1)
        n = len(items)
        sums["l1"] += float((fake - target).abs().mean()) * n
        sums["l1_mouth"] += float((fake - target)[..., rows, cols].abs().mean()) * n
        if judge is not None and not silent_mode:
            sync_mel = torch.stack([it["sync_mel"] for it in items]).to(device)
            x = judge.similarity(fake, sync_mel, amp=amp)
            sums["sync_x"] += float(x.sum())
            sums["sync_y"] += float(judge.similarity(target, sync_mel, amp=amp).sum())
            sums["sync_loss"] += float(-torch.log(x.clamp(1e-7, 1.0)).sum())
        count += n
        if len(grid) < SAMPLE_ROWS:
            middle = config.frames // 2
            for k in range(min(n, SAMPLE_ROWS - len(grid))):
                at = k * config.frames + middle
                grid.append(torch.cat([reference[at].float(), mask_lower_half(target[at:at + 1])[0], fake[at],
                                       target[at]], dim=2))
    values = {k: v / count for k, v in sums.items()}
    if judge is None or silent_mode:
        values = {k: values[k] for k in ("l1", "l1_mouth")}
    for clip in lse_clips if judge is not None and not silent_mode else ():
        score = clip_lse(generator, silent_net, judge, clip, config, device, amp)
        values.setdefault("lse_clips", 0)
        values["lse_c"] = values.get("lse_c", 0.0) + score.lse_c
        values["lse_d"] = values.get("lse_d", 0.0) + score.lse_d
        values["lse_clips"] += 1
    if values.get("lse_clips"):
        values["lse_c"] /= values["lse_clips"]
        values["lse_d"] /= values["lse_clips"]
    values["score"] = config.w_pixel * values["l1_mouth"] + (0.0 if silent_mode else
                                                             config.w_sync * values.get("sync_loss", 0.0))
    generator.train(was_training)
    image = (torch.cat(grid, dim=1).clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    return values, image


@torch.no_grad()
def clip_lse(generator, silent_net, judge, clip: FaceClip, config, device: torch.device, amp: bool,
             batch: int = 32):
    """LSE (``SyncScore``) of one clip with every frame generated (its own frame as the reference),
    scored by ``judge``'s expert."""
    mel = clip.mel
    frames = clip.window_starts() + 4  # every frame a 5-frame window with its audio can reach
    scorer = ExpertSyncScorer(judge, clip.audio, vshift=15)
    for start in range(0, frames, batch):
        count = min(batch, frames - start)
        faces = torch.from_numpy(clip.faces(start, count, config.size)).permute(0, 3, 1, 2).float().div(255)
        faces = faces.to(device)
        mels = torch.from_numpy(np.stack([centred_mel(mel, t) for t in range(start, start + count)]))[:, None]
        mels = mels.to(device)
        reference = faces
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            if silent_net is not None:
                reference = silent_net(faces, mask_lower_half(faces), torch.full_like(mels, SILENT_MEL))
            fake = generator(reference, mask_lower_half(faces), mels).float().clamp(0, 1)
        scorer.add_frames((fake.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8))
    return scorer.result()


def write_sample_grid(image: np.ndarray, out: Path, step: int) -> Path:
    path = out / "samples" / f"step_{step:07d}.png"
    path.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path
