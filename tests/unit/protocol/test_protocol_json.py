"""Tests for :mod:`voxserve.protocol.json`: the safe reader and the field readers."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest

from voxserve.errors import InvalidRequest
from voxserve.protocol import json as wire


def test_loads_plain_values() -> None:
    assert wire.loads('{"type":"x","n":[1,2.5,null,true]}') == {"type": "x", "n": [1, 2.5, None, True]}
    assert wire.loads(b'{"t":"\xc3\xbc"}') == {"t": "ü"}
    assert wire.loads("NaN") != wire.loads("NaN")  # accepted, as Python's json does


@pytest.mark.parametrize(
    "text",
    ["", " ", "{", "{'a':1}", "[1,]", "1" * 5000, '"\\x"', "[" * 65 + "]" * 65, "[" * 200_000, "{" * 10],
)
def test_loads_refuses(text: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        wire.loads(text)
    assert (info.value.code, info.value.message) == ("invalid_json", "text messages must be JSON")


def test_loads_refuses_bad_utf8_with_custom_code() -> None:
    with pytest.raises(InvalidRequest) as info:
        wire.loads(b"\xff\xfe", code="invalid_config", message="first message")
    assert (info.value.code, info.value.message) == ("invalid_config", "first message")


def test_depth_bound_is_exact() -> None:
    assert wire.loads("[" * wire.MAX_DEPTH + "]" * wire.MAX_DEPTH) is not None
    deep_objects = '{"a":' * (wire.MAX_DEPTH + 1) + "0" + "}" * (wire.MAX_DEPTH + 1)
    with pytest.raises(InvalidRequest):
        wire.loads(deep_objects)


def test_brackets_in_strings_do_not_count() -> None:
    text = '{"a":"' + "[" * 500 + '\\"{{{", "b":["]]]]"]}'
    assert wire.nesting_depth(text) == 2
    assert wire.loads(text)["b"] == ["]]]]"]
    assert wire.nesting_depth("no brackets") == 0
    assert wire.nesting_depth("]]][") == 0
    assert wire.nesting_depth("[[]]]") == 2


def test_depth_scan_is_linear_on_escaped_quotes() -> None:
    # Each '"' could start a string that never ends: a scan that restarted at each one was quadratic.
    text = '"' + '\\"' * 100_000 + "[" * (wire.MAX_DEPTH + 1)
    started = time.perf_counter()
    with pytest.raises(InvalidRequest):
        wire.loads(text)
    assert wire.nesting_depth(text) == 0
    assert wire.nesting_depth('"a\\' + "[" * 3) == 0
    assert time.perf_counter() - started < 2.0


def test_recursion_error_is_invalid_json(monkeypatch: pytest.MonkeyPatch) -> None:
    # Below the bound, but the interpreter has little stack left: still a clean invalid_json.
    monkeypatch.setattr(wire, "MAX_DEPTH", 10**9)
    limit = sys.getrecursionlimit()
    with pytest.raises(InvalidRequest):
        wire.loads("[" * (limit * 2) + "]" * (limit * 2))


def test_dumps_is_compact() -> None:
    assert wire.dumps({"a": [1, "ü"], "b": None}) == '{"a":[1,"\\u00fc"],"b":null}'
    assert wire.dumps({"a": "ü"}, ensure_ascii=False) == '{"a":"ü"}'


def test_describe_cuts_long_values() -> None:
    assert wire.describe("abc") == "'abc'"
    assert wire.describe("x" * 100) == "'" + "x" * 56 + "..."
    assert len(wire.describe(list(range(1000)))) == 60


@pytest.mark.parametrize(
    ("reader", "good", "bad"),
    [
        (wire.get_str, "s", 1),
        (wire.get_int, 3, True),
        (wire.get_int, 3, 3.0),
        (wire.get_number, 2.5, "2.5"),
        (wire.get_number, 2, False),
        (wire.get_bool, False, 0),
        (wire.get_object, {"a": 1}, [1]),
        (wire.get_list, [1], {"a": 1}),
    ],
)
def test_field_readers(reader: object, good: object, bad: object) -> None:
    assert callable(reader)
    assert reader({"k": good}, "k") == good
    with pytest.raises(InvalidRequest) as info:
        reader({"k": bad}, "k")
    assert (info.value.code, info.value.param) == ("invalid_event", "k")
    with pytest.raises(InvalidRequest) as info:
        reader({}, "k", code="my_code")
    assert (info.value.code, info.value.message) == ("my_code", "k is required")
    assert reader({}, "k", default=good) == good


def test_optional_readers() -> None:
    assert wire.get_opt_str({}, "k") is None
    assert wire.get_opt_str({"k": None}, "k") is None
    assert wire.get_opt_int({"k": 4}, "k") == 4
    assert wire.get_opt_number({"k": None}, "k") is None
    for reader in (wire.get_opt_str, wire.get_opt_int, wire.get_opt_number):
        with pytest.raises(InvalidRequest):
            reader({"k": [1]}, "k")


def test_wire_message_base_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        wire.WireMessage().to_json()
    with pytest.raises(NotImplementedError):
        wire.WireMessage.from_json({})


@dataclass(frozen=True)
class _Flat(wire.WireMessage):
    type: ClassVar[str] = "flat"
    n: int
    x: float = 0.5
    s: str | None = None


@dataclass(frozen=True)
class _NotFlat(wire.WireMessage):
    type: ClassVar[str] = "not_flat"
    items: tuple[int, ...] = ()


def test_a_flat_message_reads_and_writes_its_fields_in_order() -> None:
    assert _Flat(1).to_text() == '{"type":"flat","n":1,"x":0.5,"s":null}'
    assert _Flat.from_json({"type": "flat", "n": 2, "s": "a"}) == _Flat(2, 0.5, "a")
    with pytest.raises(InvalidRequest) as info:
        _Flat.from_json({"n": True})
    assert (info.value.code, info.value.message) == ("invalid_event", "n must be an integer")
    with pytest.raises(TypeError, match="not a flat field"):
        _NotFlat.from_json({})
