"""Pattern sequence -> NFA program, the way FlinkCEP's `NFACompiler` builds it.

The NFA is built back to front from the Final state. Every state has edges of three
kinds: TAKE (consume the event into the match under the state's stage), IGNORE (skip
the event, keep the partial match) and PROCEED (an epsilon move tested against the
current event). Negation adds Stop states (reaching one discards the partial match and
every other successor it had for that event); a trailing `then not` adds a Pending
state that completes the match when its window passes.

Edge conditions are conjunctions of literals over the pattern's conditions: literal
`+(i + 1)` means "condition i holds", `-(i + 1)` means "condition i does not hold".
The empty conjunction is TRUE. This covers everything Flink builds from `where`,
`until`, contiguity (`NOT(take)` for relaxed skips) and greedy masking.

The builder is mutable while it runs; the result is a frozen `NfaProgram` of small
integer states with precomputed edge tuples, walked by `cep.runtime.matcher`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from cep.dsl import ast
from cep.program import Kind


class Action(IntEnum):
    TAKE = 0
    IGNORE = 1
    PROCEED = 2


class Consuming(IntEnum):
    STRICT = 0
    SKIP_TILL_NEXT = 1
    SKIP_TILL_ANY = 2
    NOT_NEXT = 3
    NOT_FOLLOW = 4


Cond = tuple[int, ...]  # conjunction of literals; () is TRUE
TRUE: Cond = ()


def neg(c: Cond) -> Cond:
    """NOT of TRUE, FALSE or a single literal. (A conjunction of several literals is
    first registered as one composite condition: `ConditionTable.conjunction`.)"""
    if not c:
        return (0,)  # NOT TRUE = FALSE
    if c == (0,):
        return ()  # NOT FALSE = TRUE
    if len(c) != 1:
        raise ValueError("negate a conjunction through ConditionTable.conjunction")
    return (-c[0],)


@dataclass(frozen=True, slots=True)
class Edge:
    action: Action
    target: int
    cond: Cond


@dataclass(frozen=True, slots=True)
class NfaState:
    index: int
    name: str  # internal unique name, e.g. "tiny", "tiny:1", "$final$"
    stage: int  # index into NfaProgram.stage_names; -1 for Final
    kind: Kind
    edges: tuple[Edge, ...]
    window: int  # stage window (previous-to-current) in ms; 0 = none
    is_take_state: bool


@dataclass(frozen=True, slots=True)
class NfaProgram:
    states: tuple[NfaState, ...]
    start: int
    final: int
    window: int  # pattern window (first-to-last) in ms; 0 = none
    stage_names: tuple[str, ...]  # every stage, in source order (negated ones included)
    negated: tuple[bool, ...]
    # per state: the window after which a partial match waiting there can no longer
    # progress (the largest stage window reachable through PROCEED edges, 0 = never)
    expiry: tuple[int, ...] = field(default=())

    def dis(self, cond_text: dict[int, str] | None = None) -> str:
        """A readable listing of the program (used by `cep dis`)."""
        lines = [f"window(first..last) = {self.window or 'none'} ms"]
        names = {0: "TAKE", 1: "IGNORE", 2: "PROCEED"}
        for st in self.states:
            flags = []
            if st.index == self.start:
                flags.append("start")
            if st.kind != Kind.NORMAL:
                flags.append(st.kind.name.lower())
            if st.window:
                flags.append(f"within {st.window}ms")
            head = f"{st.index:3d} {st.name}" + (f"  [{', '.join(flags)}]" if flags else "")
            lines.append(head)
            for e in st.edges:
                lines.append(
                    f"      {names[e.action]:<8}-> {e.target:<3} if {_cond_str(e.cond, cond_text)}"
                )
        return "\n".join(lines)


def _cond_str(c: Cond, text: dict[int, str] | None) -> str:
    if not c:
        return "true"
    parts = []
    for lit in c:
        idx = abs(lit) - 1
        name = (text or {}).get(idx, f"c{idx}")
        parts.append(name if lit > 0 else f"not({name})")
    return " and ".join(parts)


# ---------------------------------------------------------------- pattern chain


@dataclass(eq=False)
class _Part:
    """One element of the chain, like Flink's `Pattern` object (linked by `previous`)."""

    name: str
    stage: int  # stage index; -1 for groups
    consuming: Consuming
    inner: Consuming = Consuming.SKIP_TILL_NEXT
    looping: bool = False
    times: tuple[int, int] | None = None  # (from, to); loops use (n, n)
    optional: bool = False
    greedy: bool = False
    cond: Cond = TRUE
    until: Cond | None = None
    window: int = 0  # previous-to-current
    previous: _Part | None = None
    group_raw: _Part | None = None  # for groups: the last part of the inner chain

    @property
    def is_group(self) -> bool:
        return self.group_raw is not None


@dataclass(eq=False)
class _State:
    name: str
    stage: int
    kind: Kind
    window: int
    is_take: bool
    edges: list[tuple[Action, _State, Cond]] = field(default_factory=list)

    def take(self, target: _State | None, cond: Cond) -> None:
        self.edges.append((Action.TAKE, target or self, cond))

    def ignore(self, target: _State | None, cond: Cond) -> None:
        self.edges.append((Action.IGNORE, target or self, cond))

    def proceed(self, target: _State, cond: Cond) -> None:
        self.edges.append((Action.PROCEED, target, cond))


def _and(*conds: Cond | None) -> Cond:
    out: list[int] = []
    for c in conds:
        if c:
            out.extend(x for x in c if x not in out)
    return tuple(out)


class ConditionTable:
    """Conditions by index; the compiler registers each `where`/`until` expression once."""

    def __init__(self) -> None:
        self.exprs: list[ast.Expr] = []
        self.owner: list[str] = []  # stage name, for diagnostics and dis
        # composite conditions: index -> the conjunction of literals it stands for
        self.composite: dict[int, Cond] = {}

    def conjunction(self, c: Cond) -> Cond:
        """A single literal standing for the conjunction `c` (so that it can be negated,
        as Flink negates a RichAndCondition)."""
        if len(c) <= 1 or 0 in c:
            return c if 0 not in c else (0,)
        for idx, lits in self.composite.items():
            if lits == c:
                return (idx + 1,)
        self.exprs.append(ast.Literal(True))  # stands in; codegen reads `composite`
        self.owner.append("(" + " and ".join(self.owner[abs(x) - 1] for x in c) + ")")
        idx = len(self.exprs) - 1
        self.composite[idx] = c
        return (idx + 1,)

    def add(self, expr: ast.Expr | None, owner: str) -> Cond:
        if expr is None:
            return TRUE
        if isinstance(expr, ast.Literal) and expr.value is True:
            return TRUE
        self.exprs.append(expr)
        self.owner.append(owner)
        return (len(self.exprs),)


# ---------------------------------------------------------------- chain from the AST


def build_chain(
    seq: ast.Sequence, conds: ConditionTable, stage_index: dict[str, int]
) -> _Part:
    """Turn a sequence into Flink's linked chain; returns the last part."""
    prev: _Part | None = None
    for i, step in enumerate(seq.steps):
        el = step.element
        if i == 0:
            consuming = Consuming.SKIP_TILL_NEXT  # Flink's begin()
        elif isinstance(el, ast.Stage) and el.negated:
            consuming = Consuming.NOT_NEXT if step.connector == "next" else Consuming.NOT_FOLLOW
        else:
            consuming = {
                "next": Consuming.STRICT,
                "then": Consuming.SKIP_TILL_NEXT,
                "then any": Consuming.SKIP_TILL_ANY,
            }[step.connector or "then"]
        inner = (
            Consuming.STRICT
            if el.consecutive
            else Consuming.SKIP_TILL_ANY
            if el.combinations
            else Consuming.SKIP_TILL_NEXT
        )
        q = el.quantifier
        looping = q is not None and q.max is None
        times: tuple[int, int] | None = None
        if q is not None:
            times = (q.min, q.min) if q.max is None else (q.min, q.max)
        if isinstance(el, ast.Group):
            raw = build_chain(el.body, conds, stage_index)
            part = _Part(
                name=f"({_first_name(el.body)}..)",
                stage=-1,
                consuming=consuming,
                inner=inner,
                looping=looping,
                times=times,
                optional=el.optional,
                greedy=el.greedy,
                until=conds.add(el.until, "group until") if el.until is not None else None,
                window=el.within_ms or 0,
                group_raw=raw,
            )
        else:
            part = _Part(
                name=el.name,
                stage=stage_index[el.name],
                consuming=consuming,
                inner=inner,
                looping=looping,
                times=times,
                optional=el.optional,
                greedy=el.greedy,
                cond=conds.add(el.where, el.name),
                until=conds.add(el.until, f"{el.name} until") if el.until is not None else None,
                window=el.within_ms or 0,
            )
        part.previous = prev
        prev = part
    assert prev is not None, "a sequence has at least one step"
    return prev


def _first_name(seq: ast.Sequence) -> str:
    el = seq.steps[0].element
    return el.name if isinstance(el, ast.Stage) else _first_name(el.body)


# ---------------------------------------------------------------- the compiler


class _Compiler:
    """A port of Flink's NFACompiler.NFAFactoryCompiler (same method names)."""

    def __init__(
        self, last: _Part, window: int, stage_names: list[str], conds: ConditionTable
    ) -> None:
        self.conds = conds
        self.current: _Part = last
        self.following: _Part | None = None
        self.group: _Part | None = None
        self.first_of_loop: dict[int, bool] = {}
        self.window = window
        self.states: list[_State] = []
        self.stop_states: dict[str, _State] = {}
        self.original: dict[int, _State] = {}
        self.stage_names = stage_names
        self._name_counts: dict[str, int] = {}

    # -- states

    def create_state(self, kind: Kind, is_take: bool, name: str | None = None) -> _State:
        part = self.current
        base = name if name is not None else part.name
        n = self._name_counts.get(base, 0)
        self._name_counts[base] = n + 1
        unique = base if n == 0 else f"{base}:{n - 1}"
        st = _State(
            name=unique,
            stage=part.stage,
            kind=kind,
            window=part.window,  # every state of a stage carries its window (see docs)
            is_take=is_take,
        )
        self.states.append(st)
        return st

    def copy(self, state: _State) -> _State:
        cp = _State(state.name, state.stage, state.kind, state.window, state.is_take)
        self.states.append(cp)
        for action, target, cond in state.edges:
            cp.edges.append((action, cp if target is state else target, cond))
        return cp

    def create_stop_state(self, cond: Cond, part: _Part) -> _State:
        st = self.stop_states.get(part.name)
        if st is None:
            st = _State(part.name, part.stage, Kind.STOP, 0, True)
            self.states.append(st)
            st.take(None, cond)
            self.stop_states[part.name] = st
        return st

    # -- top level

    def compile(self) -> _State:
        final = _State("$final$", -1, Kind.FINAL, 0, False)
        self.states.append(final)
        sink = self.create_middle_states(final)
        start = self.convert_pattern(sink)
        return start

    def create_middle_states(self, sink: _State) -> _State:
        last_sink = sink
        while self.current.previous is not None:
            part = self.current
            if part.consuming == Consuming.NOT_FOLLOW:
                if (part.window > 0 or self.window > 0) and last_sink.kind == Kind.FINAL:
                    pending = self.create_state(Kind.PENDING, True)
                    not_cond = self.get_take_condition(part)
                    stop = self.create_stop_state(not_cond, part)
                    pending.proceed(stop, not_cond)
                    pending.ignore(None, neg(self.conds.conjunction(not_cond)))
                    last_sink = pending
            elif part.consuming == Consuming.NOT_NEXT:
                nn = self.create_state(Kind.NORMAL, True)
                not_cond = self.get_take_condition(part)
                stop = self.create_stop_state(not_cond, part)
                if last_sink.kind == Kind.FINAL:
                    nn.ignore(last_sink, neg(self.conds.conjunction(not_cond)))
                else:
                    nn.proceed(last_sink, neg(self.conds.conjunction(not_cond)))
                nn.proceed(stop, not_cond)
                last_sink = nn
            else:
                last_sink = self.convert_pattern(last_sink)
            self.following = self.current
            assert self.current.previous is not None
            self.current = self.current.previous
        return last_sink

    def convert_pattern(self, sink: _State) -> _State:
        part = self.current
        if part.looping:
            self.set_first_of_loop(False)
            s = self.copy_without_transitive_nots(sink)
            looping = self.create_looping(s)
            self.set_first_of_loop(True)
            assert part.times is not None
            last = self.create_times_state(looping, sink, part.times)
        elif part.times is not None:
            last = self.create_times_state(sink, sink, part.times)
        else:
            last = self.create_singleton_state(
                sink, sink, self.get_take_condition(part), self.get_ignore_condition(part),
                part.optional,
            )
        self.add_stop_states(last)
        return last

    def create_times_state(
        self, sink: _State, proceed: _State, times: tuple[int, int]
    ) -> _State:
        part = self.current
        last = sink
        self.set_first_of_loop(False)
        inner_ignore = self.extend_with_until(
            self.get_inner_ignore_condition(part), part.until, False
        )
        take = self.extend_with_until(self.get_take_condition(part), part.until, True)
        assert take is not None
        if part.greedy and times[0] != times[1]:
            self.update_with_greedy_condition(sink, self.get_take_condition(part))
        for _ in range(times[0], times[1]):
            last = self.create_singleton_state(last, proceed, take, inner_ignore, True)
            self.add_stop_state_to_looping(last)
        for _ in range(times[0] - 1):
            last = self.create_singleton_state(last, None, take, inner_ignore, False)
            self.add_stop_state_to_looping(last)
        self.set_first_of_loop(True)
        return self.create_singleton_state(
            last, proceed, take, self.get_ignore_condition(part), part.optional
        )

    def create_singleton_state(
        self,
        sink: _State,
        proceed: _State | None,
        take: Cond,
        ignore: Cond | None,
        is_optional: bool,
    ) -> _State:
        part = self.current
        if part.is_group:
            return self.create_group_pattern_state(part, sink, proceed, is_optional)
        st = self.create_state(Kind.NORMAL, True)
        s = self.copy_without_transitive_nots(sink)
        st.take(s, take)
        true = self.get_true_function()
        if is_optional:
            assert proceed is not None
            if part.greedy and part.until is not None:
                orig = self.original.get(id(proceed), proceed)
                st.proceed(orig, _and(true, part.until))
                st.proceed(proceed, _and(true, neg(part.until)))
            else:
                st.proceed(proceed, true)
        if ignore is not None:
            if is_optional or self.is_head_of_optional_group(part):
                ign = self.create_state(Kind.NORMAL, False)
                ign.take(s, take)
                ign.ignore(None, ignore)
                self.add_stop_states(ign)
            else:
                ign = st
            st.ignore(ign, ignore)
        return st

    def create_looping(self, sink: _State) -> _State:
        part = self.current
        if part.is_group:
            return self.create_looping_group_pattern_state(part, sink)
        ignore = self.extend_with_until(self.get_inner_ignore_condition(part), part.until, False)
        take = self.extend_with_until(self.get_take_condition(part), part.until, True)
        assert take is not None
        true = self.get_true_function()
        looping = self.create_state(Kind.NORMAL, True)
        if part.greedy:
            if part.until is not None:
                cp = self.copy(sink)
                looping.proceed(cp, _and(true, part.until))
                self.original[id(sink)] = cp
                looping.proceed(sink, _and(true, neg(part.until)))
            else:
                looping.proceed(sink, true)
            self.update_with_greedy_condition(sink, self.get_take_condition(part))
        else:
            looping.proceed(sink, true)
        looping.take(None, take)
        self.add_stop_state_to_looping(looping)
        if ignore is not None:
            ign = self.create_state(Kind.NORMAL, False)
            ign.take(looping, take)
            ign.ignore(None, ignore)
            looping.ignore(ign, ignore)
            self.add_stop_state_to_looping(ign)
        return looping

    # -- groups

    def create_group_pattern_state(
        self, group: _Part, sink: _State, proceed: _State | None, is_optional: bool
    ) -> _State:
        true = self.get_true_function()
        old = (self.current, self.following, self.group)
        self.group = group
        assert group.group_raw is not None
        self.current = group.group_raw
        last = self.create_middle_states(sink)
        last = self.convert_pattern(last)
        if is_optional:
            assert proceed is not None
            last.proceed(proceed, true)
        self.current, self.following, self.group = old
        return last

    def create_looping_group_pattern_state(self, group: _Part, sink: _State) -> _State:
        true = self.get_true_function()
        old = (self.current, self.following, self.group)
        dummy = self.create_state(Kind.NORMAL, True)
        self.group = group
        assert group.group_raw is not None
        self.current = group.group_raw
        last = self.create_middle_states(dummy)
        last = self.convert_pattern(last)
        last.proceed(sink, true)
        dummy.proceed(last, true)
        self.current, self.following, self.group = old
        return last

    def head_of_group(self, part: _Part) -> bool:
        return self.group is not None and part.previous is None

    def is_head_of_optional_group(self, part: _Part) -> bool:
        if not self.head_of_group(part):
            return False
        assert self.group is not None
        return self.is_group_first_of_loop() and self.group.optional

    def get_true_function(self) -> Cond:
        """TRUE, or NOT(until) inside a group that has an `until`."""
        if self.group is not None and self.group.until is not None:
            return neg(self.group.until)
        return TRUE

    def is_group_first_of_loop(self) -> bool:
        assert self.group is not None
        return self.first_of_loop.get(id(self.group), True)

    def set_first_of_loop(self, value: bool) -> None:
        if self.current.is_group:
            self.first_of_loop[id(self.current)] = value

    # -- nots

    def add_stop_states(self, state: _State) -> None:
        for cond, part in self.get_current_not_condition():
            stop = self.create_stop_state(cond, part)
            state.proceed(stop, cond)

    def add_stop_state_to_looping(self, state: _State) -> None:
        f = self.following
        if f is not None and f.consuming == Consuming.NOT_FOLLOW:
            cond = self.get_take_condition(f)
            stop = self.create_stop_state(cond, f)
            state.proceed(stop, cond)

    def get_current_not_condition(self) -> list[tuple[Cond, _Part]]:
        out: list[tuple[Cond, _Part]] = []
        p = self.current
        while p.previous is not None and (
            p.previous.optional or p.previous.consuming == Consuming.NOT_FOLLOW
        ):
            p = p.previous
            if p.consuming == Consuming.NOT_FOLLOW:
                out.append((self.get_take_condition(p), p))
        return out

    def copy_without_transitive_nots(
        self, sink: _State, _memo: dict[int, _State] | None = None
    ) -> _State:
        nots = self.get_current_not_condition()
        if not nots or not self.current.optional:
            return sink
        memo = {} if _memo is None else _memo
        done = memo.get(id(sink))
        if done is not None:
            return done  # PROCEED edges of a looping group form a cycle: copy it once
        names = {p.name for _, p in nots}
        cp = _State(sink.name, sink.stage, sink.kind, sink.window, sink.is_take)
        memo[id(sink)] = cp
        self.states.append(cp)
        for action, target, cond in sink.edges:
            if action == Action.PROCEED:
                if target.kind == Kind.STOP:
                    if target.name in names:
                        continue
                    cp.edges.append((action, target, cond))
                else:
                    cp.edges.append(
                        (action, self.copy_without_transitive_nots(target, memo), cond)
                    )
            else:
                cp.edges.append((action, cp if target is sink else target, cond))
        return cp

    # -- conditions

    def get_take_condition(self, part: _Part) -> Cond:
        take = part.cond
        if self.group is not None and self.group.until is not None:
            ext = self.extend_with_until(take, self.group.until, True)
            assert ext is not None
            take = ext
        return take

    def _strategy_condition(self, part: _Part, strategy: Consuming) -> Cond | None:
        if strategy == Consuming.STRICT:
            return None
        if strategy == Consuming.SKIP_TILL_ANY:
            return TRUE
        # SKIP_TILL_NEXT: NOT(condition)
        return neg(self.conds.conjunction(part.cond))

    def get_ignore_condition(self, part: _Part) -> Cond | None:
        strategy = part.consuming
        if self.head_of_group(part):
            assert self.group is not None
            strategy = (
                self.group.consuming if self.is_group_first_of_loop() else self.group.inner
            )
        ign = self._strategy_condition(part, strategy)
        if self.group is not None and self.group.until is not None:
            ign = self.extend_with_until(ign, self.group.until, False)
        return ign

    def get_inner_ignore_condition(self, part: _Part) -> Cond | None:
        strategy = part.inner
        if self.head_of_group(part):
            assert self.group is not None
            strategy = self.group.inner
        ign = self._strategy_condition(part, strategy)
        if self.group is not None and self.group.until is not None:
            ign = self.extend_with_until(ign, self.group.until, False)
        return ign

    @staticmethod
    def extend_with_until(cond: Cond | None, until: Cond | None, is_take: bool) -> Cond | None:
        if until is not None and cond is not None:
            return _and(neg(until), cond)
        if until is not None and is_take:
            return neg(until)
        return cond  # `until` is one registered condition: a single literal or TRUE

    def update_with_greedy_condition(self, state: _State, take: Cond) -> None:
        mask = neg(self.conds.conjunction(take))
        state.edges = [(a, t, _and(c, mask)) for a, t, c in state.edges]


# A literal of 0 / -0 stands for FALSE ("not true"); `(0,)` is a conjunction that never
# holds. It appears when a stage without `where` (always true) is negated: NOT(TRUE).


def compile_nfa(pattern: ast.Pattern, conds: ConditionTable) -> NfaProgram:
    """Compile a validated pattern's sequence to an NfaProgram."""
    stages = ast.stages_of(pattern.sequence)
    stage_names = [s.name for s in stages]
    index = {n: i for i, n in enumerate(stage_names)}
    last = build_chain(pattern.sequence, conds, index)
    window = pattern.within_ms or 0
    comp = _Compiler(last, window, stage_names, conds)
    start = comp.compile()
    # freeze: number states reachable from start in a stable (DFS) order
    order: dict[int, int] = {}
    stack = [start]
    reach: list[_State] = []
    while stack:
        st = stack.pop()
        if id(st) in order:
            continue
        order[id(st)] = len(reach)
        reach.append(st)
        for _, target, _ in reversed(st.edges):
            if id(target) not in order:
                stack.append(target)
    final_idx = next((order[id(s)] for s in reach if s.kind == Kind.FINAL), -1)
    frozen = tuple(
        NfaState(
            index=i,
            name=s.name,
            stage=s.stage,
            kind=s.kind,
            edges=tuple(Edge(a, order[id(t)], c) for a, t, c in s.edges),
            window=s.window,
            is_take_state=s.is_take,
        )
        for i, s in enumerate(reach)
    )
    return NfaProgram(
        states=frozen,
        start=0,
        final=final_idx,
        window=window,
        stage_names=tuple(stage_names),
        negated=tuple(s.negated for s in stages),
        expiry=_expiry_windows(frozen),
    )


def _expiry_windows(states: tuple[NfaState, ...]) -> tuple[int, ...]:
    """Per state: after how long since the previous taken event a partial match waiting
    there can take nothing more. A state can move on through PROCEED edges, so it is
    the largest window over the states reachable that way (any reachable take-capable
    state without a window means never; a Pending state expires by its own window)."""
    out = []
    for st in states:
        if st.kind == Kind.PENDING:
            out.append(st.window)
            continue
        seen = {st.index}
        stack = [st.index]
        best = 0
        unbounded = False
        while stack:
            s = states[stack.pop()]
            has_take = any(e.action != Action.PROCEED for e in s.edges)
            if has_take and s.kind == Kind.NORMAL:
                if s.window == 0:
                    unbounded = True
                    break
                best = max(best, s.window)
            for e in s.edges:
                if e.action == Action.PROCEED and e.target not in seen:
                    tgt = states[e.target]
                    if tgt.kind in (Kind.NORMAL, Kind.PENDING):
                        seen.add(e.target)
                        stack.append(e.target)
        out.append(0 if unbounded else best)
    return tuple(out)
