"""`mlcycle promote` and `mlcycle retire`: registry operations, as GTO tags in git."""

from __future__ import annotations

from pathlib import Path

import typer

from mlcycle.cli import render
from mlcycle.cli.group import Commands
from mlcycle.cli.options import json_option, project_option

app = Commands()


@app.command()
def promote(
    ref: str = typer.Argument(
        ..., help="The model: RELEASE (its newest generation) or RELEASE/GENERATION."
    ),
    stage: str = typer.Option(
        ..., "--stage", "-s", help="The stage it enters, e.g. prod or staging.", show_default=False
    ),
    project: Path | None = project_option(),
    push: bool = typer.Option(False, "--push", help="Push the stage tag to the remote."),
    remote: str = typer.Option("origin", "--remote", help="The remote --push pushes to."),
    as_json: bool = json_option("the result"),
) -> None:
    """Put a released model in a stage: the GTO tag NAME#STAGE#N, read by `gto show` too.

    A deploy with `deployment.stage` in the spec takes the model in that stage.
    """
    from rich.markup import escape

    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    result = api.promote(project, ref=ref, stage=stage, push=push, remote=remote)
    if as_json:
        render.print_json(result.as_dict(), kind="promote")
        return
    if result.unchanged:
        render.stdout().print(
            f"{escape(result.ref)} is already in [bold]{escape(result.stage)}[/] "
            f"(tag {escape(result.tag)}): nothing to do"
        )
        return
    before = f" (was {result.previous})" if result.previous else ""
    render.stdout().print(
        f"[green]promoted[/] {escape(result.ref)} to [bold]{escape(result.stage)}[/]"
        f"{escape(before)}: tag {escape(result.tag)} on {result.commit[:12]}"
        + (" (pushed)" if result.pushed else "")
    )


@app.command()
def retire(
    ref: str = typer.Argument(
        ..., help="What to retire: RELEASE (every generation) or RELEASE/GENERATION."
    ),
    reason: str | None = typer.Option(
        None, "--reason", "-m", help="Why, kept with the retirement.", show_default=False
    ),
    project: Path | None = project_option(),
    push: bool = typer.Option(False, "--push", help="Push the retirement tag to the remote."),
    remote: str = typer.Option("origin", "--remote", help="The remote --push pushes to."),
    as_json: bool = json_option("the result"),
) -> None:
    """Retire a model: never served or selected again, kept for lineage.

    A release gets GTO's deregistration tag NAME@vX.Y.Z!#N (what `gto deprecate`
    writes); if it was current, the newest model still in service becomes current.
    """
    from rich.markup import escape

    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    result = api.retire(project, ref=ref, reason=reason, push=push, remote=remote)
    if as_json:
        render.print_json(result.as_dict(), kind="retire")
        return
    out = render.stdout()
    tag = f": tag {escape(result.tag)}" if result.tag else " (in the registry)"
    out.print(
        f"[green]retired[/] {escape(', '.join(result.refs))}{tag}"
        + (" (pushed)" if result.pushed else "")
    )
    out.print(
        f"current model: {escape(result.current)}"
        if result.current
        else "no model is current now: release one (`mlcycle release`)"
    )
    for warning in result.warnings:
        render.warning(warning)
