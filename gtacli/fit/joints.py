"""The smpl_49 joints of a body model from the few vertices they need (the fitters' inner loop).

Only the 49 keypoints are needed while fitting, and they depend on few vertices: the 21 vertex joints and
the vertices `J_regressor_extra` reads (62 for the real file). `SparseJointModel` runs SMPL's blend shapes
and skinning on those vertices only, with the 24 rest joints from a precomputed
`J_regressor @ (v_template + shapedirs·β)` (linear in β), and the kinematic chain batched by tree depth.
It is the same arithmetic as smplx's `lbs` restricted to the rows that reach the joints.

`RigidSkeleton` serves stages where body pose and betas are fixed: the posed skeleton is then a rigid
function of the global orient, `J(R) = R·(J_I − s·J_0) + s·J_0` with `J_I` the joints at identity orient,
`J_0` the root joint and `s` the row sum of each joint's regressor (1 except for the extra joints).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
from smplx.lbs import batch_rodrigues

from gtacli.body.conventions import SMPL_54_TO_SMPL_49


def rodrigues(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (N, 3) -> (N, 3, 3) exactly as smplx's SMPL does it (so fits match its forward).

    Not `body/rotations.batch_rodrigues` on purpose: that one is mmhuman3d's quaternion form, which the training
    loss must use to score the fits as the reference does; the two formulas differ by up to ~2e-8 (float64) at
    ordinary angles, and the fitters must produce the joints `BodyModel` (smplx's sin/cos form) gives for the
    same parameters.
    """
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


class RigidSkeleton:
    """smpl_49 joints as a function of the global orient only (body pose and betas fixed). (B, 3) -> (B, 49, 3)."""

    def __init__(self, sparse: SparseJointModel, body_pose: torch.Tensor, betas: torch.Tensor):
        batch = betas.shape[0]
        with torch.no_grad():
            rot_rest = rodrigues(body_pose.reshape(-1, 3)).reshape(batch, 23, 3, 3)
            eye = torch.eye(3, dtype=betas.dtype, device=betas.device).expand(batch, 1, 3, 3)
            j54_id = sparse.joints54(betas, torch.cat([eye, rot_rest], dim=1))
            root = j54_id[:, 0:1]  # the posed root joint = rest root joint
            sums = sparse.row_sums54[None, :, None]
            self.centred = (j54_id - sums * root)[:, sparse.map49]  # (B, 49, 3)
            self.anchor = (sums * root)[:, sparse.map49]

    def __call__(self, global_orient: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bij,bkj->bki", rodrigues(global_orient), self.centred) + self.anchor
