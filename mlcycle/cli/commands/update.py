"""`mlcycle update`: the training agent of an autonomous lifecycle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlcycle.cli import render, views
from mlcycle.cli.funnel import Shown
from mlcycle.cli.group import Commands
from mlcycle.cli.options import json_option, project_option
from mlcycle.cli.progress import RichProgress
from mlcycle.errors import GateRejectedError

if TYPE_CHECKING:
    from mlcycle.agents.update import UpdateResult


app = Commands()


@app.command()
def update(
    project: Path | None = project_option(),
    once: bool = typer.Option(
        True, "--once/--watch", help="Check once and exit (cron, CI), or keep watching."
    ),
    interval: str = typer.Option(
        "5m", "--interval", help="--watch: time between checks, e.g. 30s, 5m, 1h."
    ),
    force: bool = typer.Option(
        False, "--force", help="Train a generation even if no trigger fired."
    ),
    as_json: bool = json_option("each result"),
) -> None:
    """Check the update triggers; when one fires, train, gate and publish the next generation.

    Says why it did or did not retrain. Exit 3 when the gate rejects the new
    generation (kept as rejected; the current one keeps serving), or when the new
    rows fail data validation against the current one's training data (nothing is
    trained or registered).
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api, mlcycle.data off it
    from mlcycle import api
    from mlcycle.data.validation import DataRejectedError

    pause = api.duration_flag(interval, "--interval")
    while True:
        try:
            with RichProgress(enabled=not as_json) as progress:
                result = api.update(project, force=force, progress=progress)
        except GateRejectedError as rejected:
            shown = False
            if not as_json:
                shown = views.show_rejection(rejected)
            elif isinstance(rejected, DataRejectedError):
                render.print_json(rejected.as_dict(), kind="data-validation")
                shown = True
            if once:
                if shown:
                    raise Shown(rejected) from rejected
                raise
            render.warning("the new generation was rejected; the current one keeps serving")
        else:
            if as_json:
                render.print_json(result.as_dict(), kind="update")
            else:
                _render(result)
        if once:
            return
        force = False
        time.sleep(pause)


def _render(result: UpdateResult) -> None:
    from rich.markup import escape

    render.table(
        f"triggers for {result.current.ref}",
        ("trigger", "fired", "why"),
        (
            (escape(c.name), "[bold red]yes[/]" if c.fired else "no", escape(c.detail))
            for c in result.checks
        ),
        markup=True,
    )
    out = render.stdout()
    if not result.retrained:
        out.print(f"no new generation: {escape(result.reason)}")
        return
    procured = result.procured
    assert procured is not None and procured.entry is not None
    training = procured.training
    out.print(
        f"trained [bold]{escape(str(procured.entry.ref))}[/] ({escape(result.reason)}) on "
        f"{training.n_rows} rows ({escape(result.data_mode)})"
        + (", warm-started" if training.warm_started else "")
    )
    if training.warm_start_note:
        out.print(f"warm start: {escape(training.warm_start_note)}")
    views.metrics_table(training.metrics, title="held-out metrics")
    if procured.gate.checks:
        views.gate_table(procured.gate.checks, comparison=procured.comparison)
    out.print(f"[green]published[/] {escape(str(procured.entry.ref))} as the current model")
    for warning in procured.warnings:
        render.warning(warning)
