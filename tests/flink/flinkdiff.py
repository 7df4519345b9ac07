"""Differential testing of `cep` against the real FlinkCEP (docs/flink-diff.md).

A *case* is one pattern, a list of events and the watermarks between them, in a form
both sides read:

- `pattern`: a tree (steps with a connector, a name or a group, a condition tree, a
  quantifier with modifiers, `until`, a stage window; the pattern window, the skip
  strategy, `order_by_v`). `to_cep(case)` writes it as `.cep` text; the Java oracle
  (tests/flink/oracle/FlinkOracle.java) builds the same Flink `Pattern`;
- `events`: `{"ts", "k", "t", "v"}`; an event is named by its index in the list;
- `batches`/`ooo`: the events arrive in these batches; after each batch the watermark
  is `max time seen - ooo - 1` (cep's clock), which the oracle emits after the batch's
  last event; the input ends with watermark +infinity.

An outcome is a sorted list of ("match", {stage: [indexes]}) and ("timeout",
{stage: [indexes]}, time), or ("error",) when the pattern is rejected. Outputs are
compared as multisets: the order among matches of the same first event is undefined
in Flink (docs/semantics.md, deliberate difference 4).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cep.compiler.pipeline import compile_pattern
from cep.dsl import load_source
from cep.errors import PatternError
from cep.program import CompiledPattern
from cep.runtime.engine import Engine, EngineConfig
from cep.runtime.records import Alert

LETTERS = ("a", "b", "c", "d")
Outcome = list[tuple[Any, ...]]

# ---------------------------------------------------------------- conditions


def cond_cep(c: list[Any]) -> str:
    """A condition tree as `.cep` text (the Java oracle evaluates the same tree)."""
    op = c[0]
    if op == "true":
        return "true"
    if op == "eq":
        return f't == "{c[1]}"'
    if op == "in":
        return "t in [" + ", ".join(f'"{x}"' for x in c[1]) + "]"
    if op == "cmp":
        return f"v {c[1]} {c[2]}"
    if op in ("and", "or"):
        return f"({cond_cep(c[1])} {op} {cond_cep(c[2])})"
    if op == "count_lt":
        return f"count({c[1]}) < {c[2]}"
    if op == "gt_last":
        return f"v > coalesce(last({c[1]}).v, -1)"
    if op == "sum_le":
        return f"coalesce(sum({c[1]}.v), 0) + v <= {c[2]}"
    if op == "gt_stage":
        return f"v > {c[1]}.v"
    raise ValueError(op)


# ---------------------------------------------------------------- .cep text

_QUANT = {"opt": "?", "plus": "+", "star": "*"}


def _quant_cep(q: dict[str, Any]) -> str:
    k = q["kind"]
    if k in _QUANT:
        s = _QUANT[k]
    elif k == "times":
        s = f"{{{q['n']}}}"
    elif k == "range":
        s = f"{{{q['n']},{q['m']}}}"
    else:
        s = f"{{{q['n']},}}"
    if q.get("optional"):
        s += "?"
    for mod in ("greedy", "consecutive", "combinations"):
        if q.get(mod):
            s += f" {mod}"
    return s


_CONN = {"next": "next", "then": "then", "then_any": "then any",
         "not_next": "next not", "not_then": "then not"}


def _steps_cep(steps: list[dict[str, Any]]) -> str:
    parts = []
    for i, st in enumerate(steps):
        conn = "" if i == 0 else _CONN[st["conn"]] + " "
        if "group" in st:
            body = f"({_steps_cep(st['group'])})"
        else:
            body = st["name"]
        if "quant" in st:
            q = _quant_cep(st["quant"])
            body += q if q[0] in "?+*{" else " " + q
        if "group" not in st:
            body += f" where {cond_cep(st['where'])}"
        if "until" in st:
            body += f" until {cond_cep(st['until'])}"
        if "within" in st:
            body += f" within {st['within']}ms"
        parts.append(conn + body)
    return " ".join(parts)


def to_cep(case: dict[str, Any]) -> str:
    p = case["pattern"]
    skip = p["skip"]
    skip_text = {"none": "skip none", "to_next": "skip to next",
                 "past_last": "skip past last"}.get(skip["kind"])
    if skip_text is None:
        skip_text = f"skip {skip['kind'].replace('_', ' ')} {skip['stage']}"
    head = ["key k", skip_text]
    if p.get("within") is not None:
        head.append(f"within {p['within']}ms")
    if p.get("order_by_v"):
        head.append("order by v")
    return ("pattern p {\n  " + "\n  ".join(head) + "\n  match " + _steps_cep(p["steps"])
            + "\n  emit {} on timeout emit {}\n}\n")


# ---------------------------------------------------------------- watermarks


def watermarks(case: dict[str, Any]) -> list[list[int]]:
    """[[index of the batch's last event, watermark]] as cep's clock computes them."""
    out: list[list[int]] = []
    evs = case["events"]
    ooo = case.get("ooo", 0)
    top = None
    wm = None
    start = 0
    for end in case["batches"]:
        late_free = [e["ts"] for e in evs[start:end] if wm is None or e["ts"] > wm]
        if late_free:
            top = max(late_free) if top is None else max(top, max(late_free))
        if top is not None and (wm is None or top - ooo - 1 > wm):
            wm = top - ooo - 1
            out.append([end - 1, wm])
        start = end
    return out


def oracle_json(case: dict[str, Any]) -> str:
    """The line the Java oracle reads."""
    return json.dumps({"id": case["id"], "pattern": case["pattern"], "events": case["events"],
                       "watermarks": watermarks(case)}, separators=(",", ":"))


# ---------------------------------------------------------------- cep side


def case_alerts(plans: list[CompiledPattern], case: dict[str, Any]) -> list[Alert]:
    """A case's events (each tagged with its index `i`) through an engine of these
    plans, in the case's batches, then the end of input: the alerts in order."""
    eng = Engine(plans, EngineConfig(max_out_of_orderness_ms=case.get("ooo", 0)),
                 now_ms=lambda: 0)
    evs = [{**e, "i": i} for i, e in enumerate(case["events"])]
    alerts: list[Alert] = []
    start = 0
    for end in case["batches"]:
        alerts += eng.process(evs[start:end]).alerts
        start = end
    alerts += eng.finish().alerts
    return alerts


def run_cep(case: dict[str, Any]) -> Outcome:
    """Run a case through the engine as `cep backtest` does; its sorted outcome."""
    try:
        (pat,) = load_source(to_cep(case))
    except PatternError:
        return [("error",)]
    out: Outcome = []
    for a in case_alerts([compile_pattern(pat)], case):
        r = a.record
        per = {s: [e["i"] for e in es] for s, es in r["events"].items()}
        if r["kind"] == "match":
            out.append(("match", _canon(per)))
        else:
            out.append(("timeout", _canon(per), r["time"]))
    return sorted(out, key=repr)


def flink_outcome(result: dict[str, Any]) -> Outcome:
    """The oracle's JSON line as a sorted outcome."""
    if result.get("error") == "oracle-timeout":
        return [("oracle-timeout",)]
    if "error" in result:
        return [("error",)]
    out: Outcome = []
    for m in result["out"]:
        per = {k: v for k, v in m.items() if k not in ("@", "kind")}
        if m["kind"] == "match":
            out.append(("match", _canon(per)))
        else:
            out.append(("timeout", _canon(per), m["@"]))
    return sorted(out, key=repr)


def _canon(per: dict[str, list[int]]) -> str:
    return json.dumps(per, sort_keys=True, separators=(",", ":"))


def as_json(o: Outcome) -> list[list[Any]]:
    return [list(x) for x in o]


# ---------------------------------------------------------------- generator


@dataclass
class Gen:
    """Random cases from a seed; every family of the language that Flink has."""

    rng: random.Random

    def cond(self, own: str | None, earlier: list[str], singles: list[str]) -> list[Any]:
        r = self.rng.random()
        base: list[Any]
        if r < 0.55:
            base = ["eq", self.rng.choice(LETTERS)]
        elif r < 0.65:
            base = ["in", sorted(self.rng.sample(LETTERS, 2))]
        elif r < 0.75:
            base = ["cmp", self.rng.choice(["<", "<=", ">", ">=", "==", "!="]),
                    self.rng.randint(0, 5)]
        else:
            base = ["eq", self.rng.choice(LETTERS)]
            refs = [*earlier, *([own] if own else [])]
            kinds = []
            if refs:
                kinds += ["count_lt", "gt_last", "sum_le"]
            if singles:
                kinds.append("gt_stage")
            if kinds:
                k = self.rng.choice(kinds)
                if k == "gt_stage":
                    it: list[Any] = ["gt_stage", self.rng.choice(singles)]
                elif k == "count_lt":
                    it = ["count_lt", self.rng.choice(refs), self.rng.randint(1, 3)]
                elif k == "sum_le":
                    it = ["sum_le", self.rng.choice(refs), self.rng.randint(3, 12)]
                else:
                    it = ["gt_last", self.rng.choice(refs)]
                return ["and", base, it] if self.rng.random() < 0.6 else ["or", base, it]
        if self.rng.random() < 0.15:
            other = ["cmp", self.rng.choice(["<", ">"]), self.rng.randint(1, 4)]
            base = [self.rng.choice(["and", "or"]), base, other]
        return base

    def quant(self, looping_ok: bool = True) -> dict[str, Any] | None:
        r = self.rng.random()
        if r < 0.45 or not looping_ok:
            return {"kind": "opt"} if r < 0.1 else None
        kind = self.rng.choice(["opt", "plus", "star", "times", "range", "atleast"])
        q: dict[str, Any] = {"kind": kind}
        if kind == "times":
            q["n"] = self.rng.randint(1, 3)
        elif kind == "range":
            q["n"] = self.rng.randint(1, 2)
            q["m"] = q["n"] + self.rng.randint(0, 2)
        elif kind == "atleast":
            q["n"] = self.rng.randint(1, 3)
        if kind in ("times", "range", "atleast") and self.rng.random() < 0.15:
            q["optional"] = True
        if kind != "opt":
            m = self.rng.random()
            if m < 0.15:
                q["consecutive"] = True
            elif m < 0.3:
                q["combinations"] = True
            # greedy with combinations is refused by cep's checker (E222, stricter)
            if kind in ("plus", "star", "atleast", "range") and self.rng.random() < 0.15 \
                    and not q.get("combinations"):
                q["greedy"] = True
        return q

    def steps(self, n: int, names: list[str], in_group: bool, windows: bool,
              earlier: list[str], singles: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(n):
            st: dict[str, Any] = {}
            if i == 0:
                st["conn"] = "begin"
            else:
                r = self.rng.random()
                prev_opt = "quant" in out[-1] and (out[-1]["quant"]["kind"] in ("opt", "star")
                                                   or out[-1]["quant"].get("optional"))
                neg_ok = not prev_opt and "group" not in out[-1] and \
                    not out[-1]["conn"].startswith("not") and not (in_group and i == n - 1)
                if r < 0.15 and neg_ok:
                    st["conn"] = self.rng.choice(["not_next", "not_then"])
                else:
                    st["conn"] = self.rng.choice(["next", "then", "then", "then_any"])
            is_not = st["conn"].startswith("not")
            if not in_group and not is_not and i > 0 and self.rng.random() < 0.12:
                k = self.rng.randint(1, 2)
                st["group"] = self.steps(k, names, True, False, list(earlier), [])
                q = self.quant()
                if q is not None and q["kind"] != "opt":
                    q.pop("greedy", None)
                    if q.get("combinations") or q.get("consecutive"):
                        pass
                if q is not None:
                    st["quant"] = q
                out.append(st)
                continue
            name = names.pop(0)
            st["name"] = name
            q = None if is_not else self.quant()
            # {1} / {1,1} count as a single event in cep (its own aggregates are refused)
            looping = q is not None and q["kind"] != "opt" and \
                not (q["kind"] in ("times", "range") and q.get("m", q.get("n")) == 1)
            st["where"] = self.cond(name if looping else None, earlier, singles)
            if q is not None:
                st["quant"] = q
                if q["kind"] in ("plus", "star", "atleast") and self.rng.random() < 0.2:
                    st["until"] = ["eq", self.rng.choice(LETTERS)]
            if windows and not in_group and i > 0 and self.rng.random() < 0.1:
                # a stage window longer than the pattern's is refused by cep (E232)
                st["within"] = self.rng.randint(1, 6)
            out.append(st)
            if not is_not:
                earlier.append(name)
                if q is None and not in_group:
                    singles.append(name)
        return out

    def case(self, cid: str) -> dict[str, Any]:
        rng = self.rng
        names = ["a", "b", "c", "d", "e", "f", "g", "h", "x", "y", "z"]
        steps = self.steps(rng.randint(1, 4), names, False, True, [], [])
        if steps[0]["conn"] == "begin" and "group" in steps[0]:
            pass
        pat: dict[str, Any] = {"steps": steps}
        if rng.random() < 0.5 or steps[-1]["conn"] == "not_then":
            longest = max([st.get("within", 0) for st in steps])
            pat["within"] = rng.randint(max(2, longest), 9)
        stages = _stage_names(steps)
        kind = rng.choice(["none", "to_next", "past_last", "to_first", "to_last"])
        pat["skip"] = {"kind": kind}
        if kind in ("to_first", "to_last"):
            pat["skip"]["stage"] = rng.choice(stages)
        if rng.random() < 0.15:
            pat["order_by_v"] = True
        blowup = '"then_any"' in json.dumps(steps) or "combinations" in json.dumps(steps)
        nev = rng.randint(2, 7 if blowup else 11)
        ts = rng.randint(0, 40)
        keys = ["k"] if rng.random() < 0.7 else ["k", "j"]
        events = []
        for _ in range(nev):
            events.append({"ts": ts, "k": rng.choice(keys), "t": rng.choice(LETTERS),
                           "v": rng.randint(0, 5)})
            ts += rng.choice([0, 1, 1, 1, 2, 3, 5])
        ooo = 0
        if rng.random() < 0.3:  # out of order within the allowed lateness
            ooo = rng.randint(1, 3)
            for j in range(len(events) - 1):
                if rng.random() < 0.3:
                    events[j]["ts"], events[j + 1]["ts"] = events[j + 1]["ts"], events[j]["ts"]
        r = rng.random()
        if r < 0.4:
            batches = [nev]  # one batch: the watermark jumps at the end
        elif r < 0.7:
            batches = list(range(1, nev + 1))  # a watermark after every event
        else:
            cuts = sorted(rng.sample(range(1, nev), rng.randint(1, max(1, nev // 3))))
            batches = [*cuts, nev]
        return {"id": cid, "pattern": pat, "events": events, "batches": batches, "ooo": ooo}


def _stage_names(steps: list[dict[str, Any]]) -> list[str]:
    out = []
    for st in steps:
        if "group" in st:
            out += _stage_names(st["group"])
        elif not st["conn"].startswith("not"):
            out.append(st["name"])
    return out


def generate(seed: int, n: int) -> list[dict[str, Any]]:
    g = Gen(random.Random(seed))
    return [g.case(f"s{seed}-{i}") for i in range(n)]


# ---------------------------------------------------------------- minimizer


def shrink_candidates(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Smaller variants of a case: fewer events, fewer batches, fewer keys."""
    out = []
    evs = case["events"]
    for j in range(len(evs)):
        c = json.loads(json.dumps(case))
        del c["events"][j]
        c["batches"] = sorted({min(b if b <= j else b - 1, len(c["events"]))
                               for b in case["batches"]} - {0}) or [len(c["events"])]
        if c["events"]:
            c["batches"][-1] = len(c["events"])
            out.append(c)
    if len(case["batches"]) > 1:
        c = json.loads(json.dumps(case))
        c["batches"] = [len(evs)]
        out.append(c)
    if case.get("ooo"):
        c = json.loads(json.dumps(case))
        c["ooo"] = 0
        out.append(c)
    return out


def minimize(case: dict[str, Any], differs: Any) -> dict[str, Any]:
    """Greedy shrink: keep taking the first smaller variant that still differs.
    `differs(cases) -> list[bool]` checks many variants at once (one oracle run)."""
    cur = case
    while True:
        cands = shrink_candidates(cur)
        for j, c in enumerate(cands):
            c["id"] = f"{case['id']}.{j}"  # one oracle run holds them all
        if not cands:
            return cur
        flags = differs(cands)
        nxt = next((c for c, f in zip(cands, flags, strict=True) if f), None)
        if nxt is None:
            return cur
        cur = nxt


# ---------------------------------------------------------------- documented differences


def _has_stage_window(steps: list[dict[str, Any]]) -> bool:
    return any("within" in st or ("group" in st and _has_stage_window(st["group"]))
               for st in steps)


def without_stage_windows(case: dict[str, Any]) -> dict[str, Any]:
    """The control of a stage-window difference: the same case, no stage `within`."""
    c = json.loads(json.dumps(case))

    def strip(steps: list[dict[str, Any]]) -> None:
        for st in steps:
            st.pop("within", None)
            if "group" in st:
                strip(st["group"])

    strip(c["pattern"]["steps"])
    c["id"] = case["id"] + ".control"
    if c["pattern"]["steps"][-1]["conn"] == "not_then" and c["pattern"].get("within") is None:
        return case  # a trailing `then not` needs a window: no control
    return c


def explain(case: dict[str, Any], want: Outcome, got: Outcome,
            control: Outcome | None = None) -> str | None:
    """The deliberate difference of docs/semantics.md that explains a disagreement, or
    None. Each rule is narrow: it needs the construct and allows only its effect.

    - `stage-window` (differences 2 and 3): the pattern has a stage `within`, and the
      same case without its stage windows agrees with Flink (`control`: Flink's
      outcome of that variant, recorded with the case);
    - `tie-order` (difference 4): a skip strategy other than `skip none`, the same
      timeouts, and every match only one side has shares its first event with another
      match: which of the matches that share a first event is released first (and
      prunes the others) is left to Flink's priority queue;
    - `quiet-key-timer` (difference 3): the same matches, and cep only has more
      timed-out partial matches, each of a key that receives no event at or after the
      deadline: Flink evaluates a key's windows only when one of its events is due;
    - `stage-window+tie-order` (both at once, checked last): the pattern has a stage
      `within` and a skip strategy, and the same case without its stage windows
      differs from Flink's outcome of that variant only as `tie-order` allows."""
    if want[:1] in ([("error",)], [("oracle-timeout",)]) or got == [("error",)]:
        return None
    p = case["pattern"]
    if _has_stage_window(p["steps"]) and control is not None:
        variant = without_stage_windows(case)
        if variant is not case and run_cep(variant) == control:
            return "stage-window"
    if p["skip"]["kind"] != "none" and _ties_only(case, want, got):
        return "tie-order"
    if _quiet_key_timeouts(case, want, got):
        return "quiet-key-timer"
    if (_has_stage_window(p["steps"]) and control is not None
            and p["skip"]["kind"] != "none"):
        variant = without_stage_windows(case)
        if variant is not case and _ties_only(variant, control, run_cep(variant)):
            return "stage-window+tie-order"
    return None


def _first(case: dict[str, Any], x: tuple[Any, ...]) -> int:
    evs = case["events"]
    idx = [i for ids in json.loads(x[1]).values() for i in ids]
    return min(idx, key=lambda i: (evs[i]["ts"], i))


def _ties_only(case: dict[str, Any], want: Outcome, got: Outcome) -> bool:
    """The timeouts agree, and every match that only one side has starts at the same
    event as another match (of either side): the outcome of a tie."""
    if [x for x in want if x[0] != "match"] != [x for x in got if x[0] != "match"]:
        return False
    w = Counter(x for x in want if x[0] == "match")
    g = Counter(x for x in got if x[0] == "match")
    starts = Counter(_first(case, x) for x in (w | g))
    return all(starts[_first(case, x)] >= 2 for x in (w - g) + (g - w))


def _quiet_key_timeouts(case: dict[str, Any], want: Outcome, got: Outcome) -> bool:
    """The matches agree and cep only has more timeouts, each of a key that receives
    no event at or after the timeout's deadline: FlinkCEP 1.20 evaluates a key's
    windows only when an event of that key is due (difference 3)."""
    if [x for x in want if x[0] == "match"] != [x for x in got if x[0] == "match"]:
        return False
    w, g = Counter(want), Counter(got)
    if w - g:
        return False
    evs = case["events"]
    live = [evs[i] for i in on_time(case)]
    for x in g - w:
        key = evs[_first(case, x)]["k"]
        if any(e["k"] == key and e["ts"] >= x[2] for e in live):
            return False
    return True


def on_time(case: dict[str, Any]) -> list[int]:
    """Indexes of the events that are not late (time > the watermark before their batch)."""
    marks = {end: wm for end, wm in watermarks(case)}
    out = []
    wm = None
    start = 0
    for end in case["batches"]:
        out += [i for i in range(start, end) if wm is None or case["events"][i]["ts"] > wm]
        wm = marks.get(end - 1, wm)
        start = end
    return out
