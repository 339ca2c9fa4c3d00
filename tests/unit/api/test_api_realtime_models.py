"""The Realtime handler per model: turn-detection defaults, the first update, the commit race, the
hints and logprobs; a real Transcriber and session against a fake Whisper pool and an energy VAD."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from tests.fakes import EnergyVad

from voxserve.api import realtime as rt
from voxserve.config import REALTIME_ONLY_STT_MODELS, Settings
from voxserve.engines.base import Segment, Token, TranscribeOptions, TranscriptInfo, Word
from voxserve.errors import InvalidRequest, VoxserveError
from voxserve.stt.session import SessionConfig
from voxserve.stt.transcriber import Transcriber

RATE = 24000


class FakeStream:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __aiter__(self) -> Iterator[Any] | Any:
        return self._gen()

    async def _gen(self) -> AsyncIterator[Any]:
        for item in self.items:
            await asyncio.sleep(0)
            yield item

    def abort(self) -> None:
        pass


HELLO = (Token(" hel", b" hel", math.log(0.4)), Token("lo", b"lo", math.log(0.6)))


@dataclass
class FakePool:
    """Answers every decode with "hello world" (0.5 and 0.25 word probabilities; tokens for the first
    word only, as an engine without them gives none)."""

    size: int = 2
    idle_workers: int = 2
    calls: list[TranscribeOptions] = field(default_factory=list)

    async def stream_call(self, method: str, audio: np.ndarray, options: TranscribeOptions) -> FakeStream:
        self.calls.append(options)
        words = (
            (Word(" hello", 0.0, 0.3, 0.5, HELLO), Word(" world", 0.3, 0.6, 0.25))
            if options.word_timestamps
            else ()
        )
        info = TranscriptInfo("en", 1.0, len(audio) / 16000)
        return FakeStream([info, Segment(0, 0.0, 0.6, " hello world", words, confidence=0.9)])


class FakeRegistry:
    def stt_model_id(self, name: str) -> str:
        if name not in {"whisper-1", "gpt-transcribe", *REALTIME_ONLY_STT_MODELS}:
            from voxserve.errors import UnknownModel

            raise UnknownModel(f"model {name!r} is not served here")
        return "tiny.en"

    def realtime_only(self, name: str) -> bool:
        return name in REALTIME_ONLY_STT_MODELS


@dataclass
class FakeState:
    settings: Settings = field(default_factory=lambda: Settings(max_keywords=3, max_keyword_chars=10))
    registry: FakeRegistry = field(default_factory=FakeRegistry)


class FakeWs:
    headers: dict[str, str] = {}


class FakeConn:
    def __init__(self) -> None:
        self.ws = FakeWs()
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, obj: Any) -> None:
        self.sent.append(obj.to_json() if hasattr(obj, "to_json") else obj)

    async def send_error(self, exc: VoxserveError, event_id: str | None = None) -> None:
        self.sent.append(rt.realtime_error(exc, event_id))

    def types(self) -> list[str]:
        return [e["type"] for e in self.sent]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.sent if e["type"].endswith(kind)]


@dataclass
class Opened:
    pool: FakePool = field(default_factory=FakePool)
    transcribers: list[Transcriber] = field(default_factory=list)
    configs: list[SessionConfig] = field(default_factory=list)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Opened:
    record = Opened()

    async def fake_open(state: Any, model: str, emit: Any, **kw: Any) -> Transcriber:
        config = kw["config"].__class__(**{**kw["config"].__dict__, "prompt": kw.get("prompt") or ""})
        options = TranscribeOptions(
            language=kw["language"],
            prompt=kw.get("prompt"),
            keywords=tuple(kw.get("keywords", ())),
            languages=tuple(kw.get("languages", ())),
            word_timestamps=kw.get("word_timestamps", False),
        )
        vad = EnergyVad() if config.vad_threshold is not None else None
        t = Transcriber(record.pool, config, vad, emit, options=options)  # type: ignore[arg-type]
        record.transcribers.append(t)
        record.configs.append(config)
        return t

    monkeypatch.setattr(rt, "open_transcriber", fake_open)
    return record


async def handler() -> tuple[rt.RealtimeHandler, FakeConn]:
    conn = FakeConn()
    h = await rt.RealtimeHandler.open(conn, FakeState())  # type: ignore[arg-type]
    return h, conn


def pcm(seconds: float, loud: bool) -> bytes:
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    x = 0.3 * np.sin(2 * np.pi * 220 * t) if loud else np.zeros(n)
    return (x * 32767).astype("<i2").tobytes()


async def send(h: rt.RealtimeHandler, conn: FakeConn, obj: dict[str, Any]) -> None:
    try:
        await h.on_message(json.dumps(obj))
    except InvalidRequest as exc:  # what serve_ws does
        await conn.send_error(exc)


async def append(
    h: rt.RealtimeHandler, conn: FakeConn, seconds: float, loud: bool, step: float = 0.1
) -> None:
    for _ in range(round(seconds / step)):
        audio = base64.b64encode(pcm(step, loud)).decode()
        await send(h, conn, {"type": "input_audio_buffer.append", "audio": audio})


def update(transcription: dict[str, Any], **session: Any) -> dict[str, Any]:
    audio_in: dict[str, Any] = {"transcription": transcription}
    if "turn_detection" in session:
        audio_in["turn_detection"] = session.pop("turn_detection")
    return {
        "type": "session.update",
        "event_id": "evt_update",
        "session": {"type": "transcription", "audio": {"input": audio_in}, **session},
    }


async def settle(h: rt.RealtimeHandler) -> None:
    await h.drain(5)


# --- the commit race ---------------------------------------------------------------------------------


async def test_a_commit_just_after_a_server_vad_commit_is_acknowledged_not_an_error(opened: Opened) -> None:
    h, conn = await handler()
    await append(h, conn, 1.0, loud=True)
    await append(h, conn, 0.6, loud=False)
    (committed,) = conn.of("input_audio_buffer.committed")
    await send(h, conn, {"type": "input_audio_buffer.commit", "event_id": "pipecat_commit"})
    await append(h, conn, 0.2, loud=False)  # more silence, then the framework commits again
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    await settle(h)
    assert "error" not in conn.types()
    acks = conn.of("input_audio_buffer.committed")
    assert [a["item_id"] for a in acks] == [committed["item_id"]] * 3
    assert len(conn.of("conversation.item.added")) == 1  # no new item
    (done,) = conn.of("transcription.completed")
    assert done["item_id"] == committed["item_id"] and done["transcript"] == "hello world"


async def test_an_empty_buffer_with_no_server_commit_keeps_openais_error(opened: Opened) -> None:
    h, conn = await handler()
    await send(h, conn, {"type": "input_audio_buffer.commit", "event_id": "c1"})
    (error,) = conn.of("error")
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert error["error"]["event_id"] == "c1"


async def test_speech_after_the_server_commit_is_committed_by_the_client(opened: Opened) -> None:
    h, conn = await handler()
    await append(h, conn, 1.0, loud=True)
    await append(h, conn, 0.6, loud=False)
    await append(h, conn, 0.5, loud=True)  # new speech: the race is over
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    await settle(h)
    items = [a["item_id"] for a in conn.of("input_audio_buffer.committed")]
    assert len(items) == 2 and items[0] != items[1]
    assert len(conn.of("transcription.completed")) == 2


async def test_a_commit_of_silence_alone_gives_an_item_with_no_words(opened: Opened) -> None:
    h, conn = await handler()
    await append(h, conn, 0.3, loud=False)
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    assert "error" not in conn.types()
    (done,) = conn.of("transcription.completed")
    assert done["transcript"] == "" and done["usage"]["seconds"] == pytest.approx(0.3, abs=0.05)
    assert not opened.pool.calls  # nothing was decoded


# --- per-model defaults and the first update ---------------------------------------------------------


@pytest.mark.parametrize("model", sorted(REALTIME_ONLY_STT_MODELS))
async def test_a_realtime_only_model_has_no_server_vad_unless_asked(opened: Opened, model: str) -> None:
    h, conn = await handler()
    await send(h, conn, update({"model": model}))
    session = conn.of("session.updated")[-1]["session"]
    assert session["audio"]["input"]["turn_detection"] is None
    assert opened.configs[-1].vad_threshold is None
    await append(h, conn, 1.0, loud=True)
    await append(h, conn, 1.0, loud=False)  # a pause: no server commit
    assert not conn.of("speech_started") and not conn.of("input_audio_buffer.committed")
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    await settle(h)
    (done,) = conn.of("transcription.completed")
    assert done["transcript"] == "hello world" and done["usage"]["seconds"] >= 1.9
    # An explicit turn_detection wins, and a later update of the model alone keeps it.
    await send(h, conn, update({"model": model}, turn_detection={"type": "server_vad"}))
    assert (
        conn.of("session.updated")[-1]["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    )
    await send(h, conn, update({"model": "whisper-1"}))
    await send(h, conn, update({"model": model}))
    assert conn.of("session.updated")[-1]["session"]["audio"]["input"]["turn_detection"] is not None


async def test_audio_before_the_first_update_is_refed_not_lost(opened: Opened) -> None:
    h, conn = await handler()
    await append(h, conn, 0.3, loud=False)
    await append(h, conn, 0.1, loud=True)  # not yet speech for the default server VAD
    await send(h, conn, update({"model": "gpt-realtime-whisper"}))
    assert len(opened.transcribers) == 2
    await append(h, conn, 0.5, loud=True)
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    await settle(h)
    (done,) = conn.of("transcription.completed")
    assert done["usage"]["seconds"] == pytest.approx(0.9, abs=0.05)  # one item, all the audio
    assert len(conn.of("input_audio_buffer.committed")) == 1


async def test_reported_audio_before_an_update_is_finished_once_by_the_old_transcriber(
    opened: Opened,
) -> None:
    h, conn = await handler()
    await append(h, conn, 1.0, loud=True)  # server VAD reported speech_started
    assert conn.of("speech_started")
    await send(h, conn, update({"model": "gpt-live-transcribe"}))
    await append(h, conn, 0.5, loud=True)
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    await settle(h)
    completed = conn.of("transcription.completed")
    committed = [c["item_id"] for c in conn.of("input_audio_buffer.committed")]
    assert len(completed) == 2 and len(set(committed)) == 2
    assert {c["item_id"] for c in completed} == set(committed)
    assert [d["item_id"] for d in conn.of("transcription.delta")] == [c["item_id"] for c in completed]


async def test_an_update_that_changes_no_model_or_turn_detection_keeps_the_buffered_audio(
    opened: Opened,
) -> None:
    h, conn = await handler()
    await send(h, conn, update({"model": "gpt-realtime-whisper"}))
    await append(h, conn, 0.5, loud=True)
    await send(
        h, conn, update({"model": "gpt-realtime-whisper", "prompt": "Names", "keywords": ["Voxserve"]})
    )
    await send(h, conn, update({"model": "gpt-realtime-whisper"}))  # nothing changes
    assert len(opened.transcribers) == 2  # the default one, and the first update's
    await append(h, conn, 0.5, loud=True)
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    await settle(h)
    (done,) = conn.of("transcription.completed")
    assert done["usage"]["seconds"] == pytest.approx(1.0, abs=0.05)
    (options,) = opened.pool.calls[-1:]
    assert options.keywords == ("Voxserve",) and options.prompt is not None and "Names" in options.prompt


# --- hints and logprobs -----------------------------------------------------------------------------


async def test_keywords_and_languages_reach_the_decoder_and_are_reported(opened: Opened) -> None:
    h, conn = await handler()
    await send(
        h,
        conn,
        update(
            {"model": "gpt-live-transcribe", "keywords": [" Linnell ", "Birket"], "languages": ["en", "fr"]}
        ),
    )
    transcription = conn.of("session.updated")[-1]["session"]["audio"]["input"]["transcription"]
    assert transcription["keywords"] == ["Linnell", "Birket"] and transcription["languages"] == ["en", "fr"]
    await append(h, conn, 0.5, loud=True)
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    await settle(h)
    assert opened.pool.calls[-1].keywords == ("Linnell", "Birket")
    assert opened.pool.calls[-1].languages == ("en", "fr")


@pytest.mark.parametrize(
    ("transcription", "code"),
    [
        ({"keywords": ["a", "b", "c", "d"]}, "too_many_keywords"),
        ({"keywords": ["x" * 11]}, "keyword_too_long"),
        ({"languages": ["fr", "de"]}, "unsupported_language"),
        ({"languages": ["xx"]}, "unsupported_language"),
        ({"language": "fr"}, "unsupported_language"),
        ({"keywords": "Voxserve"}, "invalid_value"),
        ({"model": "nope"}, "model_not_found"),
    ],
)
async def test_hints_beyond_the_limits_are_an_error_event_and_change_nothing(
    opened: Opened, transcription: dict[str, Any], code: str
) -> None:
    h, conn = await handler()
    before = h.session
    await send(h, conn, update(transcription))
    (error,) = conn.of("error")
    assert error["error"]["code"] == code and error["error"]["event_id"] == "evt_update"
    assert h.session == before and len(opened.transcribers) == 1


async def test_logprobs_come_from_the_models_token_probabilities(opened: Opened) -> None:
    h, conn = await handler()
    await send(
        h,
        conn,
        update({"model": "gpt-realtime-whisper"}, include=["item.input_audio_transcription.logprobs"]),
    )
    assert conn.of("session.updated")[-1]["session"]["include"] == ["item.input_audio_transcription.logprobs"]
    await append(h, conn, 0.5, loud=True)
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    await settle(h)
    (done,) = conn.of("transcription.completed")
    assert done["logprobs"] == [
        {"token": " hel", "logprob": pytest.approx(math.log(0.4), abs=1e-6), "bytes": list(b" hel")},
        {"token": "lo", "logprob": pytest.approx(math.log(0.6), abs=1e-6), "bytes": list(b"lo")},
        {"token": " world", "logprob": pytest.approx(math.log(0.25), abs=1e-6), "bytes": list(b" world")},
    ]
    (delta,) = conn.of("transcription.delta")
    assert delta["delta"] == "hello world" and delta["logprobs"] == done["logprobs"]
    assert opened.pool.calls[-1].word_timestamps


async def test_no_logprobs_unless_included(opened: Opened) -> None:
    h, conn = await handler()
    await send(h, conn, update({"model": "gpt-realtime-whisper"}))
    await append(h, conn, 0.5, loud=True)
    await send(h, conn, {"type": "input_audio_buffer.commit"})
    await settle(h)
    (done,) = conn.of("transcription.completed")
    assert "logprobs" not in done and not opened.pool.calls[-1].word_timestamps


async def test_an_unknown_include_is_refused(opened: Opened) -> None:
    h, conn = await handler()
    await send(h, conn, update({"model": "whisper-1"}, include=["item.something"]))
    (error,) = conn.of("error")
    assert error["error"]["code"] == "invalid_value"
