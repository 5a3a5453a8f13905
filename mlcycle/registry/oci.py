"""Blobs in an OCI distribution registry: `oci://HOST[:PORT]/REPOSITORY`, through oras.

The registry's own blob digest is our digest (both are `sha256:HEX` of the bytes),
so a blob is pushed as is and pulled by its name. A registry may garbage-collect
blobs that no manifest references, so each blob gets a one-layer artifact manifest
(artifact type `application/vnd.mlcycle.blob.v1`) tagged `sha256-HEX`: the tag
keeps the blob alive and is what `has` asks for. The blob goes first and the tag
last, so a writer that dies mid-way leaves no tag, and the next `put` pushes again.

Transport and credentials:

- HTTPS, except for localhost/127.0.0.1/::1 (a registry on the same machine) or
  when `MLCYCLE_ARTIFACTS_INSECURE=1` says so (a registry on a private network).
- Credentials come from the environment only: `MLCYCLE_ARTIFACTS_USERNAME` and
  `MLCYCLE_ARTIFACTS_PASSWORD`, else what `docker login` stored (the docker
  config oras reads). A URL carrying `user:password@` is refused: the URL is
  in the spec, which is committed. Credentials never reach a message or a log.
- One attempt per request, with a timeout: oras would retry a dead registry
  five times with growing sleeps (about two minutes) before saying anything.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from mlcycle import extras
from mlcycle.errors import RegistryError, UsageError
from mlcycle.redact import mask_url
from mlcycle.registry.blobs import BlobStore, check_digest, register_scheme

ARTIFACT_TYPE: Final = "application/vnd.mlcycle.blob.v1"
# The OCI "empty" descriptor: the config of an artifact that needs none.
EMPTY_CONFIG: Final = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
}
MANIFEST_MEDIA_TYPE: Final = "application/vnd.oci.image.manifest.v1+json"
DIGEST_ANNOTATION: Final = "dev.mlcycle.blob.digest"
USERNAME_VARIABLE: Final = "MLCYCLE_ARTIFACTS_USERNAME"
PASSWORD_VARIABLE: Final = "MLCYCLE_ARTIFACTS_PASSWORD"
INSECURE_VARIABLE: Final = "MLCYCLE_ARTIFACTS_INSECURE"
LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "::1"})
# (connect, read) seconds: a dead host fails fast; a slow big upload still completes.
TIMEOUT: Final = (5.0, 300.0)
# Above this size a blob is uploaded in chunks rather than read into memory at once.
CHUNKED_ABOVE: Final = 64 << 20
# The distribution spec's repository name grammar.
_REPOSITORY_RE: Final = re.compile(
    r"^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$"
)
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


@dataclass(frozen=True)
class OciLocation:
    """Where an `oci://` URL points: the registry (`host[:port]`) and a repository in it."""

    registry: str
    repository: str
    insecure: bool  # plain HTTP

    @property
    def url(self) -> str:
        return f"oci://{self.registry}/{self.repository}"


def parse_url(url: str, *, env: Mapping[str, str] | None = None) -> OciLocation:
    """The location an `oci://HOST[:PORT]/REPOSITORY` URL names, or UsageError (exit 2)."""
    env = os.environ if env is None else env
    parts = urlsplit(url)
    example = "oci://HOST[:PORT]/REPOSITORY, e.g. oci://127.0.0.1:5000/team/churn"
    if parts.scheme != "oci" or not parts.hostname:
        raise UsageError(
            f"not an OCI artifact store URL: {mask_url(url)!r}", hint=f"write {example}"
        )
    if parts.username is not None or parts.password is not None:
        # It may come from MLCYCLE_ARTIFACTS_URL as well as from the spec.
        raise UsageError(
            "the artifact store URL carries credentials, and it is no place for them: "
            "registry.artifacts is committed to git, and the URL is written into the "
            "ConfigMap of `deploy --k8s`",
            hint=f"drop them from the URL and set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} "
            "where mlcycle runs (or `docker login HOST`)",
        )
    repository = parts.path.strip("/")
    if parts.query or parts.fragment or not _REPOSITORY_RE.match(repository):
        raise UsageError(
            f"{url!r}: {repository!r} is not an OCI repository name "
            "(lowercase letters, digits and . _ - separated by /)",
            hint=f"write {example}",
        )
    try:
        port = parts.port
    except ValueError as e:
        raise UsageError(f"{url!r}: {e}", hint=f"write {example}") from e
    host = parts.hostname
    registry = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    insecure = host in LOCAL_HOSTS or env.get(INSECURE_VARIABLE, "").lower() in _TRUE
    return OciLocation(registry=registry, repository=repository, insecure=insecure)


def tag_of(digest: str) -> str:
    """The tag holding a blob's manifest: `sha256-HEX` (a tag cannot contain ':')."""
    return check_digest(digest).replace(":", "-")


class OciBlobStore(BlobStore):
    """Blobs in one repository of an OCI registry; each kept by a tagged artifact manifest."""

    def __init__(
        self, location: OciLocation, *, cache: Path, env: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(cache)
        self.location = location
        self._env = dict(os.environ if env is None else env)
        self._client: Any = None  # the oras client, made at the first network call

    def describe(self) -> str:
        return self.location.url

    # --- the three operations -----------------------------------------------------------

    def has(self, digest: str) -> bool:
        response = self._request(
            "HEAD", self._manifest_url(tag_of(digest)), what=f"look up blob {digest}"
        )
        if response.status_code == 404:
            return False
        self._check(response, what=f"look up blob {digest}")
        return True

    def _upload(self, path: Path, digest: str) -> None:
        client = self._connect()
        container = self._container(tag_of(digest))
        size = path.stat().st_size
        layer = {
            "mediaType": ARTIFACT_TYPE,
            "digest": digest,
            "size": size,
            "annotations": {"org.opencontainers.image.title": tag_of(digest)},
        }
        with tempfile.TemporaryDirectory(prefix="mlcycle-oci-") as scratch:
            # A file of its own per upload: a concurrent writer never sees it half-written.
            config = Path(scratch) / "config.json"
            config.write_bytes(b"{}")
            for source, descriptor in ((path, layer), (config, EMPTY_CONFIG)):
                what = f"upload blob {descriptor['digest']}"
                response = self._call(
                    what,
                    lambda s=source, d=descriptor: client.upload_blob(
                        str(s), container, dict(d), do_chunked=d["size"] > CHUNKED_ABOVE
                    ),
                )
                self._check(response, what=what)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": dict(EMPTY_CONFIG),
            "layers": [layer],
            "annotations": {DIGEST_ANNOTATION: digest},
        }
        response = self._call(
            f"tag blob {digest}", lambda: client.upload_manifest(manifest, container)
        )
        self._check(response, what=f"tag blob {digest} as {tag_of(digest)}")

    def _download(self, digest: str, dest: Path) -> None:
        client = self._connect()
        container = self._container(tag_of(digest))

        def pull() -> None:
            with client.get_blob(container, digest, stream=True) as response:
                if response.status_code == 404:
                    raise RegistryError(
                        f"{self.describe()}: no blob {digest}",
                        hint="the release that names it was made against another artifact "
                        "store, or the blob was deleted; release the model again",
                    )
                self._check(response, what=f"download blob {digest}")
                with dest.open("wb") as out:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        out.write(chunk)

        self._call("download", pull)

    # --- transport ------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._client is None:
            extras.require(extras.OCI, what=f"the artifact store {self.describe()}")
            self._client = _make_client(self.location, self._env)
        return self._client

    def _container(self, tag: str) -> Any:
        self._connect()  # first: it says which extra to install when oras is missing
        import oras.container

        return oras.container.Container(
            f"{self.location.registry}/{self.location.repository}:{tag}"
        )

    def _manifest_url(self, tag: str) -> str:
        scheme = "http" if self.location.insecure else "https"
        return f"{scheme}://{self._container(tag).manifest_url(tag)}"

    def _request(self, method: str, url: str, *, what: str) -> Any:
        client = self._connect()
        headers = {"Accept": MANIFEST_MEDIA_TYPE}
        return self._call(what, lambda: client.do_request(url, method, headers=headers))

    def _call(self, what: str, action: Any) -> Any:
        """Run one network action; transport and auth failures become RegistryError."""
        import requests

        try:
            return action()
        except RegistryError:
            raise
        except requests.exceptions.SSLError as e:
            if "CERTIFICATE_VERIFY_FAILED" not in str(e):
                # The connection broke during the handshake (closed, reset, a middlebox
                # that drops it): nothing that speaks TLS was reached, so say that.
                raise self._unreachable(what, e) from e
            raise RegistryError(
                f"{self.describe()}: cannot {what}: TLS failed at {self.location.registry} "
                f"({_reason(e)})",
                hint=f"a registry serving plain HTTP on a private network needs "
                f"{INSECURE_VARIABLE}=1; otherwise give it a certificate the system trusts, "
                "or check that the URL's host:port is the registry's",
            ) from e
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
            raise self._unreachable(what, e) from e
        except (requests.exceptions.RequestException, ValueError, OSError) as e:
            # oras raises ValueError for a refused authentication or upload session.
            raise RegistryError(
                f"{self.describe()}: cannot {what}: {_reason(e)}", hint=_AUTH_HINT
            ) from e

    def _unreachable(self, what: str, error: BaseException) -> RegistryError:
        return RegistryError(
            f"{self.describe()}: the registry at {self.location.registry} cannot be reached "
            f"to {what} ({_reason(error)})",
            hint="check the artifact store URL (registry.artifacts or MLCYCLE_ARTIFACTS_URL) "
            "and that the registry is running and reachable from here",
        )

    def _check(self, response: Any, *, what: str) -> None:
        status = response.status_code
        if status in (200, 201, 202, 204):
            return
        if status in (401, 403):
            raise RegistryError(
                f"{self.describe()}: cannot {what}: access denied (HTTP {status})",
                hint=_AUTH_HINT,
            )
        raise RegistryError(
            f"{self.describe()}: cannot {what}: HTTP {status}{_oci_errors(response)}",
            hint="check the artifact store URL and the registry's logs",
        )


_AUTH_HINT: Final = (
    f"set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} where mlcycle runs "
    "(or run `docker login HOST`) with an account that may push to and pull from the repository"
)


def _reason(error: BaseException) -> str:
    """A short cause, without URLs (upload sessions carry ids) or headers."""
    import requests

    text = str(error)
    if isinstance(error, requests.exceptions.Timeout):
        return "timed out"
    verify = re.search(r"certificate verify failed: ([^(\"]+?)\.? \(", text)
    if verify:
        return f"certificate verify failed: {verify.group(1)}"
    for marker, reason in _CAUSES:
        if marker in text:
            return reason
    return re.sub(r"https?://\S+", "URL", text.split("(Caused by")[0]).strip()[:300]


_CAUSES: Final = (
    ("Connection refused", "connection refused"),
    ("UNEXPECTED_EOF", "the connection was closed during the TLS handshake"),
    ("EOF occurred", "the connection was closed during the TLS handshake"),
    ("Connection reset", "the connection was reset"),
    ("Name or service not known", "unknown host"),
    ("Temporary failure in name resolution", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("No route to host", "no route to host"),
    ("RemoteDisconnected", "the registry closed the connection"),
)


def _oci_errors(response: Any) -> str:
    try:
        errors = json.loads(response.content or b"{}").get("errors", [])
    except (ValueError, AttributeError):
        return ""
    messages = [e.get("message") or e.get("code") for e in errors if isinstance(e, dict)]
    return f" ({'; '.join(m for m in messages if m)})" if messages else ""


def _make_client(location: OciLocation, env: Mapping[str, str]) -> Any:
    """An oras client for `location`: one attempt per request, a timeout, our credentials."""
    import oras.container
    import oras.provider
    import requests.adapters

    class _TimeoutAdapter(requests.adapters.HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = TIMEOUT
            return super().send(request, **kwargs)

    class _Client(oras.provider.Registry):
        def __init__(self) -> None:
            super().__init__(hostname=location.registry, insecure=location.insecure)
            for prefix in ("http://", "https://"):
                self.session.mount(prefix, _TimeoutAdapter())
            self.basic: str | None = None
            username, password = env.get(USERNAME_VARIABLE), env.get(PASSWORD_VARIABLE)
            if username and password:
                self.basic = base64.b64encode(f"{username}:{password}".encode()).decode()
                self.auth.set_basic_auth(username, password)
            else:
                # What `docker login` stored for this host, if anything.
                self.auth.load_configs(
                    oras.container.Container(f"{location.registry}/{location.repository}")
                )
                self.basic = getattr(self.auth, "_basic_auth", None)

        def do_request(
            self,
            url: str,
            method: str = "GET",
            data: Any = None,
            headers: dict[str, str] | None = None,
            json: Any = None,
            stream: bool = False,
        ) -> Any:
            # Replaces oras's retrying do_request (see the module docstring). A registry
            # answering 401 asks for a bearer token (oras's token flow) or for Basic auth
            # (a plain distribution registry with htpasswd), which oras does not answer.
            headers = dict(headers or {})
            if self.auth.token:
                headers.update(self.auth.get_auth_header())
            elif self.basic and self._basic_ok:
                headers["Authorization"] = f"Basic {self.basic}"

            def send() -> Any:
                return self.session.request(
                    method, url, data=data, json=json, headers=headers, stream=stream,
                    verify=self._tls_verify,
                )  # fmt: skip

            response = send()
            if response.status_code not in (401, 403):
                return response
            challenge = response.headers.get("Www-Authenticate", "")
            if challenge.lower().startswith("basic"):
                if not self.basic or self._basic_ok:
                    return response  # none to offer, or the one offered was refused
                self._basic_ok = True
                headers["Authorization"] = f"Basic {self.basic}"
            else:
                # A bearer token is scoped (pull, then push) and expires: a 401 with one
                # asks for a new one for this request's scope, not for the same again.
                headers.pop("Authorization", None)
                headers, changed = self.auth.authenticate_request(
                    response, headers, refresh=self.auth.token is not None
                )
                if not changed:
                    return response
            return send()

        _basic_ok = False

    return _Client()


def _open(url: str, base: Path, cache: Path) -> BlobStore:
    location = parse_url(url)
    extras.require(extras.OCI, what=f"the artifact store {location.url}")
    return OciBlobStore(parse_url(url), cache=cache)


register_scheme("oci", _open)

__all__ = ["ARTIFACT_TYPE", "OciBlobStore", "OciLocation", "parse_url", "tag_of"]
