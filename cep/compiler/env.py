"""The only names generated code may call.

Generated conditions and measures run with an empty `__builtins__` and this namespace.
Every helper is total: it never raises on user data. Missing data and nulls give
`None` (SQL's UNKNOWN), type mismatches give `None` too and are counted in
`cep.counters.COUNTERS["type_mismatch"]`, so a bad event can never stop the stream.

Boolean helpers return True, False or None (three-valued logic); the code generator
turns `x is True` / `x is False` into conditions, so `not` of an unknown stays unknown.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import re2

from cep.counters import COUNTERS
from cep.values import normalise_key, path_get, to_ms

_NUM = (int, float)


def _mismatch() -> None:
    COUNTERS["type_mismatch"] += 1


def _is_num(x: object) -> bool:
    return x.__class__ is int or x.__class__ is float


def _comparable(a: object, b: object) -> bool:
    if _is_num(a) and _is_num(b):
        return True
    return a.__class__ is str and b.__class__ is str


# ---------------------------------------------------------------- comparisons


def lt(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if _comparable(a, b):
        return bool(a < b)
    _mismatch()
    return None


def le(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if _comparable(a, b):
        return bool(a <= b)
    _mismatch()
    return None


def gt(a: Any, b: Any) -> bool | None:
    return lt(b, a)


def ge(a: Any, b: Any) -> bool | None:
    return le(b, a)


def eq(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return bool(a == b)


def ne(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    return bool(a != b)


def in_(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if isinstance(b, (list, tuple, frozenset, set)):
        return a in b
    if isinstance(b, str) and isinstance(a, str):
        return a in b
    _mismatch()
    return None


def contains(a: Any, b: Any) -> bool | None:
    return in_(b, a)


def matches(a: Any, rx: Any) -> bool | None:
    if a is None:
        return None
    if a.__class__ is not str:
        _mismatch()
        return None
    return rx.search(a) is not None


def starts_with(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if a.__class__ is str and b.__class__ is str:
        return bool(a.startswith(b))
    _mismatch()
    return None


def ends_with(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if a.__class__ is str and b.__class__ is str:
        return bool(a.endswith(b))
    _mismatch()
    return None


def truth(x: Any) -> bool | None:
    """A value used as a condition: only booleans count; anything else is unknown."""
    if x is True or x is False:
        return bool(x)
    if x is not None:
        _mismatch()
    return None


# ---------------------------------------------------------------- arithmetic


def _arith(a: Any, b: Any, op: Callable[[Any, Any], Any]) -> Any:
    if a is None or b is None:
        return None
    if _is_num(a) and _is_num(b):
        try:
            r = op(a, b)
        except (ZeroDivisionError, OverflowError):
            COUNTERS["arithmetic_error"] += 1
            return None
        if r.__class__ is float and (r != r or r in (math.inf, -math.inf)):
            COUNTERS["arithmetic_error"] += 1
            return None
        return r
    _mismatch()
    return None


def add(a: Any, b: Any) -> Any:
    if a.__class__ is str and b.__class__ is str:
        return a + b
    return _arith(a, b, lambda x, y: x + y)


def sub(a: Any, b: Any) -> Any:
    return _arith(a, b, lambda x, y: x - y)


def mul(a: Any, b: Any) -> Any:
    return _arith(a, b, lambda x, y: x * y)


def div(a: Any, b: Any) -> Any:
    return _arith(a, b, lambda x, y: x / y)


def mod(a: Any, b: Any) -> Any:
    return _arith(a, b, lambda x, y: x % y)


def negate(a: Any) -> Any:
    if a is None:
        return None
    if _is_num(a):
        return -a
    _mismatch()
    return None


# ---------------------------------------------------------------- event access


def stage_events(node: Any, stage: int) -> list[Any]:
    """Events a partial match took under `stage`, oldest first."""
    out = []
    while node is not None:
        if node.stage == stage:
            out.append(node.ev)
        node = node.prev
    out.reverse()
    return out


def stage_last(node: Any, stage: int) -> Any:
    while node is not None:
        if node.stage == stage:
            return node.ev
        node = node.prev
    return None


def ev_field(ev: Any, path: tuple[str, ...]) -> Any:
    if ev is None:
        return None
    return path_get(ev.data, path)


def ev_ts(ev: Any) -> Any:
    return None if ev is None else ev.ts


def ev_let(ev: Any, i: int) -> Any:
    if ev is None or ev.lets is None:
        return None
    return ev.lets[i]


def first(evs: Sequence[Any]) -> Any:
    return evs[0] if evs else None


def last(evs: Sequence[Any]) -> Any:
    return evs[-1] if evs else None


# ---------------------------------------------------------------- aggregates


def _nums(values: Iterable[Any]) -> list[Any] | None:
    out = []
    for v in values:
        if v is None:
            continue
        if not _is_num(v):
            _mismatch()
            return None
        out.append(v)
    return out


def agg_sum(values: Iterable[Any]) -> Any:
    xs = _nums(values)
    return None if not xs else sum(xs)


def agg_avg(values: Iterable[Any]) -> Any:
    xs = _nums(values)
    return None if not xs else sum(xs) / len(xs)


def agg_min(values: Iterable[Any]) -> Any:
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    if all(_is_num(v) for v in xs) or all(v.__class__ is str for v in xs):
        return min(xs)
    _mismatch()
    return None


def agg_max(values: Iterable[Any]) -> Any:
    xs = [v for v in values if v is not None]
    if not xs:
        return None
    if all(_is_num(v) for v in xs) or all(v.__class__ is str for v in xs):
        return max(xs)
    _mismatch()
    return None


def agg_distinct(values: Iterable[Any]) -> int:
    seen = set()
    for v in values:
        if v is None:
            continue
        try:
            seen.add(v)
        except TypeError:
            seen.add(repr(v))
    return len(seen)


# ---------------------------------------------------------------- scalar functions


def f_abs(x: Any) -> Any:
    if x is None:
        return None
    if _is_num(x):
        return abs(x)
    _mismatch()
    return None


def f_round(x: Any, nd: Any = None) -> Any:
    if x is None:
        return None
    if not _is_num(x) or (nd is not None and nd.__class__ is not int):
        _mismatch()
        return None
    return round(x, nd) if nd is not None else round(x)


def f_floor(x: Any) -> Any:
    if x is None:
        return None
    if _is_num(x):
        return math.floor(x)
    _mismatch()
    return None


def f_ceil(x: Any) -> Any:
    if x is None:
        return None
    if _is_num(x):
        return math.ceil(x)
    _mismatch()
    return None


def f_lower(x: Any) -> Any:
    if x is None:
        return None
    if x.__class__ is str:
        return x.lower()
    _mismatch()
    return None


def f_upper(x: Any) -> Any:
    if x is None:
        return None
    if x.__class__ is str:
        return x.upper()
    _mismatch()
    return None


def f_len(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, (str, list, tuple, dict)):
        return len(x)
    _mismatch()
    return None


def f_coalesce(*xs: Any) -> Any:
    for x in xs:
        if x is not None:
            return x
    return None


def f_hour(t: Any) -> Any:
    ms = to_ms(t) if t.__class__ is not int else t
    if ms is None:
        if t is not None:
            _mismatch()
        return None
    return (ms // 3_600_000) % 24


def f_weekday(t: Any) -> Any:
    ms = to_ms(t) if t.__class__ is not int else t
    if ms is None:
        if t is not None:
            _mismatch()
        return None
    return (ms // 86_400_000 + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0


def f_distance_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    if lat1 is None or lon1 is None or lat2 is None or lon2 is None:
        return None
    if not (_is_num(lat1) and _is_num(lon1) and _is_num(lat2) and _is_num(lon2)):
        _mismatch()
        return None
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def compile_regex(pattern: str) -> Any:
    """User regexes run on RE2: linear time, no backtracking."""
    return re2.compile(pattern)


_UNSET = object()  # "not looked up yet" for per-call caches in generated functions


def make_namespace() -> dict[str, Any]:
    """The globals of a generated module: these helpers and nothing else."""
    ns: dict[str, Any] = {"__builtins__": {}, "_U": _UNSET}
    for name, obj in {
        "_NUM": _NUM, "_str": str,
        "_lt": lt, "_le": le, "_gt": gt, "_ge": ge, "_eq": eq, "_ne": ne,
        "_in": in_, "_contains": contains, "_matches": matches,
        "_starts_with": starts_with, "_ends_with": ends_with, "_truth": truth,
        "_add": add, "_sub": sub, "_mul": mul, "_div": div, "_mod": mod, "_neg": negate,
        "_path": path_get, "_stage": stage_events, "_one": stage_last,
        "_evf": ev_field, "_evts": ev_ts, "_evlet": ev_let, "_first": first, "_last": last,
        "_sum": agg_sum, "_avg": agg_avg, "_min": agg_min, "_max": agg_max,
        "_distinct": agg_distinct, "_len": len,
        "_abs": f_abs, "_round": f_round, "_floor": f_floor, "_ceil": f_ceil,
        "_lower": f_lower, "_upper": f_upper, "_strlen": f_len, "_coalesce": f_coalesce,
        "_hour": f_hour, "_weekday": f_weekday, "_distance_km": f_distance_km,
        "_frozenset": frozenset, "_re": compile_regex, "_nkey": normalise_key,
        "_zip": zip,
    }.items():
        ns[name] = obj
    return ns
