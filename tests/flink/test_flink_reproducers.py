"""Issue 10's reproducers, each with the outcome the real FlinkCEP 1.20.1 gives
(confirmed by tests/flink/oracle/FlinkOracle.java), plus the documented differences
the harness found. Events are `{"t", "v", "ts"}` of one key, backtest-style (one batch,
then the end of input) unless said otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.errors import PatternError
from cep.runtime.engine import Engine, EngineConfig


def run(body: str, events: list[tuple[str, int]] | list[tuple[str, int, int]], *,
        batch: int = 0, ooo: int = 0, keys: list[str] | None = None,
        cuts: list[int] | None = None) -> list[str]:
    """Alerts as 'a@1 b@3' (stage order) or 'timeout:a@1@<time>'."""
    (pat,) = load_source("pattern p {\n" + body + "\nemit {} on timeout emit {}\n}")
    eng = Engine([compile_pattern(pat)], EngineConfig(max_out_of_orderness_ms=ooo),
                 now_ms=lambda: 0)
    evs: list[dict[str, Any]] = []
    for j, e in enumerate(events):
        d: dict[str, Any] = {"t": e[0], "ts": e[1], "v": e[2] if len(e) > 2 else 0}
        d["k"] = keys[j] if keys else "k"
        evs.append(d)
    alerts = []
    step = batch or len(evs)
    ends = cuts or list(range(step, len(evs) + step, step))
    start = 0
    for end in ends:
        alerts += eng.process(evs[start:end]).alerts
        start = end
    alerts += eng.finish().alerts
    out = []
    for a in alerts:
        r = a.record
        s = " ".join(f"{st}@{e['ts']}" for st, es in r["events"].items() for e in es)
        out.append(s if r["kind"] == "match" else f"timeout:{s}@{r['time']}")
    return sorted(out)


# -- class 1: the relevance filter must not drop events that move a relaxed loop


def test_irrelevant_event_moves_a_relaxed_loop_out_of_reach_of_next() -> None:
    # Flink: no match (c@2 moves a+ into its ignore state, which has no proceed edge)
    body = 'key k skip none\nmatch a+ where t == "a" next b where t == "b"'
    assert run(body, [("a", 1), ("c", 2), ("b", 3)]) == []


def test_irrelevant_event_is_the_next_event_of_a_trailing_next_not() -> None:
    # Flink: the match {a:[a@1]}: the next event, c, is not a b
    body = 'key k skip none\nmatch a+ where t == "a" next not n where t == "b"'
    assert run(body, [("a", 1), ("c", 2)]) == ["a@1"]


def test_irrelevant_event_starts_the_branch_waiting_for_the_next_stage() -> None:
    # Flink: two timed-out partial matches (the loop's ignore branch and the branch
    # waiting for c)
    body = 'key k within 5ms skip none\nmatch a+ where t == "a" then c where t == "c"'
    assert run(body, [("a", 1), ("b", 2)]) == ["timeout:a@1@6", "timeout:a@1@6"]


def test_relevance_filter_still_skips_events_that_change_nothing() -> None:
    (pat,) = load_source('pattern p { key k match a where t == "a" then b where t == "b" }')
    assert compile_pattern(pat).skip_safe
    for body in ('a+ where t == "a" then b where t == "b"',
                 'a where t == "a" then b? where t == "b" then c where t == "c"',
                 'a where t == "a" next b where t == "b"'):
        (pat,) = load_source(f"pattern p {{ key k match {body} }}")
        assert not compile_pattern(pat).skip_safe, body


# -- class 2: timeouts evaluated as Flink's CepOperator does

CLASS2 = ('key k within 6ms skip to first c\n'
          'match a{1,} where v > 1 then c where t == "c" then not d where t == "b"')
CLASS2_EVENTS = [("a", 34, 4), ("c", 35, 3), ("c", 36, 2)]


@pytest.mark.parametrize("batch", [0, 1])
def test_timeouts_are_collected_before_the_skip_strategy_prunes(batch: int) -> None:
    # Flink: the match and three timeouts (all collected at watermark +inf before the
    # released match prunes anything); cep fired each deadline on its own and lost one
    assert run(CLASS2, CLASS2_EVENTS, batch=batch) == [
        "a@34 a@35 c@36",
        "timeout:a@34 a@35 a@36@40", "timeout:a@35 a@36@41", "timeout:a@36@42"]


SKIPPED = ('key k within 6ms skip past last\n'
           'match a where t == "a" then c where t == "c" and v > a.v then not d where t == "b"')


def test_a_skipped_event_still_advances_its_keys_time() -> None:
    # Flink (oracle): without x@7, {a:[@2]} times out at 8; with it, the key is advanced
    # to 7 first, the pending match {a:[@1], c:[@3]} is released and prunes {a:[@2]}
    (pat,) = load_source("pattern p {\n" + SKIPPED + "\n}")
    assert compile_pattern(pat).skip_safe  # x@7 fails every condition: skipped
    events = [("a", 1, 0), ("a", 2, 5), ("c", 3, 1)]
    assert run(SKIPPED, events) == ["a@1 c@3", "timeout:a@2@8"]
    assert run(SKIPPED, [*events, ("x", 7, 0)]) == ["a@1 c@3"]


def test_a_skipped_events_time_mark_keeps_the_batch_in_time_order() -> None:
    # seed 11, case 504, minimized: a@40 waits (watermark 39); then a@41 and a skipped
    # x@51 arrive together (watermark 50). The time mark of x@51 must not overtake a@41:
    # Flink (oracle) times out {a:[@40,@41]} at 46, not {a:[@40]}
    body = ('key k within 6ms skip to last c\n'
            'match a{3} where t == "a" then not b where (t == "c" and count(a) < 3) '
            'then c where t == "b"')
    assert run(body, [("a", 40), ("a", 41), ("x", 51)], cuts=[1, 3]) == [
        "timeout:a@40 a@41@46", "timeout:a@41@47"]


# -- class 3: skip to a stage inside a group


def test_skip_to_a_stage_inside_a_group_is_rejected_as_flink_does() -> None:
    with pytest.raises(PatternError, match=r"E205.*inside a group"):
        load_source('pattern p {\n  skip to first x\n  match a where t == "a" '
                    'then (x where t == "b")+\n}')


# -- differences found by the harness, documented in docs/semantics.md


def test_documented_flink_keeps_a_quiet_keys_window_unfired() -> None:
    # corpus case s10-825, minimized: FlinkCEP reports nothing (key k's event was
    # processed at watermark 2 and no later event of k is due); cep fires the window
    body = 'key k within 4ms skip to first a\nmatch a{2} consecutive where t == "d"'
    assert run(body, [("d", 0), ("b", 5)], keys=["k", "j"], ooo=2) == ["timeout:a@0@4"]


def test_documented_ties_among_matches_with_the_same_first_event() -> None:
    # corpus case s10-1975, minimized: both matches start at @37 and complete at @40;
    # Flink released {a:[@37]} first, cep the longer {a:[@37,@40]}, which prunes it
    body = ('key k within 9ms skip to last a\n'
            'match a{1,2} where (t == "a" or v > coalesce(last(a).v, -1))')
    assert run(body, [("c", 35, 5), ("c", 37, 1), ("c", 40, 2)]) == [
        "a@35", "a@37 a@40", "a@40", "timeout:a@35@44", "timeout:a@40@49"]
