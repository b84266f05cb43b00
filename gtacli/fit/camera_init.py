"""Where a fit starts: the camera translation and the facing direction from the 2D keypoints alone.

* `initial_translation`: least squares on the ground-truth joints (smpl_49 25–48, as both trainers place a
  fit), else on the torso (OpenPose and ground-truth hips and shoulders: SPIN's camera stage joints), else
  the weak-perspective camera.
* `best_facing`: the global orient turned about the camera's vertical axis by 0, 90, 180 or 270 degrees and
  about its optical axis by the same, whichever explains the keypoints best after `initial_translation`
  (SPIN's fitting loss). A start from the mean parameters faces the camera; a person seen from the back or
  the side is then a local minimum that gradient descent rarely leaves (measured on LSP,
  benchmarks/bench_fitter.py).

The rule that keeps a body from being turned around without cause. 2D keypoints do not say how deep a
joint is, so a body turned by 180° with bent limbs can explain them better than the right one (a lower
fitting loss is no evidence for the facing direction). What does tell front from back is the left/right
labelling of the torso: seen from the front, a person's right hip and shoulder are on the image's left.
`lateral_agreement` measures it (the confidence-weighted cosine between the projected and the annotated
right-minus-left vectors of the hips and shoulders, 1 = same sides, −1 = swapped). So:

1. the search runs only for samples whose start has no facing information (`facing_search="always"`: the
   mean parameters) or whose start contradicts the labels (agreement below `CONTRADICTED`; near 0 is a
   profile, no evidence either way) or lies behind the camera; a start that puts the torso's left and right
   where the keypoints have them (a network's prediction, a fit's previous result) keeps its facing
   direction (`facing_search="auto"`, the default);
2. a turn is a candidate only if its torso's sides are not swapped (agreement >= `SWAPPED`) and its
   least-squares translation is in front of the camera: an upside-down body behind the camera projects
   exactly like the upright one in front (x/z and y/z change sign twice), which is how bodies ended up
   ~180° from the truth from mean starts; it replaces the start only when it at least halves the fitting
   loss (`FACING_MARGIN`).
"""

from __future__ import annotations

import math
from typing import Any, Tuple

import torch

from gtacli.body.camera import estimate_translation, project_points
from gtacli.body.conventions import SMPL_49, TORSO_JOINTS
from gtacli.body.rotations import axis_angle_from_rotmat
from gtacli.fit.joints import rodrigues

FACING_TURNS_DEG = (0.0, 90.0, 180.0, 270.0)
# the same about the optical axis: sports photos (LSP) hold bodies upside down and sideways
ROLL_TURNS_DEG = (0.0, 90.0, 180.0, 270.0)
# a turn replaces the given orientation only when it at least halves the fitting loss: a network's
# prediction is usually right about the facing direction, the mean parameters' is right only by chance
FACING_MARGIN = 0.5
# right-minus-left pairs of the torso (OpenPose and ground-truth hips and shoulders), smpl_49 indices
LATERAL_PAIRS = tuple(
    (SMPL_49.index(f"right_{part}"), SMPL_49.index(f"left_{part}"))
    for part in ("hip_openpose", "shoulder_openpose", "hip_extra", "shoulder")
)
CONTRADICTED = (
    -0.2
)  # a start below this has the left and right sides swapped (near 0: a profile, no evidence)
SWAPPED = 0.0  # a turn whose agreement is below this is no candidate (its torso's sides are swapped)


def lateral_agreement(
    joints_cam: torch.Tensor, kp2d: torch.Tensor, focal_length: float, img_res: int
) -> torch.Tensor:
    """(B,) in [−1, 1]: confidence-weighted cosine between projected and annotated right-minus-left torso
    vectors (camera-frame joints (B, 49, 3), crop keypoints (B, 49, 3)); 0 where no pair is confident."""
    proj = project_points(joints_cam, focal=focal_length, center=img_res / 2.0)
    right = [r for r, _ in LATERAL_PAIRS]
    left = [lft for _, lft in LATERAL_PAIRS]
    conf = (kp2d[:, right, 2] * kp2d[:, left, 2]).clamp(min=0)
    seen = proj[:, right] - proj[:, left]
    wanted = torch.where(conf[..., None] > 0, kp2d[:, right, :2] - kp2d[:, left, :2], torch.zeros_like(seen))
    num = (conf * (seen * wanted).sum(-1)).sum(-1)
    den = (conf * seen.norm(dim=-1) * wanted.norm(dim=-1)).sum(-1)
    return torch.nan_to_num(num / den.clamp(min=1e-12), nan=0.0)


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
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(global_orient (B, 3), transl (B, 3), searched (B,) bool) by the rule of the module docstring:
    where the search runs, the turn of the grid with the lowest fitting loss among those that do not swap
    the torso's sides (a turn other than 0 must beat the start by `FACING_MARGIN`); elsewhere the start
    with its least-squares translation.

    `fitter` provides `config` (`facing_search`), `skeleton` and `criterion` (SPIN's formulation); `transl`
    is the fallback translation."""
    c = fitter.config
    batch = global_orient.shape[0]
    grid = [(yaw, roll) for roll in ROLL_TURNS_DEG for yaw in FACING_TURNS_DEG]  # (0, 0) first
    if c.facing_search == "never":
        grid = grid[:1]
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
        # least squares may place a turn behind the camera (negative depth): an upside-down body there
        # projects exactly like the upright one in front (x/z and y/z flip sign twice); never a candidate
        in_front = trans[:, 2].reshape(turns, batch) > 0
        loss = torch.where(in_front, loss, torch.full_like(loss, float("inf")))
        agree = lateral_agreement(joints + trans[:, None], kp, c.focal_length, c.img_res).reshape(
            turns, batch
        )
        searched = (agree[0] < CONTRADICTED) | ~in_front[0]
        if c.facing_search == "always":
            searched = torch.ones_like(searched)
        allowed = searched[None] & (agree[1:] >= SWAPPED) & (loss[1:] < FACING_MARGIN * loss[:1])
        loss[1:] = torch.where(allowed, loss[1:], torch.full_like(loss[1:], float("inf")))
        pick = loss.argmin(dim=0) * batch + torch.arange(batch, device=loss.device)
    return orients[pick], trans[pick], searched & (pick >= batch)
