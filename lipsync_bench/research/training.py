"""What the trainers share (``train-syncnet``, ``train-generator``, ``train-silent``): the process group
under torchrun, each process's equal slice of an epoch, the CSV/TensorBoard log, and the resume check.

Reproducibility: an epoch is a permutation drawn from (seed, epoch) and every item a function of
(seed, epoch, index), so a run resumed from a checkpoint written mid-epoch continues exactly where it
stopped (the trainers store the step, the epoch and the batches done in it).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import read_checkpoint
from ..errors import LipsyncBenchError


def distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun (the process group is started once), else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def train_device(device: str, rank: int, world: int) -> torch.device:
    """The process's device: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; CUDA must exist."""
    if world > 1 and device.startswith("cuda"):
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LipsyncBenchError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    return dev


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """This process's batches of one epoch: its slice of the epoch's permutation of n items, in
    batches (a last batch of one item is dropped: batch norm needs two). Every process gets n // world
    items, so all take the same number of steps (DistributedDataParallel would wait forever for a
    missing one)."""
    order = np.random.default_rng([seed, epoch]).permutation(n)[:n // world * world][rank::world]
    batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return [b for b in batches if len(b) >= 2]


def wrap_ddp(model: torch.nn.Module, device: torch.device, world: int) -> torch.nn.Module:
    if world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model,
                                                     device_ids=[device.index] if device.type == "cuda" else None)


def check_resume(path: Path, identity: dict, what: str) -> dict:
    """The checkpoint to resume from, refused when the settings that define the run differ."""

    if not path.is_file():
        raise LipsyncBenchError(f"--resume: no checkpoint {path} to resume from")
    saved = read_checkpoint(path, what)
    before = saved.get("train", {}).get("config", {}) if isinstance(saved, dict) else {}
    differ = {k: (before.get(k), v) for k, v in identity.items() if before.get(k) != v}
    if differ:
        raise LipsyncBenchError(f"--resume: {path} was trained with other settings: "
                                + ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in differ.items()))
    return saved


class TrainLog:
    """``<out>/log.csv`` (always) and TensorBoard (``kind="tensorboard"``), written by process 0 only."""

    def __init__(self, out: Path, fields: list[str], kind: str, enabled: bool, resume: bool):
        self.enabled, self.fields, self.file, self.tb = enabled, fields, out / "log.csv", None
        if kind not in ("csv", "tensorboard"):
            raise LipsyncBenchError(f"log must be csv or tensorboard, not {kind!r}")
        if not enabled:
            return
        if not resume or not self.file.is_file():
            with open(self.file, "w", newline="") as f:
                csv.writer(f).writerow(fields)
        if kind == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise LipsyncBenchError("--log tensorboard needs the tensorboard package (pip install tensorboard); "
                                        "log.csv is written either way") from None
            self.tb = SummaryWriter(str(out / "tensorboard"))

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.file, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch", "split") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{row.get('split', 'train')}/{k}", v, row["step"])
