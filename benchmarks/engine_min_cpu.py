"""Engine CPU time alone (no decoding), min and median of N passes in one process:
the comparison that stays readable on a busy machine. Runs whatever `cep` is on
PYTHONPATH, so two checkouts can be compared interleaved in the same session:

    for i in 1 2 3; do
      PYTHONPATH=/tmp/base python benchmarks/engine_min_cpu.py --root /tmp/base card 9
      PYTHONPATH=$PWD python benchmarks/engine_min_cpu.py --root $PWD card 9
    done

`card`: the `card_testing` pattern; `all`: the six model-free example patterns (as
`benchmarks/engine.py`); any other name: that one of the six (e.g. `impossible_travel`).
The input is the cached file `benchmarks/engine.py` generates.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import orjson

from cep.cli import compile_paths, tune_gc
from cep.runtime.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
NO_MODEL = ["abandoned_checkout", "account_takeover", "card_testing", "decline_burst",
            "impossible_travel", "unpaid_order"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["card", "all", *NO_MODEL])
    ap.add_argument("reps", type=int)
    ap.add_argument("--root", default=str(ROOT), help="checkout whose patterns/ to use")
    ap.add_argument("--file", default=str(ROOT / ".cache" / "bench" /
                                          "events-300000-30000-7.jsonl"))
    args = ap.parse_args()
    lines = Path(args.file).read_bytes().splitlines()
    batches = [[orjson.loads(x) for x in lines[i:i + 4096]] for i in range(0, len(lines), 4096)]
    names = {"card": ["card_testing"], "all": NO_MODEL}.get(args.which, [args.which])
    plans = compile_paths([f"{args.root}/patterns/{p}.cep" for p in names])
    tune_gc()
    times = []
    alerts = 0
    for _ in range(args.reps):
        eng = Engine(plans)
        c0 = time.process_time()
        alerts = sum(len(eng.process(b).alerts) for b in batches) + len(eng.finish().alerts)
        times.append(time.process_time() - c0)
    times.sort()
    print(f"{args.root} {args.which}: {len(lines):,} events, engine CPU min {times[0]:.3f}s "
          f"median {times[len(times) // 2]:.3f}s over {args.reps} passes, {alerts} alerts")


if __name__ == "__main__":
    main()
