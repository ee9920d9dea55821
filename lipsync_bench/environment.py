"""The software and machine a session ran on, recorded with its results so that two runs can be told
apart (versions, FFmpeg's libraries, the device and its name, torch's threads)."""
from __future__ import annotations

import platform
import sys
from importlib import metadata

import av
import torch

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
