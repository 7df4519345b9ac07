"""Scale-out benchmark: the Kafka runner on a consumer group, 1, 2 and 3 processes.

    python benchmarks/scale.py [--events 200000] [--partitions 6] [--processes 1,2,3]
                               [--restore-records 300000] [--value-bytes 200]
                               [--exactly-once] [--timeout 300] [--keep]

Uses CEP_KAFKA_BOOTSTRAP when set, else starts a private broker with scripts/kafka.sh
(and removes it at the end). Produces `--events` synthetic `transactions` events (the
generator of `cep generate`, cached in .cache/bench) to a topic with `--partitions`
partitions, keyed by card (so every card's events are in one task), then measures:

  throughput   per process count k: k runner processes (`python -m service.kafka.runner`)
               in a fresh group read the whole topic; events/s from the first task
               restored to the group's commit of the topic's end (start-up and group
               join not counted; the rebalances while the k processes join are), with
               the CPU time of the k processes (user + system, start-up included)
               beside the wall time. 1 process is the baseline of the same run.
  rebalance    one process reads the topic; a second joins when a quarter is
               committed: the pause of the moved tasks, from the first process's
               revocation to the second's tasks restored
  takeover     then the second is killed with SIGKILL: time from the kill until the
               survivor has restored the dead one's tasks and resumed their partitions
               (static membership: `session.timeout.ms` = 6 s is most of it)
  restore      a process with an empty state_dir restores (a) the state the run left
               in its changelog, (b) a changelog of `--restore-records` records of
               `--value-bytes` bytes spread over the tasks: records/s from its
               assignment to its last task restored (every task restores at once,
               between polls)

Each phase waits at most `--timeout` seconds; on a timeout it says which partition's
committed offset is short and where the processes' logs are (`--keep` keeps them).
The load average at the start and the end is in the output: the machine may be shared.
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
ALL: list[Proc] = []  # every runner process started, stopped at the end whatever happens
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
        ALL.append(self)

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
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """The group's committed offsets summed; -1 while the coordinator cannot say
    (e.g. NOT_COORDINATOR while a fresh broker loads its offsets topic)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return sum(max(0, tp.offset) for tp in got)
    except KafkaException as exc:
        print(f"committed offsets of {group}: {exc.args[0]}; asking again", file=sys.stderr)
        return -1
    finally:
        c.close()


def offsets(bootstrap: str, group: str, topic: str, partitions: int) -> str:
    """Per partition: the group's committed offset / the end (for a timeout's message)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        ends = [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)]
        return ", ".join(f"[{tp.partition}] {tp.offset}/{end}"
                         for tp, end in zip(got, ends, strict=True))
    finally:
        c.close()


def wait_until(cond: Any, timeout: float, what: str, explain: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            detail = f" ({explain()})" if explain is not None else ""
            raise SystemExit(f"timed out after {timeout:.0f}s: {what}{detail}")
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
                                       args.partitions) >= n, args.timeout,
               f"{k} processes: the group's offsets at the end",
               lambda: "committed/end " + offsets(args.bootstrap, group, args.topic,
                                                  args.partitions) + f"; logs in {work / group}")
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


def rebalance_and_takeover(args: argparse.Namespace, work: Path, n: int) -> dict[str, Any]:
    group = f"rebal-{os.getpid()}-{int(time.time())}"
    a = Proc("a", work / group, args.bootstrap, args.topic, group, args.eos)
    b = Proc("b", work / group, args.bootstrap, args.topic, group, args.eos)
    cpu0 = children_cpu()
    t0 = time.time()
    a.start()
    wait_until(lambda: committed_total(args.bootstrap, group, args.topic,
                                       args.partitions) >= n // 4, args.timeout,
               "a quarter read")
    b.start()
    wait_until(lambda: "state restored" in b.text(), args.timeout, "b to get tasks")
    revoked = log_times(a.text(), "revoking")
    b_restored = log_times(b.text(), "state restored")
    pause = b_restored[0] - revoked[0] if revoked and b_restored else None
    # kill -9 of b: the survivor a takes its tasks back
    wait_until(lambda: committed_total(args.bootstrap, group, args.topic,
                                       args.partitions) >= n // 2, args.timeout, "half read")
    before = len(log_times(a.text(), "state restored"))
    t_kill = time.time()
    b.stop(signal.SIGKILL)
    wait_until(lambda: len(log_times(a.text(), "state restored")) > before, args.timeout,
               "a to take b's tasks")
    takeover = log_times(a.text(), "state restored")[before] - t_kill
    wait_until(lambda: committed_total(args.bootstrap, group, args.topic,
                                       args.partitions) >= n, args.timeout, "the end",
               lambda: "committed/end " + offsets(args.bootstrap, group, args.topic,
                                                  args.partitions))
    a.stop()
    out = {"rebalance_pause_s": None if pause is None else round(pause, 2),
           "takeover_after_kill_s": round(takeover, 2),
           "phase_wall_s": round(time.time() - t0, 2),
           "phase_cpu_s": round(children_cpu() - cpu0, 2)}
    # the run's own state: a wiped state_dir, every task from the changelog
    shutil.rmtree(a.dir / "state")
    out["run_state_restore"] = restore_of(a)
    return out


def restore_of(p: Proc) -> dict[str, Any]:
    """Start `p` with an empty state_dir; its restore as its log tells it: changelog
    records read, and the time from its assignment to its last task restored."""
    log_len = len(p.text())
    cpu0 = children_cpu()
    p.start()
    wait_until(lambda: "state restored" in p.text()[log_len:], 900, "the restore")
    p.stop()
    text = p.text()[log_len:]
    recs = sum(int(m.group(1)) for m in re.finditer(
        r"task \d+ restored in [\d.]+s \((\d+) changelog record", text))
    start = log_times(text, "assigned ")
    done = log_times(text, "state restored")
    secs = done[0] - start[0] if start and done else 0.0
    return {"records": recs, "seconds": round(secs, 2),
            "records_per_s": round(recs / secs) if secs else None,
            "process_cpu_s": round(children_cpu() - cpu0, 2)}


def fill_changelog(bootstrap: str, topic: str, partitions: int, records: int,
                   value_bytes: int) -> None:
    """`records` state records spread over the changelog's partitions, a checkpoint
    marker after every 10,000 of a partition (keys outside the engine's prefixes: read
    and written to the store like any state, not loaded into the engine)."""
    from confluent_kafka import Producer

    from service.kafka.store import COMMIT_KEY

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                  "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
    value = os.urandom(value_bytes // 2).hex().encode()
    per = [0] * partitions
    for i in range(records):
        part = i % partitions
        while True:
            try:
                p.produce(topic, value, b"x\x00%d" % i, partition=part)
                per[part] += 1
                if per[part] % 10_000 == 0:
                    p.produce(topic, b"%d" % per[part], COMMIT_KEY, partition=part)
                break
            except BufferError:
                p.poll(0.05)
    for part in range(partitions):
        p.produce(topic, b"end", COMMIT_KEY, partition=part)
    assert p.flush(300) == 0


def restore_rate(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One process with an empty state_dir restores `--restore-records` changelog
    records (`--value-bytes` each) over all tasks."""
    from kafka_e2e import create_topic

    group = f"restore-{os.getpid()}-{int(time.time())}"
    p = Proc("r", work / group, args.bootstrap, args.topic, group, args.eos)
    create_topic(args.bootstrap, f"changelog-{group}", args.partitions)
    fill_changelog(args.bootstrap, f"changelog-{group}", args.partitions,
                   args.restore_records, args.value_bytes)
    out = restore_of(p)
    out["value_bytes"] = args.value_bytes
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--processes", default="1,2,3")
    ap.add_argument("--exactly-once", dest="eos", action="store_true")
    ap.add_argument("--restore-records", type=int, default=300_000,
                    help="changelog records of the restore-rate phase")
    ap.add_argument("--value-bytes", type=int, default=200,
                    help="bytes per changelog record of the restore-rate phase")
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds to wait for each phase's end")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory (the processes' logs and state)")
    ap.add_argument("--bootstrap", default=os.environ.get("CEP_KAFKA_BOOTSTRAP"))
    args = ap.parse_args()
    broker = None
    if not args.bootstrap:
        from kafka_e2e import private_broker

        broker = private_broker()
        args.bootstrap = broker.bootstrap
    load0 = os.getloadavg()  # the machine may be shared: report its load
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
                               "cpus": os.cpu_count(),
                               "load_average_start": [round(x, 2) for x in load0],
                               "throughput": []}
        for k in (int(x) for x in args.processes.split(",")):
            row = throughput(args, work, k, n)
            print(json.dumps(row), file=sys.stderr)
            out["throughput"].append(row)
        out.update(rebalance_and_takeover(args, work, n))
        print(json.dumps({k: v for k, v in out.items() if k != "throughput"}),
              file=sys.stderr)
        out["restore_from_changelog"] = restore_rate(args, work)
        out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(out, indent=2))
    finally:
        for p in ALL:
            p.stop(signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        if broker is not None:
            broker.down()


if __name__ == "__main__":
    main()
