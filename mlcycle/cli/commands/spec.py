"""Commands about the spec itself: schema (validate, plan and init come with issue 2)."""

from __future__ import annotations

import sys

from mlcycle.cli.app import app


@app.command()
def schema() -> None:
    """Print the JSON schema of lifecycle.yaml (Draft 2020-12)."""
    from mlcycle.resources import schema_path

    sys.stdout.write(schema_path().read_text(encoding="utf-8"))
