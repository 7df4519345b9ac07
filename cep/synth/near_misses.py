"""Injectors for near misses: realistic shapes that look like an incident but must NOT
match the example pattern (one condition, count or window falls just short). They are
unlabelled, like background traffic, and reserve their key like incidents do so that
background traffic cannot turn them into a match.
"""

from __future__ import annotations

from collections.abc import Callable

from cep.synth import shapes
from cep.synth.incidents import takeover_start
from cep.synth.planner import CARD_GUARD, Planner
from cep.synth.shapes import Event
from cep.synth.timeline import HOUR, MINUTE, SECOND
from cep.synth.world import distance_km

# --- card_testing ----------------------------------------------------------------------------


def _tinies(p: Planner, card: int, t: int, amounts: list[float], merchant: int) -> list[Event]:
    evs: list[Event] = []
    for i, amount in enumerate(amounts):
        if i:
            t += p.uniform_ms(10 * SECOND, 60 * SECOND)
        evs.append(p.world.card_txn(card, t, amount, channel="online", merchant=merchant))
    return evs


def _card_testing_like(
    p: Planner, amounts: list[float], big_after: tuple[int, int], big: float
) -> None:
    """Purchases with `amounts`, then `big` at first + U(big_after) ms (at least 20 s after
    the last one)."""
    r, w = p.r, p.world
    guard = CARD_GUARD["card_testing"]
    t0 = p.timeline.place(r, 15 * MINUTE)
    card = p.pick_card(t0, t0 + 15 * MINUTE, guard)
    home = w.home_of_card(card)
    evs = _tinies(p, card, t0, amounts, w.merchant_in(home, r))
    last = evs[-1]["ts"]
    assert isinstance(last, int)
    t = max(last + 20 * SECOND, t0 + p.uniform_ms(*big_after))
    evs.append(w.card_txn(card, t, big, channel="online", merchant=w.merchant_in(home, r)))
    p.commit_card(card, evs, guard, None)


def ct_two_tiny(p: Planner) -> None:
    """Only two tiny purchases before the big one."""
    amounts = [p.tiny(), p.tiny()]
    _card_testing_like(p, amounts, (1 * MINUTE, 5 * MINUTE), p.r.uniform(150.0, 2500.0))


def ct_late_big(p: Planner) -> None:
    """Three tiny purchases, the big one 11-14 minutes after the first (window is 10m)."""
    amounts = [p.tiny(), p.tiny(), p.tiny()]
    _card_testing_like(p, amounts, (11 * MINUTE, 14 * MINUTE), p.r.uniform(150.0, 2500.0))


def ct_small_big(p: Planner) -> None:
    """3-4 tiny purchases, then one that is only 10-40x the smallest of them."""
    amounts = [p.tiny() for _ in range(p.r.randint(3, 4))]
    _card_testing_like(p, amounts, (1 * MINUTE, 5 * MINUTE), min(amounts) * p.r.uniform(10, 40))


def ct_border_amount(p: Planner) -> None:
    """Three small purchases, but one is exactly 2.00 (the condition is `< 2.00`)."""
    amounts = [p.tiny(), p.tiny()]
    amounts.insert(p.r.randrange(3), 2.0)
    _card_testing_like(p, amounts, (1 * MINUTE, 5 * MINUTE), p.r.uniform(150.0, 2500.0))


# --- unpaid_order / abandoned_checkout ---------------------------------------------------------


def order_paid_at_14m(p: Planner) -> None:
    """Paid 13.5-14.5 minutes after creation (the pattern waits 15m)."""
    r = p.r
    t = p.timeline.place(r, 20 * MINUTE)
    user = p.any_user()
    evs = [
        shapes.order_created(t, user, r.uniform(15.0, 900.0)),
        shapes.payment_received(t + p.uniform_ms(13.5 * MINUTE, 14.5 * MINUTE), user),
    ]
    p.commit_order(evs, None)


def checkout_paid_at_28m(p: Planner) -> None:
    """add_to_cart(s), checkout, payment 27-29 minutes after the first add_to_cart."""
    r = p.r
    t0 = p.timeline.place(r, 40 * MINUTE)
    user = p.any_user()
    evs = [shapes.session_event(t0, user, "add_to_cart")]
    t = t0
    if r.random() < 0.5:
        t += p.uniform_ms(1 * MINUTE, 5 * MINUTE)
        evs.append(shapes.session_event(t, user, "add_to_cart"))
    t += p.uniform_ms(5 * MINUTE, 15 * MINUTE)
    evs.append(shapes.session_event(t, user, "checkout"))
    evs.append(shapes.session_event(t0 + p.uniform_ms(27 * MINUTE, 29 * MINUTE), user, "payment"))
    p.commit_session(evs, None)


# --- impossible_travel -------------------------------------------------------------------------


def _travel(p: Planner, *, neighbour: bool) -> None:
    r, w = p.r, p.world
    guard = CARD_GUARD["impossible_travel"]
    t = p.timeline.place(r, 12 * HOUR)
    homes = Planner.neighbour_homes(w) if neighbour else None
    card = p.pick_card(t, t + 12 * HOUR, guard, homes)
    home = w.home_of_card(card)
    m_home = w.merchant_in(home, r)
    evs = [w.card_txn(card, t, r.uniform(8.0, 250.0), channel="pos", merchant=m_home)]
    dest = p.neighbour(home) if neighbour else p.far_country(home)
    m_dest = w.merchant_in(dest, r)
    if neighbour:
        km = distance_km(*w.merchant_pos(m_home), *w.merchant_pos(m_dest))
        speed = r.uniform(120.0, 450.0)  # car, train or a short flight with the airport
        gap = min(11 * HOUR, max(30 * MINUTE, int(km / speed * HOUR)))
    else:
        gap = p.uniform_ms(6.5 * HOUR, 11 * HOUR)  # a long flight: beyond the 6h window
    t += gap
    evs.append(w.card_txn(card, t, r.uniform(8.0, 250.0), channel="pos", merchant=m_dest))
    p.commit_card(card, evs, guard, None)


def travel_neighbour(p: Planner) -> None:
    """Point-of-sale purchases in neighbouring countries at 120-450 km/h."""
    _travel(p, neighbour=True)


def travel_slow_far(p: Planner) -> None:
    """A far country, but 6.5-11 hours later."""
    _travel(p, neighbour=False)


# --- account_takeover ------------------------------------------------------------------------


def _takeover_like(
    p: Planner,
    *,
    new_device: bool,
    amount: float,
    new_beneficiary: bool,
    payout_after: tuple[float, float],
) -> None:
    r = p.r
    t0 = p.timeline.place(r, 60 * MINUTE)
    uid = p.pick_user(t0, t0 + 60 * MINUTE)
    user = p.world.user_name(uid)
    evs = takeover_start(p, t0, user, new_device=new_device)
    last = evs[-1]["ts"]
    assert isinstance(last, int)
    t = max(last + 20 * SECOND, t0 + p.uniform_ms(*payout_after))
    evs.append(shapes.transfer(t, user, amount, new_beneficiary=new_beneficiary))
    p.commit_user(uid, evs, None)


def ato_transfer_900(p: Planner) -> None:
    """New device, change, then a transfer to a new beneficiary of 800-1000 (`> 1000`)."""
    amount = 1000.0 if p.r.random() < 0.3 else p.r.uniform(800.0, 999.0)
    _takeover_like(
        p,
        new_device=True,
        amount=amount,
        new_beneficiary=True,
        payout_after=(8 * MINUTE, 25 * MINUTE),
    )


def ato_known_beneficiary(p: Planner) -> None:
    """New device, change, then a large transfer to a known beneficiary."""
    _takeover_like(
        p,
        new_device=True,
        amount=p.r.uniform(1500.0, 9500.0),
        new_beneficiary=False,
        payout_after=(8 * MINUTE, 25 * MINUTE),
    )


def ato_slow(p: Planner) -> None:
    """New device, change, large transfer to a new beneficiary 32-50 minutes later."""
    _takeover_like(
        p,
        new_device=True,
        amount=p.r.uniform(1500.0, 9500.0),
        new_beneficiary=True,
        payout_after=(32 * MINUTE, 50 * MINUTE),
    )


def ato_known_device(p: Planner) -> None:
    """Known device, change, large transfer to a new beneficiary."""
    _takeover_like(
        p,
        new_device=False,
        amount=p.r.uniform(1500.0, 9500.0),
        new_beneficiary=True,
        payout_after=(8 * MINUTE, 25 * MINUTE),
    )


# --- decline_burst -----------------------------------------------------------------------------


def _declines(p: Planner, n: int, gap: tuple[float, float]) -> None:
    r, w = p.r, p.world
    guard = CARD_GUARD["decline_burst"]
    t = p.timeline.place(r, 5 * MINUTE)
    card = p.pick_card(t, t + 5 * MINUTE, guard)
    merchant = w.merchant_in(w.home_of_card(card), r)
    evs: list[Event] = []
    for i in range(n):
        if i:
            t += p.uniform_ms(*gap)
        evs.append(
            w.card_txn(
                card,
                t,
                r.uniform(15.0, 400.0),
                channel="online",
                merchant=merchant,
                status="declined",
            )
        )
    p.commit_card(card, evs, guard, None)


def decline_four(p: Planner) -> None:
    """Four declines within a minute (the pattern needs five)."""
    _declines(p, 4, (3 * SECOND, 15 * SECOND))


def decline_slow(p: Planner) -> None:
    """Five declines 32-45 s apart: any five span more than 2 minutes."""
    _declines(p, 5, (32 * SECOND, 45 * SECOND))


# --- risky_burst -------------------------------------------------------------------------------


def _risky_like(
    p: Planner, n: int, *, night: bool, foreign: bool, amount: tuple[float, float]
) -> None:
    r, w = p.r, p.world
    guard = CARD_GUARD["risky_burst"]
    t = p.timeline.place_at_hours(r, 0.1, 4.0) if night else p.timeline.place_at_hours(r, 10, 17)
    card = p.pick_card(t, t + HOUR, guard)
    home = w.home_of_card(card)
    where = w.foreign_country(home, r) if foreign else home
    evs: list[Event] = []
    for i in range(n):
        if i:
            t += p.uniform_ms(2 * MINUTE, 12 * MINUTE)
        evs.append(
            w.card_txn(
                card, t, r.uniform(*amount), channel="online", merchant=w.merchant_in(where, r)
            )
        )
    p.commit_card(card, evs, guard, None)


def risky_two(p: Planner) -> None:
    """Two large foreign purchases at night (the pattern needs three)."""
    _risky_like(p, 2, night=True, foreign=True, amount=(450.0, 3000.0))


def risky_daytime(p: Planner) -> None:
    """Three large foreign purchases in the daytime."""
    _risky_like(p, 3, night=False, foreign=True, amount=(450.0, 3000.0))


def risky_small(p: Planner) -> None:
    """Three small foreign purchases at night."""
    _risky_like(p, 3, night=True, foreign=True, amount=(5.0, 60.0))


def risky_domestic(p: Planner) -> None:
    """Three large purchases at home at night."""
    _risky_like(p, 3, night=True, foreign=False, amount=(450.0, 3000.0))


NearMiss = Callable[[Planner], None]

# name -> (pattern it imitates, injector)
NEAR_MISSES: dict[str, tuple[str, NearMiss]] = {
    "ct_two_tiny": ("card_testing", ct_two_tiny),
    "ct_late_big": ("card_testing", ct_late_big),
    "ct_small_big": ("card_testing", ct_small_big),
    "ct_border_amount": ("card_testing", ct_border_amount),
    "order_paid_at_14m": ("unpaid_order", order_paid_at_14m),
    "travel_neighbour": ("impossible_travel", travel_neighbour),
    "travel_slow_far": ("impossible_travel", travel_slow_far),
    "ato_transfer_900": ("account_takeover", ato_transfer_900),
    "ato_known_beneficiary": ("account_takeover", ato_known_beneficiary),
    "ato_slow": ("account_takeover", ato_slow),
    "ato_known_device": ("account_takeover", ato_known_device),
    "decline_four": ("decline_burst", decline_four),
    "decline_slow": ("decline_burst", decline_slow),
    "risky_two": ("risky_burst", risky_two),
    "risky_daytime": ("risky_burst", risky_daytime),
    "risky_small": ("risky_burst", risky_small),
    "risky_domestic": ("risky_burst", risky_domestic),
    "checkout_paid_at_28m": ("abandoned_checkout", checkout_paid_at_28m),
}
