"""Files shipped with mlcycle: the JSON schema and the project templates.

In a wheel they live in `mlcycle/_data/`; in a source checkout (editable
install) at the repository root. One function finds either.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(*parts: str) -> Path:
    """Path of a shipped file or directory, e.g. `data_path("schemas", "lifecycle.schema.json")`."""
    installed = _PACKAGE.joinpath("_data", *parts)
    if installed.exists():
        return installed
    return _PACKAGE.parent.joinpath(*parts)


def schema_path() -> Path:
    """The lifecycle JSON schema."""
    return data_path("schemas", "lifecycle.schema.json")


def templates_path() -> Path:
    """The directory of project templates rendered by `mlcycle init`."""
    return data_path("templates")
