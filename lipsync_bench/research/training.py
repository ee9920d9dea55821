"""What the trainers share (``train-syncnet``, ``train-generator``, ``train-silent``): the process group
under torchrun, each process's equal slice of an epoch, the data-loading workers, the CSV/TensorBoard
log, the resume check and kept snapshots.

Resume: a checkpoint records the settings that define the run and the identity of its inputs (the
expert's and G_S's sha256, the clips trained and validated on); ``--resume`` refuses any difference
by name, unless the difference is named in ``--change`` (a deliberate change: a lower learning rate,
another expert), and then records it in the checkpoint and ``run.json`` (``changes``: step, what,
before, after).

Reproducibility: an epoch is a permutation drawn from (seed, epoch) and every item a function of
(seed, epoch, index), so a run resumed from a checkpoint written mid-epoch continues exactly where it
stopped (the trainers store the step, the epoch and the batches done in it).
"""
from __future__ import annotations

import csv
import os
import shutil
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


def default_workers(device: torch.device) -> int:
    """Data-loading processes when none are asked for: on CUDA one per core but one (up to 8), so that
    decoding JPEG crops keeps up with the device; on a CPU none (the model's threads use every core)."""
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def check_resume(path: Path, identity: dict, what: str, inputs: dict | None = None,
                 changes: tuple[str, ...] = (), later: tuple[str, ...] = ("data",)) -> dict:
    """The checkpoint to resume from, refused when the settings that define the run (``identity``)
    or its inputs (``inputs``: name -> identity, e.g. the expert's sha256) differ from the ones it
    was written with, except those named in ``changes``; a change named but not made is refused too
    (a typo must not pass); ``later`` names inputs checked once known (``check_resumed_input``). The
    accepted changes are in the returned checkpoint's ``changes``."""
    if not path.is_file():
        raise LipsyncBenchError(f"--resume: no checkpoint {path} to resume from")
    saved = read_checkpoint(path, what)
    train = saved.get("train", {}) if isinstance(saved, dict) else {}
    now = {**identity, **(inputs or {})}
    before = {**train.get("config", {}), **train.get("inputs", {})}
    differ = {k: (before.get(k), v) for k, v in now.items() if _identity(before.get(k)) != _identity(v)}
    unknown = sorted(set(changes) - set(now) - set(later))
    if unknown:
        raise LipsyncBenchError(f"--change {', '.join(unknown)}: not a setting of this run (known: "
                                f"{', '.join(sorted(now))})")
    refused = {k: ab for k, ab in differ.items() if k not in changes}
    if refused:
        raise LipsyncBenchError(f"--resume: {path} was trained with other settings or inputs: "
                                + "; ".join(f"{k} {_short(a)} (now {_short(b)})" for k, (a, b) in refused.items())
                                + " (a deliberate change: --change " + ",".join(refused) + ")")
    unchanged = sorted(set(changes) - set(differ) - set(later))
    if unchanged:
        raise LipsyncBenchError(f"--change {', '.join(unchanged)}: the same as in {path}; nothing to change")
    step = train.get("step", saved.get("global_step") if isinstance(saved, dict) else None)
    saved["changes"] = [*train.get("changes", []),
                        *({"step": step, "what": k, "before": a, "after": b} for k, (a, b) in differ.items())]
    return saved


def check_resumed_input(saved: dict, path: Path, name: str, value, changes: tuple[str, ...] = ()) -> None:
    """``check_resume`` for an input known only after start-up (the clips: ``datasets.data_identity``)."""
    train = saved.get("train", {})
    before = train.get("inputs", {}).get(name)
    if _identity(before) == _identity(value):
        if name in changes:
            raise LipsyncBenchError(f"--change {name}: the same as in {path}; nothing to change")
        return
    if name not in changes:
        raise LipsyncBenchError(f"--resume: {path} was trained on other {name}: {_short(before)} (now "
                                f"{_short(value)}; a deliberate change: --change {name})")
    saved["changes"].append({"step": train.get("step"), "what": name, "before": before, "after": value})


def _identity(value):
    """What a resume compares of a setting or input: a file by its checksum (moved or renamed, it is
    the same input)."""
    return value["sha256"] if isinstance(value, dict) and "sha256" in value else value


def _short(value) -> str:
    """A setting or input for an error line: a file's name and the start of its checksum."""
    if isinstance(value, dict) and "sha256" in value:
        return f"{value.get('file', '?')} (sha256 {value['sha256'][:12]})"
    return repr(value)


def keep_snapshot(last: Path, step: int) -> Path:
    """A copy of ``last`` as ``snapshots/step_<step>.pt`` beside it (hard link where the file system
    allows: the checkpoint is written anew, never in place)."""
    target = last.parent / "snapshots" / f"step_{step:07d}.pt"
    target.parent.mkdir(exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(last, target)
    except OSError:
        shutil.copyfile(last, target)
    return target


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
