"""Every command and option of the CLI has help text, and every --help renders.

It walks the live command tree, so commands added later are covered too.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mlcycle.cli import app


# typer vendors its own click, so commands and parameters are recognised by what they have,
# not by click's classes.
# The root group loads its command modules lazily: ask it, as the help does, rather than
# reading `.commands`.
def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    if hasattr(command, "list_commands"):
        ctx = command.context_class(command)
        for name in sorted(command.list_commands(ctx)):
            yield from _commands(command.get_command(ctx, name), (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


def _name(path: tuple[str, ...]) -> str:
    return " ".join(("mlcycle", *path))


def test_the_tree_has_the_spec_commands() -> None:
    names = {path[-1] for path, _ in COMMANDS if path}
    assert {"schema", "validate", "plan"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[_name(p) for p, _ in COMMANDS])
def test_command_and_its_parameters_have_help(path: tuple[str, ...], command: Any) -> None:
    missing = []
    if not (command.help or command.short_help):
        missing.append(f"{_name(path)}: the command has no help")
    for param in command.params:
        kind = param.param_type_name
        if kind == "option" and not param.hidden and not param.help:
            missing.append(f"{_name(path)}: option {'/'.join(param.opts)} has no help")
        elif kind == "argument" and not getattr(param, "help", None):
            missing.append(f"{_name(path)}: argument {param.name} has no help")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[_name(p) for p, _ in COMMANDS])
def test_help_renders(path: tuple[str, ...], command: Any) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


PLACEHOLDER = re.compile(r"\{[A-Za-z_]+\}|<[a-z_]+>")


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[_name(p) for p, _ in COMMANDS])
def test_help_shows_values_in_capitals(path: tuple[str, ...], command: Any) -> None:
    """typer 0.28 printed `mlcycle init [OPTIONS] {name}`, `name <str>`, `--port <int>`."""
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert not PLACEHOLDER.findall(result.output), result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    for param in command.params:
        if param.param_type_name == "argument":
            shown = param.metavar or ""
            assert shown.isupper(), (param.name, shown)
            if param.nargs != 1:
                shown += "..."  # `mlcycle runs [IDS...]`
            assert (shown if param.required else f"[{shown}]") in usage.split(), usage


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[_name(p) for p, _ in COMMANDS])
def test_help_text_wraps_to_the_terminal(path: tuple[str, ...], command: Any) -> None:
    """At 80 columns `deploy --help` printed `... also builds the engine` then a line
    holding only `image`: each source line of a docstring was wrapped on its own."""
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if "Usage:" in line) + 1
    end = next((i for i, line in enumerate(lines) if line.lstrip().startswith("╭")), len(lines))
    text = [line.strip() for line in lines[start:end]]
    for line, following in itertools.pairwise(text):
        if line and following:
            # A greedy wrap moves a word down only when it does not fit on the line above.
            assert len(line) + 1 + len(following.split()[0]) > 76, (line, following)
