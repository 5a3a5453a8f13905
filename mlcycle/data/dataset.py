"""Datasets from the spec's `data` section: fetch, window, check, describe.

`load_dataset` opens the declared source (a SQL table/query or a file, windowed
by the ordinal column; or a dump, loaded whole), checks the columns the spec
names, and returns features, label, ordinal and keys with a `SourceInfo` the
registry records. Every problem is a `DataError` naming the source (the file
as written, or the URL with its password masked) and the column or table.

The label check that needs the task (one class is fatal for a classifier) is
`check_label(y, task)` / `Dataset.check_label(task)`: the trainer knows the
task, this layer does not. `load_dataset` itself refuses missing labels, and a
single-valued label when it is clearly categorical (bool, text or category).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.data.files import FileSource
from mlcycle.data.source import (
    OrdinalType,
    Source,
    convert_bound,
    did_you_mean,
    listing,
)
from mlcycle.data.sql import SqlSource, mask_url
from mlcycle.data.window import Window, json_value, next_window, plain_value
from mlcycle.errors import DataError, WindowError
from mlcycle.progress import NULL_PROGRESS, Progress, step

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.spec.model import SourceSpec, Spec


@dataclass(frozen=True)
class SourceInfo:
    """What the registry records about the data a model was trained on.

    `location` is the URL (password masked) or the path as written in the spec;
    `table`/`query` say what was read at a URL. `watermark` is the largest
    ordinal among the fetched rows: the next increment starts after it.
    """

    kind: str  # "sql" | "file" | "dump"
    location: str
    reproducible: bool
    sha256: str | None
    ordinal: str | None
    window: Window
    watermark: Any
    rows: int
    table: str | None = None
    query: str | None = None
    format: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601 strings."""
        return {
            "kind": self.kind,
            "location": self.location,
            "table": self.table,
            "query": self.query,
            "format": self.format,
            "reproducible": self.reproducible,
            "sha256": self.sha256,
            "ordinal": self.ordinal,
            "window": self.window.as_dict(),
            "watermark": json_value(self.watermark),
            "rows": self.rows,
        }


@dataclass(frozen=True)
class Dataset:
    """Fetched training data: features, label, ordinal and keys aligned by position."""

    X: pd.DataFrame
    y: pd.Series
    ordinal: pd.Series | None
    keys: pd.Series | None
    info: SourceInfo

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return len(self.X)

    @property
    def features(self) -> tuple[str, ...]:
        """Feature column names, in the order of X."""
        return tuple(str(c) for c in self.X.columns)

    def check_label(self, task: str) -> None:
        """`check_label(self.y, task)`, naming this dataset's source and window in errors."""
        check_label(self.y, task, where=_where(self.info))


def load_dataset(
    spec: Spec, window: Window = Window(), *, progress: Progress = NULL_PROGRESS
) -> Dataset:
    """Fetch the spec's training data in `window` (rows ordered by the ordinal).

    `spec.data.source` (SQL or file) is windowed by its ordinal column;
    `spec.data.dump` is loaded whole, and a bounded window with a dump is a
    DataError (dumps have no ordinal). Features are `spec.data.features`, else
    every column but the label, key and ordinal, in the source's order. Raises
    DataError for anything that prevents usable data: a missing file, table or
    column, a query or connection failure, an empty window, missing labels.
    """
    data = spec.data
    if not data.label:
        raise DataError(
            "the spec declares no label column (data.label)",
            hint="set `data.label` to the column to predict",
        )
    if data.source is None and not data.dump:
        raise DataError(
            "the spec declares no data (data.source or data.dump)",
            hint="add `data.source` (a table or file) or `data.dump` (a file) to lifecycle.yaml",
        )
    ordinal = data.source.ordinal if data.source is not None else None
    if not window.unbounded:
        if data.source is None:
            raise DataError(
                f"{data.dump}: a dump is loaded whole; it has no ordinal column to window by",
                hint="drop --lower/--upper, or declare `data.source` with an `ordinal` column",
            )
        if ordinal is None:
            raise DataError(
                f"{_open_description(spec)}: cannot fetch a window without an ordinal column",
                hint="declare `data.source.ordinal` (a timestamp or an increasing id)",
            )
    with _open(spec) as source, step(progress, f"fetch {source.describe()}", total=None):
        return _load(spec, source, window, ordinal)


def _load(spec: Spec, source: Source, window: Window, ordinal: str | None) -> Dataset:
    data = spec.data
    label = data.label or ""
    available = source.columns()
    named = [(label, "data.label")]
    if data.key:
        named.append((data.key, "data.key"))
    if ordinal:
        named.append((ordinal, "data.source.ordinal"))
    named += [(f, "data.features") for f in data.features or ()]
    _require_columns(source, available, named)
    if data.features:
        roles = {ordinal: "ordinal", data.key: "key", label: "label"}
        for column in data.features:
            if column in roles:
                raise DataError(
                    f"{source.describe()}: data.features lists '{column}', which is also the "
                    f"{roles[column]}",
                    hint=f"remove '{column}' from data.features",
                )
        features = list(data.features)
    else:
        features = [c for c in available if c not in (label, data.key, ordinal)]
        if not features:
            raise DataError(
                f"{source.describe()}: no feature columns: every column is the label, key or "
                "ordinal",
                hint="the source needs columns to learn from besides the label",
            )
    if ordinal and not window.unbounded:
        window = _convert_window(source, ordinal, window)
    wanted = list(dict.fromkeys([*features, label, *[c for c in (data.key, ordinal) if c]]))
    frame = source.read(wanted, ordinal=ordinal, window=window)
    if len(frame) == 0:
        if window.unbounded:
            raise DataError(f"no rows in {source.describe()}", hint="the source is empty")
        raise DataError(
            f"no rows in {window} of {source.describe()} (column {ordinal})",
            hint="widen the window (--lower/--upper), or wait for new rows",
        )
    if ordinal:
        order = frame[ordinal]
        if not order.is_monotonic_increasing:
            frame = frame.sort_values(ordinal, kind="stable", ignore_index=True)
    y = frame[label].reset_index(drop=True)
    y.name = label
    missing = int(y.isna().sum())
    if missing:
        raise DataError(
            f"{source.describe()}: the label column '{label}' has {missing} missing "
            f"value{'s' if missing != 1 else ''} in {len(y)} rows"
            + ("" if window.unbounded else f" of {window}"),
            hint="drop those rows or fill the label in the source",
        )
    if _clearly_categorical(y):
        check_label(y, "classification", where=f"{source.describe()}{_in(window)}")
    ordinal_series = frame[ordinal].reset_index(drop=True) if ordinal else None
    watermark = plain_value(ordinal_series.max()) if ordinal_series is not None else None
    kind = source.kind
    info = SourceInfo(
        kind=kind,
        location=source.location,
        reproducible=kind != "dump",
        sha256=source.sha256() if isinstance(source, FileSource) and kind == "dump" else None,
        ordinal=ordinal,
        window=window,
        watermark=watermark,
        rows=len(frame),
        table=getattr(source, "table", None),
        query=getattr(source, "query", None),
        format=getattr(source, "format", None),
    )
    return Dataset(
        X=frame[features].reset_index(drop=True),
        y=y,
        ordinal=ordinal_series,
        keys=frame[data.key].reset_index(drop=True) if data.key else None,
        info=info,
    )


def count_new_rows(spec: Spec, since: Any) -> int:
    """How many rows of `spec.data.source` have an ordinal strictly greater than `since`.

    `since` is a watermark (as recorded, ISO strings accepted for timestamps);
    None counts every row. SQL sources run one `SELECT count(*)`; Parquet counts
    with row-group statistics. DataError for dumps and sources without ordinal.
    """
    source_spec = spec.data.source
    if source_spec is None:
        raise DataError(
            f"{spec.data.dump or 'the data'}: a dump has no new rows to count",
            hint="declare `data.source` with an `ordinal` column for incremental updates",
        )
    ordinal = source_spec.ordinal
    with _open(spec) as source:
        if ordinal is None:
            raise DataError(
                f"{source.describe()}: cannot count new rows without an ordinal column",
                hint="declare `data.source.ordinal` (a timestamp or an increasing id)",
            )
        _require_columns(source, source.columns(), [(ordinal, "data.source.ordinal")])
        window = next_window(since)
        if not window.unbounded:
            window = _convert_window(source, ordinal, window)
        return source.count(ordinal, window)


def fetch_outcomes(spec: Spec, keys: Sequence[Any] | None = None) -> pd.DataFrame:
    """True outcomes from `spec.data.outcomes`: a frame with columns `key` and `outcome`.

    With `keys`, only the rows whose key is among them (SQL: `IN` lists of bound
    parameters). Rows come in the source's order; duplicates are kept.
    DataError when the spec declares no outcomes source or it cannot be read.
    """
    import pandas as pd

    outcomes = spec.data.outcomes
    if outcomes is None:
        raise DataError(
            "the spec declares no outcomes source (data.outcomes)",
            hint="add `data.outcomes` with a table or file and its `key` and `outcome` columns",
        )
    with _open_source(spec, outcomes.source) as source:
        _require_columns(
            source,
            source.columns(),
            [(outcomes.key, "data.outcomes.key"), (outcomes.outcome, "data.outcomes.outcome")],
        )
        columns = list(dict.fromkeys([outcomes.key, outcomes.outcome]))
        where = None if keys is None else (outcomes.key, list(keys))
        if where is not None and not where[1]:
            frame = source.read(columns).iloc[0:0]
        else:
            frame = source.read(columns, where_in=where)
    return pd.DataFrame(
        {"key": frame[outcomes.key].to_numpy(), "outcome": frame[outcomes.outcome].to_numpy()}
    )


def coerce_bound(spec: Spec, text: str) -> Any:
    """A `--lower`/`--upper` string as a value of the ordinal column's type.

    Integers, numbers and timestamps (ISO 8601) are converted; text ordinals
    stay text. DataError with a hint when the text does not fit the column.
    """
    source_spec = spec.data.source
    if source_spec is None or source_spec.ordinal is None:
        raise DataError(
            f"{_open_description(spec)}: --lower/--upper need an ordinal column to window by",
            hint="declare `data.source.ordinal` (a timestamp or an increasing id)",
        )
    ordinal = source_spec.ordinal
    with _open(spec) as source:
        _require_columns(source, source.columns(), [(ordinal, "data.source.ordinal")])
        kind = source.ordinal_type(ordinal)
        return _convert(source, ordinal, kind, text)


def check_label(y: Any, task: str, *, where: str | None = None) -> None:
    """DataError when the label cannot train a `task` model: missing values, or one class.

    The trainer calls this once it knows the task (`classification` needs at
    least two classes; a narrow window often holds only one).
    """
    import pandas as pd

    labels = pd.Series(y)
    place = f"{where}: " if where else ""
    name = f"'{labels.name}'" if labels.name is not None else ""
    missing = int(labels.isna().sum())
    if missing:
        raise DataError(
            f"{place}the label column {name} has {missing} missing "
            f"value{'s' if missing != 1 else ''} in {len(labels)} rows".replace("  ", " "),
            hint="drop those rows or fill the label in the source",
        )
    if task == "classification":
        classes = labels.unique()
        if len(classes) < 2:
            only = plain_value(classes[0]) if len(classes) else None
            raise DataError(
                f"{place}the label column {name} has a single class ({only!r}) in all "
                f"{len(labels)} rows; a classifier needs at least two".replace("  ", " "),
                hint="widen the data window (--lower/--upper), or check data.label",
            )


# --- helpers -----------------------------------------------------------------------------


def _open(spec: Spec) -> Source:
    """The training data source: `data.source`, else the dump."""
    if spec.data.source is not None:
        return _open_source(spec, spec.data.source)
    dump = spec.data.dump or ""
    return FileSource(spec.resolve(dump), written=dump, kind="dump")


def _open_source(spec: Spec, source: SourceSpec) -> Source:
    if source.url:
        return SqlSource(
            source.url,
            root=spec.root,
            table=source.table,
            query=source.query,
            params=dict(source.params),
        )
    if not source.path:
        raise DataError(
            "the data source names neither a url nor a path",
            hint="add `url:` with `table:`/`query:`, or `path:` to a CSV/Parquet file",
        )
    return FileSource(spec.resolve(source.path), written=source.path, format=source.format)


def _open_description(spec: Spec) -> str:
    source = spec.data.source
    if source is None:
        return spec.data.dump or "the data"
    if source.url:
        what = f" table {source.table}" if source.table else " query"
        return mask_url(source.url) + what
    return source.path or "the data source"


def _require_columns(
    source: Source, available: Sequence[str], named: Sequence[tuple[str, str]]
) -> None:
    """DataError for the first named column the source lacks, with a did-you-mean."""
    for column, role in named:
        if column not in available:
            raise DataError(
                f"{source.describe()}: no column '{column}' ({role})"
                + did_you_mean(column, available),
                hint=f"columns there: {listing(list(available))}",
            )


def _convert_window(source: Source, ordinal: str, window: Window) -> Window:
    """Bounds in the ordinal's type; DataError when one does not fit or the window is inverted."""
    textual = isinstance(window.lower, str) or isinstance(window.upper, str)
    # Learning a SQL column's type costs a query (on a query source, maybe a whole
    # subquery): only strings need it; numbers and timestamps bind as they are.
    needs_type = textual or source.kind != "sql"
    kind = source.ordinal_type(ordinal) if needs_type else OrdinalType("unknown")
    lower = _convert(source, ordinal, kind, window.lower, side="lower")
    upper = _convert(source, ordinal, kind, window.upper, side="upper")
    converted = Window(lower, upper, window.lower_inclusive)
    if lower is not None and upper is not None:
        try:
            empty = bool(lower >= upper)
        except TypeError:
            empty = False
        if empty:
            raise WindowError(
                f"the window {converted} of {source.describe()} is empty: its lower bound is "
                "not below its upper bound",
                hint="pass --lower below --upper",
            )
    return converted


def _convert(
    source: Source, ordinal: str, kind: OrdinalType, value: Any, *, side: str | None = None
) -> Any:
    try:
        return convert_bound(value, kind)
    except ValueError as e:
        bound = f"the {side} bound" if side else "the bound"
        raise WindowError(
            f"{bound} {json_value(value)!r} does not fit column '{ordinal}' of "
            f"{source.describe()}, which holds {kind.description} ({e})",
            hint=f"write it like {kind.example}",
        ) from e


def _clearly_categorical(y: pd.Series) -> bool:
    import pandas as pd

    dtype = y.dtype
    return bool(
        pd.api.types.is_bool_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
    )


def _in(window: Window) -> str:
    return "" if window.unbounded else f" in {window}"


def _where(info: SourceInfo) -> str:
    where = info.location
    if info.table:
        where += f" table {info.table}"
    elif info.query:
        where += " query"
    return where + _in(info.window)
