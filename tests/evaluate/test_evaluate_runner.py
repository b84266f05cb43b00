"""`evaluate_model` (used after training epochs) on the sample tree, against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtacli.body.rotations import rot6d_to_rotmat
from gtacli.body.smpl import BodyModel
from gtacli.data.human_data import HumanData
from gtacli.evaluate.runner import evaluate_model
from gtacli.layout import DataLayout
from gtacli.model.checkpoint import load_weights
from gtacli.model.estimator import build_estimator, load_mean_params

J14 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]


def test_mean_predicting_checkpoint_gives_the_mean_body_errors(sample_tree):
    """The tree's spin_official has zero decoders, so every frame's prediction is the SMPL mean parameters:
    the expected errors follow from the mean body and the GT SMPL alone."""
    layout = DataLayout(sample_tree)
    model = build_estimator(layout)
    load_weights(model, layout.spin_official)
    doc = evaluate_model(model, layout, device=torch.device("cpu"), limit=3, workers=0, batch_size=2)
    assert doc["dataset"] == "pw3d" and doc["frames"] == 3 and not model.training

    mean = load_mean_params(layout.smpl_mean_params)
    rot = rot6d_to_rotmat(torch.from_numpy(mean["pose"]).reshape(24, 6))[None]
    neutral = BodyModel.from_layout(layout, "neutral", h36m=True, extra=False)
    pred = (
        neutral(torch.from_numpy(mean["shape"])[None], rot[:, 1:], rot[:, :1]).joints_h36m[0].double().numpy()
    )
    hd = HumanData.load(layout.annotation("pw3d"))
    smpl, genders = hd.smpl(slice(0, 3)), hd.meta()["gender"][:3]
    errors = []
    for i in range(3):
        model_gt = BodyModel.from_layout(
            layout, "male" if genders[i] == "m" else "female", h36m=True, extra=False
        )
        gt = (
            model_gt(
                torch.as_tensor(smpl["betas"][i : i + 1]),
                torch.as_tensor(smpl["body_pose"][i : i + 1]).reshape(1, 69),
                torch.as_tensor(smpl["global_orient"][i : i + 1]),
            )
            .joints_h36m[0]
            .double()
            .numpy()
        )
        p, g = (pred - pred[0])[J14] * 1000, (gt - gt[0])[J14] * 1000
        errors.append(np.linalg.norm(p - g, axis=1).mean())
    assert doc["mpjpe_mm"] == pytest.approx(np.mean(errors), abs=1e-3)
    assert doc["pa_mpjpe_mm"] <= doc["mpjpe_mm"]
