"""Reference driver for the THEval metrics, run inside the mediapipe 0.10.21 venv (numpy 1.x, opencv,
mediapipe; no librosa, silero or decord): THEval's procedure (Newbyl/THEval cfe23fe) step by step on
mediapipe's own ``FaceMesh`` landmark objects, written here from the scripts' text (not from
lipsync_bench's code).

Usage: python theval_mediapipe.py JOBS.json OUT.json
  JOBS.json: a list of jobs, each {"metric", "frames" (a .npy of (N, H, W, 3) uint8 RGB frames), "color"
  ("rgb"|"bgr": the channel order fed to the mesh), "resize" (0 or N: cv2.resize to NxN first), "refine"
  (bool), "feed" (the frame indices the mesh sees, in order; null: every frame), "landmarks" (a .npy
  written with the (len(feed), K, 3) float32 landmarks, NaN without a face) and what the metric needs
  beyond the frames: "segments" (the VAD's [start, end] seconds), "fps" and "total" (the video's frames),
  from which the speech and silent frames are found as the scripts find them (else "speech_frames",
  "silent_frames"), and "volume" (per frame; lip sync)}. Each job has a FaceMesh of its own (a fresh tracker per video).
  OUT.json: a list of {"value": float or null (NaN)}, one per job.
"""
import json
import statistics
import sys
from itertools import combinations

import cv2
import mediapipe as mp
import numpy as np

# THEval's indices (Synchronization/lip_sync.py, silent_lip_stability.py)
UPPER = [191, 80, 81, 82, 13, 312, 311, 310]
LOWER = [95, 88, 178, 87, 14, 317, 402, 318]
fm = mp.solutions.face_mesh


def unique(connections):
    return sorted({i for pair in connections for i in pair})


def speech_frames(segments, fps, total):
    """lip_sync.py detect_speech_segments: int(start * fps) .. min(int(end * fps) + 1, total) of each segment."""
    frames = set()
    for start, end in segments:
        frames.update(range(int(start * fps), min(int(end * fps) + 1, total)))
    return frames


def silent_frames(segments, fps, total):
    """silent_lip_stability.py detect_silence_frames: every frame but int(start * fps) .. int(end * fps) of
    each segment, kept in runs of at least 300 ms (count >= 0.3 * fps)."""
    silence = set(range(total))
    for start, end in segments:
        silence -= set(range(int(start * fps), int(end * fps) + 1))
    kept, run = [], []
    for f in sorted(silence):
        if run and f != run[-1] + 1:
            kept += run if len(run) >= 300 / 1000 * fps else []
            run = []
        run.append(f)
    kept += run if len(run) >= 300 / 1000 * fps else []
    return kept


def lip_sync(found, job):
    """lip_sync.py compute_mouth_openness + process_video, with the given speech frames and volume."""
    openness = []
    for lm in found:
        if lm is None:
            openness.append(np.nan)
            continue
        upper = np.mean([lm[j].y for j in UPPER])
        lower = np.mean([lm[j].y for j in LOWER])
        left = np.mean([lm[j].x for j in [33, 133]])
        right = np.mean([lm[j].x for j in [362, 263]])
        interocular = abs(right - left)
        openness.append(abs(upper - lower) / interocular if interocular > 0 else np.nan)
    o = np.array(openness)
    total = len(o)
    speech = speech_frames(job["segments"], job["fps"], total) if "segments" in job else set(job["speech_frames"])
    mask = np.array([i in speech for i in range(total)]) & ~np.isnan(o)
    if len(speech) / total < 0.1 or np.sum(mask) < 2:
        return np.nan
    v = np.array(job["volume"])
    o_s, v_s = o[mask], v[mask]
    o_n = (o_s - np.min(o_s)) / (np.max(o_s) - np.min(o_s) + 1e-8)
    v_n = (v_s - np.min(v_s)) / (np.max(v_s) - np.min(v_s) + 1e-8)
    return float(np.mean(np.abs(o_n - v_n)))


def silent_lip_stability(found, job, size):
    """silent_lip_stability.py calculate_lip_average_distance + process_video on the fed (silent) frames."""
    w, h = size
    fed = job["feed"] if job["feed"] is not None else list(range(len(found)))
    by_frame = dict(zip(fed, found, strict=True))
    values = []
    silent = silent_frames(job["segments"], job["fps"], job["total"]) if "segments" in job else job["silent_frames"]
    for f in silent:
        lm = by_frame[f]
        if lm is None:
            continue
        left = np.array([lm[33].x * w, lm[33].y * h])
        right = np.array([lm[263].x * w, lm[263].y * h])
        eye = np.linalg.norm(left - right)
        if eye < 1e-3:
            continue
        values.append(np.mean([abs(lm[u].y * h - lm[lo].y * h) / eye for u, lo in zip(UPPER, LOWER, strict=True)]))
    if len(values) < 2:
        return np.nan
    mean = float(np.mean(values))
    return float(statistics.median([abs(x - mean) for x in values]))


def lip_dynamics(found, job, size):
    """lip_dynamics.py compute_mouth_diversity (std_over_time)."""
    w, h = size
    idx = unique(fm.FACEMESH_LIPS)
    vectors = []
    for lm in found:
        if lm is None:
            continue
        points = [np.array([lm[i].x * w, lm[i].y * h]) for i in idx]
        vectors.append(np.array([np.linalg.norm(points[i] - points[j])
                                 for i, j in combinations(range(len(points)), 2)]))
    if not vectors:
        return 0.0
    return float(np.mean(np.std(np.array(vectors), axis=0)))


def eyebrow_dynamics(found, job, size):
    """eyebrow_dynamics.py compute_micro_expression_intensity."""
    w, h = size
    sets = {k: unique(getattr(fm, "FACEMESH_" + k)) for k in ("LEFT_EYEBROW", "LEFT_EYE", "RIGHT_EYEBROW",
                                                                  "RIGHT_EYE")}

    def centre(lm, name):
        return np.array([(lm[i].x * w, lm[i].y * h) for i in sets[name]]).mean(axis=0)

    prev_l = prev_r = None
    total, count = 0.0, 0
    for lm in found:
        if lm is None:
            continue
        scale = np.linalg.norm(centre(lm, "LEFT_EYE") - centre(lm, "RIGHT_EYE"))
        if scale < 1e-3:
            continue
        left = np.linalg.norm(centre(lm, "LEFT_EYEBROW") - centre(lm, "LEFT_EYE")) / scale
        right = np.linalg.norm(centre(lm, "RIGHT_EYEBROW") - centre(lm, "RIGHT_EYE")) / scale
        if prev_l is not None:
            total += abs(left - prev_l) + abs(right - prev_r)
            count += 2
        prev_l, prev_r = left, right
    return total / count if count else 0.0


def run(job):
    frames = np.load(job["frames"])
    feed = job["feed"] if job["feed"] is not None else list(range(len(frames)))
    found, rows, size = [], [], None
    with fm.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=job["refine"],
                     min_detection_confidence=0.5, min_tracking_confidence=0.5) as mesh:
        for i in feed:
            image = frames[i]
            if job["resize"]:
                image = cv2.resize(image, (job["resize"], job["resize"]))
            if job["color"] == "bgr":
                image = image[..., ::-1]
            image = np.ascontiguousarray(image)
            size = (image.shape[1], image.shape[0])
            result = mesh.process(image)
            lm = result.multi_face_landmarks[0].landmark if result.multi_face_landmarks else None
            found.append(lm)
            rows.append(np.full((478 if job["refine"] else 468, 3), np.nan, np.float32) if lm is None else
                        np.array([(p.x, p.y, p.z) for p in lm], np.float32))
    np.save(job["landmarks"], np.stack(rows))
    metric = job["metric"]
    if metric == "lip_sync":
        return lip_sync(found, job)
    return {"silent_lip_stability": silent_lip_stability, "lip_dynamics": lip_dynamics,
            "eyebrow_dynamics": eyebrow_dynamics}[metric](found, job, size)


def main(argv):
    with open(argv[1]) as f:
        jobs = json.load(f)
    out = []
    for job in jobs:
        value = run(job)
        out.append({"value": None if value != value else float(value)})
    with open(argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv)
