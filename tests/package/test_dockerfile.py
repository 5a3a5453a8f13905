"""Build contexts: the rendered Dockerfile, hostile spec strings, references, pip settings."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mlcycle.errors import IntegrityError, PackagingError, UsageError
from mlcycle.package import (
    BuildContext,
    build_bundle,
    build_image,
    check_reference,
    check_registry,
    image_reference,
    pip_settings,
    push_image,
    render_dockerfile,
    tag_for_registry,
    write_context,
)
from mlcycle.package.bundle import Bundle
from mlcycle.registry import ArtifactInfo
from mlcycle.registry.features import Feature
from tests.package.conftest import HOSTILE, Project, make_project

GOLDEN = Path(__file__).parent / "golden" / "Dockerfile"
CMD = '["mlcycle", "serve", "--bundle", "/app/bundle", "--host", "0.0.0.0", "--port", "8080"]'


def context_of(project: Project, tmp_path: Path, wheel: Path, **kwargs: object) -> BuildContext:
    bundle = build_bundle(project.spec, project.registry, project.entry, tmp_path / "bundle")
    return write_context(bundle, project.spec, tmp_path / "ctx", wheel=wheel, **kwargs)  # type: ignore[arg-type]


def unquote_label(text: str) -> str:
    """Inverse of quote_label, as the Dockerfile parser reads a double-quoted value."""
    assert text.startswith('"') and text.endswith('"')
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def labels_in(dockerfile: str) -> dict[str, str]:
    block = dockerfile.split("\nLABEL ", 1)[1].split("\nCMD ", 1)[0]
    pairs = re.findall(r'([a-z0-9.-]+)=("(?:[^"\\]|\\.)*")', block)
    return {k: unquote_label(v) for k, v in pairs}


def instructions(dockerfile: str) -> list[str]:
    """Logical Dockerfile lines (continuations joined), comments dropped."""
    joined = dockerfile.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_context_layout(project: Project, tmp_path: Path, fake_wheel: Path) -> None:
    ctx = context_of(project, tmp_path, fake_wheel, source="https://git.example/p.git")
    files = sorted(str(p.relative_to(ctx.path)) for p in ctx.path.rglob("*") if p.is_file())
    expected = {
        ".dockerignore",
        "Dockerfile",
        "build/pip.conf",
        "build/requirements.txt",
        "build/precompile.py",
        "wheel/mlcycle_cli-0.1.0-py3-none-any.whl",
        "bundle/bundle.json",
        "bundle/lifecycle.yaml",
        "bundle/model.skops",
    }
    assert expected <= set(files)
    assert set(files) - expected <= {"build/ca-bundle.crt"}
    assert ctx.tag == "cancer-open:1.2.0"
    assert ctx.base == "python:3.11-slim"
    requirements = (ctx.path / "build" / "requirements.txt").read_text().splitlines()
    versions = project.entry.versions
    assert f"scikit-learn=={versions['sklearn']}" in requirements
    # mlcycle's own requirements follow the pins; its extras' do not, nor the wheel itself.
    assert requirements[-2:] == ["pyyaml>=6", 'uvloop>=0.19; sys_platform != "win32"']
    assert not any("pytest" in r or ".whl" in r or "not-a-header" in r for r in requirements)
    pip_conf = (ctx.path / "build" / "pip.conf").read_text()
    assert "file:" not in pip_conf and "/opt/" not in pip_conf
    if ctx.ca_bundle:
        assert "cert = /tmp/mlcycle-build/ca-bundle.crt" in pip_conf


def test_only_the_bundles_own_files_enter_the_context(
    project: Project, tmp_path: Path, fake_wheel: Path
) -> None:
    bundle = build_bundle(project.spec, project.registry, project.entry, tmp_path / "bundle")
    (bundle.path / "secret.env").write_text("TOKEN=1")
    ctx = write_context(bundle, project.spec, tmp_path / "ctx", wheel=fake_wheel)
    assert sorted(p.name for p in (ctx.path / "bundle").iterdir()) == [
        "bundle.json",
        "lifecycle.yaml",
        "model.skops",
    ]


def test_a_tampered_bundle_gets_no_context(
    project: Project, tmp_path: Path, fake_wheel: Path
) -> None:
    bundle = build_bundle(project.spec, project.registry, project.entry, tmp_path / "bundle")
    bundle.artifact_path.write_bytes(b"swapped")
    with pytest.raises(IntegrityError):
        write_context(bundle, project.spec, tmp_path / "ctx", wheel=fake_wheel)


def test_dockerfile_content(project: Project, tmp_path: Path, fake_wheel: Path) -> None:
    ctx = context_of(project, tmp_path, fake_wheel, source="https://git.example/p.git")
    text = ctx.dockerfile.read_text()
    lines = instructions(text)
    # The builder stage, then the image (test_credentials_reach_only_the_builder_stage).
    assert lines[0] == "FROM python:3.11-slim AS deps"
    assert "FROM python:3.11-slim" in lines
    assert "USER 10001:10001" in lines
    assert "EXPOSE 8080" in lines
    assert f"CMD {CMD}" == lines[-1]
    assert any(line.startswith("HEALTHCHECK ") and "/healthz" in line for line in lines)
    assert "COPY bundle/ /app/bundle/" in lines
    labels = labels_in(text)
    assert labels["org.opencontainers.image.version"] == "1.2.0"
    assert labels["org.opencontainers.image.revision"] == project.entry.git_commit
    assert labels["org.opencontainers.image.source"] == "https://git.example/p.git"
    assert labels["org.opencontainers.image.title"] == "cancer-open"
    assert "org.opencontainers.image.created" in labels
    assert labels["io.mlcycle.artifact.sha256"] == project.entry.artifact.sha256
    assert labels == dict(ctx.labels)


def test_no_buildkit_syntax(project: Project, tmp_path: Path, fake_wheel: Path) -> None:
    text = context_of(project, tmp_path, fake_wheel).dockerfile.read_text()
    assert "# syntax" not in text
    for construct in ("--mount", "--chmod", "--link", "--network", "<<", "--parents"):
        assert construct not in text
    keywords = {line.split()[0] for line in instructions(text)}
    classic = {"FROM", "ENV", "COPY", "RUN", "USER", "WORKDIR", "EXPOSE", "HEALTHCHECK"}
    assert keywords <= classic | {"LABEL", "CMD"}


def test_hostile_description_stays_in_a_quoted_label(tmp_path: Path, fake_wheel: Path) -> None:
    benign = make_project(tmp_path / "benign")
    hostile = make_project(tmp_path / "hostile", description=HOSTILE)
    assert hostile.spec.description == HOSTILE
    a = context_of(benign, tmp_path / "a", fake_wheel).dockerfile.read_text()
    b = context_of(hostile, tmp_path / "b", fake_wheel).dockerfile.read_text()
    # Every instruction but LABEL is the same: the string reaches nothing else.
    not_label = [i for i in instructions(a) if not i.startswith("LABEL ")]
    assert not_label == [i for i in instructions(b) if not i.startswith("LABEL ")]
    assert "pwned" not in "\n".join(i for i in instructions(b) if not i.startswith("LABEL "))
    assert labels_in(b)["org.opencontainers.image.description"] == HOSTILE
    # No unescaped `$` or `"` inside the value.
    label_block = b.split("\nLABEL ", 1)[1].split("\nCMD ", 1)[0]
    assert "rm -rf / # \\$(touch" in label_block
    assert re.search(r"(?<!\\)\$", label_block) is None


@pytest.mark.parametrize(
    "field",
    ["revision", "source"],
)
def test_newline_in_a_label_is_refused(
    project: Project, tmp_path: Path, fake_wheel: Path, field: str
) -> None:
    with pytest.raises(UsageError, match="control characters"):
        context_of(project, tmp_path, fake_wheel, **{field: "abc\nRUN touch /pwned"})
    assert not (tmp_path / "ctx").exists()


@pytest.mark.parametrize(
    "base",
    [
        "python:3.11-slim; rm -rf /",
        "python:3.11-slim\nRUN touch /pwned",
        "Python:3.11",
        "python:3.11 AS evil",
        "$(id)",
        "",
        "python:" + "x" * 200,
    ],
)
def test_hostile_base_image_is_refused(
    project: Project, tmp_path: Path, fake_wheel: Path, base: str
) -> None:
    with pytest.raises(UsageError, match="not a valid image reference"):
        context_of(project, tmp_path, fake_wheel, base=base)


@pytest.mark.parametrize(
    "ref",
    [
        "python:3.11-slim",
        "busybox",
        "127.0.0.1:5000/cancer-open:1.2.0",
        "localhost:5000/a/b/c:dev",
        "registry.example.com/team/model-x:1.0.0-rc.1",
        "python@sha256:" + "a" * 64,
        "a__b.c-d:T_ag.1",
    ],
)
def test_valid_references(ref: str) -> None:
    assert check_reference(ref) == ref


@pytest.mark.parametrize("ref", ["UPPER:1", "a:b:c", "a/:1", "-a:1", "a:-1", "a b", "a:1\n"])
def test_invalid_references(ref: str) -> None:
    with pytest.raises(UsageError):
        check_reference(ref)


def test_image_reference_and_registry(project: Project, tmp_path: Path) -> None:
    bundle = build_bundle(project.spec, project.registry, project.entry, tmp_path / "b")
    assert image_reference(project.spec, bundle) == "cancer-open:1.2.0"
    assert image_reference(project.spec, bundle, registry="127.0.0.1:5000") == (
        "127.0.0.1:5000/cancer-open:1.2.0"
    )
    with pytest.raises(UsageError, match="registry address"):
        image_reference(project.spec, bundle, registry="evil.example/$(id)")
    assert check_registry("registry.example.com") == "registry.example.com"
    assert tag_for_registry("cancer-open:1.2.0", "127.0.0.1:5000") == (
        "127.0.0.1:5000/cancer-open:1.2.0"
    )
    assert tag_for_registry("old.example:5000/team/m:1", "127.0.0.1:5000") == (
        "127.0.0.1:5000/team/m:1"
    )


def test_golden_dockerfile() -> None:
    """The rendered Dockerfile for fixed inputs (MLCYCLE_UPDATE_GOLDEN=1 rewrites it)."""
    bundle = Bundle(
        path=Path("/nonexistent"),
        project="cancer-open",
        release="1.2.0",
        generation=3,
        artifact=ArtifactInfo(file="model.skops", format="skops", sha256="ab" * 32, size=1),
        spec_sha256="cd" * 32,
        spec_hash="ef" * 32,
        git_commit="0" * 40,
        versions={"python": "3.11.7", "sklearn": "1.5.0"},
        features=(Feature("a"),),
        task="classification",
        output={"kind": "label"},
        created_at="2026-01-01T00:00:00+00:00",
    )
    labels = {
        "org.opencontainers.image.title": "cancer-open",
        "org.opencontainers.image.version": "1.2.0",
        "org.opencontainers.image.revision": "0" * 40,
        "org.opencontainers.image.created": "2026-01-01T00:00:00+00:00",
        "org.opencontainers.image.description": 'say "hi" for $5',
    }
    text = render_dockerfile(
        bundle, base="python:3.11-slim", labels=labels, mlcycle_version="0.1.0"
    )
    if os.environ.get("MLCYCLE_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_pip_settings_drop_local_paths_and_keep_credentials_for_the_builder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Changed on purpose (issue 10, finding 7): credentials used to be dropped (a private
    # index then silently did not work) while a query-string token was kept and landed in
    # an image layer. Now both are kept for the builder stage, which the image does not
    # inherit (test_credentials_reach_only_the_builder_stage).
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("PIP_INDEX_URL", "https://user:secret@pypi.example/simple")
    monkeypatch.setenv(
        "PIP_EXTRA_INDEX_URL", "file:///opt/pypi/simple https://mirror.example/simple"
    )
    monkeypatch.setenv("PIP_CERT", str(ca))
    monkeypatch.setenv("PIP_TIMEOUT", "60")
    settings = pip_settings()
    assert settings["index-url"] == "https://user:secret@pypi.example/simple"
    assert settings["extra-index-url"] == "https://mirror.example/simple"
    assert settings["cert"] == str(ca)
    assert settings["timeout"] == "60"


def test_credentials_reach_only_the_builder_stage(
    project: Project, tmp_path: Path, fake_wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://user:S3cret@pypi.example/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://h.example/simple?token=T0ken&x=1")
    ctx = context_of(project, tmp_path, fake_wheel)
    pip_conf = ctx.path / "build" / "pip.conf"
    assert "S3cret" in pip_conf.read_text() and "T0ken" in pip_conf.read_text()
    assert pip_conf.stat().st_mode & 0o077 == 0  # readable by its owner only
    # What the result shows is masked.
    assert ctx.index_urls == (
        "https://user:***@pypi.example/simple",
        "https://h.example/simple?token=***&x=1",
    )
    # build/ is copied into the `deps` stage only; `libs` (the trimmed dependencies) and
    # `app` (mlcycle's wheel) are built on it. The image (the last stage) starts from the
    # base again and takes nothing but the installed environment, in two layers: the
    # dependencies from `libs`, then mlcycle from `app` (changed on purpose, issue 11:
    # one layer held both, so every mlcycle change re-shipped all the libraries).
    stages = re.split(r"^FROM ", ctx.dockerfile.read_text(), flags=re.MULTILINE)[1:]
    assert len(stages) == 4 and stages[0].split()[:3] == [
        project.spec.deployment.image.base,
        "AS",
        "deps",
    ]
    assert "COPY build/" in stages[0] and "pip.conf" in stages[0]
    assert stages[1].split()[:3] == ["deps", "AS", "libs"]
    assert stages[2].split()[:3] == ["deps", "AS", "app"]
    assert "COPY build/" not in stages[1] + stages[2]
    final = stages[3]
    assert final.split()[0] == project.spec.deployment.image.base
    assert "build/" not in final and "pip.conf" not in final and "mlcycle-build" not in final
    copies = re.findall(r"^COPY .*$", final, flags=re.MULTILINE)
    assert copies[:2] == [
        "COPY --from=libs /opt/mlcycle /opt/mlcycle",
        "COPY --from=app /opt/mlcycle-app/ /opt/mlcycle/",
    ]
    assert all("--from" not in c for c in copies[2:])


def test_an_onnx_image_installs_its_complete_pins_without_resolving(
    tmp_path: Path, fake_wheel: Path
) -> None:
    from mlcycle.package.dockerfile import SERVING_MODULES, serving_requirements

    # The pins' own requirements are part of the list, installed with --no-deps.
    pins = serving_requirements([], ("onnxruntime==1.17.0",))
    names = {p.split("==")[0] for p in pins}
    assert "onnxruntime" in names and "numpy" in names and "protobuf" in names
    assert "onnxruntime==1.17.0" in pins
    text = (Path(__file__).parents[2] / "templates" / "docker" / "Dockerfile.tmpl").read_text()
    assert "@@install_options" in text and "precompile.py" in text
    assert "numpy" in SERVING_MODULES and "onnxruntime" in SERVING_MODULES


def test_ca_bundle_is_copied_into_the_context(
    project: Project, tmp_path: Path, fake_wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfake\n")
    monkeypatch.setenv("PIP_CERT", str(ca))
    ctx = context_of(project, tmp_path, fake_wheel)
    assert ctx.ca_bundle
    assert (ctx.path / "build" / "ca-bundle.crt").read_text() == ca.read_text()
    pip_conf = (ctx.path / "build" / "pip.conf").read_text()
    assert "cert = /tmp/mlcycle-build/ca-bundle.crt" in pip_conf


def test_a_wheel_without_metadata_is_refused(project: Project, tmp_path: Path) -> None:
    broken = tmp_path / "mlcycle_cli-0.1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(PackagingError, match="not a readable wheel"):
        context_of(project, tmp_path, broken)


def test_a_wheel_that_is_not_mlcycle_is_refused(project: Project, tmp_path: Path) -> None:
    other = tmp_path / "evil-1.0-py3-none-any.whl"
    other.write_bytes(b"")
    with pytest.raises(PackagingError, match="not a wheel of mlcycle"):
        context_of(project, tmp_path, other)


def test_no_engine_suggests_context_only(
    project: Project, tmp_path: Path, fake_wheel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context_of(project, tmp_path, fake_wheel)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(PackagingError, match="no Docker engine is reachable") as info:
        build_image(ctx.path, "cancer-open:1.2.0")
    assert "--context-only" in (info.value.hint or "")
    with pytest.raises(PackagingError, match="no Docker engine is reachable"):
        push_image("cancer-open:1.2.0", "127.0.0.1:5000")


def test_build_needs_a_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="no Dockerfile"):
        build_image(tmp_path, "x:1")


def test_the_image_takes_the_wheel_mlcycle_was_installed_from(tmp_path: Path) -> None:
    """`pip install ./mlcycle_cli-VERSION-py3-none-any.whl` then `mlcycle deploy`: the
    image asked the package index for `mlcycle-cli==VERSION`, which it never had."""
    import hashlib
    import json
    from importlib.metadata import PathDistribution

    import mlcycle
    from mlcycle.package.dockerfile import installed_wheel

    wheel = tmp_path / "dist dir" / f"mlcycle_cli-{mlcycle.__version__}-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"a wheel")
    info = tmp_path / f"mlcycle_cli-{mlcycle.__version__}.dist-info"
    info.mkdir()

    def installed_from(url: str, digest: str) -> Path | None:
        # What pip writes (PEP 610) for an install from a local archive.
        recorded = {"url": url, "archive_info": {"hashes": {"sha256": digest}}}
        (info / "direct_url.json").write_text(json.dumps(recorded))
        return installed_wheel(PathDistribution(info))

    digest = hashlib.sha256(b"a wheel").hexdigest()
    assert installed_from(wheel.as_uri(), digest) == wheel
    assert installed_from(wheel.as_uri(), "0" * 64) is None  # rebuilt since: not that one
    assert installed_from("https://example.com/" + wheel.name, digest) is None
    (info / "direct_url.json").write_text(json.dumps({"url": "file:///src", "dir_info": {}}))
    assert installed_wheel(PathDistribution(info)) is None  # an editable/source install
    wheel.unlink()
    assert installed_from(wheel.as_uri(), digest) is None  # the file is gone


# --- the engine of a shared registry ---------------------------------------------------

EXTRAS_METADATA = """Metadata-Version: 2.3
Name: mlcycle-cli
Version: 0.1.0
Requires-Dist: pyyaml>=6
Requires-Dist: psycopg[binary]>=3.1; extra == "postgres"
Requires-Dist: oras<0.3,>=0.2.43; extra == 'oci'
Requires-Dist: pyarrow>=14; extra == "parquet"
Provides-Extra: oci
Provides-Extra: parquet
Provides-Extra: postgres
"""


@pytest.fixture
def extras_wheel(tmp_path: Path) -> Path:
    import zipfile

    path = tmp_path / "extras" / "mlcycle_cli-0.1.0-py3-none-any.whl"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("mlcycle_cli-0.1.0.dist-info/METADATA", EXTRAS_METADATA)
    return path


def test_the_engine_of_a_shared_registry_holds_the_project_and_the_extras_its_urls_need(
    project: Project, tmp_path: Path, extras_wheel: Path
) -> None:
    """No volume: the image is its own /project (the masked spec, the model code), owned
    by the engine's user, and installs the drivers of the URLs it opens, unmarked (pip
    reads `extra == "oci"` in a requirements file as false)."""
    from mlcycle.package import write_engine_context

    files = {"lifecycle.yaml": "name: x\n", "src/steps.py": "X = 1\n"}
    ctx = write_engine_context(
        project.entry,
        project.spec,
        tmp_path / "ctx",
        wheel=extras_wheel,
        project_files=files,
        extras=("postgres", "oci"),
    )
    assert {
        str(p.relative_to(ctx.path / "project")): p.read_text()
        for p in (ctx.path / "project").rglob("*")
        if p.is_file()
    } == files
    requirements = (ctx.path / "build" / "requirements.txt").read_text().splitlines()
    assert requirements[-3:] == ["pyyaml>=6", "psycopg[binary]>=3.1", "oras<0.3,>=0.2.43"]
    assert not any("pyarrow" in r for r in requirements)
    lines = instructions(ctx.dockerfile.read_text())
    assert "COPY --chown=10001:10001 project/ /project/" in lines
    assert "from the shared registry at run time" in ctx.dockerfile.read_text()

    # Without files, the project is mounted and nothing is copied (as before).
    plain = write_engine_context(project.entry, project.spec, tmp_path / "c2", wheel=extras_wheel)
    assert not (plain.path / "project").exists()
    assert not any(
        line.startswith("COPY --chown") for line in instructions(plain.dockerfile.read_text())
    )
    assert "oras" not in (plain.path / "build" / "requirements.txt").read_text()


def test_an_engine_context_refuses_an_unknown_extra_and_paths_outside_the_project(
    project: Project, tmp_path: Path, extras_wheel: Path
) -> None:
    from mlcycle.package import write_engine_context

    with pytest.raises(PackagingError, match=r"has no extra \[s3\]"):
        write_engine_context(
            project.entry, project.spec, tmp_path / "a", wheel=extras_wheel, extras=("s3",)
        )
    for path in ("../etc/passwd", "/etc/passwd"):
        with pytest.raises(UsageError, match="not a path inside the project"):
            write_engine_context(
                project.entry,
                project.spec,
                tmp_path / "b",
                wheel=extras_wheel,
                project_files={path: "x"},
            )


# --- mlcycle's wheel, built from a checkout ---------------------------------------------


# What the wheel is built from, as mlcycle's pyproject.toml says it; a backend that does
# not exist, so that a build fails at once.
PYPROJECT = """[build-system]
requires = []
build-backend = "no_such_backend"

[project]
name = "mlcycle-cli"
readme = "README.md"

[tool.hatch.build.targets.wheel]
packages = ["mlcycle"]

[tool.hatch.build.targets.wheel.force-include]
"templates" = "mlcycle/_data/templates"
"""


def test_a_wheel_built_from_a_checkout_is_reused_until_a_source_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deploy from a checkout built mlcycle's wheel every time (10 to 15 s of CPU)."""
    from mlcycle.package.dockerfile import source_digest, source_wheel, wheel_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checkout = tmp_path / "checkout"  # pip cannot build this one: a build raises at once
    for name, text in {
        "pyproject.toml": PYPROJECT,
        "README.md": "readme\n",
        "mlcycle/__init__.py": "",
        "mlcycle/cli/app.py": "app = 1\n",
        "templates/open/lifecycle.yaml": "name: x\n",
    }.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(text)
    built = b"the wheel built from exactly these sources"
    cached = wheel_cache() / source_digest(checkout) / "mlcycle_cli-9.9.9-py3-none-any.whl"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(built)

    wheel = source_wheel(tmp_path / "context", checkout)
    assert wheel == tmp_path / "context" / cached.name
    assert wheel.read_bytes() == built

    # Bytecode caches are not sources.
    (checkout / "mlcycle" / "__pycache__").mkdir()
    (checkout / "mlcycle" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    assert source_wheel(tmp_path / "again", checkout).read_bytes() == built

    # An edited, an added or a removed source, or a mode change, is another wheel.
    digest = source_digest(checkout)
    for change in (
        lambda: (checkout / "mlcycle" / "cli" / "app.py").write_text("app = 2\n"),
        lambda: (checkout / "mlcycle" / "new.py").write_text(""),
        lambda: (checkout / "templates" / "open" / "lifecycle.yaml").unlink(),
        lambda: (checkout / "mlcycle" / "__init__.py").chmod(0o755),
        lambda: (checkout / "README.md").write_text("readme, edited\n"),
    ):
        change()
        assert source_digest(checkout) != digest
        digest = source_digest(checkout)
    (checkout / "notes.txt").write_text("not built into the wheel")
    assert source_digest(checkout) == digest
    with pytest.raises(PackagingError, match="building mlcycle's wheel failed"):
        source_wheel(tmp_path / "changed", checkout)
    # No cache to be had (no HOME, no XDG_CACHE_HOME, no passwd entry): it builds.
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME")
    monkeypatch.setattr("pwd.getpwuid", lambda uid: (_ for _ in ()).throw(KeyError(uid)))
    with pytest.raises(PackagingError, match="building mlcycle's wheel failed"):
        source_wheel(tmp_path / "homeless", checkout)


def test_the_wheel_cache_keeps_the_most_recently_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlcycle.package.dockerfile import (
        WHEEL_CACHE_SIZE,
        source_digest,
        source_wheel,
        wheel_cache,
    )

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    checkout = tmp_path / "checkout"
    (checkout / "mlcycle").mkdir(parents=True)
    (checkout / "mlcycle" / "__init__.py").write_text("")
    (checkout / "pyproject.toml").write_text(PYPROJECT)
    current = source_digest(checkout)
    others = [f"{n:064x}" for n in range(WHEEL_CACHE_SIZE + 1)]
    # Older states of the sources, newest first; these sources' wheel is the oldest.
    for age, name in enumerate([*others, current]):
        folder = wheel_cache() / name
        folder.mkdir(parents=True)
        (folder / "mlcycle_cli-0.1.0-py3-none-any.whl").write_bytes(name.encode())
        os.utime(folder, (1_000_000 - age, 1_000_000 - age))

    assert source_wheel(tmp_path / "context", checkout).read_bytes() == current.encode()
    kept = {p.name for p in wheel_cache().iterdir()}
    assert kept == {current, *others[: WHEEL_CACHE_SIZE - 1]}  # the least recently used go
