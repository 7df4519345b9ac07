"""cep: complex event processing in Python (FlinkCEP semantics), as a library.

The embedding API (docs/embedding.md):

    import cep

    plans = cep.compile_file("patterns/")          # or cep.compile_source(text)
    engine = cep.Engine(plans, cep.EngineConfig(max_out_of_orderness_ms=5_000))
    sink = cep.ListSink()                          # or your own: write(result, batch)
    driver = cep.Driver(engine, [sink])
    driver.step(cep.Batch(events, positions))      # as often as batches come
    driver.tick()                                  # now and then on a live stream
    driver.finish()                                # at the end of a bounded input

    report = cep.run_backtest(plans, ["events.jsonl"], out="alerts.jsonl")

Names are loaded on first use, so `import cep` (and the runtime) stays free of the
pattern compiler until you compile something.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cep.backtest import BacktestReport, format_summary, run_backtest
    from cep.embedding import compile_file, compile_source, load_models, scorer_for
    from cep.errors import CepError, PatternError
    from cep.io.jsonl import read_jsonl
    from cep.program import CompiledPattern
    from cep.runtime.driver import Checkpointer, Driver, ListSink, Sink, Source
    from cep.runtime.engine import Engine, EngineConfig
    from cep.runtime.records import Alert, Batch, DeadLetter, Result
    from cep.runtime.snapshot import EngineSnapshot

_EXPORTS = {
    "compile_file": "cep.embedding", "compile_source": "cep.embedding",
    "load_models": "cep.embedding", "scorer_for": "cep.embedding",
    "CompiledPattern": "cep.program",
    "Engine": "cep.runtime.engine", "EngineConfig": "cep.runtime.engine",
    "Driver": "cep.runtime.driver", "ListSink": "cep.runtime.driver",
    "Sink": "cep.runtime.driver", "Source": "cep.runtime.driver",
    "Checkpointer": "cep.runtime.driver",
    "Alert": "cep.runtime.records", "Batch": "cep.runtime.records",
    "DeadLetter": "cep.runtime.records", "Result": "cep.runtime.records",
    "EngineSnapshot": "cep.runtime.snapshot",
    "run_backtest": "cep.backtest", "format_summary": "cep.backtest",
    "BacktestReport": "cep.backtest",
    "read_jsonl": "cep.io.jsonl",
    "CepError": "cep.errors", "PatternError": "cep.errors",
}

__all__ = [
    "Alert", "BacktestReport", "Batch", "CepError", "Checkpointer", "CompiledPattern",
    "DeadLetter", "Driver", "Engine", "EngineConfig", "EngineSnapshot", "ListSink",
    "PatternError", "Result", "Sink", "Source", "compile_file", "compile_source",
    "format_summary", "load_models", "read_jsonl", "run_backtest", "scorer_for",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cep' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
