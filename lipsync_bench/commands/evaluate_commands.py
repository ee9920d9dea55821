"""Evaluate: eval, table, compare, report, merge, verify, and lse (one video's sync scores)."""
from __future__ import annotations

from pathlib import Path

import click

from ..faces.settings import BACKENDS
from ..weights import ENV_VAR
from .common import (
    DEFAULT_RESULTS,
    command_line,
    device_option,
    emit,
    existing_file,
    existing_folder,
    friendly,
)

_RESULTS = click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path),
                        help="Results folder written by 'eval --out'.")


class EvalCommand(click.Command):
    """``eval`` with the command-line aliases the metric declarations give (``--fid-frames``,
    ``--sync-model`` …), added before ``--weights-dir`` when the command is parsed or its help shown."""

    def get_params(self, ctx):
        if not hasattr(self, "aliases"):
            from ..metrics.registry import metric_aliases

            self.aliases, options = {}, []
            for target, alias, param in metric_aliases():
                kind = (click.Choice([str(c) for c in param.choices]) if param.choices is not None else
                        click.Path(exists=True, dir_okay=False) if param.kind == "path" else
                        {"int": int, "float": float, "bool": bool}.get(param.type_name, str))
                option = click.Option([alias.option], type=kind, default=None, help=alias.help)
                self.aliases[option.name] = (target, alias.param)
                options.append(option)
            at = next(i for i, p in enumerate(self.params) if p.name == "weights_dir")
            self.params[at:at] = options
        return super().get_params(ctx)


@click.command("eval", cls=EvalCommand)
@click.option("--gen", "gen", required=True, type=click.Path(exists=True, path_type=Path),
              help="Folder of generated videos (or frame folders with audio.wav); or one video file.")
@click.option("--gt", "gt", default=None, type=click.Path(exists=True, path_type=Path),
              help="Folder of ground-truth videos; paired with --gen by relative path without extension (two files: "
                   "one pair). Without it, only the metrics that read the generated video alone run (LSE with its "
                   "own audio, CPBD, NIQE). Files that are not videos are listed as ignored.")
@click.option("--metrics", default="all", show_default=True,
              help="Comma-separated metric names (see 'lipsync-bench metrics'); 'all' runs every metric of the "
                   "protocol that can run here and says why the others are skipped.")
@click.option("--name", "method", default=None, help="Method name for tables [default: the --gen folder's name].")
@click.option("--dataset", default=None,
              help="Dataset name for tables [default: the --gt folder's name, else the --gen folder's].")
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
@click.option("--landmarker", type=click.Choice(BACKENDS), default=None,
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
@device_option
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
@click.pass_context
@friendly
def eval_cmd(ctx, gen, gt, metrics, method, dataset, out, protocol_name, fps, region, max_frame_gap, landmarker,
             choices, params, weights_dir, device, workers, force, decode_timeout, shard, as_json, quiet, **aliases):
    """Evaluate generated videos against ground truth and store the results.

    Each input is decoded once as the protocol says and its faces analysed once; every metric reads
    the same frames. The run resumes: videos already in the store are not computed again unless
    --force. A video that fails is reported with its reason and the others go on. A bad option, a
    protocol that cannot run here, or a metric named in --metrics that cannot run here (its weights
    missing), fails (exit status 2) before any video is read, and nothing is written.
    """
    from ..metrics.registry import get_metric, parse_params

    names = None if metrics.strip() == "all" else [m.strip() for m in metrics.split(",") if m.strip()]
    for name in names or ():
        get_metric(name)  # a misspelled name fails before torch is imported
    from ..evaluation import evaluate
    from ..protocol import parse_choices
    from ..shards import parse_shard

    overrides = parse_params(params)
    for option, value in aliases.items():
        if value is not None:
            target, key = ctx.command.aliases[option]
            overrides.setdefault(target, {})[key] = value
    result = evaluate(gen, gt, names, method=method, dataset=dataset, out=out, protocol=protocol_name, fps=fps,
                      region=region, max_frame_gap=max_frame_gap, landmarker=landmarker,
                      choices=parse_choices(choices), params=overrides, device=device, workers=workers, force=force,
                      progress=not quiet and not as_json, decode_timeout=decode_timeout, weights_dir=weights_dir,
                      shard=parse_shard(shard) if shard is not None else None, command=command_line())
    emit(result, as_json)


@click.command("table")
@click.option("--dataset", required=True, help="Dataset whose runs form the rows.")
@_RESULTS
@click.option("--format", "fmt", type=click.Choice(["markdown", "latex", "csv", "html"]), default="markdown",
              show_default=True)
@click.option("--paper", is_flag=True, help="Add the paper's reported rows for this dataset, labelled 'reported'.")
@click.option("--score", type=click.Choice(["theval", "vico"]), default=None,
              help="Score the rows instead: theval (THEval's GT-normalised scores, group scores, final score and "
                   "rank) or vico (the ViCo challenge's rank-sum), beside the raw values; from the stored means.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a table.")
@friendly
def table_cmd(dataset, results, fmt, paper, score, as_json):
    """One row per evaluated method: mean per metric in the paper's column order (SSIM PSNR FID IFC
    LMD LSE-C LSE-D), best measured value in bold, '–' where a metric was not computed."""
    if score is not None:
        if paper:
            raise click.UsageError("--score scores the measured rows; it takes no --paper")
        from ..leaderboard import score_table

        emit(score_table(results, dataset, score), as_json, fmt=fmt)
        return
    from ..report import method_table

    emit(method_table(results, dataset, paper), as_json, fmt=fmt)


@click.command("merge")
@click.argument("sources", nargs=-1, required=True, type=existing_folder())
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Results folder to merge into.")
@click.option("--device", default="cpu", show_default=True)
@friendly
def merge_cmd(sources, out, device):
    """Combine results folders (such as the shards of 'eval --shard I/N') into one. Dataset metrics
    (FID) are computed again over all videos from the per-video state the folders hold, never
    averaged; the inputs need not be readable."""
    from ..shards import merge

    emit(merge(sources, out, device, command=command_line()))


@click.command("verify")
@click.argument("results", type=existing_folder())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document: ok, problems, notes, counts.")
@friendly
def verify_cmd(results, as_json):
    """Check a results folder and write nothing: the store's integrity, each row that holds or defines a
    number against its digest, each state file against its checksum, each dataset value (FID) recomputed
    from the state files, and results.csv / summary.json against the store. Exit status 1 when a problem
    is found; each is one line."""
    from ..verify import verify

    emit(verify(results), as_json)


@click.command("report")
@click.argument("results", type=existing_folder())
@click.option("--out", "out", default="report.html", show_default=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (repeatable) [default: all].")
@click.option("--worst", default=3, show_default=True,
              help="Videos shown per method: the worst of each metric whose values differ between videos.")
@click.option("--media", "with_media", is_flag=True,
              help="Embed a short clip of each video shown (generated and GT side by side, in sync), read from the "
                   "input folders the store records (off by default: a results folder from elsewhere must not make "
                   "the report read this machine's files). The per-frame curves come from the store either way.")
@friendly
def report_cmd(results, out, datasets, worst, with_media):
    """One self-contained HTML page of RESULTS: the method table, each metric's distribution, the videos
    worth looking at (with --media, their clips playing in sync, per-frame curves under them), face
    tracks, curves, warnings, failures and protocols (nothing fetched, every string from the inputs or
    the store escaped, one inline script allowed by its hash)."""
    from ..report_html import build_report

    emit(build_report(results, out, list(datasets) or None, worst, with_media))


@click.command("compare")
@click.argument("method_a")
@click.argument("method_b")
@click.option("--dataset", required=True)
@click.option("--results", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--alpha", default=0.05, show_default=True, help="Significance level for the verdict.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def compare_cmd(method_a, method_b, dataset, results, alpha, as_json):
    """Paired Wilcoxon signed-rank test of two methods on the videos both were evaluated on."""
    from ..report import compare

    emit(compare(results, dataset, method_a, method_b, alpha), as_json)


@click.command("lse")
@click.argument("video", type=existing_file())
@click.option("--audio", type=existing_file(), default=None,
              help="Score against this audio file instead of the video's own track.")
@click.option("--crop", type=click.Choice(["track", "none"]), default="track", show_default=True,
              help="track: find and crop the face as eval does; none: VIDEO is already a 224x224 face crop "
                   "(as syncnet_python's demo_syncnet.py takes it).")
@click.option("--compat", type=click.Choice(["none", "syncnet_python"]), default="none", show_default=True,
              help="syncnet_python: also round-trip the frames through JPEG as the reference's ffmpeg step does, "
                   "to match published numbers (docs/lse.md: the reference's lossy step).")
@click.option("--fps", default=25.0, show_default=True, help="Frame rate the video is resampled to.")
@click.option("--vshift", default=15, show_default=True, help="Offsets searched each way, in frames.")
@click.option("--min-track", default=0, show_default=True,
              help="Refuse face tracks shorter than this (syncnet_python's pipeline uses 100).")
@click.option("--weights-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help=f"Folder of weights under their published names (syncnet_v2.model, lipsync_expert.pth) "
                   f"[default: ${ENV_VAR}, then the torch hub cache].")
@click.option("--sync-model", type=click.Choice(["syncnet", "avsyncnet", "wav2lip"]), default="syncnet",
              show_default=True, help="Sync expert; avsyncnet/wav2lip use unit-norm embeddings (another scale).")
@click.option("--sync-weights", default=None, type=existing_file(),
              help="Weights of the sync expert [default: syncnet_v2.model / lipsync_expert.pth from the weights "
                   "folder].")
@click.option("--device", default="cpu", show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Save the distance-vs-offset curve and the framewise confidence as a PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print offset, lse_c, lse_d, the curve and the protocol as JSON.")
@friendly
def lse_cmd(video, audio, crop, compat, fps, vshift, min_track, weights_dir, sync_model, sync_weights, device, plot,
            as_json):
    """LSE-C, LSE-D and the AV offset of one VIDEO with SyncNet (syncnet_python's procedure), or with
    another sync expert (--sync-model)."""
    from ..metrics.lse import score_file

    emit(score_file(video, audio, crop, compat, fps, vshift, min_track, device, weights_dir, sync_model, sync_weights,
                    plot), as_json)
