"""The large weights of an ONNX model file, read once so that the onnxruntime sessions of one process
share them instead of each holding a copy.

onnxruntime copies a model's initializers into every session it creates; a Piper voice with a session
for one thread and one for every core held its 60 MB of weights twice. Tensors given to
``SessionOptions.add_initializer`` are used where they are, so the sessions that get the same arrays
share them. The reader below walks just enough of the ONNX protobuf (``ModelProto.graph``,
``GraphProto.initializer``, ``TensorProto``) to find them, without the ``onnx`` package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["large_float_weights"]

# Field numbers of onnx.proto3.
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_NAME, _TENSOR_RAW_DATA = 1, 2, 8, 9
_TENSOR_DATA_LOCATION = 14
_FLOAT = 1
_EXTERNAL = 1

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint in the ONNX file")


def _fields(buf: memoryview, start: int, end: int) -> Any:
    """(field number, wire type, value) of each field in ``buf[start:end]``; a length-delimited
    field's value is its (start, end)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == _BYTES:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError("truncated field in the ONNX file")
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire == _FIXED64:
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} in the ONNX file")


def _tensor(buf: memoryview, start: int, end: int, min_elements: int) -> tuple[str, np.ndarray] | None:
    dims: list[int] = []
    name = ""
    data_type = 0
    raw: tuple[int, int] | None = None
    external = False
    for number, wire, value in _fields(buf, start, end):
        if number == _TENSOR_DIMS:
            if wire == _VARINT:
                dims.append(value)
            else:  # packed
                pos, stop = value
                while pos < stop:
                    dim, pos = _varint(buf, pos)
                    dims.append(dim)
        elif number == _TENSOR_DATA_TYPE and wire == _VARINT:
            data_type = value
        elif number == _TENSOR_NAME and wire == _BYTES:
            name = bytes(buf[value[0] : value[1]]).decode()
        elif number == _TENSOR_RAW_DATA and wire == _BYTES:
            raw = value
        elif number == _TENSOR_DATA_LOCATION and wire == _VARINT:
            external = value == _EXTERNAL
    count = int(np.prod(dims)) if dims else 1
    if data_type != _FLOAT or raw is None or external or count < min_elements or not name:
        return None
    if raw[1] - raw[0] != 4 * count:
        raise ValueError(f"tensor {name!r} in the ONNX file has a wrong size")
    # A copy: aligned, writable, and the file's bytes can go.
    array = np.frombuffer(buf[raw[0] : raw[1]], dtype="<f4").astype(np.float32).reshape(dims)
    return name, array


def large_float_weights(path: Path, min_elements: int = 4096) -> dict[str, np.ndarray]:
    """The float32 initializers of the ONNX model at ``path`` with at least ``min_elements`` values
    (the weights; small tensors stay with each session), by name.

    Raises :class:`ValueError` for a file that is not a well-formed ONNX model."""
    data = Path(path).read_bytes()
    buf = memoryview(data)
    weights: dict[str, np.ndarray] = {}
    try:
        for number, wire, value in _fields(buf, 0, len(buf)):
            if number != _MODEL_GRAPH or wire != _BYTES:
                continue
            for g_number, g_wire, g_value in _fields(buf, value[0], value[1]):
                if g_number == _GRAPH_INITIALIZER and g_wire == _BYTES:
                    found = _tensor(buf, g_value[0], g_value[1], min_elements)
                    if found is not None:
                        weights[found[0]] = found[1]
    except IndexError:
        raise ValueError("truncated ONNX file") from None
    finally:
        buf.release()
    return weights
