"""Every checkpoint layout loads with each key accounted for and gives identical predictions (docs/reproduction.md §5)."""

from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

from gtacli.errors import BadFileError
from gtacli.io.safe import load_checkpoint
from gtacli.model.checkpoint import git_revision, load_weights, save_checkpoint
from gtacli.model.estimator import HMREstimator, build_estimator

MEAN = {
    "pose": np.zeros(144, np.float32),
    "shape": np.zeros(10, np.float32),
    "cam": np.array([0.9, 0, 0], np.float32),
}
HEAD_ROOTS = ("fc1", "fc2", "decpose", "decshape", "deccam", "init_pose", "init_shape", "init_cam")


@pytest.fixture(scope="module")
def source() -> HMREstimator:
    """A model with non-default weights everywhere (random BN statistics and a random head)."""
    torch.manual_seed(0)
    model = HMREstimator(MEAN)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.dtype.is_floating_point:
                tensor.copy_(torch.rand_like(tensor) * 0.1 + (1.0 if name.endswith("running_var") else 0.0))
    return model.eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def reference(source, image):
    with torch.no_grad():
        return source(image)


def _fresh() -> HMREstimator:
    """A model whose weights are allocated, not initialised: whatever a load does not set stays garbage."""
    return build_estimator(MEAN, init_weights=False).eval()


def _same_predictions(model, image, reference) -> None:
    with torch.no_grad():
        out = model.eval()(image)
    for key in ("pred_pose", "pred_shape", "pred_cam"):
        assert torch.equal(out[key], reference[key]), key


def _unprefixed(state):
    return OrderedDict((k.split(".", 1)[1], v) for k, v in state.items())


def test_mmhuman3d_layout_with_body_model_buffers(tmp_path, source, image, reference):
    state = OrderedDict(source.state_dict())
    state["body_model_train.v_template"] = torch.zeros(6890, 3)
    state["body_model_train.shapedirs"] = torch.zeros(6890, 3, 10)
    state["body_model_test.joints_regressor"] = torch.zeros(17, 6890)
    path = tmp_path / "mmh.pth"
    torch.save(
        {"meta": {"epoch": 10, "iter": 31250, "mmhuman3d_version": "0.9.0"}, "state_dict": state}, path
    )
    model = _fresh()
    report = load_weights(model, path)
    assert report.source_format == "mmhuman3d"
    assert sorted(report.loaded) == sorted(source.state_dict())
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.ignored) == sorted(k for k in state if k.startswith("body_model"))
    assert report.meta["iter"] == 31250
    _same_predictions(model, image, reference)


def test_spin_model_layout_is_prefixed_by_the_documented_rule(tmp_path, source, image, reference):
    state = _unprefixed(source.state_dict())
    assert "fc1.weight" in state and "conv1.weight" in state and "init_pose" in state
    path = tmp_path / "model_checkpoint.pt"
    torch.save(
        {"model": state, "optimizer": {"state": {}}, "epoch": 3, "batch_idx": 10, "total_step_count": 99},
        path,
    )
    model = _fresh()
    report = load_weights(model, path)
    assert report.source_format == "spin"
    assert len(report.loaded) == 331 and report.complete
    _same_predictions(model, image, reference)


def test_torchvision_resnet50_loads_the_backbone_only(tmp_path, source, image):
    backbone = OrderedDict(
        (k[len("backbone.") :], v) for k, v in source.state_dict().items() if k.startswith("backbone.")
    )
    # torchvision's classic file predates BatchNorm's num_batches_tracked and carries the classifier
    backbone = OrderedDict((k, v) for k, v in backbone.items() if not k.endswith("num_batches_tracked"))
    backbone["fc.weight"] = torch.zeros(1000, 2048)
    backbone["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save(backbone, path)
    model = _fresh()
    report = load_weights(model, path)
    assert report.source_format == "torchvision"
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"]
    assert report.unexpected == []
    assert sorted(report.significant_missing) == sorted(
        k for k in source.state_dict() if k.startswith("head.")
    )
    assert len(report.loaded) == 265
    with torch.no_grad():
        assert torch.equal(model.backbone(image), source.backbone(image))


def test_gtacli_layout_round_trip_with_meta_and_extras(tmp_path, source, image, reference):
    path = tmp_path / "run" / "epoch_1.pth"
    meta = {"recipe": {"name": "gta-spin-ft", "lr": 3e-5}, "epoch": 1, "iteration": 3125, "seed": 7,
            "git_revision": git_revision(), "asset_sha256": {"spin_official.pth": "ab" * 32}, "path": tmp_path}  # fmt: skip
    extra = {"optimizers": {"backbone": {"state": {}, "param_groups": [{"lr": 3e-5}]}}}
    save_checkpoint(path, source, meta, extra=extra)
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch_1.pth"]  # no temp file left
    raw = load_checkpoint(path)  # weights_only=True reads it: meta is plain data
    assert raw["meta"]["format"] == "gtacli" and raw["meta"]["recipe"]["lr"] == 3e-5
    assert raw["meta"]["path"] == str(tmp_path)
    assert raw["optimizers"]["backbone"]["param_groups"][0]["lr"] == 3e-5
    model = _fresh()
    report = load_weights(model, path)
    assert report.source_format == "gtacli" and report.complete and len(report.loaded) == 331
    assert report.meta["iteration"] == 3125
    _same_predictions(model, image, reference)


def test_mmhuman3d_layout_written_by_gtacli(tmp_path, source, image, reference):
    path = tmp_path / "for_mmhuman3d.pth"
    save_checkpoint(path, source, {"epoch": 2}, layout="mmhuman3d")
    raw = load_checkpoint(path)
    assert set(raw) == {"meta", "state_dict"}
    keys = list(raw["state_dict"])
    assert len([k for k in keys if k.startswith("backbone.")]) == 318
    assert len([k for k in keys if k.startswith("head.")]) == 13 and len(keys) == 331
    model = _fresh()
    assert load_weights(model, path).source_format == "mmhuman3d"
    _same_predictions(model, image, reference)


def test_module_prefixes_are_stripped(tmp_path, source, image, reference):
    state = OrderedDict((f"module.{k}", v) for k, v in source.state_dict().items())
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": state, "meta": {}}, path)
    model = _fresh()
    report = load_weights(model, path)
    assert report.complete and len(report.loaded) == 331
    _same_predictions(model, image, reference)
    spin = OrderedDict((f"module.{k}", v) for k, v in _unprefixed(source.state_dict()).items())
    torch.save({"model": spin}, tmp_path / "spin_ddp.pt")
    assert load_weights(_fresh(), tmp_path / "spin_ddp.pt").complete


def test_wrong_architecture_is_refused_with_one_line(tmp_path):
    state = OrderedDict(_fresh().state_dict())
    state["backbone.layer1.0.conv1.weight"] = torch.zeros(64, 64, 3, 3)  # a ResNet-18/34 BasicBlock conv
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(BadFileError) as info:
        load_weights(_fresh(), path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "wrong architecture" in message


def test_file_that_loads_nothing_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, path)
    with pytest.raises(BadFileError, match="no weight"):
        load_weights(_fresh(), path)


def test_truncated_checkpoint_is_refused(tmp_path, source):
    path = tmp_path / "full.pth"
    save_checkpoint(path, source, {})
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(BadFileError) as info:
        load_weights(_fresh(), cut)
    assert str(cut) in str(info.value)


def test_mmhuman3d_layout_refuses_extras(tmp_path, source):
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "x.pth", source, {}, extra={"optimizers": {}}, layout="mmhuman3d")
    assert not (tmp_path / "x.pth").exists()


def test_git_revision_is_only_read_from_a_gtacli_checkout(tmp_path):
    """An installed copy inside some other clone (a venv in a project folder) must not report that clone's HEAD."""
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    other = tmp_path / "other_project"
    (other / "lib" / "site-packages").mkdir(parents=True)
    (other / "README").write_text("not gtacli\n")
    for args in (["init", "-q"], ["add", "README"], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(other), *args], check=True, env={**os.environ, **env})
    assert git_revision(other / "lib" / "site-packages") is None  # inside the clone, but not its root
    assert git_revision(other) is None  # a repository, but not gtacli's
    (other / "gtacli").mkdir()
    (other / "gtacli" / "__init__.py").write_text("")
    revision = git_revision(other)
    assert revision is not None and len(revision.split("+")[0]) == 40
