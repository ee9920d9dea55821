"""Scorings over a method table (``table --score``): views over stored results, nothing recomputed.

- ``theval``: THEval's final score (Newbyl/THEval cfe23fe ``theval/scoring.py``, Eq. 12 of the paper).
  Each raw metric becomes ``1 - |m - GT| / |GT|`` against the ground-truth row (a GT value within 1e-9 of
  zero is an error), the three groups are the means of their metrics' scores (video quality: global
  aesthetic, mouth quality, face quality; naturalness: lip, head-motion and eyebrow dynamics;
  synchronization: silent-lip stability, lip sync), the final score is the weighted mean of the eight
  metric scores (weights 1 by default; not of the groups), and the rank is by final score, highest first,
  ties sharing the lowest rank (pandas' ``rank(method="min")``), the GT row included. THEval refuses a
  table without all eight metrics; here a table with fewer is scored over the metrics it has and says
  so on every line: such a score is not THEval's final score.
- ``vico``: the ViCo challenge's rank-sum (its leaderboard ranks teams per metric; lipsync-bench's
  PROTOCOLS notes): each measured method ranked 1 (best) to n on every metric of the table with a
  direction, AV offset by its distance to 0, ties sharing the lowest rank; the rank-sum orders the
  methods (lowest first) and ``top1`` counts the metrics a method leads (the 2022 leaderboard's numTop1).
  The GT and reported rows are not ranked.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import LipsyncBenchError
from .rendering import Result, text_table
from .report import UNOFFICIAL, Column, fmt_value, method_table

SCORINGS = ("theval", "vico")

#: THEval's eight metrics in its order, each with the lipsync-bench metric that computes it.
THEVAL_METRICS = {
    "Global aesthetic": "theval_global_aesthetic",
    "Mouth quality": "theval_mouth_quality",
    "Face quality": "theval_face_quality",
    "Lip dynamics": "theval_lip_dynamics",
    "Head motion dynamics": "theval_head_motion_dynamics",
    "Eyebrow dynamics": "theval_eyebrow_dynamics",
    "Silent lip stability": "theval_silent_lip_stability",
    "Lip sync": "theval_lip_sync",
}
#: THEval's groups, as theval/scoring.py forms them.
THEVAL_GROUPS = {
    "Video quality": ("Global aesthetic", "Mouth quality", "Face quality"),
    "Naturalness": ("Lip dynamics", "Head motion dynamics", "Eyebrow dynamics"),
    "Synchronization": ("Silent lip stability", "Lip sync"),
}
#: A GT value this close to zero cannot normalise (theval/scoring.py's epsilon).
GT_EPSILON = 1e-9
#: The metric ranked by its distance to 0 in the ViCo rank-sum (no direction of its own).
CLOSEST_TO_ZERO = ("av_offset",)


def theval_final_scores(raw: dict[str, dict[str, float]], gt: str, weights: dict[str, float] | None = None) -> dict:
    """THEval's normalised scores, group scores, final score and rank of every row of a raw table.

    Args:
        raw: row name -> {THEval metric name -> raw value}; the rows must share their metrics.
        gt: the name of the ground-truth row.
        weights: THEval metric name -> weight of the final score (1 where not given).

    Returns:
        row -> {"scores": {metric: score}, "groups": {group: score or None}, "final": score, "rank": int},
        in rank order; "metrics": the metrics scored.

    Example (theval's own test: GT at 10 everywhere, a method off by 2, 5, 0, 5, 0, 5, 0 and 10):
        >>> gt = dict.fromkeys(THEVAL_METRICS, 10.0)
        >>> m = dict(zip(THEVAL_METRICS, [12.0, 5.0, 10.0, 15.0, 10.0, 5.0, 10.0, 0.0]))
        >>> out = theval_final_scores({"GT": gt, "Method": m}, "GT")
        >>> out["rows"]["Method"]["final"], out["rows"]["Method"]["rank"]
        (0.6625, 2)
    """
    if gt not in raw:
        raise LipsyncBenchError(f"ground-truth row '{gt}' not found (rows: {', '.join(raw)})")
    metrics = [m for m in THEVAL_METRICS if m in raw[gt]]
    unknown = sorted({k for row in raw.values() for k in row} - set(THEVAL_METRICS))
    if unknown:
        raise LipsyncBenchError(f"not THEval metrics: {', '.join(unknown)}")
    for name, row in raw.items():
        if set(row) != set(metrics):
            raise LipsyncBenchError(f"row '{name}' has other metrics than the GT row: "
                                    f"{', '.join(sorted(set(row) ^ set(metrics)))}")
    unknown_weights = sorted(set(weights or {}) - set(THEVAL_METRICS))
    if unknown_weights:
        raise LipsyncBenchError(f"weights of unknown THEval metrics: {', '.join(unknown_weights)}")
    zero = [m for m in metrics if abs(raw[gt][m]) <= GT_EPSILON]
    if zero:
        raise LipsyncBenchError("GT values must be non-zero for THEval's normalisation: " + ", ".join(zero))
    weights = {m: float((weights or {}).get(m, 1.0)) for m in metrics}
    total = sum(weights.values())
    if any(w < 0 for w in weights.values()) or total <= 0:
        raise LipsyncBenchError(f"THEval's weights must be non-negative with a positive sum: {weights}")
    rows = {}
    for name, row in raw.items():
        scores = {m: 1.0 - abs(row[m] - raw[gt][m]) / abs(raw[gt][m]) for m in metrics}
        groups = {g: (sum(scores[m] for m in members if m in scores) / n if (n := sum(m in scores for m in members))
                      else None) for g, members in THEVAL_GROUPS.items()}
        rows[name] = {"scores": scores, "groups": groups,
                      "final": sum(weights[m] * scores[m] for m in metrics) / total}
    finals = pd.Series({name: r["final"] for name, r in rows.items()})
    ranks = finals.rank(method="min", ascending=False).astype(int)
    order = sorted(rows, key=lambda n: (-rows[n]["final"], ranks[n]))  # as theval sorts: final, then rank
    return {"metrics": metrics, "rows": {n: {**rows[n], "rank": int(ranks[n])} for n in order}}


def vico_rank_sum(values: dict[str, dict[str, float]], directions: dict[str, bool | None]) -> dict:
    """The ViCo challenge's rank-sum over the metrics every method has.

    Args:
        values: method -> {metric -> value}.
        directions: metric -> higher is better (True/False), or None for a metric best at 0 (AV offset).

    Returns:
        {"metrics": the metrics ranked, "left_out": metrics some method lacks, "rows": method ->
        {"ranks": {metric: rank}, "rank_sum": int, "top1": int, "place": int}} in rank-sum order.

    Example:
        >>> out = vico_rank_sum({"a": {"ssim": 0.9, "av_offset": 1}, "b": {"ssim": 0.8, "av_offset": 0}},
        ...                     {"ssim": True, "av_offset": None})
        >>> {m: (r["rank_sum"], r["top1"]) for m, r in out["rows"].items()}
        {'a': (3, 1), 'b': (3, 1)}
    """
    metrics = [m for m in directions if values and all(_finite(v.get(m)) for v in values.values())]
    left_out = [m for m in directions if m not in metrics]
    rows = {name: {"ranks": {}} for name in values}
    for m in metrics:
        key = pd.Series({name: v[m] for name, v in values.items()}, dtype=float)
        if directions[m] is None:
            key = key.abs()
        ranks = key.rank(method="min", ascending=not directions[m] if directions[m] is not None else True)
        for name in values:
            rows[name]["ranks"][m] = int(ranks[name])
    for r in rows.values():
        r["rank_sum"] = sum(r["ranks"].values())
        r["top1"] = sum(v == 1 for v in r["ranks"].values())
    places = pd.Series({n: r["rank_sum"] for n, r in rows.items()}, dtype=float).rank(method="min")
    order = sorted(rows, key=lambda n: (rows[n]["rank_sum"], -rows[n]["top1"], n))
    return {"metrics": metrics, "left_out": left_out,
            "rows": {n: {**rows[n], "place": int(places[n])} for n in order}}


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


@dataclass
class ScoreTable(Result):
    """What ``table --score`` prints: the raw values of the scored columns beside each row's scores."""

    dataset: str
    scoring: str
    columns: list[Column]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)

    def text(self, fmt: str = "markdown") -> str:
        by = {c.name: c for c in self.columns}
        if self.scoring == "theval":
            headers = ["Method"] + [by[c].header for c in by] + list(THEVAL_GROUPS) + ["Final score", "Rank"]
            body = [[r["method"]]
                    + [f"{fmt_value(r['values'][c], by[c].decimals)} ({_score(r['scores'].get(c))})" for c in by]
                    + [_score(r["groups"][g]) for g in THEVAL_GROUPS] + [_score(r["final"]), str(r["rank"])]
                    for r in self.rows]
        else:
            headers = ["Method"] + [by[c].header for c in by] + ["Rank-sum", "Top-1", "Place"]
            body = [[r["method"]] + [f"{fmt_value(r['values'][c], by[c].decimals)} ({r['ranks'][c]})" for c in by]
                    + [str(r["rank_sum"]), str(r["top1"]), str(r["place"])] for r in self.rows]
        if fmt == "csv":
            return pd.DataFrame(body, columns=headers).to_csv(index=False, lineterminator="\n")
        if fmt == "html":
            body = [[html.escape(c) for c in row] for row in body]
            table = text_table(body, [html.escape(h) for h in headers], "unsafehtml")
            return table + "".join(f'\n<p class="note">{html.escape(n)}</p>' for n in self.notes)
        if fmt == "latex":
            escape = str.maketrans({"&": "\\&", "_": "\\_", "%": "\\%", "#": "\\#"})
            body = [[c.translate(escape) for c in row] for row in body]
            headers = [h.translate(escape).replace("↑", "$\\uparrow$").replace("↓", "$\\downarrow$") for h in headers]
            table = text_table(body, headers, "latex_raw")
            return table + ("\n\n" + "\n".join("% " + n for n in self.notes) if self.notes else "")
        if fmt != "markdown":
            raise LipsyncBenchError(f"unknown format '{fmt}' (one of markdown, latex, csv, html)")
        table = text_table(body, headers, "pipe")
        return table + ("\n\n" + "\n".join(self.notes) if self.notes else "")

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "scoring": self.scoring,
                "columns": [{"column": c.name, "metric": c.metric, "label": c.label, "protocols": list(c.protocols),
                             "definition": c.definition} for c in self.columns],
                "rows": self.rows, "notes": self.notes}

    @property
    def notices(self) -> list[str]:
        return []  # the notes are part of the printed table


def _score(v) -> str:
    return "–" if v is None else f"{v:.4f}"


def _one_column_each(columns: list[Column], metrics: list[str]) -> dict[str, Column]:
    """metric -> its only column; two definitions of one metric cannot be scored together."""
    out: dict[str, Column] = {}
    for c in columns:
        if c.metric in metrics:
            if c.metric in out:
                raise LipsyncBenchError(
                    f"{c.metric} has columns of two definitions ({out[c.metric].label}; {c.label}): a scoring "
                    "compares one definition; evaluate the methods under one protocol into a results folder "
                    "of their own")
            out[c.metric] = c
    return out


def score_table(results: str | Path, dataset: str, scoring: str, weights: dict[str, float] | None = None) -> ScoreTable:
    """``table --score``: the method table of ``dataset`` scored by THEval's final score or the ViCo
    rank-sum, from the stored means (no recomputation).

    Example:
        >>> score_table("no-such-folder", "hdtf", "elo")
        Traceback (most recent call last):
        ...
        lipsync_bench.errors.LipsyncBenchError: unknown scoring 'elo' (one of theval, vico)
    """
    if scoring not in SCORINGS:
        raise LipsyncBenchError(f"unknown scoring '{scoring}' (one of {', '.join(SCORINGS)})")
    table = method_table(results, dataset)
    if scoring == "theval":
        return _theval_table(table, weights)
    return _vico_table(table)


def _theval_table(table, weights) -> ScoreTable:
    ours = {v: k for k, v in THEVAL_METRICS.items()}
    cols = _one_column_each(table.columns, list(ours))
    if not cols:
        raise LipsyncBenchError(f"no THEval metric in the results of '{table.dataset}' (evaluate with "
                                "--protocol theval, or --metrics theval_lip_sync,...)")
    # the GT's own runs: one per definition (a protocol whose metrics differ in their parameters stores
    # several), each holding its columns' values; together they are THEval's GT row
    gts = [r for r in table.rows if r["kind"] == "ground truth"
           and any(r["values"].get(c.name) is not None for c in cols.values())]
    if not gts:
        raise LipsyncBenchError("THEval's scores need the GT's own values of the THEval metrics: evaluate with a "
                                "GT folder (--gt), which stores the GT's own run")
    gt = {"method": gts[0]["method"].split(" [")[0], "kind": "ground truth", "values": {}, "failed": {},
          "videos": max(r["videos"] or 0 for r in gts)}
    for r in gts:
        for c in cols.values():
            if _finite(r["values"].get(c.name)):
                if c.name in gt["values"]:
                    raise LipsyncBenchError(f"two ground-truth runs hold {c.label}: score results of one run")
                gt["values"][c.name] = r["values"][c.name]
                gt["failed"][c.name] = r["failed"].get(c.name, 0)
    scored = [m for m in cols if _finite(gt["values"].get(cols[m].name))]
    no_gt = [cols[m].label for m in cols if m not in scored]
    rows = [gt] + [r for r in table.rows if r["kind"] == "measured"
                   and all(_finite(r["values"].get(cols[m].name)) for m in scored)]
    skipped = [r["method"] for r in table.rows if r["kind"] == "measured" and r not in rows]
    raw = {r["method"]: {ours[m]: r["values"][cols[m].name] for m in scored} for r in rows}
    out = theval_final_scores(raw, gt["method"], {ours[m] if m in ours else m: w
                                                  for m, w in (weights or {}).items()})
    by_method = {r["method"]: r for r in rows}
    names = {ours[m]: cols[m].name for m in scored}
    result_rows = [{"method": n, "kind": by_method[n]["kind"],
                    "values": {names[t]: by_method[n]["values"][names[t]] for t in out["metrics"]},
                    "scores": {names[t]: s for t, s in r["scores"].items()}, "groups": r["groups"],
                    "final": r["final"], "rank": r["rank"]} for n, r in out["rows"].items()]
    notes = [f"THEval scores: 1 - |m - GT| / |GT| against '{gt['method']}', in brackets; groups and final "
             "score as Newbyl/THEval theval/scoring.py (final: the mean of the metric scores)"]
    missing = [t for t in THEVAL_METRICS if t not in out["metrics"]]
    if missing:
        notes.append(f"note: scored over {len(out['metrics'])} of THEval's 8 metrics ({', '.join(missing)} not "
                     "scored): not THEval's final score, comparable only with scores over the same metrics")
    if no_gt:
        notes.append(f"note: no ground-truth value, so not scored: {', '.join(no_gt)}")
    if skipped:
        notes.append(f"note: not scored (a THEval metric missing): {', '.join(skipped)}")
    columns = [cols[m] for m in cols if m in scored]
    notes += _provenance(columns, rows)
    return ScoreTable(table.dataset, "theval", columns, result_rows, notes)


def _provenance(columns: list[Column], rows: list[dict]) -> list[str]:
    """The method table's own notes on the scored columns: failed videos left out of a mean (THEval's
    nanmean too: a row's mean and the GT's may cover different videos), unofficial weights, protocols."""
    notes = []
    labels = {c.name: c.label for c in columns}
    gt_videos = next((r["videos"] for r in rows if r["kind"] == "ground truth"), None)
    for r in rows:
        failed = {labels[c]: n for c, n in (r.get("failed") or {}).items() if n and c in labels}
        if failed:
            notes.append(f"{r['method']}: failed videos excluded from the means ("
                         + ", ".join(f"{m} {n}" for m, n in failed.items()) + ")")
        if gt_videos and r["kind"] == "measured" and r["videos"] != gt_videos:
            notes.append(f"{r['method']}: {r['videos']} videos against the ground truth's {gt_videos}")
        unofficial = [labels[c] for c in r.get("unofficial") or [] if c in labels]
        if unofficial:
            notes.append(f"{UNOFFICIAL} {r['method']}: {', '.join(unofficial)} computed with unofficial weights "
                         "(checksum not the published one)")
    protocols = sorted({p for c in columns for p in c.protocols})
    if protocols:
        notes.append("measured under protocol " + ", ".join(protocols)
                     + (": columns of several protocols" if len(protocols) > 1 else ""))
    return notes


def _vico_table(table) -> ScoreTable:
    rows = [r for r in table.rows if r["kind"] == "measured"]
    if len(rows) < 2:
        raise LipsyncBenchError(f"a rank-sum needs at least two measured methods ('{table.dataset}' has {len(rows)})")
    metric_of = {c.name: c for c in table.columns}
    if len({c.metric for c in table.columns}) != len(table.columns):
        _one_column_each(table.columns, [c.metric for c in table.columns])  # raises, naming the metric
    directions = {c.name: (None if c.metric in CLOSEST_TO_ZERO else c.higher_is_better) for c in table.columns
                  if c.higher_is_better is not None or c.metric in CLOSEST_TO_ZERO}
    out = vico_rank_sum({r["method"]: r["values"] for r in rows}, directions)
    by_method = {r["method"]: r for r in rows}
    result_rows = [{"method": n, "values": {c: by_method[n]["values"][c] for c in out["metrics"]}, **r}
                   for n, r in out["rows"].items()]
    notes = ["ViCo rank-sum: each method's rank per metric in brackets (1 = best; AV offset by its distance "
             "to 0; ties share the lowest rank); lowest rank-sum first; Top-1: the metrics a method leads"]
    if out["left_out"]:
        notes.append("note: left out of the rank-sum (not every method has it): "
                     + ", ".join(metric_of[c].label for c in out["left_out"]))
    columns = [metric_of[c] for c in out["metrics"]]
    notes += _provenance(columns, rows)
    return ScoreTable(table.dataset, "vico", columns, result_rows, notes)
