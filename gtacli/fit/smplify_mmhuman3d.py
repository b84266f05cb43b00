"""SMPLify as mmhuman3d's registrant runs it (`--method mmhuman3d`, docs/reproduction.md §7.3–7.4), batched.

Objective per sample (everything summed, `reduction='sum'`):

    E = Σ_j Σ_xy w_j·c_j·gmof((p̂ − k̂)², σ=100)          keypoint term (docs/reproduction.md §7.1 step 5)
      + 25·Σβ²  + 231.04·Σ(exp(s·θ)−1)²  + 22.8484·GMM(θ)

with `p̂ = 2·(f·X/Z + 112)/223 − 1` (camera f = 5000, principal point (112, 112), joints translated by
`transl`), `k̂ = 2·u/223 − 1`, `w_j = 0` on the ignore list (smpl_49 1, 9, 12, 27, 28), `c_j` the keypoint
confidence. Adam (lr 1e-2, betas (0.9, 0.999)) in two stages of `num_iters` iterations:
stage 1 optimises global_orient + transl, stage 2 global_orient + body_pose + betas; each stage stops early
when the relative change of the batch-summed loss drops below `ftol = 1e-4` (mmhuman3d's rule). Every stage
minimises the full objective (unlike SPIN's camera-only stage 1, `gtacli.fit.smplify_spin`).

Fast without changing the result: the 49 joints come from the vertices they need (`gtacli.fit.joints`),
stage 1 is a rigid transform of a skeleton computed once (its priors are constants), the GMM prior is one
matrix product, and the full 6890-vertex mesh is built once, at the end.
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch

from gtacli.fit.fitter import Fitter
from gtacli.fit.losses import keypoint_term
from gtacli.fit.optim import FitTrace, StageReport, cpu_threads, now, run_adam_stage, threads_for
from gtacli.fit.result import FitResult


class MMHuman3dSMPLify(Fitter):
    """mmhuman3d's registrant SMPLify (see the module docstring); `config` a `RegistrationConfig`."""

    joint_prior_variant = "mmhuman3d"

    def keypoint_loss(self, joints: torch.Tensor, transl: torch.Tensor, kp2d: torch.Tensor) -> torch.Tensor:
        """Keypoint term (B,) of untranslated joints (B, 49, 3) placed at `transl` (B, 3)."""
        c = self.config
        joints_cam = joints + transl[:, None, :]
        return c.keypoint_weight * keypoint_term(
            joints_cam, kp2d.to(joints_cam.dtype), self.weights, c.focal_length, c.img_res, c.gmof_sigma
        )

    # the acceptance measure of this formulation (run_registration's opt_joint_loss)
    criterion = keypoint_loss

    def objective(
        self,
        joints: torch.Tensor,
        transl: torch.Tensor,
        kp2d: torch.Tensor,
        body_pose: torch.Tensor,
        betas: torch.Tensor,
    ) -> torch.Tensor:
        return self.keypoint_loss(joints, transl, kp2d) + self.prior_loss(body_pose, betas)

    def _stage(
        self, params: List[torch.Tensor], loss_fn: Any, trace: Optional[FitTrace], t0: float
    ) -> StageReport:
        c = self.config
        return run_adam_stage(
            params,
            loss_fn,
            iterations=c.num_iters,
            lr=c.lr,
            betas=c.adam_betas,
            ftol=c.ftol,
            trace=trace,
            t0=t0,
        )

    def fit(
        self,
        init_pose: torch.Tensor,
        init_betas: torch.Tensor,
        init_transl: torch.Tensor,
        kp2d: torch.Tensor,
        *,
        trace: Optional[FitTrace] = None,
    ) -> FitResult:
        """Fit SMPL to 2D keypoints: init_pose (B, 72) axis-angle, init_betas (B, 10), init_transl (B, 3) metres,
        kp2d (B, 49, 3) crop pixels with confidences. Returns a `FitResult` (`Fitter.finish`); `keypoint_loss` is the
        registrant's keypoint term (docs/reproduction.md §7.1 step 5) at the fitted translation."""
        kp2d, global_orient, body_pose, betas, transl = self.start(init_pose, init_betas, init_transl, kp2d)
        t0 = now()
        reports = []
        with (
            torch.enable_grad(),
            cpu_threads(self.device, threads_for(self.config.cpu_threads, kp2d.shape[0])),
        ):
            # stage 1: global orient + translation; body pose and betas fixed (the priors are constants)
            global_orient.requires_grad_(True)
            transl.requires_grad_(True)
            with torch.no_grad():
                const_prior = self.prior_loss(body_pose, betas)
            skeleton = self.skeleton(body_pose, betas)
            reports.append(
                self._stage(
                    [global_orient, transl],
                    lambda: self.keypoint_loss(skeleton(global_orient), transl, kp2d) + const_prior,
                    trace,
                    t0,
                )
            )
            transl.requires_grad_(False)

            # stage 2: global orient + body pose + betas; translation fixed
            body_pose.requires_grad_(True)
            betas.requires_grad_(True)
            reports.append(
                self._stage(
                    [global_orient, body_pose, betas],
                    lambda: self.objective(
                        self.joints49(global_orient, body_pose, betas), transl, kp2d, body_pose, betas
                    ),
                    trace,
                    t0,
                )
            )
        return self.finish(global_orient, body_pose, betas, transl, kp2d, reports, trace)
