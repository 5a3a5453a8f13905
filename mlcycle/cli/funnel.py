"""The one error funnel: known errors become a red message and their exit code."""

from __future__ import annotations

import sys
from typing import Any

import typer

from mlcycle.cli import render, views
from mlcycle.errors import ExitCode, GateRejectedError, MlcycleError, SpecError


class Shown(Exception):
    """A known error whose details a command has already shown (the whole gate table, the
    anomalies, the JSON result): the funnel prints its message and exits with its code,
    and does not show the details again.

    What was printed is the CLI's business, so the state lives here, not on the error.
    """

    def __init__(self, error: MlcycleError) -> None:
        super().__init__(error.message)
        self.error = error


def run(app: typer.Typer, args: list[str], *, debug: bool) -> int:
    """Run the app with `args` and return the process exit code."""
    command = typer.main.get_command(app)
    try:
        result: Any = command.main(args=args, prog_name="mlcycle", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        _print_error("interrupted")
        return ExitCode.INTERRUPTED
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:
        # Usage errors of the command line itself (unknown option, bad value):
        # typer's own message, which names the option and the fix.
        show = getattr(e, "show", None)
        if show is not None:
            show(file=sys.stderr)
        else:
            _print_error(e.message)
        return ExitCode.USAGE if e.exit_code == 2 else e.exit_code
    except Shown as e:
        if debug:
            raise
        _print_error(e.error.message, hint=e.error.hint)
        return e.error.exit_code
    except MlcycleError as e:
        if debug:
            raise
        report_error(e)
        return e.exit_code
    except Exception as e:
        if debug:
            raise
        _print_error(
            f"unexpected {type(e).__name__}: {e}",
            hint="this is a bug in mlcycle; rerun with --traceback and report it",
        )
        return ExitCode.RUNTIME
    return result if isinstance(result, int) else ExitCode.OK


def report_error(error: MlcycleError) -> None:
    """Print a known error (with its diagnostics, for spec errors) on stderr."""
    if isinstance(error, SpecError):
        render.diagnostics(error.diagnostics)
    elif isinstance(error, GateRejectedError):
        views.failures_table(error.failures)
    _print_error(error.message, hint=error.hint)


def _print_error(message: str, *, hint: str | None = None) -> None:
    render.error(message, hint=hint)
