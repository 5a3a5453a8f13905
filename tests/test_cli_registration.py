"""The root app adds each command module explicitly, and loads a module only when needed.

Command modules used to import the root app back and register on it as a side effect
of being imported (a cycle through every command module); `mlcycle.cli.app.COMMANDS`
is now the one list, and `--help` and `validate` stay free of heavy libraries.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from mlcycle.cli.app import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
COMMAND_MODULES = sorted(
    p for p in (ROOT / "mlcycle" / "cli" / "commands").glob("*.py") if p.name != "__init__.py"
)
HEAVY = ("sklearn", "pandas", "numpy", "docker", "git", "uvicorn", "onnxruntime", "sqlalchemy")


@pytest.mark.parametrize("path", COMMAND_MODULES, ids=lambda p: p.stem)
def test_a_command_module_does_not_import_the_root_app(path: Path) -> None:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n == "mlcycle.cli.app" or n.startswith("mlcycle.cli.app.")]
    assert found == [], f"{path.name} imports the root app: {found}"


def test_every_command_module_is_listed() -> None:
    assert sorted(COMMANDS) == [f"mlcycle.cli.commands.{p.stem}" for p in COMMAND_MODULES]


@pytest.mark.parametrize("module", sorted(COMMANDS))
def test_the_list_names_exactly_the_commands_a_module_declares(module: str) -> None:
    declared = typer.main.get_group(importlib.import_module(module).app).commands
    assert sorted(declared) == sorted(COMMANDS[module])


def _modules_after(args: list[str], tmp_path: Path) -> set[str]:
    """The modules a fresh `mlcycle ARGS` process has imported when it finishes."""
    out = tmp_path / "modules.json"
    code = (
        "import json, sys\n"
        "from mlcycle.cli import main\n"
        "try:\n"
        "    main(sys.argv[2:])\n"
        "except SystemExit:\n"
        "    pass\n"
        "open(sys.argv[1], 'w').write(json.dumps(sorted(sys.modules)))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(out), *args],
        capture_output=True,
        check=False,
        cwd=tmp_path,
    )
    return set(json.loads(out.read_text()))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_help_imports_no_heavy_library(tmp_path: Path) -> None:
    assert _heavy(_modules_after(["--help"], tmp_path)) == []


def test_validate_loads_only_its_command_module(tmp_path: Path) -> None:
    spec = ROOT / "tests" / "spec" / "fixtures" / "adaptive" / "lifecycle.yaml"
    modules = _modules_after(["validate", "--no-import", str(spec)], tmp_path)
    assert "mlcycle.cli.commands.spec" in modules
    assert sorted(m for m in modules if m.startswith("mlcycle.cli.commands.")) == [
        "mlcycle.cli.commands.spec"
    ]
    assert _heavy(modules) == []
