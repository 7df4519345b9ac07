"""The dev/test Kafka broker itself: plain produce/consume, transactions, restart survival."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka_broker import KafkaBroker, consume_values, unique_name

pytestmark = pytest.mark.kafka


# librdkafka backs off reconnects up to 10 s by default; after a broker restart that is
# pure waiting, so the clients here retry at least every second.
_FAST_RECONNECT = {"reconnect.backoff.max.ms": 1000}


def _producer(config: dict[str, Any], **extra: Any) -> Producer:
    return Producer({**config, **_FAST_RECONNECT, "linger.ms": 0, **extra})


def _consumer(config: dict[str, Any], **extra: Any) -> Consumer:
    return Consumer(
        {
            **config,
            **_FAST_RECONNECT,
            "group.id": unique_name("group"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **extra,
        }
    )


def _produce_sync(producer: Producer, topic: str, value: bytes, timeout: float = 60.0) -> None:
    errors: list[Any] = []
    producer.produce(topic, value, on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(timeout) == 0, "message not delivered in time"
    assert errors == [None]


def _read_partition(config: dict[str, Any], topic: str, count: int, **extra: Any) -> list[Any]:
    consumer = _consumer(config, **extra)
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        return consume_values(consumer, count)
    finally:
        consumer.close()


def test_produce_and_consume(
    kafka_client_config: dict[str, Any], topic_factory: Any, kafka_admin: Any
) -> None:
    topic = topic_factory(partitions=3)
    assert len(kafka_admin.list_topics(topic=topic, timeout=10).topics[topic].partitions) == 3

    producer = _producer(kafka_client_config)
    sent = [f"event-{i}".encode() for i in range(10)]
    for i, value in enumerate(sent):
        producer.produce(topic, value, key=str(i % 3).encode())
    assert producer.flush(30) == 0

    consumer = _consumer(kafka_client_config)
    try:
        consumer.subscribe([topic])
        received = consume_values(consumer, len(sent))
    finally:
        consumer.close()
    assert sorted(received) == sorted(sent)


def test_transactions_commit_and_abort(
    kafka_client_config: dict[str, Any], topic_factory: Any
) -> None:
    topic = topic_factory()
    producer = _producer(kafka_client_config, **{"transactional.id": unique_name("txn")})
    producer.init_transactions(60)

    producer.begin_transaction()
    producer.produce(topic, b"committed-1")
    producer.commit_transaction(60)

    producer.begin_transaction()
    producer.produce(topic, b"aborted")
    assert producer.flush(30) == 0  # really written to the log before the abort
    producer.abort_transaction(60)

    producer.begin_transaction()
    producer.produce(topic, b"committed-2")
    producer.commit_transaction(60)

    committed = _read_partition(
        kafka_client_config, topic, 2, **{"isolation.level": "read_committed"}
    )
    assert committed == [b"committed-1", b"committed-2"]

    # The aborted record is in the log: a read_uncommitted consumer does see it.
    everything = _read_partition(
        kafka_client_config, topic, 3, **{"isolation.level": "read_uncommitted"}
    )
    assert everything == [b"committed-1", b"aborted", b"committed-2"]


def test_restart_keeps_data_and_clients_recover(
    restartable_broker: KafkaBroker, kafka_client_config: dict[str, Any], topic_factory: Any
) -> None:
    topic = topic_factory()
    group = unique_name("group")
    producer = _producer(kafka_client_config, **{"enable.idempotence": True})
    _produce_sync(producer, topic, b"before-restart")

    consumer = _consumer(kafka_client_config, **{"group.id": group})
    consumer.subscribe([topic])
    assert consume_values(consumer, 1) == [b"before-restart"]
    consumer.commit(asynchronous=False)
    consumer.close()

    downtime = restartable_broker.restart()
    assert downtime < 120

    # The producer created before the restart reconnects by itself.
    _produce_sync(producer, topic, b"after-restart")

    # Committed group offsets survived: the group resumes after the first message.
    consumer = _consumer(kafka_client_config, **{"group.id": group})
    consumer.subscribe([topic])
    try:
        assert consume_values(consumer, 1) == [b"after-restart"]
    finally:
        consumer.close()

    # And the log itself survived.
    assert _read_partition(kafka_client_config, topic, 2) == [b"before-restart", b"after-restart"]


def test_stop_then_start(
    restartable_broker: KafkaBroker, kafka_client_config: dict[str, Any], topic_factory: Any
) -> None:
    topic = topic_factory()
    producer = _producer(kafka_client_config, **{"message.timeout.ms": 120_000})
    _produce_sync(producer, topic, b"one")

    restartable_broker.stop()
    # Produced while the broker is down: buffered by the client, delivered after start().
    producer.produce(topic, b"two")
    assert producer.flush(0.5) == 1
    restartable_broker.start()
    assert producer.flush(60) == 0

    assert _read_partition(kafka_client_config, topic, 2) == [b"one", b"two"]
