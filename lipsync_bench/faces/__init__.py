"""Face pipeline: detection, tracking, 68-point landmarks and crops, computed once per video."""
from .analysis import (
           FaceAnalyzer,
           FaceData,
           analyze_file,
           cache_file,
           overlay,
           require_faces,
           syncnet_crops,
)
from .backends import BACKENDS, get_backend
from .regions import REGIONS, crop_frames, crop_resized, region_boxes
from .track import (
           Track,
           TrackParams,
           link_tracks,
           mouth_box,
           smoothed_centres,
           syncnet_crop,
)

__all__ = ["FaceAnalyzer", "FaceData", "analyze_file", "cache_file", "overlay", "require_faces", "syncnet_crops",
           "REGIONS",
           "crop_frames", "crop_resized", "region_boxes", "BACKENDS", "get_backend", "Track",
           "TrackParams", "link_tracks", "mouth_box", "smoothed_centres", "syncnet_crop"]
