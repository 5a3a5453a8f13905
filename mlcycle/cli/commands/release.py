"""`mlcycle release` and `mlcycle history`: releases in git and the registry."""

from __future__ import annotations

from enum import StrEnum
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
    from mlcycle.api.release import History, ReleaseResult


class Bump(StrEnum):
    """Which part of the version a release increases."""

    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"


app = Commands()


@app.command()
def release(
    project: Path | None = project_option(),
    bump: Bump | None = typer.Option(
        None,
        "--bump",
        "-b",
        help="Increase this part of the latest release's version (default: minor).",
        case_sensitive=False,
        show_default=False,
    ),
    version: str | None = typer.Option(
        None, "--version", help="Release exactly this version, e.g. 1.0.0.", show_default=False
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        help="Interactive procurement: the model trained by hand, a .skops file, an MLflow "
        "model directory, or runs:/RUN/PATH or models:/NAME/VERSION of the spec's "
        "tracking.mlflow server (default: release.model).",
        show_default=False,
    ),
    trust_pickle: bool = typer.Option(
        False,
        "--trust-pickle",
        help="Unpickle a .pkl --model file (or a pickle MLflow model): this RUNS ANY CODE "
        "the file holds. Only for a model you made yourself; skops needs no such trust.",
    ),
    push: bool = typer.Option(False, "--push", help="Push the tag to the remote."),
    remote: str | None = typer.Option(
        None,
        "--remote",
        help="The remote whose release tags count (missing ones are fetched first) and that "
        "--push pushes to. Default: the branch's upstream, else origin.",
        show_default=False,
    ),
    branch: str | None = typer.Option(
        None,
        "--branch",
        help="The branch a detached HEAD was built from (default: the CI's variables, "
        "e.g. CI_COMMIT_BRANCH, GITHUB_REF_NAME).",
        show_default=False,
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        "-n",
        help="Show the version and stages; change nothing but fetch missing release tags.",
    ),
    as_json: bool = json_option("the result"),
) -> None:
    """Release HEAD: procure the model, gate it, register it, tag NAME@vX.Y.Z.

    Unattended lifecycles train the model here, as a CI agent would; interactive
    ones take the file trained by hand. All or nothing: when any step fails, no
    tag and no registry entry are left. Exit 3 when the gate (or the reproduction
    of research's results) rejects the model.
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    try:
        with RichProgress(enabled=not (as_json or dry_run)) as progress:
            result = api.release(
                project,
                bump=bump.value if bump else None,
                version=version,
                model=model,
                push=push,
                remote=remote,
                branch=branch,
                dry_run=dry_run,
                trust_pickle=trust_pickle,
                progress=progress,
            )
    except GateRejectedError as rejected:
        if not as_json and views.show_rejection(rejected):
            raise Shown(rejected) from rejected
        raise
    if as_json:
        render.print_json(result.as_dict(), kind="release")
        return
    _render_release(result)


def _render_release(result: ReleaseResult) -> None:
    from rich.markup import escape

    out = render.stdout()
    plan = result.plan
    previous = f" (after {plan.previous})" if plan.previous else " (the first release)"
    if plan.fetched_tags:
        out.print(
            f"fetched {len(plan.fetched_tags)} release tag(s) from {escape(plan.remote)} "
            f"that this clone lacked: {escape(', '.join(plan.fetched_tags))}"
        )
    if plan.branch is not None and plan.branch_source != "git":
        out.print(f"branch {escape(plan.branch)} (from {escape(plan.branch_source or '')})")
    if result.dry_run:
        for skipped in plan.skipped:
            render.warning(skipped)
        out.print(
            f"would release [bold]{escape(plan.tag)}[/]{escape(previous)} at {plan.commit[:12]}:"
        )
        for number, stage in enumerate(plan.stages, 1):
            out.print(f"  {number}. {escape(stage)}")
        # Fetched tags are the remote's own; the version could not be right without them.
        out.print("dry run: nothing " + ("else " if plan.fetched_tags else "") + "was changed")
        return
    for warning in result.warnings:
        render.warning(warning)
    if result.metrics:
        views.metrics_table(result.metrics, title="metrics")
    if result.gate is not None and result.gate.checks:
        views.gate_table(result.gate.checks)
    if result.reproduction is not None:
        r = result.reproduction
        delta = r.max_prediction_delta
        out.print(
            f"reproduced research's results within {r.tolerance:g}: "
            f"{r.predictions_compared} predictions (largest difference "
            f"{'n/a' if delta is None else f'{delta:.2g}'}), {len(r.metrics)} metric(s)"
        )
    ref = escape(str(result.entry.ref)) if result.entry else "?"
    out.print(
        f"[green]released[/] [bold]{escape(plan.tag)}[/]{escape(previous)}: "
        f"registry {ref} ({'registered before' if plan.completes else 'current'}), "
        f"commit {plan.commit[:12]}"
        + (f", pushed to {escape(plan.remote)}" if result.pushed else "")
    )
    if result.next_step is not None:
        out.print(
            f"next: [bold]{escape(result.next_step)}[/] (until the tag is pushed, other clones "
            "see this release as incomplete)"
        )


@app.command()
def history(
    project: Path | None = project_option(),
    as_json: bool = json_option("the history"),
) -> None:
    """List the releases: version, status, stages, date, commit, author, metrics, generations."""
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    result = api.history(project)
    if as_json:
        render.print_json(result.as_dict(), kind="history")
    else:
        _render_history(result)


def _render_history(result: History) -> None:
    if not result.items:
        render.stdout().print(
            f"{result.project}: no releases yet; `mlcycle release` makes the first"
        )
        return
    metrics: dict[str, None] = {}
    for item in result.items:
        if item.first is not None:
            metrics.update(dict.fromkeys(item.first.metrics))
    rows = []
    for item in result.items:
        row = item.as_dict()
        rows.append(
            (
                "[bold green]*[/]" if item.current else "",
                item.version,
                views.state(row["status"]),
                _escape(",".join(item.stages)),
                (row["date"] or "")[:19].replace("T", " "),
                (row["commit"] or "")[:10],
                _escape(_name(row["author"])),
                *(views.number(row["metrics"].get(m)) for m in metrics),
                ",".join(map(str, row["generations"])),
            )
        )
    render.table(
        f"{result.project} releases",
        ("", "version", "status", "stages", "date", "commit", "author", *metrics, "generations"),
        rows,
        markup=True,
    )
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.registry off it
    from mlcycle.registry import State

    for item in result.items:
        if item.status is State.INCOMPLETE and item.hint:
            # With a shared registry the usual cause is another clone's release whose
            # tag is not here (not fetched, or never pushed), not an interrupted one.
            render.stderr().print(f"note: {item.version}: {item.hint}", markup=False)
    views.data_rejections(result.data_rejections)


def _name(author: str | None) -> str:
    """`Ada <ada@example.com>` as `Ada`: the table's column stays narrow (--json has both)."""
    return (author or "").split(" <", 1)[0]


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
