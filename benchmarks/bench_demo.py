"""How fast is `gtacli demo` with overlays compared with `--no-render`, on a 1080p video, and where does the time go?

One command:  python benchmarks/bench_demo.py [--frames 20] [--device cpu|cuda] [--data-root DIR] [--checkpoint PATH]

Goal (issue #13.3): frames/s with overlays >= 0.8 x frames/s with --no-render. Both runs process the same frames in
one invocation; `ratio_render_vs_no_render` compares the steady-state frames/s (setup excluded) and
`cpu_ratio_render_vs_no_render` the process CPU seconds per frame, which other processes on the same cores
disturb much less than wall time.

Makes a 1080p test video (the first frames of ../shared/assets/single_person_demo.mp4, 1080x1920, a real person;
without that file, synthetic textured frames with a fixed --bbox), runs the demo
in-process on the CPU (HOG detection, batched ResNet-50 + HMR, SMPL, rendering, mp4 out) and writes the
measured frames/s and the split into detection, model (crop + network + SMPL), rendering and video I/O
(plus `setup`: loading the checkpoint and SMPL once) to benchmarks/results/demo.json. The machine's load
average is recorded with the numbers: other processes on the same cores inflate every stage. Without --data-root/--checkpoint it builds the tiny synthetic sample tree
(random-weight checkpoint, synthetic 6890-vertex SMPL): timings do not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_VIDEO = (
    Path(os.environ.get("GTACLI_SHARED_ASSETS", REPO.parent / "shared" / "assets")) / "single_person_demo.mp4"
)
RESULT = REPO / "benchmarks" / "results" / "demo.json"
SIZE_WH = (1080, 1920)  # the shared video: 1080p, portrait
FPS = 12.0


def make_video(path: Path, frames: int) -> dict:
    """A 1080p mp4 with `frames` frames; returns how it was made."""
    import cv2

    from gtacli.io.video import VideoSink

    sink = VideoSink(path, FPS)
    if SHARED_VIDEO.is_file():
        cap = cv2.VideoCapture(str(SHARED_VIDEO))
        count = 0
        while count < frames:
            ok, frame = cap.read()
            if not ok:
                cap.release()
                cap = cv2.VideoCapture(str(SHARED_VIDEO))  # loop a short source
                continue
            sink.write(frame)  # native 1080x1920 (portrait 1080p), the person as large as filmed
            count += 1
        cap.release()
        source = f"{SHARED_VIDEO.name} (native {SIZE_WH[0]}x{SIZE_WH[1]})"
    else:
        rng = np.random.default_rng(0)
        base = cv2.resize(
            rng.integers(0, 255, (135, 240, 3), dtype=np.uint8), SIZE_WH, interpolation=cv2.INTER_CUBIC
        )
        for i in range(frames):
            sink.write(np.roll(base, 8 * i, axis=1))
        source = "synthetic textured frames (no person; fixed --bbox)"
    sink.close()
    return {"source": source, "frames": frames, "size_wh": list(SIZE_WH), "fps": FPS}


def _split(stages: dict) -> dict:
    """The four headline stages: detection, model (crop + network + SMPL), rendering, video I/O; plus setup."""
    return {
        "detection": round(stages.get("detection", 0.0), 4),
        "model": round(sum(stages.get(k, 0.0) for k in ("preprocess", "model", "smpl")), 4),
        "rendering": round(stages.get("rendering", 0.0), 4),
        "video_io": round(stages.get("video_io", 0.0), 4),
        "setup": round(stages.get("setup", 0.0), 4),
    }


def _one_run(DemoConfig, run_demo, video_path, checkpoint, data_root, tmp, tag, bbox, device, render, batch):
    config = DemoConfig(
        input=video_path,
        checkpoint=checkpoint,
        data_root=data_root,
        output=tmp / f"out_{tag}",
        bbox=bbox,
        device=device,
        render=render,
        batch_size=batch,
    )
    start = time.perf_counter()
    summary = run_demo(config)
    wall = time.perf_counter() - start
    stages = summary["timings_s"]
    return {
        "frames": summary["frames"],
        "person_entries": summary["person_entries"],
        "wall_s": round(wall, 3),
        "frames_per_s": summary["frames_per_s"],  # excluding the one-time setup
        "frames_per_s_incl_setup": round(summary["frames"] / wall, 3),
        "stages_per_frame_ms": {
            k: round(1000 * v / summary["frames"], 1) for k, v in stages.items() if k != "total"
        },
        "split_s": _split(stages),
        # process CPU seconds (all threads): less disturbed by other processes competing for the cores
        "cpu_split_s": _split(summary["cpu_timings_s"]),
        "cpu_s_per_frame": round(
            sum(v for k, v in summary["cpu_timings_s"].items() if k != "setup") / summary["frames"], 4
        ),
        "detector": (summary["detector"] or {}).get("name"),
    }


def _pooled_fps(runs: list) -> float:
    """Frames over steady-state seconds, pooled over the rounds."""
    return round(sum(r["frames"] for r in runs) / sum(r["frames"] / r["frames_per_s"] for r in runs), 3)


def _pooled_cpu(runs: list) -> float:
    return sum(r["cpu_s_per_frame"] * r["frames"] for r in runs) / sum(r["frames"] for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2, help="render / no-render pairs, order alternating")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()

    import torch

    from gtacli.demo.pipeline import DemoConfig, run_demo
    from gtacli.device import keep_freed_memory, resolve_device

    # as `gtacli demo` does (both modes run in this one process, so both get it)
    kept_freed_memory = keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_root = args.data_root
        if data_root is None:
            from gtacli.sample.tree import build_sample_tree

            data_root = build_sample_tree(tmp / "data", size="tiny", seed=0)
        checkpoint = args.checkpoint or data_root / "pretrained_models" / "spin_official.pth"
        video_path = tmp / "bench_1080p.mp4"
        video_info = make_video(video_path, args.frames)
        device = resolve_device(args.device)
        bbox = None if SHARED_VIDEO.is_file() else np.array([760.0, 140.0, 400.0, 800.0])

        runs: dict = {"render": [], "no_render": []}
        # alternate the order each round, so a change in the machine's load does not favour one mode
        order = [("render", True), ("no_render", False)]
        for round_index in range(args.rounds):
            for name, render in order if round_index % 2 == 0 else order[::-1]:
                runs[name].append(
                    _one_run(
                        DemoConfig,
                        run_demo,
                        video_path,
                        checkpoint,
                        data_root,
                        tmp,
                        f"{name}_{round_index}",
                        bbox,
                        device,
                        render,
                        args.batch_size,
                    )
                )
    result = {
        "benchmark": "demo",
        "command": "python benchmarks/bench_demo.py " + " ".join(sys.argv[1:]),
        "video": video_info,
        "device": str(device),
        "rounds": args.rounds,
        "frames_per_s": {name: _pooled_fps(r) for name, r in runs.items()},
        "ratio_render_vs_no_render": round(_pooled_fps(runs["render"]) / _pooled_fps(runs["no_render"]), 3),
        # each round's pair run back to back: the median is less swayed by a slow spell on a shared machine
        "ratio_per_round": [
            round(r["frames_per_s"] / n["frames_per_s"], 3) for r, n in zip(runs["render"], runs["no_render"])
        ],
        "ratio_median_of_rounds": round(
            float(
                np.median(
                    [r["frames_per_s"] / n["frames_per_s"] for r, n in zip(runs["render"], runs["no_render"])]
                )
            ),
            3,
        ),
        "cpu_ratio_render_vs_no_render": round(
            _pooled_cpu(runs["no_render"]) / _pooled_cpu(runs["render"]), 3
        ),
        "torch_threads": torch.get_num_threads(),
        "keep_freed_memory": kept_freed_memory,
        "cpu_count": os.cpu_count(),
        # other processes on the same cores inflate every stage: the load averages (1/5/15 min) before and after
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "checkpoint": "synthetic sample tree" if args.checkpoint is None else str(args.checkpoint),
        "runs": runs,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    from gtacli.io.atomic import atomic_write_json

    atomic_write_json(RESULT, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
