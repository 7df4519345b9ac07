"""A validated pattern -> one immutable `CompiledPattern` (the NFA + generated code).

`compile_pattern` is the compiler's single entry point. It builds the NFA program
(`nfa.py`), generates one Python module per pattern (`codegen.py`) with:

- `c<i>(d, ts, key, lets, path)`: condition i, True iff it is TRUE for the current
  event `d` (a dict) given the partial match `path`;
- `prefilter(ds, tss, horizon, get, create, out, ticks)`: the per-batch fast path. For
  each event it reads the key, and decides relevance: a key with no state needs an
  event that can start a match (the event-local conditions of the start stage); a key
  with state needs an event that can touch some condition, unless the pattern is not
  skip-safe (`_is_skip_safe`). Events that fail touch nothing; no objects are made for
  them, except a `(i, key state)` tick when the pattern has windows: the event's time
  still advances the key's time, as in Flink;
- `start_rel`/`any_rel`: the same tests for patterns with `let` values (evaluated
  after the batch's lets are computed);
- `lets_of`, `let_cols`: per-event `let` values; `let_cols` builds the batch's feature
  columns for `score(...)`, whose results come to `lets_of` in `sc`;
- `emit`/`emit_feats` and `timeout_emit`/`timeout_feats`: measures + `when`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cep.compiler import codegen
from cep.compiler.codegen import ExprCompiler, ScoreCall, SourceBuilder
from cep.compiler.nfa import Action, ConditionTable, Kind, NfaProgram, compile_nfa
from cep.compiler.stepgen import generate_steps
from cep.dsl import ast

SKIP_KINDS = ("none", "to_next", "past_last", "to_first", "to_last")
DEFAULT_SEVERITY = "medium"


@dataclass(frozen=True)
class EmitPlan:
    topic: str | None
    severity: str
    measure_names: tuple[str, ...]
    score_calls: tuple[ScoreCall, ...]
    fn: Any  # (path, key, ts, sc) -> dict | None
    feats: Any  # (path, key, ts) -> tuple of feature tuples


@dataclass(frozen=True)
class CompiledPattern:
    name: str
    version: int
    pattern: ast.Pattern
    nfa: NfaProgram
    module: codegen.CompiledModule
    conds: tuple[Any, ...]
    steps: tuple[Any, ...]  # per NFA state: the generated step of a run resting there
    start_step: Any  # the step of the implicit start run
    cond_local: tuple[bool, ...]  # condition reads only the current event: memoise per event
    cond_text: tuple[str, ...]
    prefilter: Any
    start_rel: Any
    any_rel: Any
    skip_safe: bool  # an event failing every event-local test is a no-op for live runs
    timed: bool  # the pattern has windows: skipped events still advance a key's time
    let_names: tuple[str, ...]
    lets_of: Any
    let_cols: Any  # (ds, tss, keys) -> per score call, its feature columns
    let_score_calls: tuple[ScoreCall, ...]
    emit: EmitPlan | None  # None: completed matches produce no alert (timeout-only pattern)
    timeout: EmitPlan | None
    skip_kind: str
    skip_stage: int  # for to_first / to_last; -1 otherwise
    key_paths: tuple[tuple[str, ...], ...]
    time_field: tuple[str, ...] | None
    time_arrival: bool
    order_by: tuple[tuple[str, ...], ...]
    streams: frozenset[str] | None

    @property
    def models(self) -> frozenset[str]:
        calls = list(self.let_score_calls)
        if self.emit is not None:
            calls += list(self.emit.score_calls)
        if self.timeout is not None:
            calls += list(self.timeout.score_calls)
        return frozenset(c.model for c in calls)


def _key_expr(paths: tuple[tuple[str, ...], ...]) -> list[str]:
    """Lines that set `k` to the normalised key of `d`, or `continue` when missing."""
    if not paths:
        return ["k = ()"]

    def one(p: tuple[str, ...]) -> str:
        return f"d.get({p[0]!r})" if len(p) == 1 else f"_path(d, {p!r})"

    if len(paths) == 1:
        return [
            f"k = {one(paths[0])}",
            "if k is None:",
            "    continue",
            "if k.__class__ is not _str:",
            "    k = _nkey(k)",
            "    if k is None:",
            "        continue",
        ]
    parts = ", ".join(f"_nkey({one(p)})" for p in paths)
    return [f"k = ({parts})", "if None in k:", "    continue"]


def _uses_fields(c: ExprCompiler) -> list[str]:
    return c.prologue()


def compile_pattern(pattern: ast.Pattern, version: int = 1) -> CompiledPattern:
    """Compile a pattern that passed `cep.dsl.check` (the compiler trusts the checker)."""
    conds = ConditionTable()
    program = compile_nfa(pattern, conds)
    stage_index = {n: i for i, n in enumerate(program.stage_names)}
    stage_set = frozenset(stage_index)
    let_index = {lt.name: i for i, lt in enumerate(pattern.lets)}
    sb = SourceBuilder(pattern.name)
    mod = sb.module

    # -- conditions
    cond_local: list[bool] = []
    cond_text: list[str] = []
    for i, expr in enumerate(conds.exprs):
        if i in conds.composite:
            lits = conds.composite[i]
            parts = [f"(c{abs(x) - 1}(d, ts, key, lets, path) is {x > 0})" for x in lits]
            sb.add(f"c{i}", "d, ts, key, lets, path", [f"return {' and '.join(parts)}"],
                   pattern.span.line, f"condition {conds.owner[i]}")
            cond_local.append(all(cond_local[abs(x) - 1] for x in lits))
            cond_text.append(conds.owner[i])
            continue
        ec = ExprCompiler(mod, stage_index, let_index)
        body = ec.truth(expr)
        sb.add(f"c{i}", "d, ts, key, lets, path", [*ec.prologue(), f"return {body}"],
               expr.span.line, f"condition of {conds.owner[i]}")
        cond_local.append(codegen.is_event_local(expr, stage_set))
        cond_text.append(f"{conds.owner[i]}#{i}")

    # -- the NFA step, one function per state (stepgen.py)
    for fname, step_body in generate_steps(program, tuple(cond_local)):
        params = "ev, key, E, out, fin" if fname == "start" else "run, ev, key, E, out, fin"
        sb.add(fname, params, step_body, pattern.span.line, f"NFA step {fname}")

    # -- relevance
    start_conds = _start_take_conditions(program)
    start_expr = codegen.or_all(
        [codegen.and_all([codegen.local_part(conds.exprs[c], stage_set) for c in cs])
         for cs in start_conds]
    )
    any_expr = codegen.or_all(
        [codegen.local_part(e, stage_set) for e in conds.exprs]
        + ([] if all(_cond_nonempty(program)) else [ast.Literal(True)])
    )
    skip_safe = _is_skip_safe(program, pattern, conds)
    # With windows, a skipped event of a key with state still advances the key's time
    # (Flink's advanceTime before each timestamp): it becomes a tick, not an event.
    timed = program.window > 0 or any(w > 0 for w in program.expiry)
    has_lets = bool(pattern.lets)
    for name, expr in (("start_rel", start_expr), ("any_rel", any_expr)):
        ec = ExprCompiler(mod, stage_index, let_index)
        body = ec.truth(expr) if (name == "start_rel" or skip_safe) else "True"
        sb.add(name, "d, ts, key, lets", [*ec.prologue(), f"return {body}"],
               pattern.span.line, f"relevance test {name}")

    # Events arrive in (time, arrival) order here. A key without state only needs an
    # event that can start a match, but only when the event is processed at the end of
    # this batch (time <= horizon, the new watermark): then nothing earlier can still
    # arrive. An event that stays buffered may yet be preceded by one that starts a
    # match, so it needs the broader test, as for keys with state.
    pre = ["i = -1", "for d in ds:", "    i += 1"]
    pre += ["    " + ln for ln in _key_expr(pattern.key)]
    if has_lets:
        # relevance needs the let values: computed for the batch, tested afterwards
        pre += ["    out.append((i, k))"]
    else:
        ec = ExprCompiler(mod, stage_index, let_index)
        test = ec.truth(start_expr)
        ec2 = ExprCompiler(mod, stage_index, let_index)
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
            if timed:
                pre += ["            ticks.append((i, ks))"]
            pre += ["            continue"]
        pre += ["    out.append((i, ks))"]
    sb.add("prefilter", "ds, tss, horizon, get, create, out, ticks", pre, pattern.span.line,
           "prefilter")

    # -- lets
    let_scores: list[ScoreCall] = []
    ec = ExprCompiler(mod, stage_index, let_index, score_calls=let_scores)
    values = [f"lets[{i}] = {ec.value(lt.expr)}" for i, lt in enumerate(pattern.lets)]
    lets_body = [*ec.prologue(), f"lets = [None] * {len(pattern.lets)}", *values, "return lets"]
    sb.add("lets_of", "d, ts, key, sc", lets_body, pattern.span.line, "let values")
    # feature columns of the batch's score calls, one list comprehension per feature
    cols = []
    for call in let_scores:
        ecc = ExprCompiler(mod, stage_index, let_index, inline_fields=True)
        per = [f"[{ecc.value(x)} for d, ts, key in _zip(ds, tss, keys)]" for _, x in call.features]
        cols.append("(" + "".join(c + ", " for c in per) + ")")
    sb.add("let_cols", "ds, tss, keys", ["return (" + "".join(c + ", " for c in cols) + ")"],
           let_scores[0].span.line if let_scores else 0, "let score features")

    # -- emit: without `emit`, a match is an alert with no measures, unless the pattern
    # only declares `on timeout emit` (it is about what did not happen; docs/semantics.md)
    emit_plan = (
        None
        if pattern.emit is None and pattern.timeout_emit is not None
        else _emit(sb, "emit", pattern.emit or ast.Emit(), stage_index, let_index)
    )
    timeout_plan = (
        _emit(sb, "timeout", pattern.timeout_emit, stage_index, let_index)
        if pattern.timeout_emit is not None
        else None
    )

    module = codegen.build_module(sb, pattern.file)
    fns = module.namespace
    skip = pattern.skip
    return CompiledPattern(
        name=pattern.name,
        version=version,
        pattern=pattern,
        nfa=program,
        module=module,
        conds=tuple(fns[f"c{i}"] for i in range(len(conds.exprs))),
        steps=tuple(fns.get(f"st{i}") for i in range(len(program.states))),
        start_step=fns["start"],
        cond_local=tuple(cond_local),
        cond_text=tuple(cond_text),
        prefilter=fns["prefilter"],
        start_rel=fns["start_rel"],
        any_rel=fns["any_rel"],
        skip_safe=skip_safe,
        timed=timed,
        let_names=tuple(let_index),
        lets_of=fns["lets_of"],
        let_cols=fns["let_cols"],
        let_score_calls=tuple(let_scores),
        emit=_bind(emit_plan, fns) if emit_plan is not None else None,
        timeout=_bind(timeout_plan, fns) if timeout_plan is not None else None,
        skip_kind=skip.kind,
        skip_stage=stage_index[skip.stage] if skip.stage is not None else -1,
        key_paths=pattern.key,
        time_field=pattern.time_field,
        time_arrival=pattern.time_arrival,
        order_by=pattern.order_by,
        streams=frozenset(pattern.streams) if pattern.streams is not None else None,
    )


def _bind(plan: EmitPlan, fns: dict[str, Any]) -> EmitPlan:
    return EmitPlan(plan.topic, plan.severity, plan.measure_names, plan.score_calls,
                    fns[plan.fn], fns[plan.feats])


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
) -> EmitPlan:
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
    return EmitPlan(
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
