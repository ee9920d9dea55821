"""Tables from the results store: the end-of-run summary, the paper-style method table, the paired
comparison of two methods, and the plain files (results.csv, summary.json) written beside the store."""
from __future__ import annotations

import hashlib
import html
import json
import math
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from .baselines import reported, reported_datasets
from .errors import LipsyncBenchError
from .files import atomic_write_bytes
from .jsontext import canonical, json_float, summary_json
from .metrics.registry import ARROWS, all_metrics, get_metric
from .protocol import CHOICES, CROPPED, DEFAULT, REGION, RESOLVED, definition, load_protocol, protocol_names
from .rendering import Result, listing, one_line, text_table
from .stats import dataset_summary, paired_test, summarize
from .store import STORE_NAME, ResultStore, Run, is_ground_truth

FORMATS = ("markdown", "latex", "csv", "html")
MISSING = "–"
UNOFFICIAL = "†"
OTHER_PROTOCOL = "‡"
LATEX_ARROWS = {"↑": "$\\uparrow$", "↓": "$\\downarrow$"}
#: The run-level choice that says which part of the frame the frame metrics see, its full-frame value,
#: and the choices (and resolved records) that only a crop has: read from the protocol's declarations.
REGION_CHOICE = next(k for k, c in CHOICES.items() if REGION in c.reaches)
FULL_FRAME = CHOICES[REGION_CHOICE].default
CROP_KEYS = frozenset({k for k, c in CHOICES.items() if CROPPED in c.reaches}
                      | {k for k, reaches in RESOLVED.items() if CROPPED in reaches})


@dataclass(frozen=True)
class Column:
    """A table column: one metric under one definition (``name`` is its key, e.g. ``ifc@norm=l2``).

    ``definition``: every choice its numbers depend on (``definition``); ``protocols``: the protocols of
    the runs whose numbers it holds; ``region``: the part of the frame its numbers were computed on
    ("full", "mouth"...; None where the region does not reach the metric), named in the label when it
    is not the full frame or when the metric has columns of another region (``SSIM [mouth]``)."""

    name: str
    metric: str
    label: str
    higher_is_better: bool | None
    decimals: int
    definition: dict = field(default_factory=dict, compare=False)
    protocols: tuple[str, ...] = ()
    region: str | None = None

    @property
    def arrow(self) -> str:
        return ARROWS[self.higher_is_better]

    @property
    def header(self) -> str:
        return self.label + self.arrow


def column(metric: str, params: dict | None = None, region: str | None = None,
           regions: frozenset | set = frozenset()) -> Column:
    """The column of a metric's results computed with ``params`` (default: its defaults) on ``region``
    of the frame; a defining parameter with another value gives another column (``IFC [norm=l2]``), and
    the label names the region (``region_mark``) beside the metric's other ``regions``."""
    try:
        m = get_metric(metric)
    except LipsyncBenchError:
        raise LipsyncBenchError(f"unknown metric column '{metric}'") from None
    params = m.defaults if params is None else params
    mark = region_mark(region, regions)
    tag = f" [{mark}]" if mark else ""
    return Column(m.column_key(params) + tag.lstrip(), m.name, m.label + tag + m.definition_suffix(params),
                  m.higher_is_better, m.decimals, region=region)


def region_mark(region: str | None, regions: frozenset | set = frozenset()) -> str | None:
    """The region a column's label names: any but the full frame, and the full frame too where the
    metric has a column of another region in the table; None for the full frame alone and for a metric
    the region does not reach. Numbers of two regions are not comparable, and a header must say so.

    Example:
        >>> region_mark("mouth"), region_mark("full"), region_mark("full", {"full", "mouth"})
        ('mouth', None, 'full')
    """
    if region is None or (region == FULL_FRAME and set(regions) <= {FULL_FRAME}):
        return None
    return region


@lru_cache(maxsize=None)
def reported_region(protocol: str, metric: str) -> str | None:
    """The region of the frame the reported numbers of ``metric`` under ``protocol`` were computed on:
    the named protocol's, where its region reaches the metric (``protocol.definition``). Numbers of an
    unknown protocol are placed as the default protocol's (the full frame); no measured column shares
    their protocol, so beside measured numbers they are marked as another procedure.

    Example:
        >>> reported_region("yaman2024", "ssim"), reported_region("talklip", "psnr"), reported_region("unknown", "lmd")
        ('full', 'face-box', None)
    """
    p = load_protocol(protocol if protocol in protocol_names() else DEFAULT)
    return definition(p.as_dict(), metric, p.metric_params.get(metric)).get(REGION_CHOICE)


def protocol_label(run: Run, metric: str) -> str:
    """The protocol a result of ``metric`` in ``run`` follows: the run's, "modified" where the command
    line changed one of the metric's parameters."""
    name = run.protocol.get("protocol", "lipsync-bench")
    if run.metric_params.get(metric, {}).get("protocol_values") and not name.endswith(" (modified)"):
        name += " (modified)"
    return name


def _short(key: str, value) -> str:
    name = key.split(".")[-1] if key not in ("weights", "resolved", "pool") else key
    if key == "weights":
        value = ",".join(str(v)[:8] for v in value) or "none"
    elif isinstance(value, dict):
        value = hashlib.sha256(canonical(value).encode()).hexdigest()[:8]
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{name}={value}"


def metric_summary(rows: pd.DataFrame, run: Run, metric: str) -> dict:
    """The summary (``stats.summarize``) of one metric's rows of a run, pooled and with its failures
    counted as the run's protocol says."""
    ok = rows[rows.error.isna()]
    return summarize(ok.value.tolist(), failed=int(rows.error.notna().sum()), frames=ok.frames.fillna(0).tolist(),
                     pool=run.metric_params.get(metric, {}).get("pool", "videos"),
                     failed_videos=run.protocol.get("summary.failed_videos", "excluded"))


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
    return text_table(rows, ["metric", "mean ± std", "95% CI (bootstrap)", "videos", "failed"])


def _protocol_says(protocol: str, value) -> str:
    """How a changed choice's protocol value reads in a note (an empty value is "unset", never blank)."""
    return f"protocol {protocol} leaves it unset" if value in ("", None) else f"protocol {protocol} says {value}"


def eval_text(result, out=None) -> str:
    """What ``eval`` prints for an ``EvalRun``: the counts, the summary table, failures, warnings,
    skipped metrics and inputs, unofficial weights and the reference (ground-truth) rows."""
    run = result.run
    fps = run.protocol["decode.fps"]
    inputs = "pairs" if run.gt_dir is not None else "videos, no ground truth"
    lines = [f"{run.method} on {run.dataset}: {result.pairs} {inputs} ({result.computed} computed, {result.resumed} "
             f"already in the store), protocol {run.protocol['protocol']} ("
             + (f"{fps:g} fps" if fps else "frames as stored") + ")" + (f" -> {out}" if out is not None else ""),
             summary_table(result.summary_dict())]
    base = run.protocol["protocol"].removesuffix(" (modified)")
    for choice, (was, now) in run.protocol.get("modified", {}).items():
        lines.append(f"note: {choice} = {now} ({_protocol_says(base, was)})")
    for metric in result.metrics:
        for key, was in run.metric_params.get(metric, {}).get("protocol_values", {}).items():
            lines.append(f"note: {metric}.{key} = {run.metric_params[metric][key]} ({_protocol_says(base, was)})")
    for video, tracks in result.tracks.items():
        lines.append(one_line(f"tracks {video}: " + "; ".join(
            f"frames {t['start']}-{t['start'] + t['frames'] - 1} "
            + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in t.items()
                        if k not in ("start", "frames", "box")) for t in tracks)))
    for rec in result.failures.itertuples():
        lines.append(one_line(f"FAILED {rec.video}" + (f" ({rec.metrics})" if rec.metrics else "") + f": {rec.error}"))
    lines += [one_line(note if note.startswith("ignored ") else f"skipped {note}") for note in result.skipped_inputs]
    lines += [one_line(f"note: {note}") for note in result.notes]
    for video, warnings in result.videos.drop_duplicates("video")[["video", "warnings"]].itertuples(index=False):
        lines += [one_line(f"warning {video}: {w}") for w in warnings]
    if result.unpaired_gen:
        lines.append(listing("unpaired in --gen", result.unpaired_gen))
    if result.unpaired_gt:
        lines.append(listing("unpaired in --gt", result.unpaired_gt))
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

    A column holds the numbers of one metric under one definition (``definition``): results under
    different definitions (another protocol, frame rate, region, defining parameter, weights...) never
    share a column, and where a metric has several, each column's label names its protocol and what
    sets it apart; a column's ``region`` is named in its label where it is not the full frame or where
    the metric has columns of two regions (``SSIM [full]``, ``SSIM [mouth]``). Each row: ``method``,
    ``kind`` ("measured", "ground truth" or "reported"), ``values`` {column: mean or None}, ``videos``
    (measured rows), ``failed`` {column: count}, ``source`` and ``protocol`` (reported rows: the
    protocol they were computed under, as far as known, and ``protocol_differs`` when it is not the
    protocol of the measured numbers in their columns; their values sit only in columns of their region).
    """
    runs = store.runs(dataset)
    rep = reported(dataset) if paper else None
    if not runs and rep is None:
        known = sorted({r.dataset for r in store.runs()})
        raise LipsyncBenchError(f"no results for dataset '{dataset}' in {store.path}"
                                + (f" (datasets there: {', '.join(known)})" if known else "")
                                + ("" if paper else "; --paper shows the paper's reported rows"))
    df = store.results(runs)
    # metric -> definition key -> (definition, params, runs)
    found: dict[str, dict[str, tuple[dict, dict, list[Run]]]] = {}
    for run in runs:
        for metric in dict.fromkeys(df[df.method == run.method].metric):
            d = run.definition(metric)
            entry = found.setdefault(metric, {}).setdefault(canonical(d), (d, run.metric_params.get(metric, {}), []))
            entry[2].append(run)
    # metric -> the regions of its numbers, measured and reported: a region is named beside another
    regions = {metric: {d.get(REGION_CHOICE) for d, _, _ in defs.values()} for metric, defs in found.items()}
    for protocol, metric in _reported_values(rep):
        regions.setdefault(metric, set()).add(reported_region(protocol, metric))
    columns: dict[tuple[str, str], Column] = {}  # (metric, definition key) -> column
    for metric, defs in found.items():
        columns.update(_columns(metric, defs, regions[metric]))
    rows = []
    for run in runs:
        sub = df[df.method == run.method]
        values, failed = {}, {}
        dataset_values = store.dataset_results(run)
        for metric, g in sub.groupby("metric"):
            col = columns[(metric, canonical(run.definition(metric)))]
            if metric in dataset_values:  # dataset metrics: one value over all videos
                value = dataset_values[metric]["value"]
            else:
                value = metric_summary(g, run, metric)["mean"]
            values[col.name], failed[col.name] = value, int(g.error.notna().sum())
        unofficial = sorted(columns[(m, canonical(run.definition(m)))].name for m in run.unofficial_weights()
                            if m in found)
        changes = [f"{choice} = {now}" for choice, (_, now) in run.protocol.get("modified", {}).items()]
        changes += [f"{metric}.{key} = {run.metric_params[metric].get(key)}" for metric in dict.fromkeys(sub.metric)
                    for key in run.metric_params.get(metric, {}).get("protocol_values", {})]
        rows.append({"method": run.method, "kind": "ground truth" if is_ground_truth(run.method) else "measured",
                     "values": values, "videos": int(sub.video.nunique()), "failed": failed, "source": None,
                     "protocol": run.protocol.get("protocol"), "unofficial": unofficial, "changes": changes})
    if rep is not None:
        rows += _reported_rows(rep, columns, regions)
    order = all_metrics()

    def place(col: Column) -> tuple:  # the registry's order, the full frame first; other definitions beside
        return (order.index(col.metric) if col.metric in order else len(order),
                col.region not in (None, FULL_FRAME), col.name != col.metric, col.name)

    rows.sort(key=lambda r: r["kind"] != "ground truth")  # the real videos' row first, as papers print it
    return sorted(columns.values(), key=place), rows


def _columns(metric: str, defs: dict[str, tuple[dict, dict, list[Run]]],
             regions: set[str | None]) -> dict[tuple[str, str], Column]:
    """The columns of one metric, one per definition, under the metric's usual key and label (a
    non-default defining parameter in brackets: ``IFC [norm=l2]``), the region first where the label
    names it among the metric's ``regions`` (``SSIM [mouth]``, ``region_mark``). Where the metric's columns
    differ in other run-level choices (frame rate, crop size...), or two would share a label (other
    weights), each label adds its protocol and what sets it apart from the most used definition
    (``SSIM (lipsync-bench modified: fps=30)``); a crop's own choices are compared within its region.
    Keys stay unique."""
    m = get_metric(metric)
    ranked = sorted(defs.values(), key=lambda e: -len(e[2]))  # the most used first; the first of equals
    reference = ranked[0][0]
    crop_reference: dict[str | None, dict] = {}  # per region, its most used definition
    for d, _, _ in ranked:
        crop_reference.setdefault(d.get(REGION_CHOICE), d)
    base = {key: column(metric, params, d.get(REGION_CHOICE), regions) for key, (d, params, _) in defs.items()}
    labels = [c.label for c in base.values()]

    def differs(d: dict, run_level: bool) -> list[str]:
        crop = crop_reference[d.get(REGION_CHOICE)]
        keys = [k for k in dict.fromkeys([*reference, *crop, *d]) if k != REGION_CHOICE  # the label names it
                and d.get(k) != (crop if k in CROP_KEYS else reference).get(k)
                and not (k.startswith(f"{metric}.") and m.params[k.split(".", 1)[1]].defines)]
        if run_level:  # the protocol's choices, not what follows from the metric's own parameters
            keys = [k for k in keys if k not in ("weights", "resolved") and not k.startswith(f"{metric}.")]
        return [_short(k, d.get(k)) for k in keys]

    named = any(differs(d, True) for d, _, _ in defs.values())
    out = {}
    for key, (d, _, runs) in defs.items():
        protocols = tuple(dict.fromkeys(protocol_label(r, metric) for r in runs))
        name, label = base[key].name, base[key].label
        if named or labels.count(label) > 1:
            parts = differs(d, run_level=labels.count(label) == 1)
            names = ", ".join(x.replace(" (modified)", " modified") for x in protocols)
            label += f" ({names}" + (f": {', '.join(parts)}" if parts else "") + ")"
            name += f"[{','.join(parts)}]" if parts else ""
        out[(metric, key)] = replace(base[key], name=name, label=label, definition=d, protocols=protocols)
    names = [c.name for c in out.values()]
    for k, c in out.items():  # the same label parts can still collide (e.g. only an unmarked param differs)
        if names.count(c.name) > 1:
            out[k] = replace(c, name=f"{c.name}#{hashlib.sha256(k[1].encode()).hexdigest()[:8]}")
    return out


def _reported_protocol(rec: dict) -> str:
    return rec["protocol"] if isinstance(rec.get("protocol"), str) else "unknown"


def _reported_metrics(rep: pd.DataFrame) -> list[str]:
    return [c for c in rep.columns if c not in ("method", "source", "protocol", "protocol_note")]


def _reported_values(rep: pd.DataFrame | None) -> list[tuple[str, str]]:
    """(protocol, metric) of every value the paper reports (none without ``rep``)."""
    if rep is None:
        return []
    return [(_reported_protocol(rec), metric) for rec in rep.to_dict(orient="records")
            for metric in _reported_metrics(rep) if not pd.isna(rec[metric])]


def _reported_rows(rep: pd.DataFrame, columns: dict[tuple[str, str], Column],
                   regions: dict[str, set[str | None]]) -> list[dict]:
    """The paper's reported rows. A value sits only in a column of the region it was computed on
    (``reported_region``): there, in the column of its protocol where one is measured, else beside the
    measured numbers in the first, marked (another protocol); a metric with no measured column of that
    region gets one of its own (a whole-frame SSIM never sits under a mouth-region one)."""
    rows = []
    measured = dict(columns)
    for rec in rep.to_dict(orient="records"):
        protocol = _reported_protocol(rec)
        values, differs = {}, False
        for metric in _reported_metrics(rep):
            if pd.isna(rec[metric]):
                continue
            region = reported_region(protocol, metric)
            mine = [c for (mm, _), c in measured.items() if mm == metric and c.region == region]
            same = [c for c in mine if protocol in c.protocols]
            if same:
                target = same[0]
            elif mine:
                target, differs = mine[0], True
            else:  # nothing measured on this region: a column of reported numbers only
                target = columns.setdefault((metric, f"reported {region}"),
                                            column(metric, region=region, regions=regions[metric]))
            values[target.name] = float(rec[metric])
        rows.append({"method": rec["method"], "kind": "reported", "values": values, "videos": None, "failed": {},
                     "source": rec.get("source"), "protocol": protocol,
                     "protocol_note": rec.get("protocol_note") if isinstance(rec.get("protocol_note"), str) else None,
                     "protocol_differs": differs, "unofficial": []})
    return rows


def _best(columns: list[Column], rows: list[dict]) -> dict[str, float]:
    """Best measured value per column (rounded as printed, so ties in print are ties in bold). An
    infinite value counts as what it means: PSNR inf (identical frames) is the best PSNR there is."""
    best = {}
    for col in columns:
        vals = [round(r["values"][col.name], col.decimals) for r in rows
                if r["kind"] == "measured" and r["values"].get(col.name) is not None
                and not math.isnan(r["values"][col.name])]
        if vals and col.higher_is_better is not None:
            best[col.name] = max(vals) if col.higher_is_better else min(vals)
    return best


@dataclass
class MethodTable(Result):
    """What ``table`` prints: one row per method (``method_rows``), rendered as markdown, LaTeX, CSV or
    HTML (``text(fmt)``) or as JSON (``to_json``: every column's region, definition and protocols)."""

    dataset: str
    columns: list[Column]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)

    def text(self, fmt: str = "markdown") -> str:
        return render_table(self.columns, self.rows, fmt)

    def to_json(self) -> dict:
        return {**table_json(self.columns, self.rows), "notes": self.notes}

    @property
    def notices(self) -> list[str]:
        return self.notes


def method_table(results: str | Path, dataset: str, paper: bool = False) -> MethodTable:
    """The method table of ``dataset`` from a results folder (``table``); with ``paper``, the paper's
    reported rows beside the measured ones, also when the folder holds no store yet.

    Example:
        >>> t = method_table("no-such-folder", "hdtf", paper=True)
        >>> [c.header for c in t.columns][:2], t.rows[0]["kind"]
        (['SSIM↑', 'PSNR↑'], 'reported')
    """
    if paper and not (Path(results) / STORE_NAME).is_file():
        store = ResultStore(None)  # the paper's rows alone
    else:
        store = ResultStore.open_existing(results)
    try:
        columns, rows = method_rows(store, dataset, paper=paper)
    finally:
        store.close()
    notes = []
    if paper and reported(dataset) is None:
        notes.append(f"note: the paper reports no rows for '{dataset}' (it reports {', '.join(reported_datasets())}); "
                     "the table holds the measured rows only")
    return MethodTable(dataset, columns, rows, notes)


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
        name = r["method"]
        if r["kind"] == "reported":
            name += f" (reported, {r['protocol']})" + (OTHER_PROTOCOL if r.get("protocol_differs") else "")
        if fmt == "html":
            name = html.escape(name)
        cells = [name]
        for c in columns:
            v = r["values"].get(c.name)
            text = fmt_value(v, c.decimals)
            if r["kind"] == "measured" and v is not None and not math.isnan(v) \
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
        headers = ["Method"] + [c.label + LATEX_ARROWS.get(c.arrow, "") for c in columns] + ["Videos"]
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
    measured = sorted({p for c in columns for p in c.protocols})
    if measured:
        bases = sorted({p.removesuffix(" (modified)") for p in measured})
        notes.append("measured under protocol " + ", ".join(bases) + " ('lipsync-bench protocols show NAME')"
                     + ("; modified in these rows:" if any(r.get("changes") for r in rows) else ""))
        notes += [f"  {r['method']}: {', '.join(r['changes'])}" for r in rows if r.get("changes")]
    others = sorted({r["protocol"] for r in rows if r.get("protocol_differs")})
    if others:
        notes.append(f"{OTHER_PROTOCOL} reported under protocol {', '.join(others)}, beside numbers measured under "
                     f"{', '.join(measured)}: another procedure, not comparable")
    notes += [f"{r['method']} (reported): {r['protocol_note']}" for r in rows if r.get("protocol_note")]
    if fmt == "latex":
        notes = ["% " + n for n in notes]
    if fmt == "html":
        return text + "".join(f'\n<p class="note">{html.escape(n)}</p>' for n in notes)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def table_json(columns: list[Column], rows: list[dict]) -> dict:
    """``table --json``: every column with the region of the frame, the protocols and the definition its
    numbers were computed under (``region`` null where the region does not reach the metric), every row
    with its values."""
    return {"columns": [{"column": c.name, "metric": c.metric, "label": c.label,
                         "higher_is_better": c.higher_is_better, "region": c.region, "protocols": list(c.protocols),
                         "definition": c.definition} for c in columns],
            "rows": [{**r, "values": {k: json_float(v) for k, v in r["values"].items()}} for r in rows]}


# --------------------------------------------------------------------------------------------------
# Paired comparison (compare)


def compare_methods(store: ResultStore, dataset: str, a: str, b: str) -> list[dict]:
    """Per metric present in either run: Wilcoxon signed-rank test on the videos both have a value for;
    a metric that cannot be tested is a row with ``p_value`` None and its reason in ``note``.

    Raises ``LipsyncBenchError`` when a metric of both runs is defined differently in each (another
    protocol choice, defining parameter, pooling or weights), naming every differing choice: a test
    across two definitions would compare two measurements, not two methods."""
    run_a, run_b = store.get_run(a, dataset), store.get_run(b, dataset)
    df = store.results([run_a, run_b])
    df = df[df.error.isna()]
    in_a, in_b = set(df[df.method == a].metric), set(df[df.method == b].metric)
    metrics = [m for m in all_metrics() if m in in_a & in_b]
    differences = []
    for metric in metrics:
        da, db = run_a.definition(metric), run_b.definition(metric)
        changed = [f"{_short(k, da.get(k)).split('=')[0]} {_value(da.get(k))} vs {_value(db.get(k))}"
                   for k in dict.fromkeys([*da, *db]) if da.get(k) != db.get(k)]
        if changed:
            differences.append(f"{metric}: " + ", ".join(changed))
    if differences:
        raise LipsyncBenchError(f"'{a}' and '{b}' are not comparable on '{dataset}': their numbers follow different "
                                f"definitions ({run_a.protocol.get('protocol')} vs {run_b.protocol.get('protocol')}): "
                                + "; ".join(differences))
    out = []
    for metric in all_metrics():
        if metric not in in_a | in_b:
            continue
        col = column(metric, (run_a if metric in in_a else run_b).metric_params.get(metric))
        if metric not in metrics:
            out.append(_untested(metric, col, f"only {a if metric in in_a else b} has values: nothing to pair"))
            continue
        pa = df[(df.method == a) & (df.metric == metric)].set_index("video").value
        pb = df[(df.method == b) & (df.metric == metric)].set_index("video").value
        common = pa.index.intersection(pb.index)
        if common.empty:
            out.append(_untested(metric, col, "no video has a value in both runs"))
            continue
        test = paired_test(pa[common].to_numpy(), pb[common].to_numpy())
        better = None
        if test["mean_diff"] and not math.isnan(test["mean_diff"]) and col.higher_is_better is not None:
            a_higher = test["mean_diff"] > 0
            better = a if a_higher == col.higher_is_better else b
        out.append({"metric": metric, "label": col.header, **test, "better": better})
    return out


def _untested(metric: str, col: Column, why: str) -> dict:
    return {"metric": metric, "label": col.header, "n": 0, "mean_a": None, "mean_b": None, "mean_diff": None,
            "median_diff": None, "statistic": None, "p_value": None, "note": why, "better": None}


def _value(v) -> str:
    if isinstance(v, dict):
        return hashlib.sha256(canonical(v).encode()).hexdigest()[:8]
    if isinstance(v, list):
        return ",".join(str(x)[:8] for x in v) or "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass
class Comparison(Result):
    """What ``compare`` prints: per metric, the paired test of methods ``a`` and ``b`` (``compare_methods``)."""

    dataset: str
    a: str
    b: str
    alpha: float
    rows: list[dict]

    def text(self) -> str:
        return compare_table(self.rows, self.a, self.b, self.alpha)

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "a": self.a, "b": self.b, "alpha": self.alpha, "metrics": self.rows}


def compare(results: str | Path, dataset: str, a: str, b: str, alpha: float = 0.05) -> Comparison:
    """``compare``: the paired Wilcoxon test of two methods of a results folder, per metric."""
    store = ResultStore.open_existing(results)
    try:
        rows = compare_methods(store, dataset, a, b)
    finally:
        store.close()
    if not any(r["n"] for r in rows):
        raise LipsyncBenchError(f"'{a}' and '{b}' share no evaluated video and metric on '{dataset}'")
    return Comparison(dataset, a, b, alpha, rows)


def compare_table(rows: list[dict], a: str, b: str, alpha: float = 0.05) -> str:
    body, notes = [], []
    for r in rows:
        d = column(r["metric"]).decimals + 1
        if r["n"] == 0:
            body.append([r["label"], 0, MISSING, MISSING, MISSING, MISSING, "not tested"])
            notes.append(f"{r['label']} not tested: {r['note']}")
            continue
        verdict = MISSING if r["better"] is None else (
            f"{r['better']} (p < {alpha:g})" if r["p_value"] < alpha else "no significant difference")
        body.append([r["label"], r["n"], fmt_value(r["mean_a"], d), fmt_value(r["mean_b"], d),
                     fmt_value(r["median_diff"], d), f"{r['p_value']:.3g}", verdict])
        if r["note"]:
            notes.append(f"{r['label']}: {r['note']}")
    return "\n".join([text_table(body, ["metric", "videos", a, b, "median diff", "Wilcoxon p", "better"]), *notes])


# --------------------------------------------------------------------------------------------------
# Plain files beside the store


def write_exports(store: ResultStore, folder: Path) -> None:
    """results.csv (every row of every run, long format) and summary.json (per run: protocol,
    parameters, sessions, and per-metric summary), written atomically. Under the store's write lock:
    with several processes writing one folder, the files of the last one hold every committed row."""
    with store.transaction():
        for name, text in export_texts(store).items():
            _atomic_write(folder / name, text)


def export_texts(store: ResultStore) -> dict[str, str]:
    """The plain files beside the store, file name -> text, as the store holds them now."""
    df = store.results()
    csv = df.assign(warnings=df.warnings.map(lambda w: "; ".join(w)))
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
    return {"results.csv": csv.to_csv(index=False, lineterminator="\n"),
            "summary.json": json.dumps({"runs": runs}, indent=2) + "\n"}


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
