"""`gtacli finetune` / `gtacli train` on bad input: one line, exit 1, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

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
        for option in ("--init", "--recipe", "--work-dir", "--resume", "--set", "--max-steps", "--num-data"):
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


def test_finetune_json_result_and_synthetic_warning_once(sample_tree, tmp_path):
    work = tmp_path / "run"
    result = _finetune(sample_tree, work, "--max-steps", "1", "--set", "eval_each_epoch=false")
    summary = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert summary["global_step"] == 1 and summary["recipe"] == "gta-spin-ft" and summary["synthetic_data"]
    assert (work / "latest.pth").is_file() and (work / "recipe.json").is_file()
    assert result.output.count("synthetic sample tree") == 1
    # a run stopped by --max-steps before the first log interval still logs its steps
    assert len(_metrics(work)) == 1
    # a fresh run in the same work dir starts its metrics anew instead of appending to the old run's
    _finetune(sample_tree, work, "--max-steps", "1", "--set", "eval_each_epoch=false")
    assert len(_metrics(work)) == 1
    # the run records the recipe's default init when --init is not given...
    assert json.loads((work / "recipe.json").read_text())["init"] == "spin_official"


def test_train_without_imagenet_weights_says_how_to_get_them(sample_tree, tmp_path):
    result, errors = _invoke(["train", "--data-root", str(sample_tree), "--work-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "resnet50-0676ba61.pth" in errors[0] and "gtacli fetch resnet50_imagenet" in errors[0]
    assert "--init none" in errors[0]  # the synthetic tree has no ImageNet weights: say what works there


def test_the_run_records_the_init_it_started_from(sample_tree, tmp_path):
    work = tmp_path / "run"
    _finetune(sample_tree, work, "--init", "none", "--max-steps", "1", "--set", "eval_each_epoch=false")
    assert json.loads((work / "recipe.json").read_text())["init"] == "none"


def test_an_epoch_ends_with_a_checkpoint_and_a_3dpw_evaluation(sample_tree, tmp_path):
    work = tmp_path / "run"
    _finetune(sample_tree, work, "--num-data", "2", "--epochs", "1")
    assert (work / "epoch_1.pth").is_file() and (work / "latest.pth").is_file()
    evals = [r["eval"] for r in _metrics(work) if "eval" in r]
    assert len(evals) == 1 and evals[0]["frames"] > 0
    assert 0 < evals[0]["pa_mpjpe_mm"] <= evals[0]["mpjpe_mm"]
