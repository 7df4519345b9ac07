"""The shared prefilter (cep/runtime/shared_filter.py): one pass for all loaded
patterns, exactly what each pattern's own prefilter gives (the FlinkCEP corpus
comparison is tests/flink/test_shared_filter_corpus.py)."""

from __future__ import annotations

import dataclasses
import glob
import re
from pathlib import Path
from typing import Any

import orjson

from cep.cli import compile_paths
from cep.compiler.pipeline import compile_pattern
from cep.counters import COUNTERS
from cep.dsl.parser import parse
from cep.program import CompiledPattern
from cep.runtime.engine import Engine, EngineConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in glob.glob(str(ROOT / "patterns" / "*.cep"))
                  if "risky_burst" not in p)  # scores with a model


def _alone(plans: list[CompiledPattern]) -> list[CompiledPattern]:
    """The same plans without filter blocks: each runs its own prefilter."""
    return [dataclasses.replace(p, filter_block=None) for p in plans]


def _records(results: list[Any]) -> list[bytes]:
    out = []
    for res in results:
        for a in res.alerts:
            r = dict(a.record)
            r.pop("detected_at", None)
            out.append(orjson.dumps(r, option=orjson.OPT_SORT_KEYS))
    return out


def _golden_events() -> list[dict[str, Any]]:
    evs = []
    for f in sorted((ROOT / "tests" / "golden").glob("*/events.jsonl")):
        evs += [orjson.loads(x) for x in f.read_bytes().splitlines() if x.strip()]
    evs.sort(key=lambda e: e["ts"])
    return evs


def _compile(text: str) -> list[CompiledPattern]:
    return [compile_pattern(p) for p in parse(text).patterns]


def test_example_patterns_together_give_what_each_gives_alone() -> None:
    plans = compile_paths(EXAMPLES)
    assert all(p.filter_block is not None for p in plans)
    events = _golden_events()
    for batch in (1, 7, len(events)):
        for ooo in (0, 60_000):
            got = []
            want = []
            for ps, out in ((plans, got), (_alone(plans), want)):
                eng = Engine(ps, EngineConfig(max_out_of_orderness_ms=ooo), now_ms=lambda: 0)
                res = [eng.process(events[i:i + batch]) for i in range(0, len(events), batch)]
                out += _records([*res, eng.finish()])
            assert got == want and len(got) > 10, (batch, ooo)


def test_each_field_and_key_is_read_once_per_event() -> None:
    plans = compile_paths(EXAMPLES)
    eng = Engine(plans, now_ms=lambda: 0)
    eng.process([{"card_id": 1, "type": "purchase", "ts": 1}])
    (shared,) = eng._shared.values()
    for field in ("type", "amount", "channel", "status"):  # read at the top of the loop
        assert len(re.findall(rf"d\.get\('{field}'\)", shared.source)) == 1, field
    # a key is read and normalised once per event for every pattern keyed on it
    # (three patterns key on card_id); integer keys go through the normaliser
    normalised = []
    ns = shared.fn.__globals__
    real = ns["_nkey"]
    ns["_nkey"] = lambda k: normalised.append(k) or real(k)
    try:
        eng.process([{"card_id": n, "type": "purchase", "amount": 1, "channel": "pos",
                      "status": "declined", "ts": 10 + n} for n in range(5)])
    finally:
        ns["_nkey"] = real
    assert normalised == [0, 1, 2, 3, 4]


HOT = """
pattern a { key user within 1m match x where t == "x" then y where t == "y" emit {} }
pattern b { key user within 1m match y where t == "y" then z where t == "z" emit {} }
"""
HOT_B2 = """
pattern b { key user within 1m match z where t == "z" then x where t == "x" emit {} }
"""


def test_hot_load_rebuilds_the_shared_filter() -> None:
    a, b = _compile(HOT)
    (b2,) = _compile(HOT_B2)
    b2 = dataclasses.replace(b2, version=2)
    evs = [{"user": f"u{i % 2}", "t": "xyz"[i % 3], "ts": 1000 + i} for i in range(60)]
    outs: list[list[bytes]] = []
    for plan_a, plan_b, plan_b2 in ((a, b, b2), tuple(_alone([a, b, b2]))):
        eng = Engine([plan_a], now_ms=lambda: 0)
        res = [eng.process(evs[:15])]
        eng.add(plan_b)
        res.append(eng.process(evs[15:30]))
        eng.add(plan_b2)  # version 1 drains
        res.append(eng.process(evs[30:45]))
        eng.remove("a")
        res.append(eng.process(evs[45:]))
        res.append(eng.finish())
        assert {p.name for p in eng.patterns()} == {"b"}
        outs.append(_records(res))
    shared, alone = outs
    assert shared == alone
    names = [orjson.loads(r)["pattern"] for r in shared]
    assert {"a", "b"} <= set(names)


def test_shared_filter_follows_the_loaded_patterns() -> None:
    a, b = _compile(HOT)
    eng = Engine([a], now_ms=lambda: 0)
    eng.process([{"user": "u", "t": "x", "ts": 1}])
    (first,) = eng._shared.values()
    eng.add(b)
    eng.process([{"user": "u", "t": "y", "ts": 2}])
    (second,) = eng._shared.values()
    assert [rt.name for rt in first.runtimes] == ["a"]
    assert [rt.name for rt in second.runtimes] == ["a", "b"]


KEYED = """
pattern k2 { key user, card within 1m
             match x where t == "x" and key != "skip" then y where t == "y" emit {} }
pattern k1 { key user within 1m match x where t == "x" then y where t == "y" emit {} }
pattern k0 { within 1m match x where t == "x" then y where t == "y" emit {} }
"""


def test_composite_keys_no_key_and_tests_on_the_key() -> None:
    plans = _compile(KEYED)
    evs = [{"user": f"u{i % 2}", "card": (i % 3) or None, "t": "xy"[i % 2], "ts": 1000 + i}
           for i in range(40)]
    got = []
    for ps in (plans, _alone(plans)):
        eng = Engine(ps, now_ms=lambda: 0)
        got.append(_records([eng.process(evs[:20]), eng.process(evs[20:]), eng.finish()]))
    assert got[0] == got[1] and got[0]


MISMATCH = """
pattern small { key card within 1m match s where amount < 2 then t where amount < 2 emit {} }
pattern other { key card within 1m match s where kind == "a" then t where kind == "b" emit {} }
"""


def test_type_mismatches_are_counted_as_each_pattern_counts_them_alone() -> None:
    plans = _compile(MISMATCH)
    events = [{"card": f"c{i % 2}", "amount": "cheap", "kind": "a", "ts": 1 + i}
              for i in range(6)] + [{"card": "c", "amount": 1, "kind": "b", "ts": 20}]
    per_pattern = []
    global_counts = []
    for ps in (plans, _alone(plans)):
        eng = Engine(ps, now_ms=lambda: 0)
        before = COUNTERS["type_mismatch"]
        eng.process(events[:3])
        eng.process(events[3:])
        global_counts.append(COUNTERS["type_mismatch"] - before)
        per_pattern.append(eng.type_mismatches())
    assert per_pattern[0] == per_pattern[1]
    assert per_pattern[0]["small"] >= 6 and per_pattern[0].get("other", 0) == 0
    assert global_counts[0] == global_counts[1] == sum(per_pattern[0].values())


UNTIMED = """
pattern lazy { key user match x where t == "x" then y where t == "y" emit {} }
pattern lazy2 { key user match y where t == "y" and v > 1 then z where t == "z" emit {} }
"""


def _mixed_events(n: int, seed: int) -> list[dict[str, Any]]:
    """Events of every kind the example patterns read, with odd values: missing,
    null, numeric and boolean keys, fields of the wrong type."""
    import random

    rnd = random.Random(seed)
    kinds = ["purchase", "login", "transfer", "password_change", "add_to_cart", "checkout",
             "payment", "order_created", "payment_received", "x", "y", "z", 7, None]
    keys: list[Any] = ["a", "b", "c", 1, 1.0, 2.5, True, None, [1], {"k": 1}]
    evs = []
    ts = 1_000
    for _ in range(n):
        ts += rnd.choice([0, 1, 500, 20_000, 400_000])
        d: dict[str, Any] = {"ts": ts, "type": rnd.choice(kinds), "t": rnd.choice("xyz")}
        for f in ("card_id", "user_id", "session_id", "order_id", "user", "card"):
            if rnd.random() < 0.6:
                d[f] = rnd.choice(keys)
        d["amount"] = rnd.choice([0.5, 1, 3, 1500, "cheap", None])
        d["v"] = rnd.choice([0, 2, "2"])
        d["channel"] = rnd.choice(["pos", "online", None])
        d["status"] = rnd.choice(["declined", "approved", 1])
        d["new_device"] = rnd.choice([True, False, 1])
        d["new_beneficiary"] = rnd.choice([True, False])
        evs.append(d)
    return evs


def test_the_shared_pass_hands_each_pattern_what_its_own_prefilter_hands_it() -> None:
    """Batch by batch, per pattern: the same candidates (event and key), the same
    events that cannot be keyed, and the same ticks except those that expire nothing
    (a tick the shared pass leaves out is one the pattern's own prefilter would give
    for a key whose runs all end after the tick)."""
    from cep.runtime import engine as engine_mod
    from cep.runtime.pattern_runtime import PatternRuntime

    plans = compile_paths(EXAMPLES) + _compile(KEYED) + _compile(UNTIMED)
    events = _mixed_events(3_000, 11)
    seen: dict[str, list[Any]] = {"shared": [], "alone": []}
    real_run_shared = engine_mod.run_shared
    real_stage = PatternRuntime.stage

    def key_of(x: Any) -> Any:
        return None if x is None else x.key

    def run_shared(shared: Any, ds: list[Any], tss: list[int], horizon: float,
                   unkeyed: list[Any]) -> Any:
        unk: list[Any] = []
        per = real_run_shared(shared, ds, tss, horizon, unk)
        unkeyed.extend(unk)
        for rt, (cands, ticks) in zip(shared.runtimes, per, strict=True):
            seen["shared"].append((rt.name, [(i, key_of(k)) for i, k in cands],
                                   [(i, k.key, k.deadline, tss[i]) for i, k in ticks]))
        seen["shared"].append(("unkeyed", [id(d) for d in unk]))
        return per

    def stage(self: PatternRuntime, ds: list[Any], tss: list[int], pos: list[Any],
              horizon: float, unkeyed: list[Any]) -> Any:
        unk: list[Any] = []
        st = real_stage(self, ds, tss, pos, horizon, unk)
        unkeyed.extend(unk)
        seen["alone"].append((self.name, [(i, key_of(k)) for i, k in st.cands],
                              [(i, k.key, k.deadline, tss[i]) for i, k in st.ticks], unk))
        return st

    engine_mod.run_shared = run_shared  # type: ignore[assignment]
    PatternRuntime.stage = stage  # type: ignore[method-assign]
    try:
        outs = []
        for ps, batch in ((plans, 97), (_alone(plans), 97)):
            eng = Engine(ps, EngineConfig(max_out_of_orderness_ms=30_000), now_ms=lambda: 0)
            res = [eng.process(events[i:i + batch]) for i in range(0, len(events), batch)]
            outs.append(_records([*res, eng.finish()]))
    finally:
        engine_mod.run_shared = real_run_shared  # type: ignore[assignment]
        PatternRuntime.stage = real_stage  # type: ignore[method-assign]
    assert outs[0] == outs[1] and len(outs[0]) > 20
    shared = [x for x in seen["shared"] if x[0] != "unkeyed"]
    alone = seen["alone"]
    assert len(shared) == len(alone) > 100
    omitted = 0
    for (name, cands, ticks), (name2, cands2, ticks2, _) in zip(shared, alone, strict=True):
        assert name == name2 and cands == cands2, name
        assert set(ticks) <= set(ticks2), name
        for i, key, deadline, ts in set(ticks2) - set(ticks):
            omitted += 1  # no run of the key ends by the tick's time
            assert deadline > ts and key is not None, (name, i)
    shared_unkeyed = [x[1] for x in seen["shared"] if x[0] == "unkeyed"]
    alone_unkeyed = [id(d) for x in alone for d in x[3]]
    assert sorted(i for u in shared_unkeyed for i in u) == sorted(alone_unkeyed)
    assert omitted  # the rule that leaves ticks out was exercised
