"""Generator configuration: the paper's ablation setups A-H, loss weights and the open choices, each a
field of ``GeneratorConfig`` (stored in every checkpoint; a JSON or TOML ``--config`` file overrides
fields by name).

Setups (docs/generator.md; F and H are not described in the notes and are defined here):

| setup | audio encoder | G_S on the reference | sync loss | L_at |
|---|---|---|---|---|
| A | trained with the generator (Wav2Lip-style) | no | plain (-log x) | no |
| B | the sync expert's, frozen | no | plain | no |
| C | Wav2Vec2 features | - | - | - (needs Wav2Vec2 weights: not supported offline) |
| D | frozen | yes | plain | no |
| E | frozen | yes | L_ss | no |
| F | frozen | yes | L_ss | fixed margin (the adaptation ablated; defined here) |
| G | frozen | yes | L_ss | adaptive |
| H | frozen | yes | L_ss | adaptive: the full model, as supplementary Fig. C names it ("Setup H") |

The notes call G "the full model"; the supplementary calls the full model "Setup H". No difference
between the two is known, so G and H train the same losses here.

Total loss of G_L: w_gan L_GAN + 10 L_pixel + w_per L_per + 2 L_ss (or w_sync L_sync) + 0.5 L_at.
G_S (``train-silent``): w_gan L_GAN + 10 L_pixel + w_per L_per, no sync loss (the notes); quiet audio
windows are replaced by digital silence in its training (``silence_threshold``). Optimiser
(unknown in the paper): Adam, lr 1e-4 (Wav2Lip's), for generator and discriminator.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ...errors import LipsyncBenchError
from ...protocol import read_toml

SETUPS = {
    "A": dict(frozen_audio=False, silent_reference=False, sync_loss="plain", triplet="none"),
    "B": dict(frozen_audio=True, silent_reference=False, sync_loss="plain", triplet="none"),
    "D": dict(frozen_audio=True, silent_reference=True, sync_loss="plain", triplet="none"),
    "E": dict(frozen_audio=True, silent_reference=True, sync_loss="stabilized", triplet="none"),
    "F": dict(frozen_audio=True, silent_reference=True, sync_loss="stabilized", triplet="fixed"),
    "G": dict(frozen_audio=True, silent_reference=True, sync_loss="stabilized", triplet="adaptive"),
    "H": dict(frozen_audio=True, silent_reference=True, sync_loss="stabilized", triplet="adaptive"),
}
UNSUPPORTED = {"C": "setup C uses Wav2Vec2 audio features, which need pretrained Wav2Vec2 weights (not a "
                    "dependency and not reachable offline); setups A, B, D-H are available"}


D_FROM = ("silent", "raw")
#: What ``--tiny`` sets: a model small enough to train on a CPU in seconds, whatever a config file says.
TINY = dict(base=4, sync_size=96, perceptual=False, batch_size=4)


@dataclass(frozen=True)
class GeneratorConfig:
    setup: str = "H"
    size: int = 96  # working resolution (Wav2Lip's)
    base: int = 16  # channels of the first encoder stage (doubling per stage, up to 512)
    frames: int = 5  # window: the sync expert's 5 frames
    # from the setup
    frozen_audio: bool = True
    silent_reference: bool = True
    sync_loss: str = "stabilized"  # plain | stabilized
    triplet: str = "adaptive"  # none | fixed | adaptive
    # loss weights (the paper's total loss)
    w_gan: float = 1.0
    w_pixel: float = 10.0
    w_per: float = 1.0
    w_sync: float = 2.0  # L_ss, or the plain sync loss
    w_at: float = 0.5
    ss_eps: float = 1e-3
    # The reference whose similarity is L_ss's d and whose face is L_at's negative: "silent" (the
    # reference after G_S, the one G_L is given and so could copy; default) or "raw" (before G_S). The
    # paper does not say; in setups without G_S (A, B) the two are one.
    d_from: str = "silent"
    at_alpha: float = 0.5
    at_fixed_margin: float = 0.02
    perceptual: bool = True  # skipped with a message when VGG-19 weights are absent
    sync_size: int = 224  # face size the sync expert sees (its bottom half): AVSyncNet's 224; tiny: 96
    # G_S: mel windows quieter than this (mean of Wav2Lip's normalised mel, in [-4, 4]) are replaced by
    # digital silence (-4 everywhere) in training, so that "silent audio" at inference is an input G_S
    # has learnt: the lips of quiet frames. Real silences sit around -3.2 to -3.8 (GRID).
    silence_threshold: float = -3.0
    # optimisation
    lr: float = 1e-4
    disc_lr: float = 1e-4
    batch_size: int = 8
    seed: int = 0

    @classmethod
    def for_setup(cls, setup: str, tiny: bool = False, **overrides) -> "GeneratorConfig":
        setup = setup.upper()
        if setup in UNSUPPORTED:
            raise LipsyncBenchError(UNSUPPORTED[setup])
        if setup not in SETUPS:
            raise LipsyncBenchError(f"unknown setup {setup!r} (A-H; see lipsync_bench/research/generator/config.py)")
        cfg = cls(setup=setup, **SETUPS[setup])
        if tiny:
            cfg = replace(cfg, **TINY)
        return cfg.override(overrides)

    @classmethod
    def silent(cls, tiny: bool = False, **overrides) -> "GeneratorConfig":
        """G_S: the same network trained with GAN + pixel + perceptual losses only."""
        cfg = cls(setup="silent", frozen_audio=True, silent_reference=False, sync_loss="none", triplet="none",
                  w_sync=0.0,
                  w_at=0.0)
        if tiny:
            cfg = replace(cfg, **TINY)
        return cfg.override(overrides)

    def override(self, values: dict) -> "GeneratorConfig":
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise LipsyncBenchError(f"unknown generator config field(s) {', '.join(unknown)} "
                                    f"(known: {', '.join(sorted(known))})")
        if "setup" in values:
            raise LipsyncBenchError("the setup is chosen by --setup or a config file's 'setup', not overridden")
        if values.get("d_from", "silent") not in D_FROM:
            raise LipsyncBenchError(f"d_from={values['d_from']!r}: expected one of {', '.join(D_FROM)}")
        return replace(self, **values)

    def as_dict(self) -> dict:
        return asdict(self)


def config_from_file(path: str | Path | None, setup: str | None, silent: bool, tiny: bool,
                     **options) -> GeneratorConfig:
    """The configuration of a training run: a config file (``configs/setup-*.toml``; its ``setup`` key
    names the setup, which ``setup`` may repeat but not contradict), then ``--tiny`` (which wins over
    the file's model size and batch), then single ``options`` (None: not given)."""
    values = read_config_file(path) if path else {}
    named = values.pop("setup", None)
    if silent:
        if named not in (None, "silent"):
            raise LipsyncBenchError(f"{path}: a config of setup {named!r}; train-silent takes setup = \"silent\"")
    elif named is not None and setup is not None and str(named).upper() != setup.upper():
        raise LipsyncBenchError(f"--setup {setup} but {path} is setup {named!r}")
    if tiny:
        values = {k: v for k, v in values.items() if k not in TINY}
    values.update({k: v for k, v in options.items() if v is not None})
    if silent:
        return GeneratorConfig.silent(tiny, **values)
    return GeneratorConfig.for_setup(setup or named or "H", tiny, **values)


def read_config_file(path: str | Path) -> dict:
    """Fields from a JSON (.json) or TOML (.toml) file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise LipsyncBenchError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".toml":
            return read_toml(text)
        return json.loads(text)
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise LipsyncBenchError(f"{path}: not a valid {path.suffix.lstrip('.') or 'JSON'} config ({exc})") from None
