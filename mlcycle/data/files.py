"""CSV and Parquet files as data sources (and dumps).

Parquet windows are pushed into pyarrow as a filter expression, so row groups
whose statistics lie outside the window are skipped: for a file sorted by the
ordinal (as appended data is), an increment of 1% reads about 1% of the file.
CSV has no such structure: it is read (only the needed columns) and filtered.
An ordinal column of ISO timestamps in a CSV is parsed as timestamps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle import extras
from mlcycle.data.source import OrdinalType, Source, convert_bound, ordinal_type_of_series
from mlcycle.data.window import Window
from mlcycle.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

FORMATS = ("csv", "parquet")
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
PARQUET_MAGIC = b"PAR1"


def file_format(path: Path, declared: str | None = None) -> str:
    """`csv` or `parquet`: as declared, else by suffix, else by the file's first bytes."""
    if declared:
        return declared
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in (".csv", ".txt"):
        return "csv"
    try:
        with path.open("rb") as f:
            return "parquet" if f.read(4) == PARQUET_MAGIC else "csv"
    except OSError:
        return "csv"


class FileSource(Source):
    """A CSV or Parquet file; `written` is the path as the spec wrote it (for messages)."""

    def __init__(
        self, path: Path, *, written: str, format: str | None = None, kind: str = "file"
    ) -> None:
        self.path = path
        self.written = written
        self.kind = kind
        if not path.exists():
            raise DataError(
                f"{written}: no such file" + (f" ({path})" if str(path) != written else ""),
                hint="check the path in lifecycle.yaml; relative paths start at the spec's folder",
            )
        if path.is_dir():
            raise DataError(f"{written}: is a directory, not a data file")
        self.format = file_format(path, format)
        if self.format == "parquet":
            extras.require(extras.PARQUET, what=f"{written}: reading Parquet")
        self._columns: list[str] | None = None
        self._schema: pa.Schema | None = None

    @property
    def location(self) -> str:
        """The path as written in the spec."""
        return self.written

    def describe(self) -> str:
        """The path as written."""
        return self.written

    def sha256(self) -> str:
        """SHA-256 of the file."""
        try:
            with self.path.open("rb") as f:
                return hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:
            raise DataError(f"{self.written}: cannot read: {e.strerror or e}") from e

    # --- columns and types -----------------------------------------------------------

    def columns(self) -> list[str]:
        """The header of the CSV, or the Parquet schema's names."""
        if self._columns is None:
            if self.format == "parquet":
                # pandas stores a non-trivial index as `__index_level_N__`: not data.
                names = self._parquet_schema().names
                self._columns = [n for n in names if not n.startswith("__index_level_")]
            else:
                self._columns = [str(c) for c in self._read_csv(nrows=0).columns]
        return self._columns

    def ordinal_type(self, ordinal: str) -> OrdinalType:
        """From the Parquet schema, or from the CSV column's first rows."""
        if self.format == "parquet":
            import pyarrow as pa

            field_type = self._parquet_schema().field(ordinal).type
            if pa.types.is_integer(field_type) or pa.types.is_boolean(field_type):
                return OrdinalType("int")
            if pa.types.is_floating(field_type) or pa.types.is_decimal(field_type):
                return OrdinalType("float")
            if pa.types.is_timestamp(field_type):
                return OrdinalType("timestamp", tz=field_type.tz)
            if pa.types.is_date(field_type):
                return OrdinalType("timestamp")
            if pa.types.is_string(field_type) or pa.types.is_large_string(field_type):
                # Strings: judge by a value, timestamps written as text compare as text.
                first = self._read_parquet([ordinal], limit=1)
                column = first[ordinal] if len(first) else None
                if column is not None:
                    kind = ordinal_type_of_series(column)
                    if kind.kind == "timestamp":
                        return kind
                return OrdinalType("text")
            return OrdinalType("unknown")
        head = _parse_ordinal(self._read_csv(usecols=[ordinal], nrows=1000), ordinal)
        return ordinal_type_of_series(head[ordinal])

    # --- reading -----------------------------------------------------------------------

    def read(
        self,
        columns: Sequence[str],
        *,
        ordinal: str | None = None,
        window: Window = Window(),
        where_in: tuple[str, Sequence[Any]] | None = None,
    ) -> pd.DataFrame:
        """Read `columns` (plus nothing else) of the rows in `window`."""
        if self.format == "parquet":
            frame = self._read_parquet(list(columns), ordinal=ordinal, window=window)
        else:
            frame = self._read_csv(usecols=list(columns))
            if ordinal is not None:
                frame = _parse_ordinal(frame, ordinal)
                if not window.unbounded:
                    frame = frame[
                        _mask(frame[ordinal], window, ordinal_type_of_series(frame[ordinal]))
                    ]
        if where_in is not None:
            column, values = where_in
            frame = frame[frame[column].isin(list(values))]
        return frame.reset_index(drop=True)

    def count(self, ordinal: str, window: Window) -> int:
        """Parquet: pyarrow counts by filter (statistics skip row groups); CSV: read, count."""
        if self.format == "parquet":
            dataset = self._dataset()
            expression = self._filter(ordinal, window)
            try:
                return int(dataset.count_rows(filter=expression))
            except Exception as e:  # pyarrow raises its own families; all mean "unreadable"
                raise self._unreadable(e) from e
        frame = _parse_ordinal(self._read_csv(usecols=[ordinal]), ordinal)
        series = frame[ordinal]
        if window.unbounded:
            return len(series)
        return int(_mask(series, window, ordinal_type_of_series(series)).sum())

    # --- CSV -------------------------------------------------------------------------------

    def _read_csv(self, **kwargs: Any) -> pd.DataFrame:
        import pandas as pd

        try:
            return pd.read_csv(self.path, **kwargs)
        except pd.errors.EmptyDataError as e:
            raise DataError(
                f"{self.written}: the file is empty (no header row)",
                hint="a CSV source needs a header row naming its columns",
            ) from e
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
            raise DataError(
                f"{self.written}: not a readable CSV file: {_first_line(e)}",
                hint="check the file, or set `format: parquet` if it is Parquet",
            ) from e
        except OSError as e:
            raise DataError(f"{self.written}: cannot read: {e.strerror or e}") from e

    # --- Parquet ---------------------------------------------------------------------------

    def _parquet_schema(self) -> pa.Schema:
        if self._schema is None:
            import pyarrow.parquet as pq

            try:
                self._schema = pq.read_schema(self.path)
            except Exception as e:  # ArrowInvalid, OSError, …: the file is not Parquet
                raise self._unreadable(e) from e
        return self._schema

    def _dataset(self) -> Any:
        import pyarrow.dataset as ds

        try:
            return ds.dataset(self.path, format="parquet", schema=self._parquet_schema())
        except Exception as e:
            raise self._unreadable(e) from e

    def _filter(self, ordinal: str | None, window: Window) -> Any:
        if ordinal is None or window.unbounded:
            return None
        import pyarrow as pa
        import pyarrow.dataset as ds

        kind = self.ordinal_type(ordinal)
        field_type = self._parquet_schema().field(ordinal).type
        lower = _bound(window.lower, kind, field_type, pa)
        upper = _bound(window.upper, kind, field_type, pa)
        column = ds.field(ordinal)
        expression = None
        if lower is not None:
            expression = column >= lower if window.lower_inclusive else column > lower
        if upper is not None:
            expression = column < upper if expression is None else expression & (column < upper)
        return expression

    def _read_parquet(
        self,
        columns: list[str],
        *,
        ordinal: str | None = None,
        window: Window = Window(),
        limit: int | None = None,
    ) -> pd.DataFrame:
        dataset = self._dataset()
        expression = self._filter(ordinal, window)
        try:
            if limit is not None:
                table = dataset.head(limit, columns=columns, filter=expression)
            else:
                table = dataset.to_table(columns=columns, filter=expression)
            # Without pandas metadata: a stored index must stay a column, not become the index.
            return table.to_pandas(ignore_metadata=True)
        except Exception as e:
            raise self._unreadable(e) from e

    def _unreadable(self, error: BaseException) -> DataError:
        return DataError(
            f"{self.written}: not a readable Parquet file: {_first_line(error)}",
            hint="check the file, or set `format: csv` if it is CSV",
        )


def _bound(value: Any, kind: OrdinalType, field_type: Any, pa: Any) -> Any:
    """A bound as a pyarrow scalar of the column's type, so the filter compares like with like."""
    value = convert_bound(value, kind)
    if value is None:
        return None
    try:
        return pa.scalar(value, type=field_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return value  # e.g. 12.5 against integers: pyarrow casts when comparing


def _parse_ordinal(frame: pd.DataFrame, ordinal: str) -> pd.DataFrame:
    """Parse an ordinal column of ISO timestamps (CSV gives strings) into timestamps."""
    import pandas as pd

    if ordinal not in frame.columns:
        return frame
    series = frame[ordinal]
    if pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype):
        if ordinal_type_of_series(series).kind != "timestamp":
            return frame
        try:
            parsed = pd.to_datetime(series, format="ISO8601")
        except (TypeError, ValueError):
            return frame
        frame = frame.copy()
        frame[ordinal] = parsed
    return frame


def _mask(series: pd.Series, window: Window, kind: OrdinalType) -> pd.Series:
    """Rows of `series` inside `window`, after converting its bounds to the column's type."""
    lower = convert_bound(window.lower, kind)
    upper = convert_bound(window.upper, kind)
    mask = series.notna()
    if lower is not None:
        mask &= series >= lower if window.lower_inclusive else series > lower
    if upper is not None:
        mask &= series < upper
    return mask


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
