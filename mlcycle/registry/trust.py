"""What a model file may make mlcycle build when it is loaded: exact, reviewed names.

A skops file is a schema of objects to build; loading it imports and calls
whatever types and functions the schema names. skops itself trusts a reviewed
set of exact names (Python's primitives and containers, scikit-learn's public
estimators and a few of their internal loss types, NumPy/SciPy ufuncs, dtypes
and bit generators) and refuses the rest unless the caller names them. That
caller is `TrustPolicy`, the one place mlcycle decides, used by every loader:
the registry, bundles, `release --model` and the development runner.

It adds, always by exact name and never by module prefix (a module of a
trusted library also holds functions that run code: `numpy.full_like` fills
an array with a string, `sklearn.utils._testing.assert_run_python_script_
without_output` runs one):

- `LIBRARY_TYPES`: the helper types fitted scikit-learn models carry that skops
  does not trust by default (tree structures, neighbour indexes, random states,
  sparse matrices, ...), found by saving every estimator scikit-learn lists and
  those the templates and tests use (`tests/registry/test_trust.py` re-checks);
- `FUNCTIONS`: a short list of plain numeric functions a `FunctionTransformer`
  may hold;
- the project's own code: the classes and functions defined at the top level
  of the files `model.code` lists (names read with `ast`, nothing imported),
  as stored with the generation (or the bundle) being loaded.

Pickle is no part of this: unpickling runs whatever the file says, and a hash
only proves the file is the one recorded, not that it is harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Final

from mlcycle.spec.code import code_names, project_names

# Internal types of fitted scikit-learn models (and the Python/NumPy/SciPy data they
# hold) that skops does not trust by default, each seen in a fitted model (survey:
# tests/registry/test_trust.py) and reviewed: data structures whose loading sets
# attributes and calls no function named by the file.
LIBRARY_TYPES: Final = frozenset(
    {
        # Python and NumPy/SciPy data
        "builtins.slice",
        "collections.OrderedDict",
        "collections.defaultdict",
        "numpy.dtype",
        "numpy.random.mtrand.RandomState",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
        "scipy.interpolate._bsplines.BSpline",  # SplineTransformer
        # trees and neighbour indexes
        "sklearn.tree._tree.Tree",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        # HistGradientBoosting's fitted trees. skops leaves this type out of its own
        # defaults because scikit-learn does not bounds-check a crafted `nodes` array
        # (a file can crash the process at prediction, scikit-learn PR 34558); that is
        # a crash, not code run from the file, and without it no HistGradientBoosting
        # model could be stored at all.
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # parts of fitted meta-estimators, networks and Gaussian processes
        "sklearn.utils._bunch.Bunch",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
        "sklearn.gaussian_process.kernels.ConstantKernel",
        "sklearn.gaussian_process.kernels.DotProduct",
        "sklearn.gaussian_process.kernels.ExpSineSquared",
        "sklearn.gaussian_process.kernels.Matern",
        "sklearn.gaussian_process.kernels.Product",
        "sklearn.gaussian_process.kernels.RationalQuadratic",
        "sklearn.gaussian_process.kernels.RBF",
        "sklearn.gaussian_process.kernels.Sum",
        "sklearn.gaussian_process.kernels.WhiteKernel",
        "sklearn.model_selection._split.KFold",
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.metrics._scorer._PassthroughScorer",
    }
)

# Functions a model may name (a FunctionTransformer's `func`/`inverse_func`, a
# TransformedTargetRegressor's, a SelectKBest's `score_func`): numeric maps and
# statistics of arrays, no I/O, no string turned into code. NumPy's and SciPy's
# ufuncs (numpy.log1p, numpy.exp, numpy.sqrt, ...) are trusted by skops itself.
FUNCTIONS: Final = frozenset(
    {
        "math.exp",
        "math.expm1",
        "math.log",
        "math.log1p",
        "math.sqrt",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.feature_selection._univariate_selection.f_classif",
        "sklearn.feature_selection._univariate_selection.f_regression",
        "scipy._lib.array_api_compat.numpy._aliases.asarray",  # SplineTransformer's BSpline
    }
)


@lru_cache(maxsize=1)
def sklearn_estimator_names() -> frozenset[str]:
    """Exact names (`module.Class`) of scikit-learn's public estimators."""
    from sklearn.utils import all_estimators

    return frozenset(f"{cls.__module__}.{cls.__qualname__}" for _, cls in all_estimators())


@dataclass(frozen=True)
class TrustPolicy:
    """The names (beyond skops's own reviewed set) a model file may make mlcycle build.

    `project_code` holds exact `module.name`s of the project's own classes and
    functions (those its `model.code` files define), `root` the directory their
    modules are imported from while a model is loaded (a generation's stored copy
    of the code, or a bundle's), `origin` where they were declared (for messages).
    The default policy trusts library names only.
    """

    project_code: frozenset[str] = field(default_factory=frozenset)
    root: Path | None = None
    origin: str | None = None

    def is_trusted(self, name: str) -> bool:
        """Whether a model file may name the type or function `name`."""
        return (
            name in LIBRARY_TYPES
            or name in FUNCTIONS
            or name in self.project_code
            or name in sklearn_estimator_names()
        )

    def refused(self, names: Iterable[str]) -> tuple[str, ...]:
        """The names in `names` this policy does not trust, sorted."""
        return tuple(sorted({n for n in names if not self.is_trusted(n)}))

    def hint(self) -> str:
        """What a user can do about a refused name."""
        declared = (
            f"the project's own code is trusted by exact name ({self.origin})"
            if self.origin
            else "a project's own classes and functions are trusted when the files "
            "defining them are listed in `model.code`"
        )
        return (
            "a model may hold scikit-learn estimators, NumPy/SciPy data and a few numeric "
            f"functions; {declared}. Refused names are never loaded: rebuild the model "
            "from trusted parts, or list the file that defines them in model.code"
        )

    def with_code(
        self, files: Mapping[str, bytes], *, root: Path | None, origin: str
    ) -> TrustPolicy:
        """This policy plus the names the model-code `files` define (read with `ast`)."""
        return TrustPolicy(
            project_code=self.project_code | code_names(files),
            root=root,
            origin=origin,
        )

    @classmethod
    def for_code(cls, root: Path, files: Mapping[str, bytes], *, origin: str) -> TrustPolicy:
        """Trust what the model-code `files` define, imported from `root` when loading."""
        return cls().with_code(files, root=Path(root).resolve(), origin=origin)

    @classmethod
    def for_project(cls, root: Path, code: Sequence[str]) -> TrustPolicy:
        """The default policy plus what the project's `model.code` (under `root`) defines now.

        For models made in the project (`release --model FILE`); a registered
        generation loads under the policy of its own stored code instead.
        """
        if not code:
            return cls()
        names = project_names(root, code)
        return cls(
            project_code=names,
            root=Path(root).resolve(),
            origin=f"model.code of {Path(root).resolve()}: {', '.join(code)}",
        )


DEFAULT_POLICY: Final = TrustPolicy()
