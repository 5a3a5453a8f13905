"""The data source interface, and what every implementation shares.

A `Source` reads the columns asked for, windowed by the ordinal column, and
counts rows after a watermark. Implementations: `SqlSource` (sql.py, any
SQLAlchemy URL) and `FileSource` (files.py, CSV and Parquet, also used for
dumps). Column checks, defaults and the `Dataset` live above, in dataset.py,
so every source gets the same messages.

Bounds reach a source as given (ints, floats, timestamps or strings from the
CLI or the registry's JSON); `convert_bound` brings them to the ordinal
column's type, described by an `OrdinalType`.
"""

from __future__ import annotations

import datetime as dt
import difflib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mlcycle.data.window import Window, plain_value

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class OrdinalType:
    """What the ordinal column holds, as far as comparing bounds with it goes.

    kind: `int`, `float`, `timestamp`, `text` or `unknown` (no row to look at).
    `tz` is a timestamp column's time zone; `textual` marks timestamps stored as
    strings (SQLite has no timestamp type), compared as strings, so a bound is
    written like the stored values (`sep` between date and time).
    """

    kind: str
    tz: str | None = None
    textual: bool = False
    sep: str | None = None

    @property
    def description(self) -> str:
        """Words for messages: what values the column holds."""
        return {
            "int": "integers",
            "float": "numbers",
            "timestamp": "timestamps",
            "text": "text",
        }.get(self.kind, "values of an unknown type")

    @property
    def example(self) -> str:
        """An example bound for hints."""
        return {
            "int": "1000",
            "float": "1000.5",
            "timestamp": "2024-01-31 or 2024-01-31T12:00:00",
        }.get(self.kind, "a value as stored in the column")


TIMESTAMP_SEPS = (" ", "T")


def ordinal_type_of_value(value: Any) -> OrdinalType:
    """The ordinal type of a column, judged from one of its values (None: unknown)."""
    value = plain_value(value)
    if value is None:
        return OrdinalType("unknown")
    if isinstance(value, bool):
        return OrdinalType("int")
    if isinstance(value, int):
        return OrdinalType("int")
    if isinstance(value, float):
        return OrdinalType("float")
    if isinstance(value, dt.datetime):
        tz = value.tzinfo
        return OrdinalType("timestamp", tz=None if tz is None else str(tz))
    if isinstance(value, dt.date):
        return OrdinalType("timestamp")
    if isinstance(value, Decimal):
        return OrdinalType("float")
    if isinstance(value, str) and _parse_timestamp(value) is not None:
        sep = value[10] if len(value) > 10 and value[10] in TIMESTAMP_SEPS else None
        return OrdinalType("timestamp", textual=True, sep=sep)
    return OrdinalType("text")


def ordinal_type_of_series(series: pd.Series) -> OrdinalType:
    """The ordinal type of a pandas column."""
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_integer_dtype(dtype):
        return OrdinalType("int")
    if pd.api.types.is_float_dtype(dtype):
        return OrdinalType("float")
    if pd.api.types.is_datetime64_any_dtype(dtype):
        tz = getattr(dtype, "tz", None)
        return OrdinalType("timestamp", tz=None if tz is None else str(tz))
    first = series.dropna()
    return ordinal_type_of_value(first.iloc[0] if len(first) else None)


def convert_bound(value: Any, kind: OrdinalType) -> Any:
    """`value` in the ordinal column's type; ValueError (with the reason) when it cannot be."""
    value = plain_value(value)
    if value is None:
        return None
    if kind.kind == "int":
        if isinstance(value, bool):
            raise ValueError("not a number")
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value) if value.is_integer() else value
        if isinstance(value, str):
            text = value.strip()
            try:
                return int(text)
            except ValueError:
                number = float(text)  # ValueError when not a number at all
                if number != number or number in (float("inf"), float("-inf")):
                    raise ValueError("not a finite number") from None
                return int(number) if number.is_integer() else number
        raise ValueError("not a number")
    if kind.kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("not a number")
        number = float(value.strip() if isinstance(value, str) else value)
        if number != number:
            raise ValueError("not a number")
        return number
    if kind.kind == "timestamp":
        return _timestamp_bound(value, kind)
    if kind.kind == "text":
        if isinstance(value, dt.date | dt.datetime):
            return value.isoformat()
        return str(value)
    # unknown: no row to judge by; take a string for the most specific type it reads as
    if isinstance(value, str):
        for guess in (OrdinalType("int"), OrdinalType("float")):
            try:
                return convert_bound(value, guess)
            except ValueError:
                pass
        stamp = _parse_timestamp(value)
        return value if stamp is None else stamp
    return value


def _timestamp_bound(value: Any, kind: OrdinalType) -> Any:
    import pandas as pd

    if isinstance(value, bool | int | float):
        raise ValueError("not a timestamp")
    if isinstance(value, str):
        stamp = _parse_timestamp(value)
        if stamp is None:
            raise ValueError("not a timestamp")
        if kind.textual:
            # Stored as text and compared as text: write the bound like the stored values.
            text = value.strip()
            if kind.sep and len(text) > 10 and text[10] in TIMESTAMP_SEPS:
                text = text[:10] + kind.sep + text[11:]
            return text
    else:
        try:
            stamp = pd.Timestamp(value)
        except (TypeError, ValueError) as e:
            raise ValueError("not a timestamp") from e
        if kind.textual:
            return stamp.isoformat(sep=kind.sep or " ")
    if kind.tz is not None:
        stamp = stamp.tz_localize(kind.tz) if stamp.tzinfo is None else stamp.tz_convert(kind.tz)
    elif stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _parse_timestamp(text: str) -> Any:
    """A pandas Timestamp when `text` is an ISO 8601 date or timestamp, else None."""
    import pandas as pd

    text = text.strip()
    # Only ISO-looking text: pandas would also read "1000" as a year.
    if len(text) < 10 or not (text[:4].isdigit() and text[4] == "-" and text[7] == "-"):
        return None
    try:
        stamp = pd.Timestamp(text)
    except (TypeError, ValueError):
        return None
    return None if stamp is pd.NaT else stamp


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` when a choice is close to `name`, else ``."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    if name.lower() in lowered:
        return f"; did you mean '{lowered[name.lower()]}'?"
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def listing(names: Sequence[str], limit: int = 12) -> str:
    """A short comma-separated list of names for messages."""
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")


class Source(ABC):
    """A readable data source: columns, windowed reads, counts after a watermark."""

    kind: str  # "sql" | "file" | "dump"

    @property
    @abstractmethod
    def location(self) -> str:
        """What the registry records: the masked URL, or the path as written in the spec."""

    @abstractmethod
    def describe(self) -> str:
        """The source in words for messages (`sqlite:///x.db table events`, `data/x.csv`)."""

    @abstractmethod
    def columns(self) -> list[str]:
        """The source's column names, in its order; DataError when it cannot be opened."""

    @abstractmethod
    def ordinal_type(self, ordinal: str) -> OrdinalType:
        """What the ordinal column holds (its type, time zone, text format)."""

    @abstractmethod
    def read(
        self,
        columns: Sequence[str],
        *,
        ordinal: str | None = None,
        window: Window = Window(),
        where_in: tuple[str, Sequence[Any]] | None = None,
    ) -> pd.DataFrame:
        """The rows of `window` (by `ordinal`), only `columns`, optionally `where_in` a key set.

        Bounds are converted to the ordinal's type first; the order of rows is the
        source's (the caller sorts).
        """

    @abstractmethod
    def count(self, ordinal: str, window: Window) -> int:
        """How many rows fall in `window` of `ordinal`, reading as little as possible."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        """Release connections and handles."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
