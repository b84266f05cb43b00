"""Does `gtacli demo` keep its memory flat on a long video? Peak RSS and frames/s, 1,200 frames against 40.

One command:  python benchmarks/bench_long_video.py [--frames 1200] [--short 40] [--modes render,no-render]

Goal (issue 25): the peak resident memory of the 1,200-frame run at most 50 MB above the 40-frame run's, and its
frames/s within 10 % of the 40-frame run's (not slower than 0.9 x; the short run's figure includes its warm-up, so
the long one may well be faster).

The short video is the shared 1080p clip (../shared/assets/single_person_demo.mp4, 40 frames, 1080x1920, a real
person); the long one plays those frames back and forth (0..39, 38..1, 0..39, ...) up to --frames, so the person
moves continuously and the tracker keeps one identity. Each run is the real CLI (`python -m gtacli demo`) in its
own process, on the CPU, with the default detector (HOG without fetched YOLOX weights), the tiny synthetic sample
tree's random-weight checkpoint (timings and memory do not depend on the weights' values), overlays rendered and
encoded (`render`) or results only (`no-render`). Peak RSS is the child's `ru_maxrss` (from wait4); frames/s is
results.json's steady-state `frames_per_s` (the one-time checkpoint and SMPL loading left out). Writes
benchmarks/results/long_video.json with the machine's load average before and after: other processes on the
same cores slow every stage, so compare frames/s only between runs made close together.
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
SHARED_VIDEO = (
    Path(os.environ.get("GTACLI_SHARED_ASSETS", REPO.parent / "shared" / "assets")) / "single_person_demo.mp4"
)
RESULT = REPO / "benchmarks" / "results" / "long_video.json"
MB = 1024 * 1024


def source_frames(limit: int):
    import cv2

    cap = cv2.VideoCapture(str(SHARED_VIDEO))
    fps = cap.get(cv2.CAP_PROP_FPS) or 12.0
    frames = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, float(fps)


def back_and_forth(count: int, length: int):
    """Frame indices 0..n-1, n-2..1, 0..n-1, ... up to `length` (the clip played back and forth)."""
    cycle = list(range(count)) + list(range(count - 2, 0, -1)) if count > 1 else [0]
    return [cycle[i % len(cycle)] for i in range(length)]


def write_video(path: Path, frames, order, fps: float) -> None:
    from gtacli.io.video import VideoSink

    sink = VideoSink(path, fps)
    for i in order:
        sink.write(frames[i])
    sink.close()


def run_cli(video: Path, out: Path, tree: Path, render: bool, batch: int) -> dict:
    """One `gtacli demo` process; its peak RSS (MB) from wait4 and its results.json figures."""
    command = [
        sys.executable, "-m", "gtacli", "demo", str(video),
        "--checkpoint", str(tree / "pretrained_models" / "spin_official.pth"),
        "--data-root", str(tree), "--device", "cpu", "--output", str(out),
        "--batch-size", str(batch), "--quiet", "--json",
    ] + ([] if render else ["--no-render"])  # fmt: skip
    start = time.perf_counter()
    with (
        open(out.parent / f"{out.name}.stdout", "wb") as stdout,
        open(out.parent / f"{out.name}.stderr", "wb") as err,
    ):
        child = subprocess.Popen(command, stdout=stdout, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"gtacli demo failed: {(out.parent / f'{out.name}.stderr').read_text()[-2000:]}")
    summary = json.loads((out / "results.json").read_text())
    return {
        "frames": summary["frames"],
        "tracks": summary["tracks"],
        "peak_rss_mb": round(usage.ru_maxrss * 1024 / MB, 1),  # Linux reports kB
        "frames_per_s": summary["frames_per_s"],
        "wall_s": round(wall, 1),
        "results_npz_mb": round((out / "results.npz").stat().st_size / MB, 2),
        "timings_s": summary["timings_s"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1200, help="length of the long video")
    parser.add_argument("--short", type=int, default=40, help="frames of the short video (the clip's own 40)")
    parser.add_argument("--modes", default="render,no-render")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args()
    if not SHARED_VIDEO.is_file():
        raise SystemExit(f"needs the shared clip {SHARED_VIDEO} (set GTACLI_SHARED_ASSETS)")

    from gtacli.sample.tree import build_sample_tree

    load_before = [round(x, 2) for x in os.getloadavg()]
    runs: dict = {}
    with tempfile.TemporaryDirectory(prefix="gtacli_bench_long_") as tmp_name:
        tmp = Path(tmp_name)
        tree = tmp / "data"
        build_sample_tree(tree, size="tiny", seed=0)
        frames, fps = source_frames(args.short)
        short, long = tmp / "short.mp4", tmp / "long.mp4"
        write_video(short, frames, list(range(len(frames))), fps)
        write_video(long, frames, back_and_forth(len(frames), args.frames), fps)
        del frames
        for mode in args.modes.split(","):
            render = mode == "render"
            runs[mode] = {}
            for tag, video in (("short", short), ("long", long)):
                runs[mode][tag] = run_cli(video, tmp / f"out_{mode}_{tag}", tree, render, args.batch_size)
                print(
                    mode,
                    tag,
                    json.dumps({k: v for k, v in runs[mode][tag].items() if k != "timings_s"}),
                    flush=True,
                )
    verdicts = {}
    for mode, pair in runs.items():
        extra = pair["long"]["peak_rss_mb"] - pair["short"]["peak_rss_mb"]
        ratio = pair["long"]["frames_per_s"] / pair["short"]["frames_per_s"]
        verdicts[mode] = {
            "peak_rss_extra_mb": round(extra, 1),
            "rss_goal_met": extra <= 50.0,
            "fps_ratio_long_vs_short": round(ratio, 3),
            "fps_goal_met": ratio >= 0.90,  # not slower by more than 10 % (faster is no failure)
        }
    report = {
        "benchmark": "long_video",
        "command": "python benchmarks/bench_long_video.py " + " ".join(sys.argv[1:]),
        "video": f"{SHARED_VIDEO.name}: {args.short} frames 1080x1920 at {fps:g} fps; long = back and forth to {args.frames}",
        "checkpoint": "synthetic sample tree (random weights)",
        "detector": "default (hog on the sample tree)",
        "batch_size": args.batch_size,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
        "goals": "peak RSS long - short <= 50 MB; frames/s long >= 0.9 x short",
        "results": verdicts,
        "measured_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(verdicts, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
