"""``WS /v1/stream/chat`` against a real server and a stub OpenAI-compatible LLM that streams slowly."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from tests.e2e.conftest import CHAT_SENTENCES, Server
from tests.e2e.ws_helpers import pcm16
from tests.speech_dev import by_name
from tests.stub_llm import StubLLM, answer_for
from tests.timing import deadline_in, remaining, scaled
from tests.wer import wer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.e2e

CONFIG = {"type": "config", "sample_rate_hz": 16000, "encoding": "linear16", "voice": "alloy"}
UTTERANCE = "librispeech_1272-141231-0002.wav"
SENTENCES = CHAT_SENTENCES


def chat_url(server: Server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/stream/chat"


class Conversation:
    """Collects a chat's events and audio, numbered in arrival order; waits for an event with a
    deadline (nominal seconds, scaled)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.audio: list[tuple[int, int]] = []  # (arrival order, bytes)
        self.received = 0

    def pump(self, timeout_s: float) -> dict[str, Any] | None:
        message = self.ws.recv(timeout=timeout_s)
        self.received += 1
        if isinstance(message, bytes):
            self.audio.append((self.received, len(message)))
            return None
        event: dict[str, Any] = json.loads(message)
        event["_seq"] = self.received
        self.events.append(event)
        return event

    def wait_for(self, kind: str, timeout_s: float = 60, **fields: Any) -> dict[str, Any]:
        deadline = deadline_in(timeout_s)
        try:
            while True:
                event = self.pump(remaining(deadline))
                if (
                    event is not None
                    and event["type"] == kind
                    and all(event.get(k) == v for k, v in fields.items())
                ):
                    return event
        except TimeoutError:
            pass
        raise AssertionError(f"no {kind} in {timeout_s} s (scaled); got {[e['type'] for e in self.events]}")

    def seen_or_wait(self, kind: str, timeout_s: float = 60, **fields: Any) -> dict[str, Any]:
        """An event already received, or the next one to come."""
        for event in self.events:
            if event["type"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event
        return self.wait_for(kind, timeout_s, **fields)

    def wait_for_audio(self, timeout_s: float = 60) -> None:
        deadline = deadline_in(timeout_s)
        count = len(self.audio)
        while len(self.audio) == count:
            self.pump(remaining(deadline))

    def drain(self, timeout_s: float = 60) -> int | None:
        deadline = deadline_in(timeout_s)
        try:
            while True:
                self.pump(remaining(deadline))
        except (ConnectionClosed, TimeoutError):
            pass
        return self.ws.close_code

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


def test_typed_turn_gets_a_streamed_spoken_answer(chat_server: Server, stub: StubLLM) -> None:
    with connect(chat_url(chat_server)) as ws:
        ws.send(json.dumps(CONFIG))
        chat = Conversation(ws)
        ready = chat.wait_for("ready", 30)
        assert ready["llm_model"] == "stub-model" and ready["sample_rate"] == 24000
        ws.send(json.dumps({"type": "text", "text": "What is the weather like?"}))
        started = chat.wait_for("response.started")
        assert started["user_text"] == "What is the weather like?"
        done = chat.wait_for("response.done", response_id=started["response_id"])
        expected = answer_for([{"role": "user", "content": "What is the weather like?"}], SENTENCES)
        assert done["text"] == expected and done["interrupted"] is False
        assert "".join(e["delta"] for e in chat.of("response.text.delta")) == expected
        ws.send(json.dumps({"type": "end"}))
        assert chat.drain() == 1000
    sentences = [e["text"] for e in chat.of("sentence")]
    assert " ".join(sentences) == expected
    # Speech started before the LLM had finished: the first sentence's audio came before the last delta.
    first_audio = chat.audio[0][0]
    last_delta = chat.of("response.text.delta")[-1]["_seq"]
    assert first_audio < last_delta
    audio_s = sum(n for _, n in chat.audio) / 48000
    assert 6.0 < audio_s < 25.0
    system, user = stub.requests()[-1][:2]
    assert system["role"] == "system" and user == {"role": "user", "content": "What is the weather like?"}


def test_spoken_turn_is_transcribed_and_answered(chat_server: Server) -> None:
    utterance = by_name(UTTERANCE)
    pcm = pcm16(utterance.path)
    with connect(chat_url(chat_server)) as ws:
        ws.send(json.dumps(CONFIG))
        chat = Conversation(ws)
        chat.wait_for("ready", 30)
        step = 3200  # 100 ms frames at 4x real time
        for i in range(0, len(pcm), step):
            ws.send(pcm[i : i + step])
            time.sleep(0.025)
        ws.send(b"\x00\x00" * 16000)  # a second of silence ends the last utterance
        ws.send(json.dumps({"type": "end"}))  # flushes the last final, answers it, then closes
        assert chat.drain() == 1000
    # The speaker pauses mid-sentence, so there may be several turns; the last one is answered in full.
    finals = [e["text"] for e in chat.of("transcript") if e["is_final"]]
    # tiny.en on short turns; its accuracy is measured elsewhere (stt_bench, transcription e2e tests).
    assert wer(utterance.text, " ".join(finals)) <= 0.35, finals
    started = chat.of("response.started")
    assert [e["user_text"] for e in started] == finals
    done = chat.of("response.done")
    assert done[-1]["response_id"] == started[-1]["response_id"] and not done[-1]["interrupted"]
    assert done[-1]["text"].startswith("You said: " + finals[-1].rstrip(".?!"))
    assert chat.of("speech_started")
    assert chat.audio, "the answer is spoken"


def test_user_speech_barges_in(chat_server: Server) -> None:
    pcm = pcm16(by_name(UTTERANCE).path)
    with connect(chat_url(chat_server)) as ws:
        ws.send(json.dumps(CONFIG))
        chat = Conversation(ws)
        chat.wait_for("ready", 30)
        ws.send(json.dumps({"type": "text", "text": "Tell me a long story."}))
        first = chat.wait_for("response.started")
        chat.wait_for_audio()
        for i in range(0, 3200 * 15, 3200):  # 1.5 s of speech
            ws.send(pcm[i : i + 3200])
        cancelled = chat.wait_for("cancelled", 30)
        done = chat.seen_or_wait("response.done", response_id=first["response_id"])
        assert done["interrupted"] is True
        assert "sentence number 39" not in done["text"]
        # The user's speech stopped the answer (how fast: benchmarks/reaction_bench.py, chat barge-in).
        speech = chat.of("speech_started")[0]
        assert speech["_seq"] < cancelled["_seq"]
        late_audio = [n for n, _ in chat.audio if n > cancelled["_seq"]]
        assert not late_audio, "no audio of the interrupted answer after the cancel"
        ws.send(json.dumps({"type": "end"}))
        chat.drain()


def test_cancel_message_stops_the_answer(chat_server: Server, stub: StubLLM) -> None:
    with connect(chat_url(chat_server)) as ws:
        ws.send(json.dumps(CONFIG))
        chat = Conversation(ws)
        chat.wait_for("ready", 30)
        ws.send(json.dumps({"type": "text", "text": "Tell me a long story."}))
        chat.wait_for_audio()
        ws.send(json.dumps({"type": "cancel"}))
        chat.wait_for("cancelled", 10)
        assert chat.seen_or_wait("response.done")["interrupted"] is True
        # The next turn sees the interrupted answer in its history.
        ws.send(json.dumps({"type": "text", "text": "Short one."}))
        chat.wait_for("response.done", response_id=2)
        ws.send(json.dumps({"type": "end"}))
        assert chat.drain() == 1000
    history = stub.requests()[-1]
    assert [m["role"] for m in history[-3:]] == ["user", "assistant", "user"]
    assert history[-2]["content"].endswith("…")


def test_bad_messages_get_errors_and_the_chat_survives(chat_server: Server) -> None:
    with connect(chat_url(chat_server)) as ws:
        ws.send(json.dumps(CONFIG))
        chat = Conversation(ws)
        chat.wait_for("ready", 30)
        for message, code in [
            ("{nope", "invalid_json"),
            (json.dumps({"type": "text", "text": " "}), "invalid_text"),
            (json.dumps({"type": "dance"}), "unknown_message"),
            (json.dumps({"type": "audio", "audio": "!!"}), "invalid_base64"),
            (b"\x00", "misaligned_pcm"),
        ]:
            ws.send(message)
            assert chat.wait_for("error", 10)["code"] == code
        ws.send(json.dumps({"type": "text", "text": "Still there?"}))
        assert chat.wait_for("response.done")["interrupted"] is False


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"voice": "nobody"}, "unknown_voice"),
        ({"sample_rate_hz": 100}, "invalid_config"),
        ({"response_format": "flac"}, "unsupported_format"),
        ({"system_prompt": 5}, "invalid_config"),
    ],
)
def test_bad_config_closes_1008(chat_server: Server, config: dict[str, Any], code: str) -> None:
    with connect(chat_url(chat_server)) as ws:
        ws.send(json.dumps({**CONFIG, **config}))
        assert json.loads(ws.recv(timeout=scaled(30)))["code"] == code
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=scaled(10))
        assert ws.close_code == 1008


def test_chats_over_max_chat_sessions_close_1013(chat_server: Server) -> None:
    with connect(chat_url(chat_server)) as first, connect(chat_url(chat_server)) as second:
        for ws in (first, second):  # N = max_chat_sessions = 2: both accepted
            ws.send(json.dumps(CONFIG))
            assert json.loads(ws.recv(timeout=scaled(30)))["type"] == "ready"
        with connect(chat_url(chat_server)) as third:  # N + 1
            with pytest.raises(ConnectionClosed):
                third.recv(timeout=scaled(10))
            assert third.close_code == 1013
    with connect(chat_url(chat_server)) as again:  # the slots are free again
        again.send(json.dumps(CONFIG))
        assert json.loads(again.recv(timeout=scaled(30)))["type"] == "ready"
