"""``lipsync-bench generate``: a face video (or one image) and a driving audio -> a talking-face video.

- Output: 25 fps, as many frames as the audio lasts (16 kHz samples / 640); a shorter face video is
  looped, a longer one cut; the driving audio is muxed in. ``.mp4``/``.mov``: H.264 (crf 12) and AAC;
  ``.mkv``/``.avi``: lossless FFV1 and 16-bit PCM.
- Face: the face pipeline's main track (detection, tracking, edge-padded median smoothing), each frame
  cropped by the geometry of ``prepare`` and of training on videos (``syncnets.inputs.FACE_CROP``) at the
  working size 96x96. A checkpoint trained on another geometry (Wav2Lip's preprocessed layout, or one
  that does not record it) is used with a warning: its model sees faces framed otherwise than in its
  training. Frames outside the track are written unchanged.
- Generation in batches: the identity reference of a frame is the frame itself (as Wav2Lip's
  inference does), through G_S with silent audio first when the checkpoint holds one (setups D-H);
  the target is the same frame with its bottom half masked; the audio is the mel window centred on the
  frame.
- Paste-back: the generated face is resized to its crop box and blended into the frame with a soft
  mask of the lower face (``lower_face_mask``: the jaw line from cheek to cheek closed by the base of
  the nose, feathered inwards), from the frame's landmarks (interpolated over frames without their
  own), so mouth and jaw change and the upper face, the neck and the background stay the input's.
- Streaming: two passes over the face video (face analysis, then generation); frames are never all in
  memory and never written to disk.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ...errors import LipsyncBenchError
from ...faces import FaceAnalyzer
from ...faces.settings import TrackParams
from ...faces.track import crop_window, smoothed_centres, syncnet_crop
from ...media import IMAGE_EXTENSIONS, iter_frames, read_audio, write_video
from ...syncnets.inputs import FACE_CROP
from ...syncnets.scoring import SAMPLES_PER_FRAME
from ...syncnets.wav2lip import melspectrogram
from ..outcomes import Generation
from .models import mask_lower_half
from .trainer import SILENT_MEL, load_generator
from .windows import centred_mel

FPS = 25


#: iBUG 68-point indices of the lower face: the jaw line from cheek (2) round the chin to cheek (14),
#: closed by the base of the nose (35 .. 31).
LOWER_FACE = [*range(2, 15), 35, 34, 33, 32, 31]


def lower_face_mask(height: int, width: int, points: np.ndarray) -> np.ndarray:
    """(H, W, 1) weights in [0, 1] over an H x W box: 1 inside the convex hull of the ``LOWER_FACE``
    landmarks (``points``: (68, 2) x, y in the box's pixels), falling to 0 at the hull's edge over
    4% of the jaw's width, and exactly 0 outside it."""
    hull = cv2.convexHull(np.round(points[LOWER_FACE]).astype(np.int32))
    inside = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(inside, hull, 1)
    feather = max(1, int(round(0.04 * np.ptp(points[:17, 0]))))
    core = cv2.erode(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * feather + 1, 2 * feather + 1)))
    mask = cv2.GaussianBlur(core.astype(np.float32), (0, 0), feather / 2) * inside
    return mask[..., None]


def paste(frame: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int], points: np.ndarray) -> np.ndarray:
    """``face`` (generated crop, RGB uint8) resized to ``box`` (y0, y1, x0, x1; may reach outside the
    frame) and blended into ``frame`` with ``lower_face_mask`` of the frame's landmarks ``points``
    ((68, 2), frame pixels)."""
    y0, y1, x0, x1 = box
    resized = cv2.resize(face, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    mask = lower_face_mask(y1 - y0, x1 - x0, points - np.array([x0, y0]))
    fy0, fy1, fx0, fx1 = max(0, y0), min(frame.shape[0], y1), max(0, x0), min(frame.shape[1], x1)
    if fy0 >= fy1 or fx0 >= fx1:
        return frame
    out = frame.copy()
    region = out[fy0:fy1, fx0:fx1].astype(np.float32)
    sub = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    out[fy0:fy1, fx0:fx1] = np.round(region * (1 - mask[sub]) + resized[sub] * mask[sub]).astype(np.uint8)
    return out


def _face_frames(face: Path):
    """Chunks of RGB frames of the face input at 25 fps (an image: one frame)."""
    if face.suffix.lower() in IMAGE_EXTENSIONS:
        img = cv2.imread(str(face), cv2.IMREAD_COLOR)
        if img is None:
            raise LipsyncBenchError(f"{face}: cannot be read as an image")
        yield img[..., ::-1][None].copy()
        return
    yield from iter_frames(face, FPS)


def track_landmarks(landmarks: np.ndarray, start: int, count: int) -> np.ndarray:
    """(count, 68, 2) landmarks of a track's frames start .. start+count-1, linearly interpolated (and
    held at the ends) over the frames without their own; raises when none has any."""
    span = landmarks[start:start + count]
    have = np.isfinite(span[:, 0, 0]).nonzero()[0]
    if len(have) == 0:
        raise LipsyncBenchError("the face track has no landmarks")
    flat = span[have].reshape(len(have), -1)
    return np.stack([np.interp(np.arange(count), have, flat[:, k]) for k in range(flat.shape[1])], 1).reshape(-1, 68, 2)


def geometry_warning(ckpt: str | Path, geometry: dict | None) -> str | None:
    """Why a checkpoint's crops differ from those generate takes (``FACE_CROP``), or None."""
    if (geometry or {}).get("name") == FACE_CROP.name:
        return None
    trained = f"crops of geometry {geometry['name']}" if geometry else "crops whose geometry it does not record"
    return (f"{ckpt}: trained on {trained}; generate crops by {FACE_CROP.name}, so the model sees faces framed "
            "otherwise than in training (train on a folder from 'lipsync-bench prepare' to match)")


def generate(face: str | Path, audio: str | Path, ckpt: str | Path, out: str | Path, device: str = "cpu",
             batch: int = 16, landmarker: str = "auto", progress: bool = True) -> dict:
    """Write ``out`` (see the module docstring); returns what was done (frames, face coverage, model,
    and ``warnings``)."""
    face, out = Path(face), Path(out)
    dev = torch.device(device)
    generator, silent, meta = load_generator(ckpt, dev)
    warnings = [w for w in [geometry_warning(ckpt, meta.get("crop_geometry"))] if w]
    size = generator.config.size
    samples = read_audio(audio)
    total = len(samples) // SAMPLES_PER_FRAME
    if total < 1:
        raise LipsyncBenchError(f"{audio}: shorter than one frame at 25 fps")
    mel = melspectrogram(samples)

    image = face.suffix.lower() in IMAGE_EXTENSIONS  # one frame: a track of one frame is a track
    analyzer = FaceAnalyzer(landmarker, replace(TrackParams(), min_track=0) if image else TrackParams())
    n_face = 0  # pass 1: the face track
    for chunk in _face_frames(face):
        analyzer.update(chunk)
        n_face += len(chunk)
    if n_face == 0:
        raise LipsyncBenchError(f"{face}: no frames")
    analysis = analyzer.result()
    track = analysis.main_track()
    if track is None:
        raise LipsyncBenchError(f"{face}: no face found")
    centres = smoothed_centres(track, ends="edge")
    try:
        points = track_landmarks(analysis.landmarks, track.start, len(centres))
    except LipsyncBenchError as exc:
        raise LipsyncBenchError(f"{face}: {exc}") from None

    def source():  # the face frames, looped to the audio's length
        index = 0
        while True:
            for chunk in _face_frames(face):
                for frame in chunk:
                    if index >= total:
                        return
                    yield index, frame
                    index += 1

    bar = tqdm(total=total, desc="generate", unit="frame", disable=not progress)
    generated = 0

    @torch.no_grad()
    def frames_out():  # pass 2: generation, in batches
        nonlocal generated
        pending: list[tuple[int, np.ndarray]] = []
        for item in source():
            pending.append(item)
            if len(pending) == batch:
                yield _generate_batch(pending)
                pending = []
        if pending:
            yield _generate_batch(pending)

    def _generate_batch(items) -> np.ndarray:
        nonlocal generated
        frames = [f for _, f in items]
        todo = [(k, i, (i % n_face) - track.start) for k, (i, _) in enumerate(items)
                if track.start <= i % n_face < track.start + len(centres)]
        if todo:
            crops = np.stack([syncnet_crop(frames[k], *centres[t], crop_scale=FACE_CROP.crop_scale, size=size)
                              for k, _, t in todo])
            x = torch.from_numpy(crops).to(dev).permute(0, 3, 1, 2).float().div(255)
            mels = torch.from_numpy(np.stack([centred_mel(mel, i) for _, i, _ in todo]))[:, None].to(dev)
            reference = x
            if silent is not None:
                reference = silent(x, mask_lower_half(x), torch.full_like(mels, SILENT_MEL))
            faces = generator(reference, mask_lower_half(x), mels)
            faces = (faces.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            for (k, _, t), gen in zip(todo, faces, strict=False):
                y0, y1, x0, x1, _ = crop_window(*centres[t], crop_scale=FACE_CROP.crop_scale)
                frames[k] = paste(frames[k], gen, (y0, y1, x0, x1), points[t])
            generated += len(todo)
        bar.update(len(items))
        return np.stack(frames)

    try:
        codec = "ffv1" if out.suffix.lower() in (".mkv", ".avi") else "libx264"  # lossless where the container allows
        write_video(out, frames_out(), FPS, samples[:total * SAMPLES_PER_FRAME], codec=codec)
    finally:
        bar.close()
    return Generation({"out": str(out), "frames": total, "seconds": total / FPS, "generated_frames": generated,
            "face_frames": n_face, "face_fraction": float(analysis.face_fraction),
            "checkpoint": {"file": str(ckpt), "setup": meta["config"]["setup"], "step": meta["global_step"],
                           "sync_expert": meta["sync_expert"], "silent_generator": meta["silent_generator"],
                           "crop_geometry": meta.get("crop_geometry")},
            "crop_geometry": FACE_CROP.name, "warnings": warnings})
