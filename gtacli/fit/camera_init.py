"""Where a fit starts: the camera translation and the facing direction from the 2D keypoints alone.

* `initial_translation`: least squares on the ground-truth joints (smpl_49 25–48, as both trainers place a
  fit), else on the torso (OpenPose and ground-truth hips and shoulders: SPIN's camera stage joints), else
  the weak-perspective camera.
* `best_facing`: the global orient turned about the camera's vertical axis by 0, 90, 180 or 270 degrees and
  about its optical axis by the same, whichever explains the keypoints best after `initial_translation`
  (SPIN's fitting loss). A start from the
  mean parameters faces the camera; a person seen from the back or the side is then a local minimum that
  gradient descent rarely leaves (measured on LSP, benchmarks/bench_fitter.py). Left/right keypoint labels
  make the facing direction observable, so four evaluations of the body settle it.
"""

from __future__ import annotations

import math
from typing import Any, Tuple

import torch

from gtacli.body.camera import estimate_translation
from gtacli.body.conventions import TORSO_JOINTS
from gtacli.body.rotations import axis_angle_from_rotmat
from gtacli.fit.joints import rodrigues

FACING_TURNS_DEG = (0.0, 90.0, 180.0, 270.0)
# the same about the optical axis: sports photos (LSP) hold bodies upside down and sideways
ROLL_TURNS_DEG = (0.0, 90.0, 180.0, 270.0)
# a turn replaces the given orientation only when it at least halves the fitting loss: a network's
# prediction is usually right about the facing direction, the mean parameters' is right only by chance
FACING_MARGIN = 0.5


def initial_translation(
    joints: torch.Tensor, kp2d: torch.Tensor, fallback: torch.Tensor, focal_length: float, img_res: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(transl (B, 3), from_fallback (B,) bool) for root-frame joints (B, 49, 3) and crop keypoints (B, 49, 3)."""
    est, ok = estimate_translation(joints, kp2d, focal_length, img_res)
    torso, torso_ok = estimate_translation(joints, kp2d, focal_length, img_res, joint_idx=TORSO_JOINTS)
    transl = torch.where(ok[:, None], est, torch.where(torso_ok[:, None], torso, fallback))
    return transl, ~(ok | torso_ok)


def turned(global_orient: torch.Tensor, yaw_deg: float, roll_deg: float = 0.0) -> torch.Tensor:
    """(B, 3) axis-angle turned by `yaw_deg` about the camera's y axis, then `roll_deg` about its z axis."""
    yaw = global_orient.new_tensor([[0.0, math.radians(yaw_deg), 0.0]])
    roll = global_orient.new_tensor([[0.0, 0.0, math.radians(roll_deg)]])
    rot = rodrigues(roll) @ rodrigues(yaw) @ rodrigues(global_orient)
    return axis_angle_from_rotmat(rot[:, None]).reshape(-1, 3)


def best_facing(
    fitter: Any,
    global_orient: torch.Tensor,
    body_pose: torch.Tensor,
    betas: torch.Tensor,
    transl: torch.Tensor,
    kp2d: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(global_orient (B, 3), transl (B, 3)): the turn of `FACING_TURNS_DEG` with the lowest fitting loss
    (a turn other than 0 must beat the given orientation by `FACING_MARGIN`).

    `fitter` provides `skeleton` and `criterion` (SPIN's formulation); `transl` is the fallback translation."""
    c = fitter.config
    batch = global_orient.shape[0]
    grid = [(yaw, roll) for roll in ROLL_TURNS_DEG for yaw in FACING_TURNS_DEG]  # (0, 0) first
    turns = len(grid)
    with torch.no_grad():
        orients = torch.cat([turned(global_orient, yaw, roll) for yaw, roll in grid])  # (T*B, 3)
        # only the global orient differs between turns: one skeleton, rotated rigidly
        skeleton = fitter.skeleton(body_pose, betas)
        joints = torch.cat([skeleton(orient) for orient in orients.split(batch)])  # (T*B, 49, 3)
        kp = kp2d.repeat(turns, 1, 1)
        trans, _ = initial_translation(joints, kp, transl.repeat(turns, 1), c.focal_length, c.img_res)
        loss = fitter.criterion(joints, trans, kp).reshape(turns, batch)
        loss = torch.nan_to_num(loss, nan=float("inf"))
        loss[1:] = torch.where(
            loss[1:] < FACING_MARGIN * loss[:1], loss[1:], torch.full_like(loss[1:], float("inf"))
        )
        pick = loss.argmin(dim=0) * batch + torch.arange(batch, device=loss.device)
    return orients[pick], trans[pick]
