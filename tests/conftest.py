"""Shared fixtures: an isolated environment for every test session, and file-tree helpers."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests import scheduling
from tests.forked import Zygote
from tests.once import made_once, shared_root


def pytest_configure(config: pytest.Config) -> None:
    scheduling.configure(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    scheduling.order_and_group(items)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return scheduling.make_scheduler(config, log)


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temp HOME, no system git config, a fixed git identity, plain 80-column output;
    a cache the run's workers share (mlcycle's wheel, built from this checkout by the
    first test that deploys, then reused by every other)."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ.update(
        {
            "HOME": str(home),
            "XDG_CACHE_HOME": str(shared_root(tmp_path_factory) / "cache"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "mlcycle tests",
            "GIT_AUTHOR_EMAIL": "tests@mlcycle.invalid",
            "GIT_COMMITTER_NAME": "mlcycle tests",
            "GIT_COMMITTER_EMAIL": "tests@mlcycle.invalid",
            "NO_COLOR": "1",
            "COLUMNS": "80",
            "TERM": "dumb",
        }
    )
    os.environ.pop("MLCYCLE_DEBUG", None)
    os.environ.pop("MLCYCLE_API_TOKEN", None)  # a developer's token would guard test servers
    # Tests run in CI too: its variables would name a branch for a detached HEAD.
    for marker in ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE", "CIRCLECI"):
        os.environ.pop(marker, None)
    for marker in ("TF_BUILD", "BITBUCKET_BUILD_NUMBER", "TRAVIS"):
        os.environ.pop(marker, None)
    (home / ".gitconfig").write_text(
        "[user]\n\tname = mlcycle tests\n\temail = tests@mlcycle.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote]:
    """One warm interpreter per worker that forks the processes of race and crash tests
    (tests/forked.py): each a real process, without paying the imports each time."""
    warm = Zygote()
    try:
        yield warm
    finally:
        warm.close()


@pytest.fixture(scope="session")
def release_template(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """A project made by `mlcycle init NAME --pattern PATTERN` and `mlcycle release
    RELEASE_ARGS`, once per session for each (pattern, name, args): never to be changed,
    copy it (`released_project`). An init and a release cost one to two seconds of CPU and
    many tests only need a released project to start from; `made_once` shares them
    between pytest-xdist's workers too."""
    from tests.inprocess import run_in_process  # imports the CLI: only for tests that use it

    def template(pattern: str, name: str, *release_args: str) -> Path:
        def make(path: Path) -> None:
            root = path / name
            code, _, err = run_in_process(["init", name, "--pattern", pattern, "-d", str(root)])
            assert code == 0, err
            code, _, err = run_in_process(["release", *release_args], cwd=root)
            assert code == 0, err

        key = hashlib.sha256(repr((pattern, name, release_args)).encode()).hexdigest()[:12]
        return made_once(tmp_path_factory, f"released-{name}-{key}", make) / name

    return template


@pytest.fixture
def released_project(release_template: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    """`released_project(PATTERN, NAME, *RELEASE_ARGS)`: a fresh copy, at tmp_path/NAME, of
    what `mlcycle init NAME --pattern PATTERN && mlcycle release RELEASE_ARGS` makes (git
    repository, tag and registry; nothing in them names the directory)."""

    def copy(pattern: str, name: str, *release_args: str) -> Path:
        target = tmp_path / name
        shutil.copytree(release_template(pattern, name, *release_args), target, symlinks=True)
        return target

    return copy


@pytest.fixture(scope="session")
def _hand_trained_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.inprocess import run_in_process

    def make(path: Path) -> None:
        root = path / "byhand"
        code, _, err = run_in_process(
            ["init", "byhand", "--pattern", "interactive", "-d", str(root)]
        )
        assert code == 0, err
        # As a user runs it: its own interpreter (a scikit-learn import and a fit, once).
        for command in (
            [sys.executable, "train_by_hand.py"],
            ["git", "add", "model.skops"],
            ["git", "commit", "-qm", "model trained by hand"],
        ):
            subprocess.run(command, cwd=root, check=True, capture_output=True)

    return made_once(tmp_path_factory, "hand-trained", make) / "byhand"


@pytest.fixture
def hand_trained(_hand_trained_template: Path, tmp_path: Path) -> Path:
    """An interactive project `byhand` from `mlcycle init`, its model trained by hand
    (`python train_by_hand.py`) and committed, nothing released: a fresh copy at
    tmp_path/byhand of one made once per session."""
    target = tmp_path / "byhand"
    shutil.copytree(_hand_trained_template, target, symlinks=True)
    return target


@pytest.fixture(scope="session")
def mlcycle_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mlcycle's wheel, built from this source tree once for the run (and kept in the
    run's wheel cache, where a deploy from this checkout finds it)."""
    from mlcycle.package.dockerfile import source_tree, source_wheel

    def make(folder: Path) -> None:
        root = source_tree()
        assert root is not None, "the tests run from mlcycle's source checkout"
        source_wheel(folder, root)

    (wheel,) = made_once(tmp_path_factory, "wheel", make).glob("*.whl")
    return wheel


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real MLflow tracking server (tests/mlflow_server.py) for every test that needs
    one: a start costs about 10 s of CPU (its database migrations). Tests keep apart by
    experiment (the project's name) and registered-model names."""
    from tests.mlflow_server import start_mlflow_server

    with start_mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


def build_file_tree(root: Path, spec: Mapping[str, str | bytes | Mapping]) -> Path:
    """Create files under `root` from a dict: name → text, bytes, or a nested dict (a folder)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in spec.items():
        path = root / name
        if isinstance(content, Mapping):
            build_file_tree(path, content)
        elif isinstance(content, bytes):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    return root


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a fresh, empty database on a real PostgreSQL server.

    The server is `MLCYCLE_TEST_POSTGRES_URL` (`make test` starts one with
    scripts/postgres-env.sh and sets it); each test gets a database of its own,
    dropped afterwards. Without a server the test is skipped, or fails when
    MLCYCLE_REQUIRE_POSTGRES=1 (as in `make test`).
    """
    with fresh_postgres_database() as url:
        yield url


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """What `postgres_url` yields, for fixtures of a wider scope."""
    import uuid

    import sqlalchemy as sa

    def unavailable(reason: str) -> None:
        if os.environ.get("MLCYCLE_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (MLCYCLE_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)

    server = os.environ.get("MLCYCLE_TEST_POSTGRES_URL")
    if not server:
        unavailable("no PostgreSQL server: set MLCYCLE_TEST_POSTGRES_URL (make test does)")
    assert server is not None
    name = f"mlcycle_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.SQLAlchemyError as e:
        admin.dispose()
        unavailable(f"cannot create a database on {server}: {e}")
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
