"""Data access costs: full fetch vs a 1% increment, and mlcycle's overhead over plain sklearn.

Makes a data set (default 1M rows, 30 float features, a 0/1 label, an `id` key
and an increasing `seq` ordinal) in a temp dir, as a SQLite table (with an
index on `seq`, as an ordinal column usually has) and as a Parquet file
written in row groups of 0.5% of the rows (as a file grown by appends is).
Then, per source, it prints:

- full fetch: `load_dataset(spec)` seconds;
- 1% increment: `load_dataset(spec, next_window(watermark at 99%))` seconds, and
  its ratio to the full fetch (the aim: about 1%); `count_new_rows` seconds;
- overhead: `load_dataset` + `mlcycle.train.train` + `LocalRegistry.register`
  vs plain pandas read + `train_test_split` + fit + score, same pipeline
  (StandardScaler + SGDClassifier) and holdout. mlcycle's `train` also refits the
  final model on all rows (the estimate comes from the holdout, the shipped model
  learns from every row), so a second baseline adds that refit: like for like.

Figures only, no assertions. Run:

    .venv/bin/python benchmarks/bench_data.py [--rows 1000000] [--source both|sqlite|parquet]
        [--repeat 1]

On a shared machine the figures are noisy; `--repeat 3` prints the best of three.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = 30
SPEC = """\
apiVersion: mlcycle/v1
name: bench
lifecycle:
  data_access: programmatic
  procurement: unattended
  update: autonomous
  deployment: dynamic
  liaison: joint
data:
  source:
{source}
    ordinal: seq
  label: label
  key: id
model:
  pipeline:
    - sklearn.preprocessing.StandardScaler
    - sklearn.linear_model.SGDClassifier:
        loss: log_loss
        random_state: 0
  seed: 0
evaluation:
  split: holdout
  test_size: 0.2
  metrics: [accuracy, roc_auc]
"""
SOURCES = {
    "sqlite": "    url: sqlite:///events.db\n    table: events",
    "parquet": "    path: events.parquet",
}


def make_frame(rows: int) -> Any:
    """`rows` rows: id, seq, f00..f29 standard normal, label from a noisy linear rule."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, FEATURES))
    weights = rng.standard_normal(FEATURES)
    logits = X @ weights + rng.standard_normal(rows)
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(FEATURES)])
    frame.insert(0, "seq", np.arange(1, rows + 1))
    frame.insert(0, "id", np.arange(1, rows + 1) * 7)
    frame["label"] = (logits > 0).astype("int64")
    return frame


def write_sqlite(frame: Any, path: Path) -> None:
    columns = list(frame.columns)
    declared = ", ".join(
        f'"{c}" INTEGER' if c in ("id", "seq", "label") else f'"{c}" REAL' for c in columns
    )
    marks = ", ".join("?" for _ in columns)
    db = sqlite3.connect(path)
    try:
        db.execute(f"CREATE TABLE events ({declared})")
        chunk = 100_000
        for start in range(0, len(frame), chunk):
            part = frame.iloc[start : start + chunk]
            db.executemany(
                f"INSERT INTO events VALUES ({marks})", part.itertuples(index=False, name=None)
            )
        db.execute('CREATE INDEX events_seq ON events ("seq")')
        db.commit()
    finally:
        db.close()


def write_parquet(frame: Any, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, row_group_size=max(1000, len(frame) // 200))


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of `repeat` runs (the machine may be shared) and the last result."""
    best = float("inf")
    result = None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def plain_increment(kind: str, folder: Path, watermark: int) -> Any:
    """The same increment read without mlcycle: pyarrow filters, or a plain WHERE."""
    import pandas as pd
    import pyarrow.parquet as pq

    if kind == "parquet":
        path = folder / "events.parquet"
        return pq.read_table(path, filters=[("seq", ">", watermark)]).to_pandas()
    db = sqlite3.connect(folder / "events.db")
    try:
        return pd.read_sql("SELECT * FROM events WHERE seq > ?", db, params=(watermark,))
    finally:
        db.close()


def plain_read(kind: str, folder: Path) -> Any:
    import pandas as pd

    if kind == "parquet":
        return pd.read_parquet(folder / "events.parquet")
    db = sqlite3.connect(folder / "events.db")
    try:
        return pd.read_sql("SELECT * FROM events", db)
    finally:
        db.close()


def plain_sklearn(kind: str, folder: Path, *, refit_all: bool) -> dict[str, float]:
    """The baseline: read, holdout split, fit, score (and optionally refit on all rows)."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = plain_read(kind, folder)
    X = frame[[f"f{i:02d}" for i in range(FEATURES)]]
    y = frame["label"]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.2, random_state=0, stratify=y
    )

    def model() -> Any:
        return make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=0))

    fitted = model().fit(X_train, y_train)
    metrics = {
        "accuracy": float(accuracy_score(y_test, fitted.predict(X_test))),
        "roc_auc": float(roc_auc_score(y_test, fitted.decision_function(X_test))),
    }
    if refit_all:
        model().fit(X, y)
    return metrics


def with_mlcycle(spec: Any, registry_root: Path) -> tuple[dict[str, float], dict[str, float]]:
    """load_dataset + train + register; returns metrics and the seconds of each step."""
    from mlcycle.data import load_dataset
    from mlcycle.registry import LocalRegistry
    from mlcycle.train import train

    seconds = {}
    seconds["fetch"], dataset = timed(lambda: load_dataset(spec))
    seconds["train"], result = timed(
        lambda: train(spec, dataset.X, dataset.y, ordinal=dataset.ordinal)
    )
    registry = LocalRegistry(registry_root, spec.name)
    seconds["register"], _ = timed(
        lambda: registry.register(
            result.model,
            release="dev",
            metrics=result.metrics,
            gate=None,
            data=dataset.info.as_dict(),
            spec_hash=None,
            git_commit=None,
            procurement="unattended",
            status="candidate",
        )
    )
    return dict(result.metrics), seconds


def bench(kind: str, folder: Path, rows: int, repeat: int) -> None:
    from mlcycle.data import count_new_rows, load_dataset, next_window
    from mlcycle.spec import load_spec

    spec_dir = folder / f"project-{kind}"
    spec_dir.mkdir()
    (spec_dir / "lifecycle.yaml").write_text(SPEC.format(source=SOURCES[kind]))
    target = "events.parquet" if kind == "parquet" else "events.db"
    (spec_dir / target).symlink_to(folder / target)
    spec = load_spec(spec_dir)

    print(f"\n== {kind} ({rows:,} rows × {FEATURES} features, best of {repeat})")
    timed(lambda: load_dataset(spec))  # warm the OS cache for every contender alike
    full, dataset = timed(lambda: load_dataset(spec), repeat)
    assert dataset.n_rows == rows
    plain_full, _ = timed(lambda: plain_read(kind, folder), repeat)
    watermark = rows - rows // 100
    window = next_window(watermark)
    increment, part = timed(lambda: load_dataset(spec, window), repeat)
    plain_part, _ = timed(lambda: plain_increment(kind, folder, watermark), repeat)
    counting, new = timed(lambda: count_new_rows(spec, watermark), repeat)
    print(f"full fetch           {full:8.3f} s  (plain pandas read {plain_full:.3f} s)")
    print(
        f"1% increment fetch   {increment:8.3f} s  ({part.n_rows:,} rows; "
        f"{increment / full:.1%} of the full fetch; plain {plain_part:.3f} s)"
    )
    print(f"count_new_rows       {counting:8.3f} s  ({new:,} new rows)")

    plain, plain_metrics = timed(lambda: plain_sklearn(kind, folder, refit_all=False), repeat)
    plain_refit, _ = timed(lambda: plain_sklearn(kind, folder, refit_all=True), repeat)
    registry = spec_dir / ".mlcycle" / "registry"
    ours, (metrics, steps) = timed(lambda: with_mlcycle(spec, registry), repeat)
    print(
        "mlcycle              "
        f"{ours:8.3f} s  (fetch {steps['fetch']:.2f}, train {steps['train']:.2f}, "
        f"register {steps['register']:.2f})"
    )
    print(f"plain read+fit+score {plain:8.3f} s  → mlcycle overhead {ours / plain - 1:+.1%}")
    print(
        f"  + refit on all     {plain_refit:8.3f} s  → mlcycle overhead "
        f"{ours / plain_refit - 1:+.1%} (like for like)"
    )
    print(
        f"metrics: mlcycle accuracy {metrics['accuracy']:.4f} roc_auc {metrics['roc_auc']:.4f}; "
        f"plain accuracy {plain_metrics['accuracy']:.4f} roc_auc {plain_metrics['roc_auc']:.4f}"
    )


def make_sources(folder: Path, rows: int, kinds: tuple[str, ...]) -> None:
    """Write the data set as each source kind (the frame is freed on return)."""
    made, frame = timed(lambda: make_frame(rows))
    print(f"made {rows:,} rows in {made:.1f} s")
    for kind in kinds:
        if kind == "sqlite":
            seconds, _ = timed(lambda: write_sqlite(frame, folder / "events.db"))
        else:
            seconds, _ = timed(lambda: write_parquet(frame, folder / "events.parquet"))
        print(f"wrote {kind} in {seconds:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the data set")
    parser.add_argument(
        "--source", choices=("both", "sqlite", "parquet"), default="both", help="which sources"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per figure; the best is printed"
    )
    args = parser.parse_args()
    kinds = ("sqlite", "parquet") if args.source == "both" else (args.source,)
    with tempfile.TemporaryDirectory(prefix="mlcycle-bench-") as tmp:
        folder = Path(tmp)
        make_sources(folder, args.rows, kinds)
        for kind in kinds:
            bench(kind, folder, args.rows, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
