"""Data validation's pure functions: a profile learned from a frame, new rows checked against it."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mlcycle.data.validation import (
    MAX_CATEGORIES,
    DataProfile,
    DataRejectedError,
    check,
    merge,
    profile,
)
from mlcycle.errors import ExitCode
from mlcycle.spec.model import ValidationSpec

LIMITS = ValidationSpec(out_of_range=0.1, unseen_categories=0.1, null_increase=0.1)


def training() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20.0, 35.0, 50.0, 65.0, np.nan] * 4,
            "plan": ["basic", "pro", "basic", "team", "pro"] * 4,
            "active": [True, False, True, True, False] * 4,
            "joined": pd.date_range("2024-01-01", periods=20, freq="D"),
        }
    )


def kinds(anomalies: list) -> list[tuple[str, str]]:
    return [(a.column, a.kind) for a in anomalies]


def test_profile_records_kinds_nulls_ranges_and_categories_as_small_json() -> None:
    learned = profile(training())
    age, plan, active, joined = learned.columns
    assert (age.kind, plan.kind, active.kind, joined.kind) == (
        "numeric",
        "categorical",
        "bool",
        "datetime",
    )
    assert age.null_share == pytest.approx(0.2)
    assert (age.minimum, age.maximum) == (20.0, 65.0)
    assert plan.categories == ("basic", "pro", "team")
    assert learned.rows == 20
    raw = json.loads(json.dumps(learned.as_dict()))  # what the registry stores
    assert DataProfile.from_dict(raw) == learned


def test_rows_like_the_training_data_pass() -> None:
    assert check(profile(training()), training().iloc[:7], LIMITS) == []


def test_out_of_range_numbers_fail_above_their_share() -> None:
    new = training()
    new["age"] = new["age"] * 3  # most values above 65 now
    anomalies = check(profile(training()), new, LIMITS)
    assert kinds(anomalies) == [("age", "out of range")]
    assert anomalies[0].value is not None and anomalies[0].value > 0.5
    assert anomalies[0].threshold == 0.1
    # A few outliers stay within the allowed share; a threshold of None turns it off.
    few = training()
    few.loc[0, "age"] = 99.0
    assert check(profile(training()), few, LIMITS) == []
    assert check(profile(training()), new, ValidationSpec(out_of_range=None)) == []


def test_unseen_categories_fail_and_name_examples() -> None:
    new = training()
    new.loc[:9, "plan"] = "enterprise"
    (anomaly,) = check(profile(training()), new, LIMITS)
    assert (anomaly.column, anomaly.kind) == ("plan", "unseen categories")
    assert anomaly.value == pytest.approx(0.5)
    assert "'enterprise'" in anomaly.detail
    assert anomaly.condition == "plan: unseen categories <= 0.1"


def test_a_rise_of_missing_values_fails() -> None:
    new = training()
    new.loc[:9, "plan"] = None
    (anomaly,) = check(profile(training()), new, LIMITS)
    assert (anomaly.column, anomaly.kind) == ("plan", "null share")
    assert anomaly.value == pytest.approx(0.5)


def test_new_missing_and_retyped_columns_always_fail() -> None:
    new = training().drop(columns=["active"])
    new["region"] = "north"
    new["age"] = new["age"].astype(str)  # numbers arriving as text
    anomalies = check(profile(training()), new, ValidationSpec(out_of_range=None))
    assert kinds(anomalies) == [
        ("active", "missing column"),
        ("age", "type change"),
        ("region", "new column"),
    ]
    assert "numeric in training, categorical now" in anomalies[1].detail


def test_free_text_columns_record_no_category_set() -> None:
    frame = pd.DataFrame({"comment": [f"text {i}" for i in range(MAX_CATEGORIES + 1)]})
    learned = profile(frame)
    assert learned.columns[0].categories is None
    new = pd.DataFrame({"comment": ["never seen"] * 10})
    assert check(learned, new, LIMITS) == []


def test_merge_is_what_a_warm_started_model_has_seen() -> None:
    old = profile(training())
    more = training().iloc[:10].assign(age=100.0, plan="enterprise")
    both = merge(old, profile(more))
    assert both.rows == 30
    age = both.column("age")
    assert age is not None and (age.minimum, age.maximum) == (20.0, 100.0)
    plan = both.column("plan")
    assert plan is not None and plan.categories == ("basic", "enterprise", "pro", "team")


def test_a_rejection_is_a_gate_rejection_with_one_row_per_anomaly() -> None:
    new = training().drop(columns=["active"])
    new.loc[:9, "plan"] = "enterprise"
    anomalies = check(profile(training()), new, LIMITS)
    error = DataRejectedError(anomalies, against="0.1.0/1", rows=len(new))
    assert error.exit_code == ExitCode.GATE_REJECTED
    assert [f.condition for f in error.failures] == [
        "active: missing column",
        "plan: unseen categories <= 0.1",
    ]
    assert math.isnan(error.failures[0].threshold)
    assert "0.1.0/1" in error.message and "nothing was trained" in error.message
    assert json.loads(json.dumps(error.as_dict()))["anomalies"][1]["anomaly"] == (
        "unseen categories"
    )
