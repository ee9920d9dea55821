"""LSE on real videos: ``eval --protocol mochabench`` against the ``syncnet-python`` 0.2.3 package's
``SyncNetPipeline.inference`` (MoChaBench's pipeline: its ffmpeg commands run by a real ffmpeg, every
frame and crop written to disk as JPEGs), with the same random SyncNet and S3FD weights in both (no
pretrained weights are reachable here).

    python benchmarks/bench_lse_pipeline.py [--clips 3] [--repeat 2]

Rows (GRID clips, 75 frames of 360x288 with their audio):
- S3FD on the pipeline's frames: the package's ``detect_faces`` frame by frame against lipsync-bench's
  batched detector (the same network and weights);
- the pipeline after detection: both given the same boxes for S3FD's (dlib's, recorded once from the
  frames; random S3FD weights find no face above 0.9), so that the chain, shots, tracks, crops and
  SyncNet are timed and compared: seconds a clip, and the largest difference of LSE-C and LSE-D;
- the machine's floor for the chain: ffmpeg's two commands alone (video.avi, the JPEG frames) against
  lipsync-bench's in-memory chain alone (``reencode.PipelineFrames``).
Needs imageio-ffmpeg, ffmpeg-python, scenedetect and syncnet-python (the test extras).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GRID = ROOT / "tests" / "data" / "grid"  # the repository's clips

def key(frame) -> str:
    return hashlib.sha1(frame.tobytes()).hexdigest()


def measure(clips: list[Path], repeat: int, verbose: bool = True) -> dict:
    import numpy as np
    from bench_lse import timed  # beside this file

    import lipsync_bench
    from lipsync_bench import media
    from lipsync_bench.faces.backends import get_backend
    from lipsync_bench.faces.s3fd import S3FD, load_s3fd
    from lipsync_bench.reencode import PipelineFrames, repeat_second_frame
    from tests.test_lse_pipeline import ffmpeg_wrapper, package_pipeline, seeded_lse_weights

    out = {"s3fd": [], "pipeline": [], "chain": [], "worst": 0.0, "frames": 0}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # the package's ffmpeg: 16 slices, as lipsync-bench (and a machine of 15 cores or more)
        os.environ["PATH"] = f"{ffmpeg_wrapper(tmp / 'bin').parent}{os.pathsep}{os.environ['PATH']}"
        weights = seeded_lse_weights(tmp / "w")
        pipe = package_pipeline(weights)
        ours_s3fd = S3FD(load_s3fd(weights / "sfd_face.pth"))
        dlib = get_backend("dlib")
        boxes: dict[str, np.ndarray] = {}
        gen = tmp / "gen"
        gen.mkdir()
        for clip in clips:
            (gen / clip.name).symlink_to(clip)
            frames = np.concatenate(list(repeat_second_frame(media.iter_frames(clip, 25, convert=PipelineFrames()))))
            out["frames"] += len(frames)
            boxes.update({key(f): dlib.detect(f) for f in frames})
            t_theirs, _ = timed(lambda frames=frames: [pipe.s3fd.detect_faces(f, conf_th=0.9, scales=[0.25])
                                                       for f in frames], repeat)
            t_ours, _ = timed(lambda frames=frames: ours_s3fd.detect(frames), repeat)
            out["s3fd"].append((len(frames) / t_ours, len(frames) / t_theirs))

            def chain_commands(clip=clip):
                work = Path(tempfile.mkdtemp(dir=tmp))
                (work / "jpg").mkdir()
                subprocess.run(["ffmpeg", "-y", "-i", str(clip), "-qscale:v", "2", "-async", "1", "-r", "25",
                                str(work / "video.avi")], check=True)
                subprocess.run(["ffmpeg", "-y", "-i", str(work / "video.avi"), "-qscale:v", "2", "-threads", "1",
                                "-f", "image2", str(work / "jpg" / "%06d.jpg")], check=True)

            t_commands, _ = timed(chain_commands, repeat)
            t_chain, _ = timed(lambda clip=clip: list(media.iter_frames(clip, 25, convert=PipelineFrames())), repeat)
            out["chain"].append((t_chain, t_commands))
        # the same boxes for S3FD's on both sides, looked up by the frame's bytes
        pipe.s3fd.detect_faces = lambda image, conf_th, scales: boxes[key(image)]
        S3FD.detect = lambda self, frames: [boxes[key(f)] for f in frames]

        def theirs_all():
            with redirect_stdout(StringIO()):  # evaluate() prints its framewise confidences
                return {c.stem: pipe.inference(str(c), None)[:3] for c in clips}

        runs = iter(range(repeat))

        def ours_all():
            return lipsync_bench.evaluate(gen, None, protocol="mochabench", weights_dir=weights,
                                          out=tmp / f"results{next(runs)}")

        t_theirs, expected = timed(theirs_all, repeat)
        t_ours, result = timed(ours_all, repeat)
        out["pipeline"] = (t_ours / len(clips), t_theirs / len(clips))
        for stem, (offsets, confs, dists) in expected.items():
            tracks = result.tracks[stem]
            assert [t["offset"] for t in tracks] == offsets, stem
            out["worst"] = max(out["worst"], *(abs(t["lse_c"] - c) for t, c in zip(tracks, confs, strict=True)),
                               *(abs(t["lse_d"] - d) for t, d in zip(tracks, dists, strict=True)))
        if verbose:
            print(f"{len(clips)} clips: offsets equal; max |LSE difference| {out['worst']:.1e}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    import torch

    clips = sorted(GRID.glob("*.mpg"))[: args.clips]
    if not clips:
        sys.exit(f"no GRID clips under {GRID}")
    out = measure(clips, args.repeat)
    print(f"\nLSE on real videos, {len(clips)} GRID clips ({out['frames']} pipeline frames), {torch.get_num_threads()} "
          f"CPU threads, median of {args.repeat}")
    ours, theirs = (statistics.mean(x) for x in zip(*out["s3fd"], strict=True))
    print(f"S3FD, frames/s                    ours {ours:7.2f}   package {theirs:7.2f}   ratio {ours / theirs:5.2f}x")
    ours, theirs = out["pipeline"]
    print(f"pipeline after detection, s/clip  ours {ours:7.2f}   package {theirs:7.2f}   ratio {theirs / ours:5.2f}x"
          f"   max |LSE difference| {out['worst']:.1e}")
    ours, theirs = (statistics.mean(x) for x in zip(*out["chain"], strict=True))
    print(f"chain alone, s/clip               ours {ours:7.2f}   ffmpeg  {theirs:7.2f}   ratio {theirs / ours:5.2f}x")


if __name__ == "__main__":
    main()
