"""The content-addressed blob store every shared registry writes its files to."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.errors import IntegrityError, RegistryError, UsageError
from mlcycle.registry.blobs import DirectoryBlobStore, digest_of, open_blob_store


def test_put_names_a_blob_by_its_sha256_and_fetch_returns_the_same_bytes(tmp_path: Path) -> None:
    store = open_blob_store("file:blobs", base=tmp_path, cache=tmp_path / "cache")
    source = tmp_path / "model.skops"
    source.write_bytes(b"weights" * 1000)
    digest = store.put(source)
    assert digest == digest_of(source)
    assert store.has(digest)
    assert store.put(source) == digest  # idempotent
    assert store.fetch(digest).read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "blobs").iterdir()] == [digest.replace(":", "-")]


def test_a_changed_blob_is_refused_not_served(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    source = tmp_path / "a"
    source.write_bytes(b"one")
    digest = store.put(source)
    (tmp_path / "blobs" / digest.replace(":", "-")).write_bytes(b"two")
    with pytest.raises(IntegrityError, match="damaged"):
        store.fetch(digest)


def test_missing_blob_and_malformed_digest_say_so(tmp_path: Path) -> None:
    store = DirectoryBlobStore(tmp_path / "blobs")
    with pytest.raises(RegistryError, match=r"no blob sha256:0{64}"):
        store.fetch("sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="not a blob digest"):
        store.fetch("../../etc/passwd")


def test_unknown_scheme_is_a_usage_error_listing_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        open_blob_store("s3://bucket/x", base=tmp_path, cache=tmp_path)
    assert caught.value.hint == "use one of the schemes file:, oci:"
