"""Summary statistics over videos: mean, standard deviation, bootstrap confidence interval, and the
paired Wilcoxon signed-rank test between two methods on the same videos."""
from __future__ import annotations

import math

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
POOLS = ("videos", "frames")


def bootstrap_ci(values: np.ndarray, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (videos resampled); seeded, so identical inputs give
    identical bounds.

    Args:
        values: per-video values.
        level: the interval's coverage.
        resamples: bootstrap resamples.
        seed: the generator's seed.
        weights: per-video weights (frames) for a weighted mean; None: each video counts once.

    Returns:
        (low, high); (nan, nan) for no values, (mean, mean) for one.

    Example:
        >>> low, high = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
        >>> bool(1.0 <= low < 2.5 < high <= 4.0)
        True
    """
    values = np.asarray(values, dtype=np.float64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    n = values.size
    if n == 0:
        return math.nan, math.nan
    if n == 1 or not np.isfinite(values).all():
        m = _mean(values, w)
        return m, m
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 2_000_000 // n)  # bounded memory for large sets
    for i in range(0, resamples, step):
        k = min(step, resamples - i)
        pick = rng.integers(0, n, size=(k, n))
        means[i:i + k] = values[pick].mean(axis=1) if weights is None else (
            (values[pick] * w[pick]).sum(axis=1) / w[pick].sum(axis=1))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    if weights is None or np.isinf(values).any():  # inf (PSNR of identical frames) stays inf, whatever the weights
        return float(values.mean())
    return float((values * weights).sum() / weights.sum())


def summarize(values, failed: int = 0, frames=None, pool: str = "videos", failed_videos: str = "excluded") -> dict:
    """mean, std (ddof=1, of the per-video values), 95% bootstrap CI of the mean, n videos with a value,
    failed videos.

    Args:
        values: per-video values (None or NaN: no value).
        failed: videos that failed.
        frames: per-video frame counts, for ``pool="frames"``.
        pool: "videos" (each video counts once) or "frames" (each frame once: the mean weighted by the
            frames each value covers, as scripts that average every frame of every video).
        failed_videos: "excluded" (a failed video is left out), or "fatal" (any failure voids the mean,
            as scripts that stop at the first failure; ``error`` says so).

    Returns:
        A dict: mean, std, ci95 [low, high], n, failed (and error where the mean is void).

    Example:
        >>> summarize([1.0, 2.0], frames=[10, 30], pool="frames")["mean"]
        1.75
        >>> summarize([1.0, 2.0], failed=1, failed_videos="fatal")["error"]
        '1 video failed: under this protocol a failure voids the mean (summary.failed_videos = fatal)'
    """
    keep = [i for i, x in enumerate(values) if x is not None and not math.isnan(x)]
    v = np.asarray([values[i] for i in keep], dtype=np.float64)
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, not {pool!r}")
    w = None
    if pool == "frames":
        w = np.asarray([frames[i] for i in keep], dtype=np.float64)
    if failed and failed_videos == "fatal":
        return {"mean": None, "std": None, "ci95": [None, None], "n": int(v.size), "failed": failed,
                "error": f"{failed} video{'s' * (failed != 1)} failed: under this protocol a failure voids the mean "
                         "(summary.failed_videos = fatal)"}
    if v.size == 0:
        return {"mean": None, "std": None, "ci95": [None, None], "n": 0, "failed": failed}
    with np.errstate(invalid="ignore"):
        std = float(v.std(ddof=1)) if v.size > 1 else None
    if std is not None and math.isnan(std):
        std = None
    lo, hi = bootstrap_ci(v, weights=w)
    mean = _mean(v, w)
    return {"mean": mean, "std": std, "ci95": [lo, hi], "n": int(v.size), "failed": failed}


def dataset_summary(stored: dict, failed: int = 0) -> dict:
    """The same fields as ``summarize`` for a dataset metric: one value over all videos, so no
    spread; ``stored`` is its row of the store's dataset results (empty when it was not computed)."""
    return {"mean": stored.get("value"), "std": None, "ci95": [None, None], "n": stored.get("videos") or 0,
            "failed": failed, "error": stored.get("error")}


def paired_test(a, b) -> dict:
    """Wilcoxon signed-rank test of paired per-video values (two-sided).

    Args:
        a: one method's values, one per video.
        b: the other method's values on the same videos, in the same order.

    Returns:
        A dict: n pairs, means, mean and median difference (a - b), statistic and p-value. With fewer
        than two non-zero differences the test says nothing: p is 1.0 and ``note`` says why. An infinite
        value (PSNR of identical frames) counts as what it means: inf - x is the largest difference
        there is, inf - inf is none; ``note`` counts the pairs it touched. NaN (no value) drops a pair.

    Example:
        >>> test = paired_test([0.91, 0.92, 0.95, 0.90, 0.93, 0.94], [0.81, 0.83, 0.84, 0.80, 0.85, 0.82])
        >>> test["n"], round(test["p_value"], 4), round(test["mean_diff"], 3)
        (6, 0.0312, 0.1)
        >>> inf = float("inf")
        >>> test = paired_test([inf] * 6, [30.0, 31.0, 29.5, 33.0, 28.0, 30.5])
        >>> test["mean_a"], round(test["p_value"], 4), test["note"]
        (inf, 0.0312, '6 of 6 pairs hold an infinite value (identical frames), ranked as the largest differences')
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    keep = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[keep], b[keep]
    with np.errstate(invalid="ignore"):
        d = np.where(a == b, 0.0, a - b)  # inf - inf: both frames identical, no difference
    infinite = int((np.isinf(a) | np.isinf(b)).sum())
    out = {"n": int(a.size), "mean_a": float(a.mean()) if a.size else None,
           "mean_b": float(b.mean()) if b.size else None,
           "mean_diff": float(d.mean()) if a.size else None,
           "median_diff": float(np.median(d)) if a.size else None,
           "statistic": None, "p_value": 1.0, "note": None}
    if infinite:
        out["note"] = (f"{infinite} of {a.size} pairs hold an infinite value (identical frames), ranked as the largest "
                       "differences")
    if np.count_nonzero(d) < 2:
        out["note"] = "; ".join(filter(None, ["fewer than two videos differ: no test", out["note"]]))
        return out
    from scipy import stats  # deferred: SciPy's statistics take a second to import, tables never need them

    res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    out["statistic"] = float(res.statistic)
    out["p_value"] = float(res.pvalue)
    return out
