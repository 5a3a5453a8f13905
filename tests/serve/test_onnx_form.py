"""The ONNX form made once at release and served as it is (issue 11, finding 6).

A released model carries `model.onnx` next to `model.skops`, recorded with its
SHA-256 in entry.json; serving it loads those bytes after checking the digest and
imports neither skl2onnx nor scikit-learn (most of what an engine's start cost).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlcycle.api.serving import serve_target
from mlcycle.errors import IntegrityError
from tests.deploy.test_deploy_cli import free_port
from tests.learn.conftest import init_and_release

pytestmark = pytest.mark.slow

ENTRY = Path(".mlcycle/registry/churn/releases/0.1.0/1")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The open template, released once for this module."""
    return init_and_release(tmp_path_factory.mktemp("onnx") / "churn", "open", "--bump", "minor")


def test_a_release_stores_the_verified_onnx_form_with_its_digest(project: Path) -> None:
    entry = json.loads((project / ENTRY / "entry.json").read_text())
    onnx = entry["onnx"]
    assert onnx["file"] == "model.onnx"
    assert onnx["task"] == "classification"
    assert onnx["classes"] == [0, 1]
    assert "verified on" in onnx["note"]
    data = (project / ENTRY / "model.onnx").read_bytes()
    import hashlib

    assert onnx["sha256"] == hashlib.sha256(data).hexdigest()
    assert onnx["size"] == len(data)
    # The image pins the ONNX Runtime that verified it.
    assert entry["versions"]["onnxruntime"]


def test_serving_the_release_imports_neither_sklearn_nor_skl2onnx(project: Path) -> None:
    script = (
        "import sys\n"
        "from mlcycle.api.serving import serve_target\n"
        f"model = serve_target({str(project)!r}).loader()\n"
        "print(model.predictor.backend)\n"
        "print(sorted(m for m in ('sklearn', 'skl2onnx', 'onnx', 'skops', 'pandas', 'scipy')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["onnx", "[]"]


def test_a_changed_onnx_file_is_refused_before_it_is_loaded(project: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(project), str(copy)], check=True)
    path = copy / ENTRY / "model.onnx"
    path.write_bytes(path.read_bytes() + b"\0")
    target = serve_target(copy)
    with pytest.raises(IntegrityError, match=r"model\.onnx: SHA-256 mismatch"):
        target.loader()


def test_the_banner_comes_once_the_port_accepts_and_names_no_repr(project: Path) -> None:
    port = free_port()
    log = project.parent / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "serve", "--port", str(port), "--no-store"],
            cwd=project,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "serving" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        # Whoever reads the banner may connect at once.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        banner = log.read_text()
        assert f"http://127.0.0.1:{port}" in banner
        assert f"from registry {project / '.mlcycle' / 'registry'} on" in banner
        assert "LocalRegistry(" not in banner
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_a_bundle_carries_the_form_checked_and_its_image_needs_no_sklearn(
    project: Path, tmp_path: Path
) -> None:
    from tests.learn.conftest import mlcycle

    context = tmp_path / "ctx"
    result = mlcycle("deploy", "--context-only", context, cwd=project)
    assert result.code == 0, result.err
    bundle = json.loads((context / "bundle" / "bundle.json").read_text())
    assert (
        bundle["onnx"]["sha256"]
        == json.loads((project / ENTRY / "entry.json").read_text())["onnx"]["sha256"]
    )
    # What the image installs: every line one exact version, nothing of training.
    lines = (context / "build" / "requirements.txt").read_text().splitlines()
    pins = {line.split("==")[0]: line.split("==")[1] for line in lines if "==" in line}
    assert len(pins) == len([line for line in lines if line and not line.startswith("#")])
    assert "onnxruntime" in pins and "numpy" in pins and "uvicorn" in pins
    assert not set(pins) & {"scikit-learn", "scipy", "pandas", "pyarrow", "skl2onnx", "skops"}
    assert "pip check" not in (context / "Dockerfile").read_text()
    # The container's command, run here: serves the form, imports no sklearn.
    script = (
        "import sys\n"
        "from mlcycle.api.serving import serve_target\n"
        f"model = serve_target(bundle={str(context / 'bundle')!r}, no_store=True).loader()\n"
        "print(model.predictor.backend, 'sklearn' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["onnx", "False"]
    # A changed form in the bundle is refused when the bundle is opened.
    onnx = context / "bundle" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1])
    with pytest.raises(IntegrityError, match=r"model\.onnx: SHA-256 mismatch"):
        serve_target(bundle=context / "bundle")
