"""What command modules build their commands with, and the lazy root group that adds them.

A command module never imports the root app: it makes its own `app = Commands()` (a typer
sub-app, typer's idiom) and declares its commands on it. `mlcycle.cli.app` lists every
command module and the commands it holds, once; `LazyGroup` imports a module only when
one of its commands runs or the root help lists them (Hatch's lazy group).
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

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


class Commands(typer.Typer):
    """A typer app whose every command is made with `_Command` (see `_Argument`).

    A command module's `app = Commands()`; groups inside a module (`models`) are
    `Commands(name=...)` too, so that their commands read the same.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("rich_markup_mode", "rich")
        super().__init__(**kwargs)

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _Command, **kwargs)


class LazyGroup(TyperGroup):
    """The root group: its commands come from the modules in `modules`, each imported on
    first use, so that `mlcycle validate` loads the spec commands and nothing else.

    Subclasses set `modules`: module path → the names of the commands it declares, in
    help order.
    """

    modules: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def list_commands(self, ctx: _click.Context) -> list[str]:
        lazy = [name for names in self.modules.values() for name in names]
        return [*super().list_commands(ctx), *lazy]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        if cmd_name not in self.commands:
            module = next((m for m, names in self.modules.items() if cmd_name in names), None)
            if module is None:
                return None
            self._load(module)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        if args and args[0] not in self.list_commands(ctx):
            # A typo: typer suggests close names from the loaded commands, so load them all.
            for module in self.modules:
                self._load(module)
        return super().resolve_command(ctx, args)

    def _load(self, module: str) -> None:
        """Add the commands `module` declares (the ones the table names for it)."""
        sub_app = importlib.import_module(module).app
        for name, command in typer.main.get_group(sub_app).commands.items():
            if name in self.modules[module]:
                self.commands[name] = command


__all__ = ["Commands", "LazyGroup"]
