"""What a generator training run needs before it starts (the sync expert, G_S, VGG-19), checked without
importing torch unless a G_S checkpoint must be read, so that a run missing one stops in a second."""
from __future__ import annotations

from ...errors import LipsyncBenchError
from ...weights import search_dirs, sha256
from .config import GeneratorConfig

VGG_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's ImageNet VGG-19, in the torch hub cache
VGG_URL = f"https://download.pytorch.org/models/{VGG_FILE}"


def perceptual_weights():
    """The path of VGG-19's weights in the weights folders, or None."""
    return next((folder / VGG_FILE for folder in search_dirs() if (folder / VGG_FILE).is_file()), None)


def required_inputs(config: GeneratorConfig, silent_mode: bool, sync_expert, silent, allow_random: bool) -> dict:
    """What the run needs, checked before any work: the sync expert (every G_L setup's sync loss, and
    the frozen audio encoder of G_S), G_S (setups D-H), VGG-19 (the perceptual loss). A missing one
    stops the run with one line saying how to get it, unless ``allow_random`` (smoke runs: seeded
    random stand-ins, the perceptual loss skipped). Returns the inputs' identities (sha256, or the
    stand-in's seed) for the checkpoint, the resume check and ``run.json``."""
    what = "train-silent" if silent_mode else f"train-generator setup {config.setup}"
    missing, inputs = [], {}
    if sync_expert is not None:
        inputs["sync_expert"] = {"file": str(sync_expert), "sha256": sha256(sync_expert)}
    elif not silent_mode or config.frozen_audio:
        missing.append("a trained sync expert (--sync-expert: a train-syncnet checkpoint, docs/recipe.md step 2)")
        inputs["sync_expert"] = {"random_init": config.seed}
    if silent is not None and config.silent_reference:
        from ...checkpoints import read_checkpoint

        meta = read_checkpoint(silent, "generator weights")
        if not isinstance(meta, dict) or meta.get("arch") != "silent":
            arch = meta.get("arch") if isinstance(meta, dict) else None
            raise LipsyncBenchError(f"{silent}: a {arch or 'non-generator'} checkpoint, not a train-silent one (G_S)")
        if "random_init" in (meta.get("sync_expert") or {}):
            missing.append(f"a G_S trained with a trained sync expert ({silent} was trained against a seeded random "
                           "one: a smoke run)")
        inputs["silent_generator"] = {"file": str(silent), "sha256": sha256(silent)}
    elif config.silent_reference:
        missing.append(f"the silent-lip generator G_S (--silent: a train-silent checkpoint, docs/recipe.md step 4; "
                       f"setup {config.setup} feeds the reference through it)")
        inputs["silent_generator"] = {"random_init": config.seed + 1}
    if config.perceptual and config.w_per and perceptual_weights() is None:
        missing.append(f"VGG-19's ImageNet weights for the perceptual loss ({VGG_FILE} in "
                       f"{search_dirs()[0]}: {VGG_URL})")
    if missing and not allow_random:
        raise LipsyncBenchError(f"{what} needs " + "; ".join(missing)
                                + " (--allow-random: seeded random stand-ins for a smoke run, recorded)")
    return inputs
