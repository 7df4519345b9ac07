"""A changelog topic written by cep before state layout 2 (docs/engine.md, "Checkpoint
encoding and writes") still restores: a task with no local store rebuilds its state
from layout-1 records (written by main at b03880c, tests/state/data/), and the rest
of the input gives the alerts of an uninterrupted run."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from kafka_runner_helpers import RunnerThread, produce, settings_of, wait_for, write_config

from cep.state.codec import STATE_PREFIX
from service.kafka.engine_factory import engine_from_settings
from service.kafka.store import COMMIT_KEY

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
NAME = "impossible_travel"


def test_a_task_restores_layout1_changelog_records(
    kafka_bootstrap: str, kafka_admin: Any, topic_factory: Any, tmp_path: Path
) -> None:
    case = json.loads((ROOT / "tests" / "state" / "data" / "layout1_checkpoints.json")
                      .read_text())["cases"][NAME]
    records = [(base64.b64decode(k), base64.b64decode(v)) for k, v in case["memory"]]
    stored = [k for k, v in records if k.startswith(STATE_PREFIX)]
    assert stored and all(v.startswith(b"{") for k, v in records if k in stored)
    lines = (ROOT / "tests" / "golden" / NAME / "events.jsonl").read_text().splitlines()
    events = [json.loads(ln) for ln in lines if ln.strip()]

    topic = topic_factory(partitions=1)
    # idle 1s: the checkpoint's clock partition (an engine outside Kafka) goes idle
    cfg = write_config(tmp_path, kafka_bootstrap, topic, exactly_once=True, idle="1s",
                       patterns=(ROOT / "patterns" / f"{NAME}.cep").read_text())
    changelog = settings_of(cfg).kafka.changelog_topic
    for f in kafka_admin.create_topics([NewTopic(changelog, 1, 1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for k, v in records:
        p.produce(changelog, v, k, partition=0)
    p.produce(changelog, b"1", COMMIT_KEY, partition=0)
    assert p.flush(30) == 0

    engine = engine_from_settings(settings_of(cfg))
    first = {a.record["alert_id"] for a in engine.process(events[:case["cut"]],
                                                          stream="transactions").alerts}
    rest = engine.process(events[case["cut"]:], stream="transactions").alerts
    rest += engine.finish().alerts
    want = sorted(a.record["alert_id"] for a in rest)
    assert want and not first & set(want)

    with RunnerThread(cfg) as r:
        snap = r.engine.task(0).snapshot().patterns
        assert sum(p.keys for p in snap) == len(stored)  # every key of the changelog
        assert r.runner.stats["changelog_records_replayed"] == len(records) + 1
        produce(kafka_bootstrap, topic, events[case["cut"]:])
        wait_for(lambda: len(r.alerts) >= len(want), 60, what="the alerts after the cut")
        got = sorted(a.record["alert_id"] for a in r.alerts)
    assert got == want
