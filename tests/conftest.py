"""Fixtures over the real clips: the repository's GRID clips (tests/data/grid) and the optional extra clips."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lipsync_bench import media, weights
from tests.helpers import GRID, MEDIAPIPE_PYTHON


@pytest.fixture(autouse=True)
def no_user_weights(tmp_path_factory, monkeypatch):
    """Tests never see the user's torch hub cache or weights folder; FID tests bring their own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "empty_torch_home"))
    monkeypatch.setenv("LIPSYNC_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "user_cache"))
    monkeypatch.delenv("LIPSYNC_BENCH_WEIGHTS", raising=False)


@pytest.fixture(scope="session")
def grid_clips() -> list[Path]:
    clips = sorted((GRID).glob("*.mpg")) if (GRID).is_dir() else []
    if len(clips) < 3:
        pytest.skip(f"GRID clips not found under {GRID}")
    return clips


@pytest.fixture(scope="session")
def grid_frames(grid_clips) -> dict[str, np.ndarray]:
    """Decoded frames (25 fps) of the first three GRID clips, by stem."""
    return {p.stem: media.read_frames(p) for p in grid_clips[:3]}


@pytest.fixture(scope="session")
def sync_clips(tmp_path_factory, grid_clips) -> dict:
    """A folder of real talking-face clips for the sync experts (5 of the repository's GRID clips, so
    that the tests see the same data everywhere) and a crop cache that the tests share (each video goes
    through the face pipeline once)."""
    import shutil

    root = tmp_path_factory.mktemp("sync_clips")
    videos = root / "videos"
    videos.mkdir()
    for clip in grid_clips[:5]:
        shutil.copy(clip, videos / clip.name)
    return {"videos": videos, "cache": root / "cache"}


@pytest.fixture(scope="session")
def tiny_avsyncnet(tmp_path_factory, sync_clips) -> dict:
    """A tiny AVSyncNet trained here on the real clips (3 short epochs on CPU): its checkpoint and the
    trainer's result."""
    from lipsync_bench.research.expert_training import TrainConfig, train_syncnet

    out = tmp_path_factory.mktemp("tiny_avsyncnet")
    config = TrainConfig(arch="avsyncnet", tiny=True, epochs=3, batch_size=16, stride=2, lr=3e-4, val_fraction=0.2)
    result = train_syncnet(sync_clips["videos"], out, config, cache_dir=sync_clips["cache"], progress=False)
    return {"out": out, "checkpoint": out / "last.pt", "result": result, "config": config}


#: The MediaPipe model files of the face mesh and where mediapipe 0.10.21 keeps them.
MEDIAPIPE_MODELS = {"mediapipe-face-detection-short-range": "face_detection",
                    "mediapipe-face-landmark": "face_landmark",
                    "mediapipe-face-landmark-with-attention": "face_landmark"}


@pytest.fixture(scope="session")
def mediapipe_weights(tmp_path_factory) -> Path:
    """A weights folder holding the reference venv's MediaPipe model files and silero-vad 5.1.2's model
    (THEval's pin, kept beside the venv by make_mediapipe_venv.sh); skips, saying why, without the venv."""
    if not MEDIAPIPE_PYTHON.is_file():
        pytest.skip(f"no mediapipe 0.10.21 reference venv at {MEDIAPIPE_PYTHON} (make it with "
                    "tests/reference/make_mediapipe_venv.sh or set LIPSYNC_BENCH_MEDIAPIPE_PYTHON)")
    found = subprocess.run([str(MEDIAPIPE_PYTHON), "-c", "import importlib.util as u; "
                            "print(u.find_spec('mediapipe').submodule_search_locations[0])"],
                           capture_output=True, text=True, check=True)
    package = Path(found.stdout.strip())
    folder = tmp_path_factory.mktemp("mediapipe_weights")
    for name, module in MEDIAPIPE_MODELS.items():
        shutil.copy(package / "modules" / module / weights.KNOWN[name].filename, folder)
    vad = MEDIAPIPE_PYTHON.parent.parent / weights.KNOWN["silero-vad-5.1.2"].filename  # THEval's VAD, if kept
    if vad.is_file():
        shutil.copy(vad, folder)
    return folder
