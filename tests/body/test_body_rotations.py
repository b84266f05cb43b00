"""Rotation helpers against closed forms (docs/reproduction.md §3.5, §4.3, §6.2.4, §6.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gtacli.body import rotations as R

DTYPES = [torch.float32, torch.float64]


def rot_x(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_z(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def random_rotmats(n: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.linalg.det(q))[:, None, None]
    return q.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rot6d_follows_the_documented_layout(dtype):
    # p = (p0..p5) read row-major as 3x2: a1 = (p0, p2, p4), a2 = (p1, p3, p5); result columns b1, b2, b3
    p = torch.tensor([[2.0, 1.0, 0.0, 1.0, 0.0, 0.0]], dtype=dtype)  # a1 = (2,0,0), a2 = (1,1,0)
    m = R.rot6d_to_rotmat(p)[0]
    expect = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=dtype)
    torch.testing.assert_close(m, expect)
    p = torch.tensor(
        [[0.0, 0.0, 3.0, 0.0, 0.0, 5.0]], dtype=dtype
    )  # a1 = (0,3,0) -> b1 = y; a2 = (0,0,5) -> b2 = z
    m = R.rot6d_to_rotmat(p)[0]
    torch.testing.assert_close(m[:, 0], torch.tensor([0.0, 1, 0], dtype=dtype))
    torch.testing.assert_close(m[:, 1], torch.tensor([0.0, 0, 1], dtype=dtype))
    torch.testing.assert_close(m[:, 2], torch.tensor([1.0, 0, 0], dtype=dtype))  # y x z = x


@pytest.mark.parametrize("dtype", DTYPES)
def test_rot6d_round_trip_and_shapes(dtype):
    mats = random_rotmats(48, dtype).reshape(2, 24, 3, 3)
    six = R.rotmat_to_rot6d(mats)
    assert six.shape == (2, 24, 6)
    torch.testing.assert_close(R.rot6d_to_rotmat(six.reshape(2, 144)), mats, atol=1e-5, rtol=0)
    torch.testing.assert_close(R.rot6d_to_rotmat(six), mats, atol=1e-5, rtol=0)
    # the 6D of R is [R00, R01, R10, R11, R20, R21]
    torch.testing.assert_close(six[0, 0], mats[0, 0, :, :2].reshape(6))
    # any 6-vector gives a proper rotation
    x = torch.randn(5, 144, dtype=dtype)
    m = R.rot6d_to_rotmat(x)
    eye = torch.eye(3, dtype=dtype).expand_as(m)
    torch.testing.assert_close(m.transpose(-1, -2) @ m, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(5, 24, dtype=dtype), atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_axis_angle_to_matrix_closed_forms(dtype):
    aa = torch.tensor([[math.pi / 2, 0, 0], [0, 0, 0.3], [0, 0, 0], [-1.0, 0, 0]], dtype=dtype)
    expect = np.stack([rot_x(math.pi / 2), rot_z(0.3), np.eye(3), rot_x(-1.0)])
    for fn in (R.axis_angle_to_matrix, R.batch_rodrigues):
        torch.testing.assert_close(fn(aa), torch.as_tensor(expect, dtype=dtype), atol=1e-6, rtol=0)
    # 90 degrees about x sends y to z
    m = R.axis_angle_to_matrix(aa[:1])[0]
    torch.testing.assert_close(
        m @ torch.tensor([0.0, 1, 0], dtype=dtype), torch.tensor([0.0, 0, 1], dtype=dtype)
    )


def test_batch_rodrigues_epsilon_like_mmhuman3d():
    # angle = ||aa + 1e-8||: a zero vector gives exactly the identity, and tiny vectors stay finite
    out = R.batch_rodrigues(torch.zeros(3, 3, dtype=torch.float64))
    torch.testing.assert_close(out, torch.eye(3, dtype=torch.float64).expand(3, 3, 3))
    aa = torch.randn(100, 3, dtype=torch.float64)
    torch.testing.assert_close(R.batch_rodrigues(aa), R.axis_angle_to_matrix(aa), atol=1e-7, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_to_axis_angle_round_trip_including_0_and_pi(dtype):
    aa = torch.randn(200, 3, dtype=torch.float64)
    aa = aa / aa.norm(dim=1, keepdim=True) * torch.rand(200, 1, dtype=torch.float64) * (math.pi - 1e-3)
    back = R.matrix_to_axis_angle(R.axis_angle_to_matrix(aa.to(dtype)))
    torch.testing.assert_close(back, aa.to(dtype), atol=2e-4 if dtype == torch.float32 else 1e-9, rtol=0)
    # identity -> 0, and 180 degrees about a unit axis -> pi * axis (up to sign)
    torch.testing.assert_close(
        R.matrix_to_axis_angle(torch.eye(3, dtype=dtype)[None]), torch.zeros(1, 3, dtype=dtype)
    )
    axis = torch.tensor([0.6, 0.0, 0.8], dtype=dtype)
    m = torch.as_tensor(2 * np.outer(axis.double(), axis.double()) - np.eye(3), dtype=dtype)  # rotation by pi
    got = R.matrix_to_axis_angle(m[None])[0]
    assert abs(got.norm().item() - math.pi) < 1e-5
    assert abs(abs(float(got @ axis) / math.pi) - 1.0) < 1e-5
    tiny = torch.tensor([[1e-9, -2e-9, 3e-9]], dtype=torch.float64)
    torch.testing.assert_close(R.matrix_to_axis_angle(R.axis_angle_to_matrix(tiny)), tiny, atol=1e-15, rtol=0)


def test_flip_smpl_pose_numpy_and_torch():
    pose = np.arange(72, dtype=np.float64) + 1.0
    out = R.flip_smpl_pose(pose)
    # joint 1 (left hip) takes joint 2's values with y, z negated; joint 0 stays with y, z negated
    np.testing.assert_array_equal(out[0:3], [1.0, -2.0, -3.0])
    np.testing.assert_array_equal(out[3:6], [7.0, -8.0, -9.0])
    np.testing.assert_array_equal(out[6:9], [4.0, -5.0, -6.0])
    np.testing.assert_array_equal(R.flip_smpl_pose(out), pose)  # involution
    t = R.flip_smpl_pose(torch.as_tensor(pose)[None].repeat(2, 1))
    assert isinstance(t, torch.Tensor) and t.shape == (2, 72)
    np.testing.assert_array_equal(t[1].numpy(), out)


def test_flip_of_rotation_is_mirror_conjugation():
    # negating y, z of an axis-angle = conjugating its matrix by M = diag(-1, 1, 1)
    aa = torch.randn(10, 3, dtype=torch.float64)
    flipped = aa * torch.tensor([1.0, -1, -1], dtype=torch.float64)
    M = torch.diag(torch.tensor([-1.0, 1, 1], dtype=torch.float64))
    torch.testing.assert_close(R.axis_angle_to_matrix(flipped), M @ R.axis_angle_to_matrix(aa) @ M)


def test_rotate_global_orient_matches_rz_negative():
    aa = np.array([[0.3, -0.2, 0.5], [0.0, 0.0, 0.0]])
    rot = np.array([30.0, -45.0])
    out = R.rotate_global_orient(aa, rot)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3)
    for a, r, o in zip(aa, rot, out):
        t = math.radians(r)
        rz_neg = np.array([[math.cos(t), math.sin(t), 0], [-math.sin(t), math.cos(t), 0], [0, 0, 1]])
        expect = rz_neg @ R.axis_angle_to_matrix(torch.as_tensor(a)).numpy()
        np.testing.assert_allclose(R.axis_angle_to_matrix(torch.as_tensor(o)).numpy(), expect, atol=1e-12)
    # identity orientation rotated by r is a rotation of -r about z
    np.testing.assert_allclose(out[1], [0, 0, math.radians(45.0)], atol=1e-12)
    t = R.rotate_global_orient(
        torch.as_tensor(aa, dtype=torch.float32), torch.as_tensor(rot, dtype=torch.float32)
    )
    np.testing.assert_allclose(t.numpy(), out, atol=1e-5)
    np.testing.assert_allclose(R.rot_z_neg(np.float64(90.0)), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_rotations_on_cuda_match_cpu():
    aa = torch.randn(16, 3, dtype=torch.float64)
    for fn in (R.axis_angle_to_matrix, R.batch_rodrigues):
        torch.testing.assert_close(fn(aa.cuda()).cpu(), fn(aa))
    x = torch.randn(2, 144)
    torch.testing.assert_close(R.rot6d_to_rotmat(x.cuda()).cpu(), R.rot6d_to_rotmat(x), atol=1e-6, rtol=0)
    pose = torch.randn(3, 72)
    torch.testing.assert_close(R.flip_smpl_pose(pose.cuda()).cpu(), R.flip_smpl_pose(pose))
    rot = torch.tensor([10.0, -20.0, 0.0])
    torch.testing.assert_close(
        R.rotate_global_orient(pose[:, :3].cuda(), rot.cuda()).cpu(),
        R.rotate_global_orient(pose[:, :3], rot),
        atol=1e-5,
        rtol=0,
    )


def test_numpy_variants_match_closed_forms_including_180_degrees():
    for angle in (0.0, 0.3, -1.2, math.pi):
        np.testing.assert_allclose(R.rot_x(angle), rot_x(angle), atol=1e-15)
        np.testing.assert_allclose(R.rot_z(angle), rot_z(angle), atol=1e-15)
        c, s = math.cos(angle), math.sin(angle)
        np.testing.assert_allclose(R.rot_y(angle), [[c, 0, s], [0, 1, 0], [-s, 0, c]], atol=1e-15)
    aa = np.array([[math.pi / 2, 0, 0], [0, 0, 0.3], [0, 0, 0], [-1.0, 0, 0]])
    mats = R.axis_angle_to_matrix_np(aa)
    assert mats.dtype == np.float64
    np.testing.assert_allclose(
        mats, np.stack([rot_x(math.pi / 2), rot_z(0.3), np.eye(3), rot_x(-1.0)]), atol=1e-12
    )
    np.testing.assert_allclose(
        R.matrix_to_axis_angle_np(mats),
        [[math.pi / 2, 0, 0], [0, 0, 0.3], [0, 0, 0], [-1.0, 0, 0]],
        atol=1e-12,
    )
    half_turn = R.matrix_to_axis_angle_np(rot_x(math.pi))  # the mean pose's root: 180 degrees about x
    np.testing.assert_allclose(np.abs(half_turn), [math.pi, 0, 0], atol=1e-9)
    six = R.rotmat_to_rot6d_np(rot_z(0.3))
    np.testing.assert_allclose(six, rot_z(0.3)[:, :2].reshape(6), atol=1e-15)


def test_rot6d_to_rotmat_np_matches_the_demo_smoothers_former_numpy_copy():
    """The demo's smoother had its own numpy Gram-Schmidt; the shared one (torch maths) gives the same matrices."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 24, 6))
    m = x.reshape(500, 24, 3, 2)
    a1, a2 = m[..., 0], m[..., 1]
    b1 = a1 / np.maximum(np.linalg.norm(a1, axis=-1, keepdims=True), 1e-12)
    a2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 = a2 / np.maximum(np.linalg.norm(a2, axis=-1, keepdims=True), 1e-12)
    old = np.stack([b1, b2, np.cross(b1, b2)], axis=-1)
    new = R.rot6d_to_rotmat_np(x)
    assert new.dtype == np.float64
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-15)
    old_6d = old[..., :, :2].reshape(500, 24, 6)
    assert np.array_equal(R.rotmat_to_rot6d_np(old), old_6d)


def test_axis_angle_from_rotmat_is_the_bare_conversion_on_finite_input():
    """The demo used the bare matrix_to_axis_angle; the shared NaN-safe one only differs where the input is NaN."""
    rot = R.axis_angle_to_matrix(torch.randn(6, 24, 3, dtype=torch.float64))
    assert torch.equal(R.axis_angle_from_rotmat(rot), R.matrix_to_axis_angle(rot).reshape(6, 72))
    rot[1, 3] = float("nan")
    out = R.axis_angle_from_rotmat(rot)
    assert torch.isfinite(out).all() and torch.equal(out[1, 9:12], torch.zeros(3, dtype=torch.float64))
    assert R.axis_angle_from_rotmat(rot[:0]).shape == (0, 72)  # a frame without people
