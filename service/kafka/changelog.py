"""The compacted changelog topic and catching a task's RocksDB up with it.

The changelog is the durable copy of the task state stores: as many partitions as
the input topics, task n's deltas in partition n (exactly-once: inside our
transactions; at-least-once: produced and flushed before the local write). Each task
checkpoint ends with a marker record (`COMMIT_KEY`); a restore applies records up to
the last marker only, so a checkpoint a crash interrupted is never half applied.
A task's RocksDB is a local cache of its partition: it records the changelog offset
it has reached (`l\\0changelog`). On assignment (after `init_transactions`, which
aborts a transaction a crashed predecessor left open), and after any checkpoint that
did not complete:

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cep.state.store import StateStore
from service.kafka.checkpoint import KafkaRunnerError
from service.kafka.store import (
    CHANGELOG_POS_KEY,
    COMMIT_KEY,
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


Progress = Callable[[int, int], None]  # (changelog offset reached, end offset)


def recover_store(
    store: StateStore,
    consumer_conf: dict[str, Any],
    topic: str,
    *,
    partition: int = 0,
    timeout_s: float = 300.0,
    batch: int = 10_000,
    progress: Progress | None = None,
) -> Recovery:
    """Bring a task's store up to the end of its changelog partition (committed
    records, up to the last checkpoint marker), in one call."""
    r = ChangelogRestore(store, consumer_conf, topic, partition=partition,
                         timeout_s=timeout_s, batch=batch, progress=progress)
    try:
        while True:
            rec = r.step(0.5)
            if rec is not None:
                return rec
    finally:
        r.close()


class ChangelogRestore:
    """The restore of one task's store from its changelog partition, in steps: the
    runner calls `step()` between polls of its consumer (Kafka Streams'
    StoreChangelogReader), so the other tasks keep running and the consumer keeps its
    group membership while a long changelog is read. `step()` returns the `Recovery`
    once the store is at the end of the partition, else None."""

    def __init__(
        self,
        store: StateStore,
        consumer_conf: dict[str, Any],
        topic: str,
        *,
        partition: int = 0,
        timeout_s: float = 300.0,
        batch: int = 10_000,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.topic = topic
        self.partition = partition
        self.timeout_s = timeout_s
        self.batch = batch
        self.progress = progress
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout_s
        self.tp = TopicPartition(topic, partition)
        self.consumer: Consumer | None = Consumer(consumer_conf)
        self.mode = ""  # "" until started; then rebuilt | caught_up
        self.start = 0
        self.high = 0
        self.records = 0
        self.position = 0  # the offset after the last marker applied
        self.pending: dict[bytes, bytes | None] = {}  # records after the last marker

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
            self.consumer = None

    def step(self, budget_s: float = 0.1) -> Recovery | None:
        """Read and apply changelog records for up to about `budget_s` seconds."""
        assert self.consumer is not None, "closed"
        if not self.mode:
            done = self._begin()
            if done is not None:
                return done
        until = time.monotonic() + budget_s
        while True:
            if self._replay_once(min(budget_s, 0.5)):
                return self._finish()
            if time.monotonic() >= until:
                return None

    def _begin(self) -> Recovery | None:
        """Where to start; a Recovery when there is nothing to read."""
        store, topic, partition = self.store, self.topic, self.partition
        assert self.consumer is not None
        low, high = _ends(self.consumer, self.tp, self.deadline)
        pos = changelog_position(store)
        t0 = self.t0
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
            self.start = low
            self.mode = "rebuilt"
            log.info("state store has %s: rebuilding it from changelog %s[%d] offsets %d..%d "
                     "(%d stale keys cleared)",
                     "no changelog position" if pos is None else f"position {pos} < {low}",
                     topic, partition, low, high, n)
        else:
            self.start = pos
            self.mode = "caught_up"
            if pos >= high:
                return Recovery("up_to_date", start=pos, end=high,
                                seconds=time.monotonic() - t0)
        self.high = high
        self.position = self.start
        self.consumer.assign([TopicPartition(topic, partition, self.start)])
        return None

    def _finish(self) -> Recovery:
        if self.pending:
            log.warning("changelog %s[%d]: %d record(s) after the last checkpoint marker "
                        "ignored (a checkpoint a crash interrupted)", self.topic,
                        self.partition, len(self.pending))
        mode = self.mode
        if mode == "caught_up" and self.records == 0:
            mode = "up_to_date"
        rec = Recovery(mode, self.records, self.start, self.high, time.monotonic() - self.t0)
        if mode != "up_to_date":
            log.info("changelog %s[%d]: %s the state store with %d record(s) from offset %d "
                     "to %d in %.2fs", self.topic, self.partition, mode, self.records,
                     self.start, self.high, rec.seconds)
        return rec

    def _replay_once(self, wait_s: float) -> bool:
        """One consume() of changelog records, applied up to the last marker; True at
        the end of the partition."""
        assert self.consumer is not None
        consumer, tp, high = self.consumer, self.tp, self.high
        if self.position >= high:
            return True
        if time.monotonic() > self.deadline:
            raise KafkaRunnerError(
                f"changelog {tp.topic}: recovery reached offset {self.position} of {high} "
                f"in {self.timeout_s:.0f}s. Another producer may hold a transaction open on "
                "it (only this service should write it), or raise kafka.recovery_timeout_ms."
            )
        msgs = consumer.consume(self.batch, wait_s)
        pending = self.pending
        puts: dict[bytes, bytes | None] = {}
        marker_next: int | None = None
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
            pending[k] = m.value()
            self.records += 1
            if k == COMMIT_KEY:  # a complete checkpoint: apply it
                puts.update(pending)
                pending.clear()
                marker_next = m.offset() + 1  # type: ignore[operator]
        got = consumer.position([TopicPartition(tp.topic, tp.partition)])[0].offset
        if marker_next is not None:
            # the position of the last marker goes with the records it covers: a crash
            # here resumes the catch-up after it, never skips records
            puts[CHANGELOG_POS_KEY] = str(marker_next).encode()
            self.store.write_batch(puts)
        if got >= high or (got > self.position and not pending and marker_next is None):
            self.position = max(self.position, got)  # transaction markers only
        elif marker_next is not None:
            self.position = max(self.position, marker_next)
        if self.progress is not None:
            self.progress(max(self.position, got if got >= 0 else self.position), high)
        return got >= high


def _ends(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """The partition's first and end offsets; a broker that is restarting (a rebalance
    after lost partitions can come before it is back) is waited for until `deadline`."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise KafkaRunnerError(
                    f"changelog {tp.topic}[{tp.partition}]: its offsets could not be read "
                    f"({exc.args[0]}); is the broker up?") from None
            log.warning("changelog %s[%d]: reading its offsets: %s; retrying", tp.topic,
                        tp.partition, exc.args[0])
            time.sleep(0.5)
