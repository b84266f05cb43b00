"""Metrics on hand cases (docs/reproduction.md §8)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtacli.evaluate.metrics import (
    auc_per_frame,
    compute_similarity_transform,
    mpjpe_per_frame,
    pa_mpjpe_per_frame,
    pck_per_frame,
    pve_per_frame,
)


def _random_rotations(count: int, seed: int) -> np.ndarray:
    """(count,3,3) proper rotations: Q of the QR decomposition of Gaussian matrices, signs fixed so that
    R's diagonal is positive (Haar-uniform), a column flipped where det = -1."""
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(count, 3, 3)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]
    q[np.linalg.det(q) < 0, :, 0] *= -1
    return q


def _orthogonal_procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The orthogonal R minimising |a R - b| (Schönemann 1966): U V^T of the SVD of a^T b."""
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


def test_the_test_helpers_are_right():
    rot = _random_rotations(4, seed=1)
    assert np.allclose(rot @ rot.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(rot), 1.0)
    a = np.random.default_rng(2).normal(size=(10, 3))
    assert np.allclose(_orthogonal_procrustes(a, a @ rot[0]), rot[0], atol=1e-12)


def _gt(batch=5, joints=14, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(batch, joints, 3)) * 200.0)


def test_pa_recovers_an_exact_similarity_transform():
    gt = _gt()
    rot = torch.from_numpy(_random_rotations(5, seed=3))
    scale = torch.tensor([0.5, 1.0, 2.0, 3.3, 0.9], dtype=torch.float64)
    pred = scale[:, None, None] * gt @ rot.transpose(1, 2) + torch.tensor(
        [40.0, -12.0, 900.0], dtype=torch.float64
    )
    assert torch.all(mpjpe_per_frame(pred, gt) > 10)
    assert torch.all(pa_mpjpe_per_frame(pred, gt) < 1e-9)
    assert torch.allclose(compute_similarity_transform(pred, gt), gt, atol=1e-9)


def test_a_known_offset_gives_its_length():
    gt = _gt(batch=3, joints=17)
    offset = torch.tensor([3.0, 4.0, 12.0], dtype=torch.float64)  # |offset| = 13
    assert torch.allclose(mpjpe_per_frame(gt + offset, gt), torch.full((3,), 13.0, dtype=torch.float64))
    assert torch.all(pa_mpjpe_per_frame(gt + offset, gt) < 1e-9)  # translation is removed by PA
    assert torch.allclose(pve_per_frame(gt + offset, gt), torch.full((3,), 13.0, dtype=torch.float64))


def test_pa_never_uses_a_reflection():
    gt = _gt(batch=2, seed=5)
    mirrored = gt * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    aligned = compute_similarity_transform(mirrored, gt)
    src = mirrored - mirrored.mean(1, keepdim=True)
    dst = aligned - aligned.mean(1, keepdim=True)
    for b in range(2):  # the fitted linear map is a proper rotation times a positive scale
        lin = torch.linalg.lstsq(src[b], dst[b]).solution
        assert torch.linalg.det(lin) > 0
    assert torch.all(pa_mpjpe_per_frame(mirrored, gt) > 1.0)


def test_pa_matches_an_independent_procrustes_on_noisy_data():
    gt = _gt(batch=4, seed=7)
    noise = torch.from_numpy(np.random.default_rng(8).normal(size=gt.shape) * 20.0)
    rot = torch.from_numpy(_random_rotations(4, seed=9))
    pred = 1.3 * gt @ rot.transpose(1, 2) + noise
    got = pa_mpjpe_per_frame(pred, gt).numpy()
    for b in range(4):
        p = pred[b].numpy() - pred[b].numpy().mean(0)
        g = gt[b].numpy() - gt[b].numpy().mean(0)
        r = _orthogonal_procrustes(p, g)  # p @ r ≈ g
        assert np.linalg.det(r) > 0
        s = np.trace((p @ r).T @ g) / np.sum(p**2)
        err = np.linalg.norm(s * p @ r - g, axis=1).mean()
        assert got[b] == pytest.approx(err, rel=1e-9)


def test_pck_and_auc_on_a_hand_case():
    gt = torch.zeros(2, 17, 3, dtype=torch.float64)
    pred = gt.clone()
    pred[..., 0] = 100.0  # every joint 100 mm off
    assert torch.all(pck_per_frame(pred, gt) == 1.0)  # < 150 mm
    # thresholds 0, 5, ..., 150: the joint counts as correct for the 10 thresholds 105..150
    assert torch.allclose(auc_per_frame(pred, gt), torch.full((2,), 10 / 31, dtype=torch.float64))
    pred[0, :, 0] = 200.0
    assert pck_per_frame(pred, gt)[0] == 0.0
