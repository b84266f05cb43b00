"""`gtacli finetune` / `gtacli train` on bad input: one line, exit 1, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gtacli.cli.app import app

RUNNER = CliRunner()


def _invoke(args):
    result = RUNNER.invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    return result, lines


def _partial_tree(sample_tree: Path, dest: Path, drop: str) -> Path:
    """A data root that links everything of the sample tree except one file."""
    for item in sample_tree.rglob("*"):
        rel = item.relative_to(sample_tree)
        if item.is_dir() or str(rel) == drop:
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(item)
    return dest


def _no_checkpoints(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.rglob("*") if p.suffix == ".pth" or "tmp" in p.name]


def _finetune(sample_tree: Path, work: Path, *extra: str):
    """A tiny CPU finetune on the sample tree (one step unless `extra` says otherwise)."""
    args = [
        "finetune", "--data-root", str(sample_tree), "--work-dir", str(work), "--device", "cpu", "--json",
        "--batch-size", "1", "--workers", "0", *extra,
    ]  # fmt: skip
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _metrics(work: Path):
    return [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_help_has_examples():
    for command in ("finetune", "train"):
        result = RUNNER.invoke(app, [command, "--help"])
        assert result.exit_code == 0
        for option in (
            "--init", "--recipe", "--work-dir", "--resume", "--set", "--max-steps", "--num-data", "--overwrite",
            "--save-every",
        ):  # fmt: skip
            assert option in result.output
        assert "Examples" in result.output
    assert "resnet50-0676ba61.pth" in RUNNER.invoke(app, ["train", "--help"]).output


def test_missing_dataset_points_to_check_layout(sample_tree, tmp_path):
    root = _partial_tree(sample_tree, tmp_path / "data", "preprocessed_datasets/spin_lsp_train.npz")
    work = tmp_path / "run"
    result, errors = _invoke(
        ["finetune", "--data-root", str(root), "--work-dir", str(work), "--device", "cpu"]
    )
    assert result.exit_code == 1 and len(errors) == 1
    assert "spin_lsp_train.npz" in errors[0] and "check-layout --for finetune" in errors[0]
    assert _no_checkpoints(work)


def test_missing_fits_points_to_check_layout(sample_tree, tmp_path):
    root = _partial_tree(sample_tree, tmp_path / "data", "static_fits/coco_fits.npy")
    result, errors = _invoke(["finetune", "--data-root", str(root), "--work-dir", str(tmp_path / "r")])
    assert (
        result.exit_code == 1
        and len(errors) == 1
        and "coco_fits.npy" in errors[0]
        and "check-layout" in errors[0]
    )


def test_incompatible_init_is_refused(sample_tree, tmp_path):
    wrong_shape = tmp_path / "resnet18ish.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(64, 3, 3, 3)}}, wrong_shape)
    head_only = tmp_path / "head_only.pth"
    torch.save({"state_dict": {"head.deccam.bias": torch.zeros(3)}}, head_only)
    for path in (wrong_shape, head_only):
        work = tmp_path / f"run_{path.stem}"
        result, errors = _invoke(
            [
                "finetune",
                "--data-root",
                str(sample_tree),
                "--init",
                str(path),
                "--work-dir",
                str(work),
                "--device",
                "cpu",
            ]
        )
        assert result.exit_code == 1 and len(errors) == 1, result.output
        assert str(path) in errors[0]
        assert _no_checkpoints(work) and not work.exists()  # a refused run leaves no empty work dir


def test_unwritable_work_dir(sample_tree, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result, errors = _invoke(
        ["finetune", "--data-root", str(sample_tree), "--work-dir", str(blocker / "run")]
    )
    assert result.exit_code == 1 and len(errors) == 1 and "cannot write the work directory" in errors[0]


def test_resume_from_another_recipe(sample_tree, tmp_path):
    from gtacli.train.recipe import get_recipe

    ckpt = tmp_path / "spin_run" / "latest.pth"
    ckpt.parent.mkdir()
    torch.save(
        {
            "meta": {
                "format": "gtacli",
                "checkpoint": "gtacli-train",
                "recipe": get_recipe("spin").to_dict(),
                "seed": 0,
            },
            "state_dict": {},
            "train_state": {"epoch": 1, "position": 0, "global_step": 3, "samples_seen": 24},
        },
        ckpt,
    )
    work = tmp_path / "run"
    result, errors = _invoke(
        ["finetune", "--data-root", str(sample_tree), "--work-dir", str(work), "--resume", str(ckpt.parent)]
    )
    assert result.exit_code == 1 and len(errors) == 1
    assert "recipe 'spin'" in errors[0] and "--recipe spin" in errors[0]
    assert _no_checkpoints(work)


def test_bad_set_is_a_usage_error(sample_tree, tmp_path):
    result, errors = _invoke(["finetune", "--data-root", str(sample_tree), "--set", "epochs=ten"])
    assert result.exit_code == 2 and len(errors) == 1 and "epochs" in errors[0]


@pytest.mark.slow
def test_finetune_json_result_and_synthetic_warning_once(sample_tree, tmp_path):
    work = tmp_path / "run"
    result = _finetune(sample_tree, work, "--max-steps", "1", "--set", "eval_each_epoch=false")
    summary = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert summary["global_step"] == 1 and summary["recipe"] == "gta-spin-ft" and summary["synthetic_data"]
    assert (work / "latest.pth").is_file() and (work / "recipe.json").is_file()
    assert result.output.count("synthetic sample tree") == 1
    # a run stopped by --max-steps before the first log interval still logs its steps
    assert len(_metrics(work)) == 1
    # the run records the recipe's default init when --init is not given...
    assert json.loads((work / "recipe.json").read_text())["init"] == "spin_official"
    assert not (work / ".gtacli-train.lock").exists()  # released at the end


@pytest.mark.slow
def test_a_used_work_dir_needs_resume_or_overwrite(sample_tree, tmp_path):
    work = tmp_path / "run"
    _finetune(sample_tree, work, "--max-steps", "1", "--num-data", "4", "--set", "eval_each_epoch=false")
    before = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    result, errors = _invoke(
        ["finetune", "--data-root", str(sample_tree), "--work-dir", str(work), "--device", "cpu"]
    )
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "not empty" in errors[0] and "--resume" in errors[0] and "--overwrite" in errors[0]
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == before  # nothing touched
    # --overwrite starts anew: the old run's files go (metrics start over), the user's own files stay,
    # a run-like name included (no recorded run wrote it)
    (work / "epoch_best.pth").write_bytes(b"the user's checkpoint")
    (work / "notes.txt").write_text("mine")
    _finetune(
        sample_tree,
        work,
        "--overwrite",
        "--max-steps",
        "1",
        "--num-data",
        "4",
        "--set",
        "eval_each_epoch=false",
    )
    assert len(_metrics(work)) == 1 and (work / "epoch_best.pth").read_bytes() == b"the user's checkpoint"
    assert (work / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_a_second_run_into_a_locked_work_dir_refuses_naming_the_first(sample_tree, tmp_path):
    import os
    import socket

    work = tmp_path / "run"
    work.mkdir()
    lock = work / ".gtacli-train.lock"
    # a live process on this host holds it (this test's own process stands in for the running trainer)
    lock.write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-01 00:00:00"})
    )
    result, errors = _invoke(
        ["finetune", "--data-root", str(sample_tree), "--work-dir", str(work), "--device", "cpu", "--max-steps",
         "1", "--batch-size", "1", "--workers", "0"]
    )  # fmt: skip
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert (
        f"pid {os.getpid()}" in errors[0] and socket.gethostname() in errors[0] and "2026-01-01" in errors[0]
    )
    assert lock.exists() and not (work / "latest.pth").exists()


@pytest.mark.slow
def test_a_stale_lock_and_stale_temp_files_are_cleared_at_start(sample_tree, tmp_path):
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    work = tmp_path / "run"
    work.mkdir()
    (work / ".gtacli-train.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    temps = [work / ".latest.tmp-12345-deadbeef.pth", work / ".epoch_1.tmp-12345-cafe0123.pth"]
    for temp in temps:
        temp.write_bytes(b"half a checkpoint")
    # the killed run had recorded the files it was saving (before writing them)
    (work / ".gtacli-run.json").write_text(json.dumps({"files": ["latest.pth", "epoch_1.pth"]}))
    result = _finetune(
        sample_tree, work, "--max-steps", "1", "--num-data", "4", "--set", "eval_each_epoch=false"
    )
    assert not any(t.exists() for t in temps) and (work / "latest.pth").is_file()
    assert "removed 2 temp file(s)" in result.output and "lock of a run that is gone" in result.output


def test_bare_resume_parses_and_uses_the_work_dir(sample_tree, tmp_path):
    """`gtacli finetune --init X --work-dir D --resume` (the README's command): --resume takes no value."""
    work = tmp_path / "run"
    init = str(sample_tree / "pretrained_models" / "spin_official.pth")
    args = ["finetune", "--data-root", str(sample_tree), "--init", init, "--work-dir", str(work), "--resume"]
    result, errors = _invoke(args)
    assert result.exit_code == 1 and len(errors) == 1, result.output  # parsed; nothing to resume yet
    assert "no checkpoint to resume from" in errors[0] and str(work) in errors[0]
    result, errors = _invoke(["finetune", "--data-root", str(sample_tree), str(work)])
    assert result.exit_code == 2 and "--resume" in errors[0]  # a bare path is not silently taken


def test_bad_numbers_are_usage_errors_before_any_work(sample_tree, tmp_path):
    work = tmp_path / "run"
    for extra in (["--lr", "nan"], ["--lr", "inf"], ["--lr", "0"], ["--lr", "-1e-5"], ["--save-every", "0"],
                  ["--seed", "-1"], ["--set", "losses.camera=inf"], ["--set", "optim.adam_eps=nan"]):  # fmt: skip
        result, errors = _invoke(
            ["finetune", "--data-root", str(sample_tree), "--work-dir", str(work), *extra]
        )
        assert result.exit_code == 2, (extra, result.output)
        assert not work.exists(), extra


@pytest.mark.slow
def test_a_nonfinite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(sample_tree, tmp_path):
    """lr 1e30 moves the weights to ~1e30 in step 1 (finite, saved by --save-every 1); step 2's activations
    overflow, so its loss is not finite: the run stops naming step 2 and latest.pth stays step 1's."""
    work = tmp_path / "run"
    args = [
        "finetune", "--data-root", str(sample_tree), "--work-dir", str(work), "--device", "cpu", "--batch-size",
        "1", "--workers", "0", "--num-data", "8", "--epochs", "1", "--lr", "1e30", "--save-every", "1",
        "--set", "eval_each_epoch=false",
    ]  # fmt: skip
    result, errors = _invoke(args)
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "non-finite loss at step 2" in errors[0]
    saved = torch.load(work / "latest.pth", map_location="cpu", weights_only=True)
    assert (
        saved["train_state"]["global_step"] == 1 and saved["train_state"]["position"] == 1
    )  # --save-every 1
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    assert not (work / ".gtacli-train.lock").exists()


@pytest.mark.slow
def test_progress_records_reach_a_log_file(sample_tree, tmp_path):
    """stderr redirected to a file (nohup, SLURM): the ProgressBar's periodic records carry our numbers."""
    import os
    import subprocess
    import sys

    # a record at every update (the default is one every 30 s, longer than this tiny run)
    env = dict(
        os.environ,
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        OMP_NUM_THREADS="1",
        GTACLI_PROGRESS_INTERVAL="0",
    )
    env.pop("GTACLI_PROGRESS", None)
    log = tmp_path / "train.log"
    with open(log, "w") as fp:
        done = subprocess.run(
            [sys.executable, "-m", "gtacli", "finetune", "--data-root", str(sample_tree), "--work-dir",
             str(tmp_path / "run"), "--device", "cpu", "--batch-size", "1", "--workers", "0", "--num-data", "3",
             "--epochs", "1", "--set", "eval_each_epoch=false"],
            stdout=fp, stderr=subprocess.STDOUT, env=env, timeout=600,
        )  # fmt: skip
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    start, end = text.index("process(es) on cpu"), text.index("gtacli gta-spin-ft")
    between = [line for line in text[start:end].splitlines() if "samples/s" in line and "epoch 1/1" in line]
    assert len(between) >= 3, text[start:end]  # one per step of the 3 (plus the closing record)
    assert all("loss" in line and "data wait" in line for line in between)


def test_train_without_imagenet_weights_says_how_to_get_them(sample_tree, tmp_path):
    result, errors = _invoke(["train", "--data-root", str(sample_tree), "--work-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "resnet50-0676ba61.pth" in errors[0] and "gtacli fetch resnet50_imagenet" in errors[0]
    assert "--init none" in errors[0]  # the synthetic tree has no ImageNet weights: say what works there


@pytest.mark.slow
def test_the_run_records_the_init_it_started_from(sample_tree, tmp_path):
    work = tmp_path / "run"
    _finetune(sample_tree, work, "--init", "none", "--max-steps", "1", "--set", "eval_each_epoch=false")
    assert json.loads((work / "recipe.json").read_text())["init"] == "none"


@pytest.mark.slow
def test_an_epoch_ends_with_a_checkpoint_and_a_3dpw_evaluation(sample_tree, tmp_path):
    work = tmp_path / "run"
    _finetune(sample_tree, work, "--num-data", "2", "--epochs", "1")
    assert (work / "epoch_1.pth").is_file() and (work / "latest.pth").is_file()
    evals = [r["eval"] for r in _metrics(work) if "eval" in r]
    assert len(evals) == 1 and evals[0]["frames"] > 0
    assert 0 < evals[0]["pa_mpjpe_mm"] <= evals[0]["mpjpe_mm"]


@pytest.mark.slow  # a real demo / subprocess run of several seconds: full suite only
def test_resume_continues_the_saved_recipe_and_extends_only_when_asked(sample_tree, tmp_path):
    """Issue 23 item 3: a bare --resume of a finished 2-epoch run keeps its recipe (no 'ignoring changed' for
    options nobody gave, not the default 10 epochs), says there is nothing to do and exits 0; --epochs 3 extends."""
    work = tmp_path / "run"
    _finetune(sample_tree, work, "--num-data", "2", "--epochs", "2", "--set", "eval_each_epoch=false")
    base = ["finetune", "--data-root", str(sample_tree), "--work-dir", str(work), "--device", "cpu"]
    result = RUNNER.invoke(app, [*base, "--resume"])
    assert result.exit_code == 0, result.output
    assert "ignoring changed" not in result.output and "nothing to do" in result.output
    assert not (work / "epoch_3.pth").exists()
    result = RUNNER.invoke(app, [*base, "--resume", "--epochs", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert "extending from 2 to 3 epochs" in result.output and "ignoring changed" not in result.output
    assert (work / "epoch_3.pth").is_file() and not (work / "epoch_4.pth").exists()
    saved = json.loads((work / "recipe.json").read_text())
    assert (
        saved["optim"]["epochs"] == 3
        and saved["optim"]["batch_size"] == 1
        and saved["eval_each_epoch"] is False
    )


def test_keep_last_removes_older_epoch_checkpoints(sample_tree, tmp_path):
    work = tmp_path / "run"
    result = _finetune(
        sample_tree,
        work,
        "--num-data",
        "1",
        "--epochs",
        "3",
        "--keep-last",
        "2",
        "--set",
        "eval_each_epoch=false",
    )
    assert sorted(p.name for p in work.glob("*.pth")) == ["epoch_2.pth", "epoch_3.pth", "latest.pth"]
    assert torch.load(work / "latest.pth", weights_only=False, map_location="cpu")["meta"]["epoch"] == 3
    assert "removed epoch_1.pth" in result.output


def test_the_start_prints_only_what_differs_from_the_recipe(sample_tree, tmp_path):
    """Issue 23 item 5: no 140-line JSON recipe on stderr; --debug prints it."""
    work = tmp_path / "run"
    result = _finetune(sample_tree, work, "--max-steps", "1", "--lr", "0.0001")
    assert '"lr_schedule"' not in result.output and "optim.lr=0.0001" in result.output
    assert "recipe.json" in result.output
    result = _finetune(sample_tree, tmp_path / "run2", "--max-steps", "1", "--debug")
    assert '"lr_schedule"' in result.output


def test_a_typo_in_set_suggests_the_field(sample_tree, tmp_path):
    result, errors = _invoke(
        [
            "finetune",
            "--data-root",
            str(sample_tree),
            "--work-dir",
            str(tmp_path / "r"),
            "--set",
            "optim.lrr=1e-4",
        ]
    )
    assert result.exit_code == 2 and "did you mean optim.lr" in errors[0], result.output
