"""Compile cost bounded before compiling (issue 14, item 4): the checker's NFA size is an
upper bound of what the compiler builds, and patterns over the limit are refused with a
position before any compiling."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cep.compiler.nfa import ConditionTable, compile_nfa
from cep.dsl import load_paths, load_source
from cep.dsl.check_size import nfa_size
from cep.dsl.limits import MAX_NFA_STATES
from cep.errors import PatternError

REPO = Path(__file__).resolve().parents[2]

SHAPES = [
    "a", "a then b", "a{10}", "a{1,10}", "a{5,10}", "a{10,}", "a{10} greedy", "a{1,10}?",
    "a+", "a*", "a? then b", "a then b{1,10} then c", "a then not b", "a then not b then c",
    "a next not b then c", "(a then b){10}", "(a then b){1,10}", "(a{10} then b){1,10}",
    "(a{1,10} then b){1,10}", "(a{1,10} then b){10}", "(a then b)+", "(a{10} then b)+",
    "(a then not b then c){10}", "((a{5} then b){5} then c){5}",
    "((a{1,5} then b){1,5} then c){1,5}", "(a{1,10}? then b){10}",
    "a then (b{1,10}? then c){1,10}? then d", "(a then b)? then c", "(a{2,} then b){3,}",
    "a{3} consecutive then b", "a{2,5} combinations then b", "(a then b){2,4} consecutive",
    "a then (b then (c{1,3} then d){2})* then e",
]


def _actual(body: str) -> tuple[int, int]:
    src = f"pattern p {{ from s key k within 1m match {body} }}"
    prog = compile_nfa(load_source(src)[0], ConditionTable())
    return len(prog.states), sum(len(s.edges) for s in prog.states)


@pytest.mark.parametrize("body", SHAPES)
def test_size_is_an_upper_bound_of_the_compiled_nfa(body: str) -> None:
    pattern = load_source(f"pattern p {{ from s key k within 1m match {body} }}")[0]
    states, edges = _actual(body)
    est = nfa_size(pattern.sequence)
    assert est.states >= states and est.edges >= edges, (est, states, edges)
    assert est.states <= 3 * states + 10  # and not absurdly loose


def test_size_bounds_every_shipped_pattern() -> None:
    paths = [p for p in (REPO / "patterns", REPO / "examples") if p.is_dir()]
    patterns = load_paths(paths) if paths else ()
    for p in patterns:
        prog = compile_nfa(p, ConditionTable())
        est = nfa_size(p.sequence)
        assert est.states >= len(prog.states), p.name
        assert est.edges >= sum(len(s.edges) for s in prog.states), p.name


BOMB = """pattern bomb {
  from s
  key k
  match a then ((b{100} then c){100} then d){100}
}"""


def test_nested_groups_over_the_limit_are_refused_with_a_position_before_compiling() -> None:
    t0 = time.process_time()
    with pytest.raises(PatternError) as info:
        load_source(BOMB)
    assert time.process_time() - t0 < 2  # no compiling happened
    diags = [d for d in info.value.diagnostics if d.code == "E156"]
    assert len(diags) == 1
    d = diags[0]
    # the innermost group that alone is over the limit: `(b{100} then c){100}`
    assert d.line == 4 and d.column == BOMB.splitlines()[3].index("){100}") + 2
    assert "states" in d.message and f"{MAX_NFA_STATES:,}" in d.message


def test_two_level_bomb_is_refused_and_a_large_flat_pattern_is_not() -> None:
    with pytest.raises(PatternError, match="E156"):
        load_source("pattern p { from s key k match a then (b{100} then c){100} }")
    flat = " then ".join(f"s{i}{{100}}" for i in range(8))
    assert load_source(f"pattern p {{ from s key k within 1m match {flat} }}")
