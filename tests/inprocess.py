"""Run the CLI in-process, as `python -m mlcycle` would run it, minus the interpreter.

A subprocess per CLI call costs a Python start and the import of scikit-learn (about a
second of CPU each); most tests only need what the command prints and returns. This runs
the same entry point (`mlcycle.cli.main`'s argument handling and error funnel) with the
working directory and the standard streams swapped for the call. Tests about the process
itself (signals, concurrency, servers, the console script) keep real subprocesses.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from mlcycle.cli import app
from mlcycle.cli.funnel import run


def run_in_process(argv: list[str], *, cwd: Path | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `mlcycle ARGV` run in this process from `cwd`."""
    debug = "--traceback" in argv or os.environ.get("MLCYCLE_DEBUG", "") not in ("", "0")
    args = [a for a in argv if a != "--traceback"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        code = run(app, args, debug=debug)
    return int(code), out.getvalue(), err.getvalue()
