"""Tiny ONNX models written by hand (protobuf wire format), for testing cv2.dnn loading without `onnx`.

`relu_model`: one Relu (fetch's content check of kind "onnx"). `yolox_like_model`: the YOLOX detector's layout.
The `onnx` package (which `torch.onnx.export` needs) is not installed here, so the model is encoded directly:
input `images` (1, 3, S, S) float -> `GlobalAveragePool` -> the three channel means (1, 3) -> `MatMul` with
`weights` (3, N x 85), plus `bias` -> `Reshape` -> output (1, N, 85). With zero weights the output is the raw head
tensor `bias` whatever the image; a weight makes one output depend on one channel's mean (checks pre-processing).
Field numbers follow onnx/onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto).
"""

from __future__ import annotations

import numpy as np

FLOAT, INT64 = 1, 7  # TensorProto.DataType


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _tensor(name: str, array: np.ndarray) -> bytes:
    kind = INT64 if array.dtype == np.int64 else FLOAT
    data = array.astype("<i8" if kind == INT64 else "<f4").tobytes()
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, kind) + _str(8, name) + _bytes(9, data)


def _value_info(name: str, shape) -> bytes:
    dims = b"".join(_bytes(1, _int(1, d)) for d in shape)
    tensor_type = _int(1, FLOAT) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def _node(op: str, inputs, outputs, attrs: bytes = b"") -> bytes:
    return b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs) + _str(4, op) + attrs


def yolox_like_model(input_size: int, bias: np.ndarray, weights: np.ndarray) -> bytes:
    """ONNX bytes of the model described in the module docstring; bias (N, 85), weights (3, N, 85)."""
    rows = bias.shape[0]
    graph = b"".join(
        [
            _bytes(1, _node("GlobalAveragePool", ["images"], ["pooled"])),
            _bytes(1, _node("Reshape", ["pooled", "flat_shape"], ["flat"])),
            _bytes(1, _node("MatMul", ["flat", "weights"], ["mixed"])),
            _bytes(1, _node("Add", ["mixed", "bias"], ["summed"])),
            _bytes(1, _node("Reshape", ["summed", "out_shape"], ["output"])),
            _str(2, "yolox_like"),
            _bytes(5, _tensor("weights", weights.reshape(3, rows * 85))),
            _bytes(5, _tensor("bias", bias.reshape(1, rows * 85))),
            _bytes(5, _tensor("flat_shape", np.array([1, 3], np.int64))),
            _bytes(5, _tensor("out_shape", np.array([1, rows, 85], np.int64))),
            _bytes(11, _value_info("images", (1, 3, input_size, input_size))),
            _bytes(12, _value_info("output", (1, rows, 85))),
        ]
    )
    opset = _str(1, "") + _int(2, 13)
    return _int(1, 7) + _str(2, "gtacli-test") + _bytes(7, graph) + _bytes(8, opset)


def relu_model(dims=(1, 3, 4, 4)) -> bytes:
    """ONNX bytes of y = Relu(x) for a float tensor of shape `dims`."""
    graph = b"".join(
        [
            _bytes(1, _node("Relu", ["x"], ["y"])),
            _str(2, "g"),
            _bytes(11, _value_info("x", dims)),
            _bytes(12, _value_info("y", dims)),
        ]
    )
    return _int(1, 7) + _bytes(7, graph) + _bytes(8, _str(1, "") + _int(2, 11))


def _attr_ints(name: str, values) -> bytes:
    """AttributeProto of type INTS (7): name (1), ints (8), type (20)."""
    return _bytes(5, _str(1, name) + b"".join(_int(8, v) for v in values) + _int(20, 7))


def _attr_int(name: str, value: int) -> bytes:
    """AttributeProto of type INT (2): name (1), i (3), type (20)."""
    return _bytes(5, _str(1, name) + _int(3, value) + _int(20, 2))


def rtmpose_like_model(
    input_hw=(256, 192), keypoints: int = 17, ratio: int = 2, bias: float = 3.0, peaks=None
) -> bytes:
    """ONNX bytes in RTMPose's layout: input `input` (1, 3, H, W) -> `simcc_x` (1, K, W·ratio) and `simcc_y`
    (1, K, H·ratio). Every keypoint's x vector is the input's column profile (mean over channels and rows),
    each input pixel repeated `ratio` times, plus `bias`; y likewise with the row profile. So an image with one
    bright blob decodes to the blob's centre for every keypoint (tests the crop, the normalisation's sign
    and the SimCC decoding). `peaks` (K, 2) input pixels: keypoint k's vectors get +20 at that position instead,
    which outweighs any image (a person's layout whatever the photo). Only MatMul/Reshape/Transpose/Concat/Add:
    cv2.dnn and onnxruntime both run it."""
    h, w = input_hw
    up_x = np.zeros((w, w * ratio), np.float32)
    up_x[np.arange(w * ratio) // ratio, np.arange(w * ratio)] = 1.0
    bias_x = np.full((keypoints, w * ratio), bias, np.float32)
    bias_y = np.full((keypoints, h * ratio), bias, np.float32)
    if peaks is not None:
        for k, (px, py) in enumerate(np.asarray(peaks)):
            bias_x[k, int(round(px * ratio))] += 20.0
            bias_y[k, int(round(py * ratio))] += 20.0
    up_y = np.zeros((3 * h, h * ratio), np.float32)  # also the mean over the 3 channels
    for c in range(3):
        up_y[c * h + np.arange(h * ratio) // ratio, np.arange(h * ratio)] = 1.0 / 3.0
    graph = b"".join(
        [
            _bytes(1, _node("Reshape", ["input", "rows_shape"], ["rows"])),  # (3H, W)
            # x: column means over the 3H rows
            _bytes(1, _node("Transpose", ["rows"], ["cols"], _attr_ints("perm", [1, 0]))),  # (W, 3H)
            _bytes(1, _node("MatMul", ["cols", "mean_3h"], ["col_mean"])),  # (W, 1)
            _bytes(1, _node("Reshape", ["col_mean", "row_w"], ["col_row"])),  # (1, W)
            _bytes(1, _node("MatMul", ["col_row", "up_x"], ["x_up"])),  # (1, W r)
            _bytes(1, _node("Concat", ["x_up"] * keypoints, ["x_rep"], _attr_int("axis", 0))),  # (K, W r)
            _bytes(1, _node("Add", ["x_rep", "bias_x"], ["x_k"])),
            _bytes(1, _node("Reshape", ["x_k", "x_shape"], ["simcc_x"])),
            # y: row means over the W columns, then over the channels
            _bytes(1, _node("MatMul", ["rows", "mean_w"], ["row_mean"])),  # (3H, 1)
            _bytes(1, _node("Reshape", ["row_mean", "row_3h"], ["row_row"])),  # (1, 3H)
            _bytes(1, _node("MatMul", ["row_row", "up_y"], ["y_up"])),  # (1, H r)
            _bytes(1, _node("Concat", ["y_up"] * keypoints, ["y_rep"], _attr_int("axis", 0))),
            _bytes(1, _node("Add", ["y_rep", "bias_y"], ["y_k"])),
            _bytes(1, _node("Reshape", ["y_k", "y_shape"], ["simcc_y"])),
            _str(2, "rtmpose_like"),
            _bytes(5, _tensor("rows_shape", np.array([3 * h, w], np.int64))),
            _bytes(5, _tensor("mean_3h", np.full((3 * h, 1), 1.0 / (3 * h), np.float32))),
            _bytes(5, _tensor("row_w", np.array([1, w], np.int64))),
            _bytes(5, _tensor("up_x", up_x)),
            _bytes(5, _tensor("bias_x", bias_x)),
            _bytes(5, _tensor("x_shape", np.array([1, keypoints, w * ratio], np.int64))),
            _bytes(5, _tensor("mean_w", np.full((w, 1), 1.0 / w, np.float32))),
            _bytes(5, _tensor("row_3h", np.array([1, 3 * h], np.int64))),
            _bytes(5, _tensor("up_y", up_y)),
            _bytes(5, _tensor("bias_y", bias_y)),
            _bytes(5, _tensor("y_shape", np.array([1, keypoints, h * ratio], np.int64))),
            _bytes(11, _value_info("input", (1, 3, h, w))),
            _bytes(12, _value_info("simcc_x", (1, keypoints, w * ratio))),
            _bytes(12, _value_info("simcc_y", (1, keypoints, h * ratio))),
        ]
    )
    opset = _str(1, "") + _int(2, 13)
    return _int(1, 7) + _str(2, "gtacli-test") + _bytes(7, graph) + _bytes(8, opset)
