"""One face analysis per video, shared by every face metric and cached: per-frame detections and
landmarks, every face track (within shots, where the protocol finds them), the main speaker's track,
and the fraction of frames with a detected face.

The analysis streams: ``FaceAnalyzer.update`` takes chunks of frames as the pipeline decodes them, so
a video is decoded once for all metrics. Results are cached under ``<cache>/faces/`` keyed by the
file's content hash, the frame rate, the backend and its parameters, and the tracking parameters.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import MediaError, MetricError
from ..files import atomic_write_bytes
from ..media import iter_frames, read_audio, read_frames, write_video
from ..rendering import Document
from ..weights import sha256
from .backends import get_backend
from .s3fd import s3fd_detector
from .settings import DEFAULT_TRACK, LINKINGS, TrackParams
from .shots import ContentShots
from .track import Track, link_tracks, main_track_key, smoothed_centres, syncnet_crop

MIN_FACE_FRACTION = 0.5  # below this, a video's face metrics are an error, not a number


@dataclass
class FaceData:
    """Per frame of a video (T frames): the main track's box (NaN outside the track), whether the
    frame had its own detection, its 68 landmarks (NaN where it had none), and the frame's
    highest-scoring detection whichever track it joined (``top_boxes``, NaN without one: the box that
    scripts without tracking take, e.g. TalkLip's). Pixels of the frame."""

    boxes: np.ndarray  # (T, 4)
    detected: np.ndarray  # (T,) bool
    landmarks: np.ndarray  # (T, 68, 2)
    params: dict
    top_boxes: np.ndarray | None = None  # (T, 4)
    tracks: list[Track] | None = None  # every track, as the linking found them (None: the main one alone)

    @property
    def frames(self) -> int:
        return len(self.detected)

    def main_track(self) -> Track | None:
        """The main speaker's track (the frames its boxes span), or None when there is none."""
        tracked = np.isfinite(self.boxes[:, 0]).nonzero()[0]
        if len(tracked) == 0:
            return None
        span = slice(tracked[0], tracked[-1] + 1)
        return Track(int(tracked[0]), self.boxes[span], self.detected[span], np.zeros(len(tracked), int))

    def all_tracks(self) -> list[Track]:
        """Every face track in the order the linking found them (shot by shot); the main one alone for
        an analysis that kept only it."""
        if self.tracks is not None:
            return self.tracks
        main = self.main_track()
        return [main] if main is not None else []

    @property
    def face_fraction(self) -> float:
        return float(self.detected.mean()) if self.frames else 0.0

    def save(self, path: Path) -> None:
        top = self.top_boxes if self.top_boxes is not None else np.full((self.frames, 4), np.nan)
        extra = {}
        if self.tracks is not None:  # every track, concatenated
            extra = {"track_starts": np.array([t.start for t in self.tracks], int),
                     "track_lengths": np.array([len(t.boxes) for t in self.tracks], int),
                     "track_boxes": np.concatenate([np.zeros((0, 4))] + [t.boxes for t in self.tracks]),
                     "track_detected": np.concatenate([np.zeros(0, bool)] + [t.detected for t in self.tracks])}
        buf = io.BytesIO()
        np.savez_compressed(buf, boxes=self.boxes, detected=self.detected, landmarks=self.landmarks,
                            params=json.dumps(self.params), top_boxes=top, **extra)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> "FaceData":
        """A cached analysis; one without every field (an older cache) raises KeyError: compute it again."""
        with np.load(path, allow_pickle=False) as z:
            tracks = None
            if "track_starts" in z.files:
                ends = np.cumsum(z["track_lengths"])
                tracks = [Track(int(start), z["track_boxes"][end - n:end], z["track_detected"][end - n:end],
                                np.zeros(n, int)) for start, n, end in zip(z["track_starts"], z["track_lengths"],
                                                                          ends, strict=True)]
            return cls(z["boxes"], z["detected"], z["landmarks"], json.loads(str(z["params"])), z["top_boxes"],
                       tracks)


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes; of a frame folder, of its files' names and digests in name order.
    Digests are remembered per file for the process, so a GT shared by the region and LMD is read once."""
    path = Path(path)
    if not path.is_dir():
        return sha256(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        h.update(f"{f.name}:{sha256(f)}\n".encode())
    return h.hexdigest()


class FaceAnalyzer:
    """Streams a video's frames through the detector and landmarker; ``result()`` tracks the faces.

    ``detector``: "landmarker" (the landmarker's own) or "s3fd-syncnet-python" (syncnet_python's S3FD,
    ``sfd_face.pth``, on ``device``: every detection is tracked, the landmarker places the points of the
    best ``max_faces``); ``shots``: "none" or "pyscenedetect" (tracks never cross a cut; shots shorter
    than ``min_track`` frames hold none, as syncnet_python's pipeline skips them); ``linking``: how a
    frame's detections continue a track (``settings.LINKINGS``). Non-default settings are part of
    ``params()`` (the cache key and the recorded face pipeline); the defaults leave it as it was.
    ``repeated_frame``: a frame the decoding repeated that the shots leave out (``reencode``'s step 2)."""

    def __init__(self, backend: str = "auto", track: TrackParams = DEFAULT_TRACK, max_faces: int = 4,
                 detector: str = "landmarker", shots: str = "none", linking: str = "joonson", device: str = "cpu",
                 repeated_frame: int | None = None, **backend_options):
        self.backend = get_backend(backend, **backend_options)
        self.track_params = track
        self.max_faces = max_faces  # the highest-scoring faces a frame that get landmarks
        self.detector = s3fd_detector(device) if detector == "s3fd-syncnet-python" else None
        self.shots = ContentShots(repeated_frame) if shots == "pyscenedetect" else None
        if linking not in LINKINGS:
            raise ValueError(f"linking must be one of {LINKINGS}, not {linking!r}")
        self.linking = linking
        self.detections: list[np.ndarray] = []
        self.points: list[np.ndarray] = []  # per frame: (k, 68, 2), one per detection (NaN past max_faces)

    def params(self) -> dict:
        out = {**self.backend.params(), "track": asdict(self.track_params), "max_faces": self.max_faces}
        if self.detector is not None:
            out["detector"] = self.detector.params()
        if self.shots is not None:
            out["shots"] = self.shots.params()
        if self.linking != "joonson":
            out["linking"] = self.linking
        return out

    def update(self, frames: np.ndarray) -> None:
        if self.shots is not None:
            self.shots.update(frames)
        if self.detector is not None:  # every detection is tracked; the best max_faces get points
            for frame, dets in zip(frames, self.detector.detect(frames), strict=True):
                self.detections.append(dets)
                points = np.full((len(dets), 68, 2), np.nan)
                for j, d in enumerate(dets[:self.max_faces]):
                    points[j] = self.backend.landmarks(frame, d)
                self.points.append(points)
            return
        for frame in frames:
            dets = self.backend.detect(frame)
            dets = dets[np.argsort(-dets[:, 4], kind="stable")[: self.max_faces]]
            self.detections.append(dets)
            self.points.append(np.stack([self.backend.landmarks(frame, d) for d in dets]) if len(dets)
                               else np.zeros((0, 68, 2)))

    def _tracks(self) -> list[Track]:
        """Every track, as found; within each shot of at least ``min_track`` frames where shots are found."""
        if self.shots is None and self.detector is None and self.linking == "joonson":
            return link_tracks(self.detections, self.track_params)
        shots = self.shots.shots(len(self.detections)) if self.shots is not None else [(0, len(self.detections))]
        out = []
        for start, end in shots:
            if self.shots is None or end - start >= self.track_params.min_track:
                out += link_tracks(self.detections[start:end], self.track_params, self.linking, "found", start)
        return out

    def result(self) -> FaceData:
        n = len(self.detections)
        boxes = np.full((n, 4), np.nan)
        detected = np.zeros(n, dtype=bool)
        landmarks = np.full((n, 68, 2), np.nan)
        top = np.array([d[0, :4] if len(d) else np.full(4, np.nan) for d in self.detections]).reshape(n, 4)
        tracks = self._tracks()
        if tracks:
            main = max(tracks, key=main_track_key)
            boxes[main.frames] = main.boxes
            for f, j in zip(main.frames, main.det_index, strict=False):
                if j >= 0:
                    detected[f] = True
                    landmarks[f] = self.points[f][j]
        found = tracks if (self.shots or self.detector or self.linking != "joonson") else None
        return FaceData(boxes, detected, landmarks, self.params(), top, found)


def cache_file(cache_dir: Path, video: Path, fps: float, params: dict) -> Path:
    key = json.dumps({"content": content_hash(video), "fps": fps, "params": params}, sort_keys=True)
    return Path(cache_dir) / "faces" / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".npz")


def analyze_file(path: Path, fps: float, cache_dir: Path, landmarker: str = "auto") -> FaceData:
    """The face analysis of a whole input, from the cache or computed (decoding it) and cached."""

    analyzer = FaceAnalyzer(landmarker)
    file = cache_file(cache_dir, path, fps, analyzer.params())
    if file.is_file():
        try:
            return FaceData.load(file)
        except (OSError, ValueError, KeyError):  # a damaged or older cache entry is computed again
            pass
    for chunk in iter_frames(path, fps):
        analyzer.update(chunk)
    data = analyzer.result()
    data.save(file)
    return data


def require_faces(data: FaceData, video: Path) -> None:
    if data.face_fraction < MIN_FACE_FRACTION:
        raise MetricError(f"{video}: a face was found in {data.face_fraction:.0%} of {data.frames} frames "
                          f"(needs at least {MIN_FACE_FRACTION:.0%})")


def overlay(frames: np.ndarray, data: FaceData) -> np.ndarray:
    """Frames with the main track's box (green where detected, yellow where interpolated) and the 68
    landmarks (mouth in red) drawn on them, for a person to see what the metrics saw."""
    out = frames.copy()
    for f in range(min(len(out), data.frames)):
        if np.isfinite(data.boxes[f]).all():
            x1, y1, x2, y2 = data.boxes[f].astype(int)
            colour = (0, 200, 0) if data.detected[f] else (230, 200, 0)
            cv2.rectangle(out[f], (x1, y1), (x2, y2), colour, 2)
        if data.detected[f]:
            for i, (x, y) in enumerate(data.landmarks[f].astype(int)):
                cv2.circle(out[f], (x, y), 2, (255, 0, 0) if i >= 48 else (0, 160, 255), -1)
    return out


def syncnet_crops(frames: np.ndarray, data: FaceData, crop_scale: float = 0.4) -> np.ndarray:
    """224x224 face crops (syncnet_python's geometry and smoothing) of the frames the main track spans."""

    track = data.main_track()
    if track is None:
        raise MetricError("no face track to crop")
    centres = smoothed_centres(track)
    return np.stack([syncnet_crop(frames[track.start + i], *c, crop_scale=crop_scale)
                     for i, c in enumerate(centres)])


class FaceInspection(Document):
    """``faces``: the fraction of a video's frames with a face, the main track, the face stage's settings,
    and the overlay written (``--out``)."""

    def text(self) -> str:
        return (f"{self['video']}: a face in {self['face_fraction']:.1%} of {self['frames']} frames (main track "
                f"over {self['tracked_frames']} frames; landmarker {self['face_pipeline']['backend']})"
                + (f"; overlay written to {self['overlay']}" if "overlay" in self else ""))


def inspect_video(video: Path, out: Path | None = None, fps: float = 25.0, landmarker: str = "auto") -> FaceInspection:
    """Detect, track and landmark the faces of ``video`` as the face metrics do (``faces``); with ``out``,
    write the video with what was found drawn on it (its audio kept, when it has some)."""
    analyzer = FaceAnalyzer(landmarker)
    frames = read_frames(video, fps)
    analyzer.update(frames)
    data = analyzer.result()
    doc = FaceInspection(video=str(video), frames=data.frames, face_fraction=data.face_fraction,
                         tracked_frames=int(np.isfinite(data.boxes[:, 0]).sum()), face_pipeline=data.params)
    if out:
        try:
            audio = read_audio(video)
        except MediaError:
            audio = None  # no audio track: the overlay is silent too
        write_video(out, overlay(frames, data), fps, audio)
        doc["overlay"] = str(out)
    return doc
