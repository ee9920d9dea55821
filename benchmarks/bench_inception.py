"""FID's Inception network against the machine's convolution floor.

    python benchmarks/bench_inception.py [--device cpu|cuda] [--frames 100]

- floor: the sustained throughput of one large convolution (batch 32, 256 -> 256 channels, 3x3,
  56x56, float32) in each memory layout torch offers, the best kept: what this machine's arithmetic
  allows a convolutional network;
- Inception: pytorch-fid's FID Inception (seeded random weights in its layout) on 299x299 frames in
  the layouts and batch sizes tried, its FLOPs per frame counted by ``torch.utils.flop_counter``;
  GFLOP/s and the ratio to the floor, and each layout's features against the default's (max
  absolute difference), so that a faster layout is taken only with its effect on the numbers known.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_seconds(fn, repeats: int = 3) -> float:
    fn()  # warm-up: kernel choice, allocations
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def conv_floor(device: str) -> tuple[float, str]:
    """(GFLOP/s, layout) of the best layout for one large 3x3 convolution."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(32, 256, 56, 56, device=device)
    flops = 2 * 32 * 256 * 56 * 56 * 256 * 9
    results = {}
    for layout, fmt in (("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)):
        c, xi = conv.to(memory_format=fmt), x.contiguous(memory_format=fmt)

        def run(c=c, xi=xi):
            c(xi)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        results[layout] = flops / best_seconds(run) / 1e9
    layout = max(results, key=results.get)
    return results[layout], layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()

    from torch.utils.flop_counter import FlopCounterMode

    from lipsync_bench.metrics.fid import load_inception
    from tests.helpers import make_fid_weights

    rng = np.random.default_rng(0)
    frames = torch.from_numpy(rng.integers(0, 256, (args.frames, 299, 299, 3), dtype=np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inception.pth"
        make_fid_weights(path, frames[:20].numpy())
        model = load_inception(path, args.device)
    x = frames.permute(0, 3, 1, 2).contiguous().float().div(255).to(args.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])
    per_frame = counter.get_total_flops()
    floor, floor_layout = conv_floor(args.device)
    print(f"convolution floor: {floor:7.1f} GFLOP/s ({floor_layout}); Inception: {per_frame / 1e9:.2f} GFLOP a frame "
          f"at 299x299; {args.frames} frames, {torch.get_num_threads()} threads")

    @torch.no_grad()
    def features(layout, batch):
        m = model.to(memory_format=layout)
        out = []
        for i in range(0, len(x), batch):
            out.append(m(x[i:i + batch].contiguous(memory_format=layout))[0].flatten(1))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return torch.cat(out).cpu()

    reference = features(torch.contiguous_format, 50)
    for name, layout, batch in (("NCHW, batch 50 (pytorch-fid's)", torch.contiguous_format, 50),
                                ("channels-last, batch 50", torch.channels_last, 50),
                                ("NCHW, batch 10", torch.contiguous_format, 10),
                                ("channels-last, batch 10", torch.channels_last, 10)):
        seconds = best_seconds(lambda layout=layout, batch=batch: features(layout, batch), repeats=2)
        rate = per_frame * args.frames / seconds / 1e9
        diff = (features(layout, batch) - reference).abs().max().item()
        print(f"  {name:32s} {args.frames / seconds:7.1f} frames/s  {rate:7.1f} GFLOP/s  "
              f"{rate / floor:5.2f}x floor   max feature diff {diff:.1e}")
    model.to(memory_format=torch.contiguous_format)


if __name__ == "__main__":
    main()
