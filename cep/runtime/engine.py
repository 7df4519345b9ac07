"""The engine: many compiled patterns, keyed, in event time.

Batches cross this boundary, not events. For each batch:

1. per clock (one per distinct time field; usually one): read each event's time;
   missing or unparseable time, a time too far in the future, or a time at or before
   the watermark (late) make a dead letter with that reason, never a silent drop;
2. the clock observes the batch and recomputes its watermark;
3. per pattern: the generated prefilter reads the key and drops events that cannot
   matter (no object is made for them); `let` values (model scores) are computed for
   the batch; relevant events wait in a heap ordered by (time, order-by fields,
   arrival) until the watermark passes them;
4. per pattern: buffered events with time <= watermark are fed in that order, each
   after advancing its key's time (Flink: advanceTime(t) then process); then timers
   up to the watermark fire (windows, trailing `then not`, `on timeout emit`);
5. completed and timed-out matches become alerts, with `emit` scores computed per
   batch, `when` applied, and a deterministic `alert_id`.

Per-key state exists only while the key has partial matches, held matches, buffered
events or pending timers.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Any

import orjson

from cep.compiler.env import path_get, to_ms
from cep.compiler.plan import CompiledPattern, EmitPlan
from cep.errors import ModelError
from cep.runtime.clock import Clock, wall_ms
from cep.runtime.matcher import INF, Ev, KeyState, Matcher, Output, Run, match_events
from cep.scoring.threads import ThreadLimit

# score(model name, {feature name: column of values}) -> one score per row
ScoreFn = Callable[[str, dict[str, list[Any]]], Sequence[float]]
ARRIVAL = ("$arrival",)


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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    event: Any  # the decoded event (or raw bytes/text when it could not be decoded)
    position: Any  # where it came from: (file, line) / (topic, partition, offset) / None
    reason: str  # malformed | missing_time | bad_time | future_timestamp | late | ...
    detail: str = ""


@dataclass(slots=True)
class Staged:
    """A batch after a pattern's prefilter: (index, key state or key) candidates."""

    ds: list[Any]
    tss: list[int]
    pos: list[Any]
    cands: list[tuple[int, Any]]
    horizon: float


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One score call site's feature columns (in the call's feature order) for n rows."""

    call: Any  # cep.compiler.plan.ScoreCall
    columns: Sequence[list[Any]]
    n: int


class Alert:
    """An alert record (the JSON object of architecture.md) and where it goes."""

    __slots__ = ("key", "record", "topic")

    def __init__(self, topic: str | None, key: Any, record: dict[str, Any]) -> None:
        self.topic = topic
        self.key = key
        self.record = record

    def __repr__(self) -> str:
        r = self.record
        return f"Alert({r['pattern']}, {r['kind']}, key={r['key']!r}, time={r['time']})"


@dataclass
class BatchResult:
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def extend(self, other: BatchResult) -> None:
        self.alerts.extend(other.alerts)
        self.dead_letters.extend(other.dead_letters)


def _sortable(v: Any) -> tuple[int, Any]:
    if v.__class__ in (int, float):
        return (0, v)
    if v.__class__ is str:
        return (1, v)
    if v is None:
        return (3, 0)
    return (2, repr(v))


def event_identity(data: Any) -> str:
    """A stable identity for an event: its `id` field, else a hash of its content."""
    if isinstance(data, dict):
        i = data.get("id")
        if isinstance(i, (str, int)) and not isinstance(i, bool):
            return f"id:{i}"
    blob = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return "h:" + hashlib.blake2b(blob, digest_size=12).hexdigest()


def _num(x: float) -> Any:
    return None if x == -INF else ("inf" if x == INF else x)


def _unnum(x: Any) -> float:
    return -INF if x is None else (INF if x == "inf" else x)


def _part(p: Any) -> Any:
    return list(p) if isinstance(p, tuple) else p


def _unpart(p: Any) -> Any:
    return tuple(p) if isinstance(p, list) else p


_I64 = 2**63


def json_safe(v: Any) -> Any:
    """Integers beyond 64 bits (JSON consumers and orjson cannot hold them) as floats."""
    if v.__class__ is int:
        return float(v) if not -_I64 <= v < _I64 else v
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    return v


def _timer_tie(key: Any) -> str:
    return key if key.__class__ is str else repr(key)


def key_json(key: Any) -> Any:
    if key == ():
        return None
    if isinstance(key, tuple):
        return list(key)
    return key


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
        self._tick = count()
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

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def version(self) -> int:
        return self.plan.version

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

    def ingest(self, ds: list[Any], tss: list[int], pos: list[Any], horizon: float) -> None:
        """Buffer the batch's relevant events. `ds` is in (time, arrival) order and
        `horizon` is the watermark after this batch (see the prefilter in plan.py).
        (`Engine.process` runs the three steps itself, to share score calls between
        patterns.)"""
        staged = self.stage(ds, tss, pos, horizon)
        requests = self.score_requests(staged)
        self.admit(staged, self.engine._score_many(requests))

    def stage(self, ds: list[Any], tss: list[int], pos: list[Any], horizon: float) -> Staged:
        """Step 1 of ingesting a batch: order it (`order by`) and run the prefilter."""
        plan = self.plan
        if plan.order_by:  # ties in time are taken in order-by order, before relevance
            obs = [tuple(_sortable(path_get(d, p)) for p in plan.order_by) for d in ds]
            order = sorted(range(len(ds)), key=lambda j: (tss[j], obs[j]))
            ds, tss, pos = [ds[j] for j in order], [tss[j] for j in order], [pos[j] for j in order]
        cands: list[tuple[int, Any]] = []
        get, create = (None, None) if plan.let_names else (self.states.get, self._create)
        try:
            plan.prefilter(ds, tss, horizon, get, create, cands)
        except Exception as exc:  # generated code is total; this guards against bugs
            cands = self._prefilter_each(ds, tss, horizon, get, create, exc)
        return Staged(ds, tss, pos, cands, horizon)

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
        relevant events."""
        plan = self.plan
        ds, tss, pos, cands = staged.ds, staged.tss, staged.pos, staged.cands
        if not plan.let_names:
            selected = [(i, ks, None) for i, ks in cands if ks is not None]
        else:
            selected = self._with_lets(ds, tss, cands, staged.horizon, scores)
        if not selected:
            return
        arrival = self.engine._arrival
        order_by = plan.order_by
        fresh = self.fresh
        for i, ks, lets in selected:
            ts = tss[i]
            d = ds[i]
            ob = tuple(_sortable(path_get(d, p)) for p in order_by) if order_by else ()
            ks.nbuf += 1
            fresh.append((ts, ob, next(arrival), ks, Ev(ts, 0, d, lets, pos[i])))
        if order_by:
            fresh.sort(key=lambda x: (x[0], x[1], x[2]))
        if self.engine.track_changes:
            self.dirty.update(x[3].key for x in fresh)
        self.stats["buffered"] += len(selected)

    def _prefilter_each(
        self, ds: list[Any], tss: list[int], horizon: float, get: Any, create: Any,
        first: BaseException,
    ) -> list[tuple[int, Any]]:
        """Slow path after the prefilter raised: event by event, skipping (and counting)
        the events it raises on, so one bad event cannot stop the batch."""
        plan = self.plan
        self.engine._on_error(plan.module.error(first, plan.name))
        cands: list[tuple[int, Any]] = []
        for i in range(len(ds)):
            one: list[tuple[int, Any]] = []
            try:
                plan.prefilter(ds[i:i + 1], tss[i:i + 1], horizon, get, create, one)
            except Exception as exc:
                self.engine._on_error(plan.module.error(exc, plan.name))
                continue
            cands.extend((i, x) for _, x in one)
        queued = {id(c[1]) for c in cands} | {id(e[3]) for e in self.heap}
        for k in [k for k, ks in self.states.items() if ks.idle() and id(ks) not in queued]:
            del self.states[k]  # created by the aborted pass for an event now skipped
        return cands

    def _with_lets(
        self, ds: list[Any], tss: list[int], keyed: list[tuple[int, Any]], horizon: float,
        results: list[list[Any]],
    ) -> list[tuple[int, KeyState, Any]]:
        plan = self.plan
        if results:
            scores: list[Any] = list(zip(*results, strict=True))
        else:
            scores = [()] * len(keyed)
        out = []
        get = self.states.get
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
                continue
            out.append((i, ks, lets))
        return out

    # -- time

    def drain(self, watermark: float, out: list[tuple[PatternRuntime, Any, Output]]) -> None:
        """Feed buffered events and fire timers up to the watermark, merged in time
        order (a timer before an event of the same time), like Flink's timer service."""
        heap = self.heap
        timers = self.timers
        fresh = self.fresh
        self.fresh = []
        nf = len(fresh)
        fi = 0
        m = self.matcher
        seq = self.engine._seq
        pop = heapq.heappop
        settle = self._settle
        outs: list[Output] = []
        while True:
            tf = fresh[fi][0] if fi < nf and fresh[fi][0] <= watermark else INF
            te = heap[0][0] if heap and heap[0][0] <= watermark else INF
            tt = timers[0][0] if timers and timers[0][0] <= watermark else INF
            if tt <= te and tt <= tf:
                if tt == INF:
                    break
                d, _, key = pop(timers)
                ks = self.states.get(key)
                if ks is None or ks.scheduled != d:
                    continue  # superseded by a later schedule, or the key is gone
                ks.scheduled = INF
                m.advance(ks, d, outs)
            else:
                # older buffered events first on equal (time, order-by): they arrived first
                if te < tf or (te == tf and heap[0][:2] <= fresh[fi][:2]):
                    ts, _, arrival, ks, ev = pop(heap)
                else:
                    ts, _, arrival, ks, ev = fresh[fi]
                    fi += 1
                ks.nbuf -= 1
                ev.seq = next(seq)
                if ks.deadline <= ts:
                    m.advance(ks, ts, outs)
                m.process(ks, ev, outs, arrival < self.drain_from)
            if outs:
                out.extend((self, ks.key, o) for o in outs)
                outs = []
            settle(ks)
        for item in fresh[fi:]:  # not due yet: wait in the heap
            heapq.heappush(heap, item)

    def _settle(self, ks: KeyState) -> None:
        """After a key changed: enforce limits, release it if empty, else reschedule."""
        if self.engine.track_changes:
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
        d = ks.deadline  # kept current by the matcher
        if d < ks.scheduled:
            ks.scheduled = d
            heapq.heappush(self.timers, (d, _timer_tie(ks.key), ks.key))

    # -- introspection

    def live_runs(self) -> int:
        return sum(len(ks.runs) for ks in self.states.values())

    def pending_timers(self) -> int:
        return sum(1 for ks in self.states.values() if ks.deadline < INF)


class Engine:
    """Runs compiled patterns over batches of decoded events."""

    def __init__(
        self,
        plans: Iterable[CompiledPattern],
        config: EngineConfig | None = None,
        *,
        scorer: ScoreFn | None = None,
        now_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self.config = config or EngineConfig()
        self.scorer = scorer
        self._threads = ThreadLimit(self.config.scoring_threads)
        self.now_ms = now_ms
        self.clocks: dict[tuple[str, ...], Clock] = {}
        self.runtimes: list[PatternRuntime] = []
        self.metrics: Counter[str] = Counter()
        self.errors: list[str] = []
        self._seq = count(1)
        self._arrival = count()
        self.removed_keys: list[tuple[str, int, Any]] = []  # state to delete at checkpoint
        # record which keys changed, for checkpoint(); on by default, off for backtests
        self.track_changes = True
        for plan in plans:
            self.add(plan)

    # -- patterns

    def add(self, plan: CompiledPattern) -> PatternRuntime:
        """Load a pattern. If a version of the same name runs, it is replaced: the old
        version keeps its partial matches until they finish (draining) and starts
        none; the new one starts every new match."""
        for old in self.runtimes:
            if old.name == plan.name and not old.draining:
                if old.version == plan.version:
                    raise ValueError(f"pattern {plan.name!r} version {plan.version} is loaded")
                old.draining = True
                old.drain_from = self._peek_arrival()
        return self._add(plan)

    def _add(self, plan: CompiledPattern) -> PatternRuntime:
        if plan.models and self.scorer is None:
            raise ModelError(
                f"pattern {plan.name!r} scores with {sorted(plan.models)} but the engine has "
                "no model registry: load the models (cep backtest --models DIR)"
            )
        ck = ARRIVAL if plan.time_arrival else (plan.time_field or ())
        if ck not in self.clocks:
            idle = self.config.idle_timeout_ms
            ooo = 0 if ck == ARRIVAL else self.config.max_out_of_orderness_ms
            self.clocks[ck] = Clock(ooo, idle if ck != ARRIVAL else None, self.now_ms)
        rt = PatternRuntime(plan, self, ck)
        self.runtimes.append(rt)
        return rt

    def remove(self, name: str) -> int:
        """Unload every version of a pattern (its partial matches are dropped)."""
        gone = [rt for rt in self.runtimes if rt.name == name]
        for rt in gone:
            self.runtimes.remove(rt)
            self.removed_keys.extend((rt.name, rt.version, k) for k in rt.states)
        return len(gone)

    def _peek_arrival(self) -> int:
        """The arrival number the next ingested event will get."""
        nxt = next(self._arrival)
        self._arrival = count(nxt)
        return nxt

    def versions(self, name: str) -> list[PatternRuntime]:
        return [rt for rt in self.runtimes if rt.name == name]

    def _retire_drained(self) -> None:
        for rt in [rt for rt in self.runtimes if rt.draining and not rt.states and not rt.heap
                   and not rt.fresh]:
            self.runtimes.remove(rt)

    # -- processing

    def _on_error(self, exc: BaseException) -> None:
        self.metrics["condition_errors"] += 1
        if len(self.errors) < 100:
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _time_field(self, ck: tuple[str, ...], stream: str | None) -> tuple[str, ...]:
        if ck:
            return ck
        if stream is not None and stream in self.config.stream_time_fields:
            return self.config.stream_time_fields[stream]
        return self.config.default_time_field

    def process(
        self,
        events: Sequence[Any],
        *,
        stream: str | None = None,
        partition: Hashable = 0,
        positions: Sequence[Any] | None = None,
    ) -> BatchResult:
        """Feed one batch of decoded events (dicts). Returns alerts and dead letters."""
        result = BatchResult()
        n = len(events)
        if n == 0:
            return result
        self.metrics["events_in"] += n
        pos: Sequence[Any] = positions if positions is not None else [None] * n
        runtimes = [rt for rt in self.runtimes if rt.applies(stream)]
        dead: dict[int, DeadLetter] = {}
        outs: list[tuple[PatternRuntime, Any, Output]] = []
        by_clock: dict[tuple[str, ...], list[PatternRuntime]] = {}
        for rt in runtimes:
            by_clock.setdefault(rt.clock_key, []).append(rt)
        for ck, rts in by_clock.items():
            clock = self.clocks[ck]
            if ck == ARRIVAL:
                now = self.now_ms()
                wm = clock.watermark
                now = max(now, int(wm) + 1) if wm > -INF else now
                ds = list(events)
                tss = [now] * n
                ps = list(pos)
                clock.observe(partition, now)
                clock._wm = now  # arrival time: every event is due at once
            else:
                ds, tss, ps = self._timed(events, pos, self._time_field(ck, stream), clock, dead)
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
                staged = [rt.stage(ds, tss, ps, horizon) for rt in rts]
                requests = [rt.score_requests(st) for rt, st in zip(rts, staged, strict=True)]
                flat = [r for rs in requests for r in rs]
                scores = self._score_many(flat) if flat else []
                at = 0
                for rt, st, rs in zip(rts, staged, requests, strict=True):
                    rt.admit(st, scores[at:at + len(rs)])
                    at += len(rs)
            wm = clock.watermark
            for rt in rts:
                rt.drain(wm, outs)
        for i in sorted(dead):
            result.dead_letters.append(dead[i])
            self.metrics[f"dead_letter.{dead[i].reason}"] += 1
        result.alerts = self._alerts(outs)
        self._retire_drained()
        return result

    def _timed(
        self,
        events: Sequence[Any],
        pos: Sequence[Any],
        tf: tuple[str, ...],
        clock: Clock,
        dead: dict[int, DeadLetter],
    ) -> tuple[list[Any], list[int], list[Any]]:
        wm = clock.watermark
        skew = self.config.max_future_skew_ms
        limit = self.now_ms() + skew if skew is not None else INF
        single = tf[0] if len(tf) == 1 else None
        if single is not None:
            # fast path: every event a dict with an int time, none late or in the future
            try:
                tss = [d.get(single) for d in events]
                if set(map(type, tss)) == {int} and min(tss) > wm and max(tss) <= limit:
                    return events, tss, pos  # type: ignore[return-value]
            except (AttributeError, TypeError):
                pass
        ds: list[Any] = []
        tss = []
        ps: list[Any] = []
        for i, d in enumerate(events):
            if d.__class__ is not dict:
                dead.setdefault(i, DeadLetter(d, pos[i], "malformed", "an event is a JSON object"))
                continue
            raw = d.get(single) if single is not None else path_get(d, tf)
            t = raw if raw.__class__ is int else to_ms(raw)
            if t is None:
                reason = "missing_time" if raw is None else "bad_time"
                detail = f"time field {'.'.join(tf)}={raw!r}"
                dead.setdefault(i, DeadLetter(d, pos[i], reason, detail))
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

    def tick(self) -> BatchResult:
        """Advance idle clocks with the wall clock and fire due timers (no events)."""
        outs: list[tuple[PatternRuntime, Any, Output]] = []
        for ck, clock in self.clocks.items():
            if ck == ARRIVAL:
                clock._wm = max(clock.watermark, self.now_ms())
            else:
                clock.advance()
            for rt in self.runtimes:
                if rt.clock_key == ck:
                    rt.drain(clock.watermark, outs)
        return BatchResult(self._alerts(outs), [])

    def finish(self) -> BatchResult:
        """End of a bounded input: watermark +infinity fires every pending window."""
        outs: list[tuple[PatternRuntime, Any, Output]] = []
        for ck, clock in self.clocks.items():
            clock.finish()
            for rt in self.runtimes:
                if rt.clock_key == ck:
                    rt.drain(INF, outs)
        return BatchResult(self._alerts(outs), [])

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
        assert self.scorer is not None
        names = [name for name, _ in call.features]
        self.metrics["score_calls"] += 1
        self.metrics["score_rows"] += n
        try:
            with self._threads:
                out = list(self.scorer(call.model, dict(zip(names, columns, strict=True))))
        except Exception as exc:
            self.metrics["scoring_errors"] += 1
            if len(self.errors) < 100:
                self.errors.append(f"score({call.model}): {type(exc).__name__}: {exc}")
            return [None] * n
        if len(out) != n:
            self.metrics["scoring_errors"] += 1
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
        now = self.now_ms()
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
            k = len(emit.score_calls)
            scores: list[tuple[Any, ...]] = (
                list(zip(*results[r0:r0 + k], strict=True)) if k else [()] * len(items)
            )
            for j, (_, key, run, t, n) in enumerate(items):
                try:
                    measures = emit.fn(run.path, key, t, scores[j])
                except Exception as exc:  # generated code is total; this is a bug guard
                    self._on_error(plan.module.error(exc, plan.name))
                    measures = None
                if measures is None:
                    self.metrics[f"filtered.{plan.name}"] += 1
                    continue
                made.append((n, self._alert(plan, key, kind, run, t, measures, emit, detected)))
        made.sort(key=lambda x: x[0])
        alerts = [a for _, a in made]
        self.metrics["alerts"] += len(alerts)
        for a in alerts:
            self.metrics[f"alerts.{a.record['pattern']}"] += 1
        return alerts

    @staticmethod
    def _alert(
        plan: CompiledPattern, key: Any, kind: str, run: Run, t: int,
        measures: dict[str, Any], emit: EmitPlan, detected: str,
    ) -> Alert:
        per_stage = match_events(plan, run)
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{plan.name}\x1f{plan.version}\x1f{key!r}\x1f{kind}".encode())
        events: dict[str, list[Any]] = {}
        for stage, evs in per_stage.items():
            events[stage] = [e.data for e in evs]
            for e in evs:
                h.update(f"\x1e{stage}:{event_identity(e.data)}".encode())
        record = {
            "alert_id": h.hexdigest(),
            "pattern": plan.name,
            "pattern_version": plan.version,
            "kind": kind,
            "key": key_json(key),
            "severity": emit.severity,
            "time": t,
            "window": {"start": run.start_ts, "end": t},
            "events": events,
            "measures": json_safe(measures),
            "detected_at": detected,
        }
        return Alert(emit.topic, key_json(key), record)

    # -- checkpoints (cep.state): deltas of per-key state, plus clocks and counters

    def checkpoint(self) -> dict[bytes, bytes | None]:
        """The state changed since the last checkpoint, as store puts (None = delete).
        Write them in one batch together with the input positions they correspond to."""
        from cep.state.codec import META_PREFIX, encode_state, state_key

        puts: dict[bytes, bytes | None] = {}
        for name, version, key in self.removed_keys:
            puts[state_key(name, version, key)] = None
        self.removed_keys.clear()
        if not self.track_changes:
            raise RuntimeError("checkpoint() needs an engine with track_changes = True")
        for rt in self.runtimes:
            if not rt.dirty:
                continue
            buffered: dict[Any, list[tuple[int, Ev]]] = {}
            for entry in rt.heap:
                buffered.setdefault(entry[3].key, []).append((entry[2], entry[4]))
            for key in rt.dirty:
                ks = rt.states.get(key)
                sk = state_key(rt.name, rt.version, key)
                puts[sk] = None if ks is None else encode_state(ks, buffered.get(key, []))
            rt.dirty.clear()
        seq, arrival = next(self._seq), next(self._arrival)
        self._seq, self._arrival = count(seq + 1), count(arrival + 1)
        meta = {
            "seq": seq,
            "arrival": arrival,
            "clocks": [
                {"key": list(ck), "watermark": _num(c.watermark),
                 "partitions": [[_part(p), ts] for p, ts in c.partitions().items()]}
                for ck, c in self.clocks.items()
            ],
            "patterns": sorted({f"{rt.name}@{rt.version}" for rt in self.runtimes}),
        }
        puts[META_PREFIX + b"engine"] = orjson.dumps(meta)
        return puts

    def restore(self, items: Iterable[tuple[bytes, bytes]]) -> dict[str, int]:
        """Load state written by `checkpoint` (call before processing, after adding the
        patterns). State of patterns or versions not loaded now is skipped and counted."""
        from cep.state.codec import META_PREFIX, STATE_PREFIX, decode_state, parse_state_key

        by_id = {(rt.name, rt.version): rt for rt in self.runtimes}
        stats: Counter[str] = Counter()
        for k, v in items:
            if k == META_PREFIX + b"engine":
                meta = orjson.loads(v)
                self._seq = count(meta["seq"] + 1)
                self._arrival = count(meta["arrival"] + 1)
                for c in meta["clocks"]:
                    ck = tuple(c["key"])
                    clock = self.clocks.get(ck)
                    if clock is not None:
                        clock.restore(_unnum(c["watermark"]),
                                      {_unpart(p): ts for p, ts in c["partitions"]})
                continue
            if not k.startswith(STATE_PREFIX):
                continue
            name, version, key = parse_state_key(k)
            rt = by_id.get((name, version))
            if rt is None:
                stats["skipped"] += 1
                self.removed_keys.append((name, version, key))
                continue
            ks, buffered = decode_state(key, v)
            rt.states[key] = ks
            for arrival, ev in buffered:
                ob = tuple(_sortable(path_get(ev.data, p)) for p in rt.plan.order_by)
                heapq.heappush(rt.heap, (ev.ts, ob, arrival, ks, ev))
            if ks.deadline < INF:
                ks.scheduled = ks.deadline
                heapq.heappush(rt.timers, (ks.deadline, _timer_tie(key), key))
            stats["keys"] += 1
            stats["runs"] += len(ks.runs)
        return dict(stats)

    # -- introspection

    def watermark(self) -> float:
        if not self.clocks:
            return -INF
        return min(c.watermark for c in self.clocks.values())
