"""Prometheus metrics of the service, in their own `CollectorRegistry`.

Two kinds:

- counted by the service as things happen (events in per source, decode errors,
  alerts by pattern and severity, batch and scoring latency, consumer lag, swaps);
- read from the engine, which only its loop may touch: at scrape time `/metrics`
  submits `Engine.snapshot` to the loop (it runs at the next batch boundary) and the
  engine collector turns that snapshot into dead letters by reason, late events, live
  partial matches and pending timers per pattern version, watermark lag per clock and
  partition. If the loop does not answer in time the previous snapshot is served and
  `cep_engine_snapshot_age_seconds` shows how old it is.

The Kafka runner reports through the same object: `service.metrics.active()` is the
running service's `ServiceMetrics` (or None), with `observe_batch`, `decode_error` and
`set_consumer_lag`.
"""

from __future__ import annotations

from collections import Counter as PyCounter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from cep.runtime.clock import wall_ms
from cep.runtime.snapshot import EngineSnapshot
from service.recent import RecentInput

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("cep_events_in", "Events received, per source (stream or "
                                 "topic)", ["source"], registry=r)
        self.decode_errors = Counter("cep_decode_errors", "Input records that were not "
                                     "JSON objects, per source", ["source"], registry=r)
        self.alerts = Counter("cep_alerts", "Alerts, by pattern and severity",
                              ["pattern", "severity"], registry=r)
        self.batch_seconds = Histogram("cep_batch_seconds", "Engine time per input batch",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_events = Histogram("cep_batch_events", "Events per input batch",
                                      buckets=(1, 10, 100, 1000, 5000, 20000, 100000),
                                      registry=r)
        self.scoring_seconds = Histogram("cep_scoring_seconds", "Time per vectorised "
                                         "model call", ["model"], buckets=_LATENCY_BUCKETS,
                                         registry=r)
        self.consumer_lag = Gauge("cep_consumer_lag", "Kafka consumer lag (records), per "
                                  "topic partition", ["topic", "partition"], registry=r)
        self.tasks = Gauge("cep_tasks", "Partition tasks of this process, per state "
                           "(restoring, running)", ["state"], registry=r)
        self.task_lag = Gauge("cep_task_lag", "Records behind the input's end, per partition "
                              "task", ["task"], registry=r)
        self.task_restore_records = Gauge(
            "cep_task_restore_records", "Changelog records read by the running or last "
            "restore of a task", ["task"], registry=r)
        self.swaps = Counter("cep_swaps", "Pattern and model changes through the API",
                             ["kind"], registry=r)
        self.sse_subscribers = Gauge("cep_sse_subscribers", "Open alert streams",
                                     registry=r)
        self.recent_alerts = Gauge("cep_recent_alerts", "Alerts in the recent-alerts buffer",
                                   registry=r)
        self.ready = Gauge("cep_ready", "1 when the engine loop runs", registry=r)
        self.stalled = Gauge("cep_stalled", "1 when input waits and the Kafka runner has "
                             "committed nothing for kafka.stall_after_ms", registry=r)
        self.loop_errors = Counter("cep_loop_errors", "Unexpected errors of the engine loop "
                                   "(a batch failed)", registry=r)
        self.decode_reasons: PyCounter[str] = PyCounter()  # dead letters before the engine
        self.recent = RecentInput()  # recent events and dead letters, for the console
        self.engine = EngineCollector(self)
        r.register(self.engine)

    # -- hooks (embedded loop, Kafka runner)

    def observe_batch(self, source: str, n: int, seconds: float) -> None:
        self.events_in.labels(source).inc(n)
        self.batch_events.observe(n)
        self.batch_seconds.observe(seconds)

    def decode_error(self, source: str, reason: str = "malformed", n: int = 1) -> None:
        self.decode_errors.labels(source).inc(n)
        self.decode_reasons[reason] += n

    def set_consumer_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(topic, str(partition)).set(lag)

    def set_tasks(self, rows: list[tuple[int, str, int | None, int]]) -> None:
        """Per task: (task, state, lag or None, restore records read)."""
        counts = {"restoring": 0, "running": 0}
        self.task_lag.clear()
        self.task_restore_records.clear()
        for task, state, lag, restored in rows:
            counts[state] = counts.get(state, 0) + 1
            if lag is not None:
                self.task_lag.labels(str(task)).set(lag)
            self.task_restore_records.labels(str(task)).set(restored)
        for state, n in counts.items():
            self.tasks.labels(state).set(n)

    def observe_scoring(self, model: str, seconds: float) -> None:
        self.scoring_seconds.labels(model).observe(seconds)

    def count_alerts(self, records: list[dict[str, Any]]) -> None:
        for rec in records:
            self.alerts.labels(str(rec.get("pattern")), str(rec.get("severity"))).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class EngineCollector:
    """Prometheus families from the latest `EngineSnapshot`."""

    def __init__(self, owner: ServiceMetrics) -> None:
        self.owner = owner
        self.snapshot = EngineSnapshot()

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        now = wall_ms()
        c = snap.counters
        yield CounterMetricFamily("cep_engine_events", "Events handed to the engine",
                                  value=c.get("events_in", 0))
        dead = CounterMetricFamily("cep_dead_letters", "Dead letters by reason (decode "
                                   "errors, missing/bad time, future timestamps, late)",
                                   labels=["reason"])
        reasons: PyCounter[str] = PyCounter(dict(self.owner.decode_reasons))  # atomic copy
        for k, v in c.items():
            if k.startswith("dead_letter."):
                reasons[k.removeprefix("dead_letter.")] += v
        for reason, v in sorted(reasons.items()):
            dead.add_metric([reason], v)
        yield dead
        yield CounterMetricFamily("cep_late_events", "Events at or before the watermark "
                                  "(dead letters with reason late)",
                                  value=c.get("dead_letter.late", 0))
        yield CounterMetricFamily("cep_condition_errors", "Errors raised by generated "
                                  "conditions", value=c.get("condition_errors", 0))
        filtered = CounterMetricFamily("cep_alerts_filtered", "Matches dropped by `when`",
                                       labels=["pattern"])
        for k, v in sorted(c.items()):
            if k.startswith("filtered."):
                filtered.add_metric([k.removeprefix("filtered.")], v)
        yield filtered
        runs = GaugeMetricFamily("cep_partial_matches", "Live partial matches",
                                 labels=["pattern", "version"])
        timers = GaugeMetricFamily("cep_pending_timers", "Keys with a pending timer",
                                   labels=["pattern", "version"])
        keys = GaugeMetricFamily("cep_keys", "Keys with state", labels=["pattern", "version"])
        buffered = GaugeMetricFamily("cep_buffered_events", "Events waiting for the "
                                     "watermark", labels=["pattern", "version"])
        draining = GaugeMetricFamily("cep_pattern_draining", "1 while a replaced version "
                                     "finishes its partial matches",
                                     labels=["pattern", "version"])
        evicted = CounterMetricFamily("cep_runs_evicted", "Partial matches evicted by "
                                      "max_runs_per_key", labels=["pattern", "version"])
        keys_out = CounterMetricFamily("cep_keys_evicted", "Keys whose state left memory "
                                       "for the state store (max_resident_keys)",
                                       labels=["pattern", "version"])
        keys_in = CounterMetricFamily("cep_keys_loaded", "Evicted keys loaded back from the "
                                      "state store by an event or a timer",
                                      labels=["pattern", "version"])
        mismatches = CounterMetricFamily(
            "cep_type_mismatches", "Values of the wrong type met by a pattern's conditions "
            "and measures (each made a comparison false); a misspelled value or a "
            "type error in the pattern", labels=["pattern", "version"])
        for p in snap.patterns:
            lv = [p.name, str(p.version)]
            runs.add_metric(lv, p.live_runs)
            timers.add_metric(lv, p.pending_timers)
            keys.add_metric(lv, p.keys)
            buffered.add_metric(lv, p.buffered)
            draining.add_metric(lv, 1 if p.draining else 0)
            evicted.add_metric(lv, p.stats.get("runs_evicted", 0))
            keys_out.add_metric(lv, p.stats.get("keys_evicted", 0))
            keys_in.add_metric(lv, p.stats.get("keys_loaded", 0))
            mismatches.add_metric(lv, p.stats.get("type_mismatch", 0))
        yield from (runs, timers, keys, buffered, draining, evicted, keys_out, keys_in,
                    mismatches)
        lag = GaugeMetricFamily("cep_watermark_lag_seconds", "Wall clock minus watermark, "
                                "per clock (time field) and source partition",
                                labels=["clock", "partition"])
        for ck in snap.clocks:
            if ck.watermark not in (float("inf"), float("-inf")):
                lag.add_metric([ck.name, "*"], max(0.0, (now - ck.watermark) / 1000))
            for part, max_ts in sorted(ck.partitions.items()):
                wm = max_ts - ck.ooo_ms - 1
                lag.add_metric([ck.name, part], max(0.0, (now - wm) / 1000))
        yield lag
        age = (now - snap.taken_ms) / 1000 if snap.taken_ms else 0.0
        yield GaugeMetricFamily("cep_engine_snapshot_age_seconds", "Age of the engine "
                                "figures in this scrape", value=age)


_active: ServiceMetrics | None = None


def activate(metrics: ServiceMetrics | None) -> None:
    global _active
    _active = metrics


def active() -> ServiceMetrics | None:
    """The running service's metrics (for the Kafka runner), or None."""
    return _active

