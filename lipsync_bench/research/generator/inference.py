"""``lipsync-bench generate``: a face video (or one image) and a driving audio -> a talking-face video;
or a folder of face videos and a folder of driving audio -> a folder of talking-face videos, in one
process with the checkpoint and the face models loaded once (``GenerationModels``).

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
  memory and never written to disk. An output appears only complete (written under a temporary name,
  then renamed).
- Folders (``find_clips``): each face video is driven by the input of the same relative name under the
  audio folder (or only the names of a file list, LRS2 style); outputs mirror the names, with one
  extension for all. A rerun skips the outputs already there; a clip that fails is one line in the
  result and the others go on.
"""
from __future__ import annotations

import glob
import os
import traceback
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ...errors import LipsyncBenchError, ParameterError
from ...faces import FaceAnalyzer
from ...faces.settings import TrackParams
from ...faces.track import crop_window, smoothed_centres, syncnet_crop
from ...media import (
    FOLDER_AUDIO_NAME,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    find_inputs,
    iter_frames,
    read_audio,
    write_video,
)
from ...rendering import one_line
from ...syncnets.inputs import FACE_CROP
from ...syncnets.scoring import SAMPLES_PER_FRAME
from ...syncnets.wav2lip import melspectrogram
from ..datasets import read_filelist
from ..outcomes import GeneratedFolder, Generation
from .models import mask_lower_half
from .trainer import SILENT_MEL, load_generator
from .windows import centred_mel

FPS = 25
#: Output containers and their video codec: H.264 (crf 12) with AAC, or lossless FFV1 with 16-bit PCM.
OUTPUT_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "ffv1", ".avi": "ffv1"}
#: Audio-only files that may drive a clip in a folder run (besides videos, whose audio track is taken).
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus")


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


class GenerationModels:
    """What every clip of a run shares, loaded once: the generator checkpoint (G_L with its audio encoder
    and the G_S it uses) on ``device``, and the face analyzer's landmarker (``faces.get_backend`` keeps
    one per process). ``write`` makes one video with them; ``generate`` calls it for one clip or a
    folder of clips.

    Args:
        ckpt: a train-generator (or train-silent) checkpoint.
        device: "cpu", "cuda" or "cuda:N".
        batch: frames generated at once.
        landmarker: "auto", "dlib" or "face-alignment"; an unavailable one fails here, before any clip.
    """

    def __init__(self, ckpt: str | Path, device: str = "cpu", batch: int = 16, landmarker: str = "auto"):
        if batch < 1:
            raise ParameterError(f"--batch must be at least 1, not {batch}")
        FaceAnalyzer(landmarker)  # loads the landmarker's models, or says why they are unavailable
        self.ckpt, self.batch, self.landmarker = Path(ckpt), batch, landmarker
        self.device = torch.device(device)
        self.generator, self.silent, self.meta = load_generator(ckpt, self.device)
        self.warnings = [w for w in [geometry_warning(ckpt, self.meta.get("crop_geometry"))] if w]

    @property
    def checkpoint(self) -> dict:
        """What the results record of the checkpoint: its file, setup, step, expert, G_S and geometry."""
        meta = self.meta
        return {"file": str(self.ckpt), "setup": meta["config"]["setup"], "step": meta["global_step"],
                "sync_expert": meta["sync_expert"], "silent_generator": meta["silent_generator"],
                "crop_geometry": meta.get("crop_geometry")}

    def write(self, face: str | Path, audio: str | Path, out: str | Path, progress: bool = False) -> dict:
        """Write ``out`` from the face input and the driving audio (see the module docstring); the file
        appears only complete (written under a temporary name, then renamed). Returns the output, its
        frames and seconds, the frames with a face redrawn, the face input's frames and the fraction of
        them with a face. ``progress``: a bar over the output's frames."""
        face, out = Path(face), Path(out)
        dev, size, batch = self.device, self.generator.config.size, self.batch
        samples = read_audio(audio)
        total = len(samples) // SAMPLES_PER_FRAME
        if total < 1:
            raise LipsyncBenchError(f"{audio}: shorter than one frame at 25 fps")
        mel = melspectrogram(samples)

        image = face.suffix.lower() in IMAGE_EXTENSIONS  # one frame: a track of one frame is a track
        analyzer = FaceAnalyzer(self.landmarker, replace(TrackParams(), min_track=0) if image else TrackParams())
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
                if self.silent is not None:
                    reference = self.silent(x, mask_lower_half(x), torch.full_like(mels, SILENT_MEL))
                faces = self.generator(reference, mask_lower_half(x), mels)
                faces = (faces.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
                for (k, _, t), gen in zip(todo, faces, strict=False):
                    y0, y1, x0, x1, _ = crop_window(*centres[t], crop_scale=FACE_CROP.crop_scale)
                    frames[k] = paste(frames[k], gen, (y0, y1, x0, x1), points[t])
                generated += len(todo)
            bar.update(len(items))
            return np.stack(frames)

        try:
            _write_complete(out, frames_out(), samples[:total * SAMPLES_PER_FRAME])
        finally:
            bar.close()
        return {"out": str(out), "frames": total, "seconds": total / FPS, "generated_frames": generated,
                "face_frames": n_face, "face_fraction": float(analysis.face_fraction)}


def _write_complete(out: Path, frames, audio: np.ndarray) -> None:
    """``write_video`` to a temporary name beside ``out``, then a rename: a run killed mid-clip leaves no
    partial ``out`` that a rerun would take for done (nor the temporary file of an earlier killed run)."""
    for stale in out.parent.glob(f".{glob.escape(out.stem)}.*.tmp{glob.escape(out.suffix)}"):
        stale.unlink(missing_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")
    try:
        write_video(tmp, frames, FPS, audio, codec=OUTPUT_CODECS[out.suffix.lower()])
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def output_extension(ext: str) -> str:
    """``ext`` as a checked output extension (".mp4", ".mov", ".mkv" or ".avi"; the dot optional)."""
    norm = "." + ext.lower().lstrip(".")
    if norm not in OUTPUT_CODECS:
        raise ParameterError(f"--ext {ext!r}: expected one of {', '.join(OUTPUT_CODECS)} (.mkv/.avi: lossless)")
    return norm


def _listed_name(entry: str) -> str:
    """A file list's entry as a clip name: ``<video>/<utterance>``, without a video extension if it has one."""
    return entry[:entry.rfind(".")] if entry.lower().endswith(VIDEO_EXTENSIONS) else entry


def _audio_files(root: Path, name: str, listings: dict[Path, list[str]]) -> list[Path]:
    """The inputs under ``root`` that may drive clip ``name``: videos and audio files of its relative
    path and stem, or its frame folder with an ``audio.wav`` (``listings`` caches each folder's entries)."""
    rel = Path(name)
    folder = root / rel.parent
    if folder not in listings:
        listings[folder] = sorted(os.listdir(folder)) if folder.is_dir() else []
    found = []
    for entry in listings[folder]:
        path = folder / entry
        if entry == rel.name and (path / FOLDER_AUDIO_NAME).is_file():
            found.append(path)
        elif (Path(entry).stem == rel.name and entry.lower().endswith(VIDEO_EXTENSIONS + AUDIO_EXTENSIONS)
              and path.is_file()):
            found.append(path)
    return found


def find_clips(face_root: str | Path, audio_root: str | Path, filelist: str | Path | None = None
               ) -> tuple[list[tuple[str, Path, Path]], dict[str, str], list[str]]:
    """The clips of a folder run: each face input under ``face_root`` (videos and frame folders, named by
    their relative path without extension, as ``eval`` pairs them), or only those ``filelist`` names
    (LRS2's ``<video>/<utterance>`` a line, extension optional), with the input of the same name under
    ``audio_root`` (a video, an audio file, or a frame folder's ``audio.wav``).

    Args:
        face_root: folder of face videos.
        audio_root: folder of driving audio (may be ``face_root``: each video drives itself).
        filelist: optional file list.

    Returns:
        (name, face, audio) of each clip that can be tried; the clips that cannot, with why (a name
        listed but absent, two faces or two audio files of one name, no audio); notes on what the walk
        of ``face_root`` left out.
    """
    face_root, audio_root = Path(face_root), Path(audio_root)
    inputs, duplicates, skipped = find_inputs(face_root)
    if filelist is not None:
        names = list(dict.fromkeys(_listed_name(n) for n in read_filelist(Path(filelist))))
        if not names:
            raise LipsyncBenchError(f"{filelist}: names no clip")
    else:
        names = sorted({*inputs, *duplicates})
    clips, failed, listings = [], {}, {}
    for name in names:
        if name in duplicates:
            failed[name] = f"{face_root / name}: {duplicates[name]}"
        elif name not in inputs:
            failed[name] = f"{face_root / name}: listed in {filelist} but no face video of that name under {face_root}"
        else:
            audio = _audio_files(audio_root, name, listings)
            if not audio:
                failed[name] = (f"{inputs[name]}: no driving audio for it under {audio_root} (a video, an audio "
                                f"file or a frame folder named {name})")
            elif len(audio) > 1:
                failed[name] = (f"{inputs[name]}: several driving audio inputs share its name under {audio_root} "
                                f"({', '.join(p.name for p in audio)}); keep one")
            else:
                clips.append((name, inputs[name], audio[0]))
    return clips, failed, skipped


def _failure(exc: Exception, path: Path) -> str:
    """One line for a clip that failed: the project's message naming the input, or where a bug struck."""
    if isinstance(exc, LipsyncBenchError):
        message = str(exc)
    else:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        message = f"internal error {type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})"
    return message if str(path) in message else f"{path}: {message}"


def _check_out(out: Path, inputs: tuple[Path, ...]) -> None:
    """A folder run's --out: a folder (or none yet) outside the input folders."""
    if out.is_file():
        raise ParameterError(f"--out {out}: a file; with folders as --face and --audio, give a folder")
    for folder in inputs:
        if out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents:
            raise ParameterError(f"--out {out}: inside the input folder {folder}; a rerun would take its videos "
                                 "for inputs. Give a folder outside it")


def generate(face: str | Path, audio: str | Path, ckpt: str | Path, out: str | Path, device: str = "cpu",
             batch: int = 16, landmarker: str = "auto", progress: bool = True, *,
             filelist: str | Path | None = None, ext: str | None = None,
             overwrite: bool = False) -> Generation | GeneratedFolder:
    """Generate one video, or a folder of them in one process with the models loaded once
    (``GenerationModels``). Every option is checked before the checkpoint is read or a clip started.

    One clip: ``face`` and ``audio`` are files; ``out`` is written (replaced if it exists), its container
    by its extension; a bad input raises.

    A folder: ``face`` and ``audio`` are folders; each clip of ``find_clips(face, audio, filelist)`` is
    written to ``out/<name><ext>``. A clip whose output exists is skipped (a rerun finishes a killed
    run) unless ``overwrite``; a clip that fails is recorded with one line that names its file, and the
    others go on.

    Args:
        face: face video or image, or a folder of face videos.
        audio: driving audio (any file with an audio track), or a folder of them under the faces' names.
        ckpt: train-generator checkpoint (holds its G_S and audio encoder).
        out: output video, or output folder.
        device: "cpu", "cuda" or "cuda:N".
        batch: frames generated at once.
        landmarker: "auto", "dlib" or "face-alignment".
        progress: a bar over the frames (one clip) or the clips (a folder).
        filelist: folders only: the clips to generate (``<video>/<utterance>`` a line).
        ext: folders only: the outputs' extension, ".mp4" (H.264 + AAC; the default), ".mov", ".mkv" or
            ".avi" (lossless FFV1 + PCM).
        overwrite: folders only: generate again the clips whose output exists.

    Returns:
        ``Generation`` (one clip) or ``GeneratedFolder`` (its clips generated, already there and failed;
        exit status 1 when any failed).

    Example:
        >>> run = generate("main", "main", "runs/setup-H/last.pt", "generated",
        ...                filelist="test.txt", ext=".mkv")  # doctest: +SKIP
    """
    face, audio, out = Path(face), Path(audio), Path(out)
    if face.is_dir() != audio.is_dir():
        raise ParameterError(f"--face {face} and --audio {audio}: give two files (one clip) or two folders")
    if not face.is_dir():
        for name, value in (("--filelist", filelist), ("--ext", ext)):
            if value is not None:
                raise ParameterError(f"{name} is for folders of clips; with one --face file, --out names the output")
        if out.is_dir():
            raise ParameterError(f"--out {out}: a folder; with one --face file, give the output file")
        if out.suffix.lower() not in OUTPUT_CODECS:
            raise ParameterError(f"--out {out}: expected a {', '.join(OUTPUT_CODECS)} file (.mkv/.avi: lossless)")
        models = GenerationModels(ckpt, device, batch, landmarker)
        return Generation({**models.write(face, audio, out, progress), "checkpoint": models.checkpoint,
                           "crop_geometry": FACE_CROP.name, "warnings": models.warnings})
    suffix = output_extension(ext or ".mp4")
    _check_out(out, (face, audio))
    models = GenerationModels(ckpt, device, batch, landmarker)
    clips, failed, skipped = find_clips(face, audio, filelist)
    if not clips and not failed:
        raise LipsyncBenchError(f"{face}: no face videos" + (f" ({skipped[0]})" if skipped else ""))
    generated, already = [], []
    bar = tqdm(clips, desc="generate", unit="clip", disable=not progress)
    for name, face_path, audio_path in bar:
        target = out / f"{name}{suffix}"
        if target.is_file() and not overwrite:
            already.append(name)
            continue
        try:
            generated.append({"name": name, **models.write(face_path, audio_path, target)})
        except Exception as exc:  # one bad clip must not lose the others: recorded with its file
            failed[name] = _failure(exc, face_path)
            bar.set_postfix(failed=len(failed))
    bar.close()
    return GeneratedFolder({"face": str(face), "audio": str(audio), "out": str(out), "ext": suffix,
                            "filelist": str(filelist) if filelist is not None else None,
                            "clips": len(clips) + len(failed), "generated": generated, "already": already,
                            "failed": {one_line(n): one_line(r) for n, r in sorted(failed.items())},
                            "skipped": [one_line(note) for note in skipped],
                            "frames": sum(g["frames"] for g in generated), "checkpoint": models.checkpoint,
                            "crop_geometry": FACE_CROP.name, "warnings": models.warnings})
