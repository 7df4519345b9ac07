"""Helpers for the Kafka runner's integration tests: configs, producing test events,
reading topics to their end, and running the runner in a thread or a subprocess."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from cep.runtime.engine import Alert, Engine
from service.config import Settings, load_settings
from service.control import Control
from service.kafka.engine_factory import engine_from_settings
from service.kafka.runner import KafkaRunner

REPO = Path(__file__).resolve().parents[2]
MINUTE = 60_000
# event times in the past, far from the wall clock (no future_timestamp, no idle drift)
BASE_TS = 1_700_000_000_000

PATTERNS = """
pattern card_testing {
  from transactions
  key card_id
  within 10m
  match
    tiny{3,} where type == "purchase" and amount < 2.00
    then big where type == "purchase" and amount > 100
  emit severity high { card = key, attempts = count(tiny), amount = big.amount }
}

pattern unpaid_order {
  from transactions
  key order_id
  match
    created where type == "order_created"
    then not paid where type == "payment_received" within 15m
  emit to "ALERTS2" { order = key }
}
"""


def write_config(
    tmp: Path,
    bootstrap: str,
    topic: str,
    *,
    exactly_once: bool = False,
    patterns: str = PATTERNS,
    alert_topic: str | None = None,
    second_alert_topic: str | None = None,
    group: str | None = None,
    idle: str = "10m",
    ooo: str = "0s",
    checkpoint: str = "300ms",
    extra_kafka: str = "",
    consumer: dict[str, str] | None = None,
) -> Path:
    """A cep.toml for one stream `transactions` read from `topic`; returns its path."""
    tag = topic.rsplit("-", 1)[-1]
    pdir = tmp / "patterns"
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "test.cep").write_text(
        patterns.replace("ALERTS2", second_alert_topic or f"alerts2-{tag}"))
    cons = consumer or {}
    cons_toml = ", ".join(f'"{k}" = "{v}"' for k, v in cons.items())
    cfg = tmp / "cep.toml"
    cfg.write_text(f"""
patterns_dir = "{pdir}"
models_dir = "{tmp / 'no-models'}"
state_dir = "{tmp / 'state'}"
checkpoint_interval_ms = "{checkpoint}"

[streams.transactions]
topic = "{topic}"
time_field = "ts"
max_out_of_orderness_ms = "{ooo}"
idle_timeout_ms = "{idle}"
max_future_skew_ms = "1h"

[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group or 'g-' + tag}"
alert_topic = "{alert_topic or 'alerts-' + tag}"
dead_letter_topic = "dlq-{tag}"
changelog_topic = "changelog-{tag}"
transactional_id = "txn-{tag}"
exactly_once = {str(exactly_once).lower()}
batch_size = 500
poll_timeout_ms = 50
tick_interval_ms = "100ms"
consumer = {{ {cons_toml} }}
{extra_kafka}
""")
    return cfg


def settings_of(cfg: Path) -> Settings:
    return load_settings(cfg)


def produce(
    bootstrap: str,
    topic: str,
    events: Iterable[dict[str, Any] | bytes],
    *,
    key_field: str | None = None,
    partition: int | None = None,
    partitions: int | None = None,
) -> int:
    """Produce events in order (dicts as JSON, bytes as they are). With `partitions`,
    events go to partition hash(key) % partitions (deterministic co-partitioning)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    n = 0
    for ev in events:
        value = ev if isinstance(ev, bytes) else orjson.dumps(ev)
        key = None
        if key_field is not None and isinstance(ev, dict) and ev.get(key_field) is not None:
            key = str(ev[key_field]).encode()
        kw: dict[str, Any] = {}
        part = partition
        if partitions is not None:
            part = 0 if key is None else sum(key) % partitions
        if part is not None:
            kw["partition"] = part
        p.produce(topic, value, key, **kw)
        n += 1
        if n % 5000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    return n


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        assert self.value is not None
        return orjson.loads(self.value)


def read_topic(
    bootstrap: str, topic: str, *, committed_only: bool = True, timeout: float = 30.0
) -> list[Record]:
    """Every record of `topic` up to its current end (read_committed by default)."""
    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed" if committed_only else "read_uncommitted",
    })
    try:
        md = c.list_topics(topic, timeout=10).topics.get(topic)
        if md is None or md.error is not None:
            return []
        ends = {}
        for p in md.partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            if hi > lo:
                ends[p] = hi
        if not ends:
            return []
        c.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        done: set[int] = set()
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: partitions {sorted(done)} of {ends}")
            for m in c.consume(1000, 0.2):
                if m.error():
                    continue
                hdrs = {k: (v or b"").decode() for k, v in (m.headers() or [])}
                out.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                  hdrs))
            for p, hi in ends.items():
                if c.position([TopicPartition(topic, p)])[0].offset >= hi:
                    done.add(p)
        return out
    finally:
        c.close()


def wait_for(cond: Any, timeout: float = 30.0, interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or cond}")
        time.sleep(interval)


def end_offsets(bootstrap: str, topic: str, partitions: int) -> list[int]:
    """The high watermark of each partition of `topic`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "end-offsets"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in range(partitions)]
    finally:
        c.close()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in got]
    finally:
        c.close()


# ------------------------------------------------------------------ running the runner


class RunnerThread:
    """run the runner in a thread of this process (engine built from the config)."""

    def __init__(self, cfg: Path, engine: Engine | None = None) -> None:
        self.settings = settings_of(cfg)
        self.engine = engine or engine_from_settings(self.settings)
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.alerts: list[Alert] = []
        self.error: BaseException | None = None
        self.runner = KafkaRunner(self.settings, self.engine, Control(), self.alerts.extend,
                                  self.stop, self.ready)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self) -> RunnerThread:
        self.thread.start()
        if not self.ready.wait(60):
            self.stop.set()
            raise TimeoutError(f"runner not ready: {self.error}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive(), "runner did not stop"
        if self.error is not None:
            raise self.error

    def wait_consumed(self, topic: str, total: int, timeout: float = 60.0) -> None:
        """Until the runner has read `total` records of `topic` (all partitions)."""
        def done() -> bool:
            pos = sum(off for (t, _), off in list(self.runner.positions.items()) if t == topic)
            return pos >= total
        wait_for(done, timeout, what=f"{total} records of {topic} consumed")

    def wait_checkpointed(self, timeout: float = 30.0) -> None:
        """Until everything consumed and produced so far is in a checkpoint."""
        r = self.runner
        wait_for(lambda: r.stats["checkpoints"] and not r.consumed_since
                 and not r.produced_since, timeout, what="a checkpoint")


class RunnerProcess:
    """`python -m service.kafka.runner --config CFG` in a subprocess."""

    def __init__(self, cfg: Path, log: Path) -> None:
        self.cfg = cfg
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("CEP_KAFKA_BOOTSTRAP", None)  # the config file says where
        with open(self.log, "ab") as f:
            f.write(b"\n---- start ----\n")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.kafka.runner", "--config", str(self.cfg)],
                cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the current process has its partitions (its signal handlers are set)."""
        wait_for(lambda: " assigned " in self.log_text().rsplit("---- start ----", 1)[-1],
                 timeout, what="the runner process to get its partitions")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def alert_ids(records: Sequence[Record]) -> list[str]:
    return [r.json()["alert_id"] for r in records]


def workload(n: int, seed: int = 11, *, t0: int = BASE_TS, tag: str = ""
             ) -> list[dict[str, Any]]:
    """Card purchases (tiny, big, normal: card_testing incidents) and orders with and
    without payment (unpaid_order), one event every 500 ms of event time, in time
    order. `tag` keeps ids and order ids of several workloads apart."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    orders: list[str] = []
    for i in range(n):
        ts = t0 + i * 500
        r = rng.random()
        card = f"card-{rng.randrange(25)}"
        if r < 0.35:
            ev = {"type": "purchase", "card_id": card, "amount": 1.0}
        elif r < 0.42:
            ev = {"type": "purchase", "card_id": card, "amount": 700.0}
        elif r < 0.80:
            ev = {"type": "purchase", "card_id": card, "amount": 30.0}
        elif r < 0.90 or not orders:
            orders.append(f"o{tag}-{i}")
            ev = {"type": "order_created", "order_id": orders[-1]}
        else:
            ev = {"type": "payment_received",
                  "order_id": orders.pop(rng.randrange(len(orders)))}
        out.append({"id": f"e{tag}{i}", "ts": ts, **ev})
    return out
