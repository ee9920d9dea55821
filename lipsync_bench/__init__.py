"""lipsync-bench: lip-sync and visual-quality metrics for talking-face videos, with their protocol.

    import lipsync_bench
    result = lipsync_bench.evaluate("out/wav2lip", "data/hdtf", metrics=["ssim", "psnr", "cpbd"])
    result.summary.loc["ssim", "mean"]  # the SSIM that ``eval`` prints

The API is imported lazily so that the command line starts without loading torch.
"""
from importlib import metadata

from .lazy import lazy_exports

try:
    __version__ = metadata.version("lipsync-bench")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__getattr__, _names = lazy_exports(__name__, {"evaluation": ("evaluate", "run_eval", "available_metrics")})
__all__ = [*_names, "__version__"]
