"""The generator's speed: training steps a second, and ``generate``'s frames a second over a folder of
clips in one process against one process a clip (the recipe's loop before ``generate`` took folders).

    python benchmarks/bench_generator.py [--device cpu] [--steps 4] [--warmup 2] [--clips 3] [--repeat 1] [--quick]

Rows, for setup H in its ``--tiny`` configuration and at its full (default, the paper's) size:
- training: ``train_generator`` on a folder that ``prepare`` made of the repository's GRID clips, batch
  size 2 (``--batch-size``), ``--steps`` steps timed after ``--warmup`` steps (each step's own time from
  the trainer's log, so start-up, validation and checkpoints are left out); the sync expert is an
  AVSyncNet of the same size trained here for one step (its weights do not change the cost), G_S a
  seeded random stand-in (``allow_random``), and at full size the perceptual loss runs on a seeded
  random VGG-19 written to a temporary weights folder (``--no-perceptual``: without it);
- generate: the two checkpoints just trained, over ``--clips`` GRID clips (75 frames each with their
  audio) — ``lipsync-bench generate --face DIR --audio DIR --out DIR`` in one process against one
  ``generate --face CLIP ...`` process a clip; wall time of the commands, start-up included, as a shell
  would see it (the faster of ``--repeat`` runs of each); frames a second of output video and the ratio.
``--quick``: the tiny configuration only, one clip fewer. Faces by dlib's landmarker (``--landmarker``).
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GRID = ROOT / "tests" / "data" / "grid"  # the repository's clips


def row(name: str, text: str) -> None:
    print(f"{name:34s} {text}", flush=True)


def with_supported(fn, **kwargs) -> dict:
    """``kwargs`` less those ``fn`` does not take (the trainer's options change between versions)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def train_expert(prepared: Path, out: Path, tiny: bool, device: str) -> Path:
    """An AVSyncNet of the tiny or full configuration, trained one step: the generator's frozen audio
    encoder and its sync judge, at the cost they have."""
    from lipsync_bench.research.expert_training import TrainConfig, train_syncnet

    config = TrainConfig(arch="avsyncnet", tiny=tiny, epochs=1, max_steps=1, batch_size=2, stride=16, val_fraction=0.1)
    train_syncnet(prepared, out, config, device=device, progress=False)
    return out / "last.pt"


def training_speed(prepared: Path, out: Path, tiny: bool, expert: Path, batch: int, warmup: int, steps: int,
                   device: str) -> dict:
    """Steps and samples a second of ``train_generator`` (setup H) after ``warmup`` steps."""
    from lipsync_bench.research.generator.config import GeneratorConfig
    from lipsync_bench.research.generator.trainer import train_generator

    config = GeneratorConfig.for_setup("H", tiny=tiny, batch_size=batch)
    kwargs = with_supported(train_generator, sync_expert=expert, allow_random=True, max_steps=warmup + steps,
                            log_every=1, val_every=0, keep_every=0, device=device, progress=False)
    started = time.perf_counter()
    result = train_generator(prepared, out, config, **kwargs)
    wall = time.perf_counter() - started
    rows = [r for r in result["history"] if "seconds" in r and "pixel" in r][warmup:]
    seconds = sum(r["seconds"] for r in rows)
    return {"steps_per_s": len(rows) / seconds, "samples_per_s": len(rows) * batch * config.frames / seconds,
            "seconds_per_step": seconds / len(rows), "wall": wall, "checkpoint": Path(result["checkpoint"]),
            "perceptual": result.get("perceptual"), "windows": result.get("windows")}


def cli(*args: str) -> tuple[float, dict]:
    """Wall seconds and JSON document of one ``lipsync-bench`` command in a fresh process."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lipsync_bench.cli", *args, "--json", "--quiet"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONWARNINGS": "ignore",
                                          "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lipsync-bench {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout)


def generate_speed(faces: Path, ckpt: Path, out: Path, device: str, landmarker: str, repeat: int = 1) -> dict:
    """Frames a second of ``generate`` over the clips of ``faces``: one process for the folder, and one
    process a clip; the faster of ``repeat`` runs of each (a shared machine's noise only slows)."""
    common = ["--ckpt", str(ckpt), "--device", device, "--landmarker", landmarker]
    t_folder, t_each = float("inf"), float("inf")
    for k in range(repeat):
        seconds, doc = cli("generate", "--face", str(faces), "--audio", str(faces), "--out", str(out / f"folder{k}"),
                           *common)
        if doc["failed"]:
            raise SystemExit(f"generate failed on {doc['failed']}")
        t_folder = min(t_folder, seconds)
        seconds, frames_each = 0.0, 0
        for clip in sorted(faces.iterdir()):
            one_s, one = cli("generate", "--face", str(clip), "--audio", str(clip), "--out",
                             str(out / f"each{k}" / f"{clip.stem}.mp4"), *common)
            seconds += one_s
            frames_each += one["frames"]
        assert frames_each == doc["frames"], (frames_each, doc["frames"])
        t_each = min(t_each, seconds)
    return {"frames": doc["frames"], "clips": len(doc["generated"]), "folder_fps": doc["frames"] / t_folder,
            "each_fps": doc["frames"] / t_each, "folder_s": t_folder, "each_s": t_each}


def random_vgg(folder: Path) -> None:
    """A seeded random VGG-19 under the file name the perceptual loss looks for: its cost, not its values."""
    import torch
    from torchvision.models import vgg19

    from lipsync_bench.research.generator.losses import VGG_FILE

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(vgg19().state_dict(), folder / VGG_FILE)
    os.environ["LIPSYNC_BENCH_WEIGHTS"] = str(folder)


@contextmanager
def restored(env: dict):
    """The environment variables of ``env`` put back as they were (``measure`` points them at its
    temporary folders, which a caller such as ``run_all.py`` must not inherit)."""
    try:
        yield
    finally:
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def measure(device: str = "cpu", sizes=("tiny", "full"), n_clips: int = 3, batch: int = 2, warmup: int = 2,
            steps: int = 4, landmarker: str = "dlib", perceptual: bool = True, repeat: int = 1,
            verbose: bool = True) -> dict:
    """Training and generate speeds per size (see the module docstring), with the GRID clips prepared once."""
    from lipsync_bench.research.generator.trainer import load_generator
    from lipsync_bench.research.prepare import prepare

    clips = sorted(GRID.glob("*.mpg"))
    out: dict = {"sizes": {}}
    saved_env = {k: os.environ.get(k) for k in ("LIPSYNC_BENCH_CACHE", "LIPSYNC_BENCH_WEIGHTS")}
    with tempfile.TemporaryDirectory() as tmp, restored(saved_env):
        tmp = Path(tmp)
        os.environ["LIPSYNC_BENCH_CACHE"] = str(tmp / "cache")
        if perceptual and "full" in sizes:
            random_vgg(tmp / "weights")
        started = time.perf_counter()
        done = prepare(GRID, tmp / "prepared", landmarker=landmarker, progress=False)
        out["prepared"] = {"clips": len(done["prepared"]), "seconds": time.perf_counter() - started}
        faces = tmp / "faces"
        faces.mkdir()
        for clip in clips[:n_clips]:
            shutil.copy(clip, faces / clip.name)
        for size in sizes:
            tiny = size == "tiny"
            expert = train_expert(tmp / "prepared", tmp / f"expert-{size}", tiny, device)
            train = training_speed(tmp / "prepared", tmp / f"gen-{size}", tiny, expert, batch, warmup, steps, device)
            generator, _, _ = load_generator(train["checkpoint"])
            train["parameters"] = sum(p.numel() for p in generator.parameters())
            gen = generate_speed(faces, train["checkpoint"], tmp / f"out-{size}", device, landmarker, repeat)
            out["sizes"][size] = {"train": {k: v for k, v in train.items() if k != "checkpoint"}, "generate": gen}
            if verbose:
                row(f"setup H {size}: train", f"{train['steps_per_s']:8.3f} steps/s  ({train['samples_per_s']:.1f} "
                    f"samples/s, {train['parameters'] / 1e6:.1f} M parameters)")
                row(f"setup H {size}: generate", f"{gen['folder_fps']:8.2f} vs {gen['each_fps']:6.2f} frames/s   "
                    f"ratio {gen['folder_fps'] / gen['each_fps']:5.2f}x")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--steps", type=int, default=4, help="training steps timed")
    parser.add_argument("--warmup", type=int, default=2, help="training steps before the timed ones")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--clips", type=int, default=3, help="GRID clips generated")
    parser.add_argument("--landmarker", default="dlib", choices=["auto", "dlib", "face-alignment"])
    parser.add_argument("--no-perceptual", action="store_true", help="full size without the VGG-19 perceptual loss")
    parser.add_argument("--repeat", type=int, default=1, help="generate runs of each form; the fastest is kept")
    parser.add_argument("--quick", action="store_true", help="the tiny configuration only, one clip fewer")
    args = parser.parse_args()
    import torch
    from tabulate import tabulate

    sizes = ("tiny",) if args.quick else ("tiny", "full")
    n_clips = max(1, args.clips - 1) if args.quick else args.clips
    print(f"bench_generator: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, device {args.device}, setup H, batch {args.batch_size}, {args.warmup} warm-up + "
          f"{args.steps} timed steps, {n_clips} GRID clips generated", flush=True)
    result = measure(args.device, sizes, n_clips, args.batch_size, args.warmup, args.steps, args.landmarker,
                     not args.no_perceptual, args.repeat)
    sizes_done = result["sizes"]
    print(f"\nprepared {result['prepared']['clips']} GRID clips in {result['prepared']['seconds']:.1f} s")
    rows = []
    for size, r in sizes_done.items():
        t, g = r["train"], r["generate"]
        rows.append([size, f"{t['parameters'] / 1e6:.2f}", f"{t['steps_per_s']:.3f}", f"{t['samples_per_s']:.1f}",
                     f"{g['frames']}", f"{g['folder_fps']:.2f} ({g['folder_s']:.1f} s)",
                     f"{g['each_fps']:.2f} ({g['each_s']:.1f} s)", f"{g['folder_fps'] / g['each_fps']:.2f}x"])
    print(tabulate(rows, headers=["setup H", "G_L M params", "train steps/s", "samples/s", "frames",
                                  "generate: one process, frames/s", "one process a clip, frames/s", "ratio"],
                   tablefmt="github", disable_numparse=True))
    if "tiny" in sizes_done and "full" in sizes_done:
        tiny, full = sizes_done["tiny"], sizes_done["full"]
        print(f"tiny / full: training {tiny['train']['steps_per_s'] / full['train']['steps_per_s']:.1f}x the steps/s, "
              f"generate {tiny['generate']['folder_fps'] / full['generate']['folder_fps']:.1f}x the frames/s "
              "(one process)")
    for size, r in sizes_done.items():
        stand_in = " on a seeded random VGG-19 (the cost, not the values)" if r["train"]["perceptual"].startswith(
            "VGG-19") else ""
        print(f"{size}: perceptual loss: {r['train']['perceptual']}{stand_in}")


if __name__ == "__main__":
    main()
