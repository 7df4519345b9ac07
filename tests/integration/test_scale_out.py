"""Scale-out on a consumer group (docs/scale-out.md): 6 input partitions = 6 tasks, up to
3 `cep serve` processes with one group id on this machine, while events keep arriving:

    1 process -> 3 processes -> kill -9 of one -> one restarted with a wiped state_dir
    -> back to 1 process

Exactly-once: the alerts read_committed are exactly a backtest's (same alert ids, none
twice, none missing). At-least-once: none missing, none that the backtest lacks (every
duplicate carries an alert_id seen before)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from kafka_runner_helpers import (
    MINUTE,
    alert_ids,
    committed_offsets,
    end_offsets,
    read_topic,
    settings_of,
    wait_for,
    workload,
    write_config,
)
from scale_out_helpers import PARTITIONS, Instance, covered, partition_of

from service.kafka.engine_factory import engine_from_settings

pytestmark = pytest.mark.kafka

@pytest.mark.parametrize("eos", [True, False], ids=["exactly-once", "at-least-once"])
def test_scale_1_3_kill_wipe_1_gives_the_backtest_alerts(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, eos: bool
) -> None:
    topic = topic_factory(partitions=PARTITIONS)
    a, b, c = (Instance(n, tmp_path, kafka_bootstrap, topic, eos) for n in "abc")
    s = settings_of(a.cfg)
    events = workload(12_000)
    events += [{"id": f"end-{p}", "ts": events[-1]["ts"] + 60 * MINUTE, "type": "end",
                "card_id": next(f"end{i}" for i in range(200)
                                if sum(f"end{i}".encode()) % PARTITIONS == p)}
               for p in range(PARTITIONS)]
    fed = threading.Event()

    def feed(part: list[dict[str, Any]], pause: float) -> None:
        p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5,
                      "enable.idempotence": True})
        for i, ev in enumerate(part):
            p.produce(topic, orjson.dumps(ev), key=None, partition=partition_of(ev))
            if i % 300 == 299:
                p.poll(0)
                time.sleep(pause)
        assert p.flush(60) == 0

    everyone = [a, b, c]
    try:
        a.start()
        wait_for(lambda: covered([a]), 60, what="one instance running the 6 tasks")
        # events flow for the rest of the test (~20 s), the end markers once it is over
        feeder = threading.Thread(target=lambda: (feed(events[:-PARTITIONS], 0.15),
                                                  fed.set()), daemon=True)
        feeder.start()
        time.sleep(1.5)
        # 1 -> 3
        b.start()
        c.start()
        wait_for(lambda: covered([a, b, c]) and all(i.running() for i in (a, b, c)), 90,
                 what="three instances sharing the 6 tasks")
        # kill -9 of one: the survivors take its tasks (static membership: after the
        # session timeout; exactly-once: after its open transaction times out)
        time.sleep(1.0)
        moved = b.running()
        b.kill()
        t_kill = time.monotonic()
        wait_for(lambda: covered([a, c]), 90, what="the survivors taking b's tasks")
        takeover = time.monotonic() - t_kill
        assert moved and moved <= a.running() | c.running()
        # a wiped state_dir: c stops, loses its local state, comes back (restores its
        # tasks from the changelog) next to a restarted b
        assert c.terminate() == 0, c.log_text()[-3000:]
        shutil.rmtree(c.state_dir)
        c.start()
        b.start()
        wait_for(lambda: covered([a, b, c]) and c.running(), 90,
                 what="c back with a wiped state_dir")
        assert "rebuilding it from changelog" in c.log_text().rsplit("---- start ----", 1)[-1]
        # 3 -> 1 while the events still flow
        assert b.terminate() == 0, b.log_text()[-3000:]
        assert c.terminate() == 0, c.log_text()[-3000:]
        wait_for(lambda: covered([a]), 90, what="a running the 6 tasks again")
        assert fed.wait(120)
        feed(events[-PARTITIONS:], 0)
        ends = end_offsets(kafka_bootstrap, topic, PARTITIONS)
        assert sum(ends) == len(events)
        wait_for(lambda: committed_offsets(kafka_bootstrap, s.kafka.group_id, topic,
                                           PARTITIONS) == ends, 120,
                 interval=0.5, what="the group to commit the end of the input")
        assert a.terminate() == 0, a.log_text()[-3000:]
    finally:
        for i in everyone:
            if i.alive():
                i.kill()

    records = read_topic(kafka_bootstrap, s.kafka.alert_topic) + read_topic(
        kafka_bootstrap, f"alerts2-{topic.rsplit('-', 1)[-1]}")
    got = alert_ids(records)
    expected = {a.record["alert_id"]
                for a in engine_from_settings(s).process(events, stream="transactions").alerts}
    assert len(expected) > 100
    missing, extra = expected - set(got), set(got) - expected
    logs = "\n".join(f"==== {i.name}\n{i.log_text()[-2500:]}" for i in everyone)
    assert not missing, f"{len(missing)} of {len(expected)} alerts missing\n{logs}"
    assert not extra, f"{len(extra)} alerts the backtest does not have\n{logs}"
    if eos:
        assert len(got) == len(set(got)), "duplicates in exactly-once mode"
    print(f"\n[{'eos' if eos else 'alo'}] takeover after kill -9: {takeover:.1f}s; "
          f"{len(got) - len(set(got))} duplicates of {len(expected)} alerts")


def test_input_topics_that_are_not_co_partitioned_are_refused(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    from kafka_runner_helpers import RunnerThread

    from service.kafka.checkpoint import KafkaRunnerError

    t6, t2 = topic_factory(partitions=6), topic_factory(partitions=2)
    cfg = write_config(tmp_path, kafka_bootstrap, t6)
    cfg.write_text(cfg.read_text() + f'\n[streams.other]\ntopic = "{t2}"\n')
    runner = RunnerThread(cfg)
    runner.thread.start()
    runner.thread.join(60)
    assert isinstance(runner.error, KafkaRunnerError)
    assert "not co-partitioned" in str(runner.error) and f"{t2}: 2" in str(runner.error)


def test_a_changelog_with_another_partition_count_is_refused(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    from kafka_runner_helpers import RunnerThread

    from service.kafka.checkpoint import KafkaRunnerError

    topic, changelog = topic_factory(partitions=3), topic_factory(partitions=1)
    cfg = write_config(tmp_path, kafka_bootstrap, topic)
    tag = topic.rsplit("-", 1)[-1]
    cfg.write_text(cfg.read_text().replace(f'changelog_topic = "changelog-{tag}"',
                                           f'changelog_topic = "{changelog}"'))
    runner = RunnerThread(cfg)
    runner.thread.start()
    runner.thread.join(60)
    assert isinstance(runner.error, KafkaRunnerError)
    assert "has 1 partition(s) but the input has 3" in str(runner.error)
