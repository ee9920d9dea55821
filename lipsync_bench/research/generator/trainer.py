"""Training of the lip generator G_L (``train-generator``) and of the silent-lip generator G_S
(``train-silent``), with the sync-expert trainer's machinery (``lipsync_bench.training``): data readers,
reproducible epochs, atomic checkpoints, exact resume, mixed precision on CUDA, DistributedDataParallel
under torchrun, CSV/TensorBoard logs.

One step: the targets' bottom halves are masked; the identity references go through G_S with silent
audio first (setups D-H: the lips of the reference are closed so that G_L cannot copy them); G_L draws
the faces; its loss is ``config``'s weighted sum (``config.py``), the sync terms from the frozen sync
expert on the 5-frame window (x: generated, y: GT, d: reference, against the window's audio); then the
discriminator's step. G_S is the same network trained on reconstruction alone (GAN + pixel +
perceptual), which teaches it the lips of silent audio.

A run needs a trained sync expert (``train-syncnet``), G_S for setups D-H (``train-silent``) and VGG-19
for the perceptual loss; a missing one stops it before any work (``required_inputs``). Only with
``allow_random`` (smoke runs) does a seeded random tiny AVSyncNet (batch norms calibrated on the
data) or a seeded random G_S stand in, and the perceptual loss is skipped; ``run.json`` lists the
stand-ins. Validation (``validation``) every ``val_every`` steps and at the last step: ``best.pt``,
``samples/``, ``val`` rows in the log; ``snapshots/step_<n>.pt`` every ``keep_every`` steps and at
the last step. A resume checks the config, the expert's and G_S's checksums and the clips
(``training.check_resume``).
The checkpoint of G_L holds G_S and the frozen audio encoder, so ``generate`` needs it alone.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from ...checkpoints import load_state, read_checkpoint, save_checkpoint
from ...errors import LipsyncBenchError
from ...syncnets.avsyncnet import AVSyncNet, AVSyncNetConfig
from ...syncnets.experts import load_expert
from ...syncnets.inputs import INPUTS, ExpertInput, frames_input
from ...syncnets.wav2lip import Wav2LipSyncNet
from ..datasets import data_identity, train_val_clips
from ..expert_analysis import random_expert
from ..outcomes import GeneratorTraining
from ..training import (
    TrainLog,
    check_resume,
    check_resumed_input,
    default_workers,
    distributed,
    epoch_batches,
    keep_snapshot,
    train_device,
    wrap_ddp,
)
from .config import GeneratorConfig
from .losses import (
    PerceptualLoss,
    adaptive_triplet_loss,
    gan_discriminator_loss,
    gan_generator_loss,
    plain_sync_loss,
    stabilized_sync_floor,
    stabilized_sync_loss,
)
from .models import Discriminator, Generator, build_generator, mask_lower_half
from .run_inputs import required_inputs
from .validation import LSE_CLIPS, best_criterion, validate_generator, validation_windows, write_sample_grid
from .windows import SILENT_MEL, GeneratorWindows

LOG_FIELDS = ["step", "epoch", "split", "loss", "pixel", "perceptual", "gan", "sync", "sync_floor", "sync_excess",
              "triplet", "disc", "sync_x", "sync_y", "sync_d", "l1", "l1_mouth", "sync_loss", "lse_c", "lse_d",
              "lse_clips", "score", "samples_per_s", "seconds"]


# --------------------------------------------------------------------------------------------------
# The sync expert as the generator sees it


class SyncJudge:
    """The frozen sync expert: similarity of 5-frame windows of float faces (B * 5, 3, S, S) with mel
    windows (B, 1, 80, 16); differentiable in the faces. Faces are resized to ``size`` (AVSyncNet's
    224, or the working size for tiny runs) before the expert's bottom half is taken. With ``amp`` the
    expert runs under autocast (bfloat16 on a CPU, float16 on CUDA; the similarity in float32): the
    three passes a step are most of a step's time, and the similarities stay within
    ``AUTOCAST_BOUND`` of float32's (tests/test_research_run.py)."""

    def __init__(self, arch: str, model: torch.nn.Module, describe: dict, size: int, device: torch.device):
        self.arch, self.model, self.describe, self.size, self.device = arch, model.eval(), describe, size, device
        for p in model.parameters():
            p.requires_grad_(False)
        self.spec = ExpertInput(size, bgr=INPUTS[arch].bgr)

    def similarity(self, faces: torch.Tensor, mel: torch.Tensor, amp: bool = False) -> torch.Tensor:
        if faces.shape[-1] != self.size:
            faces = torch.nn.functional.interpolate(faces, size=(self.size, self.size), mode="bilinear",
                                                    align_corners=False)
        dtype = torch.float16 if faces.device.type == "cuda" else torch.bfloat16
        with torch.autocast(faces.device.type, dtype=dtype, enabled=amp):
            audio = self.model.embed_audio(mel)
            video = self.model.embed_faces(frames_input(faces, self.spec))
        return (audio.float() * video.float()).sum(dim=1)

    @torch.no_grad()
    def video(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, 5, S, S, 3) RGB uint8 windows -> (N, D) embeddings, as ``experts.Expert.video`` (for the
        LSE procedure, ``syncnets.scoring.ExpertSyncScorer``)."""
        faces = windows.to(self.device).flatten(0, 1).permute(0, 3, 1, 2).float().div(255)
        if faces.shape[-1] != self.size:
            faces = torch.nn.functional.interpolate(faces, size=(self.size, self.size), mode="bilinear",
                                                    align_corners=False)
        return self.model.embed_faces(frames_input(faces, self.spec))


#: The largest difference of a similarity under autocast from float32's allowed by the tests.
AUTOCAST_BOUND = 0.01


def load_judge(path: str | Path | None, config: GeneratorConfig, clips, device: torch.device) -> SyncJudge:
    """The sync expert from a train-syncnet checkpoint (AVSyncNet or Wav2Lip's layout), or a seeded
    random tiny AVSyncNet calibrated on ``clips``."""
    if path is None:
        expert = random_expert("avsyncnet", clips, config.seed, tiny=True, device=device)
        return SyncJudge("avsyncnet", expert.model, expert.weights, config.sync_size, device)
    checkpoint = read_checkpoint(path, "sync expert weights")
    arch = checkpoint.get("arch", "wav2lip") if isinstance(checkpoint, dict) else "wav2lip"
    if arch not in ("avsyncnet", "wav2lip"):
        raise LipsyncBenchError(f"{path}: a {arch} checkpoint; the generator's sync expert is AVSyncNet or Wav2Lip's")
    expert = load_expert(arch, path, device)
    size = config.sync_size if arch == "avsyncnet" else INPUTS["wav2lip"].size
    return SyncJudge(arch, expert.model, expert.weights, size, device)


def _audio_source(judge: SyncJudge) -> dict:
    """How to rebuild the frozen audio encoder from a checkpoint: the expert's architecture and config."""
    if judge.arch == "avsyncnet":
        return {"arch": "avsyncnet", "config": asdict(judge.model.config)}
    return {"arch": "wav2lip"}


def make_generator(config: GeneratorConfig, audio_source: dict | None,
                   expert: torch.nn.Module | None = None) -> Generator:
    """The generator of ``config``; its frozen audio encoder copied from ``expert``, or rebuilt empty
    from ``audio_source`` (to load a checkpoint into)."""
    if not config.frozen_audio:
        return build_generator(config)
    if expert is None:
        if audio_source["arch"] == "avsyncnet":
            expert = AVSyncNet(AVSyncNetConfig.from_dict(audio_source["config"]))
        else:
            expert = Wav2LipSyncNet()
    return build_generator(config, expert)


# --------------------------------------------------------------------------------------------------
# Checkpoints


def generator_checkpoint(kind: str, generator: Generator, audio_source: dict | None, **extra) -> dict:
    return {"arch": kind, "config": generator.config.as_dict(), "audio_source": audio_source,
            "state_dict": generator.state_dict(), **extra}


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, Generator | None, dict]:
    """(G_L or G_S, the G_S it uses or None, the checkpoint's metadata) from a train-generator or
    train-silent checkpoint, in eval mode."""
    ckpt = read_checkpoint(path, "generator weights")
    if not isinstance(ckpt, dict) or ckpt.get("arch") not in ("generator", "silent"):
        raise LipsyncBenchError(f"{path}: not a train-generator or train-silent checkpoint")

    def build(prefix: str = "") -> Generator:
        model = make_generator(GeneratorConfig(**ckpt[prefix + "config"]), ckpt[prefix + "audio_source"])
        load_state(model, ckpt[prefix + "state_dict"], path, "this generator")
        return model.eval().to(device)

    silent = build("silent_") if ckpt.get("silent_state_dict") is not None else None
    meta = {k: ckpt.get(k) for k in ("arch", "config", "audio_source", "sync_expert", "silent_generator", "perceptual",
                                     "global_step", "crop_geometry")}
    return build(), silent, meta


# --------------------------------------------------------------------------------------------------
# Training


def train_generator(data, out, config: GeneratorConfig, *, silent_mode: bool = False, sync_expert=None,
                    silent=None, allow_random: bool = False, max_steps: int = 1000, epochs: int = 10 ** 6,
                    resume: bool = False, changes=(), device: str = "cpu", layout: str = "auto", cache_dir=None,
                    train_list=None, val_list=None, val_fraction: float = 0.1, val_every: int = 1000,
                    keep_every: int = 10000, workers: int | None = None, amp: bool = True, save_every: int = 0,
                    log: str = "csv", log_every: int = 10, progress: bool = True) -> dict:
    """Train G_L (or G_S with ``silent_mode``) for ``max_steps`` steps; returns the state, the loss
    history (every ``log_every`` steps), the validations and what the run used. See the module
    docstring; validation: ``validation``."""
    kind = "silent" if silent_mode else "generator"
    rank, world = distributed()
    dev = train_device(device, rank, world)
    inputs = required_inputs(config, silent_mode, sync_expert, silent, allow_random)
    out = Path(out)
    last = out / "last.pt"
    identity = config.as_dict()
    changes = tuple(changes)
    saved = (check_resume(last, identity, f"a train-{kind} checkpoint", inputs, changes)
             if resume else None)
    out.mkdir(parents=True, exist_ok=True)

    clipset, train_clips, val_clips = train_val_clips(data, cache_dir, layout, train_list, val_list, val_fraction,
                                                      progress and rank == 0)
    inputs["data"] = data_identity(clipset.layout, train_clips, val_clips)
    if saved is not None:
        check_resumed_input(saved, last, "data", inputs["data"], changes)
    windows = GeneratorWindows(train_clips, config.size, config.frames, config.seed)
    if len(windows) < 2:
        raise LipsyncBenchError(f"{data}: fewer than 2 training windows ({'; '.join(windows.too_short) or 'no clips'})")
    val_windows = GeneratorWindows(val_clips, config.size, config.frames, config.seed + 1) if val_clips else None
    val_indices = validation_windows(val_windows) if val_windows is not None and len(val_windows) else []
    torch.manual_seed(config.seed)
    judge = load_judge(sync_expert, config, train_clips, dev) if (config.frozen_audio or not silent_mode) else None
    audio_source = _audio_source(judge) if judge is not None and config.frozen_audio else None
    generator = make_generator(config, audio_source, judge.model if judge is not None else None).to(dev)
    disc = Discriminator(config.base).to(dev)
    silent_net, silent_source = None, None
    if config.silent_reference:
        if silent is not None:
            silent_net, _, silent_meta = load_generator(silent, dev)
            silent_source = silent_meta["audio_source"]
        else:
            torch.manual_seed(config.seed + 1)
            silent_cfg = GeneratorConfig.silent(base=config.base, sync_size=config.sync_size, perceptual=False)
            silent_net = make_generator(silent_cfg, audio_source, judge.model).to(dev).eval()
            silent_source = audio_source
        for p in silent_net.parameters():
            p.requires_grad_(False)
    perceptual, perceptual_note = None, "off in the config"
    if config.perceptual and config.w_per:
        try:
            perceptual, perceptual_note = PerceptualLoss.load().to(dev), "VGG-19 (torchvision ImageNet weights)"
        except LipsyncBenchError as exc:  # only with allow_random (required_inputs)
            perceptual_note = str(exc)
    trainable = [p for p in generator.parameters() if p.requires_grad]
    opt_g = torch.optim.Adam(trainable, lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.disc_lr, betas=(0.5, 0.999))
    use_amp = amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "history": [], "validation": [], "best_score": math.inf,
             "best_step": None}
    if saved is not None:
        generator.load_state_dict(saved["state_dict"])
        disc.load_state_dict(saved["disc"])
        opt_g.load_state_dict(saved["optimizer"])
        opt_d.load_state_dict(saved["disc_optimizer"])
        for opt, lr in ((opt_g, config.lr), (opt_d, config.disc_lr)):  # a deliberate --change lr applies now
            for group in opt.param_groups:
                group["lr"] = lr
        if scaler is not None and "scaler" in saved:
            scaler.load_state_dict(saved["scaler"])
        state = {k: saved["train"].get(k, v) for k, v in state.items()}
    state["changes"] = saved["changes"] if saved is not None else []
    g_net, d_net = wrap_ddp(generator, dev, world), wrap_ddp(disc, dev, world)
    workers = default_workers(dev) if workers is None else workers
    logger = TrainLog(out, LOG_FIELDS, log, rank == 0, resume)
    stand_ins = [k for k, v in inputs.items() if isinstance(v, dict) and "random_init" in v]
    meta = {"kind": kind, "data": str(data), "layout": clipset.layout, "crop_geometry": clipset.geometry.as_dict(),
            "clips": len(train_clips), "windows": len(windows), "val_clips": len(val_clips),
            "val_windows": len(val_indices), "skipped": clipset.problems + windows.too_short,
            "config": config.as_dict(), "world_size": world, "device": str(dev), "amp": use_amp, "workers": workers,
            "perceptual": perceptual_note, "sync_expert": judge.describe if judge is not None else None,
            "silent_generator": inputs.get("silent_generator"), "inputs": inputs,
            "random_stand_ins": stand_ins + ([] if perceptual is not None or perceptual_note.startswith("off")
                                            else ["perceptual"]),
            "allow_random": allow_random, "changes": state["changes"], "val_every": val_every,
            "keep_every": keep_every, "best_criterion": best_criterion(silent_mode)}
    if rank == 0:
        (out / "run.json").write_text(json.dumps(meta, indent=2))

    def save(path: Path) -> None:
        if rank != 0:
            return
        extra = {"disc": disc.state_dict(), "optimizer": opt_g.state_dict(), "disc_optimizer": opt_d.state_dict(),
                 "global_step": state["step"], "train": {"config": identity, "inputs": inputs, **state},
                 "sync_expert": meta["sync_expert"], "silent_generator": inputs.get("silent_generator"),
                 "perceptual": perceptual_note, "crop_geometry": meta["crop_geometry"]}
        if silent_net is not None:
            extra.update({"silent_state_dict": silent_net.state_dict(), "silent_config": silent_net.config.as_dict(),
                          "silent_audio_source": silent_source})
        if scaler is not None:
            extra["scaler"] = scaler.state_dict()
        save_checkpoint(generator_checkpoint(kind, generator, audio_source, **extra), path)

    def validation() -> None:
        """Score the fixed validation windows, log them, write the sample grid, keep best.pt (process 0)."""
        if rank == 0 and val_indices:
            values, grid = validate_generator(generator, silent_net, judge, val_windows, val_indices, config, dev,
                                              silent_mode, use_amp, lse_clips=val_clips[:LSE_CLIPS])
            row = {"step": state["step"], "epoch": state["epoch"] + 1, "split": "val", **values}
            logger.write(row)
            sample = write_sample_grid(grid, out, state["step"])
            state["validation"].append({**{k: v for k, v in row.items() if k != "split"}, "sample": str(sample)})
            if values["score"] < state["best_score"]:
                state["best_score"], state["best_step"] = values["score"], state["step"]
                save(out / "best.pt")
        if world > 1:
            torch.distributed.barrier()

    def step(batch: dict) -> dict:
        target = batch["target"].to(dev).flatten(0, 1)  # (B * F, 3, S, S)
        reference = batch["reference"].to(dev).flatten(0, 1)
        mels = batch["mels"].to(dev).flatten(0, 1)
        if silent_mode:  # quiet windows become digital silence, G_S's "silent audio" (config.silence_threshold)
            mels = torch.where(mels.mean(dim=(1, 2, 3), keepdim=True) < config.silence_threshold,
                               torch.full_like(mels, SILENT_MEL), mels)
        raw_reference = reference
        with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
            if silent_net is not None:
                with torch.no_grad():  # G_S closes the reference's lips
                    reference = silent_net(reference, mask_lower_half(reference), torch.full_like(mels, SILENT_MEL))
            fake = g_net(reference, mask_lower_half(target), mels)
            parts = {"pixel": torch.nn.functional.l1_loss(fake.float(), target)}
            disc.requires_grad_(False)  # the generator's step: no discriminator gradients, no DDP sync for it
            parts["gan"] = gan_generator_loss(disc(fake).float())
            disc.requires_grad_(True)
            if perceptual is not None:
                parts["perceptual"] = perceptual(fake.float(), target)
        # the reference of L_ss's d and L_at's negative (config.d_from; the same without G_S)
        judged = (reference if config.d_from == "silent" else raw_reference).float()
        total = config.w_pixel * parts["pixel"] + config.w_gan * parts["gan"]
        if perceptual is not None:
            total = total + config.w_per * parts["perceptual"]
        logged = {}
        if not silent_mode:
            sync_mel = batch["sync_mel"].to(dev)
            x = judge.similarity(fake.float(), sync_mel, amp=use_amp)
            with torch.no_grad():
                y = judge.similarity(target, sync_mel, amp=use_amp)
                d = judge.similarity(judged, sync_mel, amp=use_amp)
            logged = {"sync_x": float(x.detach().mean()), "sync_y": float(y.mean()), "sync_d": float(d.mean())}
            if config.sync_loss == "stabilized":
                parts["sync"] = stabilized_sync_loss(x, y, d, config.ss_eps)
                floor = float(stabilized_sync_floor(y, d, config.ss_eps))
                logged.update(sync_floor=floor, sync_excess=float(parts["sync"].detach()) - floor)
            else:
                parts["sync"] = plain_sync_loss(x)
            total = total + config.w_sync * parts["sync"]
            if config.triplet != "none":
                margin = config.at_fixed_margin if config.triplet == "fixed" else None
                parts["triplet"] = adaptive_triplet_loss(fake.float(), target, judged, config.at_alpha, margin)
                total = total + config.w_at * parts["triplet"]
        opt_g.zero_grad(set_to_none=True)
        _backward_step(total, opt_g, scaler)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=use_amp):
            logits = d_net(torch.cat([target, fake.detach()])).float()  # one forward: DDP allows no more
            disc_loss = gan_discriminator_loss(logits[:len(target)], logits[len(target):])
        opt_d.zero_grad(set_to_none=True)
        _backward_step(disc_loss, opt_d, scaler)
        if scaler is not None:
            scaler.update()
        return {"loss": float(total.detach()), **{k: float(v.detach()) for k, v in parts.items()},
                "disc": float(disc_loss.detach()), **logged}

    sums, count, started = {}, 0, time.perf_counter()
    done = state["step"] >= max_steps
    while not done and state["epoch"] < epochs:
        windows.set_epoch(state["epoch"])
        batches = epoch_batches(len(windows), config.batch_size, config.seed, state["epoch"], rank, world)
        loader = torch.utils.data.DataLoader(windows, batch_sampler=batches[state["batch_in_epoch"]:],
                                             num_workers=workers, pin_memory=dev.type == "cuda")
        g_net.train(), d_net.train()
        bar = tqdm(loader, desc=f"{kind} epoch {state['epoch'] + 1}", unit="step",
                   disable=not progress or rank != 0)
        for batch in bar:
            values = step(batch)
            if not all(math.isfinite(v) for v in values.values()):
                raise LipsyncBenchError(f"non-finite loss at step {state['step'] + 1}: {values}")
            state["step"] += 1
            state["batch_in_epoch"] += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            bar.set_postfix(loss=f"{values['loss']:.4f}")
            done = state["step"] >= max_steps
            if state["step"] % log_every == 0 or done:
                seconds = time.perf_counter() - started
                row = {"step": state["step"], "epoch": state["epoch"] + 1, "split": "train",
                       **{k: v / count for k, v in sums.items()},
                       "samples_per_s": count * config.batch_size * config.frames * world / seconds,
                       "seconds": round(seconds, 3)}
                logger.write(row)
                state["history"].append({k: v for k, v in row.items() if k != "split"})
                sums, count, started = {}, 0, time.perf_counter()
            if done:
                break
            if val_every and state["step"] % val_every == 0:
                validation()
            if save_every and state["step"] % save_every == 0:
                save(last)
            if keep_every and state["step"] % keep_every == 0:
                save(last)
                if rank == 0:
                    keep_snapshot(last, state["step"])
        if state["batch_in_epoch"] >= len(batches):
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    if not state["validation"] or state["validation"][-1]["step"] != state["step"]:
        validation()  # the last step: always validated, kept and snapshotted
    save(last)
    snapshot = keep_snapshot(last, state["step"]) if rank == 0 else None
    if world > 1:
        torch.distributed.barrier()
    return GeneratorTraining({**state, **meta, "checkpoint": str(last),
                              "best": str(out / "best.pt") if state["best_step"] is not None else None,
                              "snapshot": str(snapshot) if snapshot else None})


def _backward_step(loss: torch.Tensor, optimizer, scaler) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
    else:
        loss.backward()
        optimizer.step()
