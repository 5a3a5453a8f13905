"""Optional extras (issue 11, finding 4): Parquet and PostgreSQL are extras, and a spec
that needs one that is not installed is told which one, with the pip command.

The environment of the tests has every extra; each test hides one module the way an
install without it would (`sys.modules[NAME] = None` makes its import fail and
`importlib.util.find_spec` report it missing), in this process only.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from mlcycle import extras
from mlcycle.data import load_dataset
from mlcycle.spec import load_spec, validate_file
from tests.spec.helpers import assert_clean_failure_output, cli, spec_text, write_spec

ROOT = Path(__file__).resolve().parents[1]

DATA_LABEL_MODEL = """\
model:
  pipeline: [sklearn.linear_model.LogisticRegression]
evaluation:
  gate: ["accuracy >= 0.5"]
"""


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Hide modules (and their submodules) as if they were not installed."""

    def hide(*names: str) -> None:
        for name in names:
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, loaded)
            monkeypatch.setitem(sys.modules, name, None)

    return hide


def test_the_heavy_libraries_only_some_projects_need_are_extras() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for module in ("pyarrow", "psycopg", "mlflow"):
        assert module not in core
    optional = project["optional-dependencies"]
    assert any(r.startswith("pyarrow") for r in optional["parquet"])
    assert any(r.startswith("psycopg") for r in optional["postgres"])
    assert any(r.startswith("oras") for r in optional["oci"])
    assert "oras" not in core
    # the client side only: the server's dependencies are not mlcycle's to install
    assert [r for r in optional["mlflow"] if r.startswith("mlflow")] == ["mlflow-skinny>=3.8"]
    # `make install` installs .[dev]: the tests need every extra.
    dev = " ".join(optional["dev"])
    assert "pyarrow" in dev and "psycopg" in dev and "mlflow-skinny" in dev
    # serve/transport.py subclasses uvicorn's internal protocol: a bounded range.
    (uvicorn,) = [r for r in project["dependencies"] if r.startswith("uvicorn")]
    assert "<" in uvicorn


def test_validate_names_the_parquet_extra(tmp_path: Path, without) -> None:  # type: ignore[no-untyped-def]
    without("pyarrow")
    write_spec(
        tmp_path,
        spec_text("data:\n  source:\n    path: events.parquet\n  label: y\n" + DATA_LABEL_MODEL),
    )
    report = validate_file(tmp_path / "lifecycle.yaml")
    (found,) = [d for d in report.diagnostics if d.rule == "extra-not-installed"]
    assert found.severity == "error"
    assert "needs the [parquet] extra (pyarrow is not installed)" in found.message
    assert found.hint == 'install it: pip install "mlcycle-cli[parquet]"'
    result = cli("validate", str(tmp_path))
    assert result.code == 2
    assert_clean_failure_output(result)
    assert "mlcycle-cli[parquet]" in result.stderr


def test_a_postgres_store_without_the_driver_names_the_extra(tmp_path: Path, without) -> None:  # type: ignore[no-untyped-def]
    without("psycopg")
    write_spec(
        tmp_path,
        spec_text(
            "data:\n  source:\n    path: d.csv\n  label: y\n"
            + DATA_LABEL_MODEL
            + "store:\n  url: postgresql://app@127.0.0.1:1/app\n"
        ),
    )
    result = cli("validate", str(tmp_path))
    assert result.code == 2, result.stderr
    assert_clean_failure_output(result)
    assert "store.url needs the [postgres] extra" in result.stderr
    assert 'pip install "mlcycle-cli[postgres]"' in result.stderr
    assert "this is a bug" not in result.stderr + result.stdout


def test_an_oci_artifact_store_without_oras_names_the_extra(tmp_path: Path, without) -> None:  # type: ignore[no-untyped-def]
    without("oras")
    write_spec(
        tmp_path,
        spec_text(
            "data:\n  source:\n    path: d.csv\n  label: y\n"
            + DATA_LABEL_MODEL
            + "registry:\n  artifacts: oci://127.0.0.1:5000/team/churn\n"
        ),
    )
    result = cli("validate", str(tmp_path))
    assert result.code == 2, result.stderr
    assert_clean_failure_output(result)
    assert "registry.artifacts needs the [oci] extra (oras is not installed)" in result.stderr
    assert 'pip install "mlcycle-cli[oci]"' in result.stderr


def test_the_store_itself_names_the_extra(without) -> None:  # type: ignore[no-untyped-def]
    from mlcycle.store.predictions import PredictionStore

    without("psycopg")
    with pytest.raises(extras.MissingExtraError, match=r"\[postgres\] extra") as caught:
        PredictionStore("postgresql://app:secret@127.0.0.1:1/app")
    assert caught.value.exit_code == 2
    assert "secret" not in str(caught.value)
    assert caught.value.hint == 'install it: pip install "mlcycle-cli[postgres]"'


def test_a_parquet_source_names_the_extra_when_read(tmp_path: Path, without) -> None:  # type: ignore[no-untyped-def]
    # A file whose format is told by its bytes, past what validate can see.
    pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}).to_parquet(tmp_path / "events.data")
    write_spec(
        tmp_path,
        spec_text("data:\n  source:\n    path: events.data\n  label: y\n" + DATA_LABEL_MODEL),
    )
    spec = load_spec(tmp_path / "lifecycle.yaml")
    without("pyarrow")
    with pytest.raises(extras.MissingExtraError, match=r"events.data: reading Parquet needs"):
        load_dataset(spec)


def test_validate_names_the_mlflow_extra(tmp_path: Path, without) -> None:  # type: ignore[no-untyped-def]
    without("mlflow")
    write_spec(
        tmp_path,
        spec_text(
            "data:\n  source:\n    path: d.csv\n  label: y\n"
            + DATA_LABEL_MODEL
            + "tracking:\n  mlflow: http://127.0.0.1:5005\n"
        ),
    )
    report = validate_file(tmp_path / "lifecycle.yaml")
    (found,) = [d for d in report.diagnostics if d.rule == "extra-not-installed"]
    assert "tracking.mlflow needs the [mlflow] extra (mlflow is not installed)" in found.message
    assert found.hint == 'install it: pip install "mlcycle-cli[mlflow]"'


def test_the_wheel_names_the_project_urls(mlcycle_wheel: Path) -> None:
    # A trial: the index page had no links (no [project.urls]).
    import zipfile

    with zipfile.ZipFile(mlcycle_wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    urls = dict(
        line.removeprefix("Project-URL: ").split(", ", 1)
        for line in metadata.splitlines()
        if line.startswith("Project-URL: ")
    )
    assert {"Homepage", "Documentation"} <= set(urls)
    assert all(u.startswith("https://") and "example" not in u for u in urls.values())
