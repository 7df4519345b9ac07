"""The alert hub alone: ids, the bounded buffer, filters, slow subscribers, file errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from service_helpers import make_settings

from cep.runtime.engine import Alert
from service.api.hub import AlertFilter, AlertHub, key_text
from service.config import KafkaConfig
from service.service_state import ServiceState


def alert(pattern: str = "p", key: Any = "k", severity: str = "low", **rec: Any) -> Alert:
    return Alert(None, key, {"pattern": pattern, "key": key, "severity": severity, **rec})


def test_ids_buffer_and_filters(tmp_path: Path) -> None:
    hub = AlertHub(3, tmp_path / "a.jsonl")
    hub.open()
    items = hub.publish([alert(key="a"), alert(key=["x", 1]), alert("q", severity="high")])
    assert [i.id for i in items] == [1, 2, 3]
    hub.publish([alert(big=2**70)])  # beyond orjson's integers: still serialised
    assert [i.id for i in hub.recent()] == [2, 3, 4] and hub.oldest_id() == 2
    assert [i.id for i in hub.recent(AlertFilter(key="x,1"))] == [2]
    assert [i.id for i in hub.recent(AlertFilter(pattern="q", severity="high"))] == [3]
    assert [i.id for i in hub.recent(after_id=2, limit=1, newest=False)] == [3]
    assert [i.id for i in hub.recent(limit=1)] == [4]
    hub.close()
    lines = (tmp_path / "a.jsonl").read_bytes().splitlines()
    assert len(lines) == 4 and json.loads(lines[3])["big"] == 2**70
    assert key_text(None) == "" and key_text(True) == "true" and key_text(["a", 2]) == "a,2"


def test_a_slow_subscriber_is_closed_not_waited_for() -> None:
    async def run() -> list[Any]:
        hub = AlertHub(100, None, max_pending=3)
        sub = hub.subscribe(asyncio.get_running_loop())
        hub.publish([alert(), alert()])
        hub.publish([alert(), alert()])  # 2 pending before it: delivered
        hub.publish([alert()])  # 4 pending before it > 3: closed
        await asyncio.sleep(0.05)
        got = [await sub.get(), await sub.get(), await sub.get()]
        hub.publish([alert()])  # nothing more for a closed subscriber
        await asyncio.sleep(0.05)
        return [None if g is None else [i.id for i in g] for g in got] + [sub.queue.qsize()]

    assert asyncio.run(run()) == [[1, 2], [3, 4], None, 0]


def test_close_ends_streams_and_refuses_new_ones() -> None:
    async def run() -> tuple[Any, Any]:
        hub = AlertHub(10, None)
        sub = hub.subscribe(asyncio.get_running_loop())
        hub.close()
        first = await sub.get()
        late = hub.subscribe(asyncio.get_running_loop())
        return first, await late.get()

    assert asyncio.run(run()) == (None, None)


class BrokenFile:
    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_failing_alerts_file_does_not_lose_the_alerts() -> None:
    hub = AlertHub(10, Path("unused"))
    hub._file = BrokenFile()  # type: ignore[assignment]
    assert [i.id for i in hub.publish([alert()])] == [1]
    assert hub.file_errors == 1 and len(hub) == 1


def test_kafka_mode_alerts_name_the_alert_topic(tmp_path: Path) -> None:
    """In Kafka mode, /alerts shows where an alert without `emit to` went (the alert
    topic), not `"topic": null`."""
    settings = make_settings(tmp_path, kafka=KafkaConfig(bootstrap_servers="127.0.0.1:1",
                                                         alert_topic="my.alerts"))
    svc = ServiceState(settings)
    svc.hub.open()
    try:
        rec = {"pattern": "p", "key": "k", "severity": "high"}
        svc._publish([Alert(None, "k", rec), Alert("fraud.alerts", "k", rec)])
        assert [i.topic for i in svc.hub.recent(after_id=0)] == ["my.alerts", "fraud.alerts"]
    finally:
        svc.hub.close()
