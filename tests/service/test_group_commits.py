"""GroupCommits (service/kafka/group_commits.py): which commit outcomes are failures to
send again."""

from __future__ import annotations

from confluent_kafka import KafkaError, TopicPartition

from service.kafka.group_commits import GroupCommits


def tp(p: int, off: int) -> TopicPartition:
    return TopicPartition("in", p, off)


def test_a_failed_commit_is_handed_back_once() -> None:
    g = GroupCommits()
    g.on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION), [tp(0, 10), tp(1, 7)])
    assert g.failures == 1
    assert g.take_failed() == {("in", 0): 10, ("in", 1): 7}
    assert g.take_failed() == {}


def test_the_latest_failed_offset_of_a_partition_wins() -> None:
    g = GroupCommits()
    g.on_commit(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), [tp(0, 10)])
    g.on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION), [tp(0, 12)])
    assert g.take_failed() == {("in", 0): 12}


def test_successes_and_nothing_to_commit_are_not_failures() -> None:
    g = GroupCommits()
    g.on_commit(None, [tp(0, 10), tp(1, 3)])
    g.on_commit(KafkaError(KafkaError._NO_OFFSET), [tp(0, 10)])
    g.on_commit(KafkaError(KafkaError.ILLEGAL_GENERATION), [tp(2, -1001)])  # no offset
    assert g.failures == 0
    assert g.take_failed() == {}
