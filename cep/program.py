"""The compiled-program contract between the compiler and the runtime.

`cep.compiler.pipeline.compile_pattern` produces a `CompiledPattern`; `cep.runtime` runs it.
This module is all they share: the plan's shape, the types of the generated functions
(the signatures `cep/compiler/pipeline.py` generates them with), the NFA state kinds, and
the generated module (for mapping an error back to its pattern line). It is a leaf: it
imports neither the compiler nor the language front end (`cep.dsl`, lark), so the
runtime can load without them (tests/test_layering.py).

Generated code never reaches for runtime classes through its globals: the runtime
passes `Run` and `Node` to `bind_steps`, which returns the step function (`Feed`)
closed over them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

from cep.errors import ConditionError

if TYPE_CHECKING:  # annotations only: the runtime never loads these
    from cep.compiler.nfa import NfaProgram
    from cep.dsl import ast

Event = dict[str, Any]
Key = Any  # a scalar, a tuple of scalars, or () for an unkeyed pattern
Path = Any  # the linked list of taken events of a partial match (a runtime `Node`), or None


class Kind(IntEnum):
    """What an NFA state is (FlinkCEP's state types)."""

    NORMAL = 0
    FINAL = 1
    STOP = 2
    PENDING = 3


@dataclass(frozen=True)
class ScoreCall:
    """One `score(model, feature=expr, ...)` call site."""

    model: str
    features: tuple[tuple[str, ast.Expr], ...]
    span: ast.Span


# -- the generated functions


class Condition(Protocol):
    """`c<i>`: condition i holds (TRUE, not FALSE or UNKNOWN) for event `d`."""

    def __call__(self, d: Event, ts: int, key: Key, lets: Any, path: Path) -> bool: ...


class Feed(Protocol):
    """`feed`: feed one event to a key's partial matches (`runs`, in order), then, if
    `start`, to the implicit start run (any event may begin a match); successors go
    to `out`, completed matches to `fin`. Returns whether the start run added a
    partial match."""

    def __call__(self, runs: list[Any], ev: Any, key: Key, out: list[Any], fin: list[Any],
                 start: bool) -> bool: ...


# (runtime Run class, runtime Node class) -> the step (cep/compiler/stepgen.py)
BindSteps = Callable[[type, type], Feed]


class Prefilter(Protocol):
    """Per batch: for each event, its key and whether it can matter; appends
    (index, key state) — or (index, key) for patterns with `let` values — to `out`,
    the events it cannot key but would start a match on to `unk`, and (index, key
    state) of the skipped events of keys with state to `ticks` when the pattern has
    windows (their times still advance the key's time)."""

    def __call__(self, ds: Sequence[Event], tss: Sequence[int], horizon: float,
                 get: Callable[[Key], Any] | None, create: Callable[[Key], Any] | None,
                 out: list[tuple[int, Any]], unk: list[Event],
                 ticks: list[tuple[int, Any]]) -> None: ...


# (event, time, key, lets) -> could the event start / touch a match
Relevance = Callable[[Event, Any, Key, Any], bool]
# (event, time, key, this event's score results) -> the `let` values
LetsOf = Callable[[Event, int, Key, Sequence[Any]], list[Any]]
# (events, times, keys) -> per let score call, its feature columns
LetCols = Callable[[list[Event], list[int], list[Key]], tuple[tuple[list[Any], ...], ...]]
# (path, key, time, score results) -> the measures, or None when `when` filters it out
EmitFn = Callable[[Path, Key, int, Sequence[Any]], "dict[str, Any] | None"]
# (path, key, time) -> per score call, its feature values
FeatsFn = Callable[[Path, Key, int], tuple[tuple[Any, ...], ...]]


@dataclass(frozen=True)
class CompiledModule:
    """The generated Python module of one pattern."""

    source: str
    filename: str
    namespace: dict[str, Any]
    spans: tuple[tuple[int, int, int, str], ...]  # (first, last line, pattern line, what)
    pattern_file: str | None

    def fn(self, name: str) -> Any:
        return self.namespace[name]

    def locate(self, exc: BaseException) -> tuple[int, str] | None:
        """The pattern line and description of the generated function that raised."""
        tb = exc.__traceback__
        found = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                found = tb.tb_lineno
            tb = tb.tb_next
        if found is None:
            return None
        for first, last, line, what in self.spans:
            if first <= found <= last:
                return line, what
        return None

    def error(self, exc: BaseException, pattern: str) -> ConditionError:
        where = self.locate(exc)
        loc = f"{self.pattern_file or '<pattern>'}:{where[0]}" if where else "<pattern>"
        what = where[1] if where else "generated code"
        return ConditionError(
            f"{loc}: pattern {pattern!r}: {what} raised {type(exc).__name__}: {exc}"
        )


@dataclass(frozen=True)
class FilterBlock:
    """A pattern's part of the engine's shared prefilter (cep/runtime/shared_filter.py),
    made by the compiler: its event-local relevance tests as Python expressions over
    placeholders, so that the runtime can put the blocks of all loaded patterns into one
    loop that reads each field once.

    In `start` and `any`, `\\x00F<i>\\x00` stands for the value of field `fields[i]` of the
    current event and `\\x00<name>\\x00` for the module constant `<name>` of the
    pattern's own module (values taken from `CompiledModule.namespace`). A NUL byte
    never appears in generated code otherwise (`repr` escapes it), so replacing them
    cannot touch a string literal. The tests may read `ts`, `key` and `lets` (None).

    `start`: can the event start a partial match (a key without state, the event due
    now); `any`: can it touch any condition of a live partial match ("True" when the
    pattern is not skip-safe: every event of a key with state is fed). The compiler
    builds `any` as an `or` over the event-local parts of every condition, so `start`
    implies `any`. `window_only`: the pattern expires runs only by its pattern-level
    window (no stage `within`): a run's deadline is its first event's time + `window`."""

    fields: tuple[tuple[str, ...], ...]
    consts: tuple[str, ...]
    start: str
    any: str
    window_only: bool
    window: int


@dataclass(frozen=True)
class EmitPlan:
    topic: str | None
    severity: str
    measure_names: tuple[str, ...]
    score_calls: tuple[ScoreCall, ...]
    fn: EmitFn
    feats: FeatsFn


@dataclass(frozen=True)
class CompiledPattern:
    name: str
    version: int
    pattern: ast.Pattern
    nfa: NfaProgram
    module: CompiledModule
    conds: tuple[Condition, ...]
    bind_steps: BindSteps  # the NFA step, closed over the runtime's classes
    cond_local: tuple[bool, ...]  # condition reads only the current event: memoise per event
    cond_text: tuple[str, ...]
    prefilter: Prefilter
    start_rel: Relevance
    any_rel: Relevance
    skip_safe: bool  # an event failing every event-local test is a no-op for live runs
    timed: bool  # the pattern has windows: skipped events still advance a key's time
    let_names: tuple[str, ...]
    lets_of: LetsOf
    let_cols: LetCols
    let_score_calls: tuple[ScoreCall, ...]
    emit: EmitPlan | None  # None: completed matches produce no alert (timeout-only pattern)
    timeout: EmitPlan | None
    skip_kind: str
    skip_stage: int  # for to_first / to_last; -1 otherwise
    key_paths: tuple[tuple[str, ...], ...]
    time_field: tuple[str, ...] | None
    time_arrival: bool
    order_by: tuple[tuple[str, ...], ...]
    streams: frozenset[str] | None
    # this pattern's block of the shared prefilter; None: it runs its own `prefilter`
    # (patterns with `let` values or `order by`)
    filter_block: FilterBlock | None = None

    @property
    def models(self) -> frozenset[str]:
        calls = list(self.let_score_calls)
        if self.emit is not None:
            calls += list(self.emit.score_calls)
        if self.timeout is not None:
            calls += list(self.timeout.score_calls)
        return frozenset(c.model for c in calls)
