"""Inline markup: the one pause grammar, IPA overrides, and what happens to look-alike tags."""

from __future__ import annotations

import pytest
from tests.timing import cpu_seconds, scaled

from voxserve.errors import InvalidValue
from voxserve.text.markup import MAX_PAUSE_S, Pause, PhonemeOverride, TextSpan, parse_markup


@pytest.mark.parametrize(
    ("tag", "seconds"),
    [
        ("[pause:1s]", 1.0),
        ("[pause:1.5s]", 1.5),
        ("[pause:300ms]", 0.3),
        ("[pause:2]", 2.0),
        ("[Pause: 0.5 s]", 0.5),
    ],
)
def test_pause_grammar(tag: str, seconds: float) -> None:
    parsed = parse_markup(f"Hello {tag} world")
    assert parsed.segments == (
        TextSpan("Hello ", 0),
        Pause(seconds, 6, 6 + len(tag)),
        TextSpan(" world", 6 + len(tag)),
    )
    assert parsed.warnings == ()


def test_pause_may_come_first() -> None:
    parsed = parse_markup("[pause:1s] Hello")
    assert isinstance(parsed.segments[0], Pause) and parsed.segments[1] == TextSpan(" Hello", 10)


@pytest.mark.parametrize(
    "tag", ["[pause=1.5]", "[PAUSE 1.0]", "[silent 1s]", "[break]", "[ silence ]", "[wait 2s]"]
)
def test_look_alikes_are_removed_with_a_warning(tag: str) -> None:
    parsed = parse_markup(f"Hello {tag} world")
    assert [s for s in parsed.segments if not isinstance(s, TextSpan)] == []
    assert "".join(s.text for s in parsed.segments if isinstance(s, TextSpan)) == "Hello  world"
    assert parsed.warnings == (tag,)


@pytest.mark.parametrize("tag", ["[pause=1.5]", "[PAUSE 1.0]", "[silent 1s]"])
def test_look_alikes_are_422_in_strict_mode(tag: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_markup(f"Hello {tag} world", "strict")
    assert info.value.code == "invalid_tag" and info.value.status == 422 and tag in info.value.message


@pytest.mark.parametrize("tag", ["[pause:0s]", f"[pause:{MAX_PAUSE_S + 0.5}s]", "[pause:100000ms]"])
def test_out_of_range_pause_is_422(tag: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_markup(f"a {tag} b")
    assert info.value.code == "invalid_tag"


def test_total_silence_is_bounded() -> None:
    assert parse_markup("a [pause:10s]" * 6)
    with pytest.raises(InvalidValue) as info:
        parse_markup("a [pause:10s]" * 7)
    assert info.value.code == "invalid_tag"


def test_ipa_override() -> None:
    text = "Say [tomato](/təmˈɑːtoʊ/) again."
    parsed = parse_markup(text)
    override = parsed.segments[1]
    assert override == PhonemeOverride("təmˈɑːtoʊ", "tomato", 4, 25)
    assert text[override.start : override.end] == "[tomato](/təmˈɑːtoʊ/)"


def test_ordinary_brackets_and_links_are_text() -> None:
    for text in ("See [1] and [note].", "A [link](https://example.com) here.", "[pausefor effect]"):
        parsed = parse_markup(text)
        assert parsed.segments == (TextSpan(text, 0),) and not parsed.warnings


def test_off_mode_is_text_as_is() -> None:
    text = "[pause:1s] [x](/y/) [pause=1]"
    assert parse_markup(text, "off").segments == (TextSpan(text, 0),)


@pytest.mark.parametrize("unit", ["[", "[pause:", "[a](/", "[pause " + "x" * 30, "[" + "a" * 199 + "](/"])
def test_parsing_is_linear(unit: str) -> None:
    text = unit * (100_000 // len(unit))
    # Give-up bound on CPU time (about 10 ms here); a quadratic parse takes minutes.
    assert cpu_seconds(lambda: parse_markup(text)) < scaled(1.0)
