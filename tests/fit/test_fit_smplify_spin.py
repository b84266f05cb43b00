"""SPIN's SMPLify formulation: each stage's loss on a fixed input against SPIN smplify/losses.py written out
here, the torso rule, the fitting loss and threshold, a fit, and the registrant with method 'spin'."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gtacli.fit.config import RegistrationConfig
from gtacli.fit.methods import build_fitter
from gtacli.fit.registration import Registrant
from gtacli.fit.smplify_spin import SpinSMPLify

# smpl_49 indices, typed from SPIN constants.JOINT_NAMES: OP RShoulder 2, OP LShoulder 5, OP RHip 9, OP LHip 12,
# Right Hip 27, Left Hip 28, Right Shoulder 33, Left Shoulder 34; ignored: OP Neck 1, OP RHip, OP LHip, hips
OP_TORSO = [9, 12, 2, 5]
GT_TORSO = [27, 28, 33, 34]
IGNORED = [1, 9, 12, 27, 28]
F, C = 5000.0, 112.0


def _gmof(x: float, sigma: float = 100.0) -> float:
    return sigma**2 * x**2 / (sigma**2 + x**2)


def _fixed_input():
    gen = torch.Generator().manual_seed(3)
    joints = 0.4 * torch.rand(2, 49, 3, generator=gen, dtype=torch.float64) - 0.2
    transl = torch.tensor([[0.05, -0.1, 42.0], [0.0, 0.2, 50.0]], dtype=torch.float64)
    init_t = torch.tensor([[0.0, 0.0, 41.5], [0.0, 0.0, 50.0]], dtype=torch.float64)
    kp = torch.rand(2, 49, 3, generator=gen, dtype=torch.float64)
    kp[..., :2] *= 224
    kp[1, 5, 2] = 0.0  # sample 1: one OpenPose torso joint missing -> the GT torso is used
    kp[0, 40, 2] = 0.0
    kp[0, 40, :2] = float("nan")  # unused, must not poison anything
    return joints, transl, init_t, kp


def _proj(joints, transl, i, j):
    x, y, z = (joints[i, j] + transl[i]).tolist()
    return F * x / z + C, F * y / z + C


def test_camera_stage_loss_is_spins_formula(body_model64, gmm_path):
    spin = SpinSMPLify(body_model64, gmm_path, RegistrationConfig(method="spin"))
    joints, transl, init_t, kp = _fixed_input()
    use_op = torch.tensor([True, False])
    got = spin.camera_loss(joints, transl, init_t, kp, use_op)
    expected = []
    for i, torso in ((0, OP_TORSO), (1, GT_TORSO)):
        total = 0.0
        for j in torso:  # squared pixel error, no confidence, no robust function
            u, v = _proj(joints, transl, i, j)
            total += (kp[i, j, 0].item() - u) ** 2 + (kp[i, j, 1].item() - v) ** 2
        total += 100.0**2 * (transl[i, 2].item() - init_t[i, 2].item()) ** 2
        expected.append(total)
    assert got.tolist() == pytest.approx(expected, rel=1e-12)


def test_body_stage_loss_and_fitting_loss_are_spins_formulas(body_model64, gmm_path):
    spin = SpinSMPLify(body_model64, gmm_path, RegistrationConfig(method="spin"))
    joints, transl, _, kp = _fixed_input()
    gen = torch.Generator().manual_seed(5)
    body_pose = 0.2 * torch.randn(2, 69, generator=gen, dtype=torch.float64)
    betas = torch.randn(2, 10, generator=gen, dtype=torch.float64)
    got = spin.objective(joints, transl, kp, body_pose, betas)
    gmm = spin.pose_prior(body_pose)  # checked against its own formula in test_fit_priors
    for i in range(2):
        reproj = []
        for j in range(49):
            conf = 0.0 if j in IGNORED else kp[i, j, 2].item()
            if conf == 0.0:
                reproj.append(0.0)
                continue
            u, v = _proj(joints, transl, i, j)
            reproj.append(conf**2 * (_gmof(u - kp[i, j, 0].item()) + _gmof(v - kp[i, j, 1].item())))
        angle = sum(
            math.exp(s * body_pose[i, k].item()) ** 2 for k, s in zip((52, 55, 9, 12), (1, -1, -1, -1))
        )
        expected = (
            sum(reproj) + 4.78**2 * gmm[i].item() + 15.2**2 * angle + 5.0**2 * (betas[i] ** 2).sum().item()
        )
        assert got[i].item() == pytest.approx(expected, rel=1e-10)
        # the fitting loss that decides acceptance: mean over the 49 joints of the reprojection term
        assert spin.criterion(joints + transl[:, None], torch.zeros_like(transl), kp)[
            i
        ].item() == pytest.approx(sum(reproj) / 49, rel=1e-10)


def _problem(body_model, batch=3, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    pose = 0.15 * torch.randn(batch, 72, generator=gen, dtype=dtype)
    pose[:, 0] += math.pi
    betas = 0.3 * torch.randn(batch, 10, generator=gen, dtype=dtype)
    transl = torch.tensor([[0.1, 0.2, 40.0], [0.0, -0.1, 50.0], [-0.1, 0.1, 45.0]], dtype=dtype)[:batch]
    with torch.no_grad():
        joints = body_model(betas, pose[:, 3:], pose[:, :3]).joints
    cam = joints + transl[:, None]
    kp = torch.cat([F * cam[..., :2] / cam[..., 2:] + C, torch.ones(batch, 49, 1, dtype=dtype)], dim=-1)
    init_pose = pose + 0.1 * torch.randn(batch, 72, generator=gen, dtype=dtype)
    return pose, betas, transl, joints, kp, init_pose


@pytest.mark.parametrize("method", ["spin", "gtacli"])
def test_fit_recovers_a_known_body(body_model, gmm_path, method):
    pose, betas, transl, joints, kp, init_pose = _problem(body_model)
    config = RegistrationConfig(method=method, spin_num_iters=40, one_stage_iters=40)
    fitter = build_fitter(body_model, gmm_path, config)
    init_t = transl + torch.tensor([0.02, -0.02, 1.0])
    before = fitter.total_loss(init_pose, torch.zeros_like(betas), init_t, kp)
    result = fitter.fit(init_pose, torch.zeros_like(betas), init_t, kp)
    assert (result.loss < before).all()
    torch.testing.assert_close(
        result.loss,
        fitter.total_loss(result.pose, result.betas, result.transl, kp),
        rtol=1e-5,
        atol=1e-2,
    )
    assert (result.keypoint_loss < config.spin_threshold).all()  # valid by SPIN's rule
    stages = [s.iterations for s in result.stages]
    assert stages == ([40, 40] if method == "spin" else stages) and len(stages) == (
        2 if method == "spin" else 1
    )
    uv = F * result.joints[..., :2] / result.joints[..., 2:] + C
    assert ((uv - kp[..., :2]).norm(dim=-1).mean(dim=1) < 6.0).all()


def test_spin_stage_one_keeps_translation_near_its_depth(body_model, gmm_path):
    """Stage 1 only moves depth against 100²·Δz²: with nothing to gain, depth stays where it started."""
    pose, betas, transl, _, kp, _ = _problem(body_model, 2)
    spin = SpinSMPLify(body_model, gmm_path, RegistrationConfig(method="spin", spin_num_iters=5))
    result = spin.fit(pose, betas, transl, kp)
    np.testing.assert_allclose(result.transl[:, 2].numpy(), transl[:, 2].numpy(), atol=0.05)


def test_registration_config_defaults_are_mmhuman3ds_registrant():
    c = RegistrationConfig()
    assert (c.method, c.mode, c.num_iters, c.lr, c.adam_betas, c.ftol) == (
        "mmhuman3d",
        "static",
        50,
        1e-2,
        (0.9, 0.999),
        1e-4,
    )
    assert (c.threshold, c.max_abs_beta, c.focal_length, c.img_res) == (10.0, 3.0, 5000.0, 224)
    assert c.shape_prior_weight == pytest.approx(25.0) and c.joint_prior_weight == pytest.approx(231.04)
    assert c.pose_prior_weight == pytest.approx(22.8484) and tuple(c.ignore_keypoints) == tuple(IGNORED)
    assert (c.spin_num_iters, c.spin_threshold, c.spin_depth_loss_weight) == (100, 100.0, 100.0)
    assert c.acceptance_threshold == 10.0 and RegistrationConfig(method="spin").acceptance_threshold == 100.0
    with pytest.raises(ValueError, match="method"):
        RegistrationConfig(method="other")


def test_registrant_with_spin_method_judges_by_spins_fitting_loss(body_model):
    """method='spin': opt_joint_loss is SPIN's fitting loss at the estimated camera, valid below 100."""
    from gtacli.fit.fits_store import FitsStore

    pose, betas, transl, joints, kp, _ = _problem(body_model, 2)
    rows = np.concatenate([pose.double().numpy(), betas.double().numpy()], axis=1)
    store = FitsStore({"lsp": rows})
    kp[1, 25:, :2] += 30.0  # sample 1: keypoints 30 px off in x and y -> SPIN's loss far above 100
    batch = {
        "keypoints2d": kp,
        "has_smpl": torch.zeros(2),
        "smpl_body_pose": torch.zeros(2, 23, 3),
        "smpl_global_orient": torch.zeros(2, 3),
        "smpl_betas": torch.zeros(2, 10),
        "rotation": torch.zeros(2),
        "is_flipped": torch.zeros(2, dtype=torch.long),
        "sample_idx": torch.tensor([0, 1]),
        "dataset_name": ["lsp", "lsp"],
    }
    out = Registrant(body_model, store, RegistrationConfig(method="spin"))(None, batch)
    spin_loss = []
    for i in range(2):
        total = 0.0
        for j in range(49):
            if j in IGNORED:
                continue
            u, v = _proj(out.opt_joints.double(), out.opt_cam_t.double(), i, j)
            total += kp[i, j, 2].item() ** 2 * (_gmof(u - kp[i, j, 0].item()) + _gmof(v - kp[i, j, 1].item()))
        spin_loss.append(total / 49)
    assert out.opt_joint_loss.tolist() == pytest.approx(spin_loss, rel=1e-4, abs=1e-4)
    assert spin_loss[0] < 100 < spin_loss[1] and out.valid_fit.tolist() == [True, False]


def test_best_facing_turns_a_body_seen_from_the_back(body_model, gmm_path):
    """A start whose torso has left and right swapped (facing the wrong way) is searched and turned; a start
    that is already right is kept."""
    from gtacli.fit.camera_init import best_facing, turned

    pose, betas, transl, _, kp, _ = _problem(body_model, 2)
    fitter = build_fitter(body_model, gmm_path, RegistrationConfig(method="gtacli"))
    start = pose[:, :3].clone()
    start[0] = turned(pose[:1, :3], 180.0)[0]  # sample 0 starts facing the wrong way
    orient, trans, searched = best_facing(fitter, start, pose[:, 3:], betas, transl + 1.0, kp)
    truth_rot = torch.stack([torch.as_tensor(_rotmat(o)) for o in pose[:, :3]])
    got_rot = torch.stack([torch.as_tensor(_rotmat(o)) for o in orient])
    assert (got_rot - truth_rot).abs().max() < 1e-4
    torch.testing.assert_close(trans, transl, atol=1e-3, rtol=0)
    assert searched.tolist() == [True, False]


def test_a_start_with_the_right_sides_is_not_turned_for_a_lower_loss(body_model, gmm_path):
    """Issue 21: a start 60° off about the vertical still has the torso's left and right where the keypoints
    have them; the turn by 270° explains the keypoints far better (30° off), but a lower 2D loss is no evidence
    for the facing direction, so `auto` (a network's start) keeps it; `always` (a mean-parameter start)
    searches and turns both."""
    from gtacli.fit.camera_init import best_facing, lateral_agreement, turned

    pose, betas, transl, _, kp, _ = _problem(body_model, 2)
    start = turned(pose[:, :3], 60.0)
    results = {}
    for rule in ("auto", "always"):
        fitter = build_fitter(body_model, gmm_path, RegistrationConfig(method="gtacli", facing_search=rule))
        with torch.no_grad():
            joints = fitter.skeleton(pose[:, 3:], betas)(start)
            assert (lateral_agreement(joints + transl[:, None], kp, F, 2 * C) > 0).all()
            loss_start = fitter.criterion(joints, transl, kp)
            loss_turn = fitter.criterion(
                fitter.skeleton(pose[:, 3:], betas)(turned(start, 270.0)), transl, kp
            )
        assert (loss_turn < 0.5 * loss_start).all()  # the old rule (lowest loss) turned these bodies
        results[rule] = best_facing(fitter, start, pose[:, 3:], betas, transl, kp)
    rotmats = lambda aa: torch.stack([torch.as_tensor(_rotmat(o)) for o in aa])  # noqa: E731
    assert (rotmats(results["auto"][0]) - rotmats(start)).abs().max() < 1e-4
    assert results["auto"][2].tolist() == [False, False]
    # `always` replaces both starts by a turn (by at least 90°)
    rel = rotmats(results["always"][0]).transpose(1, 2) @ rotmats(start)
    angle = torch.rad2deg(torch.acos(((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)))
    assert (angle > 89).all() and results["always"][2].all()


def test_no_candidate_behind_the_camera(body_model, gmm_path):
    """An upside-down body behind the camera projects exactly like the upright one in front: a start rolled by
    180° gets a negative least-squares depth, so it is searched and replaced by the upright body in front (the
    old rule kept it: no turn halves a loss that is already the truth's)."""
    from gtacli.fit.camera_init import best_facing, initial_translation, turned

    pose, betas, transl, _, kp, _ = _problem(body_model, 2)
    fitter = build_fitter(body_model, gmm_path, RegistrationConfig(method="gtacli"))
    start = turned(pose[:, :3], 0.0, 180.0)
    with torch.no_grad():
        joints = fitter.skeleton(pose[:, 3:], betas)(start)
        behind, _ = initial_translation(joints, kp, transl, F, 2 * int(C))
    assert (behind[:, 2] < 0).all()
    assert (fitter.criterion(joints, behind, kp) < 1.0).all()  # explains the keypoints (< 1 px² per joint)
    orient, trans, searched = best_facing(fitter, start, pose[:, 3:], betas, transl, kp)
    assert searched.all() and (trans[:, 2] > 0).all()
    rotmats = lambda aa: torch.stack([torch.as_tensor(_rotmat(o)) for o in aa])  # noqa: E731
    assert (rotmats(orient) - rotmats(pose[:, :3])).abs().max() < 1e-4


def _rotmat(aa: torch.Tensor) -> np.ndarray:
    """Rodrigues' formula written out (independent of the code under test)."""
    v = aa.double().numpy()
    angle = np.linalg.norm(v)
    k = v / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def test_registration_config_is_flat_and_set_by_name(body_model, gmm_path):
    """Training composes its recipe with a RegistrationConfig and sets fields by name (`--set
    registration.method=spin`): plain fields only, and the method picks the in-the-loop fitter."""
    import dataclasses

    from gtacli.fit.fits_store import FitsStore
    from gtacli.fit.smplify_spin import SpinSMPLify

    for f in dataclasses.fields(RegistrationConfig):
        assert f.type in (
            "str",
            "int",
            "float",
            "bool",
            "Optional[int]",
            "Tuple[float, float]",
            "Tuple[int, ...]",
        ), f
    config = dataclasses.replace(RegistrationConfig(), method="spin", mode="in_the_loop")
    registrant = Registrant(body_model, FitsStore({}), config, gmm_path=gmm_path)
    assert isinstance(registrant.smplify, SpinSMPLify)
