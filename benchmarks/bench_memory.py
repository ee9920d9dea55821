"""Peak memory of ``eval`` against a clip's length and frame size: it should not grow with either.

    python benchmarks/bench_memory.py [--metrics LIST] [--size 1920x1080] [--short 10] [--long 600] [--uhd 10]
                                      [--json]

Makes a ``--short``-second pair at ``--size`` (a GRID face scaled up, moving, with noise: H.264; the
generated side at a lower quality), the same pair looped to ``--long`` seconds (packets copied, no
re-encode: each segment starts with its keyframe), and a ``--uhd``-second 3840x2160 pair; runs
``lipsync-bench eval`` on each in a fresh process and samples the resident memory of its whole process
tree (the eval and its decoding workers) every 20 ms. Prints each peak and the ratios long/short and
4K/short (the bound: 1.5x; 4K/short against a 1080p short clip). Every offline metric by default (FID
and SyncNet with seeded random weights, made here); ``--metrics`` narrows it. The full size is
``--long 600``: on 2 CPU cores that is hours of compute for every metric.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OFFLINE = "ssim,psnr,ifc,lmd,cpbd,csim_dlib,niqe,lse_c,lse_d,av_offset,fid"
GRID_CLIP = ROOT / "tests" / "data" / "grid" / "lbax4n.mpg"


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, MB (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {pid}, [pid]
    while frontier:
        frontier = [p for p, parent in parents.items() if parent in frontier and p not in tree]
        tree.update(frontier)
    return sum(rss.get(p, 0) for p in tree) / 2**20


def run_measured(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; its wall time and the peak of its process tree's resident memory."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.02)
    out, err = proc.communicate()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"eval failed: {err[-2000:]}")
    return {"seconds": time.perf_counter() - start, "peak_mb": peak, "output": out}


def synthetic_frames(size: tuple[int, int], frames: int) -> np.ndarray:
    """A GRID face scaled to ``size``, drifting slowly, with light noise (a face the detectors find)."""
    from lipsync_bench import media

    source = media.read_frames(GRID_CLIP)
    rng = np.random.default_rng(0)
    out = np.empty((frames, size[1], size[0], 3), np.uint8)
    for i in range(frames):
        face = Image.fromarray(source[i % len(source)]).resize(size, Image.BILINEAR)
        shift = int(8 * np.sin(i / 20))
        frame = np.roll(np.asarray(face), shift, axis=1).astype(np.int16)
        out[i] = np.clip(frame + rng.integers(-3, 4, frame.shape[:2])[..., None], 0, 255)
    return out


def looped(src: Path, dst: Path, times: int) -> Path:
    """``src`` played ``times`` times in a row: its packets copied with shifted timestamps."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        packets = [p for p in inp.demux() if p.dts is not None]
        span = {i: max(p.pts + (p.duration or 0) for p in packets if p.stream.index == i)
                - min(p.pts for p in packets if p.stream.index == i) for i in streams}
        for k in range(times):
            for p in packets:
                p.stream = streams[p.stream_index]
                shift = k * span[p.stream_index]
                p.pts, p.dts = p.pts + shift if k else p.pts, p.dts + shift if k else p.dts
                out.mux(p)
                p.pts, p.dts = p.pts - shift if k else p.pts, p.dts - shift if k else p.dts
    return dst


def make_pair(root: Path, name: str, size: tuple[int, int], seconds: float, loop: int = 1) -> Path:
    """gen/ and gt/ folders holding one clip each."""
    from lipsync_bench import media

    folder = root / name
    frames = synthetic_frames(size, int(seconds * 25))
    audio = np.tile(media.read_audio(GRID_CLIP), 1 + int(seconds * 16000) // 47000)[: int(seconds * 16000)]
    for side, crf in (("gt", 18), ("gen", 32)):
        clip = media.write_video(root / "segments" / f"{name}-{side}.mp4", frames, 25, audio, crf=crf)
        (folder / side).mkdir(parents=True)
        if loop > 1:
            looped(clip, folder / side / "clip.mp4", loop)
        else:
            clip.rename(folder / side / "clip.mp4")
    return folder


def make_weights(folder: Path) -> None:
    import torch

    from lipsync_bench import media
    from lipsync_bench.syncnets.syncnet import SyncNet
    from tests.helpers import make_fid_weights

    make_fid_weights(folder / "pt_inception-2015-12-05-6726825d.pth", media.read_frames(GRID_CLIP)[::8])
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), folder / "syncnet_v2.model")


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", default=OFFLINE)
    ap.add_argument("--size", default="1920x1080", help="frame size of the short and long clips")
    ap.add_argument("--short", type=float, default=10, help="seconds of the short clip")
    ap.add_argument("--long", type=float, default=600, help="seconds of the long clip (a whole number of "
                                                            "--short segments)")
    ap.add_argument("--uhd", type=float, default=10, help="seconds of the 4K clip (0: none)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    loop = max(1, round(args.long / args.short))
    size = tuple(int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="lipsync-bench-memory-") as tmp:
        root = Path(tmp)
        make_weights(root / "w")
        env = {**os.environ, "LIPSYNC_BENCH_WEIGHTS": str(root / "w")}
        cases = {"short": make_pair(root, "short", size, args.short),
                 "long": make_pair(root, "long", size, args.short, loop)}
        if args.uhd:
            cases["4K"] = make_pair(root, "uhd", (3840, 2160), args.uhd)
        results = {}
        for label, folder in cases.items():
            cmd = [sys.executable, "-m", "lipsync_bench.cli", "eval", "--gen", str(folder / "gen"), "--gt",
                   str(folder / "gt"), "--out", str(folder / "r"), "--metrics", args.metrics, "--quiet", "--json"]
            r = run_measured(cmd, env)
            doc = json.loads(r["output"])
            results[label] = {"seconds": round(r["seconds"], 1), "peak_mb": round(r["peak_mb"]),
                              "failed": doc["failures"], "metrics": sorted(doc["summary"])}
    short = results["short"]["peak_mb"]
    report = {"metrics": args.metrics, "size": args.size, "short_s": args.short, "long_s": args.short * loop,
              "uhd_s": args.uhd, "cases": results, "long_over_short": round(results["long"]["peak_mb"] / short, 3)}
    if "4K" in results:
        report["uhd_over_short"] = round(results["4K"]["peak_mb"] / short, 3)
    if args.json:
        print(json.dumps(report))
    else:
        for label, r in results.items():
            print(f"{label:6s} {r['seconds']:8.1f} s   peak {r['peak_mb']:6d} MB   failed: {len(r['failed'])}")
        print(f"long/short peak {report['long_over_short']:.2f}x" +
              (f", 4K/short {report['uhd_over_short']:.2f}x" if "uhd_over_short" in report else "") + " (bound 1.5x)")
    return report


if __name__ == "__main__":
    main()
