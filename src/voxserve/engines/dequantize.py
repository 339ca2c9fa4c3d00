"""Turn a dynamically quantised ONNX model back into a float32 one.

onnxruntime's dynamic quantisation stores weights as int8/uint8 and quantises activations at run time
(``DynamicQuantizeLinear`` → ``MatMulInteger``/``ConvInteger`` → ``Cast`` → ``Mul`` by the scales).
On CPUs without fast integer kernels that is slower than plain float maths: the int8 Kokoro model
takes about twice as long as the float one (hexgrad/kokoro#291). This module rewrites such a graph
into float operators whose weights are the dequantised int8 values:

- ``MatMulInteger`` + ``Cast`` + ``Mul(scale)``            → ``MatMul(x, W)``
- ``ConvInteger`` [+ ``Add(quantised bias)``] + ``Cast`` + ``Mul(scale)`` → ``Conv(x, W[, bias])``
- ``DynamicQuantizeLSTM`` (com.microsoft)                 → ``LSTM`` (weights transposed back)
- ``DequantizeLinear`` of constants, or of a ``Gather`` from a constant → a float constant / ``Gather``

``W`` is ``(Wq - zero_point) * scale``, so the weights are exactly those the int8 model uses; only
the activations are no longer rounded to 8 bits. Nodes left without consumers (the activation
quantisers, scale products, bias quantisers) are removed. A pattern that does not match is left as
it was, so the result is always a valid model; :class:`DequantizeReport` says what was rewritten
and what was left.

``onnx`` is imported lazily: it is needed only to build the float model, never to run it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto, TensorProto

__all__ = ["INTEGER_OPS", "DequantizeReport", "dequantize_file", "dequantize_model"]

INTEGER_OPS = frozenset(
    {"MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeLSTM", "DequantizeLinear"}
)
"""Operators that mean a graph still computes with quantised values."""

_FloatArray = npt.NDArray[np.float32]


@dataclass
class DequantizeReport:
    """What :func:`dequantize_model` did: rewritten patterns by kind, and integer ops left over."""

    rewritten: Counter[str] = field(default_factory=Counter)
    remaining: Counter[str] = field(default_factory=Counter)

    @property
    def complete(self) -> bool:
        """True when no integer operator is left in the graph."""
        return not self.remaining


class _Rewriter:
    def __init__(self, graph: GraphProto) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self._to_array = numpy_helper.to_array
        # One list of the node objects, kept for the whole rewrite: nodes are keyed by id().
        self.nodes: list[NodeProto] = list(graph.node)
        self.inits: dict[str, TensorProto] = {t.name: t for t in graph.initializer}
        self.producer: dict[str, NodeProto] = {o: n for n in self.nodes for o in n.output if o}
        self.consumers: defaultdict[str, list[NodeProto]] = defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                if i:
                    self.consumers[i].append(n)
        self.outputs = {o.name for o in graph.output}
        self.replace: dict[int, list[NodeProto]] = {}  # id(node) -> nodes put in its place
        self.drop: set[int] = set()
        self.new_inits: list[TensorProto] = []
        self._made: dict[tuple[str, ...], str] = {}  # (how, source names, scale bytes) -> initializer
        self.report = DequantizeReport()

    # -- helpers

    def const(self, name: str) -> npt.NDArray[Any] | None:
        t = self.inits.get(name)
        return None if t is None else np.asarray(self._to_array(t))

    def only_consumer(self, name: str) -> NodeProto | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def made_by(self, name: str, op: str) -> NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def add_init(self, name: str, value: npt.NDArray[Any], key: tuple[str, ...] | None = None) -> str:
        """A new initializer holding ``value``; one per ``key`` (a weight shared by several nodes)."""
        from onnx import numpy_helper

        if key is not None and key in self._made:
            return self._made[key]
        unique = name
        k = 1
        while unique in self.inits or unique in self.producer:
            unique = f"{name}_{k}"
            k += 1
        tensor = numpy_helper.from_array(np.ascontiguousarray(value), unique)
        self.inits[unique] = tensor
        self.new_inits.append(tensor)
        if key is not None:
            self._made[key] = unique
        return unique

    def claimed(self, *nodes: NodeProto) -> bool:
        return any(id(n) in self.drop or id(n) in self.replace for n in nodes)

    def weight_scale(self, mul: NodeProto, act_scale: str) -> npt.NDArray[Any] | None:
        """The constant that ``mul`` multiplies the activation scale by (the weight scale)."""
        if mul.op_type != "Mul" or len(mul.input) != 2 or act_scale not in mul.input:
            return None
        other = mul.input[1] if mul.input[0] == act_scale else mul.input[0]
        return self.const(other)

    def scaled_output(self, int_out: str, act_scale: str) -> tuple[list[NodeProto], NodeProto, Any] | None:
        """``Cast(int_out) → Mul(·, Mul(act_scale, w_scale))``: (nodes, final Mul, w_scale)."""
        cast = self.only_consumer(int_out)
        if cast is None or cast.op_type != "Cast" or _int_attribute(cast, "to") != _FLOAT:
            return None
        mul = self.only_consumer(cast.output[0])
        if mul is None or mul.op_type != "Mul" or len(mul.input) != 2:
            return None
        other = mul.input[1] if mul.input[0] == cast.output[0] else mul.input[0]
        scale_node = self.producer.get(other)
        if scale_node is None:
            return None
        w_scale = self.weight_scale(scale_node, act_scale)
        if w_scale is None:
            return None
        return [cast, mul], mul, w_scale

    # -- patterns

    def matmul_integer(self, node: NodeProto) -> bool:
        if len(node.input) < 2:
            return False
        dql = self.made_by(node.input[0], "DynamicQuantizeLinear")
        wq = self.const(node.input[1])
        if dql is None or wq is None or (len(node.input) > 2 and node.input[2] not in ("", dql.output[2])):
            return False
        wzp = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros((), wq.dtype)
        chain = self.scaled_output(node.output[0], dql.output[1])
        if wzp is None or chain is None or self.claimed(*chain[0]):
            return False
        nodes, mul, w_scale = chain
        weight = (wq.astype(np.float32) - wzp.astype(np.float32)) * w_scale.astype(np.float32)
        key = ("MatMul", node.input[1], _digest(wzp), _digest(w_scale))
        w_name = self.add_init(f"{node.input[1]}_dequantized", weight.astype(np.float32), key)
        self._emit(node, "MatMul", [dql.input[0], w_name], mul.output[0], nodes)
        return True

    def conv_integer(self, node: NodeProto) -> bool:
        if len(node.input) < 2:
            return False
        dql = self.made_by(node.input[0], "DynamicQuantizeLinear")
        wq = self.const(node.input[1])
        if dql is None or wq is None or (len(node.input) > 2 and node.input[2] not in ("", dql.output[2])):
            return False
        wzp = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros((), wq.dtype)
        if wzp is None:
            return False
        extra: list[NodeProto] = []
        bias: str | None = None
        int_out = node.output[0]
        add = self.only_consumer(int_out)
        if add is not None and add.op_type == "Add":
            found = self._quantized_bias(add, int_out, dql.output[1])
            if found is None:
                return False
            bias, bias_nodes = found
            extra = [add, *bias_nodes]
            int_out = add.output[0]
        chain = self.scaled_output(int_out, dql.output[1])
        if chain is None or self.claimed(*chain[0], *extra):
            return False
        nodes, mul, w_scale = chain
        per_channel = (-1,) + (1,) * (wq.ndim - 1)
        zp = wzp.astype(np.float32).reshape(per_channel) if wzp.size > 1 else wzp.astype(np.float32)
        sc = w_scale.astype(np.float32)
        sc = sc.reshape(per_channel) if sc.size > 1 else sc
        weight = (wq.astype(np.float32) - zp) * sc
        key = ("Conv", node.input[1], _digest(wzp), _digest(w_scale))
        w_name = self.add_init(f"{node.input[1]}_dequantized", weight.astype(np.float32), key)
        inputs = [dql.input[0], w_name] + ([bias] if bias is not None else [])
        self._emit(node, "Conv", inputs, mul.output[0], [*extra, *nodes], copy_attributes=True)
        return True

    def _quantized_bias(
        self, add: NodeProto, int_out: str, act_scale: str
    ) -> tuple[str, list[NodeProto]] | None:
        """``Add(int_out, Reshape(Cast(Floor|Round(Div(bias, Mul(act_scale, w_scale))))))``."""
        other = add.input[1] if add.input[0] == int_out else add.input[0]
        chain: list[NodeProto] = []
        node = self.producer.get(other)
        for op in ("Reshape", "Cast"):
            if node is None or node.op_type != op or self.only_consumer(node.output[0]) is None:
                return None
            chain.append(node)
            node = self.producer.get(node.input[0])
        if node is not None and node.op_type in ("Floor", "Round"):
            chain.append(node)
            node = self.producer.get(node.input[0])
        if node is None or node.op_type != "Div":
            return None
        chain.append(node)
        bias = self.const(node.input[0])
        scale = self.producer.get(node.input[1])
        if bias is None or scale is None or self.weight_scale(scale, act_scale) is None:
            return None
        return node.input[0], chain

    def dynamic_lstm(self, node: NodeProto) -> bool:
        ins = list(node.input) + [""] * (12 - len(node.input))
        w, r = self.const(ins[1]), self.const(ins[2])
        ws, wzp, rs, rzp = (self.const(ins[i]) for i in (8, 9, 10, 11))
        if w is None or r is None or ws is None or wzp is None or rs is None or rzp is None:
            return False

        def restore(q: npt.NDArray[Any], scale: npt.NDArray[Any], zp: npt.NDArray[Any]) -> _FloatArray:
            # [directions, in, 4*hidden] with per-direction or per-(direction, channel) parameters.
            shape = (q.shape[0], 1, -1)
            zero = zp.astype(np.float32).reshape(shape)
            f = (q.astype(np.float32) - zero) * scale.astype(np.float32).reshape(shape)
            return np.ascontiguousarray(f.transpose(0, 2, 1)).astype(np.float32)

        w_name = self.add_init(f"{ins[1]}_dequantized", restore(w, ws, wzp), ("LSTM", *ins[1:2], *ins[8:10]))
        r_name = self.add_init(f"{ins[2]}_dequantized", restore(r, rs, rzp), ("LSTM", *ins[2:3], *ins[10:12]))
        inputs = [ins[0], w_name, r_name, *ins[3:8]]
        while inputs and not inputs[-1]:
            inputs.pop()
        self._emit(node, "LSTM", inputs, None, [], copy_attributes=True)
        return True

    def dequantize_linear(self, node: NodeProto) -> bool:
        scale = self.const(node.input[1]) if len(node.input) > 1 else None
        zp = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.int8)
        if scale is None or zp is None or scale.size > 1 or zp.size > 1:
            return False  # per-axis parameters: not needed here, leave the node
        data = self.const(node.input[0])
        if data is not None:
            value = (data.astype(np.float32) - zp.astype(np.float32)) * scale.astype(np.float32)
            self.add_init_as(node.output[0], value.astype(np.float32))
            self.drop.add(id(node))
            self.report.rewritten["DequantizeLinear"] += 1
            return True
        gather = self.made_by(node.input[0], "Gather")
        if gather is None or self.claimed(gather) or self.only_consumer(gather.output[0]) is not node:
            return False
        table = self.const(gather.input[0])
        if table is None:
            return False
        value = (table.astype(np.float32) - zp.astype(np.float32)) * scale.astype(np.float32)
        key = ("Gather", gather.input[0], *node.input[1:3])
        t_name = self.add_init(f"{gather.input[0]}_dequantized", value.astype(np.float32), key)
        self._emit(
            gather,
            "Gather",
            [t_name, gather.input[1]],
            node.output[0],
            [node],
            copy_attributes=True,
            kind="DequantizeLinear",
        )
        return True

    def add_init_as(self, name: str, value: npt.NDArray[Any]) -> None:
        from onnx import numpy_helper

        tensor = numpy_helper.from_array(np.ascontiguousarray(value), name)
        self.new_inits.append(tensor)

    def _emit(
        self,
        old: NodeProto,
        op: str,
        inputs: list[str],
        output: str | None,
        absorbed: Iterable[NodeProto],
        *,
        copy_attributes: bool = False,
        kind: str | None = None,
    ) -> None:
        from onnx import helper

        outputs = [output] if output is not None else list(old.output)
        new = helper.make_node(op, inputs, outputs, name=f"{old.name}_float" if old.name else "")
        if copy_attributes:
            new.attribute.extend(old.attribute)
        self.replace[id(old)] = [new]
        for n in absorbed:
            self.drop.add(id(n))
        self.report.rewritten[kind or old.op_type] += 1

    # -- driver

    def run(self) -> None:
        rules = {
            "MatMulInteger": self.matmul_integer,
            "ConvInteger": self.conv_integer,
            "DynamicQuantizeLSTM": self.dynamic_lstm,
            "DequantizeLinear": self.dequantize_linear,
        }
        for node in self.nodes:
            rule = rules.get(node.op_type)
            if rule is not None and id(node) not in self.drop and id(node) not in self.replace:
                rule(node)
        nodes: list[NodeProto] = []
        for node in self.nodes:
            if id(node) in self.drop:
                continue
            nodes.extend(self.replace.get(id(node), [node]))
        nodes = _live_nodes(nodes, self.outputs)
        used = {i for n in nodes for i in _names_used(n)}
        inits = [t for t in self.graph.initializer if t.name in used]
        inits += [t for t in self.new_inits if t.name in used]
        produced = {o for n in nodes for o in n.output}
        value_info = [v for v in self.graph.value_info if v.name in produced]
        del self.graph.node[:]
        self.graph.node.extend(nodes)
        del self.graph.initializer[:]
        self.graph.initializer.extend(inits)
        del self.graph.value_info[:]
        self.graph.value_info.extend(value_info)
        self.report.remaining = Counter(n.op_type for n in nodes if n.op_type in INTEGER_OPS)


_FLOAT = 1  # onnx.TensorProto.FLOAT


def _int_attribute(node: NodeProto, name: str) -> int | None:
    return next((int(a.i) for a in node.attribute if a.name == name), None)


def _digest(value: npt.NDArray[Any]) -> str:
    return hashlib.sha256(value.tobytes()).hexdigest() + str(value.dtype) + str(value.shape)


def _names_used(node: NodeProto) -> set[str]:
    """The node's inputs and every name its subgraphs read (If/Loop/Scan bodies)."""
    from onnx import AttributeProto

    names = {i for i in node.input if i}
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            for inner in g.node:
                names |= _names_used(inner)
    return names


def _live_nodes(nodes: list[NodeProto], outputs: set[str]) -> list[NodeProto]:
    """Drop nodes none of whose outputs is needed (dead-code elimination, one backward pass)."""
    needed = set(outputs)
    keep: list[NodeProto] = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed |= _names_used(node)
    keep.reverse()
    return keep


def dequantize_model(model: ModelProto) -> DequantizeReport:
    """Rewrite ``model`` in place into float operators; returns what was done (see module doc)."""
    rewriter = _Rewriter(model.graph)
    rewriter.run()
    return rewriter.report


def dequantize_file(source: Path, target: Path) -> DequantizeReport:
    """Read the ONNX model ``source``, dequantise it and write it to ``target`` atomically.

    The file appears under its name only when complete (temporary file in the same folder, then
    rename), so a concurrent reader never sees half a model. Raises ``ImportError`` when the ``onnx``
    package is missing.
    """
    import onnx

    model = onnx.load(str(source))
    report = dequantize_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared by several users
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return report
