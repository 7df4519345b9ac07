"""An asynchronous offset commit to the group that fails (ILLEGAL_GENERATION while a
rebalance moves the group to a new generation; service/kafka/group_commits.py) is sent
again at the next checkpoint, even when no record follows. Before, the runner took it
as done: once its partitions were read to the end the group's offsets stayed behind
for good, and `benchmarks/scale.py` with 3 processes waited for them forever.

The consumer reports the outcome of its commits through `on_commit`; the failure is
reported here through that same callback (a real ILLEGAL_GENERATION needs a commit in
flight exactly when the group's generation changes, which the benchmark hits about one
run in three on a loaded machine but a test cannot schedule)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition
from kafka_runner_helpers import (
    BASE_TS,
    RunnerThread,
    committed_offsets,
    produce,
    settings_of,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.kafka


def test_a_failed_group_commit_is_sent_again_without_new_input(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    topic = topic_factory(partitions=2)
    cfg = write_config(tmp_path, kafka_bootstrap, topic, checkpoint="200ms")
    group = settings_of(cfg).kafka.group_id
    events = [{"id": f"e{i}", "ts": BASE_TS + i, "type": "purchase", "card_id": f"c{i % 7}",
               "amount": 5.0} for i in range(40)]
    with RunnerThread(cfg) as r:
        produce(kafka_bootstrap, topic, events, key_field="card_id", partitions=2)
        r.wait_consumed(topic, len(events))
        r.wait_checkpointed()
        ends = [sum(1 for e in events if sum(e["card_id"].encode()) % 2 == p)
                for p in range(2)]
        wait_for(lambda: committed_offsets(kafka_bootstrap, group, topic, 2) == ends, 20,
                 what="the group at the end")
        before = r.runner.stats["checkpoints"]
        # the consumer reports that the commit of partition 1's last offset failed
        r.runner.group_commits.on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION),
                                         [TopicPartition(topic, 1, ends[1])])
        # committed again at the next checkpoint although nothing new was read
        wait_for(lambda: r.runner.stats["checkpoints"] > before, 10,
                 what="a checkpoint that commits the failed offset again")
        assert r.runner.committed[(topic, 1)] == ends[1]
        assert not r.runner.offsets_due
        # a failure reported for an offset a later checkpoint has replaced is ignored
        after = r.runner.stats["checkpoints"]
        r.runner.group_commits.on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION),
                                         [TopicPartition(topic, 0, ends[0] - 1)])
        wait_for(lambda: not r.runner.group_commits._failed, 5, what="the report taken")
        r.wait_checkpointed()
        assert r.runner.stats["checkpoints"] == after
    assert committed_offsets(kafka_bootstrap, group, topic, 2) == ends
