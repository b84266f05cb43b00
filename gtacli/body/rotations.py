"""Rotation representations used by the model, the losses and the data pipeline (docs/reproduction.md §3.5, §4.3, §6.2.4, §6.6).

Every function is batched, works on any float dtype and keeps tensors on the caller's device. The flip and
rotate helpers also accept numpy arrays (the data pipeline works in numpy) and return the same kind.
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

from gtacli.body.conventions import SMPL_POSE_FLIP_PERM_72

ArrayLike = Union[np.ndarray, torch.Tensor]

# mmhuman3d adds this to the axis-angle vector before taking its norm (docs/reproduction.md §6.2.4): keeps zero rotations finite.
RODRIGUES_EPS = 1e-8


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D rotation representation -> rotation matrices (docs/reproduction.md §4.3).

    `x` is (B, 144) (24 joints of the HMR head) -> (B, 24, 3, 3), or (..., 6) -> (..., 3, 3).
    Each 6-vector is read row-major as a 3x2 matrix [[p0, p1], [p2, p3], [p4, p5]]; its columns a1, a2 are
    Gram-Schmidt orthonormalised into b1, b2 and b3 = b1 x b2; the result has columns [b1 | b2 | b3].
    """
    if x.shape[-1] == 144 and x.dim() == 2:
        x = x.reshape(x.shape[0], 24, 6)
    if x.shape[-1] != 6:
        raise ValueError(f"rot6d_to_rotmat expects (..., 6) or (B, 144), got {tuple(x.shape)}")
    m = x.reshape(*x.shape[:-1], 3, 2)
    a1, a2 = m[..., 0], m[..., 1]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


def rotmat_to_rot6d(rotmat: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6) = [R00, R01, R10, R11, R20, R21] (the first two columns, row-major)."""
    return rotmat[..., :, :2].reshape(*rotmat.shape[:-2], 6)


def quat_to_rotmat(quat: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) as (w, x, y, z), normalised first -> rotation matrices (..., 3, 3)."""
    q = quat / quat.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    ww, xx, yy, zz = w * w, x * x, y * y, z * z
    wx, wy, wz, xy, xz, yz = w * x, w * y, w * z, x * y, x * z, y * z
    rows = (
        ww + xx - yy - zz, 2 * (xy - wz), 2 * (wy + xz),
        2 * (wz + xy), ww - xx + yy - zz, 2 * (yz - wx),
        2 * (xz - wy), 2 * (wx + yz), ww - xx - yy + zz,
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quat.shape[:-1], 3, 3)


def batch_rodrigues(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (N, 3) -> (N, 3, 3), mmhuman3d's quaternion form (docs/reproduction.md §6.2.4).

    The angle is ||aa + 1e-8|| (the epsilon is added to every component before the norm, as mmhuman3d does),
    the axis aa / angle, and the matrix comes from the unit quaternion (cos(angle/2), sin(angle/2) axis).
    Also accepts (..., 3). The training loss uses it (as mmhuman3d does); the fitters use smplx's own form
    instead (`fit/joints.rodrigues`) so that their joints equal the body model's: the two differ by ~1e-8.
    """
    angle = torch.norm(aa + RODRIGUES_EPS, dim=-1, keepdim=True)
    axis = aa / angle
    half = 0.5 * angle
    quat = torch.cat((torch.cos(half), torch.sin(half) * axis), dim=-1)
    return quat_to_rotmat(quat)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3) by the Rodrigues formula, exact at zero.

    Uses sin(t)/t and (1 - cos t)/t^2 with Taylor series below a small angle, so gradients stay finite at 0.
    """
    theta2 = (aa * aa).sum(-1, keepdim=True).unsqueeze(-1)  # (..., 1, 1)
    theta = torch.sqrt(theta2.clamp_min(torch.finfo(aa.dtype).tiny))
    small = theta2 < 1e-6
    safe_t = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(safe_t) / safe_t)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(safe_t)) / (safe_t * safe_t))
    k = _skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3) with angle in [0, pi], robust near 0 and pi.

    Goes through a quaternion chosen by the largest diagonal term (Shepperd's method), which never divides by a
    small number, then angle = 2 atan2(|v|, w).
    """
    m = rotmat
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    trace = m00 + m11 + m22
    # Four candidate (unnormalised) quaternions; each is well conditioned when its leading term is largest.
    cands = torch.stack(
        (
            torch.stack(
                (
                    1 + trace,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ),
                -1,
            ),
            torch.stack(
                (
                    m[..., 2, 1] - m[..., 1, 2],
                    1 + m00 - m11 - m22,
                    m[..., 0, 1] + m[..., 1, 0],
                    m[..., 0, 2] + m[..., 2, 0],
                ),
                -1,
            ),
            torch.stack(
                (
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 0, 1] + m[..., 1, 0],
                    1 - m00 + m11 - m22,
                    m[..., 1, 2] + m[..., 2, 1],
                ),
                -1,
            ),
            torch.stack(
                (
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 1, 2] + m[..., 2, 1],
                    1 - m00 - m11 + m22,
                ),
                -1,
            ),
        ),
        dim=-2,
    )  # (..., 4, 4)
    lead = torch.stack((trace, m00, m11, m22), -1)
    best = lead.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)  # w >= 0 -> angle in [0, pi]
    w, v = q[..., 0], q[..., 1:]
    sin_half = v.norm(dim=-1)
    angle = 2 * torch.atan2(sin_half, w)
    # angle / sin(angle/2), with its Taylor limit 2 + angle^2/12 for tiny angles
    small = sin_half < 1e-6
    scale = torch.where(
        small, 2 + angle * angle / 12, angle / torch.where(small, torch.ones_like(sin_half), sin_half)
    )
    return v * scale[..., None]


def axis_angle_from_rotmat(rotmat: torch.Tensor) -> torch.Tensor:
    """(B, 24, 3, 3) rotation matrices -> (B, 72) axis-angle, NaN -> 0 (as SPIN/mmhuman3d do before SMPLify)."""
    pose = matrix_to_axis_angle(rotmat).flatten(-2)  # (B, 24, 3) -> (B, 72), also for B = 0
    return torch.nan_to_num(pose, nan=0.0)


def _skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*v.shape[:-1], 3, 3)


def flip_smpl_pose(pose: ArrayLike) -> ArrayLike:
    """Mirror SMPL axis-angle poses (..., 72) left<->right (docs/reproduction.md §3.5): swap left/right joints, negate y and z.

    numpy in -> numpy out, torch in -> torch out; the input is not modified.
    """
    if pose.shape[-1] != 72:
        raise ValueError(f"flip_smpl_pose expects (..., 72), got {tuple(pose.shape)}")
    sign = np.tile(np.array([1.0, -1.0, -1.0]), 24)
    if isinstance(pose, torch.Tensor):
        perm = torch.as_tensor(SMPL_POSE_FLIP_PERM_72, device=pose.device)
        return pose[..., perm] * torch.as_tensor(sign, dtype=pose.dtype, device=pose.device)
    pose = np.asarray(pose)
    return pose[..., list(SMPL_POSE_FLIP_PERM_72)] * sign.astype(
        pose.dtype if pose.dtype.kind == "f" else np.float64
    )


def rot_z_neg(rot_deg: ArrayLike) -> ArrayLike:
    """R_z(-r) = [[cos r, sin r, 0], [-sin r, cos r, 0], [0, 0, 1]] for r in degrees (docs/reproduction.md §6.6 step 5). (B,) -> (B, 3, 3)."""
    if isinstance(rot_deg, torch.Tensor):
        r = rot_deg * (math.pi / 180.0)
        c, s = torch.cos(r), torch.sin(r)
        one, zero = torch.ones_like(r), torch.zeros_like(r)
        return torch.stack((c, s, zero, -s, c, zero, zero, zero, one), -1).reshape(*r.shape, 3, 3)
    r = np.deg2rad(np.asarray(rot_deg, dtype=np.float64))
    c, s = np.cos(r), np.sin(r)
    one, zero = np.ones_like(r), np.zeros_like(r)
    return np.stack((c, s, zero, -s, c, zero, zero, zero, one), -1).reshape(*r.shape, 3, 3)


def rotate_global_orient(aa: ArrayLike, rot_deg: ArrayLike) -> ArrayLike:
    """Rotate global orientations (B, 3) by the crop rotation (B,) degrees: Rodrigues(R_z(-r) . Rodrigues(aa)).

    This is what the data pipeline does to `global_orient` (docs/reproduction.md §6.6 step 5) and what the fits lookup does
    after the flip (§7.1 step 3). numpy in -> numpy out (float64 maths), torch in -> torch out.
    """
    if isinstance(aa, torch.Tensor):
        rot = torch.as_tensor(rot_deg, dtype=aa.dtype, device=aa.device).expand(aa.shape[:-1])
        return matrix_to_axis_angle(rot_z_neg(rot) @ axis_angle_to_matrix(aa))
    aa_np = np.asarray(aa)
    out = rotate_global_orient(
        torch.from_numpy(aa_np.astype(np.float64)), torch.as_tensor(np.asarray(rot_deg, np.float64))
    )
    return out.numpy().astype(aa_np.dtype if aa_np.dtype.kind == "f" else np.float64)


# numpy (float64) variants for code that works on arrays (the synthetic data generator): the torch
# functions above do the maths, so each formula has one home.


def rot_x(angle: float) -> np.ndarray:
    """(3, 3) rotation by `angle` radians about x."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    """(3, 3) rotation by `angle` radians about y."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> np.ndarray:
    """(3, 3) rotation by `angle` radians about z."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def axis_angle_to_matrix_np(aa: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices, float64 (`axis_angle_to_matrix`)."""
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(aa, dtype=np.float64))).numpy()


def matrix_to_axis_angle_np(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle, float64, robust at 0 and 180 degrees."""
    return matrix_to_axis_angle(torch.as_tensor(np.asarray(rot, dtype=np.float64))).numpy()


def rotmat_to_rot6d_np(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6) in SPIN's layout `[R00, R01, R10, R11, R20, R21]` (`rotmat_to_rot6d`)."""
    return rotmat_to_rot6d(torch.as_tensor(np.asarray(rot))).numpy()


def rot6d_to_rotmat_np(x: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) rotation matrices, float64, by Gram-Schmidt (`rot6d_to_rotmat`)."""
    return rot6d_to_rotmat(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()
