"""The per-pair pipeline: each input decoded once, its faces analysed once, every metric fed.

For one generated/GT pair, the pipeline reads the declarations of the metrics to compute (the
evaluated run's, and those of reference runs computed on the GT itself, e.g. the GT's own sync scores) and
decides from their ``needs``:

- which inputs are decoded: the generated video when the run computes anything on it, the GT only
  when a metric needs GT frames or landmarks, or a reference run reads it;
- which inputs the face stage analyses (one analysis per input per run, with the protocol's
  landmarker, cached under ``<out>/cache/faces``): the faces of both for "landmarks" and
  "face_frames", of the generated video for "face_track", of the GT for ``--region face|mouth``;
- which metrics must wait for a face analysis before their first frame (crops that follow the face
  track, regions): when that analysis is not cached yet, they read the frames after the decoding
  pass from an in-memory buffer (``FRAME_BUFFER_BYTES``; a longer video is decoded a second time
  for them instead).

Every other metric reads the frames as they are decoded. A metric that fails on a video (no face,
no audio) fails alone; a video that cannot be read fails every metric of it, with one message.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch

from . import faces, media
from .errors import LipsyncBenchError, MediaError, MetricError, PairingError, StoreError
from .faces import FaceAnalyzer, FaceData
from .jsontext import canonical
from .metrics.registry import FACE_NEEDS, PAIRED_NEEDS, Metric, get_metric
from .metrics.streaming import FrameBatch, MetricContext
from .protocol import Protocol
from .reencode import CHAINS, repeat_second_frame
from .store import ResultRow

CHUNK_FRAMES = 32
#: Bytes of one input's decoded chunk at most: 32 frames of 1080p fit (398 MB with the JPEG round trip's
#: 3 channels more), 4K frames come fewer at a time.
CHUNK_BYTES = 400 * 2**20
#: Frames held in memory while a video's faces are analysed, for the metrics that need the analysis
#: before their frames; a video whose frames exceed it is decoded a second time for them.
FRAME_BUFFER_BYTES = int(float(os.environ.get("LIPSYNC_BENCH_FRAME_BUFFER_MB", "2048")) * 2**20)


@dataclass(frozen=True)
class RunSetup:
    """What every pair of a run shares: the parameters of each metric (``params``) and of each
    reference run's metrics (``reference_params``: run name -> metric -> parameters), the protocol,
    the device, the folders, the weights files of each metric, and how inputs are decoded."""

    params: dict[str, dict]
    reference_params: dict[str, dict[str, dict]]
    protocol: Protocol
    device: str
    cache_dir: Path
    state_dir: Path
    weights_paths: dict[str, list[Path]]
    chunk: int = CHUNK_FRAMES
    limits: media.DecodeLimits = media.DEFAULT_LIMITS


@dataclass
class PairJob:
    """One pair's work: the metrics of the evaluated run still to compute, those of each reference
    run (run name -> metrics), and per metric the state files of earlier videos it may reuse."""

    pair: media.Pair
    metrics: list[str]
    references: dict[str, list[str]] = field(default_factory=dict)
    reuse: dict[str, dict[str, Path]] = field(default_factory=dict)


@dataclass
class PairOutcome:
    rows: list[ResultRow]
    references: dict[str, list[ResultRow]]


def face_analyzer(protocol: Protocol, device: str = "cpu", repeated_frame: int | None = None) -> FaceAnalyzer:
    """The face stage of a protocol (landmarker and its options, detector, shots, tracking), its
    detector on ``device``; ``repeated_frame``: one the decoding repeated (``reencode``)."""
    return FaceAnalyzer(protocol.landmarker, protocol.track(), **protocol.face_options(), device=device,
                        repeated_frame=repeated_frame, **protocol.landmarker_options())


def repeated_frame(path: Path, protocol: Protocol, limits: media.DecodeLimits) -> int | None:
    """The frame the peer chain repeats in an input (its AVI's MP3 shifts the video by a frame): 2, the
    second copy of frame 1, where the input has audio; None otherwise."""
    chain = CHAINS.get(protocol.choices["decode.reencode"])
    if chain is None or not chain.repeats_second_frame:
        return None
    return 2 if media.probe(path, limits).has_audio else None


def protocol_record(protocol: Protocol) -> dict:
    """What a run records of its protocol: the protocol's own record (``Protocol.as_dict``) and, where
    a region crop needs the face stage, how that stage resolved on this machine (its landmarker and
    weights: part of what defines the cropped metrics' numbers)."""
    record = protocol.as_dict()
    if protocol.region != "full":
        record["face_pipeline"] = face_analyzer(protocol).params()
    return record


def pair_signature(pair: media.Pair) -> str | None:
    """The inputs' signatures (size and modification time): a row of a changed file is recomputed."""
    try:
        return f"{media.input_signature(pair.gen)}|{media.input_signature(pair.gt)}"
    except OSError:
        return None


class FaceStage:
    """The face analyses of a pair's inputs: loaded from the cache, or computed from the frames of the
    pair's decoding pass and cached. Called with a path, it gives that input's ``FaceData``."""

    def __init__(self, protocol: Protocol, cache_dir: Path, resized: Path | None = None, device: str = "cpu",
                 limits: media.DecodeLimits = media.DEFAULT_LIMITS):
        self.protocol, self.fps, self.cache_dir, self.device = protocol, protocol.fps, cache_dir, device
        self.limits = limits
        self.resized = resized  # the input whose frames are resized to its ground truth's size (decode.resize)
        self.data: dict[Path, FaceData] = {}
        self.analyzers: dict[Path, tuple[FaceAnalyzer, Path]] = {}
        self.seconds = 0.0  # spent in the face stage (loading, analysing, caching): kept with the rows
        self.fed: set[Path] = set()

    def want(self, path: Path) -> None:
        if path in self.data or path in self.analyzers:
            return
        start = time.perf_counter()
        try:
            self._want(path)
        finally:
            self.seconds += time.perf_counter() - start

    def _want(self, path: Path) -> None:
        analyzer = face_analyzer(self.protocol, self.device, repeated_frame(path, self.protocol, self.limits))
        key = analyzer.params()
        if path == self.resized:  # landmarks in the ground truth's pixels: another analysis than the file's own
            key = {**key, "resized_to_ground_truth": self.protocol.choices["decode.resize"]}
        if self.protocol.choices["decode.reencode"] != "none":  # the frames a peer chain leaves: another analysis
            key = {**key, "reencode": self.protocol.choices["decode.reencode"]}
        file = faces.cache_file(self.cache_dir, path, self.fps, key)
        if file.is_file():
            try:
                self.data[path] = FaceData.load(file)
                return
            except (OSError, ValueError, KeyError):  # a damaged cache entry is computed again
                pass
        self.analyzers[path] = (analyzer, file)

    def pending(self, path: Path) -> bool:
        return path in self.analyzers

    def update(self, path: Path, frames: np.ndarray) -> None:
        if path in self.analyzers:
            start = time.perf_counter()
            self.analyzers[path][0].update(frames)
            self.fed.add(path)
            self.seconds += time.perf_counter() - start

    def finish(self) -> None:
        """Keep (and cache) the analyses of the inputs whose frames came; one whose frames never came (its
        metrics failed before) is dropped, never cached empty."""
        start = time.perf_counter()
        for path, (analyzer, file) in self.analyzers.items():
            if path in self.fed:
                self.data[path] = analyzer.result()
                self.data[path].save(file)
        self.analyzers.clear()
        self.seconds += time.perf_counter() - start

    def __call__(self, path: Path) -> FaceData:
        if path not in self.data:
            raise MetricError(f"{path}: its face analysis is not available yet")
        return self.data[path]


@dataclass
class _Entry:
    """One metric of one run on this pair: ``run`` None for the evaluated run, else the reference run
    (whose generated video is the GT itself)."""

    run: str | None
    metric: Metric
    params: dict
    context: MetricContext
    accumulator: object = None
    late: bool = False
    region: bool = False
    error: str | None = None

    @property
    def reads_gt_as_gen(self) -> bool:
        return self.run is not None


def evaluate_pair(job: PairJob, setup: RunSetup, progress: Callable[[int], None] | None = None) -> PairOutcome:
    """All the job's metrics of one pair. Never raises for a bad input: errors become rows. ``progress``
    is called with the frames of each chunk decoded (and analysed, where faces are needed). The face
    stage's own time is kept in the details of the metrics that read faces (``face_seconds``)."""
    start = time.perf_counter()
    pair, protocol = job.pair, setup.protocol
    signature = pair_signature(pair)
    ref_signature = reference_signature(pair)
    warnings: list[str] = []
    entries: list[_Entry] = []
    try:
        resizes = protocol.choices["decode.resize"] != "none" and pair.gen != pair.gt
        stage = FaceStage(protocol, setup.cache_dir, pair.gen if resizes else None, setup.device, setup.limits)
        entries = _entries(job, setup, stage)
        _run_passes(pair, entries, stage, setup, warnings, progress)
    except StoreError:  # the results folder cannot be written: no video can be stored, stop the run
        raise
    except LipsyncBenchError as exc:
        return _failed(job, setup, str(exc), start, signature, ref_signature, exc)
    except Exception as exc:  # a bug must not lose the other videos: record it, with where it happened
        where = traceback.extract_tb(exc.__traceback__)[-1]
        message = f"internal error {type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})"
        return _failed(job, setup, message, start, signature, ref_signature, exc)
    seconds = (time.perf_counter() - start) / max(1, len(entries))
    rows: list[ResultRow] = []
    references: dict[str, list[ResultRow]] = {name: [] for name in job.references}
    for e in entries:
        own = warnings if e.run is None else []
        sig = signature if e.run is None else ref_signature
        out = rows if e.run is None else references[e.run]
        if e.error is None:
            try:
                value = e.accumulator.result()
            except MetricError as exc:
                e.error = str(exc)
        if e.error is not None:
            out.append(ResultRow(pair.key, e.metric.name, None, None, tuple(own), e.error, seconds, sig))
            continue
        state = None
        if value.state:
            paths = {"gen": e.context.gen, "gt": e.context.gt}
            state = {side: {"sha256": f.sha256, "rows": f.rows, "key": state_key(paths[side], setup.protocol, e.params)}
                     for side, f in value.state.items()}
        details = value.details
        if e.metric.needs_of(e.params) & FACE_NEEDS or e.region:
            details = {**(details or {}), "face_seconds": round(stage.seconds, 3)}
        out.append(ResultRow(pair.key, e.metric.name, None if math.isnan(value.value) else float(value.value),
                             value.frames, tuple(own + value.warnings), None, seconds, sig, details, state))
    return PairOutcome(rows, references)


def state_key(path: Path, protocol: Protocol, params: dict) -> str:
    """What a dataset metric's per-video state of one input depends on: the input (path and signature),
    the protocol and the metric's parameters (weights checksum included). Equal keys: reusable state."""
    return hashlib.sha256(canonical({"input": str(Path(path).resolve()), "signature": media.input_signature(path),
                                     "protocol": protocol_record(protocol), "params": params}).encode()).hexdigest()


def reference_signature(pair: media.Pair) -> str | None:
    """The signature of a reference run's row: the GT as its own generated video."""
    return pair_signature(media.Pair(pair.key, pair.gt, pair.gt))


def _failed(job: PairJob, setup: RunSetup, message: str, start: float, signature, ref_signature,
            exc: Exception) -> PairOutcome:
    """Error rows for the pair. The reference runs read only the GT: unless the GT itself is what
    failed, they are computed on their own (the pair's problem is not theirs)."""
    seconds = time.perf_counter() - start
    rows = [ResultRow(job.pair.key, m, None, None, (), message, seconds, signature) for m in job.metrics]
    gt_failed = isinstance(exc, MediaError) and exc.path == str(job.pair.gt) or not isinstance(exc, LipsyncBenchError)
    if job.references and job.metrics and not gt_failed:
        alone = evaluate_pair(PairJob(job.pair, [], job.references, job.reuse), setup)
        return PairOutcome(rows, alone.references)
    references = {name: [ResultRow(job.pair.key, m, None, None, (), message, seconds, ref_signature) for m in names]
                  for name, names in job.references.items()}
    return PairOutcome(rows, references)


def _entries(job: PairJob, setup: RunSetup, stage: FaceStage) -> list[_Entry]:
    """The accumulators of the job, with the face analyses they need and whether they must wait."""
    pair, protocol = job.pair, setup.protocol
    device = torch.device(setup.device)
    planned = [(None, get_metric(m), setup.params[m]) for m in job.metrics]
    planned += [(run, get_metric(m), setup.reference_params[run][m]) for run, names in job.references.items()
                for m in names]
    entries = []
    shared: dict[str | None, dict] = {}  # one per run: metrics computed together meet here
    for run, m, params in planned:
        gen = pair.gt if run is not None else pair.gen
        region = run is None and protocol.region != "full" and m.uses_region
        needs = m.needs_of(params)
        if needs & FACE_NEEDS & PAIRED_NEEDS:  # the faces of both videos
            stage.want(gen)
            stage.want(pair.gt)
        if "face_track" in needs:
            stage.want(gen)
        if region:
            stage.want(pair.gt)
        context = MetricContext(device, gen, pair.gt, protocol.fps, stage, setup.weights_paths.get(m.name, []),
                                setup.state_dir / m.name, dict(job.reuse.get(m.name, {})),
                                shared.setdefault(run, {}), setup.limits, protocol.choices["decode.reencode"])
        late = (("face_track" in needs and stage.pending(gen)) or (region and stage.pending(pair.gt))
                or ("face_frames" in needs and (stage.pending(gen) or stage.pending(pair.gt))))
        entries.append(_Entry(run, m, params, context, late=late, region=region))
    for e in entries:  # a metric that cannot start on this video (it needs audio, there is none) leaves the others
        try:
            _check_frame_rate(e.metric, e.context.gen, protocol, setup.limits)
            # the declared parameters only: the run's record (weights, pooling) is not the accumulator's
            e.accumulator = e.metric.make_accumulator({k: e.params[k] for k in e.metric.params}, e.context)
        except MetricError as exc:
            e.error = str(exc)
    return entries


def _check_frame_rate(metric: Metric, video: Path, protocol: Protocol, limits: media.DecodeLimits) -> None:
    """A metric whose procedure assumes a frame rate, under a protocol that keeps each video's own
    rate, refuses a video at another one (run-level rates are checked before any work)."""
    if metric.frame_rate is None or protocol.fps is not None:
        return
    native = media.probe(video, limits).native_fps
    if native is None or abs(native - metric.frame_rate) > 0.01:
        raise MetricError(f"{video}: {metric.label} needs {metric.frame_rate:g} fps and this protocol keeps each "
                          f"video's own frame rate, {'unknown' if native is None else f'{native:g} fps'} here")


def _fitted_chunk(path: Path, chunk: int, channels: int, limits: media.DecodeLimits) -> int:
    """Frames per chunk: ``chunk``, fewer for frames so large that a chunk would pass ``CHUNK_BYTES``
    (a 4K input is read 16 frames at a time), so that memory does not grow with the frame size."""
    info = media.probe(path, limits)
    return max(1, min(chunk, CHUNK_BYTES // max(1, info.width * info.height * channels)))


def _run_passes(pair: media.Pair, entries: list[_Entry], stage: FaceStage, setup: RunSetup,
                warnings: list[str], progress: Callable[[int], None] | None = None) -> None:
    """The decoding pass (faces analysed, metrics that need no analysis first fed), then the buffered
    frames for those that waited for it."""
    try:
        _decode_passes(pair, entries, stage, setup, warnings, progress)
    except _SizesDiffer as exc:  # the metrics that compare frames fail; those that read one video go on
        for e in entries:
            if e.run is None and e.error is None and (e.metric.needs_of(e.params) & PAIRED_NEEDS or e.region):
                e.error = str(exc)
        _decode_passes(pair, entries, stage, setup, warnings, progress)


def _decode_passes(pair: media.Pair, entries: list[_Entry], stage: FaceStage, setup: RunSetup,
                   warnings: list[str], progress: Callable[[int], None] | None) -> None:
    protocol, dev = setup.protocol, torch.device(setup.device)
    method = [e for e in entries if e.run is None and e.error is None]
    compare = any(e.metric.needs_of(e.params) & PAIRED_NEEDS or e.region for e in method)
    decode_gen = bool(method)
    decode_gt = compare or any(e.run is not None for e in entries)
    if not (decode_gen or decode_gt):
        return
    # inputs decoded with their JPEG round trip too (6 channels), for metrics that read frames that way
    jpeg = {e.context.gen for e in entries if "jpeg_frames" in e.metric.needs_of(e.params) and e.error is None}
    late = [e for e in entries if e.late and e.error is None]
    early = [e for e in entries if not e.late and e.error is None]
    buffer: list | None = [] if late else None
    held = 0
    regions = _Regions(protocol, stage, pair.gt)
    chunk = _fitted_chunk(pair.gen if decode_gen else pair.gt, setup.chunk, 6 if jpeg else 3, setup.limits)
    decoding = _Decoding(protocol, chunk, jpeg, setup.limits)
    for g, t, index in _chunks(pair, decoding, warnings, decode_gen, decode_gt, compare):
        if g is not None:
            stage.update(pair.gen, g[..., :3])
        if t is not None and pair.gt != pair.gen:
            stage.update(pair.gt, t[..., :3])
        _feed(early, g, t, index, dev, regions)
        if progress is not None:
            progress(len(g if g is not None else t))
        if buffer is not None:
            held += (g.nbytes if g is not None else 0) + (t.nbytes if t is not None and t is not g else 0)
            if held <= FRAME_BUFFER_BYTES:
                buffer.append((g, t, index))
            else:
                buffer = None
    stage.finish()
    if not late:
        return
    again = buffer if buffer is not None else _chunks(pair, decoding, [], decode_gen, decode_gt, compare)
    for g, t, index in again:
        _feed(late, g, t, index, dev, regions)


class _Regions:
    """The protocol's region boxes of a pair, from the GT's face analysis (computed on first use), and
    the crops they give (resized where the protocol says)."""

    def __init__(self, protocol: Protocol, stage: FaceStage, gt: Path):
        self.region, self.stage, self.gt = protocol.region, stage, gt
        self.size = protocol.choices["region.size"]
        self.interpolation = protocol.choices["region.interpolation"]
        self.fallback = protocol.choices["region.fallback"]
        self.boxes: np.ndarray | None = None

    def crop(self, gen: np.ndarray, gt: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        if self.boxes is None:
            data = self.stage(self.gt)
            if self.region != "face-box":  # a box per frame needs no track: frames without one fall back
                faces.require_faces(data, self.gt)
            self.boxes = faces.region_boxes(data, self.region, gt.shape[1], gt.shape[2], self.fallback)
        # hold the last box past the analysed frames (an analysis cached from a truncated pair)
        sel = self.boxes[np.minimum(np.arange(start, start + len(gen)), len(self.boxes) - 1)]
        if self.size:
            return (faces.crop_resized(gen, sel, self.size, self.interpolation),
                    faces.crop_resized(gt, sel, self.size, self.interpolation))
        return faces.crop_frames(gen, sel), faces.crop_frames(gt, sel)


def _split(frames: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """A decoded chunk as (RGB, JPEG round trip or None): 6 channels where the input was decoded with it."""
    if frames is None or frames.shape[-1] == 3:
        return frames, None
    return np.ascontiguousarray(frames[..., :3]), np.ascontiguousarray(frames[..., 3:])


def _feed(entries: list[_Entry], g, t, index: int, dev: torch.device, regions: _Regions) -> None:
    same = t is g
    g, g_jpeg = _split(g)
    t, t_jpeg = (g, g_jpeg) if same else _split(t)
    gen = torch.from_numpy(g).to(dev) if g is not None else None
    gt = gen if same else (torch.from_numpy(t).to(dev) if t is not None else None)
    plain = FrameBatch(gen, gt, index, gen_jpeg=g_jpeg) if gen is not None else None
    cropped = None
    for e in entries:
        if e.error is not None:
            continue
        try:
            if e.reads_gt_as_gen:
                if gt is None:
                    continue
                batch = FrameBatch(gt, gt, index, gen_jpeg=t_jpeg)
            elif gen is None:
                continue
            elif e.region:
                if cropped is None:
                    cg, ct = regions.crop(g, t, index)
                    cropped = FrameBatch(torch.from_numpy(cg).to(dev), torch.from_numpy(ct).to(dev), index, gen, gt,
                                         g_jpeg)
                batch = cropped
            else:
                batch = plain
            e.accumulator.update(batch)
        except MetricError as exc:
            e.error = str(exc)


@dataclass(frozen=True)
class _Decoding:
    """How a pair's inputs are decoded: at the protocol's rate, ``chunk`` frames at a time, the inputs in
    ``jpeg`` with their JPEG round trip in channels 3-5, within ``limits``."""

    protocol: Protocol
    chunk: int
    jpeg: frozenset | set
    limits: media.DecodeLimits

    def frames(self, path: Path) -> Iterator[np.ndarray]:
        """An input's chunks: RGB, or RGB and the JPEG round trip side by side (6 channels), or as a peer
        chain leaves them (``decode.reencode``)."""
        chain = CHAINS.get(self.protocol.choices["decode.reencode"])
        if chain is not None:
            chunks = media.iter_frames(path, self.protocol.fps, self.chunk, convert=chain.frames(),
                                       limits=self.limits)
            return chunks if repeated_frame(path, self.protocol, self.limits) is None else repeat_second_frame(
                chunks)
        if path in self.jpeg:
            return media.iter_frames_with_jpeg(path, self.protocol.fps, self.chunk, self.limits)
        return media.iter_frames(path, self.protocol.fps, self.chunk, limits=self.limits)


def _chunks(pair: media.Pair, decoding: _Decoding, warnings: list[str], decode_gen: bool, decode_gt: bool,
            compare: bool) -> Iterator[tuple[np.ndarray | None, np.ndarray | None, int]]:
    """(gen, gt, first frame index) chunks of the inputs to decode; with ``compare``, of equal length,
    with the sizes and the frame-count gap checked."""
    if pair.gen == pair.gt:  # a video against itself: decode once
        frames = 0
        for c in decoding.frames(pair.gen):
            yield c, c, frames
            frames += len(c)
        if frames == 0:
            raise PairingError("no frames could be decoded")
        return
    if compare:
        yield from _aligned_chunks(pair, decoding, warnings)
        return
    streams = [decoding.frames(p) if want else iter(())
               for p, want in ((pair.gen, decode_gen), (pair.gt, decode_gt))]
    index = 0
    while True:
        g, t = next(streams[0], None), next(streams[1], None)
        if g is None and t is None:
            break
        yield g, t, index
        # chunks are ``chunk`` frames but for each stream's last: the stream that goes on had a full one
        index += max(len(c) for c in (g, t) if c is not None)
    if index == 0:
        raise PairingError("no frames could be decoded")


def _aligned_chunks(pair: media.Pair, decoding: _Decoding, warnings: list[str]):
    """Yield (gen, gt, index) uint8 chunks of equal length; check sizes and the frame-count gap at the end."""
    protocol = decoding.protocol
    resize = protocol.choices["decode.resize"]
    gen_iter = decoding.frames(pair.gen)
    gt_iter = decoding.frames(pair.gt)
    n_gen = n_gt = used = 0
    gen_left, gt_left = None, None
    while True:
        g = next(gen_iter, None) if gen_left is None else gen_left
        t = next(gt_iter, None) if gt_left is None else gt_left
        gen_left = gt_left = None
        if g is None or t is None:
            # Count the longer input's remaining frames, stopping once the gap is too large anyway.
            rest, count = (gt_iter, t) if g is None else (gen_iter, g)
            extra = 0 if count is None else len(count)
            for c in rest:
                extra += len(c)
                if protocol.max_frame_gap is not None and extra > protocol.max_frame_gap:
                    break
            if g is None:
                n_gt += extra
            else:
                n_gen += extra
            break
        if g.shape[1:3] != t.shape[1:3]:
            if resize == "none":
                # before the first frame: only the metrics that compare frames fail (_run_passes)
                raise (_SizesDiffer if used == 0 else PairingError)(
                    _sizes_differ(g.shape[2], g.shape[1], t.shape[2], t.shape[1]))
            if used == 0:
                warnings.append(f"generated frames resized from {g.shape[2]}x{g.shape[1]} to the ground truth's "
                                f"{t.shape[2]}x{t.shape[1]} ({resize})")
            g = resized(g, t.shape[1], t.shape[2], resize)
        m = min(len(g), len(t))
        n_gen += m
        n_gt += m
        if len(g) > m:
            gen_left = g[m:]
        if len(t) > m:
            gt_left = t[m:]
        yield g[:m], t[:m], used
        used += m
    if used == 0:
        raise PairingError("no frames could be decoded")
    gap = abs(n_gen - n_gt)
    if protocol.max_frame_gap is not None and gap > protocol.max_frame_gap:
        (short, n_short), (long_, n_long) = sorted([("generated", n_gen), ("ground truth", n_gt)],
                                                   key=lambda x: x[1])
        rate = "at their own frame rates" if protocol.fps is None else f"at {protocol.fps:g} fps"
        raise PairingError(f"frame counts differ by more than {protocol.max_frame_gap} {rate}: "
                           f"{short} has {n_short} frames, {long_} at least {n_long} (--max-frame-gap)"
                           + _native_rates_note(pair, decoding.limits))
    if gap:
        warnings.append(f"frame counts differ by {gap} (generated {n_gen}, ground truth {n_gt}); "
                        f"truncated to {used}")


class _SizesDiffer(PairingError):
    """The inputs' frame sizes differ, found before any frame was used."""


def _sizes_differ(gen_width: int, gen_height: int, gt_width: int, gt_height: int) -> str:
    return (f"frame sizes differ: generated {gen_width}x{gen_height}, ground truth {gt_width}x{gt_height} (--set "
            "decode.resize=area compares them with the generated frames resized to the ground truth's size, recorded "
            "in the protocol)")


def resized(frames: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    """Frames (n, H, W, C) uint8 resized to ``height`` x ``width`` with OpenCV's ``interpolation``."""
    code = faces.INTERPOLATIONS[interpolation]
    return np.stack([cv2.resize(np.ascontiguousarray(f), (width, height), interpolation=code) for f in frames])


def _native_rates_note(pair: media.Pair, limits: media.DecodeLimits) -> str:
    """When the two inputs declare different frame rates, say so: a wrong rate in a file's metadata
    (0, 1000 fps) is the usual cause of a frame-count mismatch."""
    try:
        rates = [media.probe(p, limits).native_fps for p in (pair.gen, pair.gt)]
    except LipsyncBenchError:
        return ""
    if None in rates or abs(rates[0] - rates[1]) < 0.01:
        return ""
    return f"; their native frame rates differ: generated {rates[0]:g} fps, ground truth {rates[1]:g} fps"
