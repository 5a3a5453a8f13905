"""The docs: they name every package, the code cites them, and what they tell users to
run is what mlcycle does.

A newcomer answers "where does this change go?" from README.md's layout and
docs/architecture.md; both must name every package under mlcycle/, and nothing may
send them to a document the repository does not carry.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent.name for p in (ROOT / "mlcycle").glob("*/__init__.py"))
MODULES = sorted(p.stem for p in (ROOT / "mlcycle").glob("*.py") if not p.stem.startswith("_"))


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end >= 0 else None]


@pytest.mark.parametrize("name", PACKAGES + MODULES)
def test_the_readme_layout_names_every_package(name: str) -> None:
    layout = _section((ROOT / "README.md").read_text(encoding="utf-8"), "## Layout")
    assert f"`{name}`" in layout


@pytest.mark.parametrize("name", PACKAGES + MODULES)
def test_the_architecture_layers_name_every_package(name: str) -> None:
    layers = _section((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"), "## Layers")
    block = layers.split("```")[1]
    assert re.search(rf"(^|[\s,]){name}([\s,]|$)", block, re.MULTILINE)


def test_nothing_cites_a_design_the_repository_does_not_carry() -> None:
    cited = re.compile(r"DESIGN\.md|seed 004", re.IGNORECASE)
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("mlcycle", "docs", "tests", "benchmarks", "scripts")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".md") and path != Path(__file__)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if cited.search(line)
    ]
    found += [
        f"README.md:{n}"
        for n, line in enumerate((ROOT / "README.md").read_text(encoding="utf-8").splitlines(), 1)
        if cited.search(line)
    ]
    assert found == []


def test_the_lifecycle_patterns_page_declares_every_attribute_and_pattern() -> None:
    page = (ROOT / "docs" / "lifecycle-patterns.md").read_text(encoding="utf-8")
    for attribute in ("data_access", "procurement", "update", "deployment", "liaison"):
        assert f"### `{attribute}`" in page
    for pattern in ("Interactive", "Open", "Adaptive", "Dual"):
        assert f"### {pattern}" in page


# --- what the README and the templates tell users to run -------------------------------


def _documents() -> list[Path]:
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").rglob("*.md")),
        *sorted(p for p in (ROOT / "templates").rglob("*") if p.is_file()),
    ]


def _curl_commands(text: str) -> list[str]:
    """Each `curl` command, its `\\`-continued lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line[line.index("curl") :] for line in joined.splitlines() if "curl " in line]


def test_every_curl_that_sends_json_says_so() -> None:
    # The engine answers 415 to a body without `Content-Type: application/json`; a
    # trial's copied README example got exactly that.
    sending = []
    for path in _documents():
        for command in _curl_commands(path.read_text(encoding="utf-8", errors="replace")):
            if re.search(r"\s(-d|--data\S*)\s", command):
                sending.append(command)
                assert "Content-Type: application/json" in command, f"{path}: {command}"
    assert sending, "the README shows how to send a prediction"


def test_the_readme_sets_up_a_team_remote_on_the_branch_init_makes() -> None:
    from mlcycle.scaffold.gitrepo import BRANCH

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"git init --bare --initial-branch={BRANCH}" in readme


def test_the_readme_says_an_installed_wheel_file_is_reused() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "the wheel file it was installed from" in readme
    assert "where that index does not have it" not in readme
