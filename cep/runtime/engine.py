"""The engine: many compiled patterns, keyed, in event time, behind a small surface.

Public surface (everything a mode needs; nothing outside `cep.runtime` reaches
further, tests/test_layering.py checks it):

    process(batch) -> Result     one batch of decoded events: alerts + dead letters
    tick(now=None) -> Result     idle clocks advance with the wall clock; due timers fire
    finish() -> Result           end of a bounded input: watermark +infinity
    event_time(event, stream)    THE place an event's time is read
    add(plan) / remove(name)     load (hot swap: the old version drains) / unload
    patterns(), signature(), output_topics(), stream_keys(stream)
    checkpoint() / checkpointed() / restore(items) / reset() / has_changes()
    use_store(store)             keys beyond `max_resident_keys` are evicted to it
    expect_partitions(stream, partitions)
    snapshot() -> EngineSnapshot watermark()
    open_task(t) / task(t) / close_task(t) / tasks()     partition tasks (scale-out)

Tasks (docs/scale-out.md). A task is one input partition number. Once a task is
open, the engine routes every batch to the task of its `Batch.task` (the partition
number); each task is an engine of its own with the same patterns: its per-key
state, held matches, buffered events, timers and watermarks belong to it alone.
`task(t)` is that engine: its `checkpoint()` / `restore()` / `reset()` export,
import and drop one task's state, in the same store format. `add` / `remove` apply
to every task; `tick`, `finish`, `watermark` and `snapshot` cover them all.

Batches cross this boundary, not events. For each batch:

0. events that violate their stream's declared schema are dead letters (`schema`);
1. per clock (one per distinct time field; usually one): read each event's time in
   its stream's time unit (cep/streams.py); missing or unparseable time, a number
   implausible in that unit, a time too far in the future, or a time at or before the
   watermark (late) make a dead letter with that reason and a detail, never a silent
   drop;
2. the clock observes the batch and recomputes its watermark;
3. one shared generated prefilter for all patterns of the clock (shared_filter.py;
   patterns with `let` or `order by` run their own) reads each tested field once,
   and each key only for the patterns whose event-local test the event passes; it
   drops events that cannot matter (no object is made for them); `let` values (model
   scores) are computed for the batch; relevant events wait in a heap ordered by
   (time, order-by fields, arrival) until the watermark passes them;
4. per pattern: buffered events with time <= watermark are fed in that order, each
   after advancing its key's time (Flink: advanceTime(t) then process); then timers
   up to the watermark fire (windows, trailing `then not`, `on timeout emit`);
5. events that no pattern of the stream can key although one would start on them
   are `missing_key` dead letters (cep/runtime/keys.py);
6. completed and timed-out matches become alerts, with `emit` scores computed per
   batch, `when` applied, and a deterministic `alert_id`.

Per-key state exists only while the key has partial matches, held matches, buffered
events or pending timers. With `EngineConfig.max_resident_keys` and a store
(`use_store`), at most that many keys per pattern version stay in Python memory; the
others are in the store and come back on their next event or timer
(cep/runtime/eviction.py, docs/engine.md "State larger than memory").
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Any

import orjson

from cep.counters import COUNTERS
from cep.errors import ModelError
from cep.gc_pause import paused_gc
from cep.program import CompiledPattern, EmitPlan
from cep.runtime.alerts import make_alert
from cep.runtime.clock import Clock, wall_ms
from cep.runtime.eviction import Eviction, release_memory
from cep.runtime.keys import KeyCheck, key_check
from cep.runtime.matcher import INF, Output, Run
from cep.runtime.pattern_runtime import PatternRuntime, ScoreRequest, Staged
from cep.runtime.records import Alert, Batch, DeadLetter, KeyPaths, KeyRoute, Result
from cep.runtime.shared_filter import SharedFilter, run_shared
from cep.runtime.snapshot import (
    ClockStats,
    EngineSnapshot,
    LoadedPattern,
    PatternStats,
    partition_label,
)
from cep.runtime.state_codec import (
    META_PREFIX,
    STATE_PREFIX,
    decode_state,
    encode_state,
    in_memory_order,
    parse_state_key,
    state_key,
)
from cep.scoring.threads import ThreadLimit
from cep.state.codec import key_json, parse_key, state_key_at, state_prefix
from cep.state.store import StateStore
from cep.streams import DEFAULT_TIME, PLAUSIBLE_MS, StreamSchema, TimeSpec, read_time
from cep.values import path_get

__all__ = ["ARRIVAL", "Alert", "Batch", "DeadLetter", "Engine", "EngineConfig", "Result",
           "ScoreFn"]

# score(model name, {feature name: column of values}) -> one score per row
ScoreFn = Callable[[str, dict[str, list[Any]]], Sequence[float]]
ARRIVAL = ("$arrival",)
_NO_KEYCHECK = object()
# A partition expected but not read yet holds its clock back, like a partition whose
# newest event is at the beginning of time (until it is idle).
_NOT_YET_READ = -(2**62) + 1


@dataclass(frozen=True)
class EngineConfig:
    """How the engine treats time and how much state a key may hold."""

    max_out_of_orderness_ms: int = 0
    idle_timeout_ms: int | None = None
    max_future_skew_ms: int | None = None
    default_time_field: tuple[str, ...] = ("ts",)
    stream_time_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    stream_out_of_orderness_ms: dict[str, int] = field(default_factory=dict)
    max_runs_per_key: int = 10_000
    # BLAS/OpenMP threads a model call may use (None: the libraries' defaults, one per
    # core); see cep/scoring/threads.py
    scoring_threads: int | None = 1
    # how times are written (cep/streams.py): per stream, else the default
    stream_time: dict[str, TimeSpec] = field(default_factory=dict)
    default_time: TimeSpec = DEFAULT_TIME
    # refuse numeric times outside 1990-2100 in the declared unit (the CLI and the
    # service turn this on; off by default so unit tests may use small times)
    plausible_times: bool = False
    # declared schemas: events that violate their stream's schema are dead letters.
    # The stream is the batch's, else the event's `schema_stream_field` (backtests);
    # events with neither get `default_schema`.
    stream_schemas: dict[str, StreamSchema] = field(default_factory=dict)
    default_schema: StreamSchema | None = None
    schema_stream_field: str | None = None
    # keys per pattern version (per task) whose state stays in Python memory once a
    # store is attached (`Engine.use_store`); the least recently changed others wait in
    # the store. None: every key stays in memory (docs/engine.md)
    max_resident_keys: int | None = None

    def time_spec(self, stream: str | None) -> TimeSpec:
        if stream is None:
            return self.default_time
        return self.stream_time.get(stream, self.default_time)


def _num(x: float) -> Any:
    return None if x == -INF else ("inf" if x == INF else x)


def _unnum(x: Any) -> float:
    return -INF if x is None else (INF if x == "inf" else x)


def _part(p: Any) -> Any:
    return list(p) if isinstance(p, tuple) else p


def _unpart(p: Any) -> Any:
    return tuple(p) if isinstance(p, list) else p


def _in_input_order(decoded: list[DeadLetter], engine: list[DeadLetter]) -> list[DeadLetter]:
    """The decoder's dead letters and the engine's, merged by position (input order).
    Positions of one batch share a shape; when they cannot be compared, decoder first."""
    if not decoded:
        return engine
    if not engine:
        return list(decoded)
    both = decoded + engine
    try:
        return sorted(both, key=lambda d: d.position)  # type: ignore[arg-type, return-value]
    except TypeError:
        return both


def _attribute_mismatches(rt: PatternRuntime, before: int) -> None:
    """The type mismatches counted since `before` were met by `rt`'s code."""
    n = COUNTERS["type_mismatch"] - before
    if n:
        rt.stats["type_mismatch"] += n


def _drain(rt: PatternRuntime, watermark: float,
           outs: list[tuple[PatternRuntime, Any, Output]]) -> None:
    before = COUNTERS["type_mismatch"]
    try:
        rt.drain(watermark, outs)
    finally:
        _attribute_mismatches(rt, before)


class Engine:
    """Runs compiled patterns over batches of decoded events."""

    def __init__(
        self,
        plans: Iterable[CompiledPattern],
        config: EngineConfig | None = None,
        *,
        scorer: ScoreFn | None = None,
        now_ms: Callable[[], int] = wall_ms,
        track_changes: bool = True,
    ) -> None:
        """`track_changes=False` (backtests) skips the bookkeeping `checkpoint()` needs."""
        self.config = config or EngineConfig()
        self._scorer = scorer
        self._threads = ThreadLimit(self.config.scoring_threads)
        self._now_ms = now_ms
        self._clocks: dict[tuple[str, ...], Clock] = {}
        self._runtimes: list[PatternRuntime] = []
        self._counters: Counter[str] = Counter()
        self._errors: list[str] = []
        self._seq = count(1)
        self._arrival = count()
        self._removed: list[bytes] = []  # store keys to delete at the next checkpoint
        self._taken: tuple[int, list[tuple[PatternRuntime, set[Any], int, int]]] | None = None
        self._store: StateStore | None = None
        self._track_changes = track_changes
        self._keychecks: dict[str | None, Any] = {}
        self._tasks: dict[int, Engine] = {}
        # the shared prefilter per set of pattern runtimes (rebuilt when patterns change)
        self._shared: dict[tuple[PatternRuntime, ...], SharedFilter] = {}
        for plan in plans:
            self.add(plan)

    # -- patterns

    def add(self, plan: CompiledPattern) -> None:
        """Load a pattern. If a version of the same name runs, it is replaced: the old
        version keeps its partial matches until they finish (draining) and starts
        none; the new one starts every new match."""
        if plan.models and self._scorer is None:
            raise ModelError(
                f"pattern {plan.name!r} scores with {sorted(plan.models)} but the engine has "
                "no model registry: load the models (cep backtest --models DIR)"
            )
        for old in self._runtimes:
            if old.name == plan.name and not old.draining:
                if old.version == plan.version:
                    raise ValueError(f"pattern {plan.name!r} version {plan.version} is loaded")
                old.draining = True
                old.drain_from = self._peek_arrival()
        ck = ARRIVAL if plan.time_arrival else (plan.time_field or ())
        if ck not in self._clocks:
            idle = self.config.idle_timeout_ms
            ooo = 0 if ck == ARRIVAL else self.config.max_out_of_orderness_ms
            self._clocks[ck] = Clock(ooo, idle if ck != ARRIVAL else None, self._now_ms)
        rt = PatternRuntime(plan, self, ck)
        self._runtimes.append(rt)
        self._attach(rt)
        self._keychecks.clear()
        self._shared.clear()
        for t in self._tasks.values():
            t.add(plan)

    def remove(self, name: str) -> int:
        """Unload every version of a pattern (its partial matches are dropped)."""
        gone = [rt for rt in self._runtimes if rt.name == name]
        for rt in gone:
            self._runtimes.remove(rt)
            if self._track_changes:  # state to delete at the next checkpoint
                self._removed.extend(state_key(rt.name, rt.version, k) for k in rt.states)
                if rt.eviction is not None:
                    self._removed.extend(state_key(rt.name, rt.version, k)
                                         for k in rt.eviction.spilled)
                    self._removed.extend(rt.eviction.stored_entries())
        self._keychecks.clear()
        self._shared.clear()
        for t in self._tasks.values():
            t.remove(name)
        return len(gone)

    def patterns(self) -> list[LoadedPattern]:
        """The loaded pattern versions, in load order."""
        out = []
        for rt in self._runtimes:
            plan = rt.plan
            topics = {e.topic for e in (plan.emit, plan.timeout) if e is not None and e.topic}
            out.append(LoadedPattern(rt.name, rt.version, rt.draining, frozenset(plan.models),
                                     frozenset(topics)))
        return out

    def signature(self) -> tuple[tuple[str, int, bool], ...]:
        """Changes when patterns are added, replaced, retired or removed."""
        return tuple((rt.name, rt.version, rt.draining) for rt in self._runtimes)

    def stream_keys(self, stream: str) -> set[KeyPaths]:
        """The distinct keys (field paths; () for an unkeyed pattern) of the loaded
        patterns that read `stream` (repartitioning, docs/scale-out.md)."""
        return {rt.plan.key_paths for rt in self._runtimes if rt.applies(stream)}

    def output_topics(self) -> set[str]:
        """The topics named by the loaded patterns' `emit to` clauses."""
        return {t for p in self.patterns() for t in p.topics}

    def _peek_arrival(self) -> int:
        """The arrival number the next ingested event will get."""
        nxt = next(self._arrival)
        self._arrival = count(nxt)
        return nxt

    def _retire_drained(self) -> None:
        gone = [rt for rt in self._runtimes if rt.draining and rt.idle()
                and not any(t._runs(rt.name, rt.version) for t in self._tasks.values())]
        for rt in gone:
            self._runtimes.remove(rt)
            if rt.eviction is not None and self._track_changes:  # its stale timer entries
                self._removed.extend(rt.eviction.stored_entries())
        if gone:
            self._keychecks.clear()
            self._shared.clear()

    def _runs(self, name: str, version: int) -> bool:
        return any(rt.name == name and rt.version == version for rt in self._runtimes)

    # -- tasks

    def open_task(self, task: int) -> Engine:
        """Open partition task `task`: an empty engine with the loaded patterns (the
        replaced versions still draining too, so its restored state finds them). From
        now on batches go to the task of their `Batch.task`."""
        if task in self._tasks:
            raise ValueError(f"task {task} is open")
        child = Engine([], self.config, scorer=self._scorer, now_ms=self._now_ms,
                       track_changes=self._track_changes)
        for rt in self._runtimes:
            child.add(rt.plan)
            if rt.draining:
                for crt in child._runtimes:
                    if crt.name == rt.name and crt.version == rt.version:
                        crt.draining = True
        self._tasks[task] = child
        return child

    def task(self, task: int) -> Engine:
        """The engine of an open task: its checkpoint()/restore()/reset()/has_changes()
        export, import and drop that task's state."""
        try:
            return self._tasks[task]
        except KeyError:
            raise KeyError(f"task {task} is not open") from None

    def close_task(self, task: int) -> None:
        """Drop a task and all its state (after its last checkpoint, or when lost)."""
        child = self._tasks.pop(task, None)
        if child is not None:
            for k, v in child._counters.items():  # the process's figures keep counting
                self._counters[k] += v
        self._retire_drained()

    def tasks(self) -> list[int]:
        return sorted(self._tasks)

    # -- state larger than memory

    def use_store(self, store: StateStore | None) -> None:
        """The store this engine's checkpoints go to (with tasks: each task's own, by
        `task(t).use_store`). With `EngineConfig.max_resident_keys`, keys beyond it are
        evicted to it and loaded back on their next event or timer; `restore` must
        then be given this store's items (the keys it leaves in the store are read
        from it later). Call before `restore`; None detaches (keeps every key)."""
        if store is self._store:
            return
        for rt in self._runtimes:
            if rt.eviction is not None:
                if rt.eviction.spilled or rt.eviction.scanned or rt.eviction.index_puts:
                    raise RuntimeError("keys are evicted to the current store: checkpoint "
                                       "and reset() before changing it")
                rt.states = dict(rt.states)
                rt.eviction = None
        self._store = store
        for rt in self._runtimes:
            self._attach(rt)

    def _attach(self, rt: PatternRuntime) -> None:
        bound = self.config.max_resident_keys
        if self._store is not None and bound is not None and self._track_changes:
            rt.eviction = Eviction(rt, self._store, bound)

    def _evict(self) -> None:
        if self._store is not None:
            for rt in self._runtimes:
                if rt.eviction is not None:
                    rt.eviction.evict()

    # -- time

    def _on_error(self, exc: BaseException) -> None:
        self._counters["condition_errors"] += 1
        if len(self._errors) < 100:
            self._errors.append(f"{type(exc).__name__}: {exc}")

    def _time_field(self, ck: tuple[str, ...], stream: str | None) -> tuple[str, ...]:
        if ck:
            return ck
        if stream is not None and stream in self.config.stream_time_fields:
            return self.config.stream_time_fields[stream]
        return self.config.default_time_field

    def event_time(self, event: Any, stream: str | None = None) -> int | None:
        """An event's time in ms as the patterns reading `stream` see it (their `time`
        field, else the stream's, else the default); None when missing or unparseable.
        When the stream's patterns use several time fields, the first pattern's."""
        ck: tuple[str, ...] = ()
        for rt in self._runtimes:
            if rt.clock_key != ARRIVAL and rt.applies(stream):
                ck = rt.clock_key
                break
        if event.__class__ is not dict:
            return None
        raw = path_get(event, self._time_field(ck, stream))
        if raw is None:
            return None
        return read_time(raw, self.config.time_spec(stream), self.config.plausible_times)[0]

    def expect_partitions(self, stream: str | None, partitions: Iterable[Hashable],
                          route: KeyRoute | None = None) -> int:
        """Partitions of `stream` that will send events: until their first event (or
        until they are idle) they hold back the watermark of the clocks the stream's
        patterns use (those `route` admits, for the batches of a repartitioned stream).
        Without this a clock knows a partition only after its first batch, and one
        partition's records coming first would make the others' late."""
        cks = {rt.clock_key for rt in self._runtimes if rt.applies(stream)
               and (route is None or route.admits(rt.plan.key_paths))} - {ARRIVAL}
        n = 0
        for p in partitions:
            for ck in cks:
                clock = self._clocks[ck]
                if p not in clock.partitions():
                    clock.observe(p, _NOT_YET_READ)
                    n += 1
        return n

    def watermark(self) -> float:
        if self._tasks:
            return min(t.watermark() for t in self._tasks.values())
        if not self._clocks:
            return -INF
        return min(c.watermark for c in self._clocks.values())

    # -- processing

    def process(
        self,
        batch: Batch | Sequence[Any],
        *,
        stream: str | None = None,
        partition: Hashable = 0,
        positions: Sequence[Any] | None = None,
    ) -> Result:
        """Feed one batch of decoded events (dicts): a `Batch`, or a list of events with
        its stream, partition and positions given apart. Returns the alerts and the dead
        letters (the batch's decode errors and the engine's, in input order)."""
        if self._tasks:
            if not isinstance(batch, Batch) or batch.task is None:
                raise ValueError("tasks are open: process() needs a Batch with its task")
            res = self.task(batch.task).process(batch)
            self._retire_drained()
            return res
        if isinstance(batch, Batch):
            res = self._process(batch.events, batch.stream, batch.partition, batch.positions,
                                batch.route)
            if batch.dead_letters:
                res.dead_letters = _in_input_order(batch.dead_letters, res.dead_letters)
            return res
        return self._process(batch, stream, partition, positions)

    def _process(
        self,
        events: Sequence[Any],
        stream: str | None,
        partition: Hashable,
        positions: Sequence[Any] | None,
        route: KeyRoute | None = None,
    ) -> Result:
        result = Result()
        n = len(events)
        if n == 0:
            return result
        runtimes = [rt for rt in self._runtimes if rt.applies(stream)]
        if route is not None:
            # repartitioning (docs/scale-out.md): the patterns of this path only; events
            # no pattern of the path reads are judged on the other path, not here
            runtimes = [rt for rt in runtimes if route.admits(rt.plan.key_paths)]
            if not runtimes:
                return result
        if route is None or not route.through:  # events come in once, on the input path
            self._counters["events_in"] += n
        pos: Sequence[Any] = positions if positions is not None else [None] * n
        dead: dict[int, DeadLetter] = {}
        if self.config.stream_schemas or self.config.default_schema is not None:
            self._validate(events, pos, stream, dead)
        outs: list[tuple[PatternRuntime, Any, Output]] = []
        unkeyed: list[Any] = []  # events some pattern would start on but cannot key
        by_clock: dict[tuple[str, ...], list[PatternRuntime]] = {}
        for rt in runtimes:
            by_clock.setdefault(rt.clock_key, []).append(rt)
        for ck, rts in by_clock.items():
            clock = self._clocks[ck]
            if ck == ARRIVAL:
                now = self._now_ms()
                wm = clock.watermark
                now = max(now, int(wm) + 1) if wm > -INF else now
                ds = list(events)
                tss = [now] * n
                ps = list(pos)
                clock.observe(partition, now)
                clock.move_to(now)  # arrival time: every event is due at once
            else:
                ds, tss, ps = self._timed(events, pos, self._time_field(ck, stream), clock, dead,
                                          self.config.time_spec(stream))
                ooo = self.config.stream_out_of_orderness_ms.get(stream) if stream else None
                clock.observe(partition, max(tss) if tss else None, ooo)
                clock.advance()
                if tss and tss != sorted(tss):
                    order = sorted(range(len(tss)), key=tss.__getitem__)  # stable
                    ds = [ds[j] for j in order]
                    tss = [tss[j] for j in order]
                    ps = [ps[j] for j in order]
            horizon = clock.watermark
            if ds:
                # prefilter every pattern, then score all of them (one model call per
                # model and feature set), then buffer
                pre = self._stage_shared(ck, rts, ds, tss, ps, horizon, unkeyed)
                staged = []
                requests = []
                for rt in rts:
                    st = pre.get(rt)
                    if st is None:
                        before = COUNTERS["type_mismatch"]
                        st = rt.stage(ds, tss, ps, horizon, unkeyed)
                        _attribute_mismatches(rt, before)
                    requests.append(rt.score_requests(st))
                    staged.append(st)
                flat = [r for rs in requests for r in rs]
                scores = self._score_many(flat) if flat else []
                at = 0
                for rt, st, rs in zip(rts, staged, requests, strict=True):
                    before = COUNTERS["type_mismatch"]
                    rt.admit(st, scores[at:at + len(rs)])
                    _attribute_mismatches(rt, before)
                    at += len(rs)
            wm = clock.watermark
            for rt in rts:
                _drain(rt, wm, outs)
        if unkeyed:
            self._missing_keys(events, pos, stream, unkeyed, dead)
        for i in sorted(dead):
            result.dead_letters.append(dead[i])
            self._counters[f"dead_letter.{dead[i].reason}"] += 1
        result.alerts = self._alerts(outs)
        self._retire_drained()
        self._evict()
        return result

    def _stage_shared(
        self, ck: tuple[str, ...], rts: list[PatternRuntime], ds: list[Any], tss: list[int],
        ps: list[Any], horizon: float, unkeyed: list[Any],
    ) -> dict[PatternRuntime, Staged]:
        """Step 3's prefilter for the patterns with a filter block, in one shared pass
        (cep/runtime/shared_filter.py); the others run their own."""
        mine = tuple(rt for rt in rts if rt.plan.filter_block is not None)
        if not mine:
            return {}
        shared = self._shared.get(mine)
        if shared is None:
            shared = self._shared[mine] = SharedFilter(mine)
        before = COUNTERS["type_mismatch"]
        unk: list[Any] = []
        try:
            per = run_shared(shared, ds, tss, horizon, unk)
        except Exception as exc:  # generated code is total; this guards against bugs
            self._on_error(exc)
            for rt in mine:  # keys the aborted pass created; each pattern then runs alone
                rt.forget_idle()
            return {}
        unkeyed.extend(unk)
        if COUNTERS["type_mismatch"] != before:
            self._attribute_shared(mine, ds, tss, horizon, before)
        return {rt: Staged(ds, tss, ps, cands, horizon, ticks)
                for rt, (cands, ticks) in zip(mine, per, strict=True)}

    def _attribute_shared(self, rts: Sequence[PatternRuntime], ds: list[Any],
                          tss: list[int], horizon: float, before: int) -> None:
        """Values of the wrong type met in the shared pass, per pattern, counted as
        before the shared pass: each pattern's own prefilter runs again over the batch
        without touching its state (`PatternRuntime.count_prefilter`), only for a batch
        where the shared pass met some. The global counter is set to the sum, so the
        figures do not change with the shared pass."""
        total = before
        for rt in rts:
            b = COUNTERS["type_mismatch"]
            rt.count_prefilter(ds, tss, horizon)
            n = COUNTERS["type_mismatch"] - b
            if n:
                rt.stats["type_mismatch"] += n
            total += n
        COUNTERS["type_mismatch"] = total

    def _validate(self, events: Sequence[Any], pos: Sequence[Any], stream: str | None,
                  dead: dict[int, DeadLetter]) -> None:
        """Events that violate their stream's declared schema become dead letters
        (`schema`, by index), before their time is read."""
        cfg = self.config
        schemas = cfg.stream_schemas
        fixed = schemas.get(stream) if stream is not None else None
        sf = cfg.schema_stream_field if stream is None else None
        for i, d in enumerate(events):
            if d.__class__ is not dict:
                continue  # malformed: _timed says so
            schema = fixed
            if schema is None and stream is None:
                name = d.get(sf) if sf is not None else None
                schema = schemas.get(name) if isinstance(name, str) else cfg.default_schema
            why = schema.violation(d) if schema is not None else None
            if why is not None:
                assert schema is not None
                dead[i] = DeadLetter(d, pos[i], "schema", f"stream {schema.name!r}: {why}")

    def _timed(
        self,
        events: Sequence[Any],
        pos: Sequence[Any],
        tf: tuple[str, ...],
        clock: Clock,
        dead: dict[int, DeadLetter],
        spec: TimeSpec = DEFAULT_TIME,
    ) -> tuple[list[Any], list[int], list[Any]]:
        """The events with a valid, on-time time, their times and positions; the others
        become dead letters (by index). Events already dead (schema) are skipped."""
        wm = clock.watermark
        skew = self.config.max_future_skew_ms
        limit = self._now_ms() + skew if skew is not None else INF
        single = tf[0] if len(tf) == 1 else None
        plausible = self.config.plausible_times
        if single is not None and spec.unit == "ms" and not dead:
            # fast path: every event a dict with an int time, none late or in the future
            # (nor implausible, when that is checked)
            try:
                tss = [d.get(single) for d in events]
                if set(map(type, tss)) == {int} and min(tss) > wm and max(tss) <= limit and (
                        not plausible or (PLAUSIBLE_MS[0] <= min(tss) and
                                          max(tss) <= PLAUSIBLE_MS[1])):
                    return events, tss, pos  # type: ignore[return-value]
            except (AttributeError, TypeError):
                pass
        ds: list[Any] = []
        tss = []
        ps: list[Any] = []
        for i, d in enumerate(events):
            if i in dead:
                continue
            if d.__class__ is not dict:
                dead.setdefault(i, DeadLetter(d, pos[i], "malformed",
                                              f"not a JSON object but {type(d).__name__}"))
                continue
            raw = d.get(single) if single is not None else path_get(d, tf)
            if raw is None:
                dead.setdefault(i, DeadLetter(d, pos[i], "missing_time",
                                              f"time field {'.'.join(tf)} is missing or null"))
                continue
            t, why = read_time(raw, spec, plausible)
            if t is None:
                detail = f"time field {'.'.join(tf)}={raw!r}: {why}"
                dead.setdefault(i, DeadLetter(d, pos[i], "bad_time", detail))
            elif t > limit:
                dead.setdefault(
                    i, DeadLetter(d, pos[i], "future_timestamp", f"{t} is beyond now+{skew}ms")
                )
            elif t <= wm:
                detail = f"time {t} <= watermark {int(wm)}"
                dead.setdefault(i, DeadLetter(d, pos[i], "late", detail))
            else:
                ds.append(d)
                tss.append(t)
                ps.append(pos[i])
        return ds, tss, ps

    def _key_check(self, stream: str | None) -> KeyCheck | None:
        check = self._keychecks.get(stream, _NO_KEYCHECK)
        if check is _NO_KEYCHECK:
            check = key_check(rt.plan for rt in self._runtimes if rt.applies(stream))
            self._keychecks[stream] = check
        return check  # type: ignore[no-any-return]

    def _missing_keys(
        self, events: Sequence[Any], pos: Sequence[Any], stream: str | None,
        unkeyed: list[Any], dead: dict[int, DeadLetter],
    ) -> None:
        """`missing_key` dead letters (cep/runtime/keys.py), by index into `dead`, among
        the events a pattern's prefilter could not key but would start on."""
        check = self._key_check(stream)
        if check is None:
            return  # an unkeyed pattern reads the stream: every event has a key
        index: dict[int, list[int]] = {}  # the same object may be passed twice
        for i, d in enumerate(events):
            index.setdefault(id(d), []).append(i)
        for d in unkeyed:
            if not check.unkeyable([d]):
                continue  # another pattern of the stream can key it
            for i in index[id(d)]:
                if i not in dead:  # else refused for its time (by another clock) or done
                    dead[i] = DeadLetter(d, pos[i], "missing_key",
                                         f"no usable key ({check.fields}) for the patterns "
                                         "of the stream")

    def tick(self, now: int | None = None) -> Result:
        """Advance idle clocks with the wall clock (`now`, default the engine's clock)
        and fire due timers (no events)."""
        if self._tasks:
            return self._each_task(lambda t: t.tick(now))
        outs: list[tuple[PatternRuntime, Any, Output]] = []
        for ck, clock in self._clocks.items():
            if ck == ARRIVAL:
                clock.move_to(self._now_ms() if now is None else now)
            else:
                clock.advance(now)
            for rt in self._runtimes:
                if rt.clock_key == ck:
                    _drain(rt, clock.watermark, outs)
        res = Result(self._alerts(outs), [])
        self._evict()
        return res

    def finish(self) -> Result:
        """End of a bounded input: watermark +infinity fires every pending window."""
        if self._tasks:
            return self._each_task(lambda t: t.finish())
        outs: list[tuple[PatternRuntime, Any, Output]] = []
        for ck, clock in self._clocks.items():
            clock.finish()
            for rt in self._runtimes:
                if rt.clock_key == ck:
                    _drain(rt, INF, outs)
        res = Result(self._alerts(outs), [])
        self._evict()
        return res

    def _each_task(self, fn: Callable[[Engine], Result]) -> Result:
        res = Result()
        for t in sorted(self._tasks):
            r = fn(self._tasks[t])
            res.alerts.extend(r.alerts)
            res.dead_letters.extend(r.dead_letters)
        self._retire_drained()
        return res

    # -- alerts

    def _score_many(self, requests: Sequence[ScoreRequest]) -> list[list[Any]]:
        """The scores of each request, with ONE model call per (model, feature names):
        requests of several patterns (or call sites) that score the same model with the
        same features share a call, their rows concatenated. A row's score never depends
        on the other rows of its call (cep.scoring.model), so sharing changes no value."""
        groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
        for r, req in enumerate(requests):
            names = tuple(name for name, _ in req.call.features)
            groups.setdefault((req.call.model, names), []).append(r)
        out: list[list[Any]] = [[] for _ in requests]
        for idx in groups.values():
            first = requests[idx[0]]
            if len(idx) == 1:
                out[idx[0]] = self._score(first.call, first.columns, first.n)
                continue
            width = len(first.columns)
            columns = [[v for r in idx for v in requests[r].columns[f]] for f in range(width)]
            scores = self._score(first.call, columns, sum(requests[r].n for r in idx))
            at = 0
            for r in idx:
                n = requests[r].n
                out[r] = scores[at:at + n]
                at += n
        return out

    def _score(self, call: Any, columns: Sequence[list[Any]], n: int) -> list[Any]:
        """One vectorised call for one model over a batch (columns in the order the
        features were written), with the thread pools limited. A failing model gives
        nulls, counted."""
        assert self._scorer is not None
        names = [name for name, _ in call.features]
        self._counters["score_calls"] += 1
        self._counters["score_rows"] += n
        try:
            with self._threads:
                out = list(self._scorer(call.model, dict(zip(names, columns, strict=True))))
        except Exception as exc:
            self._counters["scoring_errors"] += 1
            if len(self._errors) < 100:
                self._errors.append(f"score({call.model}): {type(exc).__name__}: {exc}")
            return [None] * n
        if len(out) != n:
            self._counters["scoring_errors"] += 1
            return [None] * n
        return out

    def _alerts(self, outs: list[tuple[PatternRuntime, Any, Output]]) -> list[Alert]:
        if not outs:
            return []
        made: list[tuple[int, Alert]] = []
        # group per (pattern, kind) so scores are computed in one call per batch; the
        # alerts then go out in the order the matcher produced them
        groups: dict[tuple[int, str], list[tuple[PatternRuntime, Any, Run, int, int]]] = {}
        for n, (rt, key, (kind, run, t)) in enumerate(outs):
            groups.setdefault((id(rt), kind), []).append((rt, key, run, int(t), n))
        now = self._now_ms()
        detected = datetime.fromtimestamp(now / 1000, UTC).isoformat(timespec="milliseconds")
        detected = detected.replace("+00:00", "Z")
        # every group's `emit` score calls first, so equal models share one call
        prepared: list[tuple[CompiledPattern, str, EmitPlan, list[Any], int]] = []
        requests: list[ScoreRequest] = []
        for (_, kind), items in groups.items():
            plan = items[0][0].plan
            emit: EmitPlan | None = plan.emit if kind == "match" else plan.timeout
            if emit is None:
                continue
            prepared.append((plan, kind, emit, items, len(requests)))
            if not emit.score_calls:
                continue
            feats = [emit.feats(run.path, key, t) for _, key, run, t, _ in items]
            for j, call in enumerate(emit.score_calls):
                columns = [list(c) for c in zip(*[f[j] for f in feats], strict=True)]
                requests.append(ScoreRequest(call, columns, len(items)))
        results = self._score_many(requests) if requests else []
        for plan, kind, emit, items, r0 in prepared:
            rt = items[0][0]
            k = len(emit.score_calls)
            scores: list[tuple[Any, ...]] = (
                list(zip(*results[r0:r0 + k], strict=True)) if k else [()] * len(items)
            )
            before = COUNTERS["type_mismatch"]
            for j, (_, key, run, t, n) in enumerate(items):
                try:
                    measures = emit.fn(run.path, key, t, scores[j])
                except Exception as exc:  # generated code is total; this is a bug guard
                    self._on_error(plan.module.error(exc, plan.name))
                    measures = None
                if measures is None:
                    self._counters[f"filtered.{plan.name}"] += 1
                    continue
                made.append((n, make_alert(plan, key, kind, run, t, measures, emit, detected)))
            _attribute_mismatches(rt, before)
        made.sort(key=lambda x: x[0])
        alerts = [a for _, a in made]
        self._counters["alerts"] += len(alerts)
        for a in alerts:
            self._counters[f"alerts.{a.record['pattern']}"] += 1
        return alerts


    # -- state: checkpoints (deltas of per-key state, plus clocks and counters)
    #
    # State is exported per (pattern, version, key): one store entry each, plus one
    # meta entry for the clocks and sequence numbers. A later step (one task per input
    # partition: scale-out) selects the keys of one partition; the
    # entry format does not change.

    def has_changes(self) -> bool:
        """Is there state a checkpoint would write? (With tasks: in any task.)"""
        if any(t.has_changes() for t in self._tasks.values()):
            return True
        return bool(self._removed) or any(
            rt.dirty or (rt.eviction is not None and (rt.eviction.scanned
                                                      or rt.eviction.index_puts))
            for rt in self._runtimes)

    def checkpoint(self) -> dict[bytes, bytes | None]:
        """The state changed since the last checkpoint, as store puts (None = delete).
        Write them in one batch together with the input positions they correspond to,
        then call `checkpointed()`; until then the same changes stay pending, so a
        failed write loses nothing (the next `checkpoint()` takes them again)."""
        if not self._track_changes:
            raise RuntimeError("checkpoint() needs an engine made with track_changes=True")
        if self._tasks:
            raise RuntimeError("tasks are open: checkpoint each with task(t).checkpoint()")
        puts: dict[bytes, bytes | None] = dict.fromkeys(self._removed)
        taken: list[tuple[PatternRuntime, set[Any], int, int]] = []
        with paused_gc():
            for rt in self._runtimes:
                ev = rt.eviction
                if ev is not None:
                    if rt.dirty or ev.scanned or ev.index_puts:
                        buffered = rt.buffered_by_key() if rt.heap else {}
                        taken.append((rt, ev.checkpoint(puts, buffered), len(ev.scanned),
                                      len(ev.index_puts)))
                    continue
                if not rt.dirty:
                    continue
                waiting = rt.buffered_by_key().get
                get, pfx = rt.states.get, state_prefix(rt.name, rt.version)
                for key in in_memory_order(rt.dirty, rt.states):
                    ks = get(key)
                    puts[pfx + key_json(key)] = (None if ks is None
                                                 else encode_state(ks, waiting(key, ())))
                taken.append((rt, set(rt.dirty), 0, 0))
        self._taken = (len(self._removed), taken)
        seq, arrival = next(self._seq), next(self._arrival)
        self._seq, self._arrival = count(seq + 1), count(arrival + 1)
        meta = {
            "seq": seq,
            "arrival": arrival,
            "clocks": [
                {"key": list(ck), "watermark": _num(c.watermark),
                 "partitions": [[_part(p), ts] for p, ts in c.partitions().items()]}
                for ck, c in self._clocks.items()
            ],
            "patterns": sorted({f"{rt.name}@{rt.version}" for rt in self._runtimes}),
            # every stored key with a deadline has its timer entry (cep/state/codec.py)
            "timer_index": any(rt.eviction is not None for rt in self._runtimes),
        }
        puts[META_PREFIX + b"engine"] = orjson.dumps(meta)
        return puts

    def checkpointed(self) -> None:
        """The puts of the last `checkpoint()` are durable: forget those changes."""
        if self._taken is None:
            return
        removed, taken = self._taken
        self._taken = None
        del self._removed[:removed]
        released = 0
        for rt, keys, scanned, index in taken:
            rt.dirty -= keys
            if rt.eviction is not None:
                released += rt.eviction.checkpointed(keys, scanned, index)
        if released:
            release_memory()

    def drop_key(self, pattern: str, version: int, key: Any) -> bool:
        """Forget one key's state of one pattern version: its partial matches, held
        matches and buffered events (its timers then find no state and are skipped);
        the next checkpoint deletes it from the store. For a key whose state outgrew
        its limit (service/kafka/record_limits.py). False when there was nothing."""
        for rt in self._runtimes:
            if rt.name != pattern or rt.version != version:
                continue
            found = rt.states.pop(key, None) is not None
            if rt.eviction is not None and rt.eviction.forget(key):
                found = True
            if any(e[3].key == key for e in rt.heap):
                rt.heap[:] = [e for e in rt.heap if e[3].key != key]
                heapq.heapify(rt.heap)
                found = True
            if found and self._track_changes:
                rt.dirty.add(key)
            return found
        return False

    def reset(self) -> None:
        """Forget all per-key state, buffered events, timers and watermarks, keeping the
        loaded patterns (before `restore`, or to go back to the last checkpoint)."""
        for rt in self._runtimes:
            rt.clear()
        self._removed.clear()
        self._taken = None
        for ck, c in list(self._clocks.items()):
            self._clocks[ck] = Clock(c.ooo_ms, c.idle_ms, c.now)

    def restore(self, items: Iterable[tuple[bytes, bytes]]) -> dict[str, int]:
        """Load state written by `checkpoint` (after `reset()` or on a new engine, after
        adding the patterns). State of patterns or versions not loaded now is skipped,
        counted, and deleted by the next checkpoint. Restored partitions count as just
        seen: their idle timeout runs from now."""
        by_id = {(rt.name, rt.version): rt for rt in self._runtimes}
        # the runtime of each state prefix seen (None: not loaded now)
        by_prefix: dict[bytes, PatternRuntime | None] = {}
        stats: Counter[str] = Counter()
        keys = runs = in_store = 0
        indexed = False  # the store has timer entries (the meta entry comes first)
        meta_key = META_PREFIX + b"engine"
        with paused_gc():
            for k, v in items:
                if k == meta_key:
                    meta = orjson.loads(v)
                    indexed = bool(meta.get("timer_index"))
                    self._seq = count(meta["seq"] + 1)
                    self._arrival = count(meta["arrival"] + 1)
                    for c in meta["clocks"]:
                        clock = self._clocks.get(tuple(c["key"]))
                        if clock is not None:
                            clock.restore(_unnum(c["watermark"]),
                                          {_unpart(p): ts for p, ts in c["partitions"]})
                    continue
                if not k.startswith(STATE_PREFIX):
                    continue
                at = state_key_at(k)
                pfx = k[:at]
                if pfx in by_prefix:
                    rt = by_prefix[pfx]
                else:
                    name, version, _ = parse_state_key(k)
                    rt = by_prefix[pfx] = by_id.get((name, version))
                if rt is None:
                    stats["skipped"] += 1
                    self._removed.append(k)
                    continue
                key = parse_key(k, at)
                keys += 1
                if rt.eviction is not None:  # loaded under the bound, else left in the store
                    if rt.eviction.restored(key, v, indexed):
                        runs += len(rt.states[key].runs)
                    else:
                        in_store += 1
                    continue
                ks, buffered = decode_state(key, v)
                rt.load_key(key, ks, buffered)
                runs += len(ks.runs)
        for name, n in (("keys", keys), ("runs", runs), ("keys_in_store", in_store)):
            if n:
                stats[name] += n
        return dict(stats)

    # -- figures

    def type_mismatches(self) -> dict[str, int]:
        """Per pattern name: values of the wrong type its conditions and measures met
        (each made a comparison false or a value null, and was counted)."""
        out: dict[str, int] = {}
        for rt in self._runtimes:
            out[rt.name] = out.get(rt.name, 0) + rt.stats["type_mismatch"]
        return out

    def snapshot(self) -> EngineSnapshot:
        """A copy of the figures metrics and the API show (take it on the engine's
        thread; read it anywhere). With tasks: their figures summed, clocks per task."""
        if self._tasks:
            return self._tasks_snapshot()
        pats = [
            PatternStats(
                rt.name, rt.version, rt.draining, len(rt.states), rt.live_runs(),
                rt.pending_timers(), len(rt.heap), dict(rt.stats),
            )
            for rt in self._runtimes
        ]
        clocks = [
            ClockStats(
                "arrival" if ck == ARRIVAL else ".".join(ck) or "default",
                c.watermark, c.ooo_ms, {partition_label(p): ts for p, ts in c.partitions().items()},
            )
            for ck, c in self._clocks.items()
        ]
        return EngineSnapshot(self._now_ms(), dict(self._counters), pats, clocks,
                              list(self._errors))

    def _tasks_snapshot(self) -> EngineSnapshot:
        counters: Counter[str] = Counter(self._counters)
        pats: dict[tuple[str, int], PatternStats] = {
            (rt.name, rt.version): PatternStats(rt.name, rt.version, rt.draining, 0, 0, 0, 0, {})
            for rt in self._runtimes
        }
        clocks: list[ClockStats] = []
        errors = list(self._errors)
        for tid in sorted(self._tasks):
            snap = self._tasks[tid].snapshot()
            counters.update(snap.counters)
            errors.extend(snap.errors[: max(0, 100 - len(errors))])
            for p in snap.patterns:
                agg = pats.setdefault((p.name, p.version), PatternStats(
                    p.name, p.version, p.draining, 0, 0, 0, 0, {}))
                agg.keys += p.keys
                agg.live_runs += p.live_runs
                agg.pending_timers += p.pending_timers
                agg.buffered += p.buffered
                for k, v in p.stats.items():
                    agg.stats[k] = agg.stats.get(k, 0) + v
            clocks.extend(ClockStats(f"task {tid}: {c.name}", c.watermark, c.ooo_ms,
                                     c.partitions) for c in snap.clocks)
        return EngineSnapshot(self._now_ms(), dict(counters), list(pats.values()), clocks,
                              errors)
