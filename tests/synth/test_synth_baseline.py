"""FlinkCEP semantics of the hand-written card_testing baseline, on hand-made streams."""

from __future__ import annotations

from typing import Any

import orjson
from synth_helpers import baseline, events, incidents

MIN = 60_000
T0 = 1_763_712_000_000


def _stream(*rows: tuple[float, float] | tuple[float, float, str]) -> list[dict[str, Any]]:
    """rows of (seconds after T0, amount[, card]) -> purchase events with ids p0, p1, ..."""
    out = []
    for i, row in enumerate(rows):
        secs, amount, card = (*row, "card-1")[:3]
        out.append(
            {
                "id": f"p{i}",
                "ts": T0 + int(secs * 1000),
                "stream": "transactions",
                "type": "purchase",
                "card_id": card,
                "amount": amount,
            }
        )
    return out


def match(evs: list[dict[str, Any]]) -> list[tuple[Any, list[Any], Any]]:
    result: list[tuple[Any, list[Any], Any]] = baseline().match_card_testing(evs)
    return result


def test_three_tinies_then_big() -> None:
    evs = _stream((0, 1.0), (10, 1.5), (20, 0.5), (30, 200.0))
    assert match(evs) == [("card-1", ["p0", "p1", "p2"], "p3")]


def test_two_tinies_are_not_enough() -> None:
    assert match(_stream((0, 1.0), (10, 1.5), (30, 200.0))) == []


def test_big_must_exceed_fifty_times_the_average() -> None:
    assert match(_stream((0, 1.0), (10, 1.0), (20, 1.0), (30, 50.0))) == []
    assert match(_stream((0, 1.0), (10, 1.0), (20, 1.0), (30, 50.01))) != []


def test_tiny_is_strictly_below_two() -> None:
    assert match(_stream((0, 1.0), (10, 2.0), (20, 1.0), (30, 500.0))) == []


def test_window_border_is_exclusive() -> None:
    inside = _stream((0, 1.0), (10, 1.0), (20, 1.0), (599.999, 500.0))
    assert match(inside) == [("card-1", ["p0", "p1", "p2"], "p3")]
    on_border = _stream((0, 1.0), (10, 1.0), (20, 1.0), (600, 500.0))
    assert match(on_border) == []
    # the run started at the second tiny still has three tinies inside the window
    four = _stream((0, 1.0), (10, 1.0), (20, 1.0), (30, 1.0), (600, 500.0))
    assert match(four) == [("card-1", ["p1", "p2", "p3"], "p4")]


def test_earliest_start_then_most_tinies() -> None:
    five = _stream((0, 0.5), (5, 0.5), (10, 0.5), (15, 0.5), (20, 0.5), (30, 100.0))
    assert match(five) == [("card-1", ["p0", "p1", "p2", "p3", "p4"], "p5")]
    # with the 4th tiny the average is 0.85 (42.5 >= 40): the longest that holds is 3
    mixed = _stream((0, 0.5), (5, 0.5), (10, 0.5), (15, 1.9), (30, 40.0))
    assert match(mixed) == [("card-1", ["p0", "p1", "p2"], "p4")]


def test_relaxed_contiguity_skips_other_events() -> None:
    evs = _stream((0, 1.0), (5, 1.0), (8, 30.0), (9, 5.0, "card-2"), (10, 1.0), (30, 500.0))
    evs.insert(
        3,
        {
            "id": "x",
            "ts": T0 + 9000,
            "stream": "logins",
            "type": "login",
            "user_id": "u",
            "card_id": "card-1",
        },
    )
    assert match(evs) == [("card-1", ["p0", "p1", "p4"], "p5")]


def test_a_branch_that_left_the_loop_skips_later_tinies() -> None:
    # 30 > 50 * avg(0.5, 0.5, 0.5) but not > 50 * avg(0.5, 0.5, 0.5, 1.99): the branch
    # that left the loop after three tinies skipped the fourth and takes the big one.
    evs = _stream((0, 0.5), (5, 0.5), (10, 0.5), (15, 20.0), (20, 1.99), (30, 30.0))
    assert match(evs) == [("card-1", ["p0", "p1", "p2"], "p5")]


def test_skip_past_last_discards_everything_up_to_the_big_event() -> None:
    evs = _stream((0, 1.0), (5, 1.0), (10, 1.0), (15, 1.0), (20, 500.0), (25, 600.0))
    assert match(evs) == [("card-1", ["p0", "p1", "p2", "p3"], "p4")]
    # new tinies after the match start new runs
    evs = _stream(
        (0, 1.0), (5, 1.0), (10, 1.0), (20, 500.0), (21, 1.0), (22, 1.0), (23, 1.0), (30, 500.0)
    )
    assert match(evs) == [
        ("card-1", ["p0", "p1", "p2"], "p3"),
        ("card-1", ["p4", "p5", "p6"], "p7"),
    ]


def test_a_tiny_purchase_can_be_the_big_one() -> None:
    # 1.0 > 50 * 0.01: p3 completes the match; the run p3 would start as a tiny is pruned
    # (it starts at the last event of the match), so p4, p5 are only two tinies for p6.
    evs = _stream((0, 0.01), (5, 0.01), (10, 0.01), (20, 1.0), (21, 1.0), (22, 1.0), (30, 60.0))
    assert match(evs) == [("card-1", ["p0", "p1", "p2"], "p3")]


def test_same_timestamp_after_the_big_event_is_not_part_of_it() -> None:
    evs = _stream(
        (0, 1.0), (5, 1.0), (10, 1.0), (20, 500.0), (20, 1.0), (21, 1.0), (22, 1.0), (25, 500.0)
    )
    assert match(evs) == [
        ("card-1", ["p0", "p1", "p2"], "p3"),
        ("card-1", ["p4", "p5", "p6"], "p7"),
    ]


def test_keys_are_independent() -> None:
    evs = _stream(
        (0, 1.0, "a"),
        (1, 1.0, "b"),
        (2, 1.0, "a"),
        (3, 1.0, "b"),
        (4, 1.0, "a"),
        (5, 500.0, "b"),
        (6, 500.0, "a"),
    )
    assert match(evs) == [("a", ["p0", "p2", "p4"], "p6")]


def test_missing_and_odd_fields_never_match_or_raise() -> None:
    evs = _stream((0, 1.0), (5, 1.0), (10, 1.0))
    evs += [
        {
            "id": "n1",
            "ts": T0 + 11_000,
            "stream": "transactions",
            "type": "purchase",
            "card_id": "card-1",
            "amount": None,
        },
        {
            "id": "n2",
            "ts": T0 + 12_000,
            "stream": "transactions",
            "type": "purchase",
            "card_id": "card-1",
            "amount": "999",
        },
        {
            "id": "n3",
            "ts": T0 + 13_000,
            "stream": "transactions",
            "type": "purchase",
            "card_id": "card-1",
        },
        {
            "id": "n4",
            "ts": T0 + 14_000,
            "stream": "transactions",
            "type": "transfer",
            "card_id": "card-1",
            "amount": 999.0,
        },
        {
            "id": "n5",
            "ts": T0 + 15_000,
            "stream": "orders",
            "type": "purchase",
            "card_id": "card-1",
            "amount": 999.0,
        },
        {
            "id": "n6",
            "ts": T0 + 16_000,
            "stream": "transactions",
            "type": "purchase",
            "amount": 999.0,
        },
    ]
    assert match(evs) == []
    evs.append(
        {
            "id": "big",
            "ts": T0 + 20_000,
            "stream": "transactions",
            "type": "purchase",
            "card_id": "card-1",
            "amount": 999.0,
        }
    )
    assert match(evs) == [("card-1", ["p0", "p1", "p2"], "big")]


def test_decoded_json_gives_the_same_matches() -> None:
    evs = events()
    decoded = [orjson.loads(orjson.dumps(e)) for e in evs]
    assert match(decoded) == match(list(evs))
    assert len(match(decoded)) == len(incidents(evs)["card_testing"])
