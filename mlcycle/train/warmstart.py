"""Warm start: continue the previous generation's fitted model on a new increment.

How a model continues depends on its final estimator:

- `partial_fit` (SGDClassifier, MLPClassifier, MultinomialNB, ...): one more
  incremental pass over the increment, the learning schedule carried on.
- a `warm_start` parameter (LogisticRegression, GradientBoosting, RandomForest,
  ...): the estimator is refit from its previous state; ensembles keep their
  trees and grow by as many as the spec asks for (`n_estimators`, or `max_iter`
  for histogram gradient boosting).

Transformers before the final step are continued with `partial_fit` where they
have it (StandardScaler, MinMaxScaler, ...) and otherwise reused as fitted,
unchanged, so the final estimator sees inputs on the scale it learned. The
previous model is never modified; the continued model is a deep copy.
"""

from __future__ import annotations

import copy
from typing import Any

from mlcycle.errors import MlcycleError
from mlcycle.train._util import describe


class ContinuationError(Exception):
    """Continuing the previous model failed; the caller refits from scratch instead."""


def final_step(estimator: Any) -> Any:
    """The last step of a pipeline, or the estimator itself."""
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if isinstance(steps, list) and steps else estimator


def supports_warm_start(estimator: Any) -> bool:
    """Whether the final estimator can continue from a fitted state (partial_fit or warm_start)."""
    return _mode(final_step(estimator)) is not None


def warm_start_blocker(previous: Any, estimator: Any, X: Any, y: Any, *, task: str) -> str | None:
    """Why `previous` cannot be continued as `estimator` on (X, y); None when it can."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    final = final_step(estimator)
    if _mode(final) is None:
        return (
            f"{type(final).__name__} supports neither partial_fit nor warm_start; "
            "refit from scratch"
        )
    if _structure(previous) != _structure(estimator):
        return (
            f"the previous model ({describe(previous)}) is not the pipeline the spec "
            f"declares ({describe(estimator)}); refit from scratch"
        )
    try:
        check_is_fitted(final_step(previous))
    except NotFittedError:
        return "the previous model is not fitted; refit from scratch"
    except TypeError:
        pass  # not a scikit-learn estimator: trust it and let continuation tell
    previous_columns = getattr(previous, "feature_names_in_", None)
    columns = getattr(X, "columns", None)
    if (
        previous_columns is not None
        and columns is not None
        and list(previous_columns) != [str(c) for c in columns]
    ):
        return "the data's columns differ from the previous model's; refit from scratch"
    known = getattr(final_step(previous), "classes_", None)
    if task == "classification" and known is not None:
        import pandas as pd

        new = sorted(set(pd.Series(y).dropna().unique()) - set(known.tolist()), key=str)
        if new:
            return (
                f"the data has classes the previous model never saw ({', '.join(map(str, new))}); "
                "refit from scratch"
            )
    return None


def continue_fit(previous: Any, X: Any, y: Any, *, spec_estimator: Any) -> Any:
    """A copy of `previous` trained further on (X, y); `previous` is left unchanged.

    `spec_estimator` is the freshly built (unfitted) estimator of the spec: ensembles
    grow by its number of trees. Raises ContinuationError when the estimator refuses.
    """
    model = copy.deepcopy(previous)
    steps = getattr(model, "steps", None)
    transformers = [s for _, s in steps[:-1]] if isinstance(steps, list) else []
    final = final_step(model)
    mode = _mode(final)
    try:
        Xt = X
        for step in transformers:
            if step is None or step == "passthrough":
                continue
            if callable(getattr(step, "partial_fit", None)):
                step.partial_fit(Xt, y)
            Xt = step.transform(Xt)
        if mode == "partial_fit":
            final.partial_fit(Xt, y)
        elif mode == "warm_start":
            final.set_params(warm_start=True, **_growth(final, final_step(spec_estimator)))
            final.fit(Xt, y)
        else:
            raise ContinuationError(f"{type(final).__name__} cannot continue")
    except (MlcycleError, ContinuationError):
        raise
    except (ValueError, TypeError, ArithmeticError, AttributeError) as e:
        raise ContinuationError(f"{type(e).__name__}: {e}") from e
    return model


def warm_start_description(estimator: Any) -> str:
    """How the final estimator continues, for the training note."""
    final = final_step(estimator)
    mode = _mode(final)
    name = type(final).__name__
    if mode == "partial_fit":
        return f"continued the previous model: {name}.partial_fit on the new rows"
    growing = _growth_param(final)
    if growing:
        return f"continued the previous model: {name} with warm_start, {growing} grown"
    return f"continued the previous model: {name} refit from its previous state (warm_start)"


# --- internals ----------------------------------------------------------------------------


def _mode(final: Any) -> str | None:
    # hasattr honours scikit-learn's `available_if` (MLP's partial_fit needs solver sgd/adam).
    if callable(getattr(final, "partial_fit", None)):
        return "partial_fit"
    get_params = getattr(final, "get_params", None)
    if callable(get_params) and "warm_start" in get_params(deep=False):
        return "warm_start"
    return None


def _structure(estimator: Any) -> list[tuple[str, type]]:
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):
        return [(name, type(step)) for name, step in steps]
    return [("", type(estimator))]


def _growth_param(final: Any) -> str | None:
    """The parameter that counts an ensemble's members when warm start adds more."""
    params = final.get_params(deep=False)
    if "n_estimators" in params:
        return "n_estimators"
    if type(final).__name__.startswith("HistGradientBoosting") and "max_iter" in params:
        return "max_iter"
    return None


def _growth(final: Any, spec_final: Any) -> dict[str, int]:
    """Without more members a warm-started ensemble would not learn from the new rows."""
    name = _growth_param(final)
    if name is None:
        return {}
    previous = int(final.get_params(deep=False)[name])
    step = int(spec_final.get_params(deep=False).get(name) or previous)
    return {name: previous + step}
