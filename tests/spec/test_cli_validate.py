"""`mlcycle validate`: exit codes, the summary line, --json and --strict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.errors import SpecError
from mlcycle.spec import find_spec, load_spec, validate_file
from tests.spec.helpers import (
    DIAGNOSTIC_RE,
    FIXTURES,
    assert_clean_failure_output,
    cli,
    example_specs,
    spec_text,
    write_spec,
)

PATTERNS = ["adaptive", "open", "dual", "interactive"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_fixtures_are_valid_and_named(pattern: str) -> None:
    result = cli("validate", str(FIXTURES / pattern))
    assert result.code == 0, result.output
    assert f"lifecycle.yaml: valid — {pattern} lifecycle" in result.stdout


@pytest.mark.parametrize("path", example_specs(), ids=lambda p: p.parent.name)
def test_every_example_validates(path: Path) -> None:
    report = validate_file(path)
    assert report.ok, [d.format() for d in report.diagnostics]
    assert report.pattern is not None


def test_warnings_are_counted_in_the_summary() -> None:
    result = cli("validate", str(FIXTURES / "interactive"))
    assert result.code == 0
    assert result.stdout.strip().endswith("valid — interactive lifecycle (2 warnings)")
    warnings = [line for line in result.stderr.splitlines() if ": warning: " in line]
    assert len(warnings) == 2 and all(DIAGNOSTIC_RE.match(w) for w in warnings)


def test_default_path_is_the_current_directory(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "open" / "lifecycle.yaml", tmp_path / "lifecycle.yaml")
    result = cli("validate", cwd=tmp_path)
    assert result.code == 0
    assert result.stdout.startswith("lifecycle.yaml: valid — open lifecycle")


@pytest.mark.parametrize("verb", ["validate", "plan"])
def test_project_option_like_every_other_verb(verb: str) -> None:
    result = cli(verb, "-C", str(FIXTURES / "open"))
    assert result.code == 0, result.output
    assert "open" in result.stdout


def test_a_path_and_another_project_option_are_refused() -> None:
    result = cli("validate", str(FIXTURES / "open"), "-C", str(FIXTURES / "dual"))
    assert result.code == 2
    assert "two projects given" in result.stderr


def test_a_file_path_with_another_name(tmp_path: Path) -> None:
    path = tmp_path / "other.yml"
    shutil.copy(FIXTURES / "open" / "lifecycle.yaml", path)
    assert cli("validate", str(path)).code == 0


def test_json_shape_when_valid() -> None:
    result = cli("validate", "--json", str(FIXTURES / "interactive"))
    assert result.code == 0
    assert result.stderr == ""
    payload = json.loads(result.stdout)
    assert set(payload) == {
        "format",
        "file",
        "valid",
        "pattern",
        "classification",
        "errors",
        "warnings",
    }
    assert payload["valid"] is True
    assert payload["file"].endswith("interactive/lifecycle.yaml")
    assert payload["pattern"]["name"] == "interactive"
    assert payload["classification"] == {
        "data_access": "adhoc",
        "procurement": "interactive",
        "update": "release-forced",
        "deployment": "wrapped",
        "liaison": "joint",
    }
    assert payload["errors"] == []
    assert {w["rule"] for w in payload["warnings"]} == {
        "adhoc-data-access",
        "interactive-procurement",
    }
    for w in payload["warnings"]:
        assert set(w) == {"file", "line", "col", "severity", "message", "hint", "rule"}
        assert w["severity"] == "warning"


def test_json_when_invalid_still_prints_and_exits_2(tmp_path: Path) -> None:
    text = spec_text(deployment="dynamic") + "registry: {backend: none}\nstore: {url: 3}\n"
    write_spec(tmp_path, text)
    result = cli("validate", "--json", str(tmp_path))
    assert result.code == 2
    payload = json.loads(result.stdout)
    assert payload["valid"] is False
    # The lifecycle block is fine, so the pattern is known even though the spec is not.
    assert payload["pattern"]["name"] == "custom"
    assert payload["pattern"]["nearest"] == "adaptive"
    (error,) = payload["errors"]
    assert error["rule"] == "schema"
    assert error["message"] == "store.url must be a string (got 3)"
    assert (error["line"], error["col"]) == (text.count("\n"), 14)


def test_json_for_unparseable_yaml(tmp_path: Path) -> None:
    write_spec(tmp_path, "a: [\n")
    result = cli("validate", "--json", str(tmp_path))
    assert result.code == 2
    payload = json.loads(result.stdout)
    assert payload["pattern"] is None and payload["classification"] is None
    assert payload["errors"][0]["rule"] == "yaml"


def test_strict_turns_warnings_into_errors() -> None:
    result = cli("validate", "--strict", str(FIXTURES / "interactive"))
    assert result.code == 2
    assert_clean_failure_output(result)
    assert "invalid — 2 errors" in result.stdout
    assert ": warning: " not in result.stderr
    assert "(--strict)" in result.stderr
    payload = json.loads(
        cli("validate", "--strict", "--json", str(FIXTURES / "interactive")).stdout
    )
    assert payload["valid"] is False
    assert {e["rule"] for e in payload["errors"]} == {
        "adhoc-data-access",
        "interactive-procurement",
    }


def test_strict_passes_a_spec_without_warnings() -> None:
    assert cli("validate", "--strict", str(FIXTURES / "adaptive")).code == 0


def test_load_spec_returns_the_typed_spec_rooted_at_its_directory() -> None:
    spec = load_spec(FIXTURES / "adaptive")
    assert spec.name == "churn"
    assert spec.root == (FIXTURES / "adaptive").absolute()
    assert spec.root.is_absolute()
    assert spec.deployment.selector.kind == "thompson"


def test_load_spec_raises_with_every_diagnostic(tmp_path: Path) -> None:
    write_spec(tmp_path, spec_text(data_access="nope", liaison="solo"))
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)
    assert len(info.value.diagnostics) == 2
    assert info.value.exit_code == 2


def test_load_spec_strict_raises_on_warnings() -> None:
    load_spec(FIXTURES / "interactive")
    with pytest.raises(SpecError):
        load_spec(FIXTURES / "interactive", strict=True)


def test_find_spec_keeps_the_path_as_given() -> None:
    assert find_spec(FIXTURES / "open") == FIXTURES / "open" / "lifecycle.yaml"


def test_validate_through_a_real_process() -> None:
    # The installed entry point, end to end: exit code, streams, no traceback.
    result = subprocess.run(
        [sys.executable, "-m", "mlcycle", "validate", str(FIXTURES / "adaptive")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "valid — adaptive lifecycle" in result.stdout
    broken = subprocess.run(
        [sys.executable, "-m", "mlcycle", "validate", "/nonexistent/dir"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert broken.returncode == 2
    assert "Traceback" not in broken.stderr
    assert "error: /nonexistent/dir: no such file or directory" in broken.stderr


def test_line_100_is_printed_as_a_number(tmp_path: Path) -> None:
    # rich would turn `:100:` into an emoji unless emoji codes are off.
    write_spec(tmp_path, spec_text() + "\n" * (99 - spec_text().count("\n")) + "bogus: 1\n")
    result = cli("validate", str(tmp_path))
    assert result.code == 2
    assert "lifecycle.yaml:100:1: error: unknown key 'bogus'" in result.stderr
