"""Where a full ``eval``'s time goes: the full run against the sum of its stages, each run alone.

    python benchmarks/profile_eval.py [--clips N] [--device cpu|cuda] [--skip-workers]

On the repository's GRID clips (ground truth) and blurred copies (generated), with seeded random
weights in the published layouts for every metric that needs weights (none are reachable here). Each
stage runs alone in a fresh process on the same inputs:

- decode: every generated and GT video decoded at 25 fps, with its audio — the floor of any eval;
- faces: the face stage (detection, landmarks, tracking) on every video;
- each metric: an eval with that metric alone (metrics computed together, such as LSE-C, LSE-D and
  the offset, as one group), less the metric modules' imports, the decode and, for a metric that needs face
  analyses, the face stage measured above (what the metric adds);
- the full eval: every metric that runs, in one process, one decode and one face analysis per video.

It prints each stage, their sum, the full run and the ratio full / sum (no hidden overhead: near 1;
the goal is within 1.3x), the full run's peak memory, and ``--workers 2`` against 1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GRID = ROOT / "tests" / "data" / "grid"

# Children report their wall time and their own peak memory.
EVAL = """
import json, resource, sys, time
from lipsync_bench import run_eval
gen, gt, out, metrics, device, workers = sys.argv[1:7]
start = time.perf_counter()
run_eval(gen, gt, metrics.split(","), out=out, device=device, workers=int(workers), progress=False)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
# What an eval child's timer sees before any video: the metric modules' imports (discovery).
STARTUP = """
import json, time
from lipsync_bench import run_eval
import lipsync_bench.metrics.registry as r
start = time.perf_counter()
r.discover()
print(json.dumps({"seconds": time.perf_counter() - start}))
"""
STAGE = """
import json, resource, sys, time
from pathlib import Path
from lipsync_bench import media
from lipsync_bench.faces import FaceAnalyzer
stage, folders = sys.argv[1], sys.argv[2:]
videos = [p for f in folders for p in sorted(Path(f).iterdir())]
start = time.perf_counter()
for v in videos:
    frames = media.read_frames(v)
    if stage == "decode":
        media.read_audio(v)
    else:
        analyzer = FaceAnalyzer("auto")
        analyzer.update(frames)
        analyzer.result()
seconds = time.perf_counter() - start
if stage == "faces":  # the decode is part of the decode stage, not of this one
    t = time.perf_counter()
    for v in videos:
        media.read_frames(v)
    seconds -= time.perf_counter() - t
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, *args) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_weights(folder: Path, calibration: np.ndarray) -> None:
    """Seeded random weights, in the published layouts, for every metric that needs weights."""
    import torch
    import torchvision

    from lipsync_bench import weights
    from lipsync_bench.metrics.csim_arcface import IResNet
    from lipsync_bench.metrics.fvd import I3D
    from lipsync_bench.syncnets.syncnet import SyncNet
    from tests.helpers import make_fid_weights

    folder.mkdir(parents=True, exist_ok=True)
    make_fid_weights(folder / weights.KNOWN["inception-fid"].filename, calibration)
    for name, build in (("syncnet", SyncNet), ("alexnet", torchvision.models.alexnet),
                        ("vgg16", torchvision.models.vgg16), ("i3d-fvd", I3D), ("arcface-r100", IResNet)):
        torch.manual_seed(0)
        torch.save(build().state_dict(), folder / weights.KNOWN[name].filename)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3, help="GRID clips to evaluate [3]")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--skip-workers", action="store_true", help="leave out the --workers 2 run")
    args = parser.parse_args()

    from lipsync_bench import media
    from lipsync_bench.metrics.registry import get_metric
    from tests.helpers import blur

    clips = sorted(GRID.glob("*.mpg"))[: args.clips]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "gt").mkdir()
        frames = {}
        for clip in clips:
            frames[clip.stem] = media.read_frames(clip)
            shutil.copy(clip, tmp / "gt" / clip.name)
            media.write_video(tmp / "gen" / f"{clip.stem}.avi", blur(frames[clip.stem], 1.0), 25,
                              media.read_audio(clip), codec="ffv1")
        os.environ["LIPSYNC_BENCH_WEIGHTS"] = str(tmp / "weights")
        os.environ["TORCH_HOME"] = str(tmp / "torch")
        make_weights(tmp / "weights", np.concatenate([f[::10] for f in frames.values()]))
        from lipsync_bench.evaluation import available_metrics

        metrics = [m["name"] for m in available_metrics() if m["available"]]
        video_seconds = sum(len(f) for f in frames.values()) / 25
        print(f"{len(clips)} GRID clips ({video_seconds:.1f} s of video a side), device {args.device}, "
              f"{os.cpu_count()} CPUs; metrics: {', '.join(metrics)}", flush=True)

        startup = min(child(STARTUP)["seconds"] for _ in range(3))
        decode = child(STAGE, "decode", tmp / "gen", tmp / "gt")["seconds"]
        faces = child(STAGE, "faces", tmp / "gen", tmp / "gt")["seconds"]
        stages = {"start-up": startup, "decode": decode, "faces": faces}
        groups: dict[str, list[str]] = {}
        for name in metrics:
            groups.setdefault(get_metric(name).group or name, []).append(name)
        for members in groups.values():
            alone = child(EVAL, tmp / "gen", tmp / "gt", tmp / f"res_{members[0]}", ",".join(members),
                          args.device, 1)["seconds"]
            uses_faces = any(get_metric(m).needs & {"landmarks", "face_track", "face_frames"} for m in members)
            stages["+".join(members)] = alone - startup - decode - (faces if uses_faces else 0)
        full = child(EVAL, tmp / "gen", tmp / "gt", tmp / "res_all", ",".join(metrics), args.device, 1)
        total = sum(stages.values())
        for name, seconds in stages.items():
            print(f"  {name:24s} {seconds:8.1f} s alone")
        print(f"sum of stages alone {total:8.1f} s")
        print(f"full eval           {full['seconds']:8.1f} s   ratio full / sum {full['seconds'] / total:.2f}x   "
              f"({video_seconds / full['seconds']:.3f} video-s per wall-s, peak {full['peak_mb']:.0f} MB)")
        if not args.skip_workers:
            two = child(EVAL, tmp / "gen", tmp / "gt", tmp / "res_w2", ",".join(metrics), args.device, 2)
            print(f"--workers 2         {two['seconds']:8.1f} s   speed-up {full['seconds'] / two['seconds']:.2f}x "
                  f"against 1 (peak {two['peak_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
