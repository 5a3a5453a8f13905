"""The one feature-schema type: its stored form, what older writers left, and its readers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mlcycle.errors import ServingError
from mlcycle.registry.features import (
    Feature,
    FeatureSchemaError,
    estimator_features,
    features_from_frame,
    parse_features,
    recorded_features,
)


def test_the_stored_form_round_trips() -> None:
    features = (Feature("a"), Feature("n", "integer"), Feature("s", "string", nullable=True))
    stored = [f.as_dict() for f in features]
    assert stored[2] == {"name": "s", "type": "string", "nullable": True}
    assert list(stored[0]) == ["name", "type", "nullable"]  # the key order entry.json has
    assert parse_features(stored) == features


def test_older_forms_still_read() -> None:
    # Entries of older mlcycles recorded no `nullable`; bundles may name a feature only.
    assert parse_features(["a", {"name": "b", "type": "integer"}, {"name": "c"}]) == (
        Feature("a"),
        Feature("b", "integer"),
        Feature("c"),
    )
    assert recorded_features({"features": [{"name": "x", "type": "boolean"}]}) == (
        Feature("x", "boolean"),
    )
    assert recorded_features({}) is None
    assert recorded_features({"features": []}) is None


@pytest.mark.parametrize("raw", [{"type": "number"}, 3, None])
def test_a_malformed_record_is_a_value_error(raw: object) -> None:
    with pytest.raises(ValueError, match="a feature is a name"):
        Feature.from_dict(raw)  # type: ignore[arg-type]


def test_an_unknown_type_is_both_a_serving_and_a_value_error() -> None:
    with pytest.raises(FeatureSchemaError, match="unknown type 'float'") as caught:
        Feature.from_dict({"name": "x", "type": "float"})
    assert isinstance(caught.value, ServingError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.hint == "use one of number, integer, boolean, string"


def test_features_from_a_frame() -> None:
    frame = pd.DataFrame({"n": [1, 2], "x": [0.5, None], "flag": [True, False], "plan": ["a", "b"]})
    assert features_from_frame(frame) == (
        Feature("n", "integer"),
        Feature("x", "number", nullable=True),
        Feature("flag", "boolean"),
        Feature("plan", "string"),
    )


def test_estimator_features_fall_back_in_order() -> None:
    from sklearn.linear_model import LinearRegression

    named = LinearRegression().fit(pd.DataFrame({"a": [0.0, 1.0], "b": [1.0, 0.0]}), [0, 1])
    bare = LinearRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    assert estimator_features(named, ["ignored", "too"]) == (Feature("a"), Feature("b"))
    assert estimator_features(bare, ["p", "q"]) == (Feature("p"), Feature("q"))
    assert estimator_features(bare) == (Feature("x0"), Feature("x1"))
    assert estimator_features(LinearRegression()) is None


def test_an_older_entry_serves_the_same_schema(tmp_path: Path) -> None:
    """An entry whose `data.features` has no `nullable` (as older mlcycles recorded it)."""
    from mlcycle.serve.live import served_model_from_entry
    from tests.package.conftest import make_project

    project = make_project(tmp_path / "proj")
    stored = next(project.registry.root.rglob("entry.json"))
    recorded = json.loads(stored.read_text())["data"]["features"]
    assert recorded[0] == {"name": "mean radius", "type": "number"}

    entry = project.registry.get(project.entry.ref)
    served = served_model_from_entry("cancer-open", project.registry, entry)
    assert all(type(f) is Feature for f in served.features)
    assert served.describe()["features"] == [
        {"name": f["name"], "type": "number", "nullable": False} for f in recorded
    ]
