"""Hand-written baseline matcher for the `card_testing` example pattern.

    pattern card_testing {
      from transactions  key card_id  within 10m  skip past last
      match
        tiny{3,} where type == "purchase" and amount < 2.00
        then big where type == "purchase" and amount > 50 * avg(tiny.amount)
    }

This is what the generic engine is compared with in the benchmarks: plain Python, one
pass over decoded events sorted by `ts` (ties in list order), per-card state only for
cards that have tiny purchases inside the window.

FlinkCEP semantics reproduced (see docs/flink-semantics.md sections 2, 3, 7, 8):

* Every tiny purchase starts a run. A run's loop cannot skip a tiny purchase (the loop's
  IGNORE edge is `not tiny`), so a run started at tiny t_i holds t_i, t_i+1, ... (the
  card's tiny purchases in order). After each tiny from the 3rd on, the run also forks a
  branch that has left the loop and waits for `big` with the tinies taken so far; such a
  branch skips every later non-big event, tinies included (relaxed contiguity). So at an
  event e the candidate matches are exactly the contiguous ranges t_i..t_(i+k-1) of the
  tiny purchases seen before e, with k >= 3, each tested with its own average.
* `within 10m` (FIRST_AND_LAST): a run whose first tiny is at f is dropped before an
  event at t is processed when t - f >= 10 min, so a match needs big.ts - f < 10 min.
* Non-purchase events, other streams and events without `card_id` are skipped. A
  missing or non-numeric `amount` makes both conditions false.
* `skip past last`: when a match completes at e, every run started at or before e is
  discarded, i.e. the card's state is cleared. Among matches completing at the same
  event, the one with the earliest first tiny wins; for the same first tiny, the one
  with the most tinies (whose average condition holds).
* The `big` condition is tested before `e` is added as a tiny (an event can be `big`
  for earlier tinies and tiny itself when the tinies average below 0.04).

* Held matches: with a skip strategy, Flink holds a completed match back while a
  partial match that started earlier is still open (here: a live tiny purchase before
  the match's first tiny; a run's loop stays open after one of its branches completed),
  and emits held matches in order of their first event when nothing earlier is open
  (after the earlier runs expired, or at the end of the input), each pruning the runs
  and held matches that started at or before its big purchase. A match whose first tiny
  is the card's oldest live one is emitted at once and clears the card. (`cep.synth`
  rarely generates held matches: its big purchases exceed 50x every tiny.)

Run `python -m benchmarks.baseline_card_testing [n_events]` to time it.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

WINDOW_MS = 10 * 60 * 1000
TINY_BELOW = 2.00
BIG_FACTOR = 50
MIN_TINY = 3

Match = tuple[Any, list[Any], Any]  # (card_id, [tiny event ids], big event id)


def match_card_testing(events: Iterable[Mapping[str, Any]]) -> list[Match]:
    """Matches of `card_testing` over events sorted by `ts`, in the order they complete."""
    m = CardTestingMatcher()
    m.feed(events)
    m.finish()
    return m.matches


class CardTestingMatcher:
    """The matcher, fed a batch at a time. `matches` as in `match_card_testing`;
    `spans`: (card, first tiny ts, big ts) of each match."""

    def __init__(self) -> None:
        self.matches: list[Match] = []
        self.spans: list[tuple[Any, int, int]] = []
        self._seq = 0
        # card -> deque of (ts, amount, id, seq) of the tiny purchases of the live runs
        self.state: dict[Any, deque[tuple[int, float, Any, int]]] = {}
        # card -> held matches (first tiny ts, seq, -tinies, big ts, seq, tiny ids, big id)
        self.held: dict[Any, list[tuple[Any, ...]]] = {}

    def feed(self, events: Iterable[Mapping[str, Any]]) -> None:
        state = self.state
        held = self.held
        get_state = state.get
        window = WINDOW_MS
        for ev in events:
            self._seq += 1
            if ev.get("type") != "purchase" or ev.get("stream", "transactions") != "transactions":
                continue
            card = ev.get("card_id")
            if card is None:
                continue
            amount: Any = ev.get("amount")
            tinies = get_state(card)
            try:
                if tinies is None:
                    if amount < TINY_BELOW:
                        state[card] = deque(((ev["ts"], amount, ev["id"], self._seq),))
                    continue
                ts = ev["ts"]
                horizon = ts - window
                expired = False
                while tinies and tinies[0][0] <= horizon:
                    tinies.popleft()
                    expired = True
                if expired and card in held:
                    self._release(card, tinies)
                if len(tinies) >= MIN_TINY:
                    found = _best_match(tinies, amount)
                    if found is not None:
                        i, k = found
                        if i == 0:  # the oldest live run completed: emit, clear the card
                            self._emit(card, tinies, i, k, ts, ev["id"])
                            del state[card]
                            held.pop(card, None)
                            continue
                        self._hold(card, tinies, i, amount, ts, ev["id"])
                if amount < TINY_BELOW:
                    tinies.append((ts, amount, ev["id"], self._seq))
                if card in held:
                    self._release(card, tinies)
                if not tinies and card not in held:
                    del state[card]
            except TypeError:  # amount missing or not a number: both conditions are false
                if tinies is not None and not tinies and card not in held:
                    del state[card]

    def finish(self) -> None:
        """End of input: every run expires; held matches are released in order."""
        for card in list(self.held):
            self._release(card, deque())
        self.state.clear()

    def _emit(self, card: Any, tinies: deque[tuple[int, float, Any, int]], i: int, k: int,
              ts: int, big_id: Any) -> None:
        self.matches.append((card, [tinies[j][2] for j in range(i, i + k)], big_id))
        self.spans.append((card, tinies[i][0], ts))

    def _hold(self, card: Any, tinies: deque[tuple[int, float, Any, int]], first: int,
              amount: float, ts: int, big_id: Any) -> None:
        """Hold the best completed match of every start from `first` on."""
        values = [t[1] for t in tinies]
        out = self.held.setdefault(card, [])
        for i in range(first, len(tinies) - MIN_TINY + 1):
            k = _best_length(values, i, amount)
            if k:
                ids = [tinies[j][2] for j in range(i, i + k)]
                out.append((tinies[i][0], tinies[i][3], -k, ts, self._seq, ids, big_id))
        out.sort(key=lambda h: h[:3])

    def _release(self, card: Any, tinies: deque[tuple[int, float, Any, int]]) -> None:
        held = self.held[card]
        while held and (not tinies or held[0][:2] <= (tinies[0][0], tinies[0][3])):
            start, _, _, end, end_seq, ids, big_id = held.pop(0)
            self.matches.append((card, ids, big_id))
            self.spans.append((card, start, end))
            last = (end, end_seq)
            while tinies and (tinies[0][0], tinies[0][3]) <= last:
                tinies.popleft()
            held[:] = [h for h in held if h[:2] > last]
        if not held:
            del self.held[card]


def _best_match(
    tinies: deque[tuple[int, float, Any, int]], amount: float
) -> tuple[int, int] | None:
    """(start, length) of the candidate range with the earliest start (the most tinies
    for that start), or None."""
    if amount is None:
        return None
    if amount <= BIG_FACTOR * min(t[1] for t in tinies):
        return None  # no average can be below the smallest tiny
    values = [t[1] for t in tinies]
    for i in range(len(values) - MIN_TINY + 1):
        best = _best_length(values, i, amount)
        if best:
            return i, best
    return None


def _best_length(values: list[float], i: int, amount: float) -> int:
    """The most tinies from `i` on whose average `amount` exceeds 50x (0: none)."""
    total = 0.0
    best = 0
    for j in range(i, len(values)):
        total += values[j]
        k = j - i + 1
        if k >= MIN_TINY and amount > BIG_FACTOR * (total / k):
            best = k
    return best


def _timed(fn: Any, *args: Any) -> tuple[Any, float, float]:
    """fn(*args), wall seconds, CPU seconds (the CPU figure is the one to trust on a
    shared machine)."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - w0, time.process_time() - c0


def _main(argv: list[str]) -> None:
    import orjson

    from cep.synth import generate

    n = int(argv[1]) if len(argv) > 1 else 1_000_000
    events, wall, cpu = _timed(generate, n)
    incidents = {e["label"] for e in events if str(e.get("label", "")).startswith("card_testing:")}
    print(f"generate: {n:,} events in {wall:.2f} s wall, {cpu:.2f} s CPU")

    matches, wall, cpu = _timed(match_card_testing, events)
    print(
        f"baseline card_testing over generate() output: {len(matches)} matches "
        f"({len(incidents)} labelled incidents); {n / wall:,.0f} events/s wall, "
        f"{n / cpu:,.0f} events/s CPU"
    )

    lines = [orjson.dumps(e) for e in events]
    del events
    decoded, d_wall, d_cpu = _timed(lambda: [orjson.loads(line) for line in lines])
    matches, wall, cpu = _timed(match_card_testing, decoded)
    print(
        f"baseline card_testing over decoded JSON lines: {len(matches)} matches; "
        f"match {n / wall:,.0f} events/s wall ({n / cpu:,.0f} CPU), "
        f"decode+match {n / (d_wall + wall):,.0f} events/s wall ({n / (d_cpu + cpu):,.0f} CPU)"
    )


if __name__ == "__main__":
    _main(sys.argv)
