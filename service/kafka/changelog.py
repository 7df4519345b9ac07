"""Exactly-once mode: the compacted changelog topic and catching RocksDB up with it.

The changelog is the durable copy of the state store (one partition, compacted,
written only inside our transactions). RocksDB is a local cache of it: it records the
changelog offset it has reached (`l\\0changelog`). On start (after `init_transactions`,
which aborts a transaction a crashed predecessor left open, so the changelog has no
open transaction left), and after any checkpoint that did not complete:

- store position P and the changelog ends at P (or holds only transaction markers
  after P): nothing to do;
- the changelog has committed records after P: apply them in order (a crash between
  the Kafka commit and the RocksDB write, or a commit whose outcome was unknown);
- no position (new, lost or corrupt state directory), or P is before the changelog's
  first offset: clear the store and replay the whole changelog;
- the changelog is empty but the store holds engine state (switching from
  at-least-once, or the topic was recreated): keep the store and write it all to the
  changelog in the first transaction (`seed_snapshot`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cep.state.store import StateStore
from service.kafka.checkpoint import KafkaRunnerError
from service.kafka.store import (
    CHANGELOG_POS_KEY,
    changelog_position,
    clear_store,
    has_engine_state,
)

log = logging.getLogger("cep.kafka")

CHANGELOG_CONFIG = {
    "cleanup.policy": "compact",
    # keep tombstones long enough for a lagging store to see them (1 day)
    "delete.retention.ms": "86400000",
    "min.compaction.lag.ms": "60000",
}


@dataclass
class Recovery:
    mode: str  # up_to_date | caught_up | rebuilt | seed | empty
    records: int = 0
    start: int = 0
    end: int = 0
    seconds: float = 0.0
    seed_snapshot: bool = False


def recover_store(
    store: StateStore,
    consumer_conf: dict[str, Any],
    topic: str,
    *,
    timeout_s: float = 300.0,
    batch: int = 10_000,
) -> Recovery:
    """Bring the store up to the end of the changelog (committed records only)."""
    t0 = time.monotonic()
    tp = TopicPartition(topic, 0)
    consumer = Consumer(consumer_conf)
    try:
        low, high = consumer.get_watermark_offsets(tp, timeout=30, cached=False)
        pos = changelog_position(store)
        if high <= low:  # empty (or fully compacted away: cannot be, the meta key stays)
            if pos is None and has_engine_state(store):
                log.warning("changelog %s is empty but the state store has state: it will be "
                            "written to the changelog in the first transaction", topic)
                return Recovery("seed", seed_snapshot=True, seconds=time.monotonic() - t0)
            if pos is not None and pos > high:
                log.warning("changelog %s ends at %d but the state store was at %d: the topic "
                            "was recreated; the store is written to it again", topic, high, pos)
                store.write_batch({CHANGELOG_POS_KEY: None})
                return Recovery("seed", seed_snapshot=True, seconds=time.monotonic() - t0)
            return Recovery("empty", seconds=time.monotonic() - t0)
        if pos is not None and pos > high:
            raise KafkaRunnerError(
                f"the state store is at changelog offset {pos} but {topic} ends at {high}: "
                "the changelog topic was recreated or truncated. Stop the service, move the "
                f"state directory away and restart to rebuild from {topic}, or delete {topic} "
                "and restart to re-seed it from the state store."
            )
        if pos is None or pos < low:
            n = clear_store(store)
            start = low
            mode = "rebuilt"
            log.info("state store has %s: rebuilding it from changelog %s[0] offsets %d..%d "
                     "(%d stale keys cleared)",
                     "no changelog position" if pos is None else f"position {pos} < {low}",
                     topic, low, high, n)
        else:
            start = pos
            mode = "caught_up"
            if pos >= high:
                return Recovery("up_to_date", start=pos, end=high,
                                seconds=time.monotonic() - t0)
        records = _replay(store, consumer, tp, start, high, timeout_s, batch)
        if mode == "caught_up" and records == 0:
            mode = "up_to_date"
        rec = Recovery(mode, records, start, high, time.monotonic() - t0)
        if mode != "up_to_date":
            log.info("changelog %s[0]: %s the state store with %d record(s) from offset %d to "
                     "%d in %.2fs", topic, mode, records, start, high, rec.seconds)
        return rec
    finally:
        consumer.close()


def _replay(
    store: StateStore,
    consumer: Consumer,
    tp: TopicPartition,
    start: int,
    high: int,
    timeout_s: float,
    batch: int,
) -> int:
    consumer.assign([TopicPartition(tp.topic, tp.partition, start)])
    deadline = time.monotonic() + timeout_s
    records = 0
    position = start
    while position < high:
        if time.monotonic() > deadline:
            raise KafkaRunnerError(
                f"changelog {tp.topic}: recovery reached offset {position} of {high} in "
                f"{timeout_s:.0f}s. Another producer may hold a transaction open on it "
                "(only this service should write it), or raise kafka.recovery_timeout_ms."
            )
        msgs = consumer.consume(batch, 0.5)
        puts: dict[bytes, bytes | None] = {}
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise KafkaException(err)
                log.warning("changelog recovery: %s", err)
                continue
            k = m.key()
            if k is None:
                continue
            puts[k] = m.value()
            records += 1
        got = consumer.position([TopicPartition(tp.topic, tp.partition)])[0].offset
        if got > position or puts:
            position = max(position, got)
            # the position read so far goes with the records it covers: a crash here
            # resumes the catch-up, never skips records
            puts[CHANGELOG_POS_KEY] = str(position).encode()
            store.write_batch(puts)
    return records
