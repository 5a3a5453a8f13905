"""`validate` checks what can be checked without running the lifecycle (issue 13, finding 3):
class paths, metric names for the task, files, model code, tuning names, formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.spec.classpath import ALL_METRICS, check_class_path, constructor_params
from mlcycle.spec.code import scan
from tests.conftest import build_file_tree
from tests.spec.helpers import assert_clean_failure_output, cli, marked_lines

HEAD = """\
apiVersion: mlcycle/v1
name: shop
lifecycle:
  data_access: programmatic
  procurement: unattended
  update: release-forced
  deployment: wrapped
  liaison: joint
"""

BROKEN = (
    HEAD
    + """\
data:
  source:
    path: data.csv  #!
  label: y
model:
  code: [features.py]
  pipeline:
    - sklearn.preprocessing.StandardScaler
    - features.AddSquares
    - features.NotDefined  #!
    - torch.nn.Linear  #!
    - sklearn.linear_modl.Ridge  #!
    - sklearn.linear_model.LogisticRegresion:  #!
        max_iter: 100
  task: classification
  tuning:
    params:
      logisticregresion__C: [1.0]
      standardscalr__with_mean: [true]  #!
evaluation:
  metrics: [acuracy, r2, roc_auc]  #!
  gate: ["roc_auc >= 0.5"]
"""
)

FEATURES = "class AddSquares:\n    def fit(self, X, y=None):\n        return self\n"


def diagnostics(path: Path, **kwargs: bool) -> list[dict[str, object]]:
    report = api.validate(path, **kwargs)
    found: list[dict[str, object]] = [*report.as_dict()["errors"], *report.as_dict()["warnings"]]
    return found


def test_what_train_would_refuse_is_found_at_its_line(tmp_path: Path) -> None:
    build_file_tree(tmp_path, {"lifecycle.yaml": BROKEN, "features.py": FEATURES})
    found = diagnostics(tmp_path / "lifecycle.yaml")
    messages = "\n".join(f"{d['line']}: {d['message']} / {d.get('hint')}" for d in found)
    assert {d["line"] for d in found} == set(marked_lines(BROKEN)), messages
    for expected in (
        "data.csv does not exist",
        "'features.NotDefined' is not allowed",  # not a name model.code defines
        "'torch.nn.Linear' is not allowed",
        "there is no module 'sklearn.linear_modl' / did you mean 'sklearn.linear_model.Ridge'?",
        "has no 'LogisticRegresion' / did you mean 'sklearn.linear_model.LogisticRegression'?",
        "unknown metric 'acuracy' / did you mean 'accuracy'?",
        "metric 'r2' does not fit a classification model",
        "names the step 'standardscalr'",
    ):
        assert expected in messages, messages
    # The project's own class, the resolved library classes and roc_auc pass.
    assert "AddSquares" not in messages and "roc_auc" not in messages


def test_the_cli_reports_file_line_col_and_no_import_skips_library_lookups(
    tmp_path: Path,
) -> None:
    build_file_tree(tmp_path, {"lifecycle.yaml": BROKEN, "features.py": FEATURES})
    result = cli("validate", str(tmp_path / "lifecycle.yaml"))
    assert result.code == 2
    assert_clean_failure_output(result)
    assert "lifecycle.yaml:21:7: error: model.pipeline step 6:" in result.stderr
    assert "lifecycle.yaml:11:11: warning: data.source.path: data.csv does not exist" in (
        result.stderr
    )
    skipped = cli("validate", "--no-import", str(tmp_path / "lifecycle.yaml"))
    assert skipped.code == 2
    assert "LogisticRegresion" not in skipped.stderr and "linear_modl" not in skipped.stderr
    assert "torch.nn.Linear" in skipped.stderr  # the allowlist needs no import


def test_formats_a_build_would_refuse(tmp_path: Path) -> None:
    text = HEAD + 'deployment:\n  image:\n    base: "python:3.11-slim\\nRUN curl x"\n'
    text += 'release:\n  tag_format: "{name}-v"\n'
    build_file_tree(tmp_path, {"lifecycle.yaml": text})
    messages = [str(d["message"]) for d in diagnostics(tmp_path / "lifecycle.yaml")]
    assert any("deployment.image.base must be an image reference" in m for m in messages)
    assert any("containing '{version}'" in m for m in messages)


def test_model_code_paths_stay_inside_the_project(tmp_path: Path) -> None:
    outside = build_file_tree(tmp_path / "outside", {"far.py": "", "pkg": {"x.py": ""}})
    root = build_file_tree(
        tmp_path / "project",
        {"features.py": "", "pkg": {"__init__.py": "", "a.py": ""}, "data.txt": "", "json.py": ""},
    )
    (root / "far.py").symlink_to(outside / "far.py")
    (root / "pkg" / "b.py").symlink_to(outside / "pkg" / "x.py")
    files, problems = scan(
        root,
        [
            "features.py",
            "pkg/",
            "far.py",
            "../x.py",
            "data.txt",
            "json.py",
            "missing.py",
            "/etc/passwd",
        ],
    )
    assert [f.path for f in files] == ["features.py"]
    reasons = {p.index: p.message for p in problems}
    assert "leads outside the project" in reasons[1]  # pkg/b.py links out
    assert "leads outside the project" in reasons[2]
    assert "without '..'" in reasons[3] and "without '..'" in reasons[7]
    assert "not a Python file" in reasons[4]
    assert "shadows the installed module 'json'" in reasons[5]
    assert "does not exist" in reasons[6]


def test_class_paths_resolve_without_importing_the_library() -> None:
    code = (
        "import sys, json\n"
        "from mlcycle.spec.classpath import check_class_path as c\n"
        "ok = c('sklearn.ensemble.HistGradientBoostingClassifier') is None\n"
        "typo = c('sklearn.ensemble.RandomForestClasifier').suggestion\n"
        "print(json.dumps([ok, typo, 'sklearn' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [True, "sklearn.ensemble.RandomForestClassifier", False]
    assert check_class_path("nosuchlib.Model") is not None


def test_validate_of_a_project_imports_no_model_library(tmp_path: Path) -> None:
    build_file_tree(tmp_path, {"lifecycle.yaml": BROKEN, "features.py": FEATURES})
    code = (
        "import sys\nfrom mlcycle import api\n"
        f"api.validate({str(tmp_path / 'lifecycle.yaml')!r})\n"
        "print(sorted(m for m in ('sklearn', 'pandas', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_metric_table_is_scikit_learns() -> None:
    from sklearn.metrics import get_scorer_names

    assert set(get_scorer_names()) == ALL_METRICS


def test_plan_says_what_validate_checks(tmp_path: Path) -> None:
    build_file_tree(
        tmp_path,
        {
            "lifecycle.yaml": HEAD
            + "data:\n  source: {path: d.csv}\n  label: y\n"
            + "model:\n  pipeline: [sklearn.svm.SVC]\n"
        },
    )
    stage = next(s for s in api.plan(tmp_path).stages() if s.key == "data-source")
    assert "that its local files exist" in stage.detail


@pytest.mark.parametrize("missing", ["data/events.db"])
def test_sqlite_files_are_checked(tmp_path: Path, missing: str) -> None:
    text = HEAD + f"data:\n  source: {{url: 'sqlite:///{missing}', table: t}}\n  label: y\n"
    build_file_tree(tmp_path, {"lifecycle.yaml": text})
    messages = [str(d["message"]) for d in diagnostics(tmp_path / "lifecycle.yaml")]
    assert any(f"{missing} does not exist" in m for m in messages)


PARAMS = (
    HEAD
    + """\
data:
  source: {path: data.csv}
  label: y
model:
  code: [features.py]
  pipeline:
    - features.AddSquares:
        factr: 2  #!
    - sklearn.preprocessing.StandardScaler:
        with_mean: false
    - sklearn.linear_model.LogisticRegression:
        c: 1.0  #!
        max_iters: 100  #!
  tuning:
    params:
      logisticregression__C: [0.1, 1.0]
      logisticregression__max_iters: [50, 100]  #!
      addsquares__factor: [1, 2]
      standardscaler__zzz: [true]  #!
evaluation:
  metrics: [accuracy]
"""
)

PARAM_FEATURES = (
    "from sklearn.base import BaseEstimator, TransformerMixin\n\n"
    "class AddSquares(TransformerMixin, BaseEstimator):\n"
    "    def __init__(self, factor=2):\n"
    "        self.factor = factor\n"
)


def test_misspelled_step_and_tuning_parameters_are_found_at_their_keys(tmp_path: Path) -> None:
    build_file_tree(
        tmp_path, {"lifecycle.yaml": PARAMS, "features.py": PARAM_FEATURES, "data.csv": "y\n"}
    )
    found = [
        d for d in diagnostics(tmp_path / "lifecycle.yaml") if d["rule"] == "step-params-exist"
    ]
    messages = "\n".join(f"{d['line']}: {d['message']} / {d.get('hint')}" for d in found)
    assert sorted(d["line"] for d in found) == marked_lines(PARAMS), messages
    for expected in (
        "step 1: AddSquares has no parameter 'factr' / did you mean 'factor'?",
        "step 3: LogisticRegression has no parameter 'c' / did you mean 'C'?",
        "has no parameter 'max_iters' / did you mean 'max_iter'?",
        "'logisticregression__max_iters': LogisticRegression has no parameter 'max_iters' / "
        "did you mean 'logisticregression__max_iter'?",
        "'standardscaler__zzz': StandardScaler has no parameter 'zzz' / its parameters: "
        "copy, with_mean, with_std",
    ):
        assert expected in messages, messages

    result = cli("validate", str(tmp_path / "lifecycle.yaml"))
    assert result.code == 2
    assert_clean_failure_output(result)
    # At the key, as written: `c` of step 3 and the tuning key.
    assert (
        "lifecycle.yaml:20:9: error: model.pipeline step 3: LogisticRegression has no parameter 'c'"
        in (result.stderr)
    )
    assert "lifecycle.yaml:25:7: error: model.tuning.params: 'logisticregression__max_iters'" in (
        result.stderr
    )
    skipped = cli("validate", "--no-import", str(tmp_path / "lifecycle.yaml"))
    assert skipped.code == 0, skipped.output
    assert "has no parameter" not in skipped.output


def test_right_parameters_and_open_constructors_pass(tmp_path: Path) -> None:
    text = PARAMS.replace("factr", "factor").replace("c: 1.0", "C: 1.0")
    text = text.replace("max_iters", "max_iter").replace("zzz", "with_std")
    # A constructor taking **kwargs accepts any name: train decides.
    features = PARAM_FEATURES.replace("factor=2):", "factor=2, **kw):")
    build_file_tree(tmp_path, {"lifecycle.yaml": text, "features.py": features, "data.csv": "y\n"})
    assert [d for d in diagnostics(tmp_path / "lifecycle.yaml") if d["severity"] == "error"] == []
    build_file_tree(tmp_path, {"lifecycle.yaml": text.replace("factor: 2", "anything: 2")})
    assert [d for d in diagnostics(tmp_path / "lifecycle.yaml") if d["severity"] == "error"] == []


def test_constructor_params_are_get_params_for_every_sklearn_estimator() -> None:
    """Read from source without importing, they agree with what scikit-learn says."""
    code = (
        "import sys, json\n"
        "from mlcycle.spec.classpath import constructor_params as c\n"
        "print(json.dumps([sorted(c('sklearn.linear_model.LogisticRegression') or []),"
        " 'sklearn' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, imported = json.loads(out.stdout)
    assert "C" in names and "max_iter" in names and not imported

    import importlib

    from sklearn.utils import all_estimators

    checked = 0
    for name, cls in all_estimators():
        parts = cls.__module__.split(".")
        public = next(
            ".".join(parts[:k])
            for k in range(len(parts), 0, -1)
            if not any(p.startswith("_") for p in parts[:k])
            and hasattr(importlib.import_module(".".join(parts[:k])), name)
        )
        assert constructor_params(f"{public}.{name}") == set(cls._get_param_names()), name
        checked += 1
    assert checked > 150
