"""Training windows of the generators, from the clip readers (``research.datasets``): the
same sources (Wav2Lip's layout or videos through the face pipeline, crops cached) and the same
(seed, epoch, index) reproducibility.

An item (``frames`` consecutive frames of one clip, at the working size):

- ``target``: the frames (RGB [0, 1]); the generator sees them with the bottom half masked;
- ``reference``: as many frames from a seeded random window of the same clip that does not overlap
  the target (the identity reference; Wav2Lip's "wrong window");
- ``mels``: per frame, the 16-step mel window centred on it (``centred_mel``, as ``generate`` takes it;
  Wav2Lip's ``get_segmented_mels``: it starts 2 frames earlier; clamped to the spectrogram);
- ``sync_mel``: the mel window of the whole 5-frame target (what the sync expert compares with).
"""
from __future__ import annotations

import numpy as np
import torch

from ...syncnets.inputs import FRAMES
from ...syncnets.wav2lip import MEL_STEPS_PER_SECOND, MEL_WINDOW, mel_window
from ..datasets import ClipWindows, FaceClip, other_window

SILENT_MEL = -4.0  # Wav2Lip's normalised mel of silence (the floor of its [-4, 4] range)


def centred_mel(mel: np.ndarray, frame: int, fps: float = 25.0) -> np.ndarray:
    """The 16-step mel window centred on ``frame`` (Wav2Lip's: it starts 2 frames earlier), clamped to
    the spectrogram; training and ``generate`` both take the audio of a frame from here."""
    start = int(MEL_STEPS_PER_SECOND * (frame - 2) / fps)
    start = min(max(0, start), mel.shape[1] - MEL_WINDOW)
    return mel[:, start:start + MEL_WINDOW]


class GeneratorWindows(ClipWindows):
    def __init__(self, clips: list[FaceClip], size: int = 96, frames: int = FRAMES, seed: int = 0, stride: int = 1):
        super().__init__(clips, seed, stride, "a target and a separate reference window")
        self.size, self.frames = size, frames

    def reference_start(self, i: int) -> int:
        c, s, n = self.index[i]
        return other_window(s, n, self.rng(i), self.frames)

    def __getitem__(self, i: int) -> dict:
        c, s, _ = self.index[i]
        clip = self.clips[c]
        r = self.reference_start(i)
        mel = clip.mel
        mels = [centred_mel(mel, t) for t in range(s, s + self.frames)]

        def faces(start):
            x = torch.from_numpy(clip.faces(start, self.frames, self.size))
            return x.permute(0, 3, 1, 2).float().div(255)

        return {"target": faces(s), "reference": faces(r), "mels": torch.from_numpy(np.stack(mels))[:, None],
                "sync_mel": torch.from_numpy(np.ascontiguousarray(mel_window(mel, s)))[None]}
