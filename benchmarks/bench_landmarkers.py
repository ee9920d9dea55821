"""The mediapipe landmarker against its peers on the GRID clips (tests/data/grid): frames/s of our
FaceMeshTracker (video mode), of the 68-point ``mediapipe`` backend (detect + landmarks a frame, as
the face stage runs it), of dlib, of face-alignment (when its weights are present), and of
mediapipe 0.10.21's own FaceMesh in its venv; and the mouth points' agreement (mean px from our
68-mapped mouth, points 48-67, to dlib's). Printed as ratios to mediapipe's own FaceMesh.

    LIPSYNC_BENCH_WEIGHTS=<folder with the .tflite files> \\
    LIPSYNC_BENCH_MEDIAPIPE_PYTHON=<venv>/bin/python python benchmarks/bench_landmarkers.py [--clips 8]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from lipsync_bench import media
from lipsync_bench.faces.backends import face_alignment_missing, get_backend
from lipsync_bench.faces.mediapipe_mesh import FaceMeshTracker

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "tests" / "data" / "grid"
REFERENCE = ROOT / "tests" / "reference" / "mediapipe_face_mesh.py"
VENV_PYTHON = Path(os.environ.get("LIPSYNC_BENCH_MEDIAPIPE_PYTHON", ROOT / ".venv-mediapipe" / "bin" / "python"))


def time_backend(backend, clips: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """Seconds for detect + landmarks of the best face in every frame, and the 68 points (NaN without a face)."""
    points, seconds = [], 0.0
    for frames in clips:
        start = time.perf_counter()
        for frame in frames:
            boxes = backend.detect(frame)
            best = boxes[np.argmax(boxes[:, 4])] if len(boxes) else None
            points.append(backend.landmarks(frame, best) if best is not None else np.full((68, 2), np.nan))
        seconds += time.perf_counter() - start
    return seconds, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()
    clips = [media.read_frames(p) for p in sorted(GRID.glob("*.mpg"))[:args.clips]]
    n = sum(len(c) for c in clips)
    print(f"{len(clips)} GRID clips, {n} frames of {clips[0].shape[2]}x{clips[0].shape[1]} (ours: one TFLite thread)")
    fps = {}

    tracker = FaceMeshTracker()
    tracker.process(clips[0][0])  # warm-up
    start = time.perf_counter()
    for frames in clips:
        tracker.reset()
        for frame in frames:
            tracker.process(frame)
    fps["ours: FaceMeshTracker (video mode)"] = n / (time.perf_counter() - start)

    backends = {"ours: mediapipe backend (68 points, static)": "mediapipe", "dlib": "dlib"}
    reason = face_alignment_missing()
    if reason is None:
        backends["face-alignment"] = "face-alignment"
    else:
        print(f"face-alignment not timed: {reason}")
    points = {}
    for label, name in backends.items():
        backend = get_backend(name)
        time_backend(backend, [clips[0][:2]])  # warm-up
        seconds, points[name] = time_backend(backend, clips)
        fps[label] = n / seconds

    if VENV_PYTHON.is_file():
        seconds = 0.0
        with tempfile.TemporaryDirectory() as tmp:
            for frames in clips:
                np.save(Path(tmp) / "frames.npy", frames)
                out = subprocess.run([str(VENV_PYTHON), str(REFERENCE), str(Path(tmp) / "frames.npy"),
                                      str(Path(tmp) / "ref.npy")], capture_output=True, text=True, check=True)
                seconds += float(out.stdout.split()[-1])  # process() alone, graph start-up left out
        fps["mediapipe 0.10.21 FaceMesh (video mode)"] = n / seconds
    else:
        print(f"mediapipe's own FaceMesh not timed: no venv at {VENV_PYTHON}")

    base = fps.get("mediapipe 0.10.21 FaceMesh (video mode)")
    for label, value in fps.items():
        ratio = f"  x{value / base:.2f} of mediapipe's" if base else ""
        print(f"{label:48s} {value:8.1f} frames/s{ratio}")

    ours, dlib = np.array(points["mediapipe"])[:, 48:68], np.array(points["dlib"])[:, 48:68]
    dist = np.linalg.norm(ours - dlib, axis=2)
    both = np.isfinite(dist).all(axis=1)
    face = np.array(points["dlib"])
    iod = np.linalg.norm(face[:, 36:42].mean(1) - face[:, 42:48].mean(1), axis=1)  # dlib's inter-ocular distance
    print(f"mouth points 48-67, ours vs dlib, {both.sum()} frames with both: mean {dist[both].mean():.2f} px "
          f"(median {np.median(dist[both]):.2f}, per point {np.round(dist[both].mean(0), 1).tolist()}); "
          f"{(dist[both] / iod[both, None]).mean():.3f} of the inter-ocular distance")


if __name__ == "__main__":
    main()
