"""A validated pattern -> one immutable `CompiledPattern` (the NFA + generated code).

`compile_pattern` is the compiler's single entry point. It builds the NFA program
(`nfa.py`), generates one Python module per pattern (`codegen.py`) with:

- `c<i>(d, ts, key, lets, path)`: condition i, True iff it is TRUE for the current
  event `d` (a dict) given the partial match `path`;
- `prefilter(ds, tss, horizon, get, create, out, unk, ticks)`: the per-batch fast
  path. For each event it reads the key, and decides relevance: a key with no state
  needs an event that can start a match (the event-local conditions of the start
  stage); a key with state needs an event that can touch some condition, unless the
  pattern is not skip-safe (`_is_skip_safe`). Events that fail touch nothing; no
  objects are made for them, except a `(i, key state)` tick when the pattern has
  windows: the event's time still advances the key's time, as in Flink. Events with
  no usable key that would start a match go to `unk` (`missing_key` candidates);
- `start_rel`/`any_rel`: the same tests for patterns with `let` values (evaluated
  after the batch's lets are computed);
- `lets_of`, `let_cols`: per-event `let` values; `let_cols` builds the batch's feature
  columns for `score(...)`, whose results come to `lets_of` in `sc`;
- `emit`/`emit_feats` and `timeout_emit`/`timeout_feats`: measures + `when`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cep.compiler import codegen
from cep.compiler.codegen import ExprCompiler, SourceBuilder
from cep.compiler.nfa import Action, ConditionTable, NfaProgram, compile_nfa
from cep.compiler.stepgen import Inline, generate_feed
from cep.dsl import ast
from cep.program import CompiledPattern, EmitPlan, FilterBlock, Kind, ScoreCall

__all__ = ["CompiledPattern", "EmitPlan", "compile_pattern"]

SKIP_KINDS = ("none", "to_next", "past_last", "to_first", "to_last")
DEFAULT_SEVERITY = "medium"


@dataclass(frozen=True)
class _EmitSpec:
    """An `emit` clause before the module is built: the names of its functions."""

    topic: str | None
    severity: str
    measure_names: tuple[str, ...]
    score_calls: tuple[ScoreCall, ...]
    fn: str
    feats: str

    def bind(self, fns: dict[str, Any]) -> EmitPlan:
        return EmitPlan(self.topic, self.severity, self.measure_names, self.score_calls,
                        fns[self.fn], fns[self.feats])


def _key_expr(paths: tuple[tuple[str, ...], ...], missing: list[str]) -> list[str]:
    """Lines that set `k` to the normalised key of `d`; when it has none, the `missing`
    lines run (they end with `continue`)."""
    if not paths:
        return ["k = ()"]

    def one(p: tuple[str, ...]) -> str:
        return f"d.get({p[0]!r})" if len(p) == 1 else f"_path(d, {p!r})"

    def on_missing(indent: str) -> list[str]:
        return [indent + ln for ln in missing]

    if len(paths) == 1:
        return [
            f"k = {one(paths[0])}",
            "if k is None:",
            *on_missing("    "),
            "if k.__class__ is not _str:",
            "    k = _nkey(k)",
            "    if k is None:",
            *on_missing("        "),
        ]
    parts = ", ".join(f"_nkey({one(p)})" for p in paths)
    return [f"k = ({parts})", "if None in k:", *on_missing("    ")]


@dataclass
class _Build:
    """What every stage of `compile_pattern` reads: the pattern, its NFA program and
    conditions, name tables, and the module being generated."""

    pattern: ast.Pattern
    program: NfaProgram
    conds: ConditionTable
    stage_index: dict[str, int]
    let_index: dict[str, int]
    sb: SourceBuilder

    @property
    def stages(self) -> frozenset[str]:
        return frozenset(self.stage_index)

    def compiler(self, **kw: Any) -> ExprCompiler:
        return ExprCompiler(self.sb.module, self.stage_index, self.let_index, **kw)

    def add(self, name: str, params: str, body: list[str], what: str,
            line: int | None = None) -> None:
        self.sb.add(name, params, body, self.pattern.span.line if line is None else line, what)


def compile_pattern(pattern: ast.Pattern, version: int = 1) -> CompiledPattern:
    """Compile a pattern that passed `cep.dsl.check` (the compiler trusts the checker):
    the NFA program, then one generated module with its conditions, NFA steps,
    relevance tests, prefilter, `let` values and `emit` clauses."""
    conds = ConditionTable()
    program = compile_nfa(pattern, conds)
    b = _Build(pattern, program, conds, {n: i for i, n in enumerate(program.stage_names)},
               {lt.name: i for i, lt in enumerate(pattern.lets)}, SourceBuilder(pattern.name))
    cond_local, cond_text = _add_conditions(b)
    _add_steps(b, cond_local)
    start_expr, any_expr, skip_safe = _add_relevance(b)
    _add_prefilter(b, start_expr, any_expr, skip_safe)
    block = (None if pattern.lets or pattern.order_by
             else _filter_block(b, start_expr, any_expr, skip_safe))
    let_scores = _add_lets(b)
    # without `emit`, a match is an alert with no measures, unless the pattern only
    # declares `on timeout emit` (it is about what did not happen; docs/semantics.md)
    emit_spec = (
        None
        if pattern.emit is None and pattern.timeout_emit is not None
        else _emit(b.sb, "emit", pattern.emit or ast.Emit(), b.stage_index, b.let_index)
    )
    timeout_spec = (
        _emit(b.sb, "timeout", pattern.timeout_emit, b.stage_index, b.let_index)
        if pattern.timeout_emit is not None
        else None
    )
    module = codegen.build_module(b.sb, pattern.file)
    fns = module.namespace
    skip = pattern.skip
    return CompiledPattern(
        name=pattern.name,
        version=version,
        pattern=pattern,
        nfa=program,
        module=module,
        conds=tuple(fns[f"c{i}"] for i in range(len(conds.exprs))),
        bind_steps=fns["bind_steps"],
        cond_local=tuple(cond_local),
        cond_text=tuple(cond_text),
        prefilter=fns["prefilter"],
        start_rel=fns["start_rel"],
        any_rel=fns["any_rel"],
        skip_safe=skip_safe,
        timed=_timed(program),
        let_names=tuple(b.let_index),
        lets_of=fns["lets_of"],
        let_cols=fns["let_cols"],
        let_score_calls=tuple(let_scores),
        emit=emit_spec.bind(fns) if emit_spec is not None else None,
        timeout=timeout_spec.bind(fns) if timeout_spec is not None else None,
        skip_kind=skip.kind,
        skip_stage=b.stage_index[skip.stage] if skip.stage is not None else -1,
        key_paths=pattern.key,
        time_field=pattern.time_field,
        time_arrival=pattern.time_arrival,
        order_by=pattern.order_by,
        streams=frozenset(pattern.streams) if pattern.streams is not None else None,
        filter_block=block,
    )


def _add_conditions(b: _Build) -> tuple[list[bool], list[str]]:
    """`c<i>` per condition; per condition, whether it reads only the current event,
    and its text for `cep dis`."""
    conds = b.conds
    cond_local: list[bool] = []
    cond_text: list[str] = []
    for i, expr in enumerate(conds.exprs):
        if i in conds.composite:
            lits = conds.composite[i]
            parts = [f"(c{abs(x) - 1}(d, ts, key, lets, path) is {x > 0})" for x in lits]
            b.add(f"c{i}", "d, ts, key, lets, path", [f"return {' and '.join(parts)}"],
                  f"condition {conds.owner[i]}")
            cond_local.append(all(cond_local[abs(x) - 1] for x in lits))
            cond_text.append(conds.owner[i])
            continue
        ec = b.compiler()
        body = ec.truth(expr)
        b.add(f"c{i}", "d, ts, key, lets, path", [*ec.prologue(), f"return {body}"],
              f"condition of {conds.owner[i]}", expr.span.line)
        cond_local.append(codegen.is_event_local(expr, b.stages))
        cond_text.append(f"{conds.owner[i]}#{i}")
    return cond_local, cond_text


def _add_steps(b: _Build, cond_local: list[bool]) -> None:
    """The NFA step (stepgen.py): `feed`, made by `bind_steps(Run, Node)` so that it
    closes over the classes the runtime passes. Conditions are written into it
    (field reads shared, once per event) unless they build a list (an aggregate's
    comprehension would turn the feed's variables into closure cells) or are
    composite; errors in their lines point to the condition's pattern line."""
    ec = b.compiler()
    inline: dict[int, Inline] = {}
    conds = b.conds
    for i, expr in enumerate(conds.exprs):
        if i in conds.composite:
            continue
        src, fields, stages = ec.inline_truth(expr)
        if " for " in src or "sc[" in src:
            continue
        inline[i] = Inline(src, fields, stages, expr.span.line)
    reads = {var: ec.field_read(path) for path, var in ec.fields.items()}
    feed = generate_feed(b.program, tuple(cond_local), inline, reads)
    origins: list[tuple[int, str] | None] = [
        None if m < 0 else (inline[m].line, f"condition of {conds.owner[m]}")
        for m in feed.marks]
    b.sb.add_factory("bind_steps", "Run, Node",
                     [("feed", "runs, ev, key, out, fin, start", feed.lines, "NFA step")],
                     "feed", b.pattern.span.line, {"feed": origins})


def _add_relevance(b: _Build) -> tuple[ast.Expr, ast.Expr, bool]:
    """`start_rel` / `any_rel`: can an event start a match / touch any condition (its
    event-local parts)? Returns both tests and whether skipping is safe."""
    program, conds, stages = b.program, b.conds, b.stages
    start_expr = codegen.or_all(
        [codegen.and_all([codegen.local_part(conds.exprs[c], stages) for c in cs])
         for cs in _start_take_conditions(program)]
    )
    any_expr = codegen.or_all(
        [codegen.local_part(e, stages) for e in conds.exprs]
        + ([] if all(_cond_nonempty(program)) else [ast.Literal(True)])
    )
    skip_safe = _is_skip_safe(program, b.pattern, conds)
    for name, expr in (("start_rel", start_expr), ("any_rel", any_expr)):
        ec = b.compiler()
        body = ec.truth(expr) if (name == "start_rel" or skip_safe) else "True"
        b.add(name, "d, ts, key, lets", [*ec.prologue(), f"return {body}"],
              f"relevance test {name}")
    return start_expr, any_expr, skip_safe


def _add_prefilter(b: _Build, start_expr: ast.Expr, any_expr: ast.Expr,
                   skip_safe: bool) -> None:
    """`prefilter`: the per-batch fast path (see the module docstring).

    Events arrive in (time, arrival) order here. A key without state only needs an
    event that can start a match, but only when the event is processed at the end of
    this batch (time <= horizon, the new watermark): then nothing earlier can still
    arrive. An event that stays buffered may yet be preceded by one that starts a
    match, so it needs the broader test, as for keys with state.

    An event the pattern cannot key but would start on goes to `unk` (the engine
    decides whether it is a `missing_key` dead letter: cep/runtime/keys.py); with
    `let` values the start test needs them, so every unkeyed event goes there."""
    has_lets = bool(b.pattern.lets)
    if has_lets:
        missing = ["unk.append(d)", "continue"]
    else:
        ecm = b.compiler(inline_fields=True)  # short-circuits: often one field read
        would_start = ecm.truth(start_expr)
        check = [*ecm.prologue(), f"if {would_start}:"]
        # set only the names the test reads: this runs for every event without a key
        used = [f"{name} = {value}" for name, value in
                (("ts", "tss[i]"), ("key", "None"), ("lets", "None"))
                if any(re.search(rf"\b{name}\b", ln) for ln in check)]
        missing = [*used, *check, "    unk.append(d)", "continue"]
    pre = ["i = -1", "for d in ds:", "    i += 1"]
    pre += ["    " + ln for ln in _key_expr(b.pattern.key, missing)]
    if has_lets:
        # relevance needs the let values: computed for the batch, tested afterwards
        pre += ["    out.append((i, k))"]
    else:
        ec = b.compiler()
        test = ec.truth(start_expr)
        ec2 = b.compiler()
        test2 = ec2.truth(any_expr) if skip_safe else "True"
        setup = ["ts = tss[i]", "key = k", "lets = None"]
        pre += ["    ks = get(k)", "    if ks is None:"]
        if test != "True":
            pre += ["        if tss[i] <= horizon:"]
            pre += ["            " + ln for ln in setup + ec.prologue()]
            pre += [f"            if not {test}:", "                continue"]
            if test2 != "True":
                pre += ["        else:"]
                pre += ["            " + ln for ln in setup + ec2.prologue()]
                pre += [f"            if not {test2}:", "                continue"]
        pre += ["        ks = create(k)"]
        if test2 != "True":
            pre += ["    else:"]
            pre += ["        " + ln for ln in setup + ec2.prologue()]
            pre += [f"        if not {test2}:"]
            if _timed(b.program):
                pre += ["            ticks.append((i, ks))"]
            pre += ["            continue"]
        pre += ["    out.append((i, ks))"]
    b.add("prefilter", "ds, tss, horizon, get, create, out, unk, ticks", pre, "prefilter")


class _PlaceholderConsts:
    """Module constants for a filter block: registered in the pattern's own module (so
    they exist in its namespace), written as `\\x00<name>\\x00` placeholders."""

    def __init__(self, module: codegen.Module) -> None:
        self.module = module
        self.used: list[str] = []

    def const(self, src: str) -> str:
        name = self.module.const(src)
        if name not in self.used:
            self.used.append(name)
        return f"\x00{name}\x00"


class _BlockCompiler(ExprCompiler):
    """Event-local tests over placeholder fields (`\\x00F<i>\\x00`, see FilterBlock)."""

    def __init__(self, consts: _PlaceholderConsts, fields: list[tuple[str, ...]]) -> None:
        super().__init__(consts, {}, {})  # type: ignore[arg-type]
        self.paths = fields

    def _field(self, path: tuple[str, ...]) -> str:
        if path not in self.paths:
            self.paths.append(path)
        return f"\x00F{self.paths.index(path)}\x00"

    def _reuse(self, src: str) -> tuple[str, str]:
        if src.startswith("\x00F") and src.count("\x00") == 2:
            return src, src  # a plain variable once the runtime substitutes it
        return super()._reuse(src)


def _filter_block(b: _Build, start_expr: ast.Expr, any_expr: ast.Expr,
                  skip_safe: bool) -> FilterBlock:
    """The pattern's block of the engine's shared prefilter (cep/program.py FilterBlock,
    cep/runtime/shared_filter.py): the same tests as `prefilter`, over shared fields."""
    consts = _PlaceholderConsts(b.sb.module)
    fields: list[tuple[str, ...]] = []
    start = _BlockCompiler(consts, fields).truth(start_expr)
    anyt = "True"
    if skip_safe and not (isinstance(any_expr, ast.Literal) and any_expr.value is True):
        # `any_expr`'s disjuncts, each once (conditions often repeat: `a where x`
        # `then b where x and ...`)
        parts: list[str] = []
        for e in b.conds.exprs:
            text = _BlockCompiler(consts, fields).truth(codegen.local_part(e, b.stages))
            if text not in parts:
                parts.append(text)
        anyt = "True" if "True" in parts else f"({' or '.join(parts)})" if parts else "False"
    program = b.program
    window_only = all(w == 0 for w in program.expiry) and all(
        st.window == 0 for st in program.states)
    return FilterBlock(tuple(fields), tuple(consts.used), start, anyt, window_only,
                       program.window)


def _timed(program: NfaProgram) -> bool:
    """The pattern has windows: an event the relevance filter skips for a key with
    state still advances the key's time (Flink's advanceTime before each timestamp),
    so the prefilter hands it over as a tick, not an event."""
    return program.window > 0 or any(w > 0 for w in program.expiry)


def _add_lets(b: _Build) -> list[ScoreCall]:
    """`lets_of` (an event's `let` values) and `let_cols` (the batch's feature columns
    for the `score(...)` calls in lets, one list comprehension per feature)."""
    let_scores: list[ScoreCall] = []
    ec = b.compiler(score_calls=let_scores)
    lets = b.pattern.lets
    values = [f"lets[{i}] = {ec.value(lt.expr)}" for i, lt in enumerate(lets)]
    lets_body = [*ec.prologue(), f"lets = [None] * {len(lets)}", *values, "return lets"]
    b.add("lets_of", "d, ts, key, sc", lets_body, "let values")
    cols = []
    for call in let_scores:
        ecc = b.compiler(inline_fields=True)
        per = [f"[{ecc.value(x)} for d, ts, key in _zip(ds, tss, keys)]" for _, x in call.features]
        cols.append("(" + "".join(c + ", " for c in per) + ")")
    b.add("let_cols", "ds, tss, keys", ["return (" + "".join(c + ", " for c in cols) + ")"],
          "let score features", let_scores[0].span.line if let_scores else 0)
    return let_scores


def _add_feats(
    sb: SourceBuilder, name: str, params: str, calls: list[ScoreCall],
    stage_index: dict[str, int], let_index: dict[str, int], context: str,
) -> None:
    ec = ExprCompiler(sb.module, stage_index, let_index, context=context)
    tuples = []
    for call in calls:
        vals = [ec.value(expr) for _, expr in call.features]
        tuples.append("(" + "".join(v + ", " for v in vals) + ")")
    body = [*ec.prologue(), "return (" + "".join(t + ", " for t in tuples) + ")"]
    sb.add(name, params, body, calls[0].span.line if calls else 0, f"{name} features")


def _emit(
    sb: SourceBuilder, prefix: str, emit: ast.Emit, stage_index: dict[str, int],
    let_index: dict[str, int],
) -> _EmitSpec:
    scores: list[ScoreCall] = []
    measures: dict[str, str] = {}
    ec = ExprCompiler(sb.module, stage_index, let_index, context="match",
                      measures=measures, score_calls=scores)
    lines = []
    for i, m in enumerate(emit.measures):
        lines.append(f"m{i} = {ec.value(m.expr)}")
        measures[m.name] = f"m{i}"
    if emit.when is not None:
        lines.append(f"if not {ec.truth(emit.when)}:")
        lines.append("    return None")
    items = ", ".join(f"{m.name!r}: m{i}" for i, m in enumerate(emit.measures))
    lines.append(f"return {{{items}}}")
    sb.add(prefix, "path, key, ts, sc", ec.prologue() + lines, emit.span.line, f"{prefix} measures")
    _add_feats(sb, f"{prefix}_feats", "path, key, ts", scores, stage_index, let_index, "match")
    return _EmitSpec(
        topic=emit.topic,
        severity=emit.severity or DEFAULT_SEVERITY,
        measure_names=tuple(m.name for m in emit.measures),
        score_calls=tuple(scores),
        fn=prefix,
        feats=f"{prefix}_feats",
    )


def _start_take_conditions(program: NfaProgram) -> list[list[int]]:
    """For each TAKE edge reachable from the start through PROCEED edges: the
    conditions it requires (positive literals). An event that satisfies none of them
    cannot start a partial match."""
    out: list[list[int]] = []
    seen = {program.start}
    stack = [program.start]
    while stack:
        st = program.states[stack.pop()]
        for e in st.edges:
            if e.action == Action.PROCEED:
                if e.target not in seen and program.states[e.target].kind != Kind.STOP:
                    seen.add(e.target)
                    stack.append(e.target)
            elif e.action == Action.TAKE:
                if 0 in e.cond:
                    continue  # never holds
                out.append([lit - 1 for lit in e.cond if lit > 0])
    return out


def _cond_nonempty(program: NfaProgram) -> list[bool]:
    """False for any TAKE edge that holds for every event (no positive literal)."""
    return [
        any(lit > 0 for lit in e.cond) or 0 in e.cond
        for st in program.states
        for e in st.edges
        if e.action == Action.TAKE and st.kind != Kind.STOP
    ]


def _is_skip_safe(program: NfaProgram, pattern: ast.Pattern, conds: ConditionTable) -> bool:
    """True if an event for which every condition is false provably changes no live
    partial match, so the relevance filter may skip it for keys with state.

    Flink feeds every event of a key to every partial match, and an event failing every
    condition still fires each edge whose literals are all negated: the IGNORE edge of
    a relaxed stage, and the edges of the states reached through PROCEED edges. Such an
    event changes nothing only when, from every state a partial match can rest in, the
    edges it fires are exactly an IGNORE edge back to that same state. Otherwise it
    does change something: a relaxed loop moves to its ignore state (which has no
    PROCEED edge, so a following `next` / `next not` no longer sees the loop as the
    previous event), a PROCEED into a relaxed stage starts a branch waiting there (one
    more timed-out partial match), an optional stage moves to its ignore state, a
    trailing `next not` completes. Groups are never skip-safe (their loop-back states
    rest without IGNORE edges)."""
    if any(isinstance(s.element, ast.Group) for s in pattern.sequence.steps):
        return False
    resting = {program.start}
    for st in program.states:
        for e in st.edges:
            if e.action in (Action.TAKE, Action.IGNORE):
                resting.add(e.target)
    for idx in resting:
        st = program.states[idx]
        if idx == program.start or st.kind in (Kind.FINAL, Kind.STOP):
            continue
        if not _inert(program, conds, idx):
            return False
    return True


def _fires_when_all_false(cond: tuple[int, ...], conds: ConditionTable) -> bool:
    """Does an edge with these literals hold for an event failing every condition?
    (A composite condition is the conjunction of its literals.)"""

    def value(lit: int) -> bool:
        if lit == 0:
            return False
        i = abs(lit) - 1
        v = all(value(x) for x in conds.composite[i]) if i in conds.composite else False
        return v if lit > 0 else not v

    return all(value(lit) for lit in cond)


def _inert(program: NfaProgram, conds: ConditionTable, idx: int) -> bool:
    """An event failing every condition, fed to a run resting at state `idx`, fires
    exactly one IGNORE edge back to `idx` and nothing else (following PROCEED edges)."""
    self_ignore = False
    seen = {idx}
    stack = [idx]
    while stack:
        s = stack.pop()
        for e in program.states[s].edges:
            if not _fires_when_all_false(e.cond, conds):
                continue
            if e.action == Action.PROCEED:
                target = program.states[e.target]
                if target.kind in (Kind.FINAL, Kind.STOP):
                    return False
                if e.target not in seen:
                    seen.add(e.target)
                    stack.append(e.target)
            elif e.action == Action.IGNORE and s == idx and e.target == idx:
                self_ignore = True
            else:
                return False
    return self_ignore
