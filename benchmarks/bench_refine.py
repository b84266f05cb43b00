"""Does `gtacli demo --refine` help? The 2D error before and after refinement, and the joints' acceleration.

One command:  python benchmarks/bench_refine.py [--lsp-samples 64] [--data-root DIR --checkpoint PATH]
              [--video-keypoints DIR [--video-keypoints-source TEXT]]

Without --data-root/--checkpoint it builds the tiny synthetic sample tree (random-weight checkpoint, synthetic
6890-vertex SMPL) and puts the real gmm_08.pkl of ../shared/assets (GTACLI_SHARED_ASSETS) into it.

A. im1010.jpg with its OpenPose file (`--bbox-file im1010_openpose.json --refine`): mean 2D error (image px) of
   the network's body and of the refined one, from results.json.
B. LSP real keypoints (the first --lsp-samples of lsp_dataset_original_train.npz, OpenPose BODY_25 detections
   as the demo reads them; crop = the annotation's centre and scale·200 px): the refine stage
   (`gtacli.demo.refine.Refiner`) from the mean parameters (what a random checkpoint's start is replaced by),
   2D error before and after.
C. The shared video (single_person_demo.mp4) with --refine: the mean acceleration (mm/frame², smpl_49 LSP
   joints relative to the pelvis) of the network's joints, of the joints refined frame by frame
   (--refine-smooth 0) and of those refined with the default temporal term, the 2D error of each, and (with
   --video-keypoints) the 2D acceleration (image px) of the keypoints themselves and of the refined bodies'
   joints in the same BODY_25 slots. It needs keypoints: a folder of OpenPose files per frame
   (--video-keypoints; benchmarks/make_video_keypoints.py makes one with MediaPipe Pose) or the keypoint model
   fetched into --data-root; without either the section says it was not measured. With the synthetic
   checkpoint the network predicts one body for every frame, so its acceleration is 0 (the `note` field).

Results go to benchmarks/results/refine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from gtacli.body.rotations import axis_angle_to_matrix, rot6d_to_rotmat
from gtacli.body.smpl import BodyModel
from gtacli.data.openpose import read_openpose
from gtacli.demo.config import DemoConfig, Person
from gtacli.demo.pipeline import run_demo
from gtacli.demo.refine import DEFAULT_TEMPORAL_WEIGHT, Refiner
from gtacli.io.atomic import atomic_write_text
from gtacli.layout import DataLayout
from gtacli.model.predict import CropPredictions

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GTACLI_SHARED_ASSETS", REPO.parent / "shared" / "assets"))
RESULT = REPO / "benchmarks" / "results" / "refine.json"
SPIN_CROP_UNIT = 200.0


def demo(input_path: Path, data_root: Path, checkpoint: Path, out: Path, **options: Any) -> Dict[str, Any]:
    config = DemoConfig(
        input=input_path, checkpoint=checkpoint, data_root=data_root, output=out, device="cpu", render=False,
        save_vertices=False, **options,
    )  # fmt: skip
    return run_demo(config)


def acceleration_mm(joints: np.ndarray, person_id: np.ndarray) -> Optional[float]:
    """Mean ‖J_t+1 − 2 J_t + J_t−1‖ (mm) of pelvis-relative LSP joints over each track's consecutive frames."""
    values: List[np.ndarray] = []
    for pid in np.unique(person_id):
        track = joints[person_id == pid][:, 25:39]
        track = track - track[:, 2:4].mean(axis=1, keepdims=True)
        if len(track) >= 3:
            values.append(np.linalg.norm(track[2:] - 2 * track[1:-1] + track[:-2], axis=-1).mean(axis=1))
    return float(np.concatenate(values).mean() * 1000) if values else None


def lsp_section(data_root: Path, n: int) -> Dict[str, Any]:
    data = np.load(SHARED / "lsp_dataset_original_train.npz", allow_pickle=False)
    layout = DataLayout(data_root)
    body_model = BodyModel.from_layout(layout, "neutral", h36m=False)
    refiner = Refiner(body_model, layout.gmm_prior, temporal_weight=0.0)
    mean = np.load(layout.smpl_mean_params)
    rotmat = rot6d_to_rotmat(torch.as_tensor(mean["pose"], dtype=torch.float64).reshape(1, 24, 6)).reshape(
        24, 3, 3
    )
    crowd = [
        Person(i, np.zeros(4), 1.0, i, "given", data["center"][i].astype(np.float64), float(data["scale"][i]) * SPIN_CROP_UNIT)
        for i in range(n)
    ]  # fmt: skip
    outputs = CropPredictions(
        rotmat=np.repeat(rotmat.numpy()[None], n, axis=0),
        betas=np.repeat(mean["shape"][None].astype(np.float64), n, axis=0),
        cam=np.repeat(mean["cam"][None].astype(np.float64), n, axis=0),
    )
    _, extra = refiner(crowd, outputs, list(data["openpose"][:n].astype(np.float64)))
    done = extra["refined"]
    return {
        "samples": n,
        "refined": int(done.sum()),
        "start": "mean parameters (the synthetic checkpoint is random)",
        "reprojection_px_network_mean": float(np.mean(extra["reprojection_px_network"][done])),
        "reprojection_px_refined_mean": float(np.mean(extra["reprojection_px_refined"][done])),
        "refined_lower": bool(np.mean(extra["reprojection_px_refined"][done]) < np.mean(extra["reprojection_px_network"][done])),
    }  # fmt: skip


def keypoint_files(folder: Path, frames: int) -> np.ndarray:
    """(T, 25, 3) BODY_25 of each frame's first person in `folder`'s `<%06d index>*.json` files (0: none)."""
    body = np.zeros((frames, 25, 3))
    for index in range(frames):
        found = sorted(folder.glob(f"{index:06d}*.json"))
        people = read_openpose(found[0]).keypoints if found else np.zeros((0, 25, 3))
        if len(people):
            body[index] = people[0]
    return body


def acceleration_px_2d(xy: np.ndarray, used: np.ndarray) -> Optional[float]:
    """Mean ‖x_t+1 − 2 x_t + x_t−1‖ (px) of (T, J, 2) positions over joints `used` (T, J) in all three frames."""
    if len(xy) < 3:
        return None
    step = np.linalg.norm(xy[2:] - 2 * xy[1:-1] + xy[:-2], axis=-1)
    mask = used[2:] & used[1:-1] & used[:-2]
    return float(step[mask].mean()) if mask.any() else None


def video_section(
    video: Path, data_root: Path, checkpoint: Path, tmp: Path, source: Dict[str, Any], folder: Optional[Path]
) -> Dict[str, Any]:
    """Section C: the network's joints, the refined ones without the temporal term and with the default one."""
    res = {}
    for name, weight in (("no_temporal", 0.0), ("temporal", DEFAULT_TEMPORAL_WEIGHT)):
        demo(video, data_root, checkpoint, tmp / f"video_{name}", refine=True, refine_smooth=weight, **source)
        res[name] = np.load(tmp / f"video_{name}" / "results.npz")
    net = res["temporal"]
    body_model = BodyModel.from_layout(DataLayout(data_root), "neutral", h36m=False)
    with torch.no_grad():
        pose = torch.as_tensor(net["network_smpl_pose"], dtype=torch.float32)
        joints = body_model(
            torch.as_tensor(net["network_betas"]), axis_angle_to_matrix(pose[:, 3:].reshape(-1, 3)).reshape(-1, 23, 3, 3),
            axis_angle_to_matrix(pose[:, :3]).reshape(-1, 1, 3, 3), pose2rot=False,
        ).joints.numpy()  # fmt: skip
    accel = {
        "network": acceleration_mm(joints, net["person_id"]),
        "refined_no_temporal": acceleration_mm(res["no_temporal"]["keypoints3d_smpl49"], net["person_id"]),
        "refined": acceleration_mm(net["keypoints3d_smpl49"], net["person_id"]),
    }
    out: Dict[str, Any] = {
        "measured": True,
        "keypoints": str(folder) if folder else "the fetched keypoint model",
        "frames": int(len(net["frame_index"])),
        "frames_refined": int(net["refined"].sum()),
        "temporal_weight": DEFAULT_TEMPORAL_WEIGHT,
        "acceleration_mm_network": accel["network"],
        "acceleration_mm_refined_no_temporal": accel["refined_no_temporal"],
        "acceleration_mm_refined": accel["refined"],
        "refined_not_higher_than_network": accel["refined"] <= accel["network"],
        "refined_not_higher_than_no_temporal": accel["refined"] <= accel["refined_no_temporal"],
        "reprojection_px_network": float(np.nanmean(net["reprojection_px_network"])),
        "reprojection_px_refined_no_temporal": float(np.nanmean(res["no_temporal"]["reprojection_px_refined"])),
        "reprojection_px_refined": float(np.nanmean(net["reprojection_px_refined"])),
    }  # fmt: skip
    if folder is not None:  # the same OpenPose joints: the keypoints' own jitter and the refined bodies'
        body = keypoint_files(folder, out["frames"])
        used = body[..., 2] > 0
        out["acceleration_px_keypoints_2d"] = acceleration_px_2d(body[..., :2], used)
        for key, name in (("refined_no_temporal_2d", "no_temporal"), ("refined_2d", "temporal")):
            xy = res[name]["keypoints2d_smpl49"][:, :25]
            out[f"acceleration_px_{key}"] = acceleration_px_2d(xy, used)
    out["note"] = (
        "the synthetic checkpoint has random weights: its prediction is the same body for every frame, so the "
        "network's joints do not move (acceleration 0) and 'refined no higher than the network' cannot hold for "
        "any fit that follows the keypoints; the meaningful comparison here is the refined joints with the "
        "temporal term against per-frame refinement (weight 0) and against the keypoints' own 2D jitter. The "
        "issue's network-vs-refined goal needs a trained checkpoint (--checkpoint)."
    )
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lsp-samples", type=int, default=64)
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--video-keypoints", type=Path, default=None)
    parser.add_argument(
        "--video-keypoints-source",
        default=None,
        help="how --video-keypoints were made (recorded in the results)",
    )
    parser.add_argument("--output", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    payload: Dict[str, Any] = {
        "benchmark": "demo --refine: 2D error before/after and the joints' acceleration",
        "command": "python benchmarks/bench_refine.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data_root = args.data_root
        if data_root is None:
            from gtacli.sample.tree import build_sample_tree

            data_root = build_sample_tree(tmp / "data", size="tiny", seed=0)
            shutil.copyfile(SHARED / "gmm_08.pkl", DataLayout(data_root).gmm_prior)
        checkpoint = args.checkpoint or data_root / "pretrained_models" / "spin_official.pth"
        payload["checkpoint"] = (
            "synthetic sample tree (random weights)" if args.checkpoint is None else str(checkpoint)
        )

        summary = demo(
            SHARED / "im1010.jpg", data_root, checkpoint, tmp / "im1010",
            bbox_file=SHARED / "im1010_openpose.json", refine=True,
        )  # fmt: skip
        refine = summary["refine"]
        payload["im1010"] = {
            "reprojection_px_network": refine["mean_reprojection_px_network"],
            "reprojection_px_refined": refine["mean_reprojection_px_refined"],
            "refined_lower": refine["mean_reprojection_px_refined"] < refine["mean_reprojection_px_network"],
        }
        payload["lsp"] = lsp_section(data_root, args.lsp_samples)

        video = SHARED / "single_person_demo.mp4"
        model = DataLayout(data_root).root / "keypoints"
        if args.video_keypoints is None and not any(model.glob("*.zip")):
            payload["video"] = {
                "measured": False,
                "why": "no keypoints for the video here: give --video-keypoints DIR (OpenPose per frame) or "
                "fetch the keypoint model into --data-root (`gtacli fetch keypoints`)",
            }
        else:
            kw = {"keypoints": args.video_keypoints} if args.video_keypoints else {
                "keypoint_model": next(model.glob("*.zip"))}  # fmt: skip
            payload["video"] = video_section(video, data_root, checkpoint, tmp, kw, args.video_keypoints)
            if args.video_keypoints_source:
                payload["video"]["keypoints_source"] = args.video_keypoints_source
    payload["load_average_at_end"] = list(os.getloadavg())
    atomic_write_text(args.output, json.dumps(payload, indent=2) + "\n")
    print(json.dumps({k: payload[k] for k in ("im1010", "lsp", "video")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
