"""Planning text for synthesis: limits, speakability and engine-safe tokens."""

from __future__ import annotations

import time

import pytest

from voxserve.errors import InvalidValue, TextTooLong
from voxserve.text.normalize import NormalizationOptions
from voxserve.tts.plan import MAX_TOKEN_CHARS, break_long_tokens, plan_speech


def plan(text: str, limit: int = 4096) -> tuple[str, ...]:
    return plan_speech(
        text, max_input_chars=limit, first_fragment_max_chars=60, max_fragment_chars=300
    ).fragments


def test_limit_at_n_and_n_plus_one() -> None:
    assert plan("a" * 10, limit=10)
    with pytest.raises(TextTooLong) as info:
        plan("a" * 11, limit=10)
    assert info.value.status == 413 and info.value.code == "text_too_long"


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "🎉🎉", "!!! ...", "\x00\x1b"])
def test_nothing_speakable(text: str) -> None:
    with pytest.raises(InvalidValue) as info:
        plan(text)
    assert info.value.code == "no_speakable_text"


def test_long_first_sentence_gives_short_first_fragment() -> None:
    fragments = plan(
        "Streaming speech should start quickly, even when the first sentence is long and winding. Short one."
    )
    assert fragments[0] == "Streaming speech should start quickly,"
    assert fragments[-1] == "Short one."


@pytest.mark.parametrize("token", ["a." * 100, ".a" * 100, "x" * 500, "ab.cd." * 30])
def test_break_long_tokens_bounds_every_token(token: str) -> None:
    out = break_long_tokens(f"Hello {token} world.")
    assert max(len(t) for t in out.split()) <= MAX_TOKEN_CHARS
    assert out.replace(" ", "").replace(".", "") == f"Hello{token}world.".replace(".", "")


@pytest.mark.parametrize(
    "text", ["e.g. this", "U.S.A. and 3.14", "example dot com", "antidisestablishmentarianism"]
)
def test_break_long_tokens_leaves_ordinary_text(text: str) -> None:
    assert break_long_tokens(text) == text


def test_planning_is_linear() -> None:
    t0 = time.perf_counter()
    plan("a." * 2048)
    small = time.perf_counter() - t0
    t0 = time.perf_counter()
    plan("a." * 8192, limit=20000)
    big = time.perf_counter() - t0
    assert big < 1.0 and big < 8 * small + 0.05


def test_text_is_made_safe_even_with_normalization_off() -> None:
    # A NUL byte or an escape reached the engine with normalize=false, and espeak-ng failed (500).
    plan = plan_speech(
        "hello\x00 wor\x1bld \u202e\ud800there",
        max_input_chars=4096,
        first_fragment_max_chars=80,
        max_fragment_chars=300,
        options=NormalizationOptions(normalize=False),
    )
    assert plan.fragments == ("hello world there",)
