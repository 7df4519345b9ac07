from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter

import orjson
import pytest
import synth_oracles
from synth_helpers import baseline, events, incidents

from cep.synth import generate
from cep.synth.incidents import INCIDENTS

PURCHASE = {
    "card_id": str,
    "user_id": str,
    "amount": float,
    "merchant": str,
    "channel": str,
    "country": str,
    "lat": float,
    "lon": float,
    "home_country": str,
    "status": str,
}
FIELDS: dict[tuple[str, str], dict[str, type]] = {
    ("transactions", "purchase"): PURCHASE,
    ("transactions", "transfer"): {"user_id": str, "amount": float, "new_beneficiary": bool},
    ("logins", "login"): {"user_id": str, "device_id": str, "new_device": bool},
    ("account_events", "password_change"): {"user_id": str},
    ("account_events", "email_change"): {"user_id": str},
    ("orders", "order_created"): {"order_id": str, "user_id": str, "amount": float},
    ("orders", "payment_received"): {"order_id": str, "user_id": str},
    ("sessions", "add_to_cart"): {"session_id": str, "user_id": str},
    ("sessions", "checkout"): {"session_id": str, "user_id": str},
    ("sessions", "payment"): {"session_id": str, "user_id": str},
}


def _digest(evs: object) -> str:
    return hashlib.sha256(orjson.dumps(evs)).hexdigest()


def test_exact_count_sorted_and_ids_follow_position() -> None:
    evs = events(20_000, 3)
    assert len(evs) == 20_000
    ts = [e["ts"] for e in evs]
    assert ts == sorted(ts)
    assert [e["id"] for e in evs] == [f"e{i:09d}" for i in range(len(evs))]
    assert ts[0] >= 1_763_712_000_000


def test_same_seed_same_bytes_other_seed_differs() -> None:
    a = generate(5_000, seed=11)
    b = generate(5_000, seed=11)
    c = generate(5_000, seed=12)
    assert orjson.dumps(a) == orjson.dumps(b)
    assert orjson.dumps(a) != orjson.dumps(c)


def test_independent_of_hash_seed() -> None:
    code = (
        "import hashlib, orjson; from cep.synth import generate; "
        "print(hashlib.sha256(orjson.dumps(generate(3000, seed=5))).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == _digest(generate(3000, seed=5))


def test_fields_and_types_per_stream() -> None:
    evs = events(20_000, 3)
    kinds = Counter((e["stream"], e["type"]) for e in evs)
    assert set(kinds) == set(FIELDS)
    for e in evs:
        assert isinstance(e["id"], str) and isinstance(e["ts"], int)
        expected = FIELDS[(e["stream"], e["type"])]
        extra = set(e) - {"id", "ts", "stream", "type", "label"} - set(expected)
        assert not extra, e
        for field, typ in expected.items():
            assert type(e[field]) is typ, (field, e)
        if "amount" in e:
            assert round(e["amount"], 2) == e["amount"]
        if e["stream"] == "transactions" and e["type"] == "purchase":
            assert e["channel"] in ("pos", "online")
            assert e["status"] in ("approved", "declined")
    # purchases dominate; every stream is present in a plausible share
    assert kinds[("transactions", "purchase")] > 0.5 * len(evs)


def test_every_incident_type_is_present_and_labelled() -> None:
    evs = events()
    inc = incidents(evs)
    assert set(inc) == set(INCIDENTS)
    assert sum(len(v) for v in inc.values()) == round(50_000 * 0.002)
    for pattern, labels in inc.items():
        assert len(labels) >= 10, pattern
        for label in labels:
            name, _, number = label.partition(":")
            assert name == pattern and number.isdigit()


@pytest.mark.parametrize("pattern", sorted(synth_oracles.ORACLES))
def test_incidents_match_their_pattern_and_nothing_else_does(pattern: str) -> None:
    """Reference checks of each example pattern: every alert is made of one incident's
    events, and every incident gives an alert. Near misses and background give none."""
    evs = list(events())
    expected = incidents(evs).get(pattern, set())
    found: set[str] = set()
    for alert in synth_oracles.ORACLES[pattern](evs):
        labels = {e.get("label") for e in alert}
        assert len(labels) == 1, alert
        (label,) = labels
        assert label is not None and label.startswith(pattern + ":"), alert
        found.add(label)
    assert found == expected


def test_baseline_finds_every_card_testing_incident_and_no_near_miss() -> None:
    evs = events()
    expected = incidents(evs)["card_testing"]
    by_id = {e["id"]: e for e in evs}
    matches = baseline().match_card_testing(evs)
    assert len(matches) == len(expected)  # one alert per incident, none elsewhere
    found = set()
    for card, tiny_ids, big_id in matches:
        labels = {by_id[i].get("label") for i in [*tiny_ids, big_id]}
        assert len(labels) == 1 and None not in labels, labels
        assert all(by_id[i]["card_id"] == card for i in [*tiny_ids, big_id])
        found |= labels
    assert found == expected


def test_near_misses_are_present_and_unlabelled() -> None:
    evs = events()
    unlabelled = [e for e in evs if "label" not in e]
    tiny = [e for e in unlabelled if e["type"] == "purchase" and e["amount"] < 2.0]
    assert len(tiny) >= 20  # card_testing near misses
    assert any(e["type"] == "purchase" and e["amount"] == 2.0 for e in unlabelled)
    foreign_pos = [
        e
        for e in unlabelled
        if e["type"] == "purchase" and e["channel"] == "pos" and e["country"] != e["home_country"]
    ]
    assert foreign_pos  # plausible travel
    assert any(e["type"] == "transfer" and e["amount"] == 1000.0 for e in unlabelled)
    declines = Counter(e["card_id"] for e in unlabelled if e.get("status") == "declined")
    assert max(declines.values()) >= 4


def test_background_alone_matches_nothing() -> None:
    evs = generate(50_000, seed=21, incident_rate=0.0)
    assert not any("label" in e for e in evs)
    for oracle in synth_oracles.ORACLES.values():
        assert oracle(evs) == []
    assert baseline().match_card_testing(evs) == []
    assert not [e for e in evs if e["type"] == "purchase" and e["amount"] < 2.0]


def test_default_span_is_about_one_day() -> None:
    evs = events()
    hours = (evs[-1]["ts"] - evs[0]["ts"]) / 3_600_000
    assert 23 <= hours <= 26
    per_card = Counter(e["card_id"] for e in evs if e["type"] == "purchase")
    assert max(per_card.values()) < 60  # no card is absurdly busy


@pytest.mark.parametrize(
    ("n", "kw"),
    [
        (0, {}),
        (1, {}),
        (7, {}),
        (3_000, {"n_keys": 1}),
        (3_000, {"n_keys": 2, "incident_rate": 0.05}),
    ],
)
def test_small_and_crowded_worlds(n: int, kw: dict[str, object]) -> None:
    evs = generate(n, seed=1, **kw)  # type: ignore[arg-type]
    assert len(evs) == n
    assert [e["ts"] for e in evs] == sorted(e["ts"] for e in evs)
    for pattern, oracle in synth_oracles.ORACLES.items():
        for alert in oracle(evs):
            assert {e.get("label", "").partition(":")[0] for e in alert} == {pattern}
    expected = incidents(evs).get("card_testing", set())
    assert len(baseline().match_card_testing(evs)) == len(expected)


@pytest.mark.parametrize(
    "kw", [{"n_events": -1}, {"n_events": 10, "n_keys": 0}, {"n_events": 10, "incident_rate": 0.5}]
)
def test_bad_arguments(kw: dict[str, int | float]) -> None:
    with pytest.raises(ValueError):
        generate(**kw)  # type: ignore[arg-type]
