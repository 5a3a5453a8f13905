"""`registry migrate`: copy a project's local registry into a shared one."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlcycle.errors import UsageError
from mlcycle.progress import NULL_PROGRESS, Progress
from mlcycle.redact import ENV_REFERENCE, has_password, mask_url

if TYPE_CHECKING:
    from mlcycle.registry.migrate import Migration


def migrate(
    path: str | Path | None = None,
    *,
    to: str | None = None,
    artifacts: str | None = None,
    progress: Progress = NULL_PROGRESS,
    environ: Mapping[str, str] | None = None,
) -> Migration:
    """Copy the project's local registry (`registry.path`) into the shared registry at
    `to` (a SQLAlchemy URL), its files into the artifact store `artifacts`.

    Either defaults to what the project declares (MLCYCLE_REGISTRY_URL and
    MLCYCLE_ARTIFACTS_URL, then the spec's `registry.url` and `registry.artifacts`).
    A URL given here carries no password: it names one as `${env:NAME}`, or the
    driver finds it in the environment (PGPASSWORD). Relative paths (`sqlite:///x.db`,
    `file:dir`) are taken from the working directory, as a command line's are.
    See `mlcycle.registry.migrate` for what is copied and the guarantees.
    """
    # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
    from mlcycle.api.project import open_project
    from mlcycle.registry import (
        ARTIFACTS_URL_VARIABLE,
        REGISTRY_URL_VARIABLE,
        LocalRegistry,
        open_registry,
        registry_urls,
    )
    from mlcycle.registry.migrate import migrate as copy_registry
    from mlcycle.registry.sql import SqlRegistry

    env = os.environ if environ is None else environ
    project = open_project(path)
    spec = project.spec
    declared_url, declared_artifacts = registry_urls(spec, env)
    url = _given(to, "--to", env) if to else declared_url
    if not url:
        raise UsageError(
            f"{spec.name}: no shared registry to migrate to",
            hint="name its database: --to postgresql://USER@HOST/DB (the password from "
            f"PGPASSWORD), or declare registry.url (or set {REGISTRY_URL_VARIABLE})",
        )
    store = _given(artifacts, "--artifacts", env) if artifacts else declared_artifacts
    if not store:
        raise UsageError(
            f"{spec.name}: no shared artifact store to copy the model files to",
            hint="name it: --artifacts oci://HOST[:PORT]/REPO, or file:DIR on a file system "
            "every machine mounts (or declare registry.artifacts, or set "
            f"{ARTIFACTS_URL_VARIABLE})",
        )
    source = LocalRegistry(spec.resolve(spec.registry.path), spec.name)
    if not source.base.is_dir():
        raise UsageError(
            f"{source.base}: {spec.name} has no local registry here, so there is nothing "
            "to migrate",
            hint="run this in the working copy that trained and released the models "
            "(its registry.path), or pass -C DIR",
        )
    shared = {**env, REGISTRY_URL_VARIABLE: url, ARTIFACTS_URL_VARIABLE: store}
    target = open_registry(spec, environ=shared)
    if not isinstance(target, SqlRegistry):  # every shared backend is one today
        raise UsageError(f"{target.describe()}: migration copies into a SQL registry only")
    return copy_registry(source, target, progress=progress)


def _given(url: str, option: str, env: Mapping[str, str]) -> str:
    """A URL from the command line: no literal secret, `${env:NAME}` resolved, relative
    paths made absolute from the working directory."""
    if has_password(url):
        raise UsageError(
            f"{option} {mask_url(url)}: a password on the command line ends up in the shell's "
            "history and the process list",
            hint="name it from the environment instead: "
            "'postgresql://USER:${env:PGPASSWORD}@HOST/DB' in single quotes, or leave it out "
            "and set PGPASSWORD (artifact stores: MLCYCLE_ARTIFACTS_USERNAME and "
            "MLCYCLE_ARTIFACTS_PASSWORD)",
        )

    def value(match: re.Match[str]) -> str:
        name = match[1]
        found = env.get(name)
        if found is None:
            raise UsageError(
                f"{option}: environment variable {name} is not set (the URL names it as "
                f"${{env:{name}}})",
                hint=f"set {name} in the environment mlcycle runs in",
            )
        return found

    url = ENV_REFERENCE.sub(value, url)
    for prefix in ("sqlite:///", "file:"):
        rest = url[len(prefix) :]
        if url.startswith(prefix) and rest and not rest.startswith("/") and ":memory:" not in rest:
            return prefix + str(Path(rest).resolve())
    return url
