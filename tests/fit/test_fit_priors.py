"""GMoF and the registrant's priors on hand cases and against a direct numpy implementation of docs/reproduction.md §7.3."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from gtacli.errors import BadFileError
from gtacli.fit.priors import (
    JOINT_PRIOR_WEIGHT,
    POSE_PRIOR_WEIGHT,
    SHAPE_PRIOR_WEIGHT,
    MaxMixturePrior,
    gmof,
    joint_angle_prior,
    load_gmm,
    shape_prior,
)


def test_recipe_weights_are_the_registrant_config():
    assert SHAPE_PRIOR_WEIGHT == pytest.approx(25.0)
    assert JOINT_PRIOR_WEIGHT == pytest.approx(231.04)
    assert POSE_PRIOR_WEIGHT == pytest.approx(22.8484)


def test_gmof_hand_cases():
    x = torch.tensor([0.0, 2.0, -3.0, 1e6], dtype=torch.float64)
    got = gmof(x, sigma=1.0)
    assert got.tolist()[:3] == pytest.approx([0.0, 4.0 / 5.0, 9.0 / 10.0])
    assert got[3].item() == pytest.approx(1.0, rel=1e-9)  # saturates at sigma²
    assert gmof(torch.tensor(3.0, dtype=torch.float64), sigma=100.0).item() == pytest.approx(
        1e4 * 9 / (1e4 + 9)
    )


def test_shape_prior_hand_case():
    betas = torch.tensor([[1.0, -2.0, 0.5, 0, 0, 0, 0, 0, 0, 3.0], [0.0] * 10], dtype=torch.float64)
    got = shape_prior(betas, SHAPE_PRIOR_WEIGHT)
    assert got.tolist() == pytest.approx([25.0 * (1 + 4 + 0.25 + 9), 0.0])


def test_joint_angle_prior_variants_hand_case():
    pose = torch.zeros(2, 69, dtype=torch.float64)
    pose[0, [55, 58, 12, 15]] = torch.tensor([0.5, 0.3, -0.2, 0.1], dtype=torch.float64)
    pose[1, [52, 55, 9, 12]] = torch.tensor([0.4, -0.6, 0.7, -0.2], dtype=torch.float64)
    e = math.exp
    mm_expected = [
        (e(0.5) - 1) ** 2 + (e(-0.3) - 1) ** 2 + (e(0.2) - 1) ** 2 + (e(-0.1) - 1) ** 2,
        (e(-0.6) - 1) ** 2 + (e(0.2) - 1) ** 2,  # indices 55 and 12 of row 1
    ]
    # SPIN smplify/losses.py angle_prior: exp(s·θ)² with no −1, so a zero angle contributes exp(0)² = 1
    spin_expected = [
        1.0
        + e(-0.5) ** 2
        + 1.0
        + e(0.2) ** 2,  # row 0 has 55 and 12 set: spin's 2nd and 4th entries (sign −1)
        e(0.4) ** 2 + e(0.6) ** 2 + e(-0.7) ** 2 + e(0.2) ** 2,
    ]
    assert joint_angle_prior(pose).tolist() == pytest.approx(mm_expected)
    assert joint_angle_prior(pose, 2.0, variant="spin").tolist() == pytest.approx(
        [2 * v for v in spin_expected]
    )
    with pytest.raises(ValueError):
        joint_angle_prior(pose, variant="other")


def reference_constants(gmm: dict) -> np.ndarray:
    """−log nll_weight_m the way SPIN / mmhuman3d (SMPLify-X prior.py) compute it: the weight in float64 from
    sqrt(det Σ) ratios, then held as a float32 tensor, then −log taken in float32."""
    sqrdets = np.array([np.sqrt(np.linalg.det(c)) for c in gmm["covars"]])
    nll_weights = np.asarray(gmm["weights"] / ((2 * np.pi) ** (69 / 2.0) * (sqrdets / sqrdets.min())))
    stored = torch.tensor(nll_weights, dtype=torch.float32)
    return (-torch.log(stored)).double().numpy()


def direct_max_mixture(theta: np.ndarray, gmm: dict) -> np.ndarray:
    """docs/reproduction.md §7.3 typed out: min_m 0.5 (θ−μ)ᵀ Σ⁻¹ (θ−μ) + c_m with the references' c_m."""
    per_component = []
    for mean, cov, c in zip(gmm["means"], gmm["covars"], reference_constants(gmm)):
        diff = theta - mean
        quad = np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff)
        per_component.append(0.5 * quad + c)
    return np.min(per_component, axis=0)


def test_gmm_constants_are_stored_in_float32_like_the_references(shared_assets):
    """The real gmm_08.pkl: component 0's weight (~2.1e-47) underflows in float32, so it never wins; component
    3's constant rounds up by ~0.034 against a float64 computation."""
    path = shared_assets / "gmm_08.pkl"
    gmm = load_gmm(path)
    expected = reference_constants(gmm)
    prior = MaxMixturePrior.from_pickle(path, dtype=torch.float64)
    assert np.isinf(expected[0]) and np.isinf(prior.constants[0])
    np.testing.assert_allclose(prior.constants[1:], expected[1:], rtol=2e-7)
    assert list(prior.active) == list(range(1, 8))
    # the float64 value the old code used, for the size of the difference
    sqrdets = np.array([np.sqrt(np.linalg.det(c)) for c in gmm["covars"]])
    exact = -np.log(gmm["weights"] / ((2 * np.pi) ** (69 / 2.0) * (sqrdets / sqrdets.min())))
    assert exact[3] < prior.constants[3] and prior.constants[3] - exact[3] == pytest.approx(0.034, abs=0.002)
    # the rest pose is closest to component 3: the prior there carries the float32 constant
    rest = np.zeros((1, 69))
    got = prior(torch.from_numpy(rest)).item()
    np.testing.assert_allclose(got, direct_max_mixture(rest, gmm)[0], rtol=1e-7)
    diff = rest[0] - gmm["means"][3]
    quad3 = 0.5 * diff @ np.linalg.inv(gmm["covars"][3]) @ diff
    assert got == pytest.approx(quad3 + expected[3], rel=1e-7)
    assert got - (quad3 + exact[3]) == pytest.approx(0.034, abs=0.002)


def test_gmm_prior_matches_direct_formula(gmm_path):
    gmm = load_gmm(gmm_path)
    prior = MaxMixturePrior.from_pickle(gmm_path, dtype=torch.float64)
    rng = np.random.default_rng(0)
    theta = np.concatenate([gmm["means"][:3], rng.normal(0, 0.3, (4, 69))])
    got = prior(torch.from_numpy(theta)).numpy()
    # the constants are float32 numbers (one float32 ulp of ~100 is 7.6e-6): compare to that precision
    np.testing.assert_allclose(got, direct_max_mixture(theta, gmm), rtol=1e-7, atol=1e-5)
    np.testing.assert_allclose(
        prior(torch.from_numpy(theta), POSE_PRIOR_WEIGHT).numpy(), POSE_PRIOR_WEIGHT * got
    )
    # float32 buffers give the same values to float32 precision
    prior32 = MaxMixturePrior.from_pickle(gmm_path)
    np.testing.assert_allclose(prior32(torch.from_numpy(theta).float()).numpy(), got, rtol=1e-4)


def test_gmm_prior_lowest_at_a_mean(gmm_path):
    gmm = load_gmm(gmm_path)
    prior = MaxMixturePrior.from_pickle(gmm_path, dtype=torch.float64)
    best = int(np.argmin(direct_max_mixture(gmm["means"], gmm)))
    mean = torch.from_numpy(gmm["means"][best : best + 1])
    at_mean = prior(mean).item()
    rng = np.random.default_rng(1)
    for scale in (0.05, 0.2, 0.5):
        away = mean + torch.from_numpy(rng.normal(0, scale, (1, 69)))
        assert prior(away).item() > at_mean
    # at its mean a component's quadratic vanishes: the value is that component's −log nll_weight or less
    assert at_mean <= prior.constants[best] + 1e-9
    # gradient at the mean of the winning component is zero
    mean.requires_grad_(True)
    prior(mean).sum().backward()
    assert mean.grad.abs().max().item() < 1e-9


def test_load_gmm_refuses_other_content(tmp_path):
    bad = tmp_path / "gmm.pkl"
    bad.write_bytes(pickle.dumps({"means": np.zeros((8, 69))}, protocol=4))
    with pytest.raises(BadFileError, match="GMM"):
        load_gmm(bad)
    bad.write_bytes(
        pickle.dumps(
            {"means": np.zeros((8, 3)), "covars": np.zeros((8, 3, 3)), "weights": np.ones(8)}, protocol=4
        )
    )
    with pytest.raises(BadFileError, match="shapes"):
        load_gmm(bad)
