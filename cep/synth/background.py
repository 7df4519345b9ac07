"""Normal traffic, generated column-wise with numpy.

Shares of the background: card purchases 62 %, transfers 3 %, logins 12 %, account
events 0.5 %, orders ~10 % (created + paid), shopping sessions ~12.5 %. By construction
the background matches none of the example patterns: purchases are never below 2.00,
point-of-sale purchases are always in the cardholder's home country, declines are
rare (2.5 %), every order is paid within 12 minutes, every session pays within 16
minutes of its first add_to_cart, and large foreign night-time purchases are rare.
Account takeover chains (new-device login, change, large new-beneficiary transfer
within 30m) are possible by chance but expected far less than once per 10M events.
Background events are moved off keys reserved by injected incidents (see
`reservations.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cep.synth.planner import Planner
from cep.synth.reservations import Reservations
from cep.synth.shapes import Event
from cep.synth.timeline import MINUTE, SECOND, Timeline
from cep.synth.world import World

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

SHARE_PURCHASES = 0.62
SHARE_TRANSFERS = 0.03
SHARE_LOGINS = 0.12
SHARE_ACCOUNT = 0.005
SHARE_ORDERS = 0.10
SHARE_SESSIONS = 0.125

POS_SHARE = 0.55
ONLINE_FOREIGN_SHARE = 0.10
DECLINE_SHARE = 0.025
NEW_DEVICE_SHARE = 0.02
NEW_BENEFICIARY_SHARE = 0.12
MIN_AMOUNT = 2.0  # card_testing's tiny condition is `amount < 2.00`


@dataclass(frozen=True, slots=True)
class Block:
    """Events of one kind: their times, and a builder that makes the dicts given ids."""

    ts: I64
    build: Callable[[list[str]], list[Event]]


def make_background(
    world: World, timeline: Timeline, budget: int, plan: Planner, rng: np.random.Generator
) -> list[Block]:
    n_orders = int(budget * SHARE_ORDERS) // 2
    carts = _session_sizes(rng, int(budget * SHARE_SESSIONS))
    singles = budget - 2 * n_orders - int(carts.sum() + 2 * len(carts))
    rest = SHARE_PURCHASES + SHARE_TRANSFERS + SHARE_LOGINS + SHARE_ACCOUNT
    n_logins = int(singles * SHARE_LOGINS / rest)
    n_transfers = int(singles * SHARE_TRANSFERS / rest)
    n_account = int(singles * SHARE_ACCOUNT / rest)
    n_purchases = singles - n_logins - n_transfers - n_account

    card_p = np.array(world.card_weight)
    card_p /= card_p.sum()
    user_p = world.user_weight / world.user_weight.sum()
    users = _Keys(rng, user_p, plan.users)
    names = _Names(world)
    return [
        _purchases(world, names, timeline, n_purchases, _Keys(rng, card_p, plan.cards), rng),
        _transfers(names, timeline, n_transfers, users, rng),
        _logins(world, names, timeline, n_logins, users, rng),
        _account_events(names, timeline, n_account, users, rng),
        _orders(world, names, timeline, n_orders, plan, user_p, rng),
        _sessions(world, names, timeline, carts, plan, user_p, rng),
    ]


class _Names:
    """String ids of cards and users as object arrays (fancy-indexed per stream)."""

    def __init__(self, world: World) -> None:
        self.cards = _names("card-", world.n_cards)
        self.users = _names("user-", world.n_users)


# --- keys ------------------------------------------------------------------------------------


class _Keys:
    """Draws keys by weight, keeping (key, ts) out of reserved intervals."""

    def __init__(self, rng: np.random.Generator, p: F64, reserved: Reservations) -> None:
        self.rng, self.p, self.reserved = rng, p, reserved

    def draw(self, ts: I64) -> I64:
        rng, p = self.rng, self.p
        keys: I64 = rng.choice(len(p), size=len(ts), p=p)
        for _ in range(16):
            bad = self.reserved.conflicts(keys, ts)
            n_bad = int(bad.sum())
            if n_bad == 0:
                return keys
            keys[bad] = rng.choice(len(p), size=n_bad, p=p)
        # Crowded world: fall back to keys that have no reservation at all.
        bad = self.reserved.conflicts(keys, ts)
        free = np.setdiff1d(np.flatnonzero(p > 0), np.array(self.reserved.keys(), dtype=np.int64))
        if len(free):
            keys[bad] = free[rng.integers(0, len(free), size=int(bad.sum()))]
        return keys


# --- streams -----------------------------------------------------------------------------------


def _purchases(
    world: World,
    names: _Names,
    timeline: Timeline,
    n: int,
    cards: _Keys,
    rng: np.random.Generator,
) -> Block:
    ts = timeline.sample(rng, n)
    card = cards.draw(ts)
    user = np.array(world.card_user, dtype=np.int64)[card]
    home = world.user_home[user]
    pos = rng.random(n) < POS_SHARE
    country = home.copy()
    foreign = ~pos & (rng.random(n) < ONLINE_FOREIGN_SHARE)
    n_f = int(foreign.sum())
    abroad = rng.choice(world.n_countries, size=n_f, p=world.country_p)
    same = abroad == home[foreign]
    abroad[same] = abroad[same] + 1 + rng.integers(0, world.n_countries - 1, size=int(same.sum()))
    country[foreign] = abroad % world.n_countries
    merchant = world.m_start[country] + (rng.random(n) * world.m_count[country]).astype(np.int64)
    amount = np.where(
        pos,
        MIN_AMOUNT + rng.lognormal(np.log(20.0), 0.9, size=n),
        MIN_AMOUNT + rng.lognormal(np.log(30.0), 1.1, size=n),
    )
    amount = np.round(amount, 2)
    declined = rng.random(n) < DECLINE_SHARE

    card_names, user_names = names.cards, names.users
    m_names = np.array(world.m_names, dtype=object)
    codes = np.array(world.codes, dtype=object)

    def build(ids: list[str]) -> list[Event]:
        cols = zip(
            ids,
            ts.tolist(),
            card_names[card].tolist(),
            user_names[user].tolist(),
            amount.tolist(),
            m_names[merchant].tolist(),
            np.where(pos, "pos", "online").astype(object).tolist(),
            codes[country].tolist(),
            world.m_lat[merchant].tolist(),
            world.m_lon[merchant].tolist(),
            codes[home].tolist(),
            np.where(declined, "declined", "approved").astype(object).tolist(),
            strict=True,
        )
        return [
            {
                "id": i,
                "ts": t,
                "stream": "transactions",
                "type": "purchase",
                "card_id": c,
                "user_id": u,
                "amount": a,
                "merchant": m,
                "channel": ch,
                "country": co,
                "lat": la,
                "lon": lo,
                "home_country": h,
                "status": s,
            }
            for i, t, c, u, a, m, ch, co, la, lo, h, s in cols
        ]

    return Block(ts, build)


def _transfers(
    names: _Names, timeline: Timeline, n: int, users: _Keys, rng: np.random.Generator
) -> Block:
    ts = timeline.sample(rng, n)
    user = users.draw(ts)
    amount = np.round(1.0 + rng.lognormal(np.log(150.0), 1.1, size=n), 2)
    new_b = rng.random(n) < NEW_BENEFICIARY_SHARE
    user_names = names.users

    def build(ids: list[str]) -> list[Event]:
        cols = zip(
            ids,
            ts.tolist(),
            user_names[user].tolist(),
            amount.tolist(),
            new_b.tolist(),
            strict=True,
        )
        return [
            {
                "id": i,
                "ts": t,
                "stream": "transactions",
                "type": "transfer",
                "user_id": u,
                "amount": a,
                "new_beneficiary": nb,
            }
            for i, t, u, a, nb in cols
        ]

    return Block(ts, build)


def _logins(
    world: World,
    names: _Names,
    timeline: Timeline,
    n: int,
    users: _Keys,
    rng: np.random.Generator,
) -> Block:
    ts = timeline.sample(rng, n)
    user = users.draw(ts)
    new_device = rng.random(n) < NEW_DEVICE_SHARE
    known = (rng.random(n) * world.user_devices[user]).astype(np.int64)
    fresh = rng.integers(0, 16**6, size=n)
    device = [
        f"dev-{u}-n{f:06x}" if nd else f"dev-{u}-{k}"
        for u, k, f, nd in zip(
            user.tolist(), known.tolist(), fresh.tolist(), new_device.tolist(), strict=True
        )
    ]
    user_names = names.users

    def build(ids: list[str]) -> list[Event]:
        cols = zip(
            ids, ts.tolist(), user_names[user].tolist(), device, new_device.tolist(), strict=True
        )
        return [
            {
                "id": i,
                "ts": t,
                "stream": "logins",
                "type": "login",
                "user_id": u,
                "device_id": d,
                "new_device": nd,
            }
            for i, t, u, d, nd in cols
        ]

    return Block(ts, build)


def _account_events(
    names: _Names, timeline: Timeline, n: int, users: _Keys, rng: np.random.Generator
) -> Block:
    ts = timeline.sample(rng, n)
    user = users.draw(ts)
    kind = np.where(rng.random(n) < 0.6, "password_change", "email_change").astype(object)
    user_names = names.users

    def build(ids: list[str]) -> list[Event]:
        cols = zip(ids, ts.tolist(), kind.tolist(), user_names[user].tolist(), strict=True)
        return [
            {"id": i, "ts": t, "stream": "account_events", "type": k, "user_id": u}
            for i, t, k, u in cols
        ]

    return Block(ts, build)


def _orders(
    world: World,
    names: _Names,
    timeline: Timeline,
    n: int,
    plan: Planner,
    user_p: F64,
    rng: np.random.Generator,
) -> Block:
    created = timeline.sample(rng, n)
    delay = 10 * SECOND + np.minimum(rng.exponential(90 * SECOND, size=n), 11 * MINUTE)
    paid = created + delay.astype(np.int64)
    user = rng.choice(world.n_users, size=n, p=user_p)
    amount = np.round(5.0 + rng.lognormal(np.log(45.0), 0.9, size=n), 2)
    order_names = _assign_ids("order-", created, plan.orders)
    user_names = names.users

    def build(ids: list[str]) -> list[Event]:
        u = user_names[user].tolist()
        created_evs: list[Event] = [
            {
                "id": i,
                "ts": t,
                "stream": "orders",
                "type": "order_created",
                "order_id": o,
                "user_id": uu,
                "amount": a,
            }
            for i, t, o, uu, a in zip(
                ids[:n], created.tolist(), order_names, u, amount.tolist(), strict=True
            )
        ]
        paid_evs: list[Event] = [
            {
                "id": i,
                "ts": t,
                "stream": "orders",
                "type": "payment_received",
                "order_id": o,
                "user_id": uu,
            }
            for i, t, o, uu in zip(ids[n:], paid.tolist(), order_names, u, strict=True)
        ]
        return created_evs + paid_evs

    return Block(np.concatenate([created, paid]), build)


def _sessions(
    world: World,
    names: _Names,
    timeline: Timeline,
    carts: I64,
    plan: Planner,
    user_p: F64,
    rng: np.random.Generator,
) -> Block:
    s = len(carts)
    sizes = carts + 2
    first = timeline.sample(rng, s)
    user = rng.choice(world.n_users, size=s, p=user_p)
    total = int(sizes.sum())
    sess = np.repeat(np.arange(s), sizes)
    offsets = (np.cumsum(sizes) - sizes).astype(np.int64)
    pos = np.arange(total) - np.repeat(offsets, sizes)
    c = carts[sess]
    gap = np.where(
        pos < c,
        rng.uniform(10 * SECOND, 4 * MINUTE, size=total),
        np.where(
            pos == c,
            rng.uniform(20 * SECOND, 5 * MINUTE, size=total),
            rng.uniform(10 * SECOND, 3 * MINUTE, size=total),
        ),
    ).astype(np.int64)
    gap[offsets] = 0
    cum = np.cumsum(gap)
    ts = first[sess] + cum - np.repeat(cum[offsets], sizes)
    kind = np.where(pos < c, "add_to_cart", np.where(pos == c, "checkout", "payment"))
    session_names = np.array(_assign_ids("sess-", first, plan.sessions), dtype=object)
    user_names = names.users

    def build(ids: list[str]) -> list[Event]:
        cols = zip(
            ids,
            ts.tolist(),
            kind.astype(object).tolist(),
            session_names[sess].tolist(),
            user_names[user[sess]].tolist(),
            strict=True,
        )
        return [
            {"id": i, "ts": t, "stream": "sessions", "type": k, "session_id": sid, "user_id": u}
            for i, t, k, sid, u in cols
        ]

    return Block(ts.astype(np.int64), build)


# --- helpers -----------------------------------------------------------------------------------


def _session_sizes(rng: np.random.Generator, target_events: int) -> I64:
    """Carts per session (1-3) for as many sessions as fit in `target_events`."""
    if target_events < 3:
        return np.zeros(0, dtype=np.int64)
    carts = rng.choice(
        np.array([1, 2, 3], dtype=np.int64), size=target_events // 3 + 1, p=[0.6, 0.3, 0.1]
    )
    used = np.cumsum(carts + 2)
    return carts[: int(np.searchsorted(used, target_events, side="right"))]


def _names(prefix: str, n: int) -> npt.NDArray[np.object_]:
    return np.array([f"{prefix}{i}" for i in range(n)], dtype=object)


def _assign_ids(prefix: str, first_ts: I64, injected: list[list[Event]]) -> list[str]:
    """Number background and injected orders/sessions together in time order; fill in the
    injected ones and return the background names."""
    inj_ts = np.array([e[0]["ts"] for e in injected], dtype=np.int64)
    all_ts = np.concatenate([first_ts.astype(np.int64), inj_ts])
    order = np.argsort(all_ts, kind="stable")
    rank = np.empty(len(all_ts), dtype=np.int64)
    rank[order] = np.arange(len(all_ts))
    field = "order_id" if prefix == "order-" else "session_id"
    for events, r in zip(injected, rank[len(first_ts) :].tolist(), strict=True):
        for e in events:
            e[field] = f"{prefix}{r}"
    return [f"{prefix}{r}" for r in rank[: len(first_ts)].tolist()]
