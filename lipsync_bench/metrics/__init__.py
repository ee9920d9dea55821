"""Metrics: every module of this package declares its metrics; ``discover`` (run on the first look-up)
finds them and the metrics of other packages' ``lipsync_bench.metrics`` entry points."""
from .registry import (
                       Accumulator,
                       Alias,
                       Curve,
                       FrameBatch,
                       Metric,
                       MetricContext,
                       MetricValue,
                       Param,
                       PerFrameMean,
                       Reference,
                       StateFile,
                       all_metrics,
                       discover,
                       frames_per_step,
                       get_metric,
                       metric_aliases,
                       parse_params,
                       register,
                       resolve_run_params,
)

__all__ = ["Accumulator", "Alias", "Curve", "FrameBatch", "Metric", "MetricContext", "MetricValue", "Param",
           "PerFrameMean", "Reference", "StateFile", "all_metrics", "discover", "frames_per_step", "get_metric",
           "metric_aliases", "parse_params", "register", "resolve_run_params"]
