"""`gtacli quickstart`: the whole pipeline on the embedded synthetic default, offline, in minutes.

It runs the user-facing commands themselves (each as `python -m gtacli <command> --json` in a child process), so
what a newcomer sees working is exactly what they will type later: sample-data -> check-layout -> finetune -> eval
-> demo. Each child's messages, progress and resolved recipe go to a log file in the run folder; their JSON
results are collected into one summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import typer

from gtacli.cli.common import Annotated, DebugOpt, DeviceOpt, JsonOpt, Output, ProgressBar, QuietOpt
from gtacli.errors import GtacliError, UsageError
from gtacli.io.atomic import ensure_writable_dir

SYNTHETIC_WARNING = (
    "The quickstart data are SYNTHETIC (a generated mannequin body model, rendered images and a random-weight "
    "checkpoint): its losses and MPJPE / PA-MPJPE show that the pipeline runs end to end and mean NOTHING "
    "about real accuracy. For real numbers: gtacli fetch --all, then gtacli eval (see README)."
)
LOSS_NOTE = (
    "a few dozen steps on synthetic data from random weights prove nothing about convergence either way; "
    "single-batch losses are noisy (the window means show the trend)"
)
DEFAULT_DIR = Path("runs") / "quickstart"  # under /runs/, which .gitignore covers in a clone
QUICKSTART_LOSS_WINDOWS = 5  # mean-loss windows reported over the fine-tuning run
STEP_TAIL_LINES = 5  # lines of a failed step's log shown with the error


def quickstart_command(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="Folder for everything it writes: the sample tree (data/), the run (run/, with recipe.json), "
            "the demo output (demo/) and each step's log (logs/). About 0.5 GB with --size small.",
        ),
    ] = DEFAULT_DIR,
    size: Annotated[str, typer.Option("--size", help="Sample tree size: tiny (tests) or small.")] = "small",
    steps: Annotated[int, typer.Option("--steps", min=1, help="Fine-tuning steps.")] = 30,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Fine-tuning batch size.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the sample tree and the run.")] = 0,
    device: DeviceOpt = "auto",
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> int:
    """Run the whole pipeline offline on a generated synthetic data tree, then print a summary.

    Steps: build the `sample-data` tree (if missing) -> `check-layout --for all` -> `finetune` for a few dozen steps from the tree's spin_official.pth -> `eval --dataset pw3d` of the new checkpoint -> `demo` on one image. Each step is the real command run as a child process; its messages go to DIR/logs/STEP.log, the resolved recipe to DIR/run/recipe.json. Takes a few minutes on 2 CPU cores; needs no downloads and no GPU.

    Examples:

      gtacli quickstart                       # writes under ./runs/quickstart

      gtacli quickstart --dir runs/qs_tiny --size tiny --steps 10 --json
    """
    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)
    if size not in ("tiny", "small"):
        raise UsageError(f"--size {size!r} is not tiny or small", fix="use --size tiny or --size small")
    from gtacli.device import resolve_device

    resolve_device(device)  # an unusable --device fails now, not after building the tree
    ensure_writable_dir(
        Path(directory), what="the quickstart folder", fix="choose a writable folder with --dir"
    )
    summary = run_quickstart(directory, size, steps, batch_size, seed, device, out)
    out.result(summary, human=lambda: _print_summary(out, summary))
    return 0


STAGES = ("sample-data", "check-layout", "finetune", "eval", "demo")


def run_quickstart(
    directory: Path, size: str, steps: int, batch_size: int, seed: int, device: str, out: Output
) -> Dict[str, Any]:
    directory = Path(directory)
    root = directory / "data"
    run_dir = directory / "run"
    demo_dir = directory / "demo"
    log_dir = directory / "logs"
    started = time.perf_counter()
    out.warn(SYNTHETIC_WARNING)  # the one warning; the children's own synthetic notes go to their logs
    out.info(f"[quickstart] writing under {directory.resolve()}")
    stage_seconds: Dict[str, float] = {}

    from gtacli.layout import DataLayout

    layout = DataLayout(root)
    with ProgressBar(out, "quickstart", rate_unit="stages", transient=False) as progress:

        def step(name: str, args: List[str]) -> Dict[str, Any]:
            progress(STAGES.index(name), len(STAGES), name)
            out.info(f"[quickstart] {name}: gtacli {' '.join(args)}")
            t0 = time.perf_counter()
            result = _run_gtacli(args, name, log_dir / f"{name}.log", debug=out.debug)
            stage_seconds[name] = round(time.perf_counter() - t0, 2)
            return result

        if layout.is_synthetic and layout.spin_official.is_file():
            out.info(f"[quickstart] reusing the sample tree at {root}")
            sample = {"root": str(root), "reused": True}
        else:
            sample = step(
                "sample-data", ["sample-data", "--data-root", str(root), "--size", size, "--seed", str(seed)]
            )
        layout_report = step("check-layout", ["check-layout", "--for", "all", "--data-root", str(root)])
        train = step(
            "finetune",
            [
                "finetune", "--init", str(layout.spin_official), "--data-root", str(root), "--work-dir",
                str(run_dir), "--max-steps", str(steps), "--batch-size", str(batch_size), "--seed", str(seed),
                "--device", device, "--workers", "1", "--set", f"log_interval={_log_interval(steps)}",
            ] + _rerun_args(run_dir),
        )  # fmt: skip
        checkpoint = Path(train.get("checkpoint") or run_dir / "latest.pth")
        evaluation = step(
            "eval",
            [
                "eval", "--dataset", "pw3d", "--checkpoint", str(checkpoint), "--data-root", str(root),
                "--device", device,
            ],
        )  # fmt: skip
        demo_input, demo_box = _first_test_frame(layout)
        demo = step(
            "demo",
            [
                "demo", str(demo_input), "--checkpoint", str(checkpoint), "--data-root", str(root), "--output",
                str(demo_dir), "--device", device, "--bbox", ",".join(f"{v:.1f}" for v in demo_box),
            ],
        )  # fmt: skip
        progress(len(STAGES), len(STAGES), "summary")
    losses = train.get("losses") if isinstance(train.get("losses"), dict) else {}
    windows = _loss_windows(run_dir)
    return {
        "synthetic": True,
        "warning": SYNTHETIC_WARNING,
        "directory": str(directory.resolve()),
        "data_root": str(root),
        "logs": str(log_dir),
        "recipe": str(run_dir / "recipe.json"),
        "sample_data": sample,
        "check_layout_ok": bool(layout_report.get("ok", True)),
        "steps": train.get("steps", steps),
        "loss_first": losses.get("first"),
        "loss_last": losses.get("last"),
        # single-batch losses are noisy; the mean loss of each logging window shows the trend
        "loss_windows": windows,
        "loss_trend": _loss_trend(windows),
        "loss_note": LOSS_NOTE,
        "train": train,
        "checkpoint": str(checkpoint),
        "mpjpe_mm": evaluation.get("mpjpe_mm"),
        "pa_mpjpe_mm": evaluation.get("pa_mpjpe_mm"),
        "pve_mm": evaluation.get("pve_mm"),
        "eval_frames": evaluation.get("frames"),
        "demo_input": str(demo_input),
        "demo_output": str(demo_dir),
        "demo": demo,
        "stage_seconds": stage_seconds,
        "seconds": round(time.perf_counter() - started, 2),
        "next": next_commands(root, run_dir, checkpoint, demo_input, demo_box, directory, steps),
    }


def next_commands(
    root: Path,
    run_dir: Path,
    checkpoint: Path,
    demo_input: Path,
    demo_box: List[float],
    directory: Path,
    steps: int,
) -> List[str]:
    """The commands a user types next on the quickstart tree, each runnable as printed (every command takes
    --data-root; `export GTACLI_DATA_ROOT=...` saves repeating it)."""
    data = f"--data-root {_quote(root)}"
    box = ",".join(f"{v:.1f}" for v in demo_box)
    return [
        f"gtacli eval --dataset pw3d --checkpoint {_quote(checkpoint)} {data}",
        f"gtacli finetune {data} --work-dir {_quote(run_dir)} --resume --max-steps {2 * steps}",
        f"gtacli fit --dataset lsp {data} --limit 8 --output {_quote(directory / 'fits' / 'lsp_fits.npy')}",
        f"gtacli demo {_quote(demo_input)} --checkpoint {_quote(checkpoint)} {data} --bbox {box} "
        f"--output {_quote(directory / 'demo_again')}",
    ]


def _quote(path: Any) -> str:
    import shlex

    return shlex.quote(str(path))


def _rerun_args(run_dir: Path) -> List[str]:
    """A quickstart run again in the same folder starts its fine-tuning anew in its own `run/` folder (finetune
    refuses a non-empty work dir without --resume or --overwrite)."""
    return ["--overwrite"] if run_dir.is_dir() and any(run_dir.iterdir()) else []


def _loss_trend(windows: List[Dict[str, float]]) -> Optional[str]:
    """'fell', 'rose' or 'flat' from the first to the last window mean (None with fewer than two windows)."""
    if len(windows) < 2:
        return None
    first, last = windows[0]["loss"], windows[-1]["loss"]
    if last < first:
        return "fell"
    return "rose" if last > first else "flat"


def _log_interval(steps: int) -> int:
    """Steps per metrics.jsonl record: about QUICKSTART_LOSS_WINDOWS windows over the run (the recipe logs
    every 50 steps, more than a quickstart runs)."""
    return max(1, steps // QUICKSTART_LOSS_WINDOWS)


def _loss_windows(run_dir: Path) -> List[Dict[str, float]]:
    """[{'step', 'loss'}] of the latest run in metrics.jsonl: each record's loss is the mean over its window."""
    path = run_dir / "metrics.jsonl"
    windows: List[Dict[str, float]] = []
    if not path.is_file():
        return windows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "step" in record and "loss" in record:
            step = int(record["step"])
            if windows and step <= windows[-1]["step"]:
                windows = []  # the file is appended to: a step count that starts over is a new run
            windows.append({"step": step, "loss": round(float(record["loss"]), 4)})
    return windows


def _run_gtacli(args: List[str], name: str, log: Path, debug: bool = False) -> Dict[str, Any]:
    """Run `python -m gtacli <args> --json` with its stderr (messages, progress records, the resolved recipe)
    written to `log`; return its stdout's JSON. A failed step raises with the end of its log."""
    command = [sys.executable, "-m", "gtacli", *args, "--json"] + (["--debug"] if debug else [])
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as stderr:
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-STEP_TAIL_LINES:]
        raise GtacliError(
            f"quickstart step '{name}' failed with exit code {proc.returncode}; its log ends: "
            + " / ".join(line.strip() for line in tail if line.strip()),
            path=log,
            fix=f"read the log; re-run the step alone: gtacli {' '.join(args)} --debug",
        )
    try:
        return json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError as exc:
        raise GtacliError(f"quickstart step '{name}' printed no valid JSON ({exc})", path=log) from exc


def _first_test_frame(layout: Any) -> Tuple[Path, List[float]]:
    """The first frame of the tree's 3DPW-like test file and its person box (x, y, w, h).

    The demo gets the annotated box: OpenCV's built-in people detector is trained on real people and does not
    find the synthetic mannequin, and the point here is to show a mesh on the frame.
    """
    import numpy as np

    from gtacli.data.human_data import HumanData

    annotation = layout.annotation("pw3d")
    data = HumanData.load(annotation)
    if len(data) == 0:
        raise GtacliError(
            "the sample test file has no frames",
            path=annotation,
            fix="rebuild it: gtacli sample-data --force",
        )
    image = layout.image("pw3d", data.image_paths(slice(0, 1))[0])
    box = [float(v) for v in np.asarray(data.bbox_xywh(slice(0, 1)))[0, :4]]
    return image, box


def _print_summary(out: Output, s: Dict[str, Any]) -> None:
    def fmt(value: Optional[float], unit: str = "") -> str:
        return "n/a" if value is None else f"{value:.4g}{unit}"

    trend = s.get("loss_trend")
    rows = [
        ("data (SYNTHETIC)", s["data_root"]),
        ("check-layout", "ok" if s["check_layout_ok"] else "FAILED"),
        ("fine-tuning steps", str(s["steps"])),
        ("loss first -> last", f"{fmt(s['loss_first'])} -> {fmt(s['loss_last'])}"),
        (
            "mean loss per window",
            " -> ".join(f"{w['loss']:.3g}" for w in s.get("loss_windows") or []) or "n/a",
        ),
        ("checkpoint", s["checkpoint"]),
        ("recipe", s["recipe"]),
        ("eval frames", str(s["eval_frames"])),
        ("MPJPE / PA-MPJPE", f"{fmt(s['mpjpe_mm'], ' mm')} / {fmt(s['pa_mpjpe_mm'], ' mm')}"),
        ("demo output", s["demo_output"]),
        ("step logs", s["logs"]),
        ("total time", f"{s['seconds']:.0f} s"),
    ]
    out.table(
        "gtacli quickstart (SYNTHETIC data: the numbers mean nothing about accuracy)", ["item", "value"], rows
    )
    if trend == "rose":
        out.out.print(f"The mean loss rose over the run: {LOSS_NOTE}.", markup=False)
    elif trend is not None:
        out.out.print(f"The mean loss {trend} over the run, but {LOSS_NOTE}.", markup=False)
    out.out.print(f"Everything was written under {s['directory']}.", markup=False)
    out.out.print(
        f"Every command below names its data tree with --data-root (or: export GTACLI_DATA_ROOT={_quote(s['data_root'])}):",
        markup=False,
    )
    for command in s.get("next") or []:
        out.out.print(f"next: {command}", markup=False)
