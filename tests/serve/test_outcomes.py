"""Outcomes must fit the served model: one of its classes, or a finite number (issue 10.5).

A misfit gets 422 naming the item and what was expected, and nothing of its request
is stored (all or nothing per request); the row cap of a request (`max_rows`) is 413.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import numpy as np
import pytest

from mlcycle.serve.app import ServeOptions, create_app
from mlcycle.serve.model import ServedModel
from mlcycle.store.outcomes import OutcomeRule, check_outcome, scoring_problem
from tests.serve.conftest import Server, rows_of
from tests.serve.test_app import ArmRouter, _call


def _predict_ids(server: Server, cancer: Any, count: int) -> list[str]:
    answer = server.post("/v1/predict", {"instances": rows_of(cancer[0], 0, count)})
    assert answer.status == 200, answer.json
    ids: list[str] = answer.json["ids"]
    return ids


def _stored(server: Server, ids: list[str]) -> dict[str, str]:
    assert server.store is not None
    marks = ", ".join("?" for _ in ids)
    with sqlite3.connect(server.store) as db:
        rows = db.execute(
            f"SELECT prediction_id, outcome FROM outcomes WHERE prediction_id IN ({marks})", ids
        ).fetchall()
    return dict(rows)


@pytest.mark.parametrize(
    ("outcome", "said"),
    [
        ({"x": [1]}, "must be a single value, not an object"),
        ([1, 2], "must be a single value, not a list"),
        (-1e308, "must be one of the model's classes 0, 1, got -1e+308"),
        ("x" * 100_000, "(a number), got 'xxxxxxxxx"),
        ("yes", "must be one of the model's classes 0, 1 (a number), got 'yes'"),
        (True, "(a number), got True"),
        (0.5, "got 0.5"),
        (2, "got 2"),
    ],
)
def test_an_outcome_that_is_no_class_of_the_model_is_422_and_nothing_is_stored(
    server: Server, cancer: Any, outcome: Any, said: str
) -> None:
    good, bad = _predict_ids(server, cancer, 2)
    # The good item comes first: all or nothing means it is not stored either.
    answer = server.post(
        "/v1/feedback", [{"id": good, "outcome": 1}, {"id": bad, "outcome": outcome}]
    )
    assert answer.status == 422, answer.json
    message = answer.json["error"]
    assert message.startswith("[1]: 'outcome' "), message
    assert said in message, message
    assert "nothing of this request was stored" in message
    assert len(message) < 400  # a 100 KB outcome is not echoed back
    assert _stored(server, [good, bad]) == {}
    # The same predictions still take their true outcomes afterwards.
    retry = server.post("/v1/feedback", [{"id": good, "outcome": 1}, {"id": bad, "outcome": 0}])
    assert retry.status == 200 and retry.json["accepted"] == [good, bad]


def test_good_outcomes_are_stored_in_the_classes_type(server: Server, cancer: Any) -> None:
    ids = _predict_ids(server, cancer, 3)
    answer = server.post(
        "/v1/feedback",
        [
            {"id": ids[0], "outcome": 1},
            {"id": ids[1], "outcome": 0.0},
            {"id": ids[2], "outcome": 1},
        ],
    )
    assert answer.status == 200, answer.json
    assert answer.json == {"ok": True, "accepted": ids, "unknown": [], "duplicate": []}
    # JSON 0.0 is the class 0 of an integer-labelled model, and is stored as 0.
    assert _stored(server, ids) == {ids[0]: "1", ids[1]: "0", ids[2]: "1"}


def test_a_single_object_body_names_the_body(server: Server, cancer: Any) -> None:
    (pid,) = _predict_ids(server, cancer, 1)
    answer = server.post("/v1/feedback", {"id": pid, "outcome": "yes"})
    assert answer.status == 422
    assert answer.json["error"].startswith("the body: 'outcome' must be one of")
    assert _stored(server, [pid]) == {}


def test_rules_compare_in_the_classes_type() -> None:
    strings = (OutcomeRule("classification", ("no", "yes")),)
    assert check_outcome("yes", strings) == ("yes", None)
    assert "(a string), got 1" in str(check_outcome(1, strings)[1])
    booleans = (OutcomeRule("classification", (False, True)),)
    assert check_outcome(True, booleans) == (True, None)
    assert check_outcome(1, booleans)[1] is not None
    numbers = (OutcomeRule("classification", (0, 1)),)
    assert check_outcome(1.0, numbers) == (1, None)
    assert type(check_outcome(1.0, numbers)[0]) is int
    regression = (OutcomeRule("regression"),)
    assert check_outcome(-1e308, regression) == (-1e308, None)
    assert check_outcome(float("inf"), regression)[1] == "must be a finite number, got inf"
    assert check_outcome("3.5", regression) == (
        None,
        "must be a number (a regression model), got '3.5'",
    )
    assert check_outcome(True, regression)[1] == "must be a number (a regression model), got True"
    assert check_outcome(None, regression)[1] == "must be a single value, not null"
    unknown = (OutcomeRule("classification", None),)  # a model that does not say its classes
    assert check_outcome("a", unknown) == ("a", None)
    too_long = "must be a class label of 1 to 200 characters"
    assert check_outcome("a" * 201, unknown) == check_outcome("", unknown) == (None, too_long)
    assert check_outcome(float("nan"), unknown)[1] == "must be a class label, got nan"
    assert check_outcome([1], unknown)[1] == "must be a single value, not a list"


def test_scoring_problems_of_stored_outcomes() -> None:
    assert scoring_problem(1, 0, "classification") is None
    assert scoring_problem(1.0, 0, "classification") is None
    assert scoring_problem("yes", 0, "classification") == (
        "the outcome is a string; the model's labels are numbers"
    )
    assert scoring_problem(-1e308, 0, "classification") is not None
    assert scoring_problem([1, 2], 0, "classification") is not None
    assert scoring_problem("yes", "no", "classification") is None
    assert scoring_problem(2.5, 1.0, "regression") is None
    assert scoring_problem("2.5", 1.0, "regression") == "the outcome is a string, not a number"
    assert scoring_problem(float("inf"), 1.0, "regression") == "the outcome is not a finite number"
    assert scoring_problem(None, 1.0, "regression") == "the outcome is null, not a single value"


def _regressor_and_classifiers(cancer: Any) -> tuple[ServedModel, ServedModel, ServedModel]:
    from sklearn.linear_model import LinearRegression, LogisticRegression

    X, y = cancer
    X = X.iloc[:, :3]
    labels = np.where(y == 1, "benign", "malignant")
    three = np.where(X.iloc[:, 0] > 15, "large", labels)
    old = LogisticRegression(max_iter=500).fit(X, labels)
    new = LogisticRegression(max_iter=500).fit(X, three)
    regressor = LinearRegression().fit(X, X.iloc[:, 0] * 2.0)
    return (
        ServedModel.from_estimator(old, name="c", release="1.0.0", generation=1),
        ServedModel.from_estimator(new, name="c", release="1.0.0", generation=2),
        ServedModel.from_estimator(regressor, name="c", release="1.0.0", generation=1),
    )


def test_dynamic_generations_take_the_union_of_their_classes(cancer: Any, tmp_path: Any) -> None:
    old, new, regressor = _regressor_and_classifiers(cancer)
    row = {"instances": rows_of(cancer[0].iloc[:, :3], 0, 1)}

    async def scenario(models: Any, outcomes: list[Any]) -> list[tuple[int, Any]]:
        app = create_app(ArmRouter(models), store_url=f"sqlite:///{tmp_path / 'store.db'}")
        await app.startup()
        try:
            answers = []
            for outcome in outcomes:
                status, body = await _call(app, "POST", "/v1/predict", row)
                assert status == 200, body
                pid = body["ids"][0]
                answers.append(
                    await _call(app, "POST", "/v1/feedback", {"id": pid, "outcome": outcome})
                )
            return answers
        finally:
            await app.shutdown()

    # Generation 1 predicted; "large" is a class only generation 2 knows: still a true outcome.
    answers = asyncio.run(scenario([old, new], ["large", "benign", "huge", 1]))
    assert [status for status, _ in answers] == [200, 200, 422, 422]
    assert "'benign', 'malignant', 'large'" in answers[2][1]["error"]
    regression = asyncio.run(scenario([regressor], [12.5, 3, "12.5", [1.0]]))
    assert [status for status, _ in regression] == [200, 200, 422, 422]
    assert "must be a number (a regression model), got '12.5'" in regression[2][1]["error"]


def test_more_rows_than_max_rows_is_413_in_every_form(pipeline: Any, cancer: Any) -> None:
    model = ServedModel.from_estimator(pipeline, name="cancer", release="1.0.0")
    app = create_app(model, options=ServeOptions(max_rows=5))
    frame = cancer[0]
    five, six = rows_of(frame, 0, 5), rows_of(frame, 0, 6)
    columns = {name: [row[name] for row in six] for name in six[0]}

    def tensor(rows: list[dict[str, float]]) -> dict[str, Any]:
        data = [list(r.values()) for r in rows]
        return {"name": "x", "shape": [len(data), len(data[0])], "datatype": "FP64", "data": data}

    async def scenario() -> list[tuple[int, Any]]:
        await app.startup()
        try:
            return [
                await _call(app, "POST", "/v1/predict", {"instances": six}),
                await _call(app, "POST", "/v1/predict", {"columns": columns}),
                await _call(app, "POST", "/v2/models/cancer/infer", {"inputs": [tensor(six)]}),
                await _call(app, "POST", "/v1/predict", {"instances": five}),
                await _call(app, "POST", "/v2/models/cancer/infer", {"inputs": [tensor(five)]}),
            ]
        finally:
            await app.shutdown()

    answers = asyncio.run(scenario())
    assert [status for status, _ in answers] == [413, 413, 413, 200, 200]
    for _, body in answers[:3]:
        assert body["error"] == (
            "the request has 6 rows; this server takes at most 5 per request "
            "(deployment.serve.max_rows): send them in smaller requests"
        )


@pytest.mark.slow
def test_max_rows_reaches_the_server_process(bundle: Any, tmp_path: Any, cancer: Any) -> None:
    from tests.serve.conftest import launch

    running = launch(bundle, tmp_path, "--max-rows", "3", "--workers", "2")
    try:
        for _ in range(4):  # both workers, whichever answers
            answer = running.post("/v1/predict", {"instances": rows_of(cancer[0], 0, 4)})
            assert answer.status == 413, answer.json
        assert running.post("/v1/predict", {"instances": rows_of(cancer[0], 0, 3)}).status == 200
    finally:
        running.stop()
