"""``lipsync-bench report``: one self-contained HTML page of a results folder — per dataset the method
table, per-metric distributions (box plots), the worst videos per metric with thumbnails of the
generated and GT frames, the curves metrics keep per video, failures, and every run's protocol.

Self-contained: CSS inline, images as base64 PNG/JPEG data URIs, no scripts, nothing fetched — the
page can be mailed or archived beside the numbers it shows.
"""
from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from . import __version__, media
from .errors import LipsyncBenchError
from .files import atomic_write_bytes
from .metrics import get_metric
from .rendering import Document
from .report import method_rows, render_table
from .store import ResultStore, is_ground_truth

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
.note { color: #555; font-size: .88em; margin: .2em 0; }
.worst { display: flex; flex-wrap: wrap; gap: 1em; }
.card { border: 1px solid #ddd; padding: .4em; font-size: .85em; }
.card img { display: inline-block; margin-right: 3px; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: .8em; }
img.plot { max-width: 100%; }
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumbnail(path: Path, index: int, fps: float, width: int = 160) -> str | None:
    """The frame ``index`` of an input, as a small JPEG data URI (None when it cannot be read)."""
    seen = 0
    try:
        for chunk in media.iter_frames(path, fps):
            if index < seen + len(chunk):
                frame = chunk[index - seen]
                height = max(1, round(frame.shape[0] * width / frame.shape[1]))
                small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
                ok, data = cv2.imencode(".jpg", small[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
                return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode() if ok else None
            seen += len(chunk)
    except LipsyncBenchError:
        return None
    return None


def _boxplots(df, columns, rows) -> tuple[str | None, list[str]]:
    """One box plot per table column (a metric under one definition: never two definitions in one plot),
    and a note per method whose infinite values (PSNR of identical frames) a box cannot show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots, notes = [], []
    for col in columns:
        methods = [r["method"] for r in rows if r["kind"] != "reported" and col.name in r["values"]]
        values = df[(df.metric == col.metric) & df.method.isin(methods) & df.value.notna()]
        for method, count in values[np.isinf(values.value)].groupby("method").size().items():
            notes.append(f"{method}: {count} of {(values.method == method).sum()} videos with {col.label} infinite "
                         "(identical frames: the best value) are not drawn in its box")
        sub = values[np.isfinite(values.value)]
        if not sub.empty:
            plots.append((col, [m for m in methods if (sub.method == m).any()], sub))
    if not plots:
        return None, notes
    fig, axes = plt.subplots(1, len(plots), figsize=(3.2 * len(plots), 3.4), squeeze=False)
    for ax, (col, methods, sub) in zip(axes[0], plots, strict=False):
        ax.boxplot([sub[sub.method == m].value.to_numpy() for m in methods], showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(col.header, fontsize=9, wrap=True)
    fig.tight_layout()
    return _png(fig), notes


def _curves(store: ResultStore, runs) -> list[tuple[str, str]]:
    """Plots of the curves that metrics keep in their details (``Metric.curve``, e.g. a distance
    against offset): (title, data URI) per kind of curve, one axis per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds: dict = {}  # curve declaration -> run -> (curves, y label)
    for run in runs:
        for metric, params in run.metric_params.items():
            try:
                m = get_metric(metric)
            except LipsyncBenchError:
                continue  # a metric of a plugin that is not installed here
            if m.curve is None or run.method in kinds.get(m.curve, {}):
                continue
            details = store.details(run, metric)
            if details:
                kinds.setdefault(m.curve, {})[run.method] = (
                    [np.asarray(d[m.curve.key]) for d in details.values()], m.curve.y_label(params))
    plots = []
    for curve, by_run in kinds.items():
        # no shared y axis: another definition's values are on another scale
        fig, axes = plt.subplots(1, len(by_run), figsize=(3.6 * len(by_run), 3), squeeze=False)
        for ax, (method, (cs, y_label)) in zip(axes[0], by_run.items(), strict=False):
            x = curve.x_values(len(cs[0])) if curve.x_values else np.arange(len(cs[0]))
            for c in cs:
                ax.plot(x, c, color="tab:blue", alpha=0.25, lw=0.8)
            ax.plot(x, np.mean(cs, axis=0), color="tab:red", lw=2, label="mean")
            ax.set_title(f"{method} ({len(cs)} videos)", fontsize=10)
            ax.set_xlabel(curve.x_label)
            ax.set_ylabel(y_label)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        plots.append((curve.title, _png(fig)))
    return plots


def _worst(store: ResultStore, runs, df, metrics: list[str], count: int, thumbnails: bool) -> str:
    parts = []
    for run in runs:
        if is_ground_truth(run.method):
            continue
        pairs = {}
        if thumbnails:
            try:
                pairs = {p.key: p for p in media.pair_inputs(run.gen_dir, run.gt_dir).pairs}
            except (LipsyncBenchError, TypeError, OSError):
                pass
        fps = run.protocol.get("decode.fps", 25.0) or None
        for metric in metrics:
            m = get_metric(metric)
            if m.higher_is_better is None:
                continue
            sub = df[(df.method == run.method) & (df.metric == metric) & df.value.notna()]
            sub = sub.sort_values("value", ascending=m.higher_is_better).head(count)
            if sub.empty:
                continue
            cards = []
            for rec in sub.itertuples():
                pair = pairs.get(rec.video)
                middle = int(rec.frames or 0) // 2
                images = ""
                if pair is not None:
                    for side, path in (("generated", pair.gen), ("ground truth", pair.gt)):
                        uri = _thumbnail(path, middle, fps)
                        if uri:
                            images += f'<img src="{uri}" alt="{side}" title="{side}, frame {middle}">'
                else:
                    images = ("<i>inputs not readable from here</i>" if thumbnails else
                              "<i>no thumbnails (report --thumbnails reads the inputs)</i>")
                cards.append(f'<div class="card">{images}<br>{html.escape(rec.video)}: {m.label} '
                             f'{rec.value:.{m.decimals}f} <span class="note">(generated | ground truth, frame '
                             f'{middle})</span></div>')
            parts.append(f"<h4>{html.escape(run.method)}: worst {m.label}</h4>"
                         f"<div class='worst'>{''.join(cards)}</div>")
    return "".join(parts)


def _tracks(store: ResultStore, runs) -> str:
    """The face tracks a metric scored one by one (its details hold "tracks": a sync metric's ``tracks``
    each, mean or best): a table a run, a row a track, from the first metric of the run that keeps them."""
    parts = []
    for run in runs:
        kept = ((metric, store.details(run, metric)) for metric in run.metric_params)
        found = next(((metric, details) for metric, details in kept if any("tracks" in d for d in details.values())),
                     None)
        if found is None:
            continue
        metric, details = found
        rows = [(video, i, t) for video, d in sorted(details.items()) for i, t in enumerate(d.get("tracks", []))]
        keys = [k for k in rows[0][2] if k not in ("start", "frames", "box")]
        head = "".join(f"<th>{html.escape(k)}</th>" for k in ["video", "track", "frames", "median box", *keys])

        def cell(value) -> str:
            return html.escape(f"{value:.3f}" if isinstance(value, float) else str(value))

        cells = "".join(
            f"<tr><td>{html.escape(video)}</td><td>{i + 1}</td><td>{t['start']}–{t['start'] + t['frames'] - 1}</td>"
            f"<td>{html.escape(', '.join(str(v) for v in t['box']))}</td>"
            + "".join(f"<td>{cell(t[k])}</td>" for k in keys) + "</tr>" for video, i, t in rows)
        how = html.escape(str(run.metric_params[metric].get("tracks", "")))
        parts.append(f"<h4>{html.escape(run.method)}: {len(rows)} tracks in {len(details)} videos (tracks = {how})</h4>"
                     f"<table><tr>{head}</tr>{cells}</table>")
    return "".join(parts)


class ReportFile(Document):
    """``report``: the page written (``path``) and its size."""

    def text(self) -> str:
        return f"report written to {self['path']}"


def build_report(results: str | Path, out: str | Path, datasets: list[str] | None = None, worst: int = 3,
                 thumbnails: bool = False) -> ReportFile:
    """Write the HTML report of the results folder ``results`` to ``out``. Only with ``thumbnails`` does
    it read the input folders the store records (a frame of each worst video)."""
    store = ResultStore.open_existing(results)
    all_runs = store.runs()
    datasets = datasets or sorted({r.dataset for r in all_runs})
    body = [f"<h1>lipsync-bench report</h1><p class='note'>{html.escape(str(Path(results).resolve()))} — "
            f"generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by lipsync-bench "
            f"{html.escape(__version__)}</p>"]
    for dataset in datasets:
        runs = [r for r in all_runs if r.dataset == dataset]
        if not runs:
            raise LipsyncBenchError(f"no results for dataset '{dataset}' in {results}")
        body.append(f"<h2>{html.escape(dataset)}</h2>")
        columns, rows = method_rows(store, dataset)
        body.append(render_table(columns, rows, "html"))
        df = store.results(runs)
        video_metrics = list(dict.fromkeys(c.metric for c in columns if get_metric(c.metric).scope == "video"))
        plot, notes = _boxplots(df, [c for c in columns if c.metric in video_metrics], rows)
        if plot:
            body.append(f"<h3>Distributions over videos</h3><img class='plot' src='{plot}' alt='box plots'>")
        body += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
        for title, uri in _curves(store, runs):
            body.append(f"<h3>{html.escape(title)}</h3><img class='plot' src='{uri}' alt='{html.escape(title)}'>")
        tracks_html = _tracks(store, runs)
        if tracks_html:
            body.append(f"<h3>Face tracks, each scored</h3>{tracks_html}")
        worst_html = _worst(store, runs, df, video_metrics, worst, thumbnails)
        if worst_html:
            body.append(f"<h3>Worst videos per metric</h3>{worst_html}")
        failures = df[df.error.notna()].drop_duplicates(["method", "video"])
        if not failures.empty:
            items = "".join(f"<li>{html.escape(r.method)} / {html.escape(r.video)}: {html.escape(r.error)}</li>"
                            for r in failures.itertuples())
            body.append(f"<h3>Failures</h3><ul>{items}</ul>")
        body.append("<h3>Protocol</h3>")
        for run in runs:
            sessions = store.sessions(run)
            doc = {"protocol": run.protocol, "metric_params": run.metric_params, "gen_dir": run.gen_dir,
                   "gt_dir": run.gt_dir, "environment": sessions[-1]["environment"] if sessions else None,
                   "sessions": len(sessions)}
            body.append(f"<details><summary>{html.escape(run.method)}</summary>"
                        f"<pre>{html.escape(json.dumps(doc, indent=2, default=str))}</pre></details>")
    store.close()
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            # no script may run and nothing be fetched, whatever a string escaped below holds
            "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\"><title>lipsync-bench report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = page.encode("utf-8")
    atomic_write_bytes(out, data)
    return ReportFile(path=str(out), bytes=len(data))
