"""MediaPipe's face detector and 468-point face mesh (478 with ``refine_landmarks``), run offline on the
bundled ``.tflite`` models through ai-edge-litert, as mediapipe 0.10.21's legacy
``mp.solutions.face_mesh.FaceMesh`` runs them with ``max_num_faces=1``.

The graph reproduced (constants from mediapipe v0.10.21's sources, cited where used):
BlazeFace short range on the whole frame letterboxed into 128x128 -> the best detection -> a rotated
square ROI 1.5x its box -> the 192x192 crop -> 468 landmarks and a face-presence score -> back into
the frame. In video mode the next frame's ROI comes from this frame's landmarks, and the detector
runs only when there is no tracked face.

Landmarks are mediapipe's normalised convention: x / width, y / height, z in the units of x
(``z * width`` is pixels), smaller z nearer the camera.

``refine_landmarks=True`` (478 points, ``face_landmark_with_attention.tflite``): that model calls
mediapipe's custom TFLite ops (Landmarks2TransformMatrix, TransformTensorBilinear, TransformLandmarks),
which ai-edge-litert lacks; ``mediapipe_ops.CustomOpModel`` runs its standard-op pieces through LiteRT
and those three ops in numpy. Its lips (80), eyes (71 each) and irises (5 each) then replace or extend
the 468-point mesh as mediapipe's LandmarksRefinementCalculator does.

Agreement with mediapipe 0.10.21's own FaceMesh (video mode, 8 GRID clips at 360x288, the same frames
with a face): 468 points mean 0.010-0.022 px, max 0.05-0.17 px apart; 478 points (refine_landmarks)
mean 0.014-0.032 px, max 0.06-0.39 px, z within 0.30 px (tests/test_mediapipe_mesh.py).
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import weights
from ..errors import UnavailableError
from .mediapipe_ops import CustomOpModel

#: The weights names (``lipsync_bench.weights.KNOWN``) of the models.
DETECTOR = "mediapipe-face-detection-short-range"
MESH = "mediapipe-face-landmark"
MESH_ATTENTION = "mediapipe-face-landmark-with-attention"

# face_detection_short_range.pbtxt / face_detection.pbtxt (SsdAnchorsCalculator, TensorsToDetections)
_DET_SIZE = 128
_DET_STRIDES = (8, 16, 16, 16)
_DET_SCALE = 128.0  # x_scale = y_scale = w_scale = h_scale
_DET_NUM_KEYPOINTS = 6
_SCORE_CLIP = 100.0
_NMS_IOU = 0.3  # non_max_suppression: INTERSECTION_OVER_UNION, WEIGHTED
# face_detection_front_detection_to_roi.pbtxt / face_landmark_landmarks_to_roi.pbtxt
_ROI_SCALE = 1.5
_DET_ROTATION_KEYPOINTS = (0, 1)  # left eye -> right eye
_MESH_ROTATION_LANDMARKS = (33, 263)  # left side of left eye -> right side of right eye
# face_landmark_cpu.pbtxt
_MESH_SIZE = 192
_FLOAT_MIN = np.float32(1.17549435e-38)  # landmarks_to_detection: x_max starts at numeric_limits<float>::min()
# tensors_to_face_landmarks_with_attention.pbtxt (LandmarksRefinementCalculator): the attention model's
# outputs after the mesh (x, y only), in its output order, and the mesh indices each one overwrites; the
# mesh keeps its z there (z_refinement none); each iris's z is the mean of its eye's first 16 mesh points'
_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
         78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
         76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
         62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407)
_LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
             130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
             226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
             35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
             156, 70, 63, 105, 66, 107, 55, 193)
_RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
              359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
              446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
              265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
              383, 300, 293, 334, 296, 336, 285, 417)
_LEFT_IRIS, _RIGHT_IRIS = tuple(range(468, 473)), tuple(range(473, 478))
_IRIS_Z_POINTS = 16  # indexes_for_average: the eye map's first 16 entries


def _anchors() -> np.ndarray:
    """The 896 anchor centres (x, y) of face_detection.pbtxt's SsdAnchorsCalculator options
    (fixed_anchor_size: width and height 1; layers of one stride share a grid; each layer gives two
    anchors a cell: aspect ratio 1 and the interpolated scale)."""
    out = []
    layer = 0
    while layer < len(_DET_STRIDES):
        stride = _DET_STRIDES[layer]
        same = sum(1 for s in _DET_STRIDES[layer:] if s == stride)  # consecutive here: (8, 16, 16, 16)
        cells = math.ceil(_DET_SIZE / stride)
        for y in range(cells):
            for x in range(cells):
                out += [((x + 0.5) / cells, (y + 0.5) / cells)] * (2 * same)
        layer += same
    return np.array(out, dtype=np.float32)


def _normalize_radians(angle: float) -> float:
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


@dataclass
class _Rect:
    """mediapipe's NormalizedRect: centre, size as fractions of the frame, rotation in radians."""

    x: float
    y: float
    w: float
    h: float
    rotation: float = 0.0


def _roi(xmin, ymin, xmax, ymax, p0, p1, width: int, height: int) -> _Rect:
    """DetectionsToRectsCalculator (rotation from p0 to p1, target angle 0) then
    RectTransformationCalculator (square_long, scale 1.5) on a normalised box."""
    rotation = _normalize_radians(-math.atan2(-(p1[1] - p0[1]) * height, (p1[0] - p0[0]) * width))
    side = max((xmax - xmin) * width, (ymax - ymin) * height)
    return _Rect((xmin + xmax) / 2, (ymin + ymax) / 2, side / width * _ROI_SCALE, side / height * _ROI_SCALE,
                 rotation)


def _crop(image: np.ndarray, cx: float, cy: float, w: float, h: float, rotation: float, size: int,
          border: int) -> np.ndarray:
    """ImageToTensorCalculator's OpenCV converter: the rotated rect (pixels) warped onto size x size
    with bilinear interpolation, on the uint8 image (so the crop is rounded to uint8 before scaling)."""
    corners = cv2.boxPoints(((np.float32(cx), np.float32(cy)), (np.float32(w), np.float32(h)),
                             float(np.float32(rotation) * np.float32(180.0) / math.pi)))
    target = np.array([[0, size], [0, 0], [size, 0], [size, size]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32), target)
    return cv2.warpPerspective(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border,
                               borderValue=(0, 0, 0))


def find_model(name: str, weights_dir: str | os.PathLike | None = None) -> Path | None:
    """A MediaPipe model file: in the weights folders (``--weights-dir``, ``$LIPSYNC_BENCH_WEIGHTS``,
    the torch hub cache), else inside an installed ``mediapipe`` package (found without importing it).

    Args:
        name: its weights name, e.g. ``"mediapipe-face-landmark"``.
        weights_dir: a folder searched first.

    Returns:
        The file's path, or None.

    Example:
        >>> find_model("mediapipe-face-landmark") is None or True
        True
    """
    return weights.find(name, weights_dir) or weights.KNOWN[name].packaged_path()


def require_model(name: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """``find_model``, or ``UnavailableError`` naming the file and how to get it."""
    path = find_model(name, weights_dir)
    if path is None:
        info = weights.KNOWN[name]
        folder = weights.default_target(weights_dir)
        raise UnavailableError(
            f"the mediapipe landmarker needs {info.filename} ({name}), not found in "
            + ", ".join(str(d) for d in weights.search_dirs(weights_dir))
            + f" nor in an installed mediapipe package; get it with 'lipsync-bench weights fetch {name}' "
            f"({info.url}), or install mediapipe's wheel beside lipsync-bench without its dependencies "
            f"('pip install --no-deps mediapipe==0.10.21': it is never imported, so its numpy<2 pin does not "
            f"matter), or copy {info.package_file} out of that wheel ('pip download --no-deps "
            f"mediapipe==0.10.21', then unzip) into {folder}")
    return path


def _interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise UnavailableError("the mediapipe landmarker needs the package ai-edge-litert "
                               "(pip install ai-edge-litert)") from None
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


class FaceMeshTracker:
    """mediapipe 0.10.21's ``FaceMesh(max_num_faces=1)`` on the bundled TFLite models.

    Args:
        refine_landmarks: 478 points from ``face_landmark_with_attention.tflite`` (lips, eyes and
            irises refined), else 468 from ``face_landmark.tflite``.
        static_image_mode: detect in every frame (True) or track the face from the previous frame's
            landmarks, detecting only when none is tracked (False, mediapipe's video mode).
        min_detection_confidence: BlazeFace's score threshold (sigmoid score >= it).
        min_tracking_confidence: the mesh's face-presence threshold (score > it).
        weights_dir: a folder searched first for the model files.

    Example:
        >>> tracker = FaceMeshTracker()  # doctest: +SKIP
        >>> points = tracker.process(rgb_frame)  # (468, 3) normalised, or None  # doctest: +SKIP
    """

    def __init__(self, refine_landmarks: bool = False, static_image_mode: bool = False,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 weights_dir: str | os.PathLike | None = None):
        self.refine_landmarks = bool(refine_landmarks)
        self.static_image_mode = static_image_mode
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_tracking_confidence = float(min_tracking_confidence)
        mesh = MESH_ATTENTION if self.refine_landmarks else MESH
        self._files = {DETECTOR: require_model(DETECTOR, weights_dir), mesh: require_model(mesh, weights_dir)}
        self._detector = _interpreter(self._files[DETECTOR])
        self._mesh = CustomOpModel(self._files[mesh])  # the plain mesh: one LiteRT piece
        self._anchors = _anchors()
        self._previous: _Rect | None = None
        self.last_score: float | None = None

    def params(self) -> dict:
        """What the protocol records: model files and checksums, thresholds, mode."""
        return {"models": [weights.describe(name, path) for name, path in self._files.items()],
                "refine_landmarks": self.refine_landmarks, "static_image_mode": self.static_image_mode,
                "min_detection_confidence": self.min_detection_confidence,
                "min_tracking_confidence": self.min_tracking_confidence}

    def fresh(self) -> "FaceMeshTracker":
        """A tracker of its own tracking state (none yet) that shares this one's loaded models: one video's
        tracked face never reaches another's frames, and the models load once."""
        other = copy.copy(self)
        other.reset()
        return other

    def reset(self) -> None:
        """Forget the tracked face: the next frame is detected afresh (a new video)."""
        self._previous = None

    def process(self, rgb: np.ndarray) -> np.ndarray | None:
        """The face's landmarks in an RGB uint8 frame (H, W, 3).

        Returns:
            (468, 3) float32 (478 with ``refine_landmarks``): x / width, y / height, z (units of x);
            None when there is no face.
        """
        rgb = np.ascontiguousarray(rgb)
        height, width = rgb.shape[:2]
        roi = None if self.static_image_mode else self._previous
        if roi is None:
            detections = self.detect(rgb)
            if not len(detections):
                self._previous = None
                return None
            roi = self.detection_roi(detections[0], width, height)
        points, score = self.mesh(rgb, roi)
        self.last_score = score
        if points is None:
            self._previous = None
            return None
        self._previous = self.landmarks_roi(points, width, height)
        return points

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """BlazeFace short-range detections, best first: (k, 17) rows of xmin, ymin, xmax, ymax, six
        keypoints (x, y) and the score, all coordinates fractions of the frame."""
        height, width = rgb.shape[:2]
        # ImageToTensor with keep_aspect_ratio: the frame's rect padded to the tensor's aspect (square)
        side_w, side_h = (float(width), float(width)) if height < width else (float(height), float(height))
        tensor = _crop(rgb, width / 2, height / 2, side_w, side_h, 0.0, _DET_SIZE, cv2.BORDER_CONSTANT)
        tensor = tensor.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)  # [-1, 1]
        self._detector.set_tensor(self._detector.get_input_details()[0]["index"], tensor[None])
        self._detector.invoke()
        out = self._detector.get_output_details()
        raw = self._detector.get_tensor(out[0]["index"]).reshape(-1, 16)
        logits = self._detector.get_tensor(out[1]["index"]).reshape(-1).astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -_SCORE_CLIP, _SCORE_CLIP)))
        keep = scores >= self.min_detection_confidence
        if not keep.any():
            return np.zeros((0, 17), dtype=np.float32)
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        # reverse_output_order: x, y, w, h then keypoints (x, y); anchors have width and height 1
        cx = raw[:, 0] / _DET_SCALE + anchors[:, 0]
        cy = raw[:, 1] / _DET_SCALE + anchors[:, 1]
        w, h = raw[:, 2] / _DET_SCALE, raw[:, 3] / _DET_SCALE
        kp = raw[:, 4:4 + 2 * _DET_NUM_KEYPOINTS].reshape(-1, _DET_NUM_KEYPOINTS, 2) / _DET_SCALE + anchors[:, None]
        dets = np.concatenate([np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1),
                               kp.reshape(-1, 2 * _DET_NUM_KEYPOINTS), scores[:, None]], axis=1)
        dets = dets[(w >= 0) & (h >= 0)]
        dets = _weighted_nms(dets)
        # DetectionProjectionCalculator: tensor fractions -> frame fractions (the padded rect's matrix)
        sx, sy = side_w / width, side_h / height
        dets[:, [0, 2, 4, 6, 8, 10, 12, 14]] = dets[:, [0, 2, 4, 6, 8, 10, 12, 14]] * sx + (0.5 - 0.5 * sx)
        dets[:, [1, 3, 5, 7, 9, 11, 13, 15]] = dets[:, [1, 3, 5, 7, 9, 11, 13, 15]] * sy + (0.5 - 0.5 * sy)
        return dets

    @staticmethod
    def detection_roi(detection: np.ndarray, width: int, height: int) -> _Rect:
        """face_detection_front_detection_to_roi.pbtxt: the mesh's ROI from a detection row."""
        kp = detection[4:16].reshape(-1, 2)
        return _roi(*detection[:4], kp[_DET_ROTATION_KEYPOINTS[0]], kp[_DET_ROTATION_KEYPOINTS[1]], width, height)

    @staticmethod
    def landmarks_roi(points: np.ndarray, width: int, height: int) -> _Rect:
        """face_landmark_landmarks_to_roi.pbtxt: the next frame's ROI from this frame's landmarks."""
        x, y = points[:, 0], points[:, 1]
        a, b = _MESH_ROTATION_LANDMARKS
        return _roi(x.min(), y.min(), max(x.max(), _FLOAT_MIN), max(y.max(), _FLOAT_MIN), points[a], points[b],
                    width, height)

    def mesh(self, rgb: np.ndarray, roi: _Rect, gate: bool = True) -> tuple[np.ndarray | None, float]:
        """face_landmark_cpu.pbtxt: the landmarks in ``roi`` (normalised to the frame) and the
        face-presence score; None for the landmarks when ``gate`` and the score is not above
        ``min_tracking_confidence``."""
        height, width = rgb.shape[:2]
        crop = _crop(rgb, roi.x * width, roi.y * height, roi.w * width, roi.h * height, roi.rotation,
                     _MESH_SIZE, cv2.BORDER_REPLICATE)
        outputs = self._mesh.run((crop.astype(np.float32) * np.float32(1.0 / 255.0))[None])
        # the face flag: the last output (SplitTensorVectorCalculator ranges 1-2, or 6-7 with attention)
        score = float(1.0 / (1.0 + np.exp(-outputs[-1].reshape(-1)[0])))
        if gate and not score > self.min_tracking_confidence:
            return None, score
        # TensorsToLandmarks (divide by 192) then LandmarkProjection (rotate about the ROI's centre)
        local = outputs[0].reshape(-1, 3) / np.float32(_MESH_SIZE)
        if self.refine_landmarks:
            local = _refine(local, [o.reshape(-1, 2) / np.float32(_MESH_SIZE) for o in outputs[1:6]])
        dx, dy = local[:, 0] - 0.5, local[:, 1] - 0.5
        c, s = math.cos(roi.rotation), math.sin(roi.rotation)
        points = np.stack([(c * dx - s * dy) * roi.w + roi.x, (s * dx + c * dy) * roi.h + roi.y,
                           local[:, 2] * roi.w], axis=1)
        return points.astype(np.float32), score


def _refine(mesh: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
    """LandmarksRefinementCalculator with tensors_to_face_landmarks_with_attention.pbtxt's options:
    the 468 mesh points (x, y, z) with lips, left eye, right eye (x, y overwritten, z kept), then
    left and right iris (x, y; z the mean of its eye's first 16 mesh points, summed in double)."""
    out = np.zeros((478, 3), dtype=np.float32)
    out[:468] = mesh
    for indices, part in zip((_LIPS, _LEFT_EYE, _RIGHT_EYE, _LEFT_IRIS, _RIGHT_IRIS), parts, strict=True):
        out[list(indices), :2] = part
    for iris, eye in ((_LEFT_IRIS, _LEFT_EYE), (_RIGHT_IRIS, _RIGHT_EYE)):
        out[list(iris), 2] = np.float32(out[list(eye[:_IRIS_Z_POINTS]), 2].astype(np.float64).mean())
    return out


def _weighted_nms(dets: np.ndarray) -> np.ndarray:
    """NonMaxSuppressionCalculator, WEIGHTED, IoU above 0.3: each cluster around the best remaining
    detection becomes the score-weighted mean of its boxes and keypoints, keeping the best score."""
    order = np.argsort(-dets[:, 16], kind="stable")
    remaining = dets[order]
    out = []
    while len(remaining):
        best = remaining[0]
        iou = _iou(best[:4], remaining[:, :4])
        cluster = iou > _NMS_IOU
        weights_ = remaining[cluster, 16:17]
        merged = best.copy()
        merged[:16] = (remaining[cluster, :16] * weights_).sum(0) / weights_.sum()
        out.append(merged)
        remaining = remaining[~cluster]
    return np.array(out, dtype=np.float32).reshape(-1, 17)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.where((iw >= 0) & (ih >= 0), np.maximum(iw, 0) * np.maximum(ih, 0), 0.0)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
