"""`gtacli quickstart` end to end on a tiny synthetic tree, as a user runs it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path


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
    assert "SYNTHETIC" in proc.stderr  # the user is told the data are synthetic
    assert summary["check_layout_ok"] is True
    assert summary["steps"] == 3
    assert Path(summary["checkpoint"]).is_file()
    for key in ("mpjpe_mm", "pa_mpjpe_mm"):
        assert isinstance(summary[key], float) and math.isfinite(summary[key]) and summary[key] > 0
    assert summary["pa_mpjpe_mm"] <= summary["mpjpe_mm"] + 1e-6  # Procrustes can only reduce the error
    assert summary["eval_frames"] > 0
    demo_dir = Path(summary["demo_output"])
    assert (demo_dir / "results.npz").is_file()
    assert any(p.suffix in (".jpg", ".png") for p in demo_dir.rglob("*"))


def test_quickstart_rejects_unknown_size(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "quickstart", "--dir", str(tmp_path), "--size", "huge"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "--size" in lines[0]
