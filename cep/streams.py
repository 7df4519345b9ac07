"""Stream declarations: the fields and types of a stream's events (a schema) and how
its time field is written (the time unit). Used by the checker (unknown fields, type
mismatches), by the engine (events that violate the schema are dead letters `schema`;
times are read in the declared unit) and by `cep backtest --infer-schema`.

A schema is a small subset of JSON Schema: an object with `properties` (each a
`type`, a list of types, or a nested object), `required` and `additionalProperties`.
Field types are the JSON types: string, number, integer, boolean, object, array, null.
See docs/streams.md.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cep.errors import ConfigError

TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
TIME_UNITS = ("ms", "s", "us", "iso")

# A number read as epoch time in the declared unit must fall in this window (years
# 1990 to 2100, in ms); outside it, the unit is almost certainly wrong.
PLAUSIBLE_MS = (631_152_000_000, 4_102_444_800_000)
_PER_MS = {"s": 1e-3, "ms": 1.0, "us": 1e3, "ns": 1e6}


class SchemaError(ConfigError, ValueError):
    """A schema or a stream declaration that cannot be read."""


def json_type(v: Any) -> str:
    c = v.__class__
    if c is str:
        return "string"
    if c is bool:
        return "boolean"
    if c is int:
        return "integer"
    if c is float:
        return "number"
    if v is None:
        return "null"
    if c is dict:
        return "object"
    if c is list:
        return "array"
    return type(v).__name__


def type_allows(allowed: frozenset[str], actual: str) -> bool:
    return actual in allowed or (actual == "integer" and "number" in allowed)


@dataclass(frozen=True)
class StreamSchema:
    """The declared fields of one stream: dotted path -> allowed JSON types."""

    name: str
    fields: Mapping[str, frozenset[str]]
    required: frozenset[str] = frozenset()
    closed: bool = False  # additionalProperties: false at the top level

    def types(self, path: str) -> frozenset[str] | None:
        return self.fields.get(path)

    def violation(self, event: dict[str, Any]) -> str | None:
        """Why `event` does not fit the schema, or None when it does."""
        for path in self.required:
            if _get(event, path) is None and not _has(event, path):
                return f"required field {path!r} is missing"
        for path, allowed in self.fields.items():
            if not _has(event, path):
                continue
            actual = json_type(_get(event, path))
            if not type_allows(allowed, actual):
                want = " or ".join(sorted(allowed))
                return f"field {path!r} is {actual}, the schema says {want}"
        if self.closed:
            for k in event:
                if k not in self.fields:
                    return f"field {k!r} is not in the schema (additionalProperties: false)"
        return None

    def to_json_schema(self) -> dict[str, Any]:
        root: dict[str, Any] = {"type": "object", "properties": {}}
        for path in sorted(self.fields):
            node = root
            parts = path.split(".")
            for part in parts[:-1]:
                node = node["properties"].setdefault(part, {"type": "object", "properties": {}})
            types = sorted(self.fields[path])
            leaf = node["properties"].setdefault(parts[-1], {})
            leaf["type"] = types[0] if len(types) == 1 else types
            if "object" in types:
                leaf.setdefault("properties", {})
        req = sorted(p for p in self.required if "." not in p)
        if req:
            root["required"] = req
        if self.closed:
            root["additionalProperties"] = False
        return root


def _has(d: Any, path: str) -> bool:
    for p in path.split("."):
        if d.__class__ is not dict or p not in d:
            return False
        d = d[p]
    return True


def _get(d: Any, path: str) -> Any:
    for p in path.split("."):
        if d.__class__ is not dict:
            return None
        d = d.get(p)
    return d


def _types_of(spec: Any, where: str) -> frozenset[str]:
    t = spec.get("type") if isinstance(spec, dict) else None
    if t is None:
        return frozenset(TYPES)  # no type: anything
    names = [t] if isinstance(t, str) else t
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SchemaError(f"{where}: `type` must be a string or a list of strings")
    bad = [n for n in names if n not in TYPES]
    if bad:
        raise SchemaError(f"{where}: unknown type {bad[0]!r} (use {', '.join(sorted(TYPES))})")
    return frozenset(names)


def from_json_schema(name: str, doc: Any) -> StreamSchema:
    if not isinstance(doc, dict):
        raise SchemaError(f"stream {name!r}: a schema is a JSON object")
    fields: dict[str, frozenset[str]] = {}
    required: set[str] = set()

    def visit(node: dict[str, Any], prefix: str) -> None:
        props = node.get("properties", {})
        if not isinstance(props, dict):
            raise SchemaError(f"stream {name!r}: `properties` must be an object")
        for key, spec in props.items():
            path = prefix + key
            fields[path] = _types_of(spec, f"stream {name!r}, field {path!r}")
            if isinstance(spec, dict) and "properties" in spec:
                visit(spec, path + ".")
        for key in node.get("required", []):
            required.add(prefix + str(key))

    visit(doc, "")
    return StreamSchema(name, fields, frozenset(required),
                        closed=doc.get("additionalProperties") is False)


def from_fields(name: str, spec: Mapping[str, Any]) -> StreamSchema:
    """`{"card_id": "string", "amount": "number", "geo.country": "string?"}`: a trailing
    `?` makes a field optional (it may be missing or null); `a|b` allows two types."""
    fields: dict[str, frozenset[str]] = {}
    required: set[str] = set()
    for path, text in spec.items():
        if not isinstance(text, str):
            raise SchemaError(f"stream {name!r}, field {path!r}: write the type as a string")
        optional = text.endswith("?")
        names = [t.strip() for t in text.rstrip("?").split("|")]
        bad = [t for t in names if t not in TYPES and t != "any"]
        if bad:
            raise SchemaError(f"stream {name!r}, field {path!r}: unknown type {bad[0]!r} "
                              f"(use {', '.join(sorted(TYPES))}, any)")
        types = frozenset(TYPES) if "any" in names else frozenset(names)
        if optional:
            types |= {"null"}
        else:
            required.add(path)
        fields[path] = types
        parts = path.split(".")
        for i in range(1, len(parts)):  # parents of a nested field are objects
            fields.setdefault(".".join(parts[:i]), frozenset({"object"}))
    return StreamSchema(name, fields, frozenset(required))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except OSError as err:
        raise SchemaError(f"{what}: cannot read {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise SchemaError(f"{what}: {path} is not JSON: {err}") from None


def load_schema_file(name: str, path: str | Path) -> StreamSchema:
    return from_json_schema(name, _read_json(Path(path), f"schema of stream {name!r}"))


def load_schemas_file(path: str | Path) -> dict[str, StreamSchema]:
    """A schema file as `cep backtest --infer-schema` writes it (`{"streams": {name:
    schema}}`), or one JSON Schema (the stream named after the file)."""
    p = Path(path)
    doc = _read_json(p, "schema file")
    if isinstance(doc, dict) and isinstance(doc.get("streams"), dict):
        return {n: from_json_schema(n, s) for n, s in doc["streams"].items()}
    name = p.name.split(".")[0]
    return {name: from_json_schema(name, doc)}


def schemas_from_table(
    streams: Mapping[str, Mapping[str, Any]], base: Path | None = None
) -> dict[str, StreamSchema]:
    """The declared schemas of a `[streams.NAME]` table (cep.toml): each stream's
    `fields` (name -> type) or `schema_file` (a JSON Schema, relative to `base`)."""
    out: dict[str, StreamSchema] = {}
    for name, spec in streams.items():
        fields, file = spec.get("fields"), spec.get("schema_file")
        if fields is not None and file is not None:
            raise SchemaError(f"stream {name!r}: give `fields` or `schema_file`, not both")
        if fields is not None:
            if not isinstance(fields, Mapping):
                raise SchemaError(f"stream {name!r}: `fields` is a table of name = \"type\"")
            out[name] = from_fields(name, fields)
        elif file is not None:
            path = Path(file)
            out[name] = load_schema_file(name, path if base is None or path.is_absolute()
                                         else base / path)
    return out


def times_from_table(streams: Mapping[str, Mapping[str, Any]]) -> dict[str, TimeSpec]:
    return {n: TimeSpec(str(s.get("time_unit", "ms")), bool(s.get("assume_utc", False)))
            for n, s in streams.items()}


def read_streams_toml(path: str | Path) -> dict[str, Mapping[str, Any]]:
    """The `[streams.*]` tables of a cep.toml (for `cep check` / `cep backtest`)."""
    import tomllib

    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text("utf-8"))
    except OSError as err:
        raise SchemaError(f"config: cannot read {p}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise SchemaError(f"{p}: invalid TOML: {err}") from None
    streams = doc.get("streams", {})
    if not isinstance(streams, dict):
        raise SchemaError(f"{p}: `streams` must be a table")
    return streams


def write_schemas(schemas: Mapping[str, StreamSchema]) -> str:
    doc = {"streams": {n: s.to_json_schema() for n, s in sorted(schemas.items())}}
    return json.dumps(doc, indent=2) + "\n"


# ---------------------------------------------------------------- inference


@dataclass
class FieldStats:
    """What the events of one stream carried: per field path, the JSON types seen and
    in how many events."""

    events: int = 0
    seen: Counter[str] = field(default_factory=Counter)
    types: dict[str, set[str]] = field(default_factory=dict)


class Observer:
    """Fields and types of events, per stream (`stream_field` of each event, else
    `default`): the basis of `--infer-schema` and of the end-of-backtest warnings."""

    def __init__(self, stream_field: str | None = "stream", default: str = "events",
                 max_depth: int = 3) -> None:
        self.stream_field = stream_field
        self.default = default
        self.max_depth = max_depth
        self.streams: dict[str, FieldStats] = {}

    def observe(self, events: Iterable[Any]) -> None:
        sf = self.stream_field
        for ev in events:
            if ev.__class__ is not dict:
                continue
            name = ev.get(sf) if sf else None
            key = name if isinstance(name, str) else self.default
            st = self.streams.get(key)
            if st is None:
                st = self.streams[key] = FieldStats()
            st.events += 1
            self._walk(ev, "", st, 0)

    def _walk(self, d: dict[str, Any], prefix: str, st: FieldStats, depth: int) -> None:
        for k, v in d.items():
            path = prefix + k
            st.seen[path] += 1
            t = json_type(v)
            s = st.types.get(path)
            if s is None:
                st.types[path] = {t}
            elif t not in s:
                s.add(t)
            if t == "object" and depth < self.max_depth:
                self._walk(v, path + ".", st, depth + 1)

    def carried(self) -> set[str]:
        """Every field path some event carried (with a non-null value or not)."""
        out: set[str] = set()
        for st in self.streams.values():
            out.update(st.seen)
        return out

    def schemas(self) -> dict[str, StreamSchema]:
        out: dict[str, StreamSchema] = {}
        for name, st in self.streams.items():
            fields: dict[str, frozenset[str]] = {}
            required: set[str] = set()
            for path, types in st.types.items():
                ts = set(types)
                if "integer" in ts and "number" in ts:
                    ts.discard("integer")
                if st.seen[path] < st.events:
                    ts.add("null")  # missing in some events: optional
                elif "null" not in ts:
                    required.add(path)
                fields[path] = frozenset(ts)
            out[name] = StreamSchema(name, fields, frozenset(required))
        return out


# ---------------------------------------------------------------- time


@dataclass(frozen=True)
class TimeSpec:
    """How a stream writes its event time: `unit` is ms (default; an ISO-8601 string
    with a zone is also accepted), s, us, or iso; `assume_utc` reads ISO times without
    a zone as UTC instead of refusing them."""

    unit: str = "ms"
    assume_utc: bool = False

    def __post_init__(self) -> None:
        if self.unit not in TIME_UNITS:
            raise SchemaError(f"time_unit {self.unit!r}: use one of {', '.join(TIME_UNITS)}")


DEFAULT_TIME = TimeSpec()


def likely_unit(ms_value: float, unit: str) -> str | None:
    """The unit a number read as `unit` most likely is, when it is implausible."""
    raw = ms_value * _PER_MS.get(unit, 1.0)
    for name, per_ms in (("s", 1e-3), ("ms", 1.0), ("us", 1e3), ("ns", 1e6)):
        guess = raw / per_ms
        if PLAUSIBLE_MS[0] <= guess <= PLAUSIBLE_MS[1]:
            return name
    return None


def _from_iso(text: str, spec: TimeSpec) -> tuple[int | None, str]:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None, f"{text!r} is not an ISO-8601 time"
    if dt.tzinfo is None:
        if not spec.assume_utc:
            return None, (f"{text!r} has no time zone; add one (Z or +01:00) or set "
                          "assume_utc = true for the stream")
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000), ""


def read_time(raw: Any, spec: TimeSpec, plausible: bool = True) -> tuple[int | None, str]:
    """(epoch ms, "") or (None, why not): a number in the declared unit (also written as
    a string), or an ISO-8601 string with a zone. With `plausible`, a number outside
    1990-2100 in the declared unit is refused, naming the unit it most likely is."""
    unit = spec.unit
    if raw.__class__ is str:
        text = raw.strip()
        if unit == "iso" or not _is_number(text):
            return _from_iso(text, spec)
        raw = float(text) if any(ch in text for ch in ".eE") else int(text)
    c = raw.__class__
    if not (c is int or c is float):
        want = "an ISO-8601 string" if unit == "iso" else \
            f"a number of epoch {_UNIT_NAMES[unit]} or an ISO-8601 string"
        return None, f"{raw!r} is not a time: the stream's time_unit wants {want}"
    if c is float and (raw != raw or raw in (math.inf, -math.inf)):
        return None, f"{raw!r} is not a time"
    if unit == "iso":
        return None, f"{raw!r} is a number but the stream's time_unit is iso"
    ms = raw * 1000 if unit == "s" else raw / 1000 if unit == "us" else raw
    if plausible and not PLAUSIBLE_MS[0] <= ms <= PLAUSIBLE_MS[1]:
        guess = likely_unit(ms, unit)
        hint = (f"; it looks like epoch {_UNIT_NAMES[guess]}: declare time_unit = \"{guess}\""
                f" for the stream" if guess and guess != unit else "")
        return None, (f"{raw!r} read as epoch {_UNIT_NAMES[unit]} is not between 1990 and "
                      f"2100{hint}")
    return int(ms), ""


_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return s[:1].isdigit() or s[:1] in "-+."
