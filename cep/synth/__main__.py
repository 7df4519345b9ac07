"""`python -m cep.synth N [PATH] [--seed S] [--keys K] [--incident-rate R]`

Generates N events, writes them to PATH (JSON lines; `.gz` compresses) when given, and
prints the time taken, the events per stream and the incidents per pattern.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from cep.synth import generate, write_jsonl


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cep.synth", description=__doc__)
    ap.add_argument("n_events", type=int)
    ap.add_argument("path", nargs="?")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keys", type=int, default=None, help="number of cards")
    ap.add_argument("--incident-rate", type=float, default=0.002)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    events = generate(args.n_events, args.seed, args.keys, incident_rate=args.incident_rate)
    took = time.perf_counter() - t0
    rate = len(events) / took if took > 0 else 0.0
    print(f"generated {len(events):,} events in {took:.2f} s ({rate:,.0f} events/s)")
    if events:
        hours = (events[-1]["ts"] - events[0]["ts"]) / 3_600_000
        print(f"span {hours:.1f} h")
    for (stream, kind), n in sorted(Counter((e["stream"], e["type"]) for e in events).items()):
        print(f"  {stream:15} {kind:17} {n:>10,}")
    incidents = Counter(
        str(e["label"]).partition(":")[0] for e in events if "label" in e
    )  # events per pattern
    labels = Counter(str(label).partition(":")[0] for label in {e.get("label") for e in events})
    for pattern in sorted(incidents):
        print(f"  incidents {pattern:20} {labels[pattern]:>6,} ({incidents[pattern]:,} events)")
    if args.path:
        t0 = time.perf_counter()
        n = write_jsonl(args.path, events)
        print(f"wrote {n:,} events to {args.path} in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
