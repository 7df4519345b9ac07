"""State benchmark: memory and checkpoint time for many idle keys with one partial
match each, with every key in memory and with a bound on resident keys.

    python benchmarks/state.py [--keys 1000000[,10000000]] [--modes off,on]
        [--max-resident-keys 100000] [--checkpoint-every 100000] [--dir DIR]

For each size K and mode, two fresh processes:
  load     the `impossible_travel` pattern (window 6h) gets one POS purchase for
           each of K cards (events shaped like `cep generate`'s, JSON lines made and
           decoded in batches of 4096, in time order within 10 minutes, so no window
           expires): K live partial matches on K keys. Reports the RSS the state adds
           and the peak RSS, then ONE checkpoint of every key changed since the last
           into a RocksDB store (`cep.state.rocks`, synced write), split into encoding
           (`Engine.checkpoint()`) and the write, and the store's size on disk.
  restore  a new engine restores the K keys from that store (its meta and state
           entries, as the service does): time and RSS.
Modes:
  off      every key in memory (no store attached while loading); one checkpoint of
           all K keys at the end.
  on       `EngineConfig.max_resident_keys` (--max-resident-keys) with the store
           attached (`Engine.use_store`): keys beyond the bound leave memory; a
           checkpoint every --checkpoint-every events as the Kafka runner makes them
           (0: none until the end, so the last checkpoint writes all K keys, spilled
           as bytes until then). The restore leaves all but the bound in the store.
RSS is the process's resident set (VmRSS) after a full GC, minus the RSS of the same
process with the pattern compiled and no state (the input is made batch by batch, not
held); CPU time (process_time) is printed beside wall time; making the input lines is
not timed. The RocksDB directory is deleted afterwards. 10M keys in mode `off` needs
~18 GB: run it only where that fits (`--modes on` for 10M).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCH = 4096
T0 = 1_763_712_000_000
COUNTRIES = [("FR", 46.2, 2.2), ("DE", 51.2, 10.4), ("ES", 40.4, -3.7), ("US", 39.8, -98.6),
             ("JP", 36.2, 138.3), ("BR", -14.2, -51.9), ("IN", 20.6, 78.9)]


def rss_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def lines(k: int, lo: int = 0, hi: int | None = None) -> Iterator[bytes]:
    """One POS purchase per card (cards lo..hi of k), 13 fields like the generator's
    transactions."""
    import orjson

    for i in range(lo, k if hi is None else min(hi, k)):  # all within 10 minutes of T0
        country, lat, lon = COUNTRIES[i % len(COUNTRIES)]
        yield bytes(memoryview(orjson.dumps({  # a copy: see cep/state/codec.py
            "id": f"e{i:010d}", "ts": T0 + i * 600_000 // k,
            "stream": "transactions", "type": "purchase", "card_id": f"card-{i}",
            "user_id": f"user-{i}", "amount": round(5 + (i * 7919 % 20_000) / 100, 2),
            "merchant": f"merch-{i % 4000}", "channel": "pos", "country": country,
            "lat": round(lat + (i % 97) / 100, 4), "lon": round(lon + (i % 89) / 100, 4),
            "home_country": country, "status": "approved",
        })))


def engine(bound: int | None = None) -> Any:
    from cep.cli import compile_paths
    from cep.runtime.engine import Engine, EngineConfig

    plans = compile_paths([str(ROOT / "patterns" / "impossible_travel.cep")])
    if bound is None:
        return Engine(plans)
    return Engine(plans, EngineConfig(max_resident_keys=bound))


def figures(eng: Any) -> tuple[int, int]:
    """(live partial matches, keys with state), through the engine's public snapshot
    (an engine from before `Engine.snapshot`, e.g. a baseline checkout, the old way)."""
    if hasattr(eng, "snapshot"):
        snap = eng.snapshot().patterns
        return sum(p.live_runs for p in snap), sum(p.keys for p in snap)
    rts = eng.runtimes
    return sum(rt.live_runs() for rt in rts), sum(len(rt.states) for rt in rts)


def timed() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(t: tuple[float, float]) -> dict[str, float]:
    return {"wall_s": time.perf_counter() - t[0], "cpu_s": time.process_time() - t[1]}


def add(total: dict[str, float], part: dict[str, float]) -> None:
    for x, v in part.items():
        total[x] = total.get(x, 0.0) + v


def phase_load(k: int, store_dir: Path, bound: int | None, every: int) -> dict[str, Any]:
    import orjson

    from cep.cli import tune_gc
    from cep.state.rocks import RocksStore

    eng = engine(bound)
    store = RocksStore(store_dir)
    if bound is not None:
        eng.use_store(store)
    tune_gc()
    gc.collect()
    base = rss_mb()
    ingest: dict[str, float] = {}
    ckpt: dict[str, float] = {}
    ckpt_max = 0.0
    n_ckpt = 0
    since_ckpt = 0
    for i in range(0, k, BATCH):
        batch = [orjson.loads(x) for x in lines(k, i, i + BATCH)]
        t = timed()
        eng.process(batch)
        add(ingest, since(t))
        since_ckpt += len(batch)
        if bound is not None and every and since_ckpt >= every and i + BATCH < k:
            since_ckpt = 0
            t = timed()
            store.write_batch(eng.checkpoint())
            eng.checkpointed()
            took = since(t)
            add(ckpt, took)
            ckpt_max = max(ckpt_max, took["wall_s"])
            n_ckpt += 1
    del batch
    gc.collect()
    live, keys = figures(eng)
    if hasattr(eng, "snapshot"):
        stats = eng.snapshot().patterns[0].stats
        evicted, loaded = stats.get("keys_evicted", 0), stats.get("keys_loaded", 0)
    else:
        evicted = loaded = 0
    state_mb = rss_mb() - base
    t = timed()
    puts = eng.checkpoint()
    encode = since(t)
    t = timed()
    store.write_batch(puts)
    write = since(t)
    if hasattr(eng, "checkpointed"):
        eng.checkpointed()
    store.close()
    value_bytes = sum(len(v) for v in puts.values() if v is not None)
    disk = sum(p.stat().st_size for p in store_dir.rglob("*") if p.is_file())
    return {
        "keys": keys, "live_runs": live, "ingest": ingest, "state_rss_mb": state_mb,
        "evicted": evicted, "loaded": loaded, "checkpoints": n_ckpt,
        "periodic_checkpoints": ckpt, "periodic_checkpoint_max_wall_s": ckpt_max,
        "bytes_per_key": state_mb * 2**20 / k, "checkpoint_puts": len(puts),
        "checkpoint_encode": encode, "checkpoint_write": write,
        "checkpoint_value_mb": value_bytes / 2**20, "store_disk_mb": disk / 2**20,
        "peak_rss_mb": _peak_mb(),
    }


def phase_restore(store_dir: Path, bound: int | None) -> dict[str, Any]:
    from cep.cli import tune_gc
    from cep.state.rocks import RocksStore

    eng = engine(bound)
    tune_gc()
    gc.collect()
    base = rss_mb()
    store = RocksStore(store_dir, read_only=True)
    if bound is not None:
        eng.use_store(store)
    t = timed()
    # as the service restores (service/kafka/store.py): the meta entry, then the state
    # entries (not the timer entries: the engine skips them)
    stats = eng.restore(chain(store.items(b"m\x00"), store.items(b"s\x00")))
    restore = since(t)
    gc.collect()
    state_mb = rss_mb() - base
    store.close()
    return {"restored": stats, "restore": restore, "state_rss_mb": state_mb,
            "live_runs": figures(eng)[0],
            "peak_rss_mb": _peak_mb()}


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", default="1000000",
                    help="comma-separated sizes, e.g. 1000000,10000000")
    ap.add_argument("--dir", help="where the RocksDB store goes (default: a temporary "
                                  "directory under .cache/bench)")
    ap.add_argument("--modes", default="off,on",
                    help="off: every key in memory; on: --max-resident-keys with the store")
    ap.add_argument("--max-resident-keys", type=int, default=100_000,
                    help="the bound in mode `on` (default 100000)")
    ap.add_argument("--checkpoint-every", type=int, default=100_000,
                    help="mode `on`: a checkpoint every N events (0: only at the end)")
    ap.add_argument("--phase")
    ap.add_argument("--store")
    ap.add_argument("--n", type=int)
    ap.add_argument("--bound", type=int)
    args = ap.parse_args()
    if args.phase == "load":
        print(json.dumps(phase_load(args.n, Path(args.store), args.bound,
                                    args.checkpoint_every)))
        return
    if args.phase == "restore":
        print(json.dumps(phase_restore(Path(args.store), args.bound)))
        return
    sizes = [int(x) for x in args.keys.split(",")]
    parent = Path(args.dir) if args.dir else ROOT / ".cache" / "bench"
    parent.mkdir(parents=True, exist_ok=True)
    print(f"cep state benchmark (python {sys.version.split()[0]}; impossible_travel, one "
          "idle partial match per key; RocksDB checkpoint with a synced write)")
    for k in sizes:
        for mode in args.modes.split(","):
            bound = ["--bound", str(args.max_resident_keys)] if mode == "on" else []
            store = Path(tempfile.mkdtemp(prefix="state-bench-", dir=parent))
            try:
                out = {}
                for phase in ("load", "restore"):
                    res = subprocess.run(
                        [sys.executable, __file__, "--phase", phase, "--store", str(store),
                         "--n", str(k), "--checkpoint-every", str(args.checkpoint_every),
                         *bound],
                        check=True, capture_output=True, text=True,
                        env={**os.environ, "PYTHONHASHSEED": "0"},
                    )
                    out[phase] = json.loads(res.stdout.strip().splitlines()[-1])
            finally:
                shutil.rmtree(store, ignore_errors=True)
            title = ("every key in memory" if mode == "off" else
                     f"max_resident_keys {args.max_resident_keys:,}, a checkpoint every "
                     f"{args.checkpoint_every:,} events" if args.checkpoint_every else
                     f"max_resident_keys {args.max_resident_keys:,}, one checkpoint at the "
                     "end")
            report(k, title, out["load"], out["restore"])


def report(k: int, title: str, load: dict[str, Any], restore: dict[str, Any]) -> None:
    def t(x: dict[str, float]) -> str:
        return f"{x['cpu_s']:.1f} s CPU / {x['wall_s']:.1f} s wall"

    print(f"\n{k:,} keys, {title}: {load['live_runs']:,} live partial matches on "
          f"{load['keys']:,} keys in memory")
    print(f"  ingest                 {t(load['ingest'])} ({k / load['ingest']['cpu_s']:,.0f} "
          f"events/s CPU); {load.get('evicted', 0):,} evictions, {load.get('loaded', 0):,} "
          "loads")
    if load.get("checkpoints"):
        print(f"  periodic checkpoints   {load['checkpoints']}: "
              f"{t(load['periodic_checkpoints'])} in all, the longest "
              f"{load['periodic_checkpoint_max_wall_s']:.1f} s wall")
    print(f"  state in memory        {load['state_rss_mb']:,.0f} MB RSS "
          f"({load['bytes_per_key']:,.0f} bytes per key with one partial match); peak RSS "
          f"{load['peak_rss_mb']:,.0f} MB")
    total = {x: load["checkpoint_encode"][x] + load["checkpoint_write"][x]
             for x in ("cpu_s", "wall_s")}
    print(f"  last checkpoint        {t(total)}: encode {t(load['checkpoint_encode'])}, "
          f"RocksDB write {t(load['checkpoint_write'])}; {load['checkpoint_puts']:,} puts, "
          f"{load['checkpoint_value_mb']:,.0f} MB of values, store on disk "
          f"{load['store_disk_mb']:,.0f} MB")
    print(f"  restore                {t(restore['restore'])}; {restore['live_runs']:,} partial "
          f"matches in memory; state {restore['state_rss_mb']:,.0f} MB RSS; peak RSS "
          f"{restore['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
