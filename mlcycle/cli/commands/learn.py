"""Commands of the learn half: train, evaluate and models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlcycle.cli import render, views
from mlcycle.cli.funnel import Shown
from mlcycle.cli.group import Commands
from mlcycle.cli.options import json_option, project_option
from mlcycle.cli.progress import RichProgress
from mlcycle.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from mlcycle.agents import ProcureResult
    from mlcycle.agents.production import Drift, ProductionReport
    from mlcycle.api.agents import ProductionCheck
    from mlcycle.api.learn import EvaluationReport, ModelDetail, ModelListing

_LOWER_HELP = "Start of the data window on the ordinal column (inclusive), e.g. 100 or 2026-01-01."
_UPPER_HELP = "End of the data window on the ordinal column (exclusive)."


app = Commands()


@app.command()
def train(
    project: Path | None = project_option(),
    lower: str | None = typer.Option(None, "--lower", help=_LOWER_HELP, show_default=False),
    upper: str | None = typer.Option(None, "--upper", help=_UPPER_HELP, show_default=False),
    discard_rejected: bool = typer.Option(
        False, "--discard-rejected", help="Do not keep a model the gate rejects in the registry."
    ),
    as_json: bool = json_option("the result"),
) -> None:
    """Fetch the data, train and evaluate the model, apply the gate, register it in `dev`.

    A development generation is never made current: `mlcycle release` does that.
    Exit status 3 when the gate rejects the model (kept as rejected, for inspection),
    or when rows newer than the current model's fail data validation (nothing trained).
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.agents, mlcycle.data off it
    from mlcycle import api
    from mlcycle.agents import ProcurementRejected
    from mlcycle.data.validation import DataRejectedError

    try:
        with RichProgress(enabled=not as_json) as progress:
            result = api.train(
                project,
                lower=lower,
                upper=upper,
                keep_rejected=not discard_rejected,
                progress=progress,
            )
    except ProcurementRejected as rejected:
        # The gate table is the point of a rejection: show it, then let the funnel exit 3.
        if as_json:
            render.print_json(rejected.result.as_dict(), kind="train")
        else:
            _render_procured(rejected.result)
        raise Shown(rejected) from rejected
    except DataRejectedError as rejected:
        # Failing data stops before training: the anomaly table is the whole story.
        if as_json:
            render.print_json(rejected.as_dict(), kind="data-validation")
            raise Shown(rejected) from rejected
        if views.show_rejection(rejected):
            raise Shown(rejected) from rejected
        raise
    if as_json:
        render.print_json(result.as_dict(), kind="train")
    else:
        _render_procured(result)


def _render_procured(result: ProcureResult) -> None:
    from rich.markup import escape

    out = render.stdout()
    training = result.training
    what = f"[bold]{escape(str(result.entry.ref))}[/]" if result.entry else "the model"
    # The window's description ends with its row count: say it once.
    window = dict(result.data.as_dict())
    if window.get("rows") is None:
        window["rows"] = training.n_rows
    out.print(f"trained {what} on {escape(views.describe_window(window))}")
    if training.tuning is not None:
        best = training.tuning.as_dict().get("best_params") or {}
        kept = ", ".join(f"{name}={value!r}" for name, value in best.items()) or "the defaults"
        out.print(f"tuning kept {escape(kept)}")
    if training.warm_start_note:
        out.print(f"warm start: {escape(training.warm_start_note)}")
    views.metrics_table(training.metrics, title=f"held-out metrics ({training.evaluation.split})")
    if result.gate.checks:
        views.gate_table(result.gate.checks, comparison=result.comparison)
    if result.entry is not None and result.gate.passed:
        out.print(
            f"[green]registered[/] {escape(str(result.entry.ref))} as a candidate; "
            "`mlcycle models` lists the registry"
        )
    if result.run is not None:
        out.print(f"run {escape(result.run.id)} recorded; `mlcycle runs` lists the runs")
    for warning in result.warnings:
        render.warning(warning)


@app.command()
def evaluate(
    ref: str | None = typer.Argument(
        None,
        help="The model: current, latest, RELEASE, RELEASE/GENERATION, dev/N "
        "(default: current, else latest).",
        show_default=False,
        metavar="REF",
    ),
    project: Path | None = project_option(),
    lower: str | None = typer.Option(None, "--lower", help=_LOWER_HELP, show_default=False),
    upper: str | None = typer.Option(None, "--upper", help=_UPPER_HELP, show_default=False),
    check: bool = typer.Option(
        False,
        "--check",
        help="Exit with status 3 when the metrics fail the spec's gate "
        "(with --production: any served model with enough outcomes).",
    ),
    production: bool = typer.Option(
        False,
        "--production",
        help="Score the served predictions against their true outcomes instead, per model.",
    ),
    window: str | None = typer.Option(
        None,
        "--window",
        help="--production: also per time window of this width, e.g. 1h.",
        show_default=False,
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="--production: only predictions of the last DURATION, e.g. 1d.",
        show_default=False,
    ),
    as_json: bool = json_option("the report"),
) -> None:
    """Score a registered model on a window of the declared data (development evaluation).

    With --production: join the logged predictions with their true outcomes and
    compute the spec's metrics per served model (and per --window), with data
    drift (PSI per feature, training data vs served inputs). The figures are kept
    in the store (table production_metrics).
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    if production:
        if ref is not None or lower is not None or upper is not None:
            raise UsageError("--production scores served models; leave out REF, --lower, --upper")
        production_report = api.evaluate_production(project, window=window, since=since)
        verdict = api.production_check(project, production_report) if check else None
        if as_json:
            document = production_report.as_dict()
            if verdict is not None:
                document["gate"] = verdict.as_dict()
            render.print_json(document, kind="production")
        else:
            _render_production(production_report)
            if verdict is not None:
                _render_production_check(verdict)
        if verdict is not None and not verdict.passed:
            raise typer.Exit(ExitCode.GATE_REJECTED)
        return
    if window is not None or since is not None:
        raise UsageError("--window and --since go with --production")
    with RichProgress(enabled=not as_json) as progress:
        report = api.evaluate(ref, project, lower=lower, upper=upper, progress=progress)
    if as_json:
        render.print_json(report.as_dict(), kind="evaluation")
    else:
        _render_evaluation(report)
    if check and not report.gate.passed:
        raise typer.Exit(ExitCode.GATE_REJECTED)


def _render_evaluation(report: EvaluationReport) -> None:
    from rich.markup import escape

    out = render.stdout()
    out.print(
        f"[bold]{escape(str(report.entry.ref))}[/] on "
        f"{escape(views.describe_window(report.data.as_dict()))}"
    )
    views.metrics_table(report.metrics, compare=report.entry.metrics)
    if report.gate.checks:
        views.gate_table(report.gate.checks)
    if report.seen_rows:
        ordinal = report.entry.data.get("ordinal")
        watermark = report.entry.data.get("watermark")
        render.warning(
            f"{report.seen_rows} of {report.data.rows} rows were in the model's training data; "
            "their scores flatter it. Evaluate on rows it has not seen "
            f"(--lower above {ordinal} {watermark}), or train with --upper to hold rows out."
        )


def _render_production_check(verdict: ProductionCheck) -> None:
    for model, result in verdict.checked:
        views.gate_table(result.checks, title=f"gate on production metrics of {model}")
    for model, metric in verdict.unmeasured:
        render.warning(f"{model}: {metric} could not be computed from its outcomes; not checked")
    if verdict.unreliable:
        render.warning(
            f"not judged (fewer than {verdict.min_outcomes} outcomes): "
            + ", ".join(verdict.unreliable)
        )
    if not verdict.checked:
        render.warning("no served model has enough outcomes to check the gate yet")


def _render_production(report: ProductionReport) -> None:
    if report.imported_outcomes:
        render.stdout().print(
            f"took {report.imported_outcomes} true outcome(s) from data.outcomes "
            "for predictions sent with keys",
            markup=False,
        )
    if not report.overall:
        render.stdout().print(
            f"{report.project}: no served predictions in the store yet; "
            "serve the model (mlcycle serve) and send outcomes to /v1/feedback"
        )
        return
    if report.pruned is not None and report.pruned.predictions:
        render.stdout().print(
            f"retention: pruned {report.pruned.predictions} prediction(s) and "
            f"{report.pruned.outcomes} outcome(s) from the store",
            markup=False,
        )
    if report.pruned is not None and report.pruned.kept_pending:
        render.warning(
            f"the store keeps {report.pruned.kept_pending} prediction(s) above "
            "store.retention.rows: they still wait for outcomes within store.retention.age"
        )
    # The column appears only when some outcome could not be scored (see the notes).
    unscorable = ("unscorable",) if report.unscorable else ()
    columns = ("model", "predictions", "outcomes", *unscorable, *report.metrics)

    def rows(items: Any) -> list[tuple[Any, ...]]:
        return [
            (
                w.model,
                w.predictions,
                w.outcomes,
                *((w.unscorable,) if unscorable else ()),
                *(views.number(w.metrics.get(m)) for m in report.metrics),
            )
            for w in items
        ]

    render.table(f"{report.project}: production metrics", columns, rows(report.overall))
    if report.windows:
        import datetime as dt

        # The series: each window's metrics and the drift of the inputs served in it.
        drifted = any(w.drift is not None for w in report.windows)
        render.table(
            "per window",
            ("start", *columns, *(("largest PSI", "feature") if drifted else ())),
            [
                (
                    dt.datetime.fromtimestamp(w.start, dt.UTC).strftime("%Y-%m-%d %H:%M"),
                    *row,
                    *((_worst_drift(w.drift)) if drifted else ()),
                )
                for w, row in zip(report.windows, rows(report.windows), strict=True)
            ],
        )
    if report.drift:
        render.table(
            "data drift (population stability index, training vs served)",
            ("model", "served rows", "largest PSI", "feature"),
            [(d.model, d.served_rows, *_worst_drift(d)) for d in report.drift],
        )
    for w in report.overall:
        for note in w.notes:
            render.warning(f"{w.model}: {note}")
    for d in report.drift:
        if d.note is not None:
            render.warning(f"{d.model}: {d.note}: drift is not judged on so few served inputs")


def _worst_drift(drift: Drift | None) -> tuple[str, str]:
    worst = drift.worst if drift is not None else None
    return (views.number(worst[1], 3), worst[0]) if worst else ("n/a", "")


# `models` lists the registry; `models show REF` shows one entry in full. A group whose
# callback lists when no subcommand follows keeps `mlcycle models [--json]` as it was.
# `Commands`, as `app`, so that `models show --help` reads `REF`, not `{ref}` and `<str>`.
models_app = Commands(
    name="models",
    help="List the registry: releases, generations, status, stages, metrics; * marks current.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode="rich",
)
app.add_typer(models_app)


@models_app.callback()
def models(
    ctx: typer.Context,
    project: Path | None = project_option(),
    as_json: bool = json_option("the registry"),
) -> None:
    """List the registry: releases, generations, status, stages, metrics; * marks current.

    `mlcycle models show REF` shows one model in full, with every tuning candidate.
    """
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    if ctx.invoked_subcommand is not None:
        return
    listing = api.models(project)
    if as_json:
        render.print_json(listing.as_dict(), kind="models")
    else:
        _render_models(listing)


def _render_models(listing: ModelListing) -> None:
    if not listing.entries:
        render.stdout().print(
            f"{listing.project}: the registry is empty; `mlcycle train` or "
            "`mlcycle release` adds models"
        )
        return
    views.entries_table(
        listing.entries,
        listing.current,
        listing.metrics,
        title=f"{listing.project} models",
        stages=listing.stages,
        states={str(e.ref): listing.state_of(e).value for e in listing.entries},
    )
    views.data_rejections(listing.data_rejections)
    for warning in listing.warnings:
        render.warning(warning)
    if listing.current is None:
        render.stdout().print("no model is current yet (a release makes one current)")


@models_app.command("show")
def models_show(
    ref: str = typer.Argument(
        ..., help="The model: RELEASE/GENERATION, RELEASE (its newest) or current."
    ),
    project: Path | None = project_option(),
    as_json: bool = json_option("the model"),
) -> None:
    """Show one model: its record, metrics, data, and every candidate tuning tried."""
    # lazy: `mlcycle --help` loads every command module; keep mlcycle.api off it
    from mlcycle import api

    detail = api.model(ref, project)
    if as_json:
        render.print_json(detail.as_dict(), kind="model")
    else:
        _render_model(detail)


def _render_model(detail: ModelDetail) -> None:
    from rich.markup import escape

    entry = detail.entry
    out = render.stdout()
    marker = ", current" if detail.current else ""
    out.print(f"[bold]{entry.project} {entry.ref}[/]: {views.state(detail.state.value)}{marker}")
    facts = [
        ("created", f"{entry.created_at} by {entry.created_by}"),
        ("stages", ", ".join(detail.stages) or "none"),
        ("data", views.describe_window(entry.data)),
        ("spec hash", (entry.spec_hash or "n/a")[:16]),
        ("git commit", (entry.git_commit or "n/a")[:12]),
        ("artifact", f"{entry.artifact.sha256[:16]}"),
    ]
    for name, value in facts:
        out.print(f"  {name}: {escape(value)}")
    views.metrics_table(entry.metrics, title="held-out metrics")
    tuning = detail.tuning
    if not tuning:
        out.print("not tuned")
        return
    best = ", ".join(f"{k}={v}" for k, v in (tuning.get("best_params") or {}).items())
    search, scoring = str(tuning.get("search")), str(tuning.get("scoring"))
    out.print(
        f"tuning: {escape(search)} search by {escape(scoring)}, "
        f"best {views.number(tuning.get('best_score'))} with {escape(best)}"
    )
    views.trials_table(
        detail.trials,
        title="tuning candidates (* chosen)",
        best=tuning.get("best_params") or {},
    )
