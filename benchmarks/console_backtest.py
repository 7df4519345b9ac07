"""The console's backtest endpoint against the engine alone, in the same run.

    python benchmarks/console_backtest.py [--events 5000 50000] [--repeat 3]

For each sample size: `cep.synth` events (seed 7, generated once, not timed) run
through six example patterns (every one without a model)

  engine   service.dry_run.run: compiled plans in a fresh engine, no HTTP, no JSON
  backtest POST /patterns/backtest with the events in the body (in-process ASGI client):
           JSON decoding, checking and compiling the text, the same engine run, the
           comparison run is off, labels, timeline and the JSON answer

Prints the best of `--repeat` wall-clock and process CPU times of each, and the
backtest's overhead over the engine. One process; the machine may be shared, so CPU
time is the steadier figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cep.synth import generate  # noqa: E402
from service.api.app import create_app  # noqa: E402
from service.build import load_patterns  # noqa: E402
from service.config import ApiConfig, Settings  # noqa: E402
from service.dry_run import run_patterns  # noqa: E402

PATTERNS = ["card_testing", "decline_burst", "impossible_travel", "account_takeover",
            "unpaid_order", "abandoned_checkout"]


def timed(fn: object, repeat: int) -> tuple[float, float, object]:
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()  # type: ignore[operator]
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    source = "\n".join((REPO / "patterns" / f"{p}.cep").read_text() for p in PATTERNS)
    tmp = Path(tempfile.mkdtemp(prefix="cep-bench-console-"))
    settings = Settings(patterns_dir=tmp / "p", models_dir=tmp / "m", data_dir=tmp / "v",
                        alerts_file=None, dead_letters_file=None,
                        api=ApiConfig(max_body_bytes=100_000_000))
    with TestClient(create_app(settings)) as client:
        svc = client.app.state.service  # type: ignore[attr-defined]
        patterns = load_patterns(source, {})
        print(f"{'events':>7} {'phase':<9} {'wall s':>8} {'cpu s':>8} {'alerts':>7}")
        for n in args.events:
            events = generate(n, seed=7, incident_rate=0.01)

            def engine(events: list[dict[str, object]] = events) -> int:
                return len(run_patterns(patterns, events, svc.settings, svc.registry).alerts)

            def backtest(events: list[dict[str, object]] = events) -> int:
                r = client.post("/patterns/backtest", json={
                    "source": source, "events": events, "compare": False})
                assert r.status_code == 200, r.text
                return int(r.json()["alert_count"])

            ew, ec, ea = timed(engine, args.repeat)
            bw, bc, ba = timed(backtest, args.repeat)
            assert ea == ba, (ea, ba)
            print(f"{n:>7} {'engine':<9} {ew:>8.3f} {ec:>8.3f} {ea:>7}")
            print(f"{n:>7} {'backtest':<9} {bw:>8.3f} {bc:>8.3f} {ba:>7}"
                  f"   overhead x{bc / ec:.2f} cpu")


if __name__ == "__main__":
    main()
