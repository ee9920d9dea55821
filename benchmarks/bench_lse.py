"""LSE on face-crop videos: lipsync-bench against syncnet_python's procedure (the PyPI port
``syncnet-python`` 0.2.3: its two ffmpeg commands, then ``SyncNetInstance.evaluate``), with the same
random SyncNet weights in both (no pretrained weights are reachable here).

    python benchmarks/bench_lse.py [--clips 5] [--repeat 3]

Inputs: 224x224 face-crop videos of real GRID clips (cropped once, by lipsync-bench's face pipeline;
face detection is not timed on either side). Rows:
- reference: ffmpeg JPEG + WAV extraction, then evaluate() (which reads the JPEGs back);
- reference evaluate() alone (JPEGs already on disk);
- ours, default mode: decode in memory, score;
- ours, --compat syncnet_python: the same with the in-memory JPEG round trip.
Each row prints the median time per clip and the ratio to the reference. Needs
imageio-ffmpeg and syncnet-python (the test extras).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GRID = ROOT / "tests" / "data" / "grid"  # the repository's clips
EXTRA = Path(os.environ.get("LIPSYNC_BENCH_DATA", ROOT.parent / "shared" / "data"))  # optional extra clips


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def measure(clips: list[Path], repeat: int, verbose: bool = True) -> tuple[dict[str, list[float]], float]:
    """Seconds per clip of each row, and the largest |LSE difference| between compat mode and the
    reference."""
    import imageio_ffmpeg
    import torch

    from lipsync_bench import media
    from lipsync_bench.faces import FaceAnalyzer, syncnet_crops
    from lipsync_bench.metrics.lse import score_video
    from tests.test_syncnet import reference_modules

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    ref_model, ref_instance = reference_modules()
    torch.manual_seed(0)
    net = ref_model.S(num_layers_in_fc_layers=1024).eval()
    instance = ref_instance.SyncNetInstance(net, device="cpu")
    rows = {"reference (ffmpeg + evaluate)": [], "reference evaluate() alone": [], "ours": [],
            "ours --compat syncnet_python": []}
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "w").mkdir()
        torch.save(net.state_dict(), tmp / "w" / "syncnet_v2.model")
        for clip in clips:
            frames = media.read_frames(clip)
            analyzer = FaceAnalyzer()
            analyzer.update(frames)
            video = media.write_video(tmp / f"{clip.stem}.mp4", syncnet_crops(frames, analyzer.result()), 25,
                                      media.read_audio(clip))
            work = tmp / clip.stem

            def extract(work=work, video=video):
                work.mkdir(exist_ok=True)
                subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(video), "-threads", "1", "-f", "image2",
                                str(work / "%06d.jpg")], check=True)
                subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(video), "-async", "1", "-ac", "1", "-vn",
                                "-acodec", "pcm_s16le", "-ar", "16000", str(work / "audio.wav")], check=True)

            def evaluate(work=work):
                with redirect_stdout(StringIO()):  # it prints its framewise confidences
                    return instance.evaluate(types.SimpleNamespace(tmp_dir=str(work), batch_size=20, vshift=15))

            t_extract, _ = timed(extract, repeat)
            t_eval, (offset, conf, dist) = timed(evaluate, repeat)
            t_ours, (plain, _) = timed(lambda video=video: score_video(video, crop="none", weights_dir=tmp / "w"),
                                       repeat)
            t_compat, (compat, _) = timed(lambda video=video: score_video(video, crop="none", compat="syncnet_python",
                                                              weights_dir=tmp / "w"), repeat)
            worst = max(worst, abs(compat.lse_c - conf), abs(compat.lse_d - dist))
            rows["reference (ffmpeg + evaluate)"].append(t_extract + t_eval)
            rows["reference evaluate() alone"].append(t_eval)
            rows["ours"].append(t_ours)
            rows["ours --compat syncnet_python"].append(t_compat)
            if verbose:
                print(f"{clip.stem}: reference offset {offset} LSE-D {dist:.4f} LSE-C {conf:.4f} | compat "
                      f"{compat.offset} {compat.lse_d:.4f} {compat.lse_c:.4f} | default {plain.offset} "
                      f"{plain.lse_d:.4f} {plain.lse_c:.4f}")
    return rows, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    clips = sorted(GRID.glob("*.mpg"))[: args.clips]
    if not clips:
        sys.exit(f"no GRID clips under {GRID}")
    rows, worst = measure(clips, args.repeat)
    ref = statistics.mean(rows["reference (ffmpeg + evaluate)"])
    print(f"\nLSE on {len(clips)} face-crop clips (75 frames each), {torch.get_num_threads()} CPU threads, "
          f"median of {args.repeat} per clip; compat vs reference: max |difference| {worst:.2e}")
    for name, values in rows.items():
        mean = statistics.mean(values)
        print(f"{name:32s} {mean:6.3f} s/clip   ratio (reference / this) {ref / mean:5.2f}x")


if __name__ == "__main__":
    main()
