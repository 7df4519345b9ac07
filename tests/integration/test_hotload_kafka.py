"""Hot-load across instances (docs/scale-out.md, "Hot-load across instances"): three
`cep serve` processes in one group on a 6-partition topic share pattern changes through
the control topic.

- a pattern deployed through one instance's API produces alerts from the partitions of
  every instance;
- an instance started afterwards has it (GET /patterns) before it is ready;
- a removal on one instance stops it on all;
- versions agree: a version number is never reused, and two instances that change the
  same pattern at the same time end with the same version and text everywhere;
- a model uploaded to one instance is loaded by the others, and removed from all;
- a bad change is refused by the instance that receives it and never written.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import Producer
from kafka_runner_helpers import (
    BASE_TS,
    committed_offsets,
    end_offsets,
    read_topic,
    settings_of,
    wait_for,
)
from scale_out_helpers import PARTITIONS, Instance, covered, partition_of

pytestmark = pytest.mark.kafka

TOKEN = "hotload-test-token"
MODELS = Path(__file__).resolve().parents[2] / "models" / "txn_risk"
BIG_SPEND = """pattern big_spend {
  from transactions
  key card_id
  match
    big where type == "purchase" and amount > AMOUNT
  emit { card = key, id = big.id }
}
"""


def http(inst: Instance, method: str, path: str, body: bytes | None = None
         ) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{inst.port}{path}", data=body,
                                 method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def versions(inst: Instance) -> dict[str, int]:
    code, body = http(inst, "GET", "/patterns")
    assert code == 200, body
    return {p["name"]: p["version"] for p in body["patterns"]}


def control_records(bootstrap: str, s: Any) -> int:
    return len(read_topic(bootstrap, f"{s.kafka.group_id}.control"))


def upload(inst: Instance, name: str, data: bytes, manifest: bytes) -> httpx.Response:
    return httpx.put(f"http://127.0.0.1:{inst.port}/models/{name}", timeout=60,
                     headers={"Authorization": f"Bearer {TOKEN}"},
                     files={"model": ("model.skops", data), "manifest": ("manifest.json",
                                                                         manifest)})


def model_sha(inst: Instance, name: str) -> str | None:
    r = httpx.get(f"http://127.0.0.1:{inst.port}/models/{name}", timeout=10)
    return str(r.json()["sha256"]) if r.status_code == 200 else None


def card_on(partition: int) -> str:
    return next(f"hot{i}" for i in range(1000) if partition_of({"card_id": f"hot{i}"})
                == partition)


def big_purchases(bootstrap: str, topic: str, tag: str, t0: int) -> None:
    """Per partition: a purchase of 9000 (id `<tag>-<p>`) and a later small one that
    moves the partition's watermark past it."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for part in range(PARTITIONS):
        card = card_on(part)
        for ev in ({"id": f"{tag}-{part}", "ts": t0, "type": "purchase", "card_id": card,
                    "amount": 9000.0},
                   {"id": f"{tag}-{part}-next", "ts": t0 + 1000, "type": "purchase",
                    "card_id": card, "amount": 3.0}):
            p.produce(topic, orjson.dumps(ev), partition=part)
    assert p.flush(30) == 0


def big_spend_ids(bootstrap: str, alert_topic: str) -> set[str]:
    return {r.json()["measures"]["id"] for r in read_topic(bootstrap, alert_topic)
            if r.json()["pattern"] == "big_spend"}


def test_a_pattern_change_on_one_instance_takes_effect_on_all(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEP_API_TOKEN", TOKEN)
    topic = topic_factory(partitions=PARTITIONS)
    a, b, c = (Instance(n, tmp_path, kafka_bootstrap, topic, False) for n in "abc")
    s = settings_of(a.cfg)
    alerts = s.kafka.alert_topic
    everyone = [a, b, c]
    try:
        a.start()
        b.start()
        wait_for(lambda: covered([a, b]) and a.running() and b.running(), 90,
                 what="two instances sharing the 6 tasks")
        # deployed through a's API: a answers once it applied it (control topic offset)
        code, change = http(a, "PUT", "/patterns/big_spend",
                            BIG_SPEND.replace("AMOUNT", "5000").encode())
        assert code == 201, change
        assert change["version"] == 1 and change["applied_at"]
        assert isinstance(change["control_offset"], int)
        wait_for(lambda: versions(b).get("big_spend") == 1, 30, what="b to load big_spend")
        # ... and matches on every partition, b's included
        b_tasks = b.running()
        assert b_tasks
        big_purchases(kafka_bootstrap, topic, "first", BASE_TS)
        wanted = {f"first-{p}" for p in range(PARTITIONS)}
        wait_for(lambda: big_spend_ids(kafka_bootstrap, alerts) >= wanted, 60,
                 interval=0.5, what="big_spend alerts from all 6 partitions")
        assert {f"first-{p}" for p in b_tasks} <= big_spend_ids(kafka_bootstrap, alerts)

        # a bad change is refused by the instance that receives it, with the reason,
        # and never reaches the topic (nobody gets a version 2)
        written = control_records(kafka_bootstrap, s)
        code, refused = http(b, "PUT", "/patterns/big_spend",
                             b"pattern big_spend { from transactions match x where }")
        assert code == 422 and refused["diagnostics"], refused
        assert control_records(kafka_bootstrap, s) == written

        # a new instance learns the current set from the control topic before it is
        # ready: every GET /patterns it answers has big_spend@1, also while /ready is 503
        c.start()
        seen: list[tuple[bool, dict[str, int]]] = []

        def c_ready() -> bool:
            try:
                code, _ = http(c, "GET", "/ready")
                seen.append((code == 200, versions(c)))
            except OSError:  # not listening yet
                return False
            return code == 200

        wait_for(c_ready, 90, interval=0.05, what="c ready")
        assert seen and all(v.get("big_spend") == 1 for _, v in seen), seen
        assert any(not ready for ready, _ in seen), "c was never seen before it was ready"
        wait_for(lambda: covered([a, b, c]) and c.running(), 90,
                 what="three instances sharing the 6 tasks")

        # removed through c (the new one): stops on all
        code, gone = http(c, "DELETE", "/patterns/big_spend")
        assert code == 200 and gone["version"] == 1, gone
        for inst in (a, b):
            wait_for(lambda inst=inst: "big_spend" not in versions(inst), 30,
                     what=f"{inst.name} to unload big_spend")
        big_purchases(kafka_bootstrap, topic, "after", BASE_TS + 60_000)
        ends = end_offsets(kafka_bootstrap, topic, PARTITIONS)
        wait_for(lambda: committed_offsets(kafka_bootstrap, s.kafka.group_id, topic,
                                           PARTITIONS) == ends, 60, interval=0.5,
                 what="the group to process the events after the removal")
        assert not {i for i in big_spend_ids(kafka_bootstrap, alerts)
                    if i.startswith("after-")}

        # versions agree: a number is never reused (1 was deleted: the next is 2) ...
        code, again = http(b, "PUT", "/patterns/big_spend",
                           BIG_SPEND.replace("AMOUNT", "6000").encode())
        assert code == 201 and again["version"] == 2, again
        # ... and two instances changing it at once get two versions, the same on all
        answers: dict[str, Any] = {}

        def put(inst: Instance, amount: str) -> None:
            answers[inst.name] = http(inst, "PUT", "/patterns/big_spend",
                                      BIG_SPEND.replace("AMOUNT", amount).encode())

        threads = [threading.Thread(target=put, args=(a, "7000")),
                   threading.Thread(target=put, args=(c, "8000"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert {code for code, _ in answers.values()} == {200}, answers
        assert sorted(body["version"] for _, body in answers.values()) == [3, 4], answers
        last = next(inst for inst in (a, c) if answers[inst.name][1]["version"] == 4)
        want = BIG_SPEND.replace("AMOUNT", "7000" if last is a else "8000")

        def agreed() -> bool:
            got = [http(i, "GET", "/patterns/big_spend")[1] for i in everyone]
            return all(g.get("version") == 4 and g.get("source") == want for g in got)

        wait_for(agreed, 30, what="every instance at version 4 with the same text")
        # GET /control: all read to the topic's end, the same refusals (a put that lost
        # the race, if the two proposals crossed), nothing failed
        end = end_offsets(kafka_bootstrap, f"{s.kafka.group_id}.control", 1)[0]
        status = [http(i, "GET", "/control")[1] for i in everyone]
        assert {st["position"] for st in status} == {end}, status
        assert len({st["refused"] for st in status}) == 1, status
        assert all(st["shared"] and not st["failed"] for st in status), status
        assert len({st["instance"] for st in status}) == 3, status

        # models travel in the control topic: uploaded to b, loaded (validated again by
        # the safe loader) on a and c; a pickle is refused by b and never written
        data = (MODELS / "model.skops").read_bytes()
        manifest = (MODELS / "manifest.json").read_bytes()
        r = upload(b, "txn_risk", data, manifest)
        assert r.status_code == 200 and isinstance(r.json()["control_offset"], int), r.text
        sha = r.json()["sha256"]
        for inst in (a, c):
            wait_for(lambda inst=inst: model_sha(inst, "txn_risk") == sha, 30,
                     what=f"{inst.name} to load txn_risk")
        written = control_records(kafka_bootstrap, s)
        bad = pickle.dumps({"not": "a model"})
        fake = orjson.loads(manifest) | {"file": "model.pkl",
                                         "sha256": hashlib.sha256(bad).hexdigest()}
        r = upload(b, "txn_risk", bad, orjson.dumps(fake))
        assert r.status_code == 422 and "pickle" in r.text.lower(), r.text
        assert control_records(kafka_bootstrap, s) == written
        r = httpx.delete(f"http://127.0.0.1:{c.port}/models/txn_risk", timeout=60,
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        for inst in (a, b):
            wait_for(lambda inst=inst: model_sha(inst, "txn_risk") is None, 30,
                     what=f"{inst.name} to unload txn_risk")
        for inst in everyone:
            assert inst.terminate() == 0, inst.log_text()[-3000:]
    finally:
        for inst in everyone:
            if inst.alive():
                inst.kill()
