"""The Open Inference Protocol v2 with the real `tritonclient.http` client: JSON and the
binary tensor data extension, every datatype the models take, inputs as one tensor per
feature and as one matrix, against real servers on 127.0.0.1; and a precise 400 for
every malformed binary request."""

from __future__ import annotations

import json
import pickle
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.http as tritonclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlcycle.registry.features import Feature
from mlcycle.serve.codec import Codec, RequestError
from mlcycle.serve.model import ServedModel
from tests.serve.conftest import GENERATION, NAME, RELEASE, Server, free_port, wait_ready

NUMPY_TYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64}
ROWS = 20


def client(server: Server) -> Any:
    return tritonclient.InferenceServerClient(f"127.0.0.1:{server.port}")


def v1(server: Server, instances: list[dict[str, Any]]) -> dict[str, Any]:
    reply = server.post("/v1/predict", {"instances": instances})
    assert reply.status == 200, reply.raw
    return dict(reply.json)


def tensors(
    names: list[str], values: np.ndarray, datatype: str, form: str, binary: Any
) -> list[Any]:
    """tritonclient inputs: one [N, F] tensor, or one [N] tensor per feature; `binary`
    is a bool, or a function of the tensor's position (mixed requests)."""
    flag = binary if callable(binary) else (lambda _: binary)
    if form == "matrix":
        tensor = tritonclient.InferInput("input-0", list(values.shape), datatype)
        return [tensor.set_data_from_numpy(values, binary_data=flag(0))]
    made = []
    for j, name in enumerate(names):
        column = np.ascontiguousarray(values[:, j])
        tensor = tritonclient.InferInput(name, [len(column)], datatype)
        made.append(tensor.set_data_from_numpy(column, binary_data=flag(j)))
    return made


def outputs(binary: bool, *names: str) -> list[Any]:
    return [tritonclient.InferRequestedOutput(n, binary_data=binary) for n in names]


# --- the cancer model: FP32, FP64, INT64 ---------------------------------------------------


@pytest.mark.parametrize("form", ["matrix", "named"])
@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT64"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_predicts_what_v1_predicts(
    server: Server, cancer: Any, form: str, datatype: str, binary: bool
) -> None:
    X, _ = cancer
    names = [str(c) for c in X.columns]
    raw = X.iloc[:ROWS].to_numpy()
    values = (np.rint(raw * 10) if datatype == "INT64" else raw).astype(NUMPY_TYPES[datatype])
    expected = v1(server, [dict(zip(names, map(float, row), strict=True)) for row in values])

    inputs = tensors(names, values, datatype, form, binary)
    result = client(server).infer(NAME, inputs, outputs=outputs(binary, "predict", "predict_proba"))

    response = result.get_response()
    for output in response["outputs"]:
        # Binary outputs carry their size instead of data, exactly as asked.
        assert ("data" not in output) == binary
        assert ("binary_data_size" in output.get("parameters", {})) == binary
    assert result.as_numpy("predict").tolist() == expected["predictions"]
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), expected["probabilities"], rtol=1e-12, atol=0
    )
    assert len(response["parameters"]["ids"]) == ROWS


def test_tritonclient_defaults_binary_outputs_and_mixes_binary_and_json_inputs(
    server: Server, cancer: Any
) -> None:
    X, _ = cancer
    names = [str(c) for c in X.columns]
    values = X.iloc[:ROWS].to_numpy()
    expected = v1(server, [dict(zip(names, map(float, row), strict=True)) for row in values])
    # Every other feature as binary data, the rest as JSON, in one request; no outputs
    # named: tritonclient asks for all of them as binary data (binary_data_output).
    inputs = tensors(names, values, "FP64", "named", lambda j: j % 2 == 0)
    result = client(server).infer(NAME, inputs, request_id="mixed-1")

    assert result.get_response()["id"] == "mixed-1"
    assert result.as_numpy("predict").tolist() == expected["predictions"]
    assert result.as_numpy("predict_proba").shape == (ROWS, 2)
    # One output binary, the other JSON.
    mixed = client(server).infer(
        NAME, inputs, outputs=[*outputs(True, "predict"), *outputs(False, "predict_proba")]
    )
    by_name = {o["name"]: o for o in mixed.get_response()["outputs"]}
    assert "data" not in by_name["predict"] and "data" in by_name["predict_proba"]
    assert mixed.as_numpy("predict").tolist() == expected["predictions"]


def test_tritonclient_metadata_and_versioned_paths(server: Server, cancer: Any) -> None:
    X, _ = cancer
    triton = client(server)
    version = f"{RELEASE}+{GENERATION}"
    assert triton.is_server_live() and triton.is_server_ready()
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    assert triton.is_model_ready(NAME, model_version=version)
    assert triton.get_model_metadata(NAME, model_version=version)["versions"] == [version]

    values = X.iloc[:3].to_numpy()
    inputs = tensors([str(c) for c in X.columns], values, "FP64", "matrix", True)
    pinned = triton.infer(NAME, inputs, model_version=version)
    assert pinned.get_response()["model_version"] == version
    assert pinned.as_numpy("predict").shape == (3,)
    with pytest.raises(Exception, match=r"no version '9\.9\.9'"):
        triton.infer(NAME, inputs, model_version="9.9.9")

    document = server.get("/openapi.json").json
    for path in ("", "/ready", "/infer"):
        assert f"/v2/models/{{name}}/versions/{{version}}{path}" in document["paths"]
    infer = document["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert "application/octet-stream" in infer["requestBody"]["content"]
    assert "Inference-Header-Content-Length" in infer["responses"]["200"]["headers"]


def _binary_request(
    inputs: list[dict[str, Any]], data: bytes, **parameters: Any
) -> tuple[dict[str, str], bytes]:
    header = json.dumps({"inputs": inputs, **parameters}).encode()
    return {"Inference-Header-Content-Length": str(len(header))}, header + data


def test_a_binary_answer_is_the_json_header_then_the_outputs_bytes(
    server: Server, cancer: Any
) -> None:
    X, _ = cancer
    values = X.iloc[:4].to_numpy()
    # Built by hand: the binary size is the tensor's bytes, and the JSON says so.
    tensor = {
        "name": "x",
        "shape": [4, 30],
        "datatype": "FP64",
        "parameters": {"binary_data_size": values.nbytes},
    }
    headers, body = _binary_request(
        [tensor], values.astype("<f8").tobytes(), parameters={"binary_data_output": True}
    )
    headers["Content-Type"] = "application/octet-stream"
    reply = server.request("POST", f"/v2/models/{NAME}/infer", raw=body, headers=headers)

    assert reply.status == 200, reply.raw
    assert reply.headers["content-type"] == "application/octet-stream"
    length = int(reply.headers["inference-header-content-length"])
    answer = json.loads(reply.raw[:length])
    predict, proba = answer["outputs"]
    assert predict["parameters"] == {"binary_data_size": 4 * 8}
    assert proba["parameters"] == {"binary_data_size": 4 * 2 * 8}
    labels = np.frombuffer(reply.raw[length : length + 32], dtype="<i8")
    expected = v1(server, [dict(zip(map(str, X.columns), row, strict=True)) for row in values])
    assert labels.tolist() == expected["predictions"]
    assert len(reply.raw) == length + 32 + 64


# --- malformed binary requests: 400 with what is wrong ---------------------------------


def _fp64(rows: int, size: int | None = None, **extra: Any) -> dict[str, Any]:
    nbytes = rows * 30 * 8 if size is None else size
    return {
        "name": "x",
        "shape": [rows, 30],
        "datatype": "FP64",
        "parameters": {"binary_data_size": nbytes},
        **extra,
    }


ONE_ROW = np.arange(30, dtype="<f8").tobytes()


def _malformed() -> list[tuple[str, dict[str, str], bytes, str]]:
    """(case, headers, body, message) for requests that must get a 400."""
    cases = []
    headers, body = _binary_request([_fp64(1)], ONE_ROW)
    cases.append(
        (
            "header-past-the-body",
            {"Inference-Header-Content-Length": str(len(body) + 1)},
            body,
            r"Inference-Header-Content-Length is \d+ but the body has \d+ bytes",
        )
    )
    cases.append(
        (
            "header-not-a-number",
            {"Inference-Header-Content-Length": "12abc"},
            body,
            "Inference-Header-Content-Length must be a byte count, not '12abc'",
        )
    )
    cases.append(
        (
            "header-cuts-the-json",
            {"Inference-Header-Content-Length": "10"},
            body,
            r"the JSON header \(the first 10 bytes.*is not valid JSON",
        )
    )
    headers, body = _binary_request([_fp64(1, size=10_000)], ONE_ROW)
    cases.append(
        ("size-past-the-body", headers, body, "binary_data_size is 10000 bytes but only 240")
    )
    headers, body = _binary_request([_fp64(1)], ONE_ROW + b"\0" * 8)
    cases.append(("bytes-left-over", headers, body, "248 bytes of binary.*add up to 240"))
    headers, body = _binary_request([_fp64(1, size=232)], ONE_ROW[:232])
    cases.append(("size-not-the-shape", headers, body, "30 FP64 values take 240 bytes.*is 232"))
    headers, body = _binary_request([_fp64(1, size=-1)], ONE_ROW)
    cases.append(("negative-size", headers, body, "must be a non-negative integer"))
    headers, body = _binary_request([_fp64(1, data=list(range(30)))], ONE_ROW)
    cases.append(("data-and-size", headers, body, "both 'data' and parameters.binary_data_size"))
    nan = np.frombuffer(ONE_ROW, dtype="<f8").copy()
    nan[7] = np.nan
    headers, body = _binary_request([_fp64(1)], nan.tobytes())
    cases.append(("nan", headers, body, "row 0 column 7: NaN is not allowed"))
    headers, body = _binary_request(
        [
            {
                "name": "x",
                "shape": [1, 30],
                "datatype": "BOOL",
                "parameters": {"binary_data_size": 30},
            }
        ],
        b"\1" * 29 + b"\7",
    )
    cases.append(("bool-not-0-or-1", headers, body, "BOOL element 29 is byte 7"))
    header = json.dumps({"inputs": [_fp64(1)]}).encode()
    cases.append(
        (
            "no-header-with-binary",
            {},
            header + ONE_ROW,
            "not valid JSON.*needs the header Inference-Header-Content-Length",
        )
    )
    cases.append(
        (
            "no-header-json-only",
            {},
            header,
            "has parameters.binary_data_size but the request has no "
            "Inference-Header-Content-Length",
        )
    )
    headers, body = _binary_request([_fp64(1)], ONE_ROW, parameters={"binary_data_output": "yes"})
    cases.append(("output-flag-not-bool", headers, body, "binary_data_output must be true"))
    return cases


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [case[1:] for case in _malformed()],
    ids=[case[0] for case in _malformed()],
)
def test_malformed_binary_requests_get_a_precise_400(
    server: Server, headers: dict[str, str], body: bytes, message: str
) -> None:
    reply = server.request("POST", f"/v2/models/{NAME}/infer", raw=body, headers=headers)
    assert reply.status == 400, reply.raw
    assert reply.json is not None
    assert re.search(message, reply.json["error"]), reply.json["error"]


binary_tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["x", "mean radius", "worst area"]),
        "shape": st.lists(st.integers(0, 40), min_size=1, max_size=2),
        "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BOOL", "BYTES", "UINT8"]),
        "parameters": st.fixed_dictionaries(
            {"binary_data_size": st.integers(-2, 2000) | st.text(max_size=3)}
        ),
    }
)


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    inputs=st.lists(binary_tensors, max_size=3),
    tail=st.binary(max_size=600),
    shift=st.integers(-5, 5) | st.none(),
)
def test_arbitrary_binary_requests_never_get_a_5xx(
    server: Server, inputs: list[dict[str, Any]], tail: bytes, shift: int | None
) -> None:
    header = json.dumps({"inputs": inputs}).encode()
    declared = "" if shift is None else str(max(0, len(header) + shift))
    headers = {"Inference-Header-Content-Length": declared} if declared else {}
    reply = server.request("POST", f"/v2/models/{NAME}/infer", raw=header + tail, headers=headers)
    assert reply.status < 500, (reply.status, reply.raw)
    if reply.status >= 400:
        assert isinstance(reply.json, dict) and isinstance(reply.json["error"], str)


def test_binary_bodies_keep_the_servers_limits(server: Server) -> None:
    # The session server takes 1,000,000 bytes: a larger binary body is 413, whatever
    # its JSON header says; another media type is 415.
    headers, body = _binary_request([_fp64(4200)], b"\0" * (4200 * 240))
    reply = server.request("POST", f"/v2/models/{NAME}/infer", raw=body, headers=headers)
    assert reply.status == 413, reply.raw
    headers, body = _binary_request([_fp64(1)], ONE_ROW)
    headers["Content-Type"] = "text/plain"
    assert server.request("POST", f"/v2/models/{NAME}/infer", raw=body, headers=headers).status == (
        415
    )
    headers["Content-Type"] = "application/octet-stream"
    assert server.request("POST", "/v1/predict", raw=body, headers=headers).status == 415


# --- BYTES: a model of text features ---------------------------------------------------

LAUNCHER = """
import json, pickle, sys
from mlcycle.registry.features import Feature
from mlcycle.serve.model import ServedModel
from mlcycle.serve.server import serve

config = json.load(open(sys.argv[1]))
with open(config["path"], "rb") as f:
    estimator = pickle.load(f)
features = [Feature(name, "string") for name in config["features"]]
model = ServedModel.from_estimator(estimator, name="churn", features=features, backend="sklearn")

if __name__ == "__main__":
    serve(model, port=config["port"], store_url=None)
"""

PLANS = ["basic", "prémium", "family", "basic", "family", "prémium", "basic", "family"]
REGIONS = ["north", "south", "south", "east", "north", "east", "south", "north"]


@pytest.fixture(scope="module")
def text_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of a model with two text features and text labels."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    tmp = tmp_path_factory.mktemp("text")
    frame = pd.DataFrame({"plan": PLANS, "region": REGIONS})
    labels = ["stay", "churn", "churn", "stay", "stay", "churn", "stay", "churn"]
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression()).fit(
        frame, labels
    )
    (tmp / "model.pkl").write_bytes(pickle.dumps(model))
    port = free_port()
    config = {"path": str(tmp / "model.pkl"), "features": ["plan", "region"], "port": port}
    (tmp / "config.json").write_text(json.dumps(config))
    (tmp / "launch.py").write_text(LAUNCHER)
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(tmp / "launch.py"), str(tmp / "config.json")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    running = Server(process, port, None, log)
    wait_ready(running)
    yield running
    running.stop()


@pytest.mark.parametrize("form", ["matrix", "named"])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_bytes_inputs_and_outputs(
    text_server: Server, form: str, binary: bool
) -> None:
    values = np.array(list(zip(PLANS, REGIONS, strict=True)), dtype=object)
    instances = [{"plan": p, "region": r} for p, r in zip(PLANS, REGIONS, strict=True)]
    expected = v1(text_server, instances)
    assert set(expected["predictions"]) == {"stay", "churn"}

    inputs = tensors(["plan", "region"], values, "BYTES", form, binary)
    result = client(text_server).infer(
        "churn", inputs, outputs=outputs(binary, "predict", "predict_proba")
    )

    predict = result.get_output("predict")
    assert predict["datatype"] == "BYTES"
    labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("predict")]
    assert labels == expected["predictions"]
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), expected["probabilities"], rtol=1e-12, atol=0
    )


def _bytes_tensor(*elements: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


@pytest.mark.parametrize(
    ("data", "size", "message"),
    [
        (_bytes_tensor(b"basic") + b"\xff\xff\xff\x7f", None, "element 1 declares 2147483647"),
        (_bytes_tensor(b"basic", b"\xff\xfe"), None, "element 1 is not UTF-8 text"),
        (_bytes_tensor(b"basic", b"north") + b"xy", None, "2 bytes are left after its 2"),
        (_bytes_tensor(b"basic") + b"\0\0", None, "element 1 has no 4-byte length"),
        (b"\0" * 4, None, "2 BYTES elements need at least 8 bytes"),
    ],
    ids=["length-past-the-end", "not-utf8", "bytes-left-over", "no-length", "too-few-bytes"],
)
def test_malformed_bytes_tensors_get_a_precise_400(
    text_server: Server, data: bytes, size: int | None, message: str
) -> None:
    tensor = {
        "name": "x",
        "shape": [1, 2],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(data) if size is None else size},
    }
    headers, body = _binary_request([tensor], data)
    reply = text_server.request("POST", "/v2/models/churn/infer", raw=body, headers=headers)
    assert reply.status == 400, reply.raw
    assert message in reply.json["error"]


# --- the codec: binary and JSON tensors mixed, in-process -------------------------------


def _codec(*features: Feature) -> Codec:
    from sklearn.dummy import DummyClassifier

    from mlcycle.serve.predictor import SklearnPredictor

    estimator = DummyClassifier().fit(np.zeros((2, len(features))), [0, 1])
    predictor = SklearnPredictor(estimator, features, "classification")
    return Codec(ServedModel("m", tuple(features), "classification", predictor))


def _binary(name: str, datatype: str, raw: bytes, count: int) -> dict[str, Any]:
    return {
        "name": name,
        "shape": [count],
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }


def test_binary_tensors_take_each_features_rules() -> None:
    codec = _codec(
        Feature("n", "integer"),
        Feature("flag", "boolean"),
        Feature("x", "number", nullable=True),
        Feature("plan", "string"),
    )
    n = np.array([3, 4], dtype="<i4").tobytes()
    flag = bytes([1, 0])
    x = np.array([np.nan, 2.5], dtype="<f4").tobytes()
    plan = _bytes_tensor("prémium".encode(), b"")
    inputs = [
        _binary("n", "INT32", n, 2),
        _binary("flag", "BOOL", flag, 2),
        _binary("x", "FP32", x, 2),
        _binary("plan", "BYTES", plan, 2),
    ]
    matrix = codec.v2_inputs(inputs, n + flag + x + plan)
    assert matrix[0, 0] == 3 and matrix[0, 1] == 1.0 and matrix[0, 3] == "prémium"
    assert np.isnan(matrix[0, 2]) and matrix[1, 2] == 2.5 and matrix[1, 3] == ""

    # A NaN where the feature is not nullable is a null where none is allowed.
    n = np.array([np.nan, 1.0], dtype="<f8").tobytes()
    inputs[0] = _binary("n", "FP64", n, 2)
    with pytest.raises(RequestError, match=r"input 'n'\[0\]: null is not allowed"):
        codec.v2_inputs(inputs, n + flag + x + plan)
    # Booleans are no numbers, as in JSON.
    plain = _codec(Feature("a"), Feature("b"))
    booleans = [_binary("a", "BOOL", flag, 2), _binary("b", "BOOL", flag, 2)]
    with pytest.raises(RequestError, match="expected a number, got boolean"):
        plain.v2_inputs(booleans, flag + flag)
    # Too large for a float32 model is not finite at its precision.
    wide = np.array([[1e300, 1.0]], dtype="<f8").tobytes()
    single = _codec(Feature("a"), Feature("b"))
    single.dtype = np.float32
    matrix_input = {
        "name": "m",
        "shape": [1, 2],
        "datatype": "FP64",
        "parameters": {"binary_data_size": 16},
    }
    with pytest.raises(RequestError, match="row 0 column 0: 1e\\+300 is too large"):
        single.v2_inputs([matrix_input], wide)


def test_large_tensor_counts_are_refused_before_any_allocation() -> None:
    codec = _codec(Feature("a", "string"), Feature("b", "string"))
    huge = {
        "name": "m",
        "shape": [2**31 - 1, 2],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": 8},
    }
    with pytest.raises(RequestError, match="elements need at least"):
        codec.v2_inputs([huge], b"\0" * 8)
    fixed = {**huge, "datatype": "FP64"}
    with pytest.raises(RequestError, match="values take"):
        _codec(Feature("a"), Feature("b")).v2_inputs([fixed], b"\0" * 8)


def test_json_only_requests_are_unchanged() -> None:
    # No Inference-Header-Content-Length: `binary` is None and 'data' is required.
    codec = _codec(Feature("a"), Feature("b"))
    with pytest.raises(RequestError, match="missing field 'data'"):
        codec.v2_inputs([{"name": "m", "shape": [1, 2], "datatype": "FP64"}])
    assert codec.v2_inputs(
        [{"name": "m", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]
    ).tolist() == [[1.0, 2.0]]
