"""Crash points for testing that multi-step commands survive a kill at every step.

`checkpoint("release:registered")` does nothing unless the environment variable
`MLCYCLE_KILL_AT` names that point; then the process kills itself with SIGKILL
right there, as a power cut or an OOM kill would, without running any cleanup.
Tests set the variable for a subprocess and check what the crash left behind.
"""

from __future__ import annotations

import os
import signal

KILL_AT_VARIABLE = "MLCYCLE_KILL_AT"


def checkpoint(name: str) -> None:
    """Die by SIGKILL here when `MLCYCLE_KILL_AT` equals `name`; otherwise nothing."""
    if os.environ.get(KILL_AT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
