"""`mlcycle runs`: every training run, whatever came of it, to list and compare."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mlcycle.cli import render, views
from mlcycle.cli.group import Commands
from mlcycle.cli.options import json_option, project_option

if TYPE_CHECKING:
    from mlcycle.api.learn import RunListing


app = Commands()


@app.command()
def runs(
    ids: list[str] | None = typer.Argument(
        None,
        help="Runs to compare side by side (an id or a unique prefix); all when none given.",
        show_default=False,
    ),
    project: Path | None = project_option(),
    last: int | None = typer.Option(
        None, "--last", "-n", help="Only the last N runs.", show_default=False, min=0
    ),
    as_json: bool = json_option("the runs"),
) -> None:
    """List training runs (train, release, update): outcome, model, metrics, tuning.

    Every run is recorded, registered or rejected by the gate or failed, with its
    parameters, every tuning candidate's cross-validated scores, its data window,
    spec hash and git commit. Name runs to compare their parameters and metrics.
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    listing = api.runs(project, last=last, ids=tuple(ids or ()))
    if as_json:
        render.print_json(listing.as_dict(), kind="runs")
    elif ids:
        _render_comparison(listing)
    else:
        _render_runs(listing)


def _render_runs(listing: RunListing) -> None:
    if not listing.runs:
        render.stdout().print(
            f"{listing.project}: no runs yet; `mlcycle train` or `mlcycle release` records one"
        )
        return
    shown = len(listing.runs)
    more = f" (last {shown} of {listing.total})" if shown < listing.total else ""
    views.runs_table(listing.runs, listing.metrics, title=f"{listing.project} runs{more}")
    for run in listing.runs:
        error = (run.tracking.get("mlflow") or {}).get("error")
        if error:
            render.warning(f"{run.id}: not in MLflow: {error}")


def _render_comparison(listing: RunListing) -> None:
    """One column per run, one row per fact, parameter and metric: what differs shows."""
    from rich.markup import escape

    runs = listing.runs
    facts: list[tuple[str, list[str]]] = [
        ("outcome", [views.outcome(r.outcome.value) for r in runs]),
        ("model", [escape(r.ref or "") for r in runs]),
        ("by", [escape(r.purpose) for r in runs]),
        ("rows", [str(r.data.get("rows", "")) for r in runs]),
        ("git commit", [(r.git_commit or "")[:10] for r in runs]),
        ("spec hash", [(r.spec_hash or "")[:10] for r in runs]),
        ("tuned", [str(r.candidates) for r in runs]),
    ]
    for name in listing.metrics:
        facts.append((name, [views.number(r.metrics.get(name)) for r in runs]))
    params: dict[str, None] = {}
    for r in runs:
        params.update(dict.fromkeys(r.params))
    for name in params:
        facts.append(
            (escape(name), [escape(str(r.params[name])) if name in r.params else "" for r in runs])
        )
    if any(r.error for r in runs):
        facts.append(("error", [escape(r.error or "") for r in runs]))
    render.table(
        f"{listing.project}: runs compared",
        ("", *(r.id for r in runs)),
        [(name, *values) for name, values in facts],
        markup=True,
    )
