"""Domain views shared by commands: metrics, gate checks and registry entries as tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlcycle.cli import render

if TYPE_CHECKING:
    from mlcycle.agents.integration import Comparison
    from mlcycle.data.validation import Anomaly, DataRejection
    from mlcycle.errors import GateFailure, GateRejectedError
    from mlcycle.registry import Entry, ModelRef
    from mlcycle.registry.runs import Run
    from mlcycle.train import GateCheck
    from mlcycle.train.tuning import Trial


def number(value: float | None, digits: int = 4) -> str:
    """A metric value for humans: fixed digits, `n/a` for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def gate_table(
    checks: Sequence[GateCheck],
    *,
    title: str = "validation gate",
    comparison: Comparison | None = None,
) -> None:
    """One row per gate condition: value, threshold (and baseline), pass or by how much.

    With `comparison`, a column shows the current model's figure beside the new one's:
    on the same held-out rows, or (with a warning saying why) its registered figure.
    """
    rows = []
    for c in checks:
        threshold = number(c.threshold)
        if c.relative:
            threshold += (
                f" (baseline {number(c.baseline)})"
                if c.baseline is not None
                else (" (no current model: holds)")
            )
        verdict = "[green]pass[/]" if c.passed else f"[red]FAIL[/] by {number(c.shortfall)}"
        current = () if comparison is None else (number(comparison.metrics.get(c.metric)),)
        rows.append((c.condition, number(c.value), *current, threshold, verdict))
    columns: tuple[str, ...] = ("condition", "value", "threshold", "result")
    if comparison is not None:
        columns = ("condition", "new", comparison.ref, "threshold", "result")
        title += (
            f" (both on the same {comparison.rows} held-out rows)"
            if comparison.same_rows
            else f" ({comparison.ref}: its registered figures)"
        )
    render.table(title, columns, rows, markup=True)
    if comparison is not None and comparison.note:
        render.warning(comparison.note)


def show_rejection(error: GateRejectedError) -> bool:
    """The whole gate table of a procured model the gate rejected, on stdout; whether
    there was one to show.

    When there was, the command raises `funnel.Shown`, and the error funnel prints only
    the message (it would otherwise list the failed conditions alone, on stderr).
    """
    shown = False
    result = getattr(error, "result", None)
    if result is not None:
        gate_table(result.gate.checks, comparison=result.comparison)
        shown = True
    anomalies = getattr(error, "anomalies", None)
    if anomalies is not None:
        anomalies_table(anomalies, against=getattr(error, "against", "the current model"))
        shown = True
    return shown


def anomalies_table(anomalies: Iterable[Anomaly], *, against: str) -> None:
    """One row per data anomaly of new rows, like the gate table: what, how much, limit."""
    from rich.markup import escape

    rows = [
        (
            escape(a.condition),
            number(a.value),
            number(a.threshold),
            f"[red]FAIL[/] {escape(a.detail)}",
        )
        for a in anomalies
    ]
    render.table(
        f"data validation (against the training data of {against})",
        ("condition", "value", "threshold", "result"),
        rows,
        markup=True,
    )


def failures_table(failures: Iterable[GateFailure]) -> None:
    """The failed conditions of a rejected model, on stderr."""
    rows = [
        (
            f.condition,
            number(f.value),
            number(f.threshold),
            f"[red]FAIL[/] by {number(f.shortfall)}",
        )
        for f in failures
    ]
    render.table(
        "validation gate",
        ("condition", "value", "threshold", "result"),
        rows,
        markup=True,
        console=render.stderr(),
    )


def metrics_table(
    metrics: Mapping[str, float],
    *,
    compare: Mapping[str, float] | None = None,
    title: str | None = None,
    compare_label: str = "at training",
) -> None:
    """Metric values, optionally beside another set (e.g. the ones measured at training)."""
    if compare is None:
        render.table(title, ("metric", "value"), ((k, number(v)) for k, v in metrics.items()))
        return
    render.table(
        title,
        ("metric", "value", compare_label),
        ((k, number(v), number(compare.get(k))) for k, v in metrics.items()),
    )


def describe_window(data: Mapping[str, Any]) -> str:
    """`events (sql), seq in [10, 500), 490 rows` from a SourceInfo/entry data record."""
    parts = [f"{data.get('location', '?')} ({data.get('kind', '?')})"]
    ordinal = data.get("ordinal")
    window = data.get("window") or {}
    if ordinal:
        lower, upper = window.get("lower"), window.get("upper")
        if lower is not None or upper is not None:
            lo = "" if lower is None else lower
            hi = "" if upper is None else upper
            parts.append(f"{ordinal} in [{lo}, {hi})")
        if data.get("watermark") is not None:
            parts.append(f"up to {ordinal} {data['watermark']}")
    if data.get("rows") is not None:
        parts.append(f"{data['rows']} rows")
    if data.get("reproducible") is False:
        parts.append("not reproducible (ad-hoc dump)")
    return ", ".join(parts)


STATE_COLOURS = {
    "candidate": "cyan",
    "released": "green",
    "rejected": "red",
    "retired": "dim",
    "incomplete": "red",
    "missing": "red",
}


def state(value: str) -> str:
    """A status of `State` (models and history share them), coloured."""
    return f"[{STATE_COLOURS.get(value, 'default')}]{value}[/]"


def entries_table(
    entries: Sequence[Entry],
    current: ModelRef | None,
    metrics: Sequence[str],
    *,
    title: str | None = None,
    stages: Mapping[str, Sequence[str]] | None = None,
    states: Mapping[str, str] | None = None,
) -> None:
    """The registry as a table: one row per entry, newest last, current marked (`*`)."""
    from rich.markup import escape

    stages = stages or {}
    columns = ("", "model", "status", "stages", *metrics, "rows", "procured", "created")
    rows = []
    for e in entries:
        marker = "[bold green]*[/]" if e.ref == current else ""
        values = [number(e.metrics.get(m)) for m in metrics]
        rows.append(
            (
                marker,
                str(e.ref),
                state((states or {}).get(str(e.ref), e.state.value)),
                escape(",".join(stages.get(str(e.ref), ()))),
                *values,
                e.data.get("rows", ""),
                e.procurement.value,
                e.created_at.replace("T", " ")[:16],
            )
        )
    render.table(title, columns, rows, markup=True)


def params_text(params: Mapping[str, Any]) -> str:
    """`C=0.1 max_iter=120`: parameters by their last name (`STEP__` dropped), compact."""
    parts = []
    for name, value in params.items():
        short = name.rpartition("__")[2]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{short}={shown}")
    return " ".join(parts)


def trials_table(
    trials: Sequence[Trial], *, title: str, best: Mapping[str, Any] | None = None
) -> None:
    """Every tuning candidate: rank, cross-validated score (mean ± std), fit time, params;
    `*` marks the one chosen (`best`: its parameters; in halving's last round)."""
    from rich.markup import escape

    halving = any(t.round is not None for t in trials)
    last = max((t.round or 0 for t in trials), default=0)
    columns = ("", "rank", *(("round", "rows") if halving else ()), "cv score", "± std", "fit s")
    rows = []
    for t in trials:
        chosen = best is not None and dict(t.params) == dict(best) and (t.round or 0) == last
        rows.append(
            (
                "[bold green]*[/]" if chosen else "",
                str(t.rank),
                *((str(t.round), str(t.resources)) if halving else ()),
                number(t.mean_score),
                number(t.std_score),
                f"{t.fit_seconds:.3f}",
                escape(params_text(t.params)),
            )
        )
    render.table(title, (*columns, "params"), rows, markup=True)


def runs_table(runs: Sequence[Run], metrics: Sequence[str], *, title: str) -> None:
    """Training runs, oldest first: id, when, what ran it, outcome, model, metrics."""
    from rich.markup import escape

    # The id starts with the UTC time the run started: no separate column for it.
    columns = ("run", "by", "outcome", "model", *metrics, "tuned", "fit s")
    rows = []
    for r in runs:
        rows.append(
            (
                escape(r.id),
                escape(r.purpose),
                outcome(r.outcome.value),
                escape(r.ref or (r.release or "")),
                *(number(r.metrics.get(m)) for m in metrics),
                str(r.candidates) if r.candidates else "",
                "" if r.fit_seconds is None else f"{r.fit_seconds:.2f}",
            )
        )
    render.table(title, columns, rows, markup=True)


OUTCOME_COLOURS = {"registered": "green", "rejected": "yellow", "failed": "red"}


def outcome(value: str) -> str:
    """A run's outcome, coloured."""
    return f"[{OUTCOME_COLOURS.get(value, 'default')}]{value}[/]"


def data_rejections(rejections: Sequence[DataRejection]) -> None:
    """One line per refusal of new rows (no model holds them, so no table row does)."""
    from rich.markup import escape

    for refused in rejections:
        render.stdout().print(f"[red]rejected data[/] {escape(refused.describe())}")
