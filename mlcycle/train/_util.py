"""Small helpers shared by the train modules: suggestions, JSON-safe values, row selection."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def did_you_mean(name: str, candidates: Iterable[str], *, n: int = 3) -> str:
    """` did you mean 'x'?` (with a leading space) or '' when nothing is close."""
    pool = list(dict.fromkeys(candidates))
    # Case-insensitive first: `c` for `C` is the commonest slip and difflib scores it low.
    exact = [c for c in pool if c.lower() == name.lower()]
    close = exact or difflib.get_close_matches(name, pool, n=n, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), lowered, n=n)]
    if not close:
        return ""
    return " did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def listing(names: Iterable[str], *, limit: int = 40) -> str:
    """Names joined by commas, cut after `limit` with a count of the rest."""
    items = list(names)
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items) - limit} more)"


def plain(value: Any) -> Any:
    """A JSON-safe copy of `value`: numpy scalars and arrays become Python values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):
        return plain(value.tolist())
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value
    if hasattr(value, "item"):
        return plain(value.item())
    return repr(value)


def take(data: Any, index: Sequence[int] | Any) -> Any:
    """Rows of `data` at positions `index` (pandas by position, arrays by index)."""
    if hasattr(data, "iloc"):
        return data.iloc[index]
    return data[index]


def n_rows(data: Any) -> int:
    """The number of rows of a frame, series, array or list."""
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    return len(data)


def describe(estimator: Any) -> str:
    """A short human name of an estimator: its class, or `A → B → C` for a pipeline."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):
        return " → ".join(type(step).__name__ for _, step in steps)
    return type(estimator).__name__
