"""`validate` checks what can be checked without running the lifecycle (issue 13, finding 3):
class paths, metric names for the task, files, model code, tuning names, formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle import api
from mlcycle.spec.classpath import ALL_METRICS, check_class_path
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
