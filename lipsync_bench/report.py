"""Tables from the results store: the end-of-run summary, the paper-style method table, the paired
comparison of two methods, and the plain files (results.csv, summary.json) written beside the store."""
from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from .baselines import reported
from .errors import LipsyncBenchError
from .metrics import all_metrics, get_metric
from .stats import dataset_summary, paired_test, summarize
from .store import ResultStore, is_ground_truth

FORMATS = ("markdown", "latex", "csv", "html")
MISSING = "–"
UNOFFICIAL = "†"

@dataclass(frozen=True)
class Column:
    """A table column: one metric under one definition (``name`` is its key, e.g. ``ifc@norm=l2``)."""

    name: str
    metric: str
    label: str
    higher_is_better: bool | None
    decimals: int

    @property
    def header(self) -> str:
        return self.label + {True: "↑", False: "↓", None: ""}[self.higher_is_better]


def column(metric: str, params: dict | None = None) -> Column:
    """The column of a metric's results computed with ``params`` (default: its defaults); a defining
    parameter with another value gives another column (``IFC [norm=l2]``)."""
    try:
        m = get_metric(metric)
    except LipsyncBenchError:
        raise LipsyncBenchError(f"unknown metric column '{metric}'") from None
    params = m.defaults if params is None else params
    return Column(m.column_key(params), m.name, m.column_label(params), m.higher_is_better, m.decimals)


def fmt_value(x: float | None, decimals: int) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{decimals}f}"


# --------------------------------------------------------------------------------------------------
# End-of-run summary (eval)


def summary_table(summary: dict[str, dict]) -> str:
    """Per metric: mean ± std, 95% bootstrap CI, videos with a value, failed videos."""
    rows = []
    for name, s in summary.items():
        col = column(name)
        d = col.decimals + 1
        mean = fmt_value(s["mean"], d)
        if s["std"] is not None:
            mean += f" ± {fmt_value(s['std'], d)}"
        lo, hi = s["ci95"]
        ci = MISSING if lo is None else f"[{fmt_value(lo, d)}, {fmt_value(hi, d)}]"
        if s.get("error"):
            mean = f"{MISSING} ({s['error']})"
        rows.append([col.header, mean, ci, s["n"], s["failed"]])
    return tabulate(rows, headers=["metric", "mean ± std", "95% CI (bootstrap)", "videos", "failed"],
                    tablefmt="simple", disable_numparse=True)


def _listing(what: str, names: list[str], limit: int = 10) -> str:
    return f"{what} ({len(names)}): {', '.join(names[:limit])}" + (" …" if len(names) > limit else "")


def eval_text(result, out=None) -> str:
    """What ``eval`` prints for an ``EvalRun``: the counts, the summary table, failures, warnings,
    skipped metrics and inputs, unofficial weights and the reference (ground-truth) rows."""
    run = result.run
    lines = [f"{run.method} on {run.dataset}: {result.pairs} pairs ({result.computed} computed, {result.resumed} "
             f"already in the store) at {run.protocol['fps']:g} fps" + (f" -> {out}" if out is not None else ""),
             summary_table(result.summary_dict())]
    for rec in result.failures.itertuples():
        lines.append(f"FAILED {rec.video}" + (f" ({rec.metrics})" if rec.metrics else "") + f": {rec.error}")
    lines += [f"skipped {note}" for note in result.skipped_inputs]
    for video, warnings in result.videos.drop_duplicates("video")[["video", "warnings"]].itertuples(index=False):
        lines += [f"warning {video}: {w}" for w in warnings]
    if result.unpaired_gen:
        lines.append(_listing("unpaired in --gen", result.unpaired_gen))
    if result.unpaired_gt:
        lines.append(_listing("unpaired in --gt", result.unpaired_gt))
    lines += [f"skipped {metric}: {reason}" for metric, reason in result.skipped_metrics.items()]
    by_file: dict[tuple, list[str]] = {}
    for metric, w in result.unofficial_weights().items():
        for d in (w if isinstance(w, list) else [w]):
            by_file.setdefault((d["file"], d["sha256"]), []).append(metric)
    for (file, digest), metrics_ in by_file.items():
        lines.append(f"note: {', '.join(metrics_)} used unofficial weights ({file}, sha256 {digest[:16]}…): "
                     "not comparable with published numbers")
    truth = result.ground_truth
    if truth.get("summary"):
        lines.append("ground truth (the GT videos themselves, stored once per dataset): "
                     + ", ".join(f"{get_metric(m).label} {s['mean']:.3f}" for m, s in truth["summary"].items()
                                 if s["mean"] is not None))
    lines += [f"warning ground truth {video}: {message}" for video, message in truth.get("warnings", [])]
    lines += [f"FAILED ground truth {video}: {message}" for video, message in truth.get("failures", [])]
    if truth.get("error"):
        lines.append(f"warning: {truth['error']}")
    for metric, d in result.dataset_values.items():
        lines += [f"warning {metric}: {w}" for w in d["warnings"]]
    dataset_metrics = [m for m in result.metrics if get_metric(m).scope == "dataset"]
    if result.shard is not None and dataset_metrics:
        lines.append(f"shard {result.shard[0]}/{result.shard[1]}: dataset metrics ({', '.join(dataset_metrics)}) are "
                     "combined over all shards by 'lipsync-bench merge SHARD_DIRS... --out DIR'")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Method table (table)


def method_rows(store: ResultStore, dataset: str, paper: bool = False) -> tuple[list[Column], list[dict]]:
    """Columns and rows of the method table for ``dataset``.

    Each row: ``method``, ``kind`` ("measured", "ground truth" or "reported"), ``values`` {metric: mean or None},
    ``videos`` (measured rows), ``failed`` {metric: count}, ``source`` (reported rows).
    """
    runs = store.runs(dataset)
    rep = reported(dataset) if paper else None
    if not runs and rep is None:
        known = sorted({r.dataset for r in store.runs()})
        raise LipsyncBenchError(f"no results for dataset '{dataset}' in {store.path}"
                                + (f" (datasets there: {', '.join(known)})" if known else "")
                                + ("" if paper else "; --paper shows the paper's reported rows"))
    columns: dict[str, Column] = {}
    rows = []
    df = store.results(runs)
    for run in runs:
        sub = df[df.method == run.method]
        values, failed = {}, {}
        dataset_values = store.dataset_results(run)
        for metric, g in sub.groupby("metric"):
            if metric in dataset_values:  # dataset metrics: one value over all videos
                value = dataset_values[metric]["value"]
            else:
                value = summarize(g[g.error.isna()].value.tolist())["mean"]
            col = column(metric, run.metric_params.get(metric))
            columns[col.name] = col
            values[col.name], failed[col.name] = value, int(g.error.notna().sum())
        unofficial = sorted(column(m, run.metric_params.get(m)).name for m in run.unofficial_weights())
        rows.append({"method": run.method, "kind": "ground truth" if is_ground_truth(run.method) else "measured",
                     "values": values,
                     "videos": int(sub.video.nunique()), "failed": failed, "source": None,
                     "unofficial": unofficial})
    if rep is not None:
        metric_cols = [c for c in rep.columns if c not in ("method", "source")]
        for rec in rep.to_dict(orient="records"):
            values = {c: (None if pd.isna(rec[c]) else float(rec[c])) for c in metric_cols}
            columns.update({c: column(c) for c, v in values.items() if v is not None and c not in columns})
            rows.append({"method": rec["method"], "kind": "reported", "values": values, "videos": None,
                         "failed": {}, "source": rec.get("source"), "unofficial": []})
    order = all_metrics()

    def place(col: Column) -> tuple:  # the registry's order; another definition beside the default one
        return (order.index(col.metric) if col.metric in order else len(order), col.name != col.metric, col.name)

    rows.sort(key=lambda r: r["kind"] != "ground truth")  # the real videos' row first, as papers print it
    return sorted(columns.values(), key=place), rows


def _best(columns: list[Column], rows: list[dict]) -> dict[str, float]:
    """Best measured value per column (rounded as printed, so ties in print are ties in bold)."""
    best = {}
    for col in columns:
        vals = [round(r["values"][col.name], col.decimals) for r in rows
                if r["kind"] == "measured" and r["values"].get(col.name) is not None
                and math.isfinite(r["values"][col.name])]
        if vals and col.higher_is_better is not None:
            best[col.name] = max(vals) if col.higher_is_better else min(vals)
    return best


def render_table(columns: list[Column], rows: list[dict], fmt: str = "markdown") -> str:
    """The method table as markdown, LaTeX, CSV or an HTML fragment. Best measured value per column in
    bold; reported rows are labelled and never bold (they come from another protocol)."""
    if fmt not in FORMATS:
        raise LipsyncBenchError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    if fmt == "csv":
        records = []
        for r in rows:
            rec = {"method": r["method"], "kind": r["kind"], "videos": r["videos"]}
            rec.update({c.name: r["values"].get(c.name) for c in columns})
            rec["source"] = r["source"]
            records.append(rec)
        return pd.DataFrame(records).to_csv(index=False, lineterminator="\n")
    best = _best(columns, rows)
    bold = {"markdown": lambda s: f"**{s}**", "latex": lambda s: f"\\textbf{{{s}}}",
            "html": lambda s: f"<b>{s}</b>"}[fmt]
    body = []
    for r in rows:
        name = r["method"] + (" (reported)" if r["kind"] == "reported" else "")
        if fmt == "html":

            name = html.escape(name)
        cells = [name]
        for c in columns:
            v = r["values"].get(c.name)
            text = fmt_value(v, c.decimals)
            if r["kind"] == "measured" and v is not None and math.isfinite(v) \
                    and round(v, c.decimals) == best.get(c.name):
                text = bold(text)
            if c.name in r["unofficial"] and v is not None:
                text += UNOFFICIAL
            cells.append(text)
        cells.append(MISSING if r["videos"] is None else str(r["videos"]))
        body.append(cells)
    if fmt in ("markdown", "html"):
        headers = ["Method"] + [c.header for c in columns] + ["Videos"]
        text = tabulate(body, headers=headers, tablefmt="pipe" if fmt == "markdown" else "unsafehtml",
                        disable_numparse=True, colalign=["left"] + ["right"] * (len(columns) + 1))
    else:
        arrows = {True: "$\\uparrow$", False: "$\\downarrow$", None: ""}
        headers = ["Method"] + [c.label + arrows[c.higher_is_better] for c in columns] + ["Videos"]
        body = [[cells[0].replace("&", "\\&").replace("_", "\\_")] + cells[1:] for cells in body]
        text = tabulate(body, headers=headers, tablefmt="latex_raw", disable_numparse=True,
                        colalign=["left"] + ["right"] * (len(columns) + 1))
    notes, unofficial = [], {}
    labels = {c.name: c.label for c in columns}
    for r in rows:
        failed = {m: n for m, n in r["failed"].items() if n}
        if failed:
            notes.append(f"{r['method']}: failed videos excluded from the means ("
                         + ", ".join(f"{labels[m]} {n}" for m, n in failed.items()) + ")")
        if r["unofficial"]:
            unofficial.setdefault(", ".join(labels[m] for m in r["unofficial"]), []).append(r["method"])
    for labels, methods in unofficial.items():
        notes.append(f"{UNOFFICIAL} {labels} of {', '.join(methods)}: computed with unofficial weights (checksum "
                     "differs from the published file): not comparable with published numbers")
    sources = sorted({r["source"] for r in rows if r["kind"] == "reported" and r["source"]})
    notes += [f"reported: {s}" for s in sources]
    if fmt == "latex":
        notes = ["% " + n for n in notes]
    if fmt == "html":

        return text + "".join(f'\n<p class="note">{html.escape(n)}</p>' for n in notes)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def table_json(columns: list[Column], rows: list[dict]) -> dict:
    return {"columns": [{"column": c.name, "metric": c.metric, "label": c.label,
                         "higher_is_better": c.higher_is_better} for c in columns],
            "rows": [{**r, "values": {k: json_float(v) for k, v in r["values"].items()}} for r in rows]}


# --------------------------------------------------------------------------------------------------
# Paired comparison (compare)


def compare_methods(store: ResultStore, dataset: str, a: str, b: str) -> list[dict]:
    """Per metric present in both runs under one definition: Wilcoxon signed-rank test on the videos
    both have a value for. A metric computed under two definitions is not tested (``note`` says why)."""
    run_a, run_b = store.get_run(a, dataset), store.get_run(b, dataset)
    df = store.results([run_a, run_b])
    df = df[df.error.isna()]
    out = []
    for metric in [m for m in all_metrics() if m in set(df.metric)]:
        col_a, col_b = column(metric, run_a.metric_params.get(metric)), column(metric, run_b.metric_params.get(metric))
        if col_a.name != col_b.name:
            out.append({"metric": metric, "label": col_a.header, "n": 0, "mean_a": None, "mean_b": None,
                        "mean_diff": None, "median_diff": None, "statistic": None, "p_value": None,
                        "better": None, "note": f"not comparable: {col_a.label} against {col_b.label}"})
            continue
        pa = df[(df.method == a) & (df.metric == metric)].set_index("video").value
        pb = df[(df.method == b) & (df.metric == metric)].set_index("video").value
        common = pa.index.intersection(pb.index)
        if common.empty:
            continue
        test = paired_test(pa[common].to_numpy(), pb[common].to_numpy())
        better = None
        if test["mean_diff"] is not None and test["mean_diff"] != 0 and col_a.higher_is_better is not None:
            a_higher = test["mean_diff"] > 0
            better = a if a_higher == col_a.higher_is_better else b
        out.append({"metric": metric, "label": col_a.header, **test, "better": better})
    return out


def compare_table(rows: list[dict], a: str, b: str, alpha: float = 0.05) -> str:
    body = []
    for r in rows:
        d = column(r["metric"]).decimals + 1
        if r["p_value"] is None:
            body.append([r["label"], r["n"], MISSING, MISSING, MISSING, MISSING, r["note"]])
            continue
        verdict = MISSING if r["better"] is None else (
            f"{r['better']} (p < {alpha:g})" if r["p_value"] < alpha else "no significant difference")
        body.append([r["label"], r["n"], fmt_value(r["mean_a"], d), fmt_value(r["mean_b"], d),
                     fmt_value(r["median_diff"], d), f"{r['p_value']:.3g}", verdict])
    return tabulate(body, headers=["metric", "videos", a, b, "median diff", "Wilcoxon p", "better"],
                    tablefmt="simple", disable_numparse=True)


# --------------------------------------------------------------------------------------------------
# Plain files beside the store


def json_float(x):
    """JSON has no inf or NaN: NaN -> null, inf -> "inf" (PSNR of identical frames)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def summary_json(summary: dict[str, dict]) -> dict[str, dict]:
    """A per-metric summary with inf/NaN made JSON-safe."""
    return {metric: {k: [json_float(x) for x in v] if isinstance(v, list) else
                     (json_float(v) if isinstance(v, float) else v) for k, v in s.items()}
            for metric, s in summary.items()}


def write_exports(store: ResultStore, folder: Path) -> None:
    """results.csv (every row of every run, long format) and summary.json (per run: protocol,
    parameters, sessions, and per-metric summary), written atomically."""
    df = store.results()
    csv = df.assign(warnings=df.warnings.map(lambda w: "; ".join(w)))
    _atomic_write(folder / "results.csv", csv.to_csv(index=False, lineterminator="\n"))
    runs = []
    for run in store.runs():
        sub = df[(df.method == run.method) & (df.dataset == run.dataset)]
        summary = {metric: summarize(g[g.error.isna()].value.tolist(), failed=int(g.error.notna().sum()))
                   for metric, g in sub.groupby("metric")}
        for metric, d in store.dataset_results(run).items():
            summary[metric] = dataset_summary(d, summary.get(metric, {}).get("failed", 0))
        runs.append({"method": run.method, "dataset": run.dataset, "protocol": run.protocol,
                     "metric_params": run.metric_params, "gen_dir": run.gen_dir, "gt_dir": run.gt_dir,
                     "videos": int(sub.video.nunique()), "summary": summary_json(summary),
                     "sessions": store.sessions(run)})
    _atomic_write(folder / "summary.json", json.dumps({"runs": runs}, indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
