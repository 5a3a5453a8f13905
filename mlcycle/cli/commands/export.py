"""`mlcycle export`: a registry entry as an MLflow model directory or an ONNX file."""

from __future__ import annotations

from pathlib import Path

import typer

from mlcycle.cli import render
from mlcycle.cli.group import Commands
from mlcycle.cli.options import json_option, project_option

app = Commands()


@app.command()
def export(
    ref: str = typer.Argument(
        ..., help="The model: current, latest, RELEASE (its newest generation) or RELEASE/GEN."
    ),
    directory: Path = typer.Argument(
        ..., help="The directory to write (new or empty).", show_default=False
    ),
    format: str = typer.Option(
        ...,
        "--format",
        "-f",
        help="mlflow (an MLflow model directory) or onnx.",
        show_default=False,
    ),
    project: Path | None = project_option(),
    as_json: bool = json_option("what was written"),
) -> None:
    """Write a registered model in a format other tools load.

    [bold]mlflow[/]: MLmodel with the sklearn and python_function flavors (stored as skops),
    its feature schema as signature, pinned requirements and its model code; load it with
    mlflow.pyfunc.load_model or serve it with `mlflow models serve`.

    [bold]onnx[/]: the ONNX form the engine serves (model.onnx) and its feature order
    (model.json); exit 1 for a model that has none.
    """
    from rich.markup import escape

    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    result = api.export(project, ref=ref, format=format, directory=directory)
    if as_json:
        render.print_json(result.as_dict(), kind="export")
        return
    out = render.stdout()
    out.print(
        f"[green]exported[/] {escape(result.project)} {escape(result.ref)} as "
        f"[bold]{result.format}[/] to {escape(str(result.directory))} "
        f"({len(result.files)} files, {len(result.features)} features)"
    )
    if result.format == "mlflow":
        out.print(
            f"load it: mlflow.pyfunc.load_model({escape(repr(str(result.directory)))}); "
            f"serve it: mlflow models serve -m {escape(str(result.directory))}"
        )
