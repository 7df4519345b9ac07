"""NFA program -> one generated Python function per state (the step of a partial match).

FlinkCEP's `computeNextStates` walks the decision graph of a state at run time: follow
PROCEED edges whose condition holds, collect TAKE and IGNORE edges whose condition
holds, then build the successors. The graph is static, so this module unfolds it at
compile time, in the same (stack) order as the walk, into straight-line code:

    def st5(run, ev, key, E, out, fin):
        ...evaluate each condition at most once (event-local ones memoised in E)...
        ...one boolean per reachable TAKE / IGNORE edge (its own and its PROCEED guards)...
        ...a Stop reached discards every other successor of the run (completed matches
        are kept, as in Flink's doProcess)...
        ...append successors to `out`, completed matches to `fin`...

`start(ev, key, E, out, fin)` is the step of the implicit start run: it only takes
(a new partial match begins at this event) and never ignores.
"""

from __future__ import annotations

from dataclasses import dataclass

from cep.compiler.nfa import Action, NfaProgram
from cep.program import Kind

Lits = tuple[int, ...]


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

    def __init__(self, local: tuple[bool, ...], ctx: str) -> None:
        self.local = local
        self.ctx = ctx  # Python for the `path` conditions see ("None" for the start run)
        self.lines: list[str] = []
        self.used: set[int] = set()

    def cond(self, idx: int, indent: str) -> str:
        """Make sure condition `idx` is evaluated (in this block); its variable."""
        v = f"x{idx}"
        self.used.add(idx)
        if self.local[idx]:
            self.lines.append(f"{indent}if {v} is None:")
            self.lines.append(f"{indent}    {v} = E[{idx}]")
            self.lines.append(f"{indent}    if {v} is None:")
            self.lines.append(
                f"{indent}        {v} = E[{idx}] = c{idx}(d, ts, key, lets, None) is True"
            )
        else:
            self.lines.append(f"{indent}if {v} is None:")
            self.lines.append(f"{indent}    {v} = c{idx}(d, ts, key, lets, {self.ctx}) is True")
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
        self.lines.append(f"{indent}{flag} = False")
        ind = indent
        for lit in lits:
            v = self.cond(abs(lit) - 1, ind)
            self.lines.append(f"{ind}if {'' if lit > 0 else 'not '}{v}:")
            ind += "    "
        self.lines.append(f"{ind}{flag} = True")

    def prologue(self) -> list[str]:
        return [f"x{i} = None" for i in sorted(self.used)]


def generate_steps(program: NfaProgram, local: tuple[bool, ...]) -> list[tuple[str, list[str]]]:
    """(function name, body lines) for every state that a partial match can rest in,
    plus `start` for the start run."""
    kinds = [s.kind for s in program.states]
    final = program.final
    resting = {program.start}
    for st in program.states:
        for e in st.edges:
            if e.action != Action.PROCEED:
                resting.add(e.target)
    funcs: list[tuple[str, list[str]]] = []
    for idx in sorted(resting):
        if kinds[idx] in (Kind.FINAL, Kind.STOP):
            continue
        funcs.append((f"st{idx}", _step_body(program, idx, local, kinds, final, start=False)))
    funcs.append(("start", _step_body(program, program.start, local, kinds, final, start=True)))
    return funcs


def _step_body(
    program: NfaProgram, state: int, local: tuple[bool, ...], kinds: list[Kind], final: int,
    *, start: bool,
) -> list[str]:
    """The body of the step of a run resting in `state` (or of the start run)."""
    w = _StepWriter(program, local, kinds, final, start)
    edges = [e for e in _unfold(program, state) if not (start and e.action == Action.IGNORE)]
    stops, takes, ignores = w.classify(edges)
    if stops:
        w.body.append(f"    stop = {' or '.join(stops)}")
    for flag, e in takes:
        w.take(flag, e, bool(stops))
    if ignores:
        w.ignore(ignores, bool(stops))
    return w.assemble()


class _StepWriter:
    """Writes one step function: edge flags, then successors per TAKE edge (sharing
    one `Node` per stage), then per IGNORE edge (reusing the run object once)."""

    def __init__(self, program: NfaProgram, local: tuple[bool, ...], kinds: list[Kind],
                 final: int, start: bool) -> None:
        self.program = program
        self.local = local
        self.kinds = kinds
        self.final = final
        self.start = start
        self.b = _Body(local, "None" if start else "path")
        self.body = self.b.lines
        self.nodes: dict[int, str] = {}
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

    def take(self, flag: str, e: _Edge, stops: bool) -> None:
        body = self.body
        stage = self.program.states[e.src].stage
        node = self.nodes.get(stage)
        body.append(f"    if {flag}:")
        if node is None:
            node = self.nodes[stage] = f"nd{stage}"
            body.insert(0, f"    {node} = None")
        body.append(f"        if {node} is None:")
        body.append(f"            {node} = Node({stage}, ev, {self.prev})")
        if self.kinds[e.target] == Kind.FINAL:
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
                b2 = _Body(self.local, "None" if self.start else "path")
                b2.used = self.b.used
                b2.guard(gf, g, "        ")
                body.extend(b2.lines)
                ors.append(gf)
            body.append(f"        if {' or '.join(ors)}:")
            body.append(f"            fin.append({self._run(self.final, node)})")

    def ignore(self, ignores: list[tuple[str, _Edge]], stops: bool) -> None:
        body = self.body
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
            body.append("        if reused:")
            body.append(
                f"            out.append(Run({e.target}, path, run.start_ts, run.start_seq, "
                f"run.time, run.n))"
            )
            body.append("        else:")
            body.append("            reused = True")
            body.append(f"            run.state = {e.target}")
            body.append("            out.append(run)")

    def assemble(self) -> list[str]:
        """Setup, condition variables and node slots first, then the body."""
        setup = ["d = ev.data", "ts = ev.ts", "lets = ev.lets"]
        if not self.start:
            setup.append("path = run.path")
        pro = [f"    {x}" for x in self.b.prologue()]
        node_inits = [ln for ln in self.body if ln.startswith("    nd") and ln.endswith("= None")]
        rest = [ln for ln in self.body if ln not in node_inits]
        lines = [*(f"    {s}" for s in setup), *pro, *node_inits, *rest]
        if len(lines) == len(setup):
            lines.append("    pass")
        return [ln[4:] for ln in lines]
