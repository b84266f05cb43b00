"""The work dir's lock and record: exactly one holder, no takeover of a lock being written, the emptiness check
under the lock, metrics.jsonl cut back to the resumed checkpoint, and git_revision leaving .git/index alone."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gtacli.cli.app import app
from gtacli.errors import GtacliError
from gtacli.model.checkpoint import git_revision
from gtacli.train.workdir import LOCK_NAME, WorkDirLock

REPO = Path(__file__).resolve().parents[2]


def _try_lock(work: str, start: float, results) -> None:
    while time.time() < start:  # all processes try at the same instant
        pass
    lock = WorkDirLock(Path(work))
    try:
        lock.acquire(lambda message: None)
    except GtacliError:
        results.put(0)
        return
    results.put(1)
    time.sleep(1.0)  # hold it while the others try
    lock.release()


def test_simultaneous_starts_give_the_lock_to_exactly_one(tmp_path):
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    start = time.time() + 0.5
    procs = [ctx.Process(target=_try_lock, args=(str(tmp_path / "w"), start, results)) for _ in range(12)]
    for proc in procs:
        proc.start()
    held = sum(results.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    assert held == 1
    assert not (tmp_path / "w" / LOCK_NAME).exists()  # released by its holder


def test_a_lock_created_but_not_yet_written_is_not_taken_over(tmp_path):
    """The holder has created the file (and holds it) but not written its record yet: the file is empty."""
    work = tmp_path / "w"
    work.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(work / LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(GtacliError, match="another run is using this work directory"):
            WorkDirLock(work).acquire(lambda message: None)
        assert (work / LOCK_NAME).read_bytes() == b""  # the holder's file is untouched
    finally:
        holder.kill()
        holder.wait()
    # its process is gone: the kernel dropped the flock, the next run takes the file
    lock = WorkDirLock(work)
    lock.acquire(lambda message: None)
    assert json.loads((work / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_run_started_during_another_runs_set_up_refuses_before_looking(sample_tree, tmp_path):
    """The lock is taken before the slow set-up, so a second run finds it held instead of an empty folder."""
    work = tmp_path / "w"
    work.mkdir()
    fd = os.open(work / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a first run in its set-up (nothing written to the folder yet)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": "now"}).encode())
    try:
        result = CliRunner().invoke(
            app, ["finetune", "--data-root", str(sample_tree), "--work-dir", str(work), "--device", "cpu"]
        )
    finally:
        os.close(fd)
    assert result.exit_code == 1 and "another run is using this work directory" in result.output
    assert sorted(p.name for p in work.iterdir()) == [LOCK_NAME]


@pytest.mark.slow
def test_resume_after_a_kill_keeps_each_step_once_in_the_metrics(sample_tree, tmp_path):
    """A run killed after its last save had logged later steps (and half a line); the resumed run repeats
    those steps, so metrics.jsonl is cut back to the checkpoint's step first."""
    work = tmp_path / "w"
    common = [
        "finetune", "--data-root", str(sample_tree), "--work-dir", str(work), "--device", "cpu", "--batch-size",
        "1", "--workers", "0", "--num-data", "4", "--epochs", "1", "--set", "eval_each_epoch=false",
        "--set", "log_interval=1",
    ]  # fmt: skip
    first = CliRunner().invoke(app, [*common, "--max-steps", "2"])
    assert first.exit_code == 0, first.output
    with open(work / "metrics.jsonl", "a") as fp:  # what the killed run wrote after latest.pth (step 2)
        fp.write(json.dumps({"epoch": 1, "step": 3, "loss": 1.0}) + "\n" + '{"epoch": 1, "st')
    second = CliRunner().invoke(app, [*common, "--resume"])
    assert second.exit_code == 0, second.output
    steps = [json.loads(line)["step"] for line in (work / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_git_revision_leaves_the_index_alone(tmp_path):
    """`git status` refreshes a stale index (rewrites .git/index); the revision lookup must not."""
    repo = tmp_path / "src"
    (repo / "gtacli").mkdir(parents=True)
    (repo / "gtacli" / "__init__.py").write_text("")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)
    time.sleep(1.1)  # a later mtime than the index records: status would refresh the index
    (repo / "gtacli" / "__init__.py").write_text("")
    index = repo / ".git" / "index"
    before = (index.stat().st_mtime_ns, index.read_bytes())
    assert git_revision(repo)
    assert (index.stat().st_mtime_ns, index.read_bytes()) == before


@pytest.mark.slow
def test_resume_with_the_identical_command_warns_about_nothing(sample_tree, tmp_path):
    """`--init X ... --resume` repeats the first command: the recorded init is X, so nothing 'changed'."""
    work = tmp_path / "w"
    init = str(sample_tree / "pretrained_models" / "spin_official.pth")
    common = [
        "finetune", "--data-root", str(sample_tree), "--work-dir", str(work), "--init", init, "--device", "cpu",
        "--batch-size", "1", "--workers", "0", "--num-data", "4", "--epochs", "1", "--set", "eval_each_epoch=false",
    ]  # fmt: skip
    first = CliRunner().invoke(app, [*common, "--max-steps", "1"])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, [*common, "--resume"])
    assert second.exit_code == 0, second.output
    assert "ignoring changed" not in second.output, second.output
