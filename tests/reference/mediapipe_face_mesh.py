"""Reference driver, run inside a venv with mediapipe==0.10.21 (numpy 1.x): mediapipe's legacy
``FaceMesh(max_num_faces=1)`` on frames from a .npy file, landmarks written to a .npy file.

Usage: python mediapipe_face_mesh.py FRAMES.npy OUT.npy [--refine] [--static]
  FRAMES.npy: (N, H, W, 3) uint8 RGB frames (one video; tracking runs across them in order)
  OUT.npy: (N, 468 or 478, 3) float32, mediapipe's normalised x, y, z; NaN where no face
Prints the seconds spent in process() on stdout (for benchmarks).
"""
import sys
import time

import mediapipe as mp
import numpy as np


def main(argv: list[str]) -> None:
    frames = np.load(argv[1])
    refine, static = "--refine" in argv, "--static" in argv
    out = np.full((len(frames), 478 if refine else 468, 3), np.nan, dtype=np.float32)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=1, refine_landmarks=refine,
                                         min_detection_confidence=0.5, min_tracking_confidence=0.5) as mesh:
        start = time.perf_counter()
        for i, frame in enumerate(frames):
            result = mesh.process(np.ascontiguousarray(frame))
            if result.multi_face_landmarks:
                out[i] = [(p.x, p.y, p.z) for p in result.multi_face_landmarks[0].landmark]
        seconds = time.perf_counter() - start
    np.save(argv[2], out)
    print(f"{seconds:.6f}")


if __name__ == "__main__":
    main(sys.argv)
