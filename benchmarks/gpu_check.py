"""Every metric on an accelerator against its CPU value, with its speed there: the check behind
``benchmarks/gpu.sh``.

    python benchmarks/gpu_check.py [--device cuda|cpu] [--clips N] [--size 256]

Inputs: the repository's GRID clips resized to ``--size`` square (ground truth) and blurred copies
(generated), lossless, with their audio; seeded random weights in the published layouts for every
metric that needs weights (as ``profile_eval.py``). For each metric group that runs here:

- its per-video values on ``--device`` against the same eval on the CPU, within the tolerance its
  reference test uses (a mismatch makes the script exit 1);
- frames a second on the device: the pairs' frames over the eval's wall time (with decoding), and
  over that time less decoding alone ("compute");

then a full eval of every metric on the device: video-seconds per wall-second, and its time against
decoding alone (goal on a data-centre GPU: within 2x). With ``--device cpu`` (the dry run) both
sides are the CPU: it checks the script, its inputs and the tolerances, not an accelerator.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
GRID = ROOT / "tests" / "data" / "grid"

# Absolute per-video tolerances between devices: those of the metrics' reference tests (float32 on
# either side; FID and FVD are dataset values).
TOLERANCE = {"ssim": 1e-5, "psnr": 1e-3, "ifc": 1e-4, "lmd": 1e-6, "lse_c": 1e-3, "lse_d": 1e-3, "av_offset": 0,
             "fid": 1e-3, "fvd": 1e-3, "lpips": 1e-5, "lpips_vgg": 1e-5, "csim_arcface": 1e-4, "csim_dlib": 1e-6,
             "cpbd": 1e-9, "niqe": 1e-6}


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (torch {torch.__version__})"


def make_inputs(folder: Path, clips: list[Path], size: int) -> tuple[int, float]:
    """GT (resized) and generated (resized, blurred) lossless videos with audio; (frames, seconds) a side."""
    import cv2

    from lipsync_bench import media
    from tests.helpers import blur

    frames_total = 0
    for clip in clips:
        frames = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in media.read_frames(clip)])
        audio = media.read_audio(clip)
        media.write_video(folder / "gt" / f"{clip.stem}.avi", frames, 25, audio, codec="ffv1")
        media.write_video(folder / "gen" / f"{clip.stem}.avi", blur(frames, 1.0), 25, audio, codec="ffv1")
        frames_total += len(frames)
    return frames_total, frames_total / 25


def evaluate(folder: Path, metrics: list[str], device: str, tag: str):
    """(per-video values {(video, metric): value}, dataset values {metric: value}, wall seconds)."""
    from lipsync_bench import run_eval

    start = time.perf_counter()
    run = run_eval(folder / "gen", folder / "gt", metrics, out=folder / f"res_{tag}", device=device, progress=False,
                   force=True)
    seconds = time.perf_counter() - start
    videos = {(r.video, r.metric): r.value for r in run.videos.itertuples()
              if r.metric in metrics and r.value is not None and np.isfinite(r.value)}
    errors = [f"{r.video} ({r.metric}): {r.error}" for r in run.videos.itertuples()
              if r.metric in metrics and isinstance(r.error, str)]
    if errors:
        print(f"  failed videos, {tag}: {errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    dataset = {k: d["value"] for k, d in run.dataset_values.items() if k in metrics and d.get("value") is not None}
    return videos, dataset, seconds


def decode_seconds(folder: Path) -> float:
    from lipsync_bench import media

    start = time.perf_counter()
    for side in ("gen", "gt"):
        for path in sorted((folder / side).iterdir()):
            for _ in media.iter_frames(path, 25):
                pass
            media.read_audio(path)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--clips", type=int, default=8, help="GRID clips [8: all of them]")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels [256]")
    args = parser.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: no CUDA device here; use --device cpu for the dry run")
        return 2
    from profile_eval import make_weights

    from lipsync_bench.evaluation import available_metrics
    from lipsync_bench.metrics.registry import get_metric

    clips = sorted(GRID.glob("*.mpg"))[: args.clips]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames, seconds = make_inputs(tmp, clips, args.size)
        os.environ["LIPSYNC_BENCH_WEIGHTS"] = str(tmp / "weights")
        os.environ["TORCH_HOME"] = str(tmp / "torch")
        from lipsync_bench import media

        calibration = np.concatenate([media.read_frames(p)[::10] for p in sorted((tmp / "gt").iterdir())])
        make_weights(tmp / "weights", calibration)
        metrics = [m["name"] for m in available_metrics() if m["available"]]
        groups: dict[str, list[str]] = {}
        for name in metrics:
            groups.setdefault(get_metric(name).group or name, []).append(name)
        print(f"device: {device_name(args.device)}")
        print(f"inputs: {len(clips)} GRID clips at {args.size}x{args.size}, {frames} frames ({seconds:.1f} s) a side")
        decode = min(decode_seconds(tmp) for _ in range(2))
        print(f"decode alone: {decode:.2f} s ({2 * frames / decode:.0f} frames/s, both sides)")
        failures = []
        print(f"{'metric':22s} {'max |device - cpu|':>18s} {'tolerance':>10s} {'frames/s':>10s} {'compute fr/s':>13s}")
        for members in groups.values():
            tag = "+".join(members)
            cpu_videos, cpu_data, _ = evaluate(tmp, members, "cpu", f"cpu_{members[0]}")
            evaluate(tmp, members, args.device, f"warm_{members[0]}")  # first call: kernels, caches
            dev_videos, dev_data, wall = evaluate(tmp, members, args.device, f"dev_{members[0]}")
            diffs = [abs(dev_videos[k] - v) for k, v in cpu_videos.items() if k in dev_videos]
            diffs += [abs(dev_data[k] - v) for k, v in cpu_data.items() if k in dev_data]
            worst = max(diffs) if diffs else float("nan")
            tol = min(TOLERANCE.get(m, 1e-6) for m in members)
            ok = bool(diffs) and worst <= tol and set(dev_videos) == set(cpu_videos)
            if not ok:
                failures.append(tag)
            compute = wall - decode  # not measurable when the eval is as fast as decoding alone
            rate = f"{frames / compute:13.0f}" if compute > 0.05 * wall else f"{'(decode-bound)':>13s}"
            print(f"{tag:22s} {worst:18.2e} {tol:10.0e} {frames / wall:10.0f} {rate}{'' if ok else '   MISMATCH'}")
        _, _, full = evaluate(tmp, metrics, args.device, "full")
        print(f"full eval ({len(metrics)} metrics): {full:.1f} s, {seconds / full:.2f} video-s per wall-s, "
              f"{full / decode:.2f}x decoding alone")
        if failures:
            print(f"device values differ from the CPU's beyond tolerance: {', '.join(failures)}")
            return 1
        print("every metric on the device equals its CPU value within tolerance")
        return 0


if __name__ == "__main__":
    sys.exit(main())
