"""The zygote that race and crash tests fork from reports each child as `subprocess` would."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.forked import Command, Zygote

REPORT = """
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "pid": os.getpid(),
                  "env": os.environ.get("FORKED_TEST"), "stdin": sys.stdin.read()}))
print("to stderr", file=sys.stderr)
"""


def test_children_are_separate_processes_with_their_own_cwd_env_and_output(
    zygote: Zygote, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FORKED_TEST"}
    done = zygote.run(
        [
            Command(["a", "b"], cwd=tmp_path, code=REPORT, env={**env, "FORKED_TEST": "1"}),
            Command([], cwd=Path("/"), code=REPORT, env=env),
        ]
    )
    first, second = (json.loads(d.stdout) for d in done)
    assert [d.returncode for d in done] == [0, 0]
    assert [d.stderr for d in done] == ["to stderr\n", "to stderr\n"]
    assert (first["argv"], first["cwd"], first["env"]) == (["a", "b"], str(tmp_path), "1")
    assert (second["argv"], second["cwd"], second["env"]) == ([], "/", None)
    assert first["stdin"] == second["stdin"] == ""
    assert len({first["pid"], second["pid"], os.getpid()}) == 3


def test_exit_codes_signals_and_exceptions_are_reported(zygote: Zygote, tmp_path: Path) -> None:
    done = zygote.run(
        [
            Command([], cwd=tmp_path, code="raise SystemExit(3)"),
            Command([], cwd=tmp_path, code="import os; os.kill(os.getpid(), 9)"),
            Command([], cwd=tmp_path, code="raise ValueError('boom')"),
            Command(["--version"], cwd=tmp_path),  # the CLI's own entry point
        ]
    )
    assert [d.returncode for d in done] == [3, -signal.SIGKILL, 1, 0]
    assert "ValueError: boom" in done[2].stderr
    assert done[3].stdout.startswith("mlcycle ")


def test_a_child_past_its_timeout_is_killed_and_fails_the_test(
    zygote: Zygote, tmp_path: Path
) -> None:
    sleeper = Command([], cwd=tmp_path, code="import time; time.sleep(120)")
    with pytest.raises(AssertionError, match=r"still running after 0\.5 s were killed"):
        zygote.run([sleeper, Command([], cwd=tmp_path, code="pass")], timeout=0.5)
    # The zygote has reaped them and forks the next batch as before.
    (done,) = zygote.run([Command([], cwd=tmp_path, code="print('again')")])
    assert (done.returncode, done.stdout) == (0, "again\n")
