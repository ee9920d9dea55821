"""Scorings over the method table (``table --score``): THEval's final score and the ViCo rank-sum."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from lipsync_bench.cli import main
from lipsync_bench.errors import LipsyncBenchError
from lipsync_bench.leaderboard import THEVAL_METRICS, theval_final_scores, vico_rank_sum
from lipsync_bench.store import GROUND_TRUTH, ResultRow, ResultStore

METRICS = list(THEVAL_METRICS)


def _row(values) -> dict:
    return dict(zip(METRICS, map(float, values), strict=True))


def test_theval_scores_as_thevals_own_tests_expect():
    # Newbyl/THEval tests/test_scoring.py: the same tables, the same expected scores and ranks
    gt = _row([10] * 8)
    out = theval_final_scores({"GT": gt, "Method": _row([12, 5, 10, 15, 10, 5, 10, 0])}, "GT")
    assert out["rows"]["GT"]["final"] == pytest.approx(1.0) and out["rows"]["GT"]["rank"] == 1
    assert out["rows"]["Method"]["final"] == pytest.approx(0.6625) and out["rows"]["Method"]["rank"] == 2
    assert out["rows"]["Method"]["groups"] == pytest.approx(
        {"Video quality": (0.8 + 0.5 + 1.0) / 3, "Naturalness": (0.5 + 1.0 + 0.5) / 3, "Synchronization": 0.5})
    ones = _row([1] * 8)
    out = theval_final_scores({"GT": ones, "Method": {**ones, "Global aesthetic": 2.0}}, "GT")
    assert out["rows"]["Method"]["final"] == pytest.approx(0.875)
    # weights weigh the metric scores of the final score, not the groups
    w = theval_final_scores({"GT": ones, "Method": {**ones, "Global aesthetic": 2.0, "Mouth quality": 2.0}}, "GT",
                            {"Global aesthetic": 2.0})
    assert w["rows"]["Method"]["final"] == pytest.approx((2 * 0 + 0 + 6 * 1) / 9)


def test_theval_scores_equal_thevals_scoring_module_on_random_tables():
    """Against theval/scoring.py itself where a THEval checkout is given (THEVAL_DIR); its facts otherwise."""
    rng = np.random.default_rng(0)
    tables = []
    for trial in range(60):
        names = ["GT"] + [f"m{i}" for i in range(int(rng.integers(2, 7)))]
        values = rng.uniform(0.01, 30, (len(names), 8)) * rng.choice([1, -1], (len(names), 8), p=[0.9, 0.1])
        if trial % 5 == 0:
            values[2] = values[1]  # a tie shares the lowest rank
        weights = None if trial % 3 else {m: float(rng.uniform(0, 2)) for m in METRICS}
        tables.append(({n: _row(v) for n, v in zip(names, values, strict=True)}, weights))
    reference = os.environ.get("THEVAL_DIR")
    for raw, weights in tables:
        ours = theval_final_scores(raw, "GT", weights)
        w = weights or dict.fromkeys(METRICS, 1.0)
        gt = raw["GT"]
        for name, r in ours["rows"].items():
            scores = {m: 1 - abs(raw[name][m] - gt[m]) / abs(gt[m]) for m in METRICS}
            assert r["scores"] == pytest.approx(scores, rel=0, abs=1e-12)
            assert r["final"] == pytest.approx(sum(w[m] * scores[m] for m in METRICS) / sum(w.values()), abs=1e-12)
            assert r["rank"] == 1 + sum(o["final"] > r["final"] for o in ours["rows"].values())
        assert [r["final"] for r in ours["rows"].values()] == sorted((r["final"] for r in ours["rows"].values()),
                                                                      reverse=True)
        if reference:
            sys.path.insert(0, reference)
            import pandas as pd
            from theval.scoring import compute_final_scores
            ref = compute_final_scores(pd.DataFrame(raw).T, weights=weights)
            assert list(ref.index) == list(ours["rows"])
            for name, r in ours["rows"].items():
                assert ref.loc[name, "Rank"] == r["rank"]
                assert ref.loc[name, "Final score"] == pytest.approx(r["final"], rel=0, abs=1e-12)
                for g, v in r["groups"].items():
                    assert ref.loc[name, g] == pytest.approx(v, rel=0, abs=1e-12)


def test_theval_scores_refuse_a_zero_gt_and_rows_with_other_metrics():
    with pytest.raises(LipsyncBenchError, match="non-zero.*Lip sync"):
        theval_final_scores({"GT": {**_row([1] * 8), "Lip sync": 0.0}, "m": _row([1] * 8)}, "GT")
    with pytest.raises(LipsyncBenchError, match="row 'm' has other metrics"):
        theval_final_scores({"GT": {"Lip sync": 1.0}, "m": {"Lip sync": 1.0, "Lip dynamics": 2.0}}, "GT")
    with pytest.raises(LipsyncBenchError, match="ground-truth row 'GT' not found"):
        theval_final_scores({"m": {"Lip sync": 1.0}}, "GT")


def test_vico_rank_sum_ranks_by_direction_and_av_offset_by_distance_to_zero():
    out = vico_rank_sum({"a": {"ssim": 0.9, "fid": 20.0, "av_offset": -3.0},
                         "b": {"ssim": 0.8, "fid": 10.0, "av_offset": 1.0},
                         "c": {"ssim": 0.9, "fid": 30.0, "av_offset": 2.0}},
                        {"ssim": True, "fid": False, "av_offset": None})
    assert out["rows"]["a"]["ranks"] == {"ssim": 1, "fid": 2, "av_offset": 3}
    assert out["rows"]["b"]["ranks"] == {"ssim": 3, "fid": 1, "av_offset": 1}
    assert out["rows"]["c"]["ranks"] == {"ssim": 1, "fid": 3, "av_offset": 2}
    assert [(n, r["rank_sum"], r["top1"], r["place"]) for n, r in out["rows"].items()] == \
        [("b", 5, 2, 1), ("a", 6, 1, 2), ("c", 6, 1, 2)]
    partial = vico_rank_sum({"a": {"ssim": 0.9, "fid": 1.0}, "b": {"ssim": 0.8}}, {"ssim": True, "fid": False})
    assert partial["metrics"] == ["ssim"] and partial["left_out"] == ["fid"]


def _store(tmp_path, methods: dict[str, dict[str, list[float]]], dataset="hdtf") -> None:
    store = ResultStore(tmp_path)
    for method, per_metric in methods.items():
        run = store.open_run(method, dataset, {"fps": 25.0}, {m: {} for m in per_metric})
        session = store.start_session(run, {"test": True})
        for metric, values in per_metric.items():
            store.write(run, session, [ResultRow(f"v{i}", metric, v, 10) for i, v in enumerate(values)])
    store.close()


def test_table_score_vico_from_stored_means(tmp_path):
    _store(tmp_path, {"ours": {"ssim": [0.9, 0.8], "psnr": [30.0, 28.0]},
                      "wav2lip": {"ssim": [0.85, 0.75], "psnr": [31.0, 29.0]},
                      "talklip": {"ssim": [0.5, 0.5], "psnr": [20.0, 22.0]}})
    runner = CliRunner()
    res = runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path), "--score", "vico"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]][-3:] == ["Rank-sum", "Top-1", "Place"]
    ours = next(line for line in lines if line.startswith("| ours"))
    assert "0.850 (1)" in ours and "29.000 (2)" in ours and ours.rstrip("| ").endswith("1")
    doc = json.loads(runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path), "--score",
                                          "vico", "--json"]).output)
    assert [(r["method"], r["rank_sum"]) for r in doc["rows"]] == [("ours", 3), ("wav2lip", 3), ("talklip", 6)]
    bad = runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path), "--score", "theval"])
    assert bad.exit_code != 0 and "no THEval metric" in bad.output and "Traceback" not in bad.output
    both = runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path), "--score", "vico",
                                "--paper"])
    assert both.exit_code != 0 and "takes no --paper" in both.output


def test_table_score_theval_from_stored_means_with_the_gt_row(tmp_path):
    from lipsync_bench.metrics.registry import all_metrics

    ours = [m for m in THEVAL_METRICS.values() if m in all_metrics()]
    if not ours:
        pytest.skip("no THEval metric is registered")
    gt_values = {m: [1.0, 3.0] for m in ours}
    _store(tmp_path, {GROUND_TRUTH: gt_values, "ours": {m: [2.0, 2.0] for m in ours},
                      "wav2lip": {m: [3.0, 4.0] for m in ours}})
    res = CliRunner().invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path), "--score", "theval",
                                    "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    finals = {r["method"]: (r["final"], r["rank"]) for r in doc["rows"]}
    # GT mean 2: "ours" equals it everywhere (score 1), wav2lip's mean 3.5 scores 1 - 1.5 / 2 = 0.25
    assert finals[GROUND_TRUTH] == (1.0, 1) and finals["ours"] == (1.0, 1)
    assert finals["wav2lip"] == (pytest.approx(0.25), 3)
    if len(ours) < 8:
        assert any(f"over {len(ours)} of THEval's 8 metrics" in n for n in doc["notes"])


def test_score_tables_escape_names_and_keep_the_method_tables_notes(tmp_path):
    store = ResultStore(tmp_path)
    for method, values in {"<b>x</b>_gan & co": [0.9, None], "wav2lip": [0.8, 0.7]}.items():
        run = store.open_run(method, "hdtf", {"fps": 25.0}, {"ssim": {}, "psnr": {}})
        session = store.start_session(run, {"test": True})
        store.write(run, session, [ResultRow(f"v{i}", "ssim", v, 10) if v is not None else
                                   ResultRow(f"v{i}", "ssim", None, error="broken") for i, v in enumerate(values)])
        store.write(run, session, [ResultRow(f"v{i}", "psnr", 30.0 + i, 10) for i in range(2)])
    store.close()
    runner = CliRunner()
    page = runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path), "--score", "vico",
                                "--format", "html"]).output
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;_gan &amp; co" in page
    assert '<p class="note">&lt;b&gt;x&lt;/b&gt;_gan &amp; co: failed videos excluded from the means (SSIM 1)' in page
    latex = runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path), "--score", "vico",
                                 "--format", "latex"]).output
    assert "\\_gan \\& co" in latex and "% <b>x</b>_gan & co: failed videos" in latex and "$\\uparrow$" in latex
    with pytest.raises(LipsyncBenchError, match="unknown THEval metrics: Lipsync"):
        theval_final_scores({"GT": _row([1] * 8), "m": _row([2] * 8)}, "GT", {"Lipsync": 2.0})
    with pytest.raises(LipsyncBenchError, match="positive sum"):
        theval_final_scores({"GT": _row([1] * 8), "m": _row([2] * 8)}, "GT", dict.fromkeys(METRICS, 0.0))
