"""Windows, plain values and bound conversion: the small pieces everything else relies on."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlcycle.data import Window, next_window
from mlcycle.data.source import OrdinalType, convert_bound, did_you_mean
from mlcycle.data.window import json_value, plain_value


def test_window_text_and_json() -> None:
    assert str(Window()) == "[start, end)"
    assert str(Window(1, 5)) == "[1, 5)"
    assert str(next_window(9)) == "(9, end)"
    stamp = pd.Timestamp("2024-03-01T12:30:00")
    window = Window(stamp, None)
    assert window.as_dict() == {
        "lower": "2024-03-01T12:30:00",
        "upper": None,
        "lower_inclusive": True,
    }
    assert Window.from_dict(json.loads(json.dumps(next_window(9).as_dict()))) == next_window(9)
    assert Window.from_dict(None) == Window()


def test_next_window() -> None:
    assert next_window(None) == Window()
    window = next_window(np.int64(41))
    assert window == Window(41, None, lower_inclusive=False)
    assert type(window.lower) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.int64(3), 3),
        (np.float32(0.5), 0.5),
        (float("nan"), None),
        (np.float64("nan"), None),
        (pd.NaT, None),
        (np.datetime64("2024-01-02T03:04:05"), pd.Timestamp("2024-01-02T03:04:05")),
        ("x", "x"),
        (None, None),
    ],
)
def test_plain_value(value: object, expected: object) -> None:
    result = plain_value(value)
    assert result == expected
    if expected is not None:
        assert type(result) is type(expected)


def test_json_value() -> None:
    assert json_value(dt.date(2024, 1, 2)) == "2024-01-02"
    assert json_value(pd.Timestamp("2024-01-02", tz="UTC")) == "2024-01-02T00:00:00+00:00"
    assert json_value(np.int32(7)) == 7


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        (OrdinalType("int"), "12", 12),
        (OrdinalType("int"), "12.0", 12),
        (OrdinalType("int"), "12.5", 12.5),
        (OrdinalType("float"), "1e3", 1000.0),
        (OrdinalType("timestamp"), "2024-01-02", pd.Timestamp("2024-01-02")),
        (
            OrdinalType("timestamp", tz="UTC"),
            "2024-01-02T02:00:00+02:00",
            pd.Timestamp("2024-01-02T00:00:00", tz="UTC"),
        ),
        (
            OrdinalType("timestamp", textual=True, sep="T"),
            "2024-01-02 10:00",
            "2024-01-02T10:00",
        ),
        (OrdinalType("text"), "abc", "abc"),
        (OrdinalType("unknown"), "7", 7),
        (OrdinalType("unknown"), "2024-01-02", pd.Timestamp("2024-01-02")),
    ],
)
def test_convert_bound(kind: OrdinalType, value: object, expected: object) -> None:
    assert convert_bound(value, kind) == expected


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (OrdinalType("int"), "ten"),
        (OrdinalType("int"), "nan"),
        (OrdinalType("float"), "x"),
        (OrdinalType("timestamp"), "2024-13-01"),
        (OrdinalType("timestamp"), "yesterday"),
        (OrdinalType("timestamp"), 5),
    ],
)
def test_convert_bound_refuses(kind: OrdinalType, value: object) -> None:
    with pytest.raises(ValueError):
        convert_bound(value, kind)


def test_did_you_mean() -> None:
    assert did_you_mean("Label", ["label", "x"]) == "; did you mean 'label'?"
    assert did_you_mean("lable", ["label", "x"]) == "; did you mean 'label'?"
    assert did_you_mean("zzz", ["label", "x"]) == ""


def test_import_is_cheap() -> None:
    code = (
        "import sys, mlcycle.data; "
        "print(sorted(m for m in ('pandas', 'sqlalchemy', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
