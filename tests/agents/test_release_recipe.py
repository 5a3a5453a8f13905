"""`update` trains only what its release declared (issue 14.4): real git, real registry."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from mlcycle import api
from tests.agents.test_update_and_production import append_rows
from tests.spec.helpers import cli

SGD = """    - sklearn.linear_model.SGDClassifier:
        loss: log_loss # logistic regression trained step by step; gives probabilities
        alpha: 0.001
"""
FOREST = """    - sklearn.ensemble.RandomForestClassifier:
        n_estimators: 10
"""


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def edit(root: Path, old: str, new: str) -> None:
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    assert old in text
    spec.write_text(text.replace(old, new))


def refs(root: Path) -> list[str]:
    return [str(e.ref) for e in api.models(root).entries]


def test_update_refuses_a_pipeline_no_release_declared(adaptive: Callable[[], Path]) -> None:
    root = adaptive()
    append_rows(root, 50)
    edit(root, SGD, FOREST)  # uncommitted: the release's commit still holds SGD
    forced = cli("update", "--force", cwd=root)
    assert forced.code == 2, forced.output
    assert "the spec changes model.pipeline since release 0.1.0" in forced.stderr
    assert "this change needs `mlcycle release`" in forced.stderr
    assert "Traceback" not in forced.stderr
    assert refs(root) == ["0.1.0/1"]  # nothing trained, nothing published

    # Committing it is not releasing it: the release's commit still holds SGD.
    git(root, "commit", "-qam", "try a forest")
    assert cli("update", "--force", cwd=root).code == 2
    assert refs(root) == ["0.1.0/1"]

    # The gate belongs to the release too; the triggers, comments and serving do not.
    git(root, "checkout", "-q", "HEAD~1", "--", "lifecycle.yaml")
    edit(root, "baseline - 0.02", "baseline - 0.5")
    gate = cli("update", "--force", "--json", cwd=root)
    assert gate.code == 2
    assert "the spec changes evaluation.gate since release 0.1.0" in gate.stderr

    edit(root, "baseline - 0.5", "baseline - 0.02")
    edit(root, "new_rows: 100 # at least", "new_rows: 40 # now at least")
    edit(root, "    port: 8080\n", "    port: 8181 # moved\n")
    result = api.update(root)  # the new_rows trigger fires on the 50 rows
    assert result.retrained and result.reason.startswith("new_rows: 50 new rows")
    assert result.procured is not None and result.procured.entry is not None
    assert str(result.procured.entry.ref) == "0.1.0/2"


def test_update_in_the_released_state_still_works_with_and_without_force(
    adaptive: Callable[[], Path],
) -> None:
    root = adaptive()
    (root / "NOTES.md").write_text("a later commit that is not about the model\n")
    git(root, "add", "NOTES.md")
    git(root, "commit", "-qm", "notes")
    append_rows(root, 50)
    forced = api.update(root, force=True)
    assert forced.forced and forced.procured is not None
    assert refs(root) == ["0.1.0/1", "0.1.0/2"]
    append_rows(root, 100)
    triggered = api.update(root)
    assert triggered.reason.startswith("new_rows: 100 new rows")
    assert refs(root) == ["0.1.0/1", "0.1.0/2", "0.1.0/3"]


def test_model_code_that_differs_from_the_release_is_refused(
    adaptive: Callable[[], Path],
) -> None:
    root = adaptive()
    (root / "model.py").write_text(
        "from sklearn.linear_model import SGDClassifier\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n\n\n"
        "def build():\n"
        "    return make_pipeline(StandardScaler(), SGDClassifier(loss='log_loss', alpha=0.001))\n"
    )
    pipeline = "  pipeline:\n    - sklearn.preprocessing.StandardScaler\n" + SGD
    edit(root, pipeline, "  entrypoint: model:build\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the model in code")
    made = cli("release", "--bump", "minor", cwd=root)
    assert made.code == 0, made.output
    append_rows(root, 50)

    code = root / "model.py"
    code.write_text(code.read_text().replace("alpha=0.001", "alpha=0.1"))
    refused = cli("update", "--force", cwd=root)
    assert refused.code == 2, refused.output
    assert "the model code changes model.py since release 0.2.0" in refused.stderr
    assert refs(root) == ["0.1.0/1", "0.2.0/1"]

    git(root, "checkout", "-q", "--", "model.py")
    assert cli("update", "--force", cwd=root).code == 0
    assert refs(root) == ["0.1.0/1", "0.2.0/1", "0.2.0/2"]


def test_without_git_the_recipe_recorded_with_the_release_decides(
    adaptive: Callable[[], Path],
) -> None:
    """The engine image's agent CronJob has no git: the release's recorded recipe stands in."""
    import shutil

    root = adaptive()
    shutil.rmtree(root / ".git")
    append_rows(root, 50)
    edit(root, SGD, FOREST)
    refused = cli("update", "--force", cwd=root)
    assert refused.code == 2, refused.output
    assert "the spec changes data, model or evaluation since release 0.1.0" in refused.stderr
    assert refs(root) == ["0.1.0/1"]

    edit(root, FOREST, SGD)
    edit(root, "new_rows: 100 # at least", "new_rows: 40 # now at least")
    assert api.update(root).retrained
    assert refs(root) == ["0.1.0/1", "0.1.0/2"]


def test_declared_model_code_is_checked_against_the_stored_copy_without_git(
    adaptive: Callable[[], Path],
) -> None:
    """With `model.code`, the hashes the release stored decide, git or not."""
    import shutil

    root = adaptive()
    (root / "model.py").write_text(
        "from sklearn.linear_model import SGDClassifier\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n\n\n"
        "def build():\n"
        "    return make_pipeline(StandardScaler(), SGDClassifier(loss='log_loss', alpha=0.001))\n"
    )
    pipeline = "  pipeline:\n    - sklearn.preprocessing.StandardScaler\n" + SGD
    edit(root, pipeline, "  entrypoint: model:build\n  code: [model.py]\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the model in declared code")
    assert cli("release", "--bump", "minor", cwd=root).code == 0
    shutil.rmtree(root / ".git")  # the engine image's agent CronJob has no git
    append_rows(root, 50)

    code = root / "model.py"
    original = code.read_text()
    code.write_text(original.replace("alpha=0.001", "alpha=0.1"))
    refused = cli("update", "--force", cwd=root)
    assert refused.code == 2, refused.output
    assert "the model code changes model.py since release 0.2.0" in refused.stderr
    assert refs(root) == ["0.1.0/1", "0.2.0/1"]

    code.write_text(original)
    assert cli("update", "--force", cwd=root).code == 0
    assert refs(root) == ["0.1.0/1", "0.2.0/1", "0.2.0/2"]


def test_an_entry_point_outside_model_code_is_still_compared_with_git(
    adaptive: Callable[[], Path],
) -> None:
    """Declaring some model code does not stop git comparing the rest the model imports."""
    root = adaptive()
    (root / "helpers.py").write_text("SCALE = 1.0\n")
    (root / "model.py").write_text(
        "from sklearn.linear_model import SGDClassifier\n"
        "from sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import StandardScaler\n\n\n"
        "def build():\n"
        "    return make_pipeline(StandardScaler(), SGDClassifier(loss='log_loss', alpha=0.001))\n"
    )
    pipeline = "  pipeline:\n    - sklearn.preprocessing.StandardScaler\n" + SGD
    edit(root, pipeline, "  entrypoint: model:build\n  code: [helpers.py]\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the model in code, one helper declared")
    assert cli("release", "--bump", "minor", cwd=root).code == 0
    append_rows(root, 50)

    code = root / "model.py"
    code.write_text(code.read_text().replace("alpha=0.001", "alpha=0.1"))
    refused = cli("update", "--force", cwd=root)
    assert refused.code == 2, refused.output
    assert "the model code changes model.py since release 0.2.0" in refused.stderr
    assert refs(root) == ["0.1.0/1", "0.2.0/1"]


def test_in_a_shallow_clone_the_recorded_recipe_stands_in_for_the_release_commit(
    adaptive: Callable[[], Path], tmp_path: Path
) -> None:
    """A CI job's shallow clone lacks the release's commit: the hashes recorded with the
    release decide, and a changed recipe is refused with the command that fetches it."""
    import shutil

    from mlcycle.agents.update import require_release_recipe
    from mlcycle.api.project import open_project

    root = adaptive()
    (root / "NOTES.md").write_text("a later commit that is not about the model\n")
    git(root, "add", "NOTES.md")
    git(root, "commit", "-qm", "notes")
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{root}", str(clone))
    for kept in root.iterdir():  # what git does not hold: the registry, the data
        if not (clone / kept.name).exists():
            shutil.copytree(kept, clone / kept.name)
    release = open_project(clone).registry.current()
    assert release is not None and release.git_commit is not None
    missing = subprocess.run(["git", "cat-file", "-e", release.git_commit], cwd=clone, check=False)
    assert missing.returncode != 0  # the release's commit is not in the clone

    project = open_project(clone)
    spec_file = clone / "lifecycle.yaml"
    require_release_recipe(project.spec, spec_file, project.registry)  # same recipe: no refusal

    edit(clone, SGD, FOREST)
    refused = cli("update", "--force", cwd=clone)
    assert refused.code == 2, refused.output
    assert (
        f"error: live: cannot read the spec of release 0.1.0 at commit {release.git_commit[:12]}"
        ", so this update cannot be checked against it" in refused.stderr
    )
    assert "hint: fetch that commit (e.g. `git fetch --unshallow --tags`) and run again" in (
        refused.stderr
    )
    assert refs(clone) == ["0.1.0/1"]
