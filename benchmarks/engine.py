"""Engine benchmark: the six model-free example patterns over ~1M generated events,
JSON decoding included, next to hand-written matchers for the same six patterns in
the same run.

    python benchmarks/engine.py [--events 1000000] [--keys 100000] [--seed 7]
                                [--repeat 1] [--no-per-pattern] [--no-memory]

Phases, each in a fresh process (so peak RSS is per phase), with the GC settings
`cep` itself uses:
  decode             JSON decoding alone: the ceiling for anything that reads JSON
  engine-all         the generic engine running all six patterns together
  baseline-all       the six hand-written matchers (benchmarks/baselines.py) together
  engine:P           the engine running pattern P alone        (per pattern)
  baseline:P         the hand-written matcher for P alone      (per pattern)
  memory             engine-all again, untimed, measuring the engine's state at
                     sample points: bytes per live partial match (everything the
                     engine object reaches, minus what it reached before any event)
Events are read from an in-memory list of JSON lines and decoded in batches of 4096
in every phase. Each phase reports CPU time (process_time: what to compare on a
shared machine) and wall time. With --repeat R the phases run R times, interleaved
(round-robin), and the median is reported. The hand-written matchers must report
the same alerts as the engine, pattern by pattern ((kind, key, window start, time)
multisets): the benchmark says so or prints the difference.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
BATCH = 4096
NO_MODEL = ["abandoned_checkout", "account_takeover", "card_testing", "decline_burst",
            "impossible_travel", "unpaid_order"]
MEMORY_SAMPLES = 6  # deep walks of the engine's state in the memory phase


def data_file(n: int, keys: int, seed: int) -> Path:
    path = CACHE / f"events-{n}-{keys}-{seed}.jsonl"
    if not path.exists():
        sys.path.insert(0, str(ROOT))
        from cep.synth import generate, write_jsonl

        CACHE.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        write_jsonl(tmp, generate(n, seed=seed, n_keys=keys))
        tmp.rename(path)
        print(f"generated {path.name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def digest(rows: list[tuple[Any, ...]]) -> str:
    blob = json.dumps(sorted(rows, key=repr), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def deep_size(roots: list[Any]) -> int:
    """sys.getsizeof of every object reachable from `roots`, each counted once
    (types, modules and functions excluded), allocator overhead not included. The
    engine's state is the growth over the same engine before any event."""
    seen: set[int] = set()
    stack = list(roots)
    total = 0
    skip = (type, type(sys), type(deep_size))
    while stack:
        obj = stack.pop()
        i = id(obj)
        if i in seen or isinstance(obj, skip):
            continue
        seen.add(i)
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def run_phase(phase: str, path: Path) -> dict[str, Any]:
    import orjson

    lines = path.read_bytes().splitlines()
    n = len(lines)
    from cep.cli import tune_gc

    tune_gc()  # every phase runs with the GC settings `cep` itself uses
    loads = orjson.loads
    rss_before = peak_rss_mb()
    out: dict[str, Any] = {"phase": phase, "events": n}

    def batches() -> Iterator[list[Any]]:
        for i in range(0, n, BATCH):
            yield [loads(x) for x in lines[i:i + BATCH]]

    if phase == "decode":
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in batches():
            pass
    elif phase.startswith("baseline"):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from baselines import ALL

        names = NO_MODEL if phase == "baseline-all" else [phase.split(":", 1)[1]]
        matchers = [cls() for cls in ALL if cls.name in names]
        base = 0
        w0, c0 = time.perf_counter(), time.process_time()
        for batch in batches():
            for m in matchers:
                m.feed(batch, base)
            base += len(batch)
        for m in matchers:
            m.finish()
        alerts = {m.name: list(m.alerts) for m in matchers}
    else:
        from cep.cli import compile_paths
        from cep.runtime.engine import Engine

        names = NO_MODEL if phase in ("engine-all", "memory") else [phase.split(":", 1)[1]]
        plans = compile_paths([str(ROOT / "patterns" / f"{p}.cep") for p in names])
        try:
            eng = Engine(plans, track_changes=False)  # as in `cep backtest`
        except TypeError:  # an engine from before track_changes was a parameter
            eng = Engine(plans)
            setattr(eng, "track_changes", False)  # noqa: B010
        records: list[dict[str, Any]] = []
        samples: list[tuple[int, int]] = []
        every = max(1, n // BATCH // MEMORY_SAMPLES)
        empty = deep_size([eng]) if phase == "memory" else 0  # plans, code, counters
        w0, c0 = time.perf_counter(), time.process_time()
        for k, batch in enumerate(batches()):
            records += [a.record for a in eng.process(batch).alerts]
            if phase == "memory" and k % every == every - 1:
                samples.append((live_runs(eng), deep_size([eng]) - empty))
        records += [a.record for a in eng.finish().alerts]
        alerts = {p: [] for p in names}
        for r in records:
            alerts[r["pattern"]].append((r["kind"], r["key"], r["window"]["start"], r["time"]))
        out["condition_errors"] = condition_errors(eng)
        if samples:
            live, size = max(samples)
            out["memory"] = {"live_runs": live, "state_bytes": size,
                             "bytes_per_run": size / live if live else None,
                             "samples": samples}
    out["cpu_s"] = time.process_time() - c0
    out["wall_s"] = time.perf_counter() - w0
    if phase != "decode":
        out["alerts"] = {p: {"count": len(a), "digest": digest(a)} for p, a in alerts.items()}
    out["peak_rss_mb"] = peak_rss_mb()
    out["rss_growth_mb"] = peak_rss_mb() - rss_before
    return out


def live_runs(eng: Any) -> int:
    """Live partial matches through the engine's public snapshot (engines from before
    `Engine.snapshot`, e.g. a baseline checkout run with this script, the old way)."""
    if hasattr(eng, "snapshot"):
        return sum(p.live_runs for p in eng.snapshot().patterns)
    return sum(rt.live_runs() for rt in eng.runtimes)


def condition_errors(eng: Any) -> int:
    if hasattr(eng, "snapshot"):
        return int(eng.snapshot().counters.get("condition_errors", 0))
    return int(eng.metrics.get("condition_errors", 0))


def phases(per_pattern: bool, memory: bool) -> list[str]:
    ps = ["decode", "engine-all", "baseline-all"]
    if per_pattern:
        for p in NO_MODEL:
            ps += [f"engine:{p}", f"baseline:{p}"]
    if memory:
        ps.append("memory")
    return ps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1, help="interleaved repetitions")
    ap.add_argument("--no-per-pattern", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", help="also write every result to this file")
    ap.add_argument("--phase")
    ap.add_argument("--file")
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, Path(args.file))))
        return
    path = data_file(args.events, args.keys, args.seed)
    runs: dict[str, list[dict[str, Any]]] = {}
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    for _ in range(args.repeat):
        for phase in phases(not args.no_per_pattern, not args.no_memory):
            if phase == "memory" and phase in runs:
                continue  # not timed: once is enough
            res = subprocess.run(
                [sys.executable, __file__, "--phase", phase, "--file", str(path)],
                check=True, capture_output=True, text=True, env=env,
            )
            runs.setdefault(phase, []).append(json.loads(res.stdout.strip().splitlines()[-1]))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    report(args, runs)


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]]) -> None:
    n = args.events
    cpu = {p: statistics.median(r["cpu_s"] for r in rs) for p, rs in runs.items()}
    wall = {p: statistics.median(r["wall_s"] for r in rs) for p, rs in runs.items()}
    print(f"cep engine benchmark: {n:,} events, {args.keys:,} keys, seed {args.seed} "
          f"(python {sys.version.split()[0]}, one core; median of {args.repeat} interleaved "
          f"run(s); CPU = process time, the figure to compare on a shared machine)")
    print(f"{'phase':<30}{'CPU s':>8}{'wall s':>8}{'ev/s (CPU)':>12}{'us/ev':>7}"
          f"{'-decode':>8}{'alerts':>8}{'peak RSS MB':>12}")
    dec = cpu["decode"]
    for phase, rs in runs.items():
        if phase == "memory":
            continue
        r = rs[0]
        alerts = sum(a["count"] for a in r.get("alerts", {}).values())
        beyond = f"{(cpu[phase] - dec) / n * 1e6:>8.2f}" if phase != "decode" else f"{'':>8}"
        print(f"{phase:<30}{cpu[phase]:>8.2f}{wall[phase]:>8.2f}{n / cpu[phase]:>12,.0f}"
              f"{cpu[phase] / n * 1e6:>7.2f}{beyond}{alerts if phase != 'decode' else '':>8}"
              f"{max(x['peak_rss_mb'] for x in rs):>12.0f}")
    print("\n(us/ev: CPU microseconds per event, decoding included; -decode: beyond "
          "decoding alone)")

    eng, base = runs["engine-all"][0]["alerts"], runs["baseline-all"][0]["alerts"]
    same = all(eng[p] == base[p] for p in NO_MODEL)
    print(f"\nall six patterns: generic engine / hand-written = "
          f"{cpu['engine-all'] / cpu['baseline-all']:.2f}x the CPU time "
          f"({'identical alerts' if same else 'ALERTS DIFFER'}); "
          f"{n / cpu['engine-all']:,.0f} events/s (CPU) including decoding, decode alone "
          f"{n / dec:,.0f}")
    for p in NO_MODEL:
        e, b = eng[p], base[p]
        ratio = ""
        if f"engine:{p}" in cpu:
            pe, pb = cpu[f"engine:{p}"] - dec, cpu[f"baseline:{p}"] - dec
            ratio = (f"; alone, beyond decoding: engine {pe / n * 1e6:.2f} us/ev, "
                     f"hand-written {pb / n * 1e6:.2f} us/ev")
        status = "same" if e == b else f"DIFFERENT (hand-written {b['count']}, {b['digest']})"
        print(f"  {p:<20} {e['count']:>6} alerts, hand-written: {status}{ratio}")
    if "memory" in runs:
        m = runs["memory"][0]["memory"]
        print(f"\nengine state at its largest sample: {m['live_runs']:,} live partial matches, "
              f"{m['state_bytes'] / 1e6:.1f} MB of engine state "
              f"(sys.getsizeof, each object once) = {m['bytes_per_run']:,.0f} bytes per live "
              f"partial match")


if __name__ == "__main__":
    main()
