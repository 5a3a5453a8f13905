"""Data sources made in tmp_path (SQLite, CSV, Parquet) or on a real PostgreSQL server,
the specs that read them, a frame maker."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlcycle.spec.model import Spec

LIFECYCLE = {
    "data_access": "programmatic",
    "procurement": "unattended",
    "update": "autonomous",
    "deployment": "dynamic",
    "liaison": "joint",
}


def events(first: int, last: int, *, shuffle: bool = True) -> pd.DataFrame:
    """Rows with seq first..last: id = 10*seq, features derived from seq, a 0/1 label.

    Stored shuffled, so tests see that fetched rows come back ordered by seq.
    """
    seq = list(range(first, last + 1))
    frame = pd.DataFrame(
        {
            "id": [10 * s for s in seq],
            "seq": seq,
            "ts": [pd.Timestamp("2024-01-01") + pd.Timedelta(hours=s) for s in seq],
            "f1": [s * 0.5 for s in seq],
            "f2": [s % 7 for s in seq],
            "colour": [("red", "green", "blue")[s % 3] for s in seq],
            "label": [s % 2 for s in seq],
        }
    )
    if shuffle:
        frame = frame.sample(frac=1.0, random_state=first).reset_index(drop=True)
    return frame


def outcomes_frame() -> pd.DataFrame:
    return pd.DataFrame({"event": [10, 20, 30, 40], "truth": [1, 0, 1, 1]})


def make_spec(root: Path, data: Mapping[str, Any], *, data_access: str = "programmatic") -> Spec:
    """A typed spec whose data section is `data`."""
    doc = {
        "apiVersion": "mlcycle/v1",
        "name": "events",
        "lifecycle": {**LIFECYCLE, "data_access": data_access},
        "data": dict(data),
        "model": {"pipeline": ["sklearn.linear_model.LogisticRegression"]},
    }
    return Spec.from_document(doc, root=root)


@dataclass
class Backend:
    """Writes frames to one kind of source and says how the spec names it."""

    root: Path

    def source(self, ordinal: str = "seq") -> dict[str, Any]:
        raise NotImplementedError

    def outcomes(self) -> dict[str, Any]:
        raise NotImplementedError

    def write(self, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def append(self, frame: pd.DataFrame) -> None:
        raise NotImplementedError

    def spec(self, ordinal: str = "seq", **data: Any) -> Spec:
        fields: dict[str, Any] = {
            "source": self.source(ordinal),
            "label": "label",
            "key": "id",
            "outcomes": {**self.outcomes(), "key": "event", "outcome": "truth"},
        }
        fields.update(data)
        return make_spec(self.root, fields)


class SqliteBackend(Backend):
    """A table `events` in data/events.db, named by a relative URL (relative to the spec)."""

    table = "events"

    @property
    def path(self) -> Path:
        return self.root / "data" / "events.db"

    def source(self, ordinal: str = "seq") -> dict[str, Any]:
        return {"url": "sqlite:///data/events.db", "table": self.table, "ordinal": ordinal}

    def outcomes(self) -> dict[str, Any]:
        return {"url": "sqlite:///data/events.db", "table": "outcomes"}

    def _store(self, frame: pd.DataFrame, if_exists: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        stored = frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))
        db = sqlite3.connect(self.path)
        try:
            stored.to_sql("events", db, if_exists=if_exists, index=False)
            if if_exists == "replace":
                outcomes_frame().to_sql("outcomes", db, if_exists="replace", index=False)
            db.commit()
        finally:
            db.close()

    def write(self, frame: pd.DataFrame) -> None:
        self._store(frame, "replace")

    def append(self, frame: pd.DataFrame) -> None:
        self._store(frame, "append")


class SqliteQueryBackend(SqliteBackend):
    """The same database read through a parameterised query instead of a table."""

    def source(self, ordinal: str = "seq") -> dict[str, Any]:
        return {
            "url": "sqlite:///data/events.db",
            "query": "SELECT * FROM events WHERE id >= :min_id;",
            "params": {"min_id": 0},
            "ordinal": ordinal,
        }


class PostgresBackend(Backend):
    """A table `events` (timestamps as TIMESTAMP) in a database of its own on a real server.

    `url` is set by the test class from the `postgres_url` fixture.
    """

    url = ""

    def source(self, ordinal: str = "seq") -> dict[str, Any]:
        return {"url": self.url, "table": "events", "ordinal": ordinal}

    def outcomes(self) -> dict[str, Any]:
        return {"url": self.url, "table": "outcomes"}

    def _store(self, frame: pd.DataFrame, if_exists: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url)
        try:
            with engine.begin() as conn:
                frame.to_sql("events", conn, if_exists=if_exists, index=False)
                if if_exists == "replace":
                    outcomes_frame().to_sql("outcomes", conn, if_exists="replace", index=False)
        finally:
            engine.dispose()

    def write(self, frame: pd.DataFrame) -> None:
        self._store(frame, "replace")

    def append(self, frame: pd.DataFrame) -> None:
        self._store(frame, "append")


class PostgresQueryBackend(PostgresBackend):
    """The same database read through a parameterised query instead of a table."""

    def source(self, ordinal: str = "seq") -> dict[str, Any]:
        return {
            "url": self.url,
            "query": "SELECT * FROM events WHERE id >= :min_id",
            "params": {"min_id": 0},
            "ordinal": ordinal,
        }


class CsvBackend(Backend):
    """data/events.csv, timestamps written as ISO text."""

    @property
    def path(self) -> Path:
        return self.root / "data" / "events.csv"

    def source(self, ordinal: str = "seq") -> dict[str, Any]:
        return {"path": "data/events.csv", "ordinal": ordinal}

    def outcomes(self) -> dict[str, Any]:
        return {"path": "data/outcomes.csv"}

    def write(self, frame: pd.DataFrame) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(self.path, index=False)
        outcomes_frame().to_csv(self.root / "data" / "outcomes.csv", index=False)

    def append(self, frame: pd.DataFrame) -> None:
        frame.to_csv(self.path, index=False, header=False, mode="a")


class ParquetBackend(Backend):
    """data/events.pq (format from `format:`, the suffix says nothing), small row groups."""

    @property
    def path(self) -> Path:
        return self.root / "data" / "events.pq"

    def source(self, ordinal: str = "seq") -> dict[str, Any]:
        return {"path": "data/events.pq", "format": "parquet", "ordinal": ordinal}

    def outcomes(self) -> dict[str, Any]:
        return {"path": "data/outcomes.parquet"}

    def write(self, frame: pd.DataFrame) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), self.path, row_group_size=16
        )
        outcomes_frame().to_parquet(self.root / "data" / "outcomes.parquet", index=False)

    def append(self, frame: pd.DataFrame) -> None:
        # Parquet files are immutable: appending means rewriting with the new rows at the end.
        old = pq.read_table(self.path).to_pandas()
        self.write(pd.concat([old, frame], ignore_index=True))
