"""mlcycle's own modules are imported at the top of the file that uses them (STYLE.md).

An import of mlcycle inside a function stays only for a reason that a comment just above
it gives (`# lazy: ...`): an import cycle, a heavy library behind it, or keeping
`mlcycle --help` and `mlcycle validate` light. Imports under TYPE_CHECKING are not
function-level and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlcycle"


def _function_level_imports(tree: ast.AST) -> list[ast.stmt]:
    found: list[ast.stmt] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import) and in_function:
                if any(a.name.split(".")[0] == "mlcycle" for a in child.names):
                    found.append(child)
            elif (
                isinstance(child, ast.ImportFrom)
                and in_function
                and child.level == 0
                and (child.module or "").split(".")[0] == "mlcycle"
            ):
                found.append(child)
            walk(child, inside)

    walk(tree, False)
    return found


def _says_why(lines: list[str], lineno: int) -> bool:
    """A `# lazy:` comment above the import, over the imports of the same block."""
    i = lineno - 2
    while i >= 0:
        line = lines[i].strip()
        if line.startswith("# lazy:"):
            return True
        if line.startswith(("from ", "import ", ")", "#")) or line.endswith((",", "(")):
            i -= 1
            continue
        return False
    return False


def test_a_function_level_import_of_mlcycle_says_why() -> None:
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in _function_level_imports(ast.parse(text)):
            if not _says_why(lines, node.lineno):
                missing.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert missing == [], "import at the top, or say why not (# lazy: ...):\n" + "\n".join(missing)
