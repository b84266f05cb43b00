"""`gtacli quickstart` end to end on a tiny synthetic tree, as a user runs it."""

from __future__ import annotations

import inspect
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_reports_metrics(tmp_path: Path) -> None:
    directory = tmp_path / "qs"
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "quickstart", "--dir", str(directory), "--size", "tiny",
         "--steps", "3", "--batch-size", "2", "--json"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)  # exactly one JSON document on stdout
    assert summary["synthetic"] is True
    assert proc.stderr.count("SYNTHETIC") == 1, (
        proc.stderr
    )  # told once (the children's notes go to their logs)
    assert "SYNTHETIC" in summary["warning"] and "below" not in summary["warning"]
    assert summary["directory"] == str(directory.resolve())
    # the resolved recipe is a file in the run folder, not a JSON dump on the terminal
    recipe = json.loads(Path(summary["recipe"]).read_text())
    assert Path(summary["recipe"]).parent == directory / "run" and recipe
    assert '"' not in proc.stderr.split("SYNTHETIC")[1], proc.stderr  # no JSON on stderr after the warning
    logs = Path(summary["logs"])
    assert sorted(p.name for p in logs.iterdir()) == [
        "check-layout.log", "demo.log", "eval.log", "finetune.log", "sample-data.log",
    ]  # fmt: skip
    assert "convergence" in summary["loss_note"]
    assert summary["check_layout_ok"] is True
    assert summary["steps"] == 3
    assert Path(summary["checkpoint"]).is_file()
    for key in ("mpjpe_mm", "pa_mpjpe_mm"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]) and summary[key] > 0
    assert summary["pa_mpjpe_mm"] <= summary["mpjpe_mm"] + 1e-6  # Procrustes can only reduce the error
    assert summary["eval_frames"] > 0
    # 3 steps -> one metrics record per step, so each window's mean is that step's loss
    windows = summary["loss_windows"]
    assert [w["step"] for w in windows] == [1, 2, 3]
    assert math.isclose(windows[0]["loss"], summary["loss_first"], abs_tol=1e-3)
    assert math.isclose(windows[-1]["loss"], summary["loss_last"], abs_tol=1e-3)
    demo_dir = Path(summary["demo_output"])
    assert (demo_dir / "results.npz").is_file()
    assert any(p.suffix in (".jpg", ".png") for p in demo_dir.rglob("*"))
    # issue 23: the summary's next: commands run as printed, from another folder, on the quickstart tree
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert [c.split()[1] for c in summary["next"]] == ["eval", "finetune", "fit", "demo"]
    for command in summary["next"]:
        words = shlex.split(command)
        proc = subprocess.run(
            [sys.executable, "-m", "gtacli", *words[1:]], cwd=elsewhere, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, (command, proc.stderr[-2000:])


def test_quickstart_default_folder_is_ignored_by_git() -> None:
    from gtacli.cli.quickstart import quickstart_command

    default = inspect.signature(quickstart_command).parameters["directory"].default
    assert not default.is_absolute() and default.parts[0] == "runs"
    probe = default / "data" / "body_models" / "smpl" / "SMPL_NEUTRAL.pkl"  # any file it may write
    proc = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", "--no-index", str(probe)], capture_output=True
    )
    if proc.returncode == 128:
        pytest.skip("not a git checkout")
    assert proc.returncode == 0, f"{probe} is not covered by .gitignore"


def _summary(windows: list) -> dict:
    return {
        "data_root": "d", "check_layout_ok": True, "steps": 30, "loss_first": windows[0], "loss_last": windows[-1],
        "loss_windows": [{"step": 6 * (i + 1), "loss": w} for i, w in enumerate(windows)],
        "checkpoint": "c", "recipe": "r", "eval_frames": 8, "mpjpe_mm": 200.0, "pa_mpjpe_mm": 150.0,
        "demo_output": "o", "logs": "l", "seconds": 60.0, "directory": "/abs/runs/quickstart",
    }  # fmt: skip


def test_summary_comments_on_a_rising_loss_and_says_where_it_wrote(capsys) -> None:
    from gtacli.cli.common import Output
    from gtacli.cli.quickstart import _loss_trend, _print_summary

    rising = _summary([1.0, 1.4, 1.9])
    rising["loss_trend"] = _loss_trend(rising["loss_windows"])
    assert rising["loss_trend"] == "rose"
    _print_summary(Output(), rising)
    text = " ".join(capsys.readouterr().out.split())
    assert "rose" in text and "prove nothing about convergence" in text
    assert "SYNTHETIC" in text  # the summary repeats it
    assert "written under /abs/runs/quickstart" in text
    assert _loss_trend([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]) == "fell"
    assert _loss_trend([{"step": 1, "loss": 2.0}]) is None


def test_quickstart_rejects_unknown_size(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "quickstart", "--dir", str(tmp_path), "--size", "huge"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2  # a usage error
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "--size" in lines[0]


def test_quickstart_unwritable_dir_is_one_line_before_any_step(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"  # a regular file where the folder should be: unwritable even for root
    blocker.write_text("keep")
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "quickstart", "--dir", str(blocker / "qs"), "--size", "tiny"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # no step ran: no banner, no child error
    assert str(blocker / "qs") in lines[0] and "--dir" in lines[0] and "Traceback" not in proc.stderr
    assert blocker.read_text() == "keep" and proc.stdout == ""


def test_loss_windows_keep_only_the_latest_run_of_an_appended_metrics_file(tmp_path: Path) -> None:
    from gtacli.cli.quickstart import _loss_windows

    records = [
        {"step": 5, "loss": 9.0},  # an earlier run in the same folder
        {"step": 10, "loss": 8.0},
        {"step": 5, "loss": 1.5},  # the step count starts over: a new run
        {"epoch": 1, "eval": {"mpjpe_mm": 1.0}},  # not a training record
        {"step": 10, "loss": 1.25},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "{torn line")
    assert _loss_windows(tmp_path) == [{"step": 5, "loss": 1.5}, {"step": 10, "loss": 1.25}]
    assert _loss_windows(tmp_path / "absent") == []
