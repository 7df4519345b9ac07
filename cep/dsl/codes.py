"""Every diagnostic code of the front end, with what it means (for docs and the API).

E1xx: syntax and limits (`parser`); E2xx: semantic errors (`checker`); E3xx: errors
against declared stream schemas (`check_schema`); W2xx: warnings.
"""

from __future__ import annotations

CODES: dict[str, str] = {
    # syntax
    "E100": "unexpected token",
    "E101": "unexpected character",
    "E102": "unterminated string",
    "E103": "unexpected end of input (or no pattern at all)",
    "E104": "invalid escape in a string",
    "E105": "number or duration out of range",
    "E106": "header clause given twice",
    "E107": "modifier given twice",
    "E108": "positional argument after a keyword argument",
    "E109": "quantifier bound is not a whole number",
    "E110": "pattern file cannot be read",
    "E111": "pattern file is not UTF-8",
    # limits
    "E150": "source too large",
    "E151": "expression or groups nested too deeply",
    "E152": "too many stages in a pattern",
    "E153": "too many patterns in a file",
    "E154": "quantifier bound too large",
    "E155": "too many errors; reporting stopped",
    "E156": "pattern would compile to too large an NFA (nested quantified groups)",
    # names
    "E200": "duplicate pattern name",
    "E201": "duplicate stage name",
    "E202": "stage name contains `:`",
    "E203": "`skip to first/last` names an unknown stage",
    "E204": "`skip to first/last` names a not stage",
    "E205": "`skip to first/last` names a stage inside a group",
    # negation
    "E210": "not stage with a quantifier, `?`, a modifier or `until`",
    "E211": "pattern or group starts with a not stage",
    "E212": "not stage right after an optional stage or group",
    "E213": "trailing `then not` without a window",
    "E214": "`then any` before a not stage",
    "E216": "group ends with a not stage",
    # quantifiers and modifiers
    "E220": "`greedy` on a stage without a quantifier",
    "E221": "`greedy` on a group",
    "E222": "`greedy` with `combinations`",
    "E223": "`consecutive`/`combinations` without a quantifier",
    "E224": "`consecutive` with `combinations`",
    "E225": "optional stage right after a greedy stage",
    "E230": "`until` without a looping quantifier",
    "E231": "stage window not positive",
    "E232": "stage window longer than the pattern window",
    "E233": "pattern window not positive",
    "E234": "quantifier allows no event, or minimum above maximum",
    # functions and aggregates
    "E240": "unknown function",
    "E241": "wrong number of arguments",
    "E242": "keyword arguments to a function other than score",
    "E243": "count/first/last without a stage name",
    "E244": "aggregate argument does not read exactly one stage's fields",
    "E245": "first/last without a field, or a field of another call",
    "E246": "nested aggregates",
    # names in expressions
    "E250": "bare field of a stage that may hold several events",
    "E251": "condition reads a later stage",
    "E252": "condition reads its own single-event stage by name",
    "E253": "reference to a not stage",
    "E260": "duplicate let",
    "E261": "let named like a stage",
    "E262": "let reads a stage or uses an aggregate",
    "E263": "let reads a let defined after it (or itself)",
    "E264": "let named `key` or `ts`",
    # score
    "E270": "score without a model name first",
    "E272": "score in a where/until condition",
    "E273": "unknown model",
    "E274": "feature unknown to the model",
    "E275": "feature of the model missing",
    "E276": "positional feature in score",
    "E277": "feature given twice",
    "E278": "score inside an aggregate",
    # operators
    "E280": "`matches` without a string literal regex",
    "E281": "invalid regex",
    "E282": "`in`/`not in` without a list on the right",
    # emit
    "E291": "duplicate measure",
    "E294": "emit reads a field or let of no stage",
    "E295": "exists() without a field",
    "E296": "stage name used as a value",
    # stream schemas (only with declared schemas: cep.toml [streams.*] / --schema)
    "E300": "a stream named in `from` has no such field",
    "E301": "no declared stream has such a field",
    "E310": "ordering comparison of values of different types (never true)",
    "E311": "equality between values of different types (never equal)",
    "E312": "arithmetic on a value that is not a number",
    "E313": "string operator on a value that is not a string",
    # warnings
    "W290": "`key` used in a pattern without a `key` clause",
}
