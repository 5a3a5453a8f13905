"""SQL data sources through SQLAlchemy: any URL, a table or a parameterised query.

Every statement is built with SQLAlchemy constructs, so identifiers are quoted
by the dialect and values travel as bound parameters (never pasted into SQL):

    SELECT src.a, src.b, … FROM (<query>) AS src
    WHERE src.<ordinal> > :mlcycle_lower AND src.<ordinal> < :mlcycle_upper

A table is selected from directly (`FROM <schema>.<table>`). The same windows
count rows with `SELECT count(*)`. A relative SQLite path in the URL is taken
relative to the spec's folder, and a missing SQLite file is an error (SQLite
would otherwise create an empty database). The URL is only ever shown with its
password masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle import extras, redact
from mlcycle.data.source import (
    OrdinalType,
    Source,
    convert_bound,
    did_you_mean,
    listing,
    ordinal_type_of_value,
)
from mlcycle.data.window import Window, plain_value
from mlcycle.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    from sqlalchemy.engine import URL, Connection, Engine

# Driver modules whose pip package has another name.
DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "cx_Oracle": "cx-Oracle",
}

# Keys per IN (...) list: below every database's limit on bound parameters.
IN_CHUNK = 500


def mask_url(url: str) -> str:
    """The URL with its credentials masked (`mlcycle.redact.mask_url`)."""
    return redact.mask_url(url)


class SqlSource(Source):
    """A table or query at a SQLAlchemy URL; `root` anchors relative SQLite paths."""

    kind = "sql"

    def __init__(
        self,
        url: str,
        *,
        root: Path,
        table: str | None = None,
        query: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        if not table and not query:
            raise DataError(
                f"{mask_url(url)}: the source names neither a table nor a query",
                hint="add `table: NAME` or `query: SELECT ...` under the source",
            )
        self.url = url
        self.masked = mask_url(url)
        self.table = table
        self.query = query.strip().rstrip(";").strip() if query else None
        self.params = dict(params or {})
        self._engine = _engine(url, root=root, masked=self.masked)
        self._connection: Connection | None = None
        self._columns: list[str] | None = None

    @property
    def location(self) -> str:
        """The URL as written, password masked."""
        return self.masked

    def describe(self) -> str:
        """`URL table NAME` or `URL query`."""
        return f"{self.masked} table {self.table}" if self.table else f"{self.masked} query"

    def close(self) -> None:
        """Close the connection and the engine's pool."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._engine.dispose()

    # --- statements ------------------------------------------------------------------

    def _from(self, columns: Sequence[str]) -> Any:
        try:
            return from_clause(self.table, self.query, self.params, columns)
        except ValueError as e:
            raise DataError(
                f"{self.describe()}: {e}",
                hint="every key of `params` must be a :placeholder in the query",
            ) from e

    # --- execution -------------------------------------------------------------------

    def _connect(self) -> Connection:
        if self._connection is None:
            try:
                self._connection = self._engine.connect()
            except Exception as e:
                raise DataError(
                    f"cannot connect to {self.masked}: {redact.scrub(_db_message(e), self.url)}",
                    hint="check the URL, the server and the credentials",
                ) from e
        return self._connection

    def _execute(self, statement: Any, what: str) -> Any:
        connection = self._connect()
        try:
            return connection.execute(statement)
        except DataError:
            raise
        except Exception as e:
            connection.rollback()
            raise DataError(
                f"{self.describe()}: {what} failed: {_db_message(e)}",
                hint="check the query, the table and the column names",
            ) from e

    def _check_table(self) -> None:
        if not self.table:
            return
        import sqlalchemy as sa

        connection = self._connect()
        schema, _, name = self.table.rpartition(".")
        try:
            inspector = sa.inspect(connection)
            if inspector.has_table(name, schema=schema or None):
                return
            known = inspector.get_table_names(schema=schema or None)
            known += inspector.get_view_names(schema=schema or None)
        except DataError:
            raise
        except Exception as e:
            raise DataError(
                f"{self.describe()}: cannot list tables: {_db_message(e)}",
            ) from e
        raise DataError(
            f"{self.masked}: no table '{self.table}'{did_you_mean(name, known)}",
            hint=f"tables there: {listing(sorted(known))}"
            if known
            else "the database has no tables",
        )

    def columns(self) -> list[str]:
        """Column names from an empty result (`LIMIT 0`): works for tables, views and queries."""
        if self._columns is None:
            import sqlalchemy as sa

            self._check_table()
            source = self._from([])
            probe: Any = sa.select(sa.literal_column("*")).select_from(source).limit(0)
            result = self._execute(probe, "reading the columns")
            self._columns = [str(k) for k in result.keys()]  # noqa: SIM118 - a Result, not a dict
            result.close()
        return self._columns

    def ordinal_type(self, ordinal: str) -> OrdinalType:
        """Judged from one non-null value of the column (SQL types vary too much by dialect)."""
        import sqlalchemy as sa

        source = self._from([ordinal])
        column = source.c[ordinal]
        statement = sa.select(column).select_from(source).where(column.is_not(None)).limit(1)
        result = self._execute(statement, f"reading column {ordinal}")
        row = result.first()
        return ordinal_type_of_value(None if row is None else row[0])

    def read(
        self,
        columns: Sequence[str],
        *,
        ordinal: str | None = None,
        window: Window = Window(),
        where_in: tuple[str, Sequence[Any]] | None = None,
    ) -> pd.DataFrame:
        """SELECT the columns of the rows in `window`; IN lists go in chunks."""
        import pandas as pd
        import sqlalchemy as sa

        needed = list(dict.fromkeys([*columns, *([ordinal] if ordinal else [])]))
        source = self._from(needed)
        statement = sa.select(*[source.c[c] for c in columns]).select_from(source)
        if ordinal is not None and not window.unbounded:
            window = self._converted(ordinal, window)
            statement = statement.where(*window_clauses(source, ordinal, window))
        if where_in is None:
            return self._frame(statement, columns)
        key, values = where_in
        unique = list(dict.fromkeys(_bindable(v) for v in values))
        frames = [
            self._frame(statement.where(source.c[key].in_(unique[i : i + IN_CHUNK])), columns)
            for i in range(0, len(unique), IN_CHUNK)
        ]
        if not frames:
            return pd.DataFrame({c: [] for c in columns})
        return pd.concat(frames, ignore_index=True)

    def count(self, ordinal: str, window: Window) -> int:
        """SELECT count(*) over the window."""
        import sqlalchemy as sa

        source = self._from([ordinal])
        statement = sa.select(sa.func.count()).select_from(source)
        if not window.unbounded:
            window = self._converted(ordinal, window)
            statement = statement.where(*window_clauses(source, ordinal, window))
        result = self._execute(statement, "counting rows")
        return int(result.scalar_one())

    def _converted(self, ordinal: str, window: Window) -> Window:
        """Bounds given as strings become the column's type (one small query to learn it)."""
        if not isinstance(window.lower, str) and not isinstance(window.upper, str):
            return window
        kind = self.ordinal_type(ordinal)
        return Window(
            convert_bound(window.lower, kind),
            convert_bound(window.upper, kind),
            window.lower_inclusive,
        )

    def _frame(self, statement: Any, columns: Sequence[str]) -> pd.DataFrame:
        import pandas as pd

        result = self._execute(statement, "the query")
        try:
            # Straight from the DB-API cursor: the columns carry no SQLAlchemy types, so Row
            # objects would add nothing but cost (pandas probes each one; 2-3x slower).
            cursor = getattr(result, "cursor", None)
            rows = cursor.fetchall() if cursor is not None else result.fetchall()
        except Exception as e:
            raise DataError(f"{self.describe()}: reading rows failed: {_db_message(e)}") from e
        finally:
            result.close()
        return pd.DataFrame.from_records(rows, columns=list(columns), coerce_float=True)


def from_clause(
    table: str | None, query: str | None, params: dict[str, Any], columns: Sequence[str]
) -> Any:
    """The FROM object: the table (`schema.name` allowed), or the query as subquery `src`.

    `columns` are the names later statements refer to. ValueError when `params`
    names a placeholder the query lacks.
    """
    import sqlalchemy as sa

    cols: list[Any] = [sa.column(c) for c in columns]
    if table:
        schema, _, name = table.rpartition(".")
        return sa.table(name, *cols, schema=schema or None)
    text = sa.text(query or "")
    if params:
        try:
            text = text.bindparams(**params)
        except sa.exc.ArgumentError as e:
            raise ValueError(str(e)) from e
    return text.columns(*cols).subquery("src")


def window_clauses(source: Any, ordinal: str, window: Window) -> list[Any]:
    """WHERE clauses of `window` on `source.c[ordinal]`, bounds as bound parameters."""
    column = source.c[ordinal]
    clauses = []
    if window.lower is not None:
        lower = _parameter("mlcycle_lower", window.lower)
        clauses.append(column >= lower if window.lower_inclusive else column > lower)
    if window.upper is not None:
        clauses.append(column < _parameter("mlcycle_upper", window.upper))
    return clauses


def _parameter(name: str, value: Any) -> Any:
    """A bound parameter; an aware timestamp keeps its zone (PostgreSQL casts binds by type)."""
    import datetime as dt

    import sqlalchemy as sa

    value = _bindable(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return sa.bindparam(name, value, type_=sa.DateTime(timezone=True))
    return sa.bindparam(name, value)


def _engine(url: str, *, root: Path, masked: str) -> Engine:
    """An engine for `url`; relative SQLite paths resolved against `root`."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed: URL = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise DataError(
            f"{masked}: not a database URL",
            hint="write it as DIALECT[+DRIVER]://USER:PASSWORD@HOST/DB, e.g. sqlite:///data.db",
        ) from e
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            if not path.is_absolute():
                path = root / path
            if not path.is_file():
                raise DataError(
                    f"{masked}: no such SQLite database file ({path})",
                    hint="check the URL; relative SQLite paths start at the spec's folder",
                )
            parsed = parsed.set(database=str(path))
    try:
        return create_engine(parsed)
    except NoSuchModuleError as e:
        raise DataError(
            f"{masked}: unknown database dialect or driver '{parsed.drivername}'",
            hint="use a SQLAlchemy URL such as sqlite:///data.db or postgresql://host/db",
        ) from e
    except ImportError as e:
        module = getattr(e, "name", None) or str(e)
        extra = extras.for_module(module)
        if extra is not None:
            raise extras.MissingExtraError(extra, what=masked) from e
        package = DRIVER_PACKAGES.get(module, module)
        raise DataError(
            f"{masked}: the database driver '{module}' is not installed",
            hint=f"install it (pip install {package}) or name another driver in the URL",
        ) from e
    except Exception as e:  # bad arguments in the URL's query string, …
        raise DataError(f"{masked}: cannot use this URL: {_db_message(e)}") from e


def _bindable(value: Any) -> Any:
    """A bound value the DB-API drivers accept: plain Python, timestamps as `datetime`."""
    value = plain_value(value)
    to_pydatetime = getattr(value, "to_pydatetime", None)
    if callable(to_pydatetime):
        return to_pydatetime()
    return value


def _db_message(error: BaseException) -> str:
    """The driver's own message, first line only (SQLAlchemy appends SQL and a link)."""
    original = getattr(error, "orig", None)
    text = str(original if original is not None else error).strip()
    return text.splitlines()[0] if text else type(error).__name__
