"""The research half ready for a long run: a missing input stops the run before any work, a resume
checks its inputs (a deliberate change is named and recorded), the generator and the expert are
validated while they train and a run stopped by --max-steps leaves best.pt, a snapshot, a validation
row and a sample image; the sync judge under autocast stays within its stated bound."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from lipsync_bench.cli import main
from lipsync_bench.errors import LipsyncBenchError
from lipsync_bench.research.generator.config import GeneratorConfig

ROOT = Path(__file__).resolve().parents[1]


def _refusal(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command in a fresh interpreter and report whether torch got imported before it ended."""
    code = ("import sys\nfrom lipsync_bench.cli import main\n"
            "try:\n    main(sys.argv[1:], prog_name='lipsync-bench', standalone_mode=False)\n"
            "except BaseException as exc:\n    print(f'ERROR {exc}', file=sys.stderr)\n"
            "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, **(env or {})})


def test_a_setup_without_its_expert_gstage_or_vgg_stops_before_any_work(tmp_path):
    """setup-A.toml without --sync-expert: one line naming the expert (and VGG-19, which the full-size
    config's perceptual loss needs) and how to get them, before torch is even imported; setup H
    without --silent names G_S; nothing is written."""
    env = {"LIPSYNC_BENCH_WEIGHTS": str(tmp_path / "weights"), "TORCH_HOME": str(tmp_path / "torch")}
    done = _refusal(["train-generator", "--config", "configs/setup-A.toml", "--data", str(tmp_path), "--out",
                     str(tmp_path / "run")], env)
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "train-generator setup A needs a trained sync expert (--sync-expert" in error[0]
    assert "vgg19-dcbb9e9d.pth" in error[0] and "--allow-random" in error[0]
    assert "ERROR 1" in done.stderr and "torch not imported" in done.stderr  # exit status 1
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(main, ["train-generator", "--setup", "H", "--tiny", "--data", str(tmp_path),
                                       "--out", str(tmp_path / "run"), "--sync-expert", str(ROOT / "README.md")])
    assert result.exit_code == 1 and "needs the silent-lip generator G_S (--silent" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_torch_hub_dir_is_found_without_torch_as_torch_finds_it(tmp_path):
    code = ("from lipsync_bench.weights import torch_hub_dir\nimport sys\nassert 'torch' not in sys.modules\n"
            "mine = torch_hub_dir()\nimport torch.hub\nfrom pathlib import Path\n"
            "assert mine == Path(torch.hub.get_dir()), (mine, torch.hub.get_dir())\nprint('same')")
    for env in ({"TORCH_HOME": str(tmp_path / "t")}, {"XDG_CACHE_HOME": str(tmp_path / "x")}):
        base = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env})
        assert done.stdout.strip() == "same", done.stderr


def test_the_judge_under_autocast_stays_within_its_bound():
    """AVSyncNet (full size and tiny, seeded random weights) judging random faces: the similarity under
    bfloat16 autocast within AUTOCAST_BOUND of float32's, and the gradient still reaches the faces."""
    from lipsync_bench.research.generator.trainer import AUTOCAST_BOUND, SyncJudge
    from lipsync_bench.syncnets.avsyncnet import TINY, AVSyncNet, AVSyncNetConfig

    for config, size, windows in ((AVSyncNetConfig(), 224, 1), (TINY, 96, 4)):
        torch.manual_seed(0)
        judge = SyncJudge("avsyncnet", AVSyncNet(config), {"random_init": 0}, size, torch.device("cpu"))
        faces = torch.rand(windows * 5, 3, 96, 96, requires_grad=size == 96)
        mel = torch.randn(windows, 1, 80, 16)
        with torch.set_grad_enabled(size == 96):  # the full-size network's backward in bfloat16 takes minutes here
            exact = judge.similarity(faces, mel)
            fast = judge.similarity(faces, mel, amp=True)
        assert fast.dtype == torch.float32
        assert float((fast - exact).detach().abs().max()) <= AUTOCAST_BOUND, (fast, exact)
    fast.sum().backward()
    assert faces.grad is not None and float(faces.grad.abs().sum()) > 0


def test_default_workers_are_sized_to_the_machine():
    from lipsync_bench.research.training import default_workers

    assert default_workers(torch.device("cpu")) == 0
    assert 1 <= default_workers(torch.device("cuda")) <= 8


def _rows(path: Path, split: str) -> list[dict]:
    with open(path) as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def _variant(path: Path, target: Path) -> Path:
    """The same weights in another file with another checksum (another training of the same network)."""
    ckpt = torch.load(path, weights_only=True)
    ckpt["note"] = "another file"
    torch.save(ckpt, target)
    return target


@pytest.mark.slow
def test_a_smoke_run_validates_keeps_the_best_and_resumes_only_with_its_inputs(sync_clips, tiny_avsyncnet, tmp_path):
    """G_S and G_L (setup H, tiny) with a trained expert, stopped by --max-steps: best.pt, a snapshot, a
    validation row and a sample image each. Resuming G_L with another G_S, another expert or another lr
    is refused naming it; --change lets a named change through and records it."""
    from lipsync_bench.research.generator.trainer import train_generator

    expert = tiny_avsyncnet["checkpoint"]
    kw = dict(cache_dir=sync_clips["cache"], progress=False, log_every=1, val_every=2)
    silent = train_generator(sync_clips["videos"], tmp_path / "gs", GeneratorConfig.silent(tiny=True, batch_size=2),
                             silent_mode=True, sync_expert=expert, max_steps=2, **kw)
    assert silent["random_stand_ins"] == [] and silent["validation"][-1]["step"] == 2
    config = GeneratorConfig.for_setup("H", tiny=True, batch_size=2)
    run = tmp_path / "gl"
    result = train_generator(sync_clips["videos"], run, config, sync_expert=expert, silent=tmp_path / "gs" / "last.pt",
                             max_steps=3, **kw)
    assert result["step"] == 3 and result["random_stand_ins"] == [] and result["val_clips"] >= 1
    assert [v["step"] for v in result["validation"]] == [2, 3]  # every 2 steps, and the last
    assert (run / "best.pt").is_file() and (run / "snapshots" / "step_0000003.pt").is_file()
    assert (run / "samples" / "step_0000003.png").is_file()
    val = _rows(run / "log.csv", "val")
    assert [int(r["step"]) for r in val] == [2, 3]
    for key in ("l1", "l1_mouth", "sync_x", "sync_y", "sync_loss", "lse_c", "lse_d", "score"):
        assert float(val[-1][key]) == pytest.approx(result["validation"][-1][key]), key
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["global_step"] == result["best_step"] and best["train"]["best_score"] == result["best_score"]
    text = result.text()
    assert "validation at step 3" in text and f"best.pt: step {result['best_step']}" in text

    other_gs = _variant(tmp_path / "gs" / "last.pt", tmp_path / "gs_other.pt")
    with pytest.raises(LipsyncBenchError, match=r"silent_generator .*gs/last.pt .*now .*gs_other.pt"):
        train_generator(sync_clips["videos"], run, config, sync_expert=expert, silent=other_gs, max_steps=4,
                        resume=True, **kw)
    with pytest.raises(LipsyncBenchError, match="needs the silent-lip generator G_S"):
        train_generator(sync_clips["videos"], run, config, sync_expert=expert, max_steps=4, resume=True, **kw)
    with pytest.raises(LipsyncBenchError, match=r"silent_generator .*now \{'random_init'"):
        train_generator(sync_clips["videos"], run, config, sync_expert=expert, max_steps=4, resume=True,
                        allow_random=True, **kw)
    other_expert = _variant(expert, tmp_path / "expert_other.pt")
    with pytest.raises(LipsyncBenchError, match=r"sync_expert .*now .*expert_other.pt"):
        train_generator(sync_clips["videos"], run, config, sync_expert=other_expert, silent=tmp_path / "gs" / "last.pt",
                        max_steps=4, resume=True, **kw)
    lower = GeneratorConfig.for_setup("H", tiny=True, batch_size=2, lr=5e-5)
    with pytest.raises(LipsyncBenchError, match=r"lr 0.0001 \(now 5e-05\).*--change lr"):
        train_generator(sync_clips["videos"], run, lower, sync_expert=expert, silent=tmp_path / "gs" / "last.pt",
                        max_steps=4, resume=True, **kw)
    with pytest.raises(LipsyncBenchError, match="--change lr: the same"):
        train_generator(sync_clips["videos"], run, config, sync_expert=expert, silent=tmp_path / "gs" / "last.pt",
                        max_steps=4, resume=True, changes=("lr",), **kw)
    resumed = train_generator(sync_clips["videos"], run, lower, sync_expert=expert, silent=tmp_path / "gs" / "last.pt",
                              max_steps=4, resume=True, changes=("lr",), **kw)
    assert resumed["step"] == 4 and resumed["changes"] == [{"step": 3, "what": "lr", "before": 1e-4, "after": 5e-5}]
    assert json.loads((run / "run.json").read_text())["changes"] == resumed["changes"]
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["optimizer"]["param_groups"][0]["lr"] == 5e-5 and last["train"]["changes"] == resumed["changes"]
    assert "changed on resume at step 3: lr 0.0001 -> 5e-05" in resumed.text()


@pytest.mark.slow
def test_the_expert_validates_every_n_steps_and_at_a_max_steps_stop(sync_clips, tmp_path):
    """train-syncnet stopped by --max-steps in the middle of its first epoch: validation rows at every
    --val-every steps and at the stop, best.pt kept, the stop recorded."""
    from lipsync_bench.research.expert_training import TrainConfig, train_syncnet

    config = TrainConfig(arch="avsyncnet", tiny=True, epochs=5, max_steps=3, val_every=2, batch_size=8, stride=4,
                         val_fraction=0.2)
    result = train_syncnet(sync_clips["videos"], tmp_path, config, cache_dir=sync_clips["cache"], progress=False)
    assert result["step"] == 3 and result["epoch"] == 0  # stopped mid-epoch
    assert [int(r["step"]) for r in _rows(tmp_path / "log.csv", "val")] == [2, 3]
    assert (tmp_path / "best.pt").is_file()
    assert result["history"][-1]["epoch_end"] is False and "val_loss" in result["history"][-1]
    assert "stopped in epoch 1 (step 3)" in result.text()
    with pytest.raises(LipsyncBenchError, match=r"other settings or inputs: lr .*--change lr"):
        train_syncnet(sync_clips["videos"], tmp_path, TrainConfig(**{**config.__dict__, "lr": 1e-5}), resume=True,
                      cache_dir=sync_clips["cache"], progress=False)
