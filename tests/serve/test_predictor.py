"""Predictors: ONNX agrees with sklearn, and pipelines that do not convert fall back."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import numpy as np
import pytest

from mlcycle.errors import ServingError
from mlcycle.registry.features import Feature, features_from_frame
from mlcycle.serve.model import ServedModel
from mlcycle.serve.predictor import OnnxPredictor, Predictor, SklearnPredictor


def _features(frame: Any) -> list[Feature]:
    return [Feature(str(c)) for c in frame.columns]


def test_onnx_agrees_with_sklearn_on_the_whole_data_set(pipeline: Any, cancer: Any) -> None:
    X, _ = cancer
    rows = X.to_numpy()
    predictor = Predictor.from_estimator(
        pipeline, _features(X), "classification", sample=rows[:100]
    )

    assert predictor.backend == "onnx"
    labels, probabilities = predictor.predict(rows)
    assert np.array_equal(labels, pipeline.predict(X))
    assert probabilities is not None
    assert np.max(np.abs(probabilities - pipeline.predict_proba(X))) <= 1e-5
    assert predictor.classes == (0, 1)
    assert predictor.has_probabilities


def test_one_row_and_many_rows_give_the_same_answers(pipeline: Any, cancer: Any) -> None:
    X, _ = cancer
    rows = X.to_numpy()
    predictor = Predictor.from_estimator(pipeline, _features(X), "classification")
    together, _ = predictor.predict(rows[:20])
    alone = [predictor.predict(rows[i : i + 1])[0][0] for i in range(20)]
    assert together.tolist() == alone


def test_synthetic_verification_when_no_sample_is_given(
    pipeline: Any, cancer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The check is the registry's (the conversion a stored ONNX form is made with).
    caplog.set_level(logging.INFO, logger="mlcycle.registry.onnx")
    predictor = Predictor.from_estimator(pipeline, _features(cancer[0]), "classification")
    assert predictor.backend == "onnx"
    assert "synthetic rows" in caplog.text


def test_regressor_converts_and_agrees() -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X, y)
    predictor = Predictor.from_estimator(model, _features(X), "regression", sample=X.to_numpy())

    assert predictor.backend == "onnx"
    values, probabilities = predictor.predict(X.to_numpy())
    assert probabilities is None
    assert np.allclose(values, model.predict(X), rtol=1e-6, atol=1e-6)


def _lambda_pipeline(cancer: Any) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    X, y = cancer
    return make_pipeline(
        FunctionTransformer(lambda a: np.log1p(np.abs(a))),
        StandardScaler(),
        LogisticRegression(max_iter=1000, random_state=0),
    ).fit(X, y)


def test_a_pipeline_that_does_not_convert_falls_back_to_sklearn(
    cancer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    X, _ = cancer
    model = _lambda_pipeline(cancer)
    caplog.set_level(logging.WARNING, logger="mlcycle.serve.predictor")

    predictor = Predictor.from_estimator(model, _features(X), "classification", sample=X.to_numpy())

    assert isinstance(predictor, SklearnPredictor)
    assert predictor.backend == "sklearn"
    assert predictor.note and "FunctionTransformer" in predictor.note
    assert "serving through sklearn, not ONNX" in caplog.text
    labels, probabilities = predictor.predict(X.to_numpy())
    assert np.array_equal(labels, model.predict(X))
    assert probabilities is not None
    assert np.allclose(probabilities, model.predict_proba(X))


@pytest.mark.filterwarnings("ignore:invalid value encountered in log1p")
def test_an_estimator_failing_on_synthetic_rows_falls_back_to_sklearn(cancer: Any) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = cancer
    # log1p of the negative synthetic rows gives NaN, which LogisticRegression refuses.
    model = make_pipeline(
        FunctionTransformer(np.log1p), LogisticRegression(max_iter=2000, random_state=0)
    ).fit(X, y)
    predictor = Predictor.from_estimator(model, _features(X), "classification")
    assert predictor.backend == "sklearn"
    assert predictor.note and "fails on the verification rows" in predictor.note


def test_forcing_onnx_on_a_pipeline_that_does_not_convert_is_an_error(cancer: Any) -> None:
    model = _lambda_pipeline(cancer)
    with pytest.raises(ServingError, match="cannot be served through ONNX") as info:
        Predictor.from_estimator(model, _features(cancer[0]), "classification", backend="onnx")
    assert info.value.hint and "sklearn" in info.value.hint


def test_an_unknown_backend_is_an_error(pipeline: Any, cancer: Any) -> None:
    with pytest.raises(ServingError, match="unknown predictor backend 'gpu'"):
        Predictor.from_estimator(pipeline, _features(cancer[0]), "classification", backend="gpu")


def test_a_verification_sample_of_the_wrong_width_is_an_error(pipeline: Any, cancer: Any) -> None:
    with pytest.raises(ServingError, match=r"expected \(rows, 30\)"):
        Predictor.from_estimator(
            pipeline, _features(cancer[0]), "classification", sample=np.zeros((3, 4))
        )


def test_the_onnx_predictor_pickles_as_its_bytes(pipeline: Any, cancer: Any) -> None:
    X, _ = cancer
    predictor = Predictor.from_estimator(pipeline, _features(X), "classification")
    assert isinstance(predictor, OnnxPredictor)

    copy = pickle.loads(pickle.dumps(predictor))

    rows = X.to_numpy()[:50]
    assert np.array_equal(copy.predict(rows)[0], predictor.predict(rows)[0])
    again = Predictor.from_onnx(predictor.onnx_bytes, task="classification", classes=(0, 1))
    assert np.array_equal(again.predict(rows)[0], predictor.predict(rows)[0])


def test_string_features_are_served_by_sklearn() -> None:
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        {"plan": ["a", "b", "a", "c", "b", "a"], "age": [1.0, 5.0, 2.0, 9.0, 4.0, 3.0]}
    )
    target = [0, 1, 0, 1, 1, 0]
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["plan"]), remainder="passthrough"),
        LogisticRegression(random_state=0),
    ).fit(frame, target)
    served = ServedModel.from_estimator(model, name="churn", features=features_from_frame(frame))

    assert [(f.name, f.type) for f in served.features] == [("plan", "string"), ("age", "number")]
    assert served.predictor.backend == "sklearn"
    rows = np.array([["a", 1.0], ["c", 9.0]], dtype=object)
    labels, _ = served.predictor.predict(rows)
    assert labels.tolist() == model.predict(frame.iloc[[0, 3]]).tolist()


def test_served_model_reads_features_and_task_from_the_estimator(pipeline: Any) -> None:
    served = ServedModel.from_estimator(pipeline, name="cancer", release="1.0.0", generation=3)

    assert len(served.features) == 30
    assert served.features[0] == Feature("mean radius", "number")
    assert served.task == "classification"
    assert served.version == "1.0.0+3"
    assert served.describe()["output"] == {
        "kind": "label",
        "classes": [0, 1],
        "probabilities": True,
    }


def test_a_feature_count_that_does_not_match_the_estimator_is_an_error(pipeline: Any) -> None:
    with pytest.raises(ServingError, match="takes 30 features but 2 were declared"):
        ServedModel.from_estimator(pipeline, name="cancer", features=["a", "b"])


def test_an_unknown_feature_type_is_an_error() -> None:
    with pytest.raises(ServingError, match="unknown type 'float'"):
        Feature("x", "float")
