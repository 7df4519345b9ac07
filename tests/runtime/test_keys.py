"""Keys: one independent matcher per key value; per-key state exists only while the key
has partial matches (Flink FLINK-23314); events without the key are ignored by the
pattern (docs/flink-semantics.md §9 "Keys", "State"; docs/language.md `key`)."""

from __future__ import annotations

from helpers import WITH_TIMEOUTS, events_from, feed, matches, named, pattern, show

A, B = named("a"), named("b")


def test_keys_match_independently() -> None:
    text = pattern(f"{A} then {B}", "key user\n  skip none")
    got = matches(text, "a1:user=u1 a2:user=u2 b1:user=u2 b2:user=u1")
    assert got == ["a2 b1", "a1 b2"]


def test_strict_contiguity_is_per_key() -> None:
    # x1 belongs to another key: for u1, b1 is the event right after a1
    text = pattern(f"{A} next {B}", "key user\n  skip none")
    assert matches(text, "a1:user=u1 x1:user=u2 b1:user=u1") == ["a1 b1"]
    assert matches(text, "a1:user=u1 x1:user=u1 b1:user=u1") == []


def test_skip_strategy_prunes_per_key() -> None:
    text = pattern(f"{A} then {B}", "key user\n  skip past last")
    got = matches(text, "a1:user=u1 a2:user=u2 b1:user=u1 b2:user=u2")
    assert got == ["a1 b1", "a2 b2"]


def test_alerts_carry_their_key() -> None:
    text = pattern(f"{A} then {B}", "key user")
    _, result = feed(text, events_from("a1:user=u1 b1:user=u1"))
    assert [a.record["key"] for a in result.alerts] == ["u1"]


def test_composite_keys() -> None:
    text = pattern(f"{A} then {B}", "key user, card\n  skip none")
    got = matches(text, "a1:user=u1,card=c1 b1:user=u1,card=c2 b2:user=u1,card=c1")
    assert got == ["a1 b2"]


def test_state_is_released_when_matches_complete() -> None:
    text = pattern(f"{A} then {B}", "key user")
    # z1 (another key, irrelevant) moves the watermark past b1
    eng, result = feed(text, events_from("a1:user=u1 b1:user=u1 z1:user=u2"), finish=False)
    assert [show(a) for a in result.alerts] == ["a1 b1"]
    assert eng.snapshot().patterns[0].keys == 0


def test_state_is_released_when_partial_matches_expire() -> None:
    text = pattern(f"{A} then {B}", "key user\n  within 10ms", WITH_TIMEOUTS)
    eng, result = feed(text, events_from("a1:user=u1@0 z1:user=u2@100"), finish=False)
    assert [show(a) for a in result.alerts] == ["timeout:a1"]
    assert eng.snapshot().patterns[0].keys == 0


def test_state_is_kept_while_partial_matches_live() -> None:
    text = pattern(f"{A} then {B}", "key user")
    eng, _ = feed(text, events_from("a1:user=u1 x1:user=u1 z1:user=u2"), finish=False)
    assert list(eng._runtimes[0].states) == ["u1"]
    assert eng._runtimes[0].live_runs() == 1


def test_a_key_with_only_irrelevant_events_gets_no_state() -> None:
    text = pattern(f"{A} then {B}", "key user")
    eng, _ = feed(text, events_from("x1:user=u1 b1:user=u1 z1:user=u2"), finish=False)
    assert eng.snapshot().patterns[0].keys == 0


def test_events_missing_the_key_are_ignored_by_the_pattern() -> None:
    text = pattern(f"{A} next {B}", "key user\n  skip none")
    # a1 has no user: it starts nothing
    assert matches(text, "a1 b1:user=u1") == []
    # x1 has no user: it does not break u1's strict contiguity
    assert matches(text, "a1:user=u1 x1 b1:user=u1") == ["a1 b1"]
    eng, result = feed(text, events_from("a1 b1"))
    assert result.alerts == [] and eng.snapshot().patterns[0].keys == 0
