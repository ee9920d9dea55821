"""Research: a training folder from raw videos (prepare), the studies of the sync experts (stability,
robustness) and the generator's inference (generate). Training is in ``training_commands``."""
from __future__ import annotations

from pathlib import Path

import click

from ..faces.settings import BACKENDS
from .common import device_option, emit, existing_file, existing_folder, friendly, json_option, quiet_option

DATA_HELP = ("Folder of talking-face clips: videos (through the face pipeline, crops cached), a folder written by "
             "'lipsync-bench prepare', or Wav2Lip's preprocessed layout (<video>/<n>.jpg + audio.wav).")


def data_options(fn):
    """--layout, --cache and --device, shared by the commands that read talking-face clips."""
    fn = device_option(fn)
    fn = click.option("--cache", "cache_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
                      help="Where face crops of videos are cached [default: $LIPSYNC_BENCH_CACHE, else the user's "
                           "cache folder, e.g. ~/.cache/lipsync-bench; the data folder is only read].")(fn)
    return click.option("--layout", type=click.Choice(["auto", "wav2lip", "videos", "prepared"]), default="auto",
                        show_default=True, help="auto: prepared when the folder holds prepared.json; else wav2lip "
                                                "when it holds such folders and no videos; else videos.")(fn)


def _expert_options(fn):
    """The sync experts a study compares."""
    fn = click.option("--seed", default=0, show_default=True)(fn)
    fn = click.option("--json", "as_json", is_flag=True)(fn)
    fn = quiet_option(fn)
    fn = click.option("--random-init", is_flag=True,
                      help="Seeded random weights, batch norms calibrated on the data (smoke tests; labelled); "
                           "not with --weights.")(fn)
    fn = click.option("--weights", "weights_files", multiple=True,
                      help="Weights of each --model, in order [default: syncnet_v2.model / lipsync_expert.pth "
                           "from the weights folder; avsyncnet needs one].")(fn)
    return click.option("--model", "models", multiple=True, required=True,
                        type=click.Choice(["syncnet", "wav2lip", "avsyncnet"]),
                        help="Sync expert (repeatable: several models share decoding).")(fn)


@click.command("prepare")
@click.option("--data", required=True, type=existing_folder(),
              help="Raw talking-face videos: LRS2's main/ (<video>/<utterance>.mp4) or any folder of videos.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Training folder to write (<name>.npz per clip and prepared.json); a rerun finishes it.")
@click.option("--filelist", default=None, type=existing_file(),
              help="Only these videos (LRS2's train.txt/val.txt/test.txt: <video>/<utterance> a line).")
@click.option("--shard", default=None, metavar="I/N",
              help="Prepare only shard I of N (the split of 'eval --shard'), e.g. one task of a job array; "
                   "every shard writes into the same --out.")
@click.option("--landmarker", type=click.Choice(BACKENDS), default="auto", show_default=True)
@json_option
@quiet_option
@friendly
def prepare_cmd(data, out, filelist, shard, landmarker, as_json, quiet):
    """Turn raw videos into a training folder: each video through the face stage (detection, tracking,
    smoothing) at 25 fps and 16 kHz, cut to its main face track, cropped by the one crop geometry that
    training, the studies and generate share. Resumable: a rerun skips the clips already written."""
    from ..research.prepare import prepare
    from ..shards import parse_shard

    emit(prepare(data, out, filelist, parse_shard(shard) if shard else None, landmarker,
                 progress=not quiet and not as_json), as_json)


@click.command("stability")
@click.option("--data", required=True, type=existing_folder(), help="Ground-truth clips. " + DATA_HELP)
@click.option("--gen", default=None, type=existing_folder(),
              help="Generated videos (same names): adds generated and reference pairs (Fig. C).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--samples", default=None, type=int,
              help="Windows in all (per --filelist), spread evenly over the clips [default: all].")
@click.option("--filelist", "filelists", multiple=True, type=existing_file(),
              help="Only the clips of this list (LRS2's train.txt/test.txt: <video>/<utterance> a line); repeatable: "
                   "each list's rows apart, labelled by its file name (train.txt -> train), as Tab. A's train and "
                   "test rows [default: all clips, one set of rows].")
@_expert_options
@data_options
@friendly
def stability_cmd(data, gen, out, samples, filelists, models, weights_files, random_init, quiet, as_json, seed,
                  layout, cache_dir, device):
    """Cosine similarity and lip-sync loss of GT audio-lip pairs per sample (the paper's Tab. A, Fig. A;
    with --gen, Fig. C), per --filelist when given: stability.csv, stability.json and stability.png in --out."""
    from ..research.studies import parse_models, stability

    emit(stability(data, parse_models(list(models), list(weights_files)), out, gen, random_init, samples, seed,
                   device, layout, cache_dir, progress=not quiet and not as_json, filelists=list(filelists)), as_json)


@click.command("robustness")
@click.option("--transform", required=True, type=click.Choice(["shift", "shear", "rotation", "rotation-mouth"]))
@click.option("--data", required=True, type=existing_folder(), help="Ground-truth clips. " + DATA_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--magnitudes", default=None,
              help="Comma-separated magnitudes (shift: px of a 224-px face crop; others: degrees) "
                   "[default: 0,10,...,60].")
@click.option("--samples", default=200, show_default=True, help="Windows in all, spread evenly over the clips.")
@_expert_options
@data_options
@friendly
def robustness_cmd(transform, data, out, magnitudes, samples, models, weights_files, random_init, quiet, as_json,
                   seed, layout, cache_dir, device):
    """Mean cosine similarity of GT pairs as a transform grows (the paper's Fig. 6 / Fig. B), per model:
    robustness_<transform>.csv/.json/.png in --out, and examples_<transform>.png (what each model saw of
    one window at each magnitude)."""
    from ..research.studies import parse_magnitudes, parse_models, robustness

    emit(robustness(data, parse_models(list(models), list(weights_files)), transform, out,
                    parse_magnitudes(magnitudes), random_init, samples, seed, device, layout, cache_dir,
                    progress=not quiet and not as_json), as_json)


@click.command("generate")
@click.option("--face", required=True, type=click.Path(exists=True, path_type=Path),
              help="Face video or image; or a folder of face videos (<name>.<ext>, nested folders allowed).")
@click.option("--audio", required=True, type=click.Path(exists=True, path_type=Path),
              help="Driving audio (any file with an audio track); the output lasts as long. With a --face folder: "
                   "a folder holding one under each face's name (a video, .wav/.flac/... or a frame folder's "
                   "audio.wav); it may be the --face folder itself.")
@click.option("--ckpt", required=True, type=existing_file(),
              help="train-generator checkpoint (holds its G_S and audio encoder).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Output video (.mp4/.mov; .mkv/.avi lossless); with folders, the output folder: "
                   "<out>/<name><ext>.")
@click.option("--filelist", default=None, type=existing_file(),
              help="Folders only: just these clips (LRS2's test.txt: <video>/<utterance> a line, extension optional).")
@click.option("--ext", default=None, help="Folders only: the outputs' extension, .mp4, .mov, .mkv or .avi "
                                          "(.mkv/.avi lossless) [default: .mp4].")
@click.option("--overwrite", is_flag=True,
              help="Folders only: generate again the clips whose output exists (by default they are skipped, so "
                   "a rerun finishes an interrupted run).")
@click.option("--batch", default=16, show_default=True, help="Frames generated at once.")
@click.option("--landmarker", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@quiet_option
@friendly
def generate_cmd(face, audio, ckpt, out, filelist, ext, overwrite, batch, landmarker, device, as_json, quiet):
    """Make a talking-face video: FACE's lower face redrawn to AUDIO at 25 fps, pasted back with a soft
    mask, the audio muxed in. With folders, every clip in one process (checkpoint and face models loaded
    once): a failed clip is one FAILED line and the others go on (exit status 1 when any failed); a rerun
    skips the outputs already there."""
    from ..research.generator.inference import generate

    emit(generate(face, audio, ckpt, out, device, batch, landmarker, progress=not quiet and not as_json,
                  filelist=filelist, ext=ext, overwrite=overwrite), as_json)
