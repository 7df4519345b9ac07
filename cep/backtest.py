"""Backtesting: the same compiled patterns over historical JSONL files.

Two ways to replay a file:

- **complete** (default): the file is taken as complete and ordered by (event time,
  position). It is streamed with no out-of-orderness allowance; if it turns out not to
  be ordered (an event older than one already seen), the pass is abandoned and the
  file is replayed sorted in memory by each event's time as the patterns read it
  (`Engine.event_time`: the pattern's `time` field, else the default), so nothing
  is ever late in this mode (with one time field; patterns on different time fields
  are sorted by the first one's).
- **stream** (`max_out_of_orderness_ms` given): file order is arrival order, exactly as
  a live stream would see it; events behind the watermark are dead letters (`late`).

With `label_field`, each event may carry a label "<pattern>:<incident>"; an alert is a
true positive when one of its events is labelled with the alert's pattern, and an
incident is detected when at least one alert of that pattern contains one of its events.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cep.compiler.pipeline import CompiledPattern
from cep.io.jsonl import AlertFileSink, DeadLetterFileSink, read_jsonl
from cep.runtime.driver import Driver, ListSink, Sink
from cep.runtime.engine import Engine, EngineConfig, ScoreFn
from cep.runtime.records import Alert, Batch, DeadLetter, Result


class LabelScorer:
    """Precision and recall per pattern against event labels, computed while streaming."""

    def __init__(self, label_field: str) -> None:
        self.field = label_field
        self.incidents: dict[str, set[str]] = defaultdict(set)
        self.alerts: Counter[str] = Counter()
        self.true_positives: Counter[str] = Counter()
        self.detected: dict[str, set[str]] = defaultdict(set)

    def _label(self, event: Any) -> str | None:
        lab = event.get(self.field) if isinstance(event, dict) else None
        return lab if isinstance(lab, str) and lab else None

    def observe_events(self, events: Iterable[Any]) -> None:
        for ev in events:
            lab = self._label(ev)
            if lab is not None:
                self.incidents[lab.split(":", 1)[0]].add(lab)

    def observe_alerts(self, records: Iterable[dict[str, Any]]) -> None:
        for rec in records:
            pattern = rec["pattern"]
            self.alerts[pattern] += 1
            hit = False
            for evs in rec["events"].values():
                for ev in evs:
                    lab = self._label(ev)
                    if lab is not None and lab.split(":", 1)[0] == pattern:
                        hit = True
                        self.detected[pattern].add(lab)
            if hit:
                self.true_positives[pattern] += 1

    def report(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for p in sorted(set(self.alerts) | set(self.incidents)):
            n, tp = self.alerts[p], self.true_positives[p]
            inc, det = len(self.incidents[p]), len(self.detected[p])
            out[p] = {
                "alerts": n,
                "true_positives": tp,
                "precision": tp / n if n else None,
                "incidents": inc,
                "detected": det,
                "recall": det / inc if inc else None,
            }
        return out


@dataclass
class BacktestReport:
    mode: str
    events: int = 0
    bytes: int = 0
    seconds: float = 0.0
    alerts: Counter[str] = field(default_factory=Counter)  # "pattern" / "pattern (timeout)"
    dead_letters: Counter[str] = field(default_factory=Counter)
    labels: dict[str, dict[str, Any]] | None = None
    patterns: list[str] = field(default_factory=list)
    engine_metrics: dict[str, int] = field(default_factory=dict)

    @property
    def total_alerts(self) -> int:
        return sum(self.alerts.values())


class _Unordered(Exception):
    pass


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0
        self.t0 = time.perf_counter()

    def update(self, events: int, alerts: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if force or now - self.last > 0.25:
            self.last = now
            rate = events / max(now - self.t0, 1e-9)
            sys.stderr.write(f"\r  {events:>12,} events  {alerts:>8,} alerts  {rate:>10,.0f} ev/s")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def run_backtest(
    plans: Sequence[CompiledPattern],
    paths: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    dead_out: str | Path | None = None,
    max_out_of_orderness_ms: int | None = None,
    label_field: str | None = None,
    scorer: ScoreFn | None = None,
    progress: bool = False,
    batch_size: int = 4096,
    on_alerts: Callable[[list[Alert]], None] | None = None,
    scoring_threads: int | None = 1,
) -> BacktestReport:
    """Run patterns over files; write alerts (JSONL) to `out` (stdout when None).
    `scoring_threads`: BLAS/OpenMP threads per model call (None: the libraries' own)."""
    streaming = max_out_of_orderness_ms is not None
    attempts = ["stream"] if streaming else ["complete", "sorted"]
    config = EngineConfig(max_out_of_orderness_ms=max_out_of_orderness_ms or 0,
                          scoring_threads=scoring_threads)
    for mode in attempts:
        run = _Run(plans, mode, config, label_field, scorer)
        try:
            return run.replay(paths, out, dead_out, progress, batch_size, on_alerts)
        except _Unordered:
            if progress:
                sys.stderr.write("\n  file is not ordered by event time: replaying it sorted\n")
    raise AssertionError("unreachable")


class _LateGuard:
    """'complete' mode: the first late event proves the file is not ordered."""

    def write(self, result: Result, batch: Batch | None) -> None:
        if any(d.reason == "late" for d in result.dead_letters):
            raise _Unordered


class _Counts:
    """The report's counters (alerts per pattern, dead letters per reason, labels)."""

    def __init__(self, report: BacktestReport, labels: LabelScorer | None) -> None:
        self.report = report
        self.labels = labels

    def write(self, result: Result, batch: Batch | None) -> None:
        report = self.report
        for a in result.alerts:
            kind = a.record["kind"]
            report.alerts[a.record["pattern"] + (" (timeout)" if kind == "timeout" else "")] += 1
        for d in result.dead_letters:
            report.dead_letters[d.reason] += 1
        if self.labels is not None:
            self.labels.observe_alerts(a.record for a in result.alerts)


class _Callback:
    def __init__(self, on_alerts: Callable[[list[Alert]], None]) -> None:
        self.on_alerts = on_alerts

    def write(self, result: Result, batch: Batch | None) -> None:
        if result.alerts:
            self.on_alerts(result.alerts)


class _Run:
    """One pass over the files in one mode, through the driver."""

    def __init__(
        self, plans: Sequence[CompiledPattern], mode: str, config: EngineConfig,
        label_field: str | None, scorer: ScoreFn | None,
    ) -> None:
        self.mode = mode
        # a backtest never checkpoints: no change tracking
        self.engine = Engine(plans, config, scorer=scorer, track_changes=False)
        self.report = BacktestReport(mode=mode, patterns=[p.name for p in plans])
        self.labels = LabelScorer(label_field) if label_field else None

    def replay(
        self, paths: Sequence[str | Path], out: str | Path | None, dead_out: str | Path | None,
        progress: bool, batch_size: int, on_alerts: Callable[[list[Alert]], None] | None,
    ) -> BacktestReport:
        report = self.report
        # in 'complete' mode nothing is written until the pass is known to be ordered
        held = ListSink() if self.mode == "complete" else None
        files = [] if held is not None else self._file_sinks(out, dead_out)
        sinks: list[Sink] = [_LateGuard()] if held is not None else []
        sinks.append(_Counts(report, self.labels))
        sinks.extend([held] if held is not None else files)
        if on_alerts is not None and held is None:
            sinks.append(_Callback(on_alerts))
        driver = Driver(self.engine, sinks)
        bar = _Progress(progress)
        t0 = time.perf_counter()
        try:
            for batch in _batches(paths, self.mode, batch_size, self.engine):
                report.events += batch.received
                report.bytes += batch.nbytes
                if self.labels is not None:
                    self.labels.observe_events(batch.events)
                driver.step(batch)
                bar.update(report.events, report.total_alerts)
            driver.finish()
            bar.update(report.events, report.total_alerts, force=True)
        finally:
            bar.done()
            for f in files:
                f.close()
        if held is not None:
            self._write_held(held, out, dead_out, on_alerts)
        report.seconds = time.perf_counter() - t0
        report.labels = self.labels.report() if self.labels is not None else None
        report.engine_metrics = self.engine.snapshot().counters
        return report

    @staticmethod
    def _file_sinks(
        out: str | Path | None, dead_out: str | Path | None
    ) -> list[AlertFileSink | DeadLetterFileSink]:
        files: list[AlertFileSink | DeadLetterFileSink] = [AlertFileSink(out)]
        if dead_out is not None:
            files.append(DeadLetterFileSink(dead_out))
        return files

    def _write_held(
        self, held: ListSink, out: str | Path | None, dead_out: str | Path | None,
        on_alerts: Callable[[list[Alert]], None] | None,
    ) -> None:
        result = Result(held.alerts, held.dead_letters)
        for f in self._file_sinks(out, dead_out):
            f.write(result, None)
            f.close()
        if on_alerts is not None and held.alerts:
            on_alerts(held.alerts)


def _batches(
    paths: Sequence[str | Path], mode: str, batch_size: int, engine: Engine
) -> Iterable[Batch]:
    if mode != "sorted":
        for p in paths:
            yield from read_jsonl(p, batch_size)
        return
    # sorted replay: load everything, order by (event time as the patterns read it,
    # position); events without a valid time go first (they are dead letters anyway)
    rows: list[tuple[float, int, Any, Any]] = []
    dead: list[DeadLetter] = []
    nbytes = 0
    for p in paths:
        for b in read_jsonl(p, batch_size):
            nbytes += b.nbytes
            dead.extend(b.dead_letters)
            for ev, pos in zip(b.events, b.positions, strict=True):
                t = engine.event_time(ev)
                rows.append((t if t is not None else float("-inf"), len(rows), ev, pos))
    rows.sort(key=lambda r: (r[0], r[1]))
    for i in range(0, max(len(rows), 1), batch_size):
        chunk = rows[i:i + batch_size]
        b = Batch([r[2] for r in chunk], [r[3] for r in chunk])
        if i == 0:
            b.dead_letters, b.nbytes = dead, nbytes
        b.received = len(b.events) + len(b.dead_letters)
        yield b


def format_summary(report: BacktestReport) -> str:
    lines = []
    rate = report.events / report.seconds if report.seconds else 0.0
    lines.append(
        f"{report.events:,} events in {report.seconds:.2f}s ({rate:,.0f} events/s, "
        f"mode: {report.mode}); {report.total_alerts:,} alerts"
    )
    width = max([len(p) for p in report.alerts] + [len(p) for p in report.patterns] + [7])
    lines.append(f"  {'pattern':<{width}}  {'alerts':>8}")
    names = list(report.patterns)
    for p in report.alerts:
        base = p.replace(" (timeout)", "")
        if p not in names and base in names:
            names.insert(names.index(base) + 1, p)
    for p in names:
        lines.append(f"  {p:<{width}}  {report.alerts.get(p, 0):>8,}")
    if report.dead_letters:
        lines.append("  dead letters: " + ", ".join(
            f"{r}={n:,}" for r, n in sorted(report.dead_letters.items())))
    if report.labels:
        lines.append("")
        lines.append(
            f"  {'pattern':<{width}}  {'alerts':>7} {'TP':>5} {'precision':>9} "
            f"{'incidents':>9} {'found':>6} {'recall':>7}"
        )
        for p, r in report.labels.items():
            prec = "-" if r["precision"] is None else f"{r['precision']:.3f}"
            rec = "-" if r["recall"] is None else f"{r['recall']:.3f}"
            lines.append(
                f"  {p:<{width}}  {r['alerts']:>7,} {r['true_positives']:>5,} {prec:>9} "
                f"{r['incidents']:>9,} {r['detected']:>6,} {rec:>7}"
            )
    return "\n".join(lines)
