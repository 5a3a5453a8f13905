"""Secrets from the environment: `${env:NAME}` anywhere in a spec string.

A spec is committed to git and copied into bundles and images, so it should
hold no password. It names one instead, `postgresql://app:${env:PGPASSWORD}@db/app`,
and the reference is resolved when a command loads the spec to use it (never by
`validate` or `plan`, which only read it, and never written back: the file, its
hash and the bundled copy keep the reference). An unset variable is an error at
the `file:line:col` of the string that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlcycle.redact import ENV_REFERENCE
from mlcycle.spec.diagnostics import Diagnostic
from mlcycle.spec.loader import LoadedDocument, Loc


def references(value: str) -> list[str]:
    """The variable names `value` references, in order."""
    return [m[1] for m in ENV_REFERENCE.finditer(value)]


OVERRIDES: dict[Loc, str] = {
    ("registry", "url"): "MLCYCLE_REGISTRY_URL",
    ("registry", "artifacts"): "MLCYCLE_ARTIFACTS_URL",
    ("store", "url"): "MLCYCLE_STORE_URL",
}
"""Spec values a variable replaces when set (`mlcycle.registry.open_registry` reads
the registry's, `mlcycle.api.serving.spec_store_url` the store's), as CI jobs, engine
containers and the pods of `deploy --k8s` do: the spec's value is then never used, so
its references need not be set."""


def resolve_references(
    doc: LoadedDocument, environ: Mapping[str, str]
) -> tuple[Any, list[Diagnostic]]:
    """`doc.data` with every `${env:NAME}` replaced by `environ[NAME]`, and the unset ones.

    A value that a variable of `OVERRIDES` replaces is left as written: a pod given
    MLCYCLE_REGISTRY_URL from a Secret has no PGPASSWORD for the spec's own URL.
    The document itself is left as it is (its data is what the spec hash covers).
    """
    problems: list[Diagnostic] = []
    overridden = {path for path, variable in OVERRIDES.items() if environ.get(variable)}

    def walk(node: Any, path: Loc) -> Any:
        if isinstance(node, str):
            if "${env:" not in node or path in overridden:
                return node

            def value(match: Any) -> str:
                name = match[1]
                found = environ.get(name)
                if found is None:
                    problems.append(
                        doc.diagnostic(
                            path,
                            f"environment variable {name} is not set "
                            f"({_where(path)} references it as ${{env:{name}}})",
                            hint=f"set {name} in the environment mlcycle runs in "
                            "(a Kubernetes Secret, a CI secret, your shell)",
                            rule="env-reference",
                        )
                    )
                    return str(match[0])
                return found

            return ENV_REFERENCE.sub(value, node)
        if isinstance(node, Mapping):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        return node

    return walk(doc.data, ()), problems


def _where(path: Loc) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the spec"
