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
