"""End-to-end training on the synthetic sample tree: the loss goes down, resume is exact, DDP matches one process.

ResNet-50 on CPU is slow: batches of 1–2, a handful of steps, one thread per process.
"""

from __future__ import annotations

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


def test_finetune_lowers_the_training_loss(sample_tree, tmp_path):
    from gtacli.train.loop import Trainer, TrainOptions, set_train_mode
    from gtacli.train.recipe import apply_cli_overrides, get_recipe

    torch.set_num_threads(2)
    recipe = apply_cli_overrides(
        get_recipe("gta-spin-ft"),
        batch_size=2,
        num_data=20,
        epochs=1,
        workers=0,
        settings={"eval_each_epoch": "false", "log_interval": "1"},
    )  # the published lr 3e-5, BatchNorm in train mode, dropout on
    opts = TrainOptions(
        command="finetune", recipe=recipe, data_root=sample_tree, work_dir=tmp_path / "run", device="cpu",
        seed=0, max_steps=5, progress=False, log=lambda m: None, warn=lambda m: None,
    )  # fmt: skip
    trainer = Trainer(opts).setup()
    trainer.sampler.set_epoch(0)
    fixed = trainer.to_device(next(iter(trainer.loader)))

    def loss_on_fixed():
        # batch statistics (train-mode BN), no dropout: a deterministic measure of the same model state
        set_train_mode(trainer.model, trainer.recipe.override(dropout=False))
        with torch.no_grad():
            return float(trainer.forward_losses(fixed)["loss"])

    before = loss_on_fixed()
    summary = trainer.run()
    after = loss_on_fixed()
    assert summary["global_step"] == 5
    print(f"loss on a fixed batch: {before:.4f} -> {after:.4f}")
    assert after < 0.8 * before, (before, after)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 5 and all("grad_norm" in r and "data_time_s" in r for r in steps)
    assert json.loads((tmp_path / "run" / "recipe.json").read_text())["batch_size"] == 2


def test_resume_after_kill_ends_with_the_weights_of_an_unbroken_run(sample_tree, tmp_path):
    common = [
        "finetune", "--data-root", str(sample_tree), "--batch-size", "2", "--num-data", "4", "--epochs", "2",
        "--workers", "0", "--device", "cpu", "--seed", "3", "--quiet", "--set", "eval_each_epoch=false",
    ]  # fmt: skip
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    unbroken = _gtacli([*common, "--work-dir", str(whole)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    victim = _gtacli(
        [*common, "--work-dir", str(broken)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not (broken / "epoch_1.pth").exists():
        assert victim.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (broken / "epoch_2.pth").exists(), "killed too late: epoch 2 was already written"
    resumed = _gtacli([*common, "--work-dir", str(broken), "--resume", str(broken)], stderr=subprocess.PIPE)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    _, err = unbroken.communicate(timeout=300)
    assert unbroken.returncode == 0, err.decode()
    a, b = _state(whole / "epoch_2.pth"), _state(broken / "epoch_2.pth")
    assert (
        a["train_state"]
        == b["train_state"]
        == {"epoch": 2, "position": 0, "global_step": 4, "samples_seen": 8}
    )
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for name in ("backbone", "head"):
        sa, sb = a["optimizers"][name]["state"], b["optimizers"][name]["state"]
        assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    # no half-written checkpoint anywhere
    assert not list(broken.glob(".*tmp*")) and not list(whole.glob(".*tmp*"))


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
        [sys.executable, "-m", "gtacli", *common, "--work-dir", str(tmp_path / "split"), "--resume", str(tmp_path / "split")],
        env=_env(), cwd=REPO, capture_output=True, timeout=300,
    )  # fmt: skip
    assert rest.returncode == 0, rest.stderr.decode()[-2000:]
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err.decode()[-2000:]
    a, b = _state(tmp_path / "whole" / "epoch_1.pth"), _state(tmp_path / "split" / "epoch_1.pth")
    assert a["train_state"] == b["train_state"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


def test_two_processes_under_torchrun_match_one_process_with_the_same_global_batch(sample_tree, tmp_path):
    """BatchNorm statistics frozen and dropout off: per-GPU BN differs from one big batch by design.
    GTA only (every sample has the same confident-keypoint count, so per-rank loss normalisation
    equals the global one)."""
    common = [
        "finetune", "--data-root", str(sample_tree), "--num-data", "4", "--epochs", "1", "--workers", "0",
        "--device", "cpu", "--quiet", "--json",
        "--set", "datasets=gta", "--set", "partition=1", "--set", "bn_eval=true", "--set", "dropout=false",
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
