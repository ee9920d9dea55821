"""``lipsync-bench prepare``: raw talking-face videos (LRS2's ``main/<video>/<utterance>.mp4`` with its
file lists, or any folder of videos) -> a training folder that ``train-syncnet``, ``train-silent``,
``train-generator`` and the studies read (the "prepared" layout of ``research.datasets``).

Each video goes through the face stage of evaluation (detection, tracking, median smoothing) at
25 fps with its audio at 16 kHz, is cut to its main face track and cropped by ``FACE_CROP`` (the crop
``generate`` takes), then written as ``<out>/<name>.npz``: the crops as JPEG (quality 95), the 16-bit
audio of the track's span, the track's boxes and the key the file was made under (the video's
content hash, the frame rate, the face settings and the geometry). ``<out>/prepared.json`` names the
geometry and settings; a folder prepared under other ones is refused rather than mixed.

Resumable: a clip whose file exists under the same key is not redone, and a file appears only
complete (written to a temporary name, then renamed), so a run killed at any point and started again
finishes the rest. ``shard=(i, n)`` prepares the clips whose name hashes to shard i (the split of
``eval --shard``): N tasks of a job array write into one folder without touching the same file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm import tqdm

from ..errors import LipsyncBenchError
from ..faces import FaceAnalyzer
from ..shards import check_shard, in_shard
from ..syncnets.inputs import FACE_CROP
from .datasets import PREPARED_MANIFEST, crops_key, read_filelist, stored_crops_key, video_items, write_crops
from .outcomes import PreparedFolder

SAMPLE_RATE = 16000
FPS = 25.0


def _manifest(params: dict, data: Path) -> dict:
    return {"format": "lipsync-bench prepared clips", "version": 1, "crop_geometry": FACE_CROP.as_dict(),
            "fps": FPS, "sample_rate": SAMPLE_RATE, "face": params, "source": str(data)}


def _claim(out: Path, manifest: dict) -> None:
    """Write ``prepared.json``, or check that the folder was prepared under the same settings."""
    path = out / PREPARED_MANIFEST
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            raise LipsyncBenchError(f"{path}: not a prepare manifest; use an empty --out") from None
        same = ("crop_geometry", "fps", "sample_rate", "face")
        differ = [k for k in same if old.get(k) != manifest[k]]
        if differ:
            raise LipsyncBenchError(f"{out}: prepared under other settings ({', '.join(differ)} differ); "
                                    "use another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise LipsyncBenchError(f"{out}: not empty and not a prepared folder; use an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{PREPARED_MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(path)


def prepare(data: str | os.PathLike, out: str | os.PathLike, filelist: str | os.PathLike | None = None,
            shard: tuple[int, int] | None = None, landmarker: str = "auto", progress: bool = True) -> dict:
    """Prepare the videos under ``data`` (those of ``filelist`` only, when given) into ``out``; see the
    module docstring. Returns the names prepared now, those already there, and those that failed with
    the reason; writes the same to ``<out>/prepare-report[-shard-I-of-N].json``."""
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise LipsyncBenchError(f"{data}: not a folder")
    if out.resolve() == data.resolve() or data.resolve() in out.resolve().parents:
        raise LipsyncBenchError(f"{out}: inside --data; give a folder outside it")
    if shard is not None:
        check_shard(shard)
    wanted = read_filelist(Path(filelist)) if filelist else None
    params = FaceAnalyzer(landmarker).params()  # an unavailable landmarker fails here, before any work
    items, problems = video_items(data, wanted)
    if not items:
        raise LipsyncBenchError(f"{data}: no videos" + (f" of {filelist}" if filelist else "")
                                + (f" ({problems[0]})" if problems else ""))
    _claim(out, _manifest(params, data))
    if shard is not None:
        items = [(name, path) for name, path in items if in_shard(name, shard)]
    prepared, already, failed, size = [], [], {}, 0
    for name, path in tqdm(items, desc="prepare", unit="video", disable=not progress):
        target = out / f"{name}.npz"
        try:
            key = crops_key(path, FPS, params)
            if target.is_file() and stored_crops_key(target) == key:
                already.append(name)
            else:
                for stale in target.parent.glob(f".{target.stem}.*.tmp.npz"):  # left by a killed run
                    stale.unlink()
                write_crops(path, target, FaceAnalyzer(landmarker), FPS, key)
                prepared.append(name)
            size += target.stat().st_size
        except (LipsyncBenchError, OSError) as exc:
            failed[name] = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
    doc = {"out": str(out), "crop_geometry": FACE_CROP.name, "shard": list(shard) if shard else None,
           "videos": len(items), "prepared": prepared, "already": already, "failed": failed,
           "problems": problems, "bytes": size}
    suffix = f"-shard-{shard[0]}-of-{shard[1]}" if shard else ""
    (out / f"prepare-report{suffix}.json").write_text(json.dumps(doc, indent=2))
    return PreparedFolder(doc)
