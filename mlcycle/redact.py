"""Credentials out of sight: the one masking rule for every message, record and listing.

A URL can carry a secret in two places: the password of its user-info
(`postgresql://user:PASSWORD@host/db`) and a query parameter whose name says it
is one (`?password=`, `?token=`, `?api_key=`, `?secret=`, `?sig=` ...). Both are
replaced by `***`; everything else is kept as written, so the message still
says which database or index it is about. A text that does not parse as a URL
(it could be a password typed in the wrong place, or a URL with a stray
character) is hidden whole, save its scheme: guessing where its secret sits
would be guessing wrong some day.

This module sits with `errors` at the bottom of the layers: every layer masks
with it, and it imports nothing heavier than `urllib.parse`.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote, urlsplit

MASK: Final = "***"
# Query parameter names that hold secrets (matched anywhere in the name, any case):
# password/passwd/pwd, token, secret, key (api_key, access_key, sslkey...), auth,
# credential(s), signature/sig (pre-signed URLs).
_SECRET_NAME: Final = re.compile(
    r"pass|pwd|token|secret|key|auth|credential|signature|^sig$", re.IGNORECASE
)
# `${env:NAME}`: how a spec names a secret kept in the environment (mlcycle.spec.env
# resolves it). A reference is not a secret: it is shown and bundled as written.
ENV_REFERENCE: Final = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_URL_IN_TEXT: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_PARAMETER: Final = re.compile(r"([A-Za-z0-9_.-]+)=([^&#\s]+)")
_UNSAFE: Final = re.compile(r"[\x00-\x20\x7f]")
_USERINFO: Final = re.compile(r"[^:/@?#]*:[^@]*@")
_HOST: Final = re.compile(r"[^/?#]*")


def mask_url(url: str) -> str:
    """`url` with its password and secret query values replaced by `***`.

    A string that is not a `SCHEME://...` URL is hidden whole (`SCHEME:***`, or
    `***` when not even a scheme is recognisable).
    """
    parts = _split(url)
    if parts is None:
        found = _SCHEME.match(url) if isinstance(url, str) else None
        return f"{found[1]}:{MASK}" if found else MASK
    scheme, netloc, rest = parts
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo and not _reference(userinfo.split(":", 1)[1]):
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK
    path, question, query = rest.partition("?")
    if question:
        query, hash_, fragment = query.partition("#")
        query = "&".join(_mask_parameter(item) for item in query.split("&")) + hash_ + fragment
    return f"{scheme}://{userinfo}{at}{hostport}{path}{question}{query}"


def secrets_in(url: str) -> tuple[str, ...]:
    """The secret values `url` carries, as written and unquoted (the whole text if unparseable)."""
    parts = _split(url)
    found: list[str] = []
    if parts is None:
        if not isinstance(url, str) or not url:
            return ()
        # Hidden whole; but a library may repeat a piece of it, so the likely password
        # (between the user's ':' and the last '@') and secret-named values go too.
        found.append(url)
        after = url.split("//", 1)[1] if "//" in url else url.partition(":")[2]
        userinfo, at, _ = after.rpartition("@")
        if at and ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
        found += [m[2] for m in _PARAMETER.finditer(url) if _SECRET_NAME.search(m[1])]
        return tuple(sorted({f for f in found if f}, key=len, reverse=True))
    _, netloc, rest = parts
    userinfo, at, _ = netloc.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    query = rest.partition("?")[2].partition("#")[0]
    for item in query.split("&") if query else ():
        name, equals, value = item.partition("=")
        if equals and value and _SECRET_NAME.search(unquote(name)):
            found.append(value)
    values = {v for f in found for v in (f, unquote(f)) if v and not _reference(v)}
    # Longest first, so that a secret containing another is replaced whole.
    return tuple(sorted(values, key=len, reverse=True))


def scrub(text: str, *urls: str | None) -> str:
    """`text` (a message, often a third party's) with every `url` and its secrets masked.

    For the error text of a library that was handed the URL: SQLAlchemy quotes an
    unparseable URL whole, a driver may repeat the password.
    """
    for url in urls:
        if not url:
            continue
        text = text.replace(url, mask_url(url))
        for secret in secrets_in(url):
            text = text.replace(secret, MASK)
    return text


def mask_urls_in(text: str) -> str:
    """`text` (a spec, a config file) with the secrets of every URL in it masked.

    URLs are found as `SCHEME://` followed by anything but whitespace and quotes;
    `${env:NAME}` references stay as written.
    """
    return _URL_IN_TEXT.sub(lambda m: mask_url(m[0]) if secrets_in(m[0]) else m[0], text)


def mask_urls_in_bytes(data: bytes) -> bytes:
    """`mask_urls_in` for the bytes of a UTF-8 file (undecodable bytes kept as they are)."""
    text = data.decode("utf-8", "surrogateescape")
    return mask_urls_in(text).encode("utf-8", "surrogateescape")


def has_password(url: str) -> bool:
    """Whether `url` carries a literal secret (a password or a secret query value)."""
    return _split(url) is not None and bool(secrets_in(url))


def _split(url: str) -> tuple[str, str, str] | None:
    """(scheme, netloc, everything after the netloc) as written, or None if not a URL."""
    if not isinstance(url, str) or _UNSAFE.search(url):
        return None
    scheme = _SCHEME.match(url)
    if scheme is None or not url[scheme.end() :].startswith("//"):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    start = scheme.end() + 2
    netloc = url[start : start + len(parts.netloc)]
    if netloc != parts.netloc:
        return None
    # urlsplit ends the user-info at the first '/', '?' or '#', but SQLAlchemy (and a
    # person) reads `u:/S3cret@host` as the password '/S3cret': take the user-info up to
    # its '@' the way SQLAlchemy does, so such a password is masked too. Reading a
    # `host:port/path@x` as a password only masks more than needed.
    wide = _USERINFO.match(url, start)
    if wide is not None and wide.end() > start + len(netloc):
        host = _HOST.match(url, wide.end())
        netloc = url[start : host.end() if host else wide.end()]
    return scheme[1], netloc, url[start + len(netloc) :]


def _reference(value: str) -> bool:
    return ENV_REFERENCE.fullmatch(unquote(value)) is not None


def _mask_parameter(item: str) -> str:
    name, equals, value = item.partition("=")
    if equals and value and _SECRET_NAME.search(unquote(name)) and not _reference(value):
        return f"{name}={MASK}"
    return item
