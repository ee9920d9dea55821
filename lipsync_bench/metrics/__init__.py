"""Metrics: every module of this package declares its metrics; ``discover`` (run on import) finds
them and the metrics of other packages' ``lipsync_bench.metrics`` entry points."""
from .registry import (Accumulator, Alias, Curve, FrameBatch, Metric, MetricContext, MetricValue, Param,
                       Reference, StateFile, all_metrics, discover, get_metric, metric_aliases, parse_params,
                       register, resolve_run_params)

discover()

__all__ = ["Accumulator", "Alias", "Curve", "FrameBatch", "Metric", "MetricContext", "MetricValue", "Param",
           "Reference", "StateFile", "all_metrics", "discover", "get_metric", "metric_aliases", "parse_params",
           "register", "resolve_run_params"]
