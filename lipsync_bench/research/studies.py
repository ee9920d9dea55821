"""The paper's analyses of the sync experts, runnable on any data.

``stability`` (Tab. A, Fig. A, Fig. C): per 5-frame window of each ground-truth clip, the cosine
similarity (Eq. A) and lip-sync loss (Eq. B, label 1) of the aligned GT pair; with generated videos,
also of (generated window, the same audio) and of (a reference window, the same audio): the reference
is a seeded random window of the same GT clip that does not overlap the target, as a generator's
identity reference is. Summary: mean and standard deviation per model and pair kind; the per-sample
curves and the differences |GT - generated| (Fig. C (g)/(h)) are plotted.

``robustness`` (Fig. 6, Fig. B): the mean cosine similarity of aligned GT pairs while a transform of
growing magnitude is applied to every frame the expert sees:

- ``shift``: horizontal translation by m pixels of a 224-pixel-wide face crop (scaled to the expert's
  input width, e.g. m * 96 / 224 for Wav2Lip's), as SIDGAN's shift-invariance test; zeros enter.
- ``shear``: horizontal shear of m degrees, its sign drawn per window (seeded): "random shear".
- ``rotation``: rotation by m degrees (counter-clockwise) about the centre of the expert's input (the
  bottom half of the face for Wav2Lip's SyncNet and AVSyncNet).
- ``rotation-mouth``: the whole face crop rotated by m degrees, then its bottom half taken (Fig. B (d)).
  SyncNet's input is the whole crop, so for it this equals ``rotation``.

With file lists (``filelists``: LRS2's ``train.txt``, ``test.txt``, one ``<video>/<utterance>`` a line),
``stability`` gives each model's rows once per list, labelled by the list's file stem ("train", "test"),
as Tab. A's separate train and test rows; ``samples`` then counts per list.

``robustness`` also draws what the experts saw (Fig. B): ``examples_<transform>.png``, the first window
it scores, one row per model (that model's input: its crop, its half, its size), one column per
magnitude, made by the same transform function on the same batch as the study.

SyncNet takes syncnet_python's crop of the full frame (margin 0.4), wider than the face crops (margin
0.15) of a prepared folder, so it cannot be cut from them: on a prepared folder SyncNet reads the frames
of the videos the folder was prepared from (``syncnet_sources``), and the study is refused before any
work when they are gone or changed. Wav2Lip's layout holds face crops only: SyncNet is refused there.

Windows: every usable window of every clip, or ``samples`` of them spread evenly over the clips. A
clip's windows are those every expert family can score (``study_windows``: the window's 5 frames, its
16-step mel window and syncnet_python's MFCC span inside the clip), so all models of one run see the same
windows, and the windows — and each window's reference — depend on (seed, clip) alone: adding a model to
a run changes no other model's numbers. Crops are decoded once per clip and crop geometry.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision.transforms.v2.functional as TF
from tqdm import tqdm

from .. import weights
from ..baselines import reported_stability
from ..environment import environment
from ..errors import LipsyncBenchError, ParameterError
from ..faces.analysis import content_hash
from ..media import VIDEO_EXTENSIONS
from ..syncnets.expert_names import EXPERTS, KNOWN_WEIGHTS
from ..syncnets.experts import Expert, load_expert
from ..syncnets.inputs import FRAMES, INPUTS, frames_input
from ..syncnets.scoring import SAMPLES_PER_FRAME
from .datasets import ClipSet, FaceClip, open_clips, other_window, read_manifest, stored_crops_key
from .expert_analysis import Crops, clip_audio, clip_crops, cosine_similarities, random_expert, sync_loss_of
from .outcomes import RobustnessStudy, StabilityStudy

TRANSFORMS = ("shift", "shear", "rotation", "rotation-mouth")
DEFAULT_MAGNITUDES = {"shift": (0, 10, 20, 30, 40, 50, 60), "shear": (0, 10, 20, 30, 40, 50, 60),
                      "rotation": (0, 10, 20, 30, 40, 50, 60), "rotation-mouth": (0, 10, 20, 30, 40, 50, 60)}
REFERENCE_WIDTH = 224  # shift magnitudes are pixels of a face crop this wide


def make_transform(kind: str, magnitude: float, seed: int = 0):
    """A function of (M, 3, H, W) float images, M = windows x 5 frames (window-major), applying one
    transform of the given magnitude (see the module docstring); None for magnitude 0."""
    if kind not in TRANSFORMS:
        raise LipsyncBenchError(f"unknown transform {kind!r} (known: {', '.join(TRANSFORMS)})")
    if magnitude == 0:
        return None

    def transform(images: torch.Tensor) -> torch.Tensor:
        if kind == "shift":
            dx = magnitude * images.shape[-1] / REFERENCE_WIDTH
            return TF.affine(images, angle=0.0, translate=[dx, 0.0], scale=1.0, shear=[0.0, 0.0],
                             interpolation=TF.InterpolationMode.BILINEAR)
        if kind in ("rotation", "rotation-mouth"):
            # affine's angle turns clockwise; the magnitude counter-clockwise, as TF.rotate
            return TF.affine(images, angle=-float(magnitude), translate=[0.0, 0.0], scale=1.0, shear=[0.0, 0.0],
                             interpolation=TF.InterpolationMode.BILINEAR)
        windows = images.shape[0] // FRAMES
        signs = np.random.default_rng([seed, int(round(magnitude * 1000))]).choice([-1.0, 1.0], windows)
        out = images.clone()
        for sign in (-1.0, 1.0):
            rows = torch.from_numpy(np.repeat(signs == sign, FRAMES))
            if rows.any():
                out[rows] = TF.affine(images[rows], angle=0.0, translate=[0.0, 0.0], scale=1.0,
                                      shear=[sign * float(magnitude), 0.0], interpolation=TF.InterpolationMode.BILINEAR)
        return out

    return transform


@dataclass
class ModelSpec:
    name: str
    weights: Path | None = None


def parse_magnitudes(text: str | None) -> list[float] | None:
    """``"0,10,20"`` -> [0.0, 10.0, 20.0] (``robustness --magnitudes``); None or "" -> None (the default)."""
    if not text:
        return None
    try:
        return [float(m) for m in text.split(",")]
    except ValueError:
        raise LipsyncBenchError(f"--magnitudes {text!r}: expected numbers separated by commas") from None


def parse_models(models: list[str], weights_files: list[str]) -> list[ModelSpec]:
    """``--model`` (repeatable) with ``--weights`` (repeatable, in the same order; a model without one
    uses its known weights file: syncnet_v2.model, lipsync_expert.pth)."""
    if not models:
        raise LipsyncBenchError("give at least one --model (syncnet, wav2lip or avsyncnet)")
    if len(weights_files) > len(models):
        raise LipsyncBenchError(f"{len(weights_files)} --weights for {len(models)} --model")
    for m in models:
        if m not in EXPERTS:
            raise LipsyncBenchError(f"unknown model {m!r} (known: {', '.join(EXPERTS)})")
    return [ModelSpec(m, Path(weights_files[i]) if i < len(weights_files) else None) for i, m in enumerate(models)]


def check_models(specs: list[ModelSpec], random_init: bool) -> None:
    """Refuse ``--random-init`` with ``--weights``: a random network is not the trained one the weights
    name, and a result labelled "(random-init)" must not be read as theirs.

    Args:
        specs: the models (``parse_models``).
        random_init: whether the study runs seeded random networks.

    Raises:
        ParameterError: both were given.

    Example:
        >>> check_models([ModelSpec("wav2lip")], random_init=True)
    """
    given = [str(s.weights) for s in specs if s.weights is not None]
    if random_init and given:
        raise ParameterError(f"--random-init and --weights ({', '.join(given)}) contradict each other: "
                             "--random-init studies seeded random networks, not trained weights; give one of them")


def parse_filelists(filelists) -> list[tuple[str, Path]]:
    """(label, path) of each file list, the label its file stem (``test.txt`` -> "test"): the split that
    labels a study's rows. Checked before any work.

    Args:
        filelists: paths of LRS2-style lists (``<video>/<utterance>`` a line), or None / empty.

    Returns:
        One (label, path) per list, in the given order; [] without lists.

    Raises:
        ParameterError: a list is not a file, or two lists share a stem (their rows would read alike).

    Example:
        >>> parse_filelists([])
        []
    """
    splits: dict[str, Path] = {}
    for f in filelists or []:
        path = Path(f)
        if not path.is_file():
            raise ParameterError(f"--filelist {path}: no such file")
        if path.stem in splits:
            raise ParameterError(f"--filelist {splits[path.stem]} and {path} share the name {path.stem!r}, which "
                                 "labels each list's rows; rename one")
        splits[path.stem] = path
    return list(splits.items())


def _unique(clips: list[FaceClip]) -> list[FaceClip]:
    """The clips with their first occurrence of each name only (a list naming a clip twice), in order."""
    first: dict[str, FaceClip] = {}
    for clip in clips:
        first.setdefault(clip.name, clip)
    return list(first.values())


def _source_video(folder: Path, stem: str, listings: dict) -> Path | None:
    """The video (or frame folder) named ``stem`` in ``folder``, as ``media.find_inputs`` names inputs."""
    if folder not in listings:
        listings[folder] = sorted(folder.iterdir()) if folder.is_dir() else []
    for p in listings[folder]:
        if (p.is_dir() and p.name == stem) or (p.stem == stem and p.suffix.lower() in VIDEO_EXTENSIONS):
            return p
    return None


def syncnet_sources(clipset: ClipSet, data: str | os.PathLike, specs: list[ModelSpec]) -> list[FaceClip]:
    """The clips of ``clipset`` as SyncNet can read them (see the module docstring): on a prepared
    folder, each clip reads SyncNet's frames from the video it was prepared from (under the manifest's
    ``source``, its bytes the ones the clip's key names), its crops and audio still from the folder.

    Args:
        clipset: the clips ``open_clips`` gave for ``data``.
        data: the folder they were opened from.
        specs: the study's models; without SyncNet the clips are returned as they are.

    Returns:
        The clips, in order.

    Raises:
        LipsyncBenchError: SyncNet on Wav2Lip's layout, or on a prepared folder whose source videos are
            missing or changed (naming how many, the first, and what to do).

    Example:
        >>> syncnet_sources(open_clips("prepared/lrs2"), "prepared/lrs2", [ModelSpec("syncnet")])  # doctest: +SKIP
    """
    if not any(s.name == "syncnet" for s in specs):
        return clipset.clips
    why = "--model syncnet takes syncnet_python's crop of the full frame (margin 0.4)"
    if clipset.layout == "wav2lip":
        raise LipsyncBenchError(f"{data}: {why}; Wav2Lip's layout holds face crops only: give --data a folder of "
                                "videos, or leave out --model syncnet")
    if clipset.layout != "prepared":
        return clipset.clips
    source = Path(read_manifest(Path(data)).get("source") or "")
    clips, problems, listings = [], [], {}
    for clip in clipset.clips:
        video = _source_video((source / clip.name).parent, Path(clip.name).name, listings)
        key = stored_crops_key(clip.source)
        if video is None:
            problems.append(f"{clip.name}: no video")
        elif key is None or json.loads(key).get("content") != content_hash(video):
            problems.append(f"{video}: not the video {clip.name} was prepared from (its bytes differ)")
        else:
            clips.append(dataclasses.replace(clip, source=video))
    if problems:
        raise LipsyncBenchError(f"{data}: {why}, wider than this prepared folder's face crops (margin 0.15), so it is "
                                f"cut from the videos the folder was prepared from, and {len(problems)} of "
                                f"{len(clipset.clips)} are not in {source} as prepared (first: {problems[0]}): give "
                                "--data those videos, or leave out --model syncnet")
    return clips


def make_experts(specs: list[ModelSpec], clips: list[FaceClip], random_init: bool, device: str,
                 seed: int = 0) -> list[Expert]:
    """Load each model's weights (the given file, else its known file), or with ``random_init`` a
    seeded random network with batch norms calibrated on ``clips``."""
    experts = []
    for spec in specs:
        if random_init:
            experts.append(random_expert(spec.name, clips, seed, device=device))
            continue
        path = spec.weights
        if path is None:
            if spec.name not in KNOWN_WEIGHTS:
                raise LipsyncBenchError("--model avsyncnet needs --weights (a train-syncnet checkpoint), or "
                                        "--random-init")
            path = weights.require(KNOWN_WEIGHTS[spec.name])
        experts.append(load_expert(spec.name, path, device))
    return experts


def study_windows(clip: FaceClip) -> int:
    """Window starts 0 .. n-1 that every expert can score: the mel window of Wav2Lip's expert and
    AVSyncNet (``window_starts``) and syncnet_python's MFCC range (``range(0, L - 5)``) inside the clip."""
    return max(0, min(clip.window_starts(), min(clip.frames, clip.samples // SAMPLES_PER_FRAME) - FRAMES))


def clip_rng(seed: int, clip: FaceClip) -> np.random.Generator:
    """A clip's own generator: a function of the seed and the clip's name only."""
    return np.random.default_rng([seed, int(hashlib.sha256(clip.name.encode()).hexdigest()[:12], 16)])


def _spread(counts: list[int], samples: int | None) -> list[np.ndarray]:
    """Window starts per clip: all of them, or ``samples`` in all spread evenly over the clips."""
    total = sum(counts)
    if samples is None or samples >= total:
        return [np.arange(n) for n in counts]
    picks = np.linspace(0, total - 1, samples).round().astype(int)
    edges = np.concatenate([[0], np.cumsum(counts)])
    return [picks[(picks >= edges[i]) & (picks < edges[i + 1])] - edges[i] for i in range(len(counts))]


class _CropCache:
    """One clip's crops per crop geometry, of the frames the run's windows need, shared by the experts."""

    def __init__(self, clip: FaceClip, starts):
        self.clip, self.starts, self.crops = clip, starts, {}

    def __call__(self, expert: Expert) -> Crops:
        key = (expert.crop_scale, expert.crop_size)
        if key not in self.crops:
            self.crops[key] = clip_crops(expert, self.clip, self.starts)
        return self.crops[key]


def _protocol(experts: list[Expert], clipset, extra: dict) -> dict:
    return {"models": [{"name": e.name, "label": e.label, "weights": e.weights} for e in experts],
            "layout": clipset.layout, "crop_geometry": clipset.geometry.name,
            "clips": len(clipset.clips), "skipped": clipset.problems,
            "environment": environment(str(experts[0].device) if experts else "cpu"), **extra}


# --------------------------------------------------------------------------------------------------
# Stability


def stability(data: str | os.PathLike, specs: list[ModelSpec], out: str | os.PathLike, gen=None,
              random_init: bool = False, samples: int | None = None, seed: int = 0, device: str = "cpu",
              layout: str = "auto", cache_dir=None, progress: bool = True, filelists=None) -> StabilityStudy:
    """Per-sample cosine similarity and lip-sync loss of GT pairs (and generated and reference pairs
    with ``gen``) for each model, once per file list of ``filelists`` (rows labelled by its stem, the
    ``split``; without lists, all clips and no split); writes ``stability.csv``, ``stability.json``,
    ``stability.png``.

    Args:
        data: GT clips (``open_clips``: videos, a prepared folder, Wav2Lip's layout).
        specs: the models (``parse_models``).
        out: the folder the files go to.
        gen: generated videos named as the GT clips (adds generated and reference pairs).
        random_init: seeded random networks instead of weights (smoke runs; labelled).
        samples: windows in all per list, spread evenly over its clips (None: all).
        filelists: LRS2-style lists (``train.txt``, ``test.txt``) selecting the clips of each split.

    Returns:
        The summary (a row per split, model and kind of pair, beside Tab. A), the protocol and the files.

    Example:
        >>> stability("prepared/lrs2", [ModelSpec("wav2lip")], "studies/stability",
        ...           filelists=["mvlrs_v1/train.txt", "mvlrs_v1/test.txt"])  # doctest: +SKIP
    """
    check_models(specs, random_init)
    lists = parse_filelists(filelists) or [(None, None)]
    out = Path(out)
    experts = None if random_init else make_experts(specs, [], False, device, seed)  # missing weights fail first
    splits = []
    for label, filelist in lists:
        opened = open_clips(data, cache_dir, layout, filelist, progress=progress)
        clipset = ClipSet(_unique(opened.clips), opened.problems, opened.layout)
        splits.append(_Split(label, filelist, clipset, syncnet_sources(clipset, data, specs)))
    gen_clips, missing = {}, []
    if gen is not None:
        gen_set = open_clips(gen, cache_dir, layout, progress=progress)
        gen_clips = {c.name: c for c in gen_set.clips}
        names = list(dict.fromkeys(c.name for split in splits for c in split.clips))
        missing = [n for n in names if n not in gen_clips]
        if len(missing) == len(names):
            raise LipsyncBenchError(f"no clip of {gen} has the name of a clip of {data}")
    every = _unique([c for split in splits for c in split.clips])
    experts = experts or make_experts(specs, every, random_init, device, seed)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for split in splits:
        rows = _stability_rows(split.clips, experts, gen_clips, samples, seed,
                               "stability" + (f" {split.label}" if split.label else ""), progress)
        if not rows:
            raise LipsyncBenchError(f"{data}: no clip{f' of {split.filelist}' if split.filelist else ''} has a "
                                    "usable 5-frame window")
        frame = pd.concat([pd.DataFrame(r) for r in rows], ignore_index=True)
        if split.label is not None:
            frame.insert(0, "split", split.label)
        split.samples = int(len(frame) // len(experts))
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    for kind in ("gt", "gen", "ref"):
        if f"{kind}_cos" in frame:
            frame[f"{kind}_loss"] = sync_loss_of(frame[f"{kind}_cos"].to_numpy(dtype=float))
    frame.to_csv(out / "stability.csv", index=False)
    summary = []
    for split in splits:
        for e in experts:
            part = frame[frame.model == e.label]
            if split.label is not None:
                part = part[part.split == split.label]
            for kind, name in (("gt", "ground truth"), ("gen", "generated"), ("ref", "reference")):
                cos = part[f"{kind}_cos"].dropna() if f"{kind}_cos" in part else ()
                if kind == "gt" or len(cos):  # a split without generated twins has no such rows
                    loss = sync_loss_of(cos.to_numpy())
                    row = {} if split.label is None else {"split": split.label}
                    row.update({"model": e.label, "pairs": name, "samples": int(len(cos)),
                                "cos_sim": float(cos.mean()), "cos_sim_std": float(cos.std(ddof=0)),
                                "sync_loss": float(loss.mean()),
                                "sync_loss_std": float(loss.std(ddof=0)) if len(loss) else math.nan})
                    if kind == "gt":
                        row["reported"] = _tab_a(e)
                    summary.append(row)
    named = splits[0].label is not None
    problems = [f"{split.filelist.name}: {p}" if named else p for split in splits for p in split.clipset.problems]
    extra = {"study": "stability", "gen": str(gen) if gen else None, "samples": sum(s.samples for s in splits),
             "seed": seed, "reference": "random non-overlapping window of the same GT clip, drawn from (seed, clip)"}
    if named:
        extra["splits"] = [{"split": s.label, "filelist": str(s.filelist), "clips": len(s.clips), "samples": s.samples}
                           for s in splits]
    doc = {"summary": summary, "missing_generated": missing, "reported_note": TAB_A_NOTE,
           "protocol": _protocol(experts, ClipSet(every, problems, splits[0].clipset.layout), extra)}
    (out / "stability.json").write_text(json.dumps(doc, indent=2))
    plot_stability(frame, out / "stability.png", {e.label: e.similarity_range for e in experts})
    doc["files"] = [str(out / f) for f in ("stability.csv", "stability.json", "stability.png")]
    return StabilityStudy(doc)


@dataclass
class _Split:
    """One file list's clips in ``stability`` (label and filelist None: all clips, no list)."""

    label: str | None
    filelist: Path | None
    clipset: ClipSet
    clips: list[FaceClip]  # as the models read them (``syncnet_sources``)
    samples: int = 0  # windows per model, once computed


def _stability_rows(clips: list[FaceClip], experts: list[Expert], gen_clips: dict, samples: int | None, seed: int,
                    desc: str, progress: bool) -> list[dict]:
    """The per-window columns of one set of clips, one dict of arrays per clip and model; each clip's
    crops decoded once per crop geometry."""
    counts = [study_windows(c) for c in clips]
    picks = _spread(counts, samples)
    rows = []
    for clip, n, starts in tqdm(list(zip(clips, counts, picks, strict=True)), desc=desc, unit="clip",
                                disable=not progress):
        if len(starts) == 0:
            continue
        rng = clip_rng(seed, clip)
        refs = np.array([-1 if (r := other_window(s, n, rng)) is None else r for s in starts])  # -1: none
        other = gen_clips.get(clip.name)
        crops = _CropCache(clip, np.concatenate([starts, refs[refs >= 0]]))
        shift = clip.first_frame - other.first_frame if other is not None else 0
        ok = (starts + shift >= 0) & (starts + shift + FRAMES <= other.frames) if other is not None else None
        other_crops = _CropCache(other, starts[ok] + shift) if other is not None else None
        for e in experts:
            gt_cos = cosine_similarities(e, clip, starts, crops=crops(e))
            row = {"model": e.label, "video": clip.name, "start": starts, "gt_cos": gt_cos}
            if gen_clips:
                # the generated window at the same source frames, against the GT's (driving) audio
                gen_cos = np.full(len(starts), np.nan)
                if other is not None and ok.any():
                    win = other_crops(e).windows(starts[ok] + shift)
                    gen_cos[ok] = (e.video(win) * clip_audio(e, clip, starts[ok])).sum(1).cpu().numpy()
                row["gen_cos"] = gen_cos
                ref_cos = np.full(len(starts), np.nan)
                has = refs >= 0
                if other is not None and has.any():
                    ref_cos[has] = cosine_similarities(e, clip, refs[has], audio_starts=starts[has], crops=crops(e))
                row["ref_cos"] = ref_cos
            rows.append(row)
    return rows


#: How the measured GT rows compare with the paper's Tab. A.
TAB_A_NOTE = ("Tab. A (Yaman et al. 2024, LRS2 GT pairs) is printed beside the ground-truth rows; its AVSyncNet "
              "train row (cos 0.790, loss 0.216) cannot be the mean of -log(cos) over the pairs whose mean cos is "
              "0.790 (Jensen: at least -log 0.790 = 0.236), and its SyncNet train pair is garbled in the text: "
              "compare the test rows, and the cosine similarities before the losses")


def _tab_a(expert: Expert) -> dict | None:
    """The paper's Tab. A rows of this expert family: its "SyncNet" is Wav2Lip's expert (supplementary
    A.1); syncnet_python's LSE network is not in it (None)."""
    rows = reported_stability()
    mine = rows[rows.expert == expert.name]
    return {r.data: {"cos_sim": r.cos_sim, "sync_loss": r.sync_loss, "paper_label": r.paper_label, "note": r.note}
            for r in mine.itertuples()} or None


def plot_stability(frame, path: Path, ranges: dict[str, tuple[float, float]] | None = None,
                   curve_samples: int = 200) -> None:
    """Fig. A / Fig. C style: per model (and split, when the frame has one), the cosine similarity of
    each sample (GT, generated, reference) on the similarity's full range (``ranges``: model -> (low,
    high); default [-1, 1]), the lip-sync loss of the GT pairs from 0, and |GT - generated| per sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(frame.groupby(["split", "model"] if "split" in frame else ["model"], sort=False))
    has_gen = "gen_cos" in frame
    cols = 3 if has_gen else 2
    fig, axes = plt.subplots(len(panels), cols, figsize=(4.2 * cols, 2.8 * len(panels)), squeeze=False)
    for r, (key, part) in enumerate(panels):
        part = part.head(curve_samples)
        label = part.model.iloc[0]
        name = f"{label} [{key[0]}]" if "split" in frame else label
        x = np.arange(len(part))
        low, high = (ranges or {}).get(label, (-1.0, 1.0))
        ax = axes[r][0]
        ax.plot(x, part.gt_cos, lw=1, label="GT audio-lip")
        if has_gen:
            ax.plot(x, part.gen_cos, lw=1, label="generated")
            ax.plot(x, part.ref_cos, lw=1, alpha=0.7, label="reference")
        ax.set_ylim(low, high)
        ax.set_title(f"{name}: cosine similarity", fontsize=9)
        ax.set_xlabel("sample (5-frame window)")
        ax.set_ylabel("cosine similarity")
        ax.legend(fontsize=7)
        ax = axes[r][1]
        ax.plot(x, part.gt_loss, lw=1, color="tab:red")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{name}: lip-sync loss of GT pairs", fontsize=9)
        ax.set_xlabel("sample (5-frame window)")
        ax.set_ylabel("-log(cos), nats")
        if has_gen:
            ax = axes[r][2]
            ax.plot(x, (part.gt_cos - part.gen_cos).abs(), lw=1, color="tab:purple")
            ax.set_ylim(0, high - low)
            ax.set_title(f"{name}: |GT - generated| cosine similarity", fontsize=9)
            ax.set_xlabel("sample (5-frame window)")
            ax.set_ylabel("|difference| of cosine similarity")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Robustness


def robustness(data: str | os.PathLike, specs: list[ModelSpec], transform: str, out: str | os.PathLike,
               magnitudes=None, random_init: bool = False, samples: int | None = 200, seed: int = 0,
               device: str = "cpu", layout: str = "auto", cache_dir=None, progress: bool = True) -> RobustnessStudy:
    """Mean cosine similarity of aligned GT pairs per transform magnitude and model; writes
    ``robustness_<transform>.csv``/``.json``/``.png`` and ``examples_<transform>.png`` (what each
    model saw of the first window at each magnitude).

    Args:
        data: GT clips (``open_clips``: videos, a prepared folder, Wav2Lip's layout).
        specs: the models (``parse_models``).
        transform: one of ``TRANSFORMS``.
        out: the folder the files go to.
        magnitudes: the transform's magnitudes (default ``DEFAULT_MAGNITUDES``).
        random_init: seeded random networks instead of weights (smoke runs; labelled).
        samples: windows in all, spread evenly over the clips (None: all).

    Returns:
        A row per magnitude and model, the protocol, the example window and the files.

    Example:
        >>> robustness("prepared/lrs2", [ModelSpec("wav2lip")], "shear", "studies/robustness")  # doctest: +SKIP
    """
    check_models(specs, random_init)
    if transform not in TRANSFORMS:
        raise LipsyncBenchError(f"unknown transform {transform!r} (known: {', '.join(TRANSFORMS)})")
    magnitudes = [float(m) for m in (magnitudes or DEFAULT_MAGNITUDES[transform])]
    out = Path(out)
    experts = None if random_init else make_experts(specs, [], False, device, seed)  # missing weights fail first
    clipset = open_clips(data, cache_dir, layout, progress=progress)
    clips = syncnet_sources(clipset, data, specs)
    experts = experts or make_experts(specs, clips, random_init, device, seed)
    out.mkdir(parents=True, exist_ok=True)
    counts = [study_windows(c) for c in clips]
    picks = _spread(counts, samples)
    sims = {(e.label, m): [] for e in experts for m in magnitudes}
    before_half = transform == "rotation-mouth"
    example = None
    for clip, starts in tqdm(list(zip(clips, picks, strict=True)), desc=f"robustness {transform}", unit="clip",
                             disable=not progress):
        if len(starts) == 0:
            continue
        crops = _CropCache(clip, starts)
        if example is None:
            example = {"clip": clip.name, "start": int(starts[0]), "first_batch": starts[:WINDOW_BATCH],
                       "crops": {e.label: crops(e) for e in experts}}
        for e in experts:
            audio = clip_audio(e, clip, starts)  # the transforms touch the frames only
            for m in magnitudes:
                fn = make_transform(transform, m, seed)
                sims[(e.label, m)].append(_window_cos(e, starts, crops(e), audio, fn, before_half))
    if example is None:
        raise LipsyncBenchError(f"{data}: no clip has a usable 5-frame window")
    rows = []
    for (label, m), parts in sims.items():
        values = np.concatenate(parts) if parts else np.zeros(0)
        rows.append({"transform": transform, "magnitude": m, "model": label, "cos_sim": float(values.mean())
                     if len(values) else math.nan, "cos_sim_std": float(values.std()) if len(values) else math.nan,
                     "windows": int(len(values))})
    frame = pd.DataFrame(rows)
    stem = f"robustness_{transform}"
    frame.to_csv(out / f"{stem}.csv", index=False)
    unit = "px of a 224-px face crop" if transform == "shift" else "degrees"
    examples = out / f"examples_{transform}.png"
    views = {e.label: [expert_view(e, example["crops"][e.label].windows(example["first_batch"]),
                                   make_transform(transform, m, seed), before_half) for m in magnitudes]
             for e in experts}
    plot_examples(views, transform, magnitudes, examples, f"{example['clip']}, frame {example['start']}")
    doc = {"rows": rows, "examples": {"file": str(examples), "clip": example["clip"], "frame": example["start"]},
           "protocol": _protocol(experts, ClipSet(clips, clipset.problems, clipset.layout), {
               "study": "robustness", "transform": transform, "unit": unit, "magnitudes": magnitudes,
               "windows": int(sum(len(p) for p in picks)), "seed": seed})}
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2))
    low = min(e.similarity_range[0] for e in experts)
    plot_robustness(frame, transform, unit, out / f"{stem}.png", (low, 1.0))
    doc["files"] = [str(out / f"{stem}{ext}") for ext in (".csv", ".json", ".png")] + [str(examples)]
    return RobustnessStudy(doc)


#: Windows the experts embed at once in ``robustness``: a transform drawing per window (shear's sign)
#: sees one such batch, so the examples are cut from the same batch.
WINDOW_BATCH = 32


def expert_view(expert: Expert, windows: torch.Tensor, transform, before_half: bool = False) -> np.ndarray:
    """The first frame of the first window as ``expert`` sees it, through the same steps as
    ``Expert.video``: its crop size, its half, the transform applied where the study applies it.

    Args:
        expert: the model.
        windows: (N, 5, S, S, 3) RGB uint8 windows in the expert's crop geometry (N: one batch of the study).
        transform: ``make_transform``'s function or None.
        before_half: transform the whole crop before its bottom half is taken (``rotation-mouth``).

    Returns:
        (H, W, 3) RGB float image in [0, 1] (SyncNet: 224x224; Wav2Lip's expert: 48x96; AVSyncNet: 112x224).

    Example:
        >>> expert_view(expert, crops.windows(starts[:32]), make_transform("shift", 20))  # doctest: +SKIP
    """
    if expert.name == "syncnet":
        imgs = windows.flip(-1).permute(0, 1, 4, 2, 3).reshape(-1, 3, *windows.shape[2:4]).float()  # BGR, 0-255
        if transform is not None:
            imgs = transform(imgs)
        return imgs[0].flip(0).permute(1, 2, 0).div(255).clamp(0, 1).numpy()
    spec = INPUTS[expert.name]
    imgs = windows.reshape(-1, *windows.shape[2:]).permute(0, 3, 1, 2).float().div(255)
    first = frames_input(imgs, spec, transform, before_half)[0, :3]  # frame 0 of window 0, expert's colour order
    return (first.flip(0) if spec.bgr else first).permute(1, 2, 0).clamp(0, 1).numpy()


def plot_examples(views: dict[str, list[np.ndarray]], transform: str, magnitudes: list[float], path: Path,
                  what: str = "") -> None:
    """Fig. B style: one row per model (``views``: label -> one image per magnitude, ``expert_view``),
    one column per magnitude, each image at its own pixel size under its magnitude."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = "px (of 224)" if transform == "shift" else "°"
    fig, axes = plt.subplots(len(views), len(magnitudes), figsize=(1.9 * len(magnitudes), 2.1 * len(views)),
                             squeeze=False)
    for r, (label, images) in enumerate(views.items()):
        for c, (m, img) in enumerate(zip(magnitudes, images, strict=True)):
            ax = axes[r][c]
            ax.imshow(img, interpolation="nearest")  # the input's own pixels, however small
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{transform} {m:g}{unit}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{label}\n{img.shape[1]}x{img.shape[0]} px", fontsize=8)
    fig.suptitle(f"What each expert sees under {transform}" + (f" ({what})" if what else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _window_cos(expert: Expert, starts: np.ndarray, crops: Crops, audio: torch.Tensor, transform,
                before_half: bool, batch: int = WINDOW_BATCH) -> np.ndarray:
    """Cosine similarity of the (transformed) windows at ``starts`` with their audio embeddings."""
    out = []
    for i in range(0, len(starts), batch):
        win = crops.windows(starts[i:i + batch])
        out.append((expert.video(win, transform, before_half) * audio[i:i + batch]).sum(1).cpu())
    return torch.cat(out).numpy()


def plot_robustness(frame, transform: str, unit: str, path: Path,
                    similarity_range: tuple[float, float] = (-1.0, 1.0)) -> None:
    """Fig. 6 style: mean cosine similarity of GT pairs against the transform's magnitude, per model,
    with error bars of one standard deviation over the windows, on the similarity's full range (so that
    plots of two runs compare by eye)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for label, part in frame.groupby("model", sort=False):
        ax.errorbar(part.magnitude, part.cos_sim, yerr=part.cos_sim_std, marker="o", capsize=3,
                    label=f"{label} (mean ± 1 std over windows)")
    ax.set_ylim(*similarity_range)
    ax.set_xlabel(f"{transform} ({unit})")
    ax.set_ylabel("mean cosine similarity, GT pairs")
    ax.set_title(f"Robustness to {transform}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
