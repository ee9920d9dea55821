"""What the sync experts see: the crop geometry a face crop is cut by (``FACE_CROP`` for videos, prepared
folders and ``generate``; ``WAV2LIP_CROP`` for Wav2Lip's preprocessed layout), the input each expert
wants (crop size, colour order, lower half), and 5-frame windows of crops turned into that input.
Used by scoring (LSE with an expert) and by training alike."""
from __future__ import annotations

from dataclasses import dataclass

import torch

FRAMES = 5  # frames of one window


@dataclass(frozen=True)
class CropGeometry:
    """How a face crop is cut from a frame: what a generator or sync expert learns to see."""

    name: str
    description: str
    crop_scale: float | None = None  # syncnet_python's margin parameter, where the geometry is one of its crops
    size: int | None = None  # side of the stored crops in pixels (None: whatever the files hold)

    def as_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "crop_scale": self.crop_scale, "size": self.size}


#: The one geometry of ``prepare``, of video folders in training and the studies, and of ``generate``:
#: syncnet_python's crop (``crop_window``) with a 0.15 margin, which keeps mouth and chin in the bottom
#: half as Wav2Lip's detector box + 10 px does, but square, so faces are never squashed.
FACE_CROP = CropGeometry(
    "lipsync-bench-face-0.15",
    "main face track's box, median-smoothed (kernel 13, edge-padded); square window of side 2s(1+0.15) "
    "from cy - s to cy + s(1.3) (syncnet_python's crop, crop_scale 0.15; s = max(w, h) / 2); 224x224 bilinear",
    crop_scale=0.15, size=224)
#: Wav2Lip's ``preprocess.py``: the S3FD box of each frame, 10 px added below, resized to the model's
#: size without keeping the aspect ratio (squashed).
WAV2LIP_CROP = CropGeometry(
    "wav2lip-preprocess",
    "Wav2Lip preprocess.py: per-frame S3FD box with pads (0, 10, 0, 0), no smoothing; resized to a square "
    "without keeping the aspect ratio")


@dataclass(frozen=True)
class ExpertInput:
    """How a sync expert wants its face windows: crop size, channel order, lower half or whole crop."""

    size: int
    bgr: bool
    lower_half: bool = True


#: The inputs of the experts that train on face crops (the original SyncNet takes syncnet_python's
#: crops instead: see ``experts``).
INPUTS = {"wav2lip": ExpertInput(96, bgr=True), "avsyncnet": ExpertInput(224, bgr=False)}


def expert_input(windows: torch.Tensor, spec: ExpertInput, transform=None, before_half: bool = False) -> torch.Tensor:
    """(N, 5, S, S, 3) RGB uint8 windows of face crops -> the expert's input (see ``frames_input``)."""
    imgs = windows.reshape(-1, *windows.shape[2:]).permute(0, 3, 1, 2).float().div(255)
    return frames_input(imgs, spec, transform, before_half)


def frames_input(imgs: torch.Tensor, spec: ExpertInput, transform=None, before_half: bool = False) -> torch.Tensor:
    """(N * 5, 3, S, S) RGB float face crops in [0, 1], window-major -> (N, 15, S/2 or S, S): frame-major
    on channels (Wav2Lip's ``np.concatenate(window, axis=2)``), in the expert's colour order;
    differentiable (the generator's sync losses). ``transform`` (float (M, 3, H, W) images -> same
    size) is applied to the expert's input, or with ``before_half`` to the whole crop before its bottom
    half is taken."""
    n = imgs.shape[0] // FRAMES
    if transform is not None and before_half:
        imgs = transform(imgs)
    if spec.lower_half:
        imgs = imgs[:, :, imgs.shape[2] // 2:]
    if transform is not None and not before_half:
        imgs = transform(imgs)
    if spec.bgr:
        imgs = imgs.flip(1)
    return imgs.reshape(n, FRAMES * 3, *imgs.shape[2:]).contiguous()
