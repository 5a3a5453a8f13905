"""The typer application and its global options; commands register from their modules."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperArgument, TyperCommand

from mlcycle import __version__

if TYPE_CHECKING:
    from typer import _click  # typer 0.28 vendors click: its Context is this one


class _Argument(TyperArgument):
    """An argument that reads the same in usage and help: `REF`, `[PATH]`.

    typer 0.28 writes a required argument as `{ref}` in the usage line and adds its
    type (`<str>`, `<path>`) in the help, which read as unfilled placeholders.
    """

    def make_metavar(self, ctx: _click.Context, *, usage: bool = False) -> str:
        name = self.metavar or (self.name or "").upper()
        if self.nargs != 1:
            name += "..."
        return f"[{name}]" if usage and not self.required else name


def _unwrap(text: str | None) -> str | None:
    """Docstring paragraphs as single lines, so that rich wraps them to the terminal.

    In rich markup mode typer keeps a docstring's line breaks, and rich then wraps each
    source line on its own: at 80 columns `engine image` became `engine` and a line
    holding only `image`. A blank line still separates paragraphs.
    """
    if not text:
        return text
    paragraphs = text.split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


class _Command(TyperCommand):
    """A command whose help names every value in capitals (`--stage STAGE`, `REF`), as
    click did, instead of typer 0.28's `{ref}` and `<str>`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = _unwrap(self.help)
        for param in self.params:
            takes_value = not getattr(param, "is_flag", False) and not getattr(param, "count", 0)
            if param.metavar is None and param.name and takes_value:
                param.metavar = param.name.upper()
            if isinstance(param, TyperArgument):
                param.__class__ = _Argument
                # Rich help prints `<TYPE>` beside an argument whose type has no metavar.
                param.type = copy.copy(param.type)
                param.type.get_metavar = lambda param, ctx: ""  # type: ignore[method-assign]


class _Typer(typer.Typer):
    """Every command made with `_Command` (see `_Argument`)."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _Command, **kwargs)


app = _Typer(
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
