"""Bundles: round trips, integrity on load, and archives that never write outside their target."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mlcycle.errors import IntegrityError, PackagingError, UsageError
from mlcycle.package import (
    BUNDLE_FILE,
    Bundle,
    build_bundle,
    extract_bundle,
    load_bundle,
    write_archive,
)
from mlcycle.registry import Status
from mlcycle.serve.model import served_model_from_bundle
from tests.package.conftest import Project


def bundle_of(project: Project, dest: Path) -> Bundle:
    return build_bundle(project.spec, project.registry, project.entry, dest)


def test_round_trip(project: Project, tmp_path: Path) -> None:
    built = bundle_of(project, tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        BUNDLE_FILE,
        "lifecycle.yaml",
        "model.skops",
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging
    loaded = load_bundle(tmp_path / "b")
    assert loaded == built
    assert loaded.project == "cancer-open"
    assert loaded.ref == "1.2.0/1"
    assert loaded.artifact.sha256 == project.entry.artifact.sha256
    assert loaded.versions == project.entry.versions
    assert loaded.spec_hash == "cd" * 32
    assert loaded.git_commit == project.entry.git_commit
    assert [f.name for f in loaded.features] == list(project.X.columns)
    assert {f.type for f in loaded.features} == {"number"}
    assert loaded.task == "classification"
    assert loaded.output["kind"] == "label"
    assert (tmp_path / "b" / "lifecycle.yaml").read_bytes() == (
        project.root / "lifecycle.yaml"
    ).read_bytes()
    raw = json.loads((tmp_path / "b" / BUNDLE_FILE).read_text())
    first = {"name": "mean radius", "type": "number", "nullable": False}
    assert raw["serving"]["features"][0] == first
    model = loaded.load_model()
    np.testing.assert_array_equal(model.predict(project.X), project.model.predict(project.X))


def test_requirements_pin_the_training_versions(project: Project, tmp_path: Path) -> None:
    bundle = bundle_of(project, tmp_path / "b")
    versions = project.entry.versions
    assert f"scikit-learn=={versions['sklearn']}" in bundle.requirements()
    assert f"numpy=={versions['numpy']}" in bundle.requirements()
    assert all("==" in r for r in bundle.requirements())


def test_hostile_versions_are_refused(project: Project, tmp_path: Path) -> None:
    entry = dataclasses.replace(
        project.entry,
        versions={**project.entry.versions, "numpy": "1.0\n--index-url http://evil.invalid"},
    )
    with pytest.raises(PackagingError, match="not a version number"):
        build_bundle(project.spec, project.registry, entry, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_features_and_task_fall_back_to_the_estimator(project: Project, tmp_path: Path) -> None:
    entry = dataclasses.replace(project.entry, data={}, extra={})
    bundle = build_bundle(project.spec, project.registry, entry, tmp_path / "b")
    assert [f.name for f in bundle.features] == list(project.X.columns)
    assert bundle.task == "classification"
    assert bundle.output == {"kind": "label", "classes": [0, 1]}


def test_served_model(project: Project, tmp_path: Path) -> None:
    served = served_model_from_bundle(bundle_of(project, tmp_path / "b"))
    described = served.describe()
    assert described["release"] == "1.2.0"
    assert described["generation"] == 1
    assert [f["name"] for f in described["features"]] == list(project.X.columns)


def test_rejected_entry_is_not_packaged(project: Project, tmp_path: Path) -> None:
    entry = dataclasses.replace(project.entry, status=Status.REJECTED)
    with pytest.raises(UsageError, match="rejected"):
        build_bundle(project.spec, project.registry, entry, tmp_path / "b")


def test_nonempty_destination_is_refused(project: Project, tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        bundle_of(project, tmp_path / "b")
    assert (tmp_path / "b" / "keep.txt").read_text() == "mine"


def test_tampered_registry_artifact_is_not_packaged(project: Project, tmp_path: Path) -> None:
    artifact = project.registry.artifact_path(project.entry)
    artifact.write_bytes(artifact.read_bytes() + b"x")
    with pytest.raises(IntegrityError, match="SHA-256 mismatch"):
        bundle_of(project, tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("victim", ["model.skops", "lifecycle.yaml"])
def test_tampered_file_fails_on_load(project: Project, tmp_path: Path, victim: str) -> None:
    bundle_of(project, tmp_path / "b")
    path = tmp_path / "b" / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"{victim}: SHA-256 mismatch"):
        load_bundle(tmp_path / "b")


def test_tampered_manifest_fails_on_load(project: Project, tmp_path: Path) -> None:
    bundle_of(project, tmp_path / "b")
    manifest = tmp_path / "b" / BUNDLE_FILE
    raw = json.loads(manifest.read_text())
    raw["artifact"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(raw))
    with pytest.raises(IntegrityError):
        load_bundle(tmp_path / "b")


def test_missing_artifact_fails_on_load(project: Project, tmp_path: Path) -> None:
    bundle_of(project, tmp_path / "b")
    (tmp_path / "b" / "model.skops").unlink()
    with pytest.raises(IntegrityError, match="missing"):
        load_bundle(tmp_path / "b")


def test_artifact_swapped_for_a_symlink_fails(project: Project, tmp_path: Path) -> None:
    bundle_of(project, tmp_path / "b")
    real = project.registry.artifact_path(project.entry)
    (tmp_path / "b" / "model.skops").unlink()
    (tmp_path / "b" / "model.skops").symlink_to(real)
    with pytest.raises(IntegrityError):
        load_bundle(tmp_path / "b")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "unreadable"),
        ("[]", "not a JSON object"),
        ('{"schema": 99}', "newer mlcycle"),
        ('{"schema": 1, "project": "x"}', "damaged"),
    ],
)
def test_damaged_manifest(project: Project, tmp_path: Path, content: str, message: str) -> None:
    bundle_of(project, tmp_path / "b")
    (tmp_path / "b" / BUNDLE_FILE).write_text(content)
    with pytest.raises(PackagingError, match=message):
        load_bundle(tmp_path / "b")


def test_artifact_name_in_manifest_cannot_escape(project: Project, tmp_path: Path) -> None:
    bundle_of(project, tmp_path / "b")
    manifest = tmp_path / "b" / BUNDLE_FILE
    raw = json.loads(manifest.read_text())
    raw["artifact"]["file"] = "../../etc/passwd"
    manifest.write_text(json.dumps(raw))
    with pytest.raises(PackagingError, match="not a plain file name"):
        load_bundle(tmp_path / "b")


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="no such bundle"):
        load_bundle(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackagingError, match="not a bundle"):
        load_bundle(tmp_path / "empty")


# --- archives ---------------------------------------------------------------------------


def test_archive_round_trip(project: Project, tmp_path: Path) -> None:
    built = bundle_of(project, tmp_path / "b")
    archive = write_archive(built, tmp_path / "b.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == [BUNDLE_FILE, "lifecycle.yaml", "model.skops"]
        assert {m.uid for m in tar.getmembers()} == {0}
    loaded = extract_bundle(archive, tmp_path / "out")
    assert dataclasses.replace(loaded, path=built.path) == built
    assert loaded.path == tmp_path / "out"
    again = load_bundle(archive, extract_to=tmp_path / "again")
    assert again.artifact == built.artifact


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


HOSTILE_ARCHIVES = {
    "absolute": ([_file("/tmp/evil-absolute")], "absolute path"),
    "dotdot": ([_file("../evil-dotdot")], "outside"),
    "nested dotdot": ([_file("sub/../../evil-nested")], "outside"),
    "symlink out": ([_link("model.skops", "/etc/passwd", tarfile.SYMTYPE)], "is a link"),
    "relative symlink": ([_link("x", "../outside", tarfile.SYMTYPE)], "is a link"),
    "symlink then write through it": (
        [_link("dir", "..", tarfile.SYMTYPE), _file("dir/evil-through")],
        "is a link",
    ),
    "hardlink out": ([_link("h", "/etc/passwd", tarfile.LNKTYPE)], "is a link"),
    "fifo": ([_special("fifo", tarfile.FIFOTYPE)], "not a plain file"),
    "device": ([_special("dev", tarfile.CHRTYPE)], "not a plain file"),
    "duplicate": ([_file("a"), _file("./a")], "appears twice"),
    "backslash": ([_file("..\\evil-backslash")], "outside"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_ARCHIVES))
def test_hostile_archives_are_refused(tmp_path: Path, case: str) -> None:
    members, message = HOSTILE_ARCHIVES[case]
    work = tmp_path / "work"
    work.mkdir()
    archive = _archive(tmp_path / "evil.tar.gz", members)
    with pytest.raises(PackagingError, match=message):
        extract_bundle(archive, work / "out")
    assert not (work / "out").exists()
    assert list(work.iterdir()) == []  # no staging directory left either
    assert not list(tmp_path.glob("evil-*"))
    assert not Path("/tmp/evil-absolute").exists()


def test_archive_with_a_tampered_file_fails_after_extraction(
    project: Project, tmp_path: Path
) -> None:
    built = bundle_of(project, tmp_path / "b")
    (built.path / "model.skops").write_bytes(b"swapped")
    archive = write_archive(built, tmp_path / "b.tar.gz")
    with pytest.raises(IntegrityError):
        extract_bundle(archive, tmp_path / "out")


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "junk.tar.gz").write_bytes(b"definitely not gzip")
    with pytest.raises(PackagingError, match="not a readable bundle archive"):
        extract_bundle(tmp_path / "junk.tar.gz", tmp_path / "out")


def test_an_older_bundle_still_loads_and_serves_the_same_schema(
    project: Project, tmp_path: Path
) -> None:
    """bundle.json as older mlcycles wrote it: features without `nullable`, or bare names."""
    from mlcycle.registry.features import Feature
    from mlcycle.serve import Feature as ServedFeature

    bundle_of(project, tmp_path / "b")
    path = tmp_path / "b" / BUNDLE_FILE
    raw = json.loads(path.read_text())
    names = [f["name"] for f in raw["serving"]["features"]]
    raw["serving"]["features"] = [names[0], *({"name": n, "type": "number"} for n in names[1:])]
    path.write_text(json.dumps(raw))

    loaded = load_bundle(tmp_path / "b")
    assert loaded.features == tuple(Feature(n) for n in names)
    served = served_model_from_bundle(loaded)
    # One type from bundle.json to the engine; `mlcycle.serve.Feature` names it too.
    assert ServedFeature is Feature
    assert all(type(f) is Feature for f in (*loaded.features, *served.features))
    # GET /v1/model describes it exactly as before.
    assert served.describe()["features"] == [
        {"name": n, "type": "number", "nullable": False} for n in names
    ]
    # Rewritten, the bundle holds today's form (what test_round_trip pins).
    assert loaded.as_dict()["serving"]["features"][0] == {
        "name": names[0],
        "type": "number",
        "nullable": False,
    }


def test_an_unknown_feature_type_in_a_bundle_is_damage(project: Project, tmp_path: Path) -> None:
    bundle_of(project, tmp_path / "b")
    path = tmp_path / "b" / BUNDLE_FILE
    raw = json.loads(path.read_text())
    raw["serving"]["features"][0]["type"] = "float"
    path.write_text(json.dumps(raw))
    with pytest.raises(PackagingError, match=r"damaged bundle description.*unknown type 'float'"):
        load_bundle(tmp_path / "b")
