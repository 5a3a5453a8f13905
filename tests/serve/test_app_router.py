"""The engine and its router in-process: declared hooks, per-model state, feedback off the pool."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from mlcycle.serve.app import ServeOptions, ServingApp, create_app
from mlcycle.serve.ids import IdGenerator
from mlcycle.serve.model import RequestInfo, Router, ServedModel
from mlcycle.serve.predictor import Predictor
from mlcycle.serve.router import SelectorRouter
from mlcycle.spec.model import SelectorKind, SelectorSpec
from tests.serve.conftest import rows_of
from tests.serve.test_app import _call


async def _scrape(app: ServingApp) -> int:
    """GET /metrics through the ASGI interface; its status."""
    scope = {"type": "http", "method": "GET", "path": "/metrics", "headers": []}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


def test_a_scrape_is_not_stalled_by_feedback_waiting_for_recent_ids(
    pipeline: Any, tmp_path: Path
) -> None:
    # Feedback for ids issued a moment ago waits for another worker's log to write them
    # (seconds). Two such requests once held both threads /metrics renders on.
    model = ServedModel.from_estimator(pipeline, name="cancer", release="1.0.0")
    app = create_app(model, store_url=f"sqlite:///{tmp_path / 'store.db'}", options=ServeOptions())
    fresh = IdGenerator().take(2)  # well formed, issued now, never stored

    async def scenario() -> list[tuple[str, int]]:
        await app.startup()
        try:
            finished: list[tuple[str, int]] = []

            async def feedback(pid: str) -> None:
                status, _ = await _call(app, "POST", "/v1/feedback", {"id": pid, "outcome": 1})
                finished.append(("feedback", status))

            waiting = [asyncio.ensure_future(feedback(pid)) for pid in fresh]
            await asyncio.sleep(0.5)  # both are in their wait for the ids by now
            finished.append(("metrics", await _scrape(app)))
            await asyncio.gather(*waiting)
            return finished
        finally:
            await app.shutdown()

    finished = asyncio.run(scenario())
    assert finished == [("metrics", 200), ("feedback", 200), ("feedback", 200)]


class Swapping(Router):
    """Serves a new copy of its model after every request: the arms of a live router."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.generation = 1
        self.current = self._make()

    def _make(self) -> ServedModel:
        return ServedModel.from_estimator(
            self.pipeline, name="cancer", release="1.0.0", generation=self.generation
        )

    @property
    def models(self) -> Sequence[ServedModel]:
        return (self.current,)

    def select(self, request: RequestInfo) -> ServedModel:
        chosen = self.current
        self.generation += 1
        self.current = self._make()
        return chosen


def test_models_swapped_in_are_served_as_themselves(pipeline: Any, cancer: Any) -> None:
    # Old arms are released on a swap; a new one must never inherit their state
    # (codec, batcher, metric labels) because it happens to reuse their memory.
    router = Swapping(pipeline)
    app = create_app(router)
    body = {"instances": rows_of(cancer[0], 0, 1)}

    async def scenario() -> list[Any]:
        await app.startup()
        try:
            seen = []
            for _ in range(30):
                status, answer = await _call(app, "POST", "/v1/predict", body)
                assert status == 200
                seen.append(answer["model"]["generation"])
                gc.collect()
            return seen
        finally:
            await app.shutdown()

    assert asyncio.run(scenario()) == list(range(1, 31))
    # Each generation's predictions are counted under its own labels.
    counted = {generation: n for (_, _, generation, _), n in app.metrics.predictions.items()}
    assert counted == {str(g): 1 for g in range(1, 31)}


def test_a_router_without_optional_behaviour_needs_no_hooks(pipeline: Any, cancer: Any) -> None:
    class One(Router):
        def __init__(self, model: ServedModel) -> None:
            self.model = model

        @property
        def models(self) -> Sequence[ServedModel]:
            return (self.model,)

        def select(self, request: RequestInfo) -> ServedModel:
            return self.model

    one = One(ServedModel.from_estimator(pipeline, name="cancer", release="1.0.0"))
    assert one.shadows(one.model) == ()
    assert one.fallback_for(one.model, ValueError()) is None
    assert one.describe() is None
    app = create_app(one)

    async def scenario() -> list[Any]:
        await app.startup()
        try:
            return [
                await _call(app, "POST", "/v1/predict", {"instances": rows_of(cancer[0], 0, 1)}),
                await _call(app, "GET", "/v1/model"),
            ]
        finally:
            await app.shutdown()

    (status, _), (model_status, described) = asyncio.run(scenario())
    assert (status, model_status) == (200, 200)
    assert "routing" not in described


class _Broken(Predictor):
    """A generation whose every prediction fails (a model that loads but cannot run)."""

    backend = "broken"

    def __init__(self, inner: Predictor) -> None:
        self.task, self.classes = inner.task, inner.classes
        self.has_probabilities = inner.has_probabilities

    def predict(self, rows: Any) -> Any:
        raise RuntimeError("this generation is broken")


def test_a_shadow_that_fails_never_touches_the_answer(
    pipeline: Any, cancer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def arm(generation: int) -> ServedModel:
        return ServedModel.from_estimator(
            pipeline, name="cancer", release="1.0.0", generation=generation, backend="sklearn"
        )

    newest = arm(2)
    shadow = dataclasses.replace(newest, predictor=_Broken(newest.predictor))
    router = SelectorRouter.from_spec([shadow, arm(1)], SelectorSpec(kind=SelectorKind.SHADOW))
    app = create_app(router)
    X = cancer[0]

    async def scenario() -> list[Any]:
        await app.startup()
        try:
            return [await _call(app, "POST", "/v1/predict", {"instances": rows_of(X, 0, 3)})]
        finally:
            await app.shutdown()  # waits for the shadow's work

    with caplog.at_level(logging.WARNING, logger="mlcycle.serve.router"):
        answers = asyncio.run(scenario())
    for status, body in answers:
        assert status == 200
        assert body["model"]["generation"] == 1
        assert body["predictions"] == pipeline.predict(X.iloc[0:3]).tolist()
    assert router.errors == [1, 0]
    assert [s["state"] for s in router.arm_stats()] == ["failed", "active"]
    assert (
        "model 1.0.0/2 failed (RuntimeError: this generation is broken); it is taken out"
        in caplog.text
    )


def test_an_unexpected_error_is_answered_500_and_the_next_request_served(
    pipeline: Any, cancer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Faulty(Router):
        """Fails its first selection with a bug of its own."""

        def __init__(self, model: ServedModel) -> None:
            self.model, self.calls = model, 0

        @property
        def models(self) -> Sequence[ServedModel]:
            return (self.model,)

        def select(self, request: RequestInfo) -> ServedModel:
            self.calls += 1
            if self.calls == 1:
                raise KeyError("a bug")
            return self.model

    app = create_app(Faulty(ServedModel.from_estimator(pipeline, name="cancer")))
    body = {"instances": rows_of(cancer[0], 0, 1)}

    async def scenario() -> list[Any]:
        await app.startup()
        try:
            return [await _call(app, "POST", "/v1/predict", body) for _ in range(2)]
        finally:
            await app.shutdown()

    (status, answer), (after, _) = asyncio.run(scenario())
    assert (status, answer) == (500, {"error": "internal error; see the server log"})
    assert after == 200
    assert "error answering POST /v1/predict" in caplog.text
    assert "KeyError: 'a bug'" in caplog.text
