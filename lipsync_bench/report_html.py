"""``lipsync-bench report``: one self-contained HTML page of a results folder — per dataset the method
table, each metric's distribution over videos (a full-width plot per metric, the medians beside it),
the videos worth looking at (the generated and GT excerpts side by side, playing in sync, with their
per-frame curves and a marker that follows playback), the face tracks, the curves metrics keep, the
warnings and failures with their videos, and every run's protocol as a table with its sources.

Self-contained: CSS inline, images and clips as data URIs, nothing fetched. One inline script (the
playback marker) runs, allowed by its hash in the page's Content Security Policy; nothing else can run,
whatever a string escaped below holds. The clips are read from the input folders the store records only
with ``media`` (``report --media``): a results folder from elsewhere must not make the report read this
machine's files.
"""
from __future__ import annotations

import base64
import hashlib
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
from .metrics import all_metrics, get_metric
from .protocol import load_protocol, protocol_names
from .rendering import Document
from .report import fmt_value, method_rows, render_table
from .store import ResultStore, is_ground_truth

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222;
       font-size: 16px; line-height: 1.4; }
h1 { font-size: 1.7em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; margin-top: 2.2em; }
h3 { margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .95em; }
th, td { border: 1px solid #ccc; padding: .3em .65em; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
td.text { text-align: left; }
th { background: #f3f3f3; }
.note { color: #555; font-size: .9em; margin: .25em 0; }
.metric { display: flex; flex-wrap: wrap; align-items: center; gap: 1.5em; margin: 1em 0 1.6em; }
.metric img { flex: 1 1 640px; max-width: 100%; }
.clip { border: 1px solid #ddd; border-radius: 6px; padding: .8em; margin: 1.2em 0; }
.clip video { width: 100%; max-width: 720px; display: block; background: #000; }
.clip .labels { display: flex; max-width: 720px; font-size: .9em; color: #444; }
.clip .labels span { flex: 1; text-align: center; }
.curve { width: 100%; max-width: 720px; height: 56px; display: block; }
.curve-label { font-size: .88em; color: #333; margin-top: .5em; }
.curve .excerpt { fill: #fff2cc; }
.curve .marker { stroke: #d00; stroke-width: 2; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: .8em; }
details { margin: .5em 0; }
"""

#: The page's only script: each clip's marker follows its video's playback (frame = start + time x fps);
#: ``data-played`` records that a video played (the browser test reads it).
SCRIPT = """
document.querySelectorAll('.clip').forEach(function (clip) {
  var video = clip.querySelector('video');
  if (!video) { return; }
  var start = Number(clip.dataset.start), fps = Number(clip.dataset.fps);
  function follow() {
    var frame = start + video.currentTime * fps;
    clip.querySelectorAll('.marker').forEach(function (m) {
      var x = frame / Number(m.dataset.frames) * 1000;
      m.setAttribute('x1', x); m.setAttribute('x2', x);
    });
    if (video.currentTime > 0) { clip.dataset.played = '1'; }
  }
  video.addEventListener('timeupdate', follow);
  video.addEventListener('seeked', follow);
});
"""
SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
CSP = ("default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'; "
       f"script-src 'sha256-{SCRIPT_HASH}'")

EXCERPT_SECONDS = 3.0
CLIP_HEIGHT = 144  # pixels of each side of an excerpt
CLIP_BITRATE = 250_000


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --------------------------------------------------------------------------------------------------
# Distributions


def _distributions(df, columns, rows) -> str:
    """Per table column (one metric under one definition): a full-width box plot, methods on one axis,
    and the medians beside it; values a box cannot draw (inf) counted under it."""
    plt = _pyplot()
    parts = []
    for col in columns:
        methods = [r["method"] for r in rows if r["kind"] != "reported" and col.name in r["values"]]
        values = df[(df.metric == col.metric) & df.method.isin(methods) & df.value.notna()]
        if values.empty:
            continue
        per_method = {m: values[values.method == m].value.to_numpy() for m in methods}
        per_method = {m: v for m, v in per_method.items() if len(v)}
        finite = {m: v[np.isfinite(v)] for m, v in per_method.items()}
        drawn = [m for m, v in finite.items() if len(v)]
        img = ""
        if drawn:
            fig, ax = plt.subplots(figsize=(8, 0.4 * len(drawn) + 0.9))
            ax.boxplot([finite[m] for m in drawn], orientation="horizontal", showmeans=True, widths=0.6)
            ax.set_yticks(range(1, len(drawn) + 1), drawn, fontsize=11)
            ax.invert_yaxis()
            ax.tick_params(axis="x", labelsize=10)
            ax.set_xlabel(col.header, fontsize=11)
            ax.grid(axis="x", alpha=0.3)
            img = f"<img src='{_png(fig)}' alt='{html.escape(col.header)} by method'>"
        body = "".join(
            f"<tr><td>{html.escape(m)}</td><td>{fmt_value(float(np.median(v)), col.decimals)}</td>"
            f"<td>{len(v)}</td></tr>" for m, v in per_method.items())
        table = f"<table><tr><th>{html.escape(col.header)}</th><th>median</th><th>videos</th></tr>{body}</table>"
        notes = "".join(
            f"<p class='note'>{html.escape(m)}: {int(np.isinf(v).sum())} of {len(v)} videos with "
            f"{html.escape(col.label)} infinite (identical frames: the best value) are not drawn in its box</p>"
            for m, v in per_method.items() if np.isinf(v).any())
        parts.append(f"<div class='metric'>{img}{table}</div>{notes}")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------
# Videos worth looking at


def _worst_videos(df, runs, count: int) -> list[tuple]:
    """(run, video, [(metric, value)]) of each method's worst videos: per metric with spread (its values
    over the method's videos differ), the worst one; at most ``count`` videos a method."""
    chosen = []
    for run in runs:
        if is_ground_truth(run.method):
            continue
        sub = df[(df.method == run.method) & df.value.notna()]
        picks: dict[str, list] = {}
        for metric, g in sub.groupby("metric", sort=False):
            m = get_metric(metric)
            finite = g[np.isfinite(g.value)]
            if m.higher_is_better is None or m.scope != "video" or finite.value.nunique() < 2:
                continue  # no spread: no video is worse than another
            worst = finite.sort_values("value", ascending=m.higher_is_better).iloc[0]
            picks.setdefault(worst.video, []).append((metric, float(worst.value)))
        for video, why in list(picks.items())[:count]:
            chosen.append((run, video, why))
    return chosen


def _per_frame(store: ResultStore, run, video: str) -> list[tuple[str, list, bool | None]]:
    """The per-frame values the run's details keep for ``video`` (``Metric.per_frame``): (label, values,
    higher is better), in the registry's order."""
    out = []
    for metric in all_metrics():
        key = get_metric(metric).per_frame
        if key and metric in run.metric_params:
            values = store.details(run, metric).get(video, {}).get(key)
            if values:
                out.append((get_metric(metric).label, values, get_metric(metric).higher_is_better))
    return out


def _svg_curve(label: str, values: list, frames: int, span: tuple[int, int] | None) -> str:
    """A per-frame curve as inline SVG (x: frames 0..frames over a 1000-unit axis), the excerpt's span
    shaded, and a marker the page's script moves with playback."""
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    ok = np.isfinite(v)
    if not ok.any():
        what = "inf on every frame (identical frames)" if np.isinf(v).any() else "no value on any frame"
        return f"<p class='note'>{html.escape(label)} per frame: {what}</p>"
    lo, hi = float(v[ok].min()), float(v[ok].max())
    scale = (hi - lo) or 1.0
    segment, paths = [], []
    for i, x in enumerate(v):
        if not np.isfinite(x):
            if segment:
                paths.append(segment)
            segment = []
            continue
        segment.append(f"{(i + 0.5) / frames * 1000:.1f},{8 + (1 - (x - lo) / scale) * 56:.1f}")
    if segment:
        paths.append(segment)
    lines = "".join(f"<polyline points='{' '.join(p)}' fill='none' stroke='#1f77b4' stroke-width='1.5' "
                     "vector-effect='non-scaling-stroke'/>" for p in paths)
    shade = ""
    if span is not None:
        shade = (f"<rect class='excerpt' x='{span[0] / frames * 1000:.1f}' y='0' "
                 f"width='{(span[1] - span[0]) / frames * 1000:.1f}' height='72'/>")
    infinite = int(np.isinf(v).sum())
    title = f"{label} per frame: {fmt_value(lo, 3)} to {fmt_value(hi, 3)}" + (
        f", {infinite} frames inf (not drawn)" if infinite else "")
    return (f"<div class='curve-label'>{html.escape(title)}</div>"
            f"<svg class='curve' viewBox='0 0 1000 72' preserveAspectRatio='none' role='img' "
            f"aria-label='{html.escape(title)}'>{shade}{lines}"
            f"<line class='marker' data-frames='{frames}' x1='0' x2='0' y1='0' y2='72' "
            "vector-effect='non-scaling-stroke'/></svg>")


def _excerpt(gen: Path, gt: Path | None, fps: float | None, start: int, frames: int) -> tuple[str | None, float]:
    """The generated and GT frames [start, start + frames) side by side (each CLIP_HEIGHT high; the
    generated alone without a GT), with
    the generated video's audio of that span, as a WebM (VP8, Opus) data URI; and its frame rate."""
    rate = fps or media.probe(gen).native_fps or 25.0

    def frames_of(path: Path) -> list[np.ndarray]:
        out, seen = [], 0
        for chunk in media.iter_frames(path, fps):
            for f in chunk:
                if start <= seen < start + frames:
                    out.append(f)
                seen += 1
            if seen >= start + frames:
                break
        return out

    left = frames_of(gen)
    right = frames_of(gt) if gt is not None else [np.zeros((0, 0, 3), np.uint8)] * len(left)
    n = min(len(left), len(right))
    if n == 0:
        return None, rate

    def small(f: np.ndarray) -> np.ndarray:
        width = max(2, round(f.shape[1] * CLIP_HEIGHT / f.shape[0] / 2) * 2)
        return cv2.resize(f, (width, CLIP_HEIGHT), interpolation=cv2.INTER_AREA)

    sides = np.stack([np.hstack([small(a), small(b)]) if b.size else small(a)
                      for a, b in zip(left[:n], right[:n], strict=False)])
    try:
        audio = media.read_audio(gen)[int(start / rate * 16000):int((start + n) / rate * 16000)]
    except LipsyncBenchError:
        audio = None
    buf = media.write_video(io.BytesIO(), sides, rate, audio if audio is not None and len(audio) else None,
                            codec="libvpx", bit_rate=CLIP_BITRATE, container_format="webm")
    return "data:video/webm;base64," + base64.b64encode(buf.getvalue()).decode(), rate


def _excerpt_start(curves: list[tuple[str, list, bool | None]], length: int) -> int:
    """Where the excerpt starts: on the worst stretch of ``length`` frames of the first per-frame curve
    (by its direction), else at the beginning."""
    if not curves or curves[0][2] is None:
        return 0
    _, values, higher_is_better = curves[0]
    v = np.array([np.nan if x is None else float(x) for x in values], dtype=float)
    if len(v) <= length or not np.isfinite(v).any():
        return 0
    v = np.where(np.isfinite(v), v, np.nanmedian(v[np.isfinite(v)]))
    sums = np.convolve(v, np.ones(length), "valid")
    return int(np.argmin(sums) if higher_is_better else np.argmax(sums))


def _videos(store: ResultStore, runs, df, count: int, with_media: bool) -> str:
    parts = []
    inputs: dict[int, dict] = {}  # run -> its pairs, listed once
    for run, video, why in _worst_videos(df, runs, count):
        curves = _per_frame(store, run, video)
        rate = run.protocol.get("decode.fps") or None
        length = max(1, round(EXCERPT_SECONDS * (rate or 25.0)))
        start = _excerpt_start(curves, length)
        clip, note = None, ""
        if with_media:
            try:
                if run.run_id not in inputs:
                    inputs[run.run_id] = {p.key: p for p in media.pair_inputs(run.gen_dir, run.gt_dir).pairs}
                pair = inputs[run.run_id].get(video)
                if pair is not None:
                    clip, rate = _excerpt(pair.gen, pair.gt if run.gt_dir else None, rate, start, length)
                else:
                    note = "its inputs are no longer where the store says"
            except (LipsyncBenchError, OSError, TypeError) as exc:
                note = f"its inputs could not be read ({exc})"
        else:
            note = "no clip: 'report --media' reads the input folders the store records"
        frames = max(len(values) for _, values, _ in curves) if curves else length
        svg = "".join(_svg_curve(label, values, frames, (start, start + length) if clip else None)
                      for label, values, _ in curves)
        head = ", ".join(f"worst {get_metric(m).label} {fmt_value(v, get_metric(m).decimals)}" for m, v in why)
        sides = "<span>generated</span>" + ("<span>ground truth</span>" if run.gt_dir else "")
        player = (f"<video src='{clip}' controls muted loop autoplay playsinline preload='auto'></video>"
                  f"<div class='labels'>{sides}</div>" if clip else f"<p class='note'>{html.escape(note)}</p>")
        span = (f"frames {start}–{start + length - 1}, " if clip else "")
        parts.append(f"<div class='clip' data-start='{start}' data-fps='{rate or 25.0:g}'>"
                     f"<h4>{html.escape(run.method)} / {html.escape(video)}: {html.escape(head)}</h4>{player}{svg}"
                     f"<p class='note'>{span}per-frame curves of the stored details (the first "
                     f"{frames} frames); the red line follows playback</p></div>")
    return "".join(parts)


# --------------------------------------------------------------------------------------------------
# Curves, tracks, warnings, protocol


def _curves(store: ResultStore, runs) -> list[tuple[str, str]]:
    """Plots of the curves that metrics keep in their details (``Metric.curve``, e.g. a distance
    against offset): (title, data URI) per kind of curve, one axis per run."""
    plt = _pyplot()
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
            kept = [np.asarray(d[m.curve.key]) for d in details.values() if m.curve.key in d]
            if kept:
                kinds.setdefault(m.curve, {})[run.method] = (kept, m.curve.y_label(params))
    plots = []
    for curve, by_run in kinds.items():
        # no shared y axis: another definition's values are on another scale
        fig, axes = plt.subplots(1, len(by_run), figsize=(4.2 * len(by_run), 3.4), squeeze=False)
        for ax, (method, (cs, y_label)) in zip(axes[0], by_run.items(), strict=False):
            x = curve.x_values(len(cs[0])) if curve.x_values else np.arange(len(cs[0]))
            for c in cs:
                ax.plot(x, c, color="tab:blue", alpha=0.25, lw=0.8)
            ax.plot(x, np.mean(cs, axis=0), color="tab:red", lw=2, label="mean")
            ax.set_title(f"{method} ({len(cs)} videos)", fontsize=11)
            ax.set_xlabel(curve.x_label, fontsize=10)
            ax.set_ylabel(y_label, fontsize=10)
        axes[0][0].legend(fontsize=9)
        fig.tight_layout()
        plots.append((curve.title, _png(fig)))
    return plots


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


def _problems(df) -> str:
    """Failures and warnings, one row per method, video and message (the metrics it concerns)."""
    rows: dict[tuple, list[str]] = {}
    for r in df.itertuples():
        if isinstance(r.error, str):
            rows.setdefault(("failed", r.method, r.video, r.error), []).append(r.metric)
        for w in r.warnings:
            rows.setdefault(("warning", r.method, r.video, w), []).append(r.metric)
    if not rows:
        return ""
    body = "".join(f"<tr><td>{kind}</td><td class='text'>{html.escape(method)}</td><td class='text'>"
                   f"{html.escape(video)}</td><td class='text'>{html.escape(', '.join(metrics))}</td>"
                   f"<td class='text'>{html.escape(message)}</td></tr>"
                   for (kind, method, video, message), metrics in sorted(rows.items()))
    return ("<table><tr><th>kind</th><th>method</th><th>video</th><th>metrics</th><th>message</th></tr>"
            f"{body}</table>")


def _protocol_table(store: ResultStore, run) -> str:
    """A run's protocol as a table: each choice, its value, its source (the named protocol's), and
    what the command line changed; each metric's parameters; the raw record folded below."""
    record = run.protocol
    name = str(record.get("protocol", "?"))
    base = name.removesuffix(" (modified)")
    sources = load_protocol(base).sources if base in protocol_names() else {}
    modified = record.get("modified", {})
    rows = []
    for key, value in record.items():
        if key in ("protocol", "protocol_sha256", "modified") or isinstance(value, dict):
            continue
        was = modified.get(key)
        change = f"changed (protocol {base}: {was[0]})" if was else ""
        rows.append(f"<tr><td>{html.escape(key)}</td><td class='text'>{html.escape(str(value))}</td>"
                    f"<td class='text'>{html.escape(change)}</td>"
                    f"<td class='text'>{html.escape(sources.get(key, ''))}</td></tr>")
    for metric, params in run.metric_params.items():
        changed = params.get("protocol_values", {})
        for key, value in params.items():
            if key in ("protocol_values", "resolved", "weights"):
                continue
            change = f"changed (protocol {base}: {changed[key]})" if key in changed else ""
            rows.append(f"<tr><td>{html.escape(f'{metric}.{key}')}</td><td class='text'>{html.escape(str(value))}</td>"
                        f"<td class='text'>{html.escape(change)}</td>"
                        f"<td class='text'>{html.escape(sources.get(f'{metric}.{key}', ''))}</td></tr>")
        weights = params.get("weights")
        for w in (weights if isinstance(weights, list) else [weights] if weights else []):
            rows.append(f"<tr><td>{html.escape(metric)} weights</td><td class='text'>{html.escape(str(w.get('file')))}"
                        f"</td><td class='text'>{'' if w.get('official') else 'unofficial'}</td><td class='text'>"
                        f"sha256 {html.escape(str(w.get('sha256', ''))[:16])}…</td></tr>")
    sessions = store.sessions(run)
    doc = {"protocol": record, "metric_params": run.metric_params, "gen_dir": run.gen_dir, "gt_dir": run.gt_dir,
           "environment": sessions[-1]["environment"] if sessions else None, "sessions": len(sessions)}
    return (f"<h4>{html.escape(run.method)}: protocol {html.escape(name)}</h4>"
            "<table><tr><th>choice</th><th>value</th><th>modified</th><th>source</th></tr>"
            f"{''.join(rows)}</table><details><summary>the full record (JSON)</summary>"
            f"<pre>{html.escape(json.dumps(doc, indent=2, default=str))}</pre></details>")


# --------------------------------------------------------------------------------------------------
# The page


class ReportFile(Document):
    """``report``: the page written (``path``) and its size."""

    def text(self) -> str:
        return f"report written to {self['path']} ({self['bytes'] / 1e6:.1f} MB)"


def build_report(results: str | Path, out: str | Path, datasets: list[str] | None = None, worst: int = 3,
                 with_media: bool = False) -> ReportFile:
    """Write the HTML report of the results folder ``results`` to ``out``: per method at most ``worst``
    videos worth looking at. Only ``with_media`` reads the input folders the store records (the clips)."""
    store = ResultStore.open_existing(results)
    try:
        body = _body(store, results, datasets, worst, with_media)
    finally:
        store.close()
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>lipsync-bench report</title><style>{CSS}</style></head><body>{body}"
            f"<script id='player'>{SCRIPT}</script></body></html>\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = page.encode("utf-8")
    atomic_write_bytes(out, data)
    return ReportFile(path=str(out), bytes=len(data))


def _body(store: ResultStore, results, datasets, worst: int, with_media: bool) -> str:
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
        video_metrics = {c.metric for c in columns if get_metric(c.metric).scope == "video"}
        distributions = _distributions(df, [c for c in columns if c.metric in video_metrics], rows)
        if distributions:
            body.append(f"<h3>Distributions over videos</h3>{distributions}")
        videos = _videos(store, runs, df, worst, with_media)
        if videos:
            body.append("<h3>Videos worth looking at</h3><p class='note'>per method, the worst video of each metric "
                        "whose values differ between videos; generated left, ground truth right</p>" + videos)
        for title, uri in _curves(store, runs):
            body.append(f"<h3>{html.escape(title)}</h3><img src='{uri}' alt='{html.escape(title)}' "
                        "style='max-width:100%'>")
        tracks_html = _tracks(store, runs)
        if tracks_html:
            body.append(f"<h3>Face tracks, each scored</h3>{tracks_html}")
        problems = _problems(df)
        if problems:
            body.append(f"<h3>Warnings and failures</h3>{problems}")
        body.append("<h3>Protocol</h3>" + "".join(_protocol_table(store, run) for run in runs))
    return "".join(body)

