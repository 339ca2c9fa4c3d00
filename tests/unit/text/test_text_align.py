"""Aligning spoken (normalised) words back to the characters of the input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.timing import grows_linearly

from voxserve.text.align import source_spans
from voxserve.text.normalize import normalize_text


def spans(source: str) -> list[tuple[str, str]]:
    return [
        (w.word, source[w.source_start : w.source_end]) for w in source_spans(source, normalize_text(source))
    ]


def test_expansions_map_to_the_token_they_replace() -> None:
    assert spans("The price will be $100 after 9:30PM.") == [
        ("The", "The"),
        ("price", "price"),
        ("will", "will"),
        ("be", "be"),
        ("one", "$100"),
        ("hundred", "$100"),
        ("dollars", "$100"),
        ("after", "after"),
        ("nine", "9:30PM"),
        ("thirty", "9:30PM"),
        ("PM.", "9:30PM"),
    ]


def test_ranges_and_degrees() -> None:
    got = dict(spans("It is 40–60°C today."))
    assert got["forty"] == got["sixty"] == got["Celsius"] == "40–60°C"
    assert got["today."] == "today"


def test_a_spelled_number_is_not_mistaken_for_a_digit() -> None:
    # "two" (from "2") must not anchor on the later literal "two".
    assert spans("I have 2 cats and two dogs.") == [
        ("I", "I"),
        ("have", "have"),
        ("two", "2"),
        ("cats", "cats"),
        ("and", "and"),
        ("two", "two"),
        ("dogs.", "dogs"),
    ]


def test_markdown_and_contractions() -> None:
    assert spans("**Bold** don't") == [("Bold", "Bold"), ("do", "don't"), ("not", "don't")]


def test_base_offsets_a_slice() -> None:
    words = source_spans("$5", "five dollars", base=10)
    assert [(w.source_start, w.source_end) for w in words] == [(10, 12), (10, 12)]


@given(st.text(alphabet=st.sampled_from(list("ab1$%:.- \n9°C")), max_size=200))
def test_spans_are_in_bounds_and_ordered(source: str) -> None:
    spoken = normalize_text(source)
    words = source_spans(source, spoken)
    assert len(words) == len(spoken.split())
    for w in words:
        assert 0 <= w.source_start <= w.source_end <= len(source)
    starts = [w.source_start for w in words]
    assert starts == sorted(starts)


@pytest.mark.parametrize("unit", ["a ", "a. ", "9 ", "$1 two ", "the cat sat "])
def test_alignment_is_fast_on_long_inputs(unit: str) -> None:
    source = unit * (40_000 // len(unit))
    spoken = normalize_text(source)
    eighth = unit * (5_000 // len(unit))
    eighth_spoken = normalize_text(eighth)
    # Linear, not quadratic. How fast it is belongs to a benchmark, not to this test.
    assert grows_linearly(
        lambda: source_spans(eighth, eighth_spoken), lambda: source_spans(source, spoken), factor=8
    )
    assert len(source_spans(source, spoken)) == len(spoken.split())
