"""Hand-written matchers for the six model-free example patterns (`patterns/*.cep`).

What `benchmarks/engine.py` compares the generic engine with, in the same run: plain
Python, one class per pattern, each fed the same decoded batches as the engine
(`feed(events, base)`, `base` = the stream position of `events[0]`) and `finish()` at
the end of the input. Each writes what the engine's alerts would say as
`(kind, key, window start, time)` tuples into `alerts`; the benchmark checks that the
two agree, pattern by pattern, as multisets (the order of alerts across keys is the
engine's business, not compared).

Written for the benchmark's input: `cep generate` output, ordered by `ts` (a backtest
of a complete, ordered file needs no buffering), keys are strings. FlinkCEP semantics
as in flink-semantics.md, worked out per pattern below; all six patterns use the
default `skip past last`, relaxed `then`, and FIRST_AND_LAST windows (a partial match
whose first event is at f is dropped before an event at t >= f + window is processed).

Each matcher keeps per-key state only while the key has partial matches, and timers
(abandoned_checkout, unpaid_order) are a FIFO of (deadline, key, start): with one
window per pattern and events in time order, deadlines arrive already sorted, so no
heap is needed. The matchers loop over each batch separately (six loops over a
batch, as the engine's six prefilters do); a single fused loop would be faster still.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any

AlertRow = tuple[str, Any, int, int]  # (kind, key, window start, time)
MIN = 60_000
HOUR = 3_600_000


class AbandonedCheckout:
    """cart (add_to_cart) then checkout then paid (payment), within 30m, only
    `on timeout emit`.

    Every add_to_cart starts a partial match. A partial match waiting for `checkout`
    takes the first checkout after its cart; all partial matches started before a
    checkout have taken one, all started after it have not, so a key's partial
    matches are its cart times in order, the first `n2` of which have a checkout. A
    payment completes the `n2` oldest (a match, which emits nothing: no `emit`
    clause); `skip past last` then prunes every partial match of the key (all started
    before the payment). A partial match that reaches its window times out with an
    alert at `cart + 30m`.
    """

    name = "abandoned_checkout"
    WINDOW = 30 * MIN

    def __init__(self) -> None:
        self.alerts: list[AlertRow] = []
        self.state: dict[Any, list[Any]] = {}  # key -> [cart times (deque), n2]
        self.timers: deque[tuple[int, Any, int]] = deque()

    def _fire(self, until: float) -> None:
        timers, state, alerts = self.timers, self.state, self.alerts
        while timers and timers[0][0] <= until:
            deadline, key, start = timers.popleft()
            st = state.get(key)
            if st is None or not st[0] or st[0][0] != start:
                continue  # pruned by a match
            st[0].popleft()
            if st[1]:
                st[1] -= 1
            alerts.append(("timeout", key, start, deadline))
            if not st[0]:
                del state[key]

    def feed(self, events: Sequence[dict[str, Any]], base: int) -> None:
        state = self.state
        timers = self.timers
        window = self.WINDOW
        for ev in events:
            t = ev.get("type")
            if t != "add_to_cart" and t != "checkout" and t != "payment":
                continue
            key = ev.get("session_id")
            if key is None:
                continue
            ts = ev["ts"]
            if timers and timers[0][0] <= ts:
                self._fire(ts)
            st = state.get(key)
            if t == "add_to_cart":
                if st is None:
                    state[key] = [deque((ts,)), 0]
                else:
                    st[0].append(ts)
                timers.append((ts + window, key, ts))
            elif st is None:
                continue
            elif t == "checkout":
                st[1] = len(st[0])
            elif st[1]:  # payment completing the oldest partial matches: prune the key
                del state[key]

    def finish(self) -> None:
        self._fire(math.inf)


class AccountTakeover:
    """login (new device) then change (password/email) then payout (transfer > 1000
    to a new beneficiary), within 30m, emit on match.

    As in AbandonedCheckout, a key's partial matches are its qualifying login times in
    order, the first `n2` of which have taken a change. A payout completes them; the
    oldest one is the match (its first event is the earliest), and `skip past last`
    prunes the rest. No held matches: no partial match that started earlier can still
    be open (it would have taken the same change). Expired partial matches just go.
    """

    name = "account_takeover"
    WINDOW = 30 * MIN
    CHANGES = ("password_change", "email_change")

    def __init__(self) -> None:
        self.alerts: list[AlertRow] = []
        self.state: dict[Any, list[Any]] = {}  # key -> [login times (deque), n2]

    def feed(self, events: Sequence[dict[str, Any]], base: int) -> None:
        state = self.state
        window = self.WINDOW
        changes = self.CHANGES
        for ev in events:
            t = ev.get("type")
            if t == "login":
                if ev.get("new_device") is not True:
                    continue
            elif t == "transfer":
                amount = ev.get("amount")
                if ev.get("new_beneficiary") is not True or amount is None or amount <= 1000:
                    continue
            elif t not in changes:
                continue
            key = ev.get("user_id")
            if key is None:
                continue
            ts = ev["ts"]
            st = state.get(key)
            if st is not None:
                logins = st[0]
                while logins and ts - logins[0] >= window:
                    logins.popleft()
                    if st[1]:
                        st[1] -= 1
                if not logins:
                    del state[key]
                    st = None
            if t == "login":
                if st is None:
                    state[key] = [deque((ts,)), 0]
                else:
                    st[0].append(ts)
            elif st is None:
                continue
            elif t == "transfer":
                if st[1]:
                    self.alerts.append(("match", key, st[0][0], ts))
                    del state[key]
            else:
                st[1] = len(st[0])

    def finish(self) -> None:
        self.state.clear()  # partial matches without `on timeout emit` just end


class CardTesting:
    """tiny{3,} (purchase < 2.00) then big (purchase > 50 * avg(tiny.amount)),
    within 10m: `benchmarks/baseline_card_testing.py` (its docstring explains the
    semantics), fed batch by batch."""

    name = "card_testing"

    def __init__(self) -> None:
        from baseline_card_testing import CardTestingMatcher

        self.matcher = CardTestingMatcher()
        self.alerts: list[AlertRow] = []

    def feed(self, events: Sequence[dict[str, Any]], base: int) -> None:
        self.matcher.feed(events)

    def finish(self) -> None:
        self.matcher.finish()
        self.alerts = [("match", card, start, end) for card, start, end in self.matcher.spans]


class DeclineBurst:
    """declined{5,} (status == declined), within 2m, emit on match.

    Every decline starts a partial match, which takes every later decline (its loop
    cannot skip one). The oldest live partial match is the first to reach 5 declines
    (a trailing loop completes as soon as it can), and it is the earliest, so it is
    emitted at once; `skip past last` prunes every partial match of the key. So a
    key's state is the times of its declines of the last 2 minutes.
    """

    name = "decline_burst"
    WINDOW = 2 * MIN
    N = 5

    def __init__(self) -> None:
        self.alerts: list[AlertRow] = []
        self.state: dict[Any, deque[int]] = {}

    def feed(self, events: Sequence[dict[str, Any]], base: int) -> None:
        state = self.state
        window = self.WINDOW
        n = self.N
        for ev in events:
            if ev.get("status") != "declined":
                continue
            key = ev.get("card_id")
            if key is None:
                continue
            ts = ev["ts"]
            times = state.get(key)
            if times is None:
                state[key] = deque((ts,))
                continue
            while times and ts - times[0] >= window:
                times.popleft()
            times.append(ts)
            if len(times) >= n:
                self.alerts.append(("match", key, times[0], ts))
                del state[key]

    def finish(self) -> None:
        self.state.clear()


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine, mean Earth radius (the same formula and operations as the DSL's)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


class ImpossibleTravel:
    """a (pos) then b (pos, other country, faster than 900 km/h from a), within 6h.

    Every POS purchase starts a partial match and is tested as `b` against every live
    one of its card (relaxed: a partial match skips what does not fit). Completed
    matches are held back while a partial match that started earlier is still open
    (Flink's processMatchesAccordingToSkipStrategy), then released in order of their
    first event, each pruning (`skip past last`) the partial matches and held matches
    that started at or before its last event. Events of other channels change nothing.
    """

    name = "impossible_travel"
    WINDOW = 6 * HOUR

    def __init__(self) -> None:
        self.alerts: list[AlertRow] = []
        # key -> [runs, held]; run = (ts, seq, country, lat, lon) of `a`, in start
        # order; held match = (start ts, start seq, end ts, end seq)
        self.state: dict[Any, list[Any]] = {}

    def feed(self, events: Sequence[dict[str, Any]], base: int) -> None:
        state = self.state
        window = self.WINDOW
        dist = _distance_km
        for j, ev in enumerate(events):
            if ev.get("channel") != "pos":
                continue
            key = ev.get("card_id")
            if key is None:
                continue
            ts = ev["ts"]
            seq = base + j
            country, lat, lon = ev.get("country"), ev.get("lat"), ev.get("lon")
            a = (ts, seq, country, lat, lon)
            st = state.get(key)
            if st is None:
                state[key] = [[a], []]
                continue
            runs, held = st
            expired = 0
            while expired < len(runs) and ts - runs[expired][0] >= window:
                expired += 1
            if expired:
                del runs[:expired]
                if held:
                    self._release(key, runs, held)
            done: list[tuple[int, int, int, int]] = []
            if country is not None and lat is not None and lon is not None:
                keep = []
                for r in runs:
                    rc = r[2]
                    if (rc is not None and country != rc and r[3] is not None
                            and r[4] is not None
                            and dist(r[3], r[4], lat, lon) / ((ts - r[0]) / HOUR + 0.01) > 900):
                        done.append((r[0], r[1], ts, seq))
                    else:
                        keep.append(r)
                if done:
                    runs[:] = keep
            runs.append(a)
            if done or held:
                held.extend(done)
                held.sort()
                self._release(key, runs, held)
            if not runs and not held:
                del state[key]

    def _release(self, key: Any, runs: list[Any], held: list[Any]) -> None:
        alerts = self.alerts
        while held and (not runs or held[0][:2] <= runs[0][:2]):
            m = held.pop(0)
            last = m[2:]
            runs[:] = [r for r in runs if r[:2] > last]
            held[:] = [h for h in held if h[:2] > last]
            alerts.append(("match", key, m[0], m[2]))

    def finish(self) -> None:
        for key, (runs, held) in self.state.items():
            runs.clear()
            self._release(key, runs, held)
        self.state.clear()


class UnpaidOrder:
    """created (order_created) then not paid (payment_received) within 15m.

    Every order_created starts a pending match that completes at `created + 15m`
    (kind `match`, time = the deadline) unless a payment arrives before; a payment
    at exactly +15m comes too late. A completed match prunes only partial matches
    started at or before its `created` event, i.e. none of the others pending.
    """

    name = "unpaid_order"
    WITHIN = 15 * MIN

    def __init__(self) -> None:
        self.alerts: list[AlertRow] = []
        self.pending: dict[Any, int] = {}  # key -> number of pending created events
        self.timers: deque[tuple[int, Any, int, int]] = deque()  # (deadline, key, ts, epoch)
        self.epoch: dict[Any, int] = {}  # key -> payments seen (cancel older timers)

    def _fire(self, until: float) -> None:
        timers, pending, epoch = self.timers, self.pending, self.epoch
        while timers and timers[0][0] <= until:
            deadline, key, start, ep = timers.popleft()
            if epoch.get(key, 0) != ep:
                continue  # a payment came before the deadline
            self.alerts.append(("match", key, start, deadline))
            left = pending[key] - 1
            if left:
                pending[key] = left
            else:
                del pending[key]
                epoch.pop(key, None)

    def feed(self, events: Sequence[dict[str, Any]], base: int) -> None:
        pending = self.pending
        timers = self.timers
        epoch = self.epoch
        within = self.WITHIN
        for ev in events:
            t = ev.get("type")
            if t != "order_created" and t != "payment_received":
                continue
            key = ev.get("order_id")
            if key is None:
                continue
            ts = ev["ts"]
            if timers and timers[0][0] <= ts:
                self._fire(ts)
            if t == "order_created":
                pending[key] = pending.get(key, 0) + 1
                timers.append((ts + within, key, ts, epoch.get(key, 0)))
            elif key in pending:  # a payment cancels every pending match of the order
                del pending[key]
                epoch[key] = epoch.get(key, 0) + 1

    def finish(self) -> None:
        self._fire(math.inf)


ALL = (AbandonedCheckout, AccountTakeover, CardTesting, DeclineBurst, ImpossibleTravel,
       UnpaidOrder)
