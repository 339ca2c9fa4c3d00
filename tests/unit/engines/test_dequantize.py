"""The dequantiser on small graphs built like onnxruntime's dynamic quantisation builds them.

Each graph is run three ways on onnxruntime: quantised, dequantised, and a float reference made with
NumPy from the same int8 weights. The dequantised graph must match the reference to float precision
(same weights, no activation rounding) and stay close to the quantised graph (same model).
"""

from __future__ import annotations

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from voxserve.engines.dequantize import INTEGER_OPS, dequantize_file, dequantize_model  # noqa: E402

RNG = np.random.default_rng(7)
OPSET = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: dict[str, np.ndarray]) -> Any:
    graph = helper.make_graph(
        nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()]
    )
    return helper.make_model(graph, opset_imports=OPSET, ir_version=9)


def _run(model: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime

    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    return [np.asarray(o) for o in session.run(None, feed)]


def _ops(model: Any) -> set[str]:
    return {n.op_type for n in model.graph.node}


def _conv_matmul_model() -> tuple[Any, dict[str, np.ndarray]]:
    """x[1,4,8] → ConvInteger with a Floor-quantised bias (as in Kokoro) → MatMulInteger + bias."""
    wq = RNG.integers(0, 256, (6, 4, 3), dtype=np.uint8)
    wm = RNG.integers(-127, 128, (6, 5), dtype=np.int8)
    inits = {
        "wq": wq,
        "wzp": np.array(128, np.uint8),
        "ws": np.array(0.02, np.float32),
        "bias": RNG.normal(0, 0.5, 6).astype(np.float32),
        "bias_shape": np.array([1, 6, 1], np.int64),
        "wm": wm,
        "wmzp": np.zeros(5, np.int8),
        "wms": RNG.uniform(0.005, 0.02, 5).astype(np.float32),
        "mbias": RNG.normal(0, 0.5, 5).astype(np.float32),
    }
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xzp"]),
        helper.make_node("ConvInteger", ["xq", "wq", "xzp", "wzp"], ["ci"], pads=[1, 1], kernel_shape=[3]),
        helper.make_node("Mul", ["xs", "ws"], ["cs"]),
        helper.make_node("Div", ["bias", "cs"], ["bd"]),
        helper.make_node("Floor", ["bd"], ["bf"]),
        helper.make_node("Cast", ["bf"], ["bi"], to=TensorProto.INT32),
        helper.make_node("Reshape", ["bi", "bias_shape"], ["br"]),
        helper.make_node("Add", ["ci", "br"], ["cb"]),
        helper.make_node("Cast", ["cb"], ["cf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["cf", "cs"], ["y1"]),
        helper.make_node("Transpose", ["y1"], ["t"], perm=[0, 2, 1]),
        helper.make_node("DynamicQuantizeLinear", ["t"], ["tq", "ts", "tzp"]),
        helper.make_node("MatMulInteger", ["tq", "wm", "tzp", "wmzp"], ["mi"]),
        helper.make_node("Mul", ["ts", "wms"], ["ms"]),
        helper.make_node("Cast", ["mi"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["mf", "ms"], ["m"]),
        helper.make_node("Add", ["m", "mbias"], ["y"]),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return model, inits


def _conv_matmul_reference(x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    conv_w = (w["wq"].astype(np.float32) - 128) * 0.02
    padded = np.pad(x[0], ((0, 0), (1, 1)))
    conv = np.stack([np.einsum("oik,ik->o", conv_w, padded[:, t : t + 3]) for t in range(8)], axis=1)
    y1 = conv + w["bias"][:, None]
    mat_w = w["wm"].astype(np.float32) * w["wms"]
    return (y1.T @ mat_w + w["mbias"])[None]


def test_conv_and_matmul_become_float_ops() -> None:
    model, weights = _conv_matmul_model()
    x = RNG.normal(0, 1, (1, 4, 8)).astype(np.float32)
    (quantised,) = _run(model, {"x": x})
    report = dequantize_model(model)
    assert report.complete
    assert dict(report.rewritten) == {"ConvInteger": 1, "MatMulInteger": 1}
    assert _ops(model) == {"Conv", "Transpose", "MatMul", "Add"}
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert len(conv.input) == 3  # the float bias, not the quantised one
    assert {a.name for a in conv.attribute} == {"pads", "kernel_shape"}
    (floated,) = _run(model, {"x": x})
    reference = _conv_matmul_reference(x, weights)
    np.testing.assert_allclose(floated, reference, rtol=1e-4, atol=1e-4)
    # The int8 graph computes the same function, up to its activation rounding.
    assert float(np.abs(quantised - floated).max()) < 0.05 * float(np.abs(reference).max())
    # Unused quantisation constants are gone.
    assert {t.name for t in model.graph.initializer} == {
        "bias",
        "mbias",
        "wq_dequantized",
        "wm_dequantized",
    }


def test_lstm_weights_are_transposed_back() -> None:
    hidden, size, directions = 3, 4, 2
    w = RNG.integers(-127, 128, (directions, size, 4 * hidden), dtype=np.int8)
    r = RNG.integers(-127, 128, (directions, hidden, 4 * hidden), dtype=np.int8)
    inits = {
        "w": w,
        "r": r,
        "b": RNG.normal(0, 0.1, (directions, 8 * hidden)).astype(np.float32),
        "ws": np.array([0.01, 0.015], np.float32),
        "wzp": np.zeros(directions, np.int8),
        "rs": RNG.uniform(0.005, 0.02, (directions, 4 * hidden)).astype(np.float32),  # per channel
        "rzp": np.zeros((directions, 4 * hidden), np.int8),
    }
    node = helper.make_node(
        "DynamicQuantizeLSTM",
        ["x", "w", "r", "b", "", "", "", "", "ws", "wzp", "rs", "rzp"],
        ["y"],
        domain="com.microsoft",
        hidden_size=hidden,
        direction="bidirectional",
    )
    model = _model(
        [node],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    x = RNG.normal(0, 1, (5, 1, size)).astype(np.float32)
    (quantised,) = _run(model, {"x": x})
    report = dequantize_model(model)
    assert report.complete and dict(report.rewritten) == {"DynamicQuantizeLSTM": 1}
    (lstm,) = model.graph.node
    assert (lstm.op_type, lstm.domain, list(lstm.input)) == (
        "LSTM",
        "",
        ["x", "w_dequantized", "r_dequantized", "b"],
    )
    (floated,) = _run(model, {"x": x})
    # Reference: a plain LSTM with the weights dequantised by hand into ONNX's [dir, 4H, in] layout.
    w_f = (w.astype(np.float32) * inits["ws"][:, None, None]).transpose(0, 2, 1)
    r_f = (r.astype(np.float32) * inits["rs"][:, None, :]).transpose(0, 2, 1)
    ref_node = helper.make_node(
        "LSTM", ["x", "wf", "rf", "b"], ["y"], hidden_size=hidden, direction="bidirectional"
    )
    ref_model = _model(
        [ref_node],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        {"wf": w_f, "rf": r_f, "b": inits["b"]},
    )
    (reference,) = _run(ref_model, {"x": x})
    np.testing.assert_allclose(floated, reference, rtol=1e-5, atol=1e-6)
    # Close to the int8 operator, which rounds the input and hidden state to 8 bits at every step
    # (mean 0.011 here; the weights in the wrong layout give 0.33).
    assert float(np.abs(quantised - floated).mean()) < 0.05


def test_dequantize_linear_of_a_gathered_table_and_of_a_constant() -> None:
    table = RNG.integers(-127, 128, (10, 4), dtype=np.int8)
    inits = {
        "table": table,
        "scale": np.array(0.5, np.float32),
        "zp": np.array(3, np.int8),
        "const": np.array([1, 2, 3, 4], np.int8),
    }
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["g"], axis=0),
        helper.make_node("DequantizeLinear", ["g", "scale", "zp"], ["e"]),
        helper.make_node("DequantizeLinear", ["const", "scale", "zp"], ["c"]),
        helper.make_node("Add", ["e", "c"], ["y"]),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    ids = np.array([0, 9, 4], np.int64)
    (before,) = _run(model, {"ids": ids})
    report = dequantize_model(model)
    assert report.complete and dict(report.rewritten) == {"DequantizeLinear": 2}
    assert _ops(model) == {"Gather", "Add"}
    (after,) = _run(model, {"ids": ids})
    expected = (table[ids].astype(np.float32) - 3) * 0.5 + (np.arange(1, 5) - 3) * 0.5
    np.testing.assert_allclose(after, expected, rtol=1e-6)
    np.testing.assert_allclose(before, expected, rtol=1e-6)


def test_a_pattern_that_does_not_match_is_left_alone() -> None:
    """A MatMulInteger whose output is not rescaled by a constant stays, and is reported."""
    inits = {"wm": RNG.integers(-127, 128, (4, 2), dtype=np.int8)}
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xzp"]),
        helper.make_node("MatMulInteger", ["xq", "wm", "xzp"], ["mi"]),
        helper.make_node("Cast", ["mi"], ["y"], to=TensorProto.FLOAT),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    x = RNG.normal(0, 1, (2, 4)).astype(np.float32)
    (before,) = _run(model, {"x": x})
    report = dequantize_model(model)
    assert not report.complete
    assert report.remaining == {"DynamicQuantizeLinear": 1, "MatMulInteger": 1}
    (after,) = _run(model, {"x": x})
    np.testing.assert_array_equal(before, after)


def test_dequantize_file_writes_atomically(tmp_path: Path) -> None:
    model, _ = _conv_matmul_model()
    source = tmp_path / "int8.onnx"
    source.write_bytes(model.SerializeToString())
    target = tmp_path / "out" / "fp32.onnx"
    report = dequantize_file(source, target)
    assert report.complete
    assert [p.name for p in target.parent.iterdir()] == ["fp32.onnx"]  # no temporary file left
    loaded = onnx.load(str(target))
    assert not _ops(loaded) & INTEGER_OPS
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
