"""Set up: what can run here and how to make it run (metrics, protocols, weights, calibrate), the offline
demo, and the face stage on one video (faces)."""
from __future__ import annotations

from pathlib import Path

import click

from ..faces.settings import BACKENDS
from ..weights import ENV_VAR
from .common import emit, friendly, json_option

_WEIGHTS_DIR = click.option("--weights-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                            help=f"Folder searched first for the checks' inputs [then ${ENV_VAR}, then the torch "
                                 "hub cache].")


@click.command("metrics")
@json_option
@friendly
def metrics_cmd(as_json):
    """List the metrics, what each needs, and whether it can run on this machine now."""
    from ..evaluation import available_metrics

    emit(available_metrics(), as_json)


@click.group("protocols", invoke_without_command=True)
@json_option
@click.pass_context
@friendly
def protocols_group(ctx, as_json):
    """The named protocols: the field's published procedures, one line each (show NAME: every choice
    with its source; diff A B: the choices that differ). Use one with 'eval --protocol NAME'."""
    if ctx.invoked_subcommand is None:
        from ..evaluation import protocol_listing

        emit(protocol_listing(), as_json)


@protocols_group.command("show")
@click.argument("name", metavar="NAME|FILE.toml")
@json_option
@friendly
def protocols_show(name, as_json):
    """Every choice of a protocol, with its value and the source it follows (unknowns marked)."""
    from ..protocol import load_protocol

    emit(load_protocol(name), as_json)


@protocols_group.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@json_option
@friendly
def protocols_diff(a, b, as_json):
    """Every choice that differs between protocols A and B (names or .toml files)."""
    from ..protocol import diff, load_protocol

    emit(diff(load_protocol(a), load_protocol(b)), as_json)


@click.command("calibrate")
@_WEIGHTS_DIR
@json_option
@friendly
def calibrate_cmd(weights_dir, as_json):
    """Reproduce the published outputs of the references' own examples with the official inputs present
    here (weights, clips), and print expected against measured. A check whose inputs are absent is
    listed as not run, with how to get them. Exit status: 0 every check ran and passed, 1 a check failed
    or erred, 3 none failed but a check did not run (not run is not passed)."""
    from ..calibration import run_checks

    emit(run_checks(weights_dir=weights_dir), as_json)


@click.group("weights")
def weights_group():
    """Pretrained weights: what is known, where it is looked for, whether what is there is official.

    Nothing is downloaded during evaluation: 'weights fetch NAME' downloads a file (checksum verified),
    or place files under their published names in $LIPSYNC_BENCH_WEIGHTS (or --weights-dir) or the
    torch hub cache."""


@weights_group.command("list")
@json_option
@friendly
def weights_list(as_json):
    """Known weights, where they were found (or where to put them), and their checksum status."""
    from ..weights import inventory

    emit(inventory(), as_json)


@weights_group.command("path")
@click.argument("name")
@friendly
def weights_path(name):
    """Print the path of the weights NAME, or say where to put them."""
    from ..weights import path_of

    click.echo(str(path_of(name)))


@weights_group.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option("--weights-dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help=f"Download into this folder [default: ${ENV_VAR}, else the torch hub cache].")
@click.option("--url", default=None, help="Download from this mirror instead of the official URL (one name only).")
@friendly
def weights_fetch(names, weights_dir, url):
    """Download the weights NAMES ('all' for every file with a direct download) and keep each only if
    its sha256 is the published one."""
    from ..weights import fetch_all

    emit(fetch_all(list(names), weights_dir, url))


@weights_group.command("verify")
@friendly
def weights_verify():
    """Check the checksum of every known weights file that is present; exit 1 if one is unofficial."""
    from ..weights import verify_present

    emit(verify_present())


@click.command("demo")
@click.option("--out", default=None, type=click.Path(path_type=Path),
              help="Folder for the example clips and results [default: a temporary folder, removed after].")
@json_option
@friendly
def demo_cmd(out, as_json):
    """Build a small example set (a real face photo with a mouth driven by synthetic speech, and
    'generated' versions with known degradations), evaluate it, and print the table. Offline."""
    from ..demo import run_demo

    emit(run_demo(out, progress=not as_json), as_json)


@click.command("faces")
@click.argument("video", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the video with the face track and landmarks drawn on it (e.g. overlay.mp4).")
@click.option("--fps", default=25.0, show_default=True)
@click.option("--landmarker", type=click.Choice(BACKENDS), default="auto",
              show_default=True, help="auto: face-alignment when its weights are present, else dlib.")
@json_option
@friendly
def faces_cmd(video, out, fps, landmarker, as_json):
    """Detect, track and landmark the faces of VIDEO as the face metrics do; report the fraction of
    frames with a face and, with --out, draw what was found."""
    from ..faces.analysis import inspect_video

    emit(inspect_video(video, out, fps, landmarker), as_json)

