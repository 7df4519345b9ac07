"""One prefilter pass for all loaded patterns of a clock (Esper's shared filter index).

Each pattern that has a `FilterBlock` (cep/program.py: no `let` values, no `order by`)
gets a block in one generated loop over the batch, in load order:

- every field any block tests is read once per event, at the top of the loop;
- a key is read and normalised once per event for all patterns with the same key: at
  the top of the loop when one of them needs the key of every event (it is not
  skip-safe, or it has windows, so that a skipped event may be a tick), else only
  once the event passes an `any` test;
- per pattern, an event without a key costs only its tests; the key state is looked
  up when the pattern's own prefilter looks it up (with eviction a lookup may load
  the key back), and a pattern's event-local test (`any`) decides whether the event
  is a candidate;
- the outcome per pattern is exactly what its own `prefilter` would give
  (cep/compiler/pipeline.py): the same candidates, `missing_key` candidates and
  ticks, in the same order, with one exception that changes no output: a tick (a
  skipped event of a key with state, which only advances the key's time) is left out
  when it provably expires nothing (below). The tests are evaluated as the pattern's
  own prefilter evaluates them, so type mismatches are met as it meets them.

A pattern that is not skip-safe (its `any` is "True") needs every event of a key with
state, so its block looks the key up for every keyed event, as before.

Ticks. For a skip-safe pattern with windows, an event failing `any` for a key with
state is handed over as a tick: drain advances the key's time to it (Flink's
advanceTime). The tick is a no-op unless some run of the key has a deadline at or
before its time by the time it is drained. For a pattern whose runs expire only by
the pattern window (`FilterBlock.window_only`), a run's deadline is its first event's
time + window: either a run that exists now (its deadline is at least the key's
current `deadline`) or one started later by an event drained before the tick, whose
time is at least `floor` = the smallest of this batch's first time, the oldest
buffered event and the new watermark (later batches bring only events after it). So
the tick is kept only when `deadline <= t` or `t >= floor + window`; the others would
fire nothing and change nothing.

The runtime only assembles blocks the compiler made; the source is built from them,
`repr` of field names, and this module's fixed text.
"""

from __future__ import annotations

import hashlib
import re
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cep.program import FilterBlock

if TYPE_CHECKING:
    from cep.runtime.pattern_runtime import PatternRuntime

_CODE_CACHE: dict[str, types.CodeType] = {}
_NOT_READ = object()  # a key group's key not computed yet for this event
_PLACEHOLDER = re.compile("\x00([^\x00]*)\x00")


def _read(path: tuple[str, ...]) -> str:
    return f"d.get({path[0]!r})" if len(path) == 1 else f"_path(d, {path!r})"


class SharedFilter:
    """The generated shared prefilter of some pattern runtimes (all with a block)."""

    def __init__(self, runtimes: Sequence[PatternRuntime]) -> None:
        self.runtimes = tuple(runtimes)
        self.source, ns = self._generate()
        digest = hashlib.sha256(self.source.encode()).hexdigest()
        code = _CODE_CACHE.get(digest)
        if code is None:
            code = compile(self.source, f"<cep:shared-filter:{digest[:12]}>", "exec")
            _CODE_CACHE[digest] = code
        exec(code, ns)
        self.fn = ns["shared_filter"]

    def _generate(self) -> tuple[str, dict[str, Any]]:
        fields: dict[tuple[str, ...], str] = {}
        keys: dict[tuple[tuple[str, ...], ...], str] = {}
        ns: dict[str, Any] = {}
        # (runtime, key variable, start, any, the tests read the key)
        tests: list[tuple[PatternRuntime, str, str, str, bool]] = []
        uses: set[str] = set()
        for j, rt in enumerate(self.runtimes):
            plan = rt.plan
            block = plan.filter_block
            assert block is not None
            mod_ns = plan.module.namespace
            if not ns:  # the helpers every generated module has (cep/compiler/env.py)
                ns = {k: v for k, v in mod_ns.items()
                      if k.startswith("_") and not re.fullmatch(r"_C\d+", k)}
                ns["_NOTREAD"] = _NOT_READ
            for name in block.consts:
                ns[f"_p{j}{name}"] = mod_ns[name]

            def sub(text: str, j: int = j, block: FilterBlock = block) -> str:
                def one(m: re.Match[str]) -> str:
                    ph = m.group(1)
                    if ph.startswith("F"):
                        path = block.fields[int(ph[1:])]
                        return fields.setdefault(path, f"f{len(fields)}")
                    return f"_p{j}{ph}"
                return _PLACEHOLDER.sub(one, text)

            start, anyt = sub(block.start), sub(block.any)
            reads = {name for name in ("key", "lets") if re.search(rf"\b{name}\b", start + anyt)}
            uses |= reads
            kv = keys.setdefault(plan.key_paths, f"k{len(keys)}")
            tests.append((rt, kv, start, anyt, "key" in reads))
        # a key group is read at the top of the loop when some pattern of it needs the
        # key of every event (not skip-safe, or timed: its skipped events may be ticks,
        # or its tests read the key), else only once an event passes a pattern's `any`
        # (`_NOTREAD` until then)
        eager = {t[1] for t in tests if t[3] == "True" or t[0].plan.timed or t[4]}
        self.key_vars = keys
        self.eager = eager
        blocks: list[str] = []
        for j, (rt, kv, start, anyt, reads_key) in enumerate(tests):
            blocks.extend(self._block(j, rt, kv, start, anyt, kv in eager, reads_key))
        head = ["def shared_filter(ds, tss, horizon, G, C, O, U, T, FL):"]
        n = len(self.runtimes)
        for name, src in (("g", "G"), ("c", "C"), ("fl", "FL")):
            names = "".join(f"{name}{j}, " for j in range(n))
            head.append(f"    ({names}) = {src}")
        for name, src in (("o", "O"), ("u", "U"), ("t", "T")):
            for j in range(n):
                head.append(f"    {name}{j} = {src}[{j}].append")
        head += ["    _str = _STR", "    i = -1", "    for d in ds:", "        i += 1",
                 "        ts = tss[i]"]
        if "lets" in uses:
            head.append("        lets = None")
        head += [f"        {var} = {_read(path)}" for path, var in fields.items()]
        for paths, kv in keys.items():
            head += ["        " + ln for ln in (self._read_key(paths, kv) if kv in eager
                                                 else [f"{kv} = _NOTREAD"])]
        source = "\n".join(head + ["        " + ln for ln in blocks]) + "\n"
        source = "\n".join(self._key_funcs()) + "\n\n" + source
        ns["_STR"] = str
        return source, ns

    def _key_funcs(self) -> list[str]:
        """`_key<i>(d)`: the normalised key of a key group, None when it has none."""
        out: list[str] = []
        for paths, var in self.key_vars.items():
            if len(paths) == 1:
                continue  # read in place (`_read_key`)
            out.append(f"def _key{var[1:]}(d):")
            if not paths:
                out.append("    return ()")
            else:
                parts = ", ".join(f"_nkey({_read(p)})" for p in paths)
                out += [f"    k = ({parts})", "    return None if None in k else k"]
            out.append("")
        return out

    @staticmethod
    def _read_key(paths: tuple[tuple[str, ...], ...], kv: str) -> list[str]:
        """Lines that set `kv` to the event's normalised key (None: it has none)."""
        if len(paths) != 1:
            return [f"{kv} = _key{kv[1:]}(d)"]
        return [f"{kv} = {_read(paths[0])}",  # inline: the common case
                f"if {kv} is not None and {kv}.__class__ is not _str:",
                f"    {kv} = _nkey({kv})"]

    def _block(self, j: int, rt: PatternRuntime, kv: str, start: str, anyt: str,
               eager: bool, reads_key: bool) -> list[str]:
        """Lines of pattern j's block (indented inside the loop). The same tests as
        the pattern's own prefilter, evaluated in the same order for every event
        (type mismatches are counted as it counts them), the key state looked up as
        it looks it up (with eviction, a lookup may load the key back)."""
        plan = rt.plan
        block = plan.filter_block
        assert block is not None
        lines = [f"# {plan.name} v{plan.version}"]
        if not eager:  # untimed and skip-safe: nothing happens unless `any` holds
            lines += [f"if {kv} is _NOTREAD:"]
            lines += ["    " + ln for ln in self._read_key(plan.key_paths, kv)]
        if reads_key:  # (its key group is eager)
            lines.append(f"key = {kv}")
        # a key without state: the start test when the event is due now, else (it may
        # yet be preceded by one that starts a match) the broader `any`, which holds here
        create_if = "ts > horizon" if start != "True" else "True"
        if start != "True":
            create_if += f" or {start}"
        keyed = [
            "if ks is None:",
            f"    if {create_if}:",
            f"        o{j}((i, c{j}({kv})))",
            "else:",
            f"    o{j}((i, ks))",
        ]
        if anyt == "True":  # not skip-safe: every event of a key with state
            return lines + [f"if {kv} is None:", f"    if {start}:", f"        u{j}(d)",
                            "else:", f"    ks = g{j}({kv})"] + ["    " + ln for ln in keyed]
        if not plan.timed:  # no ticks: no lookup unless `any` holds
            if not eager:
                lines = lines[:1] + [f"if {anyt}:"] + ["    " + ln for ln in lines[1:]]
                ind = "    "
            else:
                lines.append(f"if {anyt}:")
                ind = "    "
            return lines + [ind + ln for ln in [
                f"if {kv} is None:", f"    if {start}:", f"        u{j}(d)",
                "else:", f"    ks = g{j}({kv})"] + ["    " + ln for ln in keyed]]
        # timed and skip-safe: an event failing `any` for a key with state is a tick
        tick = "ks is not None"
        if block.window_only:
            tick += f" and (ks.deadline <= ts or ts >= fl{j})"
        return lines + [
            f"if {kv} is None:",
            f"    if {anyt} and {start}:",
            f"        u{j}(d)",
            "else:",
            f"    ks = g{j}({kv})",
            f"    if {anyt}:",
        ] + ["        " + ln for ln in keyed] + [
            f"    elif {tick}:",
            f"        t{j}((i, ks))",
        ]


def run_shared(shared: SharedFilter, ds: list[Any], tss: list[int], horizon: float,
               unkeyed: list[Any]) -> list[tuple[list[tuple[int, Any]], list[tuple[int, Any]]]]:
    """Run the shared prefilter over a batch: per runtime, its (candidates, ticks).
    Events a pattern would start on but cannot key are added to `unkeyed`."""
    rts = shared.runtimes
    inf = float("inf")
    floors = []
    lo = min(tss[0], horizon) if tss else horizon
    for rt in rts:
        block = rt.plan.filter_block
        assert block is not None
        if block.window_only and block.window > 0:
            f = min(lo, rt.heap[0][0]) if rt.heap else lo
            floors.append(f + block.window)
        else:
            floors.append(inf)
    outs: list[list[tuple[int, Any]]] = [[] for _ in rts]
    ticks: list[list[tuple[int, Any]]] = [[] for _ in rts]
    unk: list[list[Any]] = [[] for _ in rts]
    shared.fn(ds, tss, horizon, tuple(rt.getter() for rt in rts),
              tuple(rt._create for rt in rts), outs, unk, ticks, tuple(floors))
    for u in unk:
        unkeyed.extend(u)
    return list(zip(outs, ticks, strict=True))
