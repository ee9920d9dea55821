"""`lipsync-bench calibrate`: checks not run without their inputs (saying how to get them), and the check
logic on a stand-in for syncnet_python's example, with expected values from the reference itself."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import types

import pytest
import torch
from click.testing import CliRunner

from lipsync_bench import media
from lipsync_bench.calibration import CHECKS, run_checks
from lipsync_bench.cli import main
from tests.helpers import GRID, ffmpeg_exe

pytest.importorskip("python_speech_features")


def test_the_syncnet_python_example_is_listed_as_not_run_with_how_to_get_it():
    result = CliRunner().invoke(main, ["calibrate"])
    assert result.exit_code == 3, result.output  # not run is not passed: a CI step must not read it as a pass
    assert result.output.startswith("syncnet_python example: NOT RUN")
    assert "0 passed, 0 failed, 0 erred, 1 not run (exit status 3: a check not run is not a pass)" in result.output
    assert "AV offset 3, Min dist 5.353, Confidence 10.021" in result.output
    assert "not run: needs syncnet_v2.model" in result.output
    assert "'lipsync-bench weights fetch syncnet'" in result.output
    assert "not run: needs example.avi" in result.output
    assert "'lipsync-bench weights fetch syncnet-example' (downloads https://www.robots.ox.ac.uk/~vgg/software/" \
           "lipsync/data/example.avi" in result.output
    doc = json.loads(CliRunner().invoke(main, ["calibrate", "--json"]).output)
    assert doc[0]["status"] == "not run" and doc[0]["expected"] == {"offset": 3, "lse_d": 5.353, "lse_c": 10.021}


@pytest.mark.slow
def test_a_stand_in_example_passes_against_the_reference_and_fails_when_off(tmp_path):
    """A 224x224 talking-face clip in place of example.avi, seeded random weights in place of
    syncnet_v2.model, and as expected values what syncnet_python's demo_syncnet.py prints for them (its
    evaluate() after its two ffmpeg commands)."""
    from tests.test_syncnet import reference_modules

    exe = ffmpeg_exe()
    ref_model, ref_instance = reference_modules()
    torch.manual_seed(3)
    net = ref_model.S(num_layers_in_fc_layers=1024).eval()
    model = tmp_path / "syncnet_v2.model"
    torch.save(net.state_dict(), model)
    clip = GRID / "lbax4n.mpg"
    frames = media.read_frames(clip)[:, 20:244, 68:292]  # the face, 224x224, as example.avi is
    video = media.write_video(tmp_path / "example.mp4", frames, 25, media.read_audio(clip))
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run([exe, "-v", "error", "-y", "-i", str(video), "-threads", "1", "-f", "image2",
                    str(work / "%06d.jpg")], check=True)
    subprocess.run([exe, "-v", "error", "-y", "-i", str(video), "-async", "1", "-ac", "1", "-vn", "-acodec",
                    "pcm_s16le", "-ar", "16000", str(work / "audio.wav")], check=True)
    offset, conf, minval = ref_instance.SyncNetInstance(net, device="cpu").evaluate(
        types.SimpleNamespace(tmp_dir=str(work), batch_size=20, vshift=15))
    stand_in = dataclasses.replace(CHECKS[0], expected={"offset": int(offset), "lse_d": float(minval),
                                                        "lse_c": float(conf)},
                                   paths={"syncnet": model, "syncnet-example": video})
    row = run_checks([stand_in])[0]
    assert row["status"] == "pass", row
    # the same procedure (test_lse checks it to 1e-3: the order of float sums differs)
    assert all(abs(n["measured"] - n["expected"]) < 1e-3 for n in row["numbers"].values())
    assert row["inputs"]["syncnet"]["official"] is False
    off = dataclasses.replace(stand_in, expected={**stand_in.expected, "lse_d": float(minval) + 0.05})
    row = run_checks([off])[0]
    assert row["status"] == "fail" and not row["numbers"]["lse_d"]["ok"] and row["numbers"]["lse_c"]["ok"]
