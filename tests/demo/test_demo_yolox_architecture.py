"""benchmarks/yolox_architecture.py: the random-weight YOLOX-S that `bench_demo.py` times where the zoo's weights
cannot be downloaded. It must be the published network's size and have the zoo file's inputs and outputs, and
gtacli's own YoloxDetector must run it in both runtimes (OpenCV DNN for the torch engine, onnxruntime for the
onnxruntime engine) with the same raw output."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gtacli.demo.detect import YoloxDetector

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "yolox_architecture.py"
spec = importlib.util.spec_from_file_location("yolox_architecture", SCRIPT)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

# YOLOX-S as published (Ge et al. 2021, Table 3 / the megvii model zoo): 9.0 M parameters; the OpenCV zoo's
# object_detection_yolox_2022nov.onnx is 35,858,002 bytes (float32 weights, BatchNorm folded)
PUBLISHED_PARAMS_M = 9.0
ZOO_FILE_BYTES = 35_858_002


def test_the_network_has_yolox_s_size():
    params = sum(p.numel() for p in tool.YoloxS().parameters())
    assert abs(params / 1e6 - PUBLISHED_PARAMS_M) < 0.1, params


@pytest.mark.slow
def test_the_export_has_the_zoo_files_shape_and_runs_in_both_runtimes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    assert ort is not None
    path = tool.write_yolox_s_onnx(tmp_path / "yolox_s.onnx")
    assert abs(path.stat().st_size - ZOO_FILE_BYTES) / ZOO_FILE_BYTES < 0.01
    frame = np.random.default_rng(0).integers(0, 256, (1920, 1080, 3), dtype=np.uint8)
    opencv = YoloxDetector(path, runtime="opencv")
    onnx = YoloxDetector(path, runtime="onnxruntime")
    assert onnx.session.get_inputs()[0].name == "images"
    assert list(onnx.session.get_inputs()[0].shape) == [1, 3, 640, 640]
    blob, _ = onnx.preprocess(frame)
    raw_ort = onnx.session.run(None, {"images": blob})[0]
    opencv.net.setInput(blob)
    raw_cv = opencv.net.forward()
    assert raw_ort.shape == (1, 8400, 85)  # 80x80 + 40x40 + 20x20 anchors; 4 box + objectness + 80 classes
    assert np.allclose(raw_ort, raw_cv, atol=1e-4)
    scores = raw_ort[0, :, 4:]
    assert scores.min() >= 0.0 and scores.max() <= 1.0  # objectness and classes leave the graph sigmoided
    assert len(onnx(frame).boxes) == len(opencv(frame).boxes)
