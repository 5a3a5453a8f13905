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


ROW = ("0.1.0/1", "released", "2026-12-01T22:33:21Z", "0.956912")
COLUMNS = ("ref", "status", "created", "roc_auc")


def test_a_piped_table_prints_full_plain_rows() -> None:
    import io

    from rich.console import Console

    from mlcycle.cli import render

    buffer = io.StringIO()
    render.table("models", COLUMNS, [ROW], console=Console(file=buffer, width=20))
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "models"
    assert lines[1].split() == list(COLUMNS)
    assert lines[2].split() == list(ROW)  # nothing cut to `2026-12-…` at 20 columns


def test_a_narrow_terminal_folds_cells_instead_of_cutting_them() -> None:
    import io

    from rich.console import Console

    from mlcycle.cli import render

    buffer = io.StringIO()
    narrow = Console(file=buffer, width=30, force_terminal=True, color_system=None)
    render.table("models", COLUMNS, [ROW], console=narrow)
    text = buffer.getvalue()
    assert "…" not in text
    # Each column's pieces, read top to bottom, give back the whole header and cell.
    for bar, wanted in (("┃", COLUMNS), ("│", ROW)):
        lines = [line for line in text.splitlines() if line.startswith(bar)]
        pieces = [[part.strip() for part in line.split(bar)[1:-1]] for line in lines]
        assert ["".join(column) for column in zip(*pieces, strict=True)] == list(wanted)
