"""Scoring benchmark: the engine with `let` scoring by each example model vs. the same
pattern without a model, in the same run, JSON decoding included.

    python benchmarks/scoring.py [--events 1000000] [--keys 100000] [--seed 7] [--repeat 1]

Phases, each in a fresh process with OMP_NUM_THREADS=1 (one core per engine; on a
small or busy machine scikit-learn's OpenMP threads cost more than they save):
  decode        JSON decoding alone: the ceiling for anything that reads JSON
  plain         risky_burst's sequence with the condition on plain fields, no `let`:
                `r{3,} where amount > 450 and country != home_country`
  let-plain     the same with a `let` that is an expression, not a model
                (`let risk = amount / 500`): the cost of the `let` path itself
  txn_risk      patterns/risky_burst.cep as it is: `let risk = score(txn_risk, ...)`,
                `where risk > 0.9` (HistGradientBoosting, 50 trees)
  txn_anomaly   the same pattern scoring with txn_anomaly (IsolationForest, 50 trees),
                `where risk > 0.5` (the forest's outlier threshold)
All variants are derived from patterns/risky_burst.cep by text substitution. Events are
read from an in-memory list of JSON lines (the file of benchmarks/engine.py, cached in
.cache/bench), decoded and processed in batches of 4096; model loading and pattern
compilation are not timed. Prints events/s by wall-clock and by CPU time (the process's
own, robust against other load on the machine), alerts, rows scored and model calls,
and the cost of scoring as a percentage of the throughput of `plain`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from engine import BATCH, data_file, peak_rss_mb  # noqa: E402

PHASES = ("decode", "plain", "let-plain", "txn_risk", "txn_anomaly")
SCORE_CALL = "score(txn_risk, amount=amount, hour=hour(ts), foreign=country != home_country)"


def _sub(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise SystemExit(f"patterns/risky_burst.cep changed: cannot find {old!r} once")
    return text.replace(old, new)


def pattern_source(phase: str) -> str:
    """The phase's variant of patterns/risky_burst.cep."""
    src = (ROOT / "patterns" / "risky_burst.cep").read_text()
    if phase == "txn_risk":
        return src
    if phase == "txn_anomaly":
        src = _sub(src, "pattern risky_burst ", "pattern risky_burst_anomaly ")
        src = _sub(src, "score(txn_risk,", "score(txn_anomaly,")
        return _sub(src, "where risk > 0.9", "where risk > 0.5")
    if phase == "let-plain":
        src = _sub(src, "pattern risky_burst ", "pattern risky_burst_let ")
        src = _sub(src, SCORE_CALL, "amount / 500")
        return _sub(src, "where risk > 0.9", "where risk > 0.9 and country != home_country")
    if phase == "plain":
        src = _sub(src, "pattern risky_burst ", "pattern risky_burst_plain ")
        src = _sub(src, f"  let risk = {SCORE_CALL}\n", "")
        src = _sub(src, "where risk > 0.9", "where amount > 450 and country != home_country")
        return _sub(src, "peak = max(r.risk)", "peak = max(r.amount)")
    raise ValueError(phase)


def run_phase(phase: str, path: Path) -> dict[str, Any]:
    import orjson

    lines = path.read_bytes().splitlines()
    n = len(lines)
    loads = orjson.loads
    alerts = 0
    extra: dict[str, Any] = {}
    if phase == "decode":
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, n, BATCH):
            _ = [loads(x) for x in lines[i:i + BATCH]]
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    else:
        from cep.cli import load_models, scorer_for
        from cep.compiler.pipeline import compile_pattern
        from cep.dsl import load_source
        from cep.runtime.engine import Engine

        registry = load_models(ROOT / "models")
        if registry is None:
            raise SystemExit("no models/ directory: run python models/train.py")
        score = scorer_for(registry)
        calls = rows = 0

        def counting(model: str, columns: dict[str, list[Any]]) -> Any:
            nonlocal calls, rows
            calls += 1
            rows += len(next(iter(columns.values()))) if columns else 0
            return score(model, columns)

        patterns = load_source(pattern_source(phase), f"{phase}.cep",
                               models=registry.feature_names())
        eng = Engine([compile_pattern(p) for p in patterns], scorer=counting)
        if phase in ("txn_risk", "txn_anomaly"):  # warm up: first calls load OpenMP etc.
            registry.get(phase).score_batch({"amount": [1.0], "hour": [0], "foreign": [0]})
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, n, BATCH):
            alerts += len(eng.process([loads(x) for x in lines[i:i + BATCH]]).alerts)
        alerts += len(eng.finish().alerts)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        counters = eng.snapshot().counters
        extra = {"rows_scored": rows, "model_calls": calls,
                 "errors": counters.get("condition_errors", 0)
                 + counters.get("scoring_errors", 0)}
    return {"phase": phase, "events": n, "seconds": dt, "cpu_seconds": cpu,
            "events_per_s": n / dt, "events_per_cpu_s": n / cpu, "alerts": alerts,
            "peak_rss_mb": peak_rss_mb(), **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description="events/s with and without `let` scoring")
    ap.add_argument("--events", type=int, default=1_000_000, help="generated events")
    ap.add_argument("--keys", type=int, default=100_000, help="cards")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every phase this many times (interleaved); report the best")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--generate", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, Path(args.file))))
        return
    if args.generate:
        print(data_file(args.events, args.keys, args.seed))
        return
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    # generated in a child: on Linux a process's peak RSS survives fork + exec, so the
    # phases would report the generator's memory as theirs
    out = subprocess.run(
        [sys.executable, __file__, "--generate", "--events", str(args.events),
         "--keys", str(args.keys), "--seed", str(args.seed)],
        check=True, stdout=subprocess.PIPE, text=True, env=env,
    )
    path = Path(out.stdout.strip().splitlines()[-1])
    runs: dict[str, list[dict[str, Any]]] = {phase: [] for phase in PHASES}
    for _ in range(args.repeat):
        for phase in PHASES:
            out = subprocess.run(
                [sys.executable, __file__, "--phase", phase, "--file", str(path)],
                check=True, capture_output=True, text=True, env=env,
            )
            runs[phase].append(json.loads(out.stdout.strip().splitlines()[-1]))
    results: dict[str, dict[str, Any]] = {}
    for phase, rs in runs.items():  # best wall-clock and best CPU time, each on its own
        r = dict(min(rs, key=lambda x: x["seconds"]))
        r["cpu_seconds"] = min(x["cpu_seconds"] for x in rs)
        r["events_per_s"] = r["events"] / r["seconds"]
        r["events_per_cpu_s"] = r["events"] / r["cpu_seconds"]
        results[phase] = r
    print(f"cep scoring benchmark: {args.events:,} events, {args.keys:,} keys, seed "
          f"{args.seed}, best of {args.repeat} (python {sys.version.split()[0]}, one core, "
          f"OMP_NUM_THREADS=1)")
    print(f"{'phase':<13}{'events/s':>11}{'ev/cpu-s':>11}{'seconds':>9}{'alerts':>8}"
          f"{'rows scored':>13}{'calls':>7}{'RSS MB':>8}")
    for phase, r in results.items():
        print(f"{phase:<13}{r['events_per_s']:>11,.0f}{r['events_per_cpu_s']:>11,.0f}"
              f"{r['seconds']:>9.2f}{r['alerts']:>8,}{r.get('rows_scored', 0):>13,}"
              f"{r.get('model_calls', 0):>7,}{r['peak_rss_mb']:>8.0f}")
    plain = results["plain"]
    print("\ncost of scoring, as a share of the throughput of `plain` "
          "(1 - scored events/s / plain events/s; wall-clock, CPU time):")
    for phase in ("let-plain", "txn_risk", "txn_anomaly"):
        r = results[phase]
        wall = 1 - r["events_per_s"] / plain["events_per_s"]
        cpu = 1 - r["events_per_cpu_s"] / plain["events_per_cpu_s"]
        per_row = ""
        if r.get("rows_scored"):
            extra_cpu = r["cpu_seconds"] - results["let-plain"]["cpu_seconds"]
            per_row = f"; {extra_cpu / r['rows_scored'] * 1e6:.2f} us CPU per scored row " \
                      f"over let-plain"
        print(f"  {phase:<12} {wall:>6.1%} wall  {cpu:>6.1%} CPU{per_row}")


if __name__ == "__main__":
    main()
