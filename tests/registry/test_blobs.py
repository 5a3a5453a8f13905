"""The content-addressed blob store every shared registry writes its files to.

`BlobStoreContract` is what every store honours; `file:` and `oci:` (the real
distribution registry on 127.0.0.1:5000, one fresh repository per test) each
supply only the URL. What only one store does is tested beside its class.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from mlcycle.errors import ExitCode, IntegrityError, RegistryError, UsageError
from mlcycle.extras import MissingExtraError
from mlcycle.registry.blobs import BlobStore, DirectoryBlobStore, digest_of, open_blob_store
from mlcycle.registry.oci import OciBlobStore, OciLocation

OCI_REGISTRY = ("127.0.0.1", 5000)  # what `make test` / scripts/docker-env.sh runs

Open = Callable[..., BlobStore]


class BlobStoreContract:
    """Behaviour of the BlobStore interface, whatever stores the bytes."""

    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        raise NotImplementedError("a store's test class supplies its URL")

    @pytest.fixture
    def open_store(self, url: str, tmp_path: Path) -> Open:
        """Opens the store anew (as another process would), with its own cache by default."""

        def open_(cache: str = "cache", at: str | None = None) -> BlobStore:
            return open_blob_store(at or url, base=tmp_path, cache=tmp_path / cache)

        return open_

    @pytest.fixture
    def source(self, tmp_path: Path) -> Path:
        path = tmp_path / "model.skops"
        path.write_bytes(uuid.uuid4().bytes * 4096)  # unique bytes: a blob no test pushed
        return path

    def test_put_names_a_blob_by_its_sha256_and_fetch_returns_the_same_bytes(
        self, open_store: Open, source: Path
    ) -> None:
        store = open_store()
        digest = store.put(source)
        assert digest == digest_of(source)
        assert store.has(digest)
        # Another process (another cache) reads the same bytes back.
        assert open_store(cache="other").fetch(digest).read_bytes() == source.read_bytes()

    def test_put_is_idempotent(self, open_store: Open, source: Path) -> None:
        store = open_store()
        assert store.put(source) == store.put(source) == open_store().put(source)
        assert store.fetch(digest_of(source)).read_bytes() == source.read_bytes()

    def test_a_blob_never_stored_is_not_there_and_fetching_it_says_so(
        self, open_store: Open
    ) -> None:
        store = open_store()
        missing = "sha256:" + "0" * 64
        assert not store.has(missing)
        with pytest.raises(RegistryError, match=r"no blob sha256:0{64}") as caught:
            store.fetch(missing)
        assert caught.value.exit_code is ExitCode.RUNTIME

    def test_a_malformed_digest_is_refused_before_any_lookup(self, open_store: Open) -> None:
        with pytest.raises(RegistryError, match="not a blob digest"):
            open_store().fetch("../../etc/passwd")


class TestDirectoryBlobStore(BlobStoreContract):
    @pytest.fixture
    def url(self) -> str:
        return "file:blobs"

    def test_blobs_are_files_named_by_digest(self, tmp_path: Path, source: Path) -> None:
        digest = DirectoryBlobStore(tmp_path / "blobs").put(source)
        assert [p.name for p in (tmp_path / "blobs").iterdir()] == [digest.replace(":", "-")]

    def test_a_changed_blob_is_refused_not_served(self, tmp_path: Path) -> None:
        store = DirectoryBlobStore(tmp_path / "blobs")
        source = tmp_path / "a"
        source.write_bytes(b"one")
        digest = store.put(source)
        (tmp_path / "blobs" / digest.replace(":", "-")).write_bytes(b"two")
        with pytest.raises(IntegrityError, match="damaged"):
            store.fetch(digest)


def test_unknown_scheme_is_a_usage_error_listing_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        open_blob_store("s3://bucket/x", base=tmp_path, cache=tmp_path)
    assert caught.value.hint == "use one of the schemes file:, oci:"


# --- oci: the real distribution registry ---------------------------------------------------


@pytest.fixture(scope="session")
def oci_registry() -> str:
    """`HOST:PORT` of the local OCI registry, or skip when none runs."""
    try:
        socket.create_connection(OCI_REGISTRY, timeout=3).close()
    except OSError:
        pytest.skip("no OCI registry answers on 127.0.0.1:5000; run scripts/docker-env.sh")
    return "{}:{}".format(*OCI_REGISTRY)


@pytest.fixture
def repository() -> str:
    """A repository no other test uses."""
    return f"mlcycle-tests/blobs-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def _no_artifact_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("USERNAME", "PASSWORD", "INSECURE"):
        monkeypatch.delenv(f"MLCYCLE_ARTIFACTS_{name}", raising=False)


@pytest.mark.usefixtures("_no_artifact_credentials")
class TestOciBlobStore(BlobStoreContract):
    @pytest.fixture
    def url(self, oci_registry: str, repository: str) -> str:
        return f"oci://{oci_registry}/{repository}"

    def test_each_blob_is_kept_by_an_artifact_manifest_tagged_with_its_digest(
        self, open_store: Open, source: Path, oci_registry: str, repository: str
    ) -> None:
        digest = open_store().put(source)
        manifest = json.loads(
            _get(
                oci_registry,
                f"/v2/{repository}/manifests/{digest.replace(':', '-')}",
                accept="application/vnd.oci.image.manifest.v1+json",
            )
        )
        assert manifest["artifactType"] == "application/vnd.mlcycle.blob.v1"
        assert [layer["digest"] for layer in manifest["layers"]] == [digest]

    def test_a_cached_blob_is_read_without_the_network(
        self, open_store: Open, source: Path, repository: str
    ) -> None:
        digest = open_store(cache="shared").put(source)
        assert open_store(cache="shared").fetch(digest).read_bytes() == source.read_bytes()
        # The same cache, the registry gone: the blob comes from the cache, verified.
        dead = open_store(cache="shared", at=f"oci://127.0.0.1:1/{repository}")
        assert dead.fetch(digest).read_bytes() == source.read_bytes()
        with pytest.raises(RegistryError, match="cannot be reached"):
            dead.has(digest)  # it really is unreachable

    def test_what_a_writer_stored_it_reads_back_without_the_network(
        self, open_store: Open, source: Path, repository: str
    ) -> None:
        # A release pushes generation 1; the update that warm-starts from it on the same
        # machine used to pull those bytes back (measured by benchmarks/bench_registry.py).
        digest = open_store(cache="writer").put(source)
        dead = open_store(cache="writer", at=f"oci://127.0.0.1:1/{repository}")
        assert dead.fetch(digest).read_bytes() == source.read_bytes()

    def test_a_damaged_cached_copy_is_pulled_again(
        self, open_store: Open, source: Path, tmp_path: Path
    ) -> None:
        store = open_store(cache="writer")
        digest = store.put(source)
        cached = tmp_path / "writer" / digest.replace(":", "-")
        cached.write_bytes(b"changed on disk")
        assert store.fetch(digest).read_bytes() == source.read_bytes()
        assert cached.read_bytes() == source.read_bytes()

    def test_a_damaged_download_is_refused_and_not_cached(
        self, open_store: Open, source: Path, repository: str, tmp_path: Path
    ) -> None:
        digest = open_store().put(source)
        with _proxy(corrupt=True) as port:
            store = open_store(cache="pulled", at=f"oci://127.0.0.1:{port}/{repository}")
            with pytest.raises(IntegrityError, match=f"blob {digest} arrived with digest"):
                store.fetch(digest)
        assert not any((tmp_path / "pulled").iterdir())  # nothing half-pulled stays

    def test_an_unreachable_registry_is_a_runtime_error_with_a_hint(
        self, source: Path, tmp_path: Path
    ) -> None:
        store = open_blob_store("oci://127.0.0.1:1/team/churn", base=tmp_path, cache=tmp_path)
        with pytest.raises(RegistryError) as caught:
            store.put(source)
        error = caught.value
        assert str(error).startswith(
            "oci://127.0.0.1:1/team/churn: the registry at 127.0.0.1:1 cannot be reached"
        )
        assert "connection refused" in str(error)
        assert error.exit_code is ExitCode.RUNTIME
        assert error.hint is not None and "MLCYCLE_ARTIFACTS_URL" in error.hint

    def test_a_handshake_that_breaks_is_an_unreachable_registry_not_a_tls_failure(
        self, tmp_path: Path
    ) -> None:
        # A trial: an unroutable host (a middlebox dropping the connection) was reported
        # as "cannot download: TLS failed (HTTPSConnectionPool ... Max retries exceeded)".
        # Here: HTTPS to a port that accepts and closes at once.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def close_each() -> None:
            with contextlib.suppress(OSError):
                while True:
                    listener.accept()[0].close()

        threading.Thread(target=close_each, daemon=True).start()
        try:
            location = OciLocation(registry=f"127.0.0.1:{port}", repository="x", insecure=False)
            store = OciBlobStore(location, cache=tmp_path)
            with pytest.raises(RegistryError) as caught:
                store.fetch("sha256:" + "0" * 64)
        finally:
            listener.close()
        message = str(caught.value)
        assert f"the registry at 127.0.0.1:{port} cannot be reached to download" in message
        assert "TLS failed" not in message and "HTTPSConnectionPool" not in message
        assert "Max retries" not in message

    def test_credentials_come_from_the_environment_and_never_reach_a_message_or_log(
        self,
        source: Path,
        repository: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        with _proxy(basic=("ci", "s3cret-pa55")) as port:
            url = f"oci://127.0.0.1:{port}/{repository}"
            with pytest.raises(RegistryError, match="access denied") as caught:
                open_blob_store(url, base=tmp_path, cache=tmp_path / "a").put(source)
            assert caught.value.hint is not None
            assert "MLCYCLE_ARTIFACTS_USERNAME" in caught.value.hint
            monkeypatch.setenv("MLCYCLE_ARTIFACTS_USERNAME", "ci")
            monkeypatch.setenv("MLCYCLE_ARTIFACTS_PASSWORD", "s3cret-pa55")
            store = open_blob_store(url, base=tmp_path, cache=tmp_path / "b")
            digest = store.put(source)
            assert store.fetch(digest).read_bytes() == source.read_bytes()
        encoded = base64.b64encode(b"ci:s3cret-pa55").decode()
        assert "s3cret-pa55" not in caplog.text and encoded not in caplog.text

    def test_a_token_registry_gets_a_token_per_scope_and_a_new_one_when_it_expires(
        self, source: Path, repository: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("MLCYCLE_ARTIFACTS_USERNAME", "ci")
        monkeypatch.setenv("MLCYCLE_ARTIFACTS_PASSWORD", "s3cret-pa55")
        proxy = _proxy(bearer=True, basic=("ci", "s3cret-pa55"))
        with proxy as port:
            url = f"oci://127.0.0.1:{port}/{repository}"
            store = open_blob_store(url, base=tmp_path, cache=tmp_path / "a")
            digest = store.put(source)  # a pull token to look, then a push token to write
            assert set(proxy.tokens.values()) == {"pull", "pull,push"}
            proxy.expire_tokens()  # as a long-running engine's token does
            assert store.has(digest)
            assert store.fetch(digest).read_bytes() == source.read_bytes()
            monkeypatch.setenv("MLCYCLE_ARTIFACTS_PASSWORD", "wrong")
            refused = open_blob_store(url, base=tmp_path, cache=tmp_path / "b")
            with pytest.raises(RegistryError, match="access denied"):
                refused.has(digest)

    def test_plain_http_only_for_this_machine_or_by_explicit_opt_in(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from mlcycle.registry.oci import parse_url

        assert parse_url("oci://127.0.0.1:5000/a").insecure
        assert parse_url("oci://localhost/a/b").insecure
        remote = parse_url("oci://registry.example.com:5000/team/churn")
        assert (remote.registry, remote.repository, remote.insecure) == (
            "registry.example.com:5000",
            "team/churn",
            False,
        )
        monkeypatch.setenv("MLCYCLE_ARTIFACTS_INSECURE", "1")
        assert parse_url("oci://registry.internal:5000/team/churn").insecure

    @pytest.mark.parametrize(
        ("url", "problem"),
        [
            ("oci://ci:hunter2@registry.example.com/team", "carries credentials"),
            ("oci://registry.example.com/Team/Churn", "not an OCI repository name"),
            ("oci://registry.example.com", "not an OCI repository name"),
            ("oci:///team/churn", "not an OCI artifact store URL"),
        ],
    )
    def test_a_bad_url_is_a_usage_error(self, url: str, problem: str, tmp_path: Path) -> None:
        with pytest.raises(UsageError, match=problem) as caught:
            open_blob_store(url, base=tmp_path, cache=tmp_path)
        assert "hunter2" not in str(caught.value)

    def test_without_oras_it_names_the_extra_to_install(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "oras", None)  # as if not installed
        with pytest.raises(MissingExtraError) as caught:
            open_blob_store("oci://127.0.0.1:5000/team", base=tmp_path, cache=tmp_path)
        assert caught.value.hint == 'install it: pip install "mlcycle-cli[oci]"'


def _get(registry: str, path: str, *, accept: str) -> bytes:
    host, port = registry.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("GET", path, headers={"Accept": accept})
        response = connection.getresponse()
        assert response.status == 200, response.status
        return response.read()
    finally:
        connection.close()


class _Proxy(BaseHTTPRequestHandler):
    """Forwards to the real registry; may demand Basic auth or bearer tokens, or flip a
    byte of each blob it serves.

    With `bearer`, it is a token registry as Docker Hub, GHCR or Harbor are: a request
    without a token for its scope (pull for reads, push for writes) gets a challenge
    naming the token endpoint (`/token` here), which hands out tokens for the `basic`
    account; `tokens` maps each valid token to its actions (cleared to expire them all).
    """

    corrupt = False
    basic: str | None = None  # the expected `Authorization` value
    bearer = False
    tokens: dict[str, str]

    def _deny(self, challenge: str | None) -> None:
        self.send_response(401)
        if challenge:
            self.send_header("WWW-Authenticate", challenge)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _token(self) -> None:
        if self.headers.get("Authorization") != self.basic:
            return self._deny(None)
        scope = parse_qs(urlsplit(self.path).query).get("scope", [""])[0]
        token = uuid.uuid4().hex
        self.tokens[token] = scope.rsplit(":", 1)[-1]
        body = json.dumps({"token": token}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.bearer:
            need = "pull" if self.command in ("GET", "HEAD") else "push"
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            if need in self.tokens.get(token, "").split(","):
                return True
            actions = "pull" if need == "pull" else "pull,push"
            self._deny(
                f'Bearer realm="http://{self.headers["Host"]}/token",service="test",'
                f'scope="repository:x:{actions}"'
            )
            return False
        if self.basic is not None and self.headers.get("Authorization") != self.basic:
            self._deny('Basic realm="Registry Realm"')
            return False
        return True

    def _forward(self) -> None:
        if self.bearer and self.path.startswith("/token"):
            return self._token()
        if not self._authorized():
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        upstream = http.client.HTTPConnection(*OCI_REGISTRY, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        if self.corrupt and self.command == "GET" and "/blobs/sha256:" in self.path and data:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ProxyServer:
    def __init__(self, *, corrupt: bool, basic: tuple[str, str] | None, bearer: bool) -> None:
        expected = None
        if basic is not None:
            expected = "Basic " + base64.b64encode(":".join(basic).encode()).decode()
        self.tokens: dict[str, str] = {}
        handler = type(
            "Handler",
            (_Proxy,),
            {"corrupt": corrupt, "basic": expected, "bearer": bearer, "tokens": self.tokens},
        )
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)

    def __enter__(self) -> int:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.server.server_address[1]

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def expire_tokens(self) -> None:
        self.tokens.clear()


def _proxy(
    *, corrupt: bool = False, basic: tuple[str, str] | None = None, bearer: bool = False
) -> _ProxyServer:
    return _ProxyServer(corrupt=corrupt, basic=basic, bearer=bearer)
