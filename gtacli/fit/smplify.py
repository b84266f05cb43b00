"""SMPLify as the registrant of mmhuman3d's SPIN configs runs it (docs/reproduction.md §7.3–7.4), batched.

Objective per sample (everything summed, `reduction='sum'`):

    E = Σ_j Σ_xy w_j·c_j·gmof((p̂ − k̂)², σ=100)          keypoint term (docs/reproduction.md §7.1 step 5)
      + 25·Σβ²  + 231.04·joint_angle_prior(θ)  + 22.8484·GMM(θ)

with `p̂ = 2·(f·X/Z + 112)/223 − 1` (camera f = 5000, principal point (112, 112), joints translated by
`transl`), `k̂ = 2·u/223 − 1`, `w_j = 0` on the ignore list (smpl_49 1, 9, 12, 27, 28), `c_j` the keypoint
confidence. Adam (lr 1e-2, betas (0.9, 0.999)) in two stages of `num_iters` iterations:
stage 1 optimises global_orient + transl, stage 2 global_orient + body_pose + betas; each stage stops early
when the relative change of the batch-summed loss, `|prev − cur| / max(|prev|, |cur|, 1)`, drops below
`ftol = 1e-4` (mmhuman3d's rule). Every stage minimises the full objective (unlike SPIN's camera-only stage 1).

What makes it fast without changing the result:

* Only the 49 keypoints are needed while fitting, and they depend on few vertices: the 21 vertex joints and
  the vertices `J_regressor_extra` reads (62 for the real file). `SparseJointModel` runs SMPL's blend
  shapes and skinning on those vertices only, with the 24 rest joints from a precomputed
  `J_regressor @ (v_template + shapedirs·β)` (linear in β), and the kinematic chain batched by tree depth.
  It is the same arithmetic as smplx's `lbs` restricted to the rows that reach the joints.
* Stage 1 keeps body pose and betas fixed, so the posed skeleton is a rigid function of the global orient:
  `J(R) = R·(J_I − s·J_0) + s·J_0` with `J_I` the joints at identity orient, `J_0` the root joint and `s` the
  row sum of each joint's regressor (1 except for the extra joints). One skeleton evaluation per batch, then
  a 3×3 product per iteration. The priors are constants in stage 1 and are computed once.
* The GMM prior is one matrix product through precomputed Cholesky factors (`gtacli.fit.priors`).
* The full 6890-vertex mesh is built once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch

from gtacli.body.camera import FOCAL_LENGTH, IMG_RES
from gtacli.body.conventions import REGISTRANT_IGNORE, SMPL_54_TO_SMPL_49
from gtacli.errors import MissingFileError, PathLike
from gtacli.fit.priors import (
    JOINT_PRIOR_WEIGHT,
    KEYPOINT_GMOF_SIGMA,
    POSE_PRIOR_WEIGHT,
    SHAPE_PRIOR_WEIGHT,
    MaxMixturePrior,
    gmof,
    joint_angle_prior,
    shape_prior,
)

NUM_KEYPOINTS = 49

# docs/reproduction.md §7.3–7.4 (configs/spin/resnet50_spin_pw3d.py registrant): one number, one name.
SMPLIFY_ITERS_PER_STAGE = 50
SMPLIFY_LR = 1e-2
SMPLIFY_ADAM_BETAS = (0.9, 0.999)
SMPLIFY_FTOL = 1e-4
KEYPOINT_LOSS_WEIGHT = 1.0
# The per-iteration tensors of a CPU fit are tiny: up to this batch, one thread beats several (thread
# synchronisation costs more than the work; ~10x on a machine whose cores are busy, measured).
SINGLE_THREAD_MAX_BATCH = 128


@dataclass
class SMPLifyConfig:
    """Every number of the registrant's SMPLify (docs/reproduction.md §7.3–7.4)."""

    num_iters: int = SMPLIFY_ITERS_PER_STAGE  # per stage (two stages)
    lr: float = SMPLIFY_LR
    adam_betas: Tuple[float, float] = SMPLIFY_ADAM_BETAS
    ftol: float = SMPLIFY_FTOL  # <= 0 disables the early stop
    focal_length: float = FOCAL_LENGTH
    img_res: int = IMG_RES
    ignore_keypoints: Tuple[int, ...] = REGISTRANT_IGNORE
    keypoint_weight: float = KEYPOINT_LOSS_WEIGHT
    gmof_sigma: float = KEYPOINT_GMOF_SIGMA
    shape_prior_weight: float = SHAPE_PRIOR_WEIGHT
    joint_prior_weight: float = JOINT_PRIOR_WEIGHT
    pose_prior_weight: float = POSE_PRIOR_WEIGHT
    # 'mmhuman3d' (its JointPriorLoss: SPIN's indices applied to the 69-d pose) or 'spin' (SPIN's angle_prior)
    joint_prior_variant: str = "mmhuman3d"
    # Evaluate the 49 joints from the vertices they need only, and stage 1 as a rigid transform (same result).
    fast_joints: bool = True
    # CPU intra-op threads while fitting; None = 1 thread for batches up to SINGLE_THREAD_MAX_BATCH, else torch's.
    cpu_threads: Optional[int] = None

    def smplify_fields(self) -> Dict[str, Any]:
        """The SMPLifyConfig fields of this object (subclasses add their own)."""
        return {f.name: getattr(self, f.name) for f in fields(SMPLifyConfig)}


def keypoint_weights(ignore: Sequence[int], num: int = NUM_KEYPOINTS, **kwargs: Any) -> torch.Tensor:
    """(49,) weights: 1, and 0 on the ignore list (docs/reproduction.md §3.6)."""
    weights = torch.ones(num, **kwargs)
    weights[list(ignore)] = 0.0
    return weights


def keypoint_term(
    joints_cam: torch.Tensor,
    kp2d: torch.Tensor,
    weights: torch.Tensor,
    focal_length: float = FOCAL_LENGTH,
    img_res: int = IMG_RES,
    sigma: float = KEYPOINT_GMOF_SIGMA,
) -> torch.Tensor:
    """The registrant's keypoint loss per sample (docs/reproduction.md §7.1 step 5). -> (B,).

    joints_cam (B, 49, 3): joints in the camera frame (translation applied), metres.
    kp2d (B, 49, 3): (u, v, conf) in crop pixels. weights (49,): 0 on ignored joints.
    `Σ_j Σ_xy w_j·c_j·gmof((p̂ − k̂)², σ)`, `p̂ = 2·(f·X/Z + img_res/2)/(img_res − 1) − 1`, `k̂ = 2·u/(img_res − 1) − 1`.
    """
    proj = focal_length * joints_cam[..., :2] / joints_cam[..., 2:3] + img_res / 2.0
    scale = 2.0 / (img_res - 1)
    # zero-confidence keypoints may hold NaN/inf: they carry no weight, but NaN·0 would poison the sum
    target = kp2d[..., :2]
    unused = (kp2d[..., 2:3] <= 0) & ~torch.isfinite(target)
    target = torch.where(unused, torch.zeros_like(target), target)
    # p̂ − k̂ = scale·(proj − u): the −1 of both normalisations cancels
    residual = scale * (proj - target)
    per_coord = gmof(residual * residual, sigma)  # GMoF of the squared residual, as mse_loss_with_gmof does
    return (per_coord.sum(-1) * kp2d[..., 2] * weights).sum(-1)


def relative_change(prev: float, cur: float) -> float:
    """mmhuman3d's early-stop measure: |prev − cur| / max(|prev|, |cur|, 1)."""
    return abs(prev - cur) / max(abs(prev), abs(cur), 1.0)


def _rodrigues(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (N, 3) -> (N, 3, 3) exactly as smplx's SMPL does it (so fits match its forward)."""
    from smplx.lbs import batch_rodrigues

    return batch_rodrigues(aa)


class SparseJointModel(torch.nn.Module):
    """The smpl_49 joints of a `gtacli.body.smpl.BodyModel`, computed from the vertices they need only.

    `joints54(betas (B,10), rotmats (B,24,3,3)) -> (B, 54, 3)` equals `BodyModel(...).joints54` (float
    rounding aside): shape/pose blend shapes and skinning on the vertex subset, rest joints from the
    precomputed regression of template and shape directions.
    """

    def __init__(self, body_model: Any):
        super().__init__()
        smpl = body_model.smpl
        if not getattr(body_model, "has_extra", False):
            raise ValueError("the body model has no J_regressor_extra: smpl_49 joints need it")
        dtype = smpl.v_template.dtype
        vertex_ids = torch.as_tensor(list(body_model.vertex_joint_ids()), dtype=torch.long)
        extra = body_model.j_regressor_extra  # (9, V)
        extra_cols = torch.nonzero(extra.abs().sum(0) > 0).reshape(-1).cpu()
        subset = torch.unique(torch.cat([vertex_ids, extra_cols]))
        device = smpl.v_template.device
        subset = subset.to(device)
        num_v = smpl.v_template.shape[0]
        posedirs = smpl.posedirs.reshape(-1, num_v, 3)  # (207, V, 3)
        j_reg = smpl.J_regressor  # (24, V)
        self.register_buffer("v_template", smpl.v_template[subset].clone())
        self.register_buffer("shapedirs", smpl.shapedirs[subset].clone())  # (S, 3, 10)
        self.register_buffer(
            "posedirs", posedirs[:, subset].reshape(posedirs.shape[0], -1).clone()
        )  # (207, S*3)
        self.register_buffer("lbs_weights", smpl.lbs_weights[subset].clone())  # (S, 24)
        self.register_buffer("j_template", j_reg @ smpl.v_template)  # (24, 3)
        self.register_buffer("j_shapedirs", torch.einsum("jv,vcl->jcl", j_reg, smpl.shapedirs))  # (24, 3, 10)
        self.register_buffer("extra", extra[:, subset].clone().to(dtype))  # (9, S)
        # position of every vertex joint inside the subset
        lookup = {int(v): i for i, v in enumerate(subset.tolist())}
        self.register_buffer(
            "vertex_pos", torch.as_tensor([lookup[int(v)] for v in vertex_ids], device=device)
        )
        self.register_buffer("map49", torch.as_tensor(SMPL_54_TO_SMPL_49, device=device))
        # row sums of the linear maps behind each of the 54 joints (1 except the extra regressor rows)
        sums = torch.ones(54, dtype=dtype, device=device)
        sums[45:] = extra.sum(1).to(dtype)
        self.register_buffer("row_sums54", sums)
        parents = smpl.parents.tolist()
        parents[0] = -1
        self.parents = parents
        self.levels = _depth_levels(parents)
        self.num_subset = int(subset.numel())

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, 10) -> (B, 24, 3): `J_regressor @ (v_template + shapedirs·β)`."""
        return self.j_template + torch.einsum("bl,jcl->bjc", betas, self.j_shapedirs)

    def joints54(self, betas: torch.Tensor, rotmats: torch.Tensor) -> torch.Tensor:
        batch = betas.shape[0]
        rest = self.rest_joints(betas)
        v_shaped = self.v_template + torch.einsum("bl,vcl->bvc", betas, self.shapedirs)
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_feature = (rotmats[:, 1:] - eye).reshape(batch, -1)
        v_posed = v_shaped + (pose_feature @ self.posedirs).reshape(batch, -1, 3)
        glob_r, glob_t = _kinematic_chain(rotmats, rest, self.parents, self.levels)
        # relative transforms A_k = [R_k | t_k − R_k J_k], blended per vertex by the skinning weights
        rel_t = glob_t - torch.einsum("bkij,bkj->bki", glob_r, rest)
        blend_r = torch.einsum("vk,bkij->bvij", self.lbs_weights, glob_r)
        blend_t = torch.einsum("vk,bki->bvi", self.lbs_weights, rel_t)
        verts = torch.einsum("bvij,bvj->bvi", blend_r, v_posed) + blend_t  # (B, S, 3)
        vertex_joints = verts[:, self.vertex_pos]
        extra = torch.einsum("js,bsc->bjc", self.extra, verts)
        return torch.cat([glob_t, vertex_joints, extra], dim=1)

    def joints49(self, betas: torch.Tensor, rotmats: torch.Tensor) -> torch.Tensor:
        return self.joints54(betas, rotmats)[:, self.map49]


def _depth_levels(parents: Sequence[int]) -> List[Tuple[List[int], List[int]]]:
    """Joints grouped by depth in the kinematic tree: [(children, their parents), ...] from depth 1 down."""
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    levels = []
    for d in range(1, max(depth) + 1):
        kids = [j for j in range(len(parents)) if depth[j] == d]
        levels.append((kids, [parents[j] for j in kids]))
    return levels


def _kinematic_chain(
    rotmats: torch.Tensor,
    rest: torch.Tensor,
    parents: Sequence[int],
    levels: Sequence[Tuple[List[int], List[int]]],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Global rotations (B, 24, 3, 3) and posed joint positions (B, 24, 3), one batched step per tree depth."""
    glob_r: List[Optional[torch.Tensor]] = [None] * len(parents)
    glob_t: List[Optional[torch.Tensor]] = [None] * len(parents)
    glob_r[0] = rotmats[:, 0]
    glob_t[0] = rest[:, 0]
    for kids, pars in levels:
        par_r = torch.stack([glob_r[p] for p in pars], dim=1)  # type: ignore[misc]
        par_t = torch.stack([glob_t[p] for p in pars], dim=1)  # type: ignore[misc]
        offset = rest[:, kids] - rest[:, pars]
        kid_r = par_r @ rotmats[:, kids]
        kid_t = par_t + torch.einsum("bkij,bkj->bki", par_r, offset)
        for i, k in enumerate(kids):
            glob_r[k] = kid_r[:, i]
            glob_t[k] = kid_t[:, i]
    return torch.stack(glob_r, dim=1), torch.stack(glob_t, dim=1)  # type: ignore[arg-type]


@dataclass
class StageReport:
    iterations: int
    final_loss: float  # batch sum, last evaluated (before the last step)
    stopped_early: bool


@dataclass
class FitTrace:
    """Per-iteration batch losses (before each step) and wall time since the fit began, for benchmarks."""

    losses: List[float] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    stages: List[StageReport] = field(default_factory=list)


class SMPLify:
    """Batched SMPLify (docs/reproduction.md §7.3–7.4) on a `gtacli.body.smpl.BodyModel` (its device and dtype)."""

    def __init__(
        self,
        body_model: Any,
        gmm_path: Optional[PathLike] = None,
        config: Optional[SMPLifyConfig] = None,
        *,
        pose_prior: Optional[MaxMixturePrior] = None,
    ):
        self.body_model = body_model
        self.config = config or SMPLifyConfig()
        ref = body_model.smpl.v_template
        self.device, self.dtype = ref.device, ref.dtype
        if pose_prior is None:
            if gmm_path is None or not Path(gmm_path).is_file():
                raise MissingFileError(
                    "the GMM pose prior gmm_08.pkl is needed to fit SMPL",
                    path=gmm_path,
                    fix="run `gtacli fetch gmm_08` (or `gtacli check-layout` to see what is missing)",
                )
            pose_prior = MaxMixturePrior.from_pickle(gmm_path, dtype=self.dtype, device=self.device)
        self.pose_prior = pose_prior.to(device=self.device, dtype=self.dtype)
        self.weights = keypoint_weights(self.config.ignore_keypoints, dtype=self.dtype, device=self.device)
        self._sparse: Optional[SparseJointModel] = None
        if self.config.fast_joints:
            self._sparse = SparseJointModel(body_model)

    # ---------------------------------------------------------------------------------------------------
    def keypoint_loss(self, joints: torch.Tensor, transl: torch.Tensor, kp2d: torch.Tensor) -> torch.Tensor:
        """Keypoint term (B,) of untranslated joints (B, 49, 3) placed at `transl` (B, 3)."""
        c = self.config
        joints_cam = joints + transl[:, None, :]
        return c.keypoint_weight * keypoint_term(
            joints_cam, kp2d.to(joints_cam.dtype), self.weights, c.focal_length, c.img_res, c.gmof_sigma
        )

    def prior_loss(self, body_pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """Shape + joint angle + GMM priors (B,), with the configured weights."""
        c = self.config
        return (
            shape_prior(betas, c.shape_prior_weight)
            + joint_angle_prior(body_pose, c.joint_prior_weight, c.joint_prior_variant)
            + self.pose_prior(body_pose, c.pose_prior_weight)
        )

    def total_loss(
        self, pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor, kp2d: torch.Tensor
    ) -> torch.Tensor:
        """The SMPLify objective per sample (B,) with a full body-model forward (reference evaluation)."""
        out = self.body_model(betas, pose[:, 3:], pose[:, :3], pose2rot=True)
        return self.keypoint_loss(out.joints, transl, kp2d) + self.prior_loss(pose[:, 3:], betas)

    # ---------------------------------------------------------------------------------------------------
    def _joints49(
        self, global_orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor
    ) -> torch.Tensor:
        if self._sparse is None:
            return self.body_model(betas, body_pose, global_orient, pose2rot=True).joints
        batch = betas.shape[0]
        rotmats = _rodrigues(torch.cat([global_orient, body_pose], dim=1).reshape(-1, 3)).reshape(
            batch, 24, 3, 3
        )
        return self._sparse.joints49(betas, rotmats)

    def _threads_for(self, batch: int) -> Optional[int]:
        if self.config.cpu_threads is not None:
            return self.config.cpu_threads
        return 1 if batch <= SINGLE_THREAD_MAX_BATCH else None

    def _run_stage(
        self, params: List[torch.Tensor], loss_fn: Any, trace: Optional[FitTrace], t0: float
    ) -> StageReport:
        c = self.config
        optimizer = torch.optim.Adam(params, lr=c.lr, betas=c.adam_betas)
        prev: Optional[float] = None
        iterations, stopped, cur = 0, False, float("nan")
        for it in range(c.num_iters):
            optimizer.zero_grad(set_to_none=True)
            total = loss_fn().sum()
            total.backward()
            optimizer.step()
            iterations = it + 1
            cur = float(total.detach())
            if trace is not None:
                trace.losses.append(cur)
                trace.seconds.append(_now() - t0)
            if it > 0 and prev is not None and c.ftol > 0 and relative_change(prev, cur) < c.ftol:
                stopped = True
                break
            prev = cur
        return StageReport(iterations, cur, stopped)

    def fit(
        self,
        init_pose: torch.Tensor,
        init_betas: torch.Tensor,
        init_transl: torch.Tensor,
        kp2d: torch.Tensor,
        *,
        trace: Optional[FitTrace] = None,
    ) -> Dict[str, Any]:
        """Fit SMPL to 2D keypoints.

        init_pose (B, 72) axis-angle, init_betas (B, 10), init_transl (B, 3) metres, kp2d (B, 49, 3) crop pixels
        with confidences. Returns (all detached, on the body model's device):
        `pose` (B, 72), `betas` (B, 10), `transl` (B, 3), `vertices` (B, 6890, 3) and `joints` (B, 49, 3) in
        the camera frame (translation applied, as mmhuman3d's registrant returns them), `loss` (B,) the final
        objective, `keypoint_loss` (B,) its keypoint term (docs/reproduction.md §7.1 step 5), `stages` (list of StageReport).
        """
        kw = {"device": self.device, "dtype": self.dtype}
        kp2d = kp2d.detach().to(**kw)
        batch = kp2d.shape[0]
        global_orient = init_pose[:, :3].detach().to(**kw).clone()
        body_pose = init_pose[:, 3:].detach().to(**kw).clone()
        betas = init_betas.detach().to(**kw).reshape(batch, -1).clone()
        transl = init_transl.detach().to(**kw).reshape(batch, 3).clone()
        t0 = _now()
        reports = []
        with torch.enable_grad(), _cpu_threads(self.device, self._threads_for(batch)):
            # stage 1: global orient + translation; body pose and betas fixed
            global_orient.requires_grad_(True)
            transl.requires_grad_(True)
            with torch.no_grad():
                const_prior = self.prior_loss(body_pose, betas)
                if self._sparse is not None:
                    rot_rest = _rodrigues(body_pose.reshape(-1, 3)).reshape(batch, 23, 3, 3)
                    eye = torch.eye(3, **kw).expand(batch, 1, 3, 3)
                    j54_id = self._sparse.joints54(betas, torch.cat([eye, rot_rest], dim=1))
                    root = j54_id[:, 0:1]  # the posed root joint = rest root joint
                    sums = self._sparse.row_sums54[None, :, None]
                    centred = (j54_id - sums * root)[:, self._sparse.map49]  # (B, 49, 3)
                    anchor = (sums * root)[:, self._sparse.map49]

            def stage1_loss() -> torch.Tensor:
                if self._sparse is not None:
                    rot = _rodrigues(global_orient)
                    joints = torch.einsum("bij,bkj->bki", rot, centred) + anchor
                else:
                    joints = self._joints49(global_orient, body_pose, betas)
                return self.keypoint_loss(joints, transl, kp2d) + const_prior

            reports.append(self._run_stage([global_orient, transl], stage1_loss, trace, t0))
            transl.requires_grad_(False)

            # stage 2: global orient + body pose + betas; translation fixed
            body_pose.requires_grad_(True)
            betas.requires_grad_(True)

            def stage2_loss() -> torch.Tensor:
                joints = self._joints49(global_orient, body_pose, betas)
                return self.keypoint_loss(joints, transl, kp2d) + self.prior_loss(body_pose, betas)

            reports.append(self._run_stage([global_orient, body_pose, betas], stage2_loss, trace, t0))

        with torch.no_grad():
            pose = torch.cat([global_orient, body_pose], dim=1).detach()
            betas = betas.detach()
            transl = transl.detach()
            out = self.body_model(betas, pose[:, 3:], pose[:, :3], pose2rot=True)
            kp_loss = self.keypoint_loss(out.joints, transl, kp2d)
            loss = kp_loss + self.prior_loss(pose[:, 3:], betas)
        if trace is not None:
            trace.stages.extend(reports)
        return {
            "pose": pose,
            "betas": betas,
            "transl": transl,
            "vertices": out.vertices + transl[:, None, :],
            "joints": out.joints + transl[:, None, :],
            "loss": loss,
            "keypoint_loss": kp_loss,
            "stages": reports,
        }


@dataclass
class DatasetFit:
    """Result of `fit_dataset`: rows in the order given, all numpy."""

    fits: Any  # (N, 82) float64: [pose72 | betas10], the crop camera frame (= original image frame, no rotation)
    loss: Any  # (N,) final SMPLify objective
    joint_loss: (
        Any  # (N,) docs/reproduction.md §7.1 step 5 with estimate_translation, as training evaluates the fit
    )
    valid: Any  # (N,) bool: joint_loss < threshold (docs/reproduction.md §7.1 step 9, without GT)
    betas_zeroed: Any  # (N,) bool: rows training will zero (any |β| > 3, docs/reproduction.md §7.1 step 7)
    translation_fallback: (
        Any  # (N,) bool: init translation from the camera, no confident joint to estimate it
    )


def axis_angle_from_rotmat(rotmat: torch.Tensor) -> torch.Tensor:
    """(B, 24, 3, 3) rotation matrices -> (B, 72) axis-angle, NaN -> 0 (as SPIN/mmhuman3d do before SMPLify)."""
    from gtacli.body.rotations import matrix_to_axis_angle

    pose = matrix_to_axis_angle(rotmat).reshape(rotmat.shape[0], -1)
    return torch.nan_to_num(pose, nan=0.0)


def mean_init(mean_params: Dict[str, Any], batch: int, **kwargs: Any) -> Dict[str, torch.Tensor]:
    """Initial parameters from `smpl_mean_params` (`pose` (144,) 6D, `shape` (10,), `cam` (3,)):
    {'pose' (B, 72) axis-angle, 'betas' (B, 10), 'cam' (B, 3)}."""
    from gtacli.body.rotations import rot6d_to_rotmat

    pose6d = torch.as_tensor(mean_params["pose"], **kwargs).reshape(1, 24, 6)
    pose = axis_angle_from_rotmat(rot6d_to_rotmat(pose6d).reshape(1, 24, 3, 3))
    betas = torch.as_tensor(mean_params["shape"], **kwargs).reshape(1, -1)
    cam = torch.as_tensor(mean_params["cam"], **kwargs).reshape(1, 3)
    return {"pose": pose.expand(batch, -1), "betas": betas.expand(batch, -1), "cam": cam.expand(batch, -1)}


def fit_dataset(
    smplify: SMPLify,
    kp2d: Any,
    init_pose: Any,
    init_betas: Any,
    init_cam: Any,
    *,
    batch_size: int = 32,
    threshold: float = 10.0,
    max_abs_beta: float = 3.0,
    estimate_init_translation: bool = True,
    progress: Optional[Any] = None,
) -> DatasetFit:
    """Fit every sample of an annotation, `batch_size` at a time.

    kp2d (N, 49, 3) crop pixels + conf; init_pose (N, 72); init_betas (N, 10); init_cam (N, 3) weak-perspective.
    The initial translation is `estimate_translation` of the initial body on the keypoints (the camera's
    translation where no joint 25–48 is confident) when `estimate_init_translation`, else the camera's.
    `progress(done, total)` is called after each batch.
    """
    import numpy as np

    from gtacli.body.camera import cam_to_translation, estimate_translation

    c = smplify.config
    kw = {"device": smplify.device, "dtype": smplify.dtype}
    n = int(np.shape(kp2d)[0])
    fits = np.zeros((n, 82), np.float64)
    loss = np.zeros(n, np.float64)
    joint_loss = np.zeros(n, np.float64)
    fallback = np.zeros(n, bool)
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        kp = torch.as_tensor(np.asarray(kp2d[sl]), **kw)
        pose = torch.as_tensor(np.asarray(init_pose[sl]), **kw)
        betas = torch.as_tensor(np.asarray(init_betas[sl]), **kw)
        cam_t = cam_to_translation(torch.as_tensor(np.asarray(init_cam[sl]), **kw), c.focal_length, c.img_res)
        transl, ok = cam_t, torch.zeros(kp.shape[0], dtype=torch.bool, device=kp.device)
        if estimate_init_translation:
            with torch.no_grad():
                joints = smplify.body_model(betas, pose[:, 3:], pose[:, :3], pose2rot=True).joints
            est, ok = estimate_translation(joints, kp, c.focal_length, c.img_res)
            transl = torch.where(ok[:, None], est, cam_t)
        result = smplify.fit(pose, betas, transl, kp)
        with torch.no_grad():
            root_joints = result["joints"] - result["transl"][:, None, :]
            opt_t, opt_ok = estimate_translation(root_joints, kp, c.focal_length, c.img_res)
            opt_t = torch.where(opt_ok[:, None], opt_t, result["transl"])
            jl = smplify.keypoint_loss(root_joints, opt_t, kp)
        fits[sl, :72] = result["pose"].double().cpu().numpy()
        fits[sl, 72:] = result["betas"].double().cpu().numpy()
        loss[sl] = result["loss"].double().cpu().numpy()
        joint_loss[sl] = jl.double().cpu().numpy()
        fallback[sl] = ~ok.cpu().numpy() if estimate_init_translation else True
        if progress is not None:
            progress(sl.stop, n)
    return DatasetFit(
        fits=fits,
        loss=loss,
        joint_loss=joint_loss,
        valid=joint_loss < threshold,
        betas_zeroed=(np.abs(fits[:, 72:]) > max_abs_beta).any(axis=1),
        translation_fallback=fallback,
    )


class _cpu_threads:
    """Temporarily set torch's intra-op thread count for CPU work (no-op on CUDA or when `threads` is None)."""

    def __init__(self, device: torch.device, threads: Optional[int]):
        self.active = device.type == "cpu" and threads is not None and threads != torch.get_num_threads()
        self.threads = threads
        self.before = torch.get_num_threads()

    def __enter__(self) -> None:
        if self.active:
            torch.set_num_threads(int(self.threads))  # type: ignore[arg-type]

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            torch.set_num_threads(self.before)


def _now() -> float:
    import time

    return time.perf_counter()


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; anything else as torch understands it."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
