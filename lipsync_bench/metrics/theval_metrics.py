"""THEval's face-mesh and voice-activity metrics (Newbyl/THEval cfe23fe, Apache-2.0): lip sync and
silent lip stability (its "Synchronization"), lip dynamics and eyebrow dynamics (its "Naturalness").
No ground-truth video: each is computed on the generated video alone (THEval scores a method by how
close its value comes to the ground truth's value, computed alike).

Every metric reads MediaPipe's face mesh (``faces.mediapipe_mesh.FaceMeshTracker``, landmarks as
fractions of the image: x / width, y / height) frame by frame; the two synchronisation metrics also
read Silero VAD's speech segments (``speech_segments``) of the video's audio track.

- ``theval_lip_sync`` (Synchronization/lip_sync.py): per frame, mouth openness = |mean y of 8 upper
  inner-lip points - mean y of 8 lower ones| / |mean x of the right eye corners (362, 263) - mean x of
  the left ones (33, 133)| (fractions of the image, as THEval; NaN without a face or at zero
  interocular distance); the audio's RMS in 50 ms frames hopped by 50 ms (librosa.feature.rms: centred,
  zero-padded by half a frame each side) interpolated linearly at the frame times i / fps. On the
  frames inside speech segments (frames int(start fps) .. int(end fps), both included) that have an
  openness, both are min-max normalised (+1e-8 in the denominator) and the value is the mean absolute
  difference. Fewer than 10% speech frames, or fewer than 2 such frames, give no value (THEval: NaN).
- ``theval_silent_lip_stability`` (Synchronization/silent_lip_stability.py): the frames outside speech,
  in runs of at least 0.3 fps frames (300 ms); per such frame with a face, the mean over the 8 pairs of
  |y upper - y lower| / the distance of landmarks 33 and 263 (pixels of the image the mesh saw; no
  value below 1e-3); the value is the median absolute deviation from the mean (THEval's MAD:
  median |x - mean|). Fewer than 2 values: no value.
- ``theval_lip_dynamics`` (Naturalness/lip_dynamics.py): the 780 distances between the 40 points of
  MediaPipe's lip contour (FACEMESH_LIPS) per frame with a face (pixels of the image the mesh saw), their
  standard deviation over time (ddof 0), averaged over the pairs.
- ``theval_eyebrow_dynamics`` (Naturalness/eyebrow_dynamics.py): per frame with a face, each side's
  distance of its eyebrow's centre (FACEMESH_*_EYEBROW points) to its eye's centre (FACEMESH_*_EYE),
  divided by the distance of the two eye centres (frames where it is below 1e-3 pixels are passed over);
  the value is the mean absolute change between consecutive such frames, both sides together (a frame
  without a face is passed over: the change spans it).

THEval's quirks are parameters (see ``declarations``), lipsync-bench's corrected choices the defaults:
``color`` (bgr: lip_sync.py converts decord's RGB frames with COLOR_BGR2RGB, so the mesh sees BGR),
``tracker`` (process: one tracker for every video of the process, as THEval's module-level FaceMesh;
video: a fresh one per video), ``refine_landmarks``, ``resize`` (256: lip_dynamics.py and
silent_lip_stability.py resize frames to 256x256 before the mesh), ``frames`` (silent lip stability:
silent = the tracker sees only the silent frames; seek-opencv = the frames cv2.VideoCapture returns when
THEval seeks each one), ``vad_seconds`` (0.1: silero's return_seconds=True rounding), ``vad_model``
(silero-vad-5.1.2: the model THEval pins) and ``rms_rate`` (the audio rate of the RMS: THEval's moviepy extraction
writes 44.1 kHz). The mesh runs once a video per distinct (color, tracker, refine_landmarks, resize,
frames) setting, shared by the accumulators of one pair.

A frame without a face is left out as THEval does (and counted in the warnings); a video without a face
in any frame, without an audio track (the two synchronisation metrics), or without the speech or silence
the metric needs, is an error naming the file (THEval writes NaN, or 0.0 for lip and eyebrow dynamics).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .. import media, weights
from ..errors import MediaError, MetricError, UnavailableError
from ..faces import mediapipe_mesh
from ..speech_segments import VAD_SAMPLE_RATE, speech_seconds, vad_model_path
from .declarations import THEVAL_HEAD_MOTION_REASON
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue

# --------------------------------------------------------------------------------------------------
# MediaPipe face-mesh indices (mediapipe's FACEMESH_* connection sets, as THEval reads them)

#: Upper and lower inner-lip points, paired (THEval's FACEMESH_LIPS_UPPER / _LOWER).
LIPS_UPPER = (191, 80, 81, 82, 13, 312, 311, 310)
LIPS_LOWER = (95, 88, 178, 87, 14, 317, 402, 318)
#: lip_sync.py's eye corners: the mean x of each pair.
EYE_CORNERS_LEFT = (33, 133)
EYE_CORNERS_RIGHT = (362, 263)
#: silent_lip_stability.py's interocular distance: landmarks 33 and 263.
OUTER_EYE_CORNERS = (33, 263)
#: The 40 points of mediapipe's FACEMESH_LIPS (sorted): 780 pairwise distances.
LIP_CONTOUR = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
               267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)
LIP_PAIRS = np.array(list(combinations(range(len(LIP_CONTOUR)), 2)))
#: The points of mediapipe's FACEMESH_LEFT_EYEBROW, _LEFT_EYE, _RIGHT_EYEBROW, _RIGHT_EYE (sorted).
LEFT_EYEBROW = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
RIGHT_EYEBROW = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)

#: The metrics that read the audio track's speech segments.
SPEECH_METRICS = ("theval_lip_sync", "theval_silent_lip_stability")
#: lip_sync.py: the RMS frame and hop, seconds; a video needs speech in this fraction of its frames.
RMS_SECONDS = 0.05
MIN_SPEECH_FRACTION = 0.1
#: silent_lip_stability.py: MIN_SILENCE_DURATION, 300 ms.
MIN_SILENCE_SECONDS = 0.3
#: Distances below these (pixels) give no value for the frame (silent lip stability, eyebrow dynamics).
MIN_EYE_DISTANCE = 1e-3
#: lip_sync.py and silent_lip_stability.py: the epsilon of the min-max normalisation.
NORM_EPS = 1e-8

# --------------------------------------------------------------------------------------------------
# The procedures, on landmark arrays: (n, 468 or 478, 3) in mediapipe's fractions, a row of NaN for a
# frame without a face


def mouth_openness(landmarks: np.ndarray) -> np.ndarray:
    """lip_sync.py's mouth openness per frame, in fractions of the image (y over x: THEval's ratio).

    Args:
        landmarks: (n, K, 3) mediapipe landmarks (x / width, y / height), NaN rows without a face.

    Returns:
        (n,) float64: |mean y upper - mean y lower| / |mean x right eye - mean x left eye|; NaN without a
        face or where the interocular distance is 0.

    Example:
        >>> points = np.zeros((1, 468, 3))
        >>> points[0, list(EYE_CORNERS_RIGHT), 0] = 0.5
        >>> points[0, list(LIPS_LOWER), 1] = 0.1
        >>> mouth_openness(points).tolist()
        [0.2]
    """
    lm = np.asarray(landmarks, np.float64)
    upper = lm[:, LIPS_UPPER, 1].mean(axis=1)
    lower = lm[:, LIPS_LOWER, 1].mean(axis=1)
    interocular = np.abs(lm[:, EYE_CORNERS_RIGHT, 0].mean(axis=1) - lm[:, EYE_CORNERS_LEFT, 0].mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(interocular > 0, np.abs(upper - lower) / interocular, np.nan)


def frame_rms(samples: np.ndarray, sample_rate: int, frame_times: np.ndarray) -> np.ndarray:
    """The audio's RMS in frames of ``RMS_SECONDS`` hopped by as much, at ``frame_times``: as
    ``librosa.feature.rms(y, frame_length=int(sr * 0.05), hop_length=int(sr * 0.05))`` (centred: the
    signal zero-padded by frame_length // 2 each side, librosa 0.11's pad_mode "constant"), the frames
    at times k hop / sr, interpolated linearly (``np.interp``, constant beyond the ends).

    Args:
        samples: mono samples (N,).
        sample_rate: their rate, Hz.
        frame_times: the video frames' times, seconds.

    Returns:
        (n,) float64.

    Example:
        >>> frame_rms(np.ones(16000, np.float32), 16000, np.array([0.0, 0.5])).round(3).tolist()
        [0.707, 1.0]
    """
    length = int(sample_rate * RMS_SECONDS)
    y = np.asarray(samples, np.float64).reshape(-1)
    padded = np.pad(y, length // 2)
    if len(padded) < length:
        raise ValueError(f"{len(y)} samples: shorter than one {length}-sample RMS frame")
    count = 1 + (len(padded) - length) // length
    rms = np.sqrt(np.mean(np.square(padded[:count * length].reshape(count, length)), axis=1))
    times = np.arange(count) * length / sample_rate
    return np.interp(np.asarray(frame_times, np.float64), times, rms)


def speech_frame_mask(segments: list[tuple[float, float]], fps: float, total: int) -> np.ndarray:
    """The frames inside speech segments (seconds): int(start fps) .. int(end fps), both included.

    Example:
        >>> speech_frame_mask([(0.1, 0.2)], 25, 8).nonzero()[0].tolist()
        [2, 3, 4, 5]
    """
    mask = np.zeros(total, bool)
    for start, end in segments:
        mask[max(int(start * fps), 0):max(min(int(end * fps) + 1, total), 0)] = True
    return mask


def lip_sync_value(openness: np.ndarray, volume: np.ndarray, speech: np.ndarray) -> float:
    """lip_sync.py's value from the per-frame openness (NaN without a face), RMS and speech mask: the mean
    absolute difference of the two, min-max normalised over the speech frames with an openness; NaN
    when under 10% of the frames are speech or fewer than 2 speech frames have an openness.

    Example:
        >>> lip_sync_value(np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0, 1.0]), np.ones(3, bool))
        0.333333331...
    """
    speech = np.asarray(speech, bool)
    mask = speech & ~np.isnan(openness)
    if speech.mean() < MIN_SPEECH_FRACTION or mask.sum() < 2:
        return math.nan
    o, v = np.asarray(openness)[mask], np.asarray(volume, np.float64)[mask]
    o = (o - o.min()) / (o.max() - o.min() + NORM_EPS)
    v = (v - v.min()) / (v.max() - v.min() + NORM_EPS)
    return float(np.mean(np.abs(o - v)))


def silent_frames(segments: list[tuple[float, float]], fps: float, total: int) -> list[int]:
    """silent_lip_stability.py's frames: outside every speech segment (frames int(start fps) ..
    int(end fps)), in runs of at least 0.3 fps consecutive frames.

    Example:
        >>> frames = silent_frames([(0.4, 2.0)], 25, 75)  # speech: frames 10 .. 50
        >>> frames[:10] == list(range(10)) and frames[10:] == list(range(51, 75))
        True
    """
    silent = ~speech_frame_mask(segments, fps, total)
    out, run = [], []
    for i in range(total + 1):
        if i < total and silent[i]:
            run.append(i)
            continue
        if len(run) >= MIN_SILENCE_SECONDS * fps:
            out += run
        run = []
    return out


def pixels(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, K, 2) x, y in pixels of the image the mesh saw."""
    return np.asarray(landmarks, np.float64)[..., :2] * np.array([width, height], np.float64)


def lip_opening(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """silent_lip_stability.py's lip opening per frame: the mean over the 8 inner-lip pairs of
    |y upper - y lower| / the distance of landmarks 33 and 263, pixels of the image the mesh saw
    (THEval: 256x256); NaN without a face or below 1e-3.

    Example:
        >>> points = np.zeros((1, 468, 3))
        >>> points[0, 263, 0], points[0, list(LIPS_LOWER), 1] = 0.5, 0.25
        >>> lip_opening(points, 256, 256).tolist()
        [0.5]
    """
    xy = pixels(landmarks, width, height)
    eyes = np.linalg.norm(xy[:, OUTER_EYE_CORNERS[0]] - xy[:, OUTER_EYE_CORNERS[1]], axis=1)
    gaps = np.abs(xy[:, LIPS_UPPER, 1] - xy[:, LIPS_LOWER, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        opening = (gaps / eyes[:, None]).mean(axis=1)
    return np.where(eyes >= MIN_EYE_DISTANCE, opening, np.nan)


def silent_lip_mad(openings: np.ndarray) -> float:
    """THEval's MAD of the openings (NaN ones left out): median |x - mean|; NaN under 2 values.

    Example:
        >>> round(silent_lip_mad(np.array([1.0, 2.0, 4.0, np.nan])), 6)
        1.333333
    """
    values = [float(x) for x in np.asarray(openings) if not np.isnan(x)]
    if len(values) < 2:
        return math.nan
    mean = float(np.mean(values))
    return float(statistics.median([abs(x - mean) for x in values]))


def lip_dynamics_value(landmarks: np.ndarray, width: int, height: int) -> float:
    """lip_dynamics.py's value: the mean over the 780 lip-contour pairs of their distance's standard
    deviation over the frames with a face (pixels of the image the mesh saw); 0.0 without any (THEval).

    Example:
        >>> still = np.random.default_rng(0).random((1, 468, 3)).repeat(4, axis=0)
        >>> lip_dynamics_value(still, 256, 256)
        0.0
    """
    xy = pixels(landmarks, width, height)
    xy = xy[~np.isnan(xy).any(axis=(1, 2))][:, LIP_CONTOUR]
    if not len(xy):
        return 0.0
    distances = np.linalg.norm(xy[:, LIP_PAIRS[:, 0]] - xy[:, LIP_PAIRS[:, 1]], axis=2)
    return float(np.mean(np.std(distances, axis=0)))


def eyebrow_distances(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """Per frame, (left, right) eyebrow-centre to eye-centre distances over the eye-centre distance
    (pixels of the image the mesh saw); NaN without a face or where that distance is below 1e-3."""
    xy = pixels(landmarks, width, height)
    left_eye, right_eye = xy[:, LEFT_EYE].mean(axis=1), xy[:, RIGHT_EYE].mean(axis=1)
    scale = np.linalg.norm(left_eye - right_eye, axis=1)
    left = np.linalg.norm(xy[:, LEFT_EYEBROW].mean(axis=1) - left_eye, axis=1)
    right = np.linalg.norm(xy[:, RIGHT_EYEBROW].mean(axis=1) - right_eye, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.stack([left / scale, right / scale], axis=1)
    out[~(scale >= MIN_EYE_DISTANCE)] = np.nan
    return out


def eyebrow_dynamics_value(landmarks: np.ndarray, width: int, height: int) -> float:
    """eyebrow_dynamics.py's value: the mean absolute change of the normalised eyebrow-eye distances
    between consecutive frames that have one (frames without are passed over), both sides together;
    0.0 with fewer than 2 such frames (THEval).

    Example:
        >>> points = np.zeros((3, 468, 3))
        >>> points[:, list(LEFT_EYE), 0] = 0.5
        >>> points[:, list(LEFT_EYEBROW), 1] = [[0.1], [0.2], [0.1]]
        >>> round(eyebrow_dynamics_value(points, 100, 100), 6)
        0.028615
    """
    d = eyebrow_distances(landmarks, width, height)
    d = d[~np.isnan(d).any(axis=1)]
    if len(d) < 2:
        return 0.0
    return float(np.abs(np.diff(d, axis=0)).mean())


# --------------------------------------------------------------------------------------------------
# The face mesh, once a video per setting


@dataclass(frozen=True)
class MeshSetting:
    """What the mesh sees: the colour order fed to it, the tracker's scope, its refinement, the square
    size frames are resized to first (0: as decoded) and which frames (None: every one; else the key of
    a selection, e.g. the silent frames)."""

    color: str = "rgb"
    tracker: str = "video"
    refine_landmarks: bool = True
    resize: int = 0
    frames: tuple | None = None


#: The mesh's models, loaded once per process and model files; trackers share them (``fresh()``).
_MODELS: dict[tuple, object] = {}
#: Tracker "process": one tracking state per setting and side for the process, never reset (THEval's
#: module-level FaceMesh; the GT's own run keeps a state of its own, as THEval runs the GT's list apart).
_PROCESS_TRACKERS: dict[tuple, object] = {}


def mesh_tracker(setting: MeshSetting, side: str = "gen"):
    """The face mesh tracker of a setting for one video (``faces.mediapipe_mesh.FaceMeshTracker``,
    mediapipe's FaceMesh(max_num_faces=1) thresholds 0.5): a fresh tracking state for tracker "video";
    for "process", the state the side ("gen" or "gt": the GT's own run) carries from its previous video.
    The generated video and its GT, fed chunk by chunk side by side, never share a state."""
    files = tuple(str(mediapipe_mesh.require_model(n))
                  for n in mesh_files({"refine_landmarks": setting.refine_landmarks}))
    base = _MODELS.get((setting.refine_landmarks, files))
    if base is None:
        base = _MODELS[(setting.refine_landmarks, files)] = mediapipe_mesh.FaceMeshTracker(
            refine_landmarks=setting.refine_landmarks, static_image_mode=False, min_detection_confidence=0.5,
            min_tracking_confidence=0.5)
    if setting.tracker == "video":
        return base.fresh()
    tracker = _PROCESS_TRACKERS.setdefault((setting, files, side), base.fresh())
    tracker.videos_before = getattr(tracker, "videos_seen", 0)
    tracker.videos_seen = tracker.videos_before + 1
    return tracker


def mesh_input(frame: np.ndarray, color: str, resize: int) -> np.ndarray:
    """The image the mesh is given: an RGB uint8 frame resized to resize x resize (cv2.INTER_LINEAR, as
    THEval's cv2.resize) when resize > 0, its channels reversed for "bgr"."""
    if resize:
        frame = cv2.resize(np.ascontiguousarray(frame), (resize, resize), interpolation=cv2.INTER_LINEAR)
    if color == "bgr":
        frame = frame[..., ::-1]
    return np.ascontiguousarray(frame)


class MeshPass:
    """The face mesh over one video's frames for one setting: the landmarks of each frame the
    selection admits (``wanted(i)``; None: all), in order, each frame once however many accumulators
    feed the batch."""

    def __init__(self, setting: MeshSetting, path: Path | None, wanted: Callable[[int], bool] | None = None,
                 tracker_factory: Callable[[MeshSetting], object] = mesh_tracker):
        self.setting, self.path, self.wanted = setting, path, wanted
        self.tracker = tracker_factory(setting)
        self.points: dict[int, np.ndarray | None] = {}
        self.next = 0
        self.size: tuple[int, int] | None = None  # (width, height) of the images the mesh saw

    def update(self, frames: np.ndarray, start: int) -> None:
        for k in range(max(self.next - start, 0), len(frames)):
            i = start + k
            if self.wanted is not None and not self.wanted(i):
                continue
            image = mesh_input(frames[k], self.setting.color, self.setting.resize)
            self.size = (image.shape[1], image.shape[0])
            found = self.tracker.process(image)
            self.points[i] = None if found is None else np.asarray(found, np.float64)
        self.next = max(self.next, start + len(frames))

    def landmarks(self, frames: list[int] | None = None) -> np.ndarray:
        """(n, K, 3) landmarks of ``frames`` (default: every frame seen), NaN rows without a face."""
        frames = list(range(self.next)) if frames is None else frames
        count = next((len(p) for p in self.points.values() if p is not None), 468)
        out = np.full((len(frames), count, 3), np.nan)
        for row, i in enumerate(frames):
            p = self.points.get(i)
            if p is not None:
                out[row] = p[:count]
        return out


# --------------------------------------------------------------------------------------------------
# The accumulators


def _cached(ctx: MetricContext, key: tuple, make: Callable):
    """``make()`` once per pair (``ctx.shared``), its MetricError raised again for each sibling."""
    if key not in ctx.shared:
        try:
            ctx.shared[key] = make()
        except MetricError as exc:
            ctx.shared[key] = exc
    if isinstance(ctx.shared[key], MetricError):
        raise ctx.shared[key]
    return ctx.shared[key]


def _audio(ctx: MetricContext, rate: int) -> np.ndarray:
    def read():
        try:
            samples = media.read_audio(ctx.gen, rate, limits=ctx.decode)
        except MediaError as exc:
            raise MetricError(f"{exc}; THEval's lip sync and silent lip stability need the audio track") from None
        if not len(samples):
            raise MetricError(f"{ctx.gen}: the audio track holds no samples; THEval's lip sync and silent lip "
                              "stability need speech")
        return samples
    return _cached(ctx, ("theval-audio", rate), read)


def _speech(ctx: MetricContext, rounding: str, model: str) -> list[tuple[float, float]]:
    return _cached(ctx, ("theval-vad", rounding, model),
                   lambda: speech_seconds(_audio(ctx, VAD_SAMPLE_RATE), VAD_SAMPLE_RATE, rounding, model))


def read_seeked_frames(path: Path, frames: list[int]):
    """silent_lip_stability.py's reads: for each frame index, ``cv2.VideoCapture.set(CAP_PROP_POS_FRAMES, i)``
    then ``read()``, as RGB uint8; the reads stop at the first that fails (THEval's ``break``). OpenCV's
    seek is not exact: in the GRID clips (MPEG-1, 12-frame GOPs) a seek to frame 0 returns frame 12 and
    seeks to frames 1-13 return frame 13 (OpenCV 4.11 and 5.1 alike).

    Yields:
        (index asked, (H, W, 3) RGB frame).
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MetricError(f"{path}: OpenCV cannot open it (THEval's silent lip stability seeks with cv2.VideoCapture)")
    try:
        for i in frames:
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, frame = cap.read()
            if not ok:
                return
            yield i, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def _fps(ctx: MetricContext) -> float:
    if ctx.fps:
        return float(ctx.fps)
    native = media.probe(ctx.gen, ctx.decode).native_fps
    if not native:
        raise MetricError(f"{ctx.gen}: its frame rate is unknown (THEval's frame times are i / fps)")
    return float(native)


def _setting(params: dict, frames: tuple | None = None) -> MeshSetting:
    return MeshSetting(params["color"], params["tracker"], bool(params["refine_landmarks"]), int(params["resize"]),
                       frames)


class _SilentSelection:
    """silent_lip_stability.py's seeks, decided while the frames stream: the silent frames of closed runs
    of at least 0.3 fps frames, and every frame of the last silent run (its length is known at the end;
    ``silent_frames`` then drops it when short)."""

    def __init__(self, segments: list[tuple[float, float]], fps: float):
        self.segments, self.fps = segments, fps
        ends = [int(e * fps) for _, e in segments]
        self.tail = max(ends) + 1 if ends else 0
        self.kept = set(silent_frames(segments, fps, self.tail))

    def __call__(self, i: int) -> bool:
        return i >= self.tail or i in self.kept


class TheValAccumulator(Accumulator):
    """One THEval metric (``name``) of one video; the mesh passes and the audio are shared by the THEval
    accumulators of the pair (``ctx.shared``)."""

    def __init__(self, name: str, params: dict, ctx: MetricContext,
                 tracker_factory: Callable[[MeshSetting], object] | None = None):
        self.name, self.params, self.ctx = name, params, ctx
        if tracker_factory is None:  # the GT's own run (its video is the pair's GT) tracks apart
            side = "gt" if ctx.gt is not None and ctx.gen == ctx.gt else "gen"
            tracker_factory = lambda setting: mesh_tracker(setting, side)  # noqa: E731
        self.segments = None
        self.seek = False
        if name in SPEECH_METRICS:
            self.fps = _fps(ctx)
            self.segments = _speech(ctx, params["vad_seconds"], params["vad_model"])
        wanted, frames = None, None
        if name == "theval_silent_lip_stability" and params["frames"] == "silent":
            frames = ("silent", params["vad_seconds"], params["vad_model"])
            wanted = _SilentSelection(self.segments, self.fps)
        elif name == "theval_silent_lip_stability" and params["frames"] == "seek-opencv":
            # the mesh sees no streamed frame: result() reads the silent frames through OpenCV's seeks
            frames = ("seek-opencv", params["vad_seconds"], params["vad_model"])
            self.seek = True
        setting = _setting(params, frames)
        self.mesh = _cached(ctx, ("theval-mesh", setting), lambda: MeshPass(setting, ctx.gen, wanted, tracker_factory))

    def update(self, batch: FrameBatch) -> None:
        if self.seek:  # the frames are counted here, read at the end through OpenCV's seeks
            self.seen = max(getattr(self, "seen", 0), batch.start + len(batch.gen_full))
            return
        self.mesh.update(batch.gen_full.cpu().numpy(), batch.start)

    def _no_face(self, total: int) -> MetricError:
        return MetricError(f"{self.ctx.gen}: the face mesh found no face in any of its {total} frames")

    def result(self) -> MetricValue:
        total = getattr(self, "seen", 0) if self.seek else self.mesh.next
        if not total:
            raise MetricError(f"{self.ctx.gen}: no frames")
        value = getattr(self, "_" + self.name.removeprefix("theval_"))(total)
        before = getattr(self.mesh.tracker, "videos_before", None)
        if self.mesh.setting.tracker == "process" and before is not None:  # recorded: the value depends on it
            value.warnings.append(f"tracker=process: the mesh tracker came from {before} earlier video(s) of this "
                                  "process, as THEval's module-level FaceMesh; another order or --workers gives "
                                  "another value")
            value.details = {**(value.details or {}), "tracker_videos_before": before}
        return value

    def _faceless(self, landmarks: np.ndarray) -> int:
        return int(np.isnan(landmarks).any(axis=(1, 2)).sum())

    def _lip_sync(self, total: int) -> MetricValue:
        landmarks = self.mesh.landmarks()
        missing = self._faceless(landmarks)
        if missing == total:
            raise self._no_face(total)
        openness = mouth_openness(landmarks)
        rate = int(self.params["rms_rate"])
        volume = frame_rms(_audio(self.ctx, rate), rate, np.arange(total) / self.fps)
        speech = speech_frame_mask(self.segments, self.fps, total)
        value = lip_sync_value(openness, volume, speech)
        used = int((speech & ~np.isnan(openness)).sum())
        if math.isnan(value):
            raise MetricError(f"{self.ctx.gen}: speech in {int(speech.sum())} of {total} frames, {used} of them with "
                              f"a face (THEval's lip sync needs speech in {MIN_SPEECH_FRACTION:.0%} of the frames "
                              "and 2 speech frames with a face)")
        warnings = [f"{missing} of {total} frames without a face (left out)"] if missing else []
        return MetricValue(value, used, warnings, details={"speech_frames": int(speech.sum()),
                                                           "frames_without_face": missing})

    def _silent_lip_stability(self, total: int) -> MetricValue:
        frames = silent_frames(self.segments, self.fps, total)
        if not frames:
            raise MetricError(f"{self.ctx.gen}: no silence of {MIN_SILENCE_SECONDS * 1000:.0f} ms or more in its "
                              f"{total} frames (THEval's silent lip stability needs one)")
        if self.seek and not self.mesh.points:  # once per pair: the mesh pass is shared
            for i, frame in read_seeked_frames(Path(self.ctx.gen), frames):
                self.mesh.update(frame[None], i)
        landmarks = self.mesh.landmarks(frames)
        missing = self._faceless(landmarks)
        if missing == len(frames):
            raise MetricError(f"{self.ctx.gen}: the face mesh found no face in any of its {len(frames)} silent frames")
        openings = lip_opening(landmarks, *self.mesh.size)
        value = silent_lip_mad(openings)
        if math.isnan(value):
            raise MetricError(f"{self.ctx.gen}: {int((~np.isnan(openings)).sum())} silent frames with a lip opening "
                              "(THEval's silent lip stability needs 2)")
        warnings = [f"{missing} of {len(frames)} silent frames without a face (left out)"] if missing else []
        return MetricValue(value, int((~np.isnan(openings)).sum()), warnings,
                           details={"silent_frames": len(frames), "frames_without_face": missing})

    def _lip_dynamics(self, total: int) -> MetricValue:
        landmarks = self.mesh.landmarks()
        missing = self._faceless(landmarks)
        if missing == total:
            raise self._no_face(total)
        value = lip_dynamics_value(landmarks, *self.mesh.size)
        warnings = [f"{missing} of {total} frames without a face (left out)"] if missing else []
        return MetricValue(value, total - missing, warnings, details={"frames_without_face": missing})

    def _eyebrow_dynamics(self, total: int) -> MetricValue:
        landmarks = self.mesh.landmarks()
        missing = self._faceless(landmarks)
        if missing == total:
            raise self._no_face(total)
        distances = eyebrow_distances(landmarks, *self.mesh.size)
        used = int((~np.isnan(distances).any(axis=1)).sum())
        if used < 2:
            raise MetricError(f"{self.ctx.gen}: {used} frame(s) with a face (THEval's eyebrow dynamics needs 2)")
        value = eyebrow_dynamics_value(landmarks, *self.mesh.size)
        warnings = [f"{total - used} of {total} frames without a face (passed over)"] if used < total else []
        return MetricValue(value, used, warnings, details={"frames_without_face": missing})


def make_accumulator(name: str, params: dict, ctx: MetricContext) -> Accumulator:
    """The accumulator of THEval metric ``name`` (``declarations.THEVAL_*``)."""
    return TheValAccumulator(name, params, ctx)


def mesh_files(params: dict) -> tuple[str, str]:
    """The weights names of the detector and of the mesh a setting runs (refined: the attention mesh)."""
    return mediapipe_mesh.DETECTOR, (mediapipe_mesh.MESH_ATTENTION if params.get("refine_landmarks")
                                     else mediapipe_mesh.MESH)


def mesh_available(params: dict) -> str | None:
    """None when the face mesh runs here with these parameters, else why not."""
    try:  # the files alone: loading the models is left to the run
        for name in mesh_files(params):
            mediapipe_mesh.require_model(name)
        if params.get("vad_model", "silero-vad") != "silero-vad":
            vad_model_path(params["vad_model"])
    except UnavailableError as exc:
        return str(exc)
    return None


def weights_for(name: str, params: dict) -> list[tuple[Path, dict]]:
    """The files a THEval metric loads: the face mesh's models and, for the two synchronisation metrics,
    Silero VAD's (for the protocol)."""
    out = [(path, weights.describe(n, path)) for n in mesh_files(params) for path in [mediapipe_mesh.require_model(n)]]
    if name in SPEECH_METRICS:
        model = params.get("vad_model", "silero-vad")
        out.append((vad_model_path(model), weights.describe(model, vad_model_path(model))))
    return out


def head_motion_unavailable(params: dict, ctx: MetricContext) -> Accumulator:
    """THEval's head motion dynamics: always unavailable (``declarations.THEVAL_HEAD_MOTION_REASON``)."""
    raise UnavailableError(THEVAL_HEAD_MOTION_REASON)
