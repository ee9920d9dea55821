"""The face stage's settings, as the protocol names them: landmarkers, regions, resize interpolations
and the tracking thresholds. Light (no decoding, no models), so that protocols are read at once."""
from __future__ import annotations

from dataclasses import dataclass

#: The landmarkers (auto: face-alignment when its weights are present, else dlib).
BACKENDS = ("auto", "dlib", "face-alignment", "mediapipe")
#: What the frame metrics see: the whole frame, a fixed box on the GT's face or mouth track, or each
#: frame's own GT face detection.
REGIONS = ("full", "face", "mouth", "face-box")
#: How a frame's detections continue a face track (``track.link_tracks``).
LINKINGS = ("joonson", "first-face")
#: Resize interpolations by name, as OpenCV's INTER_* codes.
INTERPOLATIONS = {"bilinear": 1, "area": 3, "bicubic": 2, "nearest": 0}


@dataclass(frozen=True)
class TrackParams:
    """How detections become face tracks (``track.link_tracks``) and tracks crops: a detection joins a
    track above ``iou`` overlap with its last box; a track ends after ``max_missed`` frames without
    one; tracks of at most ``min_track`` detections, or of mean box side at most ``min_face_size``
    pixels, are dropped; the crop centre and size are median-filtered over ``smooth_kernel`` frames;
    ``crop_scale`` is syncnet_python's crop margin."""

    iou: float = 0.5
    max_missed: int = 25
    min_track: int = 5
    min_face_size: float = 50.0
    smooth_kernel: int = 13
    crop_scale: float = 0.4


#: lipsync-bench's tracking thresholds.
DEFAULT_TRACK = TrackParams()
