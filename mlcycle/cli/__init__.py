"""The command-line interface: parse, call `mlcycle.api`, render. The only layer that prints.

`app` is the root app, which adds the command modules of `mlcycle.cli.commands`; `main`
is the one error funnel that turns known errors into messages and exit codes.
"""

from __future__ import annotations

import os
import sys

from mlcycle.cli.app import app
from mlcycle.cli.funnel import run

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `mlcycle` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--traceback" in args or os.environ.get("MLCYCLE_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--traceback"]
    sys.exit(run(app, args, debug=debug))
