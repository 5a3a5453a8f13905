"""Schema errors: placed on the offending node, worded for people, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.spec import validate_file
from tests.spec.helpers import assert_clean_failure_output, cli, marked_lines, spec_text, write_spec

# jsonschema's raw wording: none of it may reach a user.
RAW_WORDS = (
    "is not valid under any of the given schemas",
    "Additional properties are not allowed",
    "does not match '^",
    "is a required property",
    "was expected",
    "has non-unique elements",
    "is not of type",
    "should be non-empty",
)


def errors_at(tmp_path: Path, text: str) -> list[tuple[int, int, str, str | None]]:
    report = validate_file(write_spec(tmp_path, text))
    assert not report.ok
    assert report.spec is None
    return [(d.line, d.col, d.message, d.hint) for d in report.errors]


def test_unknown_key_is_on_the_key_with_did_you_mean(tmp_path: Path) -> None:
    text = spec_text().replace("  label: y", "  lable: y  #!")
    ((line, col, message, hint),) = [e for e in errors_at(tmp_path, text) if "unknown" in e[2]]
    assert (line, col) == (marked_lines(text)[0], 3)
    assert message == "unknown key 'lable' in data"
    assert hint == "did you mean 'label'?"


def test_unknown_key_without_close_match_lists_allowed_keys(tmp_path: Path) -> None:
    text = spec_text() + "registry:\n  flavour: x\n"
    ((_, _, _, hint),) = errors_at(tmp_path, text)
    assert hint == "allowed keys here: backend, path, url, artifacts"


def test_bad_enum_value_is_on_the_value_with_did_you_mean(tmp_path: Path) -> None:
    text = spec_text(data_access="programatic  #!")
    ((line, col, message, hint),) = errors_at(tmp_path, text)
    assert (line, col) == (marked_lines(text)[0], 16)
    assert message == (
        "lifecycle.data_access must be one of programmatic, adhoc (got 'programatic')"
    )
    assert hint == "did you mean 'programmatic'?"


def test_case_and_separator_slips_get_did_you_mean(tmp_path: Path) -> None:
    text = spec_text(update="release_forced")
    ((_, _, _, hint),) = errors_at(tmp_path, text)
    assert hint == "did you mean 'release-forced'?"


def test_missing_required_key_is_on_the_parent_mapping(tmp_path: Path) -> None:
    text = spec_text().replace("  liaison: joint\n", "").replace("lifecycle:", "lifecycle:  #!")
    ((line, col, message, hint),) = errors_at(tmp_path, text)
    assert (line, col) == (marked_lines(text)[0], 1)
    assert message == "lifecycle is missing the required key 'liaison'"
    assert hint is not None and "joint, dual" in hint


def test_missing_top_level_key(tmp_path: Path) -> None:
    text = spec_text().replace("apiVersion: mlcycle/v1\n", "")
    ((line, col, message, hint),) = errors_at(tmp_path, text)
    assert (line, col) == (1, 1)
    assert message == "the spec is missing the required key 'apiVersion'"
    assert hint == "add `apiVersion: mlcycle/v1`"


def test_misspelled_required_key_is_reported_once(tmp_path: Path) -> None:
    text = spec_text().replace("lifecycle:", "lifecylce:")
    errors = errors_at(tmp_path, text)
    assert [(e[2], e[3]) for e in errors] == [
        ("unknown key 'lifecylce' at the top level", "did you mean 'lifecycle'?")
    ]


def test_selector_one_of_is_explained_by_the_matching_alternative(tmp_path: Path) -> None:
    text = spec_text(deployment="dynamic") + "deployment:\n  selector: thomson  #!\n"
    ((line, col, message, hint),) = errors_at(tmp_path, text)
    assert (line, col) == (marked_lines(text)[0], 13)
    assert message.startswith("deployment.selector must be one of latest, pinned, ab")
    assert hint == "did you mean 'thompson'?"


def test_selector_mapping_errors_are_inside_it(tmp_path: Path) -> None:
    text = (
        spec_text(deployment="dynamic")
        + "deployment:\n  selector:\n    kind: ab\n    arms: 40  #!\n    colour: red\n"
    )
    errors = errors_at(tmp_path, text)
    line = marked_lines(text)[0]
    assert (line, 11, "deployment.selector.arms must be at most 16 (got 40)", None) in errors
    assert any(e[0] == line + 1 and "unknown key 'colour'" in e[2] for e in errors)


def test_selector_of_the_wrong_type(tmp_path: Path) -> None:
    text = spec_text() + "deployment:\n  selector: 3\n"
    ((_, _, message, _),) = errors_at(tmp_path, text)
    assert message == "deployment.selector must be a string or a mapping (got 3)"


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        (
            "pipeline: [StandardScaler]",
            "model.pipeline[0] must be a class path such as "
            "'sklearn.preprocessing.StandardScaler' (got 'StandardScaler')",
        ),
        (
            "pipeline: [{a.b: {}, c.d: {}}]",
            "model.pipeline[0] must map one class path to its parameters (got 2 keys: a.b, c.d)",
        ),
        (
            "pipeline: [{sklearn.svm.SVC: 3}]",
            "model.pipeline[0]['sklearn.svm.SVC'] must be a mapping or empty (got 3)",
        ),
        (
            "pipeline: [{SVC: {}}]",
            "key 'SVC' in model.pipeline[0] must be a class path such as "
            "'sklearn.preprocessing.StandardScaler'",
        ),
        ("pipeline: []", "model.pipeline must not be an empty list"),
    ],
)
def test_pipeline_step_errors(tmp_path: Path, replacement: str, message: str) -> None:
    text = spec_text().replace("pipeline: [sklearn.linear_model.LogisticRegression]", replacement)
    assert [e[2] for e in errors_at(tmp_path, text)] == [message]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("name: t", "name: Bad Name", "name must be a project name"),
        ("name: t", "name: yes", "name must be a string (got true)"),
        ("label: y", "label: 3", "data.label must be a string (got 3)"),
        ("label: y", "label:", "data.label must be a string (got an empty value)"),
        ('gate: ["accuracy >= 0.5"]', 'gate: ["accuracy is good"]', "must be a condition"),
        ('gate: ["accuracy >= 0.5"]', "gate: [1]", "evaluation.gate[0] must be a string"),
        ("path: d.csv,", "path: '',", "data.source.path must not be empty"),
        ("ordinal: ts}", "ordinal: ts, url: nope}", "must be a database URL"),
        ("apiVersion: mlcycle/v1", "apiVersion: v2", "apiVersion must be 'mlcycle/v1'"),
    ],
)
def test_value_errors_are_worded_for_people(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    text = spec_text().replace(old, new, 1)
    assert text != spec_text()
    errors = errors_at(tmp_path, text)
    assert any(message in e[2] for e in errors), errors


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        # A trial: a Parquet file under url: was told only "must be a database URL".
        ("data/events.parquet", "a file (CSV or Parquet) goes under `path:`"),
        ("events.csv", "write `path: events.csv`"),
        ("data/events.db", "write `url: sqlite:///data/events.db`"),
    ],
)
def test_a_file_written_as_a_database_url_is_told_where_it_goes(
    tmp_path: Path, url: str, hint: str
) -> None:
    text = spec_text().replace("{path: d.csv, ordinal: ts}", f"{{url: {url}, ordinal: ts}}")
    ((_, _, message, said),) = errors_at(tmp_path, text)
    assert "data.source.url must be a database URL" in message
    assert said is not None and hint in said


def test_all_errors_at_once_sorted_and_never_raw(tmp_path: Path) -> None:
    text = """\
apiVersion: mlcycle/v2
name: Churn Model
lifecycle:
  data_access: programatic
  procurement: unattended
  update: autonomous
  deployment: dynamic
data:
  source: {url: nope, tabel: x}
  features: [a, a]
model:
  pipeline: [StandardScaler]
evaluation:
  test_size: 1.5
update:
  triggers: {}
deployment:
  selector: thomson
  serve: {port: "x", workers: 0}
registry:
  backend: s3
store:
"""
    write_spec(tmp_path, text)
    result = cli("validate", str(tmp_path))
    assert result.code == 2
    assert_clean_failure_output(result)
    for raw in RAW_WORDS:
        assert raw not in result.output
    lines = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 15
    positions = [tuple(map(int, line.split(":")[1:3])) for line in lines]
    assert positions == sorted(positions)
    assert "invalid — 15 errors" in result.stdout
