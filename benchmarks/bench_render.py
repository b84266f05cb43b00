"""How fast is the headless renderer on a 1080p frame with one SMPL-sized body (13776 faces)?

One command:  python benchmarks/bench_render.py [--repeats 10] [--scale 0.8] [--previous GIT_REV]

Builds the synthetic neutral SMPL mannequin, poses it (arms down, one knee bent), places it so that it
covers `--scale` of the frame height (a close-up demo frame is the hard case: more covered pixels), and times
`render_overlay` (rasterise + shade + blend), `render_mask_depth` and `side_view` on a 1920x1080 BGR frame.
Writes the median and min wall times in milliseconds to benchmarks/results/render.json.

`--previous REV` also loads `gtacli/render/overlay.py` as it was at git revision REV (a renderer that was one
self-contained module, e.g. 47c6958, the previous release) and times its `render_overlay` alternately with the
current one on the same scene, with the largest grey-level difference and the number of differing pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "render.json"
SIZE_HW = (1080, 1920)
FOCAL_PX = 1500.0


def posed_body() -> tuple:
    import torch

    from gtacli.body.smpl import BodyModel
    from gtacli.sample.synthetic_smpl import make_synthetic_smpl

    model = BodyModel(make_synthetic_smpl("neutral", 0))
    pose = torch.zeros(1, 69)
    pose[0, 3 * 15 + 2], pose[0, 3 * 16 + 2] = -1.1, 1.1  # arms down (shoulders, joints 16/17)
    pose[0, 3 * 3 + 0], pose[0, 0] = 0.9, -0.5  # left knee bent, left hip flexed
    orient = torch.tensor([[np.pi, 0.0, 0.0]])  # SMPL y up -> camera y down, facing the camera
    out = model(torch.zeros(1, 10), pose, orient)
    return out.vertices[0].numpy().astype(np.float64), model.faces


def timed(fn, repeats: int) -> dict:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        "median_ms": round(float(np.median(times)), 2),
        "min_ms": round(float(np.min(times)), 2),
        "repeats": repeats,
    }


def previous_renderer(rev: str):
    """The renderer at git revision `rev` (`gtacli/render/overlay.py` with the `gtacli/render/raster.py` of the
    same revision, or `gtacli/viz/render.py` before the package split), imported from temporary files: the
    previous overlay module must not run on today's rasteriser."""
    import importlib.util
    import subprocess
    import tempfile

    def show(path: str):
        shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, capture_output=True, text=True)
        return shown.stdout if shown.returncode == 0 else None

    for old_path in ("gtacli/render/overlay.py", "gtacli/viz/render.py"):
        source = show(old_path)
        if source is not None:
            break
    else:
        raise SystemExit(f"no renderer module at git revision {rev}")
    modules = {"previous_render": source}
    raster = show("gtacli/render/raster.py")
    if raster is not None:
        modules = {
            "previous_raster": raster,
            "previous_render": source.replace("gtacli.render.raster", "previous_raster"),
        }
    with tempfile.TemporaryDirectory(prefix="gtacli-previous-render-") as folder:
        for name, text in modules.items():
            path = Path(folder) / f"{name}.py"
            path.write_text(text, encoding="utf-8")
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses look their module up by name
            spec.loader.exec_module(module)
    return module


def compare_previous(rev: str, frame, verts, faces, K, repeats: int) -> dict:
    from gtacli.render.overlay import render_overlay

    old = previous_renderer(rev)
    times = {"previous": [], "current": []}
    cpu = {"previous": [], "current": []}
    for i in range(repeats):  # alternating, so a change in the machine's load hits both
        order = [("previous", old.render_overlay), ("current", render_overlay)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            fn(frame, verts, faces, K)
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn(frame, verts, faces, K)
            times[name].append((time.perf_counter() - start) * 1000.0)
            cpu[name].append((time.thread_time() - start_cpu) * 1000.0)
    a = old.render_overlay(frame, verts, faces, K).astype(int)
    b = render_overlay(frame, verts, faces, K).astype(int)
    return {
        "revision": rev,
        "previous_median_ms": round(float(np.median(times["previous"])), 2),
        "current_median_ms": round(float(np.median(times["current"])), 2),
        # CPU time of the drawing thread: less disturbed by other processes on the same cores
        "previous_median_cpu_ms": round(float(np.median(cpu["previous"])), 2),
        "current_median_cpu_ms": round(float(np.median(cpu["current"])), 2),
        "max_grey_level_difference": int(np.abs(a - b).max()),
        "pixels_differing": int((a != b).any(axis=2).sum()),
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--scale", type=float, default=0.8, help="body height as a share of the frame height")
    parser.add_argument("--previous", default=None, help="git revision whose renderer to time alongside")
    parser.add_argument(
        "--glibc-defaults",
        action="store_true",
        help="do not call keep_freed_memory() (gtacli demo calls it: freed buffers are reused, not re-faulted)",
    )
    parser.add_argument("--output", type=Path, default=RESULT, help="results file")
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]

    import torch

    from gtacli.device import keep_freed_memory

    kept = False if args.glibc_defaults else keep_freed_memory()
    torch.set_num_threads(
        1
    )  # the demo draws each overlay in one thread (several frames at once on several cores)

    from gtacli.render.overlay import render_mask_depth, render_overlay, side_view

    verts, faces = posed_body()
    height_m = np.ptp(verts[:, 1])
    depth_m = FOCAL_PX * height_m / (args.scale * SIZE_HW[0])
    verts = verts - 0.5 * (verts.min(0) + verts.max(0)) + np.array([0.0, 0.0, depth_m])
    K = np.array([[FOCAL_PX, 0, SIZE_HW[1] / 2], [0, FOCAL_PX, SIZE_HW[0] / 2], [0, 0, 1.0]])
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (*SIZE_HW, 3), dtype=np.uint8)
    mask, _ = render_mask_depth(verts, faces, K, SIZE_HW)
    result = {
        "frame_hw": list(SIZE_HW),
        "faces": int(len(faces)),
        "covered_pixels": int(mask.sum()),
        "body_height_share": args.scale,
        "keep_freed_memory": kept,
        "torch_threads": 1,
        "render_overlay": timed(lambda: render_overlay(frame, verts, faces, K), args.repeats),
        "render_mask_depth": timed(lambda: render_mask_depth(verts, faces, K, SIZE_HW), args.repeats),
        "side_view": timed(lambda: side_view(verts, faces, K, SIZE_HW), args.repeats),
        "previous": compare_previous(args.previous, frame, verts, faces, K, args.repeats)
        if args.previous
        else None,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "command": "python benchmarks/bench_render.py " + " ".join(sys.argv[1:]),
        # other processes on the same cores slow every figure: the load averages (1/5/15 min) around the run
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from gtacli.io.atomic import atomic_write_json

    atomic_write_json(args.output, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
