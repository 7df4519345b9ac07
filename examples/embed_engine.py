"""Run cep patterns inside your own application (docs/embedding.md).

    python examples/embed_engine.py

It compiles a pattern from text, feeds the engine batches of events through the
driver (the loop every mode of cep uses), and handles alerts and dead letters with a
sink of its own. Events would normally come from your queue, socket or files.
"""

from __future__ import annotations

import orjson

import cep

PATTERN = """
pattern card_testing {
  key card_id
  within 10m
  match
    tiny{3,} where type == "purchase" and amount < 2.00
    then big where type == "purchase" and amount > 100
  emit severity high { attempts = count(tiny), amount = big.amount }
}
"""

T0 = 1_763_712_000_000  # event times in epoch milliseconds


class PrintSink:
    """A sink: anything with `write(result, batch)`. Here: one JSON line per alert,
    one line per dead letter (the same record cep writes to dead-letter files)."""

    def __init__(self) -> None:
        self.alerts = 0
        self.dead = 0

    def write(self, result: cep.Result, batch: cep.Batch | None) -> None:
        for alert in result.alerts:
            r = alert.record
            print("ALERT", r["pattern"], r["key"], orjson.dumps(r["measures"]).decode())
            self.alerts += 1
        for d in result.dead_letters:
            print("DEAD", orjson.dumps(d.to_json()).decode())
            self.dead += 1


def purchase(n: int, card: str | None, ms: int, amount: float) -> dict[str, object]:
    e: dict[str, object] = {"id": f"e{n}", "type": "purchase", "ts": T0 + ms, "amount": amount}
    if card is not None:
        e["card_id"] = card
    return e


def main() -> int:
    plans = cep.compile_source(PATTERN, name="embedded.cep")
    engine = cep.Engine(plans, cep.EngineConfig(max_out_of_orderness_ms=1_000))
    sink = PrintSink()
    driver = cep.Driver(engine, [sink])
    batches = [
        [purchase(1, "c1", 0, 1.0), purchase(2, "c1", 1_000, 0.5)],
        [purchase(3, "c1", 2_000, 1.5), purchase(4, None, 2_500, 1.0)],  # e4: no card
        [purchase(5, "c1", 3_000, 900.0), {"id": "e6", "type": "purchase"}],  # e6: no time
    ]
    for i, events in enumerate(batches):
        positions = [("app", i, j) for j in range(len(events))]  # where each came from
        driver.step(cep.Batch(events, positions, stream="payments", partition="app"))
    driver.finish()  # the input ends: every pending window fires
    print(f"{sink.alerts} alert(s), {sink.dead} dead letter(s); "
          f"events in: {engine.snapshot().counters['events_in']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
