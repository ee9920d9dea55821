"""Face detection + 68-point landmark throughput (frames/s) of the offline default (dlib) on the real
clips (tests/data/grid, and LIPSYNC_BENCH_DATA's retalking/ when present), per clip size;
face-alignment (S3FD + 2D-FAN) too when its weights are present (``lipsync-bench weights list`` says where they go).

    python benchmarks/bench_landmarks.py [--frames 50]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from lipsync_bench import media
from lipsync_bench.faces import FaceAnalyzer
from lipsync_bench.faces.backends import face_alignment_missing

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "tests" / "data" / "grid"  # the repository's clips
EXTRA = Path(os.environ.get("LIPSYNC_BENCH_DATA", ROOT.parent / "shared" / "data"))  # optional extra clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    args = parser.parse_args()
    clips = [GRID / "bbaf2n.mpg", EXTRA / "retalking" / "face_3.mp4", EXTRA / "retalking" / "face_2.mp4"]
    backends = ["dlib"]
    reason = face_alignment_missing()
    if reason is None:
        backends.append("face-alignment")
    else:
        print(f"face-alignment not timed: {reason}")
    for backend in backends:
        print(f"detection + landmarks, {backend}, {args.frames} frames a clip")
        analyzer = FaceAnalyzer(backend)
        analyzer.update(media.read_frames(clips[0])[:2])  # warm-up (model load, JIT)
        for clip in clips:
            if not clip.is_file():
                continue
            frames = media.read_frames(clip)[: args.frames]
            analyzer = FaceAnalyzer(backend)
            start = time.perf_counter()
            analyzer.update(frames)
            data = analyzer.result()
            seconds = time.perf_counter() - start
            print(f"  {clip.name:12s} {frames.shape[2]}x{frames.shape[1]}: {len(frames) / seconds:6.1f} frames/s, "
                  f"face in {data.face_fraction:.0%} of frames")


if __name__ == "__main__":
    main()
