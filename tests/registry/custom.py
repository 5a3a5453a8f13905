"""A user's own estimator class, as an entry point would define it (importable by subprocesses)."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator, TransformerMixin


class Doubler(TransformerMixin, BaseEstimator):
    """Multiplies every feature by `factor`: code skops does not know and must not trust."""

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def fit(self, X: Any, y: Any = None) -> Doubler:
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any) -> Any:
        return X * self.factor
