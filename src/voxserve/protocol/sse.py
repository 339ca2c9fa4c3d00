"""Server-sent events (the ``text/event-stream`` format): voxserve's one parser and one serialiser.

The parser follows the WHATWG HTML standard, section 9.2.6 "Interpreting an event stream": lines end
with CRLF, LF or CR; a line that starts with ``:`` is a comment; ``field: value`` loses one space
after the colon; ``data`` lines of one event are joined with ``\\n``; a blank line dispatches the
event, and an event with no ``data`` is dropped. It is incremental and does no I/O: feed it bytes as
they arrive (:meth:`SSEDecoder.feed`), or lines already split (:meth:`SSEDecoder.feed_line`), and
it returns the complete :class:`Event` s.

One leniency on purpose: :meth:`SSEDecoder.flush` returns an event whose blank line never came (a
stream cut right after its last ``data:`` line), where the standard drops it. A client would rather
see the server's last words (often an error event) than nothing.

Used by the Python client (``POST /v1/audio/speech`` and ``/transcriptions`` with ``stream=true``),
``voxserve transcribe --stream`` and the chat's OpenAI-compatible LLM client; the server formats its
events with :func:`format_event`.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_LINE_CHARS", "Event", "SSEDecoder", "SSEError", "format_event"]

_EOL = re.compile(r"\r\n?|\n")

MAX_LINE_CHARS = 4 * 2**20
"""Longest line (and longest event) the decoder holds, in characters: a peer that never ends a line
cannot make it buffer without bound. A transcription's final event carries all of its text, so the
bound is generous."""


class SSEError(ValueError):
    """The stream broke :data:`MAX_LINE_CHARS` (or the decoder's own ``max_line_chars``)."""


@dataclass(frozen=True)
class Event:
    """One dispatched event."""

    data: str
    """The ``data`` lines, joined with ``\\n`` (the payload; voxserve and OpenAI send JSON)."""
    event: str = "message"
    """The ``event`` field (``message`` when there was none)."""
    id: str | None = None
    """The last event id seen so far in the stream (``None``: never set)."""
    retry_ms: int | None = None
    """The last ``retry`` field seen (the reconnection time asked for, in milliseconds)."""

    def json(self) -> Any:
        """``data`` parsed as JSON (raises :class:`ValueError` when it is not JSON)."""
        return json.loads(self.data)


class SSEDecoder:
    """Turns an event stream into :class:`Event` s, a piece at a time (any split is fine).

    Feed either bytes/str chunks (:meth:`feed`) or lines without their ending (:meth:`feed_line`,
    for transports that split lines themselves, such as ``httpx``'s ``iter_lines``); not both.
    """

    def __init__(self, *, max_line_chars: int = MAX_LINE_CHARS) -> None:
        self._max = max_line_chars
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._skip_lf = False
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes | str) -> list[Event]:
        """The events that ``chunk`` completes (UTF-8 bytes, or text)."""
        text = self._text.decode(chunk) if isinstance(chunk, bytes | bytearray | memoryview) else chunk
        if not self._started and (self._buffer or text):
            self._started = True
            text = text.removeprefix("\ufeff")  # a byte-order mark may open the stream
        if self._skip_lf and text:
            text = text.removeprefix("\n")  # the LF of a CRLF that was split between two chunks
            self._skip_lf = False
        buffer = self._buffer + text
        events: list[Event] = []
        start = 0
        for eol in _EOL.finditer(buffer):
            event = self.feed_line(buffer[start : eol.start()])
            if event is not None:
                events.append(event)
            start = eol.end()
        self._skip_lf = start == len(buffer) and buffer.endswith("\r")
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max:
            raise SSEError(f"an event-stream line is longer than {self._max} characters")
        return events

    def feed_line(self, line: str) -> Event | None:
        """Take one line (without its line ending); the event it dispatches, if it is blank."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (keep-alives are sent this way)
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._size += len(value) + 1
            if self._size > self._max:
                raise SSEError(f"an event is longer than {self._max} characters")
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None  # any other field is ignored, as the standard says

    def flush(self) -> Event | None:
        """The end of the stream: the last event, if its blank line never came (see the module)."""
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self.feed_line(line)
        return self._dispatch()

    def _dispatch(self) -> Event | None:
        data, event = self._data, self._event or "message"
        self._data, self._size, self._event = [], 0, ""
        if not data:
            return None
        return Event("\n".join(data), event, self._id, self._retry)


def format_event(
    data: str | Mapping[str, Any] | Sequence[Any], event: str | None = None, *, id: str | None = None
) -> bytes:
    """One event, ready to write to a ``text/event-stream`` body.

    ``data``: the payload; a ``str`` is sent as it is (one ``data:`` line per line of it), anything
    else as compact JSON (``ensure_ascii=False``: the stream is UTF-8). ``event``/``id``: optional
    fields (the OpenAI SDK reads ``data:``-only events, so voxserve's own routes send none).
    """
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if event is not None and ("\n" in event or "\r" in event):
        raise ValueError("an event name cannot hold a line break")
    if id is not None and ("\n" in id or "\r" in id or "\0" in id):
        raise ValueError("an event id cannot hold a line break or NUL")
    head = (f"event: {event}\n" if event is not None else "") + (f"id: {id}\n" if id is not None else "")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return (head + "".join(f"data: {line}\n" for line in lines) + "\n").encode("utf-8")
