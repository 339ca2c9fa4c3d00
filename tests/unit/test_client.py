"""The library's public names and pure logic: error mapping, SSE parsing, text/audio pieces, lazy exports,
the sync bridge. The sans-I/O core has its own tests in tests/unit/client/."""

from __future__ import annotations

import asyncio
import json
import pickle
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from voxserve.client import (
    AsyncClient,
    ChatCancelled,
    ChatError,
    ChatResponseDelta,
    ChatResponseDone,
    ChatResponseStarted,
    ChatSpeechStarted,
    ChatTranscript,
    Client,
    ClientError,
    RealtimeCompleted,
    RealtimeDelta,
    RealtimeFailed,
    Sentence,
    SSEParser,
    Word,
    error_from_close,
    error_from_event,
    error_from_response,
    text_pieces,
)
from voxserve.client.protocol import chat as chat_protocol
from voxserve.client.protocol.chat import Answer, chat_event
from voxserve.client.protocol.realtime import realtime_transcribe
from voxserve.client.protocol.speak import speak_stream_events
from voxserve.client.protocol.transcribe import transcribe_stream
from voxserve.client.sync import _items
from voxserve.errors import InvalidValue, VoxserveError
from voxserve.speech_stream import SpeechStream, _iterate_on_loop_thread


def test_http_error_envelope_maps_to_client_error() -> None:
    body = (
        b'{"error": {"message": "unknown voice \'nobody\'", "type": "invalid_request_error",'
        b' "param": "voice", "code": "unknown_voice"}}'
    )
    err = error_from_response(404, body)
    assert isinstance(err, VoxserveError)
    assert (err.code, err.status, err.param, err.error_type) == (
        "unknown_voice",
        404,
        "voice",
        "invalid_request_error",
    )
    assert err.message == "unknown voice 'nobody'"
    assert err.close_code is None
    assert err.to_dict()["error"]["code"] == "unknown_voice"
    assert "unknown_voice" in str(err) and "404" in str(err)


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (502, b"<html>Bad gateway</html>", "http_502", "<html>Bad gateway</html>"),
        (500, b"", "http_500", "HTTP 500"),
        (422, b'{"detail": "nope"}', "http_422", "nope"),
        (503, b'{"error": {"message": "busy"}}', "http_503", "busy"),
    ],
)
def test_http_errors_without_an_envelope(status: int, body: bytes, code: str, message: str) -> None:
    err = error_from_response(status, body)
    assert (err.code, err.message, err.status) == (code, message, status)
    assert err.error_type == ("server_error" if status >= 500 else "invalid_request_error")


def test_ws_error_events_in_both_shapes() -> None:
    ours = error_from_event({"type": "error", "code": "unknown_voice", "message": "no such voice"}, 1008)
    assert (ours.code, ours.message, ours.close_code, ours.status) == (
        "unknown_voice",
        "no such voice",
        1008,
        None,
    )
    realtime = error_from_event(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": "invalid_base64",
                "message": "bad",
                "param": "audio",
            },
        }
    )
    assert (realtime.code, realtime.message, realtime.param, realtime.error_type) == (
        "invalid_base64",
        "bad",
        "audio",
        "invalid_request_error",
    )
    assert error_from_event({"type": "error"}).code == "server_error"


def test_close_codes() -> None:
    assert error_from_close(1000) is None
    busy = error_from_close(1013, "at capacity; try again later")
    assert busy is not None and (busy.code, busy.close_code, busy.message) == (
        "at_capacity",
        1013,
        "at capacity; try again later",
    )
    lost = error_from_close(None)
    assert lost is not None and (lost.code, lost.close_code) == ("connection_lost", 1006)
    odd = error_from_close(4000)
    assert odd is not None and odd.code == "close_4000" and "close_4000" in odd.message


def test_client_error_pickles() -> None:
    err = ClientError("m", code="c", status=404, param="voice")
    back = pickle.loads(pickle.dumps(err))
    assert (back.message, back.code, back.status, back.close_code, back.param) == (
        "m",
        "c",
        404,
        None,
        "voice",
    )


def test_sse_parser() -> None:
    parser = SSEParser()
    lines = [
        ": a comment",
        'data: {"type": "transcript.text.delta",',
        'data: "delta": "Hello"}',
        "",
        "event: ignored",
        'data:{"type": "transcript.text.done", "text": "Hello"}',
        "\r\n",
        "data: [DONE]",
        "",
        'data: {"type": "tail"}',
    ]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert events == [
        {"type": "transcript.text.delta", "delta": "Hello"},
        {"type": "transcript.text.done", "text": "Hello"},
    ]
    assert parser.end() == {"type": "tail"}  # a last event without its blank line
    assert parser.end() is None
    parser.feed("data: {nope")
    with pytest.raises(ClientError) as info:
        parser.end()
    assert info.value.code == "invalid_event"


def test_realtime_tracker_waits_for_every_committed_item() -> None:
    t = realtime_transcribe(b"")
    assert _rt(t, {"type": "input_audio_buffer.committed", "item_id": "a"}) is None
    assert _rt(t, {"type": "input_audio_buffer.committed", "item_id": "b"}) is None
    assert _rt(
        t, {"type": "conversation.item.input_audio_transcription.delta", "item_id": "a", "delta": "Hi"}
    ) == RealtimeDelta("a", "Hi")
    # The end commit found nothing to commit: not an error.
    assert (
        _rt(
            t,
            {
                "type": "error",
                "error": {"code": "input_audio_buffer_commit_empty", "event_id": "voxserve_client_commit"},
            },
        )
        is None
    )
    _rt(t, {"type": "input_audio_buffer.cleared"})
    assert not t.finished
    assert _rt(
        t,
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "a",
            "transcript": "Hi.",
        },
    ) == RealtimeCompleted("a", "Hi.")
    assert not t.finished
    failed = _rt(
        t,
        {
            "type": "conversation.item.input_audio_transcription.failed",
            "item_id": "b",
            "error": {"code": "transcription_failed", "message": "decode failed"},
        },
    )
    assert failed == RealtimeFailed("b", "transcription_failed", "decode failed")
    assert t.finished
    with pytest.raises(ClientError) as info:
        _rt(t, {"type": "error", "error": {"code": "invalid_base64", "message": "bad"}})
    assert info.value.code == "invalid_base64"


def _rt(protocol: object, event: dict[str, object]) -> object:
    events = protocol.receive(json.dumps(event))  # type: ignore[attr-defined]
    return events[0] if events else None


async def test_text_pieces_from_every_kind_of_source() -> None:
    assert [p async for p in text_pieces("abcdefg", 3)] == ["abc", "def", "g"]
    assert [p async for p in text_pieces("", 3)] == []

    def tokens() -> Iterator[str]:
        yield "Hello"
        yield " world, this is long"

    assert [p async for p in text_pieces(tokens(), 8)] == ["Hello", " world, ", "this is ", "long"]

    async def atokens() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    assert [p async for p in text_pieces(atokens())] == ["a", "b"]
    assert [p async for p in text_pieces(["x", "y"])] == ["x", "y"]
    with pytest.raises(TypeError, match="must be str"):
        _ = [p async for p in text_pieces([b"bytes"])]  # type: ignore[list-item]


async def test_a_blocking_text_source_does_not_block_the_loop() -> None:
    release = threading.Event()

    def tokens() -> Iterator[str]:
        yield "first"
        if not release.wait(10):
            raise TimeoutError("never released")
        yield "second"

    pieces = text_pieces(tokens())
    assert await asyncio.wait_for(anext(pieces), 10) == "first"
    # The generator now blocks in its thread; the loop still runs other tasks.
    ticked = asyncio.Event()
    asyncio.get_running_loop().call_soon(ticked.set)
    await asyncio.wait_for(ticked.wait(), 5)
    release.set()
    assert await asyncio.wait_for(anext(pieces), 10) == "second"
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(pieces), 10)


def test_sync_sources() -> None:
    def pieces(protocol: object) -> list[object]:
        return [p for item in _items(protocol) for p in protocol.pieces(item)]  # type: ignore[arg-type, attr-defined]

    speak = speak_stream_events("")
    assert pieces(speak_stream_events("a" * 1500)) == ["a" * 1000, "a" * 500]
    assert pieces(speak_stream_events(iter(["a", "bcd"]))) == ["a", "bcd"]
    audio = transcribe_stream(b"\x00" * 5)
    audio.frame_bytes = 2
    assert pieces(audio) == [b"\x00\x00", b"\x00\x00", b"\x00"]
    audio = transcribe_stream([b"\x01" * 3, b""])
    audio.frame_bytes = 2
    assert pieces(audio) == [b"\x01\x01", b"\x01"]

    async def agen() -> AsyncIterator[str]:
        yield "x"

    speak.source = agen()
    with pytest.raises(TypeError, match="AsyncClient"):
        pieces(speak)


def test_base_urls() -> None:
    with Client("http://127.0.0.1:9/") as c:
        assert (c.base_url, c.ws_base) == ("http://127.0.0.1:9", "ws://127.0.0.1:9")
    with pytest.raises(ValueError, match="http"):
        Client("127.0.0.1:8000")


async def test_base_url_https_and_auth_header() -> None:
    async with AsyncClient("https://speech.internal", api_key="k") as c:
        assert c.ws_base == "wss://speech.internal"
        assert c.headers == {"Authorization": "Bearer k"}


def test_importing_voxserve_is_lazy_and_starts_nothing() -> None:
    code = (
        "import sys, threading, multiprocessing\n"
        "import voxserve\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert multiprocessing.active_children() == []\n"
        "assert 'voxserve.client' not in sys.modules and 'httpx' not in sys.modules\n"
        "from voxserve import AsyncClient, Client, ClientError, SpeechStream, iterate_in_thread\n"
        "assert Client.__module__ == 'voxserve.client.sync'\n"
        "assert iterate_in_thread.__module__ == 'voxserve.runtime.bridge'\n"
        "assert threading.active_count() == 1\n"
        "assert 'SpeechStream' in dir(voxserve)\n"
        "try:\n"
        "    voxserve.nothing\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_speech_stream_checks_its_arguments() -> None:
    with pytest.raises(InvalidValue) as info:
        SpeechStream("hi", response_format="aac")
    assert info.value.code == "unsupported_format"
    with pytest.raises(InvalidValue) as info:
        SpeechStream("hi", speed=5)
    assert info.value.code == "invalid_speed"
    with pytest.raises(ValueError, match="not both"):
        SpeechStream("hi", server="http://127.0.0.1:9", settings=object())  # type: ignore[arg-type]
    stream = SpeechStream("hi")
    stream.events()
    with pytest.raises(RuntimeError, match="once"):
        stream.events()


def test_sync_iteration_runs_and_closes_the_async_generator() -> None:
    closed = threading.Event()

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(100):
                await asyncio.sleep(0)
                yield i
        finally:
            closed.set()

    out = []
    for n in _iterate_on_loop_thread(numbers):
        out.append(n)
        if n == 3:
            break
    assert out == [0, 1, 2, 3]
    assert closed.wait(10)
    assert not [t for t in threading.enumerate() if t.name == "voxserve-speech-stream"]


def test_sync_iteration_raises_the_async_error() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise InvalidValue("bad", code="bad_thing")

    got = []
    with pytest.raises(InvalidValue, match="bad"):
        for n in _iterate_on_loop_thread(failing):
            got.append(n)
    assert got == [1]


def test_chat_config() -> None:
    cfg = chat_protocol.chat().config
    assert cfg == {
        "type": "config",
        "response_format": "pcm",
        "speed": 1.0,
        "sample_rate_hz": 16000,
        "encoding": "linear16",
        "language": "en",
        "barge_in": True,
        "interim_results": True,
    }
    cfg = chat_protocol.chat(
        voice="alloy",
        response_format="mp3",
        speed=1.5,
        sample_rate_hz=24000,
        encoding="float32",
        language=None,
        system_prompt="Be brief.",
        barge_in=False,
        interim_results=False,
    ).config
    assert (cfg["voice"], cfg["system_prompt"], cfg["barge_in"], cfg["language"]) == (
        "alloy",
        "Be brief.",
        False,
        None,
    )


READY = {
    "type": "ready",
    "voice": "x",
    "response_format": "pcm",
    "sample_rate": 24000,
    "input_sample_rate_hz": 16000,
    "encoding": "linear16",
    "llm_model": "m",
}


def test_chat_events_are_typed() -> None:
    word = {"word": "Paris", "start_s": 0.5, "end_s": 0.9}
    cases: list[tuple[dict[str, object], object]] = [
        (READY, None),
        ({"type": "something.new"}, None),
        ({"type": "transcript", "text": "hi", "is_final": True, "stability": 0}, ChatTranscript("hi", True)),
        ({"type": "speech_started", "time": 3.1}, ChatSpeechStarted(3.1)),
        ({"type": "response.started", "response_id": 1, "user_text": "q"}, ChatResponseStarted(1, "q")),
        ({"type": "response.text.delta", "response_id": 1, "delta": "Pa"}, ChatResponseDelta(1, "Pa")),
        (
            {"type": "response.done", "response_id": 1, "text": "Paris.", "interrupted": True},
            ChatResponseDone(1, "Paris.", True),
        ),
        (
            {"type": "sentence", "text": "Paris.", "start_s": 0.5, "words": [word]},
            Sentence("Paris.", 0.5, (Word("Paris", 0.5, 0.9),)),
        ),
        ({"type": "cancelled", "dropped_fragments": 2}, ChatCancelled(2)),
        ({"type": "error", "code": "llm_error", "message": "down"}, ChatError("llm_error", "down")),
    ]
    for message, expected in cases:
        assert chat_event(json.dumps(message)) == expected, message
    assert chat_event(b"\x01\x02") == b"\x01\x02"
    assert chat_event("[1, 2]") is None
    with pytest.raises(ClientError) as info:
        chat_event("{nope")
    assert info.value.code == "invalid_event"


def test_answer_collects_its_own_turn_only() -> None:
    answer = Answer("  Second?  ")
    feed = [
        b"old audio",  # the previous answer, still arriving
        ChatResponseStarted(1, "First?"),
        Sentence("Old.", 0.0),
        b"more old audio",
        ChatCancelled(1),
        ChatResponseStarted(2, "Second?"),
        ChatResponseDelta(2, "New"),
        b"still old",  # before the new answer's first sentence
        Sentence("New.", 1.0),
        b"new-1",
        ChatResponseDone(1, "Old", True),
    ]
    assert not any(answer.handle(e) for e in feed)
    assert answer.handle(ChatResponseDone(2, "New.", False)) is True
    assert answer.handle(b"new-2") is False
    assert answer.handle(ChatResponseDone(2, "New.", False)) is False
    assert answer.result() == ("New.", b"new-1new-2")
    with pytest.raises(ClientError) as info:
        Answer("x").result()
    assert info.value.code == "closed"
    with pytest.raises(ClientError) as info:
        Answer("x").handle(ChatError("llm_unavailable", "down"))
    assert info.value.code == "llm_unavailable"


def test_chat_sessions_need_opening() -> None:
    client = Client("http://127.0.0.1:9")
    try:
        with pytest.raises(RuntimeError, match="not open"):
            client.chat().end()
    finally:
        client.close()


def test_word_timestamps_keep_their_source_offsets() -> None:
    from voxserve.client.protocol.routes import captioned
    from voxserve.client.protocol.words import sentence
    from voxserve.protocol.speak import SentenceEvent

    caption = captioned(
        {
            "audio": "",
            "audio_format": "wav",
            "timestamps": [
                {"word": "one", "start_time": 0.1, "end_time": 0.2, "source_start": 4, "source_end": 8},
                {"word": "x", "start_time": 0.2, "end_time": 0.3, "source_start": None, "source_end": None},
            ],
        }
    )
    assert [(w.word, w.source_start, w.source_end) for w in caption.words] == [
        ("one", 4, 8),
        ("x", None, None),
    ]
    event = {
        "type": "sentence",
        "text": "It",
        "start_s": 0.0,
        "words": [{"word": "It", "start_s": 0, "end_s": 0.1}],
    }
    spoken = sentence(SentenceEvent.from_json(event))
    assert spoken.words[0].source_start is None  # an older server sends no offsets
