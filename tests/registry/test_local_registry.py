"""The local file-system backend: the contract, then what only files and processes can show."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlcycle.errors import ExitCode, RegistryError, UsageError
from mlcycle.registry import LocalRegistry, ModelRef, Registry, open_registry
from mlcycle.registry.artifacts import sha256_file
from mlcycle.spec.model import Spec
from tests.forked import Command, Zygote
from tests.registry.conftest import register, same_predictions
from tests.registry.contract import RegistryContract


class TestLocalRegistry(RegistryContract):
    @pytest.fixture
    def make_registry(self, tmp_path: Path) -> Callable[[], Registry]:
        return lambda: LocalRegistry(tmp_path / ".mlcycle" / "registry", "iris")


# --- files on disk ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / ".mlcycle" / "registry"


@pytest.fixture
def registry(root: Path) -> LocalRegistry:
    return LocalRegistry(root, "iris")


def test_layout_on_disk(registry: LocalRegistry, root: Path, logit: Any) -> None:
    entry = register(registry, logit, make_current=True)
    base = root / "iris"
    assert sorted(p.name for p in base.iterdir()) == [
        ".lock", ".staging", ".trash", "current.json", "manifests", "releases",
    ]  # fmt: skip
    entry_dir = base / "releases" / "0.1.0" / "1"
    assert sorted(p.name for p in entry_dir.iterdir()) == ["entry.json", "model.skops"]
    assert json.loads((entry_dir / "entry.json").read_text()) == entry.as_dict()
    assert registry.artifact_path(entry) == entry_dir / "model.skops"
    pointer = json.loads((base / "current.json").read_text())
    assert (pointer["release"], pointer["generation"], pointer["history"]) == ("0.1.0", 1, [])
    assert list((base / ".staging").iterdir()) == []
    assert list((base / "manifests").iterdir()) == []


def test_reading_creates_nothing(registry: LocalRegistry, root: Path) -> None:
    assert registry.entries() == [] and registry.current() is None
    assert registry.remove_release("0.1.0") == []
    assert not root.exists()


def test_remove_release_leaves_no_trace(registry: LocalRegistry, root: Path, logit: Any) -> None:
    register(registry, logit, release="0.1.0", make_current=True)
    register(registry, logit, release="0.2.0", make_current=True)
    registry.remove_release("0.2.0")
    base = root / "iris"
    assert [p.name for p in (base / "releases").iterdir()] == ["0.1.0"]
    assert list((base / ".trash").iterdir()) == []
    pointer = json.loads((base / "current.json").read_text())
    assert (pointer["ref"], pointer["history"]) == ("0.1.0/1", [])
    assert pointer["note"] == "restored when release 0.2.0 was removed"


def test_history_of_current(registry: LocalRegistry, logit: Any) -> None:
    for _ in range(3):
        register(registry, logit, make_current=True)
    registry.set_current("0.1.0/1")
    assert [str(r) for r in registry.current_history()] == ["0.1.0/3", "0.1.0/2"]


def test_untrusted_types_are_refused_even_with_a_matching_hash(
    registry: LocalRegistry, logit: Any, custom_model: Any
) -> None:
    # Someone who can write the registry swaps the artifact and fixes the hash too:
    # the type check still refuses what skops would have to run.
    import skops.io as sio

    entry = register(registry, logit)
    path = registry.artifact_path(entry)
    sio.dump(custom_model, path)
    entry_json = path.parent / "entry.json"
    raw = json.loads(entry_json.read_text())
    raw["artifact"]["sha256"] = sha256_file(path)
    entry_json.write_text(json.dumps(raw))
    with pytest.raises(RegistryError) as info:
        registry.load_model(registry.get(entry.ref))
    assert str(info.value) == (
        f"{path}: refusing to load untrusted types: tests.registry.custom.Doubler"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: "{not json", "damaged entry (not JSON"),
        (lambda raw: json.dumps({**raw, "status": "approved"}), "damaged entry (ValueError"),
        (
            lambda raw: json.dumps({**raw, "artifact": {**raw["artifact"], "file": "../../x"}}),
            "artifact file '../../x' is not a plain file name",
        ),
        (lambda raw: json.dumps({**raw, "generation": 2}), "the entry says iris 0.1.0/2 but lies"),
        (lambda raw: json.dumps({**raw, "schema": 99}), "entry written by a newer mlcycle"),
    ],
)
def test_a_damaged_entry_is_named(
    registry: LocalRegistry, logit: Any, edit: Callable[[dict], str], message: str
) -> None:
    entry = register(registry, logit)
    path = registry.entry_dir(entry.ref) / "entry.json"
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(RegistryError) as info:
        registry.entries()
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_a_dangling_current_pointer_is_an_error(registry: LocalRegistry, logit: Any) -> None:
    entry = register(registry, logit, make_current=True)
    shutil.rmtree(registry.entry_dir(entry.ref))  # by hand, behind the registry's back
    with pytest.raises(RegistryError) as info:
        registry.current()
    assert str(info.value) == (
        f"{registry.current_path}: the current model 0.1.0/1 is not in the registry"
    )


def test_project_name_is_checked(root: Path) -> None:
    with pytest.raises(UsageError, match=r"'\.\./x' is not a project name"):
        LocalRegistry(root, "../x")


def test_open_registry_follows_the_spec(tmp_path: Path, logit: Any) -> None:
    spec = make_spec(tmp_path, {})
    registry = open_registry(spec)
    assert isinstance(registry, LocalRegistry)
    assert registry.base == tmp_path / ".mlcycle" / "registry" / "churn"
    elsewhere = open_registry(make_spec(tmp_path, {"registry": {"path": "models"}}))
    assert isinstance(elsewhere, LocalRegistry)
    assert elsewhere.base == tmp_path / "models" / "churn"
    with pytest.raises(RegistryError) as info:
        open_registry(make_spec(tmp_path, {"registry": {"backend": "none"}}))
    assert str(info.value) == (
        "churn: the spec declares no model registry (registry.backend: none)"
    )
    assert info.value.exit_code == ExitCode.RUNTIME


def make_spec(root: Path, sections: dict[str, Any]) -> Spec:
    doc = {
        "apiVersion": "mlcycle/v1",
        "name": "churn",
        "lifecycle": {
            "data_access": "programmatic",
            "procurement": "unattended",
            "update": "release-forced",
            "deployment": "wrapped",
            "liaison": "joint",
        },
        **sections,
    }
    return Spec.from_document(doc, root=root)


# --- real processes -----------------------------------------------------------------------


WORKER = "from tests.registry._worker import main\nmain()\n"


def worker(mode: str, root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.registry._worker", mode, str(root), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_pause(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "paused":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"worker did not pause: {line!r}\n{err}")


def kill9(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pause-stage", "pause-publish"])
def test_kill_9_mid_registration_leaves_no_partial_entry(
    root: Path, registry: LocalRegistry, logit: Any, mode: str
) -> None:
    first = register(registry, logit, make_current=True)
    proc = worker(mode, root)
    wait_for_pause(proc)
    staging = registry.staging_dir
    assert len(list(staging.iterdir())) == 1  # the victim's entry, half made
    kill9(proc)

    # Readers see only complete entries; the leftover is ignored.
    assert registry.entries() == [first]
    assert registry.current() == first
    assert len(list(staging.iterdir())) == 1

    # The next writer is not blocked (the dead writer's lock died with it), takes the
    # next number and cleans up.
    quick = LocalRegistry(root, "iris", lock_timeout=10)
    second = register(quick, logit)
    assert second.ref == ModelRef("0.1.0", 2)
    assert [e.ref for e in quick.entries()] == [first.ref, second.ref]
    assert list(staging.iterdir()) == []
    assert quick.load_model(second) is not None


@pytest.mark.slow
def test_concurrent_registrations_get_distinct_generations(
    root: Path, registry: LocalRegistry, zygote: Zygote
) -> None:
    # Two writers, started at one instant, from a registry that does not exist yet.
    writer = Command(["register", str(root), "--count", "3"], cwd=ROOT, code=WORKER)
    printed = []
    for done in zygote.run([writer, writer]):
        assert done.returncode == 0, done.stderr
        printed += done.stdout.split()
    assert sorted(printed) == [f"0.1.0/{n}" for n in range(1, 7)]
    entries = registry.entries()
    assert [e.generation for e in entries] == [1, 2, 3, 4, 5, 6]
    models = [registry.load_model(e) for e in entries]
    assert all(same_predictions(m, models[0]) for m in models)  # the same model, six times
    assert list(registry.staging_dir.iterdir()) == []


@pytest.mark.slow
def test_lock_timeout_names_the_holder(root: Path, logit: Any) -> None:
    holder = worker("hold-lock", root)
    try:
        wait_for_pause(holder)
        impatient = LocalRegistry(root, "iris", lock_timeout=0.2)
        with pytest.raises(RegistryError) as info:
            register(impatient, logit)
        message = str(info.value)
        assert message.startswith(f"{root / 'iris'}: registry is locked by pid {holder.pid} on ")
        assert "(holding the lock for a test); gave up after 0.2 s" in message
        assert info.value.exit_code == ExitCode.RUNTIME
        assert "lock is released when its process exits" in (info.value.hint or "")
        with pytest.raises(RegistryError, match=f"locked by pid {holder.pid}"):
            impatient.set_current("latest")
        # Reading needs no lock.
        assert impatient.entries() == []
        assert list(impatient.staging_dir.iterdir()) == []  # the refused write cleaned up
    finally:
        kill9(holder)
    assert register(LocalRegistry(root, "iris", lock_timeout=10), logit).generation == 1
