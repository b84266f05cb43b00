"""Camera models of the pipeline (docs/reproduction.md §4.4, §7.1 step 4, §9).

The network predicts a weak-perspective camera [s, tx, ty] for the 224x224 crop; it becomes a perspective
translation with a fixed focal length of 5000 px. Projections here use principal point 0 (pixel offsets from
the crop centre) unless a centre is given.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from gtacli.body.conventions import TRANSLATION_JOINTS

Array = Union[np.ndarray, torch.Tensor]

FOCAL_LENGTH = 5000.0  # px, for the 224x224 crop (docs/reproduction.md §4.4)
IMG_RES = 224  # crop side in px
CAM_EPS = 1e-9  # added to img_res * s before dividing (docs/reproduction.md §4.4)
DEMO_BBOX_SCALE = 1.25  # demo crop side = 1.25 * max(w, h) of the detection box (docs/reproduction.md §9)


def cam_to_translation(
    cam: torch.Tensor, focal: float = FOCAL_LENGTH, img_res: int = IMG_RES
) -> torch.Tensor:
    """Weak-perspective [s, tx, ty] (B, 3) -> translation (B, 3) = (tx, ty, 2 f / (img_res s + 1e-9))."""
    s, tx, ty = cam[..., 0], cam[..., 1], cam[..., 2]
    tz = 2.0 * focal / (img_res * s + CAM_EPS)
    return torch.stack((tx, ty, tz), dim=-1)


def project_points(
    points: Array,
    transl: Optional[Array] = None,
    focal: Union[float, Array] = FOCAL_LENGTH,
    center: Optional[Union[float, Array, Sequence[float]]] = None,
    *,
    K: Optional[Array] = None,
) -> Array:
    """Perspective projection with identity rotation: `uv = f (X + t)_xy / (Z + t_z) + c`.

    The one home of this formula for every caller: torch tensors (losses, fitters, the renderer, on the caller's
    device and with gradients) and numpy arrays (the demo, the sample tree) alike; the result is of the points'
    kind. `points` (..., 3): (B, J, 3) or (V, 3); `transl` None or (B, 3), added to every point of its row.
    `focal` a number or (2,) = (fx, fy). `center` None = principal point 0 (offsets from the crop centre, as
    the 2D losses use them), else a number, (2,) or (B, 2) per row. `K` instead of focal and center: pinhole
    intrinsics (3, 3) or (B, 3, 3) per row, without skew (no camera of the pipeline has one).
    """
    p = points if transl is None else points + transl[..., None, :]
    if K is not None:
        # views and one stack: no index tensor copied to the device (the renderer calls this per frame on CUDA)
        stack = torch.stack if isinstance(K, torch.Tensor) else np.stack
        focal = stack((K[..., 0, 0], K[..., 1, 1]), -1)
        center = K[..., :2, 2]
        if K.ndim == 3:
            focal = focal[:, None, :]
    elif not isinstance(focal, (int, float)):
        focal = _same_kind(focal, p)
    uv = focal * p[..., :2] / p[..., 2:3]
    if center is None:
        return uv
    if not isinstance(center, (int, float)):
        center = _same_kind(center, uv)
        if center.ndim == 2 and uv.ndim == 3:  # one centre per row
            center = center[:, None, :]
    return uv + center


def _same_kind(x: Union[Array, Sequence[float]], like: Array) -> Array:
    """`x` as a tensor on `like`'s device and dtype when `like` is a tensor, else as a numpy array."""
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return np.asarray(x, dtype=like.dtype)


def estimate_translation(
    joints: torch.Tensor,
    kp2d: torch.Tensor,
    focal: float = FOCAL_LENGTH,
    img_res: int = IMG_RES,
    joint_idx: Sequence[int] = TRANSLATION_JOINTS,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Camera translation that best projects 3D joints onto 2D keypoints (docs/reproduction.md §7.1 step 4).

    joints (B, 49, 3) in metres (root frame), kp2d (B, 49, 3) = (u, v, conf) in crop pixels.
    For each sample, weighted least squares over `joint_idx` (smpl_49 25..48) with weights sqrt(conf):
        f (X + tx) - (u - c)(Z + tz) = 0,   f (Y + ty) - (v - c)(Z + tz) = 0,   c = img_res / 2.
    Returns (transl (B, 3), ok (B,) bool). `ok` is False where fewer than two selected joints have conf > 0 or
    the system is singular (mmhuman3d raises there); such rows get a zero translation and the caller
    substitutes its own (e.g. the predicted camera).
    Solved in float64 for all samples at once (normal equations), whatever the input dtype.
    """
    idx = torch.as_tensor(list(joint_idx), device=joints.device)
    dtype = joints.dtype
    S = joints[:, idx].to(torch.float64)  # (B, J, 3)
    kp = kp2d[:, idx].to(torch.float64)
    B, J = S.shape[:2]
    c = img_res / 2.0
    conf = torch.nan_to_num(kp[..., 2], nan=0.0).clamp_min(0)
    used = conf > 0
    # zero-confidence keypoints may hold NaN/inf (e.g. regenerated GTA files): keep them out of the sums
    u = torch.where(used, kp[..., 0] - c, torch.zeros_like(conf))
    v = torch.where(used, kp[..., 1] - c, torch.zeros_like(conf))
    w = torch.sqrt(conf)  # (B, J)
    X, Y, Z = S.unbind(-1)
    zeros, ones = torch.zeros_like(u), torch.ones_like(u)
    # rows for x then y: coefficients of (tx, ty, tz) and right-hand side
    a_x = torch.stack((focal * ones, zeros, -u), -1)  # (B, J, 3)
    a_y = torch.stack((zeros, focal * ones, -v), -1)
    b_x = u * Z - focal * X
    b_y = v * Z - focal * Y
    A = torch.cat((a_x, a_y), 1) * torch.cat((w, w), 1)[..., None]  # (B, 2J, 3)
    b = torch.cat((b_x, b_y), 1) * torch.cat((w, w), 1)  # (B, 2J)
    # two joints give 4 equations for 3 unknowns; with fewer the system is singular
    ok = used.sum(-1) >= 2
    ata = A.transpose(1, 2) @ A  # (B, 3, 3)
    atb = (A.transpose(1, 2) @ b[..., None]).squeeze(-1)
    # Rows without any confident joint would be singular: give them the identity so the batch solve works.
    eye = torch.eye(3, dtype=torch.float64, device=joints.device).expand(B, 3, 3)
    ata = torch.where(ok[:, None, None], ata, eye)
    atb = torch.where(ok[:, None], atb, torch.zeros_like(atb))
    if B > 0:
        transl, info = torch.linalg.solve_ex(ata, atb[..., None])
        transl = transl[..., 0]
        ok = ok & (info == 0)  # degenerate geometry (e.g. coincident joints): flagged, not raised
    else:
        transl = atb
    transl = torch.where(ok[:, None], transl, torch.zeros_like(transl))
    transl = torch.where(torch.isfinite(transl), transl, torch.zeros_like(transl))
    return transl.to(dtype), ok


def crop_to_image_intrinsics(
    center_xy: Sequence[float], side_px: float, focal: float = FOCAL_LENGTH, img_res: int = IMG_RES
) -> np.ndarray:
    """Intrinsics for the original image of a crop camera whose square crop has `side_px` centred at `center_xy`."""
    k = side_px / img_res
    cx, cy = (float(v) for v in center_xy)
    # (img_res / 2) k + cx - side / 2 == cx: the crop centre lands on the box centre.
    return np.array([[focal * k, 0.0, cx], [0.0, focal * k, cy], [0.0, 0.0, 1.0]])


# ------------------------------------------------------------------ cameras of the full image (the demo's)


def crop_square(box: np.ndarray) -> Tuple[np.ndarray, float]:
    """The demo's square crop of a box `[x, y, w, h]` (docs/reproduction.md §9): centre = the box centre,
    side = DEMO_BBOX_SCALE x max(w, h) (pixels)."""
    x, y, w, h = (float(v) for v in np.asarray(box, np.float64)[:4])
    return np.array([x + w / 2, y + h / 2], np.float64), max(w, h) * DEMO_BBOX_SCALE


def to_common_camera(
    verts_cam: List[np.ndarray], Ks: List[np.ndarray], size_hw: Tuple[int, int]
) -> Tuple[List[np.ndarray], np.ndarray]:
    """Re-express meshes seen by per-person cameras `K_i = [[f_i, 0, cx_i], [0, f_i, cy_i], [0, 0, 1]]` in one
    camera `K = [[F, 0, w/2], [0, F, h/2], [0, 0, 1]]` so one z-buffer renders everyone.

    `(X, Y, Z) -> (X + (cx_i - w/2) Z / f_i, Y + (cy_i - h/2) Z / f_i, Z F / f_i)` projects every vertex to
    exactly the same pixel, and the new depth of the body origin is `2F/(s W)`, the `transl` depth of the
    original camera, so people are ordered by their distance in that camera. F is the largest f_i.
    """
    height, width = size_hw
    focal = max(float(K[0, 0]) for K in Ks)
    out = []
    for verts, K in zip(verts_cam, Ks):
        f_i, cx_i, cy_i = float(K[0, 0]), float(K[0, 2]), float(K[1, 2])
        z = verts[:, 2:3]
        shift = np.array([[cx_i - width / 2.0, cy_i - height / 2.0]]) * z / f_i
        out.append(np.concatenate([verts[:, :2] + shift, z * focal / f_i], axis=1))
    K_common = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    return out, K_common


def full_image_translation(
    cam: np.ndarray, centers: np.ndarray, side: np.ndarray, image_wh: np.ndarray, focal: np.ndarray
) -> np.ndarray:
    """Translation (P,3) in the original camera (principal point = image centre, focal `focal` (P,) px) from the
    crop camera `cam` (P,3) = [s, tx, ty] of crops with centres (P,2) and sides (P,) px in images (P,2) = (w, h).

    `tz = 2F/(s W)` (the depth at which the body has the size the crop camera gives it, seen with focal F) and
    `tx' = tx + 2 (cx - w/2)/(s W)`, `ty' = ty + 2 (cy - h/2)/(s W)` (the root lands on the same pixel).
    """
    s, tx, ty = cam[:, 0], cam[:, 1], cam[:, 2]
    denom = s * side + CAM_EPS
    return np.stack(
        [
            tx + 2.0 * (centers[:, 0] - image_wh[:, 0] / 2.0) / denom,
            ty + 2.0 * (centers[:, 1] - image_wh[:, 1] / 2.0) / denom,
            2.0 * focal / denom,
        ],
        axis=1,
    )
