"""The cost of a repartition topic (docs/scale-out.md, "Repartitioning").

    python benchmarks/repartition.py [--events 200000] [--partitions 6] [--modes alo,eos]

Uses CEP_KAFKA_BOOTSTRAP when set, else starts a private broker with scripts/kafka.sh
(and removes it at the end). Produces `--events` synthetic `transactions` events (the
generator of `cep generate`, cached in .cache/bench) twice, to a topic partitioned by
`card_id` and to one round-robin over the partitions, and runs one runner process per
case over a whole topic, `card_testing` (keyed by `card_id`) in both:

  direct   the card-keyed topic, no partition_key declared: the pattern reads the
           input topic (the baseline)
  hop      the round-robin topic, `partition_key = ""` (keyless): the pattern reads
           through `<group>-transactions-by-card_id-repartition`; every event is
           forwarded once and read twice

Per case: input events/s from the first record read to the last hop record read (the
direct case: to the last input record), with the CPU time of the process (user +
system) beside the wall time, and the alerts (the same in both cases: the check that
the hop changes nothing but the cost).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kafka_e2e import (  # noqa: E402
    create_topic,
    data_file,
    private_broker,
    produce_file,
)


def produce_by_card(bootstrap: str, topic: str, path: Path, partitions: int) -> None:
    """The file's events to `topic`, partition = the hop's partition of `card_id`."""
    import orjson
    from confluent_kafka import Producer

    from service.kafka.repartition import partition_for

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                  "compression.type": "lz4", "queue.buffering.max.messages": 500_000,
                  "enable.idempotence": True})
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            card = orjson.loads(line).get("card_id")
            part = 0 if card is None else partition_for(orjson.dumps(card), partitions)
            while True:
                try:
                    p.produce(topic, line, partition=part)
                    break
                except BufferError:
                    p.poll(0.05)
    assert p.flush(300) == 0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """One runner over the topic, in this process."""
    from service.config import KafkaConfig, Settings, StreamConfig
    from service.control import Control
    from service.kafka.engine_factory import engine_from_settings
    from service.kafka.runner import KafkaRunner

    hop = args.case == "hop"
    tag = f"{args.topic.rsplit('-', 1)[-1]}-{args.case}-{args.mode}"
    with tempfile.TemporaryDirectory(prefix="cep-bench-") as tmp:
        s = Settings(
            streams={"transactions": StreamConfig(
                topic=args.topic, time_field="ts", max_out_of_orderness_ms=0,
                idle_timeout_ms=30_000, max_future_skew_ms=3_600_000,
                partition_key="" if hop else None)},
            default_stream="transactions",
            kafka=KafkaConfig(
                bootstrap_servers=args.bootstrap, group_id=f"bench-{tag}",
                alert_topic=f"bench-alerts-{tag}", dead_letter_topic=f"bench-dlq-{tag}",
                exactly_once=args.mode == "eos", transactional_id=f"bench-{tag}",
                changelog_topic=f"bench-changelog-{tag}", batch_size=2000),
            patterns_dir=ROOT / "patterns" / "card_testing.cep", models_dir=ROOT / "models",
            state_dir=Path(tmp) / "state", checkpoint_interval_ms=1000)
        engine = engine_from_settings(s)
        stop, ready = threading.Event(), threading.Event()
        runner = KafkaRunner(s, engine, Control(), None, stop, ready)
        want = args.n * (2 if hop else 1)  # input records, and as many hop records
        marks: dict[str, float] = {}

        def watch() -> None:
            while not stop.is_set():
                done = runner.stats["records_in"]
                if done and "first" not in marks:
                    marks["first"], marks["cpu0"] = time.perf_counter(), cpu_s()
                if done >= want:
                    marks["last"], marks["cpu1"] = time.perf_counter(), cpu_s()
                    stop.set()
                    return
                time.sleep(0.02)

        threading.Thread(target=watch, daemon=True).start()
        runner.run()
        dt = marks["last"] - marks["first"]
        return {"case": args.case, "mode": args.mode, "events": args.n, "seconds": dt,
                "events_per_s": args.n / dt, "cpu_s": marks["cpu1"] - marks["cpu0"],
                "records_read": runner.stats["records_in"],
                "forwarded": runner.forwarder.forwarded, "alerts": runner.stats["alerts_out"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--modes", default="alo,eos")
    ap.add_argument("--bootstrap", default=os.environ.get("CEP_KAFKA_BOOTSTRAP"))
    ap.add_argument("--case")  # internal: one case in this process
    ap.add_argument("--mode")
    ap.add_argument("--topic")
    ap.add_argument("--n", type=int)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return
    broker = None
    if not args.bootstrap:
        broker = private_broker()
        args.bootstrap = broker.bootstrap
    try:
        path = data_file(args.events, args.keys, args.seed)
        tag = f"{os.getpid()}{int(time.time()) % 100000}"
        topics = {"direct": f"bench-rp-keyed-{tag}", "hop": f"bench-rp-rr-{tag}"}
        for t in topics.values():
            create_topic(args.bootstrap, t, args.partitions)
        produce_by_card(args.bootstrap, topics["direct"], path, args.partitions)
        produce_file(args.bootstrap, topics["hop"], path, args.partitions)
        print(f"produced {args.events:,} events to {', '.join(topics.values())}",
              file=sys.stderr)
        rows = []
        for mode in args.modes.split(","):
            for case in ("direct", "hop"):
                cmd = [sys.executable, __file__, "--case", case, "--mode", mode,
                       "--bootstrap", args.bootstrap, "--topic", topics[case],
                       "--n", str(args.events)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                     env={**os.environ, "PYTHONHASHSEED": "0"})
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"  {json.dumps(rows[-1])}", file=sys.stderr)
        print(f"\nrepartition cost: {args.events:,} events, {args.partitions} partitions, "
              "card_testing, one process")
        print(f"{'mode':5} {'case':7} {'events/s':>10} {'wall s':>7} {'cpu s':>7} "
              f"{'cpu/wall':>8} {'read':>9} {'alerts':>7}")
        for r in rows:
            print(f"{r['mode']:5} {r['case']:7} {r['events_per_s']:>10,.0f} "
                  f"{r['seconds']:>7.1f} {r['cpu_s']:>7.1f} {r['cpu_s'] / r['seconds']:>8.2f} "
                  f"{r['records_read']:>9,} {r['alerts']:>7,}")
    finally:
        if broker is not None:
            broker.down()


if __name__ == "__main__":
    main()
