"""NFA program -> one generated Python function that feeds an event to a key's
partial matches (the NFA step).

FlinkCEP's `computeNextStates` walks the decision graph of a state at run time: follow
PROCEED edges whose condition holds, collect TAKE and IGNORE edges whose condition
holds, then build the successors. The graph is static, so this module unfolds it at
compile time, in the same (stack) order as the walk, into straight-line code, one
block per state a partial match can rest in, all in one function:

    def feed(runs, ev, key, out, fin, start):
        ...event-local conditions: one variable each, evaluated at most once per event...
        for run in runs:
            st = run.state
            if st < 3:            # a binary search over the resting states
                ...the block of state 1:
                ...evaluate each condition at most once for this run...
                ...one boolean per reachable TAKE / IGNORE edge (its own and its PROCEED
                guards); a Stop reached discards every other successor of the run
                (completed matches are kept, as in Flink's doProcess)...
                ...append successors to `out`, completed matches to `fin`...
            else:
                ...
        if start:
            ...the block of the implicit start run: it only takes (a new partial match
            begins at this event) and never ignores...
        return <the start run added a partial match>

One function instead of one per state: no call and no dispatch through a table per
partial match, and the event-local conditions are plain locals shared by every run
and the start run (no per-event memo list).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cep.compiler.nfa import Action, NfaProgram
from cep.program import Kind

Lits = tuple[int, ...]
BASE = "    "  # the indent of a block's own lines while it is written


@dataclass(frozen=True)
class Inline:
    """A condition written into the feed instead of called (pipeline.py decides which).
    `src` holds iff the condition is TRUE; it reads the field variables `fields`
    (read once per event, before the runs) and the stage events `_s<i>` of `stages`
    (looked up once per run, at the top of its block)."""

    src: str
    fields: frozenset[str]
    stages: frozenset[int]
    line: int  # the pattern line of the condition, for errors


@dataclass(frozen=True)
class FeedSource:
    """The body of `feed` and where its lines come from: `marks[i]` is the condition
    whose inline code line i is (-1: the NFA step itself)."""

    lines: list[str]
    marks: list[int]


@dataclass(frozen=True)
class _Edge:
    action: Action
    src: int
    target: int
    guard: tuple[Lits, ...]  # conditions along the PROCEED path, then the edge's own


def _unfold(program: NfaProgram, state: int) -> list[_Edge]:
    """The TAKE/IGNORE edges reachable from `state`, in the interpreter's stack order."""
    out: list[_Edge] = []
    stack: list[tuple[int, tuple[Lits, ...], frozenset[int]]] = [(state, (), frozenset({state}))]
    while stack:
        s, guard, seen = stack.pop()
        for e in program.states[s].edges:
            g = (*guard, e.cond) if e.cond else guard
            if e.action == Action.PROCEED:
                if e.target not in seen:  # a PROCEED cycle can add nothing new
                    stack.append((e.target, g, seen | {e.target}))
            else:
                out.append(_Edge(e.action, s, e.target, g))
    return out


def _final_guards(program: NfaProgram, state: int) -> list[tuple[Lits, ...]]:
    """Guards of the PROCEED paths from `state` to Final (findFinalStateAfterProceed)."""
    out: list[tuple[Lits, ...]] = []
    stack: list[tuple[int, tuple[Lits, ...], frozenset[int]]] = [(state, (), frozenset({state}))]
    while stack:
        s, guard, seen = stack.pop()
        for e in program.states[s].edges:
            if e.action != Action.PROCEED:
                continue
            g = (*guard, e.cond) if e.cond else guard
            if program.states[e.target].kind == Kind.FINAL:
                out.append(g)
            elif e.target not in seen:
                stack.append((e.target, g, seen | {e.target}))
    return out


class _Body:
    """Lines of one step function, with lazy, memoised condition variables."""

    def __init__(self, local: tuple[bool, ...], ctx: str, inline: dict[int, Inline],
                 heads: frozenset[int] = frozenset()) -> None:
        self.local = local  # event-local: set at most once per event, before the runs
        self.ctx = ctx  # Python for the `path` conditions see ("None" for the start run)
        self.inline = inline
        self.heads = heads  # the stages the head of `path` can have (path_heads)
        self.lines: list[str] = []
        self.used: set[int] = set()
        # evaluated unconditionally earlier in this block (at the block's own indent)
        self.ready: set[int] = set()
        # per-run conditions first evaluated under an `if`: they need `x = None` first
        self.lazy: set[int] = set()

    def test(self, idx: int) -> str:
        """Python for `condition idx holds` (a call, or its inline code, marked)."""
        il = self.inline.get(idx)
        if il is None:
            ctx = "None" if self.local[idx] else self.ctx
            return f"c{idx}(d, ts, key, lets, {ctx}) is True"
        return f"({il.src}) is True  # c{idx}"

    def share(self, other: _Body) -> None:
        """Write more lines of `other`'s block (same condition variables)."""
        self.used, self.ready, self.lazy = other.used, other.ready, other.lazy

    def cond(self, idx: int, indent: str) -> str:
        """Make sure condition `idx` is evaluated (in this block); its variable."""
        v = f"x{idx}"
        if idx in self.ready:
            return v
        self.used.add(idx)
        top = indent == BASE
        if self.local[idx]:  # the feed's variable: maybe set by an earlier run already
            self.lines.append(f"{indent}if {v} is None:")
            self.lines.append(f"{indent}    {v} = {self.test(idx)}")
        elif top and idx not in self.lazy:
            self.lines.append(f"{indent}{v} = {self.test(idx)}")
        else:
            self.lazy.add(idx)
            self.lines.append(f"{indent}if {v} is None:")
            self.lines.append(f"{indent}    {v} = {self.test(idx)}")
        if top:
            self.ready.add(idx)
        return v

    def guard(self, flag: str, guard: tuple[Lits, ...], indent: str = "    ") -> None:
        """`flag = <every literal of the guard holds>`, evaluating conditions lazily."""
        lits = [lit for conj in guard for lit in conj]
        if any(lit == 0 for lit in lits):
            self.lines.append(f"{indent}{flag} = False")
            return
        if not lits:
            self.lines.append(f"{indent}{flag} = True")
            return
        if len(lits) == 1:
            v = self.cond(abs(lits[0]) - 1, indent)
            self.lines.append(f"{indent}{flag} = {'' if lits[0] > 0 else 'not '}{v}")
            return
        self.lines.append(f"{indent}{flag} = False")
        ind = indent
        for lit in lits:
            v = self.cond(abs(lit) - 1, ind)
            self.lines.append(f"{ind}if {'' if lit > 0 else 'not '}{v}:")
            ind += "    "
        self.lines.append(f"{ind}{flag} = True")

    def prologue(self) -> list[str]:
        """The stage events the block's inline conditions read, and the per-run
        condition variables first set under an `if` (the event-local ones are the
        feed's)."""
        stages = sorted({s for i in self.used if i in self.inline for s in self.inline[i].stages})
        return [f"_s{s} = {self._stage_event(s)}" for s in stages] + [
            f"x{i} = None" for i in sorted(self.lazy)]

    def _stage_event(self, stage: int) -> str:
        """Python for the last event of `stage` in `path`."""
        ctx = self.ctx
        if ctx == "None":
            return "None"
        if self.heads == {stage}:  # always the newest event
            return f"{ctx}.ev"
        if stage not in self.heads:  # never the newest: walk back
            return f"_one({ctx}, {stage})"
        return (f"{ctx}.ev if {ctx} is not None and {ctx}.stage == {stage} "
                f"else _one({ctx}, {stage})")


def resting_states(program: NfaProgram) -> list[int]:
    """The states a partial match can rest in: those the start run (which only takes)
    and then the partial matches reach by TAKE and IGNORE edges, other than Final and
    Stop (a completed match is not a partial match; Stop discards)."""
    def targets(state: int, start: bool) -> set[int]:
        return {e.target for e in _unfold(program, state)
                if not (start and e.action == Action.IGNORE)
                and program.states[e.target].kind not in (Kind.FINAL, Kind.STOP)}

    resting: set[int] = set()
    todo = sorted(targets(program.start, True))
    while todo:
        s = todo.pop()
        if s not in resting:
            resting.add(s)
            todo.extend(targets(s, False) - resting)
    return sorted(resting)


def path_heads(program: NfaProgram, resting: list[int]) -> dict[int, frozenset[int]]:
    """Per resting state, the stages the newest event of a partial match resting there
    can have been taken as: a TAKE edge leaves its source state's stage at the head
    of the path, an IGNORE edge keeps the head it found."""
    heads: dict[int, set[int]] = {s: set() for s in resting}
    sources = [(program.start, True), *((s, False) for s in resting)]
    changed = True
    while changed:
        changed = False
        for src, start in sources:
            for e in _unfold(program, src):
                if e.target not in heads or (start and e.action == Action.IGNORE):
                    continue
                new = ({program.states[e.src].stage} if e.action == Action.TAKE
                       else heads[src] if not start else set())
                if not new <= heads[e.target]:
                    heads[e.target] |= new
                    changed = True
    return {s: frozenset(h) for s, h in heads.items()}


@dataclass(frozen=True)
class _Gen:
    """What every block of one feed is written from."""

    program: NfaProgram
    local: tuple[bool, ...]
    inline: dict[int, Inline]
    kinds: tuple[Kind, ...]
    heads: dict[int, frozenset[int]]  # see path_heads


def generate_feed(program: NfaProgram, local: tuple[bool, ...],
                  inline: dict[int, Inline] | None = None,
                  field_reads: dict[str, str] | None = None) -> FeedSource:
    """The body of `feed(runs, ev, key, out, fin, start)`: every run of `runs` takes
    the block of its state, in order; then, if `start`, the start run. Returns
    whether the start run added a partial match to `out`. `inline`: the conditions
    written in place (else called); `field_reads`: Python for each field variable
    they read."""
    resting = resting_states(program)
    gen = _Gen(program, local, inline or {}, tuple(s.kind for s in program.states),
               path_heads(program, resting))
    reads = field_reads or {}
    used: set[int] = set()
    blocks: dict[int, list[str]] = {}
    for idx in resting:
        blocks[idx] = _step_body(gen, idx, used, start=False)
    start_used: set[int] = set()
    start = _step_body(gen, program.start, start_used, start=True)

    def fields(conds: set[int]) -> set[str]:
        return {f for i in conds if i in gen.inline for f in gen.inline[i].fields}

    # the fields the start run may read, then (when there are runs) the others
    first = fields(start_used)
    later = fields(used) - first
    lines = ["d = ev.data", "ts = ev.ts", "lets = ev.lets"]
    lines += [f"{v} = {reads[v]}" for v in sorted(first, key=_var_order)]
    lines += [f"x{i} = None" for i in sorted(used | start_used) if local[i]]
    if blocks:
        if later:
            lines += ["if runs:"]
            lines += [f"    {v} = {reads[v]}" for v in sorted(later, key=_var_order)]
        lines += ["for run in runs:"] + (["    st = run.state"] if len(blocks) > 1 else [])
        lines += _dispatch(sorted(blocks), blocks, "    ")
    lines += ["n = _len(out)", "if start:"]
    lines += ["    " + ln for ln in start]
    lines.append("return _len(out) > n")
    marks = []
    for i, ln in enumerate(lines):
        m = re.search(r"  # c([0-9]+)$", ln)
        marks.append(int(m.group(1)) if m else -1)
        if m:
            lines[i] = ln[:m.start()]
    return FeedSource(lines, marks)


def _var_order(v: str) -> int:
    return int(v[1:])  # v0, v1, ... in the order the compiler made them


def _dispatch(states: list[int], blocks: dict[int, list[str]], indent: str) -> list[str]:
    """The blocks of `states`, chosen by `st` with a binary search (a run rests only
    in a state with a block)."""
    if len(states) == 1:
        return [indent + ln for ln in blocks[states[0]]]
    mid = len(states) // 2
    return [f"{indent}if st < {states[mid]}:",
            *_dispatch(states[:mid], blocks, indent + "    "),
            f"{indent}else:",
            *_dispatch(states[mid:], blocks, indent + "    ")]


def _step_body(gen: _Gen, state: int, used: set[int], *, start: bool) -> list[str]:
    """The block of a run resting in `state` (or of the start run); adds the
    conditions it reads to `used`."""
    w = _StepWriter(gen, state, start)
    edges = [e for e in _unfold(gen.program, state)
             if not (start and e.action == Action.IGNORE)]
    stops, takes, ignores = w.classify(edges)
    if stops:
        w.body.append(f"    stop = {' or '.join(stops)}")
    for _, e in takes:
        stage = gen.program.states[e.src].stage
        w.node_uses[stage] = w.node_uses.get(stage, 0) + 1
    # a run with one way forward and nothing else holding it becomes its successor
    # (no new Run): one TAKE edge, no Stop, no immediate completion behind it, and
    # (checked per event) no IGNORE edge taken
    moves = (not start and not stops and len(takes) == 1
             and (gen.kinds[takes[0][1].target] == Kind.FINAL
                  or not _final_guards(gen.program, takes[0][1].target)))
    for flag, e in takes:
        # IGNORE edges whose guard is the TAKE edge's negated cannot hold with it
        excl = [f for f, i in ignores if not _exclusive(e.guard, i.guard)]
        w.take(flag, e, bool(stops), excl if moves else None)
    if ignores:
        w.ignore(ignores, bool(stops))
    used |= w.b.used
    return w.assemble()


def _exclusive(a: tuple[Lits, ...], b: tuple[Lits, ...]) -> bool:
    """Guards that cannot both hold: one literal each, one the other's negation."""
    la = [lit for conj in a for lit in conj]
    lb = [lit for conj in b for lit in conj]
    return len(la) == 1 and len(lb) == 1 and la[0] == -lb[0] != 0


class _StepWriter:
    """Writes one step function: edge flags, then successors per TAKE edge (sharing
    one `Node` per stage), then per IGNORE edge (reusing the run object once)."""

    def __init__(self, gen: _Gen, state: int, start: bool) -> None:
        self.gen = gen
        self.program = gen.program
        self.state = state
        self.kinds = gen.kinds
        self.final = gen.program.final
        self.start = start
        self.heads = frozenset() if start else gen.heads[state]
        self.b = _Body(gen.local, "None" if start else "path", gen.inline, self.heads)
        self.body = self.b.lines
        self.nodes: dict[int, str] = {}
        self.node_uses: dict[int, int] = {}  # TAKE edges per stage (each may build its Node)
        # what a new successor inherits: from this event (start run) or from the run
        self.start_ts, self.start_seq = ("ts", "ev.seq") if start else ("run.start_ts",
                                                                           "run.start_seq")
        self.n = "1" if start else "run.n + 1"
        self.prev = "None" if start else "path"

    def classify(
        self, edges: list[_Edge]
    ) -> tuple[list[str], list[tuple[str, _Edge]], list[tuple[str, _Edge]]]:
        """A flag per edge (its guard holds); the flags of edges into Stop, the TAKE
        edges and the IGNORE edges."""
        stops, takes, ignores = [], [], []
        for j, e in enumerate(edges):
            flag = f"f{j}"
            self.b.guard(flag, e.guard)
            if e.action == Action.TAKE and self.kinds[e.target] == Kind.STOP:
                stops.append(flag)
            elif e.action == Action.TAKE:
                w = self.program.states[e.src].window
                if w and not self.start:
                    self.body.append(f"    if {flag} and ts - run.time >= {w}:")
                    self.body.append(f"        {flag} = False  # the stage's `within` has passed")
                takes.append((flag, e))
            else:
                ignores.append((flag, e))
        return stops, takes, ignores

    def _run(self, state: int | str, node: str) -> str:
        return f"Run({state}, {node}, {self.start_ts}, {self.start_seq}, ts, {self.n})"

    def take(self, flag: str, e: _Edge, stops: bool, moves: list[str] | None = None) -> None:
        """The successor by a TAKE edge. `moves`: the run object itself becomes it
        unless one of these (IGNORE) flags holds."""
        body = self.body
        stage = self.program.states[e.src].stage
        node = self.nodes.get(stage)
        body.append(f"    if {flag}:")
        if self.node_uses[stage] == 1:  # the only edge that takes the event as `stage`
            node = f"nd{stage}"
            body.append(f"        {node} = Node({stage}, ev, {self.prev})")
        else:  # one Node per stage, shared by the successors of this run
            if node is None:
                node = self.nodes[stage] = f"nd{stage}"
                body.insert(0, f"    {node} = None")
            body.append(f"        if {node} is None:")
            body.append(f"            {node} = Node({stage}, ev, {self.prev})")
        to_final = self.kinds[e.target] == Kind.FINAL
        if moves is not None:
            dest = "fin" if to_final else "out"
            target = self.final if to_final else e.target
            move = [f"run.state = {target}",
                    f"run.path = {node}", "run.time = ts", "run.n += 1",
                    f"{dest}.append(run)"]
            if not moves:
                body.extend(f"        {ln}" for ln in move)
                return
            body.append(f"        if not ({' or '.join(moves)}):  # the run moves on")
            body.extend(f"            {ln}" for ln in move)
            body.append("        else:")
            body.append(f"            {dest}.append({self._run(target, node)})")
            return
        if to_final:
            body.append(f"        fin.append({self._run(self.final, node)})")
            return
        inner = "        "
        if stops:
            body.append(f"{inner}if not stop:")
            inner += "    "
        body.append(f"{inner}out.append({self._run(e.target, node)})")
        guards = _final_guards(self.program, e.target)
        if guards:  # the successor completes at once through PROCEED edges
            ors = []
            for k, g in enumerate(guards):
                gf = f"g{e.target}_{k}"
                b2 = _Body(self.gen.local, "None" if self.start else "path", self.gen.inline,
                           self.heads)
                b2.share(self.b)
                b2.guard(gf, g, "        ")
                body.extend(b2.lines)
                ors.append(gf)
            body.append(f"        if {' or '.join(ors)}:")
            body.append(f"            fin.append({self._run(self.final, node)})")

    def ignore(self, ignores: list[tuple[str, _Edge]], stops: bool) -> None:
        """The run itself is the first successor by an IGNORE edge (the event is not
        taken: same path, start and time), copies are the others."""
        body = self.body
        several = sum(self.kinds[e.target] != Kind.FINAL for _, e in ignores) > 1
        if several:
            body.append("    reused = False")
        for flag, e in ignores:
            if self.kinds[e.target] == Kind.FINAL:
                body.append(f"    if {flag}:")
                body.append(
                    f"        fin.append(Run({e.target}, path, run.start_ts, run.start_seq, "
                    f"ts, run.n))"
                )
                continue
            cond = f"{flag} and not stop" if stops else flag
            body.append(f"    if {cond}:")
            reuse = ["out.append(run)"]
            if e.target != self.state:
                reuse.insert(0, f"run.state = {e.target}")
            if not several:
                body.extend(f"        {ln}" for ln in reuse)
                continue
            body.append("        if reused:")
            body.append(
                f"            out.append(Run({e.target}, path, run.start_ts, run.start_seq, "
                f"run.time, run.n))"
            )
            body.append("        else:")
            body.append("            reused = True")
            body.extend(f"            {ln}" for ln in reuse)

    def assemble(self) -> list[str]:
        """Setup, condition variables and node slots first, then the body."""
        if self.start:  # conditions see no partial match (`path` holds the last run's)
            inl = self.gen.inline
            setup = ["path = None"] if any(
                i in inl and "path" in inl[i].src for i in self.b.used) else []
        else:
            setup = ["path = run.path"]
        pro = [f"    {x}" for x in self.b.prologue()]
        node_inits = [ln for ln in self.body if ln.startswith("    nd") and ln.endswith("= None")]
        rest = [ln for ln in self.body if ln not in node_inits]
        lines = [*(f"    {s}" for s in setup), *pro, *node_inits, *rest]
        if len(lines) == len(setup):
            lines.append("    pass")
        return [ln[4:] for ln in lines]
