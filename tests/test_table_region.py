"""The region of the frame a table column's numbers were computed on: named in its header in every format
and in ``table --json``, and the paper's whole-frame rows kept out of region columns."""
from __future__ import annotations

import html
import io
import json
import re

import pandas as pd
import pytest
from click.testing import CliRunner

from lipsync_bench import media
from lipsync_bench.baselines import reported
from lipsync_bench.cli import main
from lipsync_bench.metrics.registry import get_metric
from lipsync_bench.protocol import load_protocol
from lipsync_bench.report import method_rows, render_table
from lipsync_bench.store import ResultRow, ResultStore
from tests.helpers import GRID, noise, write_lossless

METRICS = ("ssim", "psnr")
#: How the face stage that placed a crop resolved, as a run records it (any record: only its equality counts).
FACE_PIPELINE = {"backend": "dlib", "model": "shape_predictor_68_face_landmarks.dat"}


def _headers(md: str) -> list[str]:
    return [c.strip() for c in md.splitlines()[0].split("|")[1:-1]]


def _line(md: str, method: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {method} "))
    return [c.strip() for c in line.split("|")[1:-1]]


def _cells(page: str, header: str) -> list[str]:
    """The HTML header cells that hold ``header`` (padded or not)."""
    return re.findall(rf">\s*{re.escape(html.escape(header))}\s*</th>", page)


def _table(results, *options) -> str:
    result = CliRunner().invoke(main, ["table", "--dataset", "hdtf", "--results", str(results), *options])
    assert result.exit_code == 0, result.output
    return result.output


# ---------------------------------------------------------------- runs of the real clips (eval --region mouth)


@pytest.fixture(scope="module")
def region_stores(tmp_path_factory):
    """Results folders of real ``eval`` runs on a GRID clip (15 frames, the generated one with noise):
    ``both`` holds a whole-frame run ("whole") and a mouth-region run ("mouth"); ``mouth`` the mouth run
    alone."""
    pytest.importorskip("dlib")
    root = tmp_path_factory.mktemp("table_region")
    frames = media.read_frames(GRID / "id2_vcd_swwp2s.mpg")[:15]
    write_lossless(root / "gt" / "a", frames)
    write_lossless(root / "gen" / "a", noise(frames, 8))
    runner = CliRunner()

    def run(out: str, name: str, *options: str) -> None:
        r = runner.invoke(main, ["eval", "--gen", str(root / "gen"), "--gt", str(root / "gt"), "--out", str(root / out),
                                 "--name", name, "--dataset", "hdtf", "--metrics", ",".join(METRICS), "--quiet",
                                 *options])
        assert r.exit_code == 0, r.output

    with pytest.MonkeyPatch.context() as mp:  # as conftest's no_user_weights: the crops placed by dlib here too
        mp.setenv("TORCH_HOME", str(root / "empty_torch_home"))
        mp.setenv("LIPSYNC_BENCH_CACHE", str(root / "user_cache"))
        mp.delenv("LIPSYNC_BENCH_WEIGHTS", raising=False)
        run("both", "whole")
        run("both", "mouth", "--region", "mouth")
        run("mouth", "mouth", "--region", "mouth")
    return {"both": root / "both", "mouth": root / "mouth"}


def test_a_mouth_region_column_says_so_in_every_format(region_stores):
    md = _table(region_stores["mouth"])
    assert _headers(md) == ["Method", "SSIM [mouth]↑", "PSNR [mouth]↑", "Videos"]
    latex = _table(region_stores["mouth"], "--format", "latex")
    assert "SSIM [mouth]$\\uparrow$" in latex and "PSNR [mouth]$\\uparrow$" in latex
    csv = pd.read_csv(io.StringIO(_table(region_stores["mouth"], "--format", "csv")))
    assert list(csv.columns) == ["method", "kind", "videos", "ssim[mouth]", "psnr[mouth]", "source"]
    assert len(_cells(_table(region_stores["mouth"], "--format", "html"), "SSIM [mouth]↑")) == 1
    doc = json.loads(_table(region_stores["mouth"], "--json"))
    assert [(c["column"], c["label"], c["region"]) for c in doc["columns"]] == [
        ("ssim[mouth]", "SSIM [mouth]", "mouth"), ("psnr[mouth]", "PSNR [mouth]", "mouth")]
    assert doc["columns"][0]["definition"]["region.kind"] == "mouth"  # the field says what the definition holds


def test_whole_frame_and_mouth_columns_are_both_marked_and_bolded_apart(region_stores):
    md = _table(region_stores["both"])
    assert _headers(md) == ["Method", "SSIM [full]↑", "SSIM [mouth]↑", "PSNR [full]↑", "PSNR [mouth]↑", "Videos"]
    whole, mouth = _line(md, "whole"), _line(md, "mouth")
    assert whole[1].startswith("**") and whole[2] == "–" and mouth[1] == "–" and mouth[2].startswith("**")
    assert "kind=mouth" not in md  # the header names the region; the footer names the changed choice
    assert "  mouth: region.kind = mouth" in md
    doc = json.loads(_table(region_stores["both"], "--json"))
    assert {c["column"]: c["region"] for c in doc["columns"]} == {
        "ssim[full]": "full", "ssim[mouth]": "mouth", "psnr[full]": "full", "psnr[mouth]": "mouth"}
    values = {r["method"]: r["values"] for r in doc["rows"]}
    assert set(values["whole"]) == {"ssim[full]", "psnr[full]"} and set(values["mouth"]) == {"ssim[mouth]",
                                                                                            "psnr[mouth]"}


def test_the_papers_whole_frame_rows_never_sit_under_a_mouth_column(region_stores):
    paper = reported("hdtf")
    md = _table(region_stores["mouth"], "--paper")
    assert _headers(md)[:5] == ["Method", "SSIM [full]↑", "SSIM [mouth]↑", "PSNR [full]↑", "PSNR [mouth]↑"]
    assert "FID↓" in _headers(md) and "LSE-C↑" in _headers(md)  # no column of another region: unmarked
    wav2lip = _line(md, "Wav2Lip (reported, yaman2024)")
    assert wav2lip[1] == f"{paper.ssim[0]:.3f}" and wav2lip[2] == "–" and wav2lip[4] == "–"
    assert _line(md, "mouth")[2].startswith("**")
    doc = json.loads(_table(region_stores["mouth"], "--paper", "--json"))
    for row in doc["rows"]:
        assert ("ssim[mouth]" in row["values"]) == (row["kind"] == "measured")
    assert next(c for c in doc["columns"] if c["column"] == "ssim[full]")["region"] == "full"


def test_the_papers_rows_go_to_the_whole_frame_column_beside_a_mouth_one(region_stores):
    md = _table(region_stores["both"], "--paper")
    assert _headers(md)[:5] == ["Method", "SSIM [full]↑", "SSIM [mouth]↑", "PSNR [full]↑", "PSNR [mouth]↑"]
    wav2lip = _line(md, "Wav2Lip (reported, yaman2024)‡")  # beside numbers of another protocol: marked
    assert wav2lip[1] == "0.841" and wav2lip[2] == "–"
    assert _line(md, "whole")[1].startswith("**")  # bold goes to measured rows only, per column


def test_the_html_report_names_the_region(region_stores, tmp_path):
    out = tmp_path / "report.html"
    r = CliRunner().invoke(main, ["report", str(region_stores["both"]), "--out", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    for header in ("SSIM [full]↑", "SSIM [mouth]↑", "PSNR [mouth]↑"):  # the method table and the plots' tables
        assert len(_cells(page, header)) == 2


# ---------------------------------------------------------------- stores written row by row


def _record(**options) -> dict:
    """A run's protocol record, as ``pipeline.protocol_record`` writes it."""
    protocol = load_protocol().with_options(**options)
    return {**protocol.as_dict(), **({"face_pipeline": FACE_PIPELINE} if protocol.region != "full" else {})}


def _store(runs: dict[str, tuple[dict, float]]) -> ResultStore:
    """A store of ``method -> (protocol record, SSIM and PSNR/100 of its two videos)``."""
    store = ResultStore(None)
    for method, (record, value) in runs.items():
        run = store.open_run(method, "hdtf", record, {m: {**get_metric(m).defaults, "pool": "videos"} for m in METRICS})
        session = store.start_session(run, {})
        store.write(run, session, [ResultRow(v, m, value * (100 if m == "psnr" else 1), 10) for v in ("v1", "v2")
                                   for m in METRICS])
    return store


def test_a_full_frame_table_stays_unmarked():
    columns, rows = method_rows(_store({"a": (_record(), 0.6), "b": (_record(), 0.7)}), "hdtf")
    assert [c.header for c in columns] == ["SSIM↑", "PSNR↑"] and [c.region for c in columns] == ["full", "full"]
    assert [c.name for c in columns] == ["ssim", "psnr"]


def test_the_best_value_is_bolded_within_each_region():
    store = _store({"a": (_record(), 0.60), "b": (_record(), 0.65), "c": (_record(region="mouth"), 0.80),
                    "d": (_record(region="mouth"), 0.85)})
    md = render_table(*method_rows(store, "hdtf"), "markdown")
    assert _headers(md) == ["Method", "SSIM [full]↑", "SSIM [mouth]↑", "PSNR [full]↑", "PSNR [mouth]↑", "Videos"]
    assert _line(md, "b")[1] == "**0.650**" and _line(md, "a")[1] == "0.600"
    assert _line(md, "d")[2] == "**0.850**" and _line(md, "c")[2] == "0.800"


def test_other_choices_are_still_named_and_a_crops_own_choices_within_its_region():
    """The label names the region; what else sets a column apart is named as before: the frame rate
    against the most used definition, the crop size against the other crops of its region."""
    store = _store({"a": (_record(), 0.6), "b": (_record(region="mouth", fps=30), 0.8),
                    "c": (_record(region="mouth", choices={"region.size": 96}), 0.7)})
    columns, _ = method_rows(store, "hdtf")
    assert [c.label for c in columns if c.metric == "ssim"] == [
        "SSIM [full] (lipsync-bench)", "SSIM [mouth] (lipsync-bench modified: fps=30)",
        "SSIM [mouth] (lipsync-bench modified: size=96)"]
    assert len({c.name for c in columns}) == len(columns)
    assert not any("kind=" in c.label or "face_pipeline" in c.label for c in columns)


def test_a_reported_row_sits_in_the_column_of_its_protocols_region(monkeypatch):
    """A reported row under a protocol whose frame metrics see a crop (talklip: each frame's face box)
    gets a column of that region, never the measured whole-frame one."""
    import lipsync_bench.report as report

    rows = pd.DataFrame([{"method": "Theirs", "ssim": 0.9, "source": "a paper", "protocol": "talklip",
                          "protocol_note": None}])
    monkeypatch.setattr(report, "reported", lambda dataset: rows)
    columns, table = method_rows(_store({"ours": (_record(), 0.6)}), "hdtf", paper=True)
    assert [(c.header, c.region) for c in columns] == [
        ("SSIM [full]↑", "full"), ("SSIM [face-box]↑", "face-box"), ("PSNR↑", "full")]
    theirs = next(r for r in table if r["kind"] == "reported")
    assert theirs["values"] == {"ssim[face-box]": 0.9} and not theirs["protocol_differs"]
