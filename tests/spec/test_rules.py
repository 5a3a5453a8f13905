"""Each consistency rule and anti-pattern fires on a minimal spec and points at the right line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlcycle.spec import validate_file
from mlcycle.spec.rules import RULES, rule_ids
from tests.spec.helpers import (
    assert_clean_failure_output,
    cli,
    marked_lines,
    spec_text,
    write_spec,
)

DATA_LABEL_MODEL = """\
model:
  pipeline: [sklearn.linear_model.LogisticRegression]
evaluation:
  gate: ["accuracy >= 0.5"]
"""

OUTCOMES = "  outcomes: {path: o.csv, key: id, outcome: y}\n"


@dataclass(frozen=True)
class Case:
    rule: str
    body: str
    lifecycle: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return spec_text(self.body, **self.lifecycle)


ADAPTIVE = {"update": "autonomous", "deployment": "dynamic"}

CASES = [
    Case(
        "autonomous-needs-programmatic",
        "data:\n  dump: d.csv\n  label: y\n" + DATA_LABEL_MODEL,
        {**ADAPTIVE, "data_access": "adhoc  #!"},
    ),
    Case(
        "autonomous-needs-unattended",
        "data:\n  source: {path: d.csv, ordinal: ts}\n",
        {**ADAPTIVE, "procurement": "interactive  #!"},
    ),
    Case(
        "autonomous-needs-registry",
        "data:\n  source: {path: d.csv, ordinal: ts}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "registry:\n  backend: none  #!\n",
        {"update": "autonomous"},
    ),
    Case(
        "release-forced-update-settings",
        "data:\n  source: {path: d.csv, ordinal: ts}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "update:  #!\n  triggers: {every: 1d}\n",
    ),
    Case(
        "window-needs-size",
        "data:\n  source: {path: d.csv, ordinal: ts}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "update:\n  data: window  #!\n",
        ADAPTIVE,
    ),
    Case(
        "window-unused",
        "data:\n  source: {path: d.csv, ordinal: ts}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "update:\n  data: all\n  window: 100  #!\n",
        ADAPTIVE,
    ),
    Case(
        "trigger-window-unused",
        "data:\n  source: {path: d.csv, ordinal: ts}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "update:\n  triggers:\n    new_rows: 10\n    window: 1d  #!\n",
        ADAPTIVE,
    ),
    Case(
        "increment-needs-ordinal",
        "data:\n  source: {path: d.csv}  #!\n  label: y\n" + DATA_LABEL_MODEL,
        ADAPTIVE,
    ),
    Case("programmatic-needs-source", "data:  #!\n  label: y\n" + DATA_LABEL_MODEL),
    Case("dump-with-programmatic", "data:\n  dump: d.csv  #!\n  label: y\n" + DATA_LABEL_MODEL),
    Case(
        "source-with-adhoc",
        "data:\n  source: {path: d.csv}  #!\n  label: y\n" + DATA_LABEL_MODEL,
        {"data_access": "adhoc"},
    ),
    Case(
        "adhoc-needs-dump",
        "data:  #!\n  label: y\n" + DATA_LABEL_MODEL,
        {"data_access": "adhoc"},
    ),
    Case(
        "source-path-or-url",
        "data:\n  source:\n    path: d.csv\n    url: sqlite:///d.db  #!\n    table: t\n"
        "  label: y\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "source-path-or-url",
        "data:\n  source:  #!\n    ordinal: ts\n  label: y\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "source-path-or-url",
        "data:\n  source: {path: d.csv}\n  label: y\n  outcomes:  #!\n    key: id\n"
        "    outcome: y\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "source-table-or-query",
        "data:\n  source:\n    path: d.csv\n    table: t  #!\n  label: y\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "source-table-or-query",
        "data:\n  source:\n    url: sqlite:///d.db\n    table: t\n    query: select 1  #!\n"
        "  label: y\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "source-table-or-query",
        "data:\n  source:\n    url: sqlite:///d.db  #!\n  label: y\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "source-options",
        "data:\n  source:\n    url: sqlite:///d.db\n    table: t\n    format: csv  #!\n"
        "  label: y\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "source-options",
        "data:\n  source:\n    url: sqlite:///d.db\n    table: t\n    params: {a: 1}  #!\n"
        "  label: y\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "model-pipeline-xor-entrypoint",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n"
        "  pipeline: [sklearn.linear_model.LogisticRegression]\n  entrypoint: a.b:c  #!\n",
    ),
    Case(
        "model-code-paths",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n"
        "  pipeline: [sklearn.linear_model.LogisticRegression]\n"
        "  code:\n    - ../outside.py  #!\n",
    ),
    Case(
        "pipeline-step-allowed",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n  pipeline:\n"
        "    - torch.nn.Linear  #!\n",
    ),
    Case(
        "pipeline-step-resolves",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n  pipeline:\n"
        "    - sklearn.linear_model.LogisticRegresion  #!\n",
    ),
    Case(
        "entrypoint-module-exists",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n  entrypoint: nosuch:build  #!\n",
    ),
    Case(
        "metric-fits-task",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL.replace("evaluation:\n", "evaluation:\n  metrics: [acuracy]  #!\n"),
    ),
    Case(
        "tuning-names-steps",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n"
        "  pipeline: [sklearn.linear_model.LogisticRegression]\n"
        "  tuning:\n    params:\n      logistic__C: [1.0]  #!\n",
    ),
    Case(
        "step-params-exist",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n  pipeline:\n"
        "    - sklearn.linear_model.LogisticRegression:\n        max_iters: 50  #!\n",
    ),
    Case(
        "tuning-distribution",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n"
        "  pipeline: [sklearn.linear_model.LogisticRegression]\n"
        "  tuning:\n    search: random\n    params:\n"
        "      logisticregression__C: {distribution: log-uniform, low: 0, high: 1}  #!\n",
    ),
    Case(
        "file-exists",
        "data:\n  source: {path: nothere.csv}  #!\n  label: y\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "unattended-needs-model",
        "data:\n  source: {path: d.csv}\n  label: y\n",
        {"procurement": "unattended  #!"},
    ),
    Case(
        "unattended-needs-model",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:  #!\n  seed: 1\n",
    ),
    Case(
        "unattended-needs-label",
        "data:  #!\n  source: {path: d.csv}\n" + DATA_LABEL_MODEL,
    ),
    Case(
        "interactive-needs-model",
        "data:\n  dump: d.csv\n",
        {"data_access": "adhoc", "procurement": "interactive  #!"},
    ),
    Case(
        "unattended-without-gate",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n"
        "  pipeline: [sklearn.linear_model.LogisticRegression]\nevaluation:  #!\n"
        "  metrics: [accuracy]\n",
    ),
    Case(
        "time-split-needs-ordinal",
        "data:\n  source: {path: d.csv}\n  label: y\n" + DATA_LABEL_MODEL + "  split: time  #!\n",
    ),
    Case(
        "metric-not-evaluated",
        "data:\n  source: {path: d.csv}\n  label: y\nmodel:\n"
        "  pipeline: [sklearn.linear_model.LogisticRegression]\nevaluation:\n"
        "  metrics: [roc_auc]\n  gate:\n    - roc_auc >= 0.7\n    - accuracy >= 0.5  #!\n",
    ),
    Case(
        "metric-not-evaluated",
        "data:\n  source: {path: d.csv, ordinal: ts}\n  label: y\n"
        + OUTCOMES
        + "model:\n  pipeline: [sklearn.linear_model.LogisticRegression]\nevaluation:\n"
        "  metrics: [roc_auc]\n  gate: [roc_auc >= 0.7]\n"
        "update:\n  triggers:\n    metric: roc_aux < 0.6  #!\n",
        ADAPTIVE,
    ),
    Case(
        "metric-trigger-needs-feedback",
        "data:\n  source: {path: d.csv, ordinal: ts}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "update:\n  triggers:\n    metric: accuracy < 0.6  #!\n",
        ADAPTIVE,
    ),
    Case(
        "dynamic-needs-registry",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "registry:\n  backend: none  #!\n",
        {"deployment": "dynamic"},
    ),
    Case(
        "selector-needs-dynamic",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "deployment:\n  selector: ab  #!\n",
    ),
    Case(
        "selector-needs-feedback",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "deployment:\n  selector: thompson  #!\n",
        {"deployment": "dynamic"},
    ),
    Case(
        "selector-needs-feedback",
        "data:\n  dump: d.csv\n  label: y\n"
        + OUTCOMES
        + DATA_LABEL_MODEL
        + "deployment:\n  selector:\n    kind: fallback  #!\n",
        {"deployment": "dynamic", "data_access": "adhoc"},
    ),
    Case(
        "reward-fits-task",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + OUTCOMES
        + "model:\n  task: regression\n  pipeline: [sklearn.linear_model.Ridge]\n"
        + "deployment:\n  selector: thompson  #!\n",
        {"deployment": "dynamic"},
    ),
    Case(
        "reward-fits-task",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + OUTCOMES
        + "model:\n  pipeline: [sklearn.linear_model.Ridge]\n"
        + "deployment:\n  selector:\n    kind: epsilon-greedy\n"
        + "    reward: {kind: correct}  #!\n",
        {"deployment": "dynamic"},
    ),
    Case(
        "reward-fits-task",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + OUTCOMES
        + DATA_LABEL_MODEL
        + "deployment:\n  selector:\n    kind: thompson\n"
        + "    reward: {kind: error, scale: 2}  #!\n",
        {"deployment": "dynamic"},
    ),
    Case(
        "reward-fits-task",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + OUTCOMES
        + "model:\n  task: regression\n  pipeline: [sklearn.linear_model.Ridge]\n"
        + "deployment:\n  selector:\n    kind: fallback\n"
        + "    reward: {kind: error}  #!\n",
        {"deployment": "dynamic"},
    ),
    Case(
        "pinned-needs-model",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "deployment:\n  selector: pinned  #!\n",
        {"deployment": "dynamic"},
    ),
    Case(
        "ab-weights",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "deployment:\n  selector:\n    kind: ab\n    weights: [0.5, 0.3, 0.2]  #!\n",
        {"deployment": "dynamic"},
    ),
    Case(
        "ab-weights",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "deployment:\n  selector:\n    kind: ab\n    weights: [0, 0]  #!\n",
        {"deployment": "dynamic"},
    ),
    Case(
        "dual-needs-research",
        "data:\n  source: {path: d.csv}\n  label: y\n" + DATA_LABEL_MODEL,
        {"liaison": "dual  #!"},
    ),
    Case(
        "dual-needs-research",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "release:\n  research:  #!\n    data: r.csv\n",
        {"liaison": "dual"},
    ),
    Case(
        "dual-needs-programmatic",
        "data:\n  dump: d.csv\n  label: y\n"
        + DATA_LABEL_MODEL
        + "release:\n  research: {metrics: {accuracy: 0.9}}\n",
        {"liaison": "dual", "data_access": "adhoc  #!"},
    ),
    Case(
        "dual-needs-unattended",
        "data:\n  source: {path: d.csv}\n"
        "release:\n  model: m.skops\n  research: {metrics: {accuracy: 0.9}}\n",
        {"liaison": "dual", "procurement": "interactive  #!"},
    ),
    Case(
        "research-predictions-need-data",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "release:\n  research:\n    predictions: p.csv  #!\n",
    ),
    Case(
        "adhoc-data-access",
        "data:\n  dump: d.csv\n  label: y\n" + DATA_LABEL_MODEL,
        {"data_access": "adhoc  #!"},
    ),
    Case(
        "interactive-procurement",
        "data:\n  dump: d.csv\nrelease:\n  model: m.skops\n",
        {"data_access": "adhoc", "procurement": "interactive  #!"},
    ),
    Case(
        "literal-secret",
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "store:\n  url: postgresql://app:S3cret@db/app  #!\n",
    ),
]

SEVERITY = {r.id: r.severity for r in RULES}


# Fire only where an extra is missing: tests/test_extras.py blocks the module to see them.
ELSEWHERE = {"extra-not-installed"}


def test_every_rule_has_a_case() -> None:
    assert {c.rule for c in CASES} | ELSEWHERE == set(rule_ids())


def test_rule_ids_are_unique_and_kebab_case() -> None:
    ids = rule_ids()
    assert len(ids) == len(set(ids))
    for rule_id in ids:
        assert rule_id == rule_id.lower() and " " not in rule_id and "_" not in rule_id


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rule}-{i}" for i, c in enumerate(CASES)])
def test_rule_fires_on_the_marked_line(case: Case, tmp_path: Path) -> None:
    path = write_spec(tmp_path, case.text)
    (line,) = marked_lines(case.text)
    report = validate_file(path)
    fired = [d for d in report.diagnostics if d.rule == case.rule]
    assert fired, [d.format() for d in report.diagnostics]
    assert {d.line for d in fired} == {line}, [d.format() for d in fired]
    assert all(d.severity == SEVERITY[case.rule] for d in fired)
    assert all(d.hint for d in fired), "every rule says how to fix it"
    assert report.ok is not any(d.severity == "error" for d in report.diagnostics)


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if SEVERITY[c.rule] == "error"][:12],
    ids=lambda c: c.rule,
)
def test_rule_errors_exit_2_through_the_cli(case: Case, tmp_path: Path) -> None:
    write_spec(tmp_path, case.text)
    (line,) = marked_lines(case.text)
    result = cli("validate", str(tmp_path))
    assert result.code == 2
    assert_clean_failure_output(result)
    assert f"lifecycle.yaml:{line}:" in result.stderr
    assert "invalid" in result.stdout
    payload = json.loads(cli("validate", "--json", str(tmp_path)).stdout)
    assert case.rule in {e["rule"] for e in payload["errors"]}


def test_the_base_spec_has_no_findings(tmp_path: Path) -> None:
    for name in ("d.csv", "o.csv"):  # the files it names exist (rule file-exists)
        (tmp_path / name).touch()
    report = validate_file(write_spec(tmp_path, spec_text()))
    assert report.diagnostics == ()
    assert report.ok


def test_dump_with_programmatic_suggests_adhoc(tmp_path: Path) -> None:
    text = spec_text("data:\n  dump: d.csv\n  label: y\n" + DATA_LABEL_MODEL)
    report = validate_file(write_spec(tmp_path, text))
    (d,) = [d for d in report.errors if d.rule == "dump-with-programmatic"]
    assert d.hint is not None and "did you mean `data_access: adhoc`" in d.hint
    # The missing source is the same mistake: reported once.
    assert "programmatic-needs-source" not in {x.rule for x in report.diagnostics}


def test_metric_not_evaluated_suggests_the_close_metric(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.rule == "metric-not-evaluated" and "roc_aux" in c.body)
    report = validate_file(write_spec(tmp_path, case.text))
    (d,) = [d for d in report.errors if d.rule == "metric-not-evaluated"]
    assert d.hint == "did you mean 'roc_auc'?"


def test_ab_weights_matching_arms_are_fine(tmp_path: Path) -> None:
    text = spec_text(
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "deployment:\n  selector: {kind: ab, arms: 3, weights: [0.5, 0.3, 0.2]}\n",
        deployment="dynamic",
    )
    report = validate_file(write_spec(tmp_path, text))
    assert report.ok, [d.format() for d in report.diagnostics]


def test_adhoc_warning_says_what_is_lost_and_what_to_change(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.rule == "adhoc-data-access")
    report = validate_file(write_spec(tmp_path, case.text))
    (d,) = [d for d in report.warnings if d.rule == "adhoc-data-access"]
    for lost in ("reproducible", "autonomous updates", "true outcomes"):
        assert lost in d.message
    assert d.hint is not None and "data_access: programmatic" in d.hint
    assert report.ok  # warnings alone keep the spec valid


def test_a_literal_secret_hint_names_the_variable_of_its_key(tmp_path: Path) -> None:
    # A trial: a password in registry.url was told to go in MLCYCLE_STORE_URL.
    text = spec_text(
        "data:\n  source: {path: d.csv}\n  label: y\n"
        + DATA_LABEL_MODEL
        + "registry:\n  url: postgresql://app:S3cret@db/registry\n"
        + "store:\n  url: postgresql://app:S3cret@db/store\n"
    )
    report = validate_file(write_spec(tmp_path, text))
    hints = {
        d.message.split(" ", 1)[0]: d.hint for d in report.diagnostics if d.rule == "literal-secret"
    }
    assert set(hints) == {"registry.url", "store.url"}, hints
    assert "MLCYCLE_REGISTRY_URL" in (hints["registry.url"] or "")
    assert "MLCYCLE_STORE_URL" not in (hints["registry.url"] or "")
    assert "MLCYCLE_STORE_URL" in (hints["store.url"] or "")
