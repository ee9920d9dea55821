"""`lipsync-bench report`: one self-contained HTML page, rendered by headless Chromium (Debian
`chromium`; skipped where it is not installed): its clips play, its markers follow them, and nothing
but its own script runs."""
from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lipsync_bench import media, weights
from lipsync_bench.cli import main
from lipsync_bench.report_html import SCRIPT, SCRIPT_HASH
from lipsync_bench.syncnets.syncnet import SyncNet
from tests.helpers import GRID, blur

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    clips = sorted((GRID).glob("*.mpg"))[:2]
    if len(clips) < 2:
        pytest.skip(f"GRID clips not found under {GRID}")
    root = tmp_path_factory.mktemp("report")
    for side in ("gt", "sharp", "blurred"):
        (root / side).mkdir()
    for clip in clips:
        shutil.copy(clip, root / "gt" / clip.name)
        shutil.copy(clip, root / "sharp" / clip.name)
        media.write_video(root / "blurred" / f"{clip.stem}.avi", blur(media.read_frames(clip), 1.5), 25,
                          media.read_audio(clip), codec="ffv1")
    (root / "w").mkdir()
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), root / "w" / "syncnet_v2.model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.ENV_VAR, str(root / "w"))
        for method in ("sharp", "blurred"):
            r = CliRunner().invoke(main, ["eval", "--gen", str(root / method), "--gt", str(root / "gt"), "--out",
                                          str(root / "res"), "--dataset", "grid", "--metrics",
                                          "ssim,psnr,lse_c,lse_d", "--quiet"])
            assert r.exit_code == 0, r.output
    out = root / "report.html"
    r = CliRunner().invoke(main, ["report", str(root / "res"), "--out", str(out), "--media"])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.slow
def test_report_is_one_self_contained_page(results):
    page = results.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)  # nothing fetched
    # one script, its own, allowed by its hash; media only as data URIs
    assert page.count("<script") == 1 and f"script-src 'sha256-{SCRIPT_HASH}'" in page and "media-src data:" in page
    assert SCRIPT_HASH == base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert "Ground truth" in page and "<b>" in page
    assert "Distributions over videos" in page and "sync-expert distance against offset" in page
    assert page.count("<td>median</td>") == 0 and page.count("<th>median</th>") >= 3  # a medians table a metric
    # blurred differs between videos: its worst video is shown, with a clip of both sides and its curves
    assert "blurred / " in page and page.count("data:video/webm;base64,") >= 1
    assert "SSIM per frame:" in page and "LSE-C per frame:" in page  # the sync expert's framewise confidence
    sharp = re.findall(r"<h4>sharp / [^<]*</h4>", page)  # a copy: SSIM 1 on every video, never its worst
    assert all("SSIM" not in title for title in sharp)
    assert "<th>choice</th><th>value</th><th>modified</th><th>source</th>" in page  # the protocol as a table
    assert "<td>decode.fps</td><td class='text'>25.0</td>" in page


def test_videos_without_spread_are_not_shown_as_worst():
    from lipsync_bench.report_html import _worst_videos

    class Run:
        method = "m"

    df = pd.DataFrame({"method": ["m"] * 4, "video": ["a", "b", "a", "b"], "metric": ["ssim", "ssim", "psnr", "psnr"],
                       "value": [1.0, 1.0, 30.0, 28.0]})
    # SSIM is 1 on both videos: no worst; PSNR differs: b
    assert [(video, why) for _, video, why in _worst_videos(df, [Run()], 3)] == [("b", [("psnr", 28.0)])]


@pytest.mark.slow
def test_report_renders_and_plays_in_headless_chromium(results, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium)")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--autoplay-policy=no-user-gesture-required", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*flags, "--virtual-time-budget=8000", "--dump-dom", results.as_uri()], capture_output=True,
                         text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>lipsync-bench report</h1>" in dom.stdout and dom.stdout.count("<img") >= 4
    clips = re.findall(r'<div class="clip"[^>]*>', dom.stdout)
    assert clips and all('data-played="1"' in c for c in clips), clips  # every clip played
    moved = re.findall(r'class="marker" data-frames="\d+" x1="([\d.]+)"', dom.stdout)
    assert moved and any(float(x) > 0 for x in moved)  # the markers followed playback
    assert not re.search(r"Uncaught|Failed to load resource|Refused to", dom.stderr), dom.stderr[-2000:]
    shot = tmp_path / "report.png"
    run = subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}", results.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape == (2400, 1280) and image.std() > 10  # text, tables and plots, not a blank page
    assert not re.search(r"Uncaught|Failed to load resource|Refused to", run.stderr)
