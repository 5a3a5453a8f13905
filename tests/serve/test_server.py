"""The serving contract over real HTTP, on a real server process and a real pipeline."""

from __future__ import annotations

import http.client
import time
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlcycle.serve.ids import is_wellformed
from mlcycle.store.predictions import PredictionStore
from tests.serve.conftest import GENERATION, NAME, RELEASE, Server, rows_of

pytestmark = pytest.mark.slow


def test_predictions_equal_sklearns_own(server: Server, pipeline: Any, cancer: Any) -> None:
    X, _ = cancer
    reply = server.post("/v1/predict", {"instances": rows_of(X)})

    assert reply.status == 200, reply.raw
    body = reply.json
    assert body["predictions"] == pipeline.predict(X).tolist()
    assert np.max(np.abs(np.array(body["probabilities"]) - pipeline.predict_proba(X))) <= 1e-5
    assert body["model"] == {"name": NAME, "release": RELEASE, "generation": GENERATION}
    assert len(body["ids"]) == len(X) == len(set(body["ids"]))
    assert all(is_wellformed(i) for i in body["ids"])


def test_one_row_at_a_time_and_ids_unique_across_requests(
    server: Server, pipeline: Any, cancer: Any
) -> None:
    X, _ = cancer
    ids = []
    for i in range(10):
        body = server.post("/v1/predict", {"instances": rows_of(X, i, i + 1)}).json
        assert body["predictions"] == pipeline.predict(X.iloc[i : i + 1]).tolist()
        ids += body["ids"]
    assert len(set(ids)) == 10


def test_columnar_form_gives_the_same_predictions(
    server: Server, pipeline: Any, cancer: Any
) -> None:
    X, _ = cancer
    columns = {str(c): [float(v) for v in X[c].iloc[:25]] for c in X.columns}
    body = server.post("/v1/predict", {"columns": columns}).json
    assert body["predictions"] == pipeline.predict(X.iloc[:25]).tolist()


def test_model_description(server: Server) -> None:
    body = server.get("/v1/model").json
    assert body["name"] == NAME
    assert (body["release"], body["generation"]) == (RELEASE, GENERATION)
    assert body["task"] == "classification"
    assert body["backend"] == "onnx"
    assert body["output"] == {"kind": "label", "classes": [0, 1], "probabilities": True}
    assert len(body["features"]) == 30
    assert body["features"][0] == {"name": "mean radius", "type": "number", "nullable": False}


def test_health_and_readiness(server: Server) -> None:
    health = server.get("/healthz").json
    assert health == {"status": "ok", "worker": server.process.pid}
    assert server.get("/readyz").json == {"status": "ready"}
    assert server.get("/v2/health/live").json == {"live": True}
    assert server.get("/v2/health/ready").json == {"ready": True}


def test_v2_metadata(server: Server) -> None:
    assert server.get("/v2").json["name"] == "mlcycle"
    meta = server.get(f"/v2/models/{NAME}").json
    assert meta["name"] == NAME
    assert meta["versions"] == [f"{RELEASE}+{GENERATION}"]
    assert meta["inputs"][0] == {"name": "mean radius", "datatype": "FP64", "shape": [-1]}
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert server.get(f"/v2/models/{NAME}/ready").json == {"name": NAME, "ready": True}
    version = f"/v2/models/{NAME}/versions/{RELEASE}+{GENERATION}"
    assert server.get(version).status == 200
    assert server.get(f"/v2/models/{NAME}/versions/9.9.9").status == 404
    assert server.get("/v2/models/other").status == 404


def test_v2_infer_with_one_tensor(server: Server, pipeline: Any, cancer: Any) -> None:
    X, _ = cancer
    rows = X.iloc[:7].to_numpy()
    request = {
        "id": "req-1",
        "inputs": [
            {
                "name": "input-0",
                "shape": [7, 30],
                "datatype": "FP64",
                "data": rows.ravel().tolist(),
            }
        ],
    }
    reply = server.post(f"/v2/models/{NAME}/infer", request)

    assert reply.status == 200, reply.raw
    body = reply.json
    assert body["model_name"] == NAME and body["id"] == "req-1"
    assert body["model_version"] == f"{RELEASE}+{GENERATION}"
    predict, proba = body["outputs"]
    assert predict == {
        "name": "predict",
        "datatype": "INT64",
        "shape": [7],
        "data": pipeline.predict(X.iloc[:7]).tolist(),
    }
    assert proba["shape"] == [7, 2] and proba["datatype"] == "FP64"
    expected = pipeline.predict_proba(X.iloc[:7]).ravel()
    assert np.max(np.abs(np.array(proba["data"]) - expected)) <= 1e-5
    assert len(body["parameters"]["ids"]) == 7


def test_v2_infer_with_one_tensor_per_feature_and_chosen_outputs(
    server: Server, pipeline: Any, cancer: Any
) -> None:
    X, _ = cancer
    inputs = [
        {"name": str(c), "shape": [3], "datatype": "FP32", "data": X[c].iloc[:3].tolist()}
        for c in X.columns
    ]
    request = {"inputs": inputs, "outputs": [{"name": "predict"}]}
    body = server.post(f"/v2/models/{NAME}/infer", request).json
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    assert body["outputs"][0]["data"] == pipeline.predict(X.iloc[:3]).tolist()
    assert "id" not in body


def test_feedback_single_and_batch_with_unknown_and_duplicate_ids(
    server: Server, cancer: Any
) -> None:
    X, y = cancer
    first, second, third = server.post("/v1/predict", {"instances": rows_of(X, 0, 3)}).json["ids"]

    single = server.post("/v1/feedback", {"id": first, "outcome": int(y.iloc[0])})
    assert single.status == 200
    assert single.json == {"ok": True, "accepted": [first], "unknown": [], "duplicate": []}

    unknown = "0" * 28
    batch = server.post(
        "/v1/feedback",
        [
            {"id": second, "outcome": int(y.iloc[1])},
            {"id": first, "outcome": 1},
            {"id": unknown, "outcome": 0},
            {"id": "not-an-id", "outcome": 0},
            {"id": third, "outcome": int(y.iloc[2])},
            {"id": third, "outcome": 0},
        ],
    ).json
    assert batch == {
        "ok": False,
        "accepted": [second, third],
        "unknown": [unknown, "not-an-id"],
        "duplicate": [first, third],
    }

    assert server.store is not None
    store = PredictionStore(f"sqlite:///{server.store}")
    joined = {r.id: r for r in store.joined()}
    assert {first, second, third} <= joined.keys()
    assert [joined[i].outcome for i in (first, second, third)] == y.iloc[:3].tolist()
    row = joined[first]
    assert row.inputs["mean radius"] == X.iloc[0]["mean radius"]
    assert (row.model, row.release, row.generation) == (NAME, RELEASE, GENERATION)
    assert row.prediction in (0, 1) and len(row.probabilities or []) == 2


def test_v2_prediction_ids_take_feedback(server: Server, cancer: Any) -> None:
    X, _ = cancer
    request = {
        "inputs": [{"name": "x", "shape": [1, 30], "datatype": "FP64", "data": X.iloc[0].tolist()}]
    }
    (pid,) = server.post(f"/v2/models/{NAME}/infer", request).json["parameters"]["ids"]
    assert server.post("/v1/feedback", {"id": pid, "outcome": 0}).json["accepted"] == [pid]


def test_metrics_parse_and_count(server: Server, cancer: Any) -> None:
    server.post("/v1/predict", {"instances": rows_of(cancer[0], 0, 2)})
    server.get("/no/such/route")
    text = server.get("/metrics")
    assert text.status == 200
    assert text.headers["content-type"].startswith("text/plain")

    families = {f.name: f for f in text_string_to_metric_families(text.raw.decode())}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["mlcycle_http_requests"].samples
    }
    assert requests[("/v1/predict", "200")] >= 1
    assert requests[("unmatched", "404")] >= 1
    assert "mlcycle_http_request_duration_seconds" in families
    batches = families["mlcycle_predict_batches"].samples[0].value
    assert batches >= 1
    assert families["mlcycle_predict_batch_rows"].samples[0].value >= batches
    predicted = [s for s in families["mlcycle_predictions"].samples if s.name.endswith("_total")]
    assert predicted and predicted[0].labels["backend"] == "onnx" and predicted[0].value >= 2


def test_openapi_is_valid_and_describes_real_answers(server: Server, cancer: Any) -> None:
    from jsonschema import Draft202012Validator, ValidationError
    from openapi_spec_validator import validate

    doc = server.get("/openapi.json").json
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/predict", "/v1/feedback", "/v1/model", "/metrics", "/openapi.json"} <= set(
        doc["paths"]
    )
    assert "/v2/models/{name}/infer" in doc["paths"]
    instance = doc["components"]["schemas"]["Instance"]
    assert len(instance["required"]) == 30 and instance["additionalProperties"] is False

    def check(schema: str, value: Any) -> None:
        wrapper = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
        Draft202012Validator(wrapper).validate(value)

    request = {"instances": rows_of(cancer[0], 0, 2)}
    check("PredictRequest", request)
    check("PredictResponse", server.post("/v1/predict", request).json)
    check("ModelInfo", server.get("/v1/model").json)
    with pytest.raises(ValidationError, match=r"Additional properties|not valid"):
        check("PredictRequest", {"instances": [{**request["instances"][0], "extra": 1}]})


# --- bad requests: every one a 4xx with a JSON message ------------------------------------

BAD: list[tuple[str, str, Any, dict[str, str], int, str]] = [
    ("POST", "/v1/predict", b"{not json", {}, 400, "not valid JSON"),
    ("POST", "/v1/predict", b"", {}, 400, "body is empty"),
    ("POST", "/v1/predict", b"[1, 2]", {}, 400, "must be a JSON object"),
    ("POST", "/v1/predict", b'{"instances": 5}', {}, 400, "must be an array"),
    ("POST", "/v1/predict", b'{"instances": []}', {}, 400, "is empty"),
    ("POST", "/v1/predict", b'{"instances": [{"mean radius": 1}]}', {}, 400, "missing features"),
    ("POST", "/v1/predict", b'{"rows": []}', {}, 400, "unknown field(s) 'rows'"),
    ("POST", "/v1/predict", b'{"instances": [], "columns": {}}', {}, 400, "not both"),
    ("POST", "/v1/predict", b'{"instances": [1e999]}', {}, 400, "not valid JSON"),
    ("POST", "/v1/predict", b"{}", {"Content-Type": "text/plain"}, 415, "must be JSON"),
    ("POST", "/v1/predict", b"{}", {"Content-Type": "application/x-www-form-urlencoded"}, 415, ""),
    ("GET", "/v1/predict", None, {}, 405, "takes POST, not GET"),
    ("PUT", "/v1/model", b"{}", {}, 405, "takes GET"),
    ("DELETE", "/metrics", None, {}, 405, "takes GET"),
    ("GET", "/nowhere", None, {}, 404, "no route '/nowhere'"),
    ("GET", "/v1/predict/", None, {}, 404, "no route"),
    ("GET", "/v2/models/cancer/explain", None, {}, 404, "no route"),
    ("POST", "/v2/models/other/infer", b"{}", {}, 404, "unknown model 'other'"),
    ("POST", f"/v2/models/{NAME}/infer", b'{"inputs": 1}', {}, 400, "non-empty array"),
    ("POST", f"/v2/models/{NAME}/infer", b'{"input": []}', {}, 400, "unknown field"),
    ("POST", f"/v2/models/{NAME}/infer", b'{"inputs": [], "id": 3}', {}, 400, "'id' must be"),
    ("POST", "/v1/feedback", b"3", {}, 400, "feedback must be an object"),
    ("POST", "/v1/feedback", b"[]", {}, 400, "feedback list is empty"),
    ("POST", "/v1/feedback", b'{"id": "x"}', {}, 400, "missing 'outcome'"),
    ("POST", "/v1/feedback", b'{"id": "x", "outcome": null}', {}, 400, "'outcome' is null"),
    ("POST", "/v1/feedback", b'{"id": 7, "outcome": 1}', {}, 400, "'id' must be"),
    ("POST", "/v1/feedback", b'[{"id": "x", "outcome": 1, "why": 2}]', {}, 400, "'why'"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "message"),
    BAD,
    ids=[f"{m} {p} {s} {msg or b}" for m, p, b, _, s, msg in BAD],
)
def test_bad_requests_get_a_4xx_json_message(
    server: Server,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    sent = {"Content-Type": "application/json", **headers} if body is not None else headers
    reply = server.request(method, path, raw=body, headers=sent)
    assert reply.status == status, reply.raw
    assert reply.headers["content-type"] == "application/json"
    assert message in reply.json["error"]
    if status == 405:
        assert reply.headers["allow"] in ("GET", "POST")


def test_wrong_types_name_the_feature(server: Server, cancer: Any) -> None:
    row = rows_of(cancer[0], 0, 1)[0]
    for value, kind in (("12.5", "string"), (True, "boolean"), (None, "null"), ([1], "array")):
        reply = server.post("/v1/predict", {"instances": [{**row, "mean texture": value}]})
        assert reply.status == 400
        assert "instances[0]['mean texture']" in reply.json["error"]
        assert kind in reply.json["error"]
    extra = server.post("/v1/predict", {"instances": [{**row, "colour": 1}]})
    assert extra.status == 400 and "unknown feature 'colour'" in extra.json["error"]


def test_a_body_over_the_limit_is_413(server: Server) -> None:
    big = b'{"instances": [' + b"1," * 600_000 + b"1]}"
    reply = server.request(
        "POST", "/v1/predict", raw=big, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 413
    assert "at most 1000000" in reply.json["error"]


def test_a_chunked_body_over_the_limit_is_413(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = (b"[" + b"1," * 10_000 for _ in range(60))
    conn.request(
        "POST",
        "/v1/predict",
        body=chunks,
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


def test_malformed_http_is_refused_without_a_crash(server: Server) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        answer = sock.recv(1000)
    assert answer.startswith(b"HTTP/1.1 400")
    time.sleep(0.1)
    assert server.get("/healthz").status == 200
