"""Values of literal tokens: strings (escapes decoded by hand, never by eval), numbers
and durations, each range-checked."""

from __future__ import annotations

from cep.dsl.limits import MAX_INT


class LexemeError(Exception):
    """A literal token has an invalid value. `offset`/`length` locate the bad part
    inside the token's text."""

    def __init__(self, message: str, offset: int = 0, length: int = 1, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.length = length
        self.hint = hint


_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "f": "\f", "v": "\v",
    "\\": "\\", '"': '"', "'": "'", "/": "/",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")

DURATION_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def decode_string(token: str) -> str:
    """The value of a quoted STRING token (with its quotes).

    Escapes: `\\n \\t \\r \\0 \\b \\f \\v \\\\ \\" \\' \\/`, `\\xHH`, `\\uHHHH`,
    `\\UHHHHHHHH`. Any other backslash pair is kept as written (so regexes such as
    `"\\d+"` read naturally). Surrogates and code points above U+10FFFF are errors.
    """
    body = token[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1]
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
        elif esc in _HEX_ESCAPES:
            width = _HEX_ESCAPES[esc]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not set(digits) <= _HEX_DIGITS:
                raise LexemeError(
                    f"invalid escape `\\{esc}`: expected {width} hex digits",
                    offset=1 + i, length=2 + len(digits),
                    hint=f"write `\\{esc}` followed by exactly {width} hex digits, "
                    "or `\\\\` for a backslash",
                )
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise LexemeError(
                    f"invalid escape `\\{esc}{digits}`: not a Unicode scalar value",
                    offset=1 + i, length=2 + width,
                    hint="surrogates and code points above U+10FFFF cannot be encoded",
                )
            out.append(chr(code))
            i += 2 + width
        else:
            out.append(ch)
            out.append(esc)
            i += 2
    return "".join(out)


def parse_number(text: str) -> int | float:
    """The value of a NUMBER token: an int when it has no `.` or exponent."""
    if "." in text or "e" in text or "E" in text:
        value = float(text)
        if value != value or value in (float("inf"), float("-inf")):
            raise LexemeError(
                f"number `{text[:30]}` is out of range", length=len(text),
                hint="use a finite number",
            )
        return value
    if len(text.lstrip("0")) > 19 or int(text) > MAX_INT:
        raise LexemeError(
            f"integer `{text[:30]}` is out of range", length=len(text),
            hint=f"integers must be at most {MAX_INT}",
        )
    return int(text)


def parse_duration(text: str) -> int:
    """Milliseconds of a DURATION token such as `250ms`, `30s`, `10m`, `2h`, `7d`."""
    unit = "ms" if text.endswith("ms") else text[-1]
    digits = text[: len(text) - len(unit)]
    if len(digits.lstrip("0")) > 19 or int(digits) * DURATION_UNITS[unit] > MAX_INT:
        raise LexemeError(
            f"duration `{text[:30]}` is out of range", length=len(text),
            hint=f"durations must be at most {MAX_INT} ms",
        )
    return int(digits) * DURATION_UNITS[unit]
