"""How the embedded LLM joins a conversation's messages before its chat template reads them (pure)."""

from __future__ import annotations

from voxserve.engines.base import ChatTurn
from voxserve.engines.llama import _alternating


def test_runs_of_one_role_become_one_turn_and_system_messages_go_first() -> None:
    turns = [
        ChatTurn("user", "Hello."),
        ChatTurn("system", "Be brief."),
        ChatTurn("user", "What is 2 plus 2?"),
        ChatTurn("assistant", "Four."),
        ChatTurn("assistant", "Anything else?"),
        ChatTurn("system", "Answer in English."),
    ]
    assert _alternating(turns) == [
        {"role": "system", "content": "Be brief.\n\nAnswer in English."},
        {"role": "user", "content": "Hello.\n\nWhat is 2 plus 2?"},
        {"role": "assistant", "content": "Four.\n\nAnything else?"},
    ]


def test_a_conversation_without_a_system_message_is_kept_as_it_is() -> None:
    turns = [ChatTurn("user", "Hi"), ChatTurn("assistant", "Hello"), ChatTurn("user", "Bye")]
    assert _alternating(turns) == [{"role": t.role, "content": t.content} for t in turns]
