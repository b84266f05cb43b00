"""End-to-end training on the synthetic sample tree: the loss goes down, resume is exact, DDP matches one process.

ResNet-50 on CPU is slow: batches of 1–2, a handful of steps, one thread per process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO), GTACLI_PROGRESS="0")
    return env


def _gtacli(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "gtacli", *args], env=_env(), cwd=REPO, **kwargs)


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _recipe(**settings):
    from gtacli.train.recipe import apply_cli_overrides, get_recipe

    # the published lr 3e-5, BatchNorm in train mode, dropout on
    return apply_cli_overrides(
        get_recipe("gta-spin-ft"), {"eval_each_epoch": "false", "log_interval": "1", **settings}, workers=0
    )


def _options(sample_tree, work_dir, recipe, **kwargs):
    from gtacli.train.options import TrainOptions

    return TrainOptions(
        command="finetune", recipe=recipe, data_root=sample_tree, work_dir=work_dir, device="cpu", seed=0,
        handle_signals=False, **kwargs,
    )  # fmt: skip


@pytest.mark.slow
def test_finetune_lowers_the_training_loss(sample_tree, tmp_path):
    from gtacli.train.loop import Trainer
    from gtacli.train.optim import set_train_mode

    torch.set_num_threads(2)
    recipe = _recipe(**{"optim.batch_size": "2", "optim.num_data": "20", "optim.epochs": "1"})
    trainer = Trainer(_options(sample_tree, tmp_path / "run", recipe, max_steps=5)).setup()
    trainer.sampler.set_epoch(0)
    fixed = trainer.step.to_device(next(iter(trainer.loader)))
    assert fixed["img"].is_contiguous(memory_format=torch.channels_last)  # built in that layout by collate
    assert trainer.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)

    def loss_on_fixed():
        # batch statistics (train-mode BN), no dropout: a deterministic measure of the same model state
        set_train_mode(trainer.model, dataclasses.replace(trainer.recipe.optim, dropout=False))
        with torch.no_grad():
            return float(trainer.step.forward_losses(fixed)["loss"])

    before = loss_on_fixed()
    summary = trainer.run()
    after = loss_on_fixed()
    assert summary["global_step"] == 5
    print(f"loss on a fixed batch: {before:.4f} -> {after:.4f}")
    assert after < 0.8 * before, (before, after)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 5 and all("grad_norm" in r and "data_time_s" in r for r in steps)
    assert json.loads((tmp_path / "run" / "recipe.json").read_text())["optim"]["batch_size"] == 2


def _wait_for(predicate, process, what, timeout=240):
    deadline = time.time() + timeout
    while not predicate():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _step_lines(work_dir):
    path = work_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return sum('"loss"' in line for line in path.read_text().splitlines())


@pytest.mark.slow
def test_killed_and_preempted_runs_resume_to_the_weights_of_an_unbroken_run(sample_tree, tmp_path):
    """The DEFAULT recipe (3DPW evaluation after each epoch on): a kill -9 after epoch 1 and a SIGTERM after the
    first step both resume to the bit-identical weights, optimiser state and counters of an unbroken run."""
    common = [
        "finetune", "--data-root", str(sample_tree), "--batch-size", "2", "--num-data", "4", "--epochs", "2",
        "--workers", "0", "--device", "cpu", "--seed", "3", "--quiet", "--set", "log_interval=1",
    ]  # fmt: skip
    whole, killed, preempted = tmp_path / "whole", tmp_path / "killed", tmp_path / "preempted"
    unbroken = _gtacli([*common, "--work-dir", str(whole)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = _gtacli(
        [*common, "--work-dir", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_for(lambda: (killed / "epoch_1.pth").exists(), victim, "its first checkpoint")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (killed / "epoch_2.pth").exists(), "killed too late: epoch 2 was already written"

    term = _gtacli([*common, "--work-dir", str(preempted)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(lambda: _step_lines(preempted) >= 1, term, "its first step")
    term.send_signal(signal.SIGTERM)
    _, err = term.communicate(timeout=300)
    assert term.returncode == 143, err.decode()[-2000:]
    assert "SIGTERM" in err.decode() and "--resume" in err.decode()
    stopped = _state(preempted / "latest.pth")["train_state"]
    assert 1 <= stopped["global_step"] < 4  # a resumable checkpoint of a run that was not finished

    for work in (killed, preempted):  # a bare --resume continues the run in --work-dir
        resumed = _gtacli([*common, "--work-dir", str(work), "--resume"], stderr=subprocess.PIPE)
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err.decode()[-2000:]
    _, err = unbroken.communicate(timeout=300)
    assert unbroken.returncode == 0, err.decode()
    a = _state(whole / "epoch_2.pth")
    for work in (killed, preempted):
        b = _state(work / "epoch_2.pth")
        expected = {"epoch": 2, "position": 0, "global_step": 4, "samples_seen": 8}
        assert a["train_state"] == b["train_state"] == expected
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key]), (work.name, key)
        for name in ("backbone", "head"):
            sa, sb = a["optimizers"][name]["state"], b["optimizers"][name]["state"]
            assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
        # the evaluation after each epoch ran (the default recipe), and no half-written checkpoint is left
        evals = [
            json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if '"eval"' in line
        ]
        assert evals, work.name
        assert not list(work.glob(".*tmp*"))
    assert not list(whole.glob(".*tmp*"))


@pytest.mark.slow
def test_resume_mid_epoch_with_workers_matches_an_unbroken_epoch(sample_tree, tmp_path):
    """--max-steps stops inside an epoch (latest.pth holds the sampler position); --resume finishes it."""
    common = [
        "finetune", "--data-root", str(sample_tree), "--batch-size", "2", "--num-data", "6", "--epochs", "1",
        "--workers", "2", "--device", "cpu", "--quiet", "--set", "eval_each_epoch=false",
    ]  # fmt: skip
    whole = _gtacli([*common, "--work-dir", str(tmp_path / "whole")], stderr=subprocess.PIPE)
    first = subprocess.run(
        [sys.executable, "-m", "gtacli", *common, "--work-dir", str(tmp_path / "split"), "--max-steps", "1"],
        env=_env(), cwd=REPO, capture_output=True, timeout=300,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr.decode()[-2000:]
    assert _state(tmp_path / "split" / "latest.pth")["train_state"]["position"] == 2
    rest = subprocess.run(
        [sys.executable, "-m", "gtacli", *common, "--work-dir", str(tmp_path / "split"), "--resume"],
        env=_env(), cwd=REPO, capture_output=True, timeout=300,
    )  # fmt: skip
    assert rest.returncode == 0, rest.stderr.decode()[-2000:]
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err.decode()[-2000:]
    a, b = _state(tmp_path / "whole" / "epoch_1.pth"), _state(tmp_path / "split" / "epoch_1.pth")
    assert a["train_state"] == b["train_state"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


@pytest.mark.slow
def test_two_processes_under_torchrun_match_one_process_with_the_same_global_batch(sample_tree, tmp_path):
    """BatchNorm statistics frozen and dropout off: per-GPU BN differs from one big batch by design.
    GTA only (every sample has the same confident-keypoint count, so per-rank loss normalisation
    equals the global one)."""
    common = [
        "finetune", "--data-root", str(sample_tree), "--num-data", "4", "--epochs", "1", "--workers", "0",
        "--device", "cpu", "--quiet", "--json",
        "--set", "data.datasets=gta", "--set", "data.partition=1", "--set", "optim.bn_eval=true",
        "--set", "optim.dropout=false",
        "--set", "log_interval=1", "--set", "eval_each_epoch=false",
    ]  # fmt: skip
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "gtacli",
         *common, "--batch-size", "1", "--work-dir", str(ddp_dir)],
        env=_env(), cwd=REPO, capture_output=True, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    summary = json.loads(ddp.stdout)  # rank 0 alone prints one JSON document
    assert summary["world_size"] == 2 and summary["samples_seen"] == 4 and summary["global_step"] == 2
    single = subprocess.run(
        [sys.executable, "-m", "gtacli", *common, "--batch-size", "2", "--work-dir", str(single_dir)],
        env=_env(), cwd=REPO, capture_output=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr.decode()[-3000:]
    a, b = _state(ddp_dir / "epoch_1.pth"), _state(single_dir / "epoch_1.pth")
    moved = mismatched = total = 0
    for key, value in a["state_dict"].items():
        diff = (value.double() - b["state_dict"][key].double()).abs()
        # Adam's step is lr * m / (sqrt(v) + eps): where a gradient is ~0, float rounding of the all-reduce vs one
        # big batch can move a weight by up to ~lr (3e-5). Such elements must be rare; a real error moves most.
        assert float(diff.max()) < 1e-4, key
        mismatched += int((diff > 1e-6).sum())
        total += diff.numel()
        moved += int(not torch.equal(value, _initial(sample_tree)[key]))
    assert mismatched <= 1e-4 * total, (mismatched, total)
    # two steps: the first moves only the head's decoders when they start at zero, the second reaches the backbone
    assert moved > 100
    for line_a, line_b in zip(
        *((d / "metrics.jsonl").read_text().splitlines() for d in (ddp_dir, single_dir))
    ):
        ra, rb = json.loads(line_a), json.loads(line_b)
        assert ra["step"] == rb["step"]
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-4)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_INITIAL = {}


def _initial(root):
    if "sd" not in _INITIAL:
        from gtacli.model.checkpoint import read_state_dict

        _INITIAL["sd"] = read_state_dict(Path(root) / "pretrained_models" / "spin_official.pth")[0]
    return _INITIAL["sd"]


@pytest.mark.slow
def test_the_after_epoch_evaluation_leaves_the_training_rng_untouched(sample_tree, tmp_path):
    """The 3DPW pass draws from the global RNGs; the checkpoint written before it holds the RNG state, so the
    training after it must see that state again (else a resumed run diverges from an unbroken one)."""
    import random

    import numpy as np

    from gtacli.evaluate.runner import evaluate_model
    from gtacli.train.loop import Trainer

    def snapshot():
        return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()

    recipe = _recipe(**{"optim.batch_size": "1", "optim.num_data": "1", "eval_each_epoch": "true"})
    trainer = Trainer(_options(sample_tree, tmp_path / "run", recipe, evaluator=evaluate_model)).setup()
    try:
        before = snapshot()
        trainer._evaluate(None)
        after = snapshot()
        assert (
            torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
        )
        # the evaluation itself does draw (so the check above can fail): the same call without the guard
        evaluate_model(trainer.model, trainer.layout, device=trainer.device)
        changed = snapshot()
        assert not (
            torch.equal(before[0], changed[0])
            and np.array_equal(before[1], changed[1])
            and before[2] == changed[2]
        )
    finally:
        trainer.close()


@pytest.mark.slow
def test_sigterm_under_torchrun_stops_every_rank_at_the_same_step_and_resumes_exactly(sample_tree, tmp_path):
    """torchrun forwards SIGTERM to its workers: they agree on the step to stop after, rank 0 saves one
    checkpoint holding both ranks' RNG states, and `--resume` ends with the weights of an unbroken DDP run."""

    def torchrun(work, *extra, **kwargs):
        args = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
            str(_free_port()), "-m", "gtacli", "finetune", "--data-root", str(sample_tree), "--num-data", "12",
            "--epochs", "1", "--workers", "0", "--device", "cpu", "--batch-size", "1", "--set", "log_interval=1",
            "--set", "eval_each_epoch=false", "--work-dir", str(work), *extra,
        ]  # fmt: skip
        return subprocess.Popen(args, env=_env(), cwd=REPO, **kwargs)

    whole, preempted = tmp_path / "whole", tmp_path / "preempted"
    unbroken = torchrun(whole, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = torchrun(preempted, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(lambda: _step_lines(preempted) >= 1, victim, "its first step")
    victim.send_signal(signal.SIGTERM)  # torchrun passes it on to both workers
    _, err = victim.communicate(timeout=300)
    assert "SIGTERM: stopped after step" in err.decode(), err.decode()[-3000:]
    saved = _state(preempted / "latest.pth")
    assert len(saved["rng"]) == 2 and 1 <= saved["train_state"]["global_step"] < 6
    resumed = torchrun(preempted, "--resume", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-3000:]
    _, err = unbroken.communicate(timeout=300)
    assert unbroken.returncode == 0, err.decode()[-3000:]
    a, b = _state(whole / "epoch_1.pth"), _state(preempted / "epoch_1.pth")
    assert (
        a["train_state"]
        == b["train_state"]
        == {"epoch": 1, "position": 0, "global_step": 6, "samples_seen": 12}
    )
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
