"""Property tests for inline markup and planning: parsing covers the input in order and fails only with
``invalid_tag``; every tag becomes its pause or override, and every word's source range lies in the input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from tests.fuzzing import fuzz_settings

from voxserve.errors import InvalidValue
from voxserve.text.markup import Pause, PhonemeOverride, TextSpan, parse_markup
from voxserve.tts.plan import plan_speech

_PIECES = st.sampled_from(
    [
        "[pause:1s]",
        "[pause:300ms]",
        "[pause: 2 s]",
        "[PAUSE:0.5]",
        "[pause:0]",
        "[pause:99s]",
        "[pause=1.5]",
        "[PAUSE 1.0]",
        "[silent 1s]",
        "[break]",
        "[wait]",
        "[tomato](/təmˈɑːtoʊ/)",
        "[x](/€/)",
        "[a b](/ ə b /)",
        "[link](https://example.com)",
        "[1]",
        "[",
        "]",
        "(",
        ")",
        "/",
        "$100",
        "9:30PM",
        "40–60°C",
        "don't",
        "Hello",
        "world.",
        " ",
        "\n",
        "😀",
        "\x00",
    ]  # fmt: skip
)
TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=40).map("".join),
)
MODES = st.sampled_from(["lenient", "strict", "off"])


@fuzz_settings(200)
@given(text=TEXT, mode=MODES)
def test_segments_cover_the_input_in_order(text: str, mode: str) -> None:
    try:
        parsed = parse_markup(text, mode)  # type: ignore[arg-type]
    except InvalidValue as exc:
        assert exc.code == "invalid_tag" and mode != "off"
        return
    pos = 0
    for segment in parsed.segments:
        if isinstance(segment, TextSpan):
            assert (
                segment.start >= pos
                and text[segment.start : segment.start + len(segment.text)] == segment.text
            )
            pos = segment.start + len(segment.text)
        else:
            assert isinstance(segment, Pause | PhonemeOverride)
            assert segment.start >= pos and text[segment.start] == "["
            pos = segment.end
            if isinstance(segment, Pause):
                assert 0 < segment.seconds <= 10
    assert pos <= len(text)
    # What lies between segments is exactly the look-alike tags that were removed.
    assert (mode == "lenient") or not parsed.warnings


@fuzz_settings(150)
@given(text=TEXT)
def test_plans_never_speak_a_tag_and_point_into_the_input(text: str) -> None:
    try:
        plan = plan_speech(text, max_input_chars=4096, first_fragment_max_chars=60, max_fragment_chars=300)
    except InvalidValue as exc:
        assert exc.code in ("invalid_tag", "no_speakable_text")
        return
    assert len(plan.words) == len(plan.fragments)
    # Every tag becomes its pause or override, in order (tags are never left to the normaliser).
    tags = [s for s in parse_markup(text).segments if not isinstance(s, TextSpan)]
    assert [f for f in plan.fragments if not isinstance(f, str)] == tags
    for fragment, words in zip(plan.fragments, plan.words, strict=True):
        if isinstance(fragment, str):
            assert len(words) == len(fragment.split())
        for w in words:
            assert 0 <= w.source_start <= w.source_end <= len(text)
