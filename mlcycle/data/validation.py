"""Data validation: a schema learned from training data, and new rows checked against it.

Peers (TFX StatisticsGen, SchemaGen, ExampleValidator) learn a schema from the
training data and validate each new span against it before it is trained on.
`profile(frame)` is that schema with its statistics: per column its kind
(numeric, categorical, bool, datetime), null share, numeric range and (bounded)
category set, small and JSON-ready so that the registry keeps it with each
generation. `check(profile, frame, thresholds)` lists the anomalies of new rows:
new or missing columns, a changed kind, and shares of out-of-range values, unseen
categories and nulls above what the spec's `data.validation` allows.

`DataRejectedError` is a gate rejection (exit 3): failing data stops a generation
the way a failed metric gate does, with a table of what failed.

pandas is imported inside the functions that use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from mlcycle.errors import GateFailure, GateRejectedError

if TYPE_CHECKING:
    import pandas as pd

    from mlcycle.spec.model import ValidationSpec

# A categorical column with more distinct values than this is free text or an id:
# its category set is not recorded (it would bloat every entry) and not checked.
MAX_CATEGORIES: Final = 50

NUMERIC: Final = "numeric"
CATEGORICAL: Final = "categorical"
BOOL: Final = "bool"
DATETIME: Final = "datetime"


@dataclass(frozen=True)
class ColumnProfile:
    """What the training data showed of one column.

    `minimum`/`maximum` for numeric columns; `categories` for categorical ones,
    None when there were more than `MAX_CATEGORIES` distinct values.
    """

    name: str
    kind: str
    null_share: float
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (only the fields the kind has)."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "null_share": round(self.null_share, 6),
        }
        if self.kind == NUMERIC:
            out["min"] = self.minimum
            out["max"] = self.maximum
        if self.kind == CATEGORICAL:
            out["categories"] = None if self.categories is None else list(self.categories)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ColumnProfile:
        """Rebuild from `as_dict`'s output."""
        categories = raw.get("categories")
        return cls(
            name=str(raw["name"]),
            kind=str(raw["kind"]),
            null_share=float(raw.get("null_share") or 0.0),
            minimum=None if raw.get("min") is None else float(raw["min"]),
            maximum=None if raw.get("max") is None else float(raw["max"]),
            categories=None if categories is None else tuple(str(c) for c in categories),
        )


@dataclass(frozen=True)
class DataProfile:
    """The schema and statistics of a training frame: one `ColumnProfile` per column."""

    rows: int
    columns: tuple[ColumnProfile, ...]

    def column(self, name: str) -> ColumnProfile | None:
        """The profile of column `name`, or None."""
        return next((c for c in self.columns if c.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, what the registry records as `data.profile`."""
        return {"rows": self.rows, "columns": [c.as_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, raw: Any) -> DataProfile | None:
        """Rebuild from `as_dict`'s output; None when `raw` is not a readable profile."""
        if not isinstance(raw, Mapping) or not isinstance(raw.get("columns"), list):
            return None
        try:
            return cls(
                rows=int(raw.get("rows") or 0),
                columns=tuple(ColumnProfile.from_dict(c) for c in raw["columns"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Anomaly:
    """One way new rows differ from the training data's profile.

    `kind` is one of `new column`, `missing column`, `type change`, `out of range`,
    `unseen categories`, `null share`; `value` and `threshold` are shares (0..1) for
    the last three, None for the structural ones (which always fail).
    """

    column: str
    kind: str
    detail: str
    value: float | None = None
    threshold: float | None = None

    @property
    def condition(self) -> str:
        """The rule broken, as the gate table's first column: `plan: unseen categories <= 0.1`."""
        if self.threshold is None:
            return f"{self.column}: {self.kind}"
        return f"{self.column}: {self.kind} <= {self.threshold:g}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready row."""
        return {
            "condition": self.condition,
            "column": self.column,
            "anomaly": self.kind,
            "detail": self.detail,
            "value": self.value,
            "threshold": self.threshold,
        }

    def failure(self) -> GateFailure:
        """This anomaly as a failed gate condition."""
        shortfall = (
            math.nan
            if self.value is None or self.threshold is None
            else max(0.0, self.value - self.threshold)
        )
        return GateFailure(
            condition=self.condition,
            metric=self.column,
            value=self.value,
            threshold=math.nan if self.threshold is None else self.threshold,
            shortfall=shortfall,
        )


@dataclass(frozen=True)
class DataRejection:
    """A refusal of new rows, as the registry keeps it: nothing was trained, so no
    entry holds it. The training agent waits for rows after `data["watermark"]`."""

    against: str
    """The model whose training data the rows were checked against (`RELEASE/GEN`)."""
    rows: int
    data: Mapping[str, Any]
    """What was fetched: location, kind, ordinal, watermark (a `SourceInfo` record)."""
    anomalies: tuple[Mapping[str, Any], ...]
    spec_hash: str | None = None
    at: str = ""

    @property
    def conditions(self) -> str:
        """The rules broken, e.g. `basket: out of range <= 0.1, plan: new column`."""
        return ", ".join(str(a.get("condition")) for a in self.anomalies)

    def describe(self) -> str:
        """One line for listings: when, which rows, against what, why."""
        ordinal, watermark = self.data.get("ordinal"), self.data.get("watermark")
        upto = f" ({ordinal} up to {watermark})" if ordinal and watermark is not None else ""
        when = self.at.replace("T", " ")[:16]
        return (
            f"{when} data validation refused {self.rows} new rows{upto} against {self.against}: "
            f"{self.conditions}"
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record (what `Registry.record_data_rejection` keeps)."""
        return {
            "against": self.against,
            "rows": self.rows,
            "data": dict(self.data),
            "anomalies": [dict(a) for a in self.anomalies],
            "spec_hash": self.spec_hash,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DataRejection:
        """Rebuild from a kept record."""
        return cls(
            against=str(raw.get("against")),
            rows=int(raw.get("rows") or 0),
            data=dict(raw.get("data") or {}),
            anomalies=tuple(dict(a) for a in raw.get("anomalies") or ()),
            spec_hash=raw.get("spec_hash"),
            at=str(raw.get("at") or ""),
        )


class DataRejectedError(GateRejectedError):
    """New rows failed data validation against the current generation's profile (exit 3)."""

    def __init__(
        self,
        anomalies: Sequence[Anomaly],
        *,
        against: str,
        rows: int,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.anomalies = tuple(anomalies)
        self.against = against
        self.rows = rows
        self.data = dict(data or {})
        """What was fetched (`SourceInfo.as_dict()`): its watermark is what to wait past."""
        names = ", ".join(a.condition for a in self.anomalies)
        super().__init__(
            failures=[a.failure() for a in self.anomalies],
            message=f"data validation rejected {rows} new rows against the training data of "
            f"{against} ({names}); nothing was trained or registered",
        )
        self.hint = (
            "fix the data at its source (or wait for it to be fixed), loosen "
            "data.validation in the spec, or make a release if the change is intended"
        )

    def rejection(self, spec_hash: str | None) -> DataRejection:
        """The record the registry keeps of this refusal."""
        return DataRejection(
            against=self.against,
            rows=self.rows,
            data=self.data,
            anomalies=tuple(a.as_dict() for a in self.anomalies),
            spec_hash=spec_hash,
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "passed": False,
            "against": self.against,
            "rows": self.rows,
            "anomalies": [a.as_dict() for a in self.anomalies],
        }


def profile(frame: pd.DataFrame) -> DataProfile:
    """The schema and statistics of `frame` (see the module doc)."""
    columns = []
    rows = len(frame)
    for name in frame.columns:
        column = frame[name]
        kind = column_kind(column)
        nulls = int(column.isna().sum())
        share = nulls / rows if rows else 0.0
        values = column.dropna()
        minimum = maximum = None
        categories = None
        if kind == NUMERIC and len(values):
            minimum, maximum = float(values.min()), float(values.max())
        elif kind == CATEGORICAL:
            distinct = values.astype(str).unique()
            if len(distinct) <= MAX_CATEGORIES:
                categories = tuple(sorted(str(v) for v in distinct))
        columns.append(ColumnProfile(str(name), kind, share, minimum, maximum, categories))
    return DataProfile(rows=rows, columns=tuple(columns))


def merge(old: DataProfile, new: DataProfile) -> DataProfile:
    """The profile of both frames together: what a model warm-started on `new` has seen.

    Ranges and category sets are unions, null shares weighted by rows; a column
    only `new` has (or whose kind changed) takes `new`'s profile.
    """
    total = old.rows + new.rows
    columns = []
    for column in new.columns:
        before = old.column(column.name)
        if before is None or before.kind != column.kind or total == 0:
            columns.append(column)
            continue
        null_share = (before.null_share * old.rows + column.null_share * new.rows) / total
        categories = None
        if before.categories is not None and column.categories is not None:
            union = sorted(set(before.categories) | set(column.categories))
            categories = tuple(union) if len(union) <= MAX_CATEGORIES else None
        columns.append(
            replace(
                column,
                null_share=null_share,
                minimum=_bound(min, before.minimum, column.minimum),
                maximum=_bound(max, before.maximum, column.maximum),
                categories=categories,
            )
        )
    return DataProfile(rows=total, columns=tuple(columns))


def check(profile: DataProfile, frame: pd.DataFrame, thresholds: ValidationSpec) -> list[Anomaly]:
    """The anomalies of `frame` against `profile`, in column order; empty when it passes.

    New, missing and retyped columns always fail. The shares of values out of the
    training range, of unseen categories and the rise of the null share fail when
    above their thresholds (a threshold of None switches that check off).
    """
    anomalies: list[Anomaly] = []
    present = {str(c) for c in frame.columns}
    rows = len(frame)
    for learned in profile.columns:
        if learned.name not in present:
            anomalies.append(
                Anomaly(learned.name, "missing column", "in the training data, not in new rows")
            )
    for name in frame.columns:
        column = frame[name]
        expected = profile.column(str(name))
        if expected is None:
            anomalies.append(
                Anomaly(str(name), "new column", "in the new rows, not in the training data")
            )
            continue
        kind = column_kind(column)
        values = column.dropna()
        if kind != expected.kind and not (len(values) == 0 and rows):
            anomalies.append(
                Anomaly(str(name), "type change", f"{expected.kind} in training, {kind} now")
            )
            continue
        if not rows:
            continue
        nulls = int(column.isna().sum()) / rows
        limit = thresholds.null_increase
        if limit is not None and nulls - expected.null_share > limit:
            anomalies.append(
                Anomaly(
                    str(name),
                    "null share",
                    f"{nulls:.1%} null, {expected.null_share:.1%} in training",
                    round(nulls - expected.null_share, 6),
                    limit,
                )
            )
        if not len(values):
            continue
        limit = thresholds.out_of_range
        if kind == NUMERIC and limit is not None and expected.minimum is not None:
            low, high = expected.minimum, expected.maximum
            outside = int(((values < low) | (values > high)).sum())
            share = outside / len(values)
            if share > limit:
                anomalies.append(
                    Anomaly(
                        str(name),
                        "out of range",
                        f"{outside} of {len(values)} values outside [{low:g}, {high:g}]",
                        round(share, 6),
                        limit,
                    )
                )
        limit = thresholds.unseen_categories
        if kind == CATEGORICAL and limit is not None and expected.categories is not None:
            known = set(expected.categories)
            text = values.astype(str)
            unseen = text[~text.isin(known)]
            share = len(unseen) / len(values)
            if share > limit:
                examples = ", ".join(repr(v) for v in sorted(unseen.unique())[:3])
                anomalies.append(
                    Anomaly(
                        str(name),
                        "unseen categories",
                        f"{len(unseen)} of {len(values)} values not seen in training ({examples})",
                        round(share, 6),
                        limit,
                    )
                )
    return anomalies


def column_kind(column: pd.Series) -> str:
    """`numeric`, `categorical`, `bool` or `datetime`, from the column's dtype."""
    import pandas as pd

    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return BOOL
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return DATETIME
    if pd.api.types.is_numeric_dtype(dtype):
        return NUMERIC
    return CATEGORICAL


def _bound(pick: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(pick(a, b))
