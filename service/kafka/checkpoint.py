"""Checkpoints: the order in which output, state and input offsets become durable.

A checkpoint happens between two batches, every `checkpoint_interval_ms` or every
`kafka.checkpoint_records` input records, when partitions are revoked, and at
shutdown. It covers every assigned partition task (`TaskCut`): the task engine's
`checkpoint()` returns the state that changed since the last one (per-key runs, held
matches and buffered events, and the meta entry with the task's watermarks);
together with the next input offset of each of the task's partitions read since,
that is one consistent cut of the task's stream. Task n's cut goes to changelog
partition n, followed by a marker record (`COMMIT_KEY`), and to the task's RocksDB.

At-least-once (`AtLeastOnceCheckpoint.commit`):

1. flush the producer: every alert and dead letter produced so far is acknowledged
   by the broker. A failed delivery stops here (`RewindError`): nothing is written,
   the runner goes back to the previous checkpoint and produces those again;
2. per task: the engine's state deltas (`checkpoint()`) plus the input offsets,
   produced to the task's changelog partition, then the marker; flush (a failure:
   `RewindError`; a restore ignores records after the last marker);
3. per task: write them in ONE RocksDB write (`write_batch`: atomic, synced) with the
   changelog offset reached; only then `checkpointed()` forgets those deltas;
4. commit the same offsets to the consumer group (for lag monitoring; the task
   store's offsets, restored from the changelog where needed, win on assignment).

A crash before 3 replays the input since the previous checkpoint: alerts produced
in between are produced again with the same `alert_id` (consumers deduplicate).

Exactly-once (`ExactlyOnceCheckpoint.commit`); alerts and dead letters of the interval
are already in the open transaction:

1. per task: the engine's state deltas plus the input offsets;
2. produce each of them to the task's partition of the compacted changelog topic
   (key = store key, value = bytes, None = tombstone), then the marker, in the same
   transaction (one transactional producer per process);
3. `send_offsets_to_transaction(offsets, consumer group metadata)`;
4. `commit_transaction()`: alerts, dead letters, state and input offsets become
   visible to read_committed consumers together, or not at all; then
   `engine.checkpointed()` (the changelog holds the deltas);
5. write the same deltas to RocksDB in ONE atomic write, with the changelog offset
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
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from cep.errors import CepError
from cep.runtime.engine import Engine
from cep.state.store import StateStore
from service.kafka.bounded import CallTimedOut, bounded
from service.kafka.io import Deliveries, produce
from service.kafka.store import (
    CHANGELOG_POS_KEY,
    COMMIT_KEY,
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


# drops over-limit state of a task engine from its puts (with dead letters); how many
StateFilter = Callable[[Engine, dict[bytes, bytes | None]], int]


@dataclass
class TaskCut:
    """One partition task's part of a checkpoint: its engine (`Engine.task(n)`), its
    store, and the next input offset of its partitions read since the last one."""

    task: int
    engine: Engine
    store: StateStore
    positions: dict[TP, int]
    seed_snapshot: bool = False  # write the whole store (the changelog lacks it)
    # more store keys of the task (the repartition topics' source marks, repartition.py)
    extra: dict[bytes, bytes | None] = field(default_factory=dict)

    def puts(self, state_filter: StateFilter | None = None) -> tuple[dict[bytes, bytes | None],
                                                                      int]:
        """The cut's store puts, and how many keys `state_filter` dropped."""
        puts: dict[bytes, bytes | None] = {}
        if self.seed_snapshot:
            puts.update(replicated_items(self.store))
        deltas = self.engine.checkpoint()
        dropped = state_filter(self.engine, deltas) if state_filter is not None else 0
        puts.update(deltas)
        puts.update(offset_puts(self.positions))
        puts.update(self.extra)
        return puts, dropped


def _all_positions(cuts: list[TaskCut]) -> dict[TP, int]:
    out: dict[TP, int] = {}
    for c in cuts:
        out.update(c.positions)
    return out


def _changelog_records(
    cut: TaskCut, puts: Mapping[bytes, bytes | None], seq: int
) -> list[tuple[bytes, bytes | None]]:
    """A task cut's records for its changelog partition, the marker last."""
    out = [(k, v) for k, v in puts.items() if not k.startswith(LOCAL_PREFIX)]
    out.append((COMMIT_KEY, str(seq).encode()))
    return out


def _tps(positions: Mapping[TP, int]) -> list[TopicPartition]:
    return [TopicPartition(t, p, off) for (t, p), off in sorted(positions.items())]


def _fmt(positions: Mapping[TP, int]) -> str:
    return ", ".join(f"{t}[{p}]@{off}" for (t, p), off in sorted(positions.items())) or "-"


# ------------------------------------------------------------------ at-least-once


def _write_stores(written: list[tuple[TaskCut, dict[bytes, bytes | None]]],
                  changelog_next: Mapping[int, int]) -> int:
    """Each task's deltas into its own store, one atomic synced batch per task, with
    the changelog offset after them; the number of keys written."""
    keys = 0
    for cut, puts in written:
        nxt = changelog_next.get(cut.task)
        if nxt is not None:
            puts[CHANGELOG_POS_KEY] = str(nxt).encode()
        cut.store.write_batch(puts)
        cut.seed_snapshot = False
        keys += len(puts)
    return keys


class AtLeastOnceCheckpoint:
    def __init__(
        self,
        producer: ProducerLike,
        consumer: CommitterLike | None,
        deliveries: Deliveries,
        changelog_topic: str | None,
        *,
        flush_log_s: float = 10.0,
        stop_waiting: Callable[[], bool] = lambda: False,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.deliveries = deliveries
        self.changelog_topic = changelog_topic
        self.flush_log_s = flush_log_s
        self.stop_waiting = stop_waiting
        self.seq = 0
        self.state_filter: StateFilter | None = None

    def _flush(self, what: str) -> None:
        while True:
            left = self.producer.flush(self.flush_log_s)
            if left == 0:
                break
            log.warning("checkpoint: %d %s record(s) not yet acknowledged by the broker; "
                        "waiting", left, what)
            if self.stop_waiting():
                raise RewindError(f"checkpoint: {left} record(s) unacknowledged at shutdown")
        if self.deliveries.failures:
            failures = "; ".join(self.deliveries.failures)
            self.deliveries.reset()
            raise RewindError(f"checkpoint: produce failed ({failures}); "
                              "replaying from the previous checkpoint")

    def commit(self, cuts: list[TaskCut], *, sync_commit: bool = False) -> CheckpointInfo:
        t0 = time.monotonic()
        # 1. every produced alert / dead letter acknowledged (the producer retries for
        #    up to message.timeout.ms; a broker restart is waited out here)
        self._flush("output")
        # 2. per task: state deltas + input offsets, to its changelog partition
        written: list[tuple[TaskCut, dict[bytes, bytes | None]]] = []
        self.seq += 1
        self.deliveries.changelog_next = {}
        dropped = 0
        for cut in cuts:
            puts, n = cut.puts(self.state_filter)
            dropped += n
            written.append((cut, puts))
            if self.changelog_topic is not None:
                for k, v in _changelog_records(cut, puts, self.seq):
                    produce(self.producer, self.changelog_topic, v, k,  # type: ignore[arg-type]
                            on_delivery=self.deliveries, partition=cut.task)
        if (self.changelog_topic is not None and written) or dropped:
            self._flush("changelog")  # and the dead letters of dropped state
        # 3. per task: one atomic, synced write; only then are the deltas taken
        keys = _write_stores(written, self.deliveries.changelog_next)
        for cut, _ in written:
            cut.engine.checkpointed()
        # 4. offsets to the group (informational: the stores' offsets win)
        positions = _all_positions(cuts)
        if self.consumer is not None and positions:
            try:
                self.consumer.commit(offsets=_tps(positions), asynchronous=not sync_commit)
            except KafkaException as exc:
                log.warning("checkpoint: committing offsets to the group failed (%s); the "
                            "state stores have them: %s", exc.args[0], _fmt(positions))
        info = CheckpointInfo(keys, positions, time.monotonic() - t0)
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
        txn: Transactions,
        deliveries: Deliveries,
        changelog_topic: str,
        group_metadata: Callable[[], Any],
    ) -> None:
        self.txn = txn
        self.deliveries = deliveries
        self.changelog_topic = changelog_topic
        self.group_metadata = group_metadata
        self.seq = 0
        self.state_filter: StateFilter | None = None

    def commit(self, cuts: list[TaskCut]) -> CheckpointInfo:
        t0 = time.monotonic()
        # 1 + 2. per task: state deltas + input offsets, its changelog records, in the
        #        open transaction
        self.deliveries.changelog_next = {}
        self.seq += 1
        topic = self.changelog_topic
        written: list[tuple[TaskCut, dict[bytes, bytes | None]]] = []
        for cut in cuts:
            puts, _ = cut.puts(self.state_filter)
            written.append((cut, puts))
            for k, v in _changelog_records(cut, puts, self.seq):
                self.txn.produce(topic, v, k, on_delivery=self.deliveries, partition=cut.task)
        # 3 + 4. input offsets into the transaction (with the consumer's group metadata:
        #        a zombie of an older generation is fenced, KIP-447), commit
        positions = _all_positions(cuts)
        self.txn.commit(_tps(positions), self.group_metadata())
        for cut, _ in written:
            cut.engine.checkpointed()
        if self.deliveries.failures:  # cannot happen after a successful commit; be loud
            log.error("delivery failures reported after a committed transaction: %s",
                      self.deliveries.failures)
            self.deliveries.failures = []
        # 5. the local caches, after the commit
        keys = _write_stores(written, self.deliveries.changelog_next)
        info = CheckpointInfo(keys, positions, time.monotonic() - t0)
        log.debug("checkpoint (exactly-once): %d keys, offsets %s, %.1f ms",
                  info.keys, _fmt(positions), info.seconds * 1000)
        return info
