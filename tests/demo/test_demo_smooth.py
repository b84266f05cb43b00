"""One-Euro smoothing of per-person SMPL parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gtacli.body.rotations import rot6d_to_rotmat_np, rotmat_to_rot6d_np
from gtacli.demo.smooth import OneEuroFilter, PersonSmoother, smoothing_alpha


def _random_rotations(rng, n):
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def test_alpha_formula():
    # fc = 1 Hz, dt = 1/30 s: tau = 1/(2 pi), alpha = 1 / (1 + 30/(2 pi))
    assert smoothing_alpha(1.0, 1 / 30) == pytest.approx(1 / (1 + 30 / (2 * math.pi)))


def test_first_sample_passes_and_constant_stays_constant():
    f = OneEuroFilter()
    x = np.array([1.0, -2.0, 3.0])
    for i in range(10):
        np.testing.assert_allclose(f(x, i / 30), x)


def test_second_step_matches_hand_computation():
    f = OneEuroFilter(min_cutoff_hz=1.0, beta=0.0, d_cutoff_hz=1.0)
    f(np.array([0.0]), 0.0)
    out = f(np.array([1.0]), 0.1)
    a = 1 / (1 + (1 / (2 * math.pi)) / 0.1)  # beta 0: cutoff = min_cutoff
    np.testing.assert_allclose(out, [a])


def test_noise_is_reduced():
    rng = np.random.default_rng(0)
    f = OneEuroFilter()
    noisy = 0.5 + 0.05 * rng.normal(size=(120, 3))
    out = np.stack([f(x, i / 30) for i, x in enumerate(noisy)])
    assert out[20:].std(axis=0).max() < 0.5 * noisy[20:].std(axis=0).min()


def test_6d_round_trip_and_reorthonormalisation():
    rng = np.random.default_rng(1)
    rot = _random_rotations(rng, 5)
    np.testing.assert_allclose(rot6d_to_rotmat_np(rotmat_to_rot6d_np(rot)), rot, atol=1e-12)
    # a perturbed 6D vector still gives a proper rotation
    r = rot6d_to_rotmat_np(rotmat_to_rot6d_np(rot) + 0.1 * rng.normal(size=(5, 6)))
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


def test_person_smoother_keeps_people_apart_and_outputs_rotations():
    rng = np.random.default_rng(2)
    smoother = PersonSmoother()
    base = _random_rotations(rng, 24)
    other = _random_rotations(rng, 24)
    for i in range(6):
        r0, b0, c0 = smoother(
            0,
            i / 30,
            base,  # same pose every frame for person 0
            np.full(10, 0.3),
            np.array([0.9, 0.0, 0.1]),
        )
        r1, b1, c1 = smoother(1, i / 30, other, np.full(10, -1.0), np.array([1.2, 0.1, 0.0]))
    np.testing.assert_allclose(r0, base, atol=1e-9)  # a still person is not moved
    np.testing.assert_allclose(b1, -1.0)  # person 1's filter never saw person 0
    np.testing.assert_allclose(c1, [1.2, 0.1, 0.0])
    rng_noise = 0.1 * rng.normal(size=(24, 6))
    r, _, _ = smoother(0, 6 / 30, rot6d_to_rotmat_np(rotmat_to_rot6d_np(base) + rng_noise), np.zeros(10), c0)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    assert smoother.describe()["filter"] == "one_euro"
