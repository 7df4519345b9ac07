"""Bookkeeping shared by the incident and near-miss injectors.

A `Planner` owns the scalar random stream of the injectors, hands out keys (cards,
users) that are free for an interval, reserves them with a guard so background traffic
stays away, and collects the injected events. Orders and sessions get fresh ids, which
are assigned once the background's orders and sessions exist (ids increase with time).
"""

from __future__ import annotations

import random

from cep.synth.reservations import Reservations
from cep.synth.shapes import Event
from cep.synth.timeline import DAY, HOUR, MINUTE, Timeline
from cep.synth.world import COUNTRIES, NEIGHBOURS, World

# Guards: at least the longest window of any example pattern keyed by that key kind.
CARD_GUARD = {
    "card_testing": 15 * MINUTE,  # within 10m
    "decline_burst": 5 * MINUTE,  # within 2m
    "risky_burst": 75 * MINUTE,  # within 1h
    "impossible_travel": 6 * HOUR + 15 * MINUTE,  # within 6h
}
USER_GUARD = 45 * MINUTE  # account_takeover: within 30m

FAR_KM = 3_000.0
_PICK_TRIES = 64


class Planner:
    def __init__(self, world: World, timeline: Timeline, r: random.Random) -> None:
        self.world = world
        self.timeline = timeline
        self.r = r
        base = timeline.start_ms - 2 * DAY
        self.cards = Reservations(base)
        self.users = Reservations(base)
        self.events: list[Event] = []
        self.orders: list[list[Event]] = []  # each: the events of one injected order
        self.sessions: list[list[Event]] = []  # each: the events of one injected session
        self._far: dict[int, list[int]] = {}
        # Base keys that hold a reservation. At most half of the base cards (users) get one,
        # so background traffic always has unreserved keys to move to.
        self._used_cards: set[int] = set()
        self._used_users: set[int] = set()

    # --- keys --------------------------------------------------------------------------
    def pick_card(self, lo: int, hi: int, guard: int, homes: frozenset[int] | None = None) -> int:
        """A card free during [lo - guard, hi + guard], optionally with a home country in
        `homes`; a fresh incident-only card when the world is too crowded."""
        w, r = self.world, self.r
        n_base = w.n_base_cards
        for _ in range(_PICK_TRIES):
            card = r.randrange(n_base)
            if homes is not None and w.home_of_card(card) not in homes:
                continue
            if card not in self._used_cards and len(self._used_cards) >= n_base // 2:
                continue
            if self.cards.is_free(card, lo - guard, hi + guard):
                self._used_cards.add(card)
                return card
        if homes is not None:
            users = [u for u in range(min(w.n_base_users, 4096)) if int(w.user_home[u]) in homes]
            if users:
                return w.add_card(r.choice(users))
        return w.add_card(r.randrange(w.n_base_users))

    def pick_user(self, lo: int, hi: int) -> int:
        """A user free during [lo - guard, hi + guard]; a fresh incident-only user when the
        world is too crowded."""
        w, r = self.world, self.r
        n_base = w.n_base_users
        for _ in range(_PICK_TRIES):
            user = r.randrange(n_base)
            if user not in self._used_users and len(self._used_users) >= n_base // 2:
                continue
            if self.users.is_free(user, lo - USER_GUARD, hi + USER_GUARD):
                self._used_users.add(user)
                return user
        return w.add_user(int(w.user_home[r.randrange(n_base)]))

    def any_user(self) -> str:
        return self.world.user_name(self.r.randrange(self.world.n_base_users))

    # --- committing ----------------------------------------------------------------------
    def commit(self, events: list[Event], label: str | None) -> None:
        if label is not None:
            for e in events:
                e["label"] = label
        self.events.extend(events)

    def commit_card(self, card: int, events: list[Event], guard: int, label: str | None) -> None:
        ts = [_ts(e) for e in events]
        self.cards.add(card, min(ts) - guard, max(ts) + guard)
        self.commit(events, label)

    def commit_user(self, user: int, events: list[Event], label: str | None) -> None:
        ts = [_ts(e) for e in events]
        self.users.add(user, min(ts) - USER_GUARD, max(ts) + USER_GUARD)
        self.commit(events, label)

    def commit_order(self, events: list[Event], label: str | None) -> None:
        self.orders.append(events)
        self.commit(events, label)

    def commit_session(self, events: list[Event], label: str | None) -> None:
        self.sessions.append(events)
        self.commit(events, label)

    # --- geography -----------------------------------------------------------------------
    def far_country(self, home: int) -> int:
        far = self._far.get(home)
        if far is None:
            w = self.world
            far = [c for c in range(w.n_countries) if w.country_distance(home, c) >= FAR_KM]
            self._far[home] = far
        return self.r.choice(far)

    def neighbour(self, home: int) -> int:
        w = self.world
        names = NEIGHBOURS.get(w.codes[home])
        if names:
            return w.code_index[self.r.choice(names)]
        others = [c for c in range(w.n_countries) if c != home]
        return min(others, key=lambda c: w.country_distance(home, c))

    @staticmethod
    def neighbour_homes(world: World) -> frozenset[int]:
        return frozenset(world.code_index[c.code] for c in COUNTRIES if c.code in NEIGHBOURS)

    # --- amounts and gaps ------------------------------------------------------------------
    def tiny(self) -> float:
        return round(self.r.uniform(0.50, 1.99), 2)

    def uniform_ms(self, lo: float, hi: float) -> int:
        """A gap of U(lo, hi) milliseconds (pass e.g. 10 * SECOND)."""
        return int(self.r.uniform(lo, hi))


def _ts(e: Event) -> int:
    ts = e["ts"]
    assert isinstance(ts, int)
    return ts
