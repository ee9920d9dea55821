"""The decoding catalogue: files with the properties that make decoders disagree, built here with a real
ffmpeg, and read frame for frame and sample for sample against ffmpeg's own command line:

    ffmpeg -i IN -r 25 -f rawvideo -pix_fmt rgb24 -       (frames)
    ffmpeg -i IN -ac 1 -ar 16000 -acodec pcm_s16le -      (audio)

Every case is exact (docs/evaluation.md lists them, with what PyAV's own conversion got wrong).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from lipsync_bench import evaluate, media
from tests.helpers import GRID, ffmpeg_exe

SOURCE = GRID / "bbaf2n.mpg"  # MPEG-1 360x288 at 25 fps, MP2 stereo 44.1 kHz

# name -> ffmpeg arguments that make the file from SOURCE (or from BASE, an H.264 + AAC copy of it)
VIDEO_CASES = {
    "rotation 90": ["-display_rotation", "90", "-i", "{base}", "-c", "copy", "{out}.mp4"],
    "rotation 180": ["-display_rotation", "180", "-i", "{base}", "-c", "copy", "{out}.mp4"],
    "rotation 270": ["-display_rotation", "270", "-i", "{base}", "-c", "copy", "{out}.mp4"],
    "horizontal flip": ["-display_hflip", "-i", "{base}", "-c", "copy", "{out}.mp4"],
    "rotation 90 and flip": ["-display_rotation", "90", "-display_hflip", "-i", "{base}", "-c", "copy", "{out}.mp4"],
    "sample aspect ratio 4:3": ["-i", "{src}", "-vf", "setsar=4/3", "-c:v", "libx264", "-crf", "18", "{out}.mp4"],
    "odd width and height": ["-i", "{src}", "-vf", "scale=359:287", "-c:v", "ffv1", "-pix_fmt", "yuv420p",
                             "{out}.mkv"],
    "10-bit 4:2:0": ["-i", "{src}", "-c:v", "libx264", "-pix_fmt", "yuv420p10le", "-crf", "18", "{out}.mp4"],
    "4:4:4": ["-i", "{src}", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-crf", "18", "{out}.mp4"],
    "full-range MJPEG": ["-i", "{src}", "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", "3", "{out}.avi"],
    "interlaced": ["-i", "{src}", "-vf", "interlace", "-c:v", "libx264", "-flags", "+ildct+ilme", "-crf", "18",
                   "{out}.mp4"],
    "variable frame rate": ["-i", "{src}", "-vf", "setpts='if(lt(N,30),N*2,N+30)/25/TB'", "-fps_mode", "vfr",
                            "-c:v", "libx264", "-crf", "18", "{out}.mkv"],
    "B-frames and an edit list": ["-i", "{src}", "-c:v", "libx264", "-bf", "3", "-crf", "18", "{out}.mp4"],
    "non-zero start time": ["-i", "{src}", "-c:v", "libx264", "-crf", "18", "-output_ts_offset", "1.7",
                            "{out}.mp4"],
    "video starting after the audio": ["-itsoffset", "0.4", "-i", "{src}", "-i", "{src}", "-map", "0:v", "-map",
                                       "1:a", "-c:v", "libx264", "-bf", "3", "-crf", "18", "-c:a", "aac",
                                       "{out}.mp4"],
    "BT.709 720p": ["-i", "{src}", "-vf", "scale=1280:720", "-c:v", "libx264", "-crf", "18", "-colorspace", "bt709",
                    "-color_primaries", "bt709", "-color_trc", "bt709", "{out}.mp4"],
}

AUDIO_CASES = {
    "8 kHz": ["-i", "{src}", "-vn", "-ar", "8000", "-c:a", "pcm_s16le", "{out}.wav"],
    "44.1 kHz": ["-i", "{src}", "-vn", "-c:a", "pcm_s16le", "{out}.wav"],
    "48 kHz AAC": ["-i", "{src}", "-vn", "-ar", "48000", "-c:a", "aac", "{out}.m4a"],
    "6 channels": ["-i", "{src}", "-vn", "-af", "pan=5.1|FL=c0|FR=c1|FC=0.5*c0+0.5*c1|LFE=0.1*c0|BL=0.3*c0|BR=0.3*c1",
                   "-ar", "48000", "-c:a", "pcm_s16le", "{out}.wav"],
    "24-bit": ["-i", "{src}", "-vn", "-ar", "48000", "-c:a", "pcm_s24le", "{out}.wav"],
    "float": ["-i", "{src}", "-vn", "-c:a", "pcm_f32le", "{out}.wav"],
    "AAC in MP4 (priming skipped by the edit list)": ["-i", "{base}", "-c", "copy", "{out}.mp4"],
    "audio starting after the video": ["-i", "{src}", "-itsoffset", "0.5", "-i", "{src}", "-map", "0:v", "-map",
                                       "1:a", "-c:v", "libx264", "-crf", "18", "-c:a", "aac", "{out}.mp4"],
    "audio offset, priming kept by the edit list": ["-i", "{base}", "-itsoffset", "0.5", "-i", "{aac}", "-map",
                                                    "0:v", "-map", "1:a", "-c", "copy", "{out}.mp4"],
    "non-zero start time": ["-i", "{src}", "-c:v", "libx264", "-crf", "18", "-c:a", "aac", "-output_ts_offset",
                            "1.7", "{out}.mp4"],
}


def _run(*args: str) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> dict[str, Path]:
    """Every case's file, made once for the module."""
    root = tmp_path_factory.mktemp("catalogue")
    names = {"src": str(SOURCE), "base": str(root / "base.mp4"), "aac": str(root / "aac.m4a")}
    _run("-i", names["src"], "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-c:a", "aac", names["base"])
    _run("-i", names["src"], "-vn", "-ar", "48000", "-c:a", "aac", names["aac"])
    files = {}
    for kind, cases in (("video", VIDEO_CASES), ("audio", AUDIO_CASES)):
        for i, (name, args) in enumerate(cases.items()):
            out = str(root / f"{kind}{i:02d}")
            args = [a.format(out=out, **names) for a in args]
            _run(*args)
            files[f"{kind}: {name}"] = Path(args[-1])
    return files


def cli_frames(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    raw = _run("-i", str(path), "-r", "25", "-f", "rawvideo", "-pix_fmt", "rgb24", "-")
    return np.frombuffer(raw, np.uint8).reshape(-1, *shape)


@pytest.mark.parametrize("name", list(VIDEO_CASES))
def test_frames_equal_the_command_line(catalogue, name):
    path = catalogue[f"video: {name}"]
    ours = media.read_frames(path)
    ref = cli_frames(path, ours.shape[1:])
    assert ours.shape == ref.shape
    assert np.array_equal(ours, ref), f"{name}: up to {np.abs(ours.astype(int) - ref).max()} levels off"


def test_rotated_frames_are_upright(catalogue):
    upright = media.read_frames(catalogue["video: B-frames and an edit list"])
    assert media.read_frames(catalogue["video: rotation 90"]).shape == (len(upright), 360, 288, 3)
    rotated = media.read_frames(catalogue["video: rotation 180"])
    # a half turn shows the stored picture upside down and mirrored; the H.264 copies differ by encoding only
    base = media.read_frames(SOURCE)
    assert np.abs(rotated[10].astype(int) - base[10, ::-1, ::-1]).mean() < 3
    assert np.abs(rotated[10].astype(int) - base[10]).mean() > 20


@pytest.mark.parametrize("name", list(AUDIO_CASES))
def test_audio_equals_the_command_line(catalogue, name):
    path = catalogue[f"audio: {name}"]
    ref = np.frombuffer(_run("-i", str(path), "-ac", "1", "-ar", "16000", "-acodec", "pcm_s16le", "-f", "s16le", "-"),
                        "<i2")
    ours = np.round(media.read_audio(path) * 32768).astype(np.int32)
    assert len(ours) == len(ref)
    assert np.array_equal(ours, ref.astype(np.int32))


@pytest.mark.slow
def test_a_rotated_ground_truth_evaluates_against_an_upright_video(catalogue, tmp_path):
    """A GT recorded with a 90° display matrix (as phones write) against a lightly re-encoded, upright
    copy: the frames meet upright, and SSIM is that of the re-encoding alone."""
    (tmp_path / "gt").mkdir()
    (tmp_path / "gen").mkdir()
    gt = tmp_path / "gt" / "clip.mp4"
    gt.write_bytes(catalogue["video: rotation 90"].read_bytes())
    _run("-i", str(gt), "-c:v", "libx264", "-crf", "30", str(tmp_path / "gen" / "clip.mp4"))  # autorotated
    result = evaluate(tmp_path / "gen", tmp_path / "gt", ["ssim", "psnr"])
    assert result.failures.empty
    assert result.summary.loc["ssim", "mean"] > 0.9
