"""Registration: the pseudo-ground-truth SMPL of a training batch (docs/reproduction.md §7.1, §7.2 static, §7.4 in the loop).

`Registrant(body_model, fits, config)(pred, batch)` returns the targets the SMPL losses use, a
`RegistrationTargets` (each field's docstring says what it holds):

1. `pred_cam_t` from the predicted weak-perspective camera (detached).
2. GT meshes from the batch's SMPL parameters (neutral body model, no translation).
3. Fits for the samples **without** GT SMPL, from the `FitsStore` in the batch's augmented frame (flip, then
   rotate); samples with GT SMPL skip the lookup entirely (docs/reproduction.md decision 3) and use their GT.
4. `opt_cam_t` by `estimate_translation` on smpl_49 joints 25–48; where no joint is confident the predicted
   camera translation is used instead (mmhuman3d would crash there) and `cam_t_fallback` says so.
5. `opt_joint_loss` = the registrant's keypoint term (docs/reproduction.md §7.1 step 5).
6. `in_the_loop` only: SMPLify from the prediction, accept-if-better, write accepted fits back (canonical frame).
7. rows of `opt_betas` with any |β| > 3 are zeroed (after the meshes were built, as mmhuman3d does).
8. GT SMPL samples take their GT (already the case, see 3).
9. `valid_fit = (opt_joint_loss < threshold) | has_smpl`.

Batch keys (see the fit/train contract): `keypoints2d (B,49,3)` crop pixels, `has_smpl (B,)`,
`smpl_body_pose (B,23,3)`, `smpl_global_orient (B,3)`, `smpl_betas (B,10)`, `rotation (B,)` degrees,
`is_flipped (B,)`, `sample_idx (B,)`, `dataset_name` list[str]. Predictions: `pred_pose (B,24,3,3)`,
`pred_shape (B,10)`, `pred_cam (B,3)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

from gtacli.body.camera import cam_to_translation, estimate_translation
from gtacli.body.rotations import axis_angle_from_rotmat
from gtacli.errors import GtacliError, PathLike
from gtacli.fit.config import MEAN_CAMERA, RegistrationConfig
from gtacli.fit.fits_store import FitsStore
from gtacli.fit.losses import fit_criterion, keypoint_weights
from gtacli.fit.methods import build_fitter


@dataclass(frozen=True, eq=False)
class RegistrationTargets:
    """The registrant's targets for a batch of B samples (all without gradients, on the body model's device).

    Frozen: the training step and the losses read them, nothing rebinds a field. `eq=False`: tensors have no
    single truth value for `==`."""

    opt_pose: torch.Tensor
    """(B, 72) axis-angle target pose: GT SMPL where the sample has it, else its fit (step 3, or 6)."""
    opt_betas: torch.Tensor
    """(B, 10) target shape; rows of fits with any |β| > max_abs_beta zeroed (step 7)."""
    opt_vertices: torch.Tensor
    """(B, 6890, 3) target mesh, body-model frame (an in-the-loop fit's rows keep the offset that
    `RegistrationConfig.mmhuman3d_vertex_offset` reproduces), built before the betas were zeroed."""
    opt_joints: torch.Tensor
    """(B, 49, 3) target smpl_49 joints in the body-model frame."""
    opt_cam_t: torch.Tensor
    """(B, 3) camera translation that best explains the keypoints (step 4; `cam_t_fallback` rows: predicted)."""
    valid_fit: torch.Tensor
    """(B,) bool: the target supervises the SMPL losses (`opt_joint_loss < threshold`, or GT SMPL)."""
    opt_joint_loss: torch.Tensor
    """(B,) the method's fit criterion of the target at `opt_cam_t` (step 5)."""
    gt_vertices: torch.Tensor
    """(B, 6890, 3) the mesh of the batch's GT SMPL parameters (whatever `has_smpl` says)."""
    fits_updated: torch.Tensor
    """(B,) bool: in the loop, the rows whose fit was replaced by a better SMPLify result (all False when static)."""
    cam_t_fallback: torch.Tensor
    """(B,) bool: no confident joint, so `opt_cam_t` is the predicted camera's translation."""


class Registrant:
    """Pseudo-GT SMPL targets for a batch (docs/reproduction.md §7.1); `in_the_loop` also refines and updates the fits."""

    def __init__(
        self,
        body_model: Any,
        fits: Optional[FitsStore],
        config: Optional[RegistrationConfig] = None,
        gmm_path: Optional[PathLike] = None,
    ):
        self.body_model = body_model
        self.fits = fits
        self.config = config or RegistrationConfig()
        ref = body_model.smpl.v_template
        self.device, self.dtype = ref.device, ref.dtype
        self.weights = keypoint_weights(self.config.ignore_keypoints, dtype=self.dtype, device=self.device)
        self.smplify: Optional[Any] = None
        if self.config.mode == "in_the_loop":
            if fits is None:
                raise GtacliError(
                    "in-the-loop registration needs a fits store to update",
                    fix="load the static fits (FitsStore.from_layout) and pass them to the Registrant",
                )
            self.smplify = build_fitter(body_model, gmm_path, self.config)

    def keypoint_loss(self, joints: torch.Tensor, transl: torch.Tensor, kp2d: torch.Tensor) -> torch.Tensor:
        """The method's fit criterion per sample (B,) for untranslated joints (B,49,3) at `transl` (B,3)
        (docs/reproduction.md §7.1 step 5 for mmhuman3d; SPIN's fitting loss for spin)."""
        return fit_criterion(self.config, joints + transl[:, None, :], kp2d, self.weights)

    @torch.no_grad()
    def __call__(
        self, pred: Optional[Mapping[str, torch.Tensor]], batch: Mapping[str, Any]
    ) -> RegistrationTargets:
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self._register(pred, batch)

    def _register(
        self, pred: Optional[Mapping[str, torch.Tensor]], batch: Mapping[str, Any]
    ) -> RegistrationTargets:
        c = self.config
        kw = {"device": self.device, "dtype": self.dtype}
        kp2d = batch["keypoints2d"].to(**kw)
        batch_size = kp2d.shape[0]
        has_smpl = batch["has_smpl"].to(self.device).reshape(-1).bool()

        # 1. predicted camera translation (fallback for estimate_translation)
        if pred is not None:
            pred_cam = pred["pred_cam"].detach().to(**kw)
        else:
            pred_cam = torch.tensor(MEAN_CAMERA, **kw).expand(batch_size, 3)
        pred_cam_t = cam_to_translation(pred_cam, c.focal_length, c.img_res)

        # 2. GT meshes
        gt_pose = torch.cat(
            [
                batch["smpl_global_orient"].to(**kw).reshape(batch_size, 3),
                batch["smpl_body_pose"].to(**kw).reshape(batch_size, 69),
            ],
            dim=1,
        )
        gt_betas = batch["smpl_betas"].to(**kw).reshape(batch_size, -1)
        gt_out = self.body_model(gt_betas, gt_pose[:, 3:], gt_pose[:, :3], pose2rot=True)

        # 3. fits for samples without GT (GT rows keep their GT: no lookup for them)
        opt_pose, opt_betas = gt_pose.clone(), gt_betas.clone()
        opt_vertices, opt_joints = gt_out.vertices.clone(), gt_out.joints.clone()
        need = torch.nonzero(~has_smpl).reshape(-1)
        if need.numel():
            if self.fits is None:
                raise GtacliError(
                    "the batch has samples without GT SMPL but no static fits were loaded",
                    fix="load the fits for these datasets (FitsStore.from_layout) or train only on datasets with GT SMPL",
                )
            rows = need.cpu()
            names = [batch["dataset_name"][i] for i in rows.tolist()]
            pose, betas = self.fits.lookup(
                names,
                batch["sample_idx"].reshape(-1)[rows.to(batch["sample_idx"].device)],
                _pick(batch["rotation"], rows),
                _pick(batch["is_flipped"], rows),
                dtype=self.dtype,
            )
            pose, betas = pose.to(self.device), betas.to(self.device)
            fit_out = self.body_model(betas, pose[:, 3:], pose[:, :3], pose2rot=True)
            opt_pose[need], opt_betas[need] = pose, betas
            opt_vertices[need], opt_joints[need] = fit_out.vertices, fit_out.joints

        # 4. camera translations that best explain the 2D keypoints (gt_cam_t = opt_cam_t on GT rows)
        opt_cam_t, ok = estimate_translation(opt_joints, kp2d, c.focal_length, c.img_res)
        fallback = ~ok
        opt_cam_t = torch.where(fallback[:, None], pred_cam_t, opt_cam_t)

        # 5. fit quality
        opt_joint_loss = self.keypoint_loss(opt_joints, opt_cam_t, kp2d)

        # 6. in the loop: SMPLify from the prediction, keep what improves, write it back
        fits_updated = torch.zeros(batch_size, dtype=torch.bool, device=self.device)
        if self.smplify is not None and need.numel() and pred is not None:
            fits_updated = self._refine(
                pred,
                batch,
                need,
                kp2d,
                pred_cam_t,
                opt_pose,
                opt_betas,
                opt_vertices,
                opt_joints,
                opt_cam_t,
                opt_joint_loss,
            )

        # 7. implausible shapes are zeroed (fits only: GT rows keep their betas, step 8)
        bad_betas = (opt_betas.abs() > c.max_abs_beta).any(dim=1) & ~has_smpl
        opt_betas = torch.where(bad_betas[:, None], torch.zeros_like(opt_betas), opt_betas)

        # 9. which targets supervise the SMPL losses
        valid_fit = (opt_joint_loss < c.acceptance_threshold) | has_smpl
        return RegistrationTargets(
            opt_pose=opt_pose,
            opt_betas=opt_betas,
            opt_vertices=opt_vertices,
            opt_joints=opt_joints,
            opt_cam_t=opt_cam_t,
            valid_fit=valid_fit,
            opt_joint_loss=opt_joint_loss,
            gt_vertices=gt_out.vertices,
            fits_updated=fits_updated,
            cam_t_fallback=fallback,
        )

    def _refine(
        self,
        pred: Mapping[str, torch.Tensor],
        batch: Mapping[str, Any],
        need: torch.Tensor,
        kp2d: torch.Tensor,
        pred_cam_t: torch.Tensor,
        opt_pose: torch.Tensor,
        opt_betas: torch.Tensor,
        opt_vertices: torch.Tensor,
        opt_joints: torch.Tensor,
        opt_cam_t: torch.Tensor,
        opt_joint_loss: torch.Tensor,
    ) -> torch.Tensor:
        """docs/reproduction.md §7.4 on the rows `need` (in place on the opt_* tensors); returns the (B,) mask of accepted rows."""
        assert self.smplify is not None and self.fits is not None
        kw = {"device": self.device, "dtype": self.dtype}
        rotmat = pred["pred_pose"].detach().to(**kw)[need]  # (n, 24, 3, 3)
        init_pose = axis_angle_from_rotmat(rotmat)
        init_betas = pred["pred_shape"].detach().to(**kw)[need]
        kwargs = (
            {} if self.config.method == "mmhuman3d" else {"torso_from_openpose": False}
        )  # see spin_smplify
        result = self.smplify.fit(init_pose, init_betas, pred_cam_t[need], kp2d[need], **kwargs)
        fitted_t = result.transl
        new_loss = result.keypoint_loss
        accept = new_loss < opt_joint_loss[need]
        base_t = pred_cam_t[need] if self.config.mmhuman3d_vertex_offset else fitted_t
        rows = need[accept]
        opt_pose[rows] = result.pose[accept]
        opt_betas[rows] = result.betas[accept]
        opt_vertices[rows] = (result.vertices - base_t[:, None, :])[accept]
        opt_joints[rows] = (result.joints - fitted_t[:, None, :])[accept]
        opt_cam_t[rows] = fitted_t[accept]
        opt_joint_loss[rows] = new_loss[accept]
        if accept.any():
            cpu_rows = need.cpu()
            names = [batch["dataset_name"][i] for i in cpu_rows.tolist()]
            self.fits.update(
                names,
                batch["sample_idx"].reshape(-1)[cpu_rows.to(batch["sample_idx"].device)],
                _pick(batch["rotation"], cpu_rows),
                _pick(batch["is_flipped"], cpu_rows),
                result.pose,
                result.betas,
                mask=accept,
            )
        updated = torch.zeros(opt_pose.shape[0], dtype=torch.bool, device=self.device)
        updated[rows] = True
        return updated


def _pick(value: Any, rows: torch.Tensor) -> torch.Tensor:
    """Rows of a (B,) / (B,1) batch entry as a flat CPU tensor."""
    tensor = torch.as_tensor(value)
    return tensor.reshape(-1)[rows.to(tensor.device)].cpu()
