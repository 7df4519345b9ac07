"""Event constructors for the incident injectors (without `id`, which is assigned last).

Key order matches the background builders in `background.py` so that the JSON of an
injected event looks exactly like the JSON of a background event of the same kind.
Card purchases are built by `World.card_txn`.
"""

from __future__ import annotations

from typing import Any

Event = dict[str, Any]


def login(ts: int, user: str, device: str, new_device: bool) -> Event:
    return {
        "ts": ts,
        "stream": "logins",
        "type": "login",
        "user_id": user,
        "device_id": device,
        "new_device": new_device,
    }


def account_event(ts: int, user: str, kind: str) -> Event:
    return {"ts": ts, "stream": "account_events", "type": kind, "user_id": user}


def transfer(ts: int, user: str, amount: float, new_beneficiary: bool) -> Event:
    return {
        "ts": ts,
        "stream": "transactions",
        "type": "transfer",
        "user_id": user,
        "amount": round(amount, 2),
        "new_beneficiary": new_beneficiary,
    }


def order_created(ts: int, user: str, amount: float) -> Event:
    # order_id is filled in once every order's creation time is known (ids follow time).
    return {
        "ts": ts,
        "stream": "orders",
        "type": "order_created",
        "order_id": "",
        "user_id": user,
        "amount": round(amount, 2),
    }


def payment_received(ts: int, user: str) -> Event:
    return {
        "ts": ts,
        "stream": "orders",
        "type": "payment_received",
        "order_id": "",
        "user_id": user,
    }


def session_event(ts: int, user: str, kind: str) -> Event:
    # session_id is filled in like order_id.
    return {"ts": ts, "stream": "sessions", "type": kind, "session_id": "", "user_id": user}
