"""Run every external check of `gtacli demo --export-animation` on real inputs and write the figures to
benchmarks/results/animation_export.json (and, with --picture, the README's Blender-next-to-overlay image).

For each input (default: the shared single_person_demo.mp4, multi_person_demo.mp4 and im1010.jpg with its
box file):

1. `gtacli demo INPUT --export-animation --pose-correctives --save-vertices --save-frames` (the network), then
   the same results again without correctives (`--from-results`), and the demo's own overlay of those results on
   a black copy of the input (`--from-results --no-draw-boxes`), whose drawn pixels are the overlay silhouette;
2. per track: glTF-Validator errors of both .glb files; the BVH's forward kinematics against the demo's
   `keypoints3d_smpl24 + transl` on every observed frame; Blender's import of the .glb and .bvh (joints at the
   first, a middle and the last observed frame, mesh vertices at the middle frame against `vertices + transl`
   with correctives, the largest difference without them, keyframe range, frame rate);
3. three.js in headless Chromium: every exported track at a middle frame through the file's camera at the
   video's size, union of silhouettes against the overlay silhouette (IoU).

The demo's `transl` uses each person's own focal length; the export has one camera for the video (focal F in
results.json), so references are `... + transl * (1, 1, F / focal_length)` (docs: gtacli/export/animation.py).

  python benchmarks/check_animation_export.py --data-root DATA --checkpoint CKPT [--input VIDEO[:BOXES]]...
      [--work-dir DIR] [--output benchmarks/results/animation_export.json] [--picture docs/images/x.png]

Without --data-root a tiny synthetic tree is built in the work folder (its checkpoint has random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "export_check"))
import viewer_checks as checks  # noqa: E402

from gtacli.export.bvh import read_bvh  # noqa: E402
from gtacli.export.rig import SMPL_JOINT_NAMES  # noqa: E402
from gtacli.export.rotations import scene_frames  # noqa: E402

SHARED = Path(os.environ.get("GTACLI_SHARED_ASSETS", REPO.parent / "shared" / "assets"))
BLENDER_FROM_Y_UP = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])


def gtacli(*args) -> Dict:
    cmd = [sys.executable, "-m", "gtacli", "demo", *map(str, args), "--json", "--quiet", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def black_copy(src: Path, dst_dir: Path, results: Dict) -> Path:
    """An input of the same size, frame count and rate, all black: the overlay on it is the silhouette."""
    height, width = (int(v) for v in results["frame_size_hw"][0])
    fps = float(results["fps"])
    if fps > 0:
        path = dst_dir / "black.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for _ in range(len(results["frame_size_hw"])):
            writer.write(np.zeros((height, width, 3), np.uint8))
        writer.release()
    else:
        path = dst_dir / "black.png"
        cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))
    return path


def reference(data, focal: float, pid: int, field: str) -> Dict[int, np.ndarray]:
    rows = np.flatnonzero(data["person_id"] == pid)
    out = {}
    for r in rows:
        transl = data["transl"][r].astype(np.float64) * [1.0, 1.0, focal / float(data["focal_length"][r])]
        out[int(data["frame_index"][r])] = data[field][r].astype(np.float64) + transl
    return out


def check_input(name: str, source: Path, boxes, args, work: Path) -> Dict:
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    common = ["--data-root", args.data_root]
    first = gtacli(source, *common, "--checkpoint", args.checkpoint, *(["--bbox-file", boxes] if boxes else []),
                   "--export-animation", "--pose-correctives", "--save-vertices", "--save-frames", "--no-draw-boxes",
                   "-o", work / "exact")  # fmt: skip
    demo_s = time.perf_counter() - t0
    gtacli(source, *common, "--from-results", work / "exact" / "results.npz", "--export-animation",
           "--no-render", "-o", work / "plain")  # fmt: skip
    data = np.load(work / "exact" / "results.npz")
    black = black_copy(source, work, data)
    gtacli(black, *common, "--from-results", work / "exact" / "results.npz", "--save-frames", "--no-draw-boxes",
           "-o", work / "silhouette")  # fmt: skip
    animation = first["animation"]
    focal = float(animation["camera"]["focal_px"])
    fps = float(data["fps"]) or 30.0
    U, _ = scene_frames(animation["up_axis"])
    to_blender = BLENDER_FROM_Y_UP @ U
    glbs = sorted({e["file"] for e in animation["files"] if e["file"].endswith(".glb")})
    report = {"input": str(source), "frames": int(len(data["frame_size_hw"])), "fps": float(data["fps"]),
              "size_wh": [int(data["frame_size_hw"][0][1]), int(data["frame_size_hw"][0][0])],
              "camera_focal_px": focal, "skipped": animation["skipped"], "demo_s": round(demo_s, 2), "tracks": {}}  # fmt: skip
    validator = checks.validate_gltf([work / d / g for d in ("exact", "plain") for g in glbs])
    report["validator_errors"] = sum(r["errors"] for r in validator)
    report["validator_warnings"] = sum(r["warnings"] for r in validator)
    for glb in glbs:
        stem = Path(glb).stem
        pid = int(stem.split("_")[-1]) if stem.startswith("track_") else None
        if pid is None:
            continue
        joints = reference(data, focal, pid, "keypoints3d_smpl24")
        verts = reference(data, focal, pid, "vertices")
        observed = sorted(joints)
        span0 = observed[0]
        bvh = read_bvh(work / "exact" / "animation" / f"{stem}.bvh")
        fk = bvh.joint_positions()[:, [bvh.names.index(n) for n in SMPL_JOINT_NAMES]]
        bvh_err = max(float(np.abs(fk[f - span0] - joints[f] @ U.T).max()) for f in observed)
        mid = observed[len(observed) // 2]
        frames = [observed[0], mid, observed[-1]]
        exact = checks.blender_import(glb=work / "exact" / glb, bvh=work / "exact" / "animation" / f"{stem}.bvh",
                                      frames=frames, mesh_frame=mid, first_frame=span0)  # fmt: skip
        plain = checks.blender_import(glb=work / "plain" / glb, frames=[mid], mesh_frame=mid)
        expect = np.array([joints[f] for f in frames]) @ to_blender.T
        report["tracks"][stem] = {
            "observed_frames": len(observed),
            "frame_range": [span0, int(observed[-1])],
            "bvh_fk_max_mm": round(1000 * bvh_err, 4),
            "blender_frames": frames,
            "blender_glb_joints_max_mm": round(1000 * float(np.abs(exact["glb_joints"] - expect).max()), 4),
            "blender_bvh_joints_max_mm": round(1000 * float(np.abs(exact["bvh_joints"] - expect).max()), 4),
            "blender_vertices_max_mm_correctives": round(
                1000 * float(np.abs(exact["glb_vertices"] - verts[mid] @ to_blender.T).max()), 4),
            "blender_vertices_max_mm_without_correctives": round(
                1000 * float(np.abs(plain["glb_vertices"] - verts[mid] @ to_blender.T).max()), 4),
            "blender_glb_keys": list(map(float, exact["glb_keys"])),
            "blender_bvh_keys": list(map(float, exact["bvh_keys"])),
            "blender_bvh_fps": float(exact["bvh_fps"]),
        }  # fmt: skip
    report["threejs"] = threejs_check(data, glbs, work, fps)
    if args.picture and name == args.picture_input:
        track = next(iter(report["tracks"]))
        picture(work, track, report["tracks"][track]["blender_frames"][1], source, data, Path(args.picture))
    report["total_s"] = round(time.perf_counter() - t0, 2)
    return report


def threejs_check(data, glbs: List[str], work: Path, fps: float) -> Dict:
    """IoU at the frame nearest the middle where exactly the exported tracks are observed."""
    exported = {int(Path(g).stem.split("_")[-1]) for g in glbs if Path(g).stem.startswith("track_")}
    count = len(data["frame_size_hw"])
    by_frame = {f: set(int(p) for p in data["person_id"][data["frame_index"] == f]) for f in range(count)}
    order = sorted(range(count), key=lambda f: abs(f - count // 2))
    frame = next((f for f in order if by_frame[f] and by_frame[f] <= exported), None)
    if frame is None:
        return {"skipped": "no frame shows only exported tracks"}
    height, width = (int(v) for v in data["frame_size_hw"][frame])
    sil_dir = work / "silhouette"
    files = sorted((sil_dir / "frames").glob("*.png")) or sorted((sil_dir / "overlays").glob("*.png"))
    overlay = cv2.imread(str(files[frame]))
    demo_mask = overlay.max(axis=2) > 20
    union = np.zeros_like(demo_mask)
    for pid in sorted(by_frame[frame]):
        mask, _ = checks.threejs_silhouette(
            work / "exact" / "animation" / f"track_{pid}.glb", frame / fps, width, height
        )
        union |= mask
    return {"frame": frame, "tracks": sorted(by_frame[frame]), "iou": round(checks.iou(union, demo_mask), 4),
            "overlay_pixels": int(demo_mask.sum()), "threejs_pixels": int(union.sum())}  # fmt: skip


def picture(work: Path, track: str, frame: int, source: Path, data, out: Path) -> None:
    """The overlay frame next to Blender's render of the imported .glb through its camera, over the frame."""
    scale = 0.25
    render_png = work / "blender_render.png"
    checks.blender_import(glb=work / "exact" / "animation" / f"{track}.glb", frames=[frame], mesh_frame=frame,
                          render=render_png, render_scale=scale)  # fmt: skip
    frames = sorted((work / "exact" / "frames").glob("*.png")) or sorted(
        (work / "exact" / "overlays").glob("*.png")
    )
    overlay = cv2.imread(str(frames[frame]))
    if float(data["fps"]) > 0:
        cap = cv2.VideoCapture(str(source))
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, original = cap.read()
        cap.release()
    else:
        original = cv2.imread(str(source))
    render = cv2.imread(str(render_png), cv2.IMREAD_UNCHANGED)
    size = (render.shape[1], render.shape[0])
    base = cv2.resize(original, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = render[..., 3:4].astype(np.float32) / 255.0
    blender = (render[..., :3] * alpha + base * (1 - alpha)).astype(np.uint8)
    left = cv2.resize(overlay, size, interpolation=cv2.INTER_AREA)
    gap = np.full((size[1], 6, 3), 255, np.uint8)
    image = np.concatenate([left, gap, blender], axis=1)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def versions() -> Dict:
    def run(cmd):
        try:
            return (
                subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip().splitlines()[0]
            )
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    nm = checks.node_modules()

    def pkg(n):
        return json.loads((nm / n / "package.json").read_text())["version"] if (nm / n).is_dir() else None

    return {"blender": run(["blender", "--version"]), "chromium": run(["chromium", "--version"]),
            "node": run(["node", "--version"]), "gltf-validator": pkg("gltf-validator"), "three": pkg("three"),
            "python": platform.python_version()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--input", action="append", help="VIDEO or IMAGE, optionally :BOXFILE")
    parser.add_argument(
        "--work-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "gtacli_anim_check"
    )
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "animation_export.json"
    )
    parser.add_argument("--picture", help="write the Blender-next-to-overlay PNG here")
    parser.add_argument("--picture-input", default="single_person_demo")
    args = parser.parse_args()
    for reason in (checks.validator_missing(), checks.blender_missing(), checks.chromium_missing()):
        if reason:
            raise SystemExit(reason)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.data_root is None:
        args.data_root = args.work_dir / "data"
        subprocess.run([sys.executable, "-m", "gtacli", "sample-data", "--data-root", str(args.data_root),
                        "--size", "tiny", "--quiet"], check=True)  # fmt: skip
    if args.checkpoint is None:
        args.checkpoint = args.data_root / "pretrained_models" / "spin_official.pth"
    inputs = args.input or [str(SHARED / "single_person_demo.mp4"), str(SHARED / "multi_person_demo.mp4"),
                            f"{SHARED / 'im1010.jpg'}:{SHARED / 'im1010_bbox.json'}"]  # fmt: skip
    reports = {}
    for item in inputs:
        path, _, boxes = item.partition(":")
        source = Path(path)
        name = source.stem
        print(f"checking {name} ...", file=sys.stderr)
        reports[name] = check_input(name, source, Path(boxes) if boxes else None, args, args.work_dir / name)
    result = {
        "what": "external checks of gtacli demo --export-animation (benchmarks/check_animation_export.py)",
        "data_root": str(args.data_root),
        "synthetic_body_model": (Path(args.data_root) / "SYNTHETIC_DATA.json").is_file(),
        "load_average": os.getloadavg(),
        "versions": versions(),
        "inputs": reports,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
