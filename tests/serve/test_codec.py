"""Request bodies to matrices: every form, and a precise 400 for every mistake."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from mlcycle.registry.features import Feature
from mlcycle.serve.codec import Codec, RequestError
from mlcycle.serve.model import ServedModel
from mlcycle.serve.predictor import SklearnPredictor


def _codec(*features: Feature) -> Codec:
    from sklearn.dummy import DummyClassifier

    estimator = DummyClassifier().fit(np.zeros((2, len(features))), [0, 1])
    predictor = SklearnPredictor(estimator, features, "classification")
    return Codec(ServedModel("m", tuple(features), "classification", predictor))


PLAIN = _codec(Feature("a"), Feature("b"))
MIXED = _codec(
    Feature("n", "integer"),
    Feature("flag", "boolean"),
    Feature("x", "number", nullable=True),
    Feature("plan", "string"),
)


def _error(call: Any, *args: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        call(*args)
    assert info.value.status == 400
    return info.value


def test_instances_become_rows_in_feature_order() -> None:
    matrix = PLAIN.instances([{"b": 2, "a": 1.5}, {"a": -1, "b": 0.25}])
    assert matrix.dtype == np.float64
    assert matrix.tolist() == [[1.5, 2.0], [-1.0, 0.25]]


def test_huge_finite_numbers_whose_sum_overflows_are_accepted() -> None:
    matrix = PLAIN.instances([{"a": 1.5e308, "b": 1.5e308}])
    assert matrix.tolist() == [[1.5e308, 1.5e308]]


def test_columns_become_the_same_rows() -> None:
    matrix = PLAIN.columns({"b": [2, 0.25], "a": [1.5, -1]})
    assert matrix.tolist() == [[1.5, 2.0], [-1.0, 0.25]]


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ({"a": 1}, "'instances' must be an array of objects, got object"),
        ([], "'instances' is empty"),
        ([[1, 2]], r"instances\[0\] must be an object of features, got array"),
        ([{"a": 1}], r"instances\[0\]: missing feature 'b'"),
        ([{"a": 1, "b": 2, "c": 3}], r"instances\[0\]: unknown feature 'c'"),
        ([{"a": 1, "c": 3}], "missing feature 'b'; unknown feature 'c'"),
        ([{"a": 1, "b": "2"}], r"instances\[0\]\['b'\]: expected a number, got string '2'"),
        ([{"a": True, "b": 2}], r"instances\[0\]\['a'\]: expected a number, got boolean"),
        ([{"a": None, "b": 2}], r"instances\[0\]\['a'\]: null is not allowed"),
        ([{"a": 1, "b": 2}, {"a": [1], "b": 2}], r"instances\[1\]\['a'\]: expected a number"),
        ([{"a": 10**400, "b": 2}], "too large"),
        ([{"a": math.inf, "b": 2}], "not finite"),
        ([{"a": 1.0, "b": -math.inf}, {"a": 1.0, "b": math.inf}], "not finite"),
        ([{"a": math.nan, "b": 2}], "not finite"),
    ],
)
def test_bad_instances_say_what_is_wrong(instances: Any, message: str) -> None:
    error = _error(PLAIN.instances, instances)
    assert re.search(message, error.message), error.message


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([1, 2], "'columns' must be an object"),
        ({"a": [1]}, "missing feature 'b'"),
        ({"a": 1, "b": [1]}, r"columns\['a'\] must be an array, got integer"),
        ({"a": [1, 2], "b": [1]}, r"columns\['b'\] has 1 values but columns\['a'\] has 2"),
        ({"a": [], "b": []}, "'columns' are empty"),
        ({"a": [1], "b": ["x"]}, r"columns\['b'\]\[0\]: expected a number"),
    ],
)
def test_bad_columns_say_what_is_wrong(columns: Any, message: str) -> None:
    error = _error(PLAIN.columns, columns)
    assert re.search(message, error.message), error.message


def test_mixed_types_are_checked_per_feature() -> None:
    matrix = MIXED.instances(
        [
            {"n": 3, "flag": True, "x": None, "plan": "gold"},
            {"n": 4.0, "flag": False, "x": 0.5, "plan": "basic"},
        ]
    )
    assert matrix.dtype == object
    assert matrix[0, 0] == 3 and matrix[0, 1] == 1.0 and math.isnan(matrix[0, 2])
    assert matrix[1].tolist() == [4.0, 0.0, 0.5, "basic"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"n": 1.5, "flag": True, "x": 1, "plan": "a"}, "expected an integer, got number 1.5"),
        ({"n": 1, "flag": 1, "x": 1, "plan": "a"}, "expected a boolean, got integer 1"),
        ({"n": 1, "flag": True, "x": 1, "plan": 7}, "expected a string, got integer 7"),
        ({"n": 1, "flag": True, "x": 1, "plan": None}, "null is not allowed"),
    ],
)
def test_mixed_type_mistakes(row: dict[str, Any], message: str) -> None:
    assert message in _error(MIXED.instances, [row]).message


def test_v2_one_tensor_in_feature_order() -> None:
    matrix = PLAIN.v2_inputs(
        [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]
    )
    assert matrix.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    nested = PLAIN.v2_inputs(
        [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3, 4]]}]
    )
    assert nested.tolist() == matrix.tolist()


def test_v2_one_tensor_per_feature() -> None:
    matrix = PLAIN.v2_inputs(
        [
            {"name": "b", "shape": [2], "datatype": "FP64", "data": [2, 4]},
            {"name": "a", "shape": [2, 1], "datatype": "INT64", "data": [1, 3]},
        ]
    )
    assert matrix.tolist() == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "'inputs' must be a non-empty array"),
        ([{"name": "x", "shape": [1, 2], "datatype": "FP64"}], "missing field 'data'"),
        ([{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], r"\[N, 2\]"),
        ([{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2]}], "needs 4 values"),
        ([{"name": "x", "shape": [1, 2], "datatype": "FP99", "data": [1, 2]}], "unknown datatype"),
        ([{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, "2"]}], "holds string"),
        ([{"name": "x", "shape": [1, 2], "datatype": "BYTES", "data": ["1", "2"]}], "is BYTES"),
        ([{"name": "x", "shape": [-1, 2], "datatype": "FP64", "data": [1, 2]}], "shape must be"),
        ([{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [[1], 2]}], "mixes arrays"),
        (
            [
                {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "b", "shape": [2], "datatype": "FP64", "data": [1, 2]},
            ],
            "different numbers of rows",
        ),
        (
            [
                {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
                {"name": "z", "shape": [1], "datatype": "FP64", "data": [1]},
            ],
            "missing input 'b'; unknown input 'z'",
        ),
    ],
)
def test_bad_v2_inputs_say_what_is_wrong(inputs: Any, message: str) -> None:
    error = _error(PLAIN.v2_inputs, inputs)
    assert re.search(message, error.message), error.message
