"""`gtacli quickstart`: the whole pipeline on the embedded synthetic default, offline, in minutes.

It runs the user-facing commands themselves (each as `python -m gtacli <command> --json` in a child process), so
what a newcomer sees working is exactly what they will type later: sample-data -> check-layout -> finetune -> eval
-> demo. Children's progress goes to stderr; their JSON results are collected into one summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import typer

from gtacli.cli.common import Annotated, DebugOpt, DeviceOpt, JsonOpt, Output, QuietOpt
from gtacli.errors import GtacliError, UsageError
from gtacli.io.atomic import ensure_writable_dir

SYNTHETIC_WARNING = (
    "The quickstart data are SYNTHETIC (a generated mannequin body model, rendered images and a random-weight "
    "checkpoint): the losses and MPJPE / PA-MPJPE below show that the pipeline runs end to end and mean NOTHING "
    "about real accuracy. For real numbers: gtacli fetch --all, then gtacli eval (see README)."
)

QUICKSTART_LOSS_WINDOWS = 5  # mean-loss windows reported over the fine-tuning run


def quickstart_command(
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder for the sample tree, the run and the demo output.")
    ] = Path("gtacli_quickstart"),
    size: Annotated[str, typer.Option("--size", help="Sample tree size: tiny (tests) or small.")] = "small",
    steps: Annotated[int, typer.Option("--steps", min=1, help="Fine-tuning steps.")] = 30,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Fine-tuning batch size.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the sample tree and the run.")] = 0,
    device: DeviceOpt = "auto",
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Run the whole pipeline offline on a generated synthetic data tree, then print a summary.

    Steps: build the `sample-data` tree (if missing) -> `check-layout --for all` -> `finetune` for a few dozen steps
    from the tree's spin_official.pth -> `eval --dataset pw3d` of the new checkpoint -> `demo` on one image.
    Takes a few minutes on 2 CPU cores; needs no downloads and no GPU.

    Examples:

      gtacli quickstart

      gtacli quickstart --dir /tmp/qs --size tiny --steps 10 --json
    """
    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)

    def body() -> int:
        if size not in ("tiny", "small"):
            raise UsageError(f"--size {size!r} is not tiny or small", fix="use --size tiny or --size small")
        ensure_writable_dir(
            Path(directory),
            what="the quickstart folder",
            fix="choose a writable folder with --dir",
        )
        summary = run_quickstart(directory, size, steps, batch_size, seed, device, out)
        out.result(summary, human=lambda: _print_summary(out, summary))
        return 0

    return body()


def run_quickstart(
    directory: Path, size: str, steps: int, batch_size: int, seed: int, device: str, out: Output
) -> Dict[str, Any]:
    directory = Path(directory)
    root = directory / "data"
    run_dir = directory / "run"
    demo_dir = directory / "demo"
    started = time.perf_counter()
    out.warn(SYNTHETIC_WARNING)
    stage_seconds: Dict[str, float] = {}

    def step(name: str, args: List[str]) -> Dict[str, Any]:
        out.info(f"[quickstart] {name}: gtacli {' '.join(args)}")
        t0 = time.perf_counter()
        result = _run_gtacli(args, name, debug=out.debug, quiet=out.quiet)
        stage_seconds[name] = round(time.perf_counter() - t0, 2)
        return result

    from gtacli.layout import DataLayout

    layout = DataLayout(root)
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
            "finetune", "--init", str(layout.spin_official), "--data-root", str(root), "--work-dir", str(run_dir),
            "--max-steps", str(steps), "--batch-size", str(batch_size), "--seed", str(seed), "--device", device,
            "--workers", "1", "--set", f"log_interval={_log_interval(steps)}",
        ],
    )  # fmt: skip
    checkpoint = Path(train.get("checkpoint") or run_dir / "latest.pth")
    evaluation = step(
        "eval",
        [
            "eval",
            "--dataset",
            "pw3d",
            "--checkpoint",
            str(checkpoint),
            "--data-root",
            str(root),
            "--device",
            device,
        ],
    )
    demo_input, demo_box = _first_test_frame(layout)
    demo = step(
        "demo",
        [
            "demo", str(demo_input), "--checkpoint", str(checkpoint), "--data-root", str(root), "--output",
            str(demo_dir), "--device", device, "--bbox", ",".join(f"{v:.1f}" for v in demo_box),
        ],
    )  # fmt: skip
    losses = train.get("losses") or {}
    return {
        "synthetic": True,
        "warning": SYNTHETIC_WARNING,
        "data_root": str(root),
        "sample_data": sample,
        "check_layout_ok": bool(layout_report.get("ok", True)),
        "steps": train.get("steps", steps),
        "loss_first": losses.get("first") if isinstance(losses, dict) else None,
        "loss_last": losses.get("last") if isinstance(losses, dict) else None,
        # single-batch losses are noisy; the mean loss of each logging window shows the trend
        "loss_windows": _loss_windows(run_dir),
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
    }


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


def _run_gtacli(args: List[str], name: str, debug: bool = False, quiet: bool = False) -> Dict[str, Any]:
    """Run `python -m gtacli <args> --json`; stderr (progress, warnings) passes through; parse stdout's JSON."""
    command = [sys.executable, "-m", "gtacli", *args, "--json"] + (["--debug"] if debug else [])
    command += ["--quiet"] if quiet else []
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=None, text=True)
    if proc.returncode != 0:
        raise GtacliError(
            f"quickstart step '{name}' failed with exit code {proc.returncode}",
            fix=f"see the error above; re-run it alone: gtacli {' '.join(args)} --debug",
        )
    try:
        return json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError as exc:
        raise GtacliError(f"quickstart step '{name}' printed no valid JSON ({exc})") from exc


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
        ("eval frames", str(s["eval_frames"])),
        ("MPJPE / PA-MPJPE", f"{fmt(s['mpjpe_mm'], ' mm')} / {fmt(s['pa_mpjpe_mm'], ' mm')}"),
        ("demo output", s["demo_output"]),
        ("total time", f"{s['seconds']:.0f} s"),
    ]
    out.table(
        "gtacli quickstart (synthetic data: numbers mean nothing about accuracy)", ["item", "value"], rows
    )
    out.out.print(SYNTHETIC_WARNING, markup=False)
