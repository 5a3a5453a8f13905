"""The prediction store: every served prediction, the true outcomes, and their join.

Any SQLAlchemy URL works; the default is a SQLite file, opened in WAL mode with a
busy timeout so that several worker processes can write to it at once. Two tables:

- ``predictions``: id, model, release, generation, created_at (epoch seconds),
  inputs (JSON object), prediction (JSON), probabilities (JSON array or NULL);
- ``outcomes``: prediction_id, outcome (JSON), recorded_at.

Two small tables keep the rewards that bandit selectors learn from, so that they
survive a restart: ``arm_rewards`` (per model: evaluated predictions and the sum of
their rewards) and ``reward_cursor`` (how far into the outcomes those totals reach).

A prediction mirrored to a shadow model is logged with the id `shadow_id(ID, K)`
(`ID-sK`), where ID is the id returned to the client: its outcome, fed back for ID,
evaluates the shadow's prediction too (`evaluated_since` joins both).

The serving engine never writes on the request path: it hands batches to a
`PredictionLog`, whose writer process inserts them in one transaction every
`interval` seconds and flushes on close. Outcomes are written synchronously because
the caller wants to know which ids were accepted, unknown or duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle import extras
from mlcycle.errors import ServingError
from mlcycle.redact import mask_url, scrub
from mlcycle.spec.model import Retention

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

_CHUNK = 500
"""Ids per IN (...) query: far below every database's parameter limit."""

PRUNE_EVERY = 300.0
"""Seconds between two retention passes of the log writer."""

PREDICTION_COLUMNS = (
    "id",
    "model",
    "release",
    "generation",
    "created_at",
    "inputs",
    "prediction",
    "probabilities",
    "event_key",
)

_PLACEHOLDERS = {
    "qmark": lambda i: "?",
    "format": lambda i: "%s",
    "numeric": lambda i: f":{i + 1}",
    "named": lambda i: f":p{i}",
    "pyformat": lambda i: f"%(p{i})s",
}


def _insert_sql(paramstyle: str) -> str:
    """An INSERT of one prediction row in the driver's own parameter style."""
    marks = [
        _PLACEHOLDERS.get(paramstyle, _PLACEHOLDERS["qmark"])(i)
        for i in range(len(PREDICTION_COLUMNS))
    ]
    return f"INSERT INTO predictions ({', '.join(PREDICTION_COLUMNS)}) VALUES ({', '.join(marks)})"


@dataclass(frozen=True)
class PredictionRecord:
    """One served prediction."""

    id: str
    model: str
    release: str | None
    generation: int | None
    created_at: float
    inputs: Mapping[str, Any]
    prediction: Any
    probabilities: Sequence[float] | None = None
    event_key: str | None = None


@dataclass(frozen=True)
class OutcomeReport:
    """What became of the outcomes of one feedback call, by prediction id."""

    accepted: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    duplicate: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every outcome was accepted."""
        return not self.unknown and not self.duplicate

    def as_dict(self) -> dict[str, Any]:
        """The JSON body of a feedback response."""
        return {
            "ok": self.ok,
            "accepted": list(self.accepted),
            "unknown": list(self.unknown),
            "duplicate": list(self.duplicate),
        }


@dataclass(frozen=True)
class JoinedRow:
    """A prediction with its true outcome (None when none arrived yet)."""

    id: str
    model: str
    release: str | None
    generation: int | None
    created_at: float
    inputs: Mapping[str, Any]
    prediction: Any
    probabilities: Sequence[float] | None
    outcome: Any = None
    recorded_at: float | None = None


@dataclass(frozen=True)
class StoreCounts:
    """How many predictions and outcomes the store holds (for a filter)."""

    predictions: int
    outcomes: int


@dataclass(frozen=True)
class EvaluatedRow:
    """A prediction (served or mirrored to a shadow) whose outcome arrived, for rewards."""

    id: str
    model: str
    release: str | None
    generation: int | None
    prediction: Any
    outcome: Any
    recorded_at: float
    outcome_id: str
    """The id the outcome was recorded for (equals `id` unless this row is a shadow's)."""


@dataclass(frozen=True)
class PruneReport:
    """What one pass of the retention policy removed (and what it had to keep)."""

    predictions: int = 0
    """Prediction rows deleted (shadow rows included)."""
    outcomes: int = 0
    """Outcome rows deleted with their predictions."""
    kept_pending: int = 0
    """Rows above `retention.rows` kept because, inside `retention.age`, they still wait
    for an outcome (or for the reward totals to count it)."""

    def as_dict(self) -> dict[str, int]:
        """A JSON-ready description."""
        return {
            "predictions": self.predictions,
            "outcomes": self.outcomes,
            "kept_pending": self.kept_pending,
        }


@dataclass(frozen=True)
class ArmTotals:
    """The reward totals of one model, as kept in ``arm_rewards``."""

    arm: str
    model: str
    release: str | None
    generation: int | None
    evaluated: int
    reward: float


Cursor = tuple[float, str]
"""A position in the outcomes: (recorded_at, prediction_id) of the last one counted."""

SHADOW_SEPARATOR = "-s"


def shadow_id(primary: str, k: int) -> str:
    """The id of the prediction shadow model number `k` (1, 2, ...) made for `primary`."""
    return f"{primary}{SHADOW_SEPARATOR}{k}"


@dataclass
class _Tables:
    predictions: Any
    outcomes: Any
    metadata: Any = field(repr=False)
    arm_rewards: Any = None
    reward_cursor: Any = None


def _tables() -> _Tables:
    import sqlalchemy as sa

    metadata = sa.MetaData()
    predictions = sa.Table(
        "predictions",
        metadata,
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("release", sa.String(100)),
        sa.Column("generation", sa.Integer),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("prediction", sa.Text, nullable=False),
        sa.Column("probabilities", sa.Text),
        # The request's key of the case predicted (optional): joins the spec's outcomes source.
        sa.Column("event_key", sa.String(200), index=True),
    )
    outcomes = sa.Table(
        "outcomes",
        metadata,
        sa.Column("prediction_id", sa.String(40), primary_key=True),
        sa.Column("outcome", sa.Text, nullable=False),
        # Indexed for the reward reader, which takes outcomes in the order they arrived.
        sa.Column("recorded_at", sa.Float, nullable=False, index=True),
    )
    arm_rewards = sa.Table(
        "arm_rewards",
        metadata,
        sa.Column("arm", sa.String(400), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("release", sa.String(100)),
        sa.Column("generation", sa.Integer),
        sa.Column("evaluated", sa.Integer, nullable=False),
        sa.Column("reward", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    reward_cursor = sa.Table(
        "reward_cursor",
        metadata,
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("recorded_at", sa.Float, nullable=False),
        sa.Column("prediction_id", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    return _Tables(
        predictions=predictions,
        outcomes=outcomes,
        metadata=metadata,
        arm_rewards=arm_rewards,
        reward_cursor=reward_cursor,
    )


def _dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _loads(text: str | None) -> Any:
    import orjson

    return None if text is None else orjson.loads(text)


class PredictionStore:
    """Predictions and outcomes in a SQL database (see the module docstring)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        import sqlalchemy as sa

        self.url = url
        self._tables = _tables()
        try:
            self.engine: Engine = _engine(url)
            self._insert_sql = _insert_sql(self.engine.dialect.paramstyle)
            if create:
                self._create()
        except sa.exc.SQLAlchemyError as e:
            raise ServingError(
                f"cannot open the prediction store {mask_url(url)}: {scrub(str(e), url)}"
            ) from e

    def _create(self) -> None:
        import sqlalchemy as sa

        # Several workers may start at once; whoever loses the race to create a table
        # finds it there on the second try.
        for attempt in range(3):
            try:
                self._tables.metadata.create_all(self.engine)
                self._upgrade()
                return
            except sa.exc.OperationalError:
                if attempt == 2:
                    raise
                time.sleep(0.1 * (attempt + 1))

    def _upgrade(self) -> None:
        """Add what a store made by an older mlcycle lacks (the event_key column)."""
        import sqlalchemy as sa

        columns = {c["name"] for c in sa.inspect(self.engine).get_columns("predictions")}
        if "event_key" not in columns:
            with self.engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE predictions ADD COLUMN event_key VARCHAR(200)"))
                conn.execute(
                    sa.text("CREATE INDEX ix_predictions_event_key ON predictions (event_key)")
                )

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # --- writing -----------------------------------------------------------------------

    def log_predictions(self, records: Iterable[PredictionRecord]) -> int:
        """Write `records` in one transaction; returns how many were written."""
        rows = [
            (
                r.id,
                r.model,
                r.release,
                r.generation,
                r.created_at,
                _dumps(dict(r.inputs)),
                _dumps(r.prediction),
                None if r.probabilities is None else _dumps(r.probabilities),
                r.event_key,
            )
            for r in records
        ]
        return self.insert_rows(rows)

    def insert_rows(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert prediction rows (tuples in `PREDICTION_COLUMNS` order); skips known ids.

        Goes straight to the driver's executemany: through SQLAlchemy's parameter
        processing a row costs ~17 us, through the driver ~3 us, and this runs beside
        the event loop in the same process.
        """
        import sqlalchemy as sa

        if not rows:
            return 0
        try:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(self._insert_sql, self._driver_rows(rows))
            return len(rows)
        except sa.exc.IntegrityError:
            pass
        # An id already stored (a retried batch): keep the ones that are new.
        with self.engine.begin() as conn:
            known = self._existing(conn, self._tables.predictions.c.id, [r[0] for r in rows])
            fresh = [r for r in rows if r[0] not in known]
            if fresh:
                conn.exec_driver_sql(self._insert_sql, self._driver_rows(fresh))
        return len(fresh)

    def _driver_rows(self, rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """`rows` as the driver takes them: tuples, or mappings for named parameter styles
        (psycopg's, for one, is `pyformat`: `%(p0)s` takes a mapping, never a tuple)."""
        if self.engine.dialect.paramstyle in ("named", "pyformat"):
            names = [f"p{i}" for i in range(len(PREDICTION_COLUMNS))]
            return [dict(zip(names, row, strict=True)) for row in rows]
        return list(rows)

    def record_outcomes(self, outcomes: Iterable[tuple[str, Any]]) -> OutcomeReport:
        """Store true outcomes by prediction id; report accepted, unknown and duplicate ids.

        An id is unknown when no prediction has it, duplicate when it already has an
        outcome (the first one stays) or appears twice in `outcomes`.
        """
        import sqlalchemy as sa

        items = list(outcomes)
        for attempt in range(5):
            try:
                return self._record(items)
            except sa.exc.IntegrityError:
                # Another process stored an outcome for one of these ids between our
                # check and our insert: check again, it now counts as a duplicate.
                time.sleep(0.01 * (attempt + 1))
            except sa.exc.SQLAlchemyError as e:
                raise ServingError(
                    f"cannot record outcomes in the store: {scrub(str(e), self.url)}"
                ) from e
        raise ServingError("cannot record outcomes: the store keeps changing under us")

    def _record(self, items: list[tuple[str, Any]]) -> OutcomeReport:
        tables = self._tables
        ids = [pid for pid, _ in items]
        now = time.time()
        with self.engine.begin() as conn:
            known = self._existing(conn, tables.predictions.c.id, ids)
            answered = self._existing(conn, tables.outcomes.c.prediction_id, ids)
            accepted: list[str] = []
            unknown: list[str] = []
            duplicate: list[str] = []
            rows = []
            seen: set[str] = set()
            for pid, outcome in items:
                if pid not in known:
                    unknown.append(pid)
                elif pid in answered or pid in seen:
                    duplicate.append(pid)
                else:
                    seen.add(pid)
                    accepted.append(pid)
                    rows.append(
                        {"prediction_id": pid, "outcome": _dumps(outcome), "recorded_at": now}
                    )
            if rows:
                conn.execute(tables.outcomes.insert(), rows)
        return OutcomeReport(tuple(accepted), tuple(unknown), tuple(duplicate))

    @staticmethod
    def _existing(conn: Any, column: Any, ids: Sequence[str]) -> set[str]:
        import sqlalchemy as sa

        found: set[str] = set()
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            found.update(conn.execute(sa.select(column).where(column.in_(chunk))).scalars())
        return found

    # --- reading -----------------------------------------------------------------------

    def joined(
        self,
        *,
        model: str | None = None,
        release: str | None = None,
        generation: int | None = None,
        since: float | None = None,
        until: float | None = None,
        with_outcome: bool = True,
        limit: int | None = None,
    ) -> list[JoinedRow]:
        """Predictions joined to their outcomes, oldest first.

        `with_outcome=True` (the default) keeps only predictions that have an outcome;
        False keeps every prediction (outcome None when missing). `since`/`until` bound
        `created_at` (epoch seconds, `since` inclusive, `until` exclusive).
        """
        import sqlalchemy as sa

        p, o = self._tables.predictions, self._tables.outcomes
        join = p.join(o, o.c.prediction_id == p.c.id, isouter=not with_outcome)
        query = sa.select(p, o.c.outcome, o.c.recorded_at).select_from(join)
        query = self._filter(query, model, release, generation, since, until)
        query = query.order_by(p.c.created_at, p.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            result = conn.execute(query).mappings().all()
        return [
            JoinedRow(
                id=r["id"],
                model=r["model"],
                release=r["release"],
                generation=r["generation"],
                created_at=r["created_at"],
                inputs=_loads(r["inputs"]),
                prediction=_loads(r["prediction"]),
                probabilities=_loads(r["probabilities"]),
                outcome=_loads(r["outcome"]),
                recorded_at=r["recorded_at"],
            )
            for r in result
        ]

    def unmatched_keys(self, limit: int = 100_000) -> list[tuple[str, str]]:
        """(prediction id, event key) of predictions that carry a key but no outcome yet."""
        import sqlalchemy as sa

        p, o = self._tables.predictions, self._tables.outcomes
        query = (
            sa.select(p.c.id, p.c.event_key)
            .select_from(p.outerjoin(o, o.c.prediction_id == p.c.id))
            .where(p.c.event_key.is_not(None), o.c.prediction_id.is_(None))
            .order_by(p.c.created_at)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(str(r[0]), str(r[1])) for r in conn.execute(query)]

    def counts(
        self,
        *,
        model: str | None = None,
        release: str | None = None,
        generation: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> StoreCounts:
        """How many predictions match the filter, and how many of them have an outcome."""
        import sqlalchemy as sa

        p, o = self._tables.predictions, self._tables.outcomes
        total = self._filter(
            sa.select(sa.func.count()).select_from(p), model, release, generation, since, until
        )
        answered = self._filter(
            sa.select(sa.func.count()).select_from(p.join(o, o.c.prediction_id == p.c.id)),
            model,
            release,
            generation,
            since,
            until,
        )
        with self.engine.connect() as conn:
            return StoreCounts(
                predictions=int(conn.execute(total).scalar_one()),
                outcomes=int(conn.execute(answered).scalar_one()),
            )

    # --- rewards ---------------------------------------------------------------------

    def evaluated_since(
        self, after: Cursor | None, *, until: float, limit: int = 5000
    ) -> tuple[list[EvaluatedRow], Cursor | None]:
        """Predictions whose outcome was recorded after `after` and before `until`.

        Outcomes are taken in (recorded_at, prediction_id) order, at most `limit` of
        them; the rows are their predictions plus the shadow predictions mirrored from
        them. Returns the rows and the cursor of the last outcome taken (None when there
        was none).
        """
        import sqlalchemy as sa

        p, o = self._tables.predictions, self._tables.outcomes
        window = [o.c.recorded_at < until]
        if after is not None:
            window.append(
                sa.or_(
                    o.c.recorded_at > after[0],
                    sa.and_(o.c.recorded_at == after[0], o.c.prediction_id > after[1]),
                )
            )
        # The same columns for served rows and their shadows.
        columns = (
            p.c.id,
            p.c.model,
            p.c.release,
            p.c.generation,
            p.c.prediction,
            o.c.outcome,
            o.c.recorded_at,
            o.c.prediction_id,
        )
        served = (
            sa.select(*columns)
            .select_from(p.join(o, o.c.prediction_id == p.c.id))
            .where(*window)
            .order_by(o.c.recorded_at, o.c.prediction_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(served).all()
            if not rows:
                return [], None
            last = rows[-1]
            cursor: Cursor = (float(last.recorded_at), str(last.prediction_id))
            # The shadows of those outcomes: ids in [ID + "-", ID + "."), which the
            # primary-key index answers as a range.
            upto = sa.or_(
                o.c.recorded_at < cursor[0],
                sa.and_(o.c.recorded_at == cursor[0], o.c.prediction_id <= cursor[1]),
            )
            shadows = (
                sa.select(*columns)
                .select_from(
                    p.join(
                        o,
                        sa.and_(
                            p.c.id > o.c.prediction_id + SHADOW_SEPARATOR[0],
                            p.c.id < o.c.prediction_id + chr(ord(SHADOW_SEPARATOR[0]) + 1),
                        ),
                    )
                )
                .where(*window, upto)
            )
            rows = [*rows, *conn.execute(shadows).all()]
        return [
            EvaluatedRow(
                id=r.id,
                model=r.model,
                release=r.release,
                generation=r.generation,
                prediction=_loads(r.prediction),
                outcome=_loads(r.outcome),
                recorded_at=float(r.recorded_at),
                outcome_id=r.prediction_id,
            )
            for r in rows
        ], cursor

    def reward_cursor(self, name: str = "rewards") -> tuple[Cursor | None, float | None]:
        """How far the reward totals reach into the outcomes, and when they last moved.

        (None, None) before the first outcome was counted.
        """
        import sqlalchemy as sa

        c = self._tables.reward_cursor
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(c.c.recorded_at, c.c.prediction_id, c.c.updated_at).where(
                    c.c.name == name
                )
            ).first()
        if row is None:
            return None, None
        return (float(row[0]), str(row[1])), float(row[2])

    def arm_totals(self) -> list[ArmTotals]:
        """The reward totals of every model."""
        import sqlalchemy as sa

        t = self._tables.arm_rewards
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).order_by(t.c.arm)).mappings().all()
        return [
            ArmTotals(
                arm=r["arm"],
                model=r["model"],
                release=r["release"],
                generation=r["generation"],
                evaluated=int(r["evaluated"]),
                reward=float(r["reward"]),
            )
            for r in rows
        ]

    def add_rewards(
        self,
        deltas: Sequence[ArmTotals],
        *,
        old: Cursor | None,
        new: Cursor,
        name: str = "rewards",
    ) -> bool:
        """Add `deltas` to the totals and move the cursor from `old` to `new`, atomically.

        Compare-and-set: when another process moved the cursor since `old` was read,
        nothing changes and the result is False (read again and retry). So several
        workers may share one store without counting an outcome twice.
        """
        import sqlalchemy as sa

        c, t = self._tables.reward_cursor, self._tables.arm_rewards
        now = time.time()
        try:
            with self.engine.begin() as conn:
                if old is None:
                    # Raises IntegrityError when another process inserted it first.
                    conn.execute(
                        c.insert().values(
                            name=name, recorded_at=new[0], prediction_id=new[1], updated_at=now
                        )
                    )
                else:
                    moved = conn.execute(
                        c.update()
                        .where(
                            c.c.name == name,
                            c.c.recorded_at == old[0],
                            c.c.prediction_id == old[1],
                        )
                        .values(recorded_at=new[0], prediction_id=new[1], updated_at=now)
                    )
                    if moved.rowcount != 1:
                        return False
                for delta in deltas:
                    changed = conn.execute(
                        t.update()
                        .where(t.c.arm == delta.arm)
                        .values(
                            evaluated=t.c.evaluated + delta.evaluated,
                            reward=t.c.reward + delta.reward,
                            updated_at=now,
                        )
                    )
                    if changed.rowcount == 0:
                        conn.execute(
                            t.insert().values(
                                arm=delta.arm,
                                model=delta.model,
                                release=delta.release,
                                generation=delta.generation,
                                evaluated=delta.evaluated,
                                reward=delta.reward,
                                updated_at=now,
                            )
                        )
        except sa.exc.IntegrityError:
            return False
        except sa.exc.SQLAlchemyError as e:
            raise ServingError(
                f"cannot update the reward totals in the store: {scrub(str(e), self.url)}"
            ) from e
        return True

    # --- retention -------------------------------------------------------------------

    def prune(self, retention: Retention, *, now: float | None = None) -> PruneReport:
        """Apply `retention` (see `mlcycle.spec.model.Retention`): delete old predictions.

        By age first: every prediction created before `now - age` goes, with its
        outcome. Then by rows: while more than `rows` predictions remain, the oldest
        that have an outcome go (with their shadows), and, only when no `age` is set,
        the oldest of the rest. An outcome the bandit's reward totals have not counted
        yet (it is past the reward cursor) keeps its prediction, so pruning never
        takes a reward away from a selector. Deletes in small transactions, so the
        log writer and feedback are never held up for long.
        """
        import sqlalchemy as sa

        if not retention.active:
            return PruneReport()
        now = time.time() if now is None else now
        p, o = self._tables.predictions, self._tables.outcomes
        deleted = [0, 0]
        try:
            if retention.age is not None:
                old = sa.select(p.c.id).where(p.c.created_at < now - retention.age)
                self._delete_batches(old.order_by(p.c.created_at), deleted, shadows=False)
            kept = 0
            if retention.rows is not None:
                cursor, _ = self.reward_cursor()
                scored = sa.select(p.c.id).select_from(p.join(o, o.c.prediction_id == p.c.id))
                if cursor is not None:  # at or before the cursor, as `evaluated_since` orders
                    scored = scored.where(
                        sa.or_(
                            o.c.recorded_at < cursor[0],
                            sa.and_(o.c.recorded_at == cursor[0], o.c.prediction_id <= cursor[1]),
                        )
                    )
                excess = self._count() - retention.rows
                if excess > 0:
                    self._delete_batches(
                        scored.order_by(p.c.created_at), deleted, shadows=True, limit=excess
                    )
                    excess = self._count() - retention.rows
                if excess > 0 and retention.age is None:
                    oldest = sa.select(p.c.id).order_by(p.c.created_at)
                    self._delete_batches(oldest, deleted, shadows=True, limit=excess)
                    excess = self._count() - retention.rows
                kept = max(0, excess)
        except sa.exc.SQLAlchemyError as e:
            raise ServingError(
                f"cannot prune the prediction store: {scrub(str(e), self.url)}"
            ) from e
        if deleted[0]:
            log.info("retention: pruned %d predictions and %d outcomes", deleted[0], deleted[1])
        if kept:
            log.info(
                "retention: %d predictions over the rows limit stay: they wait for outcomes "
                "inside the age limit",
                kept,
            )
        return PruneReport(predictions=deleted[0], outcomes=deleted[1], kept_pending=kept)

    def _count(self) -> int:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(self._tables.predictions)
                ).scalar_one()
            )

    def _delete_batches(
        self,
        query: Any,
        deleted: list[int],
        *,
        shadows: bool,
        limit: int | None = None,
        batch: int = 2000,
    ) -> None:
        """Delete the predictions `query` selects (ids, in order) and their outcomes.

        At most `limit` rows in all (None: every one), `batch` per transaction. With
        `shadows`, the shadow rows mirrored from a deleted prediction go with it (by
        age they go on their own, being as old).
        """
        import sqlalchemy as sa

        p, o = self._tables.predictions, self._tables.outcomes
        while limit is None or limit > 0:
            size = batch if limit is None else min(batch, limit)
            with self.engine.begin() as conn:
                ids = [str(i) for i in conn.execute(query.limit(size)).scalars()]
                if not ids:
                    return
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    deleted[1] += conn.execute(
                        o.delete().where(o.c.prediction_id.in_(chunk))
                    ).rowcount
                    deleted[0] += conn.execute(p.delete().where(p.c.id.in_(chunk))).rowcount
                    if shadows:
                        for small in range(0, len(chunk), 100):
                            # Shadow ids are ID-sK: the range [ID-, ID.) on the primary key.
                            ranges = [
                                sa.and_(p.c.id > pid + "-", p.c.id < pid + ".")
                                for pid in chunk[small : small + 100]
                            ]
                            deleted[0] += conn.execute(p.delete().where(sa.or_(*ranges))).rowcount
            if limit is not None:
                limit -= len(ids)
            if len(ids) < size:
                return

    def _filter(
        self,
        query: Any,
        model: str | None,
        release: str | None,
        generation: int | None,
        since: float | None,
        until: float | None,
    ) -> Any:
        p = self._tables.predictions
        if model is not None:
            query = query.where(p.c.model == model)
        if release is not None:
            query = query.where(p.c.release == release)
        if generation is not None:
            query = query.where(p.c.generation == generation)
        if since is not None:
            query = query.where(p.c.created_at >= since)
        if until is not None:
            query = query.where(p.c.created_at < until)
        return query


def _engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and its directory created."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        try:
            return sa.create_engine(url, pool_pre_ping=True)
        except ImportError as e:  # the URL's driver: name the extra that provides it
            extra = extras.for_module(e.name)
            if extra is None:
                raise
            raise extras.MissingExtraError(extra, what=f"the store {mask_url(url)}") from e
    database = parsed.database
    if not database or database == ":memory:":
        # One shared connection, or every thread would see its own empty database.
        return sa.create_engine(
            url, poolclass=sa.pool.StaticPool, connect_args={"check_same_thread": False}
        )
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers and one writer work at once across processes; NORMAL
        # synchronous is durable across application crashes, which is what a log needs.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


# --- the background writer ---------------------------------------------------------------
#
# The log is written by a separate process, not a thread: converting and inserting a few
# thousand rows per second is pure Python work that, in a thread, would hold the GIL
# away from the event loop in multi-millisecond stretches (measured: p99 at 32
# concurrent requests went from 5 ms to 25-150 ms). The worker's only cost per request
# is one orjson.dumps of the batch; a sender thread ships the bytes down a pipe.
#
# Messages are JSON arrays, one per line:
#   ["M", index, name, release, generation, features]    a model (sent once)
#   ["P", index, ids, rows, labels, probabilities, created_at]
#   ["F", seq]   write everything before this, then answer [seq, written, dropped]
#   ["Q", seq]   the same, then exit


class PredictionLog:
    """Writes served predictions to the store at `url` from a writer process.

    `put` never blocks and costs one orjson.dumps; when more than `max_pending` batches
    wait to be sent (the store is down or too slow), new predictions are dropped and
    counted instead of growing memory without bound. `flush` waits until everything
    put before it is in the store; `close` flushes and stops the writer. With a
    `retention` policy, the writer also prunes the store every `prune_every` seconds
    (and once soon after it starts), off the request path.
    """

    def __init__(
        self,
        url: str,
        *,
        interval: float = 0.2,
        max_pending: int = 100_000,
        retention: Retention | None = None,
        prune_every: float = PRUNE_EVERY,
    ) -> None:
        import orjson

        self.url = url
        self._interval = interval
        self._retention = retention if retention is not None and retention.active else None
        self._prune_every = prune_every
        self._max_pending = max_pending
        self._dumps = orjson.dumps
        self._option = orjson.OPT_SERIALIZE_NUMPY
        self._out: deque[bytes] = deque()
        self._models: dict[int, int] = {}
        self._wake = threading.Event()
        self._stop = False
        self._flush_lock = threading.Lock()
        self._seq = 0
        self._sender: threading.Thread | None = None
        self._process: Any = None
        self._conn: Any = None
        self.written = 0
        """Predictions the writer has stored (as of the last flush)."""
        self._writer_dropped = 0
        self._dropped_here = 0

    @property
    def dropped(self) -> int:
        """Predictions lost: refused here (queue full) or by the store (as of the last flush)."""
        return self._dropped_here + self._writer_dropped

    def start(self) -> None:
        """Start the writer process and the sender thread."""
        import multiprocessing

        if self._process is not None:
            return
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe(duplex=True)
        self._process = context.Process(
            target=_writer_main,
            args=(child, self.url, self._interval, self._retention, self._prune_every),
            name="mlcycle-prediction-log",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._sender = threading.Thread(
            target=self._send_loop, name="mlcycle-log-sender", daemon=True
        )
        self._sender.start()

    def register(
        self,
        key: int,
        *,
        name: str,
        release: str | None,
        generation: int | None,
        features: Sequence[str],
    ) -> int:
        """Announce a model once; returns the index that `put` takes."""
        index = self._models.get(key)
        if index is None:
            index = self._models[key] = len(self._models)
            self._out.append(self._dumps(["M", index, name, release, generation, list(features)]))
        return index

    def put(
        self,
        model: int,
        ids: Sequence[str],
        rows: np.ndarray,
        labels: np.ndarray,
        probabilities: np.ndarray | None,
        created_at: float,
        keys: Sequence[str] | None = None,
    ) -> bool:
        """Queue one served batch; False when it was dropped because too much is pending.

        `keys` are the request's event keys, one per row (None: the request sent none).
        """
        if len(self._out) > self._max_pending:
            self._dropped_here += len(ids)
            return False
        try:
            data = self._dumps(
                ["P", model, ids, rows, labels, probabilities, created_at, keys],
                option=self._option,
            )
        except TypeError:  # object arrays (string features or labels): go through lists
            data = self._dumps(
                [
                    "P",
                    model,
                    ids,
                    rows.tolist(),
                    labels.tolist(),
                    None if probabilities is None else probabilities.tolist(),
                    created_at,
                    keys,
                ]
            )
        self._out.append(data)
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything put before this call is in the store; False on timeout."""
        if self._process is None:
            return False
        with self._flush_lock:
            return self._request("F", timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, then stop the writer process."""
        if self._process is None:
            return
        with self._flush_lock:
            done = self._request("Q", timeout)
            self._stop = True
            self._wake.set()
            if self._sender is not None:
                self._sender.join(5)
            self._process.join(timeout if done else 1)
            if self._process.is_alive():
                log.error("the prediction log writer did not finish in time; stopping it")
                self._process.terminate()
                self._process.join(5)
            self._conn.close()
            self._process = None

    def _request(self, kind: str, timeout: float) -> bool:
        import orjson

        self._seq += 1
        seq = self._seq
        self._out.append(orjson.dumps([kind, seq]))
        self._wake.set()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0 or not self._conn.poll(remaining):
                    return False
                answer = orjson.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                log.error("the prediction log writer is gone")
                return False
            self.written, self._writer_dropped = answer[1], answer[2]
            if answer[0] >= seq:
                return True

    def _send_loop(self) -> None:
        out = self._out
        while True:
            self._wake.wait(self._interval / 4)
            self._wake.clear()
            chunks = []
            with contextlib.suppress(IndexError):
                while True:
                    chunks.append(out.popleft())
            if chunks:
                data = b"\n".join(chunks)
                try:
                    self._conn.send_bytes(data)
                except (OSError, ValueError):
                    log.error("the prediction log writer is gone; %d bytes lost", len(data))
                    return
            elif self._stop:
                return


def _writer_main(
    conn: Any,
    url: str,
    interval: float,
    retention: Retention | None = None,
    prune_every: float = PRUNE_EVERY,
) -> None:
    """The writer process: read batches from the pipe, insert them every `interval` s.

    With `retention`, it prunes the store every `prune_every` s, between two writes:
    the batches that arrive meanwhile wait in the pipe, the requests never do.
    """
    import signal

    import orjson

    # The worker decides when to stop (it drains first); a Ctrl-C sent to the whole
    # process group must not kill the writer with predictions still in memory.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [log writer %(process)d] %(message)s"
    )
    store = PredictionStore(url)
    models: dict[int, tuple[str, str | None, int | None, list[str]]] = {}
    rows: list[tuple[Any, ...]] = []
    written = dropped = 0
    last = time.monotonic()
    # The first pass soon after start (a restarted engine catches up), not at once: the
    # workers start together and their first predictions should not wait for it.
    next_prune = last + min(prune_every, 5.0)
    dumps, loads = orjson.dumps, orjson.loads

    def prune() -> None:
        nonlocal next_prune
        next_prune = time.monotonic() + prune_every
        if retention is None:
            return
        try:
            store.prune(retention)
        except Exception:  # a busy or unreachable store: try again next time
            log.warning("pruning the prediction store failed; retrying later", exc_info=True)

    def write() -> None:
        nonlocal written, dropped, last
        last = time.monotonic()
        if not rows:
            return
        for attempt in range(3):
            try:
                written += store.insert_rows(rows)
                break
            except Exception:  # any database error: log, retry, then drop
                if attempt == 2:
                    log.exception("dropped %d predictions the store would not take", len(rows))
                    dropped += len(rows)
                else:
                    time.sleep(0.2 * (attempt + 1))
        rows.clear()

    while True:
        try:
            ready = conn.poll(max(0.0, interval - (time.monotonic() - last)))
            data = conn.recv_bytes() if ready else None
        except (EOFError, OSError):
            break  # the worker is gone: write what we have and stop
        if data is None:
            write()
            if time.monotonic() >= next_prune:
                prune()
            continue
        for line in data.split(b"\n"):
            try:
                message = loads(line)
                kind = message[0]
            except (orjson.JSONDecodeError, IndexError, TypeError):
                log.exception("the prediction log got a malformed message; skipped")
                continue
            if kind == "P":
                name, release, generation, features = models[message[1]]
                _, _, ids, values, labels, probabilities, created_at, *rest = message
                keys = rest[0] if rest else None
                for i, pid in enumerate(ids):
                    rows.append(
                        (
                            pid,
                            name,
                            release,
                            generation,
                            created_at,
                            dumps(dict(zip(features, values[i], strict=True))).decode(),
                            dumps(labels[i]).decode(),
                            None if probabilities is None else dumps(probabilities[i]).decode(),
                            None if keys is None else keys[i],
                        )
                    )
            elif kind == "M":
                models[message[1]] = (message[2], message[3], message[4], message[5])
            elif kind in ("F", "Q"):
                write()
                conn.send_bytes(dumps([message[1], written, dropped]))
                if kind == "Q":
                    store.close()
                    return
        if len(rows) >= 5000 or time.monotonic() - last >= interval:
            write()
        if time.monotonic() >= next_prune:
            write()
            prune()
    write()
    store.close()
