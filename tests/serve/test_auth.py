"""Bearer-token authentication of the serving engine, on real servers.

With a token, every route but the health probes needs `Authorization: Bearer TOKEN`
(401 with `WWW-Authenticate: Bearer` otherwise), in every worker process;
`--public-predict` leaves the prediction routes open. The engine itself is started
the way the tests start it (`python -m mlcycle.serve`); `mlcycle serve`'s own rules
(token sources, the refusal to listen beyond loopback without one) are in
tests/serve/test_serve_cli.py.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlcycle.errors import UsageError
from mlcycle.serve.auth import is_loopback, load_token
from tests.serve.conftest import NAME, Reply, Server, launch, rows_of

pytestmark = pytest.mark.slow

TOKEN = "s3cr3t-T0ken_for.tests~"
GOOD = {"Authorization": f"Bearer {TOKEN}"}
HEALTH = ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"]
GUARDED_GETS = ["/v1/model", "/metrics", "/openapi.json", "/v2", f"/v2/models/{NAME}"]


def _token_file(tmp: Path) -> Path:
    path = tmp / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, bundle: Path) -> Iterator[Server]:
    """A server whose routes need the token (two workers: each one must check it)."""
    tmp = tmp_path_factory.mktemp("guarded")
    server = launch(bundle, tmp, "--token-file", str(_token_file(tmp)), "--workers", "2")
    yield server
    server.stop()


def _predict_body(cancer: Any) -> dict[str, Any]:
    return {"instances": rows_of(cancer[0], 0, 2)}


def _infer_body(cancer: Any) -> dict[str, Any]:
    rows = cancer[0].head(2).to_numpy().ravel().tolist()
    return {"inputs": [{"name": "input-0", "shape": [2, 30], "datatype": "FP64", "data": rows}]}


def _refused(reply: Reply, *, wrong: bool = False) -> None:
    assert reply.status == 401, reply
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert ('error="invalid_token"' in reply.headers["www-authenticate"]) is wrong
    assert "token" in reply.json["error"]


def test_every_route_but_health_needs_the_token(guarded: Server, cancer: Any) -> None:
    for path in HEALTH:
        assert guarded.get(path).status == 200, path
    for path in [*GUARDED_GETS, f"/v2/models/{NAME}/ready", "/no/such/route"]:
        _refused(guarded.get(path))
        _refused(guarded.request("GET", path, headers={"Authorization": "Bearer nope"}), wrong=True)
    _refused(guarded.post("/v1/predict", _predict_body(cancer)))
    _refused(guarded.post(f"/v2/models/{NAME}/infer", _infer_body(cancer)))
    _refused(guarded.post("/v1/feedback", {"id": "0" * 28, "outcome": 1}))
    wrong = guarded.request(
        "POST", "/v1/predict", _predict_body(cancer), headers={"Authorization": "Basic " + TOKEN}
    )
    _refused(wrong, wrong=True)


def test_the_token_opens_every_route(guarded: Server, cancer: Any) -> None:
    for path in GUARDED_GETS:
        assert guarded.request("GET", path, headers=GOOD).status == 200, path
    predicted = guarded.request("POST", "/v1/predict", _predict_body(cancer), headers=GOOD)
    assert predicted.status == 200, predicted.json
    feedback = {"id": predicted.json["ids"][0], "outcome": 1}
    assert guarded.request("POST", "/v1/feedback", feedback, headers=GOOD).status == 200
    inferred = guarded.request(
        "POST", f"/v2/models/{NAME}/infer", _infer_body(cancer), headers=GOOD
    )
    assert inferred.status == 200, inferred.json
    # The scheme is case-insensitive.
    lower = guarded.request("GET", "/v1/model", headers={"authorization": f"bearer {TOKEN}"})
    assert lower.status == 200


def test_every_worker_checks_the_token(guarded: Server) -> None:
    workers: dict[int, list[int]] = {}
    for _ in range(400):
        conn = http.client.HTTPConnection("127.0.0.1", guarded.port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            pid = json.loads(conn.getresponse().read())["worker"]
            conn.request("GET", "/v1/model")  # the same connection: the same worker
            response = conn.getresponse()
            response.read()
            workers.setdefault(pid, []).append(response.status)
        finally:
            conn.close()
        if len(workers) == 2:
            break
    assert len(workers) == 2, "the second worker never answered"
    assert all(status == 401 for statuses in workers.values() for status in statuses)


def test_openapi_documents_the_bearer_scheme(guarded: Server) -> None:
    document = guarded.request("GET", "/openapi.json", headers=GOOD).json
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert document["security"] == [{"bearer": []}]
    for path in HEALTH:
        assert document["paths"][path]["get"]["security"] == []
    predict = document["paths"]["/v1/predict"]["post"]
    assert "security" not in predict and "401" in predict["responses"]


def test_the_token_never_reaches_the_log(guarded: Server) -> None:
    guarded.request("GET", "/v1/model", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert "bearer token required" in guarded.output()
    assert TOKEN not in guarded.output()


def test_public_predict_leaves_only_predictions_open(
    tmp_path: Path, bundle: Path, cancer: Any
) -> None:
    server = launch(
        bundle,
        tmp_path,
        "--token-file",
        str(_token_file(tmp_path)),
        "--public-predict",
    )
    try:
        predicted = server.post("/v1/predict", _predict_body(cancer))
        assert predicted.status == 200, predicted.json
        assert server.post(f"/v2/models/{NAME}/infer", _infer_body(cancer)).status == 200
        _refused(server.post("/v1/feedback", {"id": predicted.json["ids"][0], "outcome": 1}))
        # Event keys later draw true outcomes from the spec's source: token holders only.
        keyed = {
            **_predict_body(cancer),
            "keys": ["case-1"] * len(_predict_body(cancer)["instances"]),
        }
        _refused(server.post("/v1/predict", keyed))
        assert server.request("POST", "/v1/predict", keyed, headers=GOOD).status == 200
        _refused(server.get("/v1/model"))
        _refused(server.get("/metrics"))
        document = server.request("GET", "/openapi.json", headers=GOOD).json
        assert document["paths"]["/v1/predict"]["post"]["security"] == []
    finally:
        server.stop()


# --- where the token comes from ----------------------------------------------------------


def test_the_token_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    assert load_token(None, {}) is None
    assert load_token(None, {"MLCYCLE_API_TOKEN": f" {TOKEN}\n"}) == TOKEN
    # The file wins over the environment.
    assert load_token(_token_file(tmp_path), {"MLCYCLE_API_TOKEN": "other"}) == TOKEN


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read the token"), ("\n", "the token is empty"), ("tok en-XYZ", "cannot carry")],
    ids=["missing", "empty", "spaces"],
)
def test_a_bad_token_file_is_a_usage_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message) as raised:
        load_token(path, {})
    assert raised.value.exit_code == 2
    assert "XYZ" not in str(raised.value)  # never echo a secret


def test_an_unreadable_token_file_is_a_usage_error(tmp_path: Path) -> None:
    # A directory cannot be read as a file, even by root (who reads a chmod 0 file).
    with pytest.raises(UsageError, match="cannot read the token") as raised:
        load_token(tmp_path, {})
    assert "Is a directory" in str(raised.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
