"""Metrics: the declarations (``registry``, read without torch) and what implementations stream through
(``streaming``). ``discover`` (run on the first look-up) reads the built-in declarations and the
metrics of other packages' ``lipsync_bench.metrics`` entry points.

The names below are imported from their modules on first use: reading declarations never loads torch.
"""
from ..lazy import lazy_exports

_EXPORTS = {
    "registry": ("Alias", "Curve", "Hook", "Metric", "Param", "Reference", "all_metrics", "discover", "get_metric",
                 "group_members", "metric_aliases", "parse_params", "register", "resolve_run_params"),
    "streaming": ("Accumulator", "FrameBatch", "MetricContext", "MetricValue", "PerFrameMean", "StateFile",
                  "frames_per_step"),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
