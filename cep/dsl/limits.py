"""Hard limits of the front end. Exceeding one is a diagnostic, never a crash.

They bound the work one pattern source can cause (parse time, recursion depth of the
tree walks here and in the compiler, NFA size), so a hostile or generated file cannot
take the service down.
"""

from __future__ import annotations

MAX_SOURCE_BYTES = 256 * 1024
"""Largest accepted source, in UTF-8 bytes."""

MAX_NESTING = 50
"""Deepest nesting of expressions (operators, parentheses, calls, lists) and groups."""

MAX_STAGES = 64
"""Most stages (NOT stages and stages inside groups included) in one pattern."""

MAX_PATTERNS = 256
"""Most patterns in one file."""

MAX_QUANTIFIER = 100
"""Largest n or m in `{n}`, `{n,m}`, `{n,}`, `{,m}` (times(n, m) expands to m states)."""

MAX_SYNTAX_ERRORS = 20
"""Syntax errors reported for one file before giving up."""

MAX_INT = 2**63 - 1
"""Largest integer literal and duration (in milliseconds)."""

MAX_NFA_STATES = 2_500
"""Most NFA states one pattern may compile to (an upper bound computed before compiling,
`cep.dsl.check_size`); about a second and 150 MB of compile time at the limit."""

MAX_NFA_EDGES = 3 * MAX_NFA_STATES
"""Most NFA edges (the bound counts three per state)."""
