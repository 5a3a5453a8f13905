"""The library behind the CLI: one function per verb, each returning a result object.

The CLI parses options, calls one of these and renders what it returns; other
programs can call them the same way. Nothing here prints.
"""

from __future__ import annotations

from mlcycle.api.spec import plan, validate

__all__ = ["plan", "validate"]
