"""Planning text for synthesis: limits, speakability and engine-safe tokens."""

from __future__ import annotations

import pytest
from tests.timing import grows_linearly

from voxserve.engines.base import WordTiming
from voxserve.errors import InvalidValue, TextTooLong
from voxserve.text.markup import Pause, PhonemeOverride
from voxserve.text.normalize import NormalizationOptions
from voxserve.tts.plan import (
    MAX_TOKEN_CHARS,
    Fragment,
    SpeechPlan,
    break_long_tokens,
    estimated_seconds,
    first_clause_cut,
    plan_piece,
    plan_speech,
)


def plan(text: str, limit: int = 4096) -> tuple[Fragment, ...]:
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
    # The time itself is the benchmarks' business, not this test's.
    assert grows_linearly(lambda: plan("a." * 1024), lambda: plan("a." * 8192, limit=20000), factor=8)


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


def full_plan(text: str, **kw: object) -> SpeechPlan:
    return plan_speech(text, max_input_chars=4096, first_fragment_max_chars=60, max_fragment_chars=300, **kw)  # type: ignore[arg-type]


def test_markup_becomes_pauses_and_overrides_in_order() -> None:
    p = full_plan("[pause:1s] Hello there. [pause:300ms] Say [tomato](/təmˈɑːtoʊ/) again.")
    assert p.fragments == (
        Pause(1.0, 0, 10),
        "Hello there.",
        Pause(0.3, 24, 37),
        "Say",
        PhonemeOverride("təmˈɑːtoʊ", "tomato", 42, 63),
        "again.",
    )
    assert [[(w.word, w.source_start) for w in ws] for ws in p.words] == [
        [],
        [("Hello", 11), ("there.", 17)],
        [],
        [("Say", 38)],
        [("tomato", 42)],
        [("again.", 64)],
    ]


def test_pauses_alone_are_not_speech() -> None:
    with pytest.raises(InvalidValue) as info:
        full_plan("[pause:1s] [pause:2s]")
    assert info.value.code == "no_speakable_text"


def test_look_alike_tags_are_never_spoken() -> None:
    p = full_plan("Wait [pause=1.5] here [PAUSE 1.0] now.")
    assert " ".join(str(f) for f in p.fragments) == "Wait here now."
    assert p.warnings == ("[pause=1.5]", "[PAUSE 1.0]")
    with pytest.raises(InvalidValue) as info:
        full_plan("Wait [pause=1.5] here", markup="strict")
    assert info.value.code == "invalid_tag"


def test_word_locator_maps_engine_words_to_input_characters() -> None:
    text = "The price will be $100 after 9:30PM."
    p = full_plan(text)
    assert len(p.fragments) == 1
    locator = p.locator()
    # Engines name words their own way: punctuation stripped, hyphenated words split.
    timings = [WordTiming(w, 0.0, 0.1) for w in ("The", "price", "will", "be", "one", "hundred")]
    first = locator.locate(0, timings)
    rest = locator.locate(-1, [WordTiming(w, 0.0, 0.1) for w in ("dollars", "after", "nine", "thirty", "PM")])
    got = [text[a:b] for a, b in (s for s in first + rest if s is not None)]
    assert got == [
        "The",
        "price",
        "will",
        "be",
        "$100",
        "$100",
        "$100",
        "after",
        "9:30PM",
        "9:30PM",
        "9:30PM",
    ]


def test_word_locator_handles_split_words() -> None:
    text = "It costs 3,497 today."
    p = full_plan(text)
    words = [
        WordTiming(w, 0.0, 0.1) for w in ("It", "costs", "three", "thousand", "four", "hundred", "ninety")
    ]
    words += [WordTiming(w, 0.0, 0.1) for w in ("seven", "today")]
    got = [text[s[0] : s[1]] for s in p.locator().locate(0, words) if s]
    assert got == ["It", "costs"] + ["3,497"] * 6 + ["today"]


def test_a_piece_of_a_longer_text_may_hold_only_pauses() -> None:
    assert plan_piece("[pause:1s]", max_fragment_chars=300).fragments == (Pause(1.0, 0, 10),)
    assert plan_piece("🎉 ...", max_fragment_chars=300).fragments == ()
    long_first = "Streaming speech should start quickly, even when the first sentence is long and winding."
    assert plan_piece(long_first, max_fragment_chars=300).fragments == (long_first,)  # no short first cut
    with pytest.raises(InvalidValue):
        plan_piece("[pause:99s] hi", max_fragment_chars=300)


# --- the short first fragment ------------------------------------------------------------------


def _plan_fragments(text: str) -> tuple[object, ...]:
    return plan_speech(
        text, max_input_chars=4096, first_fragment_max_chars=60, max_fragment_chars=300
    ).fragments


def test_first_fragment_is_cut_at_a_clause_within_eight_words() -> None:
    fragments = _plan_fragments("Good morning, the kitchen lights are now turned off. The door is locked.")
    assert fragments == ("Good morning,", "the kitchen lights are now turned off.", "The door is locked.")


def test_first_fragment_takes_the_last_clause_within_the_limit() -> None:
    text = "Well, I think that the plan, as it stands, works fine for everyone here today."
    assert _plan_fragments(text)[0] == "Well, I think that the plan,"


def test_first_fragment_without_a_clause_boundary_is_not_cut_at_a_word() -> None:
    # Eight words or fewer only where the text allows a break: no cut mid-clause.
    text = "The quick brown fox jumps over the dog today."
    assert _plan_fragments(text) == (text,)


def test_short_first_fragment_and_later_sentences_are_untouched() -> None:
    text = "Hello there, friend. A second sentence, with a comma, stays whole even when long enough."
    assert _plan_fragments(text) == (
        "Hello there, friend.",
        "A second sentence, with a comma, stays whole even when long enough.",
    )


def test_first_clause_cut_keeps_two_words_each_side() -> None:
    assert first_clause_cut("Yes, a b c d e f g h", 8) == ["Yes, a b c d e f g h"]
    assert first_clause_cut("one two three four five six seven, eight", 8) == [
        "one two three four five six seven, eight"
    ]
    assert first_clause_cut("one two, three four five six seven eight nine", 8) == [
        "one two,",
        "three four five six seven eight nine",
    ]


def test_first_cut_keeps_word_alignment() -> None:
    plan = plan_speech(
        "Good morning, the kitchen lights are now turned off.",
        max_input_chars=4096,
        first_fragment_max_chars=60,
        max_fragment_chars=300,
    )
    assert [len(w) for w in plan.words] == [2, 7]
    assert plan.words[1][0].source_start == len("Good morning, ")


PROSE = "The quick brown fox jumps over the lazy dog, and then it rests for a while. " * 53  # ~4k chars


@pytest.mark.parametrize(
    "text",
    ["9" * 4096, "$" + "9" * 4000 + ".99", " ".join(["1" * 30] * 130)],
    ids=["nines", "dollars", "30-digit-runs"],
)
def test_speech_limits_count_what_will_be_spoken(text: str) -> None:
    # Before: 4096 nines passed the 4096-character limit and made 17 minutes of audio in 150 s.
    assert len(text) <= 4096
    with pytest.raises(TextTooLong) as info:
        full_plan(text, max_speech_s=600.0)
    assert (info.value.status, info.value.code, info.value.param) == (413, "speech_too_long", "input")
    assert "/v1/audio/speech/jobs" in str(info.value)


def test_prose_at_the_character_limit_is_within_the_speech_limit_unless_slowed_down() -> None:
    assert len(PROSE) <= 4096
    assert estimated_seconds(full_plan(PROSE).fragments) == pytest.approx(len(PROSE.strip()) / 15, rel=0.05)
    full_plan(PROSE, max_speech_s=600.0)  # about 270 s
    full_plan(PROSE, max_speech_s=600.0, speed=0.5)  # about 540 s
    with pytest.raises(TextTooLong) as info:
        full_plan(PROSE, max_speech_s=600.0, speed=0.25)
    assert info.value.code == "speech_too_long"


def test_pauses_count_towards_the_speech_limit() -> None:
    plan = full_plan("Hello. [pause:5s] Hello.")
    assert estimated_seconds(plan.fragments) == pytest.approx(5 + len("Hello.Hello.") / 15)
    with pytest.raises(TextTooLong):
        full_plan("Hello. [pause:5s] Hello.", max_speech_s=5.0)
