"""Adaptive micro-batching: concurrent requests for one model share one predict call.

The first request to arrive opens a batch and schedules its flush for the next turn
of the event loop (or after `wait` seconds, when set); every request that the loop
has already parsed by then joins it. Under light load a batch holds one request and
costs one loop turn; under heavy load it grows to what arrived meanwhile, up to
`max_rows`, so that the per-call overhead of the predictor is paid once per batch
instead of once per request (the way BentoML and Triton batch adaptively).

The predict call runs on the event loop itself: with ONNX it takes microseconds, and a
thread hop would cost more than it saves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlcycle.serve.predictor import Predictor

log = logging.getLogger(__name__)

Result = tuple[np.ndarray, "np.ndarray | None"]


class MicroBatcher:
    """Coalesces `submit` calls for one predictor into batched predict calls."""

    def __init__(self, predictor: Predictor, *, max_rows: int = 512, wait: float = 0.0) -> None:
        self._predictor = predictor
        self._max_rows = max(1, max_rows)
        self._wait = max(0.0, wait)
        self._pending: list[tuple[np.ndarray, asyncio.Future[Result]]] = []
        self._rows = 0
        self._handle: asyncio.Handle | asyncio.TimerHandle | None = None
        self.batches = 0
        self.batched_rows = 0

    def submit(self, rows: np.ndarray) -> asyncio.Future[Result]:
        """A future for the predictions of `rows`, answered with the current batch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((rows, future))
        self._rows += len(rows)
        if self._rows >= self._max_rows:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
            self._flush()
        elif self._handle is None:
            if self._wait:
                self._handle = loop.call_later(self._wait, self._flush)
            else:
                self._handle = loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._handle = None
        pending, self._pending, self._rows = self._pending, [], 0
        if not pending:
            return
        self.batches += 1
        if len(pending) == 1:
            rows, future = pending[0]
            self.batched_rows += len(rows)
            self._answer_one(rows, future)
            return
        matrices = [rows for rows, _ in pending]
        self.batched_rows += sum(len(m) for m in matrices)
        try:
            labels, probabilities = self._predictor.predict(np.concatenate(matrices))
        except Exception:
            # One bad matrix must not fail its neighbours: answer each on its own.
            for rows, future in pending:
                self._answer_one(rows, future)
            return
        start = 0
        for rows, future in pending:
            end = start + len(rows)
            if not future.done():
                part = probabilities[start:end] if probabilities is not None else None
                future.set_result((labels[start:end], part))
            start = end

    def _answer_one(self, rows: np.ndarray, future: asyncio.Future[Any]) -> None:
        try:
            result = self._predictor.predict(rows)
        except Exception as e:
            if not future.done():
                future.set_exception(e)
            return
        if not future.done():
            future.set_result(result)
