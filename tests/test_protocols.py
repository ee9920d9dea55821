"""Named protocols: the files, their choices and sources, eval under them (each checked against a direct
computation of the peer's procedure), derived protocols, and tables and comparisons that never mix
two definitions."""
from __future__ import annotations

import json
import shutil
import sqlite3

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from skimage.metrics import structural_similarity

import lipsync_bench
from lipsync_bench import media, weights
from lipsync_bench import protocol as protocol_module
from lipsync_bench.cli import main
from lipsync_bench.errors import LipsyncBenchError, ParameterError
from lipsync_bench.evaluation import plan_metrics
from lipsync_bench.metrics.registry import FACE_NEEDS, get_metric
from lipsync_bench.pipeline import face_analyzer
from lipsync_bench.protocol import CHOICES, load_protocol, protocol_names
from lipsync_bench.report import compare_methods, method_rows
from lipsync_bench.store import SCHEMA_VERSION, ResultRow, ResultStore
from lipsync_bench.syncnets.syncnet import SyncNet
from tests.helpers import blur, noise, write_lossless

NAMED = ["lipsync-bench", "latentsync", "mochabench", "syncnet-python", "talklip", "theval", "vico", "wav2lip-lrs",
         "wav2lip-real", "yaman2024"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, grid_clips):
    """GT: two real GRID clips as they are; generated: their decoded frames blurred and noised, lossless."""
    root = tmp_path_factory.mktemp("protocols")
    (root / "gt").mkdir()
    for clip in grid_clips[:2]:
        shutil.copy(clip, root / "gt" / clip.name)
        write_lossless(root / "gen" / clip.stem, noise(blur(media.read_frames(clip), 1.0), 3))
    return root


def read_with_opencv(path) -> list[np.ndarray]:
    """Frames as the peer scripts read them (cv2.VideoCapture, BGR)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


# ---------------------------------------------------------------- the files


def test_the_named_protocols_and_every_choice_has_a_source():
    assert protocol_names() == NAMED
    for name in NAMED:
        p = load_protocol(name)
        assert p.name == name and len(p.sha256) == 64 and p.title and p.reference
        assert set(p.choices) == set(CHOICES)
        for key in CHOICES:  # every run-level choice is stated in the file, with where it comes from
            assert p.sources.get(key) and not p.sources[key].startswith("protocol "), (name, key)
    # wav2lip-real is syncnet_python's procedure with its scores listed a line a track: the same numbers
    assert len({load_protocol(n).sha256 for n in NAMED}) == len(NAMED) - 1
    assert load_protocol("wav2lip-real").sha256 == load_protocol("syncnet-python").sha256
    yaman = load_protocol("yaman2024")
    assert {"ifc.norm", "region.kind", "psnr.data_range"} <= yaman.unknown
    assert "faces.landmarker" not in yaman.unknown and yaman.landmarker == "face-alignment"
    assert not load_protocol("talklip").unknown


def test_protocols_say_which_of_their_metrics_run_here(tmp_path, monkeypatch):
    runner = CliRunner()
    yaman = next(line for line in runner.invoke(main, ["protocols"]).output.splitlines() if line.startswith("yaman"))
    # no FID, SyncNet or face-alignment weights here: SSIM, PSNR and IFC of its eight metrics run
    assert yaman.endswith("partly (3 of 8 metrics)")
    doc = {p["name"]: p for p in json.loads(runner.invoke(main, ["protocols", "--json"]).output)}
    missing = doc["yaman2024"]["metrics_not_runnable_here"]
    assert sorted(missing) == ["av_offset", "fid", "lmd", "lse_c", "lse_d"]
    assert "lipsync-bench weights fetch syncnet" in missing["lse_c"] and "weights fetch s3fd" in missing["lmd"]
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), tmp_path / "syncnet_v2.model")
    monkeypatch.setenv(weights.ENV_VAR, str(tmp_path))  # the expert placed: Wav2Lip's LRS procedure runs
    listed = runner.invoke(main, ["protocols"]).output.splitlines()
    assert next(line for line in listed if line.startswith("wav2lip-lrs")).endswith("yes")
    doc = {p["name"]: p for p in json.loads(runner.invoke(main, ["protocols", "--json"]).output)}
    # yaman2024's LSE crops follow face-alignment's landmarks: what it misses now is their weights
    assert doc["yaman2024"]["metrics_not_runnable_here"]["lse_c"].startswith("the face-alignment landmarker needs")


def test_protocols_list_show_and_diff():
    runner = CliRunner()
    listed = runner.invoke(main, ["protocols"])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    table = lines[2:lines.index("cannot run here:")]
    assert [line.split()[0] for line in table] == NAMED
    assert "no:" not in listed.output  # every named procedure runs here, given its weights
    diff = runner.invoke(main, ["protocols", "diff", "syncnet-python", "lipsync-bench"])
    rows = {line.split()[0]: line.split()[1:] for line in diff.output.splitlines()[2:]}
    assert rows["faces.min_track"] == ["100", "5"] and rows["faces.min_face_size"] == ["100", "50"]
    assert rows["faces.detector"] == ["s3fd-syncnet-python", "landmarker"] and "faces.iou" not in rows
    # the peers built on syncnet_python differ from it where their text does, and nowhere else
    peers = runner.invoke(main, ["protocols", "diff", "syncnet-python", "mochabench"])
    rows = {line.split()[0]: line.split()[1:3] for line in peers.output.splitlines()[2:]}
    # a group's parameter that differs alike for every member is one row, named as 'protocols show' names it
    assert rows == {"decode.reencode": ["syncnet-python", "syncnet-python-0.2.3"], "faces.min_track": ["100", "50"],
                    "faces.linking": ["joonson", "first-face"], "lse.tracks": ["each", "best"],
                    "lse.pool": ["frames", "videos"]}, peers.output
    latent = runner.invoke(main, ["protocols", "diff", "syncnet-python", "latentsync"])
    rows = {line.split()[0]: line.split()[1:3] for line in latent.output.splitlines()[2:]}
    assert rows["faces.min_track"] == ["100", "50"] and rows["lse.tracks"] == ["each", "mean"]
    yaman = runner.invoke(main, ["protocols", "diff", "yaman2024", "lipsync-bench"]).output
    assert "lse.compat" in yaman and "lse_c.compat" not in yaman
    show = runner.invoke(main, ["protocols", "show", "talklip"])
    line = next(x for x in show.output.splitlines() if x.startswith("region.size"))
    assert line.split()[1] == "96" and "cv2.resize(..., (96, 96))" in line
    doc = json.loads(runner.invoke(main, ["protocols", "show", "yaman2024", "--json"]).output)
    ifc = next(c for c in doc["choices"] if c["choice"] == "ifc.norm")
    assert ifc["source"].startswith("UNKNOWN: ")


def test_a_protocol_file_extends_a_named_one(tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "talklip"\n[region]\nsize = { value = 128, source = "our crops" }\n'
                    '[params.psnr]\nidentical = "inf"\n')
    p = load_protocol(str(mine))
    assert p.name == "mine" and p.choices["region.size"] == 128 and p.metric_params["psnr"]["identical"] == "inf"
    assert p.metric_params["psnr"]["mse"] == "uint8-wrap" and p.sources["region.size"] == "our crops"
    assert p.sha256 != load_protocol("talklip").sha256
    bad = tmp_path / "bad.toml"
    bad.write_text('[region]\nsize = -3\n')
    with pytest.raises(ParameterError, match=r"bad.toml: region.size=-3: expected a int >= 0"):
        load_protocol(str(bad))
    bad.write_text('[params.psnr]\nmse = "rounded"\n')
    with pytest.raises(ParameterError, match="psnr.mse='rounded': expected one of exact, uint8-wrap"):
        load_protocol(str(bad))


def test_a_protocol_that_cannot_run_here_is_refused_before_any_work(pairs, tmp_path):
    out = tmp_path / "r"
    result = CliRunner().invoke(main, ["eval", "--gen", str(pairs / "gen"), "--gt", str(pairs / "gt"), "--out",
                                       str(out), "--protocol", "talklip", "--set", "region.size=0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: protocol 'talklip (modified)' cannot run here: region.kind=face-box "
                                    "needs region.size"), result.output
    assert not out.exists()
    other = CliRunner().invoke(main, ["eval", "--gen", str(pairs / "gen"), "--gt", str(pairs / "gt"), "--out",
                                      str(out), "--protocol", "talklip", "--metrics", "fid"])
    assert other.exit_code == 2 and "fid is not part of protocol 'talklip'" in other.output and not out.exists()


# ---------------------------------------------------------------- eval under a protocol


def talklip_crops(frames: list[np.ndarray], boxes: np.ndarray) -> list[np.ndarray]:
    """TalkLip's visual_quality.py crop: the box clipped at 0 and truncated (bbx_extract.py), the centred
    96x96 box without a detection, cv2.resize to 96x96."""
    out = []
    for frame, box in zip(frames, boxes, strict=True):
        if np.isfinite(box).all():
            x1, y1, x2, y2 = map(int, np.clip(box, 0, None))
        else:
            y1, x1 = int((frame.shape[0] - 96) / 2), int((frame.shape[1] - 96) / 2)
            x2, y2 = x1 + 96, y1 + 96
        out.append(cv2.resize(frame[y1:y2, x1:x2], (96, 96)))
    return out


def talklip_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a - b) ** 2)  # uint8 arithmetic, as the script
    return 100.0 if mse == 0 else 20 * np.log10(255.0 / np.sqrt(mse))


def test_talklip_gives_psnr_and_ssim_of_96x96_face_crops(pairs, tmp_path):
    """eval --protocol talklip (its S3FD boxes replaced by dlib's, which runs here: a derived protocol)
    against TalkLip's visual_quality.py computed directly: OpenCV frames, the GT's per-frame boxes, 96x96
    crops, uint8 PSNR with 100 for identical frames, skimage SSIM, the mean over every frame."""
    result = lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["ssim", "psnr"], protocol="talklip",
                                    landmarker="dlib", out=tmp_path / "r")
    assert result.failures.empty
    assert result.run.protocol["protocol"] == "talklip (modified)"
    assert result.run.protocol["modified"] == {"faces.landmarker": ["face-alignment", "dlib"]}
    analyzer = face_analyzer(load_protocol("talklip").with_choices({"faces.landmarker": "dlib"}))
    ssim, psnr = [], []
    for gt in sorted((pairs / "gt").iterdir()):
        gt_frames = read_with_opencv(gt)
        gen_frames = read_with_opencv(pairs / "gen" / f"{gt.stem}.avi")
        analyzer.detections, analyzer.points = [], []
        analyzer.update(np.stack(gt_frames)[..., ::-1])
        boxes = analyzer.result().top_boxes
        assert np.isfinite(boxes).all(axis=1).mean() > 0.9  # real faces: TalkLip's boxes, not its fallback
        n = min(len(gt_frames), len(gen_frames))
        for a, b in zip(talklip_crops(gt_frames[:n], boxes), talklip_crops(gen_frames[:n], boxes), strict=True):
            assert a.shape == (96, 96, 3)
            ssim.append(structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=255))
            psnr.append(talklip_psnr(a, b))
    assert result.summary.loc["ssim", "mean"] == pytest.approx(np.mean(ssim), abs=1e-6)
    assert result.summary.loc["psnr", "mean"] == pytest.approx(np.mean(psnr), abs=1e-9)
    exact = lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["psnr"], protocol="talklip", landmarker="dlib",
                                   params={"psnr": {"mse": "exact"}})
    assert abs(exact.summary.loc["psnr", "mean"] - np.mean(psnr)) > 0.5  # the uint8 wrap is not a detail


@pytest.mark.slow
def test_talklip_as_published_runs_with_face_alignment_weights(tmp_path, grid_clips, monkeypatch):
    """The unmodified protocol with seeded random S3FD and 2D-FAN weights in face-alignment's layout:
    it runs (the boxes are noise, or TalkLip's centred fallback) and records itself unmodified."""
    pytest.importorskip("face_alignment")
    from tests.helpers import make_face_alignment_weights

    monkeypatch.setenv("LIPSYNC_BENCH_WEIGHTS", str(make_face_alignment_weights(tmp_path / "w")))
    frames = media.read_frames(grid_clips[0])[:12]
    write_lossless(tmp_path / "gt" / "clip", frames)
    write_lossless(tmp_path / "gen" / "clip", noise(frames, 3))
    result = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["psnr"], protocol="talklip")
    assert result.failures.empty and result.run.protocol["protocol"] == "talklip"
    assert result.run.protocol["face_pipeline"]["backend"] == "face-alignment"
    assert 20 < result.summary.loc["psnr", "mean"] < 60


@pytest.mark.slow
def test_vico_equals_piq_and_its_landmark_distance(pairs, tmp_path):
    """ViCo's compute_base_metrics.py is piq's psnr and ssim on whole RGB frames / 255, pooled over
    every frame; its LMD the mean absolute difference of points 48-67 over frames with GT landmarks."""
    piq = pytest.importorskip("piq", reason="needs piq (the README's test command installs it)")
    import torch

    result = lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["ssim", "psnr", "lmd"], protocol="vico",
                                    landmarker="dlib", choices={"faces.flip_input": False})
    assert result.failures.empty
    ssim, psnr, lmd = [], [], []
    analyzer = face_analyzer(load_protocol("vico").with_choices({"faces.landmarker": "dlib",
                                                                "faces.flip_input": False}))
    for gt in sorted((pairs / "gt").iterdir()):
        g = np.stack(read_with_opencv(gt))[..., ::-1]
        p = np.stack(read_with_opencv(pairs / "gen" / f"{gt.stem}.avi"))[..., ::-1]
        x = torch.from_numpy(np.ascontiguousarray(p)).permute(0, 3, 1, 2).float() / 255.
        y = torch.from_numpy(np.ascontiguousarray(g)).permute(0, 3, 1, 2).float() / 255.
        psnr += piq.psnr(x, y, reduction="none").tolist()
        ssim += piq.ssim(x, y, data_range=1., reduction="none").tolist()
        marks = []
        for frames in (g, p):
            analyzer.detections, analyzer.points = [], []
            analyzer.update(frames)
            marks.append(analyzer.result().landmarks[:, 48:68])
        keep = np.isfinite(marks[0][:, 0, 0])
        lmd += list(np.abs(marks[1][keep] - marks[0][keep]).mean(axis=(1, 2)))
    assert result.summary.loc["psnr", "mean"] == pytest.approx(np.mean(psnr), abs=2e-4)  # piq sums in float32
    assert result.summary.loc["ssim", "mean"] == pytest.approx(np.mean(ssim), abs=2e-5)
    assert result.summary.loc["lmd", "mean"] == pytest.approx(np.mean(lmd), abs=1e-9)
    l2 = lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["lmd"], landmarker="dlib")
    assert l2.summary.loc["lmd", "mean"] > result.summary.loc["lmd", "mean"]  # L2 per point > mean |dx|, |dy|


def test_frame_pooling_and_fatal_failures(pairs, tmp_path):
    """Pooled over frames (talklip's PSNR), the mean is weighted by each video's frames; under
    summary.failed_videos = fatal, one failed video voids the mean (as scripts that stop at it), and the
    other videos' rows are kept."""
    gen = tmp_path / "gen"
    shutil.copytree(pairs / "gen", gen)
    first = sorted((pairs / "gt").iterdir())[0]
    write_lossless(gen / first.stem, noise(media.read_frames(first)[:40], 3))  # 40 of 75 frames
    pooled = lipsync_bench.evaluate(gen, pairs / "gt", ["psnr"], protocol="talklip", landmarker="dlib")
    assert pooled.run.metric_params["psnr"]["pool"] == "frames"
    rows = pooled.videos
    assert sorted(rows.frames) == [40, 75]
    weighted = (rows.value * rows.frames).sum() / rows.frames.sum()
    assert pooled.summary.loc["psnr", "mean"] == pytest.approx(weighted, rel=1e-12)
    assert abs(weighted - rows.value.mean()) > 1e-3
    (gen / f"{first.stem}.avi").write_bytes(b"not a video")
    fatal = lipsync_bench.evaluate(gen, pairs / "gt", ["psnr"], protocol="talklip", landmarker="dlib")
    summary = fatal.summary_dict()["psnr"]
    assert summary["mean"] is None and summary["failed"] == 1 and "voids the mean" in summary["error"]
    assert fatal.videos.value.notna().sum() == 1 and "voids the mean" in fatal.text()


def test_lse_needs_25_fps(pairs, tmp_path):
    with pytest.raises(ParameterError, match="lse_c cannot run here: needs 25 fps"):
        lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["lse_c", "ssim"], fps=30)


# ---------------------------------------------------------------- numbers under different definitions


def test_two_definitions_never_share_a_column_and_compare_refuses_them(pairs, tmp_path):
    """Method A at 25 fps with the default IFC, method B at --fps 30 with ifc.norm=l2: no column holds
    numbers of both, each header names its protocol, and compare refuses, naming fps and norm."""
    out = tmp_path / "r"
    runner = CliRunner()
    common = ["eval", "--gt", str(pairs / "gt"), "--out", str(out), "--metrics", "ssim,ifc", "--quiet"]
    assert runner.invoke(main, [*common, "--gen", str(pairs / "gen"), "--name", "A"]).exit_code == 0
    b = runner.invoke(main, [*common, "--gen", str(pairs / "gen"), "--name", "B", "--fps", "30",
                             "--param", "ifc.norm=l2"])
    assert b.exit_code == 0, b.output
    assert "note: decode.fps = 30.0 (protocol lipsync-bench says 25.0)" in b.output
    assert "note: ifc.norm = l2 (protocol lipsync-bench says rms)" in b.output
    doc = json.loads(runner.invoke(main, ["table", "--dataset", "gt", "--results", str(out), "--json"]).output)
    values = {r["method"]: {k for k, v in r["values"].items() if v is not None} for r in doc["rows"]}
    assert values["A"].isdisjoint(values["B"]) and len(doc["columns"]) == 4
    for col in doc["columns"]:
        assert len(col["protocols"]) == 1 and col["definition"]["decode.fps"] in (25.0, 30.0)
    labels = {c["column"]: c["label"] for c in doc["columns"]}
    assert any(label == "SSIM (lipsync-bench modified: fps=30)" for label in labels.values())
    assert any(label.startswith("IFC [norm=l2] (lipsync-bench modified") for label in labels.values())
    md = runner.invoke(main, ["table", "--dataset", "gt", "--results", str(out)]).output
    assert md.count("**") == 2 * 4  # each column holds one method: nothing is bolded against another definition
    compare = runner.invoke(main, ["compare", "A", "B", "--dataset", "gt", "--results", str(out)])
    assert compare.exit_code == 1 and "Traceback" not in compare.output
    assert "not comparable" in compare.output and "ifc: fps 25 vs 30, norm rms vs l2" in compare.output
    assert "ssim: fps 25 vs 30" in compare.output


def test_the_same_definition_under_two_protocols_shares_its_column(pairs, tmp_path):
    """wav2lip-lrs and talklip score LSE alike: their LSE results are one definition (one column, both
    named), and compare tests them."""
    wav2lip, talklip = load_protocol("wav2lip-lrs"), load_protocol("talklip")
    for metric in ("lse_c", "lse_d"):
        assert wav2lip.metric_params[metric] == talklip.metric_params[metric]
    from lipsync_bench.store import Run

    runs = [Run(i, m, "d", p.as_dict(), {"lse_c": {**p.metric_params["lse_c"], "pool": "videos"}}, None, None)
            for i, (m, p) in enumerate([("a", wav2lip), ("b", talklip)])]
    assert runs[0].definition("lse_c") == runs[1].definition("lse_c")
    assert runs[0].definition("lse_c")["decode.fps"] == 0


def test_reported_rows_sit_beside_measured_rows_of_their_protocol(pairs, tmp_path):
    out = tmp_path / "r"
    lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["ssim", "psnr"], out=out, method="ours", dataset="hdtf")
    runner = CliRunner()
    doc = json.loads(runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(out), "--paper",
                                          "--json"]).output)
    reported = [r for r in doc["rows"] if r["kind"] == "reported"]
    assert {r["protocol"] for r in reported} == {"yaman2024"}
    assert all(r["protocol_differs"] for r in reported)  # measured under lipsync-bench
    ssim = next(c for c in doc["columns"] if c["metric"] == "ssim")
    assert ssim["protocols"] == ["lipsync-bench"]
    # measured under the paper's own protocol (landmarks are not needed by SSIM/PSNR), the paper's rows are
    # not marked
    lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["ssim", "psnr"], out=tmp_path / "y", method="ours",
                           dataset="hdtf", protocol="yaman2024")
    doc = json.loads(runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path / "y"),
                                          "--paper", "--json"]).output)
    assert not any(r.get("protocol_differs") for r in doc["rows"])
    md = runner.invoke(main, ["table", "--dataset", "hdtf", "--results", str(tmp_path / "y"), "--paper"]).output
    assert "| Wav2Lip (reported, yaman2024) " in md and "‡" not in md


# ---------------------------------------------------------------- stores written before named protocols


def test_an_older_store_is_migrated_and_resumes(pairs, tmp_path):
    """A schema-2 store (protocols recorded as fps, region, ... only; no pooling) opens as today's schema
    with its runs in today's form, and the same command resumes it without recomputing anything."""
    out = tmp_path / "r"
    first = lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["ssim", "ifc"], out=out, method="m")
    db = sqlite3.connect(out / "lipsync_bench.sqlite")
    with db:
        db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
        db.execute("UPDATE runs SET protocol=?", (json.dumps({"fps": 25.0, "sample_rate": 16000, "region": "full",
                                                              "max_frame_gap": 3, "landmarker": "auto"}),))
        for metric, params in db.execute("SELECT metric, params FROM run_metrics").fetchall():
            legacy = {k: v for k, v in json.loads(params).items() if k != "pool"}
            db.execute("UPDATE run_metrics SET params=? WHERE metric=?", (json.dumps(legacy), metric))
    db.close()
    store = ResultStore.open_existing(out)
    run = store.get_run("m", "gt")
    assert run.protocol == load_protocol().as_dict() and run.metric_params["ifc"]["pool"] == "videos"
    version = store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    store.close()
    assert version == str(SCHEMA_VERSION)
    again = lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["ssim", "ifc"], out=out, method="m")
    assert again.computed == 0 and again.resumed == 2
    assert again.summary.loc["ifc", "mean"] == first.summary.loc["ifc", "mean"]


@pytest.mark.slow
def test_merge_refuses_one_method_under_two_protocols(pairs, tmp_path):
    from lipsync_bench.errors import StoreError
    from lipsync_bench.shards import merge

    lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["psnr"], out=tmp_path / "a", method="m")
    lipsync_bench.evaluate(pairs / "gen", pairs / "gt", ["psnr"], out=tmp_path / "b", method="m", protocol="talklip",
                           landmarker="dlib")
    with pytest.raises(StoreError, match="under another protocol .protocol: stored 'lipsync-bench', now 'talklip "
                                         r"\(modified\)'; .*region.kind: stored 'full', now 'face-box'"):
        merge([tmp_path / "a", tmp_path / "b"], tmp_path / "all")


def test_a_new_choice_splits_a_column_without_touching_the_report(monkeypatch):
    """One rule decides comparability: a choice declared with what it reaches splits the columns of the
    metrics it reaches (LMD reads the face stage) and of no other (SSIM on the full frame), in the
    table and in compare, with no edit to the report."""
    monkeypatch.setitem(protocol_module.CHOICES, "faces.new_rule",
                        protocol_module.Choice("a", "a rule of the face stage", choices=("a", "b"), reaches=FACE_NEEDS))
    store = ResultStore(None)
    for method, rule in (("A", "a"), ("B", "b")):
        record = {**load_protocol().as_dict(), "faces.new_rule": rule}
        params = {m: {**get_metric(m).defaults, "pool": "videos"} for m in ("ssim", "lmd")}
        run = store.open_run(method, "d", record, params)
        session = store.start_session(run, {})
        store.write(run, session, [ResultRow(v, m, 0.5 + (method == "B") * 0.1, 10) for v in ("v1", "v2")
                                   for m in ("ssim", "lmd")])
    columns, _ = method_rows(store, "d")
    assert [c.metric for c in columns] == ["ssim", "lmd", "lmd"]
    assert {c.definition["faces.new_rule"] for c in columns if c.metric == "lmd"} == {"a", "b"}
    assert "faces.new_rule" not in next(c for c in columns if c.metric == "ssim").definition
    with pytest.raises(LipsyncBenchError, match="lmd: new_rule a vs b"):
        compare_methods(store, "d", "A", "B")


def test_no_ground_truth_runs_the_metrics_that_read_the_generated_video_alone(pairs, tmp_path):
    """eval without --gt: CPBD (no reference video) runs and equals its value with a GT; a metric that
    needs the GT, named, is refused before any work (exit 2, nothing written); by default it is skipped,
    saying why."""
    one = tmp_path / "one"
    shutil.copytree(pairs / "gen", one, ignore=lambda folder, names: sorted(names)[1:])
    with_gt = lipsync_bench.evaluate(one, pairs / "gt", ["cpbd"])
    alone = lipsync_bench.evaluate(one, None, ["cpbd"], out=tmp_path / "alone")
    assert alone.summary.loc["cpbd", "mean"] == with_gt.summary.loc["cpbd", "mean"]
    assert alone.run.gt_dir is None and alone.ground_truth == {} and "videos, no ground truth" in alone.text()
    runner = CliRunner()
    refused = runner.invoke(main, ["eval", "--gen", str(pairs / "gen"), "--metrics", "ssim,cpbd", "--out",
                                   str(tmp_path / "refused")])
    assert refused.exit_code == 2 and "ssim needs ground-truth videos" in refused.output
    assert not (tmp_path / "refused").exists()
    runnable, _, _, skipped = plan_metrics(["ssim", "cpbd"], {}, load_protocol(), ground_truth=False, named=False)
    assert [m.name for m in runnable] == ["cpbd"] and skipped == {"ssim": "needs ground-truth videos (--gt)"}


def test_frames_of_another_size_say_how_to_compare_them_and_the_resize_is_recorded(pairs, tmp_path):
    """A generated video of another frame size fails with the choice that would compare it; with
    decode.resize the generated frames are resized to the GT's (OpenCV), recorded as a changed choice, and
    SSIM equals scikit-image on the resized frames."""
    gt = sorted((pairs / "gt").iterdir())[0]
    frames = media.read_frames(gt)[:12]
    small = np.stack([cv2.resize(f, (frames.shape[2] // 2, frames.shape[1] // 2), interpolation=cv2.INTER_AREA)
                      for f in frames])
    write_lossless(tmp_path / "gen" / gt.stem, small)
    write_lossless(tmp_path / "gt" / gt.stem, frames)
    plain = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["ssim"])
    assert "frame sizes differ" in plain.failures.error[0] and "--set decode.resize=area" in plain.failures.error[0]
    resized = lipsync_bench.evaluate(tmp_path / "gen", tmp_path / "gt", ["ssim"], choices={"decode.resize": "area"})
    assert resized.run.protocol["modified"] == {"decode.resize": ["none", "area"]}
    assert resized.run.protocol["decode.resize"] == "area" and "decode.resize" not in plain.run.protocol
    back = np.stack([cv2.resize(f, (frames.shape[2], frames.shape[1]), interpolation=cv2.INTER_AREA) for f in small])
    expected = np.mean([structural_similarity(t, g, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=255)
                        for g, t in zip(back, frames, strict=True)])
    assert abs(resized.summary.loc["ssim", "mean"] - expected) < 1e-6
