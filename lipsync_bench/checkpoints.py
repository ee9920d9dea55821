"""Checkpoint files: read safely (``weights_only=True``: a file holding pickled code is refused, never
run) with one clear error naming the file, and written atomically (a temporary file renamed over the
target, so an interrupted save never leaves a half-written checkpoint behind)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import LipsyncBenchError


def read_checkpoint(path: str | os.PathLike, what: str):
    """The object stored in ``path`` (tensors, dicts, lists, numbers, strings only); ``what`` names the
    expected content in the error, e.g. "SyncNet weights"."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, not a torch file, or pickled code refused
        text = str(exc).strip()
        reason = text.splitlines()[0][:200] if text else type(exc).__name__
        raise LipsyncBenchError(f"{path}: cannot be loaded as {what} ({reason})") from None


def state_dict_of(checkpoint, path: str | os.PathLike) -> dict:
    """The model's state dict in a checkpoint: the dict itself, or its ``state_dict`` entry (Wav2Lip's
    and this project's layout); ``module.`` prefixes (DataParallel / DDP) removed."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LipsyncBenchError(f"{path}: holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_state(model: torch.nn.Module, state: dict, path: str | os.PathLike, layout: str) -> None:
    """``model.load_state_dict(state)`` with an error that says which layout was expected."""
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise LipsyncBenchError(f"{path}: not in {layout}'s layout ({len(missing)} keys missing, e.g. {missing[:2]}; "
                                f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise LipsyncBenchError(f"{path}: tensor shapes differ from {layout}'s "
                                f"({str(exc).strip().splitlines()[-1].strip()})") from None


def save_checkpoint(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then an atomic rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
