"""The six training losses of docs/reproduction.md §6.2, as mmhuman3d's `compute_losses` computes them.

Each loss module of mmhuman3d applies its weight to the element-wise loss *before* masking, and the keypoint
and vertex losses divide the confidence-weighted sum by the number of entries with a positive confidence
(not by B·J·D). All functions take tensors on the caller's device and return a 0-d tensor that stays in the
autograd graph (a zero that still depends on the prediction when nothing is valid, so DDP sees every
parameter used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from gtacli.body.camera import FOCAL_LENGTH, IMG_RES, cam_to_translation, project_points
from gtacli.body.conventions import TRAIN_PELVIS_PAIR
from gtacli.body.rotations import batch_rodrigues
from gtacli.fit.registration import RegistrationTargets

LOSS_NAMES = (
    "keypoints3d_loss",
    "keypoints2d_loss",
    "vertex_loss",
    "smpl_pose_loss",
    "smpl_betas_loss",
    "camera_loss",
)


OPENPOSE_CONFIDENCE = ("detector", "zero")


@dataclass(frozen=True)
class LossConfig:
    """Weights and constants of §6.2 (the gta-spin-ft / spin numbers as defaults); the recipe's `losses` part."""

    keypoints3d: float = 100.0
    keypoints2d: float = 10.0
    vertex: float = 2.0
    smpl_pose: float = 3.0
    smpl_betas: float = 0.02
    camera: float = 60.0
    camera_prior_scale: float = 10.0
    smooth_l1_beta: float = 1.0
    pelvis_joints: Tuple[int, int] = TRAIN_PELVIS_PAIR  # smpl_49 right/left hip (LSP) -> training pelvis
    # 'detector' (what mmhuman3d ran: the OpenPose keypoints keep their confidences) or 'zero' (what the
    # config's dead keypoint_weight = [0]*25 + [1]*24 intended, docs/reproduction.md §10.1.3)
    openpose_confidence: str = "detector"
    num_openpose_keypoints: int = 25  # smpl_49 indices 0..24
    focal_length: float = FOCAL_LENGTH
    img_res: int = IMG_RES

    def validate(self) -> None:
        """ValueError naming the first field out of range."""
        if self.openpose_confidence not in OPENPOSE_CONFIDENCE:
            raise ValueError(f"openpose_confidence must be one of {OPENPOSE_CONFIDENCE}")
        weights = (
            self.keypoints3d,
            self.keypoints2d,
            self.vertex,
            self.smpl_pose,
            self.smpl_betas,
            self.camera,
        )
        if min(weights) < 0 or self.smooth_l1_beta <= 0 or self.focal_length <= 0 or self.img_res < 8:
            raise ValueError("loss weights must be >= 0; smooth_l1_beta, focal_length > 0; img_res >= 8")


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
    pred_joints: torch.Tensor, gt_keypoints3d: torch.Tensor, weights: LossConfig = LossConfig()
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
    weights: LossConfig = LossConfig(),
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


def vertex_loss(
    pred_vertices: torch.Tensor,
    opt_vertices: torch.Tensor,
    valid: torch.Tensor,
    weights: LossConfig = LossConfig(),
) -> torch.Tensor:
    """§6.2.3. (B,6890,3) each, valid (B,): Σ(w·|V − V*|·m) / #{m > 0} with m = valid over 6890×3."""
    mask = valid.to(pred_vertices.dtype).view(-1, 1, 1).expand_as(pred_vertices)
    loss = weights.vertex * (pred_vertices - opt_vertices.to(pred_vertices.dtype)).abs()
    return _masked_mean(loss, mask)


def smpl_pose_loss(
    pred_rotmat: torch.Tensor,
    opt_pose: torch.Tensor,
    valid: torch.Tensor,
    weights: LossConfig = LossConfig(),
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
    weights: LossConfig = LossConfig(),
) -> torch.Tensor:
    """§6.2.5. (B,10) each: w · MSE over valid samples."""
    per_sample = ((pred_betas - opt_betas.to(pred_betas.dtype)) ** 2).mean(dim=1)  # (B,)
    return weights.smpl_betas * _mean_over_valid(per_sample, valid)


def camera_loss(pred_cam: torch.Tensor, weights: LossConfig = LossConfig()) -> torch.Tensor:
    """§6.2.6. mean_B( w · exp(−scale·s)² ) on pred_cam (B,3)."""
    return (weights.camera * torch.exp(-weights.camera_prior_scale * pred_cam[:, 0]) ** 2).mean()


def compute_losses(
    pred: Dict[str, torch.Tensor],
    pred_joints: torch.Tensor,
    pred_vertices: torch.Tensor,
    batch: Dict[str, torch.Tensor],
    targets: RegistrationTargets,
    weights: LossConfig = LossConfig(),
) -> Dict[str, torch.Tensor]:
    """All six losses (names as mmhuman3d logs them) and `loss` = their plain sum (docs/reproduction.md §6.1 step 5).

    With `weights.openpose_confidence == "zero"` the OpenPose keypoints' confidences are zeroed first.

    pred: the estimator's dict (`pred_pose` (B,24,3,3), `pred_shape` (B,10), `pred_cam` (B,3));
    pred_joints (B,49,3) / pred_vertices (B,6890,3) from the neutral body model on the prediction;
    batch: `keypoints2d` (B,49,3), `keypoints3d` (B,49,4); targets: the registrant's (its `valid_fit`,
    `opt_pose`, `opt_betas`, `opt_vertices`).
    """
    kp2d = batch["keypoints2d"]
    if weights.openpose_confidence == "zero":
        kp2d = kp2d.clone()
        kp2d[:, : weights.num_openpose_keypoints, 2] = 0
    valid = targets.valid_fit
    losses = {
        "keypoints3d_loss": keypoints3d_loss(pred_joints, batch["keypoints3d"], weights),
        "keypoints2d_loss": keypoints2d_loss(pred_joints, pred["pred_cam"], kp2d, weights),
        "vertex_loss": vertex_loss(pred_vertices, targets.opt_vertices, valid, weights),
        "smpl_pose_loss": smpl_pose_loss(pred["pred_pose"], targets.opt_pose, valid, weights),
        "smpl_betas_loss": smpl_betas_loss(pred["pred_shape"], targets.opt_betas, valid, weights),
        "camera_loss": camera_loss(pred["pred_cam"], weights),
    }
    losses["loss"] = sum(losses[name] for name in LOSS_NAMES)
    return losses
