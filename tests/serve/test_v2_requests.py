"""Malformed Open Inference Protocol requests, in-process: each one a 400 that says what
is wrong with which input, as a client library's user needs to fix it."""

from __future__ import annotations

import asyncio
from typing import Any

from mlcycle.serve.app import create_app
from mlcycle.serve.model import ServedModel
from tests.serve.test_app import _call


def _column(name: Any, data: list[Any], shape: list[int] | None = None, **extra: Any) -> Any:
    return {"name": name, "datatype": "FP64", "shape": shape or [len(data)], "data": data, **extra}


def test_each_malformed_infer_request_is_a_400_naming_its_input(cancer: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = cancer
    X = X.iloc[:, :2]
    a, b = (str(c) for c in X.columns)
    model = LogisticRegression().fit(X, y)
    app = create_app(ServedModel.from_estimator(model, name="cancer", backend="sklearn"))
    bodies: dict[str, Any] = {
        "inputs have no rows": [_column(a, [], [0]), _column(b, [], [0])],
        f"input {a!r} appears twice": [_column(a, [1.0]), _column(a, [1.0]), _column(b, [1.0])],
        "inputs[0] must be an object, got integer": [5],
        "inputs[0]: unknown field(s) 'colour'": [_column(a, [1.0], colour="red"), _column(b, [1])],
        "inputs[0].parameters must be an object": [_column(a, [1.0], parameters=3)],
        "inputs[0].name must be a string": [_column(7, [1.0])],
        "input 'x': data mixes arrays and scalars": [_column("x", [[1.0, 2.0], 3.0], [2, 2])],
        "input 'x' has no rows": [_column("x", [], [0, 2])],
    }

    async def scenario() -> dict[str, Any]:
        await app.startup()
        try:
            return {
                expected: await _call(app, "POST", "/v2/models/cancer/infer", {"inputs": inputs})
                for expected, inputs in bodies.items()
            }
        finally:
            await app.shutdown()

    answers = asyncio.run(scenario())
    assert answers == {expected: (400, {"error": expected}) for expected in bodies}
