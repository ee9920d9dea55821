"""Video files to FID: lipsync-bench (decode in memory, batched, GT features cached) against the usual
recipe (ffmpeg extracts PNG frames at 25 fps, then pytorch-fid on the two folders), with the same
random FID-Inception weights in both (no pretrained weights are reachable here).

    python benchmarks/bench_fid.py [--clips 3] [--frames 75]

Two cases: *cold* (nothing cached: both sides compute every feature) and *second method* (a second
generated folder on the same dataset: lipsync-bench reuses the GT features, the PNG recipe starts over).
Both values are printed with their difference. Needs imageio-ffmpeg (test extra).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GRID = ROOT / "tests" / "data" / "grid"  # the repository's clips
EXTRA = Path(os.environ.get("LIPSYNC_BENCH_DATA", ROOT.parent / "shared" / "data"))  # optional extra clips
FID_FILE = "pt_inception-2015-12-05-6726825d.pth"


def png_recipe(ffmpeg: str, gen: Path, gt: Path, work: Path) -> float:
    from pytorch_fid.fid_score import calculate_fid_given_paths

    folders = []
    for side in (gen, gt):
        out = work / f"png_{side.name}"
        out.mkdir(parents=True)
        for video in sorted(side.iterdir()):
            subprocess.run([ffmpeg, "-v", "error", "-i", str(video), "-r", "25", str(out / f"{video.stem}_%05d.png")],
                           check=True)
        folders.append(str(out))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return calculate_fid_given_paths(folders, 50, "cpu", 2048, num_workers=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--frames", type=int, default=75, help="frames a clip (GRID clips have 75)")
    args = parser.parse_args()
    import imageio_ffmpeg

    from lipsync_bench import media, run_eval
    from tests.helpers import make_fid_weights, noise, write_lossless

    clips = sorted(GRID.glob("*.mpg"))[: args.clips]
    if not clips:
        sys.exit(f"no GRID clips under {GRID}")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["TORCH_HOME"] = str(tmp / "torch")
        frames = {c.stem: media.read_frames(c)[: args.frames] for c in clips}
        make_fid_weights(tmp / "torch" / "hub" / "checkpoints" / FID_FILE,
                         np.concatenate([f[::10] for f in frames.values()]))
        for stem, f in frames.items():
            write_lossless(tmp / "gt" / stem, f)
            write_lossless(tmp / "gen_a" / stem, noise(f, 4, seed=1))
            write_lossless(tmp / "gen_b" / stem, noise(f, 8, seed=2))
        n = sum(len(f) for f in frames.values())
        print(f"FID from video files: {len(clips)} GRID clips, {n} frames a side, CPU, random calibrated weights")
        rows = []
        for case, gen in (("cold", "gen_a"), ("second method", "gen_b")):
            start = time.perf_counter()
            result = run_eval(tmp / gen, tmp / "gt", ["fid"], out=tmp / "results", method=gen, dataset="grid",
                              progress=False)
            t_ours = time.perf_counter() - start
            ours = result.dataset_values["fid"]["value"]
            start = time.perf_counter()
            ref = png_recipe(ffmpeg, tmp / gen, tmp / "gt", tmp / f"work_{gen}")
            t_ref = time.perf_counter() - start
            rows.append((case, t_ours, t_ref, ours, ref))
        for case, t_ours, t_ref, ours, ref in rows:
            print(f"  {case:14s}: lipsync-bench {t_ours:6.1f} s, PNG + pytorch-fid {t_ref:6.1f} s, "
                  f"ratio {t_ref / t_ours:4.2f}x; FID {ours:.4f} vs {ref:.4f} (diff {abs(ours - ref):.1e})")
        print("  (pytorch-fid's FID includes a 2048x2048 scipy sqrtm, ~12 s here; lipsync-bench takes eigenvalues "
              "instead)")


if __name__ == "__main__":
    main()
