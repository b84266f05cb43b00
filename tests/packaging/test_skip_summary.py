"""Tests that need ../shared/assets skip when it is absent, and the run ends with one line saying so (issue 23)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_run_without_the_shared_assets_says_why_tests_skipped(tmp_path):
    env = {**os.environ, "GTACLI_SHARED_ASSETS": str(tmp_path / "absent"), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/model/test_model_loading.py::test_real_mean_params_file_fills_the_buffers"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:]
    lines = [line for line in proc.stdout.splitlines() if "skipped: real test assets not found" in line]
    assert proc.stdout.strip().splitlines()[-1] == lines[0]  # the last line of the run
    assert lines == [
        f"1 test(s) skipped: real test assets not found at {tmp_path / 'absent'} (real public files; set "
        "GTACLI_SHARED_ASSETS to a folder holding them to run these)"
    ], proc.stdout
