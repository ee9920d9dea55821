"""LSE-C, LSE-D and the audio-visual offset (Wav2Lip's lip-sync metrics): SyncNet's confidence, minimum
distance and best offset for the generated video against its audio, by syncnet_python's procedure
(``lipsync_bench.syncnets.scoring``), from frames in memory.

Per video: the face stage's main track (one analysis per input per run, shared with LMD and
--region), syncnet_python's 224x224 crop of each tracked frame (BGR), and the audio of the same span
(from the track's first frame). The three metrics share one computation per video; they need no GT
frames. Their reference run is the LSE of the GT videos themselves (the "Ground truth" row), from the
same decode of the GT as the other metrics.

Parameters (the same for the three; ``--param lse.NAME=VALUE`` sets all three at once):

- ``crop`` ("track"): "track" = syncnet_python's crop of the face track; "frame" = the whole frame
  resized to the expert's input (224x224 for SyncNet), with no face detection, as Wav2Lip's
  ``calculate_scores_LRS.py`` (and TalkLip, which copies it) scores generated LRS2 videos.
- ``vshift`` (15): offsets searched, in frames, each way.
- ``min_track`` (0): tracks shorter than this many frames are an error for that video. syncnet_python's
  pipeline uses 100 and silently drops shorter clips (every clip under 4 s); the default here keeps
  them, down to the 6 frames the procedure needs.
- ``audio`` ("gen"): whose audio track: the generated video's ("gen") or the GT's ("gt", for
  generators that write silent videos).
- ``compat`` ("none"): "syncnet_python" also round-trips the crops through JPEG as the reference's
  ffmpeg/OpenCV step does (``media.JpegRoundTrip``): of the face crops, or with ``crop="frame"`` of the
  whole frames; numbers then match published ones.
- ``sync_model`` ("syncnet"): the expert whose embeddings are compared. "avsyncnet" (the paper's) or
  "wav2lip" (Wav2Lip's SyncNet) run the same offset search on their own face crops and mel windows,
  with the Euclidean distance between their unit-norm embeddings (``syncnets.scoring.ExpertSyncScorer``):
  another scale, so such LSE values get their own table columns ("LSE-C [AVSyncNet]") and their own
  ground-truth row, and are never compared with SyncNet's or with published numbers.
- ``sync_weights`` (""): the expert's weights file; default: ``syncnet_v2.model`` /
  ``lipsync_expert.pth`` from the weights folder (AVSyncNet has no published weights: give a
  ``train-syncnet`` checkpoint).
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

from .. import weights
from ..environment import environment
from ..errors import LipsyncBenchError, MediaError, MetricError
from ..faces import FaceAnalyzer, require_faces, smoothed_centres, syncnet_crop
from ..faces.track import main_track_key
from ..media import JpegRoundTrip, iter_frames, read_audio
from ..reencode import CHAINS, CropVideo, read_audio_through, samples_through
from ..rendering import Document
from ..syncnets.experts import load_expert
from ..syncnets.scoring import SAMPLES_PER_FRAME, WINDOW, ExpertSyncScorer, SyncScorer
from ..syncnets.syncnet import load_syncnet
from .declarations import LSE_C, LSE_PARAMS, lse_weights, sync_model_label
from .streaming import Accumulator, FrameBatch, MetricContext, MetricValue

_MODELS: dict[tuple, torch.nn.Module] = {}


def load_model(path: Path, device: torch.device, sync_model: str = "syncnet"):
    """The SyncNet (or, for another ``sync_model``, the ``experts.Expert``) of a weights file, loaded
    once per process and device."""
    key = (weights.sha256(path), str(device), sync_model)
    if key not in _MODELS:
        try:
            _MODELS[key] = (load_syncnet(path, device) if sync_model == "syncnet"
                            else load_expert(sync_model, path, device))
        except LipsyncBenchError as exc:  # the LSE metrics fail, the others go on
            raise MetricError(str(exc)) from None
    return _MODELS[key]


def check_params(params: dict) -> None:
    """What the schema cannot say alone: compat reproduces syncnet_python, so it needs SyncNet."""
    if params["compat"] != "none" and params["sync_model"] != "syncnet":
        raise LipsyncBenchError(f"lse compat {params['compat']} reproduces syncnet_python: it needs sync_model syncnet")


class TrackedSync:
    """Streaming LSE of one video: crops of the main face track (or the frames as they are, for
    videos that are already face crops) fed to the scorer of the run's expert as frames arrive:
    SyncNet's ``SyncScorer`` (syncnet_python's crop, BGR) or an ``ExpertSyncScorer`` (the expert's face
    crop, RGB)."""

    def __init__(self, model, audio: np.ndarray, params: dict, device, centres: np.ndarray | None = None,
                 track_start: int = 0, chain=None):
        self.centres, self.start = centres, track_start
        compat = params["compat"] == "syncnet_python"
        # a peer chain's crops go through its crop video (read back as JPEGs in compat mode)
        self.crop_video = CropVideo(jpeg=compat, tag=chain.crop_tag) if chain is not None else None
        # the crop video's read-back (whole frames get the input's aspect ratio from their decode; crops,
        # as syncnet_python's OpenCV AVI holds them, 1:1)
        self.jpeg = JpegRoundTrip(sample_aspect_ratio=Fraction(1)) if compat and chain is None else None
        audio = audio[track_start * SAMPLES_PER_FRAME:]  # the track's span, as the reference cuts it
        if chain is not None and chain.crop_audio and centres is not None:  # the crop video's own audio
            audio = samples_through(audio[:len(centres) * SAMPLES_PER_FRAME], chain.crop_audio)
        if params["sync_model"] == "syncnet":
            self.scorer = SyncScorer(model, audio, params["vshift"], device=device)
            self.crop_scale, self.size, self.bgr = 0.4, 224, True
        else:
            self.scorer = ExpertSyncScorer(model, audio, params["vshift"])
            self.crop_scale, self.size, self.bgr = model.crop_scale, model.crop_size, False
        self.next_frame = 0

    def update(self, frames_rgb: np.ndarray, start: int, frames_jpeg: np.ndarray | None = None) -> None:
        """Frames ``start ..`` of the video (RGB uint8; in compat mode without a face track, the same
        frames as the reference reads them, ``frames_jpeg``: BGR); frames already seen are skipped."""
        if start < self.next_frame:
            return
        self.next_frame = start + len(frames_rgb)
        if self.centres is None:  # whole frames: the JPEG step is of the decoded frame, as the reference's
            if self.jpeg is not None and frames_jpeg is None:
                raise ValueError("compat mode on whole frames needs the frames' JPEG round trip")
            crops = [self._resized(f) for f in (frames_jpeg if self.jpeg is not None else frames_rgb)]
        else:
            first = max(start, self.start)
            last = min(start + len(frames_rgb), self.start + len(self.centres))
            crops = [syncnet_crop(frames_rgb[f - start], *self.centres[f - self.start], crop_scale=self.crop_scale,
                                  size=self.size) for f in range(first, last)]
            if self.crop_video is not None:
                crops = self.crop_video(np.stack(crops)[..., ::-1]) if crops else []  # BGR in and out
            elif self.jpeg is not None:
                crops = [self.jpeg.from_rgb(c) for c in crops]
        if not len(crops):
            return
        crops = np.stack(crops)
        if self.bgr and self.jpeg is None and self.crop_video is None:  # the others give BGR already
            crops = np.ascontiguousarray(crops[..., ::-1])
        self.scorer.add_frames(crops)

    def _resized(self, frame: np.ndarray) -> np.ndarray:
        return frame if frame.shape[:2] == (self.size, self.size) else cv2.resize(frame, (self.size, self.size))

    def result(self):
        if self.crop_video is not None:
            held = self.crop_video.flush()
            if len(held):
                self.scorer.add_frames(held)
        try:
            return self.scorer.result()
        except ValueError as exc:
            raise MetricError(str(exc)) from None


def track_centres(face_data, path: Path, min_track: int) -> tuple[np.ndarray, int]:
    """Smoothed crop centres of the main track and its first frame; errors name the video."""
    check_frames(face_data, path)
    require_faces(face_data, path)
    track = face_data.main_track()
    if track is None:
        raise MetricError(f"{path}: no face track")
    return usable_track(track, path, min_track)


def check_frames(face_data, path: Path) -> None:
    if face_data.frames < WINDOW + 1:
        n = face_data.frames
        raise MetricError(f"{path}: {n} frame{'s' * (n != 1)}, shorter than 6: LSE needs at least 6 (one "
                          "5-frame window and the reference's one-window margin)")


def usable_track(track, path: Path, min_track: int) -> tuple[np.ndarray, int]:
    """A track's smoothed crop centres and first frame, or MetricError when it is too short to score."""
    need = max(min_track, WINDOW + 1)
    if len(track.boxes) < need:
        why = f"min_track={min_track}" if min_track > WINDOW + 1 else "the 5-frame window needs 6"
        raise MetricError(f"{path}: face track of {len(track.boxes)} frames is shorter than {need} ({why})")
    return smoothed_centres(track), track.start


def scored_tracks(face_data, path: Path, min_track: int, which: str) -> list[tuple[object, np.ndarray, int]]:
    """The tracks LSE scores (``which``: "main", or every track): (track, smoothed centres, first frame)
    each; a video with none to score is an error naming why (no face, every track too short)."""
    if which == "main":
        track = face_data.main_track()
        return [(track, *track_centres(face_data, path, min_track))]
    check_frames(face_data, path)
    tracks = face_data.all_tracks()
    if not tracks:
        kept = face_data.params.get("track", {})
        raise MetricError(f"{path}: no face track (a face in {face_data.face_fraction:.0%} of the frames; tracks "
                          f"need more than {kept.get('min_track')} detections and faces wider than "
                          f"{kept.get('min_face_size')} px)")
    out, reasons = [], []
    for track in tracks:
        try:
            out.append((track, *usable_track(track, path, min_track)))
        except MetricError as exc:
            reasons.append(str(exc))
    if not out:
        raise MetricError(reasons[0])
    return out


def read_sync_audio(path: Path, limits=None, codec: str | None = None, other: str | None = None) -> np.ndarray:
    """The audio LSE scores against; ``codec``: the one a peer chain's audio.wav went through; ``other``:
    the ``lse.audio`` value that would read the pair's other video, named when this one has no audio
    (None: there is no other, as when the GT is scored against its own audio)."""
    try:
        return read_audio_through(path, codec, limits=limits) if codec else read_audio(path, limits=limits)
    except MediaError as exc:
        hint = (f" (--param lse.audio={other} takes the {'GT' if other == 'gt' else 'generated video'}'s)"
                if other else "")
        raise MetricError(f"{exc}; LSE needs the driving audio{hint}") from None


class _Shared:
    """The per-video computation the three LSE accumulators share. The expert and the audio are
    loaded first (a missing audio track refuses the metrics before any frame); the crops follow the
    face track, which the face stage gives before the first frame arrives."""

    def __init__(self, params: dict, ctx: MetricContext):
        self.params, self.ctx = params, ctx
        self.value = None
        self.chain = CHAINS.get(ctx.reencode)
        if self.chain is not None and (params["sync_model"], params["crop"]) != ("syncnet", "track"):
            raise MetricError(f"decode.reencode {ctx.reencode} reproduces a pipeline of SyncNet on face tracks: "
                              f"it needs lse.sync_model syncnet and lse.crop track")
        self.model = load_model(ctx.weights_path, ctx.device, params["sync_model"])
        source = ctx.gen if params["audio"] == "gen" else ctx.gt
        other = None if ctx.gt in (None, ctx.gen) else ("gt" if params["audio"] == "gen" else "gen")
        self.audio = read_sync_audio(source, ctx.decode, self.chain.audio if self.chain else None, other)
        self.syncs: list[tuple[object, TrackedSync]] | None = None  # (track or None for whole frames, scorer)

    def update(self, frames: np.ndarray, start: int, frames_jpeg: np.ndarray | None) -> None:
        if self.syncs is None:
            if self.params["crop"] == "track":
                tracks = scored_tracks(self.ctx.faces(self.ctx.gen), self.ctx.gen, self.params["min_track"],
                                       self.params["tracks"])
                self.syncs = [(track, TrackedSync(self.model, self.audio, self.params, self.ctx.device, centres,
                                                  first, self.chain)) for track, centres, first in tracks]
            else:
                self.syncs = [(None, TrackedSync(self.model, self.audio, self.params, self.ctx.device))]
        for _, sync in self.syncs:
            sync.update(frames, start, frames_jpeg)

    def result(self) -> list[tuple[object, object]]:
        """(track, SyncScore) of each scored track, in the order the face stage found them."""
        if self.value is None:
            if self.syncs is None:
                raise MetricError(f"{self.ctx.gen}: no frames")
            self.value = [(track, sync.result()) for track, sync in self.syncs]
        return self.value


class LseAccumulator(Accumulator):
    """The accumulator of one of the three LSE metrics (``name``): they share one computation a video."""

    def __init__(self, name: str, params: dict, ctx: MetricContext):
        check_params(params)
        key = ("lse", json.dumps({k: params[k] for k in LSE_PARAMS}, sort_keys=True))
        if key not in ctx.shared:
            try:
                ctx.shared[key] = _Shared(params, ctx)
            except MetricError as exc:  # the sibling metrics fail the same way, without trying again
                ctx.shared[key] = exc
        if isinstance(ctx.shared[key], MetricError):
            raise ctx.shared[key]
        self.name, self.shared = name, ctx.shared[key]

    def update(self, batch: FrameBatch) -> None:
        self.shared.update(batch.gen_full.cpu().numpy(), batch.start, batch.gen_jpeg)

    def result(self) -> MetricValue:
        scored = self.shared.result()
        which = self.shared.params["tracks"]
        scores = [score for _, score in scored]
        main = max(scored, key=lambda ts: main_track_key(ts[0]))[1] if scored[0][0] is not None else scores[0]
        details = {"curve": [round(float(x), 5) for x in main.curve], "offset": main.offset,
                   "framewise_confidence": [round(float(x), 4) for x in main.framewise_confidence()]}
        if which == "main":
            value = {"lse_c": main.lse_c, "lse_d": main.lse_d, "av_offset": float(main.offset)}[self.name]
            return MetricValue(value, main.windows, details=details)
        details["tracks"] = [{"start": int(t.start), "frames": len(t.boxes), "box": [round(float(v), 1) for v in
                              np.median(t.boxes, axis=0)], "offset": sc.offset, "lse_c": round(sc.lse_c, 6),
                              "lse_d": round(sc.lse_d, 6), "windows": sc.windows} for t, sc in scored]
        return MetricValue(aggregate_tracks(scores, which, self.name), len(scores) if which == "each" else
                           sum(sc.windows for sc in scores), details=details)


def aggregate_tracks(scores: list, which: str, metric: str) -> float:
    """A video's value from its tracks' scores: "each" and "mean" the mean over tracks (the offset's
    truncated towards zero under "mean", as LatentSync's ``int(fmean(...))``), "best" the highest
    confidence and the lowest distance, each over all tracks (MoChaBench), with the offset of the most
    confident track."""
    conf = np.array([s.lse_c for s in scores])
    dist = np.array([s.lse_d for s in scores])
    offsets = np.array([s.offset for s in scores], float)
    if which == "best":
        return {"lse_c": float(conf.max()), "lse_d": float(dist.min()),
                "av_offset": float(offsets[int(conf.argmax())])}[metric]
    offset = float(int(offsets.mean())) if which == "mean" else float(offsets.mean())
    return {"lse_c": float(conf.mean()), "lse_d": float(dist.mean()), "av_offset": offset}[metric]


def score_video(video: Path, audio: Path | None = None, crop: str = "track", compat: str = "none",
                fps: float = 25.0, vshift: int = 15, min_track: int = 0, device: str = "cpu",
                weights_dir: Path | None = None, progress: bool = False, sync_model: str = "syncnet",
                sync_weights: str | Path | None = None):
    """LSE of one video file (``lipsync-bench lse``): returns the ``SyncScore`` and the protocol.

    ``crop="track"`` finds the face as ``eval`` does; ``"none"`` takes the frames as already cropped
    faces (224x224 for SyncNet, syncnet_python's ``demo_syncnet.py`` input; square face crops, resized
    to the expert's size, for the others). ``audio`` defaults to the video's own.
    """

    params = {"crop": "track", "vshift": vshift, "min_track": min_track, "audio": "gen", "compat": compat,
              "sync_model": sync_model, "sync_weights": str(sync_weights or ""), "tracks": "main"}
    params = LSE_C.resolve_params(params)
    check_params(params)
    if crop not in ("track", "none"):
        raise LipsyncBenchError(f"crop must be 'track' or 'none', not {crop!r}")
    path, described = lse_weights(params, weights_dir)
    model = load_model(path, torch.device(device), sync_model)
    samples = read_audio(audio or video)
    protocol = {"fps": fps, "sample_rate": 16000, "crop": crop, **params,
                "audio_file": str(audio) if audio else None, "weights": described,
                "sync_model": sync_model_label(params), "environment": environment(device)}
    if crop == "none":
        sync = TrackedSync(model, samples, {**params, "compat": "none"}, device)
        convert = JpegRoundTrip(Fraction(fps).limit_denominator(1001)) if compat == "syncnet_python" else None
        start = 0
        for chunk in iter_frames(video, fps, convert=convert):
            if sync_model == "syncnet" and chunk.shape[1:3] != (224, 224):
                raise LipsyncBenchError(f"{video}: --crop none takes 224x224 face crops, this video is "
                                        f"{chunk.shape[2]}x{chunk.shape[1]} (use --crop track)")
            # the JPEG round trip gives BGR already; TrackedSync wants RGB
            sync.update(chunk[..., ::-1] if convert is not None else chunk, start)
            start += len(chunk)
        protocol["seconds"] = {"video": start / fps, "audio": len(samples) / 16000}
        return sync.result(), protocol
    analyzer = FaceAnalyzer()
    for chunk in iter_frames(video, fps):
        analyzer.update(chunk)
    centres, first = track_centres(analyzer.result(), video, min_track)
    protocol["face_pipeline"] = analyzer.params()
    sync = TrackedSync(model, samples, params, device, centres, first)
    start = 0
    for chunk in iter_frames(video, fps):
        sync.update(chunk, start)
        start += len(chunk)
    protocol["seconds"] = {"video": start / fps, "audio": len(samples) / 16000}
    return sync.result(), protocol


def plot_score(score, path: Path, title: str = "") -> None:
    """PNG of the distance-vs-offset curve and the framewise confidence (the reference's medfilt 9)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offsets = np.arange(score.vshift, -score.vshift - 1, -1)  # curve index i is offset vshift - i
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(offsets, score.curve, marker=".", color="tab:blue")
    a.axhline(float(np.median(score.curve)), color="grey", ls="--", lw=1, label="median")
    a.plot([score.offset], [score.lse_d], "o", color="tab:red", label=f"min: offset {score.offset}")
    a.set_xlabel("AV offset (frames)")
    a.set_ylabel("mean distance")
    a.set_title(f"LSE-D {score.lse_d:.3f}, LSE-C {score.lse_c:.3f}")
    a.legend(fontsize=8)
    conf = score.framewise_confidence()
    b.plot(np.arange(len(conf)), conf, color="tab:green")
    b.set_xlabel("window (start frame)")
    b.set_ylabel("confidence at best offset")
    b.set_title("framewise confidence (median filter 9)")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class LseScore(Document):
    """``lse``: one video's AV offset, LSE-D and LSE-C, the distance curve and the protocol."""

    sync_model = "syncnet"

    def text(self) -> str:
        p = self["protocol"]
        lines = [f"{self['video']}: AV offset {self['offset']}, LSE-D {self['lse_d']:.3f}, LSE-C {self['lse_c']:.3f} "
                 f"({self['windows']} windows at {p['fps']:g} fps, crop {p['crop']}, compat {p['compat']}, sync "
                 f"model {self.sync_model})"]
        if not p["weights"]["official"]:
            lines.append(f"note: unofficial weights ({p['weights']['sha256'][:16]}…): not comparable with published "
                         "numbers")
        lines += [f"warning: {w}" for w in self.get("warnings", [])]
        if "plot" in self:
            lines.append(f"plot written to {self['plot']}")
        return "\n".join(lines)


def score_file(video: Path, audio: Path | None = None, crop: str = "track", compat: str = "none",
               fps: float = 25.0, vshift: int = 15, min_track: int = 0, device: str = "cpu",
               weights_dir: Path | None = None, sync_model: str = "syncnet", sync_weights: str | Path | None = None,
               plot: Path | None = None) -> LseScore:
    """``lse``: ``score_video`` with its curve and protocol as one document; with ``plot``, the
    distance-vs-offset curve and the framewise confidence saved as a PNG."""
    score, protocol = score_video(video, audio, crop, compat, fps, vshift, min_track, device, weights_dir,
                                  sync_model=sync_model, sync_weights=sync_weights)
    doc = LseScore(video=str(video), offset=score.offset, lse_c=score.lse_c, lse_d=score.lse_d,
                   windows=score.windows, curve=[float(x) for x in score.curve], protocol=protocol, warnings=[])
    seconds = protocol["seconds"]
    if audio is not None and abs(seconds["audio"] - seconds["video"]) > max(1.0, 0.1 * seconds["video"]):
        doc["warnings"].append(f"{audio} lasts {seconds['audio']:.2f} s and the video {seconds['video']:.2f} s: is it "
                               "this video's audio? (scores read the audio from the video's first frame on)")
    doc.sync_model = sync_model
    if plot:
        plot_score(score, plot, title=str(Path(video).name))
        doc["plot"] = str(plot)
    return doc
