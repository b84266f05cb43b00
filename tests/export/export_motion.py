"""Demo-like results with real motion, for the export tests: two tracks over a 12 fps 240x320 video, the first
with a gap, a third track too short to export; poses vary per frame, each entry has its own focal length (the
demo's default), and the reference joints/vertices come from gtacli's body model (smplx)."""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from gtacli.body.rotations import axis_angle_to_matrix_np, matrix_to_axis_angle_np, rot_x, rot_y

WIDTH, HEIGHT, FPS = 320, 240, 12.0
FRAMES = 16


def _pose(rng: np.random.Generator, phase: float) -> np.ndarray:
    """(24, 3) axis-angle: upright in the camera (180 degrees about x), turning, limbs swinging."""
    root = rot_x(np.pi) @ rot_y(0.9 * np.sin(phase)) @ rot_x(0.15 * np.cos(phase))
    body = 0.35 * np.sin(phase + rng.uniform(0, 2 * np.pi, (23, 3))) * rng.uniform(0.3, 1.0, (23, 3))
    body[[3, 4], 0] = 1.2 + 0.3 * np.sin(phase)  # knees bent past 60 degrees
    return np.concatenate([matrix_to_axis_angle_np(root)[None], body], axis=0)


def demo_results(seed: int = 0) -> Dict[str, np.ndarray]:
    """A results.npz-like dict (the fields gtacli demo writes that the export reads)."""
    rng = np.random.default_rng(seed)
    rows = []
    tracks = {0: [f for f in range(FRAMES) if f not in (5, 6, 7)], 1: list(range(2, 14)), 2: [0, 1, 2]}
    betas_of = {pid: rng.normal(0, 0.8, 10) for pid in tracks}
    for pid, frames in tracks.items():
        for f in frames:
            phase = 0.35 * f + pid
            rows.append(
                {
                    "frame_index": f,
                    "person_id": pid,
                    "smpl_pose": _pose(np.random.default_rng(pid), phase).reshape(72),
                    "betas": betas_of[pid] + rng.normal(0, 0.05, 10),
                    "transl": np.array([-0.6 + 1.2 * pid + 0.03 * f, 0.1 * np.sin(phase), 9.0 + 0.1 * f]),
                    "focal_length": 700.0 + 20.0 * np.sin(f),
                }
            )
    out = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    out["smpl_pose"] = out["smpl_pose"].astype(np.float32)
    out["betas"] = out["betas"].astype(np.float32)
    out["transl"] = out["transl"].astype(np.float32)
    out["focal_length"] = out["focal_length"].astype(np.float32)
    out["frame_size_hw"] = np.tile([HEIGHT, WIDTH], (FRAMES, 1)).astype(np.int64)
    out["frame_names"] = np.array([f"{i:06d}" for i in range(FRAMES)])
    out["fps"] = np.array(FPS)
    return out


def body_model_reference(body_model, betas: np.ndarray, pose: np.ndarray, transl: np.ndarray):
    """(joints (T, 24, 3), vertices (T, V, 3)) of gtacli's body model for one shape, poses (T, 24, 3, 3) and
    translations (T, 3): what an exported file must reproduce."""
    frames = len(pose)
    with torch.no_grad():
        out = body_model(
            torch.as_tensor(np.tile(betas, (frames, 1)), dtype=torch.float64),
            torch.as_tensor(pose[:, 1:], dtype=torch.float64),
            torch.as_tensor(pose[:, :1], dtype=torch.float64),
            pose2rot=False,
        )
    return (
        out.joints_smpl.numpy() + transl[:, None],
        out.vertices.numpy() + transl[:, None],
    )


def rotmats(results: Dict[str, np.ndarray]) -> np.ndarray:
    return axis_angle_to_matrix_np(results["smpl_pose"].astype(np.float64).reshape(-1, 24, 3))
