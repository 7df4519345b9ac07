"""Limits are diagnostics, never crashes (no RecursionError, no MemoryError, no hang)."""

from __future__ import annotations

import time

import pytest

from cep.dsl import parse
from cep.dsl.limits import MAX_NESTING, MAX_PATTERNS, MAX_QUANTIFIER, MAX_STAGES
from cep.errors import Diagnostic, PatternError


def errors(source: str) -> tuple[Diagnostic, ...]:
    started = time.monotonic()
    with pytest.raises(PatternError) as info:
        parse(source)
    assert time.monotonic() - started < 10
    return info.value.diagnostics


@pytest.mark.parametrize("source", [
    "pattern p { match a where " + "(" * 10_000 + "x" + ")" * 10_000 + " > 1 }",
    "pattern p { match a where " + "(" * 200_000 + " }",
    "pattern p { match a where x in " + "[" * 10_000 + "]" * 10_000 + " }",
    "pattern p { match a where " + "f(" * 10_000 + "x" + ")" * 10_000 + " > 1 }",
    "pattern p { match " + "(" * 10_000 + "a" + ")" * 10_000 + " }",
])
def test_deep_brackets(source: str) -> None:
    (d,) = errors(source)
    assert d.code == "E151" and str(MAX_NESTING) in d.message
    openings = [i for i, ch in enumerate(source) if ch in "(["]
    assert (d.line, d.column) == (1, openings[MAX_NESTING] + 1)


@pytest.mark.parametrize("source", [
    "pattern p { match a where " + "not " * 10_000 + "x }",
    "pattern p { match a where " + "- " * 10_000 + "x > 1 }",
    "pattern p { match a where " + " + ".join(["x"] * 10_000) + " > 1 }",
    "pattern p { match a where " + " and ".join(["x"] * 5_000) + " }",
])
def test_deep_operator_chains(source: str) -> None:
    (d,) = errors(source)
    assert d.code == "E151"


def test_exactly_at_the_nesting_limit_is_fine() -> None:
    depth = MAX_NESTING - 1  # the comparison itself is one level
    parse("pattern p { match a where " + "(" * depth + "x" + ")" * depth + " > 1 }")


def test_one_megabyte_source() -> None:
    (d,) = errors("pattern p { match a }\n" + "#" * (1024 * 1024))
    assert d.code == "E150" and (d.line, d.column) == (1, 1)


def test_multibyte_source_counts_bytes() -> None:
    (d,) = errors("#" + "é" * (150 * 1024))
    assert d.code == "E150"


@pytest.mark.parametrize("quantifier", ["{1,100000}", "{100000}", "{100000,}", "{,100000}",
                                        "{" + "9" * 5000 + "}"])
def test_quantifier_bounds(quantifier: str) -> None:
    (d,) = errors(f"pattern p {{ match a{quantifier} }}")
    assert d.code == "E154" and str(MAX_QUANTIFIER) in d.message


def test_quantifier_at_the_limit_is_fine() -> None:
    parse(f"pattern p {{ match a{{1,{MAX_QUANTIFIER}}} }}")


def test_too_many_stages() -> None:
    source = "pattern p { match " + " then ".join(f"s{i}" for i in range(MAX_STAGES + 5)) + " }"
    (d,) = errors(source)
    assert d.code == "E152"
    assert d.column == source.index(f"s{MAX_STAGES} ") + 1


def test_too_many_patterns() -> None:
    source = "".join(f"pattern p{i} {{ match a }}\n" for i in range(MAX_PATTERNS + 1))
    (d,) = errors(source)
    assert d.code == "E153" and d.line == MAX_PATTERNS + 1


@pytest.mark.parametrize("literal", ["9" * 5000, "9" * 20, "1e999", "9" * 30 + "d",
                                     "1" + "0" * 400 + ".5"])
def test_huge_literals(literal: str) -> None:
    diags = errors(f"pattern p {{ match a where x > {literal} }}")
    assert {d.code for d in diags} == {"E105"}


def test_long_dotted_name_is_fine() -> None:
    parse("pattern p { match a where " + "x." * 2_000 + "y > 1 }")
