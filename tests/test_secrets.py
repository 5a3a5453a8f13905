"""Issue 10, finding 7: no credential in a message, a record, a listing or an image.

One masking rule (`mlcycle.redact`), used wherever a URL is shown or recorded;
`${env:NAME}` in the spec keeps secrets out of the file; `validate` warns about a
literal one; bundles carry the spec with its secrets masked.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlcycle.errors import ServingError
from mlcycle.redact import has_password, mask_url, mask_urls_in, scrub, secrets_in
from mlcycle.store.predictions import PredictionStore
from tests.learn.conftest import mlcycle

SECRET = "S3cretPw"
STORE = f"postgresql://app:{SECRET}@127.0.0.1:1/db"  # nothing listens on port 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (STORE, "postgresql://app:***@127.0.0.1:1/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),  # '@' in the password
        # SQLAlchemy reads these passwords up to the '@'; urlsplit stops at '/'.
        ("postgresql://u:/S3cret@127.0.0.1/db", "postgresql://u:***@127.0.0.1/db"),
        ("postgresql://u:12/ab@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("https://h/simple?token=abc&x=1", "https://h/simple?token=***&x=1"),
        (
            "sqlite:///e.db?password=a&API_KEY=b&client_secret=c&sig=d&mode=ro",
            "sqlite:///e.db?password=***&API_KEY=***&client_secret=***&sig=***&mode=ro",
        ),
        # Nothing secret: kept exactly as written (no re-quoting).
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://app@db/x?sslmode=require", "postgresql://app@db/x?sslmode=require"),
        # A reference to a secret is not one.
        ("postgresql://app:${env:PGPASSWORD}@db/x", "postgresql://app:${env:PGPASSWORD}@db/x"),
        # Unparseable: hidden whole, but for the scheme.
        (f"postgresql:/app:{SECRET}@h/db", "postgresql:***"),
        (f"http://h:port{SECRET}/", "http:***"),
        (f"app:{SECRET}@h", "app:***"),
        (f"{SECRET} with spaces", "***"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_secrets_and_scrub() -> None:
    assert secrets_in("postgresql://u:p%40ss@h/db") == ("p%40ss", "p@ss")
    assert has_password(STORE) and not has_password("postgresql://u:${env:X}@h/db")
    message = f"could not parse {STORE!r}; password {SECRET} refused"
    assert SECRET not in scrub(message, STORE)
    assert scrub("unchanged", None, "") == "unchanged"
    text = f"url: {STORE} # db\nother: postgresql://u:${{env:PW}}@h/db\n"
    assert mask_urls_in(text) == (
        "url: postgresql://app:***@127.0.0.1:1/db # db\nother: postgresql://u:${env:PW}@h/db\n"
    )


_PASSWORD = st.text(
    # '/', '?' and '#' included: SQLAlchemy reads them as part of the password.
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="@:"),
    min_size=4,
    max_size=20,
).map(lambda text: "Z9" + text)  # never a piece of the URL around it


@given(password=_PASSWORD, token=_PASSWORD, quoted=st.booleans())
def test_no_password_survives_masking(password: str, token: str, quoted: bool) -> None:
    secret = quote(password, safe="") if quoted else password
    value = quote(token, safe="")
    url = f"postgresql+psycopg://app:{secret}@db.internal:5432/x?sslmode=require&api_token={value}"
    shown = mask_url(url)
    assert password not in shown and secret not in shown and value not in shown
    # Parsed, the rest stays readable; not parsed (a '[' makes urllib refuse the
    # host), it is hidden whole. Either way the scheme says what it was.
    assert shown.startswith(("postgresql+psycopg://app:***@db.internal:5432/x?", "postgresql+"))
    assert password not in scrub(f"failed: {url} ({password})", url)


@pytest.mark.parametrize("url", [STORE, f"postgresql:/app:{SECRET}@127.0.0.1:1/db"])
def test_the_store_does_not_print_its_password(url: str) -> None:
    with pytest.raises(ServingError) as caught:
        PredictionStore(url)
    assert SECRET not in str(caught.value)
    assert "cannot open the prediction store postgresql" in str(caught.value)


# --- end to end, as a user runs it ---------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adaptive project whose data source URL carries `?password=`, released once."""
    root = tmp_path_factory.mktemp("secrets") / "shop"
    assert mlcycle("init", "shop", "--pattern", "adaptive", "-d", root).code == 0
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    text = text.replace(
        "url: sqlite:///data/events.db #",
        f'url: "sqlite:///data/events.db?password={SECRET}&mode=ro" #',
        1,
    )
    spec.write_text(text)
    subprocess.run(["git", "-C", str(root), "commit", "-qam", "password"], check=True)
    result = mlcycle("release", cwd=root)
    assert result.code == 0, result.err
    assert SECRET not in result.out + result.err
    return root


def _edit(root: Path, old: str, new: str) -> str:
    spec = root / "lifecycle.yaml"
    original = spec.read_text()
    assert old in original
    spec.write_text(original.replace(old, new, 1))
    return original


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_data_source_password_is_masked_in_records_and_listings(project: Path) -> None:
    for path in (project / ".mlcycle").rglob("*.json"):
        assert SECRET not in path.read_text(), path
    for verb in ("models", "history"):
        result = mlcycle(verb, "--json", cwd=project)
        assert result.code == 0, result.err
        assert SECRET not in result.out
    listed = mlcycle("models", "--json", cwd=project).out
    assert "sqlite:///data/events.db?password=***&mode=ro" in listed
    plan = mlcycle("plan", cwd=project)
    assert plan.code == 0 and SECRET not in plan.out


# (An unparseable URL with a scheme: test_the_store_does_not_print_its_password.)
@pytest.mark.parametrize("store", [STORE, f"nonsense {SECRET}"])
def test_serve_does_not_print_the_store_password(project: Path, store: str) -> None:
    result = mlcycle("serve", "--model", "latest", "--store", store, "--port", "0", cwd=project)
    assert result.code == 1
    assert "error:" in result.err
    assert SECRET not in result.out + result.err


def test_evaluate_and_report_do_not_print_the_store_password(project: Path) -> None:
    original = _edit(project, "url: sqlite:///.mlcycle/store.db", f"url: {STORE}")
    try:
        for args in (("evaluate", "--production"), ("report", "-o", "r.html")):
            result = mlcycle(*args, cwd=project)
            assert result.code == 1, result.err
            assert "postgresql://app:***@127.0.0.1:1/db" in result.err
            assert SECRET not in result.out + result.err
        # validate warns, pointing at the URL, with the remedy.
        checked = mlcycle("validate", "--json", cwd=project)
        assert checked.code == 0 and SECRET not in checked.out
        warnings = [w for w in checked.json()["warnings"] if w["rule"] == "literal-secret"]
        assert {w["line"] for w in warnings} == {
            _line(original, "url: sqlite:///.mlcycle/store.db"),
            _line(original, 'url: "sqlite:///data/events.db?password='),
        }
        assert all("${env:" in w["hint"] for w in warnings)
    finally:
        (project / "lifecycle.yaml").write_text(original)


def test_a_spec_takes_secrets_from_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = _edit(project, "url: sqlite:///.mlcycle/store.db", "url: ${env:SHOP_STORE_URL}")
    try:
        # validate and plan need no secret...
        assert mlcycle("validate", cwd=project).code == 0
        assert mlcycle("plan", cwd=project).code == 0
        # ...a command that uses the store does, and says which and where.
        result = mlcycle("evaluate", "--production", cwd=project)
        assert result.code == 2
        line = _line(original, "url: sqlite:///.mlcycle/store.db")
        assert re.search(
            rf"lifecycle\.yaml:{line}:8: error: environment variable SHOP_STORE_URL is not set",
            result.err,
        ), result.err
        monkeypatch.setenv("SHOP_STORE_URL", f"sqlite:///{project / 'other.db'}")
        done = mlcycle("evaluate", "--production", cwd=project)
        assert done.code == 0, done.err
        assert (project / "other.db").is_file()  # the resolved URL was used...
        # ...and never written back.
        assert "${env:SHOP_STORE_URL}" in (project / "lifecycle.yaml").read_text()
    finally:
        (project / "lifecycle.yaml").write_text(original)


def test_a_bundle_carries_no_literal_secret(tmp_path: Path) -> None:
    from mlcycle.package import build_bundle, load_bundle
    from mlcycle.spec import load_spec
    from tests.package.conftest import make_project

    made = make_project(tmp_path / "open")
    spec_file = made.root / "lifecycle.yaml"
    spec_file.write_text(spec_file.read_text().replace("sqlite:///.mlcycle/store.db", STORE))
    spec = load_spec(made.root)
    bundle = build_bundle(spec, made.registry, made.entry, tmp_path / "bundle")
    bundled = bundle.spec_path.read_text()
    assert SECRET not in bundled
    assert f"url: {mask_url(STORE)}" in bundled
    load_bundle(bundle.path)  # its recorded SHA-256 is that of the masked copy
    for path in bundle.path.rglob("*"):
        assert SECRET.encode() not in path.read_bytes(), path


def test_a_registry_url_from_the_environment_needs_no_secret_of_the_spec_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pods of `deploy --k8s` get MLCYCLE_REGISTRY_URL (and MLCYCLE_ARTIFACTS_URL)
    from a Secret, and the spec's own `registry.url:
    postgresql://app:${env:PGPASSWORD}@db/x` from the ConfigMap, without PGPASSWORD:
    every command stopped at `environment variable PGPASSWORD is not set` (exit 2)."""
    from mlcycle import api
    from mlcycle.errors import SpecError
    from mlcycle.scaffold import init_project

    root = tmp_path / "shop"
    init_project("shop", pattern="open", directory=root, git=False)
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    start = text.index("\nregistry:")
    end = text.index("\n\n", start)
    spec.write_text(
        text[:start]
        + "\nregistry:\n  url: postgresql://app:${env:SHOP_PGPASSWORD}@db.invalid/x\n"
        + "  artifacts: oci://${env:SHOP_OCI_HOST}/team/shop"
        + text[end:]
    )
    monkeypatch.delenv("SHOP_PGPASSWORD", raising=False)
    monkeypatch.delenv("SHOP_OCI_HOST", raising=False)
    monkeypatch.delenv("MLCYCLE_REGISTRY_URL", raising=False)
    monkeypatch.delenv("MLCYCLE_ARTIFACTS_URL", raising=False)
    with pytest.raises(SpecError) as refused:
        api.models(root)  # without the overrides, the references are still required
    said = " ".join(d.message for d in refused.value.diagnostics)
    assert "SHOP_PGPASSWORD is not set" in said and "SHOP_OCI_HOST is not set" in said

    monkeypatch.setenv("MLCYCLE_REGISTRY_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("MLCYCLE_ARTIFACTS_URL", f"file:{tmp_path / 'artifacts'}")
    assert api.models(root).entries == ()
    assert (tmp_path / "registry.db").is_file()  # the variable's registry was opened


def test_a_store_url_from_the_environment_wins_for_the_agents_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine container or an agent's pod gets MLCYCLE_STORE_URL from a Secret and the
    spec's `store.url: postgresql://app:${env:PGPASSWORD}@db/x` without PGPASSWORD: every
    command stopped at `PGPASSWORD is not set`, and `evaluate --production` (the agents'
    CronJob) read the spec's store, never the variable's."""
    from mlcycle import api
    from mlcycle.errors import SpecError
    from mlcycle.scaffold import init_project

    root = tmp_path / "live"
    init_project("live", pattern="adaptive", directory=root, git=False)
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    spec.write_text(
        text.replace(
            "url: sqlite:///.mlcycle/store.db",
            "url: postgresql://app:${env:LIVE_PGPASSWORD}@db.invalid/x",
        )
    )
    monkeypatch.delenv("LIVE_PGPASSWORD", raising=False)
    monkeypatch.delenv("MLCYCLE_STORE_URL", raising=False)
    with pytest.raises(SpecError) as refused:
        api.evaluate_production(root, drift=False)
    said = " ".join(d.message for d in refused.value.diagnostics)
    assert "LIVE_PGPASSWORD is not set" in said

    store = tmp_path / "team-store.db"
    monkeypatch.setenv("MLCYCLE_STORE_URL", f"sqlite:///{store}")
    report = api.evaluate_production(root, drift=False)
    assert report.overall == ()
    assert store.is_file()  # the variable's store was opened


@pytest.mark.parametrize("url", [f"s3://key:{SECRET}@h/x", f"oci:key:{SECRET}@h/x"])
def test_a_bad_artifact_store_url_is_named_without_its_password(url: str, tmp_path: Path) -> None:
    """`MLCYCLE_ARTIFACTS_URL=s3://KEY:SECRET@...` printed `unknown artifact store URL
    's3://KEY:SECRET@...'`."""
    from mlcycle.errors import UsageError
    from mlcycle.registry.blobs import open_blob_store

    with pytest.raises(UsageError) as refused:
        open_blob_store(url, base=tmp_path, cache=tmp_path / "cache")
    assert SECRET not in refused.value.message and "***" in refused.value.message
