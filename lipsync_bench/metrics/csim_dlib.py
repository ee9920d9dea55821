"""CSIM with dlib's face-recognition network: the identity similarity of generated and ground-truth
frames, the cosine similarity of their 128-d face descriptors, averaged over the frames where both
videos have a detected face; higher is better.

Descriptors are dlib's own ``face_recognition_model_v1.compute_face_descriptor(frame, shape)`` with its
defaults (no jitter, padding 0.25): the face chip is aligned by dlib from the 68 landmarks of the face
stage (the protocol's landmarker), 150x150, through the ResNet
``dlib_face_recognition_resnet_model_v1.dat``. That file ships in the PyPI package
``face-recognition-models`` (an MIT-licensed package of dlib's models; see dlib's model repository for
the model's own terms), so CSIM runs offline with nothing downloaded. Its checksum goes into the
protocol.
"""
from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np

from .. import weights
from .face_identity import IdentityAccumulator, cosine_similarity  # noqa: F401 - cosine_similarity: API
from .streaming import Accumulator, MetricContext

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"

_MODELS: dict[str, object] = {}


def model_file() -> Path | None:
    """The descriptor network shipped in ``face-recognition-models``, or None without the package."""
    return weights.find("dlib-face-recognition")  # found without importing it (its __init__ needs pkg_resources)


def load_model(path: Path):
    key = str(path)
    if key not in _MODELS:
        _MODELS[key] = dlib.face_recognition_model_v1(key)
    return _MODELS[key]


def descriptors(model, frames: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """128-d dlib descriptors of faces: one RGB uint8 frame (H, W, 3), its face box (x1, y1, x2, y2) and
    its 68 landmarks a face -> (n, 128) float64."""
    out = []
    for frame, box, points in zip(frames, boxes, landmarks, strict=True):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = dlib.full_object_detection(dlib.rectangle(x1, y1, x2, y2),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in points])
        out.append(np.asarray(model.compute_face_descriptor(np.ascontiguousarray(frame), shape), dtype=np.float64))
    return np.stack(out) if out else np.zeros((0, 128))


class _DlibAccumulator(IdentityAccumulator):
    def __init__(self, params: dict, ctx: MetricContext):
        model = load_model(ctx.weights_path)
        super().__init__(ctx, lambda frames, boxes, landmarks: descriptors(model, frames, boxes, landmarks),
                         params["frames"])


def make_accumulator(params: dict, ctx: MetricContext) -> Accumulator:
    """CSIM-dlib's accumulator (``declarations.CSIM_DLIB``)."""
    return _DlibAccumulator(params, ctx)
