"""Benchmark of `gtacli eval` (issue 4). One command; results to benchmarks/results/eval.json.

(a) Pipeline efficiency: pure batched model-forward time of N frames divided by the wall time of the
    `gtacli eval` process on the same N frames (goal >= 0.90 on the CPU). Frames come from the `small`
    sample tree (`gtacli sample-data`), its pw3d rows tiled to N. The forward-only time is measured after one
    warm-up batch (steady state), which makes the ratio conservative. Eval and forward-only runs alternate for
    `--rounds` pairs (a shared machine's load changes over minutes); each pair's wall and CPU-time ratios and
    the medians are reported, with eval's own `seconds` (start-up and imports excluded) and loop time.
(b) Large HumanData: a generated GTA-size file (1.4 M frames, `gta_human_4x.npz` keys, legacy
    `__temporal_len__` header, compressed 24-joint keypoints, smpl dict) opened with `HumanData.load` and
    its first batch (32 rows of image paths, boxes, smpl_49 2D/3D keypoints and SMPL) read: the first open
    (which builds the memory-mappable cache), a cached open, and for reference an open without the cache.

    python benchmarks/bench_eval.py                      # both parts, defaults below
    python benchmarks/bench_eval.py --frames 128 --rounds 1 --skip-large
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "eval.json"
GTA_SLOTS = (
    4,
    5,
    7,
    8,
    16,
    17,
    18,
    19,
    20,
    21,
    55,
    56,
    57,
    58,
    59,
    144,
    145,
    146,
    147,
    148,
    149,
    150,
    151,
    152,
)


def build_eval_tree(work: Path, frames: int) -> Path:
    """The small sample tree (built once) and a view of it whose pw3d_test.npz has `frames` rows."""
    from gtacli.data.human_data import HumanData, write_human_data
    from gtacli.sample.tree import build_sample_tree

    tree = work / "tree" / "data"
    if not (tree / "SYNTHETIC_DATA.json").is_file():
        build_sample_tree(tree, size="small", seed=0)
    view = work / f"view_{frames}" / "data"
    if view.exists():
        shutil.rmtree(view.parent)
    view.mkdir(parents=True)
    for name in ("body_models", "datasets", "pretrained_models", "SYNTHETIC_DATA.json"):
        (view / name).symlink_to(tree / name)
    src = HumanData.load(tree / "preprocessed_datasets" / "pw3d_test.npz")
    rows = np.arange(frames) % len(src)
    smpl = {k: v[rows] for k, v in src.smpl().items()}
    write_human_data(
        view / "preprocessed_datasets" / "pw3d_test.npz",
        {
            "image_path": [src.image_paths()[i] for i in rows],
            "bbox_xywh": src.bbox_xywh()[rows],
            "smpl": smpl,
            "meta": {"gender": [src.meta()["gender"][i] for i in rows]},
            "config": "pw3d",
        },
    )
    return view


def forward_only(view: Path, frames: int, batch_size: int) -> dict:
    """Pure batched forward of `frames` inputs (after one warm-up batch), model in eval mode, no_grad:
    wall and CPU seconds (this process)."""
    import torch

    from gtacli.layout import DataLayout
    from gtacli.model.checkpoint import load_weights
    from gtacli.model.estimator import build_estimator

    layout = DataLayout(view)
    model = build_estimator(layout).eval()
    load_weights(model, layout.spin_official)
    batches = [min(batch_size, frames - s) for s in range(0, frames, batch_size)]
    gen = torch.Generator().manual_seed(0)
    inputs = {b: torch.randn(b, 3, 224, 224, generator=gen) for b in set(batches)}
    with torch.no_grad():
        model(inputs[batches[0]])  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        for b in batches:
            model(inputs[b])
        return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def eval_process(view: Path, batch_size: int, workers: int) -> dict:
    cmd = [sys.executable, "-m", "gtacli", "eval", "--dataset", "pw3d", "--checkpoint",
           str(view / "pretrained_models" / "spin_official.pth"), "--data-root", str(view), "--batch-size",
           str(batch_size), "--workers", str(workers), "--json", "--quiet"]  # fmt: skip
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    after = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"gtacli eval failed:\n{proc.stderr}")
    doc = json.loads(proc.stdout)
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall": wall, "cpu": cpu, "doc": doc, "command": " ".join(cmd)}


def part_a(work: Path, frames: int, batch_size: int, workers: int, rounds: int) -> dict:
    """`rounds` interleaved pairs (eval process, then forward only) so that a change of machine load hits
    both sides; the ratio of each pair and the median are reported."""
    view = build_eval_tree(work, frames)
    pairs = []
    for _ in range(rounds):
        run = eval_process(view, batch_size, workers)
        forward = forward_only(view, frames, batch_size)
        doc = run["doc"]
        pairs.append(
            {
                "forward_only_wall_seconds": round(forward["wall"], 3),
                "forward_only_cpu_seconds": round(forward["cpu"], 3),
                "eval_wall_seconds": round(run["wall"], 3),
                "eval_cpu_seconds": round(run["cpu"], 3),
                "eval_reported_seconds": doc["seconds"],
                "eval_inference_loop_seconds": doc["inference_seconds"],
                "ratio_wall": round(forward["wall"] / run["wall"], 4),
                "ratio_cpu": round(forward["cpu"] / run["cpu"], 4),
                "ratio_to_eval_reported": round(forward["wall"] / doc["seconds"], 4),
                "load_average_1min_after": os.getloadavg()[0],
            }
        )
    return {
        "frames": frames,
        "batch_size": batch_size,
        "workers": workers,
        "rounds": pairs,
        "median_ratio_wall": float(np.median([p["ratio_wall"] for p in pairs])),
        "median_ratio_cpu": float(np.median([p["ratio_cpu"] for p in pairs])),
        "goal": ">= 0.90 (forward-only wall time / gtacli eval process wall time, CPU)",
        "eval_command": run["command"],
    }


def write_gta_like(path: Path, frames: int, seed: int = 0) -> None:
    """A GTA-size HumanData file as mmhuman3d's HumanData.dump writes it (np.savez_compressed), in chunks of
    generated data that compress like real data do (smooth sequences, not white noise)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(190, np.uint8)
    mask[list(GTA_SLOTS)] = 1
    t = np.arange(frames, dtype=np.float32)
    wave = np.sin(t / 50.0)[:, None, None]
    kp2d = (rng.normal(size=(1, 24, 3)).astype(np.float32) * 100 + wave * 20).astype(np.float32)
    kp2d[..., 2] = 1.0
    kp3d = (rng.normal(size=(1, 24, 4)).astype(np.float32) * 0.3 + wave * 0.05).astype(np.float32)
    kp3d[..., 3] = 1.0
    smpl = np.empty((), dtype=object)
    smpl[()] = {
        "body_pose": (rng.normal(size=(1, 23, 3)) * 0.2 + wave * 0.1).astype(np.float32),
        "global_orient": (rng.normal(size=(1, 3)) + wave[:, 0] * 0.1).astype(np.float32),
        "betas": np.repeat(rng.normal(size=(frames // 1000 + 1, 10)), 1000, axis=0)[:frames].astype(
            np.float32
        ),
        "transl": (rng.normal(size=(1, 3)) + wave[:, 0]).astype(np.float32),
    }
    bbox = np.stack([t % 1500, t % 700, 200 + t % 50, 400 + t % 80], axis=1).astype(np.float32)
    image_path = np.array([f"images/seq_{i // 100:08d}/{i % 100:08d}.jpeg" for i in range(frames)])
    np.savez_compressed(
        path,
        __key_strict__=False,
        __temporal_len__=frames,
        __keypoints_compressed__=True,
        config="gta_human",
        smpl=smpl,
        keypoints2d=kp2d,
        keypoints2d_mask=mask,
        keypoints3d=kp3d,
        keypoints3d_mask=mask,
        image_path=image_path,
        bbox_xywh=bbox,
    )


def first_batch(hd, batch: int = 32) -> float:
    rows = slice(0, batch)
    start = time.perf_counter()
    hd.image_paths(rows)
    hd.bbox_xywh(rows)
    hd.keypoints2d_smpl49(rows)
    hd.keypoints3d_smpl49(rows)
    hd.smpl(rows)
    return time.perf_counter() - start


def part_b(work: Path, frames: int) -> dict:
    from gtacli.data.human_data import HumanData

    root = work / f"large_{frames}" / "data"
    ann = root / "preprocessed_datasets" / "gta_human_4x.npz"
    ann.parent.mkdir(parents=True, exist_ok=True)
    generate = None
    if not ann.is_file():  # generated once per work dir (minutes); the cache is always rebuilt below
        start = time.perf_counter()
        write_gta_like(ann, frames)
        generate = round(time.perf_counter() - start, 2)
    shutil.rmtree(root / "cache", ignore_errors=True)

    def open_and_batch(**kwargs) -> dict:
        t0 = time.perf_counter()
        hd = HumanData.load(ann, **kwargs)
        opened = time.perf_counter() - t0
        batch = first_batch(hd)
        assert len(hd) == frames
        return {"open_seconds": round(opened, 4), "first_batch_seconds": round(batch, 4),
                "total_seconds": round(opened + batch, 4)}  # fmt: skip

    first = open_and_batch()  # builds the cache under root/cache (file >= CACHE_MIN_BYTES)
    cached = open_and_batch()
    cached_again = open_and_batch()
    no_cache = open_and_batch(use_cache=False)
    return {
        "frames": frames,
        "file_bytes": ann.stat().st_size,
        "generate_seconds": generate,
        "first_open_builds_cache": first,
        "cached_open": cached,
        "cached_open_again": cached_again,
        "open_without_cache": no_cache,
        "goal": "< 1 s to open and read the first batch (cached_open; the first open pays the one-off cache build)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "gtacli_bench_eval"
    )
    parser.add_argument("--frames", type=int, default=256, help="frames for part (a)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved eval / forward-only pairs for (a)")
    parser.add_argument("--large-frames", type=int, default=1_400_000, help="frames of the part (b) file")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()

    import torch

    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "benchmark": "bench_eval",
        "command": "python benchmarks/bench_eval.py " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg(),
        },  # fmt: skip
        "device": "cpu",
    }
    if not args.skip_pipeline:
        results["a_forward_vs_eval"] = part_a(
            args.work_dir, args.frames, args.batch_size, args.workers, args.rounds
        )
        print(json.dumps(results["a_forward_vs_eval"], indent=2))
    if not args.skip_large:
        results["b_large_human_data"] = part_b(args.work_dir, args.large_frames)
        print(json.dumps(results["b_large_human_data"], indent=2))
    results["machine"]["load_average_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {RESULTS}")


if __name__ == "__main__":
    main()
