"""The six training losses of docs/reproduction.md §6.2, as mmhuman3d's `compute_losses` computes them.

Each loss module of mmhuman3d applies its weight to the element-wise loss *before* masking, and the keypoint
and vertex losses divide the confidence-weighted sum by the number of entries with a positive confidence
(not by B·J·D). All functions take tensors on the caller's device and return a 0-d tensor that stays in the
autograd graph (a zero that still depends on the prediction when nothing is valid, so DDP sees every
parameter used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from gtacli.body.camera import project_points
from gtacli.body.rotations import batch_rodrigues
from gtacli.train.recipe import GTA_SPIN_FT as _DEFAULT

LOSS_NAMES = (
    "keypoints3d_loss",
    "keypoints2d_loss",
    "vertex_loss",
    "smpl_pose_loss",
    "smpl_betas_loss",
    "camera_loss",
)


@dataclass(frozen=True)
class LossWeights:
    """Weights and constants of §6.2 (taken from a `Recipe` by `LossWeights.from_recipe`)."""

    # defaults = the published gta-spin-ft recipe (the numbers live in recipe.py only)
    keypoints3d: float = _DEFAULT.loss_keypoints3d_weight
    keypoints2d: float = _DEFAULT.loss_keypoints2d_weight
    vertex: float = _DEFAULT.loss_vertex_weight
    smpl_pose: float = _DEFAULT.loss_smpl_pose_weight
    smpl_betas: float = _DEFAULT.loss_smpl_betas_weight
    camera: float = _DEFAULT.loss_camera_weight
    camera_prior_scale: float = _DEFAULT.camera_prior_scale
    smooth_l1_beta: float = _DEFAULT.smooth_l1_beta
    pelvis_joints: tuple = tuple(_DEFAULT.pelvis_joints)
    focal_length: float = _DEFAULT.focal_length
    img_res: int = _DEFAULT.img_res

    @classmethod
    def from_recipe(cls, recipe) -> LossWeights:
        return cls(
            keypoints3d=recipe.loss_keypoints3d_weight,
            keypoints2d=recipe.loss_keypoints2d_weight,
            vertex=recipe.loss_vertex_weight,
            smpl_pose=recipe.loss_smpl_pose_weight,
            smpl_betas=recipe.loss_smpl_betas_weight,
            camera=recipe.loss_camera_weight,
            camera_prior_scale=recipe.camera_prior_scale,
            smooth_l1_beta=recipe.smooth_l1_beta,
            pelvis_joints=tuple(recipe.pelvis_joints),
            focal_length=recipe.focal_length,
            img_res=recipe.img_res,
        )


def _masked_mean(loss: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """Σ(loss·conf) / #{conf > 0}; 0 (still in the graph) when no entry is confident.

    Clamping the count at 1 gives the same value without a host sync: with no positive confidence the
    (non-negative) confidences are all 0, so the numerator is 0 too."""
    count = (conf > 0).sum().clamp(min=1)
    return (loss * conf).sum() / count


def _drop_unconfident_nonfinite(values: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """GT values that are NaN/inf where their confidence is 0 become 0: they carry no weight, but NaN·0 is
    still NaN and would poison the whole loss (and its gradient). Finite values are kept as they are (the
    3D pelvis uses the stored hips whatever their confidence)."""
    return torch.where((conf <= 0) & ~torch.isfinite(values), torch.zeros_like(values), values)


def _mean_over_valid(per_sample: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of (B,) values over valid samples (= MSE over the valid rows, all rows having equal size); 0 if none."""
    mask = valid.to(per_sample.dtype)
    return (per_sample * mask).sum() / mask.sum().clamp(min=1)


def keypoints3d_loss(
    pred_joints: torch.Tensor, gt_keypoints3d: torch.Tensor, weights: LossWeights = LossWeights()
) -> torch.Tensor:
    """§6.2.1. pred_joints (B,49,3) m, gt_keypoints3d (B,49,4) (x,y,z,conf). Both centred on the hip midpoint
    (smpl_49 joints 27/28) whatever the hips' confidences; SmoothL1 × weight, / #conf>0 entries over B·49·3."""
    right, left = weights.pelvis_joints
    gt = gt_keypoints3d[..., :3].to(pred_joints.dtype)
    conf = gt_keypoints3d[..., 3:4].to(pred_joints.dtype).expand_as(gt)
    gt = _drop_unconfident_nonfinite(gt, conf)
    gt = gt - 0.5 * (gt[:, right] + gt[:, left])[:, None]
    pred = pred_joints - 0.5 * (pred_joints[:, right] + pred_joints[:, left])[:, None]
    loss = weights.keypoints3d * F.smooth_l1_loss(pred, gt, reduction="none", beta=weights.smooth_l1_beta)
    return _masked_mean(loss, conf)


def keypoints2d_loss(
    pred_joints: torch.Tensor,
    pred_cam: torch.Tensor,
    gt_keypoints2d: torch.Tensor,
    weights: LossWeights = LossWeights(),
) -> torch.Tensor:
    """§6.2.2. pred_joints (B,49,3), pred_cam (B,3) [s,tx,ty], gt_keypoints2d (B,49,3) crop pixels + conf.

    pred: perspective projection (f, principal point 0) of joints + (tx, ty, 2f/(res·s+1e-9)), / ((res−1)/2);
    GT: 2x/(res−1) − 1 (i.e. /111.5 and /223 for res 224)."""
    half = (weights.img_res - 1) / 2.0
    transl = cam_to_translation(pred_cam, weights.focal_length, weights.img_res)
    pred_2d = project_points(pred_joints, transl, weights.focal_length) / half
    gt = gt_keypoints2d[..., :2].to(pred_joints.dtype)
    conf = gt_keypoints2d[..., 2:3].to(pred_joints.dtype).expand_as(gt)
    gt_2d = _drop_unconfident_nonfinite(gt, conf) / half - 1.0
    loss = weights.keypoints2d * F.smooth_l1_loss(
        pred_2d, gt_2d, reduction="none", beta=weights.smooth_l1_beta
    )
    return _masked_mean(loss, conf)


def cam_to_translation(cam: torch.Tensor, focal_length: float, img_res: int) -> torch.Tensor:
    """Weak-perspective (B,3) [s,tx,ty] -> camera translation (B,3) (tx, ty, 2f/(res·s + 1e-9)) (docs/reproduction.md §4.4)."""
    return torch.stack([cam[:, 1], cam[:, 2], 2.0 * focal_length / (img_res * cam[:, 0] + 1e-9)], dim=-1)


def vertex_loss(
    pred_vertices: torch.Tensor,
    opt_vertices: torch.Tensor,
    valid: torch.Tensor,
    weights: LossWeights = LossWeights(),
) -> torch.Tensor:
    """§6.2.3. (B,6890,3) each, valid (B,): Σ(w·|V − V*|·m) / #{m > 0} with m = valid over 6890×3."""
    mask = valid.to(pred_vertices.dtype).view(-1, 1, 1).expand_as(pred_vertices)
    loss = weights.vertex * (pred_vertices - opt_vertices.to(pred_vertices.dtype)).abs()
    return _masked_mean(loss, mask)


def smpl_pose_loss(
    pred_rotmat: torch.Tensor,
    opt_pose: torch.Tensor,
    valid: torch.Tensor,
    weights: LossWeights = LossWeights(),
) -> torch.Tensor:
    """§6.2.4. pred_rotmat (B,24,3,3), opt_pose (B,72) axis-angle: w · MSE over valid samples' 216 entries,
    targets via `batch_rodrigues` (mmhuman3d's quaternion form)."""
    target = batch_rodrigues(opt_pose.reshape(-1, 3).to(pred_rotmat.dtype)).reshape(-1, 24, 3, 3)
    per_sample = ((pred_rotmat - target) ** 2).flatten(1).mean(dim=1)  # (B,)
    return weights.smpl_pose * _mean_over_valid(per_sample, valid)


def smpl_betas_loss(
    pred_betas: torch.Tensor,
    opt_betas: torch.Tensor,
    valid: torch.Tensor,
    weights: LossWeights = LossWeights(),
) -> torch.Tensor:
    """§6.2.5. (B,10) each: w · MSE over valid samples."""
    per_sample = ((pred_betas - opt_betas.to(pred_betas.dtype)) ** 2).mean(dim=1)  # (B,)
    return weights.smpl_betas * _mean_over_valid(per_sample, valid)


def camera_loss(pred_cam: torch.Tensor, weights: LossWeights = LossWeights()) -> torch.Tensor:
    """§6.2.6. mean_B( w · exp(−scale·s)² ) on pred_cam (B,3)."""
    return (weights.camera * torch.exp(-weights.camera_prior_scale * pred_cam[:, 0]) ** 2).mean()


def compute_losses(
    pred: Dict[str, torch.Tensor],
    pred_joints: torch.Tensor,
    pred_vertices: torch.Tensor,
    batch: Dict[str, torch.Tensor],
    targets: Dict[str, torch.Tensor],
    weights: LossWeights = LossWeights(),
    keypoints2d_override: Optional[torch.Tensor] = None,
) -> Dict[str, torch.Tensor]:
    """All six losses (names as mmhuman3d logs them) and `loss` = their plain sum (docs/reproduction.md §6.1 step 5).

    pred: the estimator's dict (`pred_pose` (B,24,3,3), `pred_shape` (B,10), `pred_cam` (B,3));
    pred_joints (B,49,3) / pred_vertices (B,6890,3) from the neutral body model on the prediction;
    batch: `keypoints2d` (B,49,3), `keypoints3d` (B,49,4); targets: the registrant's `valid_fit`,
    `opt_pose`, `opt_betas`, `opt_vertices`. `keypoints2d_override` replaces the batch's 2D keypoints
    (e.g. with OpenPose confidences zeroed).
    """
    kp2d = batch["keypoints2d"] if keypoints2d_override is None else keypoints2d_override
    valid = targets["valid_fit"]
    losses = {
        "keypoints3d_loss": keypoints3d_loss(pred_joints, batch["keypoints3d"], weights),
        "keypoints2d_loss": keypoints2d_loss(pred_joints, pred["pred_cam"], kp2d, weights),
        "vertex_loss": vertex_loss(pred_vertices, targets["opt_vertices"], valid, weights),
        "smpl_pose_loss": smpl_pose_loss(pred["pred_pose"], targets["opt_pose"], valid, weights),
        "smpl_betas_loss": smpl_betas_loss(pred["pred_shape"], targets["opt_betas"], valid, weights),
        "camera_loss": camera_loss(pred["pred_cam"], weights),
    }
    losses["loss"] = sum(losses[name] for name in LOSS_NAMES)
    return losses
