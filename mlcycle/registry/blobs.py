"""Content-addressed storage for a shared registry's files (models, ONNX forms, code).

A blob is named by the SHA-256 of its bytes (`sha256:HEX`), so a store never
holds two copies, a reader checks what it got against the name it asked for,
and a writer that dies mid-way leaves nothing a reader could take for a blob
(a blob becomes visible only complete, under its digest). Stores are chosen by
URL, one builder per scheme, the way the registry backends are:

    file:DIR                a directory (one machine, or a shared file system)
    oci://HOST[:PORT]/REPO  an OCI distribution registry (see oci.py)

Readers keep what they pulled in a local cache keyed by digest, so serving
reads a model from the network once; a writer keeps there what it stored, so the
next command on its machine (an update warm-starting from the generation a release
just pushed, an engine started in the same clone) reads it without the network.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Final

from mlcycle.errors import IntegrityError, RegistryError, UsageError
from mlcycle.redact import mask_url

DIGEST_RE: Final = re.compile(r"^sha256:[0-9a-f]{64}$")


def digest_of(path: Path) -> str:
    """`sha256:HEX` of a file's bytes."""
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def check_digest(digest: str) -> str:
    """The digest itself, or RegistryError when it is not `sha256:` and 64 hex digits."""
    if not DIGEST_RE.match(digest):
        raise RegistryError(f"not a blob digest: {digest!r} (expected sha256: and 64 hex digits)")
    return digest


class BlobStore(ABC):
    """Files named by their SHA-256; put is idempotent, fetch verifies."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache  # verified local copies, one file per digest

    @abstractmethod
    def describe(self) -> str:
        """Where the blobs live, for messages (no credentials)."""

    @abstractmethod
    def has(self, digest: str) -> bool:
        """Whether the store holds this blob."""

    @abstractmethod
    def _upload(self, path: Path, digest: str) -> None:
        """Store the file under its digest; visible only once complete."""

    @abstractmethod
    def _download(self, digest: str, dest: Path) -> None:
        """Write the blob's bytes to `dest` (a fresh temporary path)."""

    def put(self, path: Path) -> str:
        """Store a file; returns its digest. Storing the same bytes twice is a no-op.

        The file also goes to the local cache: these bytes are the blob (their digest
        was just computed), so this machine never pulls back what it pushed.
        """
        digest = digest_of(path)
        if not self.has(digest):
            self._upload(path, digest)
        self._keep(path, digest)
        return digest

    def _cached(self, digest: str) -> Path:
        return self.cache / digest.replace(":", "-")

    def _keep(self, path: Path, digest: str) -> None:
        """Copy `path` (whose digest is `digest`) into the cache, unless it is there."""
        cached = self._cached(digest)
        if cached.is_file():
            return  # fetch checks it before use; a damaged copy is pulled again then
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = self.cache / f".{cached.name}.{uuid.uuid4().hex}.part"
        try:
            shutil.copyfile(path, partial)
            partial.replace(cached)
        finally:
            partial.unlink(missing_ok=True)

    def fetch(self, digest: str) -> Path:
        """A local, verified copy of the blob (from the cache when already pulled or put)."""
        check_digest(digest)
        cached = self._cached(digest)
        if cached.is_file() and digest_of(cached) == digest:
            return cached
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = self.cache / f".{cached.name}.{uuid.uuid4().hex}.part"
        try:
            self._download(digest, partial)
            got = digest_of(partial)
            if got != digest:
                raise IntegrityError(
                    f"{self.describe()}: blob {digest} arrived with digest {got}: "
                    "the store's copy is damaged or was changed",
                    hint="release the model again to store a good copy",
                )
            partial.replace(cached)
        finally:
            partial.unlink(missing_ok=True)
        return cached


class DirectoryBlobStore(BlobStore):
    """Blobs as files `sha256-HEX` in one directory, written by rename."""

    def __init__(self, root: Path, *, cache: Path | None = None) -> None:
        super().__init__(cache if cache is not None else root)
        self.root = root

    def describe(self) -> str:
        return f"file:{self.root}"

    def _path(self, digest: str) -> Path:
        return self.root / check_digest(digest).replace(":", "-")

    def has(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def _upload(self, path: Path, digest: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self._path(digest)
        partial = self.root / f".{target.name}.{uuid.uuid4().hex}.part"
        try:
            with path.open("rb") as src, partial.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)

    def _download(self, digest: str, dest: Path) -> None:
        source = self._path(digest)
        if not source.is_file():
            raise RegistryError(f"{self.describe()}: no blob {digest}")
        with source.open("rb") as src, dest.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)

    def _keep(self, path: Path, digest: str) -> None:
        pass  # the directory is its own cache: what was put is already there

    def fetch(self, digest: str) -> Path:
        # The directory is its own cache: verify in place rather than copy.
        path = self._path(digest)
        if not path.is_file():
            raise RegistryError(f"{self.describe()}: no blob {digest}")
        if digest_of(path) != digest:
            raise IntegrityError(
                f"{self.describe()}: blob {digest} is damaged (its bytes no longer match)",
                hint="release the model again to store a good copy",
            )
        return path


# scheme → builder(url, base directory for relative paths, cache directory)
BlobStoreBuilder = Callable[[str, Path, Path], BlobStore]
_BUILDERS: dict[str, BlobStoreBuilder] = {}


def register_scheme(scheme: str, builder: BlobStoreBuilder) -> None:
    """Make `open_blob_store` build URLs of this scheme with `builder`."""
    _BUILDERS[scheme] = builder


def _directory(url: str, base: Path, cache: Path) -> BlobStore:
    path = Path(url.removeprefix("file:"))
    return DirectoryBlobStore(path if path.is_absolute() else base / path)


register_scheme("file", _directory)


def open_blob_store(url: str, *, base: Path, cache: Path) -> BlobStore:
    """The store a URL names; `base` anchors relative directories, `cache` holds pulled copies."""
    scheme = url.split(":", 1)[0] if ":" in url else ""
    if scheme == "oci" and "oci" not in _BUILDERS:
        # The OCI store registers itself when imported; it needs the oras client.
        importlib.import_module("mlcycle.registry.oci")
    builder = _BUILDERS.get(scheme)
    if builder is None:
        known = ", ".join(f"{s}:" for s in sorted({*_BUILDERS, "oci"}))

        # Masked: MLCYCLE_ARTIFACTS_URL=s3://KEY:SECRET@... was shown as written.
        raise UsageError(
            f"unknown artifact store URL {mask_url(url)!r}",
            hint=f"use one of the schemes {known}",
        )
    return builder(url, base, cache)


__all__ = [
    "BlobStore",
    "DirectoryBlobStore",
    "check_digest",
    "digest_of",
    "open_blob_store",
    "register_scheme",
]
