"""Helpers for tests: the real clips (the repository's GRID clips in tests/data, and the optional extra
clips of LIPSYNC_BENCH_DATA) and 'generated' inputs built from them with known degradations."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lipsync_bench import media

ROOT = Path(__file__).resolve().parents[1]
#: The GRID clips the tests carry (CC BY 4.0, see tests/data/grid/LICENSE.md).
GRID = ROOT / "tests" / "data" / "grid"
#: Extra clips that are not ours to redistribute (the VideoReTalking examples, in retalking/), for a
#: few extra tests: LIPSYNC_BENCH_DATA, else a shared data folder beside the repository.
EXTRA = Path(os.environ.get("LIPSYNC_BENCH_DATA", ROOT.parent / "shared" / "data"))


#: The python of the reference environment with mediapipe 0.10.21 (tests/reference/make_mediapipe_venv.sh).
MEDIAPIPE_PYTHON = Path(os.environ.get("LIPSYNC_BENCH_MEDIAPIPE_PYTHON", ROOT / ".venv-mediapipe" / "bin" / "python"))

def ffmpeg_exe() -> str:
    """imageio-ffmpeg's ffmpeg binary: the reference the decoding tests compare with (skips without it)."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="needs the test extra (a real ffmpeg binary)")
    return imageio_ffmpeg.get_ffmpeg_exe()


def data_file(rel: str) -> Path:
    """``grid/NAME`` from the repository's clips; anything else from LIPSYNC_BENCH_DATA (skipped, saying
    so, when it is absent)."""
    if rel.startswith("grid/"):
        return GRID / rel.removeprefix("grid/")
    path = EXTRA / rel
    if not path.exists():
        pytest.skip(f"extra clip {rel} not found under {EXTRA}: set LIPSYNC_BENCH_DATA to a folder holding it")
    return path


def jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.stack(out)


def blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(frames, sigma=(0, sigma, sigma, 0))


def noise(frames: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(0, sigma, frames.shape), 0, 255).astype(np.uint8)


def shift(frames: np.ndarray, k: int) -> np.ndarray:
    """Frame shift in time: frame t shows GT frame t-k (the first repeated)."""
    return np.concatenate([np.repeat(frames[:1], k, axis=0), frames[:-k]]) if k else frames


def write_lossless(path: Path, frames: np.ndarray, fps: float = 25) -> Path:
    """A lossless .avi (FFV1), so decoded frames equal ``frames`` exactly."""
    return media.write_video(path.with_suffix(".avi"), frames, fps, codec="ffv1")


def write_frame_folder(folder: Path, frames: np.ndarray, start: int = 1) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames, start=start):
        Image.fromarray(f).save(folder / f"{i:06d}.png")
    return folder


def make_fid_weights(path: Path, frames: np.ndarray, seed: int = 0) -> Path:
    """Seeded random FID-Inception weights in pytorch-fid's published layout (the state dict of its
    ``fid_inception_v3()`` network), with batch-norm statistics calibrated on ``frames`` so that the
    features are informative (default statistics make every image look alike)."""
    import pytorch_fid.inception as pfi
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)
    fetch, load = pfi.load_state_dict_from_url, torch.nn.Module.load_state_dict
    pfi.load_state_dict_from_url = lambda *a, **k: {}
    torch.nn.Module.load_state_dict = lambda self, *a, **k: None  # keep the random initialisation
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = pfi.fid_inception_v3()
    finally:
        pfi.load_state_dict_from_url, torch.nn.Module.load_state_dict = fetch, load
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration pass
            m.reset_running_stats()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
    x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    net.train()
    with torch.no_grad():
        net(x)
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def make_face_alignment_weights(folder: Path, seed: int = 0) -> Path:
    """Seeded random S3FD and 2D-FAN weights under face-alignment 1.5's published file names (plain
    state dicts, as it loads them): the backend's wiring can be tested; its landmarks are noise."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(s3fd().state_dict(), folder / "s3fd-619a316812.pth")
    torch.save(FAN(4).state_dict(), folder / "2DFAN4-11f355bf06.pth.tar")
    return folder


def import_without_init(module: str, packages: tuple[str, ...], requirement: str, stand_ins: dict | None = None):
    """``module`` of a reference package, imported without running the ``__init__`` of ``packages``
    (which, for pyiqa and insightface, imports every model they have and their many dependencies):
    each of those packages becomes an empty namespace over its folder. ``stand_ins`` maps modules that
    only fetch files (never called in the tests) to the names they must provide. Skips, naming
    ``requirement``, when the package is not installed."""
    import importlib
    import importlib.machinery
    import importlib.util
    import sys
    import types

    top = packages[0]
    if top not in sys.modules:  # else already imported, or already stood in for by an earlier call
        spec = importlib.util.find_spec(top)
        if spec is None:
            pytest.skip(f"needs {requirement} (the README's test command installs it, without its dependencies)")
        root = Path(list(spec.submodule_search_locations)[0])
        for name in packages:
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
            # a spec as a namespace package's, so that importlib.util.find_spec(name) still answers
            package.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            package.__spec__.submodule_search_locations = package.__path__
            sys.modules.setdefault(name, package)
    for name, attr in (stand_ins or {}).items():
        stand_in = types.ModuleType(name)
        setattr(stand_in, attr, lambda *args, **kwargs: None)
        sys.modules.setdefault(name, stand_in)
    return importlib.import_module(module)
