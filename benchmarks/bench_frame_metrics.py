"""SSIM + PSNR throughput on 256x256 RGB frames: lipsync-bench (batched torch) against a scikit-image
per-frame loop on the same frames, with the largest per-frame difference between the two.

    python benchmarks/bench_frame_metrics.py [--frames 64] [--device cpu|cuda] [--repeats 3]

Frames are 256x256 crops of a real clip from LIPSYNC_BENCH_DATA (or of skimage's astronaut photo when the
folder is absent); "generated" frames are the same with JPEG compression at quality 30.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lipsync_bench import media
from lipsync_bench.metrics.psnr import psnr_frames
from lipsync_bench.metrics.ssim import ssim_frames

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "tests" / "data" / "grid"  # the repository's clips
EXTRA = Path(os.environ.get("LIPSYNC_BENCH_DATA", ROOT.parent / "shared" / "data"))  # optional extra clips


def frames(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    clip = EXTRA / "retalking" / "face_3.mp4"
    if clip.is_file():
        src = media.read_frames(clip)
        gt = src[np.arange(n) % len(src), 150:406, 167:423]
        source = f"{clip.name} crops"
    else:
        from skimage import data

        gt = np.stack([np.roll(data.astronaut()[:256, 128:384], i, axis=1) for i in range(n)])
        source = "astronaut photo"
    gen = []
    for f in gt:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format="JPEG", quality=30)
        gen.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.ascontiguousarray(np.stack(gen)), np.ascontiguousarray(gt), source


def best_of(repeats: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gen, gt, source = frames(args.frames)
    n = len(gt)

    def reference():
        s = [structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False) for a, b in zip(gen, gt, strict=False)]
        p = [peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(gen, gt, strict=False)]
        return np.array(s), np.array(p)

    device = torch.device(args.device)

    def ours():
        g = torch.from_numpy(gen).to(device)
        t = torch.from_numpy(gt).to(device)
        s, p = ssim_frames(g, t), psnr_frames(g, t)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return s.cpu().numpy(), p.cpu().numpy()

    ours()  # warm-up (allocator, CUDA context)
    t_ref, (s_ref, p_ref) = best_of(args.repeats, reference)
    t_ours, (s_ours, p_ours) = best_of(args.repeats, ours)
    print(f"SSIM+PSNR on {n} frames of 256x256 ({source}); {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, device {args.device}")
    print(f"  scikit-image loop : {n / t_ref:8.1f} frames/s")
    print(f"  lipsync-bench     : {n / t_ours:8.1f} frames/s")
    print(f"  ratio             : {t_ref / t_ours:8.2f}x")
    print(f"  max |SSIM diff|   : {np.abs(s_ours - s_ref).max():.2e}   "
          f"max |PSNR diff| : {np.abs(p_ours - p_ref).max():.2e} dB")


if __name__ == "__main__":
    main()
