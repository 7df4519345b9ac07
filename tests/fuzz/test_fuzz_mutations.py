"""Random character insertions and deletions in valid generated patterns: the front end
raises nothing but PatternError, and whatever it accepts compiles and runs without
errors (mutations reach shapes the generator never writes: huge numbers, odd
nesting, keywords as names, stray quotes and comments)."""

from __future__ import annotations

from fuzz_gen import pattern_specs
from fuzz_run import fuzz, run
from hypothesis import event, given, note
from hypothesis import strategies as st

from cep.compiler.pipeline import compile_pattern
from cep.dsl import check, load_source, parse
from cep.errors import PatternError

PIECES = [
    *"(){}[]\"'#\n.,?*+-/%<=>!_ 0123456789aeknoptwxyz",
    "\\", "é", "\x00", "\u2028", " not ", " then ", " next ", " any ", " where ", " until ",
    " within ", " 0ms", " 10m", " 99999999999999999999", " 1e999", " greedy ", " or ",
    " and ", " in ", "count(", "last(", ").a", " emit ", " key ", "{0}", "{,0}", "{3,1}",
]

EDIT = st.tuples(
    st.integers(0, 10_000),  # where (modulo the length)
    st.integers(0, 3),  # how many characters to delete there
    st.sampled_from(["", "", *PIECES]),  # what to insert
)

EVENTS = [
    {"id": 0, "ts": 0, "a": 0, "b": 1, "s": "x", "k": "k1", "n": {"x": 1}},
    {"id": 1, "ts": 1, "a": 1, "b": 0, "s": "y", "k": "k1", "l": [1]},
    {"id": 2, "ts": 1, "a": 2, "k": "k2", "f": 1e308},
    {"id": 3, "ts": 9, "a": None, "s": 3, "k": "k1", "n": {"x": 1}},
    {"id": 4, "ts": 30, "a": 1, "b": "x", "k": "k2"},
]


def mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    for pos, cut, insert in edits:
        at = pos % (len(text) + 1)
        text = text[:at] + insert + text[at + cut:]
    return text


@fuzz(400)
@given(spec=pattern_specs(), edits=st.lists(EDIT, min_size=1, max_size=4))
def test_mutations_raise_only_pattern_errors(spec, edits) -> None:
    text = mutate(spec.text, edits)
    note(text)
    try:
        pf = parse(text)
    except PatternError as err:
        event("mutant: syntax error")
        assert err.diagnostics
        for d in err.diagnostics:
            assert d.line >= 1 and d.column >= 1 and d.code.startswith("E")
        return
    for d in check(pf):
        d.format()
    try:
        patterns = load_source(text)
    except PatternError:
        event("mutant: rejected by the checker")
        return
    event("mutant: valid")
    for p in patterns:
        plan = compile_pattern(p)
        eng, _ = run(plan, EVENTS, 2)
        assert eng.snapshot().counters.get("condition_errors", 0) == 0, eng.snapshot().errors
