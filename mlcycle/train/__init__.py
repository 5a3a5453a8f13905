"""The learn core: a scikit-learn estimator from the spec, tuned, evaluated, gated.

This layer receives pandas data (it never reads data sources) and imports only
`errors`, `spec` and `progress` from mlcycle. scikit-learn, numpy and pandas are
imported inside the functions, so importing this package stays cheap.

The flow of `train`: build the estimator → tune it (optional) → evaluate a fresh
model per split on held-out rows → fit the returned model on all rows (or
continue the previous generation's model when warm start applies). `check_gate`
then compares the held-out metrics with the gate's conditions.
"""

from __future__ import annotations

from mlcycle.train.estimator import ALLOWED_PREFIXES, build_estimator, infer_task
from mlcycle.train.evaluation import EvaluationResult, evaluate, splits
from mlcycle.train.gate import GateCheck, GateResult, check_gate
from mlcycle.train.metrics import default_metrics, score
from mlcycle.train.trainer import TrainResult, train
from mlcycle.train.tuning import TuningResult, make_search, tune
from mlcycle.train.warmstart import supports_warm_start

__all__ = [
    "ALLOWED_PREFIXES",
    "EvaluationResult",
    "GateCheck",
    "GateResult",
    "TrainResult",
    "TuningResult",
    "build_estimator",
    "check_gate",
    "default_metrics",
    "evaluate",
    "infer_task",
    "make_search",
    "score",
    "splits",
    "supports_warm_start",
    "train",
    "tune",
]
