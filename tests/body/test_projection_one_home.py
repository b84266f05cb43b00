"""`body/camera.project_points` is the one perspective projection; each caller's former formula is kept here,
inline, and the shared function must give the same numbers (bit for bit where the operations are the same)."""

from __future__ import annotations

import numpy as np
import torch

from gtacli.body.camera import project_points


def _points(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 0.5, (n, 2)), rng.uniform(1.0, 40.0, (n, 1))], 1)


def _K(fx=1158.0337, fy=1158.0337, cx=959.5, cy=539.5) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def test_fit_losses_formula_bit_identical():
    # fit/losses.py before: f * X / Z + img_res / 2 (crop pixels, principal point at the crop centre)
    for dtype in (torch.float32, torch.float64):
        j = torch.as_tensor(_points(), dtype=dtype).reshape(4, 50, 3)
        old = 5000.0 * j[..., :2] / j[..., 2:3] + 224 / 2.0
        assert torch.equal(project_points(j, focal=5000.0, center=224 / 2.0), old)


def test_translation_then_projection_as_spin_camera_loss():
    # fit/smplify_spin.py before: project(joints + transl[:, None, :], f, res)
    j = torch.as_tensor(_points(), dtype=torch.float32).reshape(4, 50, 3)
    t = torch.tensor([[0.1, -0.2, 30.0], [0.0, 0.0, 5.0], [0.3, 0.1, 12.0], [-0.1, 0.2, 50.0]])
    p = j + t[:, None, :]
    old = 5000.0 * p[..., :2] / p[..., 2:3] + 224 / 2.0
    assert torch.equal(project_points(j, t, 5000.0, 224 / 2.0), old)


def test_raster_formula_bit_identical_including_unequal_focals():
    # render/raster.py before: u = K00 X/Z + K01 Y/Z + K02, v = K11 Y/Z + K12 (K01 = 0 in every camera)
    v = torch.as_tensor(_points())
    K = torch.as_tensor(_K(fx=900.0, fy=1100.0))
    z = v[:, 2]
    old = torch.stack(
        [K[0, 0] * v[:, 0] / z + K[0, 1] * v[:, 1] / z + K[0, 2], K[1, 1] * v[:, 1] / z + K[1, 2]], 1
    )
    assert torch.equal(project_points(v, K=K), old)


def test_pinhole_matrix_forms_agree_to_rounding():
    # demo (project_pinhole: einsum K.X / Z per person) and sample/scenes.py (points @ K.T / w) before
    pts = _points().reshape(4, 50, 3)
    Ks = np.stack([_K(), _K(2000.0, 2000.0, 100.0, 80.0), _K(5000.0 * 1.3, 5000.0 * 1.3, 10.0, 20.0), _K()])
    uvw = np.einsum("pij,pkj->pki", Ks, pts)
    old_demo = uvw[..., :2] / uvw[..., 2:3]
    new_demo = project_points(pts, K=Ks)
    np.testing.assert_allclose(new_demo, old_demo, rtol=1e-13, atol=1e-9)
    uvw = pts[0] @ _K().T
    np.testing.assert_allclose(project_points(pts[0], K=_K()), uvw[..., :2] / uvw[..., 2:3], rtol=1e-13)
    # the demo stores float32: the rounding difference does not reach the stored numbers here
    assert np.array_equal(new_demo.astype(np.float32), old_demo.astype(np.float32))


def test_numpy_and_torch_give_the_same_numbers():
    pts = _points().reshape(4, 50, 3)
    t = np.array([[0.0, 0.1, 3.0]] * 4)
    a = project_points(pts, t, 5000.0, center=np.array([[112.0, 100.0]] * 4))
    b = project_points(torch.as_tensor(pts), torch.as_tensor(t), 5000.0, center=[[112.0, 100.0]] * 4)
    assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
    assert np.array_equal(a, b.numpy())


def test_train_losses_camera_translation_is_body_cameras():
    # train/losses.py had its own copy of cam_to_translation: the shared one gives the same bits
    from gtacli.body.camera import cam_to_translation

    cam = torch.tensor([[0.9, 0.1, -0.2], [1.3, -0.05, 0.3], [1e-6, 0.0, 0.0]])
    old = torch.stack([cam[:, 1], cam[:, 2], 2.0 * 5000.0 / (224 * cam[:, 0] + 1e-9)], dim=-1)
    assert torch.equal(cam_to_translation(cam, 5000.0, 224), old)
