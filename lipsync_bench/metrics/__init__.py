"""Metrics: importing this package registers every metric module."""
from . import fid, ifc, lmd, lse, psnr, ssim  # noqa: F401  (registration side effects)
from .registry import FrameBatch, Metric, MetricContext, MetricValue, all_metrics, get_metric

__all__ = ["FrameBatch", "Metric", "MetricContext", "MetricValue", "all_metrics", "get_metric"]
