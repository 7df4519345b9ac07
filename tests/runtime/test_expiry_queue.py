"""Window-only patterns expire from a time-ordered queue (PatternRuntime.queue) instead
of a timer heap entry per key, expire a prefix of a key's runs, and just delete runs
whose expiry cannot report anything. The alerts must be exactly those of the general
path (the timer heap, `Matcher.advance` over every run), in the same order."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from cep.compiler.pipeline import compile_pattern
from cep.dsl.parser import parse
from cep.runtime.engine import Engine, EngineConfig

PATTERNS = [
    # timeouts reported (not quiet)
    'key k within 20ms match a where t == "a" then b where t == "b" '
    "emit {} on timeout emit {}",
    # quiet: expiry just deletes
    'key k within 20ms match a where t == "a" then b+ where t == "b" then c where t == "c" '
    "emit {}",
    # held matches (skip past last) and a trailing optional loop (Pending)
    'key k within 15ms skip past last match a where t == "a" then b{2,} where t == "b" '
    "emit {} on timeout emit {}",
    'key k within 15ms skip to first b match a+ where t == "a" then b* where t == "b" emit {}',
    'key k within 25ms skip none match a where t == "a" then b where t == "b" or t == "a" '
    "emit {}",
]


def _plan(body: str) -> Any:
    return compile_pattern(parse(f"pattern p {{ {body} }}").patterns[0])


def _events(seed: int, n: int = 400) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    ts = 1000
    out = []
    for i in range(n):
        ts += rnd.choice((0, 1, 1, 2, 3, 7))
        out.append({"k": f"k{rnd.randrange(5)}", "t": rnd.choice("aabbc"), "ts": ts, "i": i})
    return out


def _heap_timers(eng: Engine) -> Engine:
    """The general path: no queue, `advance` over every run."""
    for rt in eng._runtimes:
        rt.matcher.window_only = False
        rt.matcher.queue = None
        rt.queue = None
    return eng


def _run(body: str, events: list[dict[str, Any]], batch: int, ooo: int, general: bool,
         restore_at: int | None = None) -> list[bytes]:
    def new() -> Engine:
        eng = Engine([_plan(body)], EngineConfig(max_out_of_orderness_ms=ooo),
                     now_ms=lambda: 0)
        return _heap_timers(eng) if general else eng

    eng = new()
    assert (eng._runtimes[0].queue is not None) != general
    out = []
    for j, i in enumerate(range(0, len(events), batch)):
        if restore_at is not None and j == restore_at:
            items = [(k, v) for k, v in eng.checkpoint().items() if v is not None]
            eng = new()
            eng.restore(items)
        out += eng.process(events[i:i + batch]).alerts
    out += eng.finish().alerts
    recs = []
    for a in out:
        r = dict(a.record)
        r.pop("detected_at", None)
        r.pop("alert_id", None)
        recs.append(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    return recs


@pytest.mark.parametrize("body", PATTERNS)
@pytest.mark.parametrize(("batch", "ooo"), [(1, 0), (9, 0), (50, 5), (400, 0)])
def test_queue_expiry_gives_the_general_paths_alerts_in_order(body: str, batch: int,
                                                              ooo: int) -> None:
    events = _events(batch * 31 + ooo)
    want = _run(body, events, batch, ooo, general=True)
    got = _run(body, events, batch, ooo, general=False)
    assert got == want
    assert len(want) >= 2


@pytest.mark.parametrize("body", PATTERNS)
def test_restored_keys_fire_from_the_queue(body: str) -> None:
    events = _events(7)
    want = _run(body, events, 20, 0, general=True)
    got = _run(body, events, 20, 0, general=False, restore_at=9)
    assert got == want


def test_quiet_expiry_releases_the_key() -> None:
    eng = Engine([_plan(PATTERNS[1])], now_ms=lambda: 0)
    rt = eng._runtimes[0]
    assert rt.matcher.quiet and rt.matcher.window_only
    eng.process([{"k": f"k{i}", "t": "a", "ts": 1000 + i // 10} for i in range(50)])
    assert len(rt.states) == 50 and 40 <= len(rt.queue or ()) <= 50  # one per started run
    eng.process([{"k": "other", "t": "c", "ts": 1100}, {"k": "other", "t": "c", "ts": 1101}])
    # every run expired and its key is gone (`other` waits with its buffered event)
    assert set(rt.states) == {"other"} and not rt.queue and rt.timers == []
