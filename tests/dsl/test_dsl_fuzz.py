"""Whatever the input, `parse` returns a PatternFile or raises PatternError, and
`check` returns diagnostics: nothing else ever escapes."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cep.dsl import check, parse
from cep.errors import PatternError

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "patterns").glob("*.cep"))
SEEDS = [p.read_text("utf-8") for p in EXAMPLES] or ["pattern p { match a }"]

TOKENS = [
    "pattern", "p", "q", "{", "}", "(", ")", "[", "]", ",", ".", "=", "==", "!=", "<", ">=",
    "+", "-", "*", "/", "%", "?", "match", "then", "next", "any", "not", "where", "until",
    "within", "10m", "0ms", "emit", "on", "timeout", "to", "severity", "high", "when", "key",
    "from", "time", "arrival", "order", "by", "skip", "past", "last", "first", "none", "let",
    "description", "greedy", "consecutive", "combinations", "and", "or", "in", "matches",
    "contains", "starts", "with", "ends", "true", "false", "null", "1", "2.5", "{2,}",
    "{0,3}", "'s'", '"\\u0000"', "count", "sum", "score", "x.y", "#c\n", "\n", "\x00", "é",
]

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_and_check(source: str | bytes) -> None:
    try:
        pf = parse(source)
    except PatternError as err:
        assert err.diagnostics
        for d in err.diagnostics:
            assert d.line >= 1 and d.column >= 1 and d.code
            d.format()
        return
    for d in check(pf, models={"m": ["f"]}):
        assert d.line >= 1 and d.column >= 1
        d.format()


@FUZZ
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=300))
def test_random_text(source: str) -> None:
    parse_and_check(source)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_decoded(data: bytes) -> None:
    parse_and_check(data.decode("latin-1"))
    parse_and_check(data.decode("utf-8", "surrogateescape"))


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_token_soup(tokens: list[str]) -> None:
    parse_and_check(" ".join(tokens))
    parse_and_check("pattern p { " + " ".join(tokens) + " }")
    parse_and_check("pattern p { match a where " + " ".join(tokens) + " }")


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 3),
                       st.sampled_from([*TOKENS, "", " "])), max_size=4),
)
def test_mutated_examples(seed: str, edits: list[tuple[int, int, str]]) -> None:
    text = seed
    for pos, cut, insert in edits:
        at = pos % (len(text) + 1)
        text = text[:at] + insert + text[at + cut:]
    parse_and_check(text)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_as_bytes(data: bytes) -> None:
    parse_and_check(data)
