"""The CLI skeleton: version, help, the schema command and the error funnel."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from mlcycle.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlcycle", *args], capture_output=True, text=True, check=False
    )


def test_version_prints_package_version() -> None:
    from mlcycle import __version__

    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mlcycle {__version__}"


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    result = run_cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["apiVersion"]["const"] == "mlcycle/v1"


def test_unknown_command_is_a_usage_error() -> None:
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert "No such command" in result.stderr
    assert "Traceback" not in result.stderr


def test_main_returns_exit_code_through_sys_exit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert "mlcycle" in capsys.readouterr().out
