"""Tables, statistics, the paired test and the command line around them."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from lipsync_bench.cli import main
from lipsync_bench.report import method_rows, render_table
from lipsync_bench.stats import bootstrap_ci, paired_test, summarize
from lipsync_bench.store import ResultRow, ResultStore


def _store_with(tmp_path, methods: dict[str, dict[str, list[float]]], dataset="hdtf") -> ResultStore:
    store = ResultStore(tmp_path)
    for method, per_metric in methods.items():
        run = store.open_run(method, dataset, {"fps": 25.0}, {m: {} for m in per_metric})
        session = store.start_session(run, {"test": True})
        for metric, values in per_metric.items():
            store.write(run, session, [ResultRow(f"v{i}", metric, v, 10) if v is not None else
                                       ResultRow(f"v{i}", metric, None, error="broken") for i, v in enumerate(values)])
    return store


# ---------------------------------------------------------------- statistics

def test_bootstrap_is_seeded_and_brackets_the_mean():
    v = np.random.default_rng(3).normal(0.8, 0.05, 40)
    lo, hi = bootstrap_ci(v)
    assert (lo, hi) == bootstrap_ci(v)
    assert lo < v.mean() < hi
    # the percentile interval of the mean is close to the normal approximation for n = 40
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v))
    assert abs((hi - lo) / 2 - half) / half < 0.15


def test_summarize_edge_cases():
    assert summarize([]) == {"mean": None, "std": None, "ci95": [None, None], "n": 0, "failed": 0}
    one = summarize([0.5], failed=2)
    assert one["mean"] == 0.5 and one["std"] is None and one["ci95"] == [0.5, 0.5] and one["failed"] == 2
    s = summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
    assert summarize([30.0, float("inf")])["mean"] == float("inf")


def test_paired_test_equals_scipy_wilcoxon():
    rng = np.random.default_rng(0)
    a = rng.normal(0.85, 0.02, 30)
    b = a - rng.normal(0.01, 0.01, 30)
    ours = paired_test(a, b)
    ref = sps.wilcoxon(a, b)
    assert ours["p_value"] == ref.pvalue and ours["statistic"] == ref.statistic
    assert ours["n"] == 30 and ours["mean_diff"] == pytest.approx((a - b).mean())
    same = paired_test(a, a)
    assert same["p_value"] == 1.0 and "no test" in same["note"]


# ---------------------------------------------------------------- the method table

def test_table_rows_columns_bold_and_missing(tmp_path):
    store = _store_with(tmp_path, {
        "ours": {"ssim": [0.9, 0.8], "psnr": [30.0, 28.0], "ifc": [0.02, 0.03]},
        "wav2lip": {"ssim": [0.85, 0.75], "ifc": [0.01, None]},
    })
    columns, rows = method_rows(store, "hdtf")
    assert [c.name for c in columns] == ["ssim", "psnr", "ifc"]
    md = render_table(columns, rows, "markdown")
    lines = md.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == ["Method", "SSIM↑", "PSNR↑", "IFC↓", "Videos"]
    ours = next(line for line in lines if line.startswith("| ours"))
    w2l = next(line for line in lines if line.startswith("| wav2lip"))
    assert "**0.850**" in ours and "**29.000**" in ours and "0.0250" in ours
    assert "0.800" in w2l and "–" in w2l and "**0.0100**" in w2l  # missing PSNR is a dash, never 0
    assert "wav2lip: failed videos excluded from the means (IFC 1)" in md


def test_table_with_the_papers_rows(tmp_path):
    store = _store_with(tmp_path, {"ours": {"ssim": [0.9, 0.8], "ifc": [0.2, 0.3]}})
    columns, rows = method_rows(store, "hdtf", paper=True)
    assert [c.header for c in columns] == ["SSIM↑", "PSNR↑", "FID↓", "IFC↓", "LMD↓", "LSE-C↑", "LSE-D↓"]
    md = render_table(columns, rows, "markdown")
    # measured under lipsync-bench, reported under the paper's own protocol: beside them, but marked
    assert "| Wav2Lip (reported, yaman2024)‡" in md and "35.41" in md and "9.054" in md
    assert "‡ reported under protocol yaman2024, beside numbers measured under lipsync-bench: another procedure" in md
    ours = next(line for line in md.splitlines() if line.startswith("| ours"))
    assert ours.count("–") == 5  # PSNR, FID, LMD, LSE-C, LSE-D not measured
    assert "**0.850**" in ours  # bold goes to measured rows only: the reported 0.893 is not compared
    assert "reported: Yaman et al. ECCV 2024 supplementary Tab. B" in md
    latex = render_table(columns, rows, "latex")
    assert "\\textbf{0.850}" in latex and "SSIM$\\uparrow$" in latex
    assert "Ours w/o FR (reported, yaman2024)‡" in latex
    csv = pd.read_csv(io.StringIO(render_table(columns, rows, "csv")))
    assert list(csv.columns) == ["method", "kind", "videos", "ssim", "psnr", "fid", "ifc", "lmd", "lse_c", "lse_d",
                                 "source"]
    assert csv.loc[csv.method == "ours", "ssim"].item() == pytest.approx(0.85)
    assert np.isnan(csv.loc[csv.method == "ours", "psnr"].item())
    assert csv.loc[csv.method == "IPLAP", "fid"].item() == 22.09


def test_table_cli(tmp_path):
    _store_with(tmp_path, {"ours": {"ssim": [0.9, 0.8]}, "other": {"ssim": [0.7, 0.6]}}).close()
    runner = CliRunner()
    result = runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [r["method"] for r in doc["rows"]] == ["ours", "other"]
    assert doc["rows"][0]["values"]["ssim"] == pytest.approx(0.85)
    missing = runner.invoke(main, ["table", "--dataset", "lrs3", "--results", str(tmp_path)])
    assert missing.exit_code == 1 and "no results for dataset 'lrs3'" in missing.output
    assert "datasets there: hdtf" in missing.output
    nowhere = runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path / "none")])
    assert nowhere.exit_code == 1 and "no results store" in nowhere.output
    paper_only = runner.invoke(main, ["table", "--dataset", "lrs2", "--results", str(tmp_path / "none"), "--paper"])
    assert paper_only.exit_code == 0 and "Ours w/o FR (reported, yaman2024)" in paper_only.output
    assert "‡" not in paper_only.output  # nothing measured beside them


def test_compare_cli(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.uniform(0.7, 0.9, 25)
    _store_with(tmp_path, {"ours": {"ssim": list(base + 0.02), "ifc": list(base)},
                           "wav2lip": {"ssim": list(base), "ifc": list(base)}}).close()
    result = CliRunner().invoke(main, ["compare", "ours", "wav2lip", "--dataset", "hdtf", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    ssim_line = next(line for line in result.output.splitlines() if line.startswith("SSIM"))
    assert "ours (p < 0.05)" in ssim_line
    ifc_line = next(line for line in result.output.splitlines() if line.startswith("IFC"))
    assert ifc_line.rstrip().endswith("–")
    doc = json.loads(CliRunner().invoke(main, ["compare", "ours", "wav2lip", "--dataset", "hdtf", "--results",
                                               str(tmp_path), "--json"]).output)
    ssim = next(m for m in doc["metrics"] if m["metric"] == "ssim")
    assert ssim["p_value"] == pytest.approx(sps.wilcoxon(base + 0.02, base).pvalue)


# ---------------------------------------------------------------- infinite values (PSNR of identical frames)

INF = float("inf")


def test_an_infinite_psnr_is_the_best_psnr_in_bold(tmp_path):
    store = _store_with(tmp_path, {"copy": {"psnr": [INF, INF], "ssim": [1.0, 1.0]},
                                   "fps": {"psnr": [39.8, 39.8], "ssim": [0.99, 0.98]}})
    columns, rows = method_rows(store, "hdtf")
    md = render_table(columns, rows, "markdown")
    copy = next(line for line in md.splitlines() if line.startswith("| copy"))
    fps = next(line for line in md.splitlines() if line.startswith("| fps"))
    assert "**inf**" in copy and "**1.000**" in copy
    assert "**" not in fps  # 39.8 is not the best PSNR when a copy is identical


def test_compare_ranks_an_infinite_psnr_as_the_largest_difference(tmp_path):
    blur = [31.0, 29.5, 30.2, 28.7, 32.1, 30.0]
    _store_with(tmp_path, {"copy": {"psnr": [INF] * 6, "ssim": [1.0] * 6},
                           "blur": {"psnr": blur, "ssim": [0.9, 0.91, 0.88, 0.9, 0.93, 0.89]}}).close()
    runner = CliRunner()
    result = runner.invoke(main, ["compare", "copy", "blur", "--dataset", "hdtf", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    psnr = next(line for line in result.output.splitlines() if line.startswith("PSNR"))
    # six videos, every difference the largest there is: the exact two-sided p of 6 positive ranks
    assert psnr.split()[1] == "6" and "inf" in psnr and "copy (p < 0.05)" in psnr
    assert sps.wilcoxon([100.0] * 6, blur).pvalue == pytest.approx(0.03125)
    assert "0.0312" in psnr
    assert "PSNR↑: 6 of 6 pairs hold an infinite value (identical frames)" in result.output
    doc = json.loads(runner.invoke(main, ["compare", "copy", "blur", "--dataset", "hdtf", "--results",
                                          str(tmp_path), "--json"]).output)
    psnr = next(m for m in doc["metrics"] if m["metric"] == "psnr")
    assert psnr["mean_a"] == "inf" and psnr["mean_diff"] == "inf"  # JSON's convention for inf (jsontext)


def test_compare_says_which_metrics_it_could_not_test(tmp_path):
    _store_with(tmp_path, {"a": {"ssim": [0.9, 0.8, 0.7], "ifc": [0.1, 0.2, 0.3]},
                           "b": {"ssim": [0.8, 0.7, 0.6]}}).close()
    result = CliRunner().invoke(main, ["compare", "a", "b", "--dataset", "hdtf", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "IFC↓ not tested: only a has values: nothing to pair" in result.output


def test_table_json_and_paired_test_keep_infinite_values_apart_from_missing_ones(tmp_path):
    store = _store_with(tmp_path, {"copy": {"psnr": [INF, INF]}, "broken": {"psnr": [None, None]}})
    store.close()
    doc = json.loads(CliRunner().invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path),
                                               "--json"]).output)
    values = {r["method"]: r["values"] for r in doc["rows"]}
    assert values["copy"]["psnr"] == "inf" and values["broken"]["psnr"] is None
    both = paired_test([INF, INF, 30.0], [INF, 29.0, 30.0])
    assert both["n"] == 3 and both["median_diff"] == 0.0 and both["p_value"] == 1.0  # inf - inf is no difference
    assert paired_test([float("nan"), 1.0], [1.0, 1.0])["n"] == 1


def test_the_footer_names_the_rows_measured_under_a_modified_protocol(tmp_path):
    store = ResultStore(tmp_path)
    for method, params, protocol in (
            ("plain", {}, {"protocol": "lipsync-bench"}),
            ("l2", {"norm": "l2", "protocol_values": {"norm": "rms"}}, {"protocol": "lipsync-bench (modified)"})):
        run = store.open_run(method, "hdtf", protocol, {"ifc": params, "ssim": {}})
        session = store.start_session(run, {"test": True})
        store.write(run, session, [ResultRow("v0", "ifc", 0.2, 10), ResultRow("v0", "ssim", 0.9, 10)])
    md = render_table(*method_rows(store, "hdtf"), "markdown")
    assert "measured under protocol lipsync-bench ('lipsync-bench protocols show NAME'); modified in these rows:" in md
    assert "  l2: ifc.norm = l2" in md and "  plain:" not in md


def test_table_paper_says_when_the_paper_reports_no_rows_for_the_dataset(tmp_path):
    _store_with(tmp_path, {"ours": {"ssim": [0.9, 0.8]}}, dataset="vox").close()
    result = CliRunner().invoke(main, ["table", "--dataset", "vox", "--results", str(tmp_path), "--paper"])
    assert result.exit_code == 0, result.output
    assert "note: the paper reports no rows for 'vox' (it reports hdtf, lrs2)" in result.output
    assert "| ours" in result.output
