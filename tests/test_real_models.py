"""Real trained models on real clips, as a test of the toolkit itself.

MediaPipe's face mesh (the models that ship in mediapipe 0.10.21, Apache-2.0) and Silero VAD (the model
bundled in the silero-vad wheel, MIT) are trained models that run offline, so here, unlike the metrics
checked with seeded weights, a metric's direction can be asserted on real videos: degraded copies of the
GRID test clips (audio delayed by 5-15 frames, another clip's audio, the mouth frozen, blur) must score
worse than the originals under lipsync-bench's defaults, on average and on most clips. The margins and
how often THEval's own procedure (its quirks reproduced by the ``theval`` protocol) separates them are
in docs/theval.md.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lipsync_bench import media, weights
from lipsync_bench.evaluation import run_eval
from lipsync_bench.leaderboard import score_table
from lipsync_bench.protocol import load_protocol
from lipsync_bench.store import ResultStore, is_ground_truth
from tests.helpers import data_file

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLIPS = ["bbaf2n", "brbk7n", "id2_vcd_swwp2s", "lbax4n", "lbbc2a", "lrwp9a", "lwbsza", "sbia1a"]
FPS = 25
SAMPLE_RATE = 16000
#: Audio delays, in frames, one per clip in turn (5 to 15 frames: 0.2 to 0.6 s).
DELAYS = [5, 8, 10, 12, 15]
SYNC = "theval_lip_sync"
DYNAMICS = "theval_lip_dynamics"


def _mouth_box(frame: np.ndarray) -> tuple[slice, slice]:
    """The mouth's box (the 20 iBUG mouth points by dlib, 40% margin): where the frozen copy is pasted."""
    from lipsync_bench.faces.backends import get_backend

    backend = get_backend("dlib")
    box = backend.detect(frame)[0]
    mouth = backend.landmarks(frame, box)[48:68]
    (x0, y0), (x1, y1) = mouth.min(0), mouth.max(0)
    mx, my = 0.4 * (x1 - x0), 0.4 * (y1 - y0)
    return slice(int(y0 - my), int(np.ceil(y1 + my))), slice(int(x0 - mx), int(np.ceil(x1 + mx)))


def build_degraded_copies(root: Path, clips: list[str] = CLIPS) -> dict[str, Path]:
    """``root/<kind>/<clip>.mp4`` for kind in original, shifted, foreign, frozen, blur; {kind: folder}.

    Every copy is re-encoded alike (H.264 crf 12 + AAC), the original too, so that only the degradation
    differs. The delay is in the samples (silence prepended, the end cut), not a container offset."""
    kinds = ["original", "shifted", "foreign", "frozen", "blur"]
    folders = {k: root / k for k in kinds}
    decoded = {c: (media.read_frames(data_file(f"grid/{c}.mpg"), FPS),
                   media.read_audio(data_file(f"grid/{c}.mpg"), SAMPLE_RATE)) for c in clips}
    for i, clip in enumerate(clips):
        frames, audio = decoded[clip]
        delay = DELAYS[i % len(DELAYS)] * SAMPLE_RATE // FPS
        other = decoded[clips[(i + 1) % len(clips)]][1]
        foreign = np.zeros_like(audio)
        foreign[:min(len(audio), len(other))] = other[:len(audio)]
        frozen = frames.copy()
        rows, cols = _mouth_box(frames[0])
        frozen[:, rows, cols] = frames[0, rows, cols]
        copies = {"original": (frames, audio),
                  "shifted": (frames, np.concatenate([np.zeros(delay, audio.dtype), audio[:-delay]])),
                  "foreign": (frames, foreign),
                  "frozen": (frozen, audio),
                  "blur": (ndimage.gaussian_filter(frames, sigma=(0, 2.5, 2.5, 0)), audio)}
        for kind, (f, a) in copies.items():
            media.write_video(folders[kind] / f"{clip}.mp4", f, FPS, a, SAMPLE_RATE)
    return folders


KINDS = ("shifted", "foreign", "frozen", "blur")
#: What each degradation must worsen, and which way: (metric, worse is higher).
EXPECTED = {"shifted": (SYNC, True), "foreign": (SYNC, True), "frozen": (DYNAMICS, False), "blur": ("cpbd", False)}
MESH_METRICS = [SYNC, "theval_silent_lip_stability", DYNAMICS, "theval_eyebrow_dynamics"]


def evaluate_copies(folders: dict[str, Path], out: Path, protocol: str | None = None,
                    metrics: list[str] = MESH_METRICS) -> dict[str, dict[str, dict[str, float]]]:
    """{kind: {metric: {clip: value}}}: each degraded folder evaluated against the originals, whose values
    are the GT's own run ("original"); CPBD (no GT run of its own) on the blurred and original copies."""
    proto = load_protocol(protocol) if protocol else None
    for kind in KINDS:
        run_eval(folders[kind], folders["original"], metrics, method=kind, dataset="grid", out=out, protocol=proto,
                 progress=False)
    if protocol is None:
        for kind in ("blur", "original"):
            run_eval(folders[kind], None, ["cpbd"], method=f"{kind} (cpbd)", dataset="grid", out=out,
                     progress=False)
    store = ResultStore.open_existing(out)
    df = store.results(store.runs("grid"))
    store.close()
    values: dict[str, dict[str, dict[str, float]]] = {}
    for row in df.itertuples():
        kind = "original" if is_ground_truth(row.method) else row.method.removesuffix(" (cpbd)")
        values.setdefault(kind, {}).setdefault(row.metric, {})[Path(row.video).stem] = row.value
    return values


def separation(values: dict, metric: str, kind: str, worse_is_higher: bool) -> tuple[float, int, int]:
    """(mean margin, clips where the copy scores worse, clips): margin > 0 when the copy is worse."""
    sign = 1.0 if worse_is_higher else -1.0
    orig, deg = values["original"][metric], values[kind][metric]
    diffs = [sign * (deg[c] - orig[c]) for c in orig if c in deg and np.isfinite(deg[c]) and np.isfinite(orig[c])]
    return float(np.mean(diffs)), sum(d > 0 for d in diffs), len(diffs)


@pytest.fixture(scope="module")
def copies(tmp_path_factory, mediapipe_weights):
    return build_degraded_copies(tmp_path_factory.mktemp("degraded"))


@pytest.mark.slow
def test_trained_models_see_every_degradation_under_the_defaults(copies, tmp_path, mediapipe_weights, monkeypatch):
    monkeypatch.setenv(weights.ENV_VAR, str(mediapipe_weights))
    values = evaluate_copies(copies, tmp_path / "results")
    n = len(CLIPS)
    found = {kind: separation(values, EXPECTED[kind][0], kind, EXPECTED[kind][1]) for kind in KINDS}
    print("\n".join(f"{k}: {metric} mean {np.mean(list(values[k][metric].values())):.4f} (original "
                    f"{np.mean(list(values['original'][metric].values())):.4f}), worse on {w} of {c}"
                    for k in KINDS for metric in [*MESH_METRICS, "cpbd"] if metric in values[k]
                    for _, w, c in [separation(values, metric, k, metric != DYNAMICS and metric != "cpbd")]))
    for kind, (margin, worse, count) in found.items():
        # lip sync: the mean |openness - loudness| rises when they part; the frozen mouth's lip dynamics fall
        assert count == n and margin > 0 and worse > n / 2, (kind, margin, worse, count)
    assert found["frozen"][1] == n and found["blur"][1] == n
    # THEval's scores of these rows, from the same store: the frozen mouth, furthest from the GT, ranks last
    table = score_table(tmp_path / "results", "grid", "theval")
    rows = {r["method"]: r for r in table.rows}
    assert rows["frozen"]["rank"] == len(rows) and rows["frozen"]["final"] < min(
        rows[k]["final"] for k in KINDS if k != "frozen")
    assert any("over 4 of THEval's 8 metrics" in n for n in table.notes)


@pytest.mark.slow
def test_thevals_own_procedure_on_the_same_copies(copies, tmp_path, mediapipe_weights, monkeypatch):
    """THEval's procedure (BGR frames, one tracker for the process, 0.1 s VAD rounding, 44.1 kHz RMS): how
    often it tells the degraded copies from the originals, printed for docs/theval.md; the lip dynamics of
    a frozen mouth fall under either procedure."""
    monkeypatch.setenv(weights.ENV_VAR, str(mediapipe_weights))
    values = evaluate_copies(copies, tmp_path / "results", "theval", [SYNC, DYNAMICS])
    found = {kind: separation(values, EXPECTED[kind][0], kind, EXPECTED[kind][1])
             for kind in ("shifted", "foreign", "frozen")}
    print("\n".join(f"theval {k}: {EXPECTED[k][0]} margin {m:+.4f}, worse on {w} of {c}"
                    for k, (m, w, c) in found.items()))
    n = len(CLIPS)
    for kind, (margin, worse, count) in found.items():
        assert count == n and margin > 0 and worse > n / 2, (kind, margin, worse, count)
    assert found["frozen"][1] == n


@pytest.mark.slow
def test_the_demo_shows_a_real_model_lip_sync_number_for_each_degradation(tmp_path, mediapipe_weights, monkeypatch):
    from lipsync_bench.demo import DEGRADATIONS, run_demo

    monkeypatch.setenv(weights.ENV_VAR, str(mediapipe_weights))
    demo = run_demo(tmp_path, progress=False)
    columns = {c["metric"]: c["column"] for c in demo["columns"]}
    rows = {r["method"]: r["values"] for r in demo["rows"]}
    assert set(DEGRADATIONS) < set(rows) and any(is_ground_truth(m) for m in rows)
    for method in DEGRADATIONS:
        assert np.isfinite(rows[method][columns[SYNC]]) and np.isfinite(rows[method][columns[DYNAMICS]]), method
    # the frozen mouth: its lips stop, and it still has the lowest THEval lip sync (constant openness normalises to 0)
    others = [m for m in rows if m != "frozen-mouth"]
    assert rows["frozen-mouth"][columns[DYNAMICS]] < min(rows[m][columns[DYNAMICS]] for m in others)
    assert rows["frozen-mouth"][columns[SYNC]] < min(rows[m][columns[SYNC]] for m in others)
    assert "MediaPipe's face mesh, Silero VAD" in demo.text()
