"""What the three fitters share: the body model, the prior, the 49 joints, the start and the result
(`gtacli.fit.result.FitResult`).

A fitter (`gtacli.fit.smplify_mmhuman3d.MMHuman3dSMPLify`, `gtacli.fit.smplify_spin.SpinSMPLify`,
`gtacli.fit.smplify_gtacli.GtacliSMPLify`) defines its `objective` (the loss it minimises last) and its
`criterion` (the measure that decides whether a fit is accepted), and its own `fit`.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch

from gtacli.errors import PathLike
from gtacli.fit.config import RegistrationConfig
from gtacli.fit.joints import RigidSkeleton, SparseJointModel, rodrigues
from gtacli.fit.losses import keypoint_weights
from gtacli.fit.optim import FitTrace, StageReport
from gtacli.fit.priors import MaxMixturePrior, joint_angle_prior, load_pose_prior, shape_prior
from gtacli.fit.result import FitResult


class Fitter:
    """Base of the fitters, on a `gtacli.body.smpl.BodyModel` (its device and dtype); `config` a `RegistrationConfig`."""

    joint_prior_variant = "mmhuman3d"

    def __init__(
        self,
        body_model: Any,
        gmm_path: Optional[PathLike],
        config: RegistrationConfig,
        *,
        pose_prior: Optional[MaxMixturePrior] = None,
    ):
        self.body_model = body_model
        self.config = config
        ref = body_model.smpl.v_template
        self.device, self.dtype = ref.device, ref.dtype
        if pose_prior is None:
            pose_prior = load_pose_prior(gmm_path, dtype=self.dtype, device=self.device)
        self.pose_prior = pose_prior.to(device=self.device, dtype=self.dtype)
        self.weights = keypoint_weights(config.ignore_keypoints, dtype=self.dtype, device=self.device)
        self._sparse: Optional[SparseJointModel] = (
            SparseJointModel(body_model) if config.fast_joints else None
        )

    # --- what each fitter defines ---------------------------------------------------------------------
    def objective(
        self,
        joints: torch.Tensor,
        transl: torch.Tensor,
        kp2d: torch.Tensor,
        body_pose: torch.Tensor,
        betas: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError

    def criterion(self, joints: torch.Tensor, transl: torch.Tensor, kp2d: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- shared -----------------------------------------------------------------------------------------
    def prior_loss(self, body_pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """GMM + joint angle + shape priors (B,), with the configured weights."""
        c = self.config
        return (
            self.pose_prior(body_pose, c.pose_prior_weight)
            + joint_angle_prior(body_pose, c.joint_prior_weight, self.joint_prior_variant)
            + shape_prior(betas, c.shape_prior_weight)
        )

    def total_loss(
        self, pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor, kp2d: torch.Tensor
    ) -> torch.Tensor:
        """The objective per sample (B,) with a full body-model forward (reference evaluation)."""
        out = self.body_model(betas, pose[:, 3:], pose[:, :3], pose2rot=True)
        return self.objective(out.joints, transl, kp2d.to(out.joints.dtype), pose[:, 3:], betas)

    def joints49(
        self, global_orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor
    ) -> torch.Tensor:
        if self._sparse is None:
            return self.body_model(betas, body_pose, global_orient, pose2rot=True).joints
        batch = betas.shape[0]
        rotmats = rodrigues(torch.cat([global_orient, body_pose], dim=1).reshape(-1, 3)).reshape(
            batch, 24, 3, 3
        )
        return self._sparse.joints49(betas, rotmats)

    def skeleton(self, body_pose: torch.Tensor, betas: torch.Tensor) -> Any:
        """joints(global_orient) with body pose and betas fixed: rigid when sparse, else a full forward."""
        if self._sparse is not None:
            return RigidSkeleton(self._sparse, body_pose, betas)
        return lambda orient: self.joints49(orient, body_pose, betas)

    def start(
        self, init_pose: torch.Tensor, init_betas: torch.Tensor, init_transl: torch.Tensor, kp2d: torch.Tensor
    ) -> Tuple[torch.Tensor, ...]:
        """Detached copies on the fitter's device: (kp2d, global_orient, body_pose, betas, transl)."""
        kw = {"device": self.device, "dtype": self.dtype}
        kp2d = kp2d.detach().to(**kw)
        batch = kp2d.shape[0]
        return (
            kp2d,
            init_pose[:, :3].detach().to(**kw).clone(),
            init_pose[:, 3:].detach().to(**kw).clone(),
            init_betas.detach().to(**kw).reshape(batch, -1).clone(),
            init_transl.detach().to(**kw).reshape(batch, 3).clone(),
        )

    def finish(
        self,
        global_orient: torch.Tensor,
        body_pose: torch.Tensor,
        betas: torch.Tensor,
        transl: torch.Tensor,
        kp2d: torch.Tensor,
        reports: List[StageReport],
        trace: Optional[FitTrace],
    ) -> FitResult:
        """The result of a fit, all detached (`FitResult` says what each field holds): the objective and the
        criterion evaluated once more with a full body-model forward at the fitted parameters."""
        with torch.no_grad():
            pose = torch.cat([global_orient, body_pose], dim=1).detach()
            betas = betas.detach()
            transl = transl.detach()
            out = self.body_model(betas, pose[:, 3:], pose[:, :3], pose2rot=True)
            loss = self.objective(out.joints, transl, kp2d, pose[:, 3:], betas)
            criterion = self.criterion(out.joints, transl, kp2d)
        if trace is not None:
            trace.stages.extend(reports)
        return FitResult(
            pose=pose,
            betas=betas,
            transl=transl,
            vertices=out.vertices + transl[:, None, :],
            joints=out.joints + transl[:, None, :],
            loss=loss,
            keypoint_loss=criterion,
            stages=reports,
        )
