"""The ASGI app in-process: the router decides which model answers, any model serves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle.serve.app import ServingApp, create_app
from mlcycle.serve.model import RequestInfo, Router, ServedModel
from mlcycle.store.predictions import PredictionStore
from tests.serve.conftest import rows_of


async def _call(
    app: ServingApp,
    method: str,
    path: str,
    body: Any = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> tuple[int, Any]:
    """One HTTP request through the ASGI interface; (status, parsed JSON body)."""
    data = b"" if body is None else json.dumps(body).encode()
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(b"content-type", b"application/json"), *headers],
    }
    pending = [{"type": "http.request", "body": data, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    raw = b"".join(m.get("body", b"") for m in sent[1:])
    return sent[0]["status"], json.loads(raw) if raw else None


class ArmRouter(Router):
    """Chooses a model by the `x-arm` header: the shape of a dynamic selector."""

    def __init__(self, models: Sequence[ServedModel]) -> None:
        self._models = tuple(models)

    @property
    def models(self) -> Sequence[ServedModel]:
        return self._models

    def select(self, request: RequestInfo) -> ServedModel:
        arm = request.header("X-Arm")
        return self._models[int(arm)] if arm else self._models[0]


def test_the_router_decides_which_model_answers(pipeline: Any, cancer: Any) -> None:
    models = [
        ServedModel.from_estimator(pipeline, name="cancer", release="1.0.0", generation=g)
        for g in (1, 2)
    ]
    app = create_app(ArmRouter(models))
    body = {"instances": rows_of(cancer[0], 0, 2)}

    async def scenario() -> list[Any]:
        await app.startup()
        try:
            return [
                await _call(app, "POST", "/v1/predict", body),
                await _call(app, "POST", "/v1/predict", body, [(b"x-arm", b"1")]),
                await _call(app, "GET", "/v1/model"),
                await _call(app, "GET", "/v2/models/cancer/versions/1.0.0+2"),
            ]
        finally:
            await app.shutdown()

    first, second, info, version = asyncio.run(scenario())
    assert first[0] == second[0] == 200
    assert first[1]["model"]["generation"] == 1
    assert second[1]["model"]["generation"] == 2
    assert info[1]["generation"] == 1
    assert version[0] == 200 and version[1]["versions"] == ["1.0.0+2"]


@pytest.mark.slow
def test_an_unpicklable_pipeline_serves_in_process_with_its_log(
    cancer: Any, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = cancer
    model = make_pipeline(
        FunctionTransformer(lambda a: np.sqrt(np.abs(a))),
        LogisticRegression(max_iter=2000, random_state=0),
    ).fit(X, y)
    served = ServedModel.from_estimator(model, name="cancer", sample=X)
    assert served.predictor.backend == "sklearn"
    url = f"sqlite:///{tmp_path / 'store.db'}"
    app = create_app(served, store_url=url)

    async def scenario() -> tuple[Any, Any]:
        await app.startup()
        try:
            predicted = await _call(app, "POST", "/v1/predict", {"instances": rows_of(X, 0, 40)})
            first = predicted[1]["ids"][0]
            feedback = await _call(app, "POST", "/v1/feedback", {"id": first, "outcome": 1})
            return predicted, feedback
        finally:
            await app.shutdown()

    (status, body), (_, report) = asyncio.run(scenario())
    assert status == 200
    assert body["predictions"] == model.predict(X.iloc[:40]).tolist()
    assert report["accepted"] == [body["ids"][0]]
    store = PredictionStore(url)
    assert store.counts().predictions == 40
    assert [r.outcome for r in store.joined()] == [1]


def test_unusable_sources_are_serving_errors(pipeline: Any) -> None:
    from mlcycle.errors import ServingError
    from mlcycle.serve.model import resolve_source
    from mlcycle.serve.server import serve

    with pytest.raises(ServingError, match="returned dict, not a ServedModel"):
        resolve_source(lambda: {})
    with pytest.raises(ServingError, match="cannot serve int"):
        resolve_source(3)  # type: ignore[arg-type]
    with pytest.raises(ServingError, match="workers must be at least 1"):
        serve(lambda: {}, workers=0)  # type: ignore[arg-type,return-value]
    with pytest.raises(ServingError, match=r"^port must be between 0 and 65535, not 65536$"):
        serve(lambda: {}, port=65536)  # type: ignore[arg-type,return-value]


def test_a_model_that_cannot_be_copied_to_workers_is_refused_before_binding(
    cancer: Any,
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from mlcycle.errors import ServingError
    from mlcycle.serve.server import serve

    X, y = cancer
    model = make_pipeline(
        FunctionTransformer(lambda a: np.sqrt(np.abs(a))), LogisticRegression(max_iter=2000)
    ).fit(X, y)
    served = ServedModel.from_estimator(model, name="cancer", sample=X)
    with pytest.raises(ServingError, match="cannot be copied to worker processes") as info:
        serve(served, port=0, workers=2, store_url=None)
    assert info.value.hint and "workers=1" in info.value.hint


@pytest.mark.parametrize(("cast", "kind"), [(bool, "boolean"), (float, "number"), (str, "string")])
def test_labels_are_answered_and_documented_in_their_own_json_type(
    cancer: Any, cast: type, kind: str
) -> None:
    from jsonschema import Draft202012Validator
    from sklearn.tree import DecisionTreeClassifier

    X, y = cancer
    labels = y.map(cast)
    model = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, labels)
    served = ServedModel.from_estimator(model, name="cancer", sample=X)
    app = create_app(served)

    async def scenario() -> list[Any]:
        await app.startup()
        try:
            matrix = X.iloc[:2].to_numpy()
            tensor = {"name": "x", "datatype": "FP64", "shape": list(matrix.shape)}
            infer = {"inputs": [{**tensor, "data": matrix.ravel().tolist()}]}
            return [
                await _call(app, "GET", "/openapi.json"),
                await _call(app, "POST", "/v1/predict", {"instances": rows_of(X, 0, 40)}),
                await _call(app, "GET", "/v2/models/cancer"),
                await _call(app, "POST", "/v2/models/cancer/infer", infer),
            ]
        finally:
            await app.shutdown()

    (_, doc), (status, answer), (_, metadata), (_, inferred) = asyncio.run(scenario())
    declared = metadata["outputs"][0]["datatype"]
    assert (
        inferred["outputs"][0]["datatype"]
        == declared
        == {bool: "BOOL", float: "FP64"}.get(cast, "BYTES")
    )
    items = doc["components"]["schemas"]["PredictResponse"]["properties"]["predictions"]["items"]
    assert items == {"type": kind, "enum": [cast(0), cast(1)]}
    # The answers in the classes' own type whichever backend runs the model (ONNX
    # Runtime's labels are integers for boolean and float classes).
    assert served.predictor.backend == "onnx"
    assert status == 200 and answer["predictions"] == model.predict(X.iloc[:40]).tolist()
    assert {type(p) for p in answer["predictions"]} == {cast}
    wrapper = {"$ref": "#/components/schemas/PredictResponse", "components": doc["components"]}
    Draft202012Validator(wrapper).validate(answer)
