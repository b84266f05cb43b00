"""The six losses of docs/reproduction.md §6.2 on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from gtacli.fit.registration import RegistrationTargets
from gtacli.train.losses import (
    LossConfig,
    camera_loss,
    compute_losses,
    keypoints2d_loss,
    keypoints3d_loss,
    smpl_betas_loss,
    smpl_pose_loss,
    vertex_loss,
)

W = LossConfig()  # recipe defaults: 100/10/2/3/0.02/60, scale 10, focal 5000, res 224


def test_default_weights_are_the_published_numbers_and_the_recipe_numbers():
    from gtacli.train.recipe import get_recipe

    assert (W.keypoints3d, W.keypoints2d, W.vertex, W.smpl_pose, W.smpl_betas, W.camera) == (
        100,
        10,
        2,
        3,
        0.02,
        60,
    )
    assert W.camera_prior_scale == 10 and W.pelvis_joints == (27, 28)
    assert get_recipe("gta-spin-ft").losses == W and get_recipe("spin").losses == W


def test_keypoints3d_smooth_l1_normalised_by_confident_entries():
    gt = torch.zeros(1, 49, 4)
    gt[0, [0, 27, 28], 3] = 1.0  # three confident joints -> 9 confident entries
    pred = torch.zeros(1, 49, 3)
    pred[0, 0, 0] = 0.5  # quadratic zone: 0.5 * 0.5^2 = 0.125
    pred[0, 0, 1] = 2.0  # linear zone: 2 - 0.5 = 1.5
    expected = 100 * (0.125 + 1.5) / 9
    assert float(keypoints3d_loss(pred, gt)) == pytest.approx(expected, rel=1e-6)
    # unconfident joints do not count, whatever their error
    pred[0, 5] = 10.0
    assert float(keypoints3d_loss(pred, gt)) == pytest.approx(expected, rel=1e-6)


def test_keypoints3d_centres_both_on_the_hip_midpoint():
    gt = torch.zeros(2, 49, 4)
    gt[..., 3] = 1.0
    gt[:, :, :3] = torch.randn(2, 49, 3)
    pred = gt[..., :3].clone() + torch.tensor([0.3, -1.0, 2.0])  # same pose, translated
    assert float(keypoints3d_loss(pred, gt)) == pytest.approx(0.0, abs=1e-6)
    # hips with zero confidence still define the pelvis (docs/reproduction.md §6.2.1)
    gt[:, [27, 28], 3] = 0.0
    assert float(keypoints3d_loss(pred, gt)) == pytest.approx(0.0, abs=1e-6)


def test_keypoints3d_without_confident_entries_is_zero_and_in_the_graph():
    pred = torch.randn(2, 49, 3, requires_grad=True)
    loss = keypoints3d_loss(pred, torch.zeros(2, 49, 4))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert pred.grad is not None


def test_keypoints2d_projection_and_normalisation_constants():
    pred = torch.zeros(1, 49, 3)
    pred[0, 0] = torch.tensor([0.1, -0.05, 0.0])
    cam = torch.tensor([[1.0, 0.0, 0.0]])  # s = 1: t_z = 2*5000/224
    tz = 2 * 5000 / 224
    u, v = 5000 * 0.1 / tz, 5000 * -0.05 / tz  # pixel offsets from the crop centre
    pred_n = (u / 111.5, v / 111.5)
    gt = torch.zeros(1, 49, 3)
    gt[0, 0] = torch.tensor([150.0, 80.0, 1.0])
    gt_n = (2 * 150.0 / 223 - 1, 2 * 80.0 / 223 - 1)

    def sl1(d):
        return 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5

    expected = 10 * (sl1(pred_n[0] - gt_n[0]) + sl1(pred_n[1] - gt_n[1])) / 2
    assert float(keypoints2d_loss(pred, cam, gt)) == pytest.approx(expected, rel=1e-5)


def test_keypoints2d_uses_the_confidence_as_a_weight():
    pred = torch.zeros(1, 49, 3)
    cam = torch.tensor([[1.0, 0.0, 0.0]])
    gt = torch.zeros(1, 49, 3)
    gt[0, 0] = torch.tensor([223.0, 111.5, 0.5])  # normalised (1, 0): x error 1 -> smoothl1 0.5
    expected = 10 * 0.5 * 0.5 / 2  # weight 0.5 on the x entry; 2 confident entries
    assert float(keypoints2d_loss(pred, cam, gt)) == pytest.approx(expected, rel=1e-5)


def test_vertex_l1_over_valid_samples():
    pred = torch.zeros(2, 6890, 3)
    target = torch.zeros(2, 6890, 3)
    target[0] = 0.1
    target[1] = 5.0  # invalid sample: ignored
    valid = torch.tensor([True, False])
    assert float(vertex_loss(pred, target, valid)) == pytest.approx(2 * 0.1, rel=1e-5)
    assert float(vertex_loss(pred, target, torch.tensor([False, False]))) == 0.0


def test_pose_loss_rotation_matrix_mse_over_valid_samples():
    pred = torch.eye(3).expand(2, 24, 3, 3).clone()
    opt_pose = torch.zeros(2, 72)
    opt_pose[0, 2] = math.pi / 2  # global orient: 90 deg about z -> R - I has four entries of magnitude 1
    opt_pose[1, 5] = 3.0  # invalid sample
    valid = torch.tensor([True, False])
    assert float(smpl_pose_loss(pred, opt_pose, valid)) == pytest.approx(3 * 4 / 216, rel=1e-5)
    assert float(smpl_pose_loss(pred, opt_pose, torch.tensor([False, False]))) == 0.0
    # mean over valid samples, not over the batch
    both = torch.tensor([True, True])
    opt_pose[1] = 0.0
    assert float(smpl_pose_loss(pred, opt_pose, both)) == pytest.approx(3 * 4 / 216 / 2, rel=1e-5)


def test_betas_loss():
    pred = torch.zeros(3, 10)
    opt = torch.ones(3, 10)
    opt[2] = 7.0
    valid = torch.tensor([True, True, False])
    assert float(smpl_betas_loss(pred, opt, valid)) == pytest.approx(0.02, rel=1e-6)


def test_camera_prior():
    cam = torch.tensor([[0.0, 1.0, 1.0], [0.1, 0.0, 0.0]])
    expected = (60 * 1.0 + 60 * math.exp(-1.0) ** 2) / 2
    assert float(camera_loss(cam)) == pytest.approx(expected, rel=1e-6)


def test_total_is_the_plain_sum_and_gradients_flow():
    torch.manual_seed(0)
    batch = 2
    pose = torch.eye(3).expand(batch, 24, 3, 3).clone().requires_grad_(True)
    shape = torch.zeros(batch, 10, requires_grad=True)
    cam = torch.tensor([[0.9, 0.0, 0.0]] * batch, requires_grad=True)
    joints = torch.randn(batch, 49, 3, requires_grad=True)
    verts = torch.randn(batch, 6890, 3, requires_grad=True)
    kp2d = torch.rand(batch, 49, 3) * torch.tensor([224.0, 224.0, 1.0])
    kp3d = torch.randn(batch, 49, 4)
    kp3d[..., 3] = 1.0
    targets = RegistrationTargets(  # what the losses read; the rest as the registrant fills it
        valid_fit=torch.tensor([True, False]),
        opt_pose=torch.zeros(batch, 72),
        opt_betas=torch.ones(batch, 10),
        opt_vertices=torch.zeros(batch, 6890, 3),
        opt_joints=torch.zeros(batch, 49, 3),
        opt_cam_t=torch.zeros(batch, 3),
        opt_joint_loss=torch.zeros(batch),
        gt_vertices=torch.zeros(batch, 6890, 3),
        fits_updated=torch.zeros(batch, dtype=torch.bool),
        cam_t_fallback=torch.zeros(batch, dtype=torch.bool),
    )
    pred = {"pred_pose": pose, "pred_shape": shape, "pred_cam": cam}
    losses = compute_losses(pred, joints, verts, {"keypoints2d": kp2d, "keypoints3d": kp3d}, targets)
    parts = [k for k in losses if k != "loss"]
    assert len(parts) == 6
    total = float(losses["loss"].detach())
    assert total == pytest.approx(sum(float(losses[k].detach()) for k in parts), rel=1e-6)
    losses["loss"].backward()
    for t in (shape, cam, joints, verts):
        assert t.grad is not None and torch.isfinite(t.grad).all()


def test_nan_keypoints_with_zero_confidence_carry_no_weight():
    """A zero-confidence GT keypoint holding NaN (regenerated files) must not make the loss or its gradient
    NaN: the value equals the loss with any finite number there (hips included, which also enter the pelvis
    and then count as 0)."""
    gen = torch.Generator().manual_seed(3)
    pred = torch.randn(2, 49, 3, generator=gen, dtype=torch.float64)
    pred[..., 2] += 5.0
    gt3 = torch.randn(2, 49, 4, generator=gen, dtype=torch.float64)
    gt3[..., 3] = 1.0
    gt3[0, 5, 3] = 0.0
    gt3[1, 27, 3] = 0.0  # a hip
    gt3[1, 27, :3] = 0.0
    gt2 = torch.rand(2, 49, 3, generator=gen, dtype=torch.float64) * 224
    gt2[..., 2] = 1.0
    gt2[1, 3, 2] = 0.0
    cam = torch.tensor([[0.9, 0.0, 0.1], [1.1, 0.05, 0.0]], dtype=torch.float64)
    ref3 = float(keypoints3d_loss(pred, gt3))
    ref2 = float(keypoints2d_loss(pred, cam, gt2))
    bad3, bad2 = gt3.clone(), gt2.clone()
    bad3[0, 5, :3] = float("nan")
    bad3[1, 27, :3] = float("nan")
    bad2[1, 3, :2] = float("inf")
    p = pred.clone().requires_grad_(True)
    loss3 = keypoints3d_loss(p, bad3)
    loss2 = keypoints2d_loss(p, cam, bad2)
    assert float(loss3.detach()) == pytest.approx(ref3, rel=1e-12)
    assert float(loss2.detach()) == pytest.approx(ref2, rel=1e-12)
    (loss3 + loss2).backward()
    assert torch.isfinite(p.grad).all()
