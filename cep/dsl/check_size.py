"""The compile-cost rule: the NFA a pattern compiles to, sized before it is built.

The compiler expands `times(n, m)` quantifiers into copies of states the way FlinkCEP's
`NFACompiler` does, and a quantified group copies its whole body once per repetition,
so nested groups multiply: `((a{100} then b){100} then c){100}` is a million states
from a 60-character source. `nfa_size` computes an upper bound of the states and edges
from the syntax tree alone (measured against the compiler in
tests/dsl/test_check_size.py), and `rule_nfa_size` refuses a pattern over
`MAX_NFA_STATES` / `MAX_NFA_EDGES` with the position of the element that costs most.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cep.dsl.ast import Group, Quantifier, Sequence, Span, Stage
from cep.dsl.check_context import Context
from cep.dsl.limits import MAX_NFA_EDGES, MAX_NFA_STATES
from cep.errors import Diagnostic

EDGES_PER_STATE = 3
"""Every state has at most a TAKE, an IGNORE and a PROCEED edge per successor kind; the
compiler's programs have 2-2.5 edges per state (the bound uses 3)."""


@dataclass(frozen=True, slots=True)
class NfaSize:
    states: int
    edges: int


def _stage_states(st: Stage) -> int:
    q = st.quantifier
    if st.negated:  # its state and a stop state
        return 2
    base = 1 if q is None else _times(q, 1, stage=True)
    return base + (1 if st.optional else 0)


def _times(q: Quantifier, body: int, *, stage: bool) -> int:
    """States of `body` repeated as `q` says (the compiler's copies, bounded above)."""
    if q.max is None:  # looping: n copies, then one looping copy, plus a split state
        return (q.min + 1) * body + 2
    if stage:  # mandatory copies and, for the optional ones, a state and a split each
        return q.min + 2 * (q.max - q.min) + 1
    return q.max * body + 2


def _element_states(el: Stage | Group) -> int:
    if isinstance(el, Stage):
        return _stage_states(el)
    body = sequence_states(el.body)
    n = body + 2 if el.quantifier is None else _times(el.quantifier, body, stage=False)
    return n + (1 if el.optional else 0)


def sequence_states(seq: Sequence) -> int:
    return sum(_element_states(step.element) for step in seq.steps)


def nfa_size(seq: Sequence) -> NfaSize:
    """An upper bound of the states and edges the compiler builds for `seq`."""
    states = sequence_states(seq) + 1  # the final state
    return NfaSize(states, states * EDGES_PER_STATE)


def _costliest(seq: Sequence) -> Stage | Group:
    return max((s.element for s in seq.steps), key=_element_states)


def _span(el: Stage | Group) -> Span:
    if el.quantifier is not None:
        return el.quantifier.span
    return el.name_span if isinstance(el, Stage) else el.span


def _blame(seq: Sequence) -> Stage | Group:
    """The element to point at: the costliest one, and inside a group whose body alone
    is over the limit, the costliest one of its body."""
    el = _costliest(seq)
    while isinstance(el, Group) and sequence_states(el.body) > MAX_NFA_STATES:
        el = _costliest(el.body)
    return el


def rule_nfa_size(ctx: Context) -> Iterator[Diagnostic]:
    seq = ctx.pattern.sequence
    size = nfa_size(seq)
    if size.states <= MAX_NFA_STATES and size.edges <= MAX_NFA_EDGES:
        return
    el = _blame(seq)
    what = f"stage `{el.name}`" if isinstance(el, Stage) else "this group"
    yield ctx.error(
        _span(el),
        f"pattern `{ctx.pattern.name}` would compile to about {size.states:,} states and "
        f"{size.edges:,} edges (limits {MAX_NFA_STATES:,} and {MAX_NFA_EDGES:,}); "
        f"{what} costs the most",
        "E156",
        "quantified groups multiply: lower the quantifier bounds, use an unbounded "
        "quantifier (`+`, `{n,}`) with `within`, or count with an aggregate "
        "(count(...) in `emit ... when`)",
    )


SIZE_RULES = (rule_nfa_size,)
