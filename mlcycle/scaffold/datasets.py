"""The example data of a new project: scikit-learn's breast cancer data set, made event-like.

569 cases, 30 measurements of cell nuclei (renamed to snake_case: `mean_radius`,
`radius_error`, `worst_concave_points`, ...), plus

- `id`: the case's key (its row number in scikit-learn's copy, 1-based), used to
  join true outcomes to predictions;
- `seq`: the order in which cases arrived, 1, 2, 3, ... An integer rather than a
  timestamp on purpose: it has the same type in SQLite, CSV and Parquet, a
  watermark is an exact JSON number, and there is no time zone or date format to
  get wrong, while it orders and windows rows exactly as a timestamp would;
- `malignant`: the label, 1 for a malignant tumour, 0 for a benign one
  (scikit-learn's `target` is the opposite: 0 is malignant).

Arrival order is a fixed pseudo-random shuffle (SHA-256 of the case id), so the
files are the same on every machine and every library version. The data is read from
scikit-learn's copy of the file without importing scikit-learn or pandas (they cost
`init` seconds); research's model (`write_research`) imports them.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.errors import RuntimeFailure
from mlcycle.spec.model import Spec
from mlcycle.train import build_estimator

if TYPE_CHECKING:
    import pandas as pd

KEY = "id"
ORDINAL = "seq"
LABEL = "malignant"
OUTCOME = "outcome"

EVENTS_DB = "data/events.db"
EVENTS_TABLE = "events"
OUTCOMES_TABLE = "outcomes"
EVENTS_CSV = "data/events.csv"
TRAIN_CSV = "data/train.csv"
REFERENCE_CSV = "research/reference.csv"
PREDICTIONS_CSV = "research/predictions.csv"

REFERENCE_EVERY = 5
"""Research hands over every fifth case (by `seq`) as its reference inputs."""

PREDICTION = "prediction"


FEATURES = (
    "mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness",
    "mean compactness", "mean concavity", "mean concave points", "mean symmetry",
    "mean fractal dimension", "radius error", "texture error", "perimeter error",
    "area error", "smoothness error", "compactness error", "concavity error",
    "concave points error", "symmetry error", "fractal dimension error", "worst radius",
    "worst texture", "worst perimeter", "worst area", "worst smoothness",
    "worst compactness", "worst concavity", "worst concave points", "worst symmetry",
    "worst fractal dimension",
)  # fmt: skip
"""The 30 measurements, as scikit-learn's `load_breast_cancer().feature_names` names them
(its CSV holds numbers only; `tests/scaffold` checks the two lists agree)."""
CASES = 569
SKLEARN_CSV = ("datasets", "data", "breast_cancer.csv")
"""Where scikit-learn keeps the data set, inside its package directory."""

Event = tuple[Any, ...]
"""One case: `id`, `seq`, the 30 features (float), `malignant` (0 or 1)."""


def feature_names() -> list[str]:
    """The 30 feature columns, snake_case, in scikit-learn's order."""
    return [_snake(name) for name in FEATURES]


def event_columns() -> list[str]:
    """The columns of an event, in order: `id`, `seq`, the features, `malignant`."""
    return [KEY, ORDINAL, *feature_names(), LABEL]


def breast_cancer_events() -> list[Event]:
    """All 569 cases as events (`event_columns()`), ordered by `seq`.

    Read from scikit-learn's own copy of the file, without importing scikit-learn or
    pandas: `init` is a command people run first, and those imports cost it ~3 s of CPU.
    """
    cases = []
    for case_id, (features, target) in enumerate(_sklearn_rows(), start=1):
        cases.append((case_id, features, 1 - target))  # scikit-learn: 0 is malignant
    cases.sort(key=lambda case: _arrival_rank(case[0]))
    return [(key, seq, *features, label) for seq, (key, features, label) in enumerate(cases, 1)]


def write_dump(root: Path) -> list[str]:
    """`data/train.csv`: a static export (no `seq`: a dump has no notion of arrival)."""
    rows = ((event[0], *event[2:]) for event in breast_cancer_events())  # id, features, label
    _write_csv(root / TRAIN_CSV, [KEY, *feature_names(), LABEL], rows)
    return [TRAIN_CSV]


def write_sqlite(root: Path) -> list[str]:
    """`data/events.db`: table `events` (features, label, `seq`) and `outcomes` (`id`, `outcome`).

    `outcomes` holds the confirmed diagnosis of every case, as a lab system would
    record it after the fact: the feedback path that production evaluation joins
    to served predictions by `id`.
    """
    events = breast_cancer_events()
    path = root / EVENTS_DB
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [
        f'"{KEY}" INTEGER PRIMARY KEY',
        f'"{ORDINAL}" INTEGER NOT NULL UNIQUE',
        *(f'"{name}" REAL NOT NULL' for name in feature_names()),
        f'"{LABEL}" INTEGER NOT NULL',
    ]
    names = ", ".join(f'"{c}"' for c in event_columns())
    marks = ", ".join("?" * len(event_columns()))
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(f"CREATE TABLE {EVENTS_TABLE} ({', '.join(columns)})")
            connection.executemany(f"INSERT INTO {EVENTS_TABLE} ({names}) VALUES ({marks})", events)
            connection.execute(
                f'CREATE TABLE {OUTCOMES_TABLE} ("{KEY}" INTEGER PRIMARY KEY, '
                f'"{OUTCOME}" INTEGER NOT NULL)'
            )
            connection.executemany(
                f'INSERT INTO {OUTCOMES_TABLE} ("{KEY}", "{OUTCOME}") VALUES (?, ?)',
                [(event[0], event[-1]) for event in events],
            )
    finally:
        connection.close()
    return [EVENTS_DB]


def write_events_csv(root: Path) -> list[str]:
    """`data/events.csv`: the events with `seq`, as a file source.

    CSV, not Parquet: a project from `init` works on a core install, and Parquet
    needs the `[parquet]` extra (pyarrow). Floats are written in full (repr), so
    research and mlcycle read the same numbers.
    """
    _write_csv(root / EVENTS_CSV, event_columns(), breast_cancer_events())
    return [EVENTS_CSV]


@dataclass(frozen=True)
class Research:
    """What `write_research` handed over: its files, the metrics it measured, its row count."""

    files: list[str]
    metrics: dict[str, float]
    rows: int


def write_research(root: Path, document: Mapping[str, Any]) -> Research:
    """What research hands over: reference inputs, their predictions, the metrics measured.

    Research fits the pipeline that `document` (a lifecycle spec) declares on every
    row of `data/events.csv`, exactly as `mlcycle` fits a release's final
    model, then predicts every fifth case (`research/reference.csv`, which keeps
    the label) and writes the probability of `malignant` = 1 per reference row
    (`research/predictions.csv`: `id`, `prediction`). The metrics (roc_auc,
    accuracy) are measured on the reference rows, unrounded.
    """
    import pandas as pd
    from sklearn.metrics import accuracy_score, roc_auc_score

    spec = Spec.from_document(document, root=root)
    events = pd.read_csv(root / EVENTS_CSV)
    features = [c for c in events.columns if c not in (KEY, ORDINAL, LABEL)]
    estimator = build_estimator(spec.model, root=root)
    estimator.fit(events[features], events[LABEL])

    reference = events[events[ORDINAL] % REFERENCE_EVERY == 0].reset_index(drop=True)
    probability = estimator.predict_proba(reference[features])[:, 1]
    predicted = estimator.predict(reference[features])
    metrics = {
        "roc_auc": float(roc_auc_score(reference[LABEL], probability)),
        "accuracy": float(accuracy_score(reference[LABEL], predicted)),
    }
    (root / REFERENCE_CSV).parent.mkdir(parents=True, exist_ok=True)
    reference.to_csv(root / REFERENCE_CSV, index=False, lineterminator="\n")
    predictions = pd.DataFrame({KEY: reference[KEY], PREDICTION: probability})
    predictions.to_csv(root / PREDICTIONS_CSV, index=False, lineterminator="\n")
    return Research([REFERENCE_CSV, PREDICTIONS_CSV], metrics, len(reference))


# --- internals ----------------------------------------------------------------------------


def _snake(name: str) -> str:
    return "_".join(str(name).lower().split())


def _arrival_rank(case_id: int) -> bytes:
    return hashlib.sha256(f"mlcycle-example-{case_id}".encode()).digest()


def _sklearn_rows() -> list[tuple[list[float], int]]:
    """(features, target) per case, from scikit-learn's CSV: a header `569,30,NAMES...`,
    then 30 numbers and the target (0 malignant, 1 benign) per line."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise RuntimeFailure(
            "scikit-learn is not installed, and the example data comes from it",
            hint="pip install scikit-learn (mlcycle-cli depends on it: reinstall mlcycle-cli)",
        )
    path = Path(next(iter(locations))).joinpath(*SKLEARN_CSV)
    width = len(FEATURES) + 1
    try:
        with path.open(newline="", encoding="utf-8") as source:
            lines = list(csv.reader(source))
        rows = [([float(v) for v in line[:-1]], int(line[-1])) for line in lines[1:]]
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise RuntimeFailure(
            f"cannot read the example data from {path}: {e}", hint="reinstall scikit-learn"
        ) from e
    if (
        not lines
        or lines[0][:2] != [str(CASES), str(len(FEATURES))]
        or len(rows) != CASES
        or any(len(line) != width for line in lines[1:])
    ):
        raise RuntimeFailure(
            f"{path} is not the breast cancer data set this mlcycle knows "
            f"({CASES} rows of {len(FEATURES)} measurements and a target)",
            hint="reinstall scikit-learn",
        )
    return rows


def _write_csv(path: Path, columns: list[str], rows: Iterable[Sequence[Any]]) -> None:
    # repr of a float is its shortest exact form, as pandas writes it: research and
    # mlcycle read back the same numbers.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([repr(v) if isinstance(v, float) else v for v in row] for row in rows)


def same_data(a: Path, b: Path) -> bool:
    """Whether two data files (CSV, Parquet, SQLite) hold the same tables.

    Compares content, not bytes: Parquet and SQLite files carry library versions,
    and floats may differ in their last bits between platforms (relative 1e-9).
    """
    import pandas as pd
    from pandas.testing import assert_frame_equal

    if a.suffix != b.suffix:
        return False
    try:
        left, right = _tables(a), _tables(b)
        if left.keys() != right.keys():
            return False
        for name, frame in left.items():
            assert_frame_equal(frame, right[name], check_exact=False, rtol=1e-9)
    except (AssertionError, ValueError, OSError, sqlite3.Error, pd.errors.ParserError):
        return False
    return True


def _tables(path: Path) -> dict[str, pd.DataFrame]:
    import pandas as pd

    if path.suffix == ".csv":
        return {"": pd.read_csv(path)}
    if path.suffix == ".parquet":
        return {"": pd.read_parquet(path, engine="pyarrow")}
    if path.suffix == ".db":
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables: dict[str, pd.DataFrame] = {}
            for name, sql in connection.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
            ).fetchall():
                frame = pd.read_sql_query(f'SELECT * FROM "{name}" ORDER BY rowid', connection)
                tables[f"{name}: {sql}"] = frame
            return tables
        finally:
            connection.close()
    raise ValueError(f"not a data file: {path}")
