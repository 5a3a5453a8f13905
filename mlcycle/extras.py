"""Optional extras: what only some projects need, and how to say which one is missing.

A core install (`pip install mlcycle-cli`) trains, releases, packages and serves
models from CSV files and SQLite. What only some projects use is an extra:

    [parquet]    pyarrow   Parquet data sources and dumps
    [postgres]   psycopg   postgresql:// data sources and prediction stores
    [oci]        oras      oci:// artifact stores (a shared registry's model files)
    [mlflow]     mlflow    `export --format mlflow` (MLflow model directories), and
                           logging runs to a declared MLflow tracking server

`validate` reports a spec that needs an extra that is not installed (rule
`extra-not-installed`), and the code that imports one raises `MissingExtraError`
naming the extra, instead of a bare ModuleNotFoundError.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Final

from mlcycle.errors import UsageError

DISTRIBUTION: Final = "mlcycle-cli"


@dataclass(frozen=True)
class Extra:
    """One optional extra: its name, the module it provides and what needs it."""

    name: str
    module: str
    purpose: str

    @property
    def command(self) -> str:
        """The pip command that installs it."""
        return f'pip install "{DISTRIBUTION}[{self.name}]"'

    def installed(self) -> bool:
        """Whether its module can be imported here (without importing it)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False


PARQUET: Final = Extra("parquet", "pyarrow", "Parquet files")
POSTGRES: Final = Extra("postgres", "psycopg", "postgresql:// URLs")
OCI: Final = Extra("oci", "oras", "oci:// artifact stores")
# mlflow-skinny provides the `mlflow` module: the client, the model format and pyfunc,
# without MLflow's server and UI (the full `mlflow` distribution provides it too).
MLFLOW: Final = Extra("mlflow", "mlflow", "MLflow models and tracking")
EXTRAS: Final = (PARQUET, POSTGRES, OCI, MLFLOW)
# Driver modules SQLAlchemy imports for a URL scheme, and the extra that provides them.
_BY_MODULE: Final = {e.module: e for e in EXTRAS}


class MissingExtraError(UsageError):
    """Something the spec or the command asks for needs an extra that is not installed."""

    def __init__(self, extra: Extra, *, what: str) -> None:
        super().__init__(
            f"{what} needs the [{extra.name}] extra ({extra.module} is not installed)",
            hint=f"install it: {extra.command}",
        )
        self.extra = extra


def for_module(module: str | None) -> Extra | None:
    """The extra that provides `module` (a top-level module name), if any."""
    if not module:
        return None
    return _BY_MODULE.get(module.split(".")[0])


def for_url(url: str) -> Extra | None:
    """The extra a SQLAlchemy URL needs by its scheme, if any: `postgresql://` and
    `postgresql+psycopg://` need [postgres]; another driver named in the URL is the
    user's own choice."""
    scheme = url.split(":", 1)[0].lower()
    return POSTGRES if scheme in ("postgresql", "postgres", "postgresql+psycopg") else None


def for_artifacts(url: str) -> Extra | None:
    """The extra an artifact store's URL needs by its scheme: `oci://` needs [oci]."""
    return OCI if url.split(":", 1)[0].lower() == "oci" else None


def require(extra: Extra, *, what: str) -> None:
    """MissingExtraError (exit 2) unless `extra` is installed."""
    if not extra.installed():
        raise MissingExtraError(extra, what=what)
