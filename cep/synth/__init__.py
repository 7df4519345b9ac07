"""Seeded synthetic event streams for fraud patterns, with labelled incidents.

    from cep.synth import generate, write_jsonl
    events = generate(1_000_000, seed=7)
    write_jsonl("events.jsonl.gz", events)

Streams and fields (every event also has `id`, `ts` in epoch ms, `stream`, `type`):

* transactions / purchase: card_id, user_id, amount, merchant, channel ("pos"|"online"),
  country, lat, lon, home_country, status ("approved"|"declined")
* transactions / transfer: user_id, amount, new_beneficiary
* logins / login: user_id, device_id, new_device
* account_events / password_change | email_change: user_id
* orders / order_created: order_id, user_id, amount; payment_received: order_id, user_id
* sessions / add_to_cart | checkout | payment: session_id, user_id

Injected incidents carry `label = "<pattern>:<n>"` (see `incidents.py`); near misses
(`near_misses.py`) and background (`background.py`) carry no label.
`labels.score_alerts` measures alerts against the labels.
"""

from cep.synth.generate import generate
from cep.synth.jsonl import write_jsonl

__all__ = ["generate", "write_jsonl"]
