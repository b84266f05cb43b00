"""Protocol helpers: GT joints picked by H36M names, pelvis centring and the J14 subset (docs/reproduction.md §3.4, §8)."""

from __future__ import annotations

import numpy as np
import torch

from gtacli.evaluate.protocols import PROTOCOLS, eval_joints, gendered_names, gt_keypoints_h36m

# HUMAN_DATA slots of the 17 H36M joints (mmhuman3d `get_mapping('human_data', 'h36m')`), written out by hand.
H36M_SLOTS = [148, 145, 4, 7, 144, 5, 8, 150, 146, 152, 147, 16, 18, 20, 17, 19, 21]
J14 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]


def test_gt_keypoints_from_human_data_slots():
    kp = np.zeros((2, 190, 4), np.float32)
    kp[..., 0] = np.arange(190)
    out = gt_keypoints_h36m(kp)
    assert out.shape == (2, 17, 3) and np.array_equal(out[0, :, 0], H36M_SLOTS)
    seventeen = np.random.default_rng(0).normal(size=(3, 17, 4))
    assert np.array_equal(gt_keypoints_h36m(seventeen), seventeen[..., :3])


def test_eval_joints_centre_on_h36m_pelvis_select_j14_and_convert_to_mm():
    joints = torch.arange(17 * 3, dtype=torch.float32).reshape(1, 17, 3) / 100.0
    out = eval_joints(joints, PROTOCOLS["pw3d"])
    expected = (joints[0, J14] - joints[0, 0]).double() * 1000.0
    assert out.shape == (1, 14, 3) and out.dtype == torch.float64
    assert torch.allclose(out[0], expected)
    assert eval_joints(joints, PROTOCOLS["mpi_inf_3dhp"]).shape == (1, 17, 3)


def test_gender_rule_is_mmhuman3d_s():
    assert gendered_names(["m", "f", "n", "male"]) == ["male", "female", "female", "female"]
