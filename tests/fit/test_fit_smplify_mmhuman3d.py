"""SMPLify: the keypoint term by hand, the fast joint path against the full SMPL forward, and a fit that
recovers a known synthetic body from its projected keypoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gtacli.errors import MissingFileError
from gtacli.fit.config import RegistrationConfig
from gtacli.fit.joints import SparseJointModel, rodrigues
from gtacli.fit.losses import keypoint_term, keypoint_weights
from gtacli.fit.optim import relative_change
from gtacli.fit.priors import load_gmm
from gtacli.fit.smplify_mmhuman3d import MMHuman3dSMPLify

IGNORED = [1, 9, 12, 27, 28]  # docs/reproduction.md §3.6, typed independently


def _gmof_sq(r: float, sigma: float = 100.0) -> float:
    """gmof applied to the squared residual, as docs/reproduction.md §7.1 step 5 writes it."""
    x = r * r
    return sigma**2 * x**2 / (sigma**2 + x**2)


def test_keypoint_term_hand_case():
    joints = torch.zeros(1, 49, 3, dtype=torch.float64)
    joints[..., 2] = 10.0
    f64 = {"dtype": torch.float64}
    joints[0, 25] = torch.tensor([0.1, -0.2, 50.0], **f64)
    joints[0, 27] = torch.tensor([1.0, 1.0, 10.0], **f64)  # ignored joint, huge residual
    kp = torch.zeros(1, 49, 3, dtype=torch.float64)
    kp[0, 25] = torch.tensor([120.0, 95.0, 0.5], **f64)
    kp[0, 27] = torch.tensor([0.0, 0.0, 1.0], **f64)
    weights = keypoint_weights(IGNORED, dtype=torch.float64)
    assert weights.sum().item() == 44 and weights[IGNORED].sum().item() == 0
    # projection: 5000·0.1/50 + 112 = 122, 5000·(−0.2)/50 + 112 = 92; normalised by 2/223 (the −1s cancel)
    p_hat = (2 * 122 / 223 - 1, 2 * 92 / 223 - 1)
    k_hat = (2 * 120 / 223 - 1, 2 * 95 / 223 - 1)
    expected = 0.5 * (_gmof_sq(p_hat[0] - k_hat[0]) + _gmof_sq(p_hat[1] - k_hat[1]))
    got = keypoint_term(joints, kp, weights, 5000.0, 224, 100.0)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # a residual of a whole crop saturates: gmof(r², 100) with r² = 4 -> 1e4·16/(1e4+16)
    kp[0, 25, :2] = torch.tensor([122.0 + 223.0, 92.0], **f64)
    assert keypoint_term(joints, kp, weights, 5000.0, 224, 100.0).item() == pytest.approx(
        0.5 * _gmof_sq(2.0), rel=1e-12
    )


def test_relative_change_hand_cases():
    assert relative_change(10.0, 9.0) == pytest.approx(0.1)
    assert relative_change(0.5, 0.25) == pytest.approx(0.25)  # both < 1: absolute change
    assert relative_change(-4.0, -2.0) == pytest.approx(0.5)


def test_sparse_joints_equal_full_forward(body_model64):
    sparse = SparseJointModel(body_model64)
    assert sparse.num_subset < body_model64.num_vertices // 10  # only the vertices the 49 joints read
    gen = torch.Generator().manual_seed(0)
    pose = torch.randn(3, 72, generator=gen, dtype=torch.float64) * 0.5
    betas = torch.randn(3, 10, generator=gen, dtype=torch.float64)
    full = body_model64(betas, pose[:, 3:], pose[:, :3], pose2rot=True)
    rot = rodrigues(pose.reshape(-1, 3)).reshape(3, 24, 3, 3)
    torch.testing.assert_close(sparse.joints54(betas, rot), full.joints54, rtol=0, atol=1e-10)
    torch.testing.assert_close(sparse.joints49(betas, rot), full.joints, rtol=0, atol=1e-10)


def _problem(body_model, gmm_path, batch: int, dtype=torch.float32, seed: int = 0):
    """Truth: GMM component means (plausible poses), small betas, facing the camera 40–55 m away (f = 5000)."""
    gen = torch.Generator().manual_seed(seed)
    means = load_gmm(gmm_path)["means"]
    pose = torch.zeros(batch, 72, dtype=dtype)
    pose[:, 0] = math.pi
    pose[:, 3:] = torch.as_tensor(means[:batch], dtype=dtype)
    betas = torch.zeros(batch, 10, dtype=dtype)
    betas[:, :2] = 0.3 * torch.randn(batch, 2, generator=gen, dtype=dtype)
    transl = torch.tensor([[0.1, 0.2, 40.0], [0.0, -0.1, 50.0], [-0.1, 0.1, 45.0]], dtype=dtype)[:batch]
    with torch.no_grad():
        joints = body_model(betas, pose[:, 3:], pose[:, :3]).joints
    cam = joints + transl[:, None]
    uv = 5000.0 * cam[..., :2] / cam[..., 2:] + 112.0
    kp = torch.cat([uv, torch.ones(batch, 49, 1, dtype=dtype)], dim=-1)
    init_pose = pose + 0.1 * torch.randn(batch, 72, generator=gen, dtype=dtype)
    init_transl = transl + torch.tensor([0.02, -0.02, 3.0], dtype=dtype)
    return {"pose": pose, "betas": betas, "transl": transl, "joints": joints, "kp": kp,
            "init_pose": init_pose, "init_betas": torch.zeros(batch, 10, dtype=dtype), "init_transl": init_transl}  # fmt: skip


def test_fast_path_gives_the_same_fit(body_model64, gmm_path):
    p = _problem(body_model64, gmm_path, 2, torch.float64)
    args = (p["init_pose"], p["init_betas"], p["init_transl"], p["kp"])
    fast = MMHuman3dSMPLify(
        body_model64, gmm_path, RegistrationConfig(num_iters=4, ftol=0.0, fast_joints=True)
    ).fit(*args)
    slow = MMHuman3dSMPLify(
        body_model64, gmm_path, RegistrationConfig(num_iters=4, ftol=0.0, fast_joints=False)
    ).fit(*args)
    for key in ("pose", "betas", "transl", "loss", "joints"):
        torch.testing.assert_close(getattr(fast, key), getattr(slow, key), rtol=1e-7, atol=1e-7)
    assert [s.iterations for s in fast.stages] == [4, 4]


def test_fit_lowers_the_loss_and_recovers_the_body(body_model, gmm_path):
    p = _problem(body_model, gmm_path, 3)
    smplify = MMHuman3dSMPLify(body_model, gmm_path, RegistrationConfig())
    init_loss = smplify.total_loss(p["init_pose"], p["init_betas"], p["init_transl"], p["kp"])
    result = smplify.fit(p["init_pose"], p["init_betas"], p["init_transl"], p["kp"])
    assert (result.loss < init_loss).all()
    # the returned loss is the objective at the returned parameters
    torch.testing.assert_close(
        result.loss,
        smplify.total_loss(result.pose, result.betas, result.transl, p["kp"]),
        rtol=1e-5,
        atol=1e-3,
    )
    # 2D: the fitted joints land near the keypoints (crop pixels)
    cam = result.joints
    uv = 5000.0 * cam[..., :2] / cam[..., 2:] + 112.0
    err_px = (uv - p["kp"][..., :2]).norm(dim=-1).mean(dim=1)
    assert (err_px < 10.0).all(), err_px

    # 3D: root-relative joints much closer to the truth than the initial guess (mm)
    def rel(j):
        return j[:, 25:] - j[:, 39:40]  # smpl_24 joints relative to pelvis_extra

    fitted = result.joints - result.transl[:, None]
    start = body_model(p["init_betas"], p["init_pose"][:, 3:], p["init_pose"][:, :3]).joints
    err_fit = (rel(fitted) - rel(p["joints"])).norm(dim=-1).mean(dim=1) * 1000
    err_init = (rel(start) - rel(p["joints"])).norm(dim=-1).mean(dim=1) * 1000
    assert (err_fit < 0.75 * err_init).all(), (err_fit, err_init)
    assert (err_fit < 80.0).all(), err_fit


def test_early_stop_and_batch_of_one(body_model, gmm_path):
    p = _problem(body_model, gmm_path, 1)
    smplify = MMHuman3dSMPLify(body_model, gmm_path, RegistrationConfig(num_iters=30))
    first = smplify.fit(p["init_pose"], p["init_betas"], p["init_transl"], p["kp"])
    assert first.pose.shape == (1, 72) and first.vertices.shape == (1, 6890, 3)
    # restarting at the converged translation: stage 1 has nothing left to do and stops at once
    again = smplify.fit(first.pose, first.betas, first.transl, p["kp"])
    assert again.stages[0].stopped_early and again.stages[0].iterations <= 3
    no_stop = MMHuman3dSMPLify(body_model, gmm_path, RegistrationConfig(num_iters=3, ftol=0.0)).fit(
        first.pose, first.betas, first.transl, p["kp"]
    )
    assert [s.iterations for s in no_stop.stages] == [3, 3]


def test_missing_gmm_is_one_line_error(body_model, tmp_path):
    with pytest.raises(MissingFileError, match="gmm"):
        MMHuman3dSMPLify(body_model, tmp_path / "gmm_08.pkl", RegistrationConfig())


@pytest.mark.parametrize("method", ["mmhuman3d", "spin", "gtacli"])
def test_runs_on_cuda_when_present(fit_layout, gmm_path, method):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from gtacli.body.smpl import BodyModel
    from gtacli.fit.methods import build_fitter

    bm = BodyModel.from_layout(fit_layout, "neutral", h36m=False, device="cuda")
    p = _problem(bm, gmm_path, 2)
    cuda = {k: v.cuda() for k, v in p.items()}
    config = RegistrationConfig(method=method, num_iters=5, spin_num_iters=5, one_stage_iters=5)
    result = build_fitter(bm, gmm_path, config).fit(
        cuda["init_pose"], cuda["init_betas"], cuda["init_transl"], cuda["kp"]
    )
    assert result.pose.device.type == "cuda"
    np.testing.assert_array_less(result.loss.cpu().numpy(), 1e9)
