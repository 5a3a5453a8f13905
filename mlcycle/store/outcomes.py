"""What a true outcome must be: one of the model's classes, or a finite number.

Feedback is checked against the models that serve (`OutcomeRule.for_models`)
before anything is stored, and the production evaluation checks stored outcomes
against the predictions they are scored with (`scoring_problem`), so an outcome
that cannot be scored is refused at the door and, when an older store holds one,
counted instead of breaking the metrics.

Values are compared in the classes' own type: a JSON `1` or `1.0` is the class
`1` of an integer-labelled model (stored as `1`), never the class `True`; a
JSON `true` is a class only of a boolean-labelled model; `"1"` only of a
string-labelled one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class _Classes(Protocol):
    @property
    def classes(self) -> Sequence[Any] | None: ...


class ScoredModel(Protocol):
    """What a rule needs of a served model (the serving engine's `ServedModel` is one)."""

    @property
    def task(self) -> str: ...

    @property
    def predictor(self) -> _Classes: ...


MAX_LABEL_LENGTH = 200
"""Longest string outcome taken for a model whose classes are unknown."""

_SHOWN_CLASSES = 20


def value_kind(value: Any) -> str:
    """The JSON kind of a value as labels compare: boolean, number, string or other."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


_PLURAL_NAMES = {"boolean": "booleans", "number": "numbers", "string": "strings"}
_KIND_NAMES = {
    "boolean": "a boolean",
    "number": "a number",
    "string": "a string",
    "list": "a list",
    "object": "an object",
    "null": "null",
}


def describe(value: Any) -> str:
    """A short description of a JSON value for a message (long values cut)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def _show_classes(classes: Sequence[Any]) -> str:
    shown = ", ".join(repr(c) for c in classes[:_SHOWN_CLASSES])
    more = len(classes) - _SHOWN_CLASSES
    return shown + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class OutcomeRule:
    """What outcomes the served models take: their task and, for classifiers, classes.

    `classes` is None for a regression model, or a classifier whose classes are
    unknown (then any short scalar label is taken).
    """

    task: str
    classes: tuple[Any, ...] | None = None

    @classmethod
    def for_models(cls, models: Iterable[ScoredModel]) -> tuple[OutcomeRule, ...]:
        """The rules of `models`, one per task: classifiers' classes are united.

        A dynamic deployment serves several generations of one project at once, and
        a feedback call does not say which one made the prediction (that would take a
        read of the store before the answer). The union is also right: a true outcome
        is a fact about the case, not about the model, so a class that only a newer
        generation has learnt is a genuine outcome for an older one's prediction too
        (it scores as a miss there).
        """
        classes: dict[tuple[str, Any], Any] = {}
        unknown_classes = False
        tasks: list[str] = []
        for model in models:
            if model.task not in tasks:
                tasks.append(model.task)
            if model.task != "classification":
                continue
            known = model.predictor.classes
            if known is None:
                unknown_classes = True
                continue
            for c in known:
                classes.setdefault((value_kind(c), c), c)
        rules = []
        for task in tasks:
            if task == "classification":
                known_classes = None if unknown_classes else tuple(classes.values())
                rules.append(cls(task, known_classes))
            else:
                rules.append(cls(task))
        return tuple(rules)

    def fit(self, value: Any) -> tuple[Any, str | None]:
        """(the outcome as stored, None) when `value` fits, else (None, what is wrong)."""
        kind = value_kind(value)
        if kind == "other":
            return None, f"must be a single value, not {describe(value)}"
        if self.task != "classification":
            if kind != "number":
                return None, f"must be a number (a regression model), got {describe(value)}"
            if not math.isfinite(value):
                return None, f"must be a finite number, got {describe(value)}"
            return value, None
        if self.classes is None:
            if kind == "number" and not math.isfinite(value):
                return None, f"must be a class label, got {describe(value)}"
            if kind == "string" and not 0 < len(value) <= MAX_LABEL_LENGTH:
                return None, f"must be a class label of 1 to {MAX_LABEL_LENGTH} characters"
            return value, None
        for c in self.classes:
            # Same kind and equal: 1.0 finds the class 1 (dict and == agree), True never does.
            if value_kind(c) == kind and c == value:
                return c, None
        kinds = {value_kind(c) for c in self.classes}
        expected = f"one of the model's classes {_show_classes(self.classes)}"
        if kind not in kinds:
            wanted = " or ".join(_KIND_NAMES.get(k, k) for k in sorted(kinds))
            return None, f"must be {expected} ({wanted}), got {describe(value)}"
        return None, f"must be {expected}, got {describe(value)}"


def check_outcome(value: Any, rules: Sequence[OutcomeRule]) -> tuple[Any, str | None]:
    """`value` as stored, or the first rule's complaint when no rule takes it."""
    problem: str | None = None
    for rule in rules:
        stored, why = rule.fit(value)
        if why is None:
            return stored, None
        problem = problem or why
    return None, problem or "no model serves to check it against"


def scoring_problem(outcome: Any, prediction: Any, task: str) -> str | None:
    """Why a stored outcome cannot be scored against its prediction (None: it can).

    Classes are not kept with the predictions, so a classifier's outcome is checked
    against the kind of label the model predicts: a string model's outcome must be
    a string, a numeric model's a whole number (`1.0` counts as `1`), a boolean
    model's a boolean. Regression outcomes must be finite numbers.
    """
    kind = value_kind(outcome)
    if kind == "other":
        return f"the outcome is {describe(outcome)}, not a single value"
    if task == "regression":
        if kind != "number":
            return f"the outcome is {_KIND_NAMES[kind]}, not a number"
        if not math.isfinite(outcome):
            return "the outcome is not a finite number"
        return None
    predicted = value_kind(prediction)
    if kind != predicted:
        return (
            f"the outcome is {_KIND_NAMES[kind]}; the model's labels are "
            f"{_PLURAL_NAMES.get(predicted, 'other values')}"
        )
    if kind == "number" and isinstance(prediction, int) and not _whole(outcome):
        return "the outcome is not one of the model's (whole number) labels"
    return None


def _whole(value: float) -> bool:
    """Whether a number can be an integer class label (1.0 can, 0.5 and -1e308 cannot)."""
    return math.isfinite(value) and float(value).is_integer() and abs(value) < 2**53
