"""The spec's tuning section (issue 13, item 6): distributions and successive halving
are shaped by the schema and checked by `validate`, each problem at FILE:LINE:COL."""

from __future__ import annotations

from pathlib import Path

from mlcycle.spec import load_spec, validate_file
from mlcycle.spec.model import Distribution, DistributionKind
from tests.spec.helpers import assert_clean_failure_output, cli, spec_text, write_spec

BODY = """\
data:
  source: {{path: d.csv, ordinal: ts}}
  label: y
  outcomes: {{path: o.csv, key: id, outcome: y}}
model:
  pipeline: [sklearn.preprocessing.StandardScaler, sklearn.linear_model.LogisticRegression]
  tuning:
{tuning}
evaluation:
  gate: ["accuracy >= 0.5"]
"""


def write(tmp_path: Path, tuning: str) -> Path:
    (tmp_path / "d.csv").write_text("ts,x,y\n1,0.5,1\n")
    (tmp_path / "o.csv").write_text("id,y\n")
    return write_spec(tmp_path, spec_text(BODY.format(tuning=tuning)))


def test_distributions_and_halving_load_as_typed_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "    search: halving\n"
        "    factor: 2\n"
        "    iterations: 8\n"
        "    params:\n"
        "      logisticregression__C: {distribution: log-uniform, low: 0.001, high: 100}\n"
        "      logisticregression__max_iter: {distribution: int, low: 50, high: 300}\n"
        "      logisticregression__tol: {distribution: uniform, low: 0.00001, high: 0.001}\n"
        "      logisticregression__fit_intercept: [true, false]",
    )
    report = validate_file(path)
    assert report.errors == (), report.errors
    tuning = load_spec(path).model.tuning
    assert tuning is not None
    assert (tuning.search, tuning.factor, tuning.iterations) == ("halving", 2, 8)
    assert tuning.params["logisticregression__C"] == Distribution(
        DistributionKind.LOG_UNIFORM, 0.001, 100.0
    )
    assert tuning.params["logisticregression__max_iter"] == Distribution(
        DistributionKind.INT, 50.0, 300.0
    )
    assert tuning.params["logisticregression__fit_intercept"] == (True, False)


def test_validate_places_each_tuning_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "    params:\n"
        "      logisticregression__C: {distribution: log-uniform, low: 0, high: 100}\n"  # line 17
        "      logisticregression__tol: {distribution: uniform, low: 2, high: 1}\n"  # line 18
        "      logisticregression__max_iter: {distribution: int, low: 1.5, high: 9}\n"  # 19
        "    factor: 2",  # line 20
    )
    result = cli("validate", str(tmp_path))
    assert result.code == 2, result.stdout
    assert_clean_failure_output(result)
    err = result.stderr
    assert f"{path}:17:" in err and "a log-uniform distribution needs low > 0" in err
    assert f"{path}:18:" in err and "low (2) must be below high (1)" in err
    assert f"{path}:19:" in err and "an int distribution needs whole numbers" in err
    assert f"{path}:20:" in err and "only successive halving uses a factor" in err
    # grid search (the default) cannot sample: said once per distribution
    assert "grid search tries listed values only" in err


def test_the_schema_names_the_distributions_it_knows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "    search: random\n"
        "    params:\n"
        "      logisticregression__C: {distribution: normal, low: 0, high: 1}",
    )
    result = cli("validate", str(tmp_path))
    assert result.code == 2
    assert_clean_failure_output(result)
    assert f"{path}:18:" in result.stderr
    assert "must be one of log-uniform, uniform, int (got 'normal')" in result.stderr
