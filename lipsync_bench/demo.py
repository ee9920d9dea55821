"""A built-in example that runs offline: the package cannot ship videos, so it makes them.

Ground truth: the real face photo ``skimage.data.astronaut()`` (NASA, public domain), cropped to the
face, with a mouth that opens and closes with the envelope of a synthetic speech-like signal (voiced
harmonics in syllable bursts), written as 25 fps H.264 + AAC clips. "Generated" clips are the same
renders with known degradations, so the table must rank them: mild blur > strong blur on SSIM/PSNR.
The frozen mouth shows why frame metrics are not enough: it wins SSIM and PSNR (the mouth is a small
part of the frame) while only IFC sees that the lips stopped moving.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import data

from .evaluation import run_eval
from .media import write_video
from .metrics.registry import get_metric
from .rendering import Document
from .report import method_rows, render_table, table_json
from .store import ResultStore

FPS = 25
#: Metrics that run with nothing downloaded (LMD and CSIM through dlib, whose models ship in a PyPI
#: package). NIQE runs offline too, but the example's 128x128 frames hold a single 96x96 block, too
#: few for its covariance: its value would mislead.
OFFLINE_METRICS = ["ssim", "psnr", "ifc", "lmd", "cpbd", "csim_dlib"]
#: Trained models that run offline once their files are here: MediaPipe's face mesh (the weights folder, or
#: 'pip install --no-deps mediapipe==0.10.21') and Silero VAD (in the silero-vad wheel). Added when present.
MESH_METRICS = ["theval_lip_sync", "theval_lip_dynamics"]
#: dlib's descriptors cost ~80 ms each: CSIM on 10 frames a clip keeps the demo near half a minute.
DEMO_PARAMS = {"csim_dlib": {"frames": 10}}
SAMPLE_RATE = 16000
SIZE = 128
FRAMES = 50  # 2 s a clip
CLIPS = 3
# Astronaut photo: face crop (rows, cols) and the mouth centre in the SIZE x SIZE crop.
FACE_CROP = (slice(40, 232), slice(126, 318))
MOUTH = (71.0, 64.0)  # (row, col)
MOUTH_HALF_WIDTH = 11.0


def speech_like(seed: int, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(audio at 16 kHz in [-1, 1], envelope in [0, 1]): voiced harmonics in syllable-length bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    env = np.zeros(n)
    pos = int(rng.uniform(0.05, 0.2) * SAMPLE_RATE)
    while pos < n:
        length = int(rng.uniform(0.12, 0.28) * SAMPLE_RATE)
        seg = np.sin(np.linspace(0, np.pi, length)) ** 2 * rng.uniform(0.5, 1.0)
        end = min(n, pos + length)
        env[pos:end] = seg[: end - pos]
        pos = end + int(rng.uniform(0.03, 0.18) * SAMPLE_RATE)
    f0 = 150 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    audio = 0.3 * env * voice / np.abs(voice).max() + 0.003 * rng.standard_normal(n)
    return audio.astype(np.float32), env


def face_image() -> np.ndarray:
    face = Image.fromarray(data.astronaut()[FACE_CROP])
    return np.asarray(face.resize((SIZE, SIZE), Image.LANCZOS))


def render(face: np.ndarray, openness: np.ndarray) -> np.ndarray:
    """Frames with a dark mouth opening whose height follows ``openness`` (one value in [0, 1] a frame)."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    frames = np.empty((len(openness), SIZE, SIZE, 3), dtype=np.uint8)
    inside_colour = np.array([70.0, 25.0, 35.0])
    for i, o in enumerate(openness):
        half_height = 0.6 + 6.0 * o
        r = ((rows - MOUTH[0]) / half_height) ** 2 + ((cols - MOUTH[1]) / MOUTH_HALF_WIDTH) ** 2
        alpha = np.clip((1.15 - r) / 0.3, 0, 1)[..., None]  # soft edge
        frames[i] = np.round(face * (1 - alpha) + inside_colour * alpha).astype(np.uint8)
    return frames


DEGRADATIONS = {
    "blur-mild": lambda f, rng: ndimage.gaussian_filter(f, sigma=(0, 0.8, 0.8, 0)),
    "blur-strong": lambda f, rng: ndimage.gaussian_filter(f, sigma=(0, 2.0, 2.0, 0)),
    "noise": lambda f, rng: np.clip(f + rng.normal(0, 8, f.shape), 0, 255).astype(np.uint8),
    "frozen-mouth": lambda f, rng: np.repeat(f[:1], len(f), axis=0),
}


def build_example(root: Path) -> dict[str, Path]:
    """Write ``root/gt`` and one folder per degradation; returns {name: folder}."""
    face = face_image()
    folders = {"gt": root / "gt", **{name: root / name for name in DEGRADATIONS}}
    for clip in range(CLIPS):
        audio, env = speech_like(seed=clip, seconds=FRAMES / FPS)
        per_frame = env[: FRAMES * SAMPLE_RATE // FPS].reshape(FRAMES, -1).mean(axis=1)
        frames = render(face, per_frame / max(per_frame.max(), 1e-6))
        name = f"speaker{clip + 1}.mp4"
        write_video(folders["gt"] / name, frames, FPS, audio, SAMPLE_RATE)
        rng = np.random.default_rng(100 + clip)
        for method, degrade in DEGRADATIONS.items():
            write_video(folders[method] / name, degrade(frames, rng), FPS, audio, SAMPLE_RATE)
    return folders


class Demo(Document):
    """What ``demo`` prints: the table of the example's 'methods' (``text``), or as JSON its folder and the
    table's columns and rows."""

    def __init__(self, doc: dict, text: str):
        super().__init__(doc)
        self._text = text

    def text(self) -> str:
        return self._text


def run_demo(out: Path | None = None, progress: bool = True) -> Demo:
    """Build the example, evaluate every degradation, and return what ``demo`` prints."""

    tmp = None
    if out is None:
        tmp = tempfile.mkdtemp(prefix="lipsync-bench-demo-")
        out = Path(tmp)
    try:
        folders = build_example(Path(out) / "example")
        results = Path(out) / "results"
        missing = {m: why for m in MESH_METRICS if (why := get_metric(m).available(get_metric(m).defaults))}
        metrics = OFFLINE_METRICS + [m for m in MESH_METRICS if m not in missing]
        for method in DEGRADATIONS:
            run_eval(folders[method], folders["gt"], metrics, method=method, dataset="demo",
                     out=results, params=DEMO_PARAMS, progress=progress)
        store = ResultStore.open_existing(results)
        columns, rows = method_rows(store, "demo")
        store.close()
        text = (f"Example: {CLIPS} clips of {FRAMES} frames ({SIZE}x{SIZE}, {FPS} fps) of a real face with a "
                f"speech-driven mouth; each 'method' is a known degradation of the ground truth. Note "
                f"'frozen-mouth': best SSIM/PSNR, yet its lips do not move; IFC and LMD see it. Every metric shown "
                f"runs offline (LMD and CSIM through dlib, CSIM on 10 frames a clip; CPBD needs no reference video; "
                f"NIQE, offline too, needs larger frames than these).\n"
                + (f"THEval's lip sync and lip dynamics ({', '.join(missing)}) need MediaPipe's face mesh: "
                   f"{next(iter(missing.values()))}\n\n" if missing else
                   "THEval's lip sync and lip dynamics run real trained models (MediaPipe's face mesh, Silero VAD) and "
                   "are scored against the GT's own values (the 'Ground truth' row). Note the frozen mouth: its "
                   "lip dynamics collapse, yet it has the lowest (best) THEval lip sync, since a constant mouth "
                   "opening normalises to zero everywhere.\n\n")
                + render_table(columns, rows, "markdown")
                + ("" if tmp else f"\n\nClips in {Path(out) / 'example'}, results in {results}"))
        return Demo({"example": str(Path(out) / "example") if not tmp else None, **table_json(columns, rows)}, text)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
