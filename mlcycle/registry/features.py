"""The feature schema: a model's inputs, each a name, a JSON type and whether it may be null.

One type for every place that holds the schema: the registry entry that records it
at training (`entry.data["features"]`), bundle.json, the serving engine's codecs and
`GET /v1/model`, exports and tracked runs. Its stored form is the dict `as_dict`
writes, `{"name", "type", "nullable"}`; `from_dict` also reads what older writers
left (no `nullable`, or a bare name in a bundle), so every existing registry and
bundle still loads.

    schema = features_from_frame(X)                 # at training
    record = [f.as_dict() for f in schema]          # what entry.json and bundle.json hold
    schema = parse_features(record)                 # what readers get back
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from mlcycle.errors import ServingError

if TYPE_CHECKING:
    import pandas as pd

JSON_TYPES: Final = ("number", "integer", "boolean", "string")
"""The JSON types a feature may have."""


class FeatureSchemaError(ServingError, ValueError):
    """A feature the engine could not serve (an unknown type, a malformed record).

    A ServingError (exit 1) for the engine's callers, a ValueError for the readers of
    stored records, which turn it into their own damaged-file error with the path.
    """


@dataclass(frozen=True)
class Feature:
    """One input feature: its name and JSON type; `nullable` lets it be `null` (NaN)."""

    name: str
    type: str = "number"
    nullable: bool = False

    def __post_init__(self) -> None:
        if self.type not in JSON_TYPES:
            raise FeatureSchemaError(
                f"feature {self.name!r}: unknown type {self.type!r}",
                hint=f"use one of {', '.join(JSON_TYPES)}",
            )

    @property
    def numeric(self) -> bool:
        """Whether the feature enters the model as a number (booleans as 0/1)."""
        return self.type != "string"

    def as_dict(self) -> dict[str, Any]:
        """`{"name", "type", "nullable"}`: the stored form and the JSON one."""
        return {"name": self.name, "type": self.type, "nullable": self.nullable}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | str | Feature) -> Feature:
        """Read a stored feature: `as_dict`'s output (`type` defaults to "number",
        `nullable` to false, as older writers left them out), or a bare name.

        FeatureSchemaError (a ValueError) for anything else or an unknown type.
        """
        if isinstance(raw, Feature):
            return raw
        if isinstance(raw, str):
            return cls(raw)
        if not isinstance(raw, Mapping) or "name" not in raw:
            raise FeatureSchemaError(f"a feature is a name or a {{name, type}} object, not {raw!r}")
        return cls(str(raw["name"]), str(raw.get("type", "number")), bool(raw.get("nullable")))


def parse_features(raw: Iterable[Mapping[str, Any] | str | Feature]) -> tuple[Feature, ...]:
    """A stored schema (a list of `Feature.from_dict` forms) as Features, in order."""
    return tuple(Feature.from_dict(f) for f in raw)


def recorded_features(data: Mapping[str, Any]) -> tuple[Feature, ...] | None:
    """The schema an entry's data record holds (`data["features"]`), None without one
    (a model registered by hand)."""
    raw = data.get("features")
    return parse_features(raw) if raw else None


def estimator_features(
    estimator: Any, names: Sequence[str] | None = None
) -> tuple[Feature, ...] | None:
    """The schema of a model registered without one, all numbers: the estimator's
    `feature_names_in_`, else `names` (the spec's `data.features`), else `x0..xN` for
    its `n_features_in_`; None when it tells none of them."""
    found = getattr(estimator, "feature_names_in_", None)
    if found is None and names:
        found = names
    if found is None:
        count = getattr(estimator, "n_features_in_", None)
        if count is None:
            return None
        found = [f"x{i}" for i in range(int(count))]
    return tuple(Feature(str(n)) for n in found)


def resolve_features(
    estimator: Any, features: Sequence[Feature | str] | None
) -> tuple[Feature, ...]:
    """The feature schema: as given (names become numbers) or read from the estimator;
    ServingError when it cannot tell, or the count differs from what the estimator takes."""
    if features is None:
        found = estimator_features(estimator)
        if found is None:
            raise ServingError(
                "cannot tell the model's features: the estimator has neither "
                "`feature_names_in_` nor `n_features_in_`",
                hint="pass features=[...] explicitly, or fit the model on a DataFrame",
            )
        features = found
    resolved = tuple(Feature(f) if isinstance(f, str) else f for f in features)
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and int(expected) != len(resolved):
        raise ServingError(
            f"the estimator takes {int(expected)} features but {len(resolved)} were declared"
        )
    return resolved


def features_from_frame(frame: pd.DataFrame) -> tuple[Feature, ...]:
    """A feature schema from a training DataFrame's dtypes (columns with NaN are nullable)."""
    import pandas as pd

    features = []
    for name in frame.columns:
        column = frame[name]
        dtype = column.dtype
        if pd.api.types.is_bool_dtype(dtype):
            kind = "boolean"
        elif pd.api.types.is_integer_dtype(dtype):
            kind = "integer"
        elif pd.api.types.is_numeric_dtype(dtype):
            kind = "number"
        else:
            kind = "string"
        features.append(Feature(str(name), kind, nullable=bool(column.isna().any())))
    return tuple(features)
