"""Injectors for labelled incidents: one per example pattern of `docs/language.md`.

Every event of an incident carries `label = "<pattern>:<n>"`. Each injector builds a
shape that the example pattern matches exactly once (with `skip past last`) and that no
other example pattern matches; the amounts and gaps keep a clear distance from every
threshold, so float rounding or an inclusive/exclusive border cannot change the outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from cep.synth import shapes
from cep.synth.planner import CARD_GUARD, Planner
from cep.synth.shapes import Event
from cep.synth.timeline import HOUR, MINUTE, SECOND
from cep.synth.world import distance_km


def card_testing(p: Planner, label: str) -> None:
    """3-6 purchases < 2.00, then one > 60 x the largest of them, all within 8 minutes."""
    r, w = p.r, p.world
    guard = CARD_GUARD["card_testing"]
    t = p.timeline.place(r, 10 * MINUTE)
    card = p.pick_card(t, t + 10 * MINUTE, guard)
    home = w.home_of_card(card)
    merchant = w.merchant_in(home, r)
    n_tiny = r.randint(3, 6)
    filler_after = r.choice((0, 1, None, None))  # an ordinary purchase among the first tinies
    evs: list[Event] = []
    for i in range(n_tiny):
        evs.append(w.card_txn(card, t, p.tiny(), channel="online", merchant=merchant))
        t += p.uniform_ms(5 * SECOND, 60 * SECOND)
        if i == filler_after:
            amount = r.uniform(5.0, 40.0)
            evs.append(
                w.card_txn(card, t, amount, channel="online", merchant=w.merchant_in(home, r))
            )
            t += p.uniform_ms(5 * SECOND, 30 * SECOND)
    t += p.uniform_ms(15 * SECOND, 150 * SECOND)
    big = r.uniform(150.0, 2500.0)
    evs.append(w.card_txn(card, t, big, channel="online", merchant=w.merchant_in(home, r)))
    p.commit_card(card, evs, guard, label)


def unpaid_order(p: Planner, label: str) -> None:
    """An order that is never paid, or paid only 16-90 minutes later."""
    r = p.r
    t = p.timeline.place(r, 20 * MINUTE)
    user = p.any_user()
    evs = [shapes.order_created(t, user, r.uniform(15.0, 900.0))]
    if r.random() < 0.3:
        evs.append(shapes.payment_received(t + p.uniform_ms(16 * MINUTE, 90 * MINUTE), user))
    p.commit_order(evs, label)


def impossible_travel(p: Planner, label: str) -> None:
    """1-2 point-of-sale purchases at home, then one (or two) in a country >= 3000 km away,
    at an apparent speed of at least 1500 km/h."""
    r, w = p.r, p.world
    guard = CARD_GUARD["impossible_travel"]
    t = p.timeline.place(r, 6 * HOUR)
    card = p.pick_card(t, t + 6 * HOUR, guard)
    home = w.home_of_card(card)
    evs: list[Event] = []
    m_home = w.merchant_in(home, r)
    for i in range(r.randint(1, 2)):
        if i:
            t += p.uniform_ms(15 * MINUTE, 90 * MINUTE)
            m_home = w.merchant_in(home, r)
        evs.append(w.card_txn(card, t, r.uniform(8.0, 250.0), channel="pos", merchant=m_home))
    far = p.far_country(home)
    m_far = w.merchant_in(far, r)
    a_lat, a_lon = w.merchant_pos(m_home)
    b_lat, b_lon = w.merchant_pos(m_far)
    km = distance_km(a_lat, a_lon, b_lat, b_lon)
    max_gap_h = min(3.0, km / 1500.0 - 0.01)
    gap_h = r.uniform(min(0.15, max_gap_h / 2), max_gap_h)
    t += max(MINUTE, int(gap_h * HOUR))
    evs.append(w.card_txn(card, t, r.uniform(20.0, 400.0), channel="pos", merchant=m_far))
    if r.random() < 0.4:
        t += p.uniform_ms(5 * MINUTE, 40 * MINUTE)
        evs.append(
            w.card_txn(
                card, t, r.uniform(8.0, 250.0), channel="pos", merchant=w.merchant_in(far, r)
            )
        )
    p.commit_card(card, evs, guard, label)


def account_takeover(p: Planner, label: str) -> None:
    """New-device login, a password/email change, then a transfer of 1500-9500 to a new
    beneficiary, all within 25 minutes."""
    r = p.r
    t0 = p.timeline.place(r, 30 * MINUTE)
    uid = p.pick_user(t0, t0 + 30 * MINUTE)
    user = p.world.user_name(uid)
    evs = takeover_start(p, t0, user, new_device=True)
    t = int(_last_ts(evs))
    if r.random() < 0.3:
        t += p.uniform_ms(20 * SECOND, 3 * MINUTE)
        evs.append(shapes.transfer(t, user, r.uniform(20.0, 300.0), new_beneficiary=False))
    t = max(t + 20 * SECOND, t0 + p.uniform_ms(8 * MINUTE, 25 * MINUTE))
    evs.append(shapes.transfer(t, user, r.uniform(1500.0, 9500.0), new_beneficiary=True))
    p.commit_user(uid, evs, label)


def decline_burst(p: Planner, label: str) -> None:
    """5-8 declined purchases on one card within 100 seconds (perhaps one approved among
    them), online, at home, ordinary amounts."""
    r, w = p.r, p.world
    guard = CARD_GUARD["decline_burst"]
    t = p.timeline.place(r, 2 * MINUTE)
    card = p.pick_card(t, t + 2 * MINUTE, guard)
    home = w.home_of_card(card)
    merchants = [w.merchant_in(home, r) for _ in range(r.randint(1, 3))]
    n = r.randint(5, 8)
    approved_at = r.randrange(1, n) if r.random() < 0.4 else -1
    evs: list[Event] = []
    for i in range(n):
        if i == approved_at:
            evs.append(
                w.card_txn(
                    card, t, r.uniform(15.0, 400.0), channel="online", merchant=r.choice(merchants)
                )
            )
            t += p.uniform_ms(2 * SECOND, 6 * SECOND)
        evs.append(
            w.card_txn(
                card,
                t,
                r.uniform(15.0, 400.0),
                channel="online",
                merchant=r.choice(merchants),
                status="declined",
            )
        )
        t += p.uniform_ms(3 * SECOND, 12 * SECOND)
    p.commit_card(card, evs, guard, label)


def risky_burst(p: Planner, label: str) -> None:
    """3-5 large (450-3000) online purchases abroad, at night (00:00-05:00 UTC), within
    50 minutes on one card."""
    r, w = p.r, p.world
    guard = CARD_GUARD["risky_burst"]
    t = p.timeline.place_at_hours(r, 0.1, 4.0)
    card = p.pick_card(t, t + HOUR, guard)
    home = w.home_of_card(card)
    abroad = w.foreign_country(home, r)
    evs: list[Event] = []
    for i in range(r.randint(3, 5)):
        if i:
            t += p.uniform_ms(2 * MINUTE, 12 * MINUTE)
        evs.append(
            w.card_txn(
                card,
                t,
                r.uniform(450.0, 3000.0),
                channel="online",
                merchant=w.merchant_in(abroad, r),
            )
        )
    p.commit_card(card, evs, guard, label)


def abandoned_checkout(p: Planner, label: str) -> None:
    """1-3 add_to_cart, perhaps a checkout, and no payment (or one > 31 min after the
    last add_to_cart)."""
    r = p.r
    t = p.timeline.place(r, 40 * MINUTE)
    user = p.any_user()
    evs: list[Event] = []
    for i in range(r.randint(1, 3)):
        if i:
            t += p.uniform_ms(10 * SECOND, 4 * MINUTE)
        evs.append(shapes.session_event(t, user, "add_to_cart"))
    last_cart = t
    if r.random() < 0.5:
        t += p.uniform_ms(20 * SECOND, 5 * MINUTE)
        evs.append(shapes.session_event(t, user, "checkout"))
    if r.random() < 0.2:
        t = last_cart + p.uniform_ms(31 * MINUTE, 60 * MINUTE)
        evs.append(shapes.session_event(t, user, "payment"))
    p.commit_session(evs, label)


# --- shared pieces ---------------------------------------------------------------------------
def takeover_start(p: Planner, t: int, user: str, *, new_device: bool) -> list[Event]:
    """A login, then one or two account changes within a few minutes."""
    r = p.r
    if new_device:
        device = f"dev-{user[5:]}-n{r.randrange(16**6):06x}"
    else:
        device = f"dev-{user[5:]}-0"
    evs = [shapes.login(t, user, device, new_device)]
    kinds = ["password_change", "email_change"]
    r.shuffle(kinds)
    for kind in kinds[: r.randint(1, 2)]:
        t += p.uniform_ms(30 * SECOND, 5 * MINUTE)
        evs.append(shapes.account_event(t, user, kind))
    return evs


def _last_ts(evs: list[Event]) -> int:
    ts = evs[-1]["ts"]
    assert isinstance(ts, int)
    return ts


Injector = Callable[[Planner, str], None]

INCIDENTS: dict[str, Injector] = {
    "card_testing": card_testing,
    "unpaid_order": unpaid_order,
    "impossible_travel": impossible_travel,
    "account_takeover": account_takeover,
    "decline_burst": decline_burst,
    "risky_burst": risky_burst,
    "abandoned_checkout": abandoned_checkout,
}
