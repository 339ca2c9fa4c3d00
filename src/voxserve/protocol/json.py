"""JSON on the wire: one safe :func:`loads`, one compact :func:`dumps`, and typed field readers.

Every parser in :mod:`voxserve.protocol` reads text through :func:`loads`, so every protocol refuses
the same inputs the same way:

- text that is not JSON (or bytes that are not UTF-8): :class:`InvalidRequest` ``invalid_json``;
- JSON nested deeper than :data:`MAX_DEPTH` arrays or objects: ``invalid_json`` too. The depth is
  measured without recursion before :func:`json.loads` runs, so 200 KB of ``[[[...`` costs one linear
  scan instead of a :class:`RecursionError` (which is also caught, should the interpreter's limit be
  lower than the bound).

The field readers (:func:`get_str`, :func:`get_int`, ...) check one field's type and raise
:class:`InvalidRequest` with the caller's code, so no parser ever leaks ``KeyError`` or ``TypeError``.
A flat message (its ``"type"``, then its fields) declares only its fields: :class:`WireMessage`
serialises them in order and reads each with the reader of its annotated type (:func:`read_fields`).
"""

from __future__ import annotations

import binascii
import dataclasses
import functools
import json
import re
import typing
from collections.abc import Callable, Mapping
from itertools import accumulate
from typing import Any, ClassVar, Self

from voxserve.errors import InvalidRequest

__all__ = [
    "decode_base64",
    "MAX_DEPTH",
    "JsonFields",
    "WireMessage",
    "describe",
    "dumps",
    "fields_json",
    "get_bool",
    "get_int",
    "get_list",
    "get_number",
    "get_object",
    "get_opt_int",
    "get_opt_number",
    "get_opt_str",
    "get_str",
    "invalid",
    "loads",
    "nesting_depth",
    "read_fields",
]

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a wire message may have (no voxserve message needs 8)."""

# A JSON string, escapes included, or an unterminated one up to the end of the text. Possessive
# quantifiers and the end-of-text alternative make every match attempt consume all it scans, so the
# scan stays linear even for '"\\"\\"\\"...' (a pattern that must find a closing quote would restart
# at each of those quotes and scan to the end each time: quadratic).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def invalid(code: str, message: str, *, param: str | None = None) -> InvalidRequest:
    """An :class:`InvalidRequest` with a stable ``code`` (the error a peer is sent)."""
    return InvalidRequest(message, code=code, param=param)


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in ``text`` (brackets inside strings do not count).

    Linear time, no recursion; meaningful for any text, JSON or not.
    """
    if text.count("[") + text.count("{") == 0:
        return 0
    brackets = _BRACKETS.findall(_STRING.sub("", text))
    return max(0, max(accumulate(_STEP[b] for b in brackets), default=0))


def loads(
    data: str | bytes,
    *,
    code: str = "invalid_json",
    message: str = "text messages must be JSON",
) -> Any:
    """Parse one JSON text; raise :class:`InvalidRequest` ``code`` (``invalid_json``) with ``message``
    if it is not JSON, not UTF-8, or nested deeper than :data:`MAX_DEPTH`.

    ``NaN`` and ``Infinity`` are accepted, as Python's :mod:`json` does; range checks refuse them.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise invalid(code, message) from None
    # The cheap count bounds the depth from above: most messages skip the scan.
    if data.count("[") + data.count("{") > MAX_DEPTH and nesting_depth(data) > MAX_DEPTH:
        raise invalid(code, message)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # JSONDecodeError, too many int digits, deep nesting
        raise invalid(code, message) from None


def dumps(obj: Mapping[str, Any], *, ensure_ascii: bool = True) -> str:
    """Compact JSON (``","`` and ``":"`` separators), as every voxserve endpoint sends it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=ensure_ascii)


def describe(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages that quote a peer's value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class WireMessage:
    """Base of every typed wire message: a JSON object whose ``"type"`` is :attr:`type`.

    Subclasses are frozen dataclasses. A *flat* message, whose JSON is its ``"type"`` and then each
    field in order, with the value as it is, declares only its fields: :meth:`to_json` and
    :meth:`from_json` come from them (see :func:`fields_json` and :func:`read_fields`). Any other wire
    shape implements both.
    """

    type: ClassVar[str]
    """The message's ``"type"`` on the wire."""

    def to_json(self) -> dict[str, Any]:
        """The message as a JSON object (a ``dict`` ready for :func:`json.dumps`)."""
        body = fields_json(self)  # first: the abstract base has no type, and raises NotImplementedError
        return {"type": self.type} | body

    def to_text(self) -> str:
        """The message as one compact JSON text (a WebSocket text frame)."""
        return dumps(self.to_json())

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Build the message from a parsed JSON object whose ``"type"`` is :attr:`type`.

        Raises:
            InvalidRequest: a field has the wrong type or value (the code says which rule).
        """
        return cls(**read_fields(cls, obj))


# ------------------------------------------------------------------------------- field readers
#
# ``obj[key]`` must have the named type; absent keys take ``default`` when one is given. Booleans are
# never numbers (``True`` is an ``int`` to Python, not to a peer). Each raises ``invalid(code, ...)``.

_ABSENT: Any = object()


def _get(
    obj: Mapping[str, Any], key: str, code: str, default: Any, ok: type | tuple[type, ...], what: str
) -> Any:
    """``obj[key]``, or ``default`` when it is absent. Raises ``{key} is required`` when there is
    neither, ``{key} must be {what}`` unless the value is an ``ok`` (a boolean is one only for ``bool``)."""
    value = obj.get(key, default)
    if value is _ABSENT:
        raise invalid(code, f"{key} is required", param=key)
    if not isinstance(value, ok) or (isinstance(value, bool) and ok is not bool):
        raise invalid(code, f"{key} must be {what}", param=key)
    return value


def get_str(obj: Mapping[str, Any], key: str, *, code: str = "invalid_event", default: Any = _ABSENT) -> str:
    """``obj[key]`` as a string."""
    value: str = _get(obj, key, code, default, str, "a string")
    return value


def get_opt_str(obj: Mapping[str, Any], key: str, *, code: str = "invalid_event") -> str | None:
    """``obj[key]`` as a string or ``None`` (absent or ``null``)."""
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid(code, f"{key} must be a string or null", param=key)
    return value


def get_bool(
    obj: Mapping[str, Any], key: str, *, code: str = "invalid_event", default: Any = _ABSENT
) -> bool:
    """``obj[key]`` as a boolean (``true``/``false`` only)."""
    value: bool = _get(obj, key, code, default, bool, "true or false")
    return value


def get_int(obj: Mapping[str, Any], key: str, *, code: str = "invalid_event", default: Any = _ABSENT) -> int:
    """``obj[key]`` as an integer."""
    value: int = _get(obj, key, code, default, int, "an integer")
    return value


def get_opt_int(obj: Mapping[str, Any], key: str, *, code: str = "invalid_event") -> int | None:
    """``obj[key]`` as an integer or ``None`` (absent or ``null``)."""
    return None if obj.get(key) is None else get_int(obj, key, code=code)


def get_number(
    obj: Mapping[str, Any], key: str, *, code: str = "invalid_event", default: Any = _ABSENT
) -> float:
    """``obj[key]`` as a number; an integer stays an ``int`` so that it serialises as it came."""
    value: float = _get(obj, key, code, default, (int, float), "a number")
    return value


def get_opt_number(obj: Mapping[str, Any], key: str, *, code: str = "invalid_event") -> float | None:
    """``obj[key]`` as a number or ``None`` (absent or ``null``)."""
    return None if obj.get(key) is None else get_number(obj, key, code=code)


def get_object(
    obj: Mapping[str, Any], key: str, *, code: str = "invalid_event", default: Any = _ABSENT
) -> dict[str, Any]:
    """``obj[key]`` as a JSON object."""
    value: dict[str, Any] = _get(obj, key, code, default, dict, "an object")
    return value


def get_list(
    obj: Mapping[str, Any], key: str, *, code: str = "invalid_event", default: Any = _ABSENT
) -> list[Any]:
    """``obj[key]`` as a JSON array."""
    value: list[Any] = _get(obj, key, code, default, list, "an array")
    return value


# ------------------------------------------------------------------------------- flat messages
#
# A flat message's fields are read by their annotated type: each type has one reader above. A field
# with a default takes it when the key is absent; an optional one (``X | None``) is ``None`` then.

_READERS: dict[Any, Callable[..., Any]] = {
    str: get_str,
    int: get_int,
    float: get_number,
    bool: get_bool,
    str | None: get_opt_str,
    int | None: get_opt_int,
    float | None: get_opt_number,
}
_OPTIONAL = frozenset({get_opt_str, get_opt_int, get_opt_number})

_Read = Callable[[Mapping[str, Any], str], Any]


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    if not dataclasses.is_dataclass(cls):
        raise NotImplementedError(f"{cls.__name__} is not a dataclass: it implements to_json and from_json")
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _field_readers(cls: type, skip: frozenset[str]) -> tuple[tuple[str, _Read], ...]:
    """Each field's name and reader (its default bound), ``skip`` left out; a field whose type has
    no reader (or whose default the reader cannot take) is a :class:`TypeError`."""
    _field_names(cls)
    hints = typing.get_type_hints(cls)
    readers: list[tuple[str, _Read]] = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        reader = _READERS.get(hints[f.name])
        has_default = f.default is not dataclasses.MISSING
        if reader is None or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: not a flat field; write from_json by hand")
        if reader in _OPTIONAL:
            if has_default and f.default is not None:
                raise TypeError(f"{cls.__name__}.{f.name}: an optional field's default must be None")
        elif has_default:
            reader = functools.partial(reader, default=f.default)
        readers.append((f.name, reader))
    return tuple(readers)


def fields_json(message: object) -> dict[str, Any]:
    """A dataclass's fields as a JSON object: each field, in order, with its value as it is."""
    cls: type = type(message)
    return {name: getattr(message, name) for name in _field_names(cls)}


def read_fields(cls: type, obj: Mapping[str, Any], *, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields of dataclass ``cls`` (but ``skip``) read from ``obj``, each with the reader of its
    annotated type (``str``, ``int``, ``float``, ``bool`` or one of them ``| None``).

    Raises:
        InvalidRequest: ``invalid_event``, a field missing or of the wrong type.
    """
    return {name: read(obj, name) for name, read in _field_readers(cls, skip)}


class JsonFields:
    """A frozen dataclass (not a message: no ``"type"``) whose JSON object is its fields, in order."""

    def to_json(self) -> dict[str, Any]:
        """The object as JSON."""
        return fields_json(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Self:
        """Raises :class:`InvalidRequest` ``invalid_event`` for a malformed object."""
        return cls(**read_fields(cls, obj))


def decode_base64(text: object) -> bytes:
    """Strict RFC 4648 base64 (as the streaming routes take audio): only the alphabet, padding only
    to complete the last quantum. Raises :class:`binascii.Error` (a ``ValueError``) for anything
    else, whitespace, a data-URL prefix, URL-safe characters or excess padding (``"AAAA="``) included,
    and ``TypeError`` when ``text`` is not a string."""
    if not isinstance(text, str):
        raise TypeError("base64 audio must be a string")
    if not text.isascii() or len(text) % 4:
        # strict_mode still takes excess padding after a whole quantum ("AAAA="); the length does not.
        raise binascii.Error("base64 audio must be ASCII, in whole 4-character groups")
    return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
