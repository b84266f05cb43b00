"""SMPLify as SPIN runs it (`--method spin`; SPIN `smplify/smplify.py`, `smplify/losses.py`), batched.

Stage 1 (camera): Adam on camera translation + global orient, `num_iters` steps, loss per sample

    Σ_{4 torso joints} Σ_xy (k − p)²  +  100²·(t_z − t_z,init)²

where the torso is OpenPose's hips and shoulders when all four have confidence > 0, else the ground-truth
hips and shoulders (whatever their confidence); no confidence weight, no robust function.

Stage 2 (body): Adam on global orient + body pose + betas, translation fixed, loss per sample

    Σ_j c_j²·Σ_xy gmof(p − k, σ=100)  +  4.78²·GMM(θ)  +  15.2²·Σ exp(s·θ)²  +  5²·Σβ²

with pixel residuals `p − k` in the 224 crop (p = f·X/Z + 112), `c_j` the confidence with the ignored joints
(smpl_49 1, 9, 12, 27, 28) set to 0. No early stop. The fitting loss that decides acceptance
(`get_fitting_loss` and the trainer's `.mean(dim=-1)`) is the mean over the 49 joints of `c_j²·Σ_xy gmof`;
a fit is valid when it is below 100 (`--smplify_threshold`).

SPIN's trainer evaluates that fitting loss before running SMPLify, and it zeroes the ignored confidences of
the keypoint tensor in place, so inside training stage 1 never sees OpenPose's hips and always uses the
ground-truth torso: `fit(..., torso_from_openpose=False)` reproduces that; a direct SMPLify call (what
`gtacli fit --method spin` does) keeps them.
"""

from __future__ import annotations

from typing import Optional

import torch

from gtacli.body.camera import project_points
from gtacli.body.conventions import TORSO_GT, TORSO_OPENPOSE
from gtacli.fit.fitter import Fitter
from gtacli.fit.losses import spin_reprojection, unused_to_zero
from gtacli.fit.optim import FitTrace, cpu_threads, now, run_adam_stage, threads_for
from gtacli.fit.result import FitResult


class SpinSMPLify(Fitter):
    """SPIN's SMPLify (see the module docstring); `config` a `RegistrationConfig` (its `spin_*` fields)."""

    joint_prior_variant = "spin"

    # --- the two losses of SPIN smplify/losses.py, per sample ----------------------------------------------
    def camera_loss(
        self,
        joints: torch.Tensor,
        transl: torch.Tensor,
        init_transl: torch.Tensor,
        kp2d: torch.Tensor,
        use_openpose: torch.Tensor,
    ) -> torch.Tensor:
        """(B,) `camera_fitting_loss`: torso squared pixel error + depth term. use_openpose (B,) bool."""
        c = self.config
        proj = project_points(joints, transl, c.focal_length, c.img_res / 2.0)
        target = unused_to_zero(kp2d)
        err_op = ((target[:, TORSO_OPENPOSE] - proj[:, TORSO_OPENPOSE]) ** 2).sum(dim=(1, 2))
        err_gt = ((target[:, TORSO_GT] - proj[:, TORSO_GT]) ** 2).sum(dim=(1, 2))
        depth = c.spin_depth_loss_weight**2 * (transl[:, 2] - init_transl[:, 2]) ** 2
        return torch.where(use_openpose, err_op, err_gt) + depth

    def reprojection(self, joints: torch.Tensor, transl: torch.Tensor, kp2d: torch.Tensor) -> torch.Tensor:
        """(B, 49) `c_j²·Σ_xy gmof(p − k, σ)` with the ignored joints' confidence 0."""
        c = self.config
        return spin_reprojection(
            joints + transl[:, None, :], kp2d, self.weights, c.focal_length, c.img_res, c.gmof_sigma
        )

    def objective(
        self,
        joints: torch.Tensor,
        transl: torch.Tensor,
        kp2d: torch.Tensor,
        body_pose: torch.Tensor,
        betas: torch.Tensor,
    ) -> torch.Tensor:
        """(B,) `body_fitting_loss`: robust reprojection + GMM + angle + shape priors."""
        return self.reprojection(joints, transl, kp2d).sum(-1) + self.prior_loss(body_pose, betas)

    def criterion(self, joints: torch.Tensor, transl: torch.Tensor, kp2d: torch.Tensor) -> torch.Tensor:
        """(B,) SPIN's fitting loss as the trainer compares it: mean over the 49 joints of the reprojection."""
        return self.reprojection(joints, transl, kp2d.to(joints.dtype)).mean(-1)

    def fit(
        self,
        init_pose: torch.Tensor,
        init_betas: torch.Tensor,
        init_transl: torch.Tensor,
        kp2d: torch.Tensor,
        *,
        torso_from_openpose: bool = True,
        trace: Optional[FitTrace] = None,
    ) -> FitResult:
        """Same inputs and outputs as `SMPLify.fit`; `loss` is stage 2's objective, `keypoint_loss` SPIN's
        fitting loss (B,) at the fitted camera."""
        c = self.config
        kp2d, global_orient, body_pose, betas, init_t = self.start(init_pose, init_betas, init_transl, kp2d)
        transl = init_t.clone()
        use_openpose = (kp2d[:, TORSO_OPENPOSE, 2].min(dim=1).values > 0) & torso_from_openpose
        adam = {
            "iterations": c.spin_num_iters,
            "lr": c.lr,
            "betas": c.adam_betas,
            "trace": trace,
            "t0": now(),
        }
        reports = []
        with torch.enable_grad(), cpu_threads(self.device, threads_for(c.cpu_threads, kp2d.shape[0])):
            global_orient.requires_grad_(True)
            transl.requires_grad_(True)
            skeleton = self.skeleton(body_pose, betas)
            reports.append(
                run_adam_stage(
                    [global_orient, transl],
                    lambda: self.camera_loss(skeleton(global_orient), transl, init_t, kp2d, use_openpose),
                    **adam,
                )
            )
            transl.requires_grad_(False)
            body_pose.requires_grad_(True)
            betas.requires_grad_(True)
            reports.append(
                run_adam_stage(
                    [body_pose, betas, global_orient],
                    lambda: self.objective(
                        self.joints49(global_orient, body_pose, betas), transl, kp2d, body_pose, betas
                    ),
                    **adam,
                )
            )
        return self.finish(global_orient, body_pose, betas, transl, kp2d, reports, trace)
