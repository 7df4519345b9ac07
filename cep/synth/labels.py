"""Precision and recall of alerts against the labels of a generated stream.

An incident is a distinct label value `"<pattern>:<n>"`. An alert of pattern P is a
true positive when any of its events has a label whose part before ':' is P; incident
L of P is detected when at least one alert of P contains an event labelled L. An alert
event that lacks the label field (alerts may carry trimmed events) is looked up by its
`id` among `events`.

Undefined ratios are 0.0: precision of a pattern without alerts, recall of a pattern
without incidents. Patterns with neither alerts nor incidents are omitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Score = dict[str, float]


def score_alerts(
    events: Iterable[Mapping[str, Any]],
    alerts: Iterable[Mapping[str, Any]],
    label_field: str = "label",
) -> dict[str, Score]:
    """Per pattern: alerts, true_positives, precision, incidents, detected, recall."""
    incidents: dict[str, set[str]] = {}
    label_of: dict[Any, str] = {}
    for e in events:
        label = e.get(label_field)
        if isinstance(label, str):
            incidents.setdefault(_pattern_of(label), set()).add(label)
            if "id" in e:
                label_of[e["id"]] = label

    n_alerts: dict[str, int] = {}
    true_pos: dict[str, int] = {}
    detected: dict[str, set[str]] = {}
    for alert in alerts:
        pattern = str(alert["pattern"])
        n_alerts[pattern] = n_alerts.get(pattern, 0) + 1
        hits = {
            label
            for label in _alert_labels(alert, label_field, label_of)
            if _pattern_of(label) == pattern
        }
        if hits:
            true_pos[pattern] = true_pos.get(pattern, 0) + 1
            detected.setdefault(pattern, set()).update(hits)

    result: dict[str, Score] = {}
    for pattern in sorted(set(incidents) | set(n_alerts)):
        a = n_alerts.get(pattern, 0)
        tp = true_pos.get(pattern, 0)
        inc = len(incidents.get(pattern, ()))
        det = len(detected.get(pattern, set()) & incidents.get(pattern, set()))
        result[pattern] = {
            "alerts": a,
            "true_positives": tp,
            "precision": tp / a if a else 0.0,
            "incidents": inc,
            "detected": det,
            "recall": det / inc if inc else 0.0,
        }
    return result


def _pattern_of(label: str) -> str:
    return label.partition(":")[0]


def _alert_labels(
    alert: Mapping[str, Any], label_field: str, label_of: Mapping[Any, str]
) -> Iterable[str]:
    stages = alert.get("events") or {}
    for stage_events in stages.values():
        for e in stage_events:
            label = e.get(label_field)
            if label is None:
                label = label_of.get(e.get("id"))
            if isinstance(label, str):
                yield label
