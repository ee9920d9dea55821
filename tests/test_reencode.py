"""The peer pipelines' lossy chains (``lipsync_bench.reencode``), done in memory, against the commands
they stand for run on disk: imageio-ffmpeg's ffmpeg binary and OpenCV, on the GRID clips and on a 30 fps
clip (so that ``-r 25`` drops frames): syncnet_python's (MPEG-4 and MP3 in an AVI, XVID crops) and
LatentSync's (H.264 and AAC in an MP4, mp4v crops with AAC audio)."""
from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
from scipy.io import wavfile

from lipsync_bench import media
from lipsync_bench.reencode import (
    CropVideo,
    H264Frames,
    PipelineFrames,
    read_audio_through,
    repeat_second_frame,
    samples_through,
)
from tests.helpers import GRID, ffmpeg_exe


def ffmpeg(*args) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-v", "error", "-y", *map(str, args)], check=True)


def pipeline_avi(source, folder):
    """run_pipeline.py's first command, on a machine whose ffmpeg encodes 16 slices (15 cores or more)."""
    ffmpeg("-i", source, "-qscale:v", 2, "-async", 1, "-r", 25, "-threads", 16, folder / "video.avi")
    return folder / "video.avi"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A GRID clip (25 fps, MPEG-1 and MP2) and another at 30 fps with its audio at 44.1 kHz (lossless)."""
    grid = sorted(GRID.glob("*.mpg"))[:2]
    if len(grid) < 2:
        pytest.skip("GRID clips not found")
    frames = media.read_frames(grid[1], fps=30)
    thirty = media.write_video(tmp_path_factory.mktemp("thirty") / "thirty.avi", frames, 30,
                               media.read_audio(grid[1], sample_rate=44100), codec="ffv1", sample_rate=44100)
    return [grid[0], thirty]


def test_pipeline_frames_are_the_jpegs_run_pipeline_reads(clips, tmp_path):
    """``ffmpeg -qscale:v 2 -async 1 -r 25 video.avi``, ``ffmpeg -i video.avi -qscale:v 2 -threads 1 -f
    image2 %06d.jpg`` and ``cv2.imread`` give the frames of PipelineFrames with the second frame repeated,
    to the last bit: 76 JPEGs from a 75-frame clip (the MP3 in the AVI moves the video a frame late)."""
    for clip in clips:
        work = tmp_path / clip.stem
        (work / "jpg").mkdir(parents=True)
        ffmpeg("-i", pipeline_avi(clip, work), "-qscale:v", 2, "-threads", 1, "-f", "image2", work / "jpg" / "%06d.jpg")
        expected = [cv2.imread(str(p)) for p in sorted((work / "jpg").glob("*.jpg"))]
        ours = np.concatenate(list(repeat_second_frame(media.iter_frames(clip, 25, convert=PipelineFrames()))))
        plain = media.read_frames(clip, fps=25)
        assert len(ours) == len(expected) == len(plain) + 1, clip.name
        assert all(np.array_equal(a[..., ::-1], b) for a, b in zip(ours, expected, strict=True)), clip.name
        assert np.array_equal(ours[2], ours[1]) and np.abs(ours[3:].astype(int) - plain[2:]).mean() > 0.3


def test_crop_video_is_opencvs_xvid_read_back_as_evaluate_reads_it(tmp_path):
    """cv2.VideoWriter(XVID, 25 fps) of 224x224 BGR crops, then ``ffmpeg -i crop.avi -threads 1 -f image2``
    and cv2.imread: the frames of CropVideo, fed in chunks of any size (and flushed). The XVID video is
    bit-exact; the default-quality JPEGs are too but where the 200 kb/s rate control picks a quantiser one
    step apart: it counts the bits of the JPEG comment, the encoder's version ("Lavc63.1.102" in ffmpeg 9,
    a byte shorter than PyAV's "Lavc62.28.102", as long as ffmpeg 5-8's), which tips 1 frame in 75 here."""
    clip = sorted(GRID.glob("*.mpg"))[0]
    crops = np.ascontiguousarray(media.read_frames(clip)[:, 30:254, 70:294, ::-1])  # BGR 224x224, as the crops
    writer = cv2.VideoWriter(str(tmp_path / "crop.avi"), cv2.VideoWriter_fourcc(*"XVID"), 25, (224, 224))
    assert writer.isOpened(), "OpenCV cannot write XVID here"
    for crop in crops:
        writer.write(crop)
    writer.release()
    (tmp_path / "jpg").mkdir()
    ffmpeg("-i", tmp_path / "crop.avi", "-threads", 1, "-f", "image2", tmp_path / "jpg" / "%06d.jpg")
    expected = np.stack([cv2.imread(str(p)) for p in sorted((tmp_path / "jpg").glob("*.jpg"))])
    video = CropVideo()
    ours = np.concatenate([video(crops[:7]), video(crops[7:40]), video(crops[40:]), video.flush()])
    assert ours.shape == expected.shape == crops.shape
    unequal = [i for i, (a, b) in enumerate(zip(ours, expected, strict=True)) if not np.array_equal(a, b)]
    assert len(unequal) <= 2, unequal
    assert all(np.abs(ours[i].astype(int) - expected[i]).mean() < 2 for i in unequal)
    assert np.abs(ours.astype(int) - crops).mean() > 1  # the XVID step is lossy: it matters
    decoded = CropVideo(jpeg=False)
    plain = np.concatenate([decoded(crops), decoded.flush()])
    capture = cv2.VideoCapture(str(tmp_path / "crop.avi"))
    first = capture.read()[1]
    assert plain.shape == crops.shape and np.abs(plain[0].astype(int) - first).max() <= 1


def test_audio_through_mp3_is_the_avis_audio_within_the_lame_builds_difference(clips, tmp_path):
    """``ffmpeg -i video.avi -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav``: the same number of
    samples, the same alignment (the LAME encoder delay, 1105 samples at 44.1 kHz, kept: ~401 samples
    at 16 kHz later than the source) and samples within an RMS of 8% of the signal's (PyAV's LAME
    build encodes otherwise than the binary's; measured 1-4% on the GRID clips)."""
    for clip in clips[:2]:
        work = tmp_path / clip.stem
        work.mkdir()
        ffmpeg("-i", pipeline_avi(clip, work), "-ac", 1, "-vn", "-acodec", "pcm_s16le", "-ar", 16000, work / "a.wav")
        rate, expected = wavfile.read(work / "a.wav")
        ours = np.round(read_audio_through(clip, "mp3") * 32768).astype(np.int64)
        assert rate == 16000 and len(ours) == len(expected), clip.name
        expected = expected.astype(np.int64)
        rms = np.sqrt(np.mean(expected.astype(float) ** 2))
        assert np.sqrt(np.mean((ours - expected).astype(float) ** 2)) < 0.08 * rms, clip.name
        lags = {lag: np.dot(ours[1000 + lag:-1000 + lag], expected[1000:-1000]) for lag in range(-3, 4)}
        assert max(lags, key=lags.get) == 0, clip.name
        source = np.round(media.read_audio(clip) * 32768)
        delay = {lag: np.dot(ours[lag:lag + 16000], source[:16000]) for lag in range(380, 420)}
        assert abs(max(delay, key=delay.get) - 401) <= 2, clip.name


def latentsync_mp4(source, folder):
    """LatentSync's first command, on a machine of 8 cores or more (x264's lookahead on 2 threads or more)."""
    ffmpeg("-i", source, "-qscale:v", 2, "-async", 1, "-r", 25, "-threads", 24, folder / "video.mp4")
    return folder / "video.mp4"


def test_h264_frames_are_the_jpegs_latentsync_reads(clips, tmp_path):
    """``ffmpeg -qscale:v 2 -async 1 -r 25 video.mp4`` (libx264 at its defaults), ``ffmpeg -i video.mp4
    -qscale:v 2 -f image2`` and ``cv2.imread`` give the frames of H264Frames, to the last bit, none
    repeated; x264 on 1-9 threads gives other frames (its lookahead on one thread)."""
    for clip in clips:
        work = tmp_path / clip.stem
        (work / "jpg").mkdir(parents=True)
        ffmpeg("-i", latentsync_mp4(clip, work), "-qscale:v", 2, "-f", "image2", work / "jpg" / "%06d.jpg")
        expected = [cv2.imread(str(p)) for p in sorted((work / "jpg").glob("*.jpg"))]
        ours = np.concatenate(list(media.iter_frames(clip, 25, convert=H264Frames(), chunk=7)))
        assert len(ours) == len(expected) == len(media.read_frames(clip, fps=25)), clip.name
        assert all(np.array_equal(a[..., ::-1], b) for a, b in zip(ours, expected, strict=True)), clip.name
    ffmpeg("-i", clips[0], "-qscale:v", 2, "-async", 1, "-r", 25, "-threads", 3, tmp_path / "three.mp4")
    assert not np.array_equal(media.read_frames(tmp_path / "three.mp4"), media.read_frames(
        tmp_path / clips[0].stem / "video.mp4"))


def test_audio_through_aac_is_the_mp4s_audio_within_the_encoders_difference(clips, tmp_path):
    """``ffmpeg -i video.mp4 -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav``: the same samples in
    number and time (the AAC priming dropped as the MP4's edit list has it), within an RMS of 5% of the
    signal's: libavcodec 62's AAC encoder (PyAV's) is not 63's (measured 2.5%; the decoding side of the
    chain, fed the file's own packets, is exact)."""
    for clip in clips[:2]:
        work = tmp_path / clip.stem
        work.mkdir()
        ffmpeg("-i", latentsync_mp4(clip, work), "-ac", 1, "-vn", "-acodec", "pcm_s16le", "-ar", 16000,
               work / "audio.wav")
        _, expected = wavfile.read(work / "audio.wav")
        ours = np.round(read_audio_through(clip, "aac") * 32768).astype(np.int64)
        assert len(ours) == len(expected) == len(media.read_audio(clip)), clip.name
        rms = np.sqrt(np.mean(expected.astype(float) ** 2))
        assert np.sqrt(np.mean((ours - expected).astype(float) ** 2)) < 0.05 * rms, clip.name
        lags = {lag: np.dot(ours[1000 + lag:-1000 + lag], expected[1000:-1000]) for lag in range(-3, 4)}
        assert max(lags, key=lags.get) == 0, clip.name


def test_latentsync_crop_videos_are_opencvs_mp4v_with_aac_audio(tmp_path):
    """cv2.VideoWriter(mp4v) of the crops, muxed with their slice of audio.wav (``-ss``/``-to``) as AAC
    (``-c:v copy -c:a aac``), read back by SyncNetEval.evaluate's two commands: the frames of
    CropVideo(tag="mp4v") (but where the JPEG rate control tips, as for XVID), and the audio of
    samples_through(aac) in number and time, within the AAC encoders' difference."""
    clip = sorted(GRID.glob("*.mpg"))[1]
    crops = np.ascontiguousarray(media.read_frames(clip)[10:70, 30:254, 70:294, ::-1])
    writer = cv2.VideoWriter(str(tmp_path / "cropt.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (224, 224))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for crop in crops:
        writer.write(crop)
    writer.release()
    audio = media.read_audio(clip)
    wavfile.write(tmp_path / "audio.wav", 16000, np.round(audio * 32768).astype(np.int16))
    ffmpeg("-i", tmp_path / "audio.wav", "-ss", "0.400", "-to", "2.800", tmp_path / "slice.wav")
    ffmpeg("-i", tmp_path / "cropt.mp4", "-i", tmp_path / "slice.wav", "-c:v", "copy", "-c:a", "aac",
           tmp_path / "crop.mp4")
    (tmp_path / "jpg").mkdir()
    ffmpeg("-i", tmp_path / "crop.mp4", "-f", "image2", tmp_path / "jpg" / "%06d.jpg")
    ffmpeg("-i", tmp_path / "crop.mp4", "-async", 1, "-ac", 1, "-vn", "-acodec", "pcm_s16le", "-ar", 16000,
           tmp_path / "crop.wav")
    expected = np.stack([cv2.imread(str(p)) for p in sorted((tmp_path / "jpg").glob("*.jpg"))])
    video = CropVideo(tag="mp4v")
    ours = np.concatenate([video(crops), video.flush()])
    assert ours.shape == expected.shape == crops.shape
    unequal = [i for i, (a, b) in enumerate(zip(ours, expected, strict=True)) if not np.array_equal(a, b)]
    assert len(unequal) <= 2 and all(np.abs(ours[i].astype(int) - expected[i]).mean() < 2 for i in unequal)
    _, heard = wavfile.read(tmp_path / "crop.wav")
    mine = np.round(samples_through(audio[10 * 640:70 * 640], "aac") * 32768).astype(np.int64)
    assert len(mine) == len(heard) == 60 * 640
    rms = np.sqrt(np.mean(heard.astype(float) ** 2))
    assert np.sqrt(np.mean((mine - heard).astype(float) ** 2)) < 0.05 * rms
