"""SMPLify's robust keypoint function and the three priors of the registrant (docs/reproduction.md §7.3).

Everything here is a batched torch function (any float dtype, the caller's device) returning one value per
sample, unweighted unless a `weight` is passed; `gtacli.fit.smplify` multiplies by the recipe weights below.

* `gmof(x, sigma)`: Geman-McClure `sigma²·x² / (sigma² + x²)`.
* `MaxMixturePrior`: the 8-component GMM pose prior of `gmm_08.pkl` in SMPLify-X's "merged" form:
  `min_m [ 0.5·(θ−μ_m)ᵀ Σ_m⁻¹ (θ−μ_m) − log nll_weight_m ]`,
  `nll_weight_m = w_m / ((2π)^{69/2} · sqrt(det Σ_m) / min_k sqrt(det Σ_k))`, on the 69-d body pose.
  The 8 quadratics are evaluated with one matrix product: with `Σ_m⁻¹ = L_m L_mᵀ` (Cholesky, float64 at load),
  `(θ−μ)ᵀ Σ⁻¹ (θ−μ) = ‖θᵀL_m − μ_mᵀL_m‖²`, so `θ @ [L_1 … L_8]` gives all of them at once.
* `joint_angle_prior(body_pose)`: `Σ (exp(s·θ[idx]) − 1)²` on elbows/knees (see the variants below).
* `shape_prior(betas)`: `Σ β²`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from gtacli.errors import BadFileError, PathLike

# Registrant loss weights (docs/reproduction.md §7.3), as mmhuman3d writes them: 5.0², 15.2², 4.78².
SHAPE_PRIOR_WEIGHT = 5.0**2  # 25
JOINT_PRIOR_WEIGHT = 15.2**2  # 231.04
POSE_PRIOR_WEIGHT = 4.78**2  # 22.8484
KEYPOINT_GMOF_SIGMA = 100.0  # KeypointMSELoss(sigma=100)

GMM_NUM_GAUSSIANS = 8
BODY_POSE_DIM = 69

# Joint angle prior variants: (indices into the 69-d body pose, sign per index).
# mmhuman3d's JointPriorLoss applies SPIN's 72-d indices to the 69-d body pose (shifted by one joint):
# right-elbow y, left-wrist y, right-knee x, spine2 x.
JOINT_PRIOR_MMHUMAN3D: Tuple[Tuple[int, ...], Tuple[float, ...]] = ((55, 58, 12, 15), (1.0, -1.0, -1.0, -1.0))
# SPIN's angle_prior subtracts 3 first: left/right elbow y, left/right knee x.
JOINT_PRIOR_SPIN: Tuple[Tuple[int, ...], Tuple[float, ...]] = ((52, 55, 9, 12), (1.0, -1.0, -1.0, -1.0))
JOINT_PRIOR_VARIANTS = {"mmhuman3d": JOINT_PRIOR_MMHUMAN3D, "spin": JOINT_PRIOR_SPIN}


def gmof(x: torch.Tensor, sigma: float = KEYPOINT_GMOF_SIGMA) -> torch.Tensor:
    """Geman-McClure robust function, elementwise: `sigma²·x² / (sigma² + x²)`.

    Note the registrant feeds it the *squared* residual (docs/reproduction.md §7.1 step 5), so the keypoint term is ≈ r⁴.
    """
    sigma_sq = sigma * sigma
    x_sq = x * x
    return sigma_sq * x_sq / (sigma_sq + x_sq)


def shape_prior(betas: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
    """`weight · Σ β²` per sample. betas (B, 10) -> (B,). The registrant uses weight 25 (`SHAPE_PRIOR_WEIGHT`)."""
    return weight * (betas * betas).sum(dim=-1)


def joint_angle_prior(
    body_pose: torch.Tensor, weight: float = 1.0, variant: str = "mmhuman3d"
) -> torch.Tensor:
    """`weight · Σ_i (exp(s_i · θ[idx_i]) − 1)²` per sample. body_pose (B, 69) axis-angle -> (B,).

    `variant="mmhuman3d"` (default, what the registrant runs): indices (55, 58, 12, 15) of the 69-d pose, i.e.
    SPIN's 72-d indices without the −3 shift — right-elbow y, left-wrist y, right-knee x, spine2 x.
    `variant="spin"`: SPIN's `angle_prior`, indices (52, 55, 9, 12) — left/right elbow y, left/right knee x.
    Signs are (+1, −1, −1, −1) in both. The registrant's weight is 231.04 (`JOINT_PRIOR_WEIGHT`).
    """
    if variant not in JOINT_PRIOR_VARIANTS:
        raise ValueError(
            f"unknown joint prior variant {variant!r}; choose from {sorted(JOINT_PRIOR_VARIANTS)}"
        )
    idx, signs = JOINT_PRIOR_VARIANTS[variant]
    sign = torch.tensor(signs, dtype=body_pose.dtype, device=body_pose.device)
    angles = body_pose.reshape(body_pose.shape[0], -1)[:, list(idx)]
    return weight * ((torch.exp(angles * sign) - 1.0) ** 2).sum(dim=-1)


def load_gmm(path: PathLike) -> Dict[str, np.ndarray]:
    """`gmm_08.pkl` (Python-2 pickle, restricted loader) -> {'means' (8,69), 'covars' (8,69,69), 'weights' (8,)}."""
    from gtacli.io.safe import load_pickle

    data = load_pickle(path)
    if not isinstance(data, dict) or not {"means", "covars", "weights"} <= set(data):
        raise BadFileError(
            "not a GMM pose prior (expected a dict with means, covars, weights)",
            path=path,
            fix="download gmm_08.pkl again (gtacli fetch gmm_08)",
        )
    means = np.asarray(data["means"], np.float64)
    covars = np.asarray(data["covars"], np.float64)
    weights = np.asarray(data["weights"], np.float64)
    m = weights.shape[0]
    if means.shape != (m, BODY_POSE_DIM) or covars.shape != (m, BODY_POSE_DIM, BODY_POSE_DIM):
        raise BadFileError(
            f"GMM arrays have shapes means {means.shape}, covars {covars.shape}, weights {weights.shape}; "
            f"expected (M,{BODY_POSE_DIM}), (M,{BODY_POSE_DIM},{BODY_POSE_DIM}), (M,)",
            path=path,
            fix="download gmm_08.pkl again (gtacli fetch gmm_08)",
        )
    return {"means": means, "covars": covars, "weights": weights}


class MaxMixturePrior(nn.Module):
    """GMM pose prior, "merged" max-mixture form (SMPLify-X / mmhuman3d `MaxMixturePrior(use_merged=True)`).

    `forward(body_pose (B, 69)) -> (B,)` unweighted negative log-likelihood of the best component; the
    registrant multiplies it by 22.8484 (`POSE_PRIOR_WEIGHT`). Constants are computed in float64 and
    stored in `dtype`.
    """

    def __init__(
        self,
        means: np.ndarray,
        covars: np.ndarray,
        weights: np.ndarray,
        *,
        dtype: torch.dtype = torch.float32,
        device: Union[str, torch.device, None] = None,
    ):
        super().__init__()
        means = np.asarray(means, np.float64)
        covars = np.asarray(covars, np.float64)
        weights = np.asarray(weights, np.float64)
        num, dim = means.shape
        precisions = np.linalg.inv(covars)
        precisions = 0.5 * (precisions + np.transpose(precisions, (0, 2, 1)))  # exact symmetry for Cholesky
        chol = np.linalg.cholesky(precisions)  # P_m = L_m L_mᵀ
        # -log nll_weight_m = -log w_m + (dim/2)·log 2π + 0.5·(log det Σ_m − min_k log det Σ_k)
        logdets = np.linalg.slogdet(covars)[1]
        neg_log_nll = -np.log(weights) + 0.5 * dim * math.log(2.0 * math.pi) + 0.5 * (logdets - logdets.min())
        chol_cat = np.concatenate(list(chol), axis=1)  # (dim, num*dim): θ @ chol_cat = [θᵀL_1 | … | θᵀL_M]
        mean_proj = np.einsum("mi,mij->mj", means, chol)  # (num, dim): μ_mᵀ L_m
        kwargs = {"dtype": dtype, "device": device}
        self.num_gaussians = num
        self.dim = dim
        self.register_buffer("means", torch.as_tensor(means, **kwargs))
        self.register_buffer("precisions", torch.as_tensor(precisions, **kwargs))
        self.register_buffer("chol_cat", torch.as_tensor(chol_cat, **kwargs))
        self.register_buffer("mean_proj", torch.as_tensor(mean_proj, **kwargs))
        self.register_buffer("neg_log_nll_weights", torch.as_tensor(neg_log_nll, **kwargs))

    @classmethod
    def from_pickle(
        cls,
        path: PathLike,
        *,
        dtype: torch.dtype = torch.float32,
        device: Union[str, torch.device, None] = None,
    ) -> MaxMixturePrior:
        gmm = load_gmm(Path(path))
        return cls(gmm["means"], gmm["covars"], gmm["weights"], dtype=dtype, device=device)

    def component_nll(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, 69) -> (B, M): `0.5·(θ−μ_m)ᵀ P_m (θ−μ_m) − log nll_weight_m` for every component."""
        proj = body_pose.reshape(body_pose.shape[0], -1) @ self.chol_cat  # (B, M*69)
        proj = proj.reshape(-1, self.num_gaussians, self.dim) - self.mean_proj
        return 0.5 * (proj * proj).sum(dim=-1) + self.neg_log_nll_weights

    def forward(self, body_pose: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        return weight * self.component_nll(body_pose).min(dim=1).values


def build_pose_prior(
    gmm_path: Optional[PathLike],
    *,
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device, None] = None,
) -> Optional[MaxMixturePrior]:
    """The GMM prior from a file, or None when no file is given (the caller then fits without it)."""
    if gmm_path is None:
        return None
    return MaxMixturePrior.from_pickle(gmm_path, dtype=dtype, device=device)
