"""`lipsync-bench report`: one self-contained HTML page, rendered by headless Chromium (Debian
`chromium`; skipped where it is not installed)."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lipsync_bench import media, weights
from lipsync_bench.cli import main
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
    r = CliRunner().invoke(main, ["report", str(root / "res"), "--out", str(out), "--thumbnails"])
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.slow
def test_report_is_one_self_contained_page(results):
    page = results.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)  # nothing fetched
    assert page.count("<table>") == 1 and "Ground truth" in page and "<b>" in page
    assert "Distributions over videos" in page and "sync-expert distance against offset" in page
    assert page.count("data:image/jpeg;base64,") >= 4  # worst-video thumbnails, generated and GT
    assert "worst SSIM" in page and "&quot;decode.fps&quot;: 25.0" in page  # the protocol


@pytest.mark.slow
def test_report_renders_in_headless_chromium(results, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium)")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--dump-dom", results.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>lipsync-bench report</h1>" in dom.stdout and dom.stdout.count("<img") >= 6
    shot = tmp_path / "report.png"
    run = subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={shot}", results.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape == (2400, 1200) and image.std() > 10  # text, tables and plots, not a blank page
    assert not re.search(r"Uncaught|Failed to load resource", run.stderr)
