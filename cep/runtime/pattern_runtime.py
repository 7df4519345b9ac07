"""One compiled pattern's live state inside the engine: keys, buffered events, timers.

Private to `cep.runtime`: the engine owns its `PatternRuntime`s and nothing outside
the runtime reaches them (tests/test_layering.py).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from cep.program import CompiledPattern
from cep.runtime.matcher import INF, Ev, KeyState, Matcher, Output
from cep.values import path_get

if TYPE_CHECKING:
    from cep.runtime.engine import Engine
    from cep.runtime.eviction import Eviction


def sortable(v: Any) -> tuple[int, Any]:
    if v.__class__ in (int, float):
        return (0, v)
    if v.__class__ is str:
        return (1, v)
    if v is None:
        return (3, 0)
    return (2, repr(v))


@dataclass(slots=True)
class Staged:
    """A batch after a pattern's prefilter: (index, key state or key) candidates."""

    ds: list[Any]
    tss: list[int]
    pos: list[Any]
    cands: list[tuple[int, Any]]
    horizon: float
    ticks: list[tuple[int, KeyState]]  # skipped events that advance a key's time


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One score call site's feature columns (in the call's feature order) for n rows."""

    call: Any  # cep.program ScoreCall
    columns: Sequence[list[Any]]
    n: int


_time = itemgetter(0)


def timer_tie(key: Any) -> str:
    return key if key.__class__ is str else repr(key)


class PatternRuntime:
    """One compiled pattern's live state: keys, buffered events, timers."""

    def __init__(self, plan: CompiledPattern, engine: Engine, clock_key: tuple[str, ...]) -> None:
        self.plan = plan
        self.engine = engine
        self.clock_key = clock_key
        self.matcher = Matcher(plan, engine._on_error)
        self.states: dict[Any, KeyState] = {}
        self.heap: list[tuple[Any, ...]] = []
        self.timers: list[tuple[float, str, Any]] = []  # (deadline, tie-break, key)
        # window-only patterns (Matcher.window_only) keep no timer heap: every event
        # that starts a run appends (its time + window, key state) to this queue, which
        # is therefore in time order; a key fires at the entry equal to its `scheduled`
        # time, as it would from the heap (see drain)
        self.queue: list[tuple[float, KeyState]] | None = (
            [] if self.matcher.window_only else None)
        self.matcher.queue = self.queue
        self.queue_sorted = True  # restored keys append out of order (load_key)
        self.stats: Counter[str] = Counter()
        # a replaced version drains: its partial matches finish, it starts no new ones
        # (events that arrived before the replacement may still start one: the new
        # version never saw them)
        self.draining = False
        self.drain_from = INF  # arrival number of the first event after the replacement
        self.dirty: set[Any] = set()  # keys changed since the last checkpoint
        # this batch's relevant events, already in (time, arrival) order: merged with the
        # heap in drain(), so most events never enter the heap at all
        self.fresh: list[tuple[Any, ...]] = []
        self.fresh_sorted = True  # else drain sorts it (ticks merged in)
        # keys beyond a resident bound go to the state store (cep/runtime/eviction.py)
        self.eviction: Eviction | None = None

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def version(self) -> int:
        return self.plan.version

    def getter(self) -> Any:
        """key -> its state or None (loading an evicted key back)."""
        return self.states.get if self.eviction is None else self.eviction.get

    # -- ingest

    def _create(self, key: Any) -> KeyState | None:
        if self.draining:
            return None
        ks = KeyState(key)
        self.states[key] = ks
        return ks

    def applies(self, stream: str | None) -> bool:
        s = self.plan.streams
        return s is None or stream is None or stream in s

    def ingest(
        self, ds: list[Any], tss: list[int], pos: list[Any], horizon: float, unkeyed: list[Any]
    ) -> None:
        """Buffer the batch's relevant events. `ds` is in (time, arrival) order and
        `horizon` is the watermark after this batch (see the prefilter in
        cep/compiler/pipeline.py). Events the pattern cannot key but would start on are
        added to `unkeyed`. (`Engine` runs the three steps itself, to share score calls
        between patterns.)"""
        staged = self.stage(ds, tss, pos, horizon, unkeyed)
        self.admit(staged, self.engine._score_many(self.score_requests(staged)))

    def stage(
        self, ds: list[Any], tss: list[int], pos: list[Any], horizon: float, unkeyed: list[Any]
    ) -> Staged:
        """Step 1 of ingesting a batch: order it (`order by`) and run the prefilter."""
        plan = self.plan
        if plan.order_by:  # ties in time are taken in order-by order, before relevance
            obs = [tuple(sortable(path_get(d, p)) for p in plan.order_by) for d in ds]
            order = sorted(range(len(ds)), key=lambda j: (tss[j], obs[j]))
            ds, tss, pos = [ds[j] for j in order], [tss[j] for j in order], [pos[j] for j in order]
        cands: list[tuple[int, Any]] = []
        get, create = (None, None) if plan.let_names else (self.getter(), self._create)
        unk: list[Any] = []
        ticks: list[tuple[int, KeyState]] = []  # skipped events that advance a key's time
        try:
            plan.prefilter(ds, tss, horizon, get, create, cands, unk, ticks)
        except Exception as exc:  # generated code is total; this guards against bugs
            unk = []
            ticks = []
            cands = self._prefilter_each(ds, tss, horizon, get, create, exc, unk, ticks)
        if unk:
            unkeyed.extend(unk)
        return Staged(ds, tss, pos, cands, horizon, ticks)

    def score_requests(self, staged: Staged) -> list[ScoreRequest]:
        """Step 2: the `let` score calls the staged events need (feature columns)."""
        plan = self.plan
        calls = plan.let_score_calls
        keyed = staged.cands
        if not calls or not keyed:
            return []
        ds, tss = staged.ds, staged.tss
        cols = plan.let_cols([ds[i] for i, _ in keyed], [tss[i] for i, _ in keyed],
                             [k for _, k in keyed])
        return [ScoreRequest(c, cols[j], len(keyed)) for j, c in enumerate(calls)]

    def admit(self, staged: Staged, scores: list[list[Any]]) -> None:
        """Step 3: with the scores of step 2 (one list per request), buffer the
        relevant events: one `fresh` entry (time, order-by, arrival, key state, event)
        each, in the order they came (drain sorts the batch once, see `drain`)."""
        plan = self.plan
        ds, tss, pos, cands = staged.ds, staged.tss, staged.pos, staged.cands
        ticks = staged.ticks
        if plan.let_names:  # may add ticks: before the ticks get their arrival numbers
            selected = self._with_lets(ds, tss, cands, staged.horizon, scores, ticks)
        if ticks:  # merged into this batch's events in (time, order-by, arrival) order
            self._ticks(ds, tss, ticks)
        arrival = self.engine._arrival
        order_by = plan.order_by
        add = self.fresh.append
        n = 0
        if plan.let_names:
            for i, ks, lets in selected:
                ts = tss[i]
                d = ds[i]
                ob = tuple(sortable(path_get(d, p)) for p in order_by) if order_by else ()
                ks.nbuf += 1
                add((ts, ob, next(arrival), ks, Ev(ts, 0, d, lets, pos[i])))
            n = len(selected)
            self.fresh_sorted = False  # (order-by ties; no ticks)
        elif order_by:
            for i, ks in cands:
                if ks is not None:
                    d = ds[i]
                    ob = tuple(sortable(path_get(d, p)) for p in order_by)
                    ks.nbuf += 1
                    add((tss[i], ob, next(arrival), ks, Ev(tss[i], 0, d, None, pos[i])))
                    n += 1
            self.fresh_sorted = False  # sorted already; checked once in drain
        else:  # the common case
            for i, ks in cands:
                if ks is not None:
                    ks.nbuf += 1
                    ts = tss[i]
                    add((ts, (), next(arrival), ks, Ev(ts, 0, ds[i], None, pos[i])))
                    n += 1
        if n:
            self.stats["buffered"] += n

    def _ticks(self, ds: list[Any], tss: list[int], ticks: list[tuple[int, KeyState]]) -> None:
        """Skipped events of keys with state, as time marks (no event object): drain
        advances the key's time to them, as Flink does before every timestamp."""
        order_by = self.plan.order_by
        arrival = self.engine._arrival
        add = self.fresh.append
        for i, ks in ticks:
            ob = tuple(sortable(path_get(ds[i], p)) for p in order_by) if order_by else ()
            ks.nbuf += 1
            add((tss[i], ob, next(arrival), ks, None))
        self.fresh_sorted = False

    def _prefilter_each(
        self, ds: list[Any], tss: list[int], horizon: float, get: Any, create: Any,
        first: BaseException, unk: list[Any], ticks: list[tuple[int, KeyState]],
    ) -> list[tuple[int, Any]]:
        """Slow path after the prefilter raised: event by event, skipping (and counting)
        the events it raises on, so one bad event cannot stop the batch."""
        plan = self.plan
        self.engine._on_error(plan.module.error(first, plan.name))
        cands: list[tuple[int, Any]] = []
        for i in range(len(ds)):
            one: list[tuple[int, Any]] = []
            one_unk: list[Any] = []
            tick: list[tuple[int, KeyState]] = []
            try:
                plan.prefilter(ds[i:i + 1], tss[i:i + 1], horizon, get, create, one, one_unk,
                               tick)
            except Exception as exc:
                self.engine._on_error(plan.module.error(exc, plan.name))
                continue
            cands.extend((i, x) for _, x in one)
            unk.extend(one_unk)
            ticks.extend((i, x) for _, x in tick)
        queued = ({id(c[1]) for c in cands} | {id(t[1]) for t in ticks}
                  | {id(e[3]) for e in self.heap})
        for k in [k for k, ks in self.states.items() if ks.idle() and id(ks) not in queued]:
            del self.states[k]  # created by the aborted pass for an event now skipped
        return cands

    def count_prefilter(self, ds: list[Any], tss: list[int], horizon: float) -> None:
        """Run this pattern's own prefilter over a batch for its side effect on the
        type-mismatch counter only: no key state is created or changed. Keys created
        by the shared pass that ran before hold nothing yet (idle) and count as absent;
        keys this run would create count as present for its later events."""
        lookup = self.getter()  # (an evicted key is loaded back: it is present)
        created: set[Any] = set()

        def get(k: Any) -> Any:
            ks = lookup(k)
            if ks is not None and not ks.idle():
                return ks
            return True if k in created else None

        def create(k: Any) -> None:
            if not self.draining:
                created.add(k)

        with suppress(Exception):  # counting only; the real pass decided
            self.plan.prefilter(ds, tss, horizon, get, create, [], [], [])

    def forget_idle(self) -> None:
        """Drop the key states that hold nothing (created by an aborted prefilter pass:
        between batches every key state holds runs, held matches or buffered events)."""
        for k in [k for k, ks in self.states.items() if ks.idle()]:
            del self.states[k]

    def _with_lets(
        self, ds: list[Any], tss: list[int], keyed: list[tuple[int, Any]], horizon: float,
        results: list[list[Any]], ticks: list[tuple[int, KeyState]],
    ) -> list[tuple[int, KeyState, Any]]:
        plan = self.plan
        if results:
            scores: list[Any] = list(zip(*results, strict=True))
        else:
            scores = [()] * len(keyed)
        out = []
        get = self.getter()
        for j, (i, k) in enumerate(keyed):
            d, ts = ds[i], tss[i]
            lets = plan.lets_of(d, ts, k, scores[j])
            ks = get(k)
            if ks is None:
                test = plan.start_rel if ts <= horizon else plan.any_rel
                if not test(d, ts, k, lets):
                    continue
                ks = self._create(k)
                if ks is None:
                    continue
            elif not plan.any_rel(d, ts, k, lets):
                if plan.timed:
                    ticks.append((i, ks))
                continue
            out.append((i, ks, lets))
        return out

    # -- time

    def drain(self, watermark: float, out: list[tuple[PatternRuntime, Any, Output]]) -> None:
        """Feed buffered events up to the watermark, then fire the timers it passed, as
        Flink's CepOperator does on a watermark: per key, the events in (time, order-by,
        arrival) order, the key's time advanced to each event's time first; then every
        key with a deadline at or before the watermark is advanced to the watermark
        itself, so all of its partial matches that have timed out by then are collected
        before the skip strategy prunes anything (docs/semantics.md, Time)."""
        items = self._due(watermark)
        m = self.matcher
        advance = m.advance
        process = m.process
        seq = self.engine._seq
        settle = self._settle
        drain_from = self.drain_from
        # `_settle` inline for a key within its run limit, when the queue holds the
        # timers (no heap entry to push) and no key is evicted
        inline = self.queue is not None and self.eviction is None
        limit = self.engine.config.max_runs_per_key
        dirty = self.dirty.add if self.engine._track_changes else None
        release = self.states.pop
        outs: list[Output] = []
        for ts, _, arrival, ks, ev in items:
            ks.nbuf -= 1
            if ks.deadline <= ts:
                advance(ks, ts, outs)
            if ev is not None:  # None: a skipped event's time (see ingest)
                ev.seq = next(seq)
                process(ks, ev, outs, arrival < drain_from)
            if outs:
                out.extend((self, ks.key, o) for o in outs)
                outs = []
            if not inline or len(ks.runs) > limit:
                settle(ks)
                continue
            if dirty is not None:
                dirty(ks.key)
            if ks.runs or ks.held or ks.nbuf:
                if ks.deadline < ks.scheduled:
                    ks.scheduled = ks.deadline  # the queue holds an entry at it
            else:
                release(ks.key, None)
        timers = self.timers
        pop = heapq.heappop
        queue = self.queue
        if queue is not None:
            if queue and (queue[0][0] <= watermark or not self.queue_sorted):
                self._fire_queue(queue, watermark, out)
            return
        get: Any = self.states.get
        if self.eviction is not None:  # never with a queue (see Eviction)
            self.eviction.scan(watermark)  # the store's timers of evicted keys
            get = self.eviction.get
        while timers and timers[0][0] <= watermark:
            d, _, key = pop(timers)
            ks = get(key)
            if ks is None or ks.scheduled != d:
                continue  # superseded by a later schedule, or the key is gone
            self._fire(ks, watermark, out)

    def _due(self, watermark: float) -> list[tuple[Any, ...]]:
        """This batch's buffered entries and the heap's up to the watermark, in (time,
        order-by, arrival) order; this batch's later ones go to the heap. Arrival
        numbers are unique, so entries compare on those three alone; on equal time and
        order-by the heap's (older) entries come first, as they arrived first."""
        fresh = self.fresh
        self.fresh = []
        if not self.fresh_sorted:
            fresh.sort()
            self.fresh_sorted = True
        heap = self.heap
        if fresh and fresh[-1][0] > watermark:  # not due yet: wait in the heap
            cut = bisect_right(fresh, watermark, key=_time)
            dirty = self.dirty if self.engine._track_changes else None
            for item in fresh[cut:]:
                heapq.heappush(heap, item)
                if dirty is not None:
                    dirty.add(item[3].key)
            del fresh[cut:]
        if heap and heap[0][0] <= watermark:
            pop = heapq.heappop
            due = []
            while heap and heap[0][0] <= watermark:
                due.append(pop(heap))
            if fresh:
                due += fresh
                due.sort()  # two sorted runs: one merge
            return due
        return fresh

    def _fire(self, ks: KeyState, watermark: float,
              out: list[tuple[PatternRuntime, Any, Output]]) -> None:
        """A key's timer: advance it to the watermark, report, settle."""
        ks.scheduled = INF
        outs: list[Output] = []
        self.matcher.advance(ks, watermark, outs)
        if outs:
            out.extend((self, ks.key, o) for o in outs)
        self._settle(ks)

    def _fire_queue(self, queue: list[tuple[float, KeyState]], watermark: float,
                    out: list[tuple[PatternRuntime, Any, Output]]) -> None:
        """The timers of a window-only pattern: the due entries of the queue (a prefix,
        found by bisection and cut in one step), each key once at its `scheduled`
        time, in the heap's order (time, then key)."""
        if not self.queue_sorted:
            queue.sort(key=_time)
            self.queue_sorted = True
        n_due = bisect_right(queue, watermark, key=_time)
        if not n_due:
            return
        entries = queue[:n_due]
        del queue[:n_due]
        states = self.states
        due = []
        m = self.matcher
        # an expiry that cannot report anything just deletes, in any order (keys are
        # independent; only outputs have an order): no `on timeout emit`, no Pending
        # state, no held matches
        quiet = m.quiet
        window = m.window
        limit = watermark - window
        max_runs = self.engine.config.max_runs_per_key
        dirty = self.dirty if self.engine._track_changes else None
        for d, ks in entries:
            if ks.scheduled != d or states.get(ks.key) is not ks:
                continue  # superseded, or the key is gone
            runs = ks.runs
            if not quiet or ks.held or len(runs) > max_runs:
                due.append((d, timer_tie(ks.key), ks))
                continue
            n = 0
            for run in runs:
                if run.start_ts > limit:
                    break
                n += 1
            if n:
                del runs[:n]
            if dirty is not None:
                dirty.add(ks.key)
            if runs:
                ks.deadline = ks.scheduled = runs[0].start_ts + window
            else:
                ks.deadline = ks.scheduled = INF
                if not ks.nbuf:
                    del states[ks.key]
        if len(due) > 1:
            due.sort(key=lambda e: (e[0], e[1]))
        for d, _, ks in due:
            if ks.scheduled == d:  # else the same key twice
                self._fire(ks, watermark, out)

    def _settle(self, ks: KeyState) -> None:
        """After a key changed: enforce limits, release it if empty, else reschedule."""
        if self.engine._track_changes:
            self.dirty.add(ks.key)
        runs = ks.runs
        limit = self.engine.config.max_runs_per_key
        if len(runs) > limit:
            runs.sort(key=lambda r: (r.start_ts, r.start_seq))
            evicted = len(runs) - limit
            del runs[:evicted]
            self.stats["runs_evicted"] += evicted
        if ks.idle():
            self.states.pop(ks.key, None)
            return
        if self.eviction is not None:
            self.eviction.touch(ks.key)
        d = ks.deadline  # kept current by the matcher
        if d < ks.scheduled:
            ks.scheduled = d
            if self.queue is None:  # else the queue holds an entry at d already
                heapq.heappush(self.timers, (d, timer_tie(ks.key), ks.key))

    # -- introspection

    def live_runs(self) -> int:
        return sum(len(ks.runs) for ks in self.states.values())

    def pending_timers(self) -> int:
        return sum(1 for ks in self.states.values() if ks.deadline < INF)

    def idle(self) -> bool:
        """No per-key state, no buffered events: a draining version can be retired."""
        return not self.states and not self.heap and not self.fresh and (
            self.eviction is None or self.eviction.idle())

    def clear(self) -> None:
        """Forget every key, buffered event and timer (the plan stays loaded)."""
        self.states.clear()
        self.heap.clear()
        self.timers.clear()
        if self.queue is not None:
            self.queue.clear()
        self.dirty.clear()
        self.fresh.clear()
        self.fresh_sorted = True
        if self.eviction is not None:
            self.eviction.clear()

    # -- state export / import (one entry per key; see Engine.checkpoint)

    def buffered_by_key(self) -> dict[Any, list[tuple[int, Ev]]]:
        """Events waiting for the watermark, per key, with their arrival numbers."""
        out: dict[Any, list[tuple[int, Ev]]] = {}
        for entry in self.heap:
            if entry[4] is not None:  # time marks of skipped events are not kept
                out.setdefault(entry[3].key, []).append((entry[2], entry[4]))
        return out

    def load_key(self, key: Any, ks: KeyState, buffered: list[tuple[int, Ev]]) -> None:
        """Install one key's decoded state (its runs, held matches and buffered events)."""
        self.states[key] = ks
        order_by = self.plan.order_by
        for arrival, ev in buffered:
            ob = tuple(sortable(path_get(ev.data, p)) for p in order_by)
            heapq.heappush(self.heap, (ev.ts, ob, arrival, ks, ev))
        if ks.deadline == INF:
            ks.scheduled = INF  # nothing to fire
        elif self.queue is None:  # the timer where it stood (state_codec keeps it)
            ks.scheduled = min(ks.scheduled, ks.deadline)
            heapq.heappush(self.timers, (ks.scheduled, timer_tie(key), key))
        else:  # an entry per run start, sorted before the queue is next read
            ks.scheduled = ks.deadline
            window = self.matcher.window
            self.queue.extend((run.start_ts + window, ks) for run in ks.runs)
            self.queue_sorted = False

