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

With `label_field`, each event may carry a label "<label>:<incident>"; see
`LabelScorer` and docs/backtests.md for how patterns are scored against labels.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cep.compiler.pipeline import CompiledPattern
from cep.io.jsonl import AlertFileSink, DeadLetterFileSink, read_jsonl
from cep.runtime.driver import Driver, ListSink, Sink
from cep.runtime.engine import Engine, EngineConfig, ScoreFn
from cep.runtime.records import Alert, Batch, DeadLetter, Result
from cep.streams import DEFAULT_TIME, Observer, StreamSchema, TimeSpec


class LabelScorer:
    """Precision and recall per pattern against event labels, computed while streaming.

    An event's label is "<label>:<incident>". Pattern P is scored against the label
    `label_map[P]` (by default P's own name). An alert is a true positive when one of
    its events carries an incident of that label; each incident counts once however
    many alerts found it: precision is over alerts, recall over incidents, and
    `alerts_per_incident` shows duplicates (several alerts for one incident).
    Only the patterns that ran are scored (`patterns`)."""

    def __init__(self, label_field: str, patterns: Sequence[str] = (),
                 label_map: dict[str, str] | None = None) -> None:
        self.field = label_field
        self.label_map = dict(label_map or {})
        self.patterns = list(patterns)
        self.incidents: dict[str, set[str]] = defaultdict(set)  # label -> incidents
        self.alerts: Counter[str] = Counter()
        self.true_positives: Counter[str] = Counter()
        self.detected: dict[str, set[str]] = defaultdict(set)  # pattern -> incidents

    def label_of(self, pattern: str) -> str:
        return self.label_map.get(pattern, pattern)

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
            target = self.label_of(pattern)
            self.alerts[pattern] += 1
            hit = False
            for evs in rec["events"].values():
                for ev in evs:
                    lab = self._label(ev)
                    if lab is not None and lab.split(":", 1)[0] == target:
                        hit = True
                        self.detected[pattern].add(lab)
            if hit:
                self.true_positives[pattern] += 1

    def unscored_labels(self) -> list[str]:
        """Labels in the data that no pattern of the run was scored against."""
        used = {self.label_of(p) for p in self._names()}
        return sorted(set(self.incidents) - used)

    def _names(self) -> list[str]:
        return self.patterns or sorted(set(self.alerts) | set(self.incidents))

    def report(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for p in self._names():
            label = self.label_of(p)
            n, tp = self.alerts[p], self.true_positives[p]
            inc, det = len(self.incidents.get(label, ())), len(self.detected[p])
            out[p] = {
                "label": label,
                "alerts": n,
                "true_positives": tp,
                "precision": tp / n if n else None,
                "incidents": inc,
                "detected": det,
                "recall": det / inc if inc else None,
                "alerts_per_incident": tp / det if det else None,
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
    unscored_labels: list[str] = field(default_factory=list)
    # per pattern: values of the wrong type met in conditions/measures (counted, false)
    type_mismatches: dict[str, int] = field(default_factory=dict)
    # per pattern: fields it reads that no event of the input carried (no schema given)
    missing_fields: dict[str, list[str]] = field(default_factory=dict)
    observer: Observer | None = None  # fields and types seen (for --infer-schema)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report (`cep backtest --report FILE`)."""
        return {
            "mode": self.mode,
            "events": self.events,
            "seconds": round(self.seconds, 3),
            "alerts": dict(self.alerts),
            "dead_letters": dict(self.dead_letters),
            "patterns": self.patterns,
            "labels": self.labels,
            "unscored_labels": self.unscored_labels,
            "type_mismatches": self.type_mismatches,
            "missing_fields": self.missing_fields,
        }

    @property
    def total_alerts(self) -> int:
        return sum(self.alerts.values())


class _Unordered(Exception):
    pass


class _Progress:
    """A progress bar on stderr when it is a terminal: bytes read of the input files
    (percent and ETA when their size is known; .gz files by compressed bytes is not
    known, so events and rate only). Colour only on a terminal (rich decides)."""

    def __init__(self, enabled: bool, total_bytes: int | None) -> None:
        self.enabled = enabled
        self.bar: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[Any] = [TextColumn("  backtest")]
        if total_bytes:
            columns += [BarColumn(), TaskProgressColumn(), TextColumn("ETA"),
                        TimeRemainingColumn()]
        columns += [TextColumn("{task.fields[events]:>12,} events {task.fields[alerts]:>8,} "
                               "alerts"), TimeElapsedColumn()]
        self.bar = Progress(*columns, console=Console(stderr=True), transient=False,
                            refresh_per_second=4)
        self.task = self.bar.add_task("backtest", total=total_bytes, events=0, alerts=0)
        self.bar.start()

    def update(self, nbytes: int, events: int, alerts: int, force: bool = False) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=nbytes, events=events, alerts=alerts)
            if force:
                self.bar.refresh()

    def done(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def input_size(paths: Sequence[str | Path]) -> int | None:
    """Total bytes of the inputs, when known (plain files; not stdin, not .gz)."""
    total = 0
    for p in paths:
        sp = str(p)
        if sp == "-" or sp.endswith(".gz"):
            return None
        try:
            total += Path(sp).stat().st_size
        except OSError:
            return None
    return total


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
    label_map: dict[str, str] | None = None,
    streams: StreamsSetup | None = None,
    scoring_threads: int | None = 1,
) -> BacktestReport:
    """Run patterns over files; write alerts (JSONL) to `out` (stdout when None).
    `scoring_threads`: BLAS/OpenMP threads per model call (None: the libraries' own)."""
    streaming = max_out_of_orderness_ms is not None
    attempts = ["stream"] if streaming else ["complete", "sorted"]
    setup = streams or StreamsSetup()
    for mode in attempts:
        run = _Run(plans, mode, max_out_of_orderness_ms or 0, label_field, scorer,
                   label_map, setup, scoring_threads)
        try:
            report = run.replay(paths, out, dead_out, progress, batch_size, on_alerts)
            _field_warnings(report, plans, setup)
            return report
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
        self, plans: Sequence[CompiledPattern], mode: str, ooo: int, label_field: str | None,
        scorer: ScoreFn | None, label_map: dict[str, str] | None, setup: StreamsSetup,
        scoring_threads: int | None,
    ) -> None:
        self.mode = mode
        config = replace(setup.engine_config(ooo), scoring_threads=scoring_threads)
        # a backtest never checkpoints: no change tracking
        self.engine = Engine(plans, config, scorer=scorer, track_changes=False)
        names = [p.name for p in plans]
        self.report = BacktestReport(mode=mode, patterns=names)
        self.labels = LabelScorer(label_field, names, label_map) if label_field else None
        self.observer = Observer(setup.stream_field)

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
        bar = _Progress(progress, input_size(paths) if self.mode != "sorted" else None)
        t0 = time.perf_counter()
        try:
            for batch in _batches(paths, self.mode, batch_size, self.engine):
                report.events += batch.received
                report.bytes += batch.nbytes
                if self.labels is not None:
                    self.labels.observe_events(batch.events)
                self.observer.observe(batch.events)
                driver.step(batch)
                bar.update(report.bytes, report.events, report.total_alerts)
            driver.finish()
            bar.update(report.bytes, report.events, report.total_alerts, force=True)
        finally:
            bar.done()
            for f in files:
                f.close()
        if held is not None:
            self._write_held(held, out, dead_out, on_alerts)
        report.seconds = time.perf_counter() - t0
        report.labels = self.labels.report() if self.labels is not None else None
        report.unscored_labels = self.labels.unscored_labels() if self.labels else []
        report.engine_metrics = self.engine.snapshot().counters
        report.type_mismatches = self.engine.type_mismatches()
        report.observer = self.observer
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


@dataclass(frozen=True)
class StreamsSetup:
    """What a backtest knows about its streams: declared schemas (events that violate
    them are dead letters `schema`), the event field naming an event's stream, and how
    times are written."""

    schemas: dict[str, StreamSchema] = field(default_factory=dict)
    stream_field: str | None = "stream"
    time: TimeSpec = DEFAULT_TIME

    def engine_config(self, ooo: int) -> EngineConfig:
        single = next(iter(self.schemas.values())) if len(self.schemas) == 1 else None
        return EngineConfig(
            max_out_of_orderness_ms=ooo, default_time=self.time, plausible_times=True,
            stream_schemas=self.schemas, schema_stream_field=self.stream_field,
            default_schema=single,
        )


def _field_warnings(report: BacktestReport, plans: Sequence[CompiledPattern],
                    setup: StreamsSetup) -> None:
    """Without a schema: per pattern, the fields it reads that no event carried."""
    if setup.schemas or report.observer is None or not report.events:
        return
    from cep.dsl.ast import PatternFile
    from cep.dsl.check_context import Context
    from cep.dsl.check_schema import pattern_fields

    carried = report.observer.carried()
    for plan in plans:
        ctx = Context(PatternFile((plan.pattern,)), plan.pattern)
        missing = sorted(f for f in pattern_fields(ctx) if f not in carried)
        if missing:
            report.missing_fields[plan.name] = missing


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
            f"  {'pattern':<{width}}  {'label':<{width}} {'alerts':>7} {'TP':>6} "
            f"{'precision':>9} {'incidents':>9} {'found':>6} {'recall':>7} {'alerts/inc':>10}"
        )
        for p, r in report.labels.items():
            prec = "-" if r["precision"] is None else f"{r['precision']:.3f}"
            rec = "-" if r["recall"] is None else f"{r['recall']:.3f}"
            per = "-" if r["alerts_per_incident"] is None else f"{r['alerts_per_incident']:.2f}"
            lines.append(
                f"  {p:<{width}}  {r['label']:<{width}} {r['alerts']:>7,} "
                f"{r['true_positives']:>6,} {prec:>9} {r['incidents']:>9,} "
                f"{r['detected']:>6,} {rec:>7} {per:>10}"
            )
        lines.append("  precision: alerts with an event of an incident of the label / alerts; "
                     "recall: incidents found / incidents (each counted once)")
        if report.unscored_labels:
            lines.append("  labels no pattern was scored against: "
                         + ", ".join(report.unscored_labels)
                         + " (map one with --label-map PATTERN=LABEL)")
    warnings = summary_warnings(report)
    if warnings:
        lines.append("")
        lines.extend(warnings)
    return "\n".join(lines)


def summary_warnings(report: BacktestReport) -> list[str]:
    """Fields patterns read that no event carried; type mismatches per pattern."""
    out = []
    for p, fields in sorted(report.missing_fields.items()):
        out.append(f"warning: {p} reads {', '.join(f'`{f}`' for f in fields)}, which no "
                   "event carried: a misspelled field? (declare a schema to check patterns "
                   "before running: docs/streams.md)")
    for p, n in sorted(report.type_mismatches.items()):
        if n:
            out.append(f"warning: {p}: {n:,} values of the wrong type in its conditions or "
                       "measures (e.g. a number compared with a string); each made the "
                       "comparison false")
    return out
