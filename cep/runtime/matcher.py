"""Per-key NFA execution with FlinkCEP's semantics (`NFA.doProcess`, `advanceTime`,
`processMatchesAccordingToSkipStrategy`).

A partial match (`Run`) is a state of the NFA program plus a pointer into a persistent
linked list of taken events (`Node`): branches share their common prefix, so an
event is stored once however many partial matches hold it (Flink's shared buffer,
without the Dewey numbers it needs to untangle a shared DAG).

There is always one implicit start run, so any event may begin a match. One step
feeds one event to every run independently; a run with no applicable edge disappears;
a run reaching a Stop state discards every successor it produced for that event.
With a skip strategy other than `skip none`, completed matches are held back while
an earlier-started partial match is still open, then emitted in order of their first
event, pruning runs and held matches by the strategy's rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cep.program import CompiledPattern, Feed, Kind

INF = float("inf")
FINAL = int(Kind.FINAL)
STOP = int(Kind.STOP)
PENDING = int(Kind.PENDING)


class Ev:
    """One event as the engine sees it: time, processing order, data, `let` values."""

    __slots__ = ("data", "lets", "pos", "seq", "ts")

    def __init__(self, ts: int, seq: int, data: dict[str, Any], lets: Any, pos: Any) -> None:
        self.ts = ts
        self.seq = seq
        self.data = data
        self.lets = lets
        self.pos = pos


class Node:
    """A taken event in a partial match: (stage, event) -> previous node. Runs that
    take the same event share its `Ev` (and the state codec writes it once)."""

    __slots__ = ("ev", "prev", "stage")

    def __init__(self, stage: int, ev: Ev, prev: Node | None) -> None:
        self.stage = stage
        self.ev = ev
        self.prev = prev


class Run:
    """A partial match (Flink's ComputationState). `time` is the completion time for
    runs in the Final state, else the time of the last taken event."""

    __slots__ = ("n", "path", "start_seq", "start_ts", "state", "time")

    def __init__(
        self, state: int, path: Node | None, start_ts: int, start_seq: int, time: int, n: int
    ) -> None:
        self.state = state
        self.path = path
        self.start_ts = start_ts
        self.start_seq = start_seq
        self.time = time
        self.n = n


NO_HELD: tuple[()] = ()


class KeyState:
    """Everything one key holds for one pattern. Exists only while it has runs, held
    matches, buffered events or a pending timer."""

    __slots__ = ("deadline", "held", "key", "nbuf", "runs", "scheduled")

    def __init__(self, key: Any) -> None:
        self.key = key
        self.runs: list[Run] = []
        # completed matches held back by the skip strategy; most keys never hold one,
        # so an empty key shares one empty tuple instead of owning a list (56 bytes)
        self.held: list[Run] | tuple[()] = NO_HELD
        self.nbuf = 0
        self.deadline = INF  # the earliest time a run of this key can expire
        self.scheduled = INF  # the earliest timer queued for this key

    def idle(self) -> bool:
        return not self.runs and not self.held and self.nbuf == 0


# Output records: (kind, run, time) with kind "match" or "timeout".
Output = tuple[str, Run, int]


class Matcher:
    """Runs one compiled pattern's NFA for any number of keys."""

    def __init__(self, plan: CompiledPattern, on_error: Callable[[BaseException], None]) -> None:
        prog = plan.nfa
        self.plan = plan
        self.on_error = on_error
        self.start = prog.start
        self.window = prog.window
        self.kind = tuple(int(s.kind) for s in prog.states)
        self.stage = tuple(s.stage for s in prog.states)
        self.expiry = prog.expiry
        # the generated step, closed over the classes it builds
        self.feed: Feed = plan.bind_steps(Run, Node)
        self.skip = plan.skip_kind
        self.skip_none = self.skip == "none"
        self.skip_stage = plan.skip_stage
        self.handle_timeouts = plan.timeout is not None
        # Runs expire only by the pattern window: a run's deadline is start_ts + window,
        # and a key's runs are in start order (successors keep their run's place, new
        # runs come last, events are fed in time order), so the expired runs are a
        # prefix and the key's deadline is its first run's.
        self.window_only = self.window > 0 and not any(self.expiry)
        # an expired run produces nothing (no `on timeout emit`, no Pending state to
        # complete): with no held matches either, expiry just deletes
        self.quiet = not self.handle_timeouts and PENDING not in self.kind
        # window_only: (start_ts + window, key state) per event that started a run, in
        # time order (the runtime's timer queue; see PatternRuntime.drain); setting it
        # makes `process` again
        self._queue: Any = None
        self.process: Callable[..., None] = self._make_process()
        # advance(ks, t, out): Flink's advanceTime: expire the runs whose windows
        # passed by time `t`
        self.advance: Callable[[KeyState, int | float, list[Output]], None] = (
            self._advance_window if self.window_only else self._advance)

    # ------------------------------------------------------------ one event

    @property
    def queue(self) -> Any:
        return self._queue

    @queue.setter
    def queue(self, q: Any) -> None:
        self._queue = q
        self.process = self._make_process()

    def _make_process(self) -> Callable[..., None]:
        """`process(ks, ev, out, start=True)`: feed one event (after `advance(ks,
        ev.ts)`): Flink's doProcess. Each run takes the generated block of its state
        (cep/compiler/stepgen.py). `start=False`: the event may extend partial matches
        but not begin one (a replaced version).

        A closure made for this pattern's case (window-only or not, skip strategy,
        queue): one call per event and no attribute lookups on the way."""
        feed = self.feed
        on_error = self.on_error
        plan = self.plan
        release = self._release
        queue = self._queue
        window = self.window
        next_deadline = self.next_deadline
        window_only = self.window_only
        skip_none = self.skip_none

        # completed matches of one event: one list, emptied after each event (what
        # takes them copies them out)
        potential: list[Run] = []

        def process(ks: KeyState, ev: Ev, out: list[Output], start: bool = True) -> None:
            new_runs: list[Run] = []
            try:
                started = feed(ks.runs, ev, ks.key, new_runs, potential, start)
            except Exception as exc:  # generated code is total; this is a bug guard
                potential.clear()
                on_error(plan.module.error(exc, plan.name))
                return
            ks.runs = new_runs
            if window_only:  # runs in start order: the first expires first
                if started and queue is not None:
                    d = ev.ts + window
                    queue.append((d, ks))
                    # the new run is the key's only one: its deadline is the key's (one
                    # int object for the queue entry, the deadline and the timer)
                    ks.deadline = d if len(new_runs) == 1 else new_runs[0].start_ts + window
                else:
                    ks.deadline = new_runs[0].start_ts + window if new_runs else INF
            else:
                ks.deadline = next_deadline(ks) if new_runs else INF
            if skip_none:
                if potential:
                    if len(potential) > 1:
                        potential.sort(key=_match_order)
                    for r in potential:
                        out.append(("match", r, r.time))
                    potential.clear()
                return
            if potential or ks.held:
                release(ks, potential, out)
                potential.clear()

        return process

    # ------------------------------------------------------------ time

    def _advance(self, ks: KeyState, t: int | float, out: list[Output]) -> None:
        """`advance` in general."""
        if not ks.runs:
            return
        window = self.window
        expiry = self.expiry
        kind = self.kind
        keep: list[Run] = []
        potential: list[Run] = []
        changed = False
        for run in ks.runs:
            w = expiry[run.state]
            by_prev = w > 0 and t - run.time >= w
            by_first = window > 0 and t - run.start_ts >= window
            if not (by_prev or by_first):
                keep.append(run)
                continue
            changed = True
            deadline = run.time + w if by_prev else run.start_ts + window
            if kind[run.state] == PENDING:
                potential.append(
                    Run(self.plan.nfa.final, run.path, run.start_ts, run.start_seq, deadline, run.n)
                )
            elif self.handle_timeouts and run.path is not None:
                out.append(("timeout", run, deadline))
        if not changed:
            if ks.deadline <= t:  # stale: nothing expires by t any more
                ks.deadline = self.next_deadline(ks)
            return
        ks.runs = keep
        ks.deadline = self.next_deadline(ks) if keep else INF
        if potential or ks.held:
            self._release(ks, potential, out)

    def _advance_window(self, ks: KeyState, t: int | float, out: list[Output]) -> None:
        """`advance` when runs expire only by the pattern window: the expired runs are
        the prefix of the key's runs that started at or before t - window."""
        runs = ks.runs
        if not runs:
            return
        window = self.window
        limit = t - window
        if runs[0].start_ts > limit:
            ks.deadline = runs[0].start_ts + window  # refresh a stale deadline
            return
        n = 1
        while n < len(runs) and runs[n].start_ts <= limit:
            n += 1
        expired = runs[:n]
        del runs[:n]
        ks.deadline = runs[0].start_ts + window if runs else INF
        if self.quiet and not ks.held:
            return  # nothing to report: the runs are just gone
        potential: list[Run] = []
        kind = self.kind
        for run in expired:
            deadline = run.start_ts + window
            if kind[run.state] == PENDING:
                potential.append(
                    Run(self.plan.nfa.final, run.path, run.start_ts, run.start_seq, deadline, run.n)
                )
            elif self.handle_timeouts and run.path is not None:
                out.append(("timeout", run, deadline))
        if potential or ks.held:
            self._release(ks, potential, out)

    def _deadline(self, ks: KeyState) -> float:
        """The key's deadline after its runs changed."""
        runs = ks.runs
        if not runs:
            return INF
        if self.window_only:  # runs in start order: the first expires first
            return runs[0].start_ts + self.window
        return self.next_deadline(ks)

    def next_deadline(self, ks: KeyState) -> float:
        best = INF
        window = self.window
        expiry = self.expiry
        for run in ks.runs:
            if window:
                d = run.start_ts + window
                if d < best:
                    best = d
            w = expiry[run.state]
            if w:
                d = run.time + w
                if d < best:
                    best = d
        return best

    # ------------------------------------------------------------ skip strategies

    def _release(self, ks: KeyState, potential: list[Run], out: list[Output]) -> None:
        """Flink's processMatchesAccordingToSkipStrategy."""
        held: list[Run] = ks.held if isinstance(ks.held, list) else []
        if potential:
            held.extend(potential)
            held.sort(key=_match_order)
        runs = ks.runs
        earliest = min((r.start_ts, r.start_seq) for r in runs) if runs else None
        while held:
            m = held[0]
            if earliest is not None and (m.start_ts, m.start_seq) > earliest:
                break
            held.pop(0)
            pid = self._pruning_id(m)
            if pid is not None:
                strict = self.skip in ("to_first", "to_last")
                runs[:] = [r for r in runs if not _pruned(r, pid, strict)]
                held[:] = [h for h in held if not _pruned(h, pid, strict)]
                earliest = min((r.start_ts, r.start_seq) for r in runs) if runs else None
            out.append(("match", m, m.time))
        ks.held = held if held else NO_HELD
        # pruning may have removed the runs that determined the key's next deadline
        ks.deadline = self._deadline(ks)

    def _pruning_id(self, m: Run) -> tuple[int, int] | None:
        skip = self.skip
        if skip == "none":
            return None
        node = m.path
        if skip == "past_last":
            best: tuple[int, int] | None = None
            while node is not None:
                i = (node.ev.ts, node.ev.seq)
                if best is None or i > best:
                    best = i
                node = node.prev
            return best
        if skip == "to_next":
            return (m.start_ts, m.start_seq)
        target = self.skip_stage
        found: tuple[int, int] | None = None
        while node is not None:
            if node.stage == target:
                i = (node.ev.ts, node.ev.seq)
                if skip == "to_last":
                    return i  # walking backwards: the first hit is the last event
                found = i
            node = node.prev
        return found


def _pruned(r: Run, pid: tuple[int, int], strict: bool) -> bool:
    s = (r.start_ts, r.start_seq)
    return s < pid if strict else s <= pid


def _match_order(r: Run) -> tuple[int, int, int]:
    """Matches are ordered by their first event; for the same first event the one
    with more events comes first (Flink leaves this tie to its priority queue)."""
    return (r.start_ts, r.start_seq, -r.n)


def match_events(plan: CompiledPattern, run: Run) -> dict[str, list[Ev]]:
    """The events of a (partial) match per stage, in pattern order, skipped stages absent."""
    per: dict[int, list[Ev]] = {}
    node = run.path
    while node is not None:
        per.setdefault(node.stage, []).append(node.ev)
        node = node.prev
    names = plan.nfa.stage_names
    return {names[i]: per[i][::-1] for i in sorted(per)}
