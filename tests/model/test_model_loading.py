"""`load_estimator`'s one policy (docstring of gtacli/model/loading.py) on every checkpoint layout, and the
inference memory layout it chooses (gtacli/model/memory_format.py)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from gtacli.errors import BadFileError, MissingFileError
from gtacli.model.checkpoint import save_checkpoint
from gtacli.model.estimator import HMREstimator, build_estimator
from gtacli.model.loading import load_estimator
from gtacli.model.memory_format import NCHW, model_memory_format, to_model_layout

MEAN = {
    "pose": np.linspace(-0.5, 0.5, 144).astype(np.float32),
    "shape": np.linspace(0.1, 1.0, 10).astype(np.float32),
    "cam": np.array([0.9, 0.01, -0.02], np.float32),
}
INIT_KEYS = ("head.init_pose", "head.init_shape", "head.init_cam")


@pytest.fixture(scope="module")
def source() -> HMREstimator:
    """Non-default weights everywhere (random BN statistics, random head), built without the ~0.5 s init."""
    gen = torch.Generator().manual_seed(0)
    model = build_estimator({k: np.zeros_like(v) for k, v in MEAN.items()}, init_weights=False)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                noise = torch.rand(tensor.shape, generator=gen) * 0.1
                tensor.copy_(noise + (1.0 if name.endswith("running_var") else 0.0))
    return model.eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def reference(source, image):
    with torch.no_grad():
        return source(image)


@pytest.fixture(scope="module")
def mean_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mean") / "smpl_mean_params.npz"
    np.savez(path, **MEAN)
    return path


def _close(model, image, reference, atol=1e-5) -> None:
    with torch.no_grad():
        out = model(image)
    for key in ("pred_pose", "pred_shape", "pred_cam"):
        assert torch.allclose(out[key], reference[key], atol=atol), key


def _unprefixed(state):
    return OrderedDict((k.split(".", 1)[1], v) for k, v in state.items())


def test_complete_mmhuman3d_file_loads_for_inference_in_channels_last(tmp_path, source, image, reference):
    state = OrderedDict(source.state_dict())
    state["body_model_train.v_template"] = torch.zeros(6890, 3)  # mmhuman3d's SMPL buffers: ignored
    path = tmp_path / "mmh.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, path)
    model, report = load_estimator(path, None, "cpu")  # head.init_* come from the file
    assert report.source_format == "mmhuman3d" and report.ignored == ["body_model_train.v_template"]
    assert report.significant_missing == [] and report.unexpected == []
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model_memory_format(model) == torch.channels_last
    conv = model.backbone.layer1[0].conv2.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    _close(model, to_model_layout(image, model), reference)


def test_complete_spin_file_with_optimizer_state_loads(tmp_path, source, image, reference):
    path = tmp_path / "spin.pt"
    torch.save({"model": _unprefixed(source.state_dict()), "optimizer": {"state": {}}, "epoch": 3}, path)
    model, report = load_estimator(path, None, "cpu", memory_format=NCHW)
    assert report.source_format == "spin" and report.significant_missing == []
    assert model_memory_format(model) == NCHW
    with torch.no_grad():
        out = model(image)
    assert torch.equal(out["pred_pose"], reference["pred_pose"])  # same layout: bit-identical


def test_complete_gtacli_file_loads_and_training_gets_nchw(tmp_path, source, image, reference, mean_file):
    path = tmp_path / "latest.pth"
    save_checkpoint(path, source, {"epoch": 2})
    model, report = load_estimator(path, mean_file, "cpu", inference=False)
    assert report.source_format == "gtacli"
    assert model_memory_format(model) == NCHW  # the published recipe's layout unless the trainer asks
    assert all(p.requires_grad for p in model.parameters())
    _close(model.eval(), image, reference)


def test_backbone_only_file_refused_for_a_model_but_fine_for_a_backbone(tmp_path, source, mean_file):
    backbone = OrderedDict(
        (k[len("backbone.") :], v) for k, v in source.state_dict().items() if k.startswith("backbone.")
    )
    backbone["fc.weight"] = torch.zeros(1000, 2048)  # an ImageNet classifier: ignored
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(backbone, path)
    with pytest.raises(BadFileError) as info:
        load_estimator(path, mean_file, "cpu", require="model")
    message = str(info.value)
    assert str(path) in message and "head." in message and "\n" not in message
    model, report = load_estimator(path, mean_file, "cpu", require="backbone", inference=False)
    assert report.source_format == "torchvision"
    assert all(k.startswith("head.") for k in report.significant_missing)
    assert torch.equal(model.backbone.conv1.weight, source.backbone.conv1.weight)
    assert np.array_equal(model.head.init_pose.numpy()[0], MEAN["pose"])  # head starts from the mean body


def test_backbone_requirement_needs_the_mean_parameters(tmp_path, source):
    path = tmp_path / "backbone.pth"
    torch.save(OrderedDict((k, v) for k, v in source.state_dict().items() if k.startswith("backbone.")), path)
    with pytest.raises(MissingFileError, match="smpl_mean_params"):
        load_estimator(path, tmp_path / "absent.npz", "cpu", require="backbone")


def test_missing_mean_parameter_buffers_are_filled_from_the_npz(tmp_path, source, mean_file):
    path = tmp_path / "no_init.pth"
    torch.save(
        {"state_dict": OrderedDict((k, v) for k, v in source.state_dict().items() if k not in INIT_KEYS)},
        path,
    )
    model, report = load_estimator(path, mean_file, "cpu")
    assert sorted(report.significant_missing) == sorted(INIT_KEYS)  # reported, then filled
    for key in ("pose", "shape", "cam"):
        assert np.array_equal(getattr(model.head, f"init_{key}").numpy()[0], MEAN[key]), key


def test_missing_mean_parameter_buffers_without_the_npz_are_refused(tmp_path, source):
    path = tmp_path / "no_init.pth"
    torch.save(
        {"state_dict": OrderedDict((k, v) for k, v in source.state_dict().items() if k not in INIT_KEYS)},
        path,
    )
    for mean_params in (None, tmp_path / "missing" / "smpl_mean_params.npz"):
        with pytest.raises(BadFileError) as info:
            load_estimator(path, mean_params, "cpu")
        assert "gtacli fetch smpl_mean_params" in str(info.value) and str(path) in str(info.value)


def test_real_mean_params_file_fills_the_buffers(tmp_path, source, shared_assets):
    real = shared_assets / "smpl_mean_params.npz"
    path = tmp_path / "no_init.pth"
    torch.save(
        {"state_dict": OrderedDict((k, v) for k, v in source.state_dict().items() if k not in INIT_KEYS)},
        path,
    )
    model, _ = load_estimator(path, real, "cpu")
    with np.load(real) as npz:
        assert np.array_equal(model.head.init_shape.numpy()[0], npz["shape"].astype(np.float32))
        assert np.array_equal(model.head.init_cam.numpy()[0], npz["cam"].astype(np.float32))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_with_one_line(tmp_path, source, bad):
    state = OrderedDict((k, v.clone()) for k, v in source.state_dict().items())
    state["backbone.layer2.0.conv1.weight"][0, 0] = bad
    path = tmp_path / "nan.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(BadFileError) as info:
        load_estimator(path, None, "cpu")
    message = str(info.value)
    assert "NaN or inf" in message and "backbone.layer2.0.conv1.weight" in message
    assert str(path) in message and "\n" not in message


def test_unexpected_keys_are_reported_not_fatal(tmp_path, source, image, reference):
    state = OrderedDict(source.state_dict())
    state["head.fc3.weight"] = torch.zeros(4, 4)
    state["backbone.layer5.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pth"
    torch.save({"state_dict": state}, path)
    model, report = load_estimator(path, None, "cpu")
    assert sorted(report.unexpected) == ["backbone.layer5.0.conv1.weight", "head.fc3.weight"]
    assert "2 unexpected" in report.summary()
    _close(model, image, reference)


def test_to_model_layout_follows_the_weights(source):
    batch = torch.randn(2, 3, 8, 8)
    assert to_model_layout(batch, source).is_contiguous()  # the fixture model is NCHW
    model = build_estimator(MEAN, init_weights=False).to(memory_format=torch.channels_last)
    moved = to_model_layout(batch, model)
    assert moved.is_contiguous(memory_format=torch.channels_last) and torch.equal(moved, batch)
