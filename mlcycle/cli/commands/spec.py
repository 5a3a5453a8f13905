"""Commands about the spec itself: schema, validate and plan."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlcycle.cli import render
from mlcycle.cli.group import Commands
from mlcycle.cli.options import project_option
from mlcycle.errors import ExitCode, UsageError
from mlcycle.resources import schema_path

if TYPE_CHECKING:
    from mlcycle.spec import ValidationReport
    from mlcycle.spec.plan import Plan

_PATH_HELP = "lifecycle.yaml, or a directory containing one (default: the current directory)."


app = Commands()


@app.command()
def schema() -> None:
    """Print the JSON schema of lifecycle.yaml (Draft 2020-12)."""
    sys.stdout.write(schema_path().read_text(encoding="utf-8"))


@app.command()
def validate(
    path: Path | None = typer.Argument(
        None,
        help=_PATH_HELP,
        show_default=False,
        metavar="PATH",
        readable=False,  # our loader reports it, as FILE:1:1 like every spec problem
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the report as JSON on stdout (also when invalid)."
    ),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as errors."),
    no_import: bool = typer.Option(
        False,
        "--no-import",
        help="Do not look up pipeline class paths in the installed libraries (for machines "
        "without them).",
    ),
    project: Path | None = project_option(),
) -> None:
    """Check lifecycle.yaml: YAML, schema, the taxonomy's rules, and the project's files.

    Also checked without running anything: data files and model code exist, class
    paths resolve, metrics fit the task, tuning names pipeline steps. Exit status 0
    when valid (warnings allowed), 2 when invalid.
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    report = api.validate(_one_path(path, project), strict=strict, no_import=no_import)
    if as_json:
        render.print_json(report.as_dict(), kind="validation")
    else:
        _render_report(report)
    if not report.ok:
        raise typer.Exit(ExitCode.USAGE)


def _one_path(path: Path | None, project: Path | None) -> Path | None:
    """PATH and `-C PATH` name the same thing (`-C` as every other verb takes it)."""
    if path is not None and project is not None and path != project:
        raise UsageError(f"two projects given: {path} and -C {project}", hint="give one of them")
    return path if path is not None else project


def _render_report(report: ValidationReport) -> None:
    from rich.markup import escape

    render.diagnostics(report.diagnostics)
    warnings = len(report.warnings)
    counted = f"{warnings} warning{'s' if warnings != 1 else ''}"
    file = escape(str(report.file))
    if report.ok:
        label = report.pattern.label if report.pattern else "lifecycle"
        tail = f" ({counted})" if warnings else ""
        render.stdout().print(f"{file}: [bold green]valid[/] — {escape(label)}{tail}")
    else:
        errors = len(report.errors)
        counts = f"{errors} error{'s' if errors != 1 else ''}" + (
            f", {counted}" if warnings else ""
        )
        render.stdout().print(f"{file}: [bold red]invalid[/] — {counts}")


@app.command()
def plan(
    path: Path | None = typer.Argument(
        None,
        help=_PATH_HELP,
        show_default=False,
        metavar="PATH",
        readable=False,  # our loader reports it, as FILE:1:1 like every spec problem
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON on stdout."),
    project: Path | None = project_option(),
) -> None:
    """Show the stages this lifecycle runs, and which of them mlcycle carries out."""
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    result = api.plan(_one_path(path, project))
    if as_json:
        render.print_json(result.as_dict(), kind="plan")
    else:
        _render_plan(result)


def _render_plan(result: Plan) -> None:
    from rich.markup import escape
    from rich.tree import Tree

    # lazy: `mlcycle --help` loads every command module; keep mlcycle.spec off it
    from mlcycle.spec.plan import Actor

    tree = Tree(f"[bold]{escape(result.name)}[/]: {escape(result.pattern.label)}")
    for lane in result.lanes:
        branch = tree.add(f"[bold]{escape(lane.title)}[/]")
        for stage in lane.stages:
            if stage.by is Actor.MLCYCLE:
                who = f"[green]{escape(stage.command or 'mlcycle')}[/]"
            else:
                who = "[yellow]by hand[/]"
            branch.add(f"[bold]{escape(stage.title)}[/] — {who}\n{escape(stage.detail)}")
        if lane.note:
            branch.add(f"[dim]{escape(lane.note)}[/]")
    out = render.stdout()
    # Wrap long details under their stage instead of cropping them at the edge.
    out.print(tree, soft_wrap=False)
    automated = sum(1 for s in result.stages() if s.by is Actor.MLCYCLE)
    out.print(
        f"{automated} of {len(result.stages())} stages automated by mlcycle; the rest are yours."
    )
