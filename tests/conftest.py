"""Fixtures over the real clips of ../shared/data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lipsync_bench import media
from tests.helpers import DATA


@pytest.fixture(autouse=True)
def no_user_weights(tmp_path_factory, monkeypatch):
    """Tests never see the user's torch hub cache or weights folder; FID tests bring their own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.getbasetemp() / "empty_torch_home"))
    monkeypatch.delenv("LIPSYNC_BENCH_WEIGHTS", raising=False)


@pytest.fixture(scope="session")
def grid_clips() -> list[Path]:
    clips = sorted((DATA / "grid").glob("*.mpg")) if (DATA / "grid").is_dir() else []
    if len(clips) < 3:
        pytest.skip(f"GRID clips not found under {DATA / 'grid'}")
    return clips


@pytest.fixture(scope="session")
def grid_frames(grid_clips) -> dict[str, np.ndarray]:
    """Decoded frames (25 fps) of the first three GRID clips, by stem."""
    return {p.stem: media.read_frames(p) for p in grid_clips[:3]}
