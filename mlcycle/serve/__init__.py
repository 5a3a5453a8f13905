"""The serving engine: HTTP predictions, prediction log, feedback, metrics.

Light to import: the names below load their modules (numpy, orjson, uvicorn) only
when first used, so `mlcycle --help` stays fast.

    from mlcycle.serve import ServedModel, serve
    model = ServedModel.from_estimator(pipeline, name="churn", release="1.2.0")
    serve(model, port=8080, workers=2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcycle.registry.features import Feature, features_from_frame
    from mlcycle.serve.app import ServeOptions, ServingApp, create_app
    from mlcycle.serve.live import LiveRouter, served_model_from_entry
    from mlcycle.serve.model import (
        ModelSource,
        RequestInfo,
        Router,
        ServedModel,
        SingleModelRouter,
    )
    from mlcycle.serve.predictor import Predictor
    from mlcycle.serve.router import SelectorRouter
    from mlcycle.serve.selectors import Selector, make_selector
    from mlcycle.serve.server import serve
    from mlcycle.store.predictions import OutcomeReport, PredictionStore

_EXPORTS = {
    # The feature schema is the registry's (one type wherever it is held); named here too.
    "Feature": "mlcycle.registry.features",
    "ModelSource": "mlcycle.serve.model",
    "RequestInfo": "mlcycle.serve.model",
    "Router": "mlcycle.serve.model",
    "ServedModel": "mlcycle.serve.model",
    "SingleModelRouter": "mlcycle.serve.model",
    "features_from_frame": "mlcycle.registry.features",
    "Predictor": "mlcycle.serve.predictor",
    "ServeOptions": "mlcycle.serve.app",
    "ServingApp": "mlcycle.serve.app",
    "create_app": "mlcycle.serve.app",
    "serve": "mlcycle.serve.server",
    "OutcomeReport": "mlcycle.store.predictions",
    "PredictionStore": "mlcycle.store.predictions",
    "SelectorRouter": "mlcycle.serve.router",
    "Selector": "mlcycle.serve.selectors",
    "make_selector": "mlcycle.serve.selectors",
    "LiveRouter": "mlcycle.serve.live",
    "served_model_from_entry": "mlcycle.serve.live",
}

__all__ = [
    "Feature",
    "LiveRouter",
    "ModelSource",
    "OutcomeReport",
    "PredictionStore",
    "Predictor",
    "RequestInfo",
    "Router",
    "Selector",
    "SelectorRouter",
    "ServeOptions",
    "ServedModel",
    "ServingApp",
    "SingleModelRouter",
    "create_app",
    "features_from_frame",
    "make_selector",
    "serve",
    "served_model_from_entry",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlcycle.serve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
