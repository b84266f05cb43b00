"""The YOLOX person detector through cv2.dnn, on a tiny ONNX model written by the test in YOLOX's layout:
input (1, 3, S, S), raw output (1, N, 85) over strides 8/16/32. Checks loading, pre-processing and decoding
against values worked out here from the published decoding rules (OpenCV model zoo object_detection_yolox)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from onnx_bytes import yolox_like_model

from gtacli.demo.detect import YoloxDetector, build_detector
from gtacli.errors import BadFileError, UsageError

SIZE = 64  # network input; anchors: 8x8 (stride 8) + 4x4 (stride 16) + 2x2 (stride 32) = 84
ROWS = 84
FRAME_HW = (96, 128)  # letterbox ratio min(64/96, 64/128) = 0.5


def anchor(stride, gx, gy):
    """Row of cell (gx, gy) at `stride`: levels in stride order, x fastest within a level."""
    offset = {8: 0, 16: 64, 32: 80}[stride]
    return offset + gy * (SIZE // stride) + gx


def raw_head():
    raw = np.zeros((ROWS, 85), np.float32)
    # person at stride 8, cell (3, 2): centre ((3 + 0.5) 8, (2 + 0.25) 8) = (28, 18), size (2.5 x 8, 5 x 8)
    raw[anchor(8, 3, 2), :5] = (0.5, 0.25, math.log(2.5), math.log(5.0), 0.9)
    raw[anchor(8, 3, 2), 5] = 0.8  # score 0.72
    # the same box from the next cell with a lower score: removed by NMS
    raw[anchor(8, 4, 2), :5] = (-0.5, 0.25, math.log(2.5), math.log(5.0), 0.9)
    raw[anchor(8, 4, 2), 5] = 0.5
    # a confident car (class 2): not a person
    raw[anchor(16, 2, 1), :5] = (0.0, 0.0, 0.0, 0.0, 0.95)
    raw[anchor(16, 2, 1), 5 + 2] = 0.95
    raw[anchor(16, 2, 1), 5] = 0.1
    # person at stride 32, cell (1, 1): centre (48, 48), size (32, 64), score 0.6
    raw[anchor(32, 1, 1), :5] = (0.5, 0.5, 0.0, math.log(2.0), 0.75)
    raw[anchor(32, 1, 1), 5] = 0.8
    return raw


@pytest.fixture()
def model_path(tmp_path):
    weights = np.zeros((3, ROWS, 85), np.float32)
    path = tmp_path / "detectors" / "object_detection_yolox_2022nov.onnx"
    path.parent.mkdir()
    path.write_bytes(yolox_like_model(SIZE, raw_head(), weights))
    return path


def test_decodes_grid_strides_scores_and_nms_into_image_pixels(model_path):
    dets = YoloxDetector(model_path, input_size=SIZE)(np.zeros((*FRAME_HW, 3), np.uint8))
    order = np.argsort(-dets.scores)
    # network boxes (cx, cy, w, h) (28, 18, 20, 40) and (48, 48, 32, 64), divided by the letterbox ratio 0.5
    expect = np.array([[56 - 20, 36 - 40, 40, 80], [96 - 32, 96 - 64, 64, 128]], float)
    np.testing.assert_allclose(dets.boxes[order], expect, atol=1e-4)
    np.testing.assert_allclose(dets.scores[order], [0.72, 0.6], atol=1e-6)


def test_preprocessing_letterboxes_rgb_unnormalised(model_path, tmp_path):
    frame = np.zeros((*FRAME_HW, 3), np.uint8)
    frame[:] = (10, 20, 200)  # BGR
    blob, ratio = YoloxDetector(model_path, input_size=SIZE).preprocess(frame)
    assert blob.shape == (1, 3, SIZE, SIZE) and blob.dtype == np.float32 and ratio == 0.5
    # top-left 64 x 48 holds the image as RGB 0-255; the rest is grey 114
    np.testing.assert_array_equal(blob[0, :, :48, :].reshape(3, -1).max(1), [200, 20, 10])
    np.testing.assert_array_equal(blob[0, :, :48, :].reshape(3, -1).min(1), [200, 20, 10])
    assert (blob[0, :, 48:, :] == 114).all()
    # and the network really sees it: objectness of the stride-32 person = mean of input channel 0 (red) / 255
    weights = np.zeros((3, ROWS, 85), np.float32)
    raw = raw_head()
    raw[anchor(32, 1, 1), 4] = 0.0
    weights[0, anchor(32, 1, 1), 4] = 1.0 / 255.0
    path = tmp_path / "mean.onnx"
    path.write_bytes(yolox_like_model(SIZE, raw, weights))
    dets = YoloxDetector(path, input_size=SIZE, score_threshold=0.01)(frame)
    red_mean = (48 * 64 * 200 + 16 * 64 * 114) / (64 * 64)
    tall = np.argmax(dets.boxes[:, 3])
    assert dets.scores[tall] == pytest.approx(red_mean / 255 * 0.8, rel=1e-5)


def test_auto_uses_yolox_when_present_and_checks_the_pinned_hash(model_path):
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert build_detector("auto", yolox_weights=model_path, yolox_sha256=digest).describe()["name"] == "yolox"
    assert (
        build_detector("auto", yolox_weights=model_path.with_name("absent.onnx")).describe()["name"] == "hog"
    )
    with pytest.raises(BadFileError) as info:
        build_detector("yolox", yolox_weights=model_path, yolox_sha256="0" * 64)
    assert "gtacli fetch detector --force" in str(info.value) and "\n" not in str(info.value)


def test_garbage_weights_are_one_line_not_an_opencv_dump(model_path):
    model_path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(BadFileError) as info:
        build_detector("yolox", yolox_weights=model_path)
    text = str(info.value)
    assert "OpenCV cannot load" in text and "\n" not in text and "error:" not in text


def test_unknown_detector_lists_the_valid_names():
    with pytest.raises(UsageError) as info:
        build_detector("rcnn")
    assert "auto, yolox, hog, ssd, yolo" in str(info.value)


def test_manifest_pins_the_published_yolox_weights():
    """Values from the Git LFS pointer of opencv/opencv_zoo models/object_detection_yolox/
    object_detection_yolox_2022nov.onnx (commit c79d919): its oid and size."""
    from gtacli.assets.manifest import load_manifest

    asset = load_manifest().get("detector")
    assert asset.group == "detector" and asset.validator == {"kind": "onnx"}
    assert asset.sha256 == "c5c2d13e59ae883e6af3b45daea64af4833a4951c92d116ec270d9ddbe998063"
    assert asset.size == 35858002
    assert asset.dest == "detectors/object_detection_yolox_2022nov.onnx"
    assert asset.url.endswith("/models/object_detection_yolox/object_detection_yolox_2022nov.onnx")


def test_yolox_in_onnxruntime_detects_what_opencv_detects(model_path, tmp_path):
    """With the demo's engine onnxruntime, YOLOX runs there: the same raw head, so the same people."""
    pytest.importorskip("onnxruntime", reason="the ONNX engine needs gtacli[onnx]")
    weights = np.zeros((3, ROWS, 85), np.float32)
    weights[0, anchor(32, 1, 1), 4] = 1.0 / 255.0  # an output that depends on the image
    path = tmp_path / "image_dependent.onnx"
    path.write_bytes(yolox_like_model(SIZE, raw_head(), weights))
    frame = np.random.default_rng(0).integers(0, 255, (*FRAME_HW, 3), dtype=np.uint8)
    opencv = YoloxDetector(path, input_size=SIZE)
    ort = YoloxDetector(path, input_size=SIZE, runtime="onnxruntime")
    assert opencv.describe()["runtime"] == "opencv-dnn" and ort.describe()["runtime"] == "onnxruntime"
    got, expected = ort(frame), opencv(frame)
    assert len(got.boxes) == len(expected.boxes) == 2
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-4)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-6)
    model_path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(BadFileError) as info:
        build_detector("yolox", yolox_weights=model_path, engine="onnxruntime")
    assert "gtacli fetch detector --force" in str(info.value) and "\n" not in str(info.value)
