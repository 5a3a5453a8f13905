"""The CLI skeleton: version, help, the schema command and the error funnel."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
import typer

from mlcycle.cli import main
from mlcycle.cli.funnel import Shown, run
from mlcycle.errors import ExitCode, GateFailure, GateRejectedError


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


def _terminal(width: int) -> tuple[Any, Any]:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    return buffer, Console(
        file=buffer, width=width, height=25, force_terminal=True, color_system=None
    )


HISTORY = ("", "version", "status", "stages", "date", "commit", "author", "roc_auc", "generations")
HISTORY_ROWS = [
    (
        "*",
        "0.1.0",
        "released",
        "prod",
        "2026-12-01 22:33:21",
        "1a2b3c4d5e",
        "Ada Lovelace",
        "0.9569",
        "1,2,3",
    ),
    (
        "",
        "0.2.0",
        "retired",
        "",
        "2026-12-02 04:27:11",
        "5e4d3c2b1a",
        "mlcycle tests",
        "0.9612",
        "1",
    ),
]


def test_an_80_column_terminal_wraps_cells_between_words_never_inside_one() -> None:
    from mlcycle.cli import render

    buffer, console = _terminal(80)
    render.table("churn releases", HISTORY, HISTORY_ROWS, console=console)
    text = buffer.getvalue()
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "───" in text  # a table, under its header rule (not the one-block-per-row form)
    words = text.split()
    # Every word of every header and cell is there whole (rich alone printed `release|d`).
    for cell in (*HISTORY, *(c for row in HISTORY_ROWS for c in row)):
        for word in cell.split():
            assert word in words, (word, text)


def test_a_terminal_too_narrow_for_whole_words_gets_one_block_per_row() -> None:
    from mlcycle.cli import render

    buffer, console = _terminal(30)
    render.table("models", COLUMNS, [ROW], console=console)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    assert lines[0] == "models"
    assert [line.split() for line in lines[2:]] == [
        [column, value] for column, value in zip(COLUMNS, ROW, strict=True)
    ]


def test_progress_with_no_step_prints_nothing() -> None:
    """`deploy` and a refused `release` printed a blank line on stderr: the progress
    display was stopped with no bar in it."""
    import contextlib
    import io

    from mlcycle.cli.progress import RichProgress

    err = io.StringIO()
    with contextlib.redirect_stderr(err), RichProgress():
        pass
    assert err.getvalue() == ""
    with contextlib.redirect_stderr(err), RichProgress() as progress:
        progress.start("fetch the data")
    assert "fetch the data" in err.getvalue()  # a step is still shown


def _rejecting_app(*, shown: bool) -> typer.Typer:
    """An app whose one command fails the gate, having shown the table itself or not."""
    app = typer.Typer()

    @app.command()
    def train() -> None:
        error = GateRejectedError(
            failures=[GateFailure("roc_auc >= 0.99", "roc_auc", 0.9, 0.99, 0.09)]
        )
        if shown:
            print("the whole gate table")
            raise Shown(error) from error
        raise error

    @app.command()
    def other() -> None:  # a second command keeps `train` a subcommand
        """Unused."""

    return app


def test_the_funnel_lists_the_failed_conditions_a_command_did_not_show(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(_rejecting_app(shown=False), ["train"], debug=False) == ExitCode.GATE_REJECTED
    err = capsys.readouterr().err
    assert "FAIL by 0.09" in err
    assert "validation gate rejected the model: roc_auc >= 0.99" in err


def test_the_funnel_prints_only_the_message_of_a_rejection_already_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(_rejecting_app(shown=True), ["train"], debug=False) == ExitCode.GATE_REJECTED
    captured = capsys.readouterr()
    assert captured.out == "the whole gate table\n"
    assert "FAIL" not in captured.err
    assert "validation gate rejected the model: roc_auc >= 0.99" in captured.err
    assert "see the gate table above" in captured.err
