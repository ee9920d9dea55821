"""JSON's conventions in one place: the canonical text that compares protocols and parameters, and the
numbers JSON cannot hold (NaN is ``null``; an infinite value, such as the PSNR of identical frames,
is the string ``"inf"`` or ``"-inf"``)."""
from __future__ import annotations

import json
import math


def canonical(obj) -> str:
    """A stable JSON text for comparing protocols and parameters (keys sorted, no spaces).

    Example:
        >>> canonical({"b": 1, "a": [1.0, "x"]})
        '{"a":[1.0,"x"],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def json_float(x):
    """JSON has no inf or NaN: NaN -> null, inf -> "inf" (PSNR of identical frames).

    Example:
        >>> [json_float(v) for v in (1.5, float("nan"), float("inf"), None)]
        [1.5, None, 'inf', None]
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def json_safe(obj):
    """``obj`` with every float made JSON-safe (``json_float``), through dicts, lists and tuples: what
    every ``--json`` output goes through, so that no command writes ``Infinity`` or ``NaN``.

    Example:
        >>> json_safe({"psnr": [float("inf"), 31.5], "p": float("nan")})
        {'psnr': ['inf', 31.5], 'p': None}
    """
    if isinstance(obj, float):
        return json_float(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def summary_json(summary: dict[str, dict]) -> dict[str, dict]:
    """A per-metric summary with inf/NaN made JSON-safe."""
    return {metric: {k: [json_float(x) for x in v] if isinstance(v, list) else
                     (json_float(v) if isinstance(v, float) else v) for k, v in s.items()}
            for metric, s in summary.items()}
