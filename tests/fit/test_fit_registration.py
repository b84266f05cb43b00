"""Registrant: static mode (GT overrides, |β|>3 rows zeroed, valid_fit rule, batch of 1) and in-the-loop updates."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from gtacli.body.camera import estimate_translation
from gtacli.errors import GtacliError
from gtacli.fit.config import RegistrationConfig
from gtacli.fit.fits_store import FitsStore, to_canonical_frame
from gtacli.fit.registration import Registrant, RegistrationTargets

IGNORED = [1, 9, 12, 27, 28]


def _gmof_sq(r: torch.Tensor, sigma: float = 100.0) -> torch.Tensor:
    x = r * r
    return sigma**2 * x**2 / (sigma**2 + x**2)


def direct_joint_loss(joints: torch.Tensor, transl: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
    """docs/reproduction.md §7.1 step 5 written out: Σ_j Σ_xy w_j c_j gmof((p̂ − k̂)², 100)."""
    cam = joints.double() + transl.double()[:, None]
    proj = 5000.0 * cam[..., :2] / cam[..., 2:] + 112.0
    p_hat = 2 * proj / 223 - 1
    k_hat = 2 * kp[..., :2].double() / 223 - 1
    w = torch.ones(49, dtype=torch.float64)
    w[IGNORED] = 0
    return (_gmof_sq(p_hat - k_hat).sum(-1) * kp[..., 2].double() * w).sum(-1)


def _fits_rows(n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(0)
    rows = np.zeros((n, 82))
    rows[:, 0] = math.pi  # facing the camera
    rows[:, 3:72] = rng.normal(0, 0.1, (n, 69))
    rows[:, 72:] = rng.normal(0, 0.5, (n, 10))
    rows[4, 75] = 3.5  # an implausible shape: training zeroes this row's betas
    return rows


def _batch(body_model, store: FitsStore, which, has_smpl, rotation, flipped, scatter=()):
    """A training batch whose 2D keypoints are the projections of each sample's own target body
    (GT for has_smpl samples, the fit otherwise), except rows in `scatter`, whose keypoints are nonsense."""
    b = len(which)
    gen = torch.Generator().manual_seed(1)
    gt_pose = 0.1 * torch.randn(b, 72, generator=gen)
    gt_pose[:, 0] = math.pi
    gt_betas = 0.3 * torch.randn(b, 10, generator=gen)
    hs = torch.tensor(has_smpl, dtype=torch.bool)
    names = ["lsp"] * b
    idx = torch.tensor(which)
    rot = torch.tensor(rotation, dtype=torch.float32)
    flip = torch.tensor(flipped)
    fit_pose, fit_betas = store.lookup(names, idx, rot, flip)
    target_pose = torch.where(hs[:, None], gt_pose, fit_pose)
    target_betas = torch.where(hs[:, None], gt_betas, fit_betas)
    with torch.no_grad():
        joints = body_model(target_betas, target_pose[:, 3:], target_pose[:, :3]).joints
    cam = joints + torch.tensor([0.0, 0.1, 45.0])
    uv = 5000.0 * cam[..., :2] / cam[..., 2:] + 112.0
    kp = torch.cat([uv, torch.ones(b, 49, 1)], dim=-1)
    for r in scatter:  # alternate far corners: no translation can explain them
        kp[r, :, 0] = torch.tensor([0.0, 223.0]).repeat(25)[:49]
        kp[r, :, 1] = torch.tensor([223.0, 0.0, 0.0]).repeat(17)[:49]
    return {
        "keypoints2d": kp,
        "has_smpl": hs.float(),
        "smpl_body_pose": gt_pose[:, 3:].reshape(b, 23, 3),
        "smpl_global_orient": gt_pose[:, :3],
        "smpl_betas": gt_betas,
        "smpl_transl": torch.zeros(b, 3),
        "rotation": rot,
        "is_flipped": flip,
        "sample_idx": idx,
        "dataset_name": names,
    }, {"gt_pose": gt_pose, "gt_betas": gt_betas, "fit_pose": fit_pose, "fit_betas": fit_betas}


def _pred(b: int) -> dict:
    rot = torch.eye(3).expand(b, 24, 3, 3).clone()
    rot[:, 0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    return {
        "pred_pose": rot,
        "pred_shape": torch.zeros(b, 10),
        "pred_cam": torch.tensor([[0.9, 0.0, 0.0]]).expand(b, 3),
    }


def test_static_registration(body_model):
    store = FitsStore({"lsp": _fits_rows()})
    registrant = Registrant(body_model, store, RegistrationConfig(mode="static"))
    batch, ref = _batch(
        body_model, store, which=[0, 1, 4, 2, 3], has_smpl=[1, 0, 0, 0, 1], rotation=[0, 30, -20, 10, 0],
        flipped=[0, 1, 0, 1, 1], scatter=[3],
    )  # fmt: skip
    out = registrant(_pred(5), batch)
    hs = batch["has_smpl"].bool()
    # GT samples take their GT, fits samples the flipped-then-rotated fit
    torch.testing.assert_close(out.opt_pose[hs], ref["gt_pose"][hs])
    torch.testing.assert_close(out.opt_pose[~hs], ref["fit_pose"][~hs])
    torch.testing.assert_close(out.opt_betas[0], ref["gt_betas"][0])
    # |β| > 3 row zeroed (after its mesh was built with the original betas)
    assert torch.count_nonzero(out.opt_betas[2]) == 0
    mesh = body_model(ref["fit_betas"][2:3], ref["fit_pose"][2:3, 3:], ref["fit_pose"][2:3, :3]).vertices
    torch.testing.assert_close(out.opt_vertices[2:3], mesh)
    gt_mesh = body_model(ref["gt_betas"], ref["gt_pose"][:, 3:], ref["gt_pose"][:, :3]).vertices
    torch.testing.assert_close(out.gt_vertices, gt_mesh)
    torch.testing.assert_close(out.opt_vertices[hs], gt_mesh[hs])
    # camera and joint loss as docs/reproduction.md §7.1 steps 4-5
    t_expected, _ = estimate_translation(out.opt_joints, batch["keypoints2d"])
    torch.testing.assert_close(out.opt_cam_t, t_expected)
    expected_loss = direct_joint_loss(out.opt_joints, out.opt_cam_t, batch["keypoints2d"])
    torch.testing.assert_close(out.opt_joint_loss.double(), expected_loss, rtol=1e-4, atol=1e-6)
    # valid_fit = loss < 10 | has_smpl; the scattered row is the only invalid one
    assert out.opt_joint_loss[3] > 10 and (out.opt_joint_loss[[1, 2]] < 1e-3).all()
    assert out.valid_fit.tolist() == [True, True, True, False, True]
    assert not out.fits_updated.any() and not out.cam_t_fallback.any()
    assert out.opt_vertices.shape == (5, 6890, 3) and out.opt_joints.shape == (5, 49, 3)


# the registrant's targets: field -> (shape after the batch axis, dtype); the order is the dataclass's
TARGETS = {
    "opt_pose": ((72,), torch.float32),
    "opt_betas": ((10,), torch.float32),
    "opt_vertices": ((6890, 3), torch.float32),
    "opt_joints": ((49, 3), torch.float32),
    "opt_cam_t": ((3,), torch.float32),
    "valid_fit": ((), torch.bool),
    "opt_joint_loss": ((), torch.float32),
    "gt_vertices": ((6890, 3), torch.float32),
    "fits_updated": ((), torch.bool),
    "cam_t_fallback": ((), torch.bool),
}


@pytest.mark.parametrize("mode", ["static", "in_the_loop"])
def test_the_registrant_returns_registration_targets(body_model, gmm_path, mode):
    """The losses and the training step read these fields by name: a field that goes missing, is renamed or
    changes kind fails here, in both modes."""
    assert [f.name for f in dataclasses.fields(RegistrationTargets)] == list(TARGETS)
    store = FitsStore({"lsp": _fits_rows()})
    config = RegistrationConfig(mode=mode, num_iters=2)
    registrant = Registrant(body_model, store, config, gmm_path=gmm_path)
    batch, _ = _batch(
        body_model, store, which=[2, 0, 1], has_smpl=[0, 1, 0], rotation=[0, 0, 10], flipped=[0, 0, 1]
    )
    out = registrant(_pred(3), batch)
    assert type(out) is RegistrationTargets
    for name, (shape, dtype) in TARGETS.items():
        value = getattr(out, name)
        assert value.shape == (3, *shape) and value.dtype == dtype and not value.requires_grad, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.valid_fit = torch.ones(3, dtype=torch.bool)  # type: ignore[misc]


def test_static_batch_of_one_and_no_confident_joint(body_model):
    store = FitsStore({"lsp": _fits_rows()})
    registrant = Registrant(body_model, store, RegistrationConfig())
    batch, ref = _batch(body_model, store, which=[1], has_smpl=[0], rotation=[15], flipped=[1])
    out = registrant(_pred(1), batch)
    assert out.opt_pose.shape == (1, 72) and out.valid_fit.tolist() == [True]
    torch.testing.assert_close(out.opt_pose, ref["fit_pose"])
    # no confident joint among 25..48: translation falls back to the predicted camera, no crash
    batch["keypoints2d"][:, 25:, 2] = 0
    out = registrant(_pred(1), batch)
    assert out.cam_t_fallback.tolist() == [True]
    torch.testing.assert_close(out.opt_cam_t, torch.tensor([[0.0, 0.0, 2 * 5000 / (224 * 0.9 + 1e-9)]]))


def test_samples_with_gt_need_no_fits(body_model):
    registrant = Registrant(body_model, None, RegistrationConfig())
    store = FitsStore({"lsp": _fits_rows()})
    batch, ref = _batch(body_model, store, which=[0, 1], has_smpl=[1, 1], rotation=[0, 0], flipped=[0, 0])
    batch["dataset_name"] = ["gta", "gta"]  # no fits for gta at all
    out = registrant(_pred(2), batch)
    assert out.valid_fit.all()
    torch.testing.assert_close(out.opt_pose, ref["gt_pose"])
    batch["has_smpl"][1] = 0
    with pytest.raises(GtacliError, match="fits"):
        registrant(_pred(2), batch)


def test_in_the_loop_accepts_better_fits_and_updates_the_store(body_model, gmm_path):
    rows = _fits_rows()
    rows[2, 3:72] += 0.8  # a poor fit for sample 2: SMPLify from the prediction will beat it
    store = FitsStore({"lsp": rows.copy()})
    config = RegistrationConfig(mode="in_the_loop", num_iters=15)
    registrant = Registrant(body_model, store, config, gmm_path=gmm_path)
    truth = FitsStore({"lsp": _fits_rows()})
    batch, _ = _batch(body_model, truth, which=[2, 0], has_smpl=[0, 1], rotation=[20, 0], flipped=[1, 0])
    before = Registrant(body_model, store, RegistrationConfig())(_pred(2), batch)
    out = registrant(_pred(2), batch)
    assert out.fits_updated.tolist() == [True, False]  # the GT sample is never refined
    assert out.opt_joint_loss[0] < before.opt_joint_loss[0]
    # the store holds the accepted fit in the canonical frame (rotation undone, then flip undone)
    canonical = to_canonical_frame(out.opt_pose[:1].double(), torch.tensor([20.0]), torch.tensor([1]))
    np.testing.assert_allclose(store.array("lsp")[2, :72], canonical[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(store.array("lsp")[0], rows[0])  # untouched
    assert store.take_updates()["lsp"].tolist() == [2]


def test_keypoint_term_ignores_nan_keypoints_with_zero_confidence():
    """A zero-confidence keypoint holding NaN/inf adds nothing (NaN·0 must not make the fit invalid)."""
    from gtacli.fit.losses import keypoint_term, keypoint_weights

    gen = torch.Generator().manual_seed(4)
    joints = 0.3 * torch.randn(2, 49, 3, generator=gen, dtype=torch.float64)
    transl = torch.tensor([[0.0, 0.1, 40.0], [0.05, 0.0, 30.0]], dtype=torch.float64)
    kp = torch.rand(2, 49, 3, generator=gen, dtype=torch.float64) * 224
    kp[..., 2] = 1.0
    kp[0, 30, 2] = 0.0
    kp[1, 2, 2] = 0.0
    expected = direct_joint_loss(joints, transl, kp)
    kp[0, 30, :2] = float("nan")
    kp[1, 2, 0] = float("inf")
    w = keypoint_weights(IGNORED, dtype=torch.float64)
    got = keypoint_term(joints + transl[:, None], kp, w)
    torch.testing.assert_close(got, expected)
