"""The root typer app: its global options, and the command modules it adds (`COMMANDS`)."""

from __future__ import annotations

from typing import ClassVar

import typer

from mlcycle import __version__
from mlcycle.cli.group import Commands, LazyGroup

# Every command module and the commands it declares, in help order: the one place a new
# command is added. Each module is imported when one of its commands runs.
COMMANDS: dict[str, tuple[str, ...]] = {
    "mlcycle.cli.commands.init": ("init",),
    "mlcycle.cli.commands.spec": ("schema", "validate", "plan"),
    "mlcycle.cli.commands.learn": ("train", "evaluate", "models"),
    "mlcycle.cli.commands.runs": ("runs",),
    "mlcycle.cli.commands.serving": ("serve",),
    "mlcycle.cli.commands.release": ("release", "history"),
    "mlcycle.cli.commands.stages": ("promote", "retire"),
    "mlcycle.cli.commands.registry": ("registry",),
    "mlcycle.cli.commands.export": ("export",),
    "mlcycle.cli.commands.deploy": ("deploy",),
    "mlcycle.cli.commands.update": ("update",),
    "mlcycle.cli.commands.report": ("report",),
}


class _Root(LazyGroup):
    modules: ClassVar[dict[str, tuple[str, ...]]] = COMMANDS


app = Commands(
    name="mlcycle",
    cls=_Root,
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
