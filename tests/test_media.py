"""Decoding, frame-rate conversion, audio, frame folders and pairing."""
from __future__ import annotations

import subprocess
from fractions import Fraction

import numpy as np
import pytest

from lipsync_bench import media
from lipsync_bench.errors import MediaError
from tests.helpers import data_file, ffmpeg_exe, write_frame_folder, write_lossless

# ---------------------------------------------------------------- ffmpeg -r semantics (unit level)

def _resample(times, durations, fps=25, t0=None):
    r = media.FpsResampler(Fraction(fps), t0)
    out = []
    for i, (t, d) in enumerate(zip(times, durations, strict=False)):
        out += r.push(Fraction(t), Fraction(d), i)
    return out + r.finish()


def test_same_rate_is_identity():
    n = 10
    assert _resample([Fraction(i, 25) for i in range(n)], [Fraction(1, 25)] * n) == list(range(n))


def test_30_to_25_drops_once_the_drift_passes_1_1_frames():
    """ffmpeg 9 `-r 25` on 1 s / 4 s of 30 fps writes 27 / 102 frames: drift builds up to ~2 frames
    before the first drop (the 1.1-frame threshold), then one frame in six is dropped."""
    for seconds, expected in [(1, 27), (4, 102)]:
        n = 30 * seconds
        out = _resample([Fraction(i, 30) for i in range(n)], [Fraction(1, 30)] * n)
        assert len(out) == expected
        assert out == sorted(out) and len(set(out)) == len(out)  # only drops, in order
    assert out[:14] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14]


def test_12_5_to_25_repeats_every_frame():
    n = 10
    out = _resample([Fraction(2 * i, 25) for i in range(n)], [Fraction(2, 25)] * n)
    assert out == [i // 2 for i in range(20)]


def test_late_start_is_filled_with_first_frame():
    # video starts 0.12 s (3 frames) after the container start
    out = _resample([Fraction(3, 25) + Fraction(i, 25) for i in range(5)], [Fraction(1, 25)] * 5, t0=Fraction(0))
    assert out == [0, 0, 0, 0, 1, 2, 3, 4]


# ---------------------------------------------------------------- real clips

def test_variable_rate_clip_matches_ffmpeg_frame_count():
    """face_1.mp4 is variable rate (frames of 1/30 s and 1/15 s, 135 frames over 6.1 s); ffmpeg 9's
    `-r 25` writes 153 frames (6.133 s from the container start, the last frame ending at 153.3)."""
    frames = media.read_frames(data_file("retalking/face_1.mp4"), fps=25)
    assert frames.shape == (153, 700, 700, 3)
    assert media.read_frames(data_file("retalking/face_1.mp4"), fps=None).shape[0] == 135


@pytest.mark.parametrize("clip", ["retalking/face_1.mp4", "retalking/face_3.mp4", "grid/bbaf2n.mpg"])
def test_frames_equal_ffmpeg_r25(clip):
    """Frame for frame equal to `ffmpeg -i clip -r 25 -pix_fmt rgb24` (the syncnet_python recipe)."""
    exe = ffmpeg_exe()
    path = data_file(clip)
    ours = media.read_frames(path, fps=25)
    raw = subprocess.run([exe, "-v", "error", "-i", str(path), "-r", "25", "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-"], capture_output=True, check=True).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(-1, *ours.shape[1:])
    assert ref.shape == ours.shape
    assert np.array_equal(ref, ours)


@pytest.mark.parametrize("fps,n", [(30, 30), (29.97, 47), (12.5, 10), (50, 50)])
def test_synthetic_rates_equal_ffmpeg_r25(tmp_path, fps, n):
    exe = ffmpeg_exe()
    frames = np.stack([np.full((16, 16, 3), i, np.uint8) for i in range(n)])  # frame i has value i
    path = media.write_video(tmp_path / "c.avi", frames, fps, codec="ffv1")
    raw = subprocess.run([exe, "-v", "error", "-i", str(path), "-r", "25", "-f", "rawvideo", "-pix_fmt", "rgb24",
                          "-"], capture_output=True, check=True).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(-1, 16, 16, 3)[:, 0, 0, 0]
    assert list(media.read_frames(path)[:, 0, 0, 0]) == list(ref)


def test_chunks_stream_in_order():
    path = data_file("grid/bbaf2n.mpg")
    chunks = list(media.iter_frames(path, 25, chunk=16))
    assert [len(c) for c in chunks] == [16, 16, 16, 16, 11]
    assert np.array_equal(np.concatenate(chunks), media.read_frames(path))


def test_audio_is_16k_mono_with_the_clip_duration():
    audio = media.read_audio(data_file("retalking/face_1.mp4"))  # AAC 44.1 kHz stereo
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16000 - 6.1) < 0.05
    assert np.abs(audio).max() <= 1.0
    wav = media.read_audio(data_file("retalking/audio_2.wav"))  # 48 kHz stereo
    assert abs(len(wav) / 16000 - 5.0) < 0.05


def test_stereo_downmix_is_the_channel_mean(tmp_path):
    """ffmpeg's `-ac 1` to 16-bit: (L + R) / 2."""
    import av

    rate = 16000
    t = np.arange(rate) / rate
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)
    path = tmp_path / "stereo.wav"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate, layout="stereo")
        data = (np.stack([left, right]).T.reshape(1, -1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
        frame.sample_rate = rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    mono = media.read_audio(path)
    assert np.allclose(mono, (left + right) / 2, atol=2 / 32768)


# ---------------------------------------------------------------- frame folders

def test_frame_folder_reads_numerically_sorted_frames_and_audio(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (12, 32, 48, 3), dtype=np.uint8)
    folder = tmp_path / "clip"
    folder.mkdir()
    from PIL import Image

    for i, f in enumerate(frames):  # Wav2Lip layout: 0.png .. 11.png (lexical order would put 10 before 2)
        Image.fromarray(f).save(folder / f"{i}.png")
    assert np.array_equal(media.read_frames(folder), frames)
    with pytest.raises(MediaError, match="no audio.wav"):
        media.read_audio(folder)
    import av

    with av.open(str(folder / "audio.wav"), "w") as c:
        s = c.add_stream("pcm_s16le", rate=16000, layout="mono")
        fr = av.AudioFrame.from_ndarray(np.full((1, 1600), 8192, np.int16), format="s16", layout="mono")
        fr.sample_rate = 16000
        for p in s.encode(fr):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    audio = media.read_audio(folder)
    assert len(audio) == 1600 and np.allclose(audio, 0.25)


def test_frame_folder_modes_and_bad_frames(tmp_path):
    from PIL import Image

    folder = tmp_path / "clip"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 100, np.uint8), "L").save(folder / "000001.png")
    Image.fromarray(np.full((8, 8, 4), 200, np.uint8), "RGBA").save(folder / "000002.png")
    frames = media.read_frames(folder)
    assert frames.shape == (2, 8, 8, 3)
    assert (frames[0] == 100).all() and (frames[1] == 200).all()
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(folder / "000003.png")
    with pytest.raises(MediaError, match="000003.png: frame size 8x9 differs"):
        media.read_frames(folder)


# ---------------------------------------------------------------- broken files

@pytest.mark.parametrize("content,problem", [
    (b"", "empty file"),
    (b"this is not a video\n" * 20, "not a readable video"),
])
def test_unreadable_files_name_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError, match=problem) as info:
        media.read_frames(path)
    assert str(path) in str(info.value)


def test_truncated_mp4_is_a_clear_error(tmp_path):
    src = data_file("retalking/face_3.mp4")
    path = tmp_path / "truncated.mp4"
    path.write_bytes(src.read_bytes()[: src.stat().st_size // 3])  # moov atom at the end is lost
    with pytest.raises(MediaError) as info:
        media.read_frames(path)
    assert str(path) in str(info.value)


def test_audio_only_file_has_no_video_stream(tmp_path):
    with pytest.raises(MediaError, match="no video stream"):
        media.read_frames(data_file("retalking/audio_1.wav"))


# ---------------------------------------------------------------- pairing

def test_pairing_by_relative_stem(tmp_path):
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    gen, gt = tmp_path / "gen", tmp_path / "gt"
    for root, names in [(gen, ["a", "sub/b", "only_gen", "dup"]), (gt, ["a", "sub/b", "only_gt", "dup"])]:
        for n in names:
            write_lossless(root / n, frames)
    write_lossless(gen / "dup2", frames).rename(gen / "dup.mkv")  # same stem, second extension
    write_frame_folder(gen / "frames_clip", frames)
    write_lossless(gt / "frames_clip", frames)
    p = media.pair_inputs(gen, gt)
    assert [x.key for x in p.pairs] == ["a", "frames_clip", "sub/b"]
    assert p.pairs[1].gen.is_dir()
    assert p.unpaired_gen == ["only_gen"] and p.unpaired_gt == ["only_gt"]
    assert "dup" in p.problems and "dup.avi, dup.mkv" in p.problems["dup"]


def test_other_files_are_listed_as_ignored_and_common_video_extensions_read(tmp_path):
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    gen = tmp_path / "gen"
    write_lossless(gen / "a", frames).rename(gen / "a.m4v")  # an MP4 by another name
    (gen / "notes.txt").write_text("x")
    (gen / "sub").mkdir()
    (gen / "sub" / "meta.json").write_text("{}")
    inputs, problems, skipped = media.find_inputs(gen)
    assert list(inputs) == ["a"] and not problems
    assert skipped == [f"ignored in {gen}: 2 files, neither a video ({' '.join(media.VIDEO_EXTENSIONS)}) nor in a "
                       "frame folder: notes.txt, sub/meta.json"]


def test_two_files_are_one_pair_and_a_file_beside_a_folder_is_refused(tmp_path):
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    gen, gt = write_lossless(tmp_path / "mine", frames), write_lossless(tmp_path / "theirs", frames)
    p = media.pair_inputs(gen, gt)
    assert [(x.key, x.gen, x.gt) for x in p.pairs] == [("mine", gen, gt)]
    assert [(x.key, x.gen, x.gt) for x in media.pair_inputs(gen, None).pairs] == [("mine", gen, gen)]
    with pytest.raises(media.MediaError, match="a folder, while the other input is a file"):
        media.pair_inputs(gen, tmp_path)


def test_symlink_loop_is_not_followed_forever(tmp_path):
    root = tmp_path / "gen"
    (root / "x").mkdir(parents=True)
    write_lossless(root / "x" / "v", np.zeros((2, 16, 16, 3), np.uint8))
    (root / "x" / "loop").symlink_to(root, target_is_directory=True)
    inputs, problems, skipped = media.find_inputs(root)
    assert list(inputs) == ["x/v"] and not problems
    assert len(skipped) == 1 and "loop" in skipped[0] and "a loop" in skipped[0]


@pytest.mark.parametrize("name", ["retalking/face_1.mp4", "retalking/face_3.mp4", "grid/bbaf2n.mpg",
                                  "retalking/audio_2.wav"])
def test_audio_equals_the_ffmpeg_cli_sample_for_sample(tmp_path, name):
    """syncnet_python's audio step, `ffmpeg -i F -ac 1 -vn -acodec pcm_s16le -ar 16000 audio.wav`: same
    length (MP4 audio ends at its declared duration, without the AAC padding) and same samples."""
    from scipy.io import wavfile

    out = tmp_path / "audio.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(data_file(name)), "-ac", "1", "-vn",
                    "-acodec", "pcm_s16le", "-ar", "16000", str(out)], check=True)
    _, ref = wavfile.read(out)
    ours = np.round(media.read_audio(data_file(name)) * 32768).astype(np.int32)
    assert len(ours) == len(ref)
    assert np.array_equal(ours, ref.astype(np.int32))
