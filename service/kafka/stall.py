"""What the Kafka runner tells its watchdog every time round its loop.

`StallCheck.beat()` works out whether input is waiting (records read since the last
checkpoint, a partition behind its end by the high watermark librdkafka cached with
its last fetch, or no partition assigned at all), reports it to the runner's
`watchdog.Progress`, and stops the runner (`KafkaRunnerError`, exit 1) once it has
been stalled for `kafka.stall_exit_ms`. Lag is looked at twice a second at most.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from confluent_kafka import KafkaException, TopicPartition

from service.kafka.checkpoint import KafkaRunnerError
from service.kafka.watchdog import Progress

log = logging.getLogger("cep.kafka")


class RunnerView(Protocol):
    progress: Progress
    assigned: set[tuple[str, int]]
    positions: dict[tuple[str, int], int]
    consumed_since: int
    consumer: Any
    k: Any


class StallCheck:
    def __init__(self, runner: RunnerView, clock: Any = time.monotonic) -> None:
        self.r = runner
        self.clock = clock
        self._checked = 0.0
        self._lag_reason: str | None = None
        self._warned = False

    def waiting(self) -> str | None:
        r = self.r
        if not r.assigned:
            return "no partition assigned"
        if r.consumed_since:
            return f"{r.consumed_since} records read since the last checkpoint"
        now = self.clock()
        if now - self._checked >= 0.5:
            self._checked = now
            self._lag_reason = self._lag()
        return self._lag_reason

    def _lag(self) -> str | None:
        r = self.r
        if r.consumer is None:
            return None
        for t, p in sorted(r.assigned):
            pos = r.positions.get((t, p))
            if pos is None:
                continue
            try:
                _, high = r.consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
            except KafkaException:
                continue
            if high > pos and not _past_markers(r.consumer, t, p, high):
                return f"{t}[{p}] is {high - pos} records behind"
        return None

    def beat(self) -> None:
        progress = self.r.progress
        progress.beat(self.waiting())
        exit_s = self.r.k.stall_exit_ms / 1000
        stalled = progress.stalled()
        if stalled is not None and not self._warned:
            self._warned = True
            log.error("%s", stalled)
        elif stalled is None:
            self._warned = False
        if exit_s > 0 and progress.stalled_for() >= exit_s:
            raise KafkaRunnerError(
                f"{stalled}; stopping after kafka.stall_exit_ms = {exit_s * 1000:.0f} so that "
                "the supervisor restarts the service (it resumes from the last checkpoint)")


def _past_markers(consumer: Any, topic: str, partition: int, high: int) -> bool:
    """The consumer's position is at the end: what lies between the last record read
    and the end are transaction markers or aborted records (a transactional topic,
    e.g. a repartition topic), which read_committed never delivers."""
    try:
        pos = consumer.position([TopicPartition(topic, partition)])[0].offset
    except KafkaException:
        return False
    return bool(pos >= high)
