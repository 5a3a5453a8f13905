"""Windows over the ordinal column, and the plain values bounds and watermarks are made of.

A `Window` is half-open, `[lower, upper)`; `None` leaves a side unbounded. An
increment is the window `(watermark, end)`: its lower bound is *exclusive*
(`lower_inclusive=False`), so it holds exactly the rows whose ordinal is
strictly greater than the previous training's watermark. That is the one
extra field beyond `[lower, upper)`; `next_window` builds it.

Bounds may be ints, floats, timestamps or strings. Strings (from the command
line, or read back from the registry's JSON) are converted to the ordinal
column's type when the data is fetched, so `Window.from_dict(w.as_dict())`
windows the same rows as `w`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Window:
    """Rows with `lower <= ordinal < upper` (`lower < ordinal` when not `lower_inclusive`).

    `None` leaves a side open. `Window()` is everything.
    """

    lower: Any = None
    upper: Any = None
    lower_inclusive: bool = True

    @property
    def unbounded(self) -> bool:
        """Whether the window selects every row (no bound on either side)."""
        return self.lower is None and self.upper is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: bounds as plain numbers or strings (timestamps in ISO 8601)."""
        return {
            "lower": json_value(self.lower),
            "upper": json_value(self.upper),
            "lower_inclusive": self.lower_inclusive,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> Window:
        """The window `as_dict` described (bounds stay strings until a fetch converts them)."""
        if not raw:
            return cls()
        return cls(
            lower=raw.get("lower"),
            upper=raw.get("upper"),
            lower_inclusive=bool(raw.get("lower_inclusive", True)),
        )

    def __str__(self) -> str:
        left = "[" if self.lower_inclusive or self.lower is None else "("
        lower = "start" if self.lower is None else _show(self.lower)
        upper = "end" if self.upper is None else _show(self.upper)
        return f"{left}{lower}, {upper})"


def next_window(watermark: Any) -> Window:
    """The increment after `watermark`: every row with ordinal strictly greater, no upper bound.

    `load_dataset(spec, next_window(previous.info.watermark))` returns exactly the
    rows added since the previous fetch, provided new rows get ordinals above
    every existing one (an increasing id or an insertion timestamp). With no
    watermark (nothing fetched before) it is the whole source.
    """
    if watermark is None:
        return Window()
    return Window(lower=plain_value(watermark), upper=None, lower_inclusive=False)


def plain_value(value: Any) -> Any:
    """A numpy/pandas scalar as a plain Python value (int, float, str, timestamp); NaN/NaT → None.

    Timestamps stay `pandas.Timestamp` (a `datetime` that keeps nanoseconds).
    """
    if value is None or type(value) in (str, bool, int):
        return value
    if type(value) is float:
        return None if value != value else value
    module = type(value).__module__
    if module.startswith(("numpy", "pandas")):
        import pandas as pd

        if pd.isna(value):
            return None
        if module.startswith("numpy"):
            if value.dtype.kind == "M":
                return pd.Timestamp(value)
            return value.item()
    return value


def json_value(value: Any) -> Any:
    """A bound or watermark as JSON: numbers and strings as they are, timestamps in ISO 8601."""
    value = plain_value(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _show(value: Any) -> str:
    shown = json_value(value)
    return str(shown)
