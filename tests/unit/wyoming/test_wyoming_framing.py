"""The bounded Wyoming event reader (corpus M19: the reference reader trusts every length)."""

from __future__ import annotations

import asyncio
import json

import pytest
from wyoming.audio import AudioChunk
from wyoming.event import Event, async_write_event

from voxserve.errors import InvalidRequest
from voxserve.wyoming.framing import FramingError, read_event


def reader_of(data: bytes, limit: int = 65536) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


class _Sink:
    """A StreamWriter stand-in that keeps what the reference writer writes."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, lines: list[bytes]) -> None:
        for line in lines:
            self.data += line

    async def drain(self) -> None:
        return None


async def wire(event: Event) -> bytes:
    sink = _Sink()
    await async_write_event(event, sink)  # type: ignore[arg-type]
    return bytes(sink.data)


async def test_reads_what_the_reference_writer_writes() -> None:
    chunk = AudioChunk(rate=16000, width=2, channels=1, audio=b"\x01\x00" * 10).event()
    data = await wire(chunk) + await wire(Event("describe"))
    reader = reader_of(data)
    first = await read_event(reader, 1 << 20)
    assert first is not None and first.type == "audio-chunk"
    assert first.payload == b"\x01\x00" * 10 and first.data["rate"] == 16000
    second = await read_event(reader, 1 << 20)
    assert second is not None and second.type == "describe"
    assert await read_event(reader, 1 << 20) is None


async def test_huge_lengths_are_refused_before_reading() -> None:
    for key in ("data_length", "payload_length"):
        header = json.dumps({"type": "audio-chunk", key: 10**12}).encode() + b"\n"
        with pytest.raises(FramingError) as info:
            await read_event(reader_of(header), 1 << 20)
        assert info.value.code == "event_too_large"


async def test_data_and_payload_share_the_limit() -> None:
    header = json.dumps({"type": "x", "data_length": 600, "payload_length": 600}).encode() + b"\n"
    with pytest.raises(FramingError):
        await read_event(reader_of(header + b"{}" + b" " * 1198), 1000)


async def test_an_overlong_header_line_is_refused() -> None:
    with pytest.raises(FramingError) as info:
        await read_event(reader_of(b"{" + b" " * 5000 + b"\n", limit=1024), 1 << 20)
    assert info.value.code == "event_too_large"


@pytest.mark.parametrize(
    "line",
    [b"not json\n", b"[1, 2]\n", b'{"data": {}}\n', b'{"type": 5}\n', b'{"type": "x", "data": 3}\n', b"\n"],
)
async def test_a_malformed_header_is_malformed_event_and_the_stream_goes_on(line: bytes) -> None:
    reader = reader_of(line + b'{"type": "describe"}\n')
    with pytest.raises(InvalidRequest) as info:
        await read_event(reader, 1 << 20)
    assert info.value.code == "malformed_event" and not isinstance(info.value, FramingError)
    after = await read_event(reader, 1 << 20)
    assert after is not None and after.type == "describe"


@pytest.mark.parametrize("length", [-1, "5", 1.5, True])
async def test_a_bad_length_is_a_framing_error(length: object) -> None:
    header = json.dumps({"type": "x", "payload_length": length}).encode() + b"\n"
    with pytest.raises(FramingError):
        await read_event(reader_of(header), 1 << 20)


async def test_a_truncated_event_is_a_framing_error() -> None:
    header = json.dumps({"type": "audio-chunk", "payload_length": 100}).encode() + b"\n"
    with pytest.raises(FramingError):
        await read_event(reader_of(header + b"x" * 10), 1 << 20)
    with pytest.raises(FramingError):
        await read_event(reader_of(b'{"type": "descr'), 1 << 20)


async def test_data_bytes_merge_into_data() -> None:
    extra = b'{"text": "hi"}'
    header = json.dumps({"type": "synthesize", "data": {"a": 1}, "data_length": len(extra)}).encode()
    event = await read_event(reader_of(header + b"\n" + extra), 1 << 20)
    assert event is not None and event.data == {"a": 1, "text": "hi"}
