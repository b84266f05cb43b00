"""Weak-perspective camera, projection and estimate_translation (docs/reproduction.md §4.4, §7.1 step 4, §9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtacli.body import camera as C


def test_constants_and_cam_to_translation():
    assert C.FOCAL_LENGTH == 5000.0 and C.IMG_RES == 224
    cam = torch.tensor([[0.9, 0.1, -0.2], [2.0, 0.0, 0.0]], dtype=torch.float64)
    t = C.cam_to_translation(cam)
    torch.testing.assert_close(t[:, :2], cam[:, 1:])
    torch.testing.assert_close(t[:, 2], 2 * 5000.0 / (224 * cam[:, 0] + 1e-9))


def test_project_points_closed_form():
    pts = torch.tensor([[[0.1, -0.2, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    t = torch.tensor([[0.0, 0.1, 10.0]], dtype=torch.float64)
    uv = C.project_points(pts, t, focal=5000.0)
    torch.testing.assert_close(
        uv[0, 0], torch.tensor([5000 * 0.1 / 10, 5000 * -0.1 / 10], dtype=torch.float64)
    )
    torch.testing.assert_close(uv[0, 1], torch.tensor([0.0, 5000 * 0.1 / 11], dtype=torch.float64))
    uv_c = C.project_points(pts, t, focal=5000.0, center=(112.0, 112.0))
    torch.testing.assert_close(uv_c, uv + 112.0)


def _scene(batch: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    joints = torch.randn(batch, 49, 3, generator=g, dtype=torch.float64) * 0.3
    transl = torch.stack(
        [
            torch.rand(batch, generator=g) * 0.4 - 0.2,
            torch.rand(batch, generator=g) * 0.4 - 0.2,
            30 + torch.rand(batch, generator=g) * 20,
        ],
        1,
    ).to(torch.float64)
    uv = C.project_points(joints, transl, 5000.0) + 112.0  # crop pixels
    kp = torch.cat([uv, torch.ones(batch, 49, 1, dtype=torch.float64)], -1)
    return joints.to(dtype), kp.to(dtype), transl


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_estimate_translation_recovers_known_translation(dtype):
    joints, kp, transl = _scene(4, dtype=dtype)
    est, ok = C.estimate_translation(joints, kp)
    assert est.dtype == dtype and ok.all()
    tol = 1e-6 if dtype == torch.float64 else 2e-2
    torch.testing.assert_close(est.double(), transl, atol=tol, rtol=1e-4 if dtype == torch.float32 else 0)


def test_estimate_translation_uses_only_joints_25_to_48_and_confidences():
    joints, kp, transl = _scene(3, seed=1)
    kp[:, :25, :2] += 500.0  # garbage on the OpenPose joints is ignored
    kp[:, 30:40, :2] += 300.0  # garbage on joints with zero confidence is ignored
    kp[:, 30:40, 2] = 0.0
    kp[:, 40, :2] = float("nan")  # NaN keypoints with zero confidence must not poison the solve
    kp[:, 40, 2] = 0.0
    est, ok = C.estimate_translation(joints, kp)
    assert ok.all()
    torch.testing.assert_close(est, transl, atol=1e-6, rtol=0)


def test_estimate_translation_without_confident_joints_is_flagged_not_raised():
    joints, kp, transl = _scene(3, seed=2)
    kp[1, 25:, 2] = 0.0
    kp[2, 26:, 2] = 0.0  # a single confident joint cannot fix three unknowns
    est, ok = C.estimate_translation(joints, kp)
    assert ok.tolist() == [True, False, False]
    assert torch.isfinite(est).all() and (est[1:] == 0).all()
    torch.testing.assert_close(est[0], transl[0], atol=1e-6, rtol=0)
    kp[2, 26, 2] = 0.5  # two confident joints are enough
    est, ok = C.estimate_translation(joints, kp)
    assert ok.tolist() == [True, False, True]
    torch.testing.assert_close(est[2], transl[2], atol=1e-6, rtol=0)


def test_estimate_translation_batch_of_one_and_zero():
    joints, kp, transl = _scene(1, seed=3)
    est, ok = C.estimate_translation(joints, kp)
    assert est.shape == (1, 3) and ok.shape == (1,) and bool(ok[0])
    torch.testing.assert_close(est, transl, atol=1e-6, rtol=0)
    est0, ok0 = C.estimate_translation(joints[:0], kp[:0])
    assert est0.shape == (0, 3) and ok0.shape == (0,)


def test_estimate_translation_weighted_least_squares_matches_numpy_solution():
    # noisy keypoints: compare with an explicit per-sample weighted least-squares solve (sqrt(conf) weights)
    joints, kp, _ = _scene(2, seed=4)
    g = torch.Generator().manual_seed(5)
    kp[..., :2] += torch.randn(2, 49, 2, generator=g, dtype=torch.float64) * 2.0
    kp[..., 2] = torch.rand(2, 49, generator=g, dtype=torch.float64)
    est, _ = C.estimate_translation(joints, kp)
    for b in range(2):
        rows, rhs = [], []
        for j in range(25, 49):
            X, Y, Z = joints[b, j].tolist()
            u, v, c = kp[b, j].tolist()
            w = np.sqrt(c)
            rows += [w * np.array([5000.0, 0.0, -(u - 112.0)]), w * np.array([0.0, 5000.0, -(v - 112.0)])]
            rhs += [w * ((u - 112.0) * Z - 5000.0 * X), w * ((v - 112.0) * Z - 5000.0 * Y)]
        sol = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
        np.testing.assert_allclose(est[b].numpy(), sol, rtol=1e-7, atol=1e-7)


def test_crop_to_image_intrinsics_maps_crop_pixels_to_image_pixels():
    # the demo's crop: side 250 px centred at (100, 140); the crop camera has f = 5000 and its principal point
    # at the crop centre (112, 112), so image pixel = crop pixel * side / 224 + crop corner
    side, centre = 250.0, (100.0, 140.0)
    K_crop = np.array([[5000.0, 0.0, 112.0], [0.0, 5000.0, 112.0], [0.0, 0.0, 1.0]])
    K_image = C.crop_to_image_intrinsics(centre, side)
    for point in (np.array([0.05, -0.02, 20.0]), np.array([-0.3, 0.4, 35.0])):
        crop_px = (K_crop @ point / point[2])[:2]
        image_px = (K_image @ point / point[2])[:2]
        corner = np.array([centre[0] - side / 2, centre[1] - side / 2])
        np.testing.assert_allclose(image_px, crop_px * side / 224 + corner)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_estimate_translation_on_cuda():
    joints, kp, transl = _scene(2, seed=6, dtype=torch.float32)
    est, ok = C.estimate_translation(joints.cuda(), kp.cuda())
    assert est.is_cuda and ok.all()
    torch.testing.assert_close(est.cpu().double(), transl, atol=2e-2, rtol=1e-4)
