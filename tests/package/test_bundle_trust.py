"""Bundles run no code from their files, and `serve --bundle` leaves nothing in TMPDIR."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mlcycle.errors import PackagingError, RegistryError
from mlcycle.package import BUNDLE_FILE, build_bundle, load_bundle, write_archive
from mlcycle.registry.artifacts import sha256_file
from tests.package.conftest import Project
from tests.registry.gadgets import GADGETS, evil_pickle
from tests.serve.conftest import Server, free_port, wait_ready


def bundle_dir(project: Project, dest: Path) -> Path:
    build_bundle(project.spec, project.registry, project.entry, dest)
    return dest


def swap_model(bundle: Path, name: str, data: bytes, fmt: str) -> None:
    """Replace the bundle's model; bundle.json rewritten to vouch for it, as anyone can."""
    (bundle / "model.skops").unlink()
    (bundle / name).write_bytes(data)
    manifest = bundle / BUNDLE_FILE
    raw = json.loads(manifest.read_text())
    raw["artifact"].update(file=name, format=fmt, sha256=sha256_file(bundle / name), size=len(data))
    manifest.write_text(json.dumps(raw))


def test_a_bundle_holding_a_pickle_is_refused_and_runs_nothing(
    project: Project, tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    bundle = bundle_dir(project, tmp_path / "b")
    swap_model(bundle, "model.pkl", evil_pickle(canary), "pickle")
    with pytest.raises(PackagingError) as info:
        load_bundle(bundle).load_model()
    assert not canary.exists()
    assert "holds a pickle model; refusing it" in str(info.value)
    # The same through an archive, as `serve --bundle X.tar.gz` reads it.
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for child in sorted(bundle.iterdir()):
            tar.add(child, arcname=child.name)
    with pytest.raises(PackagingError, match="refusing it"):
        load_bundle(archive, extract_to=tmp_path / "x").load_model()
    assert not canary.exists()


def test_a_pickle_entry_is_never_packaged(project: Project, tmp_path: Path) -> None:
    artifact = dataclasses.replace(project.entry.artifact, format="pickle", file="model.pkl")
    entry = dataclasses.replace(project.entry, artifact=artifact)
    with pytest.raises(PackagingError, match="bundle never carries a format that runs code"):
        build_bundle(project.spec, project.registry, entry, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def serve_bundle(bundle: Path, tmp: Path, *args: str) -> Server:
    """`mlcycle serve --bundle BUNDLE` with TMPDIR inside `tmp`; waits until ready."""
    scratch = tmp / "tmpdir"
    scratch.mkdir(exist_ok=True)
    port = free_port()
    log = tmp / f"serve-{port}.log"
    command = [sys.executable, "-m", "mlcycle", "serve", "--bundle", str(bundle)]
    command += ["--port", str(port), "--no-store", *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(scratch)},
        )
    return Server(process=process, port=port, store=None, log=log)


@pytest.mark.parametrize("gadget", ["chain", "run_script"])
def test_serve_refuses_a_bundled_gadget_by_name(
    project: Project, tmp_path: Path, gadget: str
) -> None:
    canary = tmp_path / "canary"
    bundle = bundle_dir(project, tmp_path / "b")
    import skops.io as sio

    build, names = GADGETS[gadget]
    swap_model(bundle, "model.skops", sio.dumps(build(canary)), "skops")
    server = serve_bundle(bundle, tmp_path)
    code = server.process.wait(120)
    assert code == 1, server.output()
    assert not canary.exists()
    output = server.output()
    assert "refusing to load untrusted types" in output
    assert names[-1] in output
    assert "Traceback" not in output


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_serving_a_bundle_archive_leaves_no_temporary_directory(
    project: Project, tmp_path: Path, workers: str
) -> None:
    bundle = load_bundle(bundle_dir(project, tmp_path / "b"))
    archive = write_archive(bundle, tmp_path / "bundle.tar.gz")
    server = serve_bundle(archive, tmp_path, "--workers", workers)
    try:
        wait_ready(server)
        reply = server.post("/v1/predict", {"instances": [dict.fromkeys(project.X.columns, 1.0)]})
        assert reply.status == 200
    finally:
        server.stop()
    leftovers = [
        p.name for p in (tmp_path / "tmpdir").iterdir() if p.name.startswith("mlcycle-bundle-")
    ]
    assert leftovers == [], server.output()


def test_a_bundle_that_fails_to_load_leaves_no_temporary_directory(
    project: Project, tmp_path: Path
) -> None:
    bundle = bundle_dir(project, tmp_path / "b")
    import skops.io as sio

    swap_model(bundle, "model.skops", sio.dumps(GADGETS["take"][0](tmp_path)), "skops")
    archive = write_archive(load_bundle(bundle), tmp_path / "bundle.tar.gz")
    server = serve_bundle(archive, tmp_path)
    assert server.process.wait(120) == 1, server.output()
    assert list((tmp_path / "tmpdir").iterdir()) == []
    with pytest.raises(RegistryError):
        load_bundle(bundle).load_model()


def test_a_refused_start_leaves_no_temporary_directory(project: Project, tmp_path: Path) -> None:
    # Serving beyond loopback without a token is refused after the archive was unpacked.
    archive = write_archive(load_bundle(bundle_dir(project, tmp_path / "b")), tmp_path / "b.tgz")
    server = serve_bundle(archive, tmp_path, "--host", "0.0.0.0")
    assert server.process.wait(120) == 2, server.output()
    assert "MLCYCLE_API_TOKEN" in server.output()
    assert list((tmp_path / "tmpdir").iterdir()) == []


def test_a_model_using_code_outside_its_stored_model_code_is_not_bundled(
    project: Project, tmp_path: Path
) -> None:
    # The bundle carries only the entry's stored model code (none here) and loads under
    # the names it defines: an image of this model could never start, so the bundle is
    # refused when built.
    from sklearn.pipeline import make_pipeline

    from mlcycle.errors import PackagingError
    from mlcycle.package import build_bundle
    from mlcycle.registry import LocalRegistry, TrustPolicy
    from tests.registry.custom import Doubler

    policy = TrustPolicy(project_code=frozenset({"tests.registry.custom.Doubler"}))
    registry = LocalRegistry(project.registry.root, project.spec.name, trust=policy)
    entry = registry.register(
        make_pipeline(Doubler(), project.model).fit(project.X, project.model.predict(project.X)),
        release="1.3.0",
        metrics={"accuracy": 0.9},
        gate={"passed": True},
        data=dict(project.entry.data),
        spec_hash=None,
        git_commit=None,
        procurement="unattended",
        status="candidate",
        extra={"training": {"task": "classification"}},
    )
    with pytest.raises(PackagingError, match=r"tests\.registry\.custom\.Doubler"):
        build_bundle(project.spec, registry, entry, tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
