"""The estimator's architecture: key names and shapes of docs/reproduction.md §5.1, head maths of docs/reproduction.md §4.2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtacli.model.estimator import HMREstimator, build_estimator, load_mean_params
from gtacli.model.hmr_head import HMRHead

# docs/reproduction.md §5.1: (planes, blocks) per stage and the input channels of each block.
STAGES = [(64, 3), (128, 4), (256, 6), (512, 3)]


def _mean_params(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"pose": rng.normal(size=144).astype(np.float32), "shape": rng.normal(size=10).astype(np.float32),
            "cam": np.array([0.9, 0.0, 0.0], np.float32)}  # fmt: skip


def _expected_backbone_shapes() -> dict:
    shapes = {"conv1.weight": (64, 3, 7, 7)}
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"bn1.{name}"] = (64,)
    shapes["bn1.num_batches_tracked"] = ()
    inplanes = 64
    for layer, (planes, blocks) in enumerate(STAGES, start=1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes[f"{p}.conv3.weight"] = (4 * planes, planes, 1, 1)
            for bn, ch in (("bn1", planes), ("bn2", planes), ("bn3", 4 * planes)):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{p}.{bn}.{name}"] = (ch,)
                shapes[f"{p}.{bn}.num_batches_tracked"] = ()
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (4 * planes, inplanes, 1, 1)
                for name in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{p}.downsample.1.{name}"] = (4 * planes,)
                shapes[f"{p}.downsample.1.num_batches_tracked"] = ()
            inplanes = 4 * planes
    return {f"backbone.{k}": v for k, v in shapes.items()}


HEAD_SHAPES = {
    "head.init_pose": (1, 144), "head.init_shape": (1, 10), "head.init_cam": (1, 3),
    "head.fc1.weight": (1024, 2205), "head.fc1.bias": (1024,), "head.fc2.weight": (1024, 1024),
    "head.fc2.bias": (1024,), "head.decpose.weight": (144, 1024), "head.decpose.bias": (144,),
    "head.decshape.weight": (10, 1024), "head.decshape.bias": (10,), "head.deccam.weight": (3, 1024),
    "head.deccam.bias": (3,),
}  # fmt: skip


@pytest.fixture(scope="module")
def model() -> HMREstimator:
    return HMREstimator(_mean_params())


def test_state_dict_keys_and_shapes_are_mmhuman3ds(model):
    state = model.state_dict()
    expected = {**_expected_backbone_shapes(), **HEAD_SHAPES}
    assert len([k for k in state if k.startswith("backbone.")]) == 318
    assert len([k for k in state if k.startswith("head.")]) == 13
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert state["backbone.layer4.0.downsample.0.weight"].shape == (2048, 1024, 1, 1)


def test_parameter_count_is_about_26_98_million(model):
    total = sum(p.numel() for p in model.parameters())
    assert abs(total - 26.98e6) < 0.01e6


def test_mean_parameter_buffers_are_float32_copies(model):
    params = _mean_params()
    assert model.head.init_pose.dtype == torch.float32
    assert np.array_equal(model.head.init_pose.numpy()[0], params["pose"])
    assert np.array_equal(model.head.init_cam.numpy()[0], params["cam"])


def test_head_with_zero_decoders_returns_the_mean_parameters():
    """Three iterations add decoder outputs to the mean; zero decoders leave the mean unchanged (docs/reproduction.md §4.2)."""
    params = _mean_params(1)
    head = HMRHead(params).eval()
    for layer in (head.decpose, head.decshape, head.deccam):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    out = head(torch.randn(2, 2048, 2, 2))
    assert torch.equal(out["pred_pose_6d"], torch.from_numpy(params["pose"]).expand(2, -1))
    assert torch.equal(out["pred_cam"], torch.from_numpy(params["cam"]).expand(2, -1))


def test_head_iterates_three_times_with_shared_weights():
    """With decoders that add a constant c, after 3 iterations the output is mean + 3c."""
    params = _mean_params(2)
    head = HMRHead(params).eval()
    for layer in (head.decpose, head.decshape, head.deccam):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.constant_(layer.bias, 0.25)
    out = head(torch.randn(1, 2048))
    assert torch.allclose(out["pred_shape"], torch.from_numpy(params["shape"]) + 0.75)


def test_forward_outputs_rotation_matrices(model):
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out["pred_pose"].shape == (2, 24, 3, 3)
    assert out["pred_shape"].shape == (2, 10) and out["pred_cam"].shape == (2, 3)
    rot = out["pred_pose"]
    eye = torch.eye(3).expand_as(rot)
    assert torch.allclose(rot @ rot.transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(2, 24), atol=1e-5)


def test_dropout_only_in_train_mode(model):
    x = torch.randn(1, 2048)
    model.head.eval()
    assert torch.equal(model.head(x)["pred_cam"], model.head(x)["pred_cam"])
    model.head.train()
    torch.manual_seed(0)
    a = model.head(x)["pred_cam"]
    b = model.head(x)["pred_cam"]
    model.head.eval()
    assert not torch.equal(a, b)


def test_build_from_the_real_mean_params_file(shared_assets):
    model = build_estimator(shared_assets / "smpl_mean_params.npz")
    params = load_mean_params(shared_assets / "smpl_mean_params.npz")
    assert np.array_equal(model.head.init_shape.numpy()[0], params["shape"])
    assert model.head.init_cam.dtype == torch.float32


def test_head_pools_features_in_mmhuman3d_order():
    # HMRHead pools with x.mean(-1).mean(-1) (width, then height); a one-shot mean over both axes rounds
    # differently in float32, so the pooled-feature path must equal feeding those means in directly.
    torch.manual_seed(3)
    head = HMRHead(_mean_params(2)).eval()
    features = torch.relu(torch.randn(2, 2048, 7, 7)) * 3.0
    with torch.no_grad():
        pooled = head(features)
        direct = head(features.mean(dim=-1).mean(dim=-1))
    for key in pooled:
        assert torch.equal(pooled[key], direct[key]), key
