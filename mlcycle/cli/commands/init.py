"""`mlcycle init`: create a project from the templates of one lifecycle pattern."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlcycle.cli import render
from mlcycle.cli.group import Commands
from mlcycle.cli.progress import RichProgress

if TYPE_CHECKING:
    from mlcycle.scaffold import InitResult


class PatternChoice(StrEnum):
    """The patterns `init` has templates for."""

    INTERACTIVE = "interactive"
    OPEN = "open"
    ADAPTIVE = "adaptive"
    DUAL = "dual"


app = Commands()


@app.command()
def init(
    name: str = typer.Argument(
        ...,
        help="Project name: lowercase letters, digits, '.', '_' and '-' (used in release tags).",
        show_default=False,
    ),
    pattern: PatternChoice = typer.Option(
        PatternChoice.OPEN,
        "--pattern",
        "-p",
        help=(
            "Lifecycle pattern: [bold]interactive[/] (a model trained by hand, shipped as a "
            "file: an anti-pattern), [bold]open[/] (unattended training, releases, wrapped "
            "images), [bold]adaptive[/] (a training agent and dynamic serving), "
            "[bold]dual[/] (engineering reproduces research's specification)."
        ),
        case_sensitive=False,
    ),
    directory: Path | None = typer.Option(
        None,
        "--directory",
        "-d",
        help="Where to create the project (default ./NAME); must be new or empty.",
        show_default=False,
    ),
    no_git: bool = typer.Option(
        False, "--no-git", help="Do not create a git repository and first commit."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create a working project: lifecycle.yaml, example data, README, CI files, git repo."""
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle.api.init import init as init_api

    show_progress = not json_output and render.stderr().is_terminal
    with RichProgress(enabled=show_progress) as progress:
        result = init_api(
            name,
            pattern=pattern.value,
            directory=directory,
            git=not no_git,
            progress=progress,
        )
    if json_output:
        render.print_json(result.as_dict(), kind="init")
        return
    _print_result(result)


def _print_result(result: InitResult) -> None:
    from rich.markup import escape

    out = render.stdout()
    out.print(
        f"Created the [bold]{result.pattern}[/] project [bold]{escape(result.name)}[/] "
        f"in {escape(str(result.directory))}"
    )
    # Aligned by hand: a rich grid pads every cell to its column's width, the last
    # one too, which left trailing spaces on every line (in a terminal and piped).
    width = max((len(created.path) for created in result.files), default=0)
    for created in result.files:
        gap = " " * (width - len(created.path) + 2)
        out.print(f"  {escape(created.path)}{gap}[dim]{escape(created.about)}[/]")
    commit = result.commit
    if commit is None:
        out.print("git: no repository (--no-git)")
    else:
        out.print(
            f"git: first commit {commit.sha[:7]} on {commit.branch} by {escape(commit.author)}"
        )
        outer = result.outer_repository
        if outer is not None:
            render.warning(
                f"{result.directory} is inside the git repository {outer}: the project is a "
                f"repository of its own, which {outer} sees as one untracked directory (it "
                "never tracks a nested repository's files); to make the project part of "
                f"{outer}, remove {result.directory} and run init again with --no-git; to "
                "keep it apart, create it outside (-d DIR)"
            )
        if commit.fallback_identity:
            render.warning(
                "no git identity is configured, so the first commit is by "
                f"{commit.author}; set yours with `git config --global user.name NAME` and "
                "`git config --global user.email EMAIL` (then `git commit --amend "
                "--reset-author --no-edit` to take over this commit)"
            )
    out.print("\nNext:")
    for step in result.next_steps:
        out.print(f"  [bold]{escape(step)}[/]")
