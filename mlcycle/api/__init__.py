"""The library behind the CLI: one function per verb, each returning a result object.

The CLI parses options, calls one of these and renders what it returns; other
programs can call them the same way. Nothing here prints.
"""

from __future__ import annotations

from mlcycle.api.agents import duration_flag, evaluate_production, production_check, update
from mlcycle.api.deploy import deploy, manifest_history
from mlcycle.api.export import export
from mlcycle.api.learn import evaluate, model, models, runs, train
from mlcycle.api.migrate import migrate
from mlcycle.api.release import history, release
from mlcycle.api.report import report
from mlcycle.api.spec import plan, validate
from mlcycle.api.stages import promote, retire

__all__ = [
    "deploy",
    "duration_flag",
    "evaluate",
    "evaluate_production",
    "export",
    "history",
    "manifest_history",
    "migrate",
    "model",
    "models",
    "plan",
    "production_check",
    "promote",
    "release",
    "report",
    "retire",
    "runs",
    "train",
    "update",
    "validate",
]
