"""The exception hierarchy. Every error `cep` raises on purpose derives from `CepError`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class CepError(Exception):
    """Root of every error raised by cep on purpose."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in a pattern source, with its position (1-based line and column)."""

    message: str
    line: int
    column: int
    end_line: int
    end_column: int
    file: str | None = None
    snippet: str = ""
    hint: str | None = None
    code: str = "E000"
    severity: str = "error"

    def format(self) -> str:
        where = f"{self.file or '<pattern>'}:{self.line}:{self.column}"
        text = f"{where}: {self.severity}[{self.code}]: {self.message}"
        if self.snippet:
            text += "\n" + self.snippet
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "snippet": self.snippet,
            "hint": self.hint,
        }


class PatternError(CepError):
    """A pattern source has errors. `diagnostics` lists all of them, in source order."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        first = self.diagnostics[0].format() if self.diagnostics else "invalid pattern"
        more = len(self.diagnostics) - 1
        super().__init__(first + (f"\n(and {more} more)" if more > 0 else ""))

    def format(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class ConditionError(CepError):
    """A generated condition or measure raised; names the pattern file and line."""


class ModelError(CepError):
    """A model or its manifest cannot be loaded or used. The message says what to do."""


class ConfigError(CepError):
    """The service configuration is invalid."""
