"""The prediction store: every served prediction, the true outcomes, and their join.

Any SQLAlchemy URL works; the default is a SQLite file, opened in WAL mode with a
busy timeout so that several worker processes can write to it at once (the tables
and the engine factory are in `mlcycle.store.schema`). Predictions and outcomes are
joined by id. Two small tables keep the rewards that bandit selectors learn from, so
that they survive a restart: ``arm_rewards`` (per model: evaluated predictions and the
sum of their rewards) and ``reward_cursor`` (how far into the outcomes those totals
reach). ``production_metrics`` keeps the production evaluation's figures over time.

A prediction mirrored to a shadow model is logged with the id `shadow_id(ID, K)`
(`ID-sK`), where ID is the id returned to the client: its outcome, fed back for ID,
evaluates the shadow's prediction too (`evaluated_since` joins both).

The serving engine never writes on the request path: it hands batches to a
`PredictionLog` (`mlcycle.store.log`), whose writer process inserts them here in
batches. Outcomes are written synchronously because the caller wants to know which
ids were accepted, unknown or duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlcycle.errors import DataError, ServingError
from mlcycle.redact import mask_url, scrub
from mlcycle.spec.model import Retention
from mlcycle.store.schema import create_engine, tables

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

_CHUNK = 500
"""Ids per IN (...) query: far below every database's parameter limit."""

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


def _dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _loads(text: str | None) -> Any:
    import orjson

    return None if text is None else orjson.loads(text)


_CREATE_LOCK = 0x6D6C6373  # "mlcs": the advisory lock key the store's creators share


class PredictionStore:
    """Predictions and outcomes in a SQL database (see the module docstring)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        import sqlalchemy as sa

        self.url = url
        self._tables = tables()
        try:
            self.engine: Engine = create_engine(url)
            self._insert_sql = _insert_sql(self.engine.dialect.paramstyle)
            if create:
                self._create()
        except sa.exc.SQLAlchemyError as e:
            raise ServingError(
                f"cannot open the prediction store {mask_url(url)}: {scrub(str(e), url)}"
            ) from e

    def _create(self) -> None:
        import sqlalchemy as sa

        # Several workers, or engines on several machines, may start at once. On
        # PostgreSQL two CREATE TABLEs of one name collide (a duplicate pg_type row, not
        # "already exists"): the creators take turns under an advisory lock, as the SQL
        # registry does. SQLite's loser of the race finds the table on the second try.
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    if conn.dialect.name == "postgresql":
                        conn.execute(
                            sa.text("SELECT pg_advisory_xact_lock(:a, 0)"), {"a": _CREATE_LOCK}
                        )
                    self._tables.metadata.create_all(conn)
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

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Any]:
        """A connection for a read; a database gone away since the store was opened (server
        down, database dropped) is a ServingError saying so, not a driver traceback."""
        import sqlalchemy as sa

        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as e:
            raise ServingError(
                f"cannot read the prediction store: {scrub(str(e), self.url)}"
            ) from e

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
        with self._reading() as conn:
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
        with self._reading() as conn:
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
        with self._reading() as conn:
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

    def record_metrics(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append figures of the production evaluation to ``production_metrics``."""
        import sqlalchemy as sa

        try:
            with self.engine.begin() as conn:
                conn.execute(self._tables.production_metrics.insert(), list(rows))
        except sa.exc.SQLAlchemyError as e:
            raise DataError(
                f"cannot record production metrics in the store: {scrub(str(e), self.url)}"
            ) from e

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
