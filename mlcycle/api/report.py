"""`report`: one self-contained HTML page on how the lifecycle is doing.

It shows the models in the registry, the training runs (every attempt, with its
tuning candidates), the production metrics of each served
generation over time (one inline SVG chart per metric; no scripts, no network),
and data drift. Every value from the project is escaped: the page is safe to
open whatever the spec or the store hold.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlcycle.api.agents import duration_flag, production_report
from mlcycle.api.project import open_project
from mlcycle.errors import RuntimeFailure
from mlcycle.spec.patterns import derive_pattern

if TYPE_CHECKING:
    from mlcycle.agents.production import ProductionReport, WindowMetrics
    from mlcycle.registry import Entry
    from mlcycle.registry.runs import Run

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
WIDTH, HEIGHT, PAD = 720, 260, 48


@dataclass(frozen=True)
class Report:
    """The written report."""

    path: Path
    models: int
    windows: int
    metrics: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "path": str(self.path),
            "models": self.models,
            "windows": self.windows,
            "metrics": list(self.metrics),
        }


def report(
    path: str | Path | None = None, *, output: Path | None = None, window: str = "1h"
) -> Report:
    """Write the HTML report of the project at `path` to `output` (default .mlcycle/report.html)."""
    project = open_project(path)
    entries = project.registry.entries()
    current = project.registry.current()
    runs = project.registry.runs().runs()
    production = production_report(project, window=duration_flag(window, "--window"), record=False)
    page = render_html(
        title=project.spec.name,
        pattern=derive_pattern(project.spec.lifecycle).label,
        entries=entries,
        current=None if current is None else str(current.ref),
        production=production,
        runs=runs,
    )
    target = output or project.root / ".mlcycle" / "report.html"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
    except OSError as e:
        raise RuntimeFailure(f"{target}: cannot write the report: {e.strerror}") from e
    return Report(
        path=target,
        models=len(production.overall),
        windows=len(production.windows),
        metrics=production.metrics,
    )


def render_html(
    *,
    title: str,
    pattern: str,
    entries: list[Entry],
    current: str | None,
    production: ProductionReport,
    runs: Sequence[Run] = (),
) -> str:
    """The report page (see the module docstring)."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)} — mlcycle report</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:.3em .6em;text-align:right}th{background:#f4f4f4}td:first-child,"
        "th:first-child{text-align:left}.rejected{color:#b00}.current{font-weight:bold}"
        "svg{border:1px solid #ddd;background:#fff}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(pattern)}. Generated {e(_stamp())} by mlcycle.</p>",
        "<h2>Models</h2>",
        _entries_table(entries, current),
        "<h2>Training runs</h2>",
        _runs_table(runs),
        "<h2>Production metrics</h2>",
    ]
    if not production.overall:
        parts.append(
            "<p id='no-production'>No served predictions with outcomes yet: serve the model "
            "and send true outcomes to <code>/v1/feedback</code>.</p>"
        )
    else:
        parts.append(_overall_table(production))
        for metric in production.metrics:
            parts.append(f"<h3>{e(metric)} over time</h3>")
            parts.append(chart(metric, production.windows))
    if production.drift:
        parts.append("<h2>Data drift</h2>")
        parts.append(_drift_table(production))
    parts.append("</body></html>")
    return "\n".join(parts)


def chart(metric: str, windows: tuple[WindowMetrics, ...]) -> str:
    """An SVG line chart of `metric` per window, one line per model."""
    e = html.escape
    series: dict[str, list[tuple[float, float]]] = {}
    for w in windows:
        value = w.metrics.get(metric)
        if value is not None and not math.isnan(value):
            series.setdefault(w.model, []).append((w.start, value))
    if not series:
        return f"<p class='empty-chart'>No window has a value of {e(metric)} yet.</p>"
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    margin = max((y1 - y0) * 0.08, 0.01)  # keep lines off the axes
    y0, y1 = y0 - margin, y1 + margin
    span_x = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return PAD + (x - x0) / span_x * (WIDTH - 2 * PAD)

    def py(y: float) -> float:
        return HEIGHT - PAD - (y - y0) / (y1 - y0) * (HEIGHT - 2 * PAD)

    out = [
        f'<svg class="chart" data-metric="{e(metric)}" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{e(metric)} over time">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#444"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#444"/>',
        f'<text x="{PAD - 6}" y="{py(y1) + 4:.1f}" text-anchor="end" font-size="11">'
        f"{y1:.3f}</text>",
        f'<text x="{PAD - 6}" y="{py(y0) + 4:.1f}" text-anchor="end" font-size="11">'
        f"{y0:.3f}</text>",
        f'<text x="{PAD}" y="{HEIGHT - PAD + 16}" font-size="11">{e(_stamp(x0))}</text>',
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 16}" text-anchor="end" font-size="11">'
        f"{e(_stamp(x1))}</text>",
    ]
    for index, (model, points) in enumerate(sorted(series.items())):
        colour = COLOURS[index % len(COLOURS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(
            f'<polyline class="series" data-model="{e(model)}" fill="none" '
            f'stroke="{colour}" stroke-width="2" points="{coords}"/>'
        )
        for x, y in points:
            out.append(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}">'
                f"<title>{e(model)} {e(_stamp(x))}: {y:.4f}</title></circle>"
            )
        out.append(
            f'<text class="legend" x="{WIDTH - PAD + 4}" y="{PAD + 14 * index}" '
            f'font-size="11" fill="{colour}">{e(model)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _entries_table(entries: list[Entry], current: str | None) -> str:
    e = html.escape
    if not entries:
        return "<p>The registry is empty.</p>"
    names: dict[str, None] = {}
    for entry in entries:
        names.update(dict.fromkeys(entry.metrics))
    head = "".join(f"<th>{e(n)}</th>" for n in names)
    rows = []
    for entry in entries:
        ref = str(entry.ref)
        cls = "current" if ref == current else ("rejected" if not entry.is_candidate else "")
        status = entry.state.value  # the vocabulary `models` and `history` use
        cells = "".join(f"<td>{_num(entry.metrics.get(n))}</td>" for n in names)
        marker = " (current)" if ref == current else ""
        rows.append(
            f"<tr class='{cls}'><td>{e(ref)}{marker}</td><td>{e(status)}</td>"
            f"{cells}<td>{e(str(entry.data.get('rows', '')))}</td>"
            f"<td>{e(entry.created_at)}</td></tr>"
        )
    return (
        f"<table id='models'><tr><th>model</th><th>status</th>{head}<th>rows</th>"
        f"<th>created</th></tr>{''.join(rows)}</table>"
    )


def _runs_table(runs: Sequence[Run]) -> str:
    """Every training run, newest first: outcome, model, metrics, tuning candidates; a
    run that was tuned opens onto its candidates' cross-validated scores."""
    e = html.escape
    if not runs:
        return "<p id='no-runs'>No training runs recorded yet.</p>"
    names: dict[str, None] = {}
    for run in runs:
        names.update(dict.fromkeys(run.metrics))
    head = "".join(f"<th>{e(n)}</th>" for n in names)
    rows = []
    for run in reversed(runs):
        cls = {"rejected": "rejected", "failed": "rejected"}.get(run.outcome.value, "")
        cells = "".join(f"<td>{_num(run.metrics.get(n))}</td>" for n in names)
        trials = (run.tuning or {}).get("trials") or []
        detail = ""
        if trials:
            lines = "".join(
                f"<tr><td>{e(str(t.get('rank', '')))}</td>"
                f"<td>{_num(t.get('mean_score'))}</td><td>{_num(t.get('std_score'))}</td>"
                f"<td>{_num(t.get('fit_seconds'))}</td>"
                f"<td>{e(', '.join(f'{k}={v}' for k, v in (t.get('params') or {}).items()))}"
                "</td></tr>"
                for t in trials
            )
            detail = (
                f"<details><summary>{len(trials)} candidates</summary><table>"
                "<tr><th>rank</th><th>cv score</th><th>± std</th><th>fit s</th>"
                f"<th>params</th></tr>{lines}</table></details>"
            )
        why = f"<br><small>{e(run.error)}</small>" if run.error else ""
        rows.append(
            f"<tr class='{cls}'><td>{e(run.id)}</td><td>{e(run.purpose)}</td>"
            f"<td>{e(run.outcome.value)}{why}</td><td>{e(run.ref or '')}</td>{cells}"
            f"<td>{e(str(run.data.get('rows', '')))}</td><td>{detail}</td></tr>"
        )
    return (
        f"<table id='runs'><tr><th>run</th><th>by</th><th>outcome</th><th>model</th>{head}"
        f"<th>rows</th><th>tuning</th></tr>{''.join(rows)}</table>"
    )


def _overall_table(production: ProductionReport) -> str:
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in production.metrics)
    rows = "".join(
        f"<tr><td>{e(w.model)}</td><td>{w.predictions}</td><td>{w.outcomes}</td>"
        + "".join(f"<td>{_num(w.metrics.get(m))}</td>" for m in production.metrics)
        + "</tr>"
        for w in production.overall
    )
    return (
        f"<table id='production'><tr><th>model</th><th>predictions</th><th>outcomes</th>"
        f"{head}</tr>{rows}</table>"
    )


def _drift_table(production: ProductionReport) -> str:
    e = html.escape
    rows = []
    for d in production.drift:
        worst = d.worst
        top = sorted(d.psi.items(), key=lambda kv: -kv[1])[:3]
        listed = ", ".join(f"{e(k)} {v:.3f}" for k, v in top)
        rows.append(
            f"<tr><td>{e(d.model)}</td><td>{d.served_rows}</td>"
            f"<td>{_num(worst[1] if worst else None)}</td><td>{listed}</td></tr>"
        )
    return (
        "<table id='drift'><tr><th>model</th><th>served rows</th><th>largest PSI</th>"
        f"<th>features that moved most</th></tr>{''.join(rows)}</table>"
        "<p>PSI below 0.1: stable; 0.1–0.25: moderate shift; above 0.25: large shift.</p>"
    )


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}"


def _stamp(epoch: float | None = None) -> str:
    moment = dt.datetime.now(dt.UTC) if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")
