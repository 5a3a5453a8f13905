"""`mlcycle registry migrate`: a project's local registry copied into a shared one, on
SQLite with a file artifact store and on a real PostgreSQL with the real OCI registry.

The source is a released adaptive project (a trained model with its ONNX form, a
published serving manifest, a run) with what only some registries hold added on:
a rejected generation, a retired entry with model code, a data rejection.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from mlcycle import api
from mlcycle.api.init import init
from mlcycle.errors import IntegrityError, RegistryError, UsageError
from mlcycle.registry import LocalRegistry, open_registry
from mlcycle.registry.blobs import digest_of, open_blob_store
from mlcycle.registry.migrate import migrate as copy_registry
from mlcycle.registry.sql import SqlRegistry
from mlcycle.spec import load_spec
from tests.forked import Command, Finished, Zygote
from tests.registry.conftest import GATE_FAILED, register
from tests.registry.test_blobs import oci_registry  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "team"
CODE = {"features/clip.py": b'"""Clipping, kept with the model."""\n\nLIMIT = 3.0\n'}


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, logit: Any) -> Path:
    """A project whose local registry holds every kind of record, made once."""
    root = tmp_path_factory.mktemp("source") / PROJECT
    init(PROJECT, pattern="adaptive", directory=root)
    api.release(root)  # 0.1.0/1, current, its run
    api.deploy(root)  # serving manifest 1
    local = LocalRegistry(root / ".mlcycle" / "registry", PROJECT)
    register(local, logit, release="0.1.0", status="rejected", gate=GATE_FAILED)  # 0.1.0/2
    register(local, logit, release="dev", code=CODE)  # dev/1, with model code
    local.retire("dev/1", note={"why": "superseded"})
    local.record_data_rejection(
        {"against": "0.1.0/1", "rows": 5, "anomalies": [{"feature": "x", "kind": "range"}]}
    )
    return root


@pytest.fixture
def project(released: Path, tmp_path: Path) -> Path:
    """A copy of the released project (its git repository too) for one test."""
    copy = tmp_path / PROJECT
    shutil.copytree(released, copy, symlinks=True)
    return copy


@pytest.fixture(params=["sqlite+file", "postgresql+oci"])
def shared(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: Any) -> tuple[str, str]:
    """(database URL, artifact store URL) of an empty shared registry."""
    if request.param == "sqlite+file":
        return f"sqlite:///{tmp_path / 'shared.db'}", f"file:{tmp_path / 'shared-artifacts'}"
    for name in ("USERNAME", "PASSWORD", "INSECURE"):
        monkeypatch.delenv(f"MLCYCLE_ARTIFACTS_{name}", raising=False)
    database = request.getfixturevalue("postgres_url")
    registry = request.getfixturevalue("oci_registry")
    return database, f"oci://{registry}/mlcycle-tests/migrate-{uuid.uuid4().hex[:12]}"


def source_of(project: Path) -> LocalRegistry:
    return LocalRegistry(project / ".mlcycle" / "registry", PROJECT)


def target_of(shared: tuple[str, str], tmp_path: Path, machine: str = "reader") -> SqlRegistry:
    """The shared registry as another machine sees it: nothing cached yet."""
    url, artifacts = shared
    cache = tmp_path / f"cache-{machine}"
    blobs = open_blob_store(artifacts, base=tmp_path, cache=cache / "blobs")
    return SqlRegistry(url, PROJECT, blobs=blobs, cache=cache / "entries")


def files_of(registry: Any, entry: Any) -> dict[str, Path]:
    """Every file an entry names → where the registry has it locally."""
    artifact = registry.artifact_path(entry)
    found = {entry.artifact.file: artifact}
    if entry.onnx is not None:
        found[entry.onnx.file] = artifact.with_name(entry.onnx.file)
    found.update({f"code/{p}": registry.code_dir(entry) / p for p in entry.code})
    return found


def recorded(entry: Any) -> dict[str, str]:
    """Every file an entry names → the digest its record holds."""
    found = {entry.artifact.file: entry.artifact.sha256}
    if entry.onnx is not None:
        found[entry.onnx.file] = entry.onnx.sha256
    found.update({f"code/{p}": sha for p, sha in entry.code.items()})
    return {name: f"sha256:{sha}" for name, sha in found.items()}


def everything(registry: Any) -> dict[str, Any]:
    """What a registry holds of the project, as comparable data."""
    return {
        "entries": [(e.as_dict(), e.retired) for e in registry.entries()],
        "current": str(registry.current().ref) if registry.current() else None,
        "current_history": registry.current_history(),
        "manifests": [m.as_dict() for m in registry.manifests().history()],
        "runs": [r.as_dict() for r in registry.runs().runs()],
        "data_rejections": registry.data_rejections(),
    }


def test_everything_is_copied_and_every_file_arrives_with_its_digest(
    project: Path, shared: tuple[str, str], tmp_path: Path
) -> None:
    url, artifacts = shared
    result = api.migrate(project, to=url, artifacts=artifacts)

    source, target = source_of(project), target_of(shared, tmp_path)
    assert everything(target) == everything(source)
    held = everything(source)
    assert [e["ref"] for e, _ in held["entries"]] == ["dev/1", "0.1.0/1", "0.1.0/2"]
    assert held["entries"][0][1]["why"] == "superseded"  # the retirement came along
    assert held["current"] == "0.1.0/1" and len(held["manifests"]) == 1
    assert len(held["runs"]) == 1 and len(held["data_rejections"]) == 1
    assert result.entries == ("dev/1", "0.1.0/1", "0.1.0/2")
    assert (result.current, result.manifests, result.data_rejections) == ("0.1.0/1", (1,), (1,))
    assert len(result.runs) == 1 and result.copied == 7

    # Every file, pulled anew from the shared store, has the digest its entry recorded and
    # the source's bytes: model, ONNX form and model code.
    digests = {}
    for entry in target.entries():
        pulled = files_of(target, entry)
        mine = files_of(source, entry)
        assert set(pulled) == set(recorded(entry))
        for name, digest in recorded(entry).items():
            assert digest_of(pulled[name]) == digest == digest_of(mine[name])
            assert pulled[name].read_bytes() == mine[name].read_bytes()
            digests[f"{entry.ref}/{name}"] = digest
    assert result.digests == digests
    assert {"0.1.0/1/model.onnx", "dev/1/code/features/clip.py"} <= set(digests)
    # The model loads from the shared registry (its SHA-256 checked again by the loader).
    assert target.load_model(target.get("current")) is not None


def test_a_second_run_copies_nothing_and_writes_nothing(
    project: Path, shared: tuple[str, str], tmp_path: Path
) -> None:
    url, artifacts = shared
    first = api.migrate(project, to=url, artifacts=artifacts)
    target = target_of(shared, tmp_path)
    token = target.change_token()

    again = api.migrate(project, to=url, artifacts=artifacts)
    assert first.copied == 7 and again.copied == 0
    assert again.as_dict()["nothing_to_copy"] is True
    assert (again.blobs, again.present_entries, again.present_records) == (0, 3, 4)
    assert target.change_token() == token  # not one write transaction
    assert everything(target) == everything(source_of(project))


def test_a_damaged_file_is_refused_naming_its_entry_and_nothing_is_copied(
    project: Path, shared: tuple[str, str], tmp_path: Path
) -> None:
    source = source_of(project)
    model = source.artifact_path(source.get("0.1.0/1"))
    model.write_bytes(model.read_bytes() + b"\0")
    (source.code_dir(source.get("dev/1")) / "features" / "clip.py").unlink()

    url, artifacts = shared
    with pytest.raises(IntegrityError) as caught:
        api.migrate(project, to=url, artifacts=artifacts)
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert "team 0.1.0/1: model.skops is damaged" in message
    assert "team dev/1: code/features/clip.py is missing" in message
    assert "nothing was copied" in message and caught.value.hint

    # Not one record, and not one blob, of any entry.
    target = target_of(shared, tmp_path)
    assert everything(target) == {
        "entries": [],
        "current": None,
        "current_history": [],
        "manifests": [],
        "runs": [],
        "data_rejections": [],
    }
    for entry in source.entries():
        for digest in recorded(entry).values():
            assert not target.blobs.has(digest)


def test_an_entry_the_target_holds_differently_is_refused_not_overwritten(
    project: Path, shared: tuple[str, str], tmp_path: Path, logit: Any
) -> None:
    # Another clone released its own 0.1.0/1 into the shared registry first.
    target = target_of(shared, tmp_path, machine="other-clone")
    theirs = register(target, logit, release="0.1.0", make_current=True)
    token = target.change_token()

    url, artifacts = shared
    with pytest.raises(RegistryError) as caught:
        api.migrate(project, to=url, artifacts=artifacts)
    message = str(caught.value)
    assert caught.value.exit_code == 1
    assert "1 record(s) of team that differ" in message
    assert "entry 0.1.0/1 (another model: artifact" in message
    assert "nothing was copied" in message

    assert target.entries() == [theirs]
    assert target.current() == theirs
    assert target.manifests().numbers() == [] and target.runs().runs() == []
    assert target.change_token() == token


def test_a_fresh_clone_with_the_shared_registry_sees_everything_and_serves_it(
    project: Path, shared: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, artifacts = shared
    api.migrate(project, to=url, artifacts=artifacts)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    assert not (clone / ".mlcycle").exists()
    monkeypatch.setenv("MLCYCLE_REGISTRY_URL", url)
    monkeypatch.setenv("MLCYCLE_ARTIFACTS_URL", artifacts)

    history = api.history(clone).as_dict()
    assert [(r["version"], r["status"], r["generations"], r["current"]) for r in
            history["releases"]] == [("0.1.0", "released", [1, 2], True)]  # fmt: skip
    assert len(history["data_rejections"]) == 1
    monkeypatch.delenv("MLCYCLE_REGISTRY_URL")
    monkeypatch.delenv("MLCYCLE_ARTIFACTS_URL")
    local_history = api.history(project).as_dict()
    models_here = api.models(project).as_dict()
    monkeypatch.setenv("MLCYCLE_REGISTRY_URL", url)
    monkeypatch.setenv("MLCYCLE_ARTIFACTS_URL", artifacts)
    assert history == local_history
    assert api.models(clone).as_dict() == models_here
    assert [r.id for r in api.runs(clone).runs] == [r.id for r in api.runs(project).runs]

    # `serve` in the clone serves the migrated current model, following the manifest.
    assert asyncio.run(_predict(clone)) == ("0.1.0", 1)


async def _predict(clone: Path) -> tuple[str, int]:
    from mlcycle.api.serving import serve_target
    from mlcycle.serve.app import ServeOptions, create_app
    from tests.serve.test_app import _call

    target = serve_target(clone)
    app = create_app(target.loader, store_url=target.store_url, options=ServeOptions())
    await app.startup()
    try:
        status, info = await _call(app, "GET", "/v1/model")
        assert status == 200, info
        row = {f["name"]: 1.0 for f in info["features"]}
        status, answer = await _call(app, "POST", "/v1/predict", {"instances": [row]})
        assert status == 200, answer
        assert len(answer["predictions"]) == 1
        return answer["model"]["release"], answer["model"]["generation"]
    finally:
        await app.shutdown()
        target.close()


def test_a_retirement_made_after_a_migration_goes_on_the_next_one(
    project: Path, tmp_path: Path
) -> None:
    shared = (f"sqlite:///{tmp_path / 'shared.db'}", f"file:{tmp_path / 'shared-artifacts'}")
    api.migrate(project, to=shared[0], artifacts=shared[1])
    source_of(project).retire("0.1.0/2", note={"why": "never served"})

    again = api.migrate(project, to=shared[0], artifacts=shared[1])
    assert (again.retirements, again.entries, again.copied) == (("0.1.0/2",), (), 1)
    target = target_of(shared, tmp_path)
    assert target.get("0.1.0/2").retired["why"] == "never served"
    assert everything(target) == everything(source_of(project))


def test_a_migration_needs_a_shared_artifact_store_and_a_local_registry(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLCYCLE_ARTIFACTS_URL", raising=False)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with pytest.raises(UsageError, match="no shared artifact store") as caught:
        api.migrate(project, to=url)
    assert caught.value.exit_code == 2
    shutil.rmtree(project / ".mlcycle")
    with pytest.raises(UsageError, match="no local registry here"):
        api.migrate(project, to=url, artifacts=f"file:{tmp_path / 'a'}")


def test_the_urls_given_name_a_target_and_reach_it_from_the_working_directory(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UsageError) as caught:
        api.migrate(project, environ={})
    assert str(caught.value) == "team: no shared registry to migrate to"
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError) as caught:
        api.migrate(project, to="postgresql://me:${env:NO_SUCH_PASSWORD}@db/x", environ={})
    assert str(caught.value) == (
        "--to: environment variable NO_SUCH_PASSWORD is not set "
        "(the URL names it as ${env:NO_SUCH_PASSWORD})"
    )
    # Relative paths are the working directory's, as on a command line.
    monkeypatch.chdir(tmp_path)
    migration = api.migrate(project, to="sqlite:///shared.db", artifacts="file:blobs", environ={})
    assert (tmp_path / "shared.db").is_file() and (tmp_path / "blobs").is_dir()
    assert sorted(migration.entries) == ["0.1.0/1", "0.1.0/2", "dev/1"]
    assert (
        migration.target
        == f"sqlite:///{tmp_path / 'shared.db'} (artifacts file:{tmp_path / 'blobs'})"
    )


def test_a_library_caller_gets_the_same_refusal_for_another_project(
    project: Path, tmp_path: Path
) -> None:
    spec = load_spec(project)
    shared = {"MLCYCLE_REGISTRY_URL": f"sqlite:///{tmp_path / 's.db'}"}
    target = open_registry(spec, environ={**shared, "MLCYCLE_ARTIFACTS_URL": "file:a"})
    assert isinstance(target, SqlRegistry)
    with pytest.raises(UsageError, match="cannot copy other"):
        copy_registry(LocalRegistry(project / ".mlcycle" / "registry", "other"), target)


# --- the real command -----------------------------------------------------------------


@pytest.mark.slow
def test_the_command_survives_a_kill_keeps_passwords_out_of_sight_and_resumes(
    project: Path,
    postgres_url: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    zygote: Zygote,
) -> None:
    oci = request.getfixturevalue("oci_registry")
    secret = "hunter2-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "TEAM_DB_PASSWORD": secret}
    for name in ("REGISTRY_URL", "ARTIFACTS_URL", "ARTIFACTS_USERNAME", "ARTIFACTS_PASSWORD"):
        env.pop(f"MLCYCLE_{name}", None)
    assert postgres_url.startswith("postgresql://postgres@")
    # The server trusts local connections, so any password is let in: what matters is
    # where the password is written.
    literal = postgres_url.replace("postgres@", f"postgres:{secret}@", 1)
    named = postgres_url.replace("postgres@", "postgres:${env:TEAM_DB_PASSWORD}@", 1)
    artifacts = f"oci://{oci}/mlcycle-tests/migrate-cli-{uuid.uuid4().hex[:12]}"

    def run(to: str, *more: str, kill_at: str | None = None) -> Finished:
        extra = {"MLCYCLE_KILL_AT": kill_at} if kill_at else {}
        argv = ["registry", "migrate", "-C", str(project), "--to", to, "--artifacts", artifacts]
        (done,) = zygote.run([Command([*argv, *more], cwd=tmp_path, env={**env, **extra})])
        assert secret not in done.stdout + done.stderr
        return done

    refused = run(literal)
    assert refused.returncode == 2, refused.stderr
    assert "a password on the command line" in refused.stderr
    assert "Traceback" not in refused.stderr

    # Killed (as by a power cut) once the first model's files are stored: no entry shows.
    killed = run(named, kill_at="migrate:blobs-stored")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    target = target_of((postgres_url, artifacts), tmp_path)
    assert target.entries() == [] and target.current() is None

    resumed = run(named, "--json")
    assert resumed.returncode == 0, resumed.stderr
    import json

    document = json.loads(resumed.stdout)
    assert document["format"] == "mlcycle/registry-migration@1"
    assert document["copied"]["entries"] == ["dev/1", "0.1.0/1", "0.1.0/2"]
    assert document["already_there"]["blobs"] >= 1  # the killed run's, not sent again
    assert "postgres:***@" in document["target"]
    assert everything(target) == everything(source_of(project))

    again = run(named)
    assert again.returncode == 0, again.stderr
    assert "nothing to copy" in again.stdout
    assert "(3 models)" in again.stdout


def test_counts_agree_with_their_nouns(capsys: pytest.CaptureFixture[str]) -> None:
    # A trial: "nothing to copy: ... (1 models)".
    from mlcycle.cli.commands.registry import _render
    from mlcycle.registry.migrate import Migration

    _render(Migration(project="churn", source=".mlcycle/registry", target="db", present_entries=1))
    assert "(1 model)" in capsys.readouterr().out
    _render(
        Migration(
            project="churn",
            source=".mlcycle/registry",
            target="db",
            entries=("0.1.0/2",),
            present_entries=1,
            present_records=1,
        )
    )
    shown = " ".join(capsys.readouterr().out.split())
    assert "already there: 1 model, 1 other record" in shown
    # What a user does next, said once something was copied.
    assert "next: point every clone at it: `registry: {url: ..., artifacts: ...}`" in shown
    assert "MLCYCLE_REGISTRY_URL and MLCYCLE_ARTIFACTS_URL" in shown
