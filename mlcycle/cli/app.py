"""The typer application and its global options; commands register from their modules."""

from __future__ import annotations

import typer

from mlcycle import __version__

app = typer.Typer(
    name="mlcycle",
    help=(
        "Declare an ML product's lifecycle in lifecycle.yaml, validate it, "
        "name its pattern, and carry it out."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlcycle {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),
    traceback: bool = typer.Option(
        False,
        "--traceback",
        help="Show the Python traceback of an unexpected error (also MLCYCLE_DEBUG=1).",
    ),
) -> None:
    """mlcycle: the lifecycle of an ML product, declared and carried out."""


# Command modules register themselves on `app` when imported.
from mlcycle.cli import commands as _commands  # noqa: E402,F401
