"""Rendering helpers shared by the commands: consoles, errors, diagnostics, JSON."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from mlcycle.spec.diagnostics import Diagnostic


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 model`, `3 models`: a count with its noun in agreement."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


@cache
def stdout() -> Console:
    """The console for results."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, emoji=False)


@cache
def stderr() -> Console:
    """The console for errors, warnings and progress."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def error(message: str, *, hint: str | None = None) -> None:
    """`error: MESSAGE` in red on stderr, and a hint line when there is one."""
    from rich.markup import escape

    stderr().print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        stderr().print(f"[dim]hint: {escape(hint)}[/]")


def warning(message: str) -> None:
    """`warning: MESSAGE` in yellow on stderr."""
    from rich.markup import escape

    stderr().print(f"[bold yellow]warning:[/] {escape(message)}")


JSON_FORMAT_VERSION = 1
"""Raised when a `--json` document changes incompatibly (a field removed or retyped);
adding fields keeps it."""


def json_format(kind: str) -> str:
    """The `format` of a `--json` document of `kind`: `mlcycle/KIND@VERSION`."""
    return f"mlcycle/{kind}@{JSON_FORMAT_VERSION}"


def print_json(payload: dict[str, Any], *, kind: str) -> None:
    """Machine-readable output on stdout, nothing else on it.

    The document starts with `"format": "mlcycle/KIND@1"`, so that a program reading
    it knows what it holds and which layout (see README, "Machine-readable output").
    """
    document = {"format": json_format(kind), **payload}
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def diagnostics(items: Sequence[Diagnostic], *, console: Console | None = None) -> None:
    """Print diagnostics compiler-style, with a caret snippet on a terminal."""
    from rich.markup import escape

    out = console or stderr()
    sources: dict[str, list[str] | None] = {}
    for d in items:
        colour = "red" if d.severity == "error" else "yellow"
        out.print(
            f"[bold]{escape(d.file)}:{d.line}:{d.col}:[/] "
            f"[bold {colour}]{d.severity}:[/] {escape(d.message)}"
        )
        if out.is_terminal:
            lines = sources.setdefault(d.file, _read_lines(d.file))
            if lines is not None and 0 < d.line <= len(lines):
                text = lines[d.line - 1].rstrip("\n")
                out.print(f"  {d.line:>4} | {escape(text)}")
                out.print(f"       | {' ' * (d.col - 1)}[bold {colour}]^[/]")
        if d.hint:
            out.print(f"  [dim]hint: {escape(d.hint)}[/]")


def _read_lines(file: str) -> list[str] | None:
    try:
        return Path(file).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None


def table(
    title: str | None,
    columns: Iterable[str],
    rows: Iterable[Iterable[Any]],
    *,
    markup: bool = False,
    console: Console | None = None,
) -> None:
    """A table of rows on stdout (or `console`) that never drops a character.

    On a terminal: a rich table whose columns are each at least as wide as their
    longest word, so cells wrap between words and never inside one (rich alone folds
    `release|d` or cuts `versi…`). When even that does not fit the terminal, one
    block of `column  value` lines per row. Piped or redirected: plain, aligned rows
    at their full width, for `grep`, `cut` and logs. Cells are plain text unless
    `markup` is set; then only the caller's own markup may appear in them (escape
    any user data).
    """
    from rich.markup import escape
    from rich.text import Text

    out = console or stdout()
    headers = list(columns)
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    texts = [[Text.from_markup(c).plain if markup else c for c in row] for row in cells]
    if not out.is_terminal:
        _plain_table(out, title, headers, texts)
        return
    from rich import box
    from rich.table import Table

    # Two spaces between columns, else one when that is what lets every word fit.
    for gap in (1, 0):
        widths = _column_widths(headers, texts, out.width - (len(headers) * (1 + gap) - 1))
        if widths is not None:
            break
    else:
        _records(out, title, headers, cells, markup)
        return
    t = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,  # a rule under the header; columns apart by spaces
        show_edge=False,
        padding=(0, gap, 0, 0),
    )
    for column, width in zip(headers, widths, strict=True):
        t.add_column(column, width=width, overflow="fold")
    for row in cells:
        t.add_row(*(row if markup else [escape(c) for c in row]))
    out.print(t)


def _column_widths(headers: list[str], rows: list[list[str]], room: int) -> list[int] | None:
    """Column widths that fit in `room` characters and break no word; None if none do.

    Each column gets its longest word, then what is left goes to the columns whose
    longest cell is wider, in proportion to what they lack.
    """
    columns = [[h, *(r[i] for r in rows if i < len(r))] for i, h in enumerate(headers)]
    least = [max((len(w) for c in col for w in c.split()), default=0) or 1 for col in columns]
    most = [
        max(max((len(line) for line in c.splitlines()), default=0) for c in col) or 1
        for col in columns
    ]
    room -= sum(least)
    if room < 0:
        return None
    lack = [m - n for m, n in zip(most, least, strict=True)]
    if sum(lack) <= room:
        return most
    return [n + (room * d) // sum(lack) for n, d in zip(least, lack, strict=True)]


def _records(
    out: Console, title: str | None, headers: list[str], rows: list[list[str]], markup: bool
) -> None:
    """A table too wide for the terminal: one block of `column  value` lines per row."""
    from rich.text import Text

    width = max((len(h) for h in headers), default=0)
    if title:
        out.print(title, markup=False, highlight=False, soft_wrap=True)
    for row in rows:
        out.print()
        for header, value in zip(headers, row, strict=False):
            if header or value:
                cell = Text.from_markup(value) if markup else Text(value)
                out.print(Text(header.ljust(width) + "  ") + cell, highlight=False, soft_wrap=True)


def _plain_table(
    out: Console, title: str | None, headers: list[str], rows: list[list[str]]
) -> None:
    """Columns separated by two spaces, each as wide as its widest cell; nothing cut."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[: len(widths)]):
            widths[i] = max(widths[i], len(cell))

    def line(values: list[str]) -> str:
        padded = [v.ljust(w) for v, w in zip(values, widths, strict=False)]
        return "  ".join(padded).rstrip()

    if title:
        out.print(title, markup=False, highlight=False, soft_wrap=True)
    for values in (headers, *rows):
        out.print(line(values), markup=False, highlight=False, soft_wrap=True)
