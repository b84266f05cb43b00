"""A minimal ONNX model (one Relu) encoded by hand in protobuf wire format: the `onnx` package is not a
dependency, and OpenCV only needs the bytes. Field numbers from onnx/onnx.proto (ModelProto, GraphProto,
NodeProto, ValueInfoProto, TypeProto.Tensor, TensorShapeProto, OperatorSetIdProto)."""

from __future__ import annotations


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, dims) -> bytes:
    shape = b"".join(_field(1, _field(1, d)) for d in dims)  # TensorShapeProto.dim { dim_value }
    tensor = _field(1, 1) + _field(2, shape)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor))  # name, type { tensor_type }


def relu_model(dims=(1, 3, 4, 4)) -> bytes:
    node = _field(1, "x") + _field(2, "y") + _field(3, "relu") + _field(4, "Relu")
    graph = (
        _field(1, node)
        + _field(2, "g")
        + _field(11, _value_info("x", dims))
        + _field(12, _value_info("y", dims))
    )
    return _field(1, 7) + _field(8, _field(2, 11)) + _field(7, graph)  # ir_version, opset_import, graph
