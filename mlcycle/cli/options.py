"""Options several commands share, declared once so that they read the same everywhere."""

from __future__ import annotations

from typing import Any

import typer

PROJECT_HELP = "lifecycle.yaml, or the project directory holding it (default: the current one)."


def project_option() -> Any:
    """`--project/-C PATH`: which project a command works on."""
    return typer.Option(
        None, "--project", "-C", help=PROJECT_HELP, show_default=False, metavar="PATH"
    )


def json_option(what: str = "the result") -> Any:
    """`--json`: machine-readable output on stdout."""
    return typer.Option(False, "--json", help=f"Print {what} as JSON on stdout.")


__all__ = ["PROJECT_HELP", "json_option", "project_option"]
