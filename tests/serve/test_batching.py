"""Micro-batching with a real scikit-learn predictor: requests parsed in one loop turn
share one predict call, answers are exactly each request's own, and one bad matrix
fails only its own request."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from mlcycle.serve import Feature
from mlcycle.serve.batching import MicroBatcher
from mlcycle.serve.predictor import Predictor


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, Predictor, np.ndarray]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    features = [Feature(f"f{i}", "number", False) for i in range(X.shape[1])]
    predictor = Predictor.from_estimator(model, features, "classification", backend="sklearn")
    return model, predictor, X


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_requests_of_one_loop_turn_share_one_predict_call(fitted: Any) -> None:
    model, predictor, X = fitted
    batcher = MicroBatcher(predictor)
    parts = [X[0:3], X[50:51], X[100:105]]

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(batcher.submit(p) for p in parts)))

    answers = run(main())
    assert (batcher.batches, batcher.batched_rows) == (1, 9)
    for part, (labels, probabilities) in zip(parts, answers, strict=True):
        assert labels.tolist() == model.predict(part).tolist()
        np.testing.assert_allclose(probabilities, model.predict_proba(part), rtol=1e-12)


def test_a_bad_matrix_fails_only_its_own_request(fitted: Any) -> None:
    model, predictor, X = fitted
    batcher = MicroBatcher(predictor)

    async def main() -> list[Any]:
        good = batcher.submit(X[:2])
        bad = batcher.submit(np.ones((1, 3)))  # three columns where the model takes four
        also_good = batcher.submit(X[-2:])
        return list(await asyncio.gather(good, bad, also_good, return_exceptions=True))

    good, bad, also_good = run(main())
    assert isinstance(bad, ValueError)
    assert good[0].tolist() == model.predict(X[:2]).tolist()
    assert also_good[0].tolist() == model.predict(X[-2:]).tolist()
    # The batch failed as a whole, then each request was answered on its own.
    assert (batcher.batches, batcher.batched_rows) == (1, 5)


def test_a_full_batch_is_answered_at_once_and_a_wait_holds_the_next(fitted: Any) -> None:
    model, predictor, X = fitted
    batcher = MicroBatcher(predictor, max_rows=4, wait=0.05)

    async def main() -> tuple[bool, bool, Any]:
        first = batcher.submit(X[:2])
        second = batcher.submit(X[2:6])  # 6 rows >= 4: flushed now, without a loop turn
        flushed = first.done() and second.done()
        third = batcher.submit(X[6:7])  # waits up to 0.05 s for company
        waiting = not third.done()
        return flushed, waiting, await third

    flushed, waiting, (labels, _) = run(main())
    assert flushed and waiting
    assert labels.tolist() == model.predict(X[6:7]).tolist()
    assert (batcher.batches, batcher.batched_rows) == (2, 7)
