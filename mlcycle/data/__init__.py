"""Data access: the spec's data source descriptors, windows, increments and outcomes.

`load_dataset(spec, window)` fetches training data from `data.source` (SQL
through SQLAlchemy, or a CSV/Parquet file), windowed `[lower, upper)` by the
ordinal column, or from `data.dump` (a file loaded whole, recorded by SHA-256
and marked not reproducible). `next_window(watermark)` is the increment after a
previous fetch: `load_dataset(spec, next_window(previous.info.watermark))`
returns exactly the rows added since. `count_new_rows` tells whether an update
is due; `fetch_outcomes` reads the true outcomes of the feedback loop.

Every problem is a `DataError` naming the source and the table or column.
The task-dependent label check (one class) is `check_label(y, task)` or
`Dataset.check_label(task)`, for the caller that knows the task.

pandas, SQLAlchemy and pyarrow are imported inside the functions that use them.
"""

from __future__ import annotations

from mlcycle.data.dataset import (
    Dataset,
    SourceInfo,
    check_label,
    coerce_bound,
    count_new_rows,
    fetch_outcomes,
    load_dataset,
)
from mlcycle.data.window import Window, next_window

__all__ = [
    "Dataset",
    "SourceInfo",
    "Window",
    "check_label",
    "coerce_bound",
    "count_new_rows",
    "fetch_outcomes",
    "load_dataset",
    "next_window",
]
