"""SMPL parameter sequence of one track in the layout AMASS-style tools read (`poses`, `trans`, `betas`,
`gender`, `mocap_framerate`), plus the video's frame indices.

The scene frame follows `--up` like the other files: the root orientation is `U R_0` and `trans` is chosen so
that the body model with these parameters (root turning about its own rest joint J_0, then + trans) gives
`U (SMPL(pose) + t)`: `trans = U (J_0 + t) - J_0`. Plain arrays only (no pickled objects).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gtacli.body.rotations import matrix_to_axis_angle_np
from gtacli.export.animation import Motion
from gtacli.export.rig import Rig
from gtacli.export.rotations import scene_frames
from gtacli.io.atomic import atomic_path


def amass_arrays(motion: Motion, rig: Rig, *, up: str = "y", gender: str = "neutral") -> dict:
    U, _ = scene_frames(up)
    rot = motion.rotmats.copy()
    rot[:, 0] = U @ rot[:, 0]
    joint0 = rig.rest_joints[0]
    frames = motion.frames.astype(np.int64)
    return {
        "poses": matrix_to_axis_angle_np(rot).reshape(len(frames), 72),
        "trans": (joint0 + motion.transl) @ U.T - joint0,
        "betas": np.asarray(motion.betas, np.float64).reshape(10),
        "gender": np.array(gender),
        "mocap_framerate": np.array(float(motion.fps)),
        "frame_index": frames,
        "frame_filled": np.isin(frames, np.asarray(motion.filled, np.int64)),
        "track_id": np.array(int(motion.track_id), np.int64),
        "up_axis": np.array(up),
    }


def write_amass_npz(path: Path, motion: Motion, rig: Rig, *, up: str = "y", gender: str = "neutral") -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez(tmp, **amass_arrays(motion, rig, up=up, gender=gender))
    return path
