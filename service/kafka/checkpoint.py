"""Checkpoints: the order in which output, state and input offsets become durable.

A checkpoint happens between two batches, every `checkpoint_interval_ms` or every
`kafka.checkpoint_records` input records, when partitions are revoked, and at
shutdown. The engine's `checkpoint()` returns the state that changed since the last
one (per-key runs, held matches and buffered events, and the engine meta entry with
watermarks and counters); together with the next input offset of every partition
read since, that is one consistent cut of the stream.

At-least-once (`AtLeastOnceCheckpoint.commit`):

1. flush the producer: every alert and dead letter produced so far is acknowledged
   by the broker. A failed delivery stops here (`RewindError`): nothing is written,
   the runner goes back to the previous checkpoint and produces those again;
2. take the engine's state deltas (`engine.checkpoint()`) and add the input offsets;
3. write them in ONE RocksDB WriteBatch (atomic, synced): state, offsets and
   watermarks always agree; only then `engine.checkpointed()` forgets those deltas
   (a failed write leaves them pending for the next checkpoint);
4. commit the same offsets to the consumer group (for lag monitoring and for a
   replacement process without local state; the store's offsets win on restart).

A crash before 3 replays the input since the previous checkpoint: alerts produced
in between are produced again with the same `alert_id` (consumers deduplicate).

Exactly-once (`ExactlyOnceCheckpoint.commit`); alerts and dead letters of the interval
are already in the open transaction:

1. take the engine's state deltas and add the input offsets;
2. produce each of them to the compacted changelog topic (key = store key,
   value = bytes, None = tombstone) in the same transaction;
3. `send_offsets_to_transaction(offsets, consumer group metadata)`;
4. `commit_transaction()`: alerts, dead letters, state and input offsets become
   visible to read_committed consumers together, or not at all; then
   `engine.checkpointed()` (the changelog holds the deltas);
5. write the same deltas to RocksDB in ONE WriteBatch, with the changelog offset
   they reach (RocksDB is a cache of the changelog: it may lag, never lead).

A crash before 4 aborts the transaction (the next `init_transactions` with the same
`transactional.id` fences and aborts it); a crash between 4 and 5 leaves RocksDB one
checkpoint behind the changelog, which the restart replays (`service/kafka/changelog.py`).
An abortable error aborts the transaction; a fatal one, or a commit whose outcome is
unknown (timed out), makes the runner recreate the producer. In every case the
runner then goes back to the last committed state (`RewindError`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from cep.errors import CepError
from cep.runtime.engine import Engine
from cep.state.store import StateStore
from service.kafka.bounded import CallTimedOut, bounded
from service.kafka.io import Deliveries, produce
from service.kafka.store import (
    CHANGELOG_POS_KEY,
    LOCAL_PREFIX,
    TP,
    offset_puts,
    replicated_items,
)

log = logging.getLogger("cep.kafka")


class KafkaRunnerError(CepError):
    """The Kafka runner cannot go on. The message says why and what to do."""


class ProducerFencedError(KafkaRunnerError):
    """Another process uses the same `kafka.transactional_id` and has taken over.
    Give every process its own transactional id (and its own state_dir); stop this
    one or the other."""


class RewindError(CepError):
    """The last checkpoint did not complete: go back to the last committed state
    (reload the engine from the store, seek the consumer to the stored offsets).
    `recreate_producer`: the producer is unusable or the outcome of a commit is
    unknown; a new producer's `init_transactions` fences the old one."""

    def __init__(self, message: str, *, recreate_producer: bool = False) -> None:
        super().__init__(message)
        self.recreate_producer = recreate_producer


class ProducerLike(Protocol):
    def produce(self, *args: Any, **kwargs: Any) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...


class TxnProducerLike(ProducerLike, Protocol):
    def begin_transaction(self) -> None: ...
    def send_offsets_to_transaction(self, positions: Any, group_metadata: Any,
                                    timeout: float = ...) -> None: ...
    def commit_transaction(self, timeout: float = ...) -> None: ...
    def abort_transaction(self, timeout: float = ...) -> None: ...


class CommitterLike(Protocol):
    def commit(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass
class CheckpointInfo:
    keys: int  # store keys written (state deltas, meta, offsets)
    offsets: dict[TP, int]
    seconds: float
    changelog_next: int | None = None


def _tps(positions: Mapping[TP, int]) -> list[TopicPartition]:
    return [TopicPartition(t, p, off) for (t, p), off in sorted(positions.items())]


def _fmt(positions: Mapping[TP, int]) -> str:
    return ", ".join(f"{t}[{p}]@{off}" for (t, p), off in sorted(positions.items())) or "-"


# ------------------------------------------------------------------ at-least-once


class AtLeastOnceCheckpoint:
    def __init__(
        self,
        engine: Engine,
        store: StateStore,
        producer: ProducerLike,
        consumer: CommitterLike | None,
        deliveries: Deliveries,
        *,
        flush_log_s: float = 10.0,
        stop_waiting: Callable[[], bool] = lambda: False,
    ) -> None:
        self.engine = engine
        self.store = store
        self.producer = producer
        self.consumer = consumer
        self.deliveries = deliveries
        self.flush_log_s = flush_log_s
        self.stop_waiting = stop_waiting
        # drops over-limit state from the puts (with dead letters); returns how many
        self.state_filter: Callable[[dict[bytes, bytes | None]], int] | None = None

    def _flush(self) -> None:
        while True:
            left = self.producer.flush(self.flush_log_s)
            if left == 0:
                break
            log.warning("checkpoint: %d record(s) not yet acknowledged by the broker; waiting",
                        left)
            if self.stop_waiting():
                raise RewindError(f"checkpoint: {left} record(s) unacknowledged at shutdown")
        if self.deliveries.failures:
            failures = "; ".join(self.deliveries.failures)
            self.deliveries.reset()
            raise RewindError(f"checkpoint: produce failed ({failures}); "
                              "replaying from the previous checkpoint")

    def commit(self, positions: Mapping[TP, int], *, sync_commit: bool = False) -> CheckpointInfo:
        t0 = time.monotonic()
        # 1. every produced alert / dead letter acknowledged (the producer retries for
        #    up to message.timeout.ms; a broker restart is waited out here)
        self._flush()
        # 2. state deltas + input offsets: one consistent cut; a key's state over its
        #    limit is dropped with a dead letter, acknowledged before the write
        puts = self.engine.checkpoint()
        if self.state_filter is not None and self.state_filter(puts):
            self._flush()
        puts.update(offset_puts(positions))
        # 3. one atomic, synced write; only then are the deltas taken
        self.store.write_batch(puts)
        self.engine.checkpointed()
        # 4. offsets to the group (informational: the store's offsets win on restart)
        if self.consumer is not None and positions:
            try:
                self.consumer.commit(offsets=_tps(positions), asynchronous=not sync_commit)
            except KafkaException as exc:
                log.warning("checkpoint: committing offsets to the group failed (%s); the "
                            "state store has them: %s", exc.args[0], _fmt(positions))
        info = CheckpointInfo(len(puts), dict(positions), time.monotonic() - t0)
        log.debug("checkpoint (at-least-once): %d keys, offsets %s, %.1f ms",
                  info.keys, _fmt(positions), info.seconds * 1000)
        return info


# ------------------------------------------------------------------ exactly-once


FENCED_CODES = frozenset(
    c for c in (
        getattr(KafkaError, "_FENCED", None),
        getattr(KafkaError, "PRODUCER_FENCED", None),
        getattr(KafkaError, "INVALID_PRODUCER_EPOCH", None),
        getattr(KafkaError, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", None),
    ) if c is not None
)


FENCED_LIMIT = 3
FENCED_WINDOW_S = 600.0


class Transactions:
    """The transactional producer's lifecycle: one transaction per checkpoint interval,
    begun lazily at the first record, and its error handling as confluent-kafka
    documents it (retriable: call again; txn_requires_abort: abort, then a new
    transaction; anything else: fatal for this producer)."""

    def __init__(self, producer: TxnProducerLike, *, timeout_s: float = 60.0,
                 retry_backoff_s: float = 0.2, grace_s: float = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.producer = producer
        self.timeout_s = timeout_s
        self.retry_backoff_s = retry_backoff_s
        self.grace_s = grace_s  # a call still blocked this long after its timeout: abandoned
        self.clock = clock
        self.fencings: list[float] = []  # when the producer was fenced (see _fail)
        self.open = False

    def begin(self) -> None:
        if not self.open:
            self._call("begin_transaction", self.producer.begin_transaction)
            self.open = True

    def produce(self, topic: str, value: bytes | None, key: bytes | None = None,
                headers: list[tuple[str, bytes]] | None = None, on_delivery: Any = None,
                partition: int | None = None) -> None:
        self.begin()
        try:
            produce(self.producer, topic, value, key, headers, on_delivery,  # type: ignore[arg-type]
                    partition)
        except KafkaException as exc:
            self._fail("produce", exc.args[0])

    def abort(self) -> bool:
        """Abort the open transaction; False when the producer must be recreated."""
        if not self.open:
            return True
        try:
            bounded(lambda: self.producer.abort_transaction(self.timeout_s),
                    self.timeout_s + self.grace_s, "abort_transaction")
        except KafkaException as exc:
            log.error("abort_transaction failed: %s", exc.args[0])
            return False
        except CallTimedOut as exc:
            log.error("%s", exc)
            return False
        finally:
            self.open = False
        return True

    def commit(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        """send_offsets_to_transaction + commit_transaction."""
        self.begin()
        if offsets:
            self._call("send_offsets_to_transaction",
                       lambda: self.producer.send_offsets_to_transaction(
                           offsets, group_metadata, self.timeout_s))
        self._call("commit_transaction",
                   lambda: self.producer.commit_transaction(self.timeout_s), unknown=True)
        self.open = False

    def _call(self, what: str, fn: Callable[[], None], *, unknown: bool = False) -> None:
        deadline = time.monotonic() + self.timeout_s
        outcome = "the outcome of the commit is unknown" if unknown else "giving up"
        while True:
            try:
                bounded(fn, self.timeout_s + self.grace_s, what)
                return
            except CallTimedOut as exc:
                problem = f"{exc} (librdkafka's own timeout is {self.timeout_s:.0f}s)"
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not (err.retriable() and not err.txn_requires_abort() and not err.fatal()):
                    self._fail(what, err)
                if time.monotonic() < deadline:
                    log.warning("%s: %s; retrying", what, err)
                    time.sleep(self.retry_backoff_s)
                    continue
                problem = f"{what}: still failing after {self.timeout_s:.0f}s ({err})"
            self.open = False
            raise RewindError(f"{problem}; {outcome}", recreate_producer=True) from None

    def _fail(self, what: str, err: KafkaError) -> NoReturn:
        if err.code() in FENCED_CODES:
            # A broker restart can fence the only producer of a transactional.id (its
            # transaction timed out and the coordinator bumped the epoch): recreate the
            # producer and replay. Fenced again and again means another process really
            # uses the same id: stop.
            self.open = False
            now = self.clock()
            self.fencings = [t for t in self.fencings if now - t < FENCED_WINDOW_S] + [now]
            if len(self.fencings) >= FENCED_LIMIT:
                raise ProducerFencedError(
                    f"{what}: {err}; fenced {len(self.fencings)} times within "
                    f"{FENCED_WINDOW_S / 60:.0f} min: another process probably uses "
                    "transactional.id too. This one stops. Give every process its own "
                    "kafka.transactional_id and state_dir."
                ) from None
            raise RewindError(f"{what}: {err}; the producer was fenced (epoch bumped, e.g. "
                              "after a broker restart): recreating it",
                              recreate_producer=True) from None
        if err.txn_requires_abort():
            ok = self.abort()
            raise RewindError(f"{what}: {err}; transaction aborted",
                              recreate_producer=not ok) from None
        self.open = False
        raise RewindError(f"{what}: fatal producer error {err}",
                          recreate_producer=True) from None


class ExactlyOnceCheckpoint:
    def __init__(
        self,
        engine: Engine,
        store: StateStore,
        txn: Transactions,
        deliveries: Deliveries,
        changelog_topic: str,
        group_metadata: Callable[[], Any],
        *,
        seed_snapshot: bool = False,
    ) -> None:
        self.engine = engine
        self.store = store
        self.txn = txn
        self.deliveries = deliveries
        self.changelog_topic = changelog_topic
        self.group_metadata = group_metadata
        # the changelog is empty but the store is not (switching from at-least-once):
        # the first checkpoint writes the whole store to the changelog
        self.seed_snapshot = seed_snapshot
        # drops over-limit state from the puts (with dead letters, in the transaction)
        self.state_filter: Callable[[dict[bytes, bytes | None]], int] | None = None

    def commit(self, positions: Mapping[TP, int]) -> CheckpointInfo:
        t0 = time.monotonic()
        # 1. state deltas + input offsets: one consistent cut
        puts: dict[bytes, bytes | None] = {}
        if self.seed_snapshot:
            puts.update(replicated_items(self.store))
        deltas = self.engine.checkpoint()
        if self.state_filter is not None:
            self.state_filter(deltas)
        puts.update(deltas)
        puts.update(offset_puts(positions))
        # 2. the changelog records, in the open transaction
        self.deliveries.changelog_next = None
        topic = self.changelog_topic
        for k, v in puts.items():
            if not k.startswith(LOCAL_PREFIX):
                self.txn.produce(topic, v, k, on_delivery=self.deliveries, partition=0)
        # 3 + 4. input offsets into the transaction, commit
        self.txn.commit(_tps(positions), self.group_metadata())
        self.engine.checkpointed()
        if self.deliveries.failures:  # cannot happen after a successful commit; be loud
            log.error("delivery failures reported after a committed transaction: %s",
                      self.deliveries.failures)
            self.deliveries.failures = []
        # 5. the local cache, after the commit
        cl_next = self.deliveries.changelog_next
        if cl_next is not None:
            puts[CHANGELOG_POS_KEY] = str(cl_next).encode()
        self.store.write_batch(puts)
        self.seed_snapshot = False
        info = CheckpointInfo(len(puts), dict(positions), time.monotonic() - t0, cl_next)
        log.debug("checkpoint (exactly-once): %d keys, offsets %s, changelog @%s, %.1f ms",
                  info.keys, _fmt(positions), cl_next, info.seconds * 1000)
        return info
