"""Face pipeline: detection, tracking, 68-point landmarks and crops, computed once per video.

The names below are imported from their modules on first use, so that ``faces.settings`` (what a
protocol names) is read without loading the detectors, the decoder or SciPy's signal package.
"""
from ..lazy import lazy_exports

_EXPORTS = {
    "analysis": ("FaceAnalyzer", "FaceData", "analyze_file", "cache_file", "overlay", "require_faces",
                 "syncnet_crops"),
    "backends": ("get_backend",),
    "regions": ("crop_frames", "crop_resized", "region_boxes"),
    "settings": ("BACKENDS", "INTERPOLATIONS", "REGIONS", "TrackParams"),
    "track": ("Track", "link_tracks", "mouth_box", "smoothed_centres", "syncnet_crop"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
