"""How fast is `gtacli demo` with overlays compared with `--no-render`, on a 1080p video, with each engine, and where
does the time go?

One command:  python benchmarks/bench_demo.py [--frames 20] [--device cpu|cuda] [--data-root DIR] [--checkpoint PATH]
              [--engines torch,onnxruntime,torch-amp] [--detectors hog,yolox] [--yolox-weights object_detection_yolox_2022nov.onnx]

Goals of issue 20 (CPU): with onnxruntime the network stage (`timings_s.model`) >= 1.3 x faster than with torch
and the whole `--no-render` run >= 1.1 x; overlays still >= 0.8 x the `--no-render` rate. In the same run, the
reference (NCHW float32 under no_grad, as SPIN/mmhuman3d run it) forwards the same number of crops in the same
batches (`reference_forward_s`, against which `model_stage_s` of each engine is compared; crops of the video's
first frame, since the time does not depend on the pixels). The thread count of both engines is torch's
(`--threads`, else one per core), as `gtacli demo` takes it from GTACLI_THREADS.

`torch-amp` is `gtacli demo --amp`: the torch engine under bfloat16 autocast on the CPU (float16 on CUDA); its
network stage and `--no-render` rate are compared with torch's float32 and with onnxruntime's in the same run. It is
fast only on a CPU with bfloat16 units (AMX, AVX512-BF16), which the results file records (`cpu_bfloat16_units`).

Each detector is a scenario of its own (`detectors.<name>` in the results file):
* `hog`: OpenCV's HOG people detector, what the demo runs when the YOLOX file has not been fetched; it runs in
  OpenCV with either engine.
* `yolox`: the demo's default once `gtacli fetch detector` has put the zoo's YOLOX-S in place; it runs in the
  network's engine (OpenCV DNN with torch, onnxruntime with onnxruntime), as `gtacli demo` runs it. With
  `--yolox-weights` the real file finds the people. Without it (this machine cannot download it) the YOLOX-S
  architecture with random weights (`yolox_architecture.py`, the zoo file's inputs, outputs and size) is run by the
  demo's own YoloxDetector for the time, and the people come from an untimed HOG pre-pass of each frame, so both
  engines and both detectors process the same people.

Goal (issue #13.3): frames/s with overlays >= 0.8 x frames/s with --no-render. Both runs process the same frames in
one invocation; `ratio_render_vs_no_render` compares the steady-state frames/s (setup excluded) and
`cpu_ratio_render_vs_no_render` the process CPU seconds per frame, which other processes on the same cores
disturb much less than wall time.

Makes a 1080p test video (the first frames of ../shared/assets/single_person_demo.mp4, 1080x1920, a real person;
without that file, synthetic textured frames with a fixed --bbox), runs the demo
in-process on the CPU (detection, batched ResNet-50 + HMR, SMPL, rendering, mp4 out) and writes the
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

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


@dataclass
class DetectorSetup:
    """What finds the people in one scenario: `hog` (what runs without `gtacli fetch detector`) or `yolox`
    (the demo's default once the detector is fetched; with `weights` None nothing is built yet)."""

    name: str
    weights: Optional[Path] = None
    random_weights: bool = False  # the YOLOX-S architecture with random weights: boxes replayed (see below)


# --engines names: (the demo's --engine, its --amp)
ENGINE_VARIANTS = {
    "torch": ("torch", False),
    "onnxruntime": ("onnxruntime", False),
    # `gtacli demo --amp`: the network on torch in reduced precision, YOLOX where auto puts it (onnxruntime)
    "torch-amp": ("auto", True),
}


@dataclass
class Scene:
    """What every demo run of one benchmark shares."""

    video_path: Path
    checkpoint: Path
    data_root: Path
    tmp: Path
    bbox: Optional[np.ndarray]  # the synthetic video's fixed box (None: the shared video, detected)
    device: Any
    batch_size: int


def _one_run(scene: Scene, tag: str, render: bool, variant: str, detector: DetectorSetup) -> dict:
    from gtacli.demo.pipeline import DemoConfig, run_demo

    engine, amp = ENGINE_VARIANTS[variant]
    config = DemoConfig(
        input=scene.video_path,
        checkpoint=scene.checkpoint,
        data_root=scene.data_root,
        output=scene.tmp / f"out_{tag}",
        bbox=scene.bbox if detector.name == "hog" else None,
        detector=detector.name,
        yolox_weights=detector.weights,
        yolox_sha256=None,  # the zoo's pinned hash is checked by `gtacli demo`; here the file is ours
        device=scene.device,
        render=render,
        batch_size=scene.batch_size,
        engine=engine,
        amp=amp,
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


def engines_by_batch(
    checkpoint: Path, data_root: Path, variants: List[str], batches=(1, 4, 16), repeats: int = 8
) -> dict:
    """The engines' network alone (as the demo loads them) at several batch sizes, interleaved call by call:
    frames/s medians and the median of the per-repeat ratios to torch (the demo runs batches of `--batch-size`,
    4 by default)."""
    import torch

    from gtacli.layout import DataLayout
    from gtacli.model.engines import load_engine

    cpu = torch.device("cpu")
    engines = {
        name: load_engine(
            checkpoint, DataLayout(data_root), cpu, ENGINE_VARIANTS[name][0], amp=ENGINE_VARIANTS[name][1]
        )
        for name in variants
    }
    crops = torch.randn(max(batches), 3, 224, 224, generator=torch.Generator().manual_seed(0))
    rates: dict = {(name, b): [] for name in engines for b in batches}
    with torch.inference_mode():
        for name, b in rates:  # warm-up: first-call allocations, oneDNN primitives
            engines[name](crops[:b].contiguous(memory_format=engines[name].memory_format))
        for _ in range(repeats):
            for name, b in rates:
                batch = crops[:b].contiguous(memory_format=engines[name].memory_format)
                calls = max(1, max(batches) // b)
                start = time.perf_counter()
                for _ in range(calls):
                    engines[name](batch)
                rates[(name, b)].append(calls * b / (time.perf_counter() - start))
    out = {}
    for b in batches:
        row: dict = {
            f"{name.replace('-', '_')}_fps": round(float(np.median(rates[(name, b)])), 2) for name in engines
        }
        for name in engines:
            if name == "torch":
                continue
            ratios = [o / t for o, t in zip(rates[(name, b)], rates[("torch", b)])]
            key = name.replace("-", "_")
            row[f"ratio_{key}_vs_torch_median"] = round(float(np.median(ratios)), 3)
            row[f"ratio_{key}_per_repeat"] = [round(v, 3) for v in ratios]
        out[f"batch_{b}"] = row
    return out


class ReplayedBoxes:
    """The demo's YOLOX detector as built by `gtacli` (letterbox, the forward in the engine's runtime, decode,
    NMS: all timed as the demo's detection stage), returning the boxes of an untimed pre-pass instead of its own:
    random weights find no people, and both engines must process the same people."""

    def __init__(self, inner, boxes_per_frame: list):
        self.inner, self.boxes, self.calls = inner, boxes_per_frame, 0

    def __call__(self, frame):
        self.inner(frame)
        dets = self.boxes[self.calls % len(self.boxes)]
        self.calls += 1
        return dets

    def describe(self) -> dict:
        return {**self.inner.describe(), "benchmark": REPLAY_NOTE}


REPLAY_NOTE = (
    "YOLOX-S architecture with random weights (benchmarks/yolox_architecture.py; the zoo's weights cannot be "
    "downloaded here), run by the demo's own YoloxDetector in the engine's runtime; the people are the HOG "
    "pre-pass's boxes of each frame, so the rest of the pipeline does the same work as with HOG"
)


def prepass_boxes(video_path: Path, bbox) -> list:
    """Per frame, the people the HOG detector finds (the fixed `bbox` for the synthetic video)."""
    import cv2

    from gtacli.demo.detect import Detections, HogDetector

    hog = HogDetector()
    out = []
    cap = cv2.VideoCapture(str(video_path))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(Detections(bbox[None], np.ones(1)) if bbox is not None else hog(frame))
    cap.release()
    return out


def replaying_yolox(boxes: list):
    """Patches `gtacli.demo.detect.build_detector` so that a random-weight YOLOX returns `boxes`."""
    import gtacli.demo.detect as detect

    original = detect.build_detector

    def build(*args, **kwargs):
        return ReplayedBoxes(original(*args, **kwargs), boxes)

    detect.build_detector = build
    return lambda: setattr(detect, "build_detector", original)


def measure(args, scene: Scene, detector: DetectorSetup, engines: List[str]) -> dict:
    """Every engine with and without overlays, order rotating each round, with the reference forward of the
    same crops; the ratios of issue 20."""
    runs: dict = {f"{e}_{m}": [] for e in engines for m in ("render", "no_render")}
    # rotate the order each round, so a change in the machine's load does not favour one run
    order = [(e, m, m == "render") for e in engines for m in ("render", "no_render")]
    reference_s = []
    restore = (
        replaying_yolox(prepass_boxes(scene.video_path, scene.bbox)) if detector.random_weights else None
    )
    try:
        for round_index in range(args.rounds):
            shift = round_index % len(order)
            for engine, mode, render in order[shift:] + order[:shift]:
                runs[f"{engine}_{mode}"].append(
                    _one_run(
                        scene, f"{detector.name}_{engine}_{mode}_{round_index}", render, engine, detector
                    )
                )
            people = runs[order[0][0] + "_no_render"][-1]["person_entries"]
            reference_s.append(
                reference_forward_s(
                    scene.checkpoint, scene.data_root, scene.video_path, people, scene.batch_size
                )
            )
    finally:
        if restore is not None:
            restore()
    per_engine = {
        engine: _render_ratios(runs[f"{engine}_render"], runs[f"{engine}_no_render"]) for engine in engines
    }
    network_s = {
        engine: sum(r["network_s"] for mode in ("render", "no_render") for r in runs[f"{engine}_{mode}"])
        / (2 * args.rounds)
        for engine in engines
    }
    result = {
        "detector": detector.name,
        "detector_weights": (
            REPLAY_NOTE
            if detector.random_weights
            else (str(detector.weights) if detector.weights else "OpenCV's built-in HOG people detector")
        ),
        "frames_per_s": {name: _pooled_fps(r) for name, r in runs.items()},
        "render_vs_no_render": per_engine,
        # the network stage per run (mean over runs) and the reference forward of the same crops, same batches
        "network_stage_s": {e: round(v, 4) for e, v in network_s.items()},
        "reference_forward_s": round(float(np.median(reference_s)), 4),
        "reference_forward_s_per_round": [round(v, 4) for v in reference_s],
        "network_speed_over_reference": {
            e: round(float(np.median(reference_s)) / v, 3) for e, v in network_s.items() if v > 0
        },
        "detection_ms_per_frame": {
            name: round(1000 * sum(r["split_s"]["detection"] for r in rs) / sum(r["frames"] for r in rs), 1)
            for name, rs in runs.items()
        },
    }
    if "torch" in engines and "torch-amp" in engines:
        result["network_stage_torch_amp_vs_torch"] = round(network_s["torch"] / network_s["torch-amp"], 3)
        result["no_render_torch_amp_vs_torch"] = round(
            _pooled_fps(runs["torch-amp_no_render"]) / _pooled_fps(runs["torch_no_render"]), 3
        )
        if "onnxruntime" in engines:
            result["network_stage_torch_amp_vs_onnxruntime"] = round(
                network_s["onnxruntime"] / network_s["torch-amp"], 3
            )
    if "torch" in engines and "onnxruntime" in engines:
        result["network_stage_onnxruntime_vs_torch"] = round(network_s["torch"] / network_s["onnxruntime"], 3)
        result["no_render_onnxruntime_vs_torch"] = round(
            _pooled_fps(runs["onnxruntime_no_render"]) / _pooled_fps(runs["torch_no_render"]), 3
        )
        per_round = [
            o["frames_per_s"] / t["frames_per_s"]
            for o, t in zip(runs["onnxruntime_no_render"], runs["torch_no_render"])
        ]
        result["no_render_onnxruntime_vs_torch_per_round"] = [round(v, 3) for v in per_round]
    result["runs"] = runs
    return result


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
        "--engines",
        default="torch,onnxruntime,torch-amp",
        help="engines to run (each in both modes, every round): torch, onnxruntime, torch-amp (--amp)",
    )
    parser.add_argument(
        "--detectors",
        default="hog,yolox",
        help="hog (no download) and/or yolox (the default once fetched: the real file with --yolox-weights, else "
        "the YOLOX-S architecture with random weights, people replayed from a HOG pre-pass)",
    )
    parser.add_argument(
        "--yolox-weights",
        type=Path,
        default=None,
        help="the zoo's object_detection_yolox_2022nov.onnx (`gtacli fetch detector`), to time the real detector",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()

    import torch

    from gtacli.device import keep_freed_memory, resolve_device
    from gtacli.layout import DataLayout
    from gtacli.model.engines import cpu_has_bfloat16_units, load_engine

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
        unknown = [e for e in engines if e not in ENGINE_VARIANTS]
        if unknown:
            raise SystemExit(f"--engines: unknown {', '.join(unknown)} ({', '.join(ENGINE_VARIANTS)})")
        for engine in engines:  # a first use exports the ONNX model into the data root's cache: not timed
            engine_name, amp = ENGINE_VARIANTS[engine]
            load_engine(checkpoint, DataLayout(data_root), device, engine_name, amp=amp)
        detectors = []
        for name in [d.strip() for d in args.detectors.split(",") if d.strip()]:
            if name == "hog":
                detectors.append(DetectorSetup("hog"))
            elif name == "yolox" and args.yolox_weights is not None:
                detectors.append(DetectorSetup("yolox", args.yolox_weights))
            elif name == "yolox":
                from yolox_architecture import write_yolox_s_onnx

                weights = write_yolox_s_onnx(tmp / "yolox_s_random_weights.onnx")
                detectors.append(DetectorSetup("yolox", weights, random_weights=True))
            else:
                raise SystemExit(f"--detectors: unknown {name!r} (hog, yolox)")
        scene = Scene(video_path, checkpoint, data_root, tmp, bbox, device, args.batch_size)
        scenarios = {d.name: measure(args, scene, d, engines) for d in detectors}
        by_batch = (
            engines_by_batch(checkpoint, data_root, engines)
            if device.type == "cpu" and "torch" in engines and len(engines) > 1
            else None
        )
    result = {
        "benchmark": "demo",
        "command": "python benchmarks/bench_demo.py " + " ".join(sys.argv[1:]),
        "video": video_info,
        "device": str(device),
        "rounds": args.rounds,
        "detectors": scenarios,
        # the network alone, both engines interleaved, outside the demo: how the ratio depends on the batch
        "network_by_batch_size": by_batch,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime_intra_op_threads": torch.get_num_threads(),  # the engine takes torch's count
        "opencv_threads": _opencv_threads(),
        "cpu_bfloat16_units": cpu_has_bfloat16_units(),  # AMX / AVX512-BF16: what makes torch-amp fast
        "keep_freed_memory": kept_freed_memory,
        "cpu_count": os.cpu_count(),
        # other processes on the same cores inflate every stage: the load averages (1/5/15 min) before and after
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "checkpoint": "synthetic sample tree" if args.checkpoint is None else str(args.checkpoint),
        "goals": {
            "network_stage_onnxruntime_vs_torch": ">= 1.3 (CPU)",
            "no_render_onnxruntime_vs_torch": ">= 1.1 (CPU)",
            "render_vs_no_render": ">= 0.8",
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    from gtacli.io.atomic import atomic_write_json

    atomic_write_json(args.output, result)
    print(json.dumps(summary(result), indent=2))
    return 0


def _opencv_threads() -> int:
    import cv2

    return cv2.getNumThreads()


def summary(result: dict) -> dict:
    """The headline ratios per detector (the file holds every run)."""
    keys = ("network_stage_onnxruntime_vs_torch", "no_render_onnxruntime_vs_torch",
            "no_render_onnxruntime_vs_torch_per_round", "detection_ms_per_frame", "network_speed_over_reference",
            "network_stage_torch_amp_vs_torch", "no_render_torch_amp_vs_torch",
            "network_stage_torch_amp_vs_onnxruntime")  # fmt: skip
    out = {
        name: {
            **{k: scenario[k] for k in keys if k in scenario},
            "render_vs_no_render": {e: dict(r) for e, r in scenario["render_vs_no_render"].items()},
        }
        for name, scenario in result["detectors"].items()
    }
    if result.get("network_by_batch_size"):
        out["network_by_batch_size"] = {
            b: {k: v for k, v in row.items() if "per_repeat" not in k}
            for b, row in result["network_by_batch_size"].items()
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
