"""LocalAgreement-2: what gets committed, that committed words never change, and stability."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxserve.stt.agreement import (
    STABILITY_CHANGING,
    STABILITY_GROWING,
    STABILITY_NEW,
    LocalAgreement,
    normalize_word,
)


def test_to_be_or_not_commits_the_agreed_prefix() -> None:
    la = LocalAgreement()
    assert la.update(["to", "be"]) == ([], ["to", "be"])
    assert la.update(["to", "be", "or"]) == (["to", "be"], ["or"])
    assert la.update(["to", "be", "or", "not"]) == (["or"], ["not"])
    assert la.committed == ("to", "be", "or")


def test_first_hypothesis_commits_nothing() -> None:
    la = LocalAgreement()
    assert la.update(["hello", "world"]) == ([], ["hello", "world"])
    assert la.committed == ()


def test_comparison_ignores_case_and_punctuation_but_keeps_the_new_spelling() -> None:
    la = LocalAgreement()
    la.update(["hello,", "World"])
    assert la.update(["Hello", "world.", "again"]) == (["Hello", "world."], ["again"])
    assert la.committed == ("Hello", "world.")


def test_disagreement_commits_only_up_to_the_first_difference() -> None:
    la = LocalAgreement()
    la.update(["the", "cat", "sat"])
    assert la.update(["the", "hat", "sat"]) == (["the"], ["hat", "sat"])


def test_committed_words_survive_revisions_and_shorter_hypotheses() -> None:
    la = LocalAgreement()
    la.update(["a", "b", "c"])
    la.update(["a", "b", "c", "d"])
    assert la.committed == ("a", "b", "c")
    # The decoder changes its mind about committed words, or hears less: nothing is taken back.
    assert la.update(["x", "y"]) == ([], [])
    assert la.committed == ("a", "b", "c")
    assert la.update(["a", "b", "c", "d", "e"]) == ([], ["d", "e"])
    assert la.update(["a", "b", "c", "d", "e", "f"]) == (["d", "e"], ["f"])
    assert list(la.committed) == ["a", "b", "c", "d", "e"]


def test_a_word_inserted_before_the_committed_end_is_aligned_over() -> None:
    la = LocalAgreement()
    la.update(["the", "cat"])
    la.update(["the", "cat", "sat"])
    assert la.committed == ("the", "cat")
    # "big" is new, but it falls inside committed text: the tail starts after "cat".
    assert la.update(["the", "big", "cat", "sat", "down"]) == (["sat"], ["down"])
    assert list(la.committed) == ["the", "cat", "sat"]


def test_reset_starts_a_new_utterance() -> None:
    la = LocalAgreement()
    la.update(["one", "two"])
    la.update(["one", "two"])
    assert la.committed == ("one", "two")
    la.reset()
    assert not la.committed
    assert la.update(["three"]) == ([], ["three"])


def test_empty_words_are_ignored() -> None:
    la = LocalAgreement()
    la.update(["", " to", "be "])
    assert la.update(["to", "", "be", "or"]) == (["to", "be"], ["or"])


def test_stability_heuristic() -> None:
    la = LocalAgreement()
    _, tail = la.update(["to", "be"])
    assert la.stability(tail) == STABILITY_CHANGING  # first hypothesis
    _, tail = la.update(["to", "be", "or"])
    assert tail == ["or"]
    assert la.stability(tail) == STABILITY_NEW  # the previous one ended where "or" begins
    _, tail = la.update(["to", "be", "or", "nut"])
    _, tail = la.update(["to", "be", "or", "nutmeg"])
    assert tail == ["nutmeg"]
    assert la.stability(tail) == STABILITY_GROWING  # "nut" grew into "nutmeg"
    _, tail = la.update(["to", "be", "or", "not", "to"])
    assert tail == ["not", "to"]
    assert la.stability(tail) == STABILITY_CHANGING  # "nutmeg" became "not"
    _, tail = la.update(["to", "be", "or", "not", "to"])
    assert tail == []
    assert la.stability(tail) == 1.0


def test_normalize_word() -> None:
    assert normalize_word(" Hello,") == "hello"
    assert normalize_word("don't") == "dont"
    assert normalize_word("Straße!") == "strasse"
    assert normalize_word("...") == ""


@pytest.mark.parametrize("hypotheses", [[], [["a"]], [["a"], []]])
def test_degenerate_inputs(hypotheses: list[list[str]]) -> None:
    la = LocalAgreement()
    for h in hypotheses:
        la.update(h)
    assert la.committed == ()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(["to", "To", "be", "be,", "or", "not", "that", "is"]), max_size=8),
        max_size=12,
    )
)
def test_committed_never_changes_or_shrinks(hypotheses: list[list[str]]) -> None:
    la = LocalAgreement()
    committed: tuple[str, ...] = ()
    for words in hypotheses:
        newly, tail = la.update(words)
        assert la.committed == committed + tuple(newly)
        committed = la.committed
        # The new words and the tail are the end of this hypothesis, in its spelling.
        assert words[len(words) - len(newly) - len(tail) :] == newly + tail
        assert 0.0 <= la.stability(tail) <= 1.0
