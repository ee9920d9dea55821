"""Research, training: the sync experts (train-syncnet), the silent-lip generator (train-silent) and the
lip generator (train-generator). Several GPUs: ``torchrun --nproc-per-node N -m lipsync_bench.cli ...``."""
from __future__ import annotations

from pathlib import Path

import click

from .common import emit, existing_file, existing_folder, friendly, quiet_option
from .research_commands import DATA_HELP, data_options

_LOGS = click.option("--log", type=click.Choice(["csv", "tensorboard"]), default="csv", show_default=True)
_NO_AMP = click.option("--no-amp", is_flag=True, help="No mixed precision on CUDA.")
_WORKERS = click.option("--workers", default=None, type=click.IntRange(min=0),
                        help="DataLoader processes [default: 0 on a CPU; on CUDA one per core but one, up to 8].")
_CHANGE = click.option("--change", "changes", default="", metavar="NAMES",
                       help="With --resume: settings or inputs allowed to differ from the checkpoint's, "
                            "comma-separated (e.g. lr; sync_expert, silent_generator, data), recorded in run.json.")


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


@click.command("train-syncnet")
@click.option("--arch", type=click.Choice(["avsyncnet", "wav2lip"]), default="avsyncnet", show_default=True)
@click.option("--data", required=True, type=existing_folder(), help=DATA_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for last.pt, best.pt, log.csv and run.json.")
@click.option("--train-list", default=None, type=existing_file(),
              help="File list of the training videos (Wav2Lip's filelists/train.txt) [default: every clip not "
                   "held out for validation]; it may not share a clip with --val-list.")
@click.option("--val-list", default=None, type=existing_file(),
              help="File list of the validation videos (Wav2Lip's filelists/val.txt); its clips are never trained on.")
@click.option("--val-fraction", default=0.1, show_default=True,
              help="Without --val-list: the fraction of videos held out for validation, split by video (the first "
                   "path component of a clip's name, LRS2's <video>/<utterance>: a video's utterances stay on one "
                   "side), by a hash of its name.")
@click.option("--epochs", default=100, show_default=True)
@click.option("--max-steps", default=None, type=int,
              help="Stop after this many optimiser steps (a checkpoint is kept).")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=1e-4, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "adamw"]), default=None,
              help="[default: adam for wav2lip, as Wav2Lip; adamw for avsyncnet]")
@click.option("--weight-decay", default=None, type=float, help="[default: 0 for adam, 0.01 for adamw]")
@click.option("--stride", default=1, show_default=True, help="Use every N-th window start of each clip.")
@click.option("--seed", default=0, show_default=True)
@_WORKERS
@_NO_AMP
@click.option("--save-every", default=0, show_default=True, help="Also write last.pt every N steps (0: per epoch).")
@click.option("--val-every", default=1000, show_default=True,
              help="Validate every N steps (also at each epoch's end and the last step; 0: those only); best.pt "
                   "keeps the lowest validation loss.")
@_LOGS
@click.option("--tiny", is_flag=True, help="AVSyncNet's small configuration (smoke runs on a CPU).")
@click.option("--resume", is_flag=True,
              help="Continue from <out>/last.pt (same arch, batch size, lr, seed... and clips; see --change).")
@_CHANGE
@quiet_option
@data_options
@friendly
def train_syncnet_cmd(arch, data, out, train_list, val_list, val_fraction, epochs, max_steps, batch_size, lr,
                      optimizer, weight_decay, stride, seed, workers, no_amp, save_every, val_every, log, tiny, resume,
                      changes, quiet, layout, cache_dir, device):
    """Train a sync expert (AVSyncNet or Wav2Lip's SyncNet) on aligned and misaligned window pairs.

    Several GPUs: torchrun --nproc-per-node N -m lipsync_bench.cli train-syncnet ... --device cuda
    """
    from ..research.expert_training import config_from_options, train_syncnet

    config = config_from_options(arch=arch, tiny=tiny, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                                 lr=lr, optimizer=optimizer, weight_decay=weight_decay, seed=seed, stride=stride,
                                 val_fraction=val_fraction, workers=workers, amp=not no_amp, save_every=save_every,
                                 val_every=val_every)
    emit(train_syncnet(data, out, config, resume=resume, device=device, layout=layout, cache_dir=cache_dir,
                       train_list=train_list, val_list=val_list, changes=_names(changes), log=log,
                       progress=not quiet))


def _generator_options(fn):
    """Options shared by train-generator and train-silent."""
    options = [
        click.option("--data", required=True, type=existing_folder(), help=DATA_HELP),
        click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Folder for last.pt, best.pt, snapshots/, samples/, log.csv and run.json."),
        click.option("--config", "config_file", default=None, type=existing_file(),
                     help="JSON or TOML file of GeneratorConfig fields (configs/setup-A.toml ... setup-H.toml, "
                          "configs/silent.toml); --tiny, --batch-size and --lr win over it."),
        click.option("--max-steps", default=1000, show_default=True,
                     help="Optimiser steps in all; the last one is validated, kept in best.pt if best, snapshotted."),
        click.option("--tiny", is_flag=True, help="A small model that trains on a CPU in seconds (smoke runs)."),
        click.option("--sync-expert", default=None, type=existing_file(),
                     help="train-syncnet checkpoint (AVSyncNet or Wav2Lip's SyncNet): the sync losses and the frozen "
                          "audio encoder. Required (see --allow-random)."),
        click.option("--allow-random", is_flag=True,
                     help="Smoke runs only: seeded random stand-ins for a missing sync expert or G_S, and no "
                          "perceptual loss without VGG-19's weights; recorded in run.json and the checkpoint. "
                          "Without it a missing input stops the run before any work."),
        click.option("--batch-size", default=None, type=int, help="Windows per step [default: the config's]."),
        click.option("--lr", default=None, type=float, help="Generator learning rate [default: 1e-4]."),
        click.option("--train-list", default=None, type=existing_file(),
                     help="File list of the training videos (Wav2Lip's filelists/train.txt)."),
        click.option("--val-list", default=None, type=existing_file(),
                     help="File list of the validation videos (never trained on) [default: --val-fraction of the "
                          "videos, split by video as train-syncnet does]."),
        click.option("--val-fraction", default=0.1, show_default=True,
                     help="Without --val-list: the fraction of videos held out for validation."),
        click.option("--val-every", default=1000, show_default=True,
                     help="Validate every N steps (and at the last step): mouth L1, the expert's sync, LSE-C/D by "
                          "the expert on a few clips, a sample grid; best.pt keeps the best (docs/generator.md)."),
        click.option("--keep-every", default=10000, show_default=True,
                     help="Keep a snapshot (snapshots/step_N.pt) every N steps and at the last step "
                          "(0: the last only)."),
        _WORKERS,
        _NO_AMP,
        click.option("--save-every", default=0, show_default=True, help="Also write last.pt every N steps."),
        _LOGS,
        click.option("--log-every", default=10, show_default=True, help="Steps between log rows."),
        click.option("--resume", is_flag=True,
                     help="Continue from <out>/last.pt: the same config, expert and G_S (by checksum) and clips; "
                          "see --change."),
        _CHANGE,
        quiet_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return data_options(fn)


def _train_generator(silent_mode, setup, data, out, config_file, max_steps, tiny, sync_expert, allow_random, silent,
                     batch_size, lr, train_list, val_list, val_fraction, val_every, keep_every, workers, no_amp,
                     save_every, log, log_every, resume, changes, quiet, layout, cache_dir, device):
    from ..research.generator.config import config_from_file
    from ..research.generator.run_inputs import required_inputs

    config = config_from_file(config_file, setup, silent_mode, tiny, batch_size=batch_size, lr=lr)
    required_inputs(config, silent_mode, sync_expert, silent, allow_random)  # before torch is imported: in a second
    from ..research.generator.trainer import train_generator

    emit(train_generator(data, out, config, silent_mode=silent_mode, sync_expert=sync_expert, silent=silent,
                         allow_random=allow_random, max_steps=max_steps, resume=resume, changes=_names(changes),
                         device=device, layout=layout, cache_dir=cache_dir, train_list=train_list, val_list=val_list,
                         val_fraction=val_fraction, val_every=val_every, keep_every=keep_every, workers=workers,
                         amp=not no_amp, save_every=save_every, log=log, log_every=log_every, progress=not quiet))


@click.command("train-generator")
@click.option("--setup", default=None,
              help="Ablation setup A-H (C needs Wav2Vec2 weights: unsupported); H is the full model "
                   "[default: the --config file's setup, else H].")
@click.option("--silent", default=None, type=existing_file(),
              help="train-silent checkpoint (G_S): required by setups D-H (see --allow-random).")
@_generator_options
@friendly
def train_generator_cmd(setup, silent, **options):
    """Train the lip generator G_L (the paper's model, or an ablation setup) on talking-face clips.

    Several GPUs: torchrun --nproc-per-node N -m lipsync_bench.cli train-generator ... --device cuda
    """
    _train_generator(False, setup, silent=silent, **options)


@click.command("train-silent")
@_generator_options
@friendly
def train_silent_cmd(**options):
    """Train the silent-lip generator G_S (reconstruction with GAN + pixel + perceptual losses, no sync
    loss); fed silent audio, it closes the lips of the identity reference for G_L."""
    _train_generator(True, None, silent=None, **options)
