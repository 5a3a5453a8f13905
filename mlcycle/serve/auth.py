"""Who may call the serving engine: the bearer token, where it comes from, when it is required.

The token is `MLCYCLE_API_TOKEN`, or the content of a file (`mlcycle serve --token-file
PATH`, e.g. a mounted Kubernetes Secret); clients send `Authorization: Bearer TOKEN`.
A server that listens beyond the loopback interface must have one, unless its operator
says otherwise (`--no-auth`): anyone who reaches it could otherwise record outcomes
and steer a bandit. The app (mlcycle.serve.app) enforces the token on every request.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path

from mlcycle.errors import UsageError

TOKEN_ENV = "MLCYCLE_API_TOKEN"
"""The environment variable holding the token."""

# RFC 6750's b64token: what may follow "Bearer " in a header without quoting.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def load_token(
    token_file: Path | None = None, environ: Mapping[str, str] = os.environ
) -> str | None:
    """The bearer token from `token_file`, else from `MLCYCLE_API_TOKEN`; None when neither.

    Surrounding whitespace (a file's final newline) is dropped. Raises UsageError for a
    file that cannot be read, an empty token, or one that cannot go in a header.
    """
    if token_file is not None:
        try:
            text = token_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise UsageError(
                f"--token-file {token_file}: cannot read the token ({reason})",
                hint="pass a readable file holding the token on one line",
            ) from None
        return _checked(text.strip(), f"--token-file {token_file}")
    value = environ.get(TOKEN_ENV)
    if value is None:
        return None
    return _checked(value.strip(), TOKEN_ENV)


def _checked(token: str, where: str) -> str:
    if not token:
        raise UsageError(
            f"{where}: the token is empty",
            hint="put a token in it (one line, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "or pass --no-auth to serve without one",
        )
    if not _TOKEN.fullmatch(token):
        # Never echo the token itself: it may be a real secret with a typo.
        raise UsageError(
            f"{where}: the token has characters a bearer token cannot carry",
            hint="use letters, digits and - . _ ~ + / (e.g. secrets.token_urlsafe(32))",
        )
    return token


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # another host name: it may resolve to anything
        return False


def require_token_for(host: str, token: str | None, *, no_auth: bool) -> None:
    """Refuse (UsageError, exit 2) to serve beyond the loopback interface without a token."""
    if no_auth and token is not None:
        raise UsageError(
            f"--no-auth was given, and so was a token ({TOKEN_ENV} or --token-file)",
            hint=f"drop --no-auth to require the token, or unset {TOKEN_ENV} / drop --token-file",
        )
    if token is None and not no_auth and not is_loopback(host):
        raise UsageError(
            f"refusing to serve on {host} without authentication: anyone who can reach "
            "it could predict, send feedback and steer the selector",
            hint=f"set {TOKEN_ENV} or pass --token-file PATH (clients then send "
            "'Authorization: Bearer TOKEN'), or pass --no-auth if something in front "
            "of the server already authenticates",
        )


__all__ = ["TOKEN_ENV", "is_loopback", "load_token", "require_token_for"]
