"""End-to-end Kafka benchmark: the runner against a real broker.

    python benchmarks/kafka_e2e.py [--events 1000000] [--patterns patterns/card_testing.cep]
                                   [--rate 10000] [--latency-seconds 20] [--partitions 1]

Uses CEP_KAFKA_BOOTSTRAP when set, else starts a private broker with scripts/kafka.sh
(and removes it at the end). Produces the `transactions` stream of the synthetic fraud
generator (`cep generate`; cached in .cache/bench) to one topic, then runs each phase in
a fresh process:

  raw      consume(batch) + orjson decode of the whole topic: the ceiling
  engine   the same events through Engine.process in memory (no Kafka): the engine's share
  alo      the runner, at-least-once: sustained events/s from first to last record
  eos      the runner, exactly-once (transactions, changelog): the same
  latency  the runner (at-least-once, max out-of-orderness 0) while a producer sends a
           card-testing workload at a fixed rate with event time = wall clock; event-to-
           alert latency = the alert's arrival at a consumer minus the completing event's
           send time (p50 / p99 / max), after `--warmup-seconds` at the same rate (a
           broker that has just started needs a while: the full run warms it up with the
           phases before; alone, give `--phases latency --warmup-seconds 60`)

Throughput phases time the runner from its first consumed record to its last one (its
start-up, group join and state restore are not counted; checkpoints during the run are,
the final one at shutdown is reported apart as `final_checkpoint_s`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def data_file(n: int, keys: int, seed: int) -> Path:
    """`n` events of the synthetic `transactions` stream (purchases and transfers, with
    the generator's injected card-testing and other incidents), in time order."""
    path = CACHE / f"kafka-transactions-{n}-{keys}-{seed}.jsonl"
    if not path.exists():
        from cep.synth import generate, write_jsonl

        CACHE.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        events = [e for e in generate(int(n / 0.6) + 1000, seed=seed, n_keys=keys)
                  if e.get("stream") == "transactions"]
        if len(events) < n:
            raise SystemExit(f"the generator gave {len(events)} transactions, wanted {n}")
        write_jsonl(tmp, events[:n])
        tmp.rename(path)
        print(f"generated {path.name} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return path


# ------------------------------------------------------------------ broker and topics


def admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def private_broker() -> Any:
    """A broker of this benchmark's own (scripts/kafka.sh; `tests/kafka_broker.py`),
    for runs without CEP_KAFKA_BOOTSTRAP; the caller stops it with `.down()`."""
    sys.path.insert(0, str(ROOT / "tests"))
    from kafka_broker import KafkaBroker

    print("starting a private broker (scripts/kafka.sh)...", file=sys.stderr)
    return KafkaBroker.launch(instance=f"bench-{os.getpid()}", owner_pid=os.getpid())


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from service.kafka.io import ensure_topics

    ensure_topics(admin(bootstrap), [name], partitions=partitions)


def produce_file(bootstrap: str, topic: str, path: Path, partitions: int) -> float:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                  "compression.type": "lz4", "queue.buffering.max.messages": 500_000,
                  "enable.idempotence": True})
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            kw = {"partition": n % partitions} if partitions > 1 else {}
            while True:
                try:
                    p.produce(topic, line, **kw)
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
    assert p.flush(300) == 0
    return n / (time.perf_counter() - t0)


def settings_for(args: argparse.Namespace, state: Path, *, eos: bool, topic: str,
                 poll_ms: int = 100) -> Any:
    from service.config import KafkaConfig, Settings, StreamConfig

    tag = topic.rsplit("-", 1)[-1]
    return Settings(
        streams={"transactions": StreamConfig(topic=topic, time_field="ts",
                                              max_out_of_orderness_ms=0,
                                              idle_timeout_ms=30_000,
                                              max_future_skew_ms=3_600_000)},
        default_stream="transactions",
        kafka=KafkaConfig(
            bootstrap_servers=args.bootstrap, group_id=f"bench-{tag}-{args.phase}",
            alert_topic=f"bench-alerts-{tag}-{args.phase}",
            dead_letter_topic=f"bench-dlq-{tag}-{args.phase}", exactly_once=eos,
            transactional_id=f"bench-{tag}-{args.phase}",
            changelog_topic=f"bench-changelog-{tag}-{args.phase}",
            batch_size=args.batch, poll_timeout_ms=poll_ms,
        ),
        patterns_dir=Path(args.patterns), models_dir=ROOT / "models",
        state_dir=state, checkpoint_interval_ms=args.checkpoint_ms,
    )


# ------------------------------------------------------------------ phases (own process)


def phase_raw(args: argparse.Namespace) -> dict[str, Any]:
    import orjson
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"raw-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "queued.min.messages": 500_000})  # as the runner's consumer
    c.subscribe([args.topic])
    loads = orjson.loads
    n = 0
    t0 = 0.0
    deadline = time.monotonic() + 600
    while n < args.n and time.monotonic() < deadline:
        msgs = c.consume(args.batch, 1.0)
        if msgs and not t0:
            t0 = time.perf_counter()
        for m in msgs:
            if m.error() is None:
                loads(m.value())  # type: ignore[arg-type]
                n += 1
    dt = time.perf_counter() - t0
    c.close()
    return {"events": n, "seconds": dt, "events_per_s": n / dt, "peak_rss_mb": peak_rss_mb()}


def phase_engine(args: argparse.Namespace) -> dict[str, Any]:
    import orjson

    from service.kafka.engine_factory import engine_from_settings

    s = settings_for(args, Path("unused"), eos=False, topic=args.topic)
    engine = engine_from_settings(s)
    lines = Path(args.file).read_bytes().splitlines()[: args.n]
    alerts = 0
    t0 = time.perf_counter()
    for i in range(0, len(lines), args.batch):
        batch = [orjson.loads(x) for x in lines[i:i + args.batch]]
        alerts += len(engine.process(batch, stream="transactions", partition=("t", 0)).alerts)
    dt = time.perf_counter() - t0
    return {"events": len(lines), "seconds": dt, "events_per_s": len(lines) / dt,
            "alerts": alerts, "peak_rss_mb": peak_rss_mb()}


def phase_runner(args: argparse.Namespace, eos: bool) -> dict[str, Any]:
    from service.control import Control
    from service.kafka.engine_factory import engine_from_settings
    from service.kafka.runner import KafkaRunner

    with tempfile.TemporaryDirectory(prefix="cep-bench-") as tmp:
        s = settings_for(args, Path(tmp) / "state", eos=eos, topic=args.topic)
        engine = engine_from_settings(s)
        stop, ready = threading.Event(), threading.Event()
        runner = KafkaRunner(s, engine, Control(), None, stop, ready)
        marks: dict[str, float] = {}

        def watch() -> None:
            while not stop.is_set():
                done = sum(list(runner.positions.values()))
                if done and "first" not in marks:
                    marks["first"] = time.perf_counter()
                if done >= args.n:
                    marks["last"] = time.perf_counter()
                    stop.set()
                    return
                time.sleep(0.02)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        t_start = time.perf_counter()
        runner.run()
        t_end = time.perf_counter()
        dt = marks["last"] - marks["first"]
        return {
            "events": runner.stats["records_in"], "seconds": dt,
            "events_per_s": runner.stats["records_in"] / dt,
            "alerts": runner.stats["alerts_out"], "checkpoints": runner.stats["checkpoints"],
            "dead_letters": sum(v for k, v in runner.stats.items()
                                if k.startswith("dead_letters.")),
            "final_checkpoint_s": t_end - marks["last"],
            "startup_s": marks["first"] - t_start, "peak_rss_mb": peak_rss_mb(),
        }


LATENCY_PATTERN = """
pattern card_testing {
  from transactions
  key card_id
  within 10m
  match
    tiny{3,} where type == "purchase" and amount < 2.00
    then big where type == "purchase" and amount > 100
  emit severity high { card = key, attempts = count(tiny) }
}
"""


def phase_latency(args: argparse.Namespace) -> dict[str, Any]:
    """The runner in a child process; here: a producer at a fixed rate and an alert
    consumer, each in its own thread."""
    import orjson
    from confluent_kafka import Consumer, Producer

    topic = args.topic
    tag = topic.rsplit("-", 1)[-1]
    tmp = Path(tempfile.mkdtemp(prefix="cep-bench-lat-"))
    (tmp / "p").mkdir()
    (tmp / "p" / "card.cep").write_text(LATENCY_PATTERN)
    alerts_topic = f"bench-alerts-{tag}-latency"
    cfg = tmp / "cep.toml"
    cfg.write_text(f"""
patterns_dir = "{tmp / 'p'}"
models_dir = "{tmp / 'none'}"
state_dir = "{tmp / 'state'}"
checkpoint_interval_ms = 1000
[streams.transactions]
topic = "{topic}"
max_out_of_orderness_ms = 0
idle_timeout_ms = "30s"
[kafka]
bootstrap_servers = "{args.bootstrap}"
group_id = "bench-{tag}-latency"
alert_topic = "{alerts_topic}"
dead_letter_topic = "bench-dlq-{tag}-latency"
poll_timeout_ms = {args.poll_ms}
batch_size = {args.batch}
""")
    create_topic(args.bootstrap, alerts_topic, 1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CEP_KAFKA_BOOTSTRAP", None)
    log = open(tmp / "runner.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "service.kafka.runner", "--config", str(cfg),
                             "--log-level", "INFO"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    latencies: list[float] = []
    detected: list[float] = []  # detected_at (the runner's wall clock) - sent
    stop = threading.Event()
    consumer_ready = threading.Event()
    sent = {"n": 0}
    measure_from = [float("inf")]

    def consume_alerts() -> None:
        c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"lat-{time.time_ns()}",
                      "auto.offset.reset": "earliest", "fetch.wait.max.ms": 5})
        c.subscribe([alerts_topic], on_assign=lambda c, ps: consumer_ready.set())
        while not stop.is_set():
            m = c.poll(0.05)  # as soon as one alert is there (consume(n) would wait for n)
            if m is not None:
                if m.error() is not None:
                    continue
                now = time.time()
                rec = orjson.loads(m.value())  # type: ignore[arg-type]
                sent_at = max(e["sent"] for evs in rec["events"].values() for e in evs)
                if sent_at < measure_from[0]:
                    continue  # warm-up (a fresh broker's JVM, the runner's caches)
                latencies.append((now - sent_at) * 1000)
                det = datetime.fromisoformat(rec["detected_at"].replace("Z", "+00:00"))
                detected.append((det.timestamp() - sent_at) * 1000)
        c.close()

    t = threading.Thread(target=consume_alerts, daemon=True)
    t.start()
    # runner start-up and group join; the alert consumer's too
    deadline = time.monotonic() + 120
    while " assigned " not in (tmp / "runner.log").read_text(errors="replace"):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("the runner did not start:\n"
                             + (tmp / "runner.log").read_text(errors="replace")[-3000:])
        time.sleep(0.2)
    while not consumer_ready.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)
    p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 1})
    rng = random.Random(3)
    t0 = time.monotonic()
    warm = int(args.rate * args.warmup_seconds)
    total = warm + int(args.rate * args.latency_seconds)
    incident_every = 100  # one card-testing incident (4 events) per 100 events
    i = 0
    card = 0
    while i < total:
        due = t0 + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.time()
        if i == warm:
            measure_from[0] = now
        if i % incident_every < 4:
            if i % incident_every == 0:
                card += 1
            k = i % incident_every
            ev = {"id": f"e{i}", "ts": int(now * 1000), "sent": now, "type": "purchase",
                  "card_id": f"victim-{card}", "amount": 1.0 if k < 3 else 900.0}
        else:
            ev = {"id": f"e{i}", "ts": int(now * 1000), "sent": now, "type": "purchase",
                  "card_id": f"card-{rng.randrange(100_000)}", "amount": 30.0}
        p.produce(topic, orjson.dumps(ev))
        i += 1
        if i % 100 == 0:
            p.poll(0)
    p.flush(30)
    sent["n"] = i
    achieved = i / (time.monotonic() - t0)
    time.sleep(2)
    stop.set()
    t.join(5)
    proc.terminate()
    proc.wait(60)
    log.close()
    if proc.returncode != 0:
        print((tmp / "runner.log").read_text(errors="replace")[-3000:], file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    quarter = max(1, len(latencies) // 4)
    first_q = sorted(latencies[:quarter])[quarter // 2] if latencies else float("nan")
    last_q = sorted(latencies[-quarter:])[quarter // 2] if latencies else float("nan")
    lat = sorted(latencies)

    def q(x: float) -> float:
        return lat[min(len(lat) - 1, int(x * len(lat)))] if lat else float("nan")

    return {"events": i - warm, "rate": achieved, "alerts": len(lat), "p50_ms": q(0.50),
            "p99_ms": q(0.99), "max_ms": lat[-1] if lat else float("nan"),
            "expected_alerts": (total - warm) // incident_every,
            "p50_first_quarter_ms": first_q, "p50_last_quarter_ms": last_q,
            "detect_p50_ms": sorted(detected)[len(detected) // 2] if detected else None,
            "detect_p99_ms": sorted(detected)[int(len(detected) * 0.99)] if detected else None}


# ------------------------------------------------------------------ driver


def run_phase(args: argparse.Namespace, phase: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", phase, "--bootstrap", args.bootstrap,
           "--topic", args.topic, "--n", str(args.n), "--file", str(args.file),
           "--patterns", args.patterns, "--batch", str(args.batch),
           "--checkpoint-ms", str(args.checkpoint_ms), "--rate", str(args.rate),
           "--latency-seconds", str(args.latency_seconds), "--poll-ms", str(args.poll_ms),
           "--warmup-seconds", str(args.warmup_seconds)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "0"})
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--patterns", default=str(ROOT / "patterns" / "card_testing.cep"),
                    help="pattern file or directory (default: card_testing)")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--checkpoint-ms", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=10_000, help="latency phase: events/s")
    ap.add_argument("--latency-seconds", type=float, default=20)
    ap.add_argument("--warmup-seconds", type=float, default=10,
                    help="latency phase: send at the rate this long before measuring")
    ap.add_argument("--poll-ms", type=int, default=5,
                    help="latency phase: kafka.poll_timeout_ms (how long a batch may wait)")
    ap.add_argument("--phases", default="raw,engine,alo,eos,latency")
    ap.add_argument("--bootstrap", default=os.environ.get("CEP_KAFKA_BOOTSTRAP"))
    # internal: one phase in this process
    ap.add_argument("--phase")
    ap.add_argument("--topic")
    ap.add_argument("--n", type=int)
    ap.add_argument("--file")
    args = ap.parse_args()
    if args.phase:
        fn = {"raw": phase_raw, "engine": phase_engine,
              "alo": lambda a: phase_runner(a, False), "eos": lambda a: phase_runner(a, True),
              "latency": phase_latency}[args.phase]
        print(json.dumps(fn(args)))
        return

    broker = None
    if not args.bootstrap:
        broker = private_broker()
        args.bootstrap = broker.bootstrap
    try:
        path = data_file(args.events, args.keys, args.seed)
        args.file = str(path)
        args.n = args.events
        tag = f"{os.getpid()}{int(time.time()) % 100000}"
        args.topic = f"bench-events-{tag}"
        phases = args.phases.split(",")
        results: dict[str, dict[str, Any]] = {}
        if set(phases) & {"raw", "alo", "eos"}:
            create_topic(args.bootstrap, args.topic, args.partitions)
            rate = produce_file(args.bootstrap, args.topic, path, args.partitions)
            print(f"produced {args.events:,} events to {args.topic} ({rate:,.0f}/s)",
                  file=sys.stderr)
        for phase in phases:
            if phase == "latency":
                lat_args = argparse.Namespace(**vars(args))
                lat_args.topic = f"bench-latency-{tag}"
                create_topic(args.bootstrap, lat_args.topic, 1)
                results[phase] = run_phase(lat_args, phase)
            else:
                results[phase] = run_phase(args, phase)
            print(f"  {phase}: {json.dumps(results[phase])}", file=sys.stderr)
        report(args, results)
    finally:
        if broker is not None:
            broker.down()


def report(args: argparse.Namespace, r: dict[str, dict[str, Any]]) -> None:
    print(f"\ncep Kafka end-to-end benchmark: {args.events:,} events "
          f"({Path(args.patterns).name}), {args.partitions} partition(s), batch {args.batch}, "
          f"checkpoint every {args.checkpoint_ms} ms (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpu(s) on the box)")
    print(f"{'phase':<28}{'events/s':>12}{'seconds':>10}{'alerts':>9}{'vs ceiling':>12}")
    ceiling = r.get("raw", {}).get("events_per_s")
    names = {"raw": "raw consume + decode", "engine": "engine only (no Kafka)",
             "alo": "runner at-least-once", "eos": "runner exactly-once"}
    for key in ("raw", "engine", "alo", "eos"):
        if key not in r:
            continue
        x = r[key]
        ratio = f"{x['events_per_s'] / ceiling:.2f}" if ceiling else "-"
        print(f"{names[key]:<28}{x['events_per_s']:>12,.0f}{x['seconds']:>10.2f}"
              f"{x.get('alerts', 0):>9,}{ratio:>12}")
    if "latency" in r:
        x = r["latency"]
        print(f"\nevent-to-alert latency at {x['rate']:,.0f} events/s (at-least-once, max "
              f"out-of-orderness 0, poll timeout {args.poll_ms} ms): p50 {x['p50_ms']:.1f} ms, "
              f"p99 {x['p99_ms']:.1f} ms, max {x['max_ms']:.1f} ms over {x['alerts']} alerts "
              f"(expected {x['expected_alerts']}); of which sent -> detected (the runner's "
              f"clock): p50 {x['detect_p50_ms']:.1f} ms, p99 {x['detect_p99_ms']:.1f} ms")


if __name__ == "__main__":
    main()
