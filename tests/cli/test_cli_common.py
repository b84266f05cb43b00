"""What every command shares (gtacli/cli/common.py, gtacli/cli/app.py): help without value types on flags,
progress records in logs, a command module that fails to import."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]

# A long command's progress as the CLI drives it: Output + ProgressBar, `update(done, total, description)`.
PROGRESS_SCRIPT = """
import sys, time
from gtacli.cli.common import Output, ProgressBar
total, pause = int(sys.argv[1]), float(sys.argv[2])
out = Output(quiet=sys.argv[3] == "quiet")
with ProgressBar(out, "eval", rate_unit="frames") as update:
    assert callable(update)
    for i in range(total):
        time.sleep(pause)
        update(i + 1, total, f"batch {i + 1} loss 0.{i + 1}")
"""


def _env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTACLI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _run_logged(tmp_path: Path, args: List[str], env: Dict[str, str]) -> subprocess.CompletedProcess:
    """Run with stderr written to a real file (as nohup / SLURM do); stderr's text in `.stderr`."""
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, timeout=120)
    proc.stderr = log.read_text()
    return proc


def _help(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", *args],
        capture_output=True,
        text=True,
        env=_env(COLUMNS="120"),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _option_line(text: str, option: str) -> str:
    """The row of the options panel (rich draws it with │ borders) that declares `option`."""
    lines = [
        line
        for line in text.splitlines()
        if line.startswith("│") and re.search(rf"│\s*(\*\s+)?{re.escape(option)}\b", line)
    ]
    assert lines, f"{option} not in the options panel"
    return lines[0]


def test_help_shows_no_bool_type_on_flags() -> None:
    root = _help("--help", "-h")
    assert "<bool>" not in root
    assert "--version" in root and "--help" in root
    command = _help("quickstart", "--help")
    assert "<bool>" not in command
    for flag in ("--json", "--quiet", "--debug", "--help"):
        assert "<" not in _option_line(command, flag), flag  # a flag takes no value: no type shown
    # options that take a value keep their type
    assert "<path>" in _option_line(command, "--dir")
    assert "<int" in _option_line(command, "--steps")


@pytest.mark.slow
def test_help_of_every_command_shows_no_bool() -> None:
    from gtacli.cli.app import COMMANDS

    for name, _, _ in COMMANDS:
        assert "<bool>" not in _help(name, "--help"), name


def _records(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if line.startswith("eval: ")]


def test_progress_records_in_a_log_file_every_update_with_interval_zero(tmp_path: Path) -> None:
    total, pause = 4, 0.05
    proc = _run_logged(
        tmp_path,
        [sys.executable, "-c", PROGRESS_SCRIPT, str(total), str(pause), "loud"],
        _env(GTACLI_PROGRESS_INTERVAL="0"),
    )
    assert proc.returncode == 0, proc.stderr
    records = _records(proc.stderr)
    assert len(records) == total + 1, proc.stderr  # one per update, then the closing record
    assert "\x1b[" not in proc.stderr  # plain text in a log, no terminal control codes
    for i, line in enumerate(records[:total], start=1):
        fields = line.split(" | ")
        assert fields[0] == f"eval: {i}/{total} frames ({round(100 * i / total)}%)"
        assert fields[-1] == f"batch {i} loss 0.{i}"
        assert fields[2].startswith("elapsed ")
    # from the second update on there is a rate; each item took >= `pause` seconds, so the rate is bounded
    for line in records[1:total]:
        rate = float(line.split(" | ")[1].split()[0])
        assert 0 < rate <= 1 / pause * 1.01, line
    assert "ETA " in records[1] and "ETA " not in records[-1]
    assert records[-1].split(" | ")[-2:] == ["done", f"batch {total} loss 0.{total}"]


def test_progress_default_interval_writes_only_the_closing_record(tmp_path: Path) -> None:
    proc = _run_logged(tmp_path, [sys.executable, "-c", PROGRESS_SCRIPT, "5", "0", "loud"], _env())
    assert proc.returncode == 0, proc.stderr
    records = _records(proc.stderr)
    assert len(records) == 1 and records[0].startswith("eval: 5/5 frames (100%)"), proc.stderr


def test_progress_quiet_writes_nothing(tmp_path: Path) -> None:
    proc = _run_logged(
        tmp_path,
        [sys.executable, "-c", PROGRESS_SCRIPT, "3", "0", "quiet"],
        _env(GTACLI_PROGRESS_INTERVAL="0"),
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


STOPPED_SCRIPT = """
from gtacli.cli.common import Output, ProgressBar
with ProgressBar(Output(), "eval", rate_unit="frames") as update:
    update(1, 9)
    update(2, 9)
    raise SystemExit(3)
"""


def test_progress_stopped_by_an_error_says_stopped(tmp_path: Path) -> None:
    proc = _run_logged(
        tmp_path, [sys.executable, "-c", STOPPED_SCRIPT], _env(GTACLI_PROGRESS_INTERVAL="1000")
    )
    assert proc.returncode == 3
    records = _records(proc.stderr)
    assert len(records) == 1, proc.stderr
    assert records[0].startswith("eval: 2/9 frames (22%)") and records[0].endswith(" | stopped")


@pytest.mark.slow
@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_bad_progress_interval_is_a_usage_error_before_any_work(tmp_path: Path, value: str) -> None:
    root = tmp_path / "data"
    proc = _run_logged(
        tmp_path,
        [sys.executable, "-m", "gtacli", "sample-data", "--data-root", str(root), "--size", "tiny"],
        _env(GTACLI_PROGRESS_INTERVAL=value),
    )
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "GTACLI_PROGRESS_INTERVAL" in lines[0] and "Traceback" not in proc.stderr
    assert not root.exists()  # nothing was built


@pytest.mark.slow
def test_a_real_command_logs_progress_records_when_stderr_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "data"
    proc = _run_logged(
        tmp_path,
        [sys.executable, "-m", "gtacli", "sample-data", "--data-root", str(root), "--size", "tiny"],
        _env(GTACLI_PROGRESS_INTERVAL="0"),
    )
    assert proc.returncode == 0, proc.stderr
    records = [line for line in proc.stderr.splitlines() if line.startswith("sample-data: ")]
    assert len(records) >= 3, proc.stderr
    done = [int(re.match(r"sample-data: (\d+)", line).group(1)) for line in records]
    assert done == sorted(done)  # progress only moves forward
    assert records[-1].split(" | ")[-2] == "done"
    # the core reports (done, total, description) in the one ProgressFn order: the description names the step
    assert records[0].endswith("body model neutral"), records[0]


def _import_app_with_broken(module: Optional[str]) -> subprocess.CompletedProcess:
    # `sys.modules[name] = None` makes `import name` raise ImportError: a module that fails to import
    code = "import sys\n"
    if module:
        code += f"sys.modules[{module!r}] = None\n"
    code += "sys.argv = ['gtacli', '--help']\nfrom gtacli.cli.app import main\nmain()\n"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(COLUMNS="120"), timeout=120
    )


def test_a_command_module_that_fails_to_import_is_an_error_not_a_missing_command() -> None:
    healthy = _import_app_with_broken(None)
    assert healthy.returncode == 0 and " fit " in healthy.stdout
    broken = _import_app_with_broken("gtacli.cli.fit")
    assert broken.returncode != 0
    last = broken.stderr.strip().splitlines()[-1]
    assert "gtacli.cli.fit" in last and re.match(r"\w*(Import|NotFound)Error: ", last), broken.stderr


def test_progress_record_of_large_counts_uses_si_suffixes(monkeypatch, capsys) -> None:
    from gtacli.cli.common import Output, ProgressBar

    monkeypatch.setenv("GTACLI_PROGRESS_INTERVAL", "1000")
    with ProgressBar(Output(), "fetch", rate_unit="B") as update:
        update(0, 3_000_000_000, "spin_official.pth")
        update(1_500_000_000, 3_000_000_000)  # the description is kept until a new one comes
    records = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fetch: ")]
    assert len(records) == 1, records
    fields = records[0].split(" | ")
    assert fields[0] == "fetch: 1.5G/3G B (50%)"
    assert re.fullmatch(r"[0-9.]+[MGT]? B/s", fields[1]), fields[1]
    assert fields[-2:] == ["done", "spin_official.pth"]


def test_json_mode_failure_is_one_json_error_object_on_stdout(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "quickstart", "--dir", str(tmp_path), "--size", "huge", "--json"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 2
    document = json.loads(proc.stdout)  # exactly one JSON document
    assert document["ok"] is False
    error = document["error"]
    assert error["type"] == "UsageError" and error["exit_code"] == 2 and "--size" in error["message"]
    assert error["fix"] and "Traceback" not in proc.stderr


def test_progress_on_a_terminal_is_a_bar_not_log_records() -> None:
    pty = pytest.importorskip("pty")  # POSIX only
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", PROGRESS_SCRIPT, "3", "0.05", "loud"],
            stdout=subprocess.PIPE,
            stderr=slave,
            env=_env(GTACLI_PROGRESS_INTERVAL="0", TERM="xterm", COLUMNS="100"),
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal closed: the child is done
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=120) == 0
    finally:
        os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "eval" in screen and "frames/s" in screen  # the bar's label and rate column
    assert not re.search(r"eval: \d+/\d+ frames \(\d+%\) \|", screen)  # no log records on a terminal


@pytest.mark.slow
def test_gtacli_threads_is_honoured_by_every_command_and_a_bad_value_is_a_usage_error(tmp_path):
    """GTACLI_THREADS applies before any command runs (training included), checked once, in one place."""
    code = (
        "import sys, torch; from gtacli.cli.app import app\n"
        "try:\n    app(['check-layout', '--for', 'demo', '--data-root', sys.argv[1], '--quiet'])\n"
        "except SystemExit:\n    pass\n"
        "print('threads', torch.get_num_threads())\n"
    )
    env = {**os.environ, "GTACLI_THREADS": "1"}
    good = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert "threads 1" in good.stdout, good.stderr
    env["GTACLI_THREADS"] = "lots"
    bad = subprocess.run(
        [sys.executable, "-m", "gtacli", "check-layout", "--for", "demo", "--data-root", str(tmp_path)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 2 and "GTACLI_THREADS" in bad.stderr and bad.stderr.count("error:") == 1


def test_a_table_too_wide_for_the_terminal_keeps_every_token_whole(capsys, monkeypatch):
    """Issue 23 item 5: at 80 columns a table split paths and URLs mid-token ('resnet50_spin_gta_f' / 't')."""
    from gtacli.cli.common import Output

    monkeypatch.setenv("COLUMNS", "80")
    url = (
        "https://download.openmmlab.com/mmhuman3d/models/gta_human/resnet50_spin_gta_ft-2538df81_20220708.pth"
    )
    path = "data/models/resnet50_spin_gta_ft-2538df81_20220708.pth"
    out = Output()
    out.table(
        "assets", ["name", "status", "destination", "url"], [["resnet50_spin_gta_ft", "missing", path, url]]
    )
    lines = capsys.readouterr().out.splitlines()
    assert any(url in line for line in lines) and any(path in line for line in lines), lines
    assert any("resnet50_spin_gta_ft" == line.strip() for line in lines)
    out.table("small", ["item", "value"], [["a", "b"]])  # one that fits stays a table
    assert "┃ item" in capsys.readouterr().out
