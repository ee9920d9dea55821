"""Does the sync loss improve sync? A toy answer on the repository's GRID clips, on a CPU.

1. ``prepare`` the clips; hold out two (``--held-out``) as the test utterances.
2. Train two tiny AVSyncNets on the others: the *judge* (the expert the generators train against) and
   an *evaluator* (another seed; it never trains a generator, so its scores are not the ones the
   generators were optimised to please).
3. Train tiny generators with setup A's architecture (an audio encoder trained with the generator, no
   G_S) under three sync losses, same seeds and steps: none (``w_sync = 0``), the plain -log x (setup
   A) and the stabilized L_ss; each for ``--seeds`` seeds.
4. On the held-out clips, every frame generated (its own frame as the identity reference, as
   ``generate`` does): LSE-C / LSE-D by the evaluator and by the judge (the LSE procedure,
   offsets -15..15), the experts' mean similarity of aligned windows, mouth L1 — and the same for the
   GT crops. Mean over seeds with a 95 % t interval.

    python benchmarks/toy_sync_effect.py --out /tmp/toy            # about 25 minutes on 2 cores
    python benchmarks/toy_sync_effect.py --out /tmp/toy --steps 20 --seeds 1 --expert-steps 20  # a smoke

Prints a markdown table and writes ``toy.json`` in ``--out``. The models are tiny and the data eight
three-second clips of few speakers: what this shows is whether the losses move the scores in the
direction they claim on a toy, not the paper's effect sizes.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lipsync_bench.research.datasets import open_clips  # noqa: E402
from lipsync_bench.research.expert_training import TrainConfig, train_syncnet  # noqa: E402
from lipsync_bench.research.generator.config import GeneratorConfig  # noqa: E402
from lipsync_bench.research.generator.models import mask_lower_half  # noqa: E402
from lipsync_bench.research.generator.trainer import load_generator, load_judge, train_generator  # noqa: E402
from lipsync_bench.research.generator.validation import clip_lse, mouth_box  # noqa: E402
from lipsync_bench.research.generator.windows import GeneratorWindows  # noqa: E402

LOSSES = {"no sync loss": dict(w_sync=0.0), "plain (setup A)": dict(sync_loss="plain"),
          "stabilized L_ss": dict(sync_loss="stabilized")}


def interval(values: list[float]) -> str:
    mean = float(np.mean(values))
    if len(values) < 2:
        return f"{mean:.3f}"
    half = stats.t.ppf(0.975, len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return f"{mean:.3f} ± {half:.3f}"


@torch.no_grad()
def score_clips(generator, judges: dict, clips, config, device) -> dict:
    """LSE-C/D and aligned similarity by each expert, mouth L1 — over the held-out clips (generator None:
    the GT crops themselves)."""
    out = {}
    for name, judge in judges.items():
        lse = [clip_lse(generator, None, judge, clip, config, device, False) if generator is not None
               else gt_lse(judge, clip, config) for clip in clips]
        out[f"{name} LSE-C"] = float(np.mean([s.lse_c for s in lse]))
        out[f"{name} LSE-D"] = float(np.mean([s.lse_d for s in lse]))
        out[f"{name} offset 0"] = float(np.mean([s.offset == 0 for s in lse]))
    rows, cols = mouth_box(config.size)
    windows = GeneratorWindows(clips, config.size, config.frames, 0)
    windows.set_epoch(0)
    sims = {name: [] for name in judges}
    l1 = []
    for start in range(0, len(windows), 16):
        items = [windows[i] for i in range(start, min(start + 16, len(windows)))]
        target = torch.stack([it["target"] for it in items]).to(device).flatten(0, 1)
        mels = torch.stack([it["mels"] for it in items]).to(device).flatten(0, 1)
        sync_mel = torch.stack([it["sync_mel"] for it in items]).to(device)
        fake = target if generator is None else generator(target, mask_lower_half(target), mels).clamp(0, 1)
        l1 += (fake - target)[..., rows, cols].abs().flatten(1).mean(1).view(len(items), -1).mean(1).tolist()
        for name, judge in judges.items():
            sims[name] += judge.similarity(fake, sync_mel).tolist()
    out.update({f"{name} similarity": float(np.mean(v)) for name, v in sims.items()})
    out["mouth L1"] = float(np.mean(l1))
    return out


def gt_lse(judge, clip, config):
    from lipsync_bench.syncnets.scoring import ExpertSyncScorer

    scorer = ExpertSyncScorer(judge, clip.audio, vshift=15)
    scorer.add_frames(clip.faces(0, clip.window_starts() + 4, config.size))
    return scorer.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "grid")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--held-out", default="bbaf2n,sbia1a")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--expert-steps", type=int, default=400)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prepared = out / "prepared"
    if not (prepared / "prepared.json").is_file():
        subprocess.run([sys.executable, "-m", "lipsync_bench", "prepare", "--data", str(args.data), "--out",
                        str(prepared), "--quiet"], check=True, cwd=ROOT)
    names = sorted(p.stem for p in prepared.glob("*.npz"))
    held = args.held_out.split(",")
    (out / "train.txt").write_text("\n".join(n for n in names if n not in held) + "\n")
    (out / "test.txt").write_text("\n".join(held) + "\n")

    experts = {}
    for name, seed in (("judge", 0), ("evaluator", 1)):
        folder = out / f"expert-{name}"
        if not (folder / "last.pt").is_file():
            config = TrainConfig(arch="avsyncnet", tiny=True, epochs=10 ** 6, max_steps=args.expert_steps,
                                 batch_size=16, lr=3e-4, seed=seed, val_every=0)
            train_syncnet(prepared, folder, config, train_list=out / "train.txt", val_list=out / "test.txt",
                          progress=False)
        experts[name] = folder / "last.pt"
        val = json.loads((folder / "run.json").read_text())
        print(f"{name} expert: {val['train_windows']} training windows", flush=True)
    device = torch.device(args.device)
    test = open_clips(prepared, filelist=out / "test.txt").clips
    base = GeneratorConfig.for_setup("A", tiny=True, sync_size=224)  # the experts see the size they trained on
    judges = {name: load_judge(path, base, test, device) for name, path in experts.items()}
    results = {"GT crops": [score_clips(None, judges, test, base, device)]}
    for label, overrides in LOSSES.items():
        results[label] = []
        for seed in range(args.seeds):
            config = GeneratorConfig.for_setup("A", tiny=True, sync_size=224, seed=seed, lr=1e-3, **overrides)
            folder = out / f"gen-{label.split()[0]}-{seed}"
            if not (folder / "last.pt").is_file():
                train_generator(prepared, folder, config, sync_expert=experts["judge"], max_steps=args.steps,
                                train_list=out / "train.txt", val_fraction=0.0, val_every=0, keep_every=0,
                                log_every=max(1, args.steps // 10), progress=False)
            generator, _, _ = load_generator(folder / "last.pt", device)
            results[label].append(score_clips(generator, judges, test, config, device))
            print(f"{label} seed {seed}: {results[label][-1]}", flush=True)
    keys = list(results["GT crops"][0])
    lines = [f"| {'run':<18} | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for label, runs in results.items():
        lines.append(f"| {label:<18} | " + " | ".join(interval([r[k] for r in runs]) for k in keys) + " |")
    table = "\n".join(lines)
    print(table)
    doc = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results, "table": table,
           "seconds": round(time.perf_counter() - started, 1), "torch": torch.__version__}
    (out / "toy.json").write_text(json.dumps(doc, indent=2))
    print(f"{doc['seconds']:.0f} s; written {out / 'toy.json'}")
    if shutil.which("nproc"):
        print(f"cores: {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
