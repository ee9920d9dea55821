"""Face pipeline: detection, tracking, 68-point landmarks and crops, computed once per video."""
from .analysis import FaceAnalyzer, FaceData, cache_file, overlay, require_faces
from .backends import BACKENDS, get_backend
from .track import Track, TrackParams, link_tracks, mouth_box, smoothed_centres, syncnet_crop

__all__ = ["FaceAnalyzer", "FaceData", "cache_file", "overlay", "require_faces", "BACKENDS", "get_backend", "Track",
           "TrackParams", "link_tracks", "mouth_box", "smoothed_centres", "syncnet_crop"]
