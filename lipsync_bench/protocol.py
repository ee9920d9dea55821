"""The protocol of a run: everything that changes a number. Results computed under different
protocols are never mixed in one run of the store; the software environment is recorded beside them.
"""
from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass, fields
from importlib import metadata

import av
import torch

from .faces import BACKENDS, FaceAnalyzer

REGIONS = ("full", "face", "mouth")


@dataclass(frozen=True)
class Protocol:
    """Decoding and pairing settings shared by every metric of a run.

    fps: frame rate every input is resampled to (ffmpeg ``-r`` semantics), frames per second.
    sample_rate: audio sample rate, Hz (mono, 16-bit samples as ffmpeg's pcm_s16le).
    region: the part of the frame the frame metrics (SSIM, PSNR, IFC, FID) see: "full", or "face" /
        "mouth", a box of fixed size per video from the GT's face track or mouth landmarks
        (``lipsync_bench.faces.regions``); face metrics (LMD) always see full frames.
    max_frame_gap: generated and GT frame counts that differ by at most this many frames are
        truncated to the shorter (codec padding); a larger gap is an error for that video.
    landmarker: the face stage's landmarker ("auto": face-alignment when its weights are present,
        else dlib); the one face analysis of each input that every face metric, crop and region reads.
    """

    fps: float = 25.0
    sample_rate: int = 16000
    region: str = "full"
    max_frame_gap: int = 3
    landmarker: str = "auto"

    def __post_init__(self):
        # One canonical type per field, so 25 and 25.0 are the same protocol.
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        object.__setattr__(self, "max_frame_gap", int(self.max_frame_gap))
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, not {self.fps}")
        if self.region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, not {self.region!r}")
        if self.max_frame_gap < 0:
            raise ValueError(f"max_frame_gap must be >= 0, not {self.max_frame_gap}")
        if self.landmarker not in BACKENDS:
            raise ValueError(f"landmarker must be one of {BACKENDS}, not {self.landmarker!r}")

    def face_pipeline(self) -> dict:
        """The face stage's settings as they resolve on this machine (backend, its weights, tracking)."""
        return FaceAnalyzer(self.landmarker).params()

    def as_dict(self) -> dict:
        d = asdict(self)
        if self.region != "full":  # the face pipeline that placed the region is part of the protocol
            d["face_pipeline"] = self.face_pipeline()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        """The protocol a run recorded (resolved entries such as the face pipeline are left out)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


PACKAGES = ("lipsync-bench", "torch", "torchvision", "av", "numpy", "scipy", "scikit-image", "pandas")


def environment(device: str) -> dict:
    """Versions and machine that computed a session's results, for telling two runs apart."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    device_name = "cpu"
    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    return {
        "versions": versions,
        "ffmpeg": {lib: ".".join(map(str, v)) for lib, v in av.library_versions.items()},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
        "device_name": device_name,
        "torch_threads": torch.get_num_threads(),
    }


def canonical(obj) -> str:
    """A stable JSON text for comparing protocols and parameters."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
