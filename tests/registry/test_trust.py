"""The trust policy: exact names, never module prefixes; pickles never load; custom code by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlcycle.errors import IntegrityError, RegistryError, ServingError
from mlcycle.registry import DEFAULT_POLICY, LocalRegistry, TrustPolicy, load_model, save_model
from mlcycle.registry.artifacts import sha256_file
from tests.conftest import build_file_tree
from tests.registry.conftest import iris, same_predictions
from tests.registry.gadgets import GADGETS, evil_pickle


def dump_skops(model: Any, path: Path) -> Path:
    import skops.io as sio

    sio.dump(model, path)
    return path


def attempt(load: Callable[[], Any]) -> BaseException:
    """Load (and, should that pass, predict once as serve's warm-up does); the error raised."""
    try:
        model = load()
        model.predict([[1.0, 2.0]])
    except Exception as e:
        return e
    pytest.fail("the hostile model loaded and predicted")


@pytest.mark.parametrize("gadget", sorted(GADGETS))
def test_each_gadget_is_refused_by_name_and_runs_nothing(tmp_path: Path, gadget: str) -> None:
    canary = tmp_path / "canary"
    build, names = GADGETS[gadget]
    path = dump_skops(build(canary), tmp_path / "model.skops")
    error = attempt(lambda: load_model(path, sha256=sha256_file(path), format="skops"))
    assert not canary.exists()
    assert isinstance(error, RegistryError), error
    assert str(error).startswith(f"{path}: refusing to load untrusted types: ")
    for name in names:
        assert name in str(error)
    assert "scikit-learn estimators" in (error.hint or "")


@pytest.mark.parametrize("gadget", sorted(GADGETS))
def test_the_registry_neither_stores_nor_loads_a_gadget(tmp_path: Path, gadget: str) -> None:
    canary = tmp_path / "canary"
    build, names = GADGETS[gadget]
    registry = LocalRegistry(tmp_path / "registry", "churn")
    with pytest.raises(RegistryError) as info:
        registry.register(
            build(canary),
            release="dev",
            metrics={},
            gate=None,
            data=None,
            spec_hash=None,
            git_commit=None,
            procurement="unattended",
            status="candidate",
        )
    assert str(info.value).startswith("cannot store the model: it holds code mlcycle does not ")
    assert names[0] in str(info.value)
    assert registry.entries() == []
    assert not canary.exists()


def test_the_development_runner_uses_the_same_policy(tmp_path: Path) -> None:
    from mlcycle.serve.__main__ import load_estimator

    canary = tmp_path / "canary"
    path = dump_skops(GADGETS["chain"][0](canary), tmp_path / "model.skops")
    error = attempt(lambda: load_estimator(path))
    assert not canary.exists()
    assert isinstance(error, RegistryError), error
    assert "numpy.full_like" in str(error)


def test_the_development_runner_refuses_pickles(tmp_path: Path) -> None:
    from mlcycle.serve.__main__ import load_estimator

    canary = tmp_path / "canary"
    path = tmp_path / "model.pkl"
    path.write_bytes(evil_pickle(canary))
    with pytest.raises(ServingError, match="refusing to serve a pickle"):
        load_estimator(path)
    assert not canary.exists()


def test_a_pickle_artifact_is_refused_even_with_the_right_hash(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    path = tmp_path / "model.pkl"
    path.write_bytes(evil_pickle(canary))
    with pytest.raises(RegistryError) as info:
        load_model(path, sha256=sha256_file(path), format="pickle")
    assert not canary.exists()
    assert "refusing to load a pickle" in str(info.value)
    assert "skops.io.dump" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("name", "trusted"),
    [
        ("sklearn.linear_model._logistic.LogisticRegression", True),
        ("sklearn.preprocessing._function_transformer.FunctionTransformer", True),
        ("sklearn.tree._tree.Tree", True),
        ("scipy.sparse._csr.csr_matrix", True),
        ("math.log1p", True),
        ("numpy.full_like", False),
        ("numpy.take", False),
        ("numpy.load", False),
        ("sklearn.utils._testing.assert_run_python_script_without_output", False),
        ("sklearn.utils._testing.MinimalClassifier", False),
        ("scipy.io.loadmat", False),
        ("builtins.eval", False),
        ("posix.system", False),
        ("sklearnx.Evil", False),
        ("tests.registry.custom.Doubler", False),
    ],
)
def test_default_policy_names(name: str, trusted: bool) -> None:
    assert DEFAULT_POLICY.is_trusted(name) is trusted


# --- every model the templates, examples and tests train, and common ones --------------


def _models() -> dict[str, Callable[[], tuple[Any, str]]]:
    import numpy as np
    from sklearn import (
        calibration,
        compose,
        ensemble,
        feature_selection,
        impute,
        linear_model,
        naive_bayes,
        neighbors,
        neural_network,
        pipeline,
        preprocessing,
        svm,
        tree,
    )

    def scaled(step: Any) -> Any:
        return pipeline.make_pipeline(preprocessing.StandardScaler(), step)

    return {
        "logistic (templates)": lambda: (scaled(linear_model.LogisticRegression()), "c"),
        "sgd (adaptive)": lambda: (scaled(linear_model.SGDClassifier(random_state=0)), "c"),
        "sgd log loss": lambda: (linear_model.SGDClassifier(loss="log_loss"), "c"),
        "sgd regressor": lambda: (linear_model.SGDRegressor(), "r"),
        "ridge": lambda: (linear_model.Ridge(), "r"),
        "svc": lambda: (svm.SVC(probability=True), "c"),
        "random forest": lambda: (ensemble.RandomForestClassifier(n_estimators=3), "c"),
        "forest regressor": lambda: (ensemble.RandomForestRegressor(n_estimators=3), "r"),
        "gradient boosting": lambda: (ensemble.GradientBoostingClassifier(n_estimators=3), "c"),
        "hist gradient boosting": lambda: (ensemble.HistGradientBoostingRegressor(max_iter=3), "r"),
        "decision tree": lambda: (tree.DecisionTreeClassifier(), "c"),
        "k neighbours kd-tree": lambda: (
            neighbors.KNeighborsClassifier(algorithm="kd_tree"),
            "c",
        ),
        "gaussian nb": lambda: (naive_bayes.GaussianNB(), "c"),
        "mlp": lambda: (neural_network.MLPClassifier(max_iter=5), "c"),
        "select k best": lambda: (
            pipeline.make_pipeline(
                impute.SimpleImputer(),
                feature_selection.SelectKBest(k=5),
                linear_model.LogisticRegression(),
            ),
            "c",
        ),
        "log1p transformer": lambda: (
            pipeline.make_pipeline(
                preprocessing.FunctionTransformer(np.log1p), linear_model.Ridge()
            ),
            "r",
        ),
        "transformed target": lambda: (
            compose.TransformedTargetRegressor(
                linear_model.Ridge(), func=np.log1p, inverse_func=np.expm1
            ),
            "r",
        ),
        "calibrated": lambda: (
            calibration.CalibratedClassifierCV(linear_model.LogisticRegression(), cv=3),
            "c",
        ),
        "voting": lambda: (
            ensemble.VotingClassifier(
                [("a", linear_model.LogisticRegression()), ("b", naive_bayes.GaussianNB())],
                voting="soft",
            ),
            "c",
        ),
        "one-hot columns": lambda: (
            pipeline.make_pipeline(
                compose.make_column_transformer(
                    (preprocessing.OneHotEncoder(handle_unknown="ignore"), [0]),
                    remainder=preprocessing.StandardScaler(),
                ),
                linear_model.LogisticRegression(),
            ),
            "c",
        ),
    }


@pytest.mark.parametrize("name", sorted(_models()))
def test_common_models_round_trip_under_the_default_policy(tmp_path: Path, name: str) -> None:
    import warnings

    from sklearn.datasets import load_breast_cancer, load_diabetes

    model, kind = _models()[name]()
    X, y = (load_breast_cancer if kind == "c" else load_diabetes)(return_X_y=True)
    X, y = X[:200], y[:200]
    if kind == "r":
        X, y = abs(X), abs(y)  # log1p needs values above -1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    info = save_model(model, tmp_path / "model")
    assert info.format == "skops"
    loaded = load_model(tmp_path / info.file, sha256=info.sha256, format="skops")
    assert (loaded.predict(X) == model.predict(X)).all()


# --- the project's own code -----------------------------------------------------------

DOUBLER = """
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


class Doubler(TransformerMixin, BaseEstimator):
    def __init__(self, factor=2.0):
        self.factor = factor

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        return X * self.factor


def build():
    return make_pipeline(Doubler(), LogisticRegression(max_iter=500))
"""


def test_the_model_codes_own_classes_and_functions_are_trusted_by_exact_name(
    tmp_path: Path,
) -> None:
    root = build_file_tree(tmp_path / "project", {"ep_trust_model.py": DOUBLER})
    policy = TrustPolicy.for_project(root, ["ep_trust_model.py"])
    assert policy.project_code == {"ep_trust_model.Doubler", "ep_trust_model.build"}
    assert policy.is_trusted("ep_trust_model.Doubler")
    assert not policy.is_trusted("ep_trust_model.LogisticRegression")  # imported, not defined
    assert not policy.is_trusted("ep_trust_model_x.Doubler")
    assert not policy.is_trusted("numpy.full_like")
    assert "ep_trust_model" in (policy.origin or "")
    # The entry point's module alone is not model code: only model.code is.
    assert TrustPolicy.for_project(root, []) == TrustPolicy()


@pytest.mark.parametrize("code", [["/etc/passwd"], ["../x.py"], ["missing.py"], ["os.py"]])
def test_paths_outside_the_project_are_never_trusted(tmp_path: Path, code: list[str]) -> None:
    build_file_tree(tmp_path, {"os.py": "def system():\n    pass\n"})
    assert TrustPolicy.for_project(tmp_path, code).project_code == frozenset()


def test_a_symlink_out_of_the_project_is_not_project_code(tmp_path: Path) -> None:
    outside = build_file_tree(tmp_path / "elsewhere", {"ep_far.py": DOUBLER})
    root = tmp_path / "project"
    root.mkdir()
    (root / "ep_far.py").symlink_to(outside / "ep_far.py")
    assert TrustPolicy.for_project(root, ["ep_far.py"]).project_code == frozenset()


def test_a_custom_class_is_stored_as_skops_with_its_code_and_loads_from_that_copy(
    tmp_path: Path,
) -> None:
    import sys

    root = build_file_tree(tmp_path / "project", {"ep_trust_store.py": DOUBLER})
    sys.path.insert(0, str(root))
    try:
        import ep_trust_store  # type: ignore[import-not-found]

        model = ep_trust_store.build().fit(*iris())
    finally:
        sys.path.remove(str(root))
    registry = LocalRegistry(tmp_path / "registry", "churn")
    record = {
        "release": "dev",
        "metrics": {},
        "gate": None,
        "data": None,
        "spec_hash": None,
        "git_commit": None,
        "procurement": "unattended",
        "status": "candidate",
    }
    # Without the code that defines it, the class is refused when storing.
    with pytest.raises(RegistryError, match=r"does not trust: ep_trust_store\.Doubler"):
        registry.register(model, **record)
    code = {"ep_trust_store.py": (root / "ep_trust_store.py").read_bytes()}
    entry = registry.register(model, code=code, **record)
    assert entry.artifact.format == "skops"
    assert set(entry.code) == {"ep_trust_store.py"}
    stored = registry.code_dir(entry) / "ep_trust_store.py"
    (root / "ep_trust_store.py").write_text("raise SystemExit('the working copy ran')\n")
    del sys.modules["ep_trust_store"]  # a fresh process
    try:
        loaded = registry.load_model(entry)
        assert same_predictions(loaded, model)
        assert Path(sys.modules["ep_trust_store"].__file__ or "").resolve() == stored.resolve()
        assert str(root) not in sys.path and str(stored.parent) not in sys.path
    finally:
        sys.modules.pop("ep_trust_store", None)
    # The stored copy is checked by hash before anything is imported from it.
    stored.write_text(DOUBLER + "\nimport os\n")
    with pytest.raises(IntegrityError, match="SHA-256 mismatch"):
        registry.load_model(entry)
    assert "ep_trust_store" not in sys.modules
