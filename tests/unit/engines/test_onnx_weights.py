"""The ONNX weight reader finds the same tensors as the ``onnx`` package, and refuses a broken file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from voxserve.engines.onnx_weights import large_float_weights
from voxserve.engines.piper import default_voice_paths


def _model(path: Path, packed_dims: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    big = rng.standard_normal((64, 80)).astype(np.float32)
    small = rng.standard_normal((3,)).astype(np.float32)
    ints = np.arange(5000, dtype=np.int64)
    inits = [numpy_helper.from_array(a, n) for a, n in ((big, "big"), (small, "small"), (ints, "ints"))]
    # A tensor kept in float_data rather than raw_data: left to the session.
    inits.append(helper.make_tensor("listed", TensorProto.FLOAT, [4096], [0.5] * 4096, raw=False))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 80])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 80])
    graph = helper.make_graph([helper.make_node("Add", ["x", "big"], ["y"])], "g", [x], [y], inits)
    onnx.save(helper.make_model(graph), str(path))
    return {"big": big}


def test_a_small_model_gives_its_large_float_raw_tensors_only(tmp_path: Path) -> None:
    expected = _model(tmp_path / "m.onnx")
    found = large_float_weights(tmp_path / "m.onnx")
    assert set(found) == set(expected)
    np.testing.assert_array_equal(found["big"], expected["big"])
    assert found["big"].flags.c_contiguous and found["big"].flags.aligned and found["big"].flags.writeable


def test_the_bundled_voice_weights_equal_what_onnx_reads() -> None:
    (path,) = default_voice_paths()
    found = large_float_weights(path)
    reference = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    assert len(found) > 100
    assert sum(a.nbytes for a in found.values()) > 50 * 2**20
    for name, array in found.items():
        assert array.shape == reference[name].shape
        np.testing.assert_array_equal(array, reference[name])
    big = [n for n, a in reference.items() if a.dtype == np.float32 and a.size >= 4096]
    assert sorted(big) == sorted(found)


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_a_truncated_file_is_refused(tmp_path: Path, cut: float) -> None:
    _model(tmp_path / "m.onnx")
    data = (tmp_path / "m.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match="truncated"):
        large_float_weights(tmp_path / "cut.onnx")
