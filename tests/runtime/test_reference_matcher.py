"""The engine against an obviously-correct reference, for a restricted family:
2-3 single-event stages, `next` / `then` / `then any`, `skip none`, conditions
`name == "x"`, an optional pattern `within` and an optional stage `within`.

The reference enumerates index tuples directly from the definitions (§2, §7):
- `next`: the stage takes the very next event;
- `then`: the stage takes the first later event that satisfies it (if that one is
  outside a window, the partial match is dead: nothing later can be taken);
- `then any`: the stage takes any later event that satisfies it;
- pattern `within w`: last.ts - first.ts < w; stage `within w`: ts - previous.ts < w.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from helpers import pattern, run_pattern, show
from hypothesis import given, settings
from hypothesis import strategies as st


@dataclass(frozen=True)
class Spec:
    letters: tuple[str, ...]  # stage i takes events named letters[i]
    connectors: tuple[str, ...]  # between stage i-1 and i
    window: int | None  # pattern `within`
    stage_window: tuple[int, int] | None  # (stage index >= 1, window)

    def text(self) -> str:
        parts = []
        for i, letter in enumerate(self.letters):
            stage = f's{i} where name == "{letter}"'
            if self.stage_window is not None and self.stage_window[0] == i:
                stage += f" within {self.stage_window[1]}ms"
            parts.append(stage if i == 0 else f"{self.connectors[i - 1]} {stage}")
        header = "skip none" + (f"\n  within {self.window}ms" if self.window else "")
        return pattern(" ".join(parts), header)


def reference(spec: Spec, events: list[dict[str, Any]]) -> Counter[str]:
    out: Counter[str] = Counter()

    def ok_gap(i: int, prev: int, cur: int) -> bool:
        sw = spec.stage_window
        return sw is None or sw[0] != i or events[cur]["ts"] - events[prev]["ts"] < sw[1]

    def extend(chosen: list[int]) -> None:
        i = len(chosen)
        if i == len(spec.letters):
            first, last = events[chosen[0]]["ts"], events[chosen[-1]]["ts"]
            if spec.window is None or last - first < spec.window:
                out[" ".join(events[j]["id"] for j in chosen)] += 1
            return
        prev = chosen[-1]
        later = [j for j in range(prev + 1, len(events)) if events[j]["name"] == spec.letters[i]]
        conn = spec.connectors[i - 1]
        if conn == "next":
            cands = [prev + 1] if later and later[0] == prev + 1 else []
        elif conn == "then":
            cands = later[:1]
        else:
            cands = later
        for j in cands:
            if ok_gap(i, prev, j):
                extend([*chosen, j])

    for start, e in enumerate(events):
        if e["name"] == spec.letters[0]:
            extend([start])
    return out


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    n = draw(st.integers(min_value=2, max_value=3))
    letters = tuple(draw(st.lists(st.sampled_from("abc"), min_size=n, max_size=n)))
    connectors = tuple(
        draw(st.lists(st.sampled_from(["next", "then", "then any"]), min_size=n - 1,
                      max_size=n - 1))
    )
    window = draw(st.one_of(st.none(), st.integers(min_value=1, max_value=8)))
    stage_window = draw(
        st.one_of(
            st.none(),
            st.tuples(st.integers(min_value=1, max_value=n - 1),
                      st.integers(min_value=1, max_value=8)),
        )
    )
    return Spec(letters, connectors, window, stage_window)


@st.composite
def event_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from("abcx"), max_size=10))
    gaps = draw(st.lists(st.integers(min_value=0, max_value=3), min_size=len(names),
                         max_size=len(names)))
    out, t = [], 100
    for i, (name, gap) in enumerate(zip(names, gaps, strict=True)):
        t += gap  # gap 0: equal timestamps, kept in arrival order
        out.append({"id": f"{name}{i}", "name": name, "ts": t})
    return out


@settings(max_examples=250, deadline=None)
@given(spec=specs(), events=event_lists())
def test_engine_agrees_with_the_reference(spec: Spec, events: list[dict[str, Any]]) -> None:
    got = Counter(show(a) for a in run_pattern(spec.text(), events))
    assert got == reference(spec, events), spec.text()


def test_reference_examples() -> None:
    # the reference itself, on the docs example (`a c b1 b2`)
    events = [{"id": i, "name": i[0], "ts": t} for t, i in enumerate(["a1", "c1", "b1", "b2"])]
    for conn, expected in [("next", []), ("then", ["a1 b1"]), ("then any", ["a1 b1", "a1 b2"])]:
        spec = Spec(("a", "b"), (conn,), None, None)
        assert reference(spec, events) == Counter(expected)
        assert Counter(show(a) for a in run_pattern(spec.text(), events)) == Counter(expected)
