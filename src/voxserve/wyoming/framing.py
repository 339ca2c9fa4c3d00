"""Read one Wyoming event from a stream, bounded.

An event is a JSON header line (``type``, optional ``data``, ``data_length``, ``payload_length``), then
``data_length`` bytes of extra JSON data and ``payload_length`` bytes of binary payload. The reference
reader (``wyoming.event.async_read_event``) trusts both lengths and drops the connection silently on a
bad line; here a line, data or payload over ``max_bytes`` is refused before anything of it is buffered
(``event_too_large``: the stream cannot be resynchronised, so the caller closes), and a header that is
not a JSON object with a string ``type`` is ``malformed_event`` (the line was consumed whole, so the
connection stays usable).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wyoming.event import Event

from voxserve.errors import InvalidRequest, TextTooLong

__all__ = ["FramingError", "read_event"]


class FramingError(TextTooLong):
    """The stream is out of step or over the limit: send the error, then close."""


def _malformed(why: str) -> InvalidRequest:
    return InvalidRequest(f"malformed Wyoming event: {why}", code="malformed_event")


def _length(header: dict[str, Any], key: str, max_bytes: int) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FramingError(f"{key} must be a non-negative integer", code="malformed_event")
    if value > max_bytes:
        raise FramingError(
            f"{key} {value} is over the limit of {max_bytes} bytes per event", code="event_too_large"
        )
    return value


async def read_event(reader: asyncio.StreamReader, max_bytes: int) -> Event | None:
    """The next event; ``None`` at a clean end of stream. Raises :class:`FramingError` (close after it)
    or ``malformed_event`` (the connection goes on). The reader's own ``limit`` bounds the header line."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise FramingError("the stream ended inside a header line", code="malformed_event") from None
    except asyncio.LimitOverrunError:
        raise FramingError(
            "a header line is over the server's limit",
            code="event_too_large",
        ) from None
    if not line.strip():
        raise _malformed("empty header line")
    try:
        header = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise _malformed("the header line is not JSON") from None
    if not isinstance(header, dict):
        raise _malformed("the header is not a JSON object")
    data_length = _length(header, "data_length", max_bytes)
    payload_length = _length(header, "payload_length", max_bytes - data_length)
    data_bytes = await _read_exactly(reader, data_length)
    payload = await _read_exactly(reader, payload_length) if payload_length else None
    event_type = header.get("type")
    data = header.get("data") or {}
    if not isinstance(event_type, str) or not event_type:
        raise _malformed("the header has no 'type'")
    if not isinstance(data, dict):
        raise _malformed("'data' is not a JSON object")
    if data_bytes:
        try:
            extra = json.loads(data_bytes)
        except (ValueError, UnicodeDecodeError):
            raise _malformed("the data is not JSON") from None
        if not isinstance(extra, dict):
            raise _malformed("the data is not a JSON object")
        data = {**data, **extra}
    return Event(type=event_type, data=data, payload=payload)


async def _read_exactly(reader: asyncio.StreamReader, n: int) -> bytes:
    if n == 0:
        return b""
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise FramingError("the stream ended inside an event", code="malformed_event") from None
