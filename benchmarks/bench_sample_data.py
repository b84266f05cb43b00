"""How long does `gtacli sample-data` take and how big is the tree? (issue 3 goals)

One command:  python benchmarks/bench_sample_data.py [--sizes tiny small] [--repeat 1]

Runs `gtacli sample-data --size S --json` in a fresh child process per size (imports included, as a user
sees it) into a temporary folder, and writes wall time, the command's own `seconds`, files and bytes per
size to benchmarks/results/sample_data.json, with the goals (small: < 60 s on 2 cores and < 200 MB; tiny:
well under 20 s) and whether they were met. The machine's CPU count and load average are recorded with the
numbers: other processes on the same cores inflate every timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "sample_data.json"
GOALS = {"small": {"seconds": 60.0, "bytes": 200 * 1000 * 1000}, "tiny": {"seconds": 20.0}}


def run_once(size: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_sample_") as tmp:
        root = Path(tmp) / "data"
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "gtacli", "sample-data", "--data-root", str(root), "--size", size,
             "--seed", str(seed), "--json", "--quiet"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"sample-data failed:\n{proc.stderr[-2000:]}")
        summary = json.loads(proc.stdout)
    return {
        "wall_seconds": round(wall, 2),
        "command_seconds": summary["seconds"],
        "files": summary["files"],
        "bytes": summary["bytes"],
        "load_average_before": round(load_before, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=["tiny", "small"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    for size in args.sizes:
        runs = [run_once(size, args.seed) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["wall_seconds"])
        goal = GOALS[size]
        met = best["wall_seconds"] < goal["seconds"] and best["bytes"] < goal.get("bytes", float("inf"))
        results[size] = {
            "runs": runs,
            "best_wall_seconds": best["wall_seconds"],
            "goal": goal,
            "goal_met": met,
        }
        print(f"{size}: {best['wall_seconds']:.1f} s wall, {best['bytes'] / 1e6:.1f} MB, {best['files']} files, "
              f"goal {'met' if met else 'NOT met'}")  # fmt: skip
    payload = {
        "benchmark": "sample_data",
        "command": "python benchmarks/bench_sample_data.py " + " ".join(sys.argv[1:]),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "results": results,
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
