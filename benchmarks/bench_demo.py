"""How fast is `gtacli demo` with overlays compared with `--no-render`, on a 1080p video, with each engine, and where
does the time go?

One command:  python benchmarks/bench_demo.py [--frames 20] [--device cpu|cuda] [--data-root DIR] [--checkpoint PATH]
              [--engines torch,onnxruntime]

Goals of issue 20 (CPU): with onnxruntime the network stage (`timings_s.model`) >= 1.3 x faster than with torch
and the whole `--no-render` run >= 1.1 x; overlays still >= 0.8 x the `--no-render` rate. In the same run, the
reference (NCHW float32 under no_grad, as SPIN/mmhuman3d run it) forwards the same number of crops in the same
batches (`reference_forward_s`, against which `model_stage_s` of each engine is compared; crops of the video's
first frame, since the time does not depend on the pixels). The thread count of both engines is torch's
(`--threads`, else one per core), as `gtacli demo` takes it from GTACLI_THREADS.

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


def _one_run(
    DemoConfig, run_demo, video_path, checkpoint, data_root, tmp, tag, bbox, device, render, batch, engine
):
    config = DemoConfig(
        input=video_path,
        checkpoint=checkpoint,
        data_root=data_root,
        output=tmp / f"out_{tag}",
        bbox=bbox,
        device=device,
        render=render,
        batch_size=batch,
        engine=engine,
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
        "engine": (summary["engine"] or {}).get("detail"),
        # the network stage alone (crop + normalise is `preprocess`, SMPL is `smpl`)
        "network_s": round(stages.get("model", 0.0), 4),
    }


def _pooled_fps(runs: list) -> float:
    """Frames over steady-state seconds, pooled over the rounds."""
    return round(sum(r["frames"] for r in runs) / sum(r["frames"] / r["frames_per_s"] for r in runs), 3)


def _pooled_cpu(runs: list) -> float:
    return sum(r["cpu_s_per_frame"] * r["frames"] for r in runs) / sum(r["frames"] for r in runs)


def _render_ratios(render: list, no_render: list) -> dict:
    """Overlays vs --no-render for one engine: pooled, per round (each round's pair run back to back: the
    median is less swayed by a slow spell on a shared machine) and in process CPU time."""
    per_round = [r["frames_per_s"] / n["frames_per_s"] for r, n in zip(render, no_render)]
    return {
        "ratio_render_vs_no_render": round(_pooled_fps(render) / _pooled_fps(no_render), 3),
        "ratio_per_round": [round(v, 3) for v in per_round],
        "ratio_median_of_rounds": round(float(np.median(per_round)), 3),
        "cpu_ratio_render_vs_no_render": round(_pooled_cpu(no_render) / _pooled_cpu(render), 3),
    }


def reference_forward_s(
    checkpoint: Path, data_root: Path, video_path: Path, crops: int, batch_size: int
) -> float:
    """Seconds the reference network (NCHW float32, eval mode, no_grad, as SPIN/mmhuman3d run it) takes for
    `crops` crops in batches of `batch_size`, after a warm-up batch (built once per call, not timed)."""
    import cv2
    import torch

    from gtacli.data.crop import crop, normalize
    from gtacli.layout import DataLayout
    from gtacli.model.loading import load_estimator
    from gtacli.model.memory_format import NCHW

    reference, _ = load_estimator(checkpoint, DataLayout(data_root), "cpu", memory_format=NCHW, fold=False)
    cap = cv2.VideoCapture(str(video_path))
    ok, frame = cap.read()
    cap.release()
    h, w = frame.shape[:2]
    one = normalize(crop(frame, (w / 2, h / 2), 0.6 * min(w, h), 0.0)[0])
    batch = torch.from_numpy(np.stack([one] * batch_size))
    with torch.no_grad():
        reference(batch)  # warm-up
        start = time.perf_counter()
        done = 0
        while done < crops:
            size = min(batch_size, crops - done)
            reference(batch[:size])
            done += size
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2, help="render / no-render pairs, order alternating")
    parser.add_argument("--output", type=Path, default=RESULT, help="results file")
    parser.add_argument(
        "--engines", default="torch,onnxruntime", help="engines to run (each in both modes, every round)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()

    import torch

    from gtacli.demo.pipeline import DemoConfig, run_demo
    from gtacli.device import keep_freed_memory, resolve_device
    from gtacli.layout import DataLayout
    from gtacli.model.engines import load_engine

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

        engines = [e.strip() for e in args.engines.split(",") if e.strip()]
        for engine in engines:  # a first use exports the ONNX model into the data root's cache: not timed
            load_engine(checkpoint, DataLayout(data_root), device, engine)
        runs: dict = {f"{e}_{m}": [] for e in engines for m in ("render", "no_render")}
        # rotate the order each round, so a change in the machine's load does not favour one run
        order = [(e, m, m == "render") for e in engines for m in ("render", "no_render")]
        reference_s = []
        for round_index in range(args.rounds):
            shift = round_index % len(order)
            for engine, mode, render in order[shift:] + order[:shift]:
                runs[f"{engine}_{mode}"].append(
                    _one_run(
                        DemoConfig,
                        run_demo,
                        video_path,
                        checkpoint,
                        data_root,
                        tmp,
                        f"{engine}_{mode}_{round_index}",
                        bbox,
                        device,
                        render,
                        args.batch_size,
                        engine,
                    )
                )
            people = runs[order[0][0] + "_no_render"][-1]["person_entries"]
            reference_s.append(
                reference_forward_s(checkpoint, data_root, video_path, people, args.batch_size)
            )
    per_engine = {
        engine: _render_ratios(runs[f"{engine}_render"], runs[f"{engine}_no_render"]) for engine in engines
    }
    network_s = {
        engine: sum(r["network_s"] for mode in ("render", "no_render") for r in runs[f"{engine}_{mode}"])
        / (2 * args.rounds)
        for engine in engines
    }
    result = {
        "benchmark": "demo",
        "command": "python benchmarks/bench_demo.py " + " ".join(sys.argv[1:]),
        "video": video_info,
        "device": str(device),
        "rounds": args.rounds,
        "frames_per_s": {name: _pooled_fps(r) for name, r in runs.items()},
        "render_vs_no_render": per_engine,
        # the network stage per run (mean over runs) and the reference forward of the same crops, same batches
        "network_stage_s": {e: round(v, 4) for e, v in network_s.items()},
        "reference_forward_s": round(float(np.median(reference_s)), 4),
        "reference_forward_s_per_round": [round(v, 4) for v in reference_s],
        "network_speed_over_reference": {
            e: round(float(np.median(reference_s)) / v, 3) for e, v in network_s.items() if v > 0
        },
        "torch_threads": torch.get_num_threads(),
        "onnxruntime_intra_op_threads": torch.get_num_threads(),  # the engine takes torch's count
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
        "goals": {
            "network_stage_onnxruntime_vs_torch": ">= 1.3 (CPU)",
            "no_render_onnxruntime_vs_torch": ">= 1.1 (CPU)",
            "render_vs_no_render": ">= 0.8",
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if "torch" in engines and "onnxruntime" in engines:
        result["network_stage_onnxruntime_vs_torch"] = round(network_s["torch"] / network_s["onnxruntime"], 3)
        result["no_render_onnxruntime_vs_torch"] = round(
            _pooled_fps(runs["onnxruntime_no_render"]) / _pooled_fps(runs["torch_no_render"]), 3
        )
    from gtacli.io.atomic import atomic_write_json

    atomic_write_json(args.output, result)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
