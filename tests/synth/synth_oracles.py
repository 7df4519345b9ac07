"""Brute-force reference checks of the example patterns over generated streams.

They are not a CEP engine: each one states, for the shapes the generator produces, which
events a correct engine must alert on, and returns, per alert, the labels of its events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from cep.synth.world import distance_km

MIN = 60_000
HOUR = 60 * MIN

Event = dict[str, Any]
Alerts = list[list[Event]]  # each alert: the events it is made of


def _by(events: Iterable[Event], key: str, stream: str | tuple[str, ...]) -> dict[Any, list[Event]]:
    streams = (stream,) if isinstance(stream, str) else stream
    out: dict[Any, list[Event]] = defaultdict(list)
    for e in events:
        if e["stream"] in streams and key in e:
            out[e[key]].append(e)
    return out


def unpaid_order(events: list[Event]) -> Alerts:
    alerts = []
    for evs in _by(events, "order_id", "orders").values():
        for c in (e for e in evs if e["type"] == "order_created"):
            paid = [
                p
                for p in evs
                if p["type"] == "payment_received" and c["ts"] < p["ts"] < c["ts"] + 15 * MIN
            ]
            if not paid:
                alerts.append([c])
    return alerts


def impossible_travel(events: list[Event]) -> Alerts:
    """Every pair (a, b) that satisfies the pattern; engines emit one per incident."""
    alerts = []
    for evs in _by(events, "card_id", "transactions").values():
        pos = [e for e in evs if e.get("channel") == "pos"]
        for j, b in enumerate(pos):
            for a in pos[:j]:
                dt = b["ts"] - a["ts"]
                if dt >= 6 * HOUR or a["country"] == b["country"]:
                    continue
                km = distance_km(a["lat"], a["lon"], b["lat"], b["lon"])
                if km / (dt / HOUR + 0.01) > 900:
                    alerts.append([a, b])
    return alerts


def account_takeover(events: list[Event]) -> Alerts:
    alerts = []
    for evs in _by(events, "user_id", ("logins", "account_events", "transactions")).values():
        for i, login in enumerate(evs):
            if login["type"] != "login" or login["new_device"] is not True:
                continue
            later = [e for e in evs[i + 1 :] if e["ts"] - login["ts"] < 30 * MIN]
            for k, ch in enumerate(later):
                if ch["type"] not in ("password_change", "email_change"):
                    continue
                payouts = [
                    p
                    for p in later[k + 1 :]
                    if p["type"] == "transfer" and p["amount"] > 1000 and p["new_beneficiary"]
                ]
                if payouts:
                    alerts.append([login, ch, payouts[0]])
                    break
    return alerts


def decline_burst(events: list[Event]) -> Alerts:
    alerts = []
    for evs in _by(events, "card_id", "transactions").values():
        d = [e for e in evs if e.get("status") == "declined"]
        i = 0
        while i + 4 < len(d):
            if d[i + 4]["ts"] - d[i]["ts"] < 2 * MIN:
                alerts.append(d[i : i + 5])
                i += 5  # skip past last
            else:
                i += 1
    return alerts


def is_risky(e: Event) -> bool:
    return (
        e.get("type") == "purchase"
        and e["country"] != e["home_country"]
        and (e["ts"] // HOUR) % 24 < 6
        and e["amount"] > 400
    )


def risky_burst(events: list[Event]) -> Alerts:
    alerts = []
    for evs in _by(events, "card_id", "transactions").values():
        r = [e for e in evs if is_risky(e)]
        i = 0
        while i + 2 < len(r):
            if r[i + 2]["ts"] - r[i]["ts"] < HOUR:
                alerts.append(r[i : i + 3])
                i += 3
            else:
                i += 1
    return alerts


def abandoned_checkout(events: list[Event]) -> Alerts:
    """Sessions whose first add_to_cart is not followed by checkout then payment within
    30 minutes (the run that times out)."""
    alerts = []
    for evs in _by(events, "session_id", "sessions").values():
        carts = [e for e in evs if e["type"] == "add_to_cart"]
        if not carts:
            continue
        first = carts[0]
        done = False
        checkout = None
        for e in evs:
            if e["ts"] - first["ts"] >= 30 * MIN:
                break
            if checkout is None and e["type"] == "checkout" and e["ts"] > first["ts"]:
                checkout = e
            elif checkout is not None and e["type"] == "payment":
                done = True
                break
        if not done:
            alerts.append(carts)
    return alerts


ORACLES = {
    "unpaid_order": unpaid_order,
    "impossible_travel": impossible_travel,
    "account_takeover": account_takeover,
    "decline_burst": decline_burst,
    "risky_burst": risky_burst,
    "abandoned_checkout": abandoned_checkout,
}
