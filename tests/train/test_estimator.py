"""Building the estimator: pipeline steps resolved safely, entry points, seeds, the task."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from mlcycle.errors import ExitCode, TrainingError
from mlcycle.spec.model import ModelSpec, StepSpec
from mlcycle.train import build_estimator, infer_task
from tests.conftest import build_file_tree


def steps(*items: str | tuple[str, dict[str, Any]]) -> ModelSpec:
    built = [StepSpec(i) if isinstance(i, str) else StepSpec(i[0], i[1]) for i in items]
    return ModelSpec(pipeline=tuple(built))


def build_error(model: ModelSpec, root: Path = Path()) -> TrainingError:
    with pytest.raises(TrainingError) as info:
        build_estimator(model, root=root)
    assert info.value.exit_code == ExitCode.RUNTIME
    return info.value


# --- pipeline steps ---------------------------------------------------------------------


def test_pipeline_from_steps_with_params_is_named_like_make_pipeline() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model = steps(
        ("sklearn.preprocessing.StandardScaler", {"with_mean": False}),
        ("sklearn.linear_model.LogisticRegression", {"C": 0.5, "max_iter": 300}),
    )
    pipeline = build_estimator(model, root=Path())
    assert isinstance(pipeline, Pipeline)
    assert [name for name, _ in pipeline.steps] == ["standardscaler", "logisticregression"]
    scaler, logit = (step for _, step in pipeline.steps)
    assert isinstance(scaler, StandardScaler) and scaler.with_mean is False
    assert isinstance(logit, LogisticRegression)
    assert (logit.C, logit.max_iter) == (0.5, 300)
    assert pipeline.get_params()["logisticregression__C"] == 0.5


def test_yaml_lists_become_tuples_where_a_parameter_wants_one(iris: Any) -> None:
    model = steps(
        ("sklearn.preprocessing.MinMaxScaler", {"feature_range": [-1, 1]}),
        "sklearn.linear_model.LogisticRegression",
    )
    pipeline = build_estimator(model, root=Path())
    assert pipeline.steps[0][1].feature_range == (-1, 1)
    pipeline.fit(*iris)


def test_seed_sets_every_unset_random_state_and_explicit_values_win() -> None:
    model = ModelSpec(
        pipeline=(
            StepSpec("sklearn.decomposition.PCA", {"n_components": 2}),
            StepSpec("sklearn.ensemble.RandomForestClassifier", {"random_state": 7}),
        ),
        seed=42,
    )
    pipeline = build_estimator(model, root=Path())
    params = pipeline.get_params()
    assert params["pca__random_state"] == 42
    assert params["randomforestclassifier__random_state"] == 7


def test_unknown_class_suggests_the_close_name() -> None:
    error = build_error(steps("sklearn.linear_model.LogisticRegresion"))
    assert "model.pipeline step 1" in str(error)
    assert "has no class 'LogisticRegresion'" in str(error)
    assert "did you mean 'LogisticRegression'" in str(error)


def test_wrong_module_suggests_where_scikit_learn_keeps_the_class() -> None:
    error = build_error(steps("sklearn.preprocessing.StandardScaler", "sklearn.LogisticRegression"))
    assert "model.pipeline step 2" in str(error)
    assert "did you mean 'sklearn.linear_model.LogisticRegression'" in str(error)
    error = build_error(steps("sklearn.linear_models.LogisticRegression"))
    assert "no module 'sklearn.linear_models'" in str(error)
    assert "'sklearn.linear_model.LogisticRegression'" in str(error)


@pytest.mark.parametrize("path", ["os.system", "subprocess.Popen", "builtins.eval", "numpy.load"])
def test_modules_outside_the_allowlist_are_refused_before_import(path: str) -> None:
    module = path.rpartition(".")[0]
    was_imported = module in sys.modules
    error = build_error(steps(path))
    assert f"'{path}' is not allowed" in str(error)
    assert "sklearn, xgboost, lightgbm, catboost, imblearn" in str(error)
    assert error.hint is not None and "model.entrypoint" in error.hint
    assert (module in sys.modules) == was_imported


def test_allowlist_is_by_package_not_by_name_prefix() -> None:
    error = build_error(steps("sklearnx.Evil"))
    assert "is not allowed" in str(error)


def test_a_function_is_not_an_estimator() -> None:
    error = build_error(steps("sklearn.metrics.accuracy_score"))
    assert "is a function, not an estimator class" in str(error)


def test_a_class_without_fit_is_not_an_estimator() -> None:
    error = build_error(steps("sklearn.model_selection.KFold"))
    assert "'sklearn.model_selection.KFold' is not a scikit-learn estimator" in str(error)


def test_a_package_that_is_not_installed_says_how_to_install_it() -> None:
    if importlib.util.find_spec("catboost") is not None:
        pytest.skip("catboost is installed here")
    error = build_error(steps("catboost.CatBoostClassifier"))
    assert "needs the package 'catboost', which is not installed" in str(error)
    assert error.hint == "pip install catboost"


def test_unknown_parameter_names_the_step_and_lists_valid_ones() -> None:
    error = build_error(
        steps(
            "sklearn.preprocessing.StandardScaler",
            ("sklearn.linear_model.LogisticRegression", {"c": 1.0}),
        )
    )
    message = str(error)
    assert message.startswith(
        "model.pipeline step 2 (sklearn.linear_model.LogisticRegression): unknown parameter 'c';"
    )
    assert "did you mean 'C'?" in message
    assert "valid parameters: C, class_weight," in message


def test_ill_typed_parameter_value_is_reported_with_the_step() -> None:
    error = build_error(steps(("sklearn.linear_model.LogisticRegression", {"C": "high"})))
    assert "step 1 (sklearn.linear_model.LogisticRegression)" in str(error)
    assert "'C' parameter of LogisticRegression must be a float" in str(error)


def test_a_predictor_in_the_middle_is_refused() -> None:
    error = build_error(
        steps("sklearn.linear_model.LogisticRegression", "sklearn.preprocessing.StandardScaler")
    )
    assert "step 1 (sklearn.linear_model.LogisticRegression) is not a transformer" in str(error)


def test_a_bare_class_name_is_not_a_class_path() -> None:
    error = build_error(steps("RandomForestClassifier"))
    assert "is not a class path" in str(error)
    assert "'sklearn.ensemble.RandomForestClassifier'" in str(error)


def test_no_model_and_both_kinds_of_model_are_errors() -> None:
    assert "nothing to train" in str(build_error(ModelSpec()))
    both = ModelSpec(pipeline=(StepSpec("sklearn.svm.SVC"),), entrypoint="model:build")
    assert "both `pipeline` and `entrypoint`" in str(build_error(both))


# --- entry points ---------------------------------------------------------------------------

ENTRYPOINT_MODULE = """
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def build():
    return make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5))


def not_an_estimator():
    return "a string"


def a_class():
    return RandomForestClassifier


def broken():
    raise RuntimeError("no luck today")
"""


def test_entrypoint_is_imported_from_the_spec_directory_and_seeded(tmp_path: Path) -> None:
    build_file_tree(tmp_path, {"ep_custom_model.py": ENTRYPOINT_MODULE})
    path_before = list(sys.path)
    model = ModelSpec(entrypoint="ep_custom_model:build", seed=3)
    pipeline = build_estimator(model, root=tmp_path)
    assert sys.path == path_before
    assert [name for name, _ in pipeline.steps] == ["standardscaler", "randomforestclassifier"]
    assert pipeline.get_params()["randomforestclassifier__random_state"] == 3
    assert pipeline.get_params()["randomforestclassifier__n_estimators"] == 5


def test_entrypoint_in_a_package_under_the_spec_directory(tmp_path: Path) -> None:
    build_file_tree(
        tmp_path,
        {"ep_models": {"__init__.py": "", "forest.py": ENTRYPOINT_MODULE}},
    )
    pipeline = build_estimator(ModelSpec(entrypoint="ep_models.forest:build"), root=tmp_path)
    assert pipeline.steps[-1][0] == "randomforestclassifier"


def test_same_module_name_in_two_projects_loads_each_projects_own(tmp_path: Path) -> None:
    one = build_file_tree(
        tmp_path / "one",
        {"ep_shared.py": "from sklearn.svm import SVC\ndef build():\n    return SVC()\n"},
    )
    two = build_file_tree(
        tmp_path / "two",
        {"ep_shared.py": "from sklearn.svm import SVR\ndef build():\n    return SVR()\n"},
    )
    first = build_estimator(ModelSpec(entrypoint="ep_shared:build"), root=one)
    second = build_estimator(ModelSpec(entrypoint="ep_shared:build"), root=two)
    assert (type(first).__name__, type(second).__name__) == ("SVC", "SVR")


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        ("ep_missing:build", "there is no module 'ep_missing'"),
        ("ep_errors:buidl", "has no function 'buidl'; did you mean 'build'?"),
        ("ep_errors:not_an_estimator", "returned str, not a scikit-learn estimator"),
        ("ep_errors:a_class", "returned the class RandomForestClassifier, not an estimator"),
        ("ep_errors:broken", "raised RuntimeError: no luck today"),
    ],
)
def test_entrypoint_problems_are_training_errors(
    tmp_path: Path, entrypoint: str, expected: str
) -> None:
    build_file_tree(tmp_path, {"ep_errors.py": ENTRYPOINT_MODULE})
    error = build_error(ModelSpec(entrypoint=entrypoint), root=tmp_path)
    assert str(error).startswith(f"model.entrypoint '{entrypoint}'")
    assert expected in str(error)


def test_entrypoint_whose_import_fails(tmp_path: Path) -> None:
    build_file_tree(tmp_path, {"ep_bad_import.py": "import not_a_real_package_xyz\n"})
    error = build_error(ModelSpec(entrypoint="ep_bad_import:build"), root=tmp_path)
    assert "importing ep_bad_import failed: ModuleNotFoundError" in str(error)
    assert str(tmp_path) not in sys.path


def test_entrypoint_cannot_shadow_an_installed_module(tmp_path: Path) -> None:
    build_file_tree(tmp_path, {"json.py": "def build():\n    return None\n"})
    error = build_error(ModelSpec(entrypoint="json:build"), root=tmp_path)
    assert "already taken by an installed module" in str(error)


# --- the task -------------------------------------------------------------------------------


def test_task_is_inferred_from_the_final_step() -> None:
    classifier = build_estimator(steps(*_scaled("sklearn.svm.SVC")), root=Path())
    regressor = build_estimator(steps(*_scaled("sklearn.linear_model.Ridge")), root=Path())
    assert infer_task(classifier, ModelSpec()) == "classification"
    assert infer_task(regressor, ModelSpec()) == "regression"


def test_declared_task_wins_but_must_not_contradict_the_estimator() -> None:
    regressor = build_estimator(steps("sklearn.linear_model.Ridge"), root=Path())
    assert infer_task(regressor, ModelSpec(task="regression")) == "regression"
    with pytest.raises(
        TrainingError, match=r"model\.task is classification but Ridge is a regressor"
    ):
        infer_task(regressor, ModelSpec(task="classification"))


def test_task_that_cannot_be_told_asks_for_model_task() -> None:
    only_scaler = build_estimator(steps("sklearn.preprocessing.StandardScaler"), root=Path())
    with pytest.raises(TrainingError) as info:
        infer_task(only_scaler, ModelSpec())
    assert "cannot tell whether StandardScaler is a classifier or a regressor" in str(info.value)
    assert info.value.hint is not None and "model.task" in info.value.hint


def _scaled(final: str) -> tuple[str, str]:
    return ("sklearn.preprocessing.StandardScaler", final)


PROJECT_TRANSFORMER = """
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


class AddSquares(BaseEstimator, TransformerMixin):
    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        import numpy as np

        X = np.asarray(X, dtype=float)
        return np.hstack([X, self.scale * X**2])


def build():
    return make_pipeline(AddSquares(scale=0.5), LogisticRegression(max_iter=500))
"""


def test_a_project_transformer_without_parameter_constraints_trains(
    tmp_path: Path, iris: Any
) -> None:
    """A plain BaseEstimator + TransformerMixin class declares no `_parameter_constraints`."""
    build_file_tree(tmp_path, {"ep_features_sq.py": PROJECT_TRANSFORMER})
    pipeline = build_estimator(ModelSpec(entrypoint="ep_features_sq:build"), root=tmp_path)
    X, y = iris
    assert pipeline.fit(X, y).score(X, y) > 0.8
