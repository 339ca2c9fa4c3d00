"""Long texts → sections: exact coverage, where cuts fall, markup kept whole, validation, linear time."""

from __future__ import annotations

import pytest
from tests.timing import cpu_seconds, scaled

from voxserve.errors import InvalidValue, TextTooLong
from voxserve.text.markup import Pause, PhonemeOverride
from voxserve.tts.longform import job_pause_limit_s, plan_long_text, plan_section, split_sections


def plan(text: str, section_chars: int = 300, max_chars: int = 10_000, markup: str = "lenient") -> list[str]:
    result = plan_long_text(
        text,
        max_chars=max_chars,
        section_chars=section_chars,
        max_fragment_chars=300,
        markup=markup,  # type: ignore[arg-type]
    )
    assert "".join(result.sections) == text
    return list(result.sections)


@pytest.mark.parametrize(
    "text",
    [
        "One sentence. " * 200,
        ("A paragraph of some words. " * 7 + "\n\n") * 30,
        "word " * 1000,
        "x" * 2000,
        "Dots..... and more!!! ?? " * 100,
        "  leading and trailing whitespace  \n\n\n  " * 40,
    ],
)
def test_sections_cover_the_text_exactly_and_respect_the_size(text: str) -> None:
    sections = split_sections(text, 300)
    assert "".join(sections) == text
    assert all(0 < len(s) <= 300 for s in sections)


def test_short_text_is_one_section() -> None:
    assert split_sections("Hello.", 300) == ["Hello."]
    assert split_sections("", 300) == []


def test_cuts_prefer_paragraphs_then_lines_then_sentences() -> None:
    para = "First sentence here. Second sentence here.\n"  # 43 characters
    text = para + "\n" + para + "Third line. " * 3
    sections = split_sections(text, 100)
    assert sections[0] == para + "\n" + para  # the blank line is in the second half: cut there
    lines = "Line one is here.\nLine two is here. More words follow it here.\n" * 3
    assert split_sections(lines, 70)[0].endswith("here.\n")
    sentences = "This is a sentence. " * 10
    assert all(s.endswith(". ") for s in split_sections(sentences, 70)[:-1])


def test_without_boundaries_cuts_at_whitespace_then_hard() -> None:
    assert split_sections("abc " * 30, 50)[0] == "abc " * 12
    assert split_sections("x" * 120, 50) == ["x" * 50, "x" * 50, "x" * 20]


def test_markup_tags_are_never_cut() -> None:
    text = "words " * 8 + "[pause:1s] " + "more " * 20
    protected = [(48, 58)]
    assert text[48:58] == "[pause:1s]"
    for size in range(20, 70):
        sections = split_sections(text, size, protected)
        assert "".join(sections) == text
        cut = 0
        for section in sections:
            cut += len(section)
            assert not 48 < cut < 58, size
    # A tag longer than a section makes that one section longer, never split.
    assert "[pause:1s]" in split_sections("ab[pause:1s]cd", 4, [(2, 12)])


def test_plan_long_text_keeps_overrides_and_lookalikes_whole() -> None:
    text = ("Say [tomato](/təmˈɑːtoʊ/) twice. " * 5 + "[pause = 2] gone. ") * 10
    sections = plan(text, section_chars=100)
    for section in sections:
        assert section.count("[") == section.count("]")
    result = plan_long_text(text, max_chars=10_000, section_chars=100, max_fragment_chars=300)
    assert len(result.overrides) == 50 and result.overrides[0].phonemes == "təmˈɑːtoʊ"
    assert result.warnings == ("[pause = 2]",) * 10


def test_limits_at_n_and_n_plus_one() -> None:
    assert plan("a " * 50, max_chars=100)
    with pytest.raises(TextTooLong) as info:
        plan("a " * 50 + "b", max_chars=100)
    assert info.value.status == 413 and info.value.code == "text_too_long"


@pytest.mark.parametrize("text", ["", "   \n\n  ", "🎉 " * 500, "[pause:1s] " * 20])
def test_nothing_speakable_anywhere(text: str) -> None:
    with pytest.raises(InvalidValue) as info:
        plan(text, section_chars=100)
    assert info.value.code == "no_speakable_text"


def test_speakable_text_late_in_the_text_is_found() -> None:
    assert plan("🎉 " * 500 + "Finally, words.", section_chars=100)


def test_markup_errors_cover_the_whole_text() -> None:
    with pytest.raises(InvalidValue) as info:
        plan("Hello. " * 100 + "[pause = 2] there.", section_chars=100, markup="strict")
    assert info.value.code == "invalid_tag"
    # A job is one request: its pauses add up to the same limit as the speech route's.
    with pytest.raises(InvalidValue) as info:
        plan("Wait [pause:9s] here. " * 8, section_chars=100)
    assert info.value.code == "invalid_tag"


def test_plan_section_skips_nothing_speakable_but_keeps_pauses() -> None:
    assert plan_section("\n\n🎉\n", max_fragment_chars=300) == ()
    assert plan_section(" [pause:1.5s] ", max_fragment_chars=300) == (Pause(1.5, 1, 13),)
    fragments = plan_section("Say [it](/ɪt/) now.", max_fragment_chars=300)
    assert any(isinstance(f, PhonemeOverride) for f in fragments)


def test_plan_section_has_no_short_first_fragment() -> None:
    sentence = "A first sentence that is much longer than sixty characters, with a comma in it."
    assert plan_section(sentence, max_fragment_chars=300) == (sentence,)


def test_plan_section_normalises_like_the_speech_route() -> None:
    assert plan_section("It costs $12.50.", max_fragment_chars=300) == (
        "It costs twelve dollars and fifty cents.",
    )


@pytest.mark.parametrize("text", ["." * 500_000, " " * 500_000, "\n \n" * 150_000, "a. " * 160_000])
def test_splitting_is_linear(text: str) -> None:
    sections: list[str] = []
    # Give-up bound on CPU time; a quadratic split of 500,000 characters takes far longer.
    assert cpu_seconds(lambda: sections.extend(split_sections(text, 1000))) < scaled(2.0)
    assert "".join(sections) == text


def test_a_long_job_may_pause_in_proportion_to_its_length() -> None:
    assert job_pause_limit_s(100) == 60.0 and job_pause_limit_s(4096 * 10) == 600.0
    chapter = "A sentence of the chapter. [pause:2s] " * 1000  # 2000 s of pauses in 38 000 characters
    with pytest.raises(InvalidValue) as info:
        plan_long_text(chapter, max_chars=500_000, section_chars=1000, max_fragment_chars=300)
    assert info.value.code == "invalid_tag"
    book = "A sentence of the chapter, read aloud slowly and with care. [pause:1s] " * 200
    assert plan_long_text(book, max_chars=500_000, section_chars=1000, max_fragment_chars=300).sections
