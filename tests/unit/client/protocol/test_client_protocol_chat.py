"""voxserve.client.protocol.chat: the handshake, the messages a session sends, and one answer."""

from __future__ import annotations

import json

import pytest

from voxserve.client.errors import ClientError
from voxserve.client.events import ChatResponseDone, ChatResponseStarted, Sentence
from voxserve.client.protocol.chat import Answer, ask, chat

READY = {
    "type": "ready",
    "voice": "piper/x",
    "response_format": "pcm",
    "sample_rate": 24000,
    "input_sample_rate_hz": 16000,
    "encoding": "linear16",
    "llm_model": "m",
}


def test_the_handshake_keeps_the_ready_event() -> None:
    p = chat(system_prompt="Be brief.")
    (config,) = p.start()
    assert json.loads(config)["system_prompt"] == "Be brief."
    p.accept(json.dumps(READY))
    assert p.opened and p.ready == READY


def test_the_handshake_refuses_what_is_not_ready() -> None:
    with pytest.raises(ClientError) as info:
        chat().accept('{"type":"error","code":"llm_not_configured","message":"no LLM"}')
    assert info.value.code == "llm_not_configured"
    with pytest.raises(ClientError) as info:
        chat().accept('{"type":"transcript","text":"x","is_final":true}')
    assert info.value.code == "unexpected_event"


def test_outgoing_messages() -> None:
    p = chat()
    assert json.loads(p.say("Hi")) == {"type": "text", "text": "Hi"}
    assert json.loads(p.cancel) == {"type": "cancel"}
    assert json.loads(p.end) == {"type": "end"}
    assert p.audio(bytes(70000)) == [bytes(32000), bytes(32000), bytes(6000)]


def test_receive_skips_what_a_caller_does_not_need() -> None:
    p = chat()
    assert p.receive(b"pcm") == b"pcm"
    assert p.receive('{"type":"done","audio_s":1.0,"samples":24000}') is None
    assert p.receive('{"type":"brand.new","x":1}') is None
    sentence = '{"type":"sentence","text":"Paris.","start_s":0.5,"words":[]}'
    assert p.receive(sentence) == Sentence("Paris.", 0.5)


def test_ask_builds_one_turn() -> None:
    turn = ask("  Hi?  ", voice="alloy", speed=1.25)
    config = json.loads(turn.chat.start()[0])
    assert (turn.text, config["voice"], config["speed"], config["barge_in"]) == (
        "  Hi?  ",
        "alloy",
        1.25,
        True,
    )
    answer = Answer(turn.text)
    answer.handle(ChatResponseStarted(3, "Hi?"))
    answer.handle(Sentence("Hello.", 0.0))
    answer.handle(b"a")
    assert answer.handle(ChatResponseDone(3, "Hello.", False))
    assert answer.result() == ("Hello.", b"a")
