"""Process-wide counters of what generated code met (a leaf module: the compiler's
helpers count, the runtime reads): values of the wrong type in comparisons, arithmetic
and functions, and arithmetic errors. The engine attributes the type mismatches to the
pattern whose code ran (`PatternRuntime.stats["type_mismatch"]`)."""

from __future__ import annotations

COUNTERS: dict[str, int] = {"type_mismatch": 0, "arithmetic_error": 0}
