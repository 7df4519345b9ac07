from __future__ import annotations

from typing import Any

import pytest

from cep.synth import generate
from cep.synth.labels import score_alerts

EVENTS: list[dict[str, Any]] = [
    {"id": "a1", "label": "card_testing:1"},
    {"id": "a2", "label": "card_testing:1"},
    {"id": "b1", "label": "card_testing:2"},
    {"id": "c1", "label": "unpaid_order:1"},
    {"id": "r1", "label": "risky_burst:1"},
    {"id": "d1"},
    {"id": "d2"},
]
BY_ID = {e["id"]: e for e in EVENTS}


def alert(pattern: str, **stages: list[str]) -> dict[str, Any]:
    return {"pattern": pattern, "events": {s: [BY_ID[i] for i in ids] for s, ids in stages.items()}}


def test_precision_recall_per_pattern() -> None:
    alerts = [
        alert("card_testing", tiny=["a1", "a2"], big=["d1"]),  # TP, incident 1
        alert("card_testing", tiny=["a2"], big=["d2"]),  # TP, incident 1 again
        alert("card_testing", tiny=["d1", "d2"], big=["c1"]),  # FP: another pattern's label
        alert("decline_burst", declined=["d1", "d2"]),  # FP, pattern without incidents
        alert("unpaid_order", created=["c1"]),  # TP
    ]
    assert score_alerts(EVENTS, alerts) == {
        "card_testing": {
            "alerts": 3,
            "true_positives": 2,
            "precision": pytest.approx(2 / 3),
            "incidents": 2,
            "detected": 1,
            "recall": 0.5,
        },
        "decline_burst": {
            "alerts": 1,
            "true_positives": 0,
            "precision": 0.0,
            "incidents": 0,
            "detected": 0,
            "recall": 0.0,
        },
        "risky_burst": {
            "alerts": 0,
            "true_positives": 0,
            "precision": 0.0,
            "incidents": 1,
            "detected": 0,
            "recall": 0.0,
        },
        "unpaid_order": {
            "alerts": 1,
            "true_positives": 1,
            "precision": 1.0,
            "incidents": 1,
            "detected": 1,
            "recall": 1.0,
        },
    }


def test_patterns_without_alerts_or_incidents_are_omitted() -> None:
    assert score_alerts([{"id": "x"}], []) == {}
    assert set(score_alerts(EVENTS, [])) == {"card_testing", "unpaid_order", "risky_burst"}


def test_trimmed_alert_events_are_resolved_by_id() -> None:
    alerts = [
        {"pattern": "card_testing", "events": {"tiny": [{"id": "b1"}], "big": [{"id": "d1"}]}}
    ]
    result = score_alerts(EVENTS, alerts)["card_testing"]
    assert (result["true_positives"], result["detected"]) == (1, 1)


def test_custom_label_field_and_empty_stages() -> None:
    evs = [{"id": "e1", "truth": "x:1"}, {"id": "e2", "label": "x:2"}]
    alerts = [{"pattern": "x", "events": {"s": [evs[0]]}}, {"pattern": "x", "events": {}}]
    assert score_alerts(evs, alerts, label_field="truth")["x"] == {
        "alerts": 2,
        "true_positives": 1,
        "precision": 0.5,
        "incidents": 1,
        "detected": 1,
        "recall": 1.0,
    }


def test_perfect_alerts_from_labels_score_one() -> None:
    evs = generate(20_000, seed=4)
    groups: dict[str, list[dict[str, Any]]] = {}
    for e in evs:
        if "label" in e:
            groups.setdefault(e["label"], []).append(e)
    alerts = [{"pattern": lbl.partition(":")[0], "events": {"all": g}} for lbl, g in groups.items()]
    for score in score_alerts(evs, alerts).values():
        assert score["precision"] == 1.0 and score["recall"] == 1.0
