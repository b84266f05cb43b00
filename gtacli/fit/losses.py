"""The terms fits are scored by: keypoint weights, the reprojection losses of the formulations, and the
acceptance criterion of each method (docs/reproduction.md §7.1, §7.3).

mmhuman3d's registrant compares normalised crop coordinates under GMoF of the squared residual
(`keypoint_term`); SPIN compares pixels under GMoF weighted by confidence² (`spin_reprojection`).
"""

from __future__ import annotations

from typing import Any

import torch

from gtacli.body.camera import FOCAL_LENGTH, IMG_RES, project_points
from gtacli.fit.config import RegistrationConfig
from gtacli.fit.priors import KEYPOINT_GMOF_SIGMA, gmof

NUM_KEYPOINTS = 49


def keypoint_weights(ignore: Any, num: int = NUM_KEYPOINTS, **kwargs: Any) -> torch.Tensor:
    """(49,) weights: 1, and 0 on the ignore list (docs/reproduction.md §3.6)."""
    weights = torch.ones(num, **kwargs)
    weights[list(ignore)] = 0.0
    return weights


def unused_to_zero(kp2d: torch.Tensor) -> torch.Tensor:
    """Zero-confidence keypoints may hold NaN/inf: they carry no weight, but NaN·0 would poison a sum."""
    target = kp2d[..., :2]
    unused = (kp2d[..., 2:3] <= 0) & ~torch.isfinite(target)
    return torch.where(unused, torch.zeros_like(target), target)


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
    proj = project_points(joints_cam, focal=focal_length, center=img_res / 2.0)
    scale = 2.0 / (img_res - 1)
    # p̂ − k̂ = scale·(proj − u): the −1 of both normalisations cancels
    residual = scale * (proj - unused_to_zero(kp2d))
    per_coord = gmof(residual * residual, sigma)  # GMoF of the squared residual, as mse_loss_with_gmof does
    return (per_coord.sum(-1) * kp2d[..., 2] * weights).sum(-1)


def spin_reprojection(
    joints_cam: torch.Tensor,
    kp2d: torch.Tensor,
    weights: torch.Tensor,
    focal_length: float,
    img_res: int,
    sigma: float,
) -> torch.Tensor:
    """(B, 49) SPIN's weighted robust reprojection `c_j²·Σ_xy gmof(p − k, σ)`, `c_j` zeroed where weights are 0.

    joints_cam (B, 49, 3) camera frame; kp2d (B, 49, 3) crop pixels + confidence; weights (49,) 0/1.
    """
    proj = project_points(joints_cam, focal=focal_length, center=img_res / 2.0)
    per_coord = gmof(proj - unused_to_zero(kp2d), sigma)
    conf = kp2d[..., 2] * weights
    return conf**2 * per_coord.sum(-1)


def fit_criterion(
    config: RegistrationConfig, joints_cam: torch.Tensor, kp2d: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """(B,) the acceptance measure of `config.method` for camera-frame joints (B, 49, 3):
    mmhuman3d's registrant keypoint loss (docs/reproduction.md §7.1 step 5), or SPIN's fitting loss
    (mean over the 49 joints of `c²·Σ gmof`, SPIN `get_fitting_loss` + trainer) for 'spin' and 'gtacli'."""
    c = config
    if c.method == "mmhuman3d":
        return c.keypoint_weight * keypoint_term(
            joints_cam, kp2d, weights, c.focal_length, c.img_res, c.gmof_sigma
        )
    return spin_reprojection(joints_cam, kp2d, weights, c.focal_length, c.img_res, c.gmof_sigma).mean(-1)
