"""Broken inputs derived from the real clips, for the fuzz tests: seeded, so a failing case reproduces
from its name (``<kind>-<index>``) and the seed.

``make_cases(root, n, seed)`` writes ``root/gen`` and ``root/gt``: each case is a generated input paired
with an intact GT of the same clip, and a few intact pairs are mixed in. Kinds: random byte flips,
truncation at a random offset, damaged headers, damaged MP4 atoms (sizes and contents), empty files and
streams of zero length, audio-only files, frame folders with missing, empty, foreign or mixed-size
images, and intact clips under names with every odd character class (those must give the intact
clip's values).
"""
from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageFilter

from lipsync_bench import media

#: Share of the cases of each kind (the rest of the n cases are byte flips).
SHARES = {"truncate": 0.25, "header": 0.08, "atom": 0.12, "empty": 0.02, "audio-only": 0.02, "folder": 0.06,
          "name": 0.05}
FORMATS = (".mp4", ".avi", ".mkv", ".mpg")
ATOMS = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"stts", b"stsz", b"stco", b"stsc", b"avcC",
         b"mdhd", b"tkhd", b"mvhd", b"hdlr", b"mdat", b"esds", b"elst")
#: Intact clips under odd names: spaces, quotes, shell and HTML syntax, non-ASCII, a leading dash, long.
ODD_NAMES = ["a b", "quote'single", 'quote"double', "$(touch pwned)", "`id`", "semi;colon", "amp&er",
             "<img src=x onerror=alert(1)>", "back\\slash", "percent%s%n", "-rf", "ünïcødé-名前", "emoji-🎬",
             "tab\tname", "new\nline", "x" * 200, "#hash", "star*", "question?", "{brace}", "[bracket]",
             "comma,name", "...dots", "CON", "nul\x01ctrl"]


@dataclass(frozen=True)
class Case:
    key: str
    kind: str
    good: bool  # an intact input (its values must equal the intact clip's)
    base: str  # the intact clip it derives from (its format)


def base_clips(folder: Path, clip: Path, frames: int = 30, size: tuple[int, int] = (128, 104)) -> dict:
    """The intact clip in each format, as GT (``gt[ext]``: the first ``frames`` frames of ``clip`` at
    ``size`` with its audio) and as a generated video (``gen[ext]``: the same, blurred), and both as
    frame folders (``"frames"``). The MPEG-PS GT is the original file, its generated twin re-encoded."""
    folder.mkdir(parents=True, exist_ok=True)
    video = media.read_frames(clip)[:frames]
    video = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR)) for f in video])
    blurred = np.stack([np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(1.2))) for f in video])
    audio = media.read_audio(clip)[: frames * 640]
    out: dict = {"gt": {}, "gen": {}}
    for side, frames_ in (("gt", video), ("gen", blurred)):
        for ext in (".mp4", ".avi", ".mkv"):
            out[side][ext] = media.write_video(folder / side / f"base{ext}", frames_, 25, audio,
                                               codec="libx264" if ext == ".mp4" else "ffv1")
        out[side]["frames"] = folder / side / "frames"
        out[side]["frames"].mkdir()
        for i, f in enumerate(frames_, 1):
            Image.fromarray(f).save(out[side]["frames"] / f"{i:06d}.png")
    out["gt"][".mpg"] = folder / "gt" / "base.mpg"
    shutil.copy(clip, out["gt"][".mpg"])
    out["gen"][".mpg"] = folder / "gen" / "base.mpg"
    full = media.read_frames(clip)
    with av.open(str(out["gen"][".mpg"]), "w", format="mpeg") as c:  # same frame count as the GT
        s = c.add_stream("mpeg1video", rate=25)
        s.width, s.height, s.pix_fmt = full.shape[2], full.shape[1], "yuv420p"
        for f in full:
            for p in s.encode(av.VideoFrame.from_ndarray(np.asarray(Image.fromarray(f).filter(
                    ImageFilter.GaussianBlur(1.2))), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return out


def make_cases(root: Path, clip: Path, n: int, seed: int = 0, intact: int = 3) -> tuple[list[Case], dict]:
    """Write ``n`` broken cases and ``intact`` intact pairs under ``root`` (gen/, gt/); returns the cases
    and the intact clips by format."""
    rng = np.random.default_rng(seed)
    bases = base_clips(root / "base", clip)
    gen, gt = root / "gen", root / "gt"
    gen.mkdir(parents=True, exist_ok=True)
    gt.mkdir(parents=True, exist_ok=True)
    data = {ext: bases["gen"][ext].read_bytes() for ext in FORMATS}
    counts = {kind: max(1, round(share * n)) for kind, share in SHARES.items()}
    counts["flip"] = n - sum(counts.values())
    cases = []
    for i in range(intact):
        ext = FORMATS[i % len(FORMATS)]
        cases.append(_pair(gen, gt, f"intact-{i}", ext, data[ext], bases, "intact", True))
    for kind, count in counts.items():
        for i in range(count):
            ext = FORMATS[int(rng.integers(len(FORMATS)))]
            key = f"{kind}-{i:04d}"
            if kind == "folder":
                cases.append(_folder_case(gen, gt, key, bases, rng))
                continue
            if kind == "name":
                name = ODD_NAMES[i % len(ODD_NAMES)] + (f"-{i}" if i >= len(ODD_NAMES) else "")
                cases.append(_pair(gen, gt, name, ext, data[ext], bases, "name", True))
                continue
            blob = _damaged(kind, data[ext] if kind != "atom" else data[".mp4"], rng, bases)
            cases.append(_pair(gen, gt, key, ".mp4" if kind in ("atom", "audio-only") else ext, blob, bases, kind,
                               False))
    return cases, bases


def _pair(gen: Path, gt: Path, key: str, ext: str, blob: bytes, bases: dict, kind: str, good: bool) -> Case:
    (gen / f"{key}{ext}").write_bytes(blob)
    os.symlink(bases["gt"][ext], gt / f"{key}{ext}")
    return Case(key, kind, good, ext)


def _damaged(kind: str, blob: bytes, rng: np.random.Generator, bases: dict) -> bytes:
    b = bytearray(blob)
    if kind == "flip":
        for pos in rng.integers(0, len(b), int(rng.integers(1, 65))):
            b[pos] ^= 1 << int(rng.integers(8))
    elif kind == "truncate":
        del b[int(rng.integers(0, len(b))):]
    elif kind == "header":
        k = int(rng.integers(4, 257))
        b[:k] = bytes(k) if rng.random() < 0.3 else rng.integers(0, 256, k, dtype=np.uint8).tobytes()
    elif kind == "atom":
        found = [m for a in ATOMS if (m := bytes(b).find(a)) >= 4]
        pos = found[int(rng.integers(len(found)))]
        how = int(rng.integers(4))
        if how == 0:  # the atom's size: zero, tiny, huge or random
            b[pos - 4:pos] = struct.pack(">I", [0, 1, 8, 0xFFFFFFFF, int(rng.integers(2**32))][int(rng.integers(5))])
        elif how == 1:  # its contents
            k = int(rng.integers(1, 33))
            b[pos + 4:pos + 4 + k] = rng.integers(0, 256, k, dtype=np.uint8).tobytes()
        elif how == 2:  # its type
            b[pos:pos + 4] = b"free"
        else:  # cut right after it
            del b[pos + 8:]
    elif kind == "empty":
        return [b"", _container_without_frames()][int(rng.integers(2))]
    elif kind == "audio-only":
        return _audio_only(bases)
    return bytes(b)


def _container_without_frames() -> bytes:
    """An MP4 whose video stream holds no frame (a stream of zero length)."""
    import io

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
    return buf.getvalue()


def _audio_only(bases: dict) -> bytes:
    import io

    audio = media.read_audio(bases["gt"][".mp4"])
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray((audio[None] * 32767).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def _folder_case(gen: Path, gt: Path, key: str, bases: dict, rng: np.random.Generator) -> Case:
    folder = gen / key
    shutil.copytree(bases["gen"]["frames"], folder)
    files = sorted(folder.iterdir())
    pick = files[int(rng.integers(len(files)))]
    how = int(rng.integers(5))
    if how == 0:  # missing frames
        for f in rng.choice(files, int(rng.integers(1, 5)), replace=False):
            f.unlink()
    elif how == 1:  # an empty image
        pick.write_bytes(b"")
    elif how == 2:  # another size
        Image.new("RGB", (64, 48)).save(pick)
    elif how == 3:  # not an image
        pick.write_bytes(b"not a png at all\n" * 10)
    else:  # a 16-bit image
        Image.fromarray(np.zeros((104, 128), np.uint16)).save(pick)
    os.symlink(bases["gt"]["frames"], gt / key)
    return Case(key, "folder", False, "frames")
