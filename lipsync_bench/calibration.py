"""``lipsync-bench calibrate``: is this set-up able to reproduce published numbers?

Users who get LSE-C of 1-2 where papers print 6-7 usually have other weights, another frame rate or
other crops. A check runs a reference's own published example with whatever official inputs are
present and compares with the output the reference prints: per check, expected, measured and pass or
fail. A check whose inputs are absent is listed as not run, with how to get them. The checks are data
(``CHECKS``); the expected numbers are the references' own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import weights
from .errors import LipsyncBenchError
from .metrics.lse import score_video
from .rendering import Rows


@dataclass(frozen=True)
class Check:
    """One published example: the known inputs it needs (``weights.KNOWN`` names), what the reference
    printed, the tolerance of each number (absolute), and how lipsync-bench computes them
    (``measure(paths) -> numbers``, paths by input name)."""

    name: str
    description: str
    inputs: tuple[str, ...]
    expected: dict[str, float]
    tolerance: dict[str, float]
    measure: Callable[[dict[str, Path]], dict[str, float]]
    source: str = ""
    paths: dict[str, Path] = field(default_factory=dict)  # inputs given directly (tests); else looked up


def _syncnet_example(paths: dict[str, Path]) -> dict[str, float]:
    """demo_syncnet.py: SyncNetInstance.evaluate on the clip itself (a 224x224 face crop, no face
    detection), its frames read back from ffmpeg's JPEGs, the audio at 16 kHz, vshift 15."""
    score, _ = score_video(paths["syncnet-example"], crop="none", compat="syncnet_python", vshift=15,
                           sync_weights=paths["syncnet"])
    return {"offset": score.offset, "lse_d": score.lse_d, "lse_c": score.lse_c}


CHECKS = [
    Check(
        name="syncnet_python example",
        description="syncnet_python's demo_syncnet.py on its data/example.avi (audio ahead of the video)",
        inputs=("syncnet", "syncnet-example"),
        expected={"offset": 3, "lse_d": 5.353, "lse_c": 10.021},
        # printed to 3 decimals; ffmpeg's JPEG encoder and the order of float sums can move the third
        tolerance={"offset": 0, "lse_d": 0.01, "lse_c": 0.01},
        measure=_syncnet_example,
        source="joonson/syncnet_python README.md: AV offset 3, Min dist 5.353, Confidence 10.021",
    ),
]


NOT_RUN_EXIT = 3  # not 0: a check that did not run proves nothing, and a CI step must not read it as passed


class Calibration(Rows):
    """``calibrate``: one row per check. Exit status 1 when a check fails or errs, else 3 when a check
    did not run (its inputs are absent), 0 only when every check ran and passed."""

    def text(self) -> str:
        lines = []
        for r in self:
            lines.append(f"{r['name']}: {r['status'].upper()} - {r['description']}")
            if r["source"]:
                lines.append(f"  expected by {r['source']}")
            for key, n in r.get("numbers", {}).items():
                lines.append(f"  {key:8s} expected {n['expected']:<8g} measured {n['measured']:<10.4f} "
                             f"{'ok' if n['ok'] else 'FAIL'} (tolerance {n['tolerance']:g})")
            lines += [f"  not run: {what}" for what in r.get("missing", [])]
            if r["status"] == "error":
                lines.append(f"  error: {r['error']}")
        counts = {status: sum(r["status"] == status for r in self) for status in ("pass", "fail", "error", "not run")}
        words = {"pass": "passed", "fail": "failed", "error": "erred", "not run": "not run"}
        lines.append(", ".join(f"{n} {words[status]}" for status, n in counts.items())
                     + f" (exit status {self.exit_code}" + (": a check not run is not a pass)"
                                                            if self.exit_code == NOT_RUN_EXIT else ")"))
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        if any(r["status"] in ("fail", "error") for r in self):
            return 1
        return NOT_RUN_EXIT if any(r["status"] == "not run" for r in self) else 0


def run_checks(checks: list[Check] | None = None, weights_dir: str | Path | None = None) -> Calibration:
    """Run every check whose inputs are present.

    Args:
        checks: the checks [default: ``CHECKS``].
        weights_dir: a folder searched first for the inputs (as ``--weights-dir``).

    Returns:
        One dict per check: name, description, source, status ("pass", "fail", "not run" or "error"),
        and per number expected, measured, tolerance, ok; for "not run", ``missing`` (what to get and
        how); for "error", the message.
    """
    out = Calibration()
    for check in checks if checks is not None else CHECKS:
        row = {"name": check.name, "description": check.description, "source": check.source,
               "expected": check.expected}
        paths = dict(check.paths)
        missing = []
        for name in check.inputs:
            if name in paths:
                continue
            path = weights.find(name, weights_dir)
            if path is None:
                missing.append(weights.missing_message(name, weights_dir))
            else:
                paths[name] = path
        if missing:
            out.append({**row, "status": "not run", "missing": missing})
            continue
        inputs = {n: weights.describe(n, p) if n in weights.KNOWN else {"file": str(p)} for n, p in paths.items()}
        try:
            measured = check.measure(paths)
        except LipsyncBenchError as exc:
            out.append({**row, "status": "error", "error": str(exc), "inputs": inputs})
            continue
        numbers = {k: {"expected": v, "measured": measured.get(k), "tolerance": check.tolerance.get(k, 0),
                       "ok": measured.get(k) is not None and abs(measured[k] - v) <= check.tolerance.get(k, 0)}
                   for k, v in check.expected.items()}
        out.append({**row, "status": "pass" if all(n["ok"] for n in numbers.values()) else "fail",
                    "numbers": numbers, "inputs": inputs})
    return out
