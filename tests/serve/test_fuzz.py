"""Arbitrary bodies and paths never get a 5xx (hypothesis, bounded examples)."""

from __future__ import annotations

import string
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serve.conftest import NAME, Server

pytestmark = pytest.mark.slow

FEATURES = ["mean radius", "mean texture", "worst area", "colour"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(FEATURES) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)

# Bodies near the real schema reach deeper into the decoders than arbitrary JSON does.
near_valid = st.one_of(
    st.fixed_dictionaries(
        {"instances": st.lists(st.dictionaries(st.sampled_from(FEATURES), json_values), max_size=3)}
    ),
    st.fixed_dictionaries({"columns": st.dictionaries(st.sampled_from(FEATURES), json_values)}),
    st.fixed_dictionaries(
        {
            "inputs": st.lists(
                st.fixed_dictionaries(
                    {
                        "name": st.sampled_from(FEATURES) | st.text(max_size=5),
                        "shape": st.lists(st.integers(-2, 40), max_size=3),
                        "datatype": st.sampled_from(
                            ["FP64", "FP32", "INT64", "BOOL", "BYTES", "X"]
                        ),
                        "data": json_values,
                    }
                ),
                max_size=3,
            )
        }
    ),
    st.lists(st.fixed_dictionaries({"id": json_values, "outcome": json_values}), max_size=3),
)

ROUTES = ["/v1/predict", "/v1/feedback", f"/v2/models/{NAME}/infer"]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _check(reply: Any) -> None:
    assert reply.status < 500, (reply.status, reply.raw)
    if reply.status >= 400:
        assert isinstance(reply.json, dict) and isinstance(reply.json["error"], str)


@SETTINGS
@given(route=st.sampled_from(ROUTES), body=json_values | near_valid)
def test_arbitrary_json_bodies_never_get_a_5xx(server: Server, route: str, body: Any) -> None:
    _check(server.post(route, body))


@SETTINGS
@given(route=st.sampled_from(ROUTES), body=st.binary(max_size=200))
def test_arbitrary_bytes_never_get_a_5xx(server: Server, route: str, body: bytes) -> None:
    _check(server.request("POST", route, raw=body, headers={"Content-Type": "application/json"}))


path_text = st.text(alphabet=string.ascii_letters + string.digits + "/-_.%~{}", max_size=40)


@SETTINGS
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    prefix=st.sampled_from(["/", "/v1/", "/v2/", f"/v2/models/{NAME}/", "/v2/models/"]),
    rest=path_text,
)
def test_arbitrary_paths_and_methods_never_get_a_5xx(
    server: Server, method: str, prefix: str, rest: str
) -> None:
    path = prefix + quote(rest, safe="/%")
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    _check(server.request(method, path, raw=body, headers=headers))
