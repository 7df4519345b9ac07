"""The Kafka runner: consume the configured topics, run the engine, produce alerts.

    run_kafka(settings, engine, control, on_alerts, stop, ready)   # `cep serve`, Kafka mode
    python -m service.kafka.runner --config cep.toml               # the runner alone

One loop in the calling thread owns the engine. The work is split in partition
tasks (service/kafka/tasks.py, docs/scale-out.md): task n reads partition n of every
input topic, with its own engine (`Engine.task(n)`), RocksDB (`state_dir/task-<n>`)
and changelog partition n. N processes with the same group id share the tasks.

    start:  check the input topics are co-partitioned (the task count), create the
            changelog with as many partitions -> producer (exactly-once: one
            transactional producer, init_transactions) -> subscribe
            (cooperative-sticky; `range` with several input topics, which keeps
            partition n of every topic on one process)
    assign: per new task: open its RocksDB, catch it up with its changelog partition
            (restore; the partitions are not fetched until then), open the task in
            the engine and load its state; seek each partition to the task store's
            offset; then `ready` is set
    loop:   pending API changes (control.run_pending, at a batch boundary)
            -> consume(batch_size) -> decode per (topic, partition)
            -> events of a stream with repartition topics forwarded to them (in the
               open transaction); a repartition topic's batches split per source
               partition (service/kafka/repartition.py)
            -> per partition, the driver's step (cep/runtime/driver.py): the task's
               engine, then this runner's sink: alerts and dead letters produced
               (exactly-once: inside the open transaction), then the next offset
            -> driver.tick() every tick_interval_ms (idle watermarks, timers)
            -> checkpoint every checkpoint_interval_ms / checkpoint_records
               (the order of its steps: service/kafka/checkpoint.py)
    revoke: finish the batch, checkpoint, close the revoked tasks (drop their state)
    lost:   close the lost tasks without a checkpoint; the others go back to theirs
    stop:   finish the batch, checkpoint, close the consumer (leaves the group), close

When a checkpoint fails (a produce failed, a transaction was aborted, a commit's
outcome is unknown), the runner goes back to the last committed checkpoint: it
catches every task store up with its changelog partition, reloads the task engines
from them and seeks the consumer to the stored offsets.
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from cep.errors import CepError
from cep.runtime.driver import Driver
from cep.runtime.engine import Engine
from cep.runtime.records import Alert, Batch, DeadLetter, Result
from cep.state.rocks import RocksStore, StateCorruptionError, StateStoreError
from cep.state.store import StateStore
from service import metrics as service_metrics
from service.config import Settings
from service.control import Control
from service.kafka import watchdog
from service.kafka.bounded import CallTimedOut, bounded
from service.kafka.changelog import CHANGELOG_CONFIG, Recovery, recover_store
from service.kafka.checkpoint import (
    AtLeastOnceCheckpoint,
    ExactlyOnceCheckpoint,
    KafkaRunnerError,
    RewindError,
    TaskCut,
    Transactions,
)
from service.kafka.dead_letters import dead_letter_record
from service.kafka.group_commits import GroupCommits
from service.kafka.io import (
    TP,
    Deliveries,
    PartitionBatch,
    alert_key,
    alert_value,
    changelog_consumer_config,
    consumer_config,
    decode,
    ensure_topics,
    input_topics,
    output_topics,
    produce,
    producer_config,
    topic_max_message_bytes,
)
from service.kafka.poison import PoisonGuard
from service.kafka.record_limits import (
    CHANGELOG_OVERHEAD,
    OversizedState,
    check_changelog_limit,
    drop_oversized_state,
    limits_of,
    shrink_dead_letter,
    state_dead_letter,
)
from service.kafka.repartition import (
    REPARTITION_CONFIG,
    Forwarder,
    SourceMarks,
    check_counts,
    forwarded_from,
    plan_repartitions,
    subscription,
)
from service.kafka.restoring import Restorer
from service.kafka.stall import StallCheck
from service.kafka.store import load_engine, register_partitions, stored_offsets, task_dir
from service.kafka.tasks import (
    RESTORING,
    RUNNING,
    PartitionMismatchError,
    Task,
    TaskRow,
    TaskTable,
    partition_counts,
    task_count,
)
from service.kafka.watchdog import Progress

log = logging.getLogger("cep.kafka")

__all__ = ["KafkaRunner", "KafkaRunnerError", "run_kafka"]


def run_kafka(
    settings: Settings,
    engine: Engine,
    control: Control,
    on_alerts: Callable[[list[Alert]], None],
    stop: threading.Event,
    ready: threading.Event,
    tasks: TaskTable | None = None,
) -> None:
    """Run until `stop` is set, in the calling thread. `ready` is set once the state is
    restored and partitions are assigned. `tasks` (optional) is kept up to date with
    the assigned tasks. Raises `KafkaRunnerError` when it cannot go on (the message
    says what to do)."""
    KafkaRunner(settings, engine, control, on_alerts, stop, ready, tasks).run()


class KafkaRunner:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        control: Control,
        on_alerts: Callable[[list[Alert]], None] | None,
        stop: threading.Event,
        ready: threading.Event,
        task_table: TaskTable | None = None,
    ) -> None:
        if settings.embedded:
            raise KafkaRunnerError("kafka.bootstrap_servers is not set: nothing to connect to")
        self.settings = settings
        self.k = settings.kafka
        self.engine = engine
        self.control = control
        self.on_alerts = on_alerts
        self.stop = stop
        self.ready = ready
        self.eos = self.k.exactly_once
        self.stats: Counter[str] = Counter()
        # per assigned partition read since its assignment: the next offset to read
        self.positions: dict[TP, int] = {}
        self.committed: dict[TP, int] = {}  # the positions of the last checkpoint
        self.assigned: set[TP] = set()
        self.first_offsets: dict[TP, int] = {}  # where a partition with no stored offset began
        self.consumed_since = 0
        self.offsets_due = False  # store offsets the group has not committed
        self.produced_since = 0
        self.last_checkpoint = time.monotonic()
        self.last_tick = 0.0
        self.last_report = time.monotonic()
        self.last_tasks = 0.0
        self.pending_rewind: RewindError | None = None
        self.recoveries: list[Recovery] = []  # changelog catch-ups (exactly-once)
        self.callback_error: BaseException | None = None
        self.fatal_error: KafkaError | None = None
        self._streams: dict[str, str] = {}
        self._signature: tuple[Any, ...] = ()
        self._topics_known: set[str] = set()
        self._last_client_log = 0.0
        self._ckpt_ms_max = 0  # since the last report
        self.tasks: dict[int, Task] = {}
        self.task_table = task_table if task_table is not None else TaskTable()
        self.n_tasks = 0
        self.cooperative = True
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.txn: Transactions | None = None
        self.deliveries = Deliveries(self.k.changelog_topic)
        self.admin: AdminClient | None = None
        self.checkpointer: AtLeastOnceCheckpoint | ExactlyOnceCheckpoint | None = None
        self.progress = watchdog.active() or Progress(self.k.stall_after_ms / 1000,
                                                      self.k.wedged_after_ms / 1000)
        self.consumer_fatal: KafkaError | None = None
        self._stall = StallCheck(self)
        self.limits = limits_of(self.k)  # poison records (service/kafka/record_limits.py)
        self.poison = PoisonGuard()  # records that fail again and again (service/kafka/poison.py)
        self._to_notify: list[Alert] = []
        # repartition topics (service/kafka/repartition.py)
        self.hops = plan_repartitions(settings, engine)
        self.forwarder = Forwarder(self.hops, 0, self._send)
        self.marks = SourceMarks()  # at-least-once replays before a hop, dropped after it
        self.group_commits = GroupCommits()  # async group commits that failed: sent again
        # tasks restoring between polls, their partitions paused (service/kafka/restoring.py)
        self.restorer = Restorer(changelog_consumer_config(settings), self.k.changelog_topic,
                                 timeout_s=self.k.recovery_timeout_ms / 1000,
                                 on_progress=self._restore_progress)
        self._assigned_at: dict[TP, int | None] = {}  # a restoring partition's offset
        # the one batch loop: engine -> this runner's sink -> processed() (offsets)
        self.driver = Driver(engine, [_RunnerSink(self)], checkpointer=self)

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> None:
        mode = "exactly-once" if self.eos else "at-least-once"
        log.info("kafka runner starting (%s): bootstrap %s, group %s, topics %s, state %s",
                 mode, self.k.bootstrap_servers, self.k.group_id,
                 ",".join(input_topics(self.settings)), self.settings.state_dir)
        try:
            self.admin = AdminClient(self._common_conf())
            self._check_partitions()
            if (self.settings.state_dir / "CURRENT").exists():
                log.warning("%s holds a state store of the one-store layout (before partition "
                            "tasks); it is not read: each task has its store in %s and is "
                            "restored from the changelog %s. Move it away once the tasks run.",
                            self.settings.state_dir, task_dir(self.settings.state_dir, 0).name
                            .replace("0", "<n>"), self.k.changelog_topic)
            self._ensure_topics(first=True)
            if self.eos:
                self._check_changelog_limit()
                self._new_txn_producer()
            else:
                self.producer = Producer(self._with_cb(producer_config(self.settings,
                                                                       transactional=False)))
            self._signature = self.engine.signature()
            cconf = consumer_config(self.settings)
            cconf["error_cb"] = self._on_consumer_error
            cconf["on_commit"] = self.group_commits.on_commit
            self.cooperative = "cooperative" in str(cconf["partition.assignment.strategy"])
            self.consumer = Consumer(cconf)
            self.checkpointer = self._make_checkpointer()
            self._subscribe()
            self.progress.start()
            while not self.stop.is_set():
                self._iteration()
            self._shutdown()
        finally:
            self.progress.stop()
            self._close()

    def _subscribe(self) -> None:
        assert self.consumer is not None
        self.consumer.subscribe(subscription(self.settings, self.hops),
                                on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)

    def _iteration(self) -> None:
        try:
            self._stall.beat()  # the watchdog (service/kafka/watchdog.py); may stop the runner
            if self.control.run_pending(self.engine):
                self._patterns_changed()
            if self.pending_rewind is not None:
                exc, self.pending_rewind = self.pending_rewind, None
                self._rewind(exc)
            assert self.consumer is not None
            msgs = self.consumer.consume(self.k.batch_size,
                                         0.0 if self.restorer else self.k.poll_timeout_ms / 1000)
            self._raise_callback_error()
            self._recommit_failed()
            if msgs:
                self._process(msgs)
            if self.restorer:
                self._restore_step()
            now = time.monotonic()
            if now - self.last_tick >= self.k.tick_interval_ms / 1000:
                self.last_tick = now
                self._tick()
            if (self.consumed_since >= self.k.checkpoint_records
                    or (now - self.last_checkpoint) * 1000 >= self.settings.checkpoint_interval_ms):
                self._checkpoint("interval")
            if now - self.last_tasks >= 1:
                self.last_tasks = now
                self._task_lags()
            if now - self.last_report >= 30:
                self._report(now)
        except RewindError as exc:
            self._rewind(exc)

    def _shutdown(self) -> None:
        log.info("stopping: final checkpoint")
        try:
            self._checkpoint("shutdown", sync=True)
        except RewindError as exc:
            log.error("final checkpoint failed (%s): the next start replays from the previous "
                      "checkpoint", exc)
        assert self.consumer is not None
        self.consumer.close()  # leaves the group (on_revoke: nothing left to checkpoint)
        self.consumer = None
        log.info("stopped: %s", dict(self.stats))

    def _close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the consumer: %s", exc)
            self.consumer = None
        if self.txn is not None and self.txn.open:
            self.txn.abort()
        if self.producer is not None and not self.eos:
            self.producer.flush(5)
        self.restorer.close()
        for t in list(self.tasks):
            self._close_task(t)

    # ------------------------------------------------------------------ setup

    def _check_partitions(self) -> None:
        """The task count: the input topics' common partition count; the changelog
        must have as many partitions (task n's state goes to partition n)."""
        assert self.admin is not None
        inputs = input_topics(self.settings)
        cl = self.k.changelog_topic
        counts = partition_counts(self.admin, [*inputs, cl, *self.hops.topics()])
        try:
            self.n_tasks = task_count(counts, inputs)
            check_counts(counts, self.hops.topics(), self.n_tasks, create=self.k.create_topics)
            self.forwarder.partitions = self.n_tasks
        except PartitionMismatchError as exc:
            raise KafkaRunnerError(str(exc)) from None
        have = counts.get(cl)
        if have is not None and have != self.n_tasks:
            raise KafkaRunnerError(
                f"the changelog topic {cl} has {have} partition(s) but the input has "
                f"{self.n_tasks}: task n's state goes to changelog partition n. Give this "
                "service a new kafka.changelog_topic (its state is rebuilt from the input "
                f"offsets committed by the group), or recreate {cl} with {self.n_tasks} "
                "partitions.")
        self.task_table.tasks_total = self.n_tasks
        log.info("%d task(s): partitions 0..%d of %s", self.n_tasks, self.n_tasks - 1,
                 ", ".join(inputs))

    def _open_store(self, task: int) -> StateStore:
        path = task_dir(self.settings.state_dir, task)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            store = RocksStore(path)
            try:
                keys = store.verify()
            except StateStoreError:
                store.close()
                raise
            log.info("state store %s: %d keys, checksums verified", path, keys)
            return store
        except StateStoreError as exc:
            if not isinstance(exc, StateCorruptionError):
                # locked by another process, no space left, ...: moving it aside would
                # not help (and could hide another process's store)
                raise KafkaRunnerError(f"{exc}. Fix the cause and restart.") from exc
            # damaged: the task's changelog partition has its state (both modes write it)
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            log.error("state store %s is unreadable or damaged (%s); moved to %s, rebuilding "
                      "it from the changelog %s", path, exc, aside, self.k.changelog_topic)
            path.rename(aside)
            return RocksStore(path)

    def _common_conf(self) -> dict[str, Any]:
        conf: dict[str, Any] = {"bootstrap.servers": self.k.bootstrap_servers}
        for name, value in self.k.consumer.items():
            if name.startswith(("security.", "sasl.", "ssl.")):
                conf[name] = value
        return conf

    def _with_cb(self, conf: dict[str, Any]) -> dict[str, Any]:
        conf["error_cb"] = self._on_client_error
        return conf

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("kafka client fatal error: %s", err)
            self.fatal_error = err
        else:  # connection trouble: librdkafka reconnects and retries by itself
            self.stats["client_errors"] += 1
            now = time.monotonic()
            if now - self._last_client_log >= 5:
                self._last_client_log = now
                log.warning("kafka: %s (%d client errors so far; librdkafka retries)",
                            err.str(), self.stats["client_errors"])

    def _on_consumer_error(self, err: KafkaError) -> None:
        """A fatal consumer error (e.g. "static consumer fenced" after a broker restart)
        leaves the consumer without partitions for good: the runner stops with an error
        (exit 1) and its supervisor restarts it; the restart resumes from the last
        checkpoint. Other errors: as for the producer."""
        if err.fatal():
            log.error("kafka consumer fatal error: %s", err)
            self.consumer_fatal = err
        else:
            self._on_client_error(err)

    def _ensure_topics(self, *, first: bool = False) -> None:
        if not self.k.create_topics or self.admin is None:
            return
        wanted = output_topics(self.settings, self.engine) - self._topics_known
        if wanted:
            ensure_topics(self.admin, wanted, partitions=self.k.topic_partitions)
            self._topics_known |= wanted
        if first:
            need = self.limits.max_state_bytes_per_key + CHANGELOG_OVERHEAD
            ensure_topics(self.admin, [self.k.changelog_topic], partitions=self.n_tasks,
                          config={**CHANGELOG_CONFIG, "max.message.bytes": str(need)})
        wanted = set(self.hops.topics()) - self._topics_known
        if wanted:
            ensure_topics(self.admin, wanted, partitions=self.n_tasks, config=REPARTITION_CONFIG)
            self._topics_known |= wanted

    def _check_changelog_limit(self) -> None:
        """The changelog topic and the producer must take a key's largest state."""
        assert self.admin is not None
        topic = self.k.changelog_topic
        topic_max = topic_max_message_bytes(self.admin, topic)
        conf = producer_config(self.settings, transactional=True)
        problem = check_changelog_limit(topic_max, int(conf.get("message.max.bytes",
                                                                1_000_000)),
                                        self.limits, topic)
        if problem is not None:
            raise KafkaRunnerError(problem)

    def _new_txn_producer(self) -> None:
        """A transactional producer; init_transactions fences any older producer with the
        same transactional.id and aborts the transaction it left open."""
        producer = Producer(self._with_cb(producer_config(self.settings, transactional=True)))
        timeout = self.k.transaction_timeout_ms / 1000
        deadline = time.monotonic() + timeout * 2
        while True:
            try:
                bounded(functools.partial(producer.init_transactions, timeout), timeout + 15,
                        "init_transactions")
                break
            except CallTimedOut as exc:
                raise KafkaRunnerError(f"{exc}: the broker does not answer; stopping so that "
                                       "the supervisor restarts the service") from None
            except KafkaException as exc:
                err = exc.args[0]
                if err.retriable() and time.monotonic() < deadline:
                    log.warning("init_transactions: %s; retrying", err)
                    time.sleep(0.5)
                    continue
                raise KafkaRunnerError(
                    f"init_transactions for transactional.id {self.k.transactional_id!r} "
                    f"failed: {err}"
                ) from None
        self.producer = producer
        self.fatal_error = None
        if self.txn is None:
            self.txn = Transactions(producer, timeout_s=self.k.transaction_timeout_ms / 1000)
        else:
            self.txn.producer = producer
            self.txn.open = False
        log.info("transactional producer ready (transactional.id %s)", self.k.transactional_id)

    def _restore_progress(self, task: Task, reached: int, end: int) -> None:
        task.restore_end = end
        task.restore_records = reached - task.restore_start
        self._publish_task(task)

    def _recover_changelog(self, task: Task) -> None:
        """Catch a task's store up with its changelog partition (in one call)."""
        rec = recover_store(task.store, changelog_consumer_config(self.settings),
                            self.k.changelog_topic, partition=task.id,
                            timeout_s=self.k.recovery_timeout_ms / 1000,
                            progress=functools.partial(self._restore_progress, task))
        self._count_recovery(task, rec)

    def _count_recovery(self, task: Task, rec: Recovery) -> None:
        self.recoveries.append(rec)
        task.restore_start, task.restore_end = rec.start, rec.end
        task.restore_records = rec.records
        if rec.mode in ("rebuilt", "caught_up"):
            self.stats["changelog_records_replayed"] += rec.records
        task.seed_snapshot = task.seed_snapshot or rec.seed_snapshot

    def _make_checkpointer(self) -> AtLeastOnceCheckpoint | ExactlyOnceCheckpoint:
        assert self.consumer is not None
        consumer = self.consumer
        ck: AtLeastOnceCheckpoint | ExactlyOnceCheckpoint
        if self.eos:
            assert self.txn is not None
            ck = ExactlyOnceCheckpoint(self.txn, self.deliveries, self.k.changelog_topic,
                                       consumer.consumer_group_metadata)
        else:
            assert self.producer is not None
            ck = AtLeastOnceCheckpoint(self.producer, consumer, self.deliveries,
                                       self.k.changelog_topic, stop_waiting=self.stop.is_set)
        ck.state_filter = self._limit_state
        return ck

    def _limit_state(self, engine: Engine, puts: dict[bytes, bytes | None]) -> int:
        """A task checkpoint's state puts over kafka.max_state_bytes_per_key: the key is
        dropped and dead-lettered (service/kafka/record_limits.py)."""
        limit = self.limits.max_state_bytes_per_key

        def dropped(o: OversizedState) -> None:
            key, value, headers = state_dead_letter(o, limit)
            log.warning("%s", headers[1][1].decode())
            self._send(self.k.dead_letter_topic, value, key, headers)
            self.stats["dead_letters.state_too_large"] += 1

        return drop_oversized_state(engine, puts, limit, dropped)

    # ------------------------------------------------------------------ tasks

    def _open_task(self, tid: int) -> Task:
        """Open task `tid` restoring: its store, caught up with its changelog partition
        between polls (`self.restorer`); `_restored` runs it."""
        task = Task(tid, self._open_store(tid))
        task.opened_at = time.monotonic()
        self.tasks[tid] = task
        self._publish_task(task)
        self.restorer.start(task)
        return task

    def _restored(self, task: Task, rec: Recovery) -> None:
        """A task's store is at the end of its changelog partition: load its engine,
        seek its partitions to the store's offsets and resume them."""
        self._count_recovery(task, rec)
        engine = self.engine.open_task(task.id)
        stats = load_engine(engine, task.store)
        self.marks.load(task.id, task.store)
        task.state = RUNNING
        task.restored_at = time.monotonic()
        register_partitions(engine, self._stream,
                            self.hops.clock_partitions(task.partitions, self.n_tasks),
                            self.hops.route)
        stored = stored_offsets(task.store)
        assert self.consumer is not None
        for key in sorted(task.partitions):
            so, co = stored.get(key), self._assigned_at.pop(key, None)
            if so is not None:
                if so != co:
                    # the group's offset differs from the store's (a crash between the
                    # store write and the group commit): seek to the store's and commit it
                    # at the next checkpoint even if no record follows, so that the
                    # group's committed offsets and lag tell the truth
                    self._seek(key, so)
                    self.positions[key] = so
                    self.offsets_due = True
                log.info("%s[%d] (task %d): resuming at offset %d (task store)", key[0],
                         key[1], task.id, so)
            else:
                log.info("%s[%d] (task %d): no stored offset; starting at %s", key[0], key[1],
                         task.id, co if co is not None
                         else f"auto.offset.reset={self.k.auto_offset_reset}")
        self.consumer.resume([TopicPartition(t, p) for t, p in sorted(task.partitions)])
        self._publish_task(task)
        log.info("task %d restored in %.2fs (%d changelog record(s)): %s; watermark %s", task.id,
                 task.restored_at - task.opened_at, task.restore_records, stats or "empty",
                 _wm(engine.watermark()))

    def _restore_step(self) -> None:
        """Advance the restoring tasks (between polls); run the ones restored."""
        done = self.restorer.step()
        for task, rec in done:
            self._restored(task, rec)
        if done and not self.restorer:
            log.info("state restored: task(s) %s", ", ".join(
                str(t) for t, k in sorted(self.tasks.items()) if k.state == RUNNING))
            self.ready.set()

    def _close_task(self, tid: int) -> None:
        """Drop a task: its state leaves the engine, its store is closed (it stays on
        disk: a later assignment of the task starts from it when it is current)."""
        task = self.tasks.pop(tid, None)
        self.marks.drop(tid)
        if self.restorer.drop(tid):
            log.info("task %d dropped while restoring (nothing of it was read)", tid)
        if tid in self.engine.tasks():
            self.engine.close_task(tid)
        if task is not None:
            task.store.close()
        self.task_table.drop(tid)

    def _publish_task(self, task: Task, lag: int | None = None) -> None:
        parts = [{"topic": t, "partition": p, "position": self.positions.get((t, p))}
                 for t, p in sorted(task.partitions)]
        restore = {"start": task.restore_start, "end": task.restore_end,
                   "records": task.restore_records,
                   "done": task.state != RESTORING}
        self.task_table.set(TaskRow(task.id, task.state, parts, lag, restore))
        metrics = service_metrics.active()
        if metrics is not None:
            metrics.set_tasks([(r.task, r.state, r.lag, int(r.restore.get("records", 0)))
                               for r in self.task_table.rows()])

    def _task_lags(self) -> None:
        """Per task: the lag (records) summed over its partitions, from the high
        watermarks librdkafka cached with the last fetch."""
        if self.consumer is None:
            return
        for task in self.tasks.values():
            lag = 0
            known = False
            for t, p in task.partitions:
                try:
                    _, high = self.consumer.get_watermark_offsets(TopicPartition(t, p),
                                                                  cached=True)
                except KafkaException:
                    continue
                pos = self.positions.get((t, p))
                if high >= 0 and pos is not None:
                    lag += max(0, high - pos)
                    known = True
            self._publish_task(task, lag if known else None)

    # ------------------------------------------------------------------ rebalancing

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            for tp in partitions:
                if tp.partition >= self.n_tasks:
                    raise KafkaRunnerError(
                        f"{tp.topic} has a partition {tp.partition} but the service started "
                        f"with {self.n_tasks} task(s): partitions were added to an input "
                        "topic. Stop every instance, and add as many partitions to the "
                        "changelog (or give it a new kafka.changelog_topic).")
            new = sorted({tp.partition for tp in partitions} - set(self.tasks))
            for tid in new:
                self._open_task(tid)  # restoring: its partitions stay paused until restored
            committed: dict[TP, int] = {}
            if partitions:
                for c in consumer.committed(partitions, timeout=30):
                    if c.offset >= 0:
                        committed[(c.topic, c.partition)] = c.offset
            paused = []
            for tp in partitions:
                key = (tp.topic, tp.partition)
                task = self.tasks[tp.partition]
                co = committed.get(key)
                if co is not None:
                    tp.offset = co  # where the group is; the restored store's offset wins
                if task.state == RESTORING:
                    self._assigned_at[key] = co
                    paused.append(TopicPartition(tp.topic, tp.partition))
                else:  # a running task gets another partition (range): its store's offset
                    so = stored_offsets(task.store).get(key)
                    if so is not None:
                        tp.offset = so
                    register_partitions(self.engine.task(task.id), self._stream,
                                        self.hops.clock_partitions([key], self.n_tasks),
                                        self.hops.route)
                log.info("assigned %s[%d] (task %d, %s)", tp.topic, tp.partition, task.id,
                         task.state)
                self.assigned.add(key)
                task.partitions.add(key)
            if self.cooperative:
                consumer.incremental_assign(partitions)
            else:  # eager (range): the whole assignment is given every time
                consumer.assign(partitions)
            if paused:  # before the first fetch: nothing is read until the task is restored
                consumer.pause(paused)
            for tid in {tp.partition for tp in partitions}:
                self._publish_task(self.tasks[tid])
            if not self.restorer:
                self.ready.set()
        except Exception as exc:
            log.exception("partition assignment failed")
            self.callback_error = exc

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            if partitions:
                log.info("revoking %s: checkpoint first", _tps(partitions))
                self._checkpoint("revoke", sync=True)
        except RewindError as exc:
            self.pending_rewind = exc
        except Exception as exc:
            log.exception("checkpoint on revoke failed")
            self.callback_error = exc
        finally:
            self._forget(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost %s (session timed out): dropped without a checkpoint; the other "
                    "tasks go back to their last checkpoint", _tps(partitions))
        self._forget(partitions)
        if self.txn is not None and self.txn.open and not self.txn.abort():
            self.pending_rewind = RewindError("partitions lost", recreate_producer=True)
        else:
            self.pending_rewind = RewindError("partitions lost")

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assigned.discard(key)
            self.positions.pop(key, None)
            self.committed.pop(key, None)
            self.first_offsets.pop(key, None)
            self._assigned_at.pop(key, None)
            task = self.tasks.get(tp.partition)
            if task is not None:
                task.partitions.discard(key)
        for tid in [t for t, task in self.tasks.items() if not task.partitions]:
            log.info("task %d closed (its partitions went)", tid)
            self._close_task(tid)

    def _raise_callback_error(self) -> None:
        if self.callback_error is not None:
            exc, self.callback_error = self.callback_error, None
            if isinstance(exc, KafkaRunnerError):
                raise exc
            raise KafkaRunnerError(f"rebalance callback failed: {exc}") from exc
        if self.consumer_fatal is not None:
            raise KafkaRunnerError(
                f"fatal Kafka consumer error: {self.consumer_fatal}. The consumer cannot "
                "rejoin its group; stopping so that the supervisor restarts the service "
                "(it resumes from the last checkpoint)")
        if self.fatal_error is not None:
            err = self.fatal_error
            if self.eos:
                self.fatal_error = None
                raise RewindError(f"fatal client error {err}", recreate_producer=True)
            raise KafkaRunnerError(f"fatal Kafka client error: {err}")

    # ------------------------------------------------------------------ processing

    def _stream(self, topic: str) -> str:
        s = self._streams.get(topic)
        if s is None:
            s = self._streams[topic] = (self.hops.stream_of(topic)
                                        or self.settings.stream_for_topic(topic))
        return s

    def _patterns_changed(self) -> None:
        sig = self.engine.signature()
        if sig == self._signature:
            return
        self._signature = sig
        hops = plan_repartitions(self.settings, self.engine)
        if hops != self.hops:  # a hot-loaded pattern is keyed otherwise: read its hop too
            self.hops = self.forwarder.plan = hops
            self._streams.clear()
            self._ensure_topics(first=True)
            self._subscribe()  # a rebalance: the new hop's partitions join their tasks
        for task in self.tasks.values():
            if task.state == RUNNING:  # a restoring task gets the patterns when it opens
                register_partitions(self.engine.task(task.id), self._stream,
                                    self.hops.clock_partitions(task.partitions, self.n_tasks),
                                    self.hops.route)
        self._ensure_topics()
        log.info("patterns now loaded: %s", ", ".join(f"{n}@{v}{' (draining)' if d else ''}"
                                                      for n, v, d in sig) or "none")

    def _process(self, msgs: list[Any]) -> None:
        groups, errors = decode(msgs, self.limits)
        for err in errors:
            self._consumer_error(err)
        metrics = service_metrics.active()  # the REST app's Prometheus metrics, if any
        for (t, p), b in groups.items():
            t0 = time.perf_counter()
            if metrics is not None and b.dead:
                metrics.decode_error(t, "malformed", len(b.dead))
            stream = self._stream(t)
            self.forwarder.forward(stream, b)  # to the hops of the stream, if any
            dead: list[DeadLetter] = []
            # a hop's records: one batch per source partition, without those seen
            for batch in self.hops.batches(stream, b, self.marks):
                dead += self.poison.step(self.driver, batch).dead_letters
            if metrics is not None:
                metrics.observe_batch(t, b.count, time.perf_counter() - t0)
                if self.hops.stream_of(t) is None:  # a hop's events: shown from the input
                    metrics.recent.add_events(stream, b.events)  # for the console
                metrics.recent.add_dead(stream, dead)
                self._observe_lag(metrics, t, p, b.last_offset + 1)
        self.stats["records_in"] += len(msgs) - len(errors)
        assert self.producer is not None
        self.producer.poll(0)  # delivery reports
        out, self._to_notify = self._to_notify, []
        if out:
            self._notify(out)

    def processed(self, batch: Batch) -> None:
        """The driver's checkpointer hook: the batch's output is produced, so its next
        offset may go into the next checkpoint."""
        b: PartitionBatch = batch.origin
        key = (b.topic, b.partition)
        if key not in self.positions and key not in self.first_offsets:
            self.first_offsets[key] = b.first_offset
        self.positions[key] = b.last_offset + 1
        self.consumed_since += batch.received  # b.count, split when isolating (poison.py)

    def _observe_lag(self, metrics: Any, topic: str, partition: int, position: int) -> None:
        """Consumer lag from the high watermark librdkafka cached with the last fetch."""
        assert self.consumer is not None
        try:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
        except KafkaException:
            return
        if high >= 0:
            metrics.set_consumer_lag(topic, partition, max(0, high - position))

    def _notify(self, alerts: list[Alert]) -> None:
        """Hand alerts to the REST app; its failures never stop the runner."""
        if self.on_alerts is None:
            return
        try:
            self.on_alerts(alerts)
        except Exception:
            log.exception("on_alerts callback failed (the alerts are in Kafka regardless)")

    def _tick(self) -> None:
        self.driver.tick()
        out, self._to_notify = self._to_notify, []
        if out:
            self._notify(out)

    def _consumer_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaRunnerError(f"fatal consumer error: {err}")
        self.stats["consumer_errors"] += 1
        log.warning("consumer: %s", err)

    def _send(self, topic: str, value: bytes | None, key: bytes | None,
              headers: list[tuple[str, bytes]] | None = None,
              partition: int | None = None) -> None:
        if self.txn is not None:
            self.txn.produce(topic, value, key, headers, partition=partition)
        else:
            assert self.producer is not None
            produce(self.producer, topic, value, key, headers, self.deliveries, partition)
        self.produced_since += 1

    def _emit_alerts(self, alerts: list[Alert]) -> None:
        default = self.k.alert_topic
        for a in alerts:
            self._send(a.topic or default, alert_value(a), alert_key(a))
        self.stats["alerts_out"] += len(alerts)

    def _emit_dead(self, dead: list[DeadLetter], b: PartitionBatch, stream: str) -> None:
        """Each dead letter with its record's original key and bytes (see
        service/kafka/dead_letters.py)."""
        dead = self.hops.judged_here(b.topic, dead)  # repartition: one path reports
        offsets = [_offset(d) for d in dead]
        raw = b.raw(offsets)
        topic = self.k.dead_letter_topic
        for d, off in zip(dead, offsets, strict=True):
            m = raw[off]
            rec = dead_letter_record(d, m.key(), m.value(), stream)
            key, value, headers = shrink_dead_letter(  # after a hop: + the input position
                rec.key, rec.value, rec.headers + forwarded_from(m), self.limits)
            self._send(topic, value, key, headers)
            self.stats[f"dead_letters.{d.reason}"] += 1
            log.debug("dead letter %s[%d]@%d: %s (%s)", b.topic, b.partition, off,
                      d.reason, d.detail)

    # ------------------------------------------------------------------ checkpoints

    def _has_work(self) -> bool:
        return bool(
            self.consumed_since or self.produced_since or self.engine.has_changes()
            or (self.txn is not None and self.txn.open)
            or any(t.seed_snapshot for t in self.tasks.values()) or self.offsets_due
        )

    def _checkpoint(self, reason: str, *, sync: bool = False) -> None:
        self.last_checkpoint = time.monotonic()
        if self.checkpointer is None or not self._has_work():
            return
        cuts = []
        for task in self.tasks.values():
            if task.state != RUNNING:
                continue
            positions = {tp: off for tp, off in self.positions.items()
                         if tp in task.partitions and self.committed.get(tp) != off}
            engine = self.engine.task(task.id)
            if positions or engine.has_changes() or task.seed_snapshot:
                cuts.append(TaskCut(task.id, engine, task.store, positions,
                                    task.seed_snapshot, self.marks.puts(task.id)))
        if isinstance(self.checkpointer, AtLeastOnceCheckpoint):
            info = self.checkpointer.commit(cuts, sync_commit=sync)
        else:
            info = self.checkpointer.commit(cuts)
        for cut in cuts:
            self.tasks[cut.task].seed_snapshot = cut.seed_snapshot
            self.committed.update(cut.positions)
        self.consumed_since = 0
        self.produced_since = 0
        self.offsets_due = False
        self.progress.committed()
        self.poison.committed()
        self.stats["checkpoints"] += 1
        ms = int(info.seconds * 1000)
        self.stats["checkpoint_ms_total"] += ms
        if ms > self._ckpt_ms_max:
            self._ckpt_ms_max = ms
        (log.info if reason != "interval" else log.debug)(
            "checkpoint (%s): %d state keys, offsets %s", reason, info.keys,
            ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(info.offsets.items())) or "-")

    def _recommit_failed(self) -> None:
        """Offsets whose asynchronous commit to the group failed (service/kafka/
        group_commits.py) are committed again at the next checkpoint, unless a later
        one has replaced them or the partition has gone."""
        for key, off in self.group_commits.take_failed().items():
            if key in self.assigned and self.committed.get(key) == off:
                del self.committed[key]
                self.positions.setdefault(key, off)
                self.offsets_due = True

    def _rewind(self, exc: RewindError) -> None:
        """Back to the last committed checkpoint (see the module docstring)."""
        self.stats["rewinds"] += 1
        log.warning("going back to the last committed checkpoint: %s", exc)
        assert self.consumer is not None
        if self.eos:
            assert self.txn is not None
            if exc.recreate_producer or (self.txn.open and not self.txn.abort()):
                log.warning("recreating the transactional producer")
                self._new_txn_producer()
        else:
            # records still queued are delivered (duplicates are allowed in this mode);
            # failed ones are produced again by the replay
            self.deliveries.reset()
        for task in self.tasks.values():
            if task.state != RUNNING:  # restoring: nothing of it was read; it goes on
                continue
            self._recover_changelog(task)
            engine = self.engine.task(task.id)
            load_engine(engine, task.store)
            self.marks.load(task.id, task.store)
            register_partitions(engine, self._stream,
                                self.hops.clock_partitions(task.partitions, self.n_tasks),
                                self.hops.route)
            stored = stored_offsets(task.store)
            for key in sorted(task.partitions):
                off = stored.get(key, self.first_offsets.get(key))
                if off is not None:
                    self._seek(key, off)
            log.info("task %d back at its last checkpoint: offsets %s", task.id,
                     ", ".join(f"{t}[{p}]@{o}" for (t, p), o in sorted(stored.items())) or "-")
        self.positions.clear()
        self.committed.clear()
        self.consumed_since = 0
        self.produced_since = 0
        self.last_checkpoint = time.monotonic()

    def _seek(self, key: TP, offset: int) -> None:
        assert self.consumer is not None
        tp = TopicPartition(key[0], key[1], offset)
        try:
            self.consumer.seek(tp)
        except KafkaException as exc:  # not fetching yet: re-assign at the offset instead
            log.debug("seek %s[%d]@%d: %s; re-assigning", key[0], key[1], offset, exc)
            self.consumer.incremental_unassign([TopicPartition(key[0], key[1])])
            self.consumer.incremental_assign([tp])

    def _report(self, now: float) -> None:
        dt = now - self.last_report
        n = self.stats["records_in"] - self.stats["_reported"]
        self.stats["_reported"] = self.stats["records_in"]
        self.last_report = now
        log.info("%d records in %.0fs (%.0f/s), %d alerts, %d checkpoints (longest %d ms), "
                 "watermark %s, partitions %s", n, dt, n / dt if dt else 0.0,
                 self.stats["alerts_out"], self.stats["checkpoints"], self._ckpt_ms_max,
                 _wm(self.engine.watermark()),
                 ", ".join(f"{t}[{p}]" for (t, p) in sorted(self.assigned)) or "-")
        self._ckpt_ms_max = 0


class _RunnerSink:
    """The runner's driver sink: alerts and dead letters to their topics (in the open
    transaction in exactly-once mode); alerts also to the REST app, after the batch."""

    def __init__(self, runner: KafkaRunner) -> None:
        self.runner = runner

    def write(self, result: Result, batch: Batch | None) -> None:
        r = self.runner
        if result.alerts:
            r._emit_alerts(result.alerts)
            r._to_notify.extend(result.alerts)
        if result.dead_letters and batch is not None:
            assert batch.stream is not None
            r._emit_dead(result.dead_letters, batch.origin, batch.stream)


def _offset(d: DeadLetter) -> int:
    assert d.position is not None  # (topic, partition, offset) for every Kafka input
    off: int = d.position[2]
    return off


def _tps(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "-"


def _wm(w: float) -> str:
    if w < -(2**52):  # -inf, or held back by a partition not read yet
        return "-inf"
    if w == float("inf"):
        return "+inf"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(w / 1000)) + f".{int(w) % 1000:03d}Z"


# ------------------------------------------------------------------ python -m


def main(argv: list[str] | None = None) -> int:
    from service.config import load_settings
    from service.kafka.engine_factory import engine_from_settings

    ap = argparse.ArgumentParser(prog="python -m service.kafka.runner",
                                 description="Run the cep Kafka runner without the REST API.")
    ap.add_argument("--config", help="cep.toml (CEP_... environment variables override it)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop, ready = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping after this batch", signum)
        stop.set()

    # before the start-up: a stop while the patterns compile ends it cleanly (exit 0)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID`: every thread's stack to stderr
    settings = load_settings(args.config)
    engine = engine_from_settings(settings)
    log.info("patterns: %s", ", ".join(f"{p.name}@{p.version}" for p in engine.patterns()))
    if stop.is_set():
        return 0
    try:
        run_kafka(settings, engine, Control(), lambda alerts: None, stop, ready)
    except CepError as exc:  # KafkaRunnerError, StateStoreError (e.g. no space left), ...
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
