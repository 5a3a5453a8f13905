"""The store's tables and the one engine factory every reader and writer opens it with.

Tables (any SQLAlchemy database; a SQLite file by default):

- ``predictions``: id, model, release, generation, created_at (epoch seconds),
  inputs (JSON object), prediction (JSON), probabilities (JSON array or NULL),
  event_key (the request's key of the case, optional);
- ``outcomes``: prediction_id, outcome (JSON), recorded_at;
- ``arm_rewards`` and ``reward_cursor``: the rewards bandit selectors learn from,
  kept so that they survive a restart;
- ``production_metrics``: the production evaluation agent's figures over time.

`create_engine` is the one way to open the store: SQLite gets WAL mode and a busy
timeout so that several serving workers and the agents can write at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle import extras
from mlcycle.data.sql import DRIVER_PACKAGES
from mlcycle.errors import UsageError
from mlcycle.redact import mask_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


@dataclass
class Tables:
    predictions: Any
    outcomes: Any
    metadata: Any = field(repr=False)
    arm_rewards: Any = None
    reward_cursor: Any = None
    production_metrics: Any = None


def tables() -> Tables:
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
    # Written by the production evaluation agent: its figures over time, for the report.
    production_metrics = sa.Table(
        "production_metrics",
        metadata,
        sa.Column("evaluated_at", sa.Float, nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("window_start", sa.Float),
        sa.Column("window_end", sa.Float),
        sa.Column("predictions", sa.Integer),
        sa.Column("outcomes", sa.Integer),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("value", sa.Float),
    )
    return Tables(
        predictions=predictions,
        outcomes=outcomes,
        metadata=metadata,
        arm_rewards=arm_rewards,
        reward_cursor=reward_cursor,
        production_metrics=production_metrics,
    )


def create_engine(url: str, *, what: str = "the store") -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and its directory created.

    A driver the URL names that is not installed is a UsageError naming `what` and
    the package to install, not an ImportError.
    """
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        try:
            return sa.create_engine(url, pool_pre_ping=True)
        except ImportError as e:  # the URL's driver: name the extra or package providing it
            extra = extras.for_module(e.name)
            if extra is not None:
                raise extras.MissingExtraError(extra, what=f"{what} {mask_url(url)}") from e
            module = e.name or str(e)
            raise UsageError(
                f"{what} {mask_url(url)} needs the database driver '{module}', "
                "which is not installed",
                hint=f"install it (pip install {DRIVER_PACKAGES.get(module, module)}) "
                "or name another driver in the URL",
            ) from e
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
