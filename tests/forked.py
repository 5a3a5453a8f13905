"""Processes forked from one warm interpreter: real, concurrent processes, imports paid once.

A race test needs several processes contending at once for one lock, database or git
repository, and a crash test needs a process that dies by SIGKILL in the middle of a
write. Started with `subprocess`, each such process spends 3 to 5 s of CPU importing
scikit-learn, SciPy, pandas and skops before it reaches the step under test, and on
two cores eight racers then reach the lock one after another rather than together.

A `Zygote` is one Python process that imports those libraries once and forks one child
per command. Each child is a process of its own: its own PID, file locks, database
connections and git processes; it exits with its own code or dies by its own signal.
A batch of children is forked in one go, so racers start at the same instant.

What only a fresh interpreter shows (the console script, an import a command forgot,
start-up cost) stays with the tests that run `mlcycle` as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# What a child would otherwise import itself: what `release`, `train` and the registry
# writers of the tests load. Anything else still imports in the child, as it would.
PRELOAD = (
    "mlcycle.cli",
    "mlcycle.cli.commands",
    "mlcycle.api.release",
    "mlcycle.registry.sql",
    "mlcycle.agents.integration",
    "sklearn.pipeline",
    "sklearn.linear_model",
    "sklearn.preprocessing",
    "sklearn.compose",
    "sklearn.impute",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.datasets",
    "pandas",
    "skops.io",
    "skl2onnx",
    "onnxruntime",
    "sqlalchemy",
    "git",
    "tests.registry.conftest",
)


@dataclass(frozen=True)
class Command:
    """What one child runs: `mlcycle ARGV`, or the Python source `code` with `sys.argv[1:]
    = argv`; in `cwd`, with the environment `env` (default: the caller's, as `subprocess`
    does)."""

    argv: Sequence[str]
    cwd: Path
    code: str | None = None
    env: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Finished:
    """A child's end, as `subprocess` reports it: `returncode` is -N for signal N."""

    returncode: int
    stdout: str
    stderr: str


class Zygote:
    """One warm interpreter (started with this process's environment) that forks children."""

    def __init__(self, preload: Sequence[str] = PRELOAD) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            # No BLAS thread pool to fork across; racers on two cores gain nothing from one.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.forked", *preload],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._pending = b""
        self._scratch = Path(tempfile.mkdtemp(prefix="mlcycle-zygote-"))
        self._batches = 0
        ready = self._read()
        assert ready == {"ready": True}, ready

    def run(self, commands: Sequence[Command], timeout: float = 600) -> list[Finished]:
        """Fork one child per command at once and wait for all of them; children still
        running after `timeout` seconds are killed and the test fails."""
        self._batches += 1
        requests = []
        for i, command in enumerate(commands):
            base = self._scratch / f"{self._batches}-{i}"
            requests.append(
                {
                    "argv": [str(a) for a in command.argv],
                    "cwd": str(command.cwd),
                    "code": command.code,
                    "env": dict(os.environ if command.env is None else command.env),
                    "stdout": f"{base}.out",
                    "stderr": f"{base}.err",
                }
            )
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps(requests) + "\n")
        self._proc.stdin.flush()
        pids = self._read()["pids"]
        try:
            codes = self._read(timeout)["returncodes"]
        except TimeoutError:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self._read()
            raise AssertionError(
                f"forked commands still running after {timeout} s were killed: {commands}"
            ) from None
        return [
            Finished(
                code,
                Path(request["stdout"]).read_text(encoding="utf-8"),
                Path(request["stderr"]).read_text(encoding="utf-8"),
            )
            for code, request in zip(codes, requests, strict=True)
        ]

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=60)
        for path in self._scratch.iterdir():
            path.unlink()
        self._scratch.rmdir()

    def _read(self, timeout: float | None = None) -> Any:
        """The zygote's next line, as JSON; TimeoutError when none comes in `timeout` s.

        Read from the file descriptor itself, through a buffer of our own: a buffered
        file object could hold the next line already read, where `select` cannot see it.
        """
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the zygote ended (exit code {self._proc.wait()})")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return json.loads(line)


# --- the zygote's side -----------------------------------------------------------------


def _child(request: dict[str, Any]) -> None:
    """In a forked child: become the command, run it, and never return."""
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        if request["code"] is None:
            sys.argv = ["mlcycle", *request["argv"]]
            from mlcycle.cli import main

            main()
            code = 0
        else:
            sys.argv = ["-c", *request["argv"]]
            exec(compile(request["code"], "<forked>", "exec"), {"__name__": "__main__"})
            code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve(preload: Sequence[str]) -> None:
    import importlib

    for module in preload:
        importlib.import_module(module)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        requests = json.loads(line)
        sys.stdout.flush()  # nothing buffered may be written again by a child
        sys.stderr.flush()
        pids = []
        for request in requests:
            pid = os.fork()
            if pid == 0:
                _child(request)
            pids.append(pid)
        print(json.dumps({"pids": pids}), flush=True)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
        print(json.dumps({"returncodes": codes}), flush=True)


if __name__ == "__main__":
    _serve(sys.argv[1:])
