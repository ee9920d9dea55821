"""Training of the sync experts (``lipsync-bench train-syncnet``): Wav2Lip's SyncNet or AVSyncNet on
aligned / misaligned window pairs (``data.SyncPairs``), BCE on the cosine similarity (Eq. A/B).

- Optimiser: Adam (Wav2Lip's, lr 1e-4) for ``wav2lip``, AdamW (weight decay 0.01) for ``avsyncnet``
  by default; mixed precision (fp16 autocast + gradient scaling) on CUDA; the loss in float32.
- Order: each epoch is a permutation of the training pairs drawn from (seed, epoch), and each pair is
  a function of (seed, epoch, index) (``SyncPairs``); the models have no dropout. So a run is
  reproducible and a run resumed from a checkpoint written mid-epoch continues exactly where it was.
- Checkpoints: ``<out>/last.pt`` after every epoch, every ``save_every`` steps and at the last step,
  ``<out>/best.pt`` at the lowest validation loss, written atomically; Wav2Lip's keys (``state_dict``, ``optimizer``,
  ``global_step``, ``global_epoch``) plus ``arch``, ``config`` (AVSyncNet's) and the training state.
  ``resume=True`` continues from ``last.pt`` (the settings that define the run and the clips must be
  the same, or the difference named in ``changes``: ``training.check_resume``).
- Validation every ``val_every`` steps, at every epoch's end and at the last step (a run stopped by
  ``max_steps`` mid-epoch is validated too), on held-out clips (fixed pairs): loss, sync accuracy (cosine similarity
  above 0.5 <=> aligned) and the mean cosine similarity of the aligned (ground-truth) pairs, the
  quantity of the paper's Tab. A. Logged to ``<out>/log.csv`` (and TensorBoard with ``log="tensorboard"``).
- Several GPUs: start with ``torchrun --nproc-per-node N -m lipsync_bench.cli train-syncnet ...``; each
  process trains on its equal slice of every epoch's permutation under DistributedDataParallel
  (``training.epoch_batches``), and validation sums are all-reduced. Process 0 writes checkpoints and logs.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from ..checkpoints import save_checkpoint, state_dict_of
from ..errors import LipsyncBenchError
from ..syncnets.experts import build_model
from ..syncnets.inputs import INPUTS
from ..syncnets.wav2lip import sync_loss
from .datasets import SyncPairs, data_identity, train_val_clips
from .outcomes import ExpertTraining
from .training import (
    TrainLog,
    check_resume,
    check_resumed_input,
    default_workers,
    distributed,
    epoch_batches,
    train_device,
    wrap_ddp,
)

ARCHS = ("avsyncnet", "wav2lip")
LOG_FIELDS = ["step", "epoch", "split", "loss", "sync_acc", "gt_cos", "lr", "samples_per_s", "seconds"]


@dataclass
class TrainConfig:
    arch: str = "avsyncnet"
    tiny: bool = False  # AVSyncNet's small configuration, for smoke runs on a CPU
    epochs: int = 100
    max_steps: int | None = None  # stop after this many optimiser steps in all (a checkpoint is written)
    batch_size: int = 64
    lr: float = 1e-4
    optimizer: str | None = None  # adam | adamw; default: adam for wav2lip, adamw for avsyncnet
    weight_decay: float | None = None  # default: 0 for adam, 0.01 for adamw
    seed: int = 0
    stride: int = 1  # every stride-th window start of each clip is a training item
    val_fraction: float = 0.1  # held-out clips when no validation list is given
    workers: int | None = None  # DataLoader processes; None: training.default_workers (0 on a CPU)
    amp: bool = True  # mixed precision, CUDA only
    save_every: int = 0  # steps between mid-epoch checkpoints; 0: after each epoch only
    val_every: int = 1000  # steps between validations (also at each epoch's end and the last step); 0: those only

    #: Fields that define the run: resuming with another value is refused.
    IDENTITY = ("arch", "tiny", "batch_size", "lr", "optimizer", "weight_decay", "seed", "stride")

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise LipsyncBenchError(f"arch must be one of {', '.join(ARCHS)}, not {self.arch!r}")
        if self.optimizer is None:
            self.optimizer = "adam" if self.arch == "wav2lip" else "adamw"
        if self.optimizer not in ("adam", "adamw"):
            raise LipsyncBenchError(f"optimizer must be adam or adamw, not {self.optimizer!r}")
        if self.weight_decay is None:
            self.weight_decay = 0.0 if self.optimizer == "adam" else 0.01
        if self.batch_size < 2:
            raise LipsyncBenchError("batch size must be at least 2 (batch norm)")

    def identity(self) -> dict:
        return {k: getattr(self, k) for k in self.IDENTITY}


@torch.no_grad()
def validate(model, pairs: SyncPairs, batch_size: int, device: torch.device, world: int = 1, rank: int = 0) -> dict:
    """Loss, sync accuracy and mean cosine similarity of aligned pairs over ``pairs`` (fixed: epoch 0)."""
    model.eval()
    pairs.set_epoch(0)
    sums = torch.zeros(5, dtype=torch.float64)  # loss, correct, items, aligned cos, aligned items
    for start in range(rank * batch_size, len(pairs), batch_size * world):
        batch = [pairs[i] for i in range(start, min(start + batch_size, len(pairs)))]
        faces, mel, y = (torch.stack(t) for t in zip(*batch, strict=True))
        audio, video = model(mel.to(device), faces.to(device))
        cos = torch.nn.functional.cosine_similarity(audio.float(), video.float()).cpu()
        sums += torch.tensor([float(sync_loss(audio.float(), video.float(), y.to(device))) * len(y),
                              float(((cos > 0.5).float() == y).sum()), len(y), float(cos[y == 1].sum()),
                              float((y == 1).sum())], dtype=torch.float64)
    if world > 1:
        sums = sums.to(device)
        torch.distributed.all_reduce(sums)
        sums = sums.cpu()
    loss, correct, items, cos, aligned = sums.tolist()
    return {"loss": loss / items if items else math.nan, "sync_acc": correct / items if items else math.nan,
            "gt_cos": cos / aligned if aligned else math.nan, "items": int(items)}


def _make_optimizer(model, config: TrainConfig):
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _checkpoint(model, optimizer, scaler, config: TrainConfig, state: dict, inputs: dict) -> dict:
    ckpt = {"arch": config.arch, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
            "global_step": state["step"], "global_epoch": state["epoch"],
            "train": {"config": asdict(config), "inputs": inputs, **state}}
    if config.arch == "avsyncnet":
        ckpt["config"] = asdict(model.config)
    if scaler is not None:
        ckpt["scaler"] = scaler.state_dict()
    return ckpt


def train_syncnet(data: str | os.PathLike, out: str | os.PathLike, config: TrainConfig | None = None, *,
                  resume: bool = False, device: str = "cpu", layout: str = "auto", cache_dir=None,
                  train_list=None, val_list=None, changes=(), log: str = "csv", progress: bool = True) -> dict:
    """Train one sync expert on the clips under ``data``; returns the final state and the validation
    history (``config`` default: ``TrainConfig()``). See the module docstring for what is written to
    ``out``."""
    config = config or TrainConfig()
    rank, world = distributed()
    dev = train_device(device, rank, world)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    saved = (check_resume(last, config.identity(), "a train-syncnet checkpoint", changes=tuple(changes))
             if resume else None)

    clipset, train_clips, val_clips = train_val_clips(data, cache_dir, layout, train_list, val_list,
                                                     config.val_fraction, progress and rank == 0)
    inputs = {"data": data_identity(clipset.layout, train_clips, val_clips)}
    if saved is not None:
        check_resumed_input(saved, last, "data", inputs["data"], tuple(changes))
    spec = INPUTS[config.arch]
    train_pairs = SyncPairs(train_clips, spec, config.seed, config.stride)
    val_pairs = SyncPairs(val_clips, spec, config.seed + 1) if val_clips else None
    if len(train_pairs) < 2:
        raise LipsyncBenchError(f"{data}: fewer than 2 training windows "
                                f"({'; '.join(train_pairs.too_short) or 'no clips'})")

    torch.manual_seed(config.seed)
    model = build_model(config.arch, config.tiny).to(dev)
    optimizer = _make_optimizer(model, config)
    use_amp = config.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_val_loss": math.inf, "history": []}
    if saved is not None:
        model.load_state_dict(state_dict_of(saved, last))
        optimizer.load_state_dict(saved["optimizer"])
        if scaler is not None and "scaler" in saved:
            scaler.load_state_dict(saved["scaler"])
        state = {k: saved["train"][k] for k in state}
        for group in optimizer.param_groups:  # a deliberate --change lr applies now
            group["lr"] = config.lr
    state["changes"] = saved["changes"] if saved is not None else []
    net = wrap_ddp(model, dev, world)
    workers = default_workers(dev) if config.workers is None else config.workers
    logger = TrainLog(out, LOG_FIELDS, log, rank == 0, resume)
    meta = {"data": str(data), "layout": clipset.layout, "crop_geometry": clipset.geometry.as_dict(),
            "train_clips": len(train_clips), "val_clips": len(val_clips),
            "train_windows": len(train_pairs), "val_windows": len(val_pairs) if val_pairs else 0,
            "skipped": clipset.problems + train_pairs.too_short, "world_size": world, "device": str(dev),
            "amp": use_amp, "workers": workers, "config": asdict(config), "inputs": inputs,
            "changes": state["changes"]}
    if rank == 0:
        (out / "run.json").write_text(json.dumps(meta, indent=2))

    def save(path: Path) -> None:
        if rank == 0:
            save_checkpoint({**_checkpoint(model, optimizer, scaler, config, state, inputs), "crop_geometry":
                             meta["crop_geometry"]}, path)

    validated: dict = {}

    def validation(epoch_number: int) -> dict:
        """Validate now (once a step), log it, keep best.pt at the lowest validation loss."""
        if val_pairs is None:
            return {}
        if validated.get("step") != state["step"]:
            val = validate(model, val_pairs, config.batch_size, dev, world, rank)
            logger.write({"step": state["step"], "epoch": epoch_number, "split": "val", **val})
            best = val["loss"] < state["best_val_loss"]
            state["best_val_loss"] = min(val["loss"], state["best_val_loss"])
            if best:
                save(out / "best.pt")
            validated.update(step=state["step"], values={f"val_{k}": v for k, v in val.items()})
        return validated["values"]

    done = False
    while state["epoch"] < config.epochs and not done:
        epoch = state["epoch"]
        train_pairs.set_epoch(epoch)
        batches = epoch_batches(len(train_pairs), config.batch_size, config.seed, epoch, rank, world)
        loader = torch.utils.data.DataLoader(train_pairs, batch_sampler=batches[state["batch_in_epoch"]:],
                                             num_workers=workers, pin_memory=dev.type == "cuda")
        net.train()
        total, items, started = 0.0, 0, time.perf_counter()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress or rank != 0)
        for faces, mel, y in bar:
            faces, mel, y = faces.to(dev, non_blocking=True), mel.to(dev, non_blocking=True), y.to(dev)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
                audio, video = net(mel, faces)
            loss = sync_loss(audio.float(), video.float(), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            state["step"] += 1
            state["batch_in_epoch"] += 1
            total += float(loss.detach()) * len(y)
            items += len(y)
            bar.set_postfix(loss=f"{total / items:.4f}")
            done = config.max_steps is not None and state["step"] >= config.max_steps
            if config.val_every and state["step"] % config.val_every == 0 and not done:
                validation(epoch + 1)
                net.train()
            if config.save_every and state["step"] % config.save_every == 0:
                save(last)
            if done:
                break
        seconds = time.perf_counter() - started
        row = {"step": state["step"], "epoch": epoch + 1, "split": "train", "loss": total / max(1, items),
               "lr": optimizer.param_groups[0]["lr"], "samples_per_s": items * world / seconds if seconds else "",
               "seconds": round(seconds, 3)}
        logger.write(row)
        if state["batch_in_epoch"] >= len(batches):
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
        if done or state["batch_in_epoch"] == 0:  # an epoch's end, or the last step: validated and recorded
            record = {"epoch": epoch + 1, "step": state["step"], "train_loss": row["loss"],
                      "samples_per_s": row["samples_per_s"], "epoch_end": state["batch_in_epoch"] == 0,
                      **validation(epoch + 1)}
            state["history"].append(record)
        save(last)
    if world > 1:
        torch.distributed.barrier()
    return ExpertTraining({**state, **meta, "checkpoint": str(last)})


def config_from_options(**options) -> TrainConfig:
    """A ``TrainConfig`` from keyword options, ignoring those left as None (the defaults apply)."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in options.items() if k in names and v is not None})
