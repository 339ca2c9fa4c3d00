"""voxserve.protocol.sse: the one event-stream parser (WHATWG HTML 9.2.6) and its serialiser."""

from __future__ import annotations

import json

import pytest

from voxserve.protocol.sse import Event, SSEDecoder, SSEError, format_event

STREAM = (
    b": a comment\n"
    b'data: {"type": "transcript.text.delta",\n'
    b'data: "delta": "Hello"}\n'
    b"\n"
    b"event: done\n"
    b"id: 7\n"
    b"retry: 1500\n"
    b'data:{"text": "Hello"}\n'
    b"\n"
)
EXPECTED = [
    Event('{"type": "transcript.text.delta",\n"delta": "Hello"}'),
    Event('{"text": "Hello"}', "done", "7", 1500),
]


def test_a_stream_in_one_piece() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(STREAM) == EXPECTED
    assert decoder.flush() is None
    assert EXPECTED[1].json() == {"text": "Hello"}


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_split_gives_the_same_events(size: int) -> None:
    decoder = SSEDecoder()
    events = [e for i in range(0, len(STREAM), size) for e in decoder.feed(STREAM[i : i + size])]
    assert events == EXPECTED


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(eol: bytes) -> None:
    stream = STREAM.replace(b"\n", eol)
    assert SSEDecoder().feed(stream) == EXPECTED
    # Byte by byte: a CR that ends a chunk ends its line at once; an LF right after it is skipped.
    decoder = SSEDecoder()
    assert [e for i in range(len(stream)) for e in decoder.feed(stream[i : i + 1])] == EXPECTED


def test_a_utf8_character_split_across_chunks_and_a_leading_bom() -> None:
    stream = "\ufeffdata: café ☕\n\n".encode()
    decoder = SSEDecoder()
    events = [e for i in range(len(stream)) for e in decoder.feed(stream[i : i + 1])]
    assert events == [Event("café ☕")]


def test_fields_as_the_standard_says() -> None:
    decoder = SSEDecoder()
    lines = [
        "data",  # a field with no colon: an empty value
        "data:  two spaces",  # only one space is removed
        "unknown: ignored",
        "id: a\0b",  # an id with NUL is ignored
        "retry: soon",  # not digits: ignored
        "",
        "event: only an event",
        "",  # no data: nothing is dispatched, and the event type is reset
        "data: x",
        "",
    ]
    events = [e for e in map(decoder.feed_line, lines) if e is not None]
    assert events == [Event("\n two spaces"), Event("x")]


def test_flush_returns_an_event_whose_blank_line_never_came() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"type": "tail"}') == []
    assert decoder.flush() == Event('{"type": "tail"}')
    assert decoder.flush() is None
    assert decoder.feed(b"data: half\r") == []
    assert decoder.feed(b"\n") == []
    assert decoder.flush() == Event("half")


def test_lines_and_events_are_bounded() -> None:
    decoder = SSEDecoder(max_line_chars=10)
    decoder.feed(b"data: 1234")
    with pytest.raises(SSEError):
        decoder.feed(b"567890")
    decoder = SSEDecoder(max_line_chars=10)
    decoder.feed_line("data: 12345")
    with pytest.raises(SSEError):
        decoder.feed_line("data: 67890")


def test_format_event() -> None:
    assert format_event({"type": "x", "text": "é"}) == 'data: {"type":"x","text":"é"}\n\n'.encode()
    assert format_event("a\nb", "done", id="3") == b"event: done\nid: 3\ndata: a\ndata: b\n\n"
    assert format_event([1, 2]) == b"data: [1,2]\n\n"
    with pytest.raises(ValueError, match="line break"):
        format_event("x", "two\nlines")
    with pytest.raises(ValueError, match="line break"):
        format_event("x", id="a\rb")


@pytest.mark.parametrize("data", ["", "plain", "two\nlines", "cr\rlf\r\n", '{"a": [1, {"b": "c"}]}'])
def test_format_then_parse_round_trips(data: str) -> None:
    (event,) = SSEDecoder().feed(format_event(data, "name"))
    assert event.event == "name"
    assert event.data == data.replace("\r\n", "\n").replace("\r", "\n")


def test_json_of_an_event() -> None:
    assert Event(json.dumps({"a": 1})).json() == {"a": 1}
    with pytest.raises(json.JSONDecodeError):
        Event("<html>").json()
