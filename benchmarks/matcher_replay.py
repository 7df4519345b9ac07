"""The matcher step alone: CPU time of `Matcher.process` / `Matcher.advance` for a
pattern, without decoding, prefiltering, buffering or timers.

One engine run over the input records every call the engine makes to the pattern's
matcher (key, event time, sequence number, event, start flag); the calls are then
replayed on fresh matchers and key states, timed, `reps` times. Before each event a
key is advanced to the event's time when its deadline has passed, as
`PatternRuntime.drain` does, so the replay sees the same partial matches as the
engine (runs the engine's expiry queue dropped earlier are dropped here at the key's
next event: the same runs are live whenever an event is fed). Runs whatever `cep` is
on PYTHONPATH, so two checkouts compare interleaved:

    PYTHONPATH=/work/main python benchmarks/matcher_replay.py --root /work/main \\
        --file .cache/bench/events-200000-20000-7.jsonl impossible_travel 5
    PYTHONPATH=$PWD python benchmarks/matcher_replay.py --root $PWD \\
        --file .cache/bench/events-200000-20000-7.jsonl impossible_travel 5

Prints the replayed calls, the matches and timeouts they produced (the same in both
checkouts, or the step changed a result), and CPU min / median per pass.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import orjson

from cep.cli import compile_paths, tune_gc
from cep.runtime.engine import Engine
from cep.runtime.matcher import INF, Ev, KeyState, Matcher


def record(plan: Any, batches: list[list[Any]]) -> list[tuple[Any, ...]]:
    """Every (key, ts, seq, data, start) the engine feeds the pattern's matcher."""
    eng = Engine([plan])
    calls: list[tuple[Any, ...]] = []
    for rt in eng._runtimes:
        inner = rt.matcher.process

        def spy(ks: KeyState, ev: Ev, out: list[Any], start: bool = True,
                inner: Any = inner) -> None:
            calls.append((ks.key, ev.ts, ev.seq, ev.data, start))
            inner(ks, ev, out, start)

        rt.matcher.process = spy  # type: ignore[method-assign]
    for b in batches:
        eng.process(b)
    eng.finish()
    return calls


def replay(plan: Any, calls: list[tuple[Any, ...]]) -> tuple[float, Counter[str]]:
    """One pass: CPU seconds and the outputs per kind ("match", "timeout"; a match is
    an alert only when the pattern has an `emit` clause)."""
    m = Matcher(plan, lambda exc: None)
    m.queue = deque()
    states: dict[Any, KeyState] = {}
    out: list[Any] = []
    c0 = time.process_time()
    for key, ts, seq, data, start in calls:
        ks = states.get(key)
        if ks is None:
            ks = states[key] = KeyState(key)
        if ks.deadline <= ts:
            m.advance(ks, ts, out)
        m.process(ks, Ev(ts, seq, data, None, None), out, start)
    for ks in states.values():
        if ks.deadline < INF:
            m.advance(ks, INF, out)
    return time.process_time() - c0, Counter(o[0] for o in out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pattern")
    ap.add_argument("reps", type=int)
    ap.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                    help="checkout whose patterns/ to use")
    ap.add_argument("--file", required=True)
    args = ap.parse_args()
    lines = Path(args.file).read_bytes().splitlines()
    batches = [[orjson.loads(x) for x in lines[i:i + 4096]] for i in range(0, len(lines), 4096)]
    (plan,) = compile_paths([f"{args.root}/patterns/{args.pattern}.cep"])
    tune_gc()
    calls = record(plan, batches)
    times = []
    outs: Counter[str] = Counter()
    for _ in range(args.reps):
        t, outs = replay(plan, calls)
        times.append(t)
    times.sort()
    kinds = ", ".join(f"{n} {k}es" if k == "match" else f"{n} {k}s"
                      for k, n in sorted(outs.items()))
    print(f"{args.root} {args.pattern}: {len(calls):,} matcher calls ({kinds}), CPU min "
          f"{times[0]:.3f}s median {times[len(times) // 2]:.3f}s over {args.reps} passes "
          f"({1e6 * times[0] / len(calls):.2f} us/call, "
          f"{1e6 * times[0] / len(lines):.2f} us per input event)")


if __name__ == "__main__":
    main()
