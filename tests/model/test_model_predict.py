"""`predict_crops`: the one crop -> normalise -> batched forward of the demo and `fit --init`, for either engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from engine_fixtures import image_dependent_checkpoint

from gtacli.data.crop import crop, normalize
from gtacli.data.eval_dataset import read_image_bgr
from gtacli.data.human_data import HumanData
from gtacli.layout import DataLayout
from gtacli.model.engines import TorchEngine, load_engine
from gtacli.model.loading import load_estimator
from gtacli.model.predict import predict_crops

CPU = torch.device("cpu")


@pytest.mark.slow  # two engines, one of them exported (seconds)
def test_predict_crops_is_crop_normalise_forward_in_batches(tmp_path, sample_tree):
    layout = DataLayout(sample_tree)
    checkpoint = image_dependent_checkpoint(sample_tree, tmp_path / "random.pth")
    hd = HumanData.load(layout.annotation("pw3d"))
    paths = hd.image_paths(np.arange(3))
    images = [read_image_bgr(layout.image("pw3d", p)) for p in paths]
    centers = np.array([[110.0, 95.0], [130.0, 120.0], [90.0, 100.0]])
    sides = np.array([150.0, 180.4, 120.0])
    model, _ = load_estimator(checkpoint, layout, CPU)
    marks = []
    got = predict_crops(TorchEngine(model), images, centers, sides, batch_size=2, mark=marks.append)
    assert marks == ["preprocess", "model", "preprocess", "model"]  # two batches: 2 + 1
    # the same steps written out here, one image at a time
    crops = np.stack(
        [normalize(crop(im, c, float(s), 0.0, 224)[0]) for im, c, s in zip(images, centers, sides)]
    )
    with torch.inference_mode():  # in the same batches (kernels may round differently per batch size)
        parts = [
            model(torch.from_numpy(crops[i : i + 2]).contiguous(memory_format=torch.channels_last))
            for i in (0, 2)
        ]
    expected = {key: torch.cat([p[key] for p in parts]).double().numpy() for key in parts[0]}
    assert got.rotmat.dtype == np.float64 and got.rotmat.shape == (3, 24, 3, 3)
    assert np.array_equal(got.rotmat, expected["pred_pose"])
    assert np.array_equal(got.betas, expected["pred_shape"]) and np.array_equal(got.cam, expected["pred_cam"])
    assert np.abs(np.diff(got.cam, axis=0)).max() > 1e-4  # the predictions follow the image
    empty = predict_crops(TorchEngine(model), [], np.zeros((0, 2)), np.zeros(0))
    assert empty.rotmat.shape == (0, 24, 3, 3) and empty.cam.shape == (0, 3)
    pytest.importorskip("onnxruntime", reason="the ONNX engine needs gtacli[onnx]")
    pytest.importorskip("onnx", reason="the ONNX engine needs gtacli[onnx]")
    root = tmp_path / "data"  # the export goes to this root's cache, not the shared tree's
    root.mkdir()
    for entry in sample_tree.iterdir():
        if entry.name != "cache":
            (root / entry.name).symlink_to(entry)
    onnx_engine = load_engine(checkpoint, DataLayout(root), CPU, "onnxruntime")
    other = predict_crops(onnx_engine, images, centers, sides, batch_size=3)
    np.testing.assert_allclose(other.rotmat, got.rotmat, atol=1e-4)
    np.testing.assert_allclose(other.cam, got.cam, atol=1e-4)
