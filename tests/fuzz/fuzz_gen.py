"""Hypothesis strategies for the fuzz tests: random *valid* pattern texts built from
the grammar (docs/language.md) and random event lists.

The pattern strategy tracks what the checker requires (stage scopes, looping stages,
where `not`, `greedy`, `until` and windows may stand), so most generated texts pass
`load_source`; the few that do not are `assume`d away by the tests.

Events use a small fixed vocabulary of fields so conditions hit often:
`a`, `b` (mostly small ints), `f` (floats), `s` (strings), `l` (a list), `n` (a nested
object, read as `n.x`), `k`, `j` (partition keys), `o` (an `order by` field), `id`
(unique: alert ids hash it) and `ts`. Any field may be missing, null or of another type.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

NUM_FIELDS = ("a", "b", "f", "n.x")
ANY_FIELDS = ("a", "b", "f", "s", "l", "n.x", "n", "o")
STR_LITS = ('"x"', '"y"', '""', "'x'")
NUM_LITS = ("0", "1", "2", "3", "1.5", "0.25", "1e300", "5ms", "10ms")
REGEXES = ('"^x"', '"y$"', '"[0-9]+"', '"x|y"', '""')
AGG_VALUE = ("sum", "avg", "min", "max", "distinct_count")

# ------------------------------------------------------------------ pattern model


@dataclass
class StageSpec:
    name: str
    index: int  # position among all stages, in source order
    negated: bool = False
    quant: str = ""  # as written, e.g. "", "?", "+", "{2,}", "{1,3}?"
    has_quant: bool = False  # an AST quantifier (not for a bare `?`)
    unbounded: bool = False  # max is None
    optional: bool = False
    looping: bool = False  # may take several events (own quantifier or a looping group)
    mods: list[str] = field(default_factory=list)
    where: str | None = None
    until: str | None = None
    within: int | None = None


@dataclass
class GroupSpec:
    steps: list[tuple[str | None, StageSpec]]
    quant: str = ""
    has_quant: bool = False
    unbounded: bool = False
    optional: bool = False
    looping: bool = False
    mods: list[str] = field(default_factory=list)
    until: str | None = None
    within: int | None = None


Element = StageSpec | GroupSpec


@dataclass
class Scope:
    """What an expression may read."""

    fields: bool  # the current event's fields (conditions, not emit)
    single: list[str]  # single-event stages readable as `s.f`
    aggs: list[str]  # stages readable through aggregates
    lets: list[str] = field(default_factory=list)
    measures: list[str] = field(default_factory=list)


# (as written, has an AST quantifier, unbounded, optional, may take several events)
QUANTS: list[tuple[str, bool, bool, bool, bool]] = [
    ("?", False, False, True, False),
    ("+", True, True, False, True),
    ("*", True, True, True, True),
    ("+?", True, True, True, True),
    ("{1}", True, False, False, False),
    ("{2}", True, False, False, True),
    ("{3}", True, False, False, True),
    ("{2}?", True, False, True, True),
    ("{1,2}", True, False, False, True),
    ("{2,3}", True, False, False, True),
    ("{1,3}?", True, False, True, True),
    ("{0,2}", True, False, True, True),
    ("{,2}", True, False, True, True),
    ("{1,}", True, True, False, True),
    ("{2,}", True, True, False, True),
    ("{2,}?", True, True, True, True),
    ("{0,}", True, True, True, True),
]


def _pick(draw: Any, options: Any) -> Any:
    return draw(st.sampled_from(options))


def _chance(draw: Any, num: int, den: int) -> bool:
    return draw(st.integers(0, den - 1)) < num


# ------------------------------------------------------------------ expressions


def _field_ref(draw: Any, numeric: bool = False) -> str:
    return _pick(draw, NUM_FIELDS if numeric else ANY_FIELDS)


def _weighted(draw: Any, options: list[tuple[int, str]]) -> str:
    """One label, drawn with the given integer weights (zero-weight labels skipped)."""
    labels = [label for w, label in options for _ in range(w)]
    return _pick(draw, labels)


def _agg(draw: Any, sc: Scope) -> str:
    s = _pick(draw, sc.aggs)
    kind = draw(st.integers(0, 5))
    f = _pick(draw, ("a", "b", "f", "s", "n.x"))
    if kind == 0:
        return f"count({s})"
    if kind == 1:
        return f"{_pick(draw, ('first', 'last'))}({s}).{f}"
    fn = _pick(draw, AGG_VALUE)
    arg = _pick(draw, (f"{s}.{f}", f"{s}.{f} * 2", f"{s}.a + {s}.b", f"-{s}.{f}", f"{s}.ts"))
    return f"{fn}({arg})"


def _literal(draw: Any) -> str:
    return _pick(draw, (*NUM_LITS, *STR_LITS, "true", "false", "null", "-1", "-1.5"))


def gen_value(draw: Any, sc: Scope, depth: int, literal: int = 2) -> str:
    """A value expression (of any type at run time). `literal` weighs bare literals."""
    c = _weighted(draw, [
        (literal, "lit"), (1, "special"),
        (5 if sc.fields else 0, "field"), (1 if sc.fields and sc.lets else 0, "let"),
        (2 if sc.single else 0, "stage"), (2 if sc.aggs else 0, "agg"),
        (2 if sc.measures else 0, "measure"),
        *([(2, "arith"), (1, "neg"), (2, "fn"), (1, "if"), (1, "bool")] if depth > 0 else []),
    ])
    if c == "lit":
        return _literal(draw)
    if c == "special":
        return _pick(draw, ("ts", "key"))
    if c == "field":
        return _field_ref(draw)
    if c == "let":
        return _pick(draw, sc.lets)
    if c == "stage":
        s = _pick(draw, sc.single)
        return f"{s}.{_pick(draw, ('a', 'b', 'f', 's', 'n.x', 'ts', 'l'))}"
    if c == "agg":
        return _agg(draw, sc)
    if c == "measure":
        return _pick(draw, sc.measures)
    if c == "arith":
        op = _pick(draw, ("+", "-", "*", "/", "%"))
        return f"({gen_value(draw, sc, depth - 1)} {op} {gen_value(draw, sc, depth - 1)})"
    if c == "neg":
        return f"-{gen_value(draw, sc, depth - 1)}"
    if c == "if":
        return (f"if({gen_bool(draw, sc, depth - 1)}, {gen_value(draw, sc, depth - 1)}, "
                f"{gen_value(draw, sc, depth - 1)})")
    if c == "bool":
        return f"({gen_bool(draw, sc, depth - 1)})"
    fn = _pick(draw, ("abs", "round", "round2", "floor", "ceil", "lower", "upper", "len",
                      "coalesce", "hour", "weekday", "distance_km"))
    v = gen_value(draw, sc, depth - 1)
    if fn == "round2":
        return f"round({v}, {_pick(draw, ('0', '1', '2', '-1', 'a'))})"
    if fn == "coalesce":
        return f"coalesce({v}, {gen_value(draw, sc, depth - 1)})"
    if fn == "distance_km":
        rest = ", ".join(gen_value(draw, sc, 0) for _ in range(3))
        return f"distance_km({v}, {rest})"
    return f"{fn}({v})"


def _exists_arg(draw: Any, sc: Scope) -> str:
    opts = []
    if sc.fields:
        opts.append(_field_ref(draw))
    if sc.single:
        opts.append(f"{_pick(draw, sc.single)}.{_pick(draw, ('a', 's', 'n.x'))}")
    if sc.aggs:
        opts.append(f"last({_pick(draw, sc.aggs)}).a")
    return _pick(draw, opts) if opts else ""


def _simple(draw: Any, sc: Scope) -> str:
    """A condition that often holds for generated events: a field against a small
    constant, or a stage/aggregate against the current event."""
    c = _weighted(draw, [(5 if sc.fields else 0, "num"), (2 if sc.fields else 0, "str"),
                         (2 if sc.single else 0, "stage"), (2 if sc.aggs else 0, "agg"),
                         (1, "const")])
    op = _pick(draw, ("==", "!=", "<", "<=", ">", ">=", "==", "<="))
    if c == "num":
        return f"{_pick(draw, ('a', 'b', 'a', 'n.x'))} {op} {_pick(draw, ('0', '1', '2'))}"
    if c == "str":
        return _pick(draw, ('s == "x"', 's != "y"', 's in ["x", "y"]', "exists(a)",
                            's starts with "x"', 'not (s == "y")'))
    if c == "stage":
        left = "a" if sc.fields else _pick(draw, ("1", "key"))
        return f"{_pick(draw, sc.single)}.a {op} {left}"
    if c == "agg":
        s = _pick(draw, sc.aggs)
        return _pick(draw, (f"count({s}) <= 2", f"sum({s}.a) < 5", f"last({s}).a != 3",
                            f"max({s}.b) >= 0", f"count({s}) > 0"))
    return "true"


def gen_bool(draw: Any, sc: Scope, depth: int) -> str:
    """A condition."""
    c = _weighted(draw, [
        (12, "simple"), (3, "cmp"), (1, "in"), (1, "strop"), (1, "exists"),
        *([(2, "and"), (2, "or"), (1, "not")] if depth > 0 else []),
        (1, "const"), (1, "bare"),
    ])
    if c == "simple":
        return _simple(draw, sc)
    if c == "cmp":
        op = _pick(draw, ("==", "!=", "<", "<=", ">", ">="))
        left = gen_value(draw, sc, min(depth, 1), literal=0 if _chance(draw, 9, 10) else 2)
        return f"{left} {op} {gen_value(draw, sc, min(depth, 1))}"
    if c == "in":
        items = draw(st.lists(st.sampled_from((*NUM_LITS[:5], *STR_LITS, "null", "true")),
                              max_size=3))
        right = f"[{', '.join(items)}]"
        if sc.fields and _chance(draw, 1, 4):
            right = "l"
        op = _pick(draw, ("in", "not in"))
        return f"{gen_value(draw, sc, 0, literal=0)} {op} {right}"
    if c == "strop":
        v = gen_value(draw, sc, 0, literal=0)
        op = _pick(draw, ("matches", "contains", "starts with", "ends with"))
        if op == "matches":
            return f"{v} matches {_pick(draw, REGEXES)}"
        return f"{v} {op} {_pick(draw, (*STR_LITS, 's', 'l'))}" if sc.fields else \
            f"{v} {op} {_pick(draw, STR_LITS)}"
    if c == "exists":
        arg = _exists_arg(draw, sc)
        if not arg:
            return "true"
        return f"exists({arg})"
    if c == "and":
        return f"({gen_bool(draw, sc, depth - 1)} and {gen_bool(draw, sc, depth - 1)})"
    if c == "or":
        return f"({gen_bool(draw, sc, depth - 1)} or {gen_bool(draw, sc, depth - 1)})"
    if c == "not":
        return f"not ({gen_bool(draw, sc, depth - 1)})"
    if c == "const":
        return _pick(draw, ("true", "false", "true"))
    return gen_value(draw, sc, 0)  # a bare value used as a condition


# ------------------------------------------------------------------ the sequence


def _quantify(draw: Any, el: StageSpec | GroupSpec, weight_none: int) -> None:
    if _chance(draw, weight_none, weight_none + 4):
        return
    text, has_q, unbounded, optional, looping = _pick(draw, QUANTS)
    el.quant, el.has_quant, el.unbounded, el.optional = text, has_q, unbounded, optional
    el.looping = el.looping or looping


def _stage(draw: Any, names: list[str], negated: bool, in_loop: bool) -> StageSpec:
    st_ = StageSpec(name=f"p{len(names)}", index=len(names), negated=negated)
    names.append(st_.name)
    if not negated:
        _quantify(draw, st_, 5)
        st_.looping = st_.looping or in_loop
    return st_


def _connector(draw: Any, negated: bool) -> str:
    if negated:
        return _pick(draw, ("next", "then"))
    return _pick(draw, ("next", "then", "then", "then any"))


@dataclass
class PatternSpec:
    text: str
    has_window: bool  # pattern `within`
    any_window: bool  # a pattern or stage window somewhere
    key: tuple[str, ...]
    stages: list[str]


def _flat(elements: list[tuple[str | None, Element]]) -> list[StageSpec]:
    out: list[StageSpec] = []
    for _, el in elements:
        if isinstance(el, GroupSpec):
            out.extend(s for _, s in el.steps)
        else:
            out.append(el)
    return out


def _modifiers(draw: Any, seq: list[tuple[str | None, Element]], allow_greedy: bool) -> None:
    for i, (_, el) in enumerate(seq):
        if isinstance(el, StageSpec) and el.negated:
            continue
        if not el.has_quant or _chance(draw, 1, 2):
            continue
        nxt_optional = i + 1 < len(seq) and seq[i + 1][1].optional
        opts: list[list[str]] = [["consecutive"], ["combinations"]]
        if allow_greedy and isinstance(el, StageSpec) and not nxt_optional:
            opts += [["greedy"], ["greedy", "consecutive"], ["consecutive", "greedy"]]
        el.mods = draw(st.sampled_from(opts))


@st.composite
def pattern_specs(draw: Any, window: bool | None = None) -> PatternSpec:
    """A valid pattern text (most of the time). `window`: force a pattern `within`
    (True) or none (False); None: random."""
    names: list[str] = []
    n_el = draw(st.integers(1, 5))
    seq: list[tuple[str | None, Element]] = []
    for i in range(n_el):
        prev = seq[-1][1] if seq else None
        can_not = i > 0 and prev is not None and not prev.optional
        if can_not and _chance(draw, 1, 5):
            conn = _connector(draw, True)
            seq.append((conn, _stage(draw, names, True, False)))
            continue
        conn = None if i == 0 else _connector(draw, False)
        if _chance(draw, 1, 7):
            g = GroupSpec(steps=[])
            _quantify(draw, g, 2)
            body_n = draw(st.integers(1, 3))
            for j in range(body_n):
                gprev = g.steps[-1][1] if g.steps else None
                middle = 0 < j < body_n - 1
                if middle and gprev is not None and not gprev.optional and _chance(draw, 1, 3):
                    g.steps.append((_connector(draw, True), _stage(draw, names, True, False)))
                    continue
                g.steps.append((None if j == 0 else _connector(draw, False),
                                _stage(draw, names, False, g.looping)))
            _modifiers(draw, g.steps, True)
            seq.append((conn, g))
        else:
            seq.append((conn, _stage(draw, names, False, False)))
    _modifiers(draw, seq, True)
    stages = _flat(seq)
    positive = [s for s in stages if not s.negated]

    # -- lets
    lets: list[str] = []
    let_lines: list[str] = []
    if _chance(draw, 1, 6):
        for i in range(draw(st.integers(1, 2))):
            name = f"v{i}"
            sc = Scope(fields=True, single=[], aggs=[], lets=list(lets))
            let_lines.append(f"let {name} = {gen_value(draw, sc, 1)}")
            lets.append(name)

    # -- windows
    has_window = _chance(draw, 3, 5) if window is None else window
    window_ms = draw(st.integers(5, 60)) if has_window else None
    limit = window_ms or 60

    def stage_window() -> int | None:
        return draw(st.integers(3, limit)) if _chance(draw, 1, 5) else None

    # -- conditions
    def cond_scope(s: StageSpec) -> Scope:
        earlier = [p for p in positive if p.index < s.index]
        single = [p.name for p in earlier if not p.looping]
        aggs = [p.name for p in earlier]
        if s.looping and not s.negated:
            aggs.append(s.name)
        return Scope(fields=True, single=single, aggs=aggs, lets=lets)

    for s in stages:
        if _chance(draw, 3, 4) or s.negated:
            s.where = gen_bool(draw, cond_scope(s), draw(st.integers(0, 2)))
        if s.unbounded and not s.negated and _chance(draw, 1, 3):
            s.until = gen_bool(draw, cond_scope(s), 1)
        s.within = stage_window()
    for _, el in seq:
        if isinstance(el, GroupSpec):
            el.within = stage_window()
            if el.unbounded and _chance(draw, 1, 3):
                last = el.steps[-1][1]
                sc = cond_scope(last)
                own_pos = [s.name for _, s in el.steps if not s.negated]
                sc = Scope(fields=True, single=[n for n in sc.single if n not in own_pos],
                           aggs=sorted(set(sc.aggs) | set(own_pos)), lets=lets)
                el.until = gen_bool(draw, sc, 1)
    last_conn, last_el = seq[-1]
    if isinstance(last_el, StageSpec) and last_el.negated and last_conn == "then" \
            and window_ms is None and last_el.within is None:
        last_el.within = draw(st.integers(3, 60))

    # -- header
    header: list[str] = []
    key: tuple[str, ...] = ()
    kc = draw(st.integers(0, 5))
    if kc in (1, 2, 3):
        key = ("k",)
    elif kc == 4:
        key = ("k", "j")
    elif kc == 5:
        key = ("n.x",)
    if key:
        header.append("key " + ", ".join(key))
    if window_ms is not None:
        header.append(f"within {window_ms}ms")
    skip = draw(st.integers(0, 6))
    if skip == 1:
        header.append("skip past last")
    elif skip == 2:
        header.append("skip to next")
    elif skip == 3:
        header.append(f"skip to first {_pick(draw, [p.name for p in positive])}")
    elif skip == 4:
        header.append(f"skip to last {_pick(draw, [p.name for p in positive])}")
    elif skip >= 5:
        header.append("skip none")
    if _chance(draw, 1, 5):
        header.append(_pick(draw, ("order by o", "order by o, id", "order by n.x")))
    if _chance(draw, 1, 8):
        header.append('description "fuzz"')
    if _chance(draw, 1, 8):
        header.append("from events, other")
    header += let_lines
    header = list(draw(st.permutations(header)))

    # -- emit
    emit_sc = Scope(fields=False, single=[p.name for p in positive if not p.looping],
                    aggs=[p.name for p in positive])

    def emit_body() -> str:
        parts = []
        if _chance(draw, 1, 4):
            parts.append('to "alerts"')
        if _chance(draw, 1, 4):
            parts.append(f"severity {_pick(draw, ('low', 'medium', 'high', 'critical'))}")
        nm = draw(st.integers(0, 3))
        measures = [f"m{i} = {gen_value(draw, emit_sc, 1)}" for i in range(nm)]
        if _chance(draw, 1, 5):
            wsc = Scope(fields=False, single=emit_sc.single, aggs=emit_sc.aggs,
                        measures=[f"m{i}" for i in range(nm)])
            parts.append(f"when {gen_bool(draw, wsc, 1)}")
        sep = _pick(draw, (", ", "\n    "))
        if measures or _chance(draw, 1, 2):
            parts.append("{ " + sep.join(measures) + " }")
        return " ".join(parts)

    tail = []
    ec = draw(st.integers(0, 5))
    if ec <= 3:
        tail.append("emit " + emit_body())
    if ec >= 3 and _chance(draw, 1, 2):
        tail.append("on timeout emit " + emit_body())

    text = render(header, seq, tail)
    return PatternSpec(
        text=text,
        has_window=window_ms is not None,
        any_window=window_ms is not None or any(s.within for s in stages)
        or any(isinstance(el, GroupSpec) and el.within for _, el in seq),
        key=key,
        stages=[p.name for p in positive],
    )


def _render_stage(s: StageSpec) -> str:
    out = ("not " if s.negated else "") + s.name + s.quant
    if s.mods:
        out += " " + " ".join(s.mods)
    if s.where is not None:
        out += f" where {s.where}"
    if s.until is not None:
        out += f" until {s.until}"
    if s.within is not None:
        out += f" within {s.within}ms"
    return out


def _render_seq(seq: list[tuple[str | None, Element]], indent: str) -> str:
    lines = []
    for conn, el in seq:
        if isinstance(el, GroupSpec):
            body = "(" + _render_seq(el.steps, indent + "  ") + ")" + el.quant
            if el.mods:
                body += " " + " ".join(el.mods)
            if el.until is not None:
                body += f" until {el.until}"
            if el.within is not None:
                body += f" within {el.within}ms"
        else:
            body = _render_stage(el)
        lines.append((f"{conn} " if conn else "") + body)
    return f"\n{indent}".join(lines)


def render(header: list[str], seq: list[tuple[str | None, Element]], tail: list[str]) -> str:
    h = "".join(f"  {line}\n" for line in header)
    t = "".join(f"  {line}\n" for line in tail)
    return f"pattern fz {{\n{h}  match\n    {_render_seq(seq, '    ')}\n{t}}}\n"


# ------------------------------------------------------------------ events

SMALL = st.one_of(st.integers(0, 3), st.sampled_from(["x", "y", ""]), st.none())
SCALARS = st.one_of(
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 1.0, 2.5, -0.0, 1e308, -1e308]),
    st.sampled_from(["x", "y", "", "xy", "X1"]),
    st.text(max_size=4),
    st.none(),
    st.booleans(),
)
VALUES = st.one_of(
    SCALARS,
    SCALARS,
    SCALARS,
    st.lists(SMALL, max_size=3),
    st.dictionaries(st.sampled_from(["x", "y"]), SMALL, max_size=2),
)
KEYS = st.one_of(
    st.sampled_from(["k1", "k2", "k1", "k2"]),
    st.sampled_from(["k1", "k2", "k1", "k2"]),
    st.sampled_from([1, 1.0, True, 2, None, [1], {"a": 1}, "", "k3"]),
)
SCALAR_KEYS = st.sampled_from(["k1", "k2", "k1", "k2", "k1", "k2", 7, None])
# JSON-distinct scalar keys that are equal in Python
ODD_SCALAR_KEYS = st.sampled_from(["k1", "k2", "k1", 1, 1.0, True])
MISSING = object()


@st.composite
def event_lists(draw: Any, min_size: int = 3, max_size: int = 14, scalar_keys: bool = False
                ) -> list[dict[str, Any]]:
    """Events ordered by `ts` (ties kept), each with a unique `id`."""
    n = draw(st.integers(min_size, max_size))
    ts = draw(st.integers(0, 1000))
    out = []
    keys = KEYS
    if scalar_keys:
        keys = ODD_SCALAR_KEYS if draw(st.integers(0, 5)) == 0 else SCALAR_KEYS
    for i in range(n):
        ts += draw(st.sampled_from([0, 0, 1, 1, 2, 3, 5, 8, 13, 30]))
        ev: dict[str, Any] = {"id": i, "ts": ts}
        small = st.integers(0, 3)
        for name, usual, odds in (
            ("a", small, 8),
            ("b", small, 7),
            ("f", st.floats(-5, 5), 6),
            ("s", st.sampled_from(["x", "y", "xy"]), 7),
            ("l", st.lists(SMALL, max_size=3), 6),
            ("n", st.fixed_dictionaries({"x": small}), 7),
            ("o", small, 6),
            ("k", keys, 9),
            ("j", keys, 9),
        ):
            roll = draw(st.integers(0, 19))
            if roll < 2 * odds:  # the usual kind of value
                ev[name] = draw(usual)
            elif roll < 18:  # anything
                ev[name] = draw(VALUES)
            # else: missing
        out.append(ev)
    return out


def shuffle_within(events: list[dict[str, Any]], ooo: int, rnd: random.Random
                   ) -> list[dict[str, Any]]:
    """A permutation of `events` (ordered by ts) that never makes an event late with
    out-of-orderness `ooo`: each event's ts >= (max ts before it) - ooo; events with
    equal ts keep their relative order (ties are broken by arrival)."""
    remaining = list(events)
    out = []
    while remaining:
        low = remaining[0]["ts"]
        seen_ts: set[int] = set()
        eligible = []
        for j, e in enumerate(remaining):
            if e["ts"] > low + ooo:
                break
            if e["ts"] not in seen_ts:  # only the first of its ts
                seen_ts.add(e["ts"])
                eligible.append(j)
        j = rnd.choice(eligible)
        out.append(remaining.pop(j))
    return out
