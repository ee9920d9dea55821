"""Training and analysis data for the sync experts and the generators: talking-face clips as face crops + 16 kHz audio,
and the aligned / misaligned window pairs the experts learn from.

Two sources (``open_clips``):

- Wav2Lip's preprocessed layout (LRS2 as ``preprocess.py`` writes it): ``<root>/<video>/<n>.jpg``
  (face crops, numbered from 0) and ``<root>/<video>/audio.wav``; a file list (``filelists/train.txt``,
  one ``<video>`` path relative to ``root`` a line) selects the videos, else every such folder is one.
- Plain video folders: each video through the face pipeline (detection, tracking, smoothing as for
  LMD), cut to its main face track, each frame cropped by ``FACE_CROP`` and resized to 224x224. The
  crops are cached once per video under ``<cache>/syncnet_crops/`` as one ``.npz`` file of JPEG bytes
  (quality 95, about 10x smaller than raw frames), the 16-bit audio of the track's span and the
  track's boxes.
- A prepared folder (``lipsync-bench prepare``): the same ``.npz`` files, one per clip at
  ``<root>/<name>.npz``, and ``<root>/prepared.json`` naming the crop geometry and face settings.

The crop geometry is a property of the data a model is trained on: ``FACE_CROP`` for videos and
prepared folders (and ``generate``), ``WAV2LIP_CROP`` for Wav2Lip's layout. Every clip set names
its geometry and every checkpoint records it.

Pairs (``SyncPairs``): a window of 5 consecutive frames and a mel window of 16 steps (0.2 s, Wav2Lip's
``crop_audio_window``: it starts at mel step int(80 t / 25) for frame t). Positive (label 1): the audio
of the same frames; negative (label 0): audio from a window of the same video that does not overlap the
frames (|t - s| >= 5), as the supplementary (A.3) says. The choice of each item is a function of
(seed, epoch, index) alone, so a run is reproducible and a resumed run sees the same pairs.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import wave
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..errors import LipsyncBenchError, MediaError, MetricError
from ..faces import FaceAnalyzer
from ..faces.analysis import content_hash
from ..faces.track import smoothed_centres, syncnet_crop
from ..files import user_cache_dir
from ..media import find_inputs, iter_frames, read_audio
from ..syncnets.inputs import FACE_CROP, FRAMES, WAV2LIP_CROP, CropGeometry, ExpertInput, expert_input
from ..syncnets.scoring import SAMPLES_PER_FRAME
from ..syncnets.wav2lip import mel_window, mel_window_count, melspectrogram

JPEG_QUALITY = 95
CACHE_VERSION = 1
PREPARED_MANIFEST = "prepared.json"


class _Lru:
    """A small least-recently-used cache (decoded audio, mel spectrograms, JPEG blobs): bounded memory
    however many clips a data set has."""

    def __init__(self, size: int):
        self.size, self.items = size, OrderedDict()

    def get(self, key, make):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self.items[key] = make()
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


_AUDIO, _MEL, _BLOBS = _Lru(256), _Lru(256), _Lru(64)


@dataclass
class FaceClip:
    """One talking-face video as face crops (RGB uint8, any square size) and 16 kHz audio, both read
    on demand (bounded caches), so a data set of any size fits in memory. Crop 0 is frame
    ``first_frame`` of ``source`` at 25 fps."""

    name: str
    frames: int
    samples: int  # 16 kHz audio samples
    read_frames: Callable[[int, int], list] = field(repr=False)  # (start, count) -> RGB arrays
    read_audio: Callable[[], np.ndarray] = field(repr=False)  # float32 in [-1, 1)
    source: Path | None = None
    first_frame: int = 0
    boxes: np.ndarray | None = field(default=None, repr=False)  # the face track's boxes, for video sources

    def faces(self, start: int, count: int, size: int) -> np.ndarray:
        """Frames start .. start+count-1 as (count, size, size, 3) RGB uint8."""
        out = []
        for img in self.read_frames(start, count):
            if img.shape[:2] != (size, size):
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size
                                 else cv2.INTER_LINEAR)
            out.append(img)
        return np.stack(out)

    @property
    def audio(self) -> np.ndarray:
        return _AUDIO.get((str(self.source), self.name), self.read_audio)

    @property
    def mel(self) -> np.ndarray:
        """Wav2Lip's normalised 80-band mel spectrogram of the audio (80, 1 + samples // 200)."""
        return _MEL.get((str(self.source), self.name), lambda: melspectrogram(self.audio))

    def window_starts(self) -> int:
        """How many 5-frame windows (starts 0 .. n-1) have their 16-step mel window inside the audio."""
        return mel_window_count(self.frames, self.samples)


# --------------------------------------------------------------------------------------------------
# Sources


def _numbered_jpgs(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".jpg" and p.stem.isdigit()]
    return sorted(files, key=lambda p: int(p.stem))


def _imread_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(path, "cannot be read as an image")
    return img[..., ::-1]


def _wav_samples(path: Path) -> int:
    """16 kHz sample count of a WAV file: from its header when it is 16 kHz PCM (Wav2Lip's LRS2 audio),
    else by decoding it."""

    try:
        with wave.open(str(path)) as w:
            if w.getframerate() == 16000:
                return w.getnframes()
    except (wave.Error, EOFError, OSError):
        pass
    return len(read_audio(path))


def wav2lip_clip(folder: Path, name: str | None = None) -> FaceClip:
    """A folder of Wav2Lip's preprocessed layout: 0.jpg, 1.jpg, ... (face crops) and audio.wav."""

    jpgs = _numbered_jpgs(folder)
    if not jpgs:
        raise MediaError(folder, "no numbered .jpg face crops (Wav2Lip's layout: 0.jpg, 1.jpg, ... and audio.wav)")
    if [int(p.stem) for p in jpgs] != list(range(int(jpgs[0].stem), int(jpgs[0].stem) + len(jpgs))):
        raise MediaError(folder, "frame numbers are not consecutive")
    wav = folder / "audio.wav"
    if not wav.is_file():
        raise MediaError(folder, "no audio.wav")
    return FaceClip(name or folder.name, len(jpgs), _wav_samples(wav),
                    lambda start, count: [_imread_rgb(p) for p in jpgs[start:start + count]],
                    lambda: read_audio(wav), folder)


def _crop_cache_file(cache_dir: Path, video: Path, fps: float, params: dict) -> Path:
    return Path(cache_dir) / "syncnet_crops" / (hashlib.sha256(crops_key(video, fps, params).encode()).hexdigest()[:32]
                                                + ".npz")


def crops_key(video: Path, fps: float, params: dict) -> str:
    """What a video's crops depend on: its bytes, the frame rate, the face settings and the geometry."""
    return json.dumps({"content": content_hash(video), "fps": fps, "params": params, "crop": FACE_CROP.crop_scale,
                       "size": FACE_CROP.size, "version": CACHE_VERSION}, sort_keys=True)


def _clip_from_cache(path: Path, name: str, source: Path) -> FaceClip:
    def blob():
        with np.load(path, allow_pickle=False) as z:
            return z["jpeg"], z["offsets"]

    def read_frames(start, count):
        data, offsets = _BLOBS.get(path, blob)
        return [cv2.imdecode(data[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)[..., ::-1]
                for i in range(start, start + count)]

    def read_audio():
        with np.load(path, allow_pickle=False) as z:
            return z["audio"].astype(np.float32) / 32768

    with np.load(path, allow_pickle=False) as z:
        frames, samples, first, boxes = len(z["offsets"]) - 1, len(z["audio"]), int(z["first_frame"]), z["boxes"]
    return FaceClip(name, frames, samples, read_frames, read_audio, source, first, boxes)


def video_clip(video: Path, cache_dir: Path, name: str | None = None, fps: float = 25.0,
               landmarker: str = "auto") -> FaceClip:
    """A video through the face pipeline, cut to its main track and cropped (cached, see the module
    docstring). Errors (no face, no audio, unreadable) name the video."""
    analyzer = FaceAnalyzer(landmarker)
    params = analyzer.params()
    cache = _crop_cache_file(cache_dir, video, fps, params)
    name = name or video.stem
    if not cache.is_file():
        write_crops(video, cache, analyzer, fps, crops_key(video, fps, params))
    return _clip_from_cache(cache, name, video)


def stored_crops_key(path: Path) -> str | None:
    """The key (``crops_key``) a crops file was written under, or None (unreadable, older file)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return str(z["key"]) if "key" in z.files else None
    except (OSError, ValueError, EOFError):
        return None


def write_crops(video: Path, path: Path, analyzer: FaceAnalyzer, fps: float, key: str) -> None:
    """Write one video's ``FACE_CROP`` crops, audio span and boxes to ``path`` (atomically: a run
    killed midway leaves no partial file under that name)."""
    audio = read_audio(video)
    frames = []
    for chunk in iter_frames(video, fps):
        analyzer.update(chunk)
        frames.extend(chunk)
    track = analyzer.result().main_track()
    if track is None:
        raise MetricError(f"{video}: no face found")
    centres = smoothed_centres(track, ends="edge")
    blobs = []
    for i, c in enumerate(centres):
        crop = syncnet_crop(frames[track.start + i], *c, crop_scale=FACE_CROP.crop_scale, size=FACE_CROP.size)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        blobs.append(buf.ravel())
    span = audio[track.start * SAMPLES_PER_FRAME:(track.start + len(centres)) * SAMPLES_PER_FRAME]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, jpeg=np.concatenate(blobs), offsets=offsets,
             audio=np.round(span * 32768).clip(-32768, 32767).astype(np.int16), first_frame=track.start,
             boxes=track.boxes, key=np.array(key))
    tmp.replace(path)


def _is_wav2lip_folder(folder: Path) -> bool:
    return (folder / "audio.wav").is_file() and (folder / "0.jpg").is_file()


def read_filelist(path: Path) -> list[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise LipsyncBenchError(f"{path}: cannot read the file list ({exc.strerror})") from None
    return [ln.split()[0] for ln in lines if ln.strip() and not ln.startswith("#")]


@dataclass
class ClipSet:
    """The clips that could be read, and one line per input that could not."""

    clips: list[FaceClip]
    problems: list[str]
    layout: str

    @property
    def geometry(self) -> CropGeometry:
        return WAV2LIP_CROP if self.layout == "wav2lip" else FACE_CROP


LAYOUTS = ("auto", "wav2lip", "videos", "prepared")


def video_items(root: Path, wanted: list[str] | None, found: tuple | None = None
                ) -> tuple[list[tuple[str, Path]], list[str]]:
    """(name, path) of the videos (and frame folders) under ``root`` (``found``: ``find_inputs(root)``
    when already walked), those of ``wanted`` only when it is given (names with or without extension),
    and one line per problem (duplicates, listed but absent)."""
    inputs, duplicates, _ = found or find_inputs(root)
    problems = [f"{k}: {v}" for k, v in duplicates.items()]
    if wanted is not None:
        stems = {w: re.sub(r"\.[^./]+$", "", w) for w in wanted}
        problems += [f"{w}: listed but not found under {root}" for w, stem in stems.items() if stem not in inputs]
        inputs = {k: v for k, v in inputs.items() if k in set(stems.values())}
    return sorted(inputs.items()), problems


def read_manifest(root: Path) -> dict:
    """A prepared folder's ``prepared.json``, checked to be of this geometry."""
    path = Path(root) / PREPARED_MANIFEST
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LipsyncBenchError(f"{path}: not a readable prepare manifest ({exc})") from None
    if (doc.get("crop_geometry") or {}).get("name") != FACE_CROP.name:
        raise LipsyncBenchError(f"{path}: prepared with crop geometry {doc.get('crop_geometry')!r}, not "
                                f"{FACE_CROP.name}; prepare the videos again with this version")
    return doc


def open_clips(root: str | os.PathLike, cache_dir: str | os.PathLike | None = None, layout: str = "auto",
               filelist: str | os.PathLike | None = None, fps: float = 25.0, landmarker: str = "auto",
               progress: bool = False) -> ClipSet:
    """The clips under ``root``. ``layout``: "wav2lip" (preprocessed face-crop folders), "videos" (any
    video files or frame folders, through the face pipeline; crops cached under ``cache_dir``,
    default ``files.user_cache_dir()``: the data folder is only read), "prepared" (``lipsync-bench
    prepare``'s output), or "auto" (prepared when ``root`` holds ``prepared.json``; else wav2lip when
    it holds such folders and no video files; else videos). ``filelist`` names the videos to use (Wav2Lip's
    ``filelists/*.txt``)."""
    root = Path(root)
    if not root.is_dir():
        raise LipsyncBenchError(f"{root}: not a folder")
    if layout not in LAYOUTS:
        raise LipsyncBenchError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    wanted = read_filelist(Path(filelist)) if filelist else None
    walks: dict = {}  # each walk of the tree is done once: a data set can hold millions of files

    def wav2lip_folders() -> list:
        if "wav2lip" not in walks:
            walks["wav2lip"] = sorted((p.parent.relative_to(root).as_posix(), p.parent)
                                      for p in root.rglob("audio.wav") if _is_wav2lip_folder(p.parent))
        return walks["wav2lip"]

    def video_inputs() -> tuple:
        if "videos" not in walks:
            walks["videos"] = find_inputs(root)
        return walks["videos"]

    if layout == "auto" and (root / PREPARED_MANIFEST).is_file():
        layout = "prepared"
    elif layout == "auto":
        has_videos = any(p.is_file() for p in video_inputs()[0].values())
        layout = "wav2lip" if wav2lip_folders() and not has_videos else "videos"
    problems: list[str] = []
    if layout == "wav2lip":
        items = [(w, root / w) for w in wanted] if wanted is not None else wav2lip_folders()
        read = wav2lip_clip
    elif layout == "prepared":
        read_manifest(root)
        found = {p.relative_to(root).with_suffix("").as_posix(): p for p in root.rglob("*.npz")
                 if not p.name.startswith(".")}
        if wanted is not None:
            names = {re.sub(r"\.[^./]+$", "", w) for w in wanted}
            problems += [f"{w}: listed but not prepared under {root}" for w in sorted(names - set(found))]
            found = {k: v for k, v in found.items() if k in names}
        items = sorted(found.items())

        def read(path, name):
            return _clip_from_cache(path, name, path)
    else:
        items, found_problems = video_items(root, wanted, video_inputs())
        problems += found_problems
        cache = Path(cache_dir) if cache_dir else user_cache_dir()

        def read(path, name):
            return video_clip(path, cache, name, fps, landmarker)

    clips = []
    for name, path in tqdm(items, desc="clips", unit="video", disable=not progress):
        try:
            clips.append(read(path, name))
        except (LipsyncBenchError, OSError) as exc:
            problems.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
    if not clips:
        raise LipsyncBenchError(f"{root}: no usable clip ({layout} layout)"
                                + (f"; first problem: {problems[0]}" if problems else ""))
    return ClipSet(clips, problems, layout)


def clip_video(clip: FaceClip) -> str:
    """The video a clip comes from: the first component of its name (LRS2's ``<video>/<utterance>``;
    a clip of a flat folder is a video of its own)."""
    return clip.name.split("/", 1)[0]


def split_clips(clips: list[FaceClip], val_fraction: float) -> tuple[list[FaceClip], list[FaceClip]]:
    """A fixed train/validation split **by video** (``clip_video``): every utterance of a video (one
    speaker, one session) lands on the same side, so validation never sees a training speaker's
    session. By a hash of the video's name (at least one video on each side when there are two or
    more), so the split does not depend on the order or number of other clips."""
    videos = sorted({clip_video(c) for c in clips})
    if len(videos) < 2 or val_fraction <= 0:
        return clips, []
    score = {v: int(hashlib.sha256(v.encode()).hexdigest()[:8], 16) / 16 ** 8 for v in videos}
    val = {v for v in videos if score[v] < val_fraction}
    if not val:
        val = {min(videos, key=score.get)}
    if len(val) == len(videos):
        val.discard(max(val, key=score.get))
    return [c for c in clips if clip_video(c) not in val], [c for c in clips if clip_video(c) in val]


def train_val_clips(data, cache_dir, layout: str, train_list, val_list, val_fraction: float,
                    progress: bool = False) -> tuple[ClipSet, list[FaceClip], list[FaceClip]]:
    """(the training clip set, its training clips, the validation clips): the clips of ``val_list``
    when it is given (the training clips are ``train_list``'s, which may not share a clip with it, or
    every other clip), else a split of the training clips by video (``split_clips``)."""
    clipset = open_clips(data, cache_dir, layout, train_list, progress=progress)
    if not val_list:
        return (clipset, *split_clips(clipset.clips, val_fraction))
    val_clips = open_clips(data, cache_dir, layout, val_list, progress=False).clips
    val_names = {c.name for c in val_clips}
    shared = sorted(val_names & {c.name for c in clipset.clips})
    if train_list and shared:
        raise LipsyncBenchError(f"{train_list} and {val_list} share {len(shared)} clips (e.g. {shared[0]}): a "
                                "clip is for training or for validation, not both")
    return clipset, [c for c in clipset.clips if c.name not in val_names], val_clips


def data_identity(layout: str, train: list[FaceClip], val: list[FaceClip]) -> str:
    """What a resumed run checks of its data: the layout and the names of the clips trained and
    validated on (sha256 of them)."""
    text = json.dumps([layout, sorted(c.name for c in train), sorted(c.name for c in val)])
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------
# Pairs


def other_window(start: int, starts: int, rng: np.random.Generator, width: int = FRAMES) -> int | None:
    """A seeded random window start in [0, starts) whose ``width`` frames share none with the window at
    ``start`` (a misaligned audio window, an identity reference); None when the clip has none."""
    choices = np.concatenate([np.arange(0, max(0, start - width + 1)), np.arange(start + width, starts)])
    return int(rng.choice(choices)) if len(choices) else None


class ClipWindows(torch.utils.data.Dataset):
    """Every ``stride``-th 5-frame window start of every clip that also has a second window not
    overlapping it; an item is a function of (seed, epoch, index) alone (``rng``): ``set_epoch``
    draws other items, and a resumed run sees the same ones."""

    def __init__(self, clips: list[FaceClip], seed: int = 0, stride: int = 1, needs: str = "a second window"):
        self.clips, self.seed, self.epoch = clips, seed, 0
        self.index: list[tuple[int, int, int]] = []  # clip, start, number of starts of that clip
        self.too_short: list[str] = []
        for c, clip in enumerate(clips):
            n = clip.window_starts()
            if n < FRAMES + 1:  # no window that does not overlap another
                self.too_short.append(f"{clip.name}: {clip.frames} frames, too short for {needs} "
                                      f"(needs {2 * FRAMES} frames with audio)")
                continue
            self.index += [(c, s, n) for s in range(0, n, stride)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, i])


class SyncPairs(ClipWindows):
    """Aligned (label 1) and misaligned (label 0) window pairs of ``clips`` for one expert's input.
    ``positive_fraction`` of the items are aligned; a misaligned item takes the audio of a window of the
    same clip that does not overlap the frames."""

    def __init__(self, clips: list[FaceClip], spec: ExpertInput, seed: int = 0, stride: int = 1,
                 positive_fraction: float = 0.5):
        super().__init__(clips, seed, stride, "a misaligned pair")
        self.spec, self.positive_fraction = spec, positive_fraction

    def pair(self, i: int) -> tuple[int, int, int, bool]:
        """(clip, frame start, audio start, aligned) of item i in this epoch."""
        c, s, n = self.index[i]
        rng = self.rng(i)
        if rng.random() < self.positive_fraction:
            return c, s, s, True
        return c, s, other_window(s, n, rng), False

    def __getitem__(self, i: int):
        c, s, t, aligned = self.pair(i)
        clip = self.clips[c]
        faces = expert_input(torch.from_numpy(clip.faces(s, FRAMES, self.spec.size))[None], self.spec)[0]
        mel = torch.from_numpy(np.ascontiguousarray(mel_window(clip.mel, t)))[None]
        return faces, mel, torch.tensor(float(aligned))


def mel_windows(clip: FaceClip, starts) -> torch.Tensor:
    """(len(starts), 1, 80, 16) mel windows of ``clip`` for the given frame starts."""
    return torch.from_numpy(np.stack([mel_window(clip.mel, int(t)) for t in starts]))[:, None]


__all__ = ["FaceClip", "ClipSet", "ClipWindows", "SyncPairs", "other_window", "open_clips", "split_clips",
           "clip_video", "video_clip", "LAYOUTS", "wav2lip_clip", "mel_windows"]
