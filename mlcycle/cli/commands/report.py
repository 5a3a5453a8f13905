"""`mlcycle report`: an HTML page of models, production metrics over time, and drift."""

from __future__ import annotations

from pathlib import Path

import typer

from mlcycle.cli import render
from mlcycle.cli.group import Commands
from mlcycle.cli.options import project_option

app = Commands()


@app.command()
def report(
    project: Path | None = project_option(),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Where to write the page (default: .mlcycle/report.html in the project).",
        show_default=False,
    ),
    window: str = typer.Option("1h", "--window", help="Width of each point on the charts."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write an HTML report: registry, production metrics per generation over time, drift."""
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    result = api.report(project, output=output, window=window)
    if as_json:
        render.print_json(result.as_dict(), kind="report")
        return
    render.stdout().print(
        f"wrote {result.path}: {result.models} served model(s), {result.windows} window(s); "
        f"open it in a browser",
        markup=False,
    )
