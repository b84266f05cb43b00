"""What a new user meets in the first hour (issue 23): paths found under the data root, name suggestions, wrong
combinations refused before any work, one "Fix:" per error, exit codes as the README says."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gtacli.cli.app import app
from gtacli.errors import GtacliError

RUNNER = CliRunner()


def _gtacli(args, cwd: Path, env=None, timeout=600):
    import os

    full_env = {k: v for k, v in os.environ.items() if k != "GTACLI_DATA_ROOT"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "gtacli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _errors(text: str):
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_readme_init_path_is_found_under_the_data_root(sample_tree, tmp_path):
    """`--init data/pretrained_models/spin_official.pth` with GTACLI_DATA_ROOT elsewhere: the file under the
    data root is used, and the command says so."""
    proc = _gtacli(
        ["finetune", "--init", "data/pretrained_models/spin_official.pth", "--work-dir", "run", "--device",
         "cpu", "--batch-size", "1", "--workers", "0", "--max-steps", "1", "--json"],
        cwd=tmp_path, env={"GTACLI_DATA_ROOT": str(sample_tree)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"using {sample_tree / 'pretrained_models' / 'spin_official.pth'}" in proc.stderr


def test_a_bare_checkpoint_name_is_found_and_a_missing_one_names_every_place(sample_tree, tmp_path):
    proc = _gtacli(
        ["eval", "--checkpoint", "spin_official.pth", "--limit", "1", "--device", "cpu", "--json"],
        cwd=tmp_path,
        env={"GTACLI_DATA_ROOT": str(sample_tree)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _gtacli(["eval", "--checkpoint", "nothere.pth", "--data-root", str(sample_tree)], cwd=tmp_path)
    [line] = _errors(proc.stderr)
    assert proc.returncode == 1
    assert str(tmp_path / "nothere.pth") in line and f"looked in {tmp_path}" in line
    assert str(sample_tree / "pretrained_models" / "nothere.pth") in line
    assert "e.g. spin_official.pth" not in line


@pytest.mark.parametrize("name", ["lsp_train", "LSP", "lps"])
def test_fit_dataset_typos_list_the_trees_names_and_suggest_the_closest(sample_tree, name):
    result = RUNNER.invoke(app, ["fit", "--dataset", name, "--data-root", str(sample_tree)])
    [line] = _errors(result.output)
    assert result.exit_code == 2, result.output
    assert "did you mean --dataset lsp?" in line and "lspet" in line and "mpii" in line


def test_fit_report_names_the_acceptance_measure_and_the_objective_apart(sample_tree, tmp_path):
    """Issue 23 item 6: the README's first fit example writes a new file; the two numbers carry their names."""
    out = tmp_path / "fits" / "lsp_fits.npy"
    args = ["fit", "--dataset", "lsp", "--data-root", str(sample_tree), "--output", str(out), "--limit", "2",
            "--iterations", "2", "--device", "cpu"]  # fmt: skip
    result = RUNNER.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.is_file() and "acceptance measure" in result.output
    assert "mean total objective" in result.output and "not the acceptance measure" in result.output
    assert "mean final loss" not in result.output


def test_unknown_asset_name_exits_2_like_other_usage_errors(tmp_path):
    result = RUNNER.invoke(app, ["fetch", "spin_offical", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "did you mean spin_official" in result.output
    result = RUNNER.invoke(app, ["check-layout", "--for", "eval", "--data-root", str(tmp_path)])
    assert result.exit_code == 2


def test_an_error_quoting_another_prints_fix_once():
    error = GtacliError("step failed; its log ends: error: x.npz: bad. Fix: run y", fix="read the log")
    assert error.one_line().count("Fix:") == 1 and "read the log" in error.one_line()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_quickstart_refuses_an_unusable_device_before_building_anything(tmp_path):
    proc = _gtacli(
        ["quickstart", "--dir", str(tmp_path / "qs"), "--device", "cuda"], cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2 and "CUDA is not available" in proc.stderr
    assert not (tmp_path / "qs" / "data").exists()


def test_demo_refuses_results_of_another_input(sample_tree, tmp_path):
    """`demo other.jpg --from-results single/results.npz` drew one input's results over another: refused unless
    frame count and size match, or --force."""
    first = sorted((sample_tree / "datasets" / "pw3d").rglob("*.jpg"))[0]
    other = sorted((sample_tree / "datasets" / "lsp").rglob("*.jpg"))[0]
    base = ["demo", "--data-root", str(sample_tree), "--device", "cpu"]
    result = RUNNER.invoke(
        app, [*base, str(first), "--checkpoint", "spin_official.pth", "--bbox", "20,20,100,150", "-o",
              str(tmp_path / "single")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = str(tmp_path / "single" / "results.npz")
    result = RUNNER.invoke(app, [*base, str(other), "--from-results", results, "-o", str(tmp_path / "o2")])
    [line] = _errors(result.output)
    assert result.exit_code == 1 and "another input" in line and "--force" in line
    assert not (tmp_path / "o2").exists()
    result = RUNNER.invoke(app, [*base, str(first), "--from-results", results, "-o", str(tmp_path / "o3")])
    assert result.exit_code == 0, result.output  # the same input replays
    result = RUNNER.invoke(
        app, [*base, str(other), "--from-results", results, "-o", str(tmp_path / "o4"), "--force"]
    )
    assert result.exit_code == 0 and (tmp_path / "o4" / "results.npz").is_file(), result.output


def test_quickstart_next_lines_are_commands_that_run(monkeypatch):
    """The summary ends with next: lines naming the tree (--data-root) for eval, finetune, fit and demo."""
    from gtacli.cli.quickstart import next_commands

    lines = next_commands(
        Path("runs/q s/data"), Path("runs/q s/run"), Path("runs/q s/run/latest.pth"), Path("a.jpg"),
        [1.0, 2.0, 30.0, 40.0], Path("runs/q s"), 30,
    )  # fmt: skip
    assert [shlex.split(line)[1] for line in lines] == ["eval", "finetune", "fit", "demo"]
    for line in lines:
        words = shlex.split(line)
        assert words[words.index("--data-root") + 1] == "runs/q s/data"


def test_eval_prints_one_speed_and_says_what_it_measures(sample_tree):
    import re

    result = RUNNER.invoke(
        app, ["eval", "--checkpoint", "spin_official.pth", "--data-root", str(sample_tree), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    speeds = re.findall(r"[\d.]+ frames/s", result.output)
    assert len(speeds) == 1, result.output
    assert "in all, loading included" in result.output


# fetch's help belongs to the fetch rework (issue 23 item 4); every other command's is checked
UNWRAPPED_HELP = [
    "quickstart",
    "check-layout",
    "sample-data",
    "eval",
    "export",
    "finetune",
    "train",
    "fit",
    "demo",
    "fetch",
]


@pytest.mark.parametrize("name", UNWRAPPED_HELP)
def test_help_paragraphs_are_written_unwrapped_so_the_formatter_wraps_them(name):
    """A paragraph hard-wrapped at ~115 columns is re-wrapped by an 80-column terminal into ragged half-lines."""
    import inspect

    command = next(c for c in app.registered_commands if c.name == name)
    doc = inspect.cleandoc(command.callback.__doc__ or "")
    prose = doc.split("Examples:")[0]
    for paragraph in prose.split("\n\n"):
        assert "\n" not in paragraph.strip(), (
            f"gtacli {name} --help: a hard-wrapped paragraph: {paragraph[:80]!r}"
        )
    result = RUNNER.invoke(app, [name, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
