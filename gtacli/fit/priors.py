"""SMPLify's robust keypoint function and the three priors of the registrant (docs/reproduction.md §7.3).

Everything here is a batched torch function (any float dtype, the caller's device) returning one value per
sample, unweighted unless a `weight` is passed; `gtacli.fit.smplify_mmhuman3d` multiplies by the recipe weights below.

* `gmof(x, sigma)`: Geman-McClure `sigma²·x² / (sigma² + x²)`.
* `MaxMixturePrior`: the 8-component GMM pose prior of `gmm_08.pkl` in SMPLify-X's "merged" form:
  `min_m [ 0.5·(θ−μ_m)ᵀ Σ_m⁻¹ (θ−μ_m) − log nll_weight_m ]`,
  `nll_weight_m = w_m / ((2π)^{69/2} · sqrt(det Σ_m) / min_k sqrt(det Σ_k))`, on the 69-d body pose.
  The 8 quadratics are evaluated with one matrix product: with `Σ_m⁻¹ = L_m L_mᵀ` (Cholesky, float64 at load),
  `(θ−μ)ᵀ Σ⁻¹ (θ−μ) = ‖θᵀL_m − μ_mᵀL_m‖²`, so `θ @ [L_1 … L_8]` gives all of them at once.
* `joint_angle_prior(body_pose)`: mmhuman3d's `Σ (exp(s·θ[idx]) − 1)²` or SPIN's `Σ exp(s·θ[idx])²` (variants below).
* `shape_prior(betas)`: `Σ β²`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np
import torch
from torch import nn

from gtacli.errors import BadFileError, MissingFileError, PathLike
from gtacli.io.safe import load_pickle

# Registrant loss weights (docs/reproduction.md §7.3), as mmhuman3d writes them: 5.0², 15.2², 4.78².
SHAPE_PRIOR_WEIGHT = 5.0**2  # 25
JOINT_PRIOR_WEIGHT = 15.2**2  # 231.04
POSE_PRIOR_WEIGHT = 4.78**2  # 22.8484
KEYPOINT_GMOF_SIGMA = 100.0  # KeypointMSELoss(sigma=100)

BODY_POSE_DIM = 69

# Joint angle prior variants: (indices into the 69-d body pose, sign per index).
# mmhuman3d's JointPriorLoss applies SPIN's 72-d indices to the 69-d body pose (shifted by one joint):
# right-elbow y, left-wrist y, right-knee x, spine2 x.
JOINT_PRIOR_MMHUMAN3D: Tuple[Tuple[int, ...], Tuple[float, ...]] = ((55, 58, 12, 15), (1.0, -1.0, -1.0, -1.0))
# SPIN's angle_prior (SPIN `smplify/losses.py`) subtracts 3 first: left/right elbow y, left/right knee x.
JOINT_PRIOR_SPIN: Tuple[Tuple[int, ...], Tuple[float, ...]] = ((52, 55, 9, 12), (1.0, -1.0, -1.0, -1.0))
# variant -> (indices, signs, offset): the prior is Σ (exp(s·θ) − offset)²
JOINT_PRIOR_VARIANTS = {"mmhuman3d": (*JOINT_PRIOR_MMHUMAN3D, 1.0), "spin": (*JOINT_PRIOR_SPIN, 0.0)}


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
    """Joint angle prior per sample. body_pose (B, 69) axis-angle -> (B,).

    `variant="mmhuman3d"` (default, mmhuman3d's `JointPriorLoss`): `weight · Σ_i (exp(s_i·θ[idx_i]) − 1)²` with
    indices (55, 58, 12, 15) of the 69-d pose, i.e. SPIN's 72-d indices without the −3 shift — right-elbow y,
    left-wrist y, right-knee x, spine2 x.
    `variant="spin"` (SPIN `smplify/losses.py::angle_prior`): `weight · Σ_i exp(s_i·θ[idx_i])²` (no −1) with
    indices (52, 55, 9, 12) — left/right elbow y, left/right knee x.
    Signs are (+1, −1, −1, −1) in both. Both references weight it by 15.2² = 231.04 (`JOINT_PRIOR_WEIGHT`).
    """
    if variant not in JOINT_PRIOR_VARIANTS:
        raise ValueError(
            f"unknown joint prior variant {variant!r}; choose from {sorted(JOINT_PRIOR_VARIANTS)}"
        )
    idx, signs, offset = JOINT_PRIOR_VARIANTS[variant]
    sign = torch.tensor(signs, dtype=body_pose.dtype, device=body_pose.device)
    angles = body_pose.reshape(body_pose.shape[0], -1)[:, list(idx)]
    return weight * ((torch.exp(angles * sign) - offset) ** 2).sum(dim=-1)


def load_gmm(path: PathLike) -> Dict[str, np.ndarray]:
    """`gmm_08.pkl` (Python-2 pickle, restricted loader) -> {'means' (8,69), 'covars' (8,69,69), 'weights' (8,)}."""
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


def gmm_constants(covars: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(M,) `−log nll_weight_m` as SPIN and mmhuman3d hold them (float64 result; +inf never selected).

    Both references compute `nll_weight_m = w_m / ((2π)^{d/2} · sqrt(det Σ_m) / min_k sqrt(det Σ_k))` in float64,
    store it as a float32 tensor, then take `−log` of that tensor (in float32) (SMPLify-X `prior.py`, used by SPIN
    `smplify/smplify.py` and mmhuman3d `prior_loss.py`). With the real gmm_08.pkl component 0's weight (≈2.1e-47)
    is below float32's range: it becomes 0, its constant +inf, and the component never wins; component 3's
    constant moves by ≈0.034. Determinants come from `slogdet` (same value, no overflow).
    """
    dim = covars.shape[-1]
    logdets = np.linalg.slogdet(np.asarray(covars, np.float64))[1]
    log_nll = np.log(np.asarray(weights, np.float64)) - 0.5 * dim * math.log(2.0 * math.pi)
    log_nll = log_nll - 0.5 * (logdets - logdets.min())
    stored = np.exp(log_nll).astype(np.float32)  # the float32 tensor both references keep
    with np.errstate(divide="ignore"):
        return (-np.log(stored)).astype(np.float64)  # −log of that float32 tensor, in float32


class MaxMixturePrior(nn.Module):
    """GMM pose prior, "merged" max-mixture form (SMPLify-X / SPIN / mmhuman3d `MaxMixturePrior(use_merged=True)`).

    `forward(body_pose (B, 69)) -> (B,)` unweighted negative log-likelihood of the best component; the
    registrant multiplies it by 22.8484 (`POSE_PRIOR_WEIGHT`). The constants follow the references' float32
    storage (`gmm_constants`); components whose constant is +inf can never be the minimum and are left out
    of the evaluation (`active` lists the others). Quadratics use float64 Cholesky factors stored in `dtype`.
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
        constants = gmm_constants(covars, np.asarray(weights, np.float64))
        active = np.flatnonzero(np.isfinite(constants))
        if active.size == 0:
            raise ValueError("every GMM component has a zero weight in float32: no prior left")
        self.constants = constants  # (M,) float64, +inf for components that are never selected
        self.active = active
        means, covars = means[active], covars[active]
        num, dim = means.shape
        precisions = np.linalg.inv(covars)
        precisions = 0.5 * (precisions + np.transpose(precisions, (0, 2, 1)))  # exact symmetry for Cholesky
        chol = np.linalg.cholesky(precisions)  # P_m = L_m L_mᵀ
        chol_cat = np.concatenate(list(chol), axis=1)  # (dim, num*dim): θ @ chol_cat = [θᵀL_1 | … | θᵀL_M]
        mean_proj = np.einsum("mi,mij->mj", means, chol)  # (num, dim): μ_mᵀ L_m
        kwargs = {"dtype": dtype, "device": device}
        self.num_gaussians = num
        self.dim = dim
        self.register_buffer("means", torch.as_tensor(means, **kwargs))
        self.register_buffer("chol_cat", torch.as_tensor(chol_cat, **kwargs))
        self.register_buffer("mean_proj", torch.as_tensor(mean_proj, **kwargs))
        self.register_buffer("neg_log_nll_weights", torch.as_tensor(constants[active], **kwargs))

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
        """(B, 69) -> (B, M_active): `0.5·(θ−μ_m)ᵀ P_m (θ−μ_m) − log nll_weight_m` for every active component."""
        proj = body_pose.reshape(body_pose.shape[0], -1) @ self.chol_cat  # (B, M*69)
        proj = proj.reshape(-1, self.num_gaussians, self.dim) - self.mean_proj
        return 0.5 * (proj * proj).sum(dim=-1) + self.neg_log_nll_weights

    def forward(self, body_pose: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        return weight * self.component_nll(body_pose).min(dim=1).values


def load_pose_prior(
    gmm_path: PathLike | None,
    *,
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device, None] = None,
) -> MaxMixturePrior:
    """The GMM prior every fitter needs; a missing file is a one-line `MissingFileError` with the fix."""
    if gmm_path is None or not Path(gmm_path).is_file():
        raise MissingFileError(
            "the GMM pose prior gmm_08.pkl is needed to fit SMPL",
            path=gmm_path,
            fix="run `gtacli fetch gmm_08` (or `gtacli check-layout` to see what is missing)",
        )
    return MaxMixturePrior.from_pickle(gmm_path, dtype=dtype, device=device)
