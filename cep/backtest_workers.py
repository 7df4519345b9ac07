"""`cep backtest --workers N`: a backtest sharded by pattern key over N processes.

Patterns are grouped by their key (`key card_id`, `key user, shop`, unkeyed). Worker w
runs, per group, an engine with the group's patterns over the events whose key hashes
to w (CRC-32 of the key values as JSON, mod N); an event without the key, and every
event of an unkeyed group, goes to worker 0, so it is judged once. Each worker replays
the files sorted by event time (the same order a one-worker backtest uses: an ordered
file's order, else the sorted replay), so every key sees the same events in the same
order and its matches, alert ids included, are the one-worker run's. Watermarks differ
per worker, which changes when a timeout fires, never whether: the replay ends with
+infinity. A replay with a lateness allowance (`--max-out-of-orderness`) is refused:
which events are late depends on the watermark, and the watermark on the whole stream.

The alerts are written sorted by (time, alert_id). Workers are forked processes (the
compiled patterns are inherited, not pickled); each writes its alerts to a JSONL file
that the parent merges.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from cep.backtest import BacktestReport
from cep.io.jsonl import JsonlSink, read_jsonl
from cep.program import CompiledPattern
from cep.runtime.engine import Engine, EngineConfig, ScoreFn
from cep.runtime.records import Batch
from cep.values import path_get

__all__ = ["run_backtest_sharded", "shard_of"]

_JOB: dict[str, Any] = {}  # set by the parent before the fork; read by the workers


def shard_of(values: Sequence[Any], workers: int) -> int:
    """The worker of a key (the values of the pattern's key fields)."""
    return zlib.crc32(orjson.dumps(list(values))) % workers


def _groups(plans: Sequence[CompiledPattern]) -> list[list[CompiledPattern]]:
    by_key: dict[tuple[tuple[str, ...], ...], list[CompiledPattern]] = {}
    for p in plans:
        by_key.setdefault(p.key_paths, []).append(p)
    return list(by_key.values())


def _sorted_events(paths: Sequence[str | Path], engine: Engine,
                   batch_size: int) -> tuple[list[Any], list[Any], int]:
    rows: list[tuple[float, int, Any, Any]] = []
    nbytes = 0
    for p in paths:
        for b in read_jsonl(p, batch_size):
            nbytes += b.nbytes
            for ev, pos in zip(b.events, b.positions, strict=True):
                t = engine.event_time(ev)
                rows.append((t if t is not None else float("-inf"), len(rows), ev, pos))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [r[2] for r in rows], [r[3] for r in rows], nbytes


def _worker(w: int) -> tuple[int, dict[str, int]]:
    plans: list[CompiledPattern] = _JOB["plans"]
    n: int = _JOB["workers"]
    out = JsonlSink(Path(_JOB["dir"]) / f"alerts-{w}.jsonl")
    counts: Counter[str] = Counter()
    events: list[Any] | None = None
    positions: list[Any] = []
    for group in _groups(plans):
        engine = Engine(group, EngineConfig(), scorer=_JOB["scorer"], track_changes=False)
        if events is None:
            events, positions, _ = _sorted_events(_JOB["paths"], engine, _JOB["batch"])
        paths = group[0].key_paths
        mine_e: list[Any] = []
        mine_p: list[Any] = []
        for ev, pos in zip(events, positions, strict=True):
            if not paths:
                s = 0
            else:
                vals = [path_get(ev, kp) if isinstance(ev, dict) else None for kp in paths]
                s = 0 if any(v is None for v in vals) else shard_of(vals, n)
            if s == w:
                mine_e.append(ev)
                mine_p.append(pos)
        size: int = _JOB["batch"]
        for i in range(0, len(mine_e), size):
            res = engine.process(Batch(mine_e[i:i + size], mine_p[i:i + size]))
            out.write_alerts(res.alerts)
            counts.update(_label(a.record) for a in res.alerts)
        res = engine.finish()
        out.write_alerts(res.alerts)
        counts.update(_label(a.record) for a in res.alerts)
    out.close()
    return len(events or []), dict(counts)


def _label(record: dict[str, Any]) -> str:
    name: str = record["pattern"]
    return name + (" (timeout)" if record["kind"] == "timeout" else "")


def run_backtest_sharded(
    plans: Sequence[CompiledPattern],
    paths: Sequence[str | Path],
    workers: int,
    *,
    out: str | Path | None = None,
    scorer: ScoreFn | None = None,
    batch_size: int = 4096,
) -> BacktestReport:
    """The backtest's alerts with `workers` processes (see the module docstring)."""
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if any(p.time_arrival for p in plans):
        raise ValueError("--workers: a pattern in arrival time has no event time to "
                         "replay by; run it with one worker")
    if any(str(p) == "-" for p in paths):
        raise ValueError("--workers reads the event files once per worker: not from stdin")
    t0 = time.perf_counter()
    report = BacktestReport(mode=f"sorted, {workers} workers",
                            patterns=[p.name for p in plans])
    with tempfile.TemporaryDirectory(prefix="cep-backtest-") as tmp:
        _JOB.update(plans=list(plans), workers=workers, dir=tmp, paths=list(paths),
                    scorer=scorer, batch=batch_size)
        try:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(workers) as pool:
                results = pool.map(_worker, range(workers))
        finally:
            _JOB.clear()
        records: list[Any] = []
        for w in range(workers):
            with open(os.path.join(tmp, f"alerts-{w}.jsonl"), "rb") as f:
                records.extend(orjson.loads(line) for line in f if line.strip())
    records.sort(key=lambda r: (r["time"], r["alert_id"]))
    sink = JsonlSink(out)
    sink.write_records(records)
    sink.close()
    report.events = results[0][0] if results else 0
    for _, counts in results:
        report.alerts.update(counts)
    report.seconds = time.perf_counter() - t0
    return report
