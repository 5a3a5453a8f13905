"""What the README and the templates tell users to run, checked against what mlcycle does."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
