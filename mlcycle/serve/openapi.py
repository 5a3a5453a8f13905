"""The OpenAPI 3.1 document of a running server, built from the served model's schema.

Request bodies carry the model's real feature schema: every feature a required,
typed property, no others allowed. Built once at startup and served as bytes; a server
with a token documents its bearer scheme (`secure`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mlcycle import __version__

if TYPE_CHECKING:
    from mlcycle.registry.features import Feature
    from mlcycle.serve.model import ServedModel

_ERROR_RESPONSES = {
    "400": "The body is malformed or does not fit the model's schema.",
    "404": "No such route or model.",
    "401": "A bearer token is needed (send `Authorization: Bearer TOKEN`), or it is wrong.",
    "405": "The route does not take this method.",
    "408": "The body did not arrive within the server's deadline; the connection is closed.",
    "413": "The body is larger than the server's limit, or has more rows than `max_rows`.",
    "415": "The body is not JSON (send Content-Type: application/json; v2 inference also "
    "takes application/octet-stream, the binary tensor data extension).",
    "422": "An outcome does not fit the served model (one of its classes, or a finite "
    "number): nothing of the request was stored.",
    "503": "The server is overloaded or not ready; retry after `Retry-After` seconds.",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _value_schema(feature: Feature) -> dict[str, Any]:
    kind: Any = feature.type
    if feature.nullable:
        kind = [feature.type, "null"]
    return {"type": kind}


def _errors(*codes: str) -> dict[str, Any]:
    return {
        code: {"description": _ERROR_RESPONSES[code], "content": _json(_ref("Error"))}
        for code in codes
    }


def _label_schema(model: ServedModel) -> dict[str, Any]:
    classes = model.predictor.classes
    if model.task == "regression":
        return {"type": "number"}
    if classes:
        kinds = sorted({_json_kind(c) for c in classes})
        return {"type": kinds[0] if len(kinds) == 1 else kinds, "enum": list(classes)}
    return {}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def build(model: ServedModel) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a server answering with `model`."""
    names = list(model.feature_names)
    instance = {
        "type": "object",
        "properties": {f.name: _value_schema(f) for f in model.features},
        "required": names,
        "additionalProperties": False,
    }
    columns = {
        "type": "object",
        "properties": {
            f.name: {"type": "array", "items": _value_schema(f), "minItems": 1}
            for f in model.features
        },
        "required": names,
        "additionalProperties": False,
    }
    keys = {
        "type": "array",
        "description": "Optional event key of each row (string or integer): ties the "
        "prediction to the case the spec's outcomes source reports on.",
        "items": {
            "oneOf": [{"type": "string", "minLength": 1, "maxLength": 200}, {"type": "integer"}]
        },
    }
    predict_request = {
        "oneOf": [
            {
                "type": "object",
                "title": "rows",
                "properties": {
                    "instances": {"type": "array", "items": _ref("Instance"), "minItems": 1},
                    "keys": keys,
                },
                "required": ["instances"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "title": "columns",
                "properties": {"columns": _ref("Columns"), "keys": keys},
                "required": ["columns"],
                "additionalProperties": False,
            },
        ]
    }
    model_ref = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "release": {"type": ["string", "null"]},
            "generation": {"type": ["integer", "null"]},
        },
        "required": ["name", "release", "generation"],
    }
    predict_response: dict[str, Any] = {
        "type": "object",
        "properties": {
            "predictions": {"type": "array", "items": _label_schema(model)},
            "ids": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[0-9a-f]{28}$"},
                "description": "One id per prediction, for POST /v1/feedback.",
            },
            "model": _ref("ModelRef"),
        },
        "required": ["predictions", "ids", "model"],
    }
    if model.predictor.has_probabilities:
        predict_response["properties"]["probabilities"] = {
            "type": "array",
            "items": {"type": "array", "items": {"type": "number"}},
            "description": "Class probabilities per row, in the order of `output.classes` "
            "of GET /v1/model.",
        }
    feedback_item = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "An id from a prediction response."},
            "outcome": _outcome_schema(model),
        },
        "required": ["id", "outcome"],
        "additionalProperties": False,
    }
    feedback_report = {
        "type": "object",
        "properties": {
            "ok": {"type": "boolean", "description": "Whether every outcome was accepted."},
            "accepted": {"type": "array", "items": {"type": "string"}},
            "unknown": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Ids of no prediction this server logged.",
            },
            "duplicate": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Ids that already had an outcome (the first one stays).",
            },
        },
        "required": ["ok", "accepted", "unknown", "duplicate"],
    }
    model_info = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "release": {"type": ["string", "null"]},
            "generation": {"type": ["integer", "null"]},
            "version": {"type": "string"},
            "task": {"enum": ["classification", "regression"]},
            "backend": {"enum": ["onnx", "sklearn"]},
            "output": {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["label", "value"]},
                    "classes": {"type": "array"},
                    "probabilities": {"type": "boolean"},
                },
                "required": ["kind"],
            },
            "features": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "type": {"enum": ["number", "integer", "boolean", "string"]},
                        "nullable": {"type": "boolean"},
                    },
                    "required": ["name", "type"],
                },
            },
            "metadata": {"type": "object"},
            "routing": {
                "type": "object",
                "description": "With a selector (dynamic mode): the selector and every arm "
                "serving now, with its backend, traffic and rewards; the fields above describe the "
                "newest arm.",
                "properties": {
                    "selector": {"type": "object"},
                    "arms": {"type": "array", "items": {"type": "object"}},
                    "manifest": {"type": "integer"},
                    "swaps": {"type": "integer"},
                },
            },
        },
        "required": ["name", "release", "generation", "task", "output", "features"],
    }
    tensor_input = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {
                "enum": [
                    "BOOL",
                    "UINT8",
                    "UINT16",
                    "UINT32",
                    "UINT64",
                    "INT8",
                    "INT16",
                    "INT32",
                    "INT64",
                    "FP16",
                    "FP32",
                    "FP64",
                    "BYTES",
                ]
            },
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data_size": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Binary tensor data extension: the tensor's bytes "
                        "follow the JSON header instead of 'data'.",
                    }
                },
            },
            "data": {"type": "array"},
        },
        "required": ["name", "shape", "datatype"],
        "description": f"Either one tensor of shape [N, {len(names)}] with the features in "
        "the order of GET /v2/models/{name}, or one tensor per feature, named like it, of "
        "shape [N] or [N, 1]. Its values are in 'data', or (binary tensor data extension) "
        "in the body after the JSON header, as parameters.binary_data_size says.",
    }
    infer_request = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data_output": {
                        "type": "boolean",
                        "description": "Send every output as binary tensor data.",
                    }
                },
            },
            "inputs": {"type": "array", "items": _ref("RequestInput"), "minItems": 1},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "binary_data": {
                                    "type": "boolean",
                                    "description": "Send this output as binary tensor data.",
                                }
                            },
                        },
                    },
                    "required": ["name"],
                },
            },
        },
        "required": ["inputs"],
    }
    infer_response = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {"ids": {"type": "array", "items": {"type": "string"}}},
            },
            "outputs": {"type": "array", "items": _ref("ResponseOutput")},
        },
        "required": ["model_name", "outputs"],
    }
    response_output = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
            "data": {"type": "array"},
        },
        "required": ["name", "shape", "datatype"],
        "description": "Values in 'data', or, for an output asked as binary data, "
        "parameters.binary_data_size bytes after the JSON header.",
    }
    tensor_metadata = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
        "required": ["name", "datatype", "shape"],
    }
    model_metadata = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("TensorMetadata")},
        },
        "required": ["name", "platform", "inputs", "outputs"],
    }
    server_metadata = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "version", "extensions"],
    }
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [model.name]},
        "description": "The project name.",
    }

    def get(summary: str, schema: dict[str, Any], *codes: str, **extra: Any) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "responses": {
                    "200": {"description": "OK", "content": _json(schema)},
                    **_errors(*codes),
                },
                **extra,
            }
        }

    def post(
        summary: str, body: dict[str, Any], schema: dict[str, Any], *codes: str, **extra: Any
    ) -> dict[str, Any]:
        return {
            "post": {
                "summary": summary,
                "requestBody": {"required": True, "content": _json(body)},
                "responses": {
                    "200": {"description": "OK", "content": _json(schema)},
                    **_errors(*codes),
                },
                **extra,
            }
        }

    version_param = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "The model version (RELEASE+GENERATION, as GET /v2/models/{name} "
        "lists); the request is answered by that model, never routed to another.",
    }
    bad = ("400", "408", "413", "415", "503")
    binary_body = {
        "schema": {
            "type": "string",
            "format": "binary",
            "description": "Binary tensor data extension: the InferenceRequest JSON (its "
            "length in the Inference-Header-Content-Length header), then the bytes of each "
            "input that declares parameters.binary_data_size, in order, little-endian; "
            "BYTES elements are each a 4-byte little-endian length and then the UTF-8 text.",
        }
    }
    header_length = {
        "name": "Inference-Header-Content-Length",
        "in": "header",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
        "description": "Binary tensor data extension: the length of the JSON header at the "
        "start of the body; the rest is the inputs' binary data.",
    }

    def infer(*params: dict[str, Any]) -> dict[str, Any]:
        operation = post(
            "Open Inference Protocol v2 inference",
            _ref("InferenceRequest"),
            _ref("InferenceResponse"),
            *bad,
            "404",
            parameters=[*params, header_length],
        )
        operation["post"]["requestBody"]["content"]["application/octet-stream"] = binary_body
        operation["post"]["responses"]["200"]["content"]["application/octet-stream"] = {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "When an output is asked as binary data: the "
                "InferenceResponse JSON, then each binary output's bytes in the order of "
                "'outputs'.",
            }
        }
        operation["post"]["responses"]["200"]["headers"] = {
            "Inference-Header-Content-Length": {
                "description": "With binary outputs: the length of the JSON header.",
                "schema": {"type": "integer"},
            }
        }
        return operation

    versioned = [name_param, version_param]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{model.name} (mlcycle serving engine)",
            "version": model.version,
            "description": f"Predictions of {model.name} {model.version} ({model.task}); "
            f"mlcycle {__version__}.",
        },
        "servers": [{"url": "/"}],
        "paths": {
            "/v1/predict": post(
                "Predict rows (`instances`) or columns (`columns`)",
                _ref("PredictRequest"),
                _ref("PredictResponse"),
                *bad,
            ),
            "/v1/feedback": post(
                "Record true outcomes of earlier predictions",
                {
                    "oneOf": [
                        _ref("FeedbackItem"),
                        {"type": "array", "items": _ref("FeedbackItem"), "minItems": 1},
                    ]
                },
                _ref("FeedbackReport"),
                *bad,
                "404",
                "422",
            ),
            "/v1/model": get("Describe the served model", _ref("ModelInfo")),
            "/healthz": get("Liveness", status),
            "/readyz": get("Readiness: the model is loaded and warm", status, "503"),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format 0.0.4",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/openapi.json": get("This document", {"type": "object"}),
            "/v2/health/live": get("v2 server liveness", {"type": "object"}),
            "/v2/health/ready": get("v2 server readiness", {"type": "object"}, "503"),
            "/v2": get("v2 server metadata", _ref("ServerMetadata")),
            "/v2/models/{name}": get(
                "v2 model metadata", _ref("ModelMetadata"), "404", parameters=[name_param]
            ),
            "/v2/models/{name}/ready": get(
                "v2 model readiness", {"type": "object"}, "404", "503", parameters=[name_param]
            ),
            "/v2/models/{name}/infer": infer(name_param),
            "/v2/models/{name}/versions/{version}": get(
                "v2 model metadata (one version)",
                _ref("ModelMetadata"),
                "404",
                parameters=versioned,
            ),
            "/v2/models/{name}/versions/{version}/ready": get(
                "v2 model readiness (one version)",
                {"type": "object"},
                "404",
                "503",
                parameters=versioned,
            ),
            "/v2/models/{name}/versions/{version}/infer": infer(*versioned),
        },
        "components": {
            "schemas": {
                "Instance": instance,
                "Columns": columns,
                "PredictRequest": predict_request,
                "PredictResponse": predict_response,
                "ModelRef": model_ref,
                "FeedbackItem": feedback_item,
                "FeedbackReport": feedback_report,
                "ModelInfo": model_info,
                "RequestInput": tensor_input,
                "InferenceRequest": infer_request,
                "InferenceResponse": infer_response,
                "ResponseOutput": response_output,
                "TensorMetadata": tensor_metadata,
                "ModelMetadata": model_metadata,
                "ServerMetadata": server_metadata,
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                },
            }
        },
    }


def _outcome_schema(model: ServedModel) -> dict[str, Any]:
    """What `/v1/feedback` takes as an outcome of this model (422 otherwise)."""
    classes = model.predictor.classes
    if model.task == "regression":
        return {"type": "number", "description": "The true value: a finite number."}
    if classes is not None:
        return {
            "enum": list(classes),
            "description": "The true class: one of the model's classes, in their type "
            "(a class 1 takes 1 or 1.0, never true or '1').",
        }
    return {
        "type": ["string", "number", "boolean"],
        "description": "The true class label.",
    }


HEALTH_PATHS = ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready")
"""Routes open without the token: the probes of an orchestrator."""
PREDICT_PATHS = (
    "/v1/predict",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
)
"""Routes `public_predict` leaves open."""


def secure(document: dict[str, Any], *, open_paths: Iterable[str]) -> dict[str, Any]:
    """`document` for a server with a bearer token: every operation but `open_paths` needs it."""
    opened = set(open_paths)
    document["components"]["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The server's token (`MLCYCLE_API_TOKEN`, or `mlcycle serve "
            "--token-file`), sent as `Authorization: Bearer TOKEN`.",
        }
    }
    document["security"] = [{"bearer": []}]
    unauthorized = _errors("401")
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path in opened:
                operation["security"] = []
            else:
                operation["responses"].update(unauthorized)
    return document
