"""Error metrics on batched torch tensors (computed in float64 on the caller's device; docs/reproduction.md §8).

All inputs are in millimetres (or any unit: outputs keep it). Per-frame values are returned so a caller can
aggregate per sequence; the dataset value is the mean over frames (every frame has the same joint count, so
this equals mmhuman3d's mean over all N×J joint errors).
"""

from __future__ import annotations

from typing import Sequence

import torch

# mmhuman3d's keypoint_3d_pck / keypoint_3d_auc defaults (MPI-INF-3DHP convention).
PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM = tuple(150.0 * i / 30 for i in range(31))  # np.linspace(0, 150, 31)


def compute_similarity_transform(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Procrustes-align `pred` (B,J,3) to `gt` (B,J,3) per sample (scale, rotation, translation); returns (B,J,3).

    docs/reproduction.md §8 (HMR's `compute_similarity_transform`): centre both (μ1, μ2); K = X1·X2ᵀ (3x3); U,S,Vᵀ = svd(K);
    Z = diag(1, 1, sign(det(U·Vᵀ))); R = V·Z·Uᵀ; s = trace(R·K)/‖X1‖²; t = μ2 − s·R·μ1; pred_hat = s·R·pred + t.
    Computed in float64.
    """
    src = pred.to(torch.float64).transpose(1, 2)  # (B,3,J)
    dst = gt.to(torch.float64).transpose(1, 2)
    mu1 = src.mean(dim=2, keepdim=True)
    mu2 = dst.mean(dim=2, keepdim=True)
    x1 = src - mu1
    x2 = dst - mu2
    var1 = (x1**2).sum(dim=(1, 2))  # (B,)
    k = x1 @ x2.transpose(1, 2)  # (B,3,3)
    u, _s, vh = torch.linalg.svd(k)
    v = vh.transpose(1, 2)
    z = torch.eye(3, dtype=k.dtype, device=k.device).repeat(k.shape[0], 1, 1)
    z[:, -1, -1] = torch.sign(torch.linalg.det(u @ v.transpose(1, 2)))
    r = v @ z @ u.transpose(1, 2)
    scale = torch.diagonal(r @ k, dim1=1, dim2=2).sum(-1) / var1  # (B,)
    t = mu2 - scale[:, None, None] * (r @ mu1)
    aligned = scale[:, None, None] * (r @ src) + t
    return aligned.transpose(1, 2)


def joint_errors(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B,J) Euclidean distance per joint, float64."""
    return torch.linalg.norm(pred.to(torch.float64) - gt.to(torch.float64), dim=-1)


def mpjpe_per_frame(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B,) mean per-joint position error of each frame (no alignment; centre both beforehand)."""
    return joint_errors(pred, gt).mean(dim=-1)


def pa_mpjpe_per_frame(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B,) MPJPE after Procrustes alignment of each frame."""
    return mpjpe_per_frame(compute_similarity_transform(pred, gt), gt)


def pve_per_frame(pred_vertices: torch.Tensor, gt_vertices: torch.Tensor) -> torch.Tensor:
    """(B,) mean per-vertex Euclidean error (inputs already aligned as the protocol says)."""
    return joint_errors(pred_vertices, gt_vertices).mean(dim=-1)


def pck_per_frame(pred: torch.Tensor, gt: torch.Tensor, threshold: float = PCK_THRESHOLD_MM) -> torch.Tensor:
    """(B,) fraction (0..1) of joints closer than `threshold`."""
    return (joint_errors(pred, gt) < threshold).to(torch.float64).mean(dim=-1)


def auc_per_frame(
    pred: torch.Tensor, gt: torch.Tensor, thresholds: Sequence[float] = AUC_THRESHOLDS_MM
) -> torch.Tensor:
    """(B,) mean over `thresholds` of the PCK (0..1): the area under the PCK curve, as mmhuman3d computes it."""
    errors = joint_errors(pred, gt)
    levels = torch.as_tensor(thresholds, dtype=torch.float64, device=errors.device)
    return (errors[..., None] < levels).to(torch.float64).mean(dim=(-1, -2))
