"""Issue 20: the estimator's ONNX export (dynamic batch, metadata, self-check), the engines that run it, and the
one-line refusals of ONNX files that are not a gtacli estimator export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from engine_fixtures import image_dependent_checkpoint, writable_root
from onnx_bytes import relu_model

from gtacli.errors import BadFileError, GtacliError, UsageError
from gtacli.io.hashing import sha256_file
from gtacli.model.engines import cached_onnx_path, load_engine, resolve_engine
from gtacli.model.loading import load_estimator
from gtacli.model.memory_format import NCHW
from gtacli.model.onnx_export import (
    EXPORT_FORMAT,
    META_FORMAT,
    export_onnx,
    onnx_bytes,
    verification_crops,
)

onnx = pytest.importorskip("onnx", reason="the ONNX engine needs gtacli[onnx]")
pytest.importorskip("onnxruntime", reason="the ONNX engine needs gtacli[onnx]")

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, sample_tree) -> Path:
    return image_dependent_checkpoint(sample_tree, tmp_path_factory.mktemp("ckpt") / "random.pth")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, sample_tree, checkpoint):
    """(root layout, path of the checkpoint's cached export, the plain torch model) — exported once."""
    layout = writable_root(sample_tree, tmp_path_factory.mktemp("root") / "data")
    engine = load_engine(checkpoint, layout, CPU, "onnxruntime")
    assert engine.info.onnx_source == "exported"
    model, _ = load_estimator(checkpoint, layout, CPU, memory_format=NCHW, fold=False)
    return layout, Path(engine.info.onnx_model), model


@pytest.mark.slow  # exports ResNet-50 + HMR (seconds)
def test_export_runs_on_a_deep_copy_so_the_model_keeps_its_batchnorms(sample_tree, checkpoint):
    # torch's TorchScript-based exporter folds Conv+BatchNorm into the module's own tensors in place
    model, _ = load_estimator(checkpoint, sample_tree, CPU, memory_format=NCHW, fold=False)
    crops, _ = verification_crops(None, count=2)
    with torch.inference_mode():
        before = model(torch.from_numpy(crops))["pred_cam"].clone()
    onnx_bytes(model)
    with torch.inference_mode():
        after = model(torch.from_numpy(crops))["pred_cam"]
    assert torch.equal(before, after)


@pytest.mark.slow  # exports ResNet-50 + HMR (seconds)
def test_cached_export_has_dynamic_batch_metadata_and_matches_torch(exported, checkpoint):
    layout, path, model = exported
    assert path == cached_onnx_path(layout, sha256_file(checkpoint))
    proto = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[META_FORMAT] == EXPORT_FORMAT
    assert meta["gtacli.checkpoint_sha256"] == sha256_file(checkpoint)
    assert meta["gtacli.opset"] == "17" and proto.opset_import[0].version == 17
    assert json.loads(meta["gtacli.input"])["mean"] == [123.675, 116.28, 103.53]
    assert len(json.loads(meta["gtacli.mean_params"])["pose"]) == 144
    verified = json.loads(meta["gtacli.verified"])
    assert verified["source"].endswith("pw3d_test.npz") and 0 < verified["max_abs_diff"] < 1e-3
    engine = load_engine(path, layout, CPU, "auto")  # a given .onnx file runs directly
    assert engine.name == "onnxruntime" and engine.info.onnx_source == "given"
    crops, _ = verification_crops(layout, count=3)
    with torch.inference_mode():
        reference = model(torch.from_numpy(crops))
    for batch in (crops[:1], crops):  # the batch axis is dynamic
        got = engine(torch.from_numpy(batch))
        for key in ("pred_pose", "pred_shape", "pred_cam"):
            assert got[key].shape == reference[key][: len(batch)].shape
            assert torch.allclose(got[key], reference[key][: len(batch)], atol=1e-4), key


@pytest.mark.slow  # exports ResNet-50 + HMR (seconds)
def test_cache_is_reused_and_stale_metadata_is_rebuilt(exported, checkpoint):
    layout, path, _ = exported
    stamp = path.stat().st_mtime_ns
    again = load_engine(checkpoint, layout, CPU, "onnxruntime")
    assert again.info.onnx_source == "cache" and path.stat().st_mtime_ns == stamp
    # an export of an older revision: the same graph with another format in its metadata
    proto = onnx.load(str(path))
    for prop in proto.metadata_props:
        if prop.key == META_FORMAT:
            prop.value = "gtacli-hmr-estimator/0"
    onnx.save(proto, str(path))
    said = []
    rebuilt = load_engine(checkpoint, layout, CPU, "onnxruntime", info=said.append)
    assert rebuilt.info.onnx_source == "exported"
    assert said and "rebuilding" in said[0] and "gtacli-hmr-estimator/0" in said[0]
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    assert meta[META_FORMAT] == EXPORT_FORMAT


@pytest.mark.slow  # exports ResNet-50 + HMR (seconds)
def test_verification_failure_writes_nothing_and_names_the_largest_difference(tmp_path, exported):
    layout, _, model = exported
    target = tmp_path / "model.onnx"
    with pytest.raises(GtacliError, match=r"differ by up to [0-9.e-]+ \(tolerance 0\).*nothing was written"):
        export_onnx(
            model,
            target,
            checkpoint_sha256="0" * 64,
            checkpoint_name="x.pth",
            mean_file_sha256="",
            layout=layout,
            tolerance=0.0,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # exports ResNet-50 + HMR (seconds)
def test_onnx_files_that_are_not_an_estimator_export_are_refused_in_one_line(tmp_path, exported):
    layout, path, _ = exported
    relu = tmp_path / "relu.onnx"
    relu.write_bytes(relu_model())
    with pytest.raises(
        BadFileError,
        match=r"not a gtacli estimator export: input x \(1, 3, 4, 4\).*outputs y, expected pred_pose, pred_shape, pred_cam",
    ):
        load_engine(relu, layout, CPU, "onnxruntime")
    bare = tmp_path / "bare.onnx"  # the right graph without gtacli's metadata (e.g. exported by hand)
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.save(proto, str(bare))
    with pytest.raises(BadFileError, match="not a gtacli estimator export: no gtacli metadata") as info:
        load_engine(bare, layout, CPU, "onnxruntime")
    assert "\n" not in str(info.value)
    truncated = tmp_path / "truncated.onnx"
    data = path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadFileError, match="not a readable ONNX model") as info:
        load_engine(truncated, layout, CPU, "onnxruntime")
    assert "\n" not in str(info.value) and str(truncated) in str(info.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xff" * 100)
    with pytest.raises(BadFileError, match="not a readable ONNX model"):
        load_engine(garbage, layout, CPU, "auto")


def test_engine_choice():
    assert resolve_engine("auto", CPU) == "onnxruntime"  # onnx and onnxruntime are installed here
    assert resolve_engine("auto", torch.device("cuda:0")) == "torch"  # onnxruntime-gpu is not a dependency
    assert resolve_engine("torch", CPU) == "torch"
    assert resolve_engine("auto", CPU, "model.onnx") == "onnxruntime"
    with pytest.raises(UsageError, match="only onnxruntime runs"):
        resolve_engine("torch", CPU, "model.onnx")
    with pytest.raises(UsageError, match="CPU only"):
        resolve_engine("onnxruntime", torch.device("cuda:0"))
    with pytest.raises(UsageError, match="not an engine"):
        resolve_engine("tensorrt", CPU)
    assert np.isfinite(verification_crops(None, 2)[0]).all()


def test_sessions_let_idle_threads_sleep_and_follow_the_thread_count():
    """The engine shares the process's cores with SMPL, scoring and detection between runs: its idle intra-op
    threads must not spin (they slowed the demo's SMPL stage that follows each run), and --threads applies."""
    from gtacli.model.onnx_export import session

    opened = session(relu_model(), threads=3)
    options = opened.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    x = np.linspace(-1, 1, 48, dtype=np.float32).reshape(1, 3, 4, 4)
    assert np.array_equal(opened.run(None, {"x": x})[0], np.maximum(x, 0))
