"""The stranger's mlcycle: this checkout's wheel on a local package index, in a fresh venv.

Built and installed once for the whole run (`tests/once.py`, pytest-xdist's workers
included) for every test that needs mlcycle as a user gets it (test_from_wheel,
test_generated_ci); each worker serves the index itself.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mlcycle
from tests.once import made_once


@pytest.fixture(scope="session")
def package_index(tmp_path_factory: pytest.TempPathFactory, mlcycle_wheel: Path) -> Iterator[str]:
    """A PEP 503 'simple' index on 127.0.0.1 serving this checkout's wheel."""
    root = tmp_path_factory.mktemp("index")
    (root / "files").mkdir()
    wheel = Path(shutil.copy2(mlcycle_wheel, root / "files"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    project = root / "simple" / "mlcycle-cli"
    project.mkdir(parents=True)
    (project / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../files/{wheel.name}#sha256={digest}">'
        f"{wheel.name}</a></body></html>\n"
    )
    (root / "simple" / "index.html").write_text('<a href="mlcycle-cli/">mlcycle-cli</a>\n')
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def stranger(
    package_index: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """A home of its own (for this worker), and a fresh venv outside the checkout with
    mlcycle-cli installed from the index (one for the run, at `HOME/venv`: tests only
    read it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_EXTRA_INDEX_URL"] = package_index
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def make(venv: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # The pip a CI runner has (actions/setup-python's is current), not the one
        # Python 3.11's ensurepip bundles: that one parses requirements with pyparsing,
        # and every `pip install "mlcycle-cli==X"` line of a generated CI job cost 2.4 s
        # of CPU there for nothing to do (1.0 s with a current pip).
        upgrade = subprocess.run(
            [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert upgrade.returncode == 0, upgrade.stderr[-3000:]
        # --no-compile: byte-compiling every module of every dependency at install is
        # two thirds of the install's CPU (about 35 of 55 s); the stranger's processes
        # compile, once, only the modules they import. Nothing else differs.
        install = subprocess.run(
            [venv / "bin" / "pip", "install", "--quiet", "--no-compile", mlcycle.requirement()],
            cwd=venv,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert install.returncode == 0, install.stderr[-3000:]

    home = tmp_path_factory.mktemp("stranger")
    venv = home / "venv"
    venv.symlink_to(made_once(tmp_path_factory, "stranger-venv", make))
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    where = subprocess.run(
        ["python", "-c", "import mlcycle; print(mlcycle.__file__)"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), where  # not this checkout
    return home, env
