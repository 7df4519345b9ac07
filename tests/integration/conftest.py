"""Fixtures for integration tests against a real Kafka broker (docs/kafka-dev.md).

- ``kafka_broker`` (session): the broker. Uses ``CEP_KAFKA_BOOTSTRAP`` when set (your own
  broker or cluster, left running); otherwise ``scripts/kafka.sh up`` starts a private
  instance ``pytest-<pid>`` on free ports and ``down`` removes it at the end of the session.
- ``kafka_bootstrap`` (session): its ``host:port``; ``kafka_client_config`` a base config dict.
- ``kafka_admin`` (session): a ``confluent_kafka.admin.AdminClient``.
- ``topic_factory`` (function): ``topic_factory(partitions=1, *, config=None, prefix=None)``
  creates a uniquely named topic, waits until it is usable and deletes it after the test.
- ``restartable_broker`` (function): the ``KafkaBroker`` with ``stop()``/``start()``/
  ``restart()`` (same data dir and port). Skips the test when the broker is not managed by
  scripts/kafka.sh in this checkout. Always leaves the broker running after the test.

Every test under tests/integration/ gets the ``kafka`` marker (``pytest -m "not kafka"`` skips
them, and then no broker is started).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from kafka_broker import (
    BOOTSTRAP_ENV,
    KafkaBroker,
    KafkaBrokerError,
    remove_stale_instances,
    unique_name,
    wait_for_topic,
)

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        admin = AdminClient({"bootstrap.servers": external})
        try:
            admin.list_topics(timeout=15)
        except KafkaException as exc:
            pytest.fail(f"{BOOTSTRAP_ENV}={external} is not reachable: {exc}")
        yield KafkaBroker.attach(external)
        return
    remove_stale_instances("pytest-")
    try:
        broker = KafkaBroker.launch(instance=f"pytest-{os.getpid()}", owner_pid=os.getpid())
    except KafkaBrokerError as exc:
        pytest.fail(f"could not start the test Kafka broker:\n{exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker: KafkaBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture(scope="session")
def kafka_client_config(kafka_bootstrap: str) -> dict[str, Any]:
    """Base confluent-kafka config; copy it: ``{**kafka_client_config, "group.id": ...}``."""
    return {"bootstrap.servers": kafka_bootstrap}


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:limit] or "topic"


@pytest.fixture
def topic_factory(
    kafka_admin: AdminClient, request: pytest.FixtureRequest
) -> Iterator[Callable[..., str]]:
    created: list[str] = []

    def create(
        partitions: int = 1,
        *,
        config: dict[str, str] | None = None,
        prefix: str | None = None,
        replication_factor: int = -1,
    ) -> str:
        """Create a unique topic; ``replication_factor=-1`` uses the broker default."""
        topic = unique_name(prefix or _slug(request.node.name))
        new = NewTopic(
            topic,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=config or {},
        )
        futures = kafka_admin.create_topics([new], operation_timeout=30, request_timeout=30)
        futures[topic].result(timeout=60)
        created.append(topic)
        wait_for_topic(kafka_admin, topic, partitions)
        return topic

    yield create

    if created:
        futures = kafka_admin.delete_topics(created, operation_timeout=30, request_timeout=30)
        for future in futures.values():
            # KafkaException: the test deleted it already; TimeoutError: broker left stopped.
            with contextlib.suppress(KafkaException, TimeoutError):
                future.result(timeout=60)


@pytest.fixture
def restartable_broker(kafka_broker: KafkaBroker) -> Iterator[KafkaBroker]:
    if not kafka_broker.can_restart:
        pytest.skip(
            f"{BOOTSTRAP_ENV}={kafka_broker.bootstrap} is not a scripts/kafka.sh instance of "
            "this checkout, so it cannot be restarted"
        )
    yield kafka_broker
    if not kafka_broker.is_running():  # the test stopped it and failed before start()
        kafka_broker.start()
