"""Scale-out benchmark: the Kafka runner on a consumer group, 1, 2 and 3 processes.

    python benchmarks/scale.py [--events 200000] [--partitions 6] [--processes 1,2,3]
                               [--exactly-once]

Uses CEP_KAFKA_BOOTSTRAP when set, else starts a private broker with scripts/kafka.sh
(and removes it at the end). Produces `--events` synthetic `transactions` events (the
generator of `cep generate`, cached in .cache/bench) to a topic with `--partitions`
partitions, keyed by card (so every card's events are in one task), then measures:

  throughput   per process count k: k runner processes (`python -m service.kafka.runner`)
               in a fresh group read the whole topic; events/s from the first task
               assignment to the group's commit of the topic's end (start-up and group
               join not counted; the rebalances while the k processes join are), with
               the CPU time of the k processes (user + system) beside the wall time
  rebalance    one process reads a backlog; a second joins: the pause of the moved
               tasks, from the first process's revocation to the second's restore
  restore      a process with an empty state_dir restores every task from the
               changelog: records/s over the restore time the runner logs
  takeover     two processes read a backlog, one is killed with SIGKILL: time until
               the survivor has restored the dead one's tasks (static membership:
               `session.timeout.ms` = 6 s is most of it)

On a 2-core machine (the broker shares the cores) throughput flattens at 2 processes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

# the example patterns keyed by card_id, the key the topic is partitioned by
PATTERN_FILES = ("card_testing.cep", "decline_burst.cep")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_times(text: str, needle: str) -> list[float]:
    """Wall-clock times (epoch s) of the log lines containing `needle`."""
    out = []
    for line in text.splitlines():
        m = STAMP.match(line)
        if m and needle in line:
            out.append(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def produce(bootstrap: str, topic: str, path: Path, partitions: int) -> int:
    import orjson
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                  "compression.type": "lz4", "queue.buffering.max.messages": 500_000,
                  "enable.idempotence": True})
    n = 0
    with open(path, "rb") as f:
        for line in f:
            ev = orjson.loads(line)
            key = str(ev.get("card_id") or ev.get("account") or n).encode()
            while True:
                try:
                    p.produce(topic, line.rstrip(b"\n"), key,
                              partition=sum(key) % partitions)
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
    assert p.flush(300) == 0
    return n


class Proc:
    def __init__(self, name: str, work: Path, bootstrap: str, topic: str, group: str,
                 eos: bool) -> None:
        self.name = name
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (work / "patterns").mkdir(exist_ok=True)
        for f in PATTERN_FILES:
            shutil.copy(ROOT / "patterns" / f, work / "patterns" / f)
        self.log = self.dir / "runner.log"
        tag = group
        self.cfg = self.dir / "cep.toml"
        self.cfg.write_text(f"""
patterns_dir = "{work / 'patterns'}"
models_dir = "{ROOT / 'models'}"
state_dir = "{self.dir / 'state'}"
checkpoint_interval_ms = "1s"

[streams.transactions]
topic = "{topic}"
time_field = "ts"
max_out_of_orderness_ms = "0s"
idle_timeout_ms = "30s"
max_future_skew_ms = "1h"

[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"
alert_topic = "alerts-{tag}"
dead_letter_topic = "dlq-{tag}"
changelog_topic = "changelog-{tag}"
transactional_id = "txn-{tag}-{name}"
exactly_once = {str(eos).lower()}
transaction_timeout_ms = "10s"
consumer = {{ "group.instance.id" = "{tag}-{name}", "session.timeout.ms" = "6000" }}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("CEP_KAFKA_BOOTSTRAP", None)
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.kafka.runner", "--config", str(self.cfg)],
                cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(120)


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(0, tp.offset) for tp in got)
    finally:
        c.close()


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.2)


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def throughput(args: argparse.Namespace, work: Path, k: int, n: int) -> dict[str, Any]:
    group = f"scale{k}-{os.getpid()}-{int(time.time())}"
    procs = [Proc(f"p{i}", work / group, args.bootstrap, args.topic, group, args.eos)
             for i in range(k)]
    cpu0 = children_cpu()
    t_launch = time.time()
    for p in procs:
        p.start()
    wait_until(lambda: committed_total(args.bootstrap, group, args.topic,
                                       args.partitions) >= n, 900, f"{k} processes")
    t_done = time.time()
    for p in procs:
        p.stop()
    cpu = children_cpu() - cpu0
    firsts = [t for p in procs for t in log_times(p.text(), "state restored")]
    t_first = min(firsts)
    wall = t_done - t_first
    return {"processes": k, "events": n, "wall_s": round(wall, 2),
            "events_per_s": round(n / wall), "cpu_s": round(cpu, 2),
            "startup_s": round(t_first - t_launch, 2)}


def rebalance_and_restore(args: argparse.Namespace, work: Path, n: int) -> dict[str, Any]:
    group = f"rebal-{os.getpid()}-{int(time.time())}"
    a = Proc("a", work / group, args.bootstrap, args.topic, group, args.eos)
    b = Proc("b", work / group, args.bootstrap, args.topic, group, args.eos)
    a.start()
    wait_until(lambda: committed_total(args.bootstrap, group, args.topic,
                                       args.partitions) >= n // 4, 300, "a quarter read")
    b.start()
    wait_until(lambda: "state restored" in b.text(), 120, "b to get tasks")
    revoked = log_times(a.text(), "revoking")
    b_restored = log_times(b.text(), "state restored")
    pause = b_restored[0] - revoked[0] if revoked and b_restored else None
    # kill -9 of b: the survivor a takes its tasks back
    wait_until(lambda: committed_total(args.bootstrap, group, args.topic,
                                       args.partitions) >= n // 2, 300, "half read")
    before = len(log_times(a.text(), "state restored"))
    t_kill = time.time()
    b.stop(signal.SIGKILL)
    wait_until(lambda: len(log_times(a.text(), "state restored")) > before, 120,
               "a to take b's tasks")
    takeover = log_times(a.text(), "state restored")[before] - t_kill
    wait_until(lambda: committed_total(args.bootstrap, group, args.topic,
                                       args.partitions) >= n, 600, "the end")
    a.stop()
    # restore: a wiped state_dir, every task from the changelog
    shutil.rmtree(a.dir / "state")
    log_len = len(a.text())
    a.start()
    wait_until(lambda: "state restored" in a.text()[log_len:], 300, "the restore")
    a.stop()
    recs = 0
    secs = 0.0
    for m in re.finditer(r"task \d+ restored in ([\d.]+)s \((\d+) changelog record",
                         a.text()[log_len:]):
        secs += float(m.group(1))
        recs += int(m.group(2))
    return {"rebalance_pause_s": None if pause is None else round(pause, 2),
            "takeover_after_kill_s": round(takeover, 2),
            "restore_records": recs, "restore_s": round(secs, 2),
            "restore_records_per_s": round(recs / secs) if secs else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--processes", default="1,2,3")
    ap.add_argument("--exactly-once", dest="eos", action="store_true")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (the processes' logs and state)")
    ap.add_argument("--bootstrap", default=os.environ.get("CEP_KAFKA_BOOTSTRAP"))
    args = ap.parse_args()
    broker = None
    if not args.bootstrap:
        from kafka_broker import KafkaBroker

        print("starting a private broker (scripts/kafka.sh)...", file=sys.stderr)
        broker = KafkaBroker.launch(instance=f"bench-{os.getpid()}", owner_pid=os.getpid())
        args.bootstrap = broker.bootstrap
    work = Path(tempfile.mkdtemp(prefix="cep-scale-"))
    print(f"work directory (logs, state): {work}", file=sys.stderr)
    try:
        from kafka_e2e import create_topic, data_file

        path = data_file(args.events, 2000, 7)
        args.topic = f"scale-{os.getpid()}"
        create_topic(args.bootstrap, args.topic, args.partitions)
        n = produce(args.bootstrap, args.topic, path, args.partitions)
        out: dict[str, Any] = {"events": n, "partitions": args.partitions,
                               "mode": "exactly-once" if args.eos else "at-least-once",
                               "cpus": os.cpu_count(), "throughput": []}
        for k in (int(x) for x in args.processes.split(",")):
            row = throughput(args, work, k, n)
            print(json.dumps(row), file=sys.stderr)
            out["throughput"].append(row)
        out.update(rebalance_and_restore(args, work, n))
        print(json.dumps(out, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        if broker is not None:
            broker.down()


if __name__ == "__main__":
    main()
