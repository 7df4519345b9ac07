"""Engine benchmark: every example pattern over ~1M generated events, JSON decoding
included, next to the same run's baselines.

    python benchmarks/engine.py [--events 1000000] [--keys 100000] [--seed 7]

Phases (each in a fresh process, so peak RSS is per phase):
  decode          JSON decoding alone: the ceiling for anything that reads JSON
  engine-all      all example patterns that need no model, together
  engine-card     the generic engine running card_testing alone
  baseline-card   the hand-written card_testing matcher (benchmarks/baseline_card_testing.py)
and prints events/s, alerts, peak RSS and the engine/baseline ratio.
Events are read from an in-memory list of JSON lines, decoded in batches of 4096.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
BATCH = 4096
NO_MODEL = ["abandoned_checkout", "account_takeover", "card_testing", "decline_burst",
            "impossible_travel", "unpaid_order"]


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


def run_phase(phase: str, path: Path) -> dict[str, Any]:
    import orjson

    lines = path.read_bytes().splitlines()
    n = len(lines)
    from cep.cli import tune_gc

    tune_gc()  # every phase runs with the GC settings `cep` itself uses
    loads = orjson.loads
    rss_before = peak_rss_mb()
    alerts = 0
    extra: dict[str, Any] = {}
    if phase == "decode":
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, n, BATCH):
            _ = [loads(x) for x in lines[i:i + BATCH]]
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    elif phase == "baseline-card":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from baseline_card_testing import match_card_testing

        def stream() -> Any:
            for i in range(0, n, BATCH):
                yield from [loads(x) for x in lines[i:i + BATCH]]

        t0, c0 = time.perf_counter(), time.process_time()
        alerts = len(match_card_testing(stream()))
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    else:
        from cep.cli import compile_paths
        from cep.runtime.engine import Engine

        names = ["card_testing"] if phase == "engine-card" else NO_MODEL
        plans = compile_paths([str(ROOT / "patterns" / f"{p}.cep") for p in names])
        eng = Engine(plans)
        live_max = 0
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, n, BATCH):
            alerts += len(eng.process([loads(x) for x in lines[i:i + BATCH]]).alerts)
            if i % (BATCH * 25) == 0:
                live_max = max(live_max, figures(eng)[0])
        alerts += len(eng.finish().alerts)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        _, keys, errors = figures(eng)
        extra = {"max_live_runs": live_max, "keys_with_state_at_end": keys, "errors": errors}
    return {
        "phase": phase, "events": n, "seconds": dt, "cpu_seconds": cpu, "events_per_s": n / dt,
        "alerts": alerts,
        "peak_rss_mb": peak_rss_mb(), "rss_growth_mb": peak_rss_mb() - rss_before, **extra,
    }


def figures(eng: Any) -> tuple[int, int, int]:
    """(live runs, keys with state, condition errors) through the engine's public
    snapshot; engines from before `Engine.snapshot` (a baseline checkout run with this
    script) are read the old way."""
    if hasattr(eng, "snapshot"):
        snap = eng.snapshot()
        return (sum(p.live_runs for p in snap.patterns), sum(p.keys for p in snap.patterns),
                snap.counters.get("condition_errors", 0))
    rts = eng.runtimes
    return (sum(rt.live_runs() for rt in rts), sum(len(rt.states) for rt in rts),
            eng.metrics.get("condition_errors", 0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--phase")
    ap.add_argument("--file")
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, Path(args.file))))
        return
    path = data_file(args.events, args.keys, args.seed)
    results = {}
    for phase in ("decode", "engine-all", "engine-card", "baseline-card"):
        out = subprocess.run(
            [sys.executable, __file__, "--phase", phase, "--file", str(path)],
            check=True, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"cep engine benchmark: {args.events:,} events, {args.keys:,} keys, seed {args.seed} "
          f"(python {sys.version.split()[0]}, one core)")
    print(f"{'phase':<15}{'events/s':>12}{'seconds':>10}{'cpu s':>8}{'alerts':>9}"
          f"{'peak RSS MB':>13}  notes")
    for phase, r in results.items():
        notes = ""
        if "max_live_runs" in r:
            notes = f"max live runs {r['max_live_runs']:,}; keys with state at end " \
                    f"{r['keys_with_state_at_end']:,}"
        print(f"{phase:<15}{r['events_per_s']:>12,.0f}{r['seconds']:>10.2f}"
              f"{r['cpu_seconds']:>8.2f}{r['alerts']:>9,}"
              f"{r['peak_rss_mb']:>13.0f}  {notes}")
    eng, base = results["engine-card"], results["baseline-card"]
    print(f"\ncard_testing: generic engine / hand-written = "
          f"{eng['seconds'] / base['seconds']:.2f}x the time "
          f"(alerts {eng['alerts']} vs {base['alerts']})")
    print(f"all patterns: {results['engine-all']['events_per_s']:,.0f} events/s including "
          f"decoding; decode alone {results['decode']['events_per_s']:,.0f} events/s")


if __name__ == "__main__":
    main()
