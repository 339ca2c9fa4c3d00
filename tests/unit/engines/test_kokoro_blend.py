"""The Kokoro voice-blend grammar: ``name[(w)]{(+|-)name[(w)]}``."""

from __future__ import annotations

import pytest

from voxserve.engines.kokoro import MAX_BLEND_CHARS, MAX_BLEND_COMPONENTS, parse_blend
from voxserve.errors import InvalidValue


def test_single_name_has_weight_one() -> None:
    assert parse_blend("jf_alpha") == [("jf_alpha", 1.0)]


def test_single_weighted_name_is_normalised() -> None:
    assert parse_blend("jf_alpha(3)") == [("jf_alpha", 1.0)]


def test_unweighted_names_are_equal_parts() -> None:
    assert parse_blend("jf_alpha+jm_kumo") == [("jf_alpha", 0.5), ("jm_kumo", 0.5)]


def test_weights_are_normalised_to_sum_one() -> None:
    blend = parse_blend("jf_alpha(2)+jm_kumo(1)")
    assert [n for n, _ in blend] == ["jf_alpha", "jm_kumo"]
    assert [w for _, w in blend] == pytest.approx([2 / 3, 1 / 3])


def test_fractional_and_exponent_weights() -> None:
    blend = parse_blend("a(0.5)+b(1.5e0)")
    assert [w for _, w in blend] == pytest.approx([0.25, 0.75])


def test_subtraction_gives_negative_weight_and_signed_sum_one() -> None:
    blend = parse_blend("jf_alpha(2)-jm_kumo(1)")
    assert blend == [("jf_alpha", pytest.approx(2.0)), ("jm_kumo", pytest.approx(-1.0))]
    assert sum(w for _, w in blend) == pytest.approx(1.0)


def test_spaces_around_tokens_are_allowed() -> None:
    assert parse_blend(" jf_alpha ( 1 ) + jm_kumo ") == [("jf_alpha", 0.5), ("jm_kumo", 0.5)]


def test_repeated_names_are_kept_as_given() -> None:
    assert parse_blend("a+a") == [("a", 0.5), ("a", 0.5)]


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "   ",
        "+jf_alpha",
        "-jf_alpha",
        "jf_alpha+",
        "jf_alpha-",
        "jf_alpha++jm_kumo",
        "jf_alpha+-jm_kumo",
        "jf_alpha+(1)",
        "jf_alpha()",
        "jf_alpha( )",
        "jf_alpha(0)",
        "jf_alpha(-1)",
        "jf_alpha(nan)",
        "jf_alpha(inf)",
        "jf_alpha(1e400)",
        "jf_alpha(x)",
        "jf_alpha(1)(2)",
        "jf_alpha(1",
        "jf_alpha 1",
        "jf alpha",
        "jf_alpha*jm_kumo",
        "jf_alpha,jm_kumo",
        "jf-alpha",  # "-" is an operator: jf(1) - alpha(1) sums to zero
        "jf_alpha-jf_alpha",
        "jf_alpha(1)-jm_kumo(2)",
    ],
)
def test_invalid_blends_are_rejected(expr: str) -> None:
    with pytest.raises(InvalidValue) as info:
        parse_blend(expr)
    assert info.value.code == "invalid_voice_blend"
    assert info.value.param == "voice"
    assert info.value.status == 422


def test_component_limit_n_and_n_plus_one() -> None:
    names = [f"v{i}" for i in range(MAX_BLEND_COMPONENTS + 1)]
    assert len(parse_blend("+".join(names[:MAX_BLEND_COMPONENTS]))) == MAX_BLEND_COMPONENTS
    with pytest.raises(InvalidValue, match="at most"):
        parse_blend("+".join(names))


def test_length_limit_n_and_n_plus_one() -> None:
    assert parse_blend("a" * MAX_BLEND_CHARS) == [("a" * MAX_BLEND_CHARS, 1.0)]
    with pytest.raises(InvalidValue, match="characters"):
        parse_blend("a" * (MAX_BLEND_CHARS + 1))
