"""Positioned problems found in a spec, reported like a compiler does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem at `file:line:col` (1-based); ordered by position."""

    file: str
    line: int
    col: int
    severity: Severity = field(compare=False)
    message: str = field(compare=False)
    hint: str | None = field(default=None, compare=False)
    rule: str | None = field(default=None, compare=False)

    def format(self) -> str:
        """`FILE:LINE:COL: SEVERITY: MESSAGE`, plus `(hint: ...)` when there is one."""
        text = f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready mapping."""
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
            "rule": self.rule,
        }
