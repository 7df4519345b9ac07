"""Structural rules: names, the skip target, negation, quantifiers and modifiers,
`until`, windows, lets and measures (FlinkCEP's `MalformedPatternException`s, found at
compile time with a position instead)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from cep.dsl.ast import SPECIAL_NAMES, Group, PatternFile, Stage, Step
from cep.dsl.ast import Sequence as Seq
from cep.dsl.check_context import Context, iter_sequences
from cep.dsl.diagnostics import describe, diagnostic
from cep.errors import Diagnostic

Element = Stage | Group


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    if close:
        return f"did you mean `{close[0]}`?"
    return f"stages of this pattern: {describe(options)}" if options else "define the stage"


# ---------------------------------------------------------------- file


def file_unique_pattern_names(pf: PatternFile) -> Iterator[Diagnostic]:
    seen: set[str] = set()
    for p in pf.patterns:
        if p.name in seen:
            yield diagnostic(
                pf.source, p.file or pf.file, p.span,
                f"duplicate pattern name `{p.name}`", "E200",
                "pattern names must be unique; rename one of them",
            )
        seen.add(p.name)


# ---------------------------------------------------------------- names


def rule_stage_names(ctx: Context) -> Iterator[Diagnostic]:
    seen: set[str] = set()
    for info in ctx.infos:
        st = info.stage
        if ":" in st.name:
            yield ctx.error(st.name_span, f"stage name `{st.name}` contains `:`", "E202",
                            "stage names cannot contain `:`; rename the stage")
        if st.name in seen:
            yield ctx.error(
                st.name_span, f"duplicate stage name `{st.name}`", "E201",
                "stage names must be unique in the whole pattern, groups included; "
                "rename one of them",
            )
        seen.add(st.name)


def rule_skip_target(ctx: Context) -> Iterator[Diagnostic]:
    skip = ctx.pattern.skip
    if skip.kind not in ("to_first", "to_last") or skip.stage is None:
        return
    info = ctx.stages.get(skip.stage)
    if info is None:
        positive = [i.stage.name for i in ctx.infos if not i.stage.negated]
        yield ctx.error(skip.span, f"`skip` names unknown stage `{skip.stage}`", "E203",
                        _did_you_mean(skip.stage, positive))
    elif info.stage.negated:
        yield ctx.error(skip.span, f"`skip` names `{skip.stage}`, a not stage", "E204",
                        "a not stage never takes events; name a positive stage")
    elif not any(step.element is info.stage for step in ctx.pattern.sequence.steps):
        # Flink rejects it too: "The pattern name specified in AfterMatchSkipStrategy can
        # not be found in the given Pattern" (docs/semantics.md)
        yield ctx.error(skip.span, f"`skip` names `{skip.stage}`, a stage inside a group",
                        "E205", "name a stage of the pattern's own sequence, as FlinkCEP "
                        "requires")


# ---------------------------------------------------------------- negation


def _not_stage_properties(st: Stage) -> Iterator[tuple[str, str]]:
    if st.quantifier is not None:
        yield "a quantifier", "remove the quantifier"
    if st.optional:
        yield "`?` (optional)", "remove the `?`"
    for mod in ("greedy", "consecutive", "combinations"):
        if getattr(st, mod):
            yield f"`{mod}`", f"remove `{mod}`"
    if st.until is not None:
        yield "`until`", "remove the `until` clause"


def rule_not_stage_shape(ctx: Context) -> Iterator[Diagnostic]:
    for info in ctx.infos:
        st = info.stage
        if not st.negated:
            continue
        for what, fix in _not_stage_properties(st):
            span = st.quantifier.span if what == "a quantifier" and st.quantifier else st.span
            yield ctx.error(span, f"not stage `{st.name}` cannot have {what}", "E210",
                            f"{fix}; a not stage tests for one absent event")


def _optional(el: Element) -> bool:
    return el.optional


def rule_not_stage_position(ctx: Context) -> Iterator[Diagnostic]:
    for seq, group in iter_sequences(ctx.pattern.sequence):
        steps = seq.steps
        for i, step in enumerate(steps):
            el = step.element
            if not (isinstance(el, Stage) and el.negated):
                continue
            if i == 0:
                where = "a group" if group is not None else "a pattern"
                yield ctx.error(el.span, f"{where} cannot start with a not stage", "E211",
                                "start with a positive stage; put `not` after `next` or `then`")
                continue
            if step.connector == "then any":
                yield ctx.error(step.span, "`then any` cannot precede a not stage", "E214",
                                "write `then not …` (or `next not …`)")
            if _optional(steps[i - 1].element):
                yield ctx.error(
                    el.span, f"not stage `{el.name}` cannot follow an optional stage or group",
                    "E212",
                    "make the previous stage mandatory, or split the pattern in two",
                )
            if group is not None and i == len(steps) - 1:
                yield ctx.error(el.span, "a group cannot end with a not stage", "E216",
                                "move the not stage after the group")
    yield from _trailing_not(ctx, ctx.pattern.sequence)


def _trailing_not(ctx: Context, seq: Seq) -> Iterator[Diagnostic]:
    if not seq.steps:
        return
    last: Step = seq.steps[-1]
    el = last.element
    if not (isinstance(el, Stage) and el.negated) or last.connector != "then":
        return
    if ctx.pattern.within_ms or el.within_ms:
        return
    yield ctx.error(
        last.span, f"a pattern ending in `then not {el.name}` needs a window", "E213",
        f"add `within DURATION` to the pattern header or to `{el.name}`, "
        "e.g. `then not paid … within 15m`",
    )


# ---------------------------------------------------------------- quantifiers and modifiers


def _elements(ctx: Context) -> Iterator[tuple[Element, Seq, int]]:
    for seq, _ in iter_sequences(ctx.pattern.sequence):
        for i, step in enumerate(seq.steps):
            yield step.element, seq, i


def _label(el: Element) -> str:
    return f"stage `{el.name}`" if isinstance(el, Stage) else "a group"


def rule_quantifier_bounds(ctx: Context) -> Iterator[Diagnostic]:
    for el, _, _ in _elements(ctx):
        q = el.quantifier
        if q is None or (isinstance(el, Stage) and el.negated):
            continue
        if q.min < 1 or (q.max is not None and q.max < 1):
            yield ctx.error(q.span, f"the quantifier of {_label(el)} allows no event", "E234",
                            "a quantifier takes at least one event; for an optional stage "
                            "write `?`, `*` or `{0,m}`")
        elif q.max is not None and q.max < q.min:
            yield ctx.error(q.span, f"quantifier {{{q.min},{q.max}}}: minimum above maximum",
                            "E234", f"write {{{q.max},{q.min}}}")


def rule_modifiers(ctx: Context) -> Iterator[Diagnostic]:
    for el, seq, i in _elements(ctx):
        if isinstance(el, Stage) and el.negated:
            continue  # rule_not_stage_shape reports these
        label = _label(el)
        if el.greedy and isinstance(el, Group):
            yield ctx.error(el.span, "`greedy` cannot apply to a group", "E221",
                            "put `greedy` on a quantified stage inside the group")
        elif el.greedy and el.quantifier is None:
            yield ctx.error(el.span, f"`greedy` needs a quantifier on {label}", "E220",
                            "greedy applies to quantified stages such as `x+` or `x{2,}`")
        if el.greedy and el.combinations:
            yield ctx.error(el.span, "`greedy` and `combinations` cannot be combined", "E222",
                            "remove one of them")
        for mod in ("consecutive", "combinations"):
            if getattr(el, mod) and el.quantifier is None:
                yield ctx.error(el.span, f"`{mod}` needs a quantifier on {label}", "E223",
                                f"`{mod}` applies between the events of a quantified stage "
                                "or group, e.g. `x{2,} " + mod + "`")
        if el.consecutive and el.combinations:
            yield ctx.error(el.span, "`consecutive` and `combinations` cannot be combined",
                            "E224", "remove one of them")
        if el.greedy and i + 1 < len(seq.steps) and seq.steps[i + 1].element.optional:
            nxt = seq.steps[i + 1].element
            yield ctx.error(nxt.span, f"{_label(nxt)} follows a greedy stage and cannot be "
                            "optional", "E225", "make it mandatory, or drop `greedy`")


def rule_until(ctx: Context) -> Iterator[Diagnostic]:
    for el, _, _ in _elements(ctx):
        if el.until is None or (isinstance(el, Stage) and el.negated):
            continue
        q = el.quantifier
        if q is None or q.max is not None:
            yield ctx.error(
                el.until.span, f"`until` needs a looping quantifier on {_label(el)}", "E230",
                "`until` ends a loop: use it with `+`, `*` or `{n,}`",
            )


def rule_windows(ctx: Context) -> Iterator[Diagnostic]:
    p = ctx.pattern
    spans = dict(p.clause_spans)
    if p.within_ms is not None and p.within_ms <= 0:
        yield ctx.error(spans.get("within", p.span), "the pattern window must be positive",
                        "E233", "write a duration above zero, e.g. `within 10m`")
    for el, _, _ in _elements(ctx):
        w = el.within_ms
        if w is None:
            continue
        if w <= 0:
            yield ctx.error(el.span, f"the window of {_label(el)} must be positive", "E231",
                            "write a duration above zero, e.g. `within 30s`")
        elif p.within_ms is not None and p.within_ms > 0 and w > p.within_ms:
            yield ctx.error(el.span, f"the window of {_label(el)} is longer than the "
                            "pattern's `within`", "E232",
                            "a stage window cannot exceed the pattern window; shorten it")


# ---------------------------------------------------------------- lets and measures


def rule_lets(ctx: Context) -> Iterator[Diagnostic]:
    seen: set[str] = set()
    for let in ctx.pattern.lets:
        if let.name in seen:
            yield ctx.error(let.span, f"duplicate `let {let.name}`", "E260",
                            "each let name is defined once; rename one of them")
        elif let.name in ctx.stage_names:
            yield ctx.error(let.span, f"`let {let.name}` has the name of a stage", "E261",
                            "rename the let or the stage")
        elif let.name in SPECIAL_NAMES:
            yield ctx.error(let.span, f"`{let.name}` is reserved and cannot be a let name",
                            "E264", "choose another name")
        seen.add(let.name)


def rule_measures(ctx: Context) -> Iterator[Diagnostic]:
    for emit in (ctx.pattern.emit, ctx.pattern.timeout_emit):
        if emit is None:
            continue
        seen: set[str] = set()
        for m in emit.measures:
            if m.name in seen:
                yield ctx.error(m.span, f"duplicate measure `{m.name}`", "E291",
                                "measure names must be unique; rename one of them")
            seen.add(m.name)


STRUCTURE_RULES = (
    rule_stage_names,
    rule_skip_target,
    rule_not_stage_shape,
    rule_not_stage_position,
    rule_quantifier_bounds,
    rule_modifiers,
    rule_until,
    rule_windows,
    rule_lets,
    rule_measures,
)
