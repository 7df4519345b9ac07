"""Decoding alone, per event: the options for "decode only what is read" (issue 11,
item 3), measured on the events `benchmarks/engine.py` uses.

    python benchmarks/decode.py [--file FILE] [--lines 100000] [--repeat 5]

FILE defaults to the 200,000-event stream of `cep generate` (seed 7, 20,000 keys) in
.cache/bench, generated there on first use as benchmarks/engine.py does.

Options, each over the same lines in batches of 4096, interleaved (round-robin) and
reported as min and median CPU µs/event over the repetitions:
  orjson              what `cep` does: `orjson.loads` per line, the whole event (every
                      option also keeps each event's line by `id()` of its dict, as a
                      decoder that rebuilds alerts from the original bytes would)
  orjson-joined       one `orjson.loads` per batch over the lines joined as an array
  msgspec-six         msgspec decoding into a generated Struct of the fields the six
                      example patterns read (the others skipped), then a dict
                      (`msgspec.structs.asdict`) as the engine reads dicts
  msgspec-six-batch   the same, one decode per batch (a list of Structs)
  msgspec-card        as msgspec-six with the fields of `card_testing` alone
msgspec is not a dependency of `cep`: its options are skipped when it is not
installed (`pip install msgspec` to run them).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
BATCH = 4096
# the top-level fields the six model-free example patterns read (conditions, keys,
# time), and those of card_testing alone
SIX = ("ts", "type", "card_id", "user_id", "session_id", "order_id", "amount", "channel",
       "country", "lat", "lon", "status", "new_device", "new_beneficiary")
CARD = ("ts", "type", "card_id", "amount")


def options(lines: list[bytes]) -> dict[str, Callable[[], None]]:
    n = len(lines)
    loads = orjson.loads

    def plain() -> None:
        for i in range(0, n, BATCH):
            raws: dict[int, bytes] = {}
            evs = []
            for x in lines[i:i + BATCH]:
                d = loads(x)
                evs.append(d)
                raws[id(d)] = x

    def joined() -> None:
        for i in range(0, n, BATCH):
            chunk = lines[i:i + BATCH]
            evs = loads(b"[" + b",".join(chunk) + b"]")
            dict(zip(map(id, evs), chunk, strict=True))

    out: dict[str, Callable[[], None]] = {"orjson": plain, "orjson-joined": joined}
    try:
        import msgspec
    except ImportError:
        return out

    def struct(fields: tuple[str, ...], batch: bool) -> Callable[[], None]:
        cls = msgspec.defstruct("Read", [(f, Any, None) for f in fields], gc=False)
        asdict = msgspec.structs.asdict
        if batch:
            many = msgspec.json.Decoder(list[cls]).decode  # type: ignore[valid-type]

            def run_batch() -> None:
                for i in range(0, n, BATCH):
                    chunk = lines[i:i + BATCH]
                    evs = [asdict(s) for s in many(b"[" + b",".join(chunk) + b"]")]
                    dict(zip(map(id, evs), chunk, strict=True))
            return run_batch
        one = msgspec.json.Decoder(cls).decode

        def run_lines() -> None:
            for i in range(0, n, BATCH):
                raws: dict[int, bytes] = {}
                evs = []
                for x in lines[i:i + BATCH]:
                    d = asdict(one(x)) if x.isascii() else loads(x)
                    evs.append(d)
                    raws[id(d)] = x
        return run_lines

    out["msgspec-six"] = struct(SIX, False)
    out["msgspec-six-batch"] = struct(SIX, True)
    out["msgspec-card"] = struct(CARD, False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", default=None)
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    if args.file is None:
        from engine import data_file  # benchmarks/engine.py: generated once, cached

        args.file = str(data_file(200_000, 20_000, 7))
    lines = Path(args.file).read_bytes().splitlines()[:args.lines]
    opts = options(lines)
    times: dict[str, list[float]] = {k: [] for k in opts}
    for _ in range(args.repeat):
        for name, fn in opts.items():
            c0 = time.process_time()
            fn()
            times[name].append(time.process_time() - c0)
    n = len(lines)
    print(f"{n:,} events of {args.file}, CPU µs/event over {args.repeat} interleaved runs")
    for name, ts in times.items():
        ts.sort()
        print(f"  {name:<18} min {ts[0] / n * 1e6:6.3f}   median {ts[len(ts) // 2] / n * 1e6:6.3f}")


if __name__ == "__main__":
    main()
