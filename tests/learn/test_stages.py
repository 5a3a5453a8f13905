"""`promote`, `retire` and stages in `models`/`history`, on real git repositories, read
back by the real `gto` (iterative/gto, a dev dependency)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mlcycle import api
from mlcycle.api.init import init
from mlcycle.api.serving import serve_target
from mlcycle.errors import ExitCode, GitError, UsageError
from mlcycle.gitops import parse_release_message
from mlcycle.registry import ModelRef, open_registry
from mlcycle.spec import load_spec
from tests.learn.conftest import mlcycle


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


def gto_program() -> str:
    """The `gto` of this environment (`pip install -e .[dev]` installs it), or the one
    MLCYCLE_TEST_GTO names. Missing, the test fails: it exists to run the real GTO."""
    named = os.environ.get("MLCYCLE_TEST_GTO")
    found = named or shutil.which("gto", path=str(Path(sys.executable).parent))
    found = found or shutil.which("gto")
    assert found, "gto is not installed: pip install -e '.[dev]' (or set MLCYCLE_TEST_GTO)"
    return found


def gto(repo: Path, *args: str) -> Any:
    """Run the real GTO in `repo`; its JSON output.

    A GTO command that writes a tag runs in a later second than the newest tag: git dates
    tags to the second, and GTO orders a stage's assignments by that date, so a tag
    mlcycle wrote in the same second (the CLI runs in-process here, quickly) is a tie
    GTO breaks its own way — a person does not promote twice within one second.
    """
    if args and args[0] in ("assign", "deprecate", "register"):
        newest = git(
            repo, "for-each-ref", "--sort=-taggerdate", "--count=1",
            "--format=%(taggerdate:unix)", "refs/tags",
        )  # fmt: skip
        while newest and time.time() < int(newest) + 1:
            time.sleep(0.05)
    proc = subprocess.run(
        [gto_program(), *args], cwd=repo, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An open project with two releases, 0.1.0 and 0.2.0 (current), made once."""
    root = tmp_path_factory.mktemp("stages") / "churn"
    init("churn", pattern="open", directory=root)
    api.release(root, bump="minor")
    git(root, "commit", "--allow-empty", "-q", "-m", "second")
    api.release(root, bump="minor")
    return root


@pytest.fixture
def project(released: Path, tmp_path: Path) -> Path:
    """A fresh copy of `released` (git repository and registry) for one test."""
    root = tmp_path / "churn"
    shutil.copytree(released, root, symlinks=True)
    return root


def registry(root: Path) -> Any:
    return open_registry(load_spec(root / "lifecycle.yaml"))


# --- promote ----------------------------------------------------------------------------


def test_promote_writes_gto_stage_tags_that_gto_reads(project: Path) -> None:
    first = api.promote(project, ref="0.1.0", stage="prod")
    assert (first.tag, first.ref, first.previous) == ("churn#prod#1", "0.1.0/1", None)
    second = api.promote(project, ref="0.2.0/1", stage="prod")
    assert (second.tag, second.previous) == ("churn#prod#2", "0.1.0/1")
    api.promote(project, ref="0.1.0", stage="staging")

    # Annotated, on the release's commit, naming the registry entry.
    assert git(project, "cat-file", "-t", "churn#prod#2") == "tag"
    assert git(project, "rev-list", "-n1", "churn#prod#2") == git(
        project, "rev-list", "-n1", "churn@v0.2.0"
    )
    message = git(project, "tag", "-l", "--format=%(contents)", "churn#prod#2")
    assert parse_release_message(message)["registry"]["ref"] == "0.2.0/1"

    shown = gto(project, "show", "--json")["churn"]
    assert shown["stage"] == {"prod": "v0.2.0", "staging": "v0.1.0"}
    events = gto(project, "history", "churn", "--json")
    assigned = [(e["stage"], e["version"]) for e in events if e["event"] == "assignment"]
    assert sorted(assigned) == [("prod", "v0.1.0"), ("prod", "v0.2.0"), ("staging", "v0.1.0")]

    listing = api.models(project)
    assert listing.stages == {"0.1.0/1": ("staging",), "0.2.0/1": ("prod",)}
    history = {i.version: i.stages for i in api.history(project).items}
    assert history == {"0.1.0": ("staging",), "0.2.0": ("prod",)}


def test_promoting_a_model_to_the_stage_it_holds_tags_nothing(project: Path) -> None:
    first = api.promote(project, ref="0.1.0", stage="prod")
    tags = git(project, "tag").split()
    again = api.promote(project, ref="0.1.0/1", stage="prod")
    assert (again.unchanged, again.tag, again.previous) == (True, first.tag, "0.1.0/1")
    assert git(project, "tag").split() == tags
    out = mlcycle("promote", "0.1.0", "--stage", "prod", cwd=project)
    assert out.code == 0
    assert "0.1.0/1 is already in prod (tag churn#prod#1): nothing to do" in out.out
    # Another model still moves the stage.
    assert api.promote(project, ref="0.2.0", stage="prod").tag == "churn#prod#2"


def test_stages_gto_assigned_are_read(project: Path) -> None:
    gto(project, "assign", "churn", "--version", "v0.1.0", "--stage", "qa")
    assert "churn#qa#1" in git(project, "tag").split()
    assert api.models(project).stages == {"0.1.0/1": ("qa",)}
    assert [(i.version, i.stages) for i in api.history(project).items] == [
        ("0.1.0", ("qa",)),
        ("0.2.0", ()),
    ]
    # Our counter continues GTO's.
    assert api.promote(project, ref="0.2.0", stage="qa").tag == "churn#qa#2"
    gto(project, "deprecate", "churn", "v0.2.0", "qa")  # GTO's unassign: churn#qa!#3
    assert api.models(project).stages == {"0.1.0/1": ("qa",)}


def test_gto_assign_shows_in_the_cli_listings_as_promote_does(project: Path) -> None:
    # The same stage written both ways, on two copies of the project: the listings
    # the user reads (`models --json`, `history --json`, the tables) are the same.
    promoted = project.parent / "promoted"
    shutil.copytree(project, promoted, symlinks=True)
    assert mlcycle("promote", "0.1.0", "--stage", "qa", cwd=promoted).code == 0
    gto(project, "assign", "churn", "--version", "v0.1.0", "--stage", "qa")

    def listings(root: Path) -> tuple[Any, Any, str]:
        models = mlcycle("models", "--json", cwd=root).json()
        history = mlcycle("history", "--json", cwd=root).json()
        stages = [(e["ref"], e["stages"]) for e in models["entries"]]
        releases = [(r["version"], r["status"], r["stages"]) for r in history["releases"]]
        table = mlcycle("history", cwd=root).out
        return stages, releases, next(line for line in table.splitlines() if "0.1.0" in line)

    by_gto, by_mlcycle = listings(project), listings(promoted)
    assert (
        by_gto[:2]
        == by_mlcycle[:2]
        == (
            [("0.1.0/1", ["qa"]), ("0.2.0/1", [])],
            [("0.1.0", "released", ["qa"]), ("0.2.0", "released", [])],
        )
    )
    assert by_gto[2].split()[:3] == by_mlcycle[2].split()[:3] == ["0.1.0", "released", "qa"]


def test_gto_and_mlcycle_move_one_stage_in_turn(project: Path) -> None:
    api.promote(project, ref="0.1.0", stage="prod")
    gto(project, "assign", "churn", "--version", "v0.2.0", "--stage", "prod")
    assert api.models(project).stages == {"0.2.0/1": ("prod",)}
    assert gto(project, "show", "--json")["churn"]["stage"] == {"prod": "v0.2.0"}
    # GTO's simple tags (no counter) are read too.
    gto(project, "assign", "churn", "--version", "v0.1.0", "--stage", "dev", "--simple", "true")
    assert "churn#dev" in git(project, "tag").split()
    assert api.models(project).stages == {"0.1.0/1": ("dev",), "0.2.0/1": ("prod",)}
    # gto takes the stage back from 0.2.0 (its unassign tag): both fall back to 0.1.0,
    # which mlcycle had promoted there before.
    gto(project, "deprecate", "churn", "v0.2.0", "prod")
    assert api.models(project).stages == {"0.1.0/1": ("dev", "prod")}
    assert gto(project, "show", "--json")["churn"]["stage"] == {"dev": "v0.1.0", "prod": "v0.1.0"}


def test_a_version_gto_registered_shows_missing_with_its_stage(project: Path) -> None:
    git(project, "commit", "--allow-empty", "-q", "-m", "third")
    gto(project, "register", "churn", "HEAD", "--version", "v0.3.0")
    gto(project, "assign", "churn", "--version", "v0.3.0", "--stage", "canary")
    items = {i.version: (i.status.value, i.stages) for i in api.history(project).items}
    # A release tag without a registry entry: `missing`, and its stage is shown.
    assert items["0.3.0"] == ("missing", ("canary",))
    with pytest.raises(UsageError, match="names no model"):
        api.promote(project, ref="0.3.0", stage="prod")


def test_a_stage_gto_assigned_is_what_deploy_takes(project: Path, tmp_path: Path) -> None:
    _with_stage(project, "prod")
    gto(project, "assign", "churn", "--version", "v0.1.0", "--stage", "prod")
    result = api.deploy(project, context_only=tmp_path / "ctx")
    assert result.entry is not None and str(result.entry.ref) == "0.1.0/1"


def test_promote_refuses_what_it_cannot_promote(project: Path) -> None:
    with pytest.raises(UsageError, match="names no model"):
        api.promote(project, ref="9.9.9", stage="prod")
    with pytest.raises(UsageError, match="not a stage name"):
        api.promote(project, ref="0.1.0", stage="-prod")
    reg = registry(project)
    model = reg.load_model(reg.get("0.2.0/1"))
    reg.register(
        model,
        release="dev",
        metrics={},
        gate=None,
        data=None,
        spec_hash=None,
        git_commit=None,
        procurement="unattended",
        status="candidate",
    )
    with pytest.raises(UsageError, match="no release tag"):
        api.promote(project, ref="dev/1", stage="prod")
    assert "#" not in git(project, "tag")


def test_promote_pushes_and_a_refused_push_leaves_no_tag(project: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(project, "remote", "add", "origin", str(remote))
    result = api.promote(project, ref="0.2.0", stage="prod", push=True)
    assert result.pushed
    assert "churn#prod#1" in git(remote, "tag").split()
    with pytest.raises(GitError) as failed:
        api.promote(project, ref="0.1.0", stage="prod", push=True, remote="nowhere")
    assert failed.value.exit_code == ExitCode.RUNTIME
    assert "churn#prod#2" not in git(project, "tag").split()


# --- retire -----------------------------------------------------------------------------


def test_retire_takes_a_release_out_of_service_for_good(project: Path) -> None:
    api.promote(project, ref="0.1.0", stage="prod")
    api.promote(project, ref="0.2.0", stage="prod")
    result = api.retire(project, ref="0.2.0", reason="worse on new customers")
    assert (result.refs, result.tag, result.current) == (("0.2.0/1",), "churn@v0.2.0!#3", "0.1.0/1")
    assert git(project, "cat-file", "-t", "churn@v0.2.0!#3") == "tag"

    # GTO reads the deregistration: prod falls back to the version promoted before.
    shown = gto(project, "show", "--json")["churn"]
    assert shown["version"] == "v0.1.0" and shown["stage"] == {"prod": "v0.1.0"}

    # Kept for lineage, never selected or served again.
    reg = registry(project)
    entry = reg.get("0.2.0/1")
    assert entry.retired and entry.retired["reason"] == "worse on new customers"
    assert reg.get("latest").ref == ModelRef("0.1.0", 1)
    assert reg.current().ref.release == "0.1.0"
    with pytest.raises(UsageError, match="retired"):
        reg.set_current("0.2.0/1")
    with pytest.raises(UsageError, match="retired"):
        api.promote(project, ref="0.2.0", stage="prod")
    target = serve_target(project, no_store=True)
    assert target.ref == "0.1.0/1"
    with pytest.raises(UsageError, match="is retired"):
        serve_target(project, ref="0.2.0/1", no_store=True)

    listing = api.models(project)
    assert [(str(e.ref), e.state.value) for e in listing.entries] == [
        ("0.1.0/1", "released"),
        ("0.2.0/1", "retired"),
    ]
    assert listing.stages == {"0.1.0/1": ("prod",)}
    assert [(i.version, i.status.value, i.current) for i in api.history(project).items] == [
        ("0.1.0", "released", True),
        ("0.2.0", "retired", False),
    ]
    # Again: refused as GTO's `deprecate` refuses it, and nothing new is tagged.
    with pytest.raises(UsageError, match=r"churn 0\.2\.0 is already retired; nothing to do"):
        api.retire(project, ref="0.2.0")
    assert git(project, "tag").split().count("churn@v0.2.0!#3") == 1
    # Its stage went back to the model promoted there before, and the result said so.
    assert result.warnings == ("stage prod goes back to 0.1.0/1, promoted there before",)


def test_retiring_the_model_in_a_stage_says_the_stage_is_left_empty(project: Path) -> None:
    api.promote(project, ref="0.2.0", stage="prod")
    result = api.retire(project, ref="0.2.0")
    assert result.warnings == (
        "stage prod is left empty (it held 0.2.0/1): promote another model with "
        "`mlcycle promote REF --stage prod`",
    )
    cli = mlcycle("retire", "0.1.0/1", cwd=project)  # a generation: no stage, no warning
    assert cli.code == 0 and "warning" not in cli.err
    twice = mlcycle("retire", "0.1.0/1", cwd=project)
    assert twice.code == ExitCode.USAGE and "0.1.0/1 is already retired" in twice.err


def test_retire_renders_the_emptied_stage(project: Path) -> None:
    api.promote(project, ref="0.1.0", stage="prod")
    cli = mlcycle("retire", "0.1.0", cwd=project)
    assert cli.code == 0, cli.err
    assert "warning: stage prod is left empty (it held 0.1.0/1)" in " ".join(cli.err.split())


def test_deploying_a_retired_release_is_a_usage_error(project: Path, tmp_path: Path) -> None:
    api.retire(project, ref="0.1.0")
    with pytest.raises(UsageError, match=r"churn 0\.1\.0/1 is retired .*and cannot be deployed"):
        api.deploy(project, ref="0.1.0", context_only=tmp_path / "ctx")
    cli = mlcycle("deploy", "0.1.0", "--context-only", tmp_path / "ctx", cwd=project)
    assert cli.code == ExitCode.USAGE, cli.err  # like `promote 0.1.0` (it was 1)
    assert "cannot be deployed" in cli.err and "Traceback" not in cli.err
    assert not (tmp_path / "ctx").exists()


def test_what_the_active_manifest_serves_is_not_retired(project: Path) -> None:
    from mlcycle.registry.manifests import FOLLOW, PINNED

    reg = registry(project)
    reg.manifests().publish(
        release="0.1.0", selector={"kind": "pinned"}, mode=PINNED, arms=1, pinned=["0.1.0/1"]
    )
    for ref in ("0.1.0", "0.1.0/1"):
        with pytest.raises(UsageError, match=r"pins 0\.1\.0/1.*deploy another model first"):
            api.retire(project, ref=ref)
    assert not reg.get("0.1.0/1").retired
    assert "!" not in git(project, "tag")  # refused before any tag
    api.retire(project, ref="0.2.0")  # not served: retires
    # Following a release: its last serving generation stays.
    reg.manifests().publish(release="0.1.0", selector={"kind": "latest"}, mode=FOLLOW, arms=1)
    cli = mlcycle("retire", "0.1.0", cwd=project)
    assert cli.code == ExitCode.USAGE
    assert "follows release 0.1.0" in cli.err and "deploy another model first" in cli.err


def test_a_release_gto_deprecated_is_retired_by_running_retire(project: Path) -> None:
    gto(project, "deprecate", "churn", "v0.2.0")
    assert [(i.version, i.status.value) for i in api.history(project).items][-1] == (
        "0.2.0",
        "retired",
    )
    listing = api.models(project)  # told the same way as history, with what to do
    assert [listing.state_of(e).value for e in listing.entries] == ["released", "retired"]
    assert listing.warnings and "mlcycle retire 0.2.0" in listing.warnings[0]
    result = api.retire(project, ref="0.2.0")
    assert api.models(project).warnings == ()
    assert result.tag == "churn@v0.2.0!"  # GTO's own tag (without a counter), no second one
    assert registry(project).current().ref.release == "0.1.0"


def test_a_project_gto_deprecated_as_a_whole_is_a_warning_of_models(project: Path) -> None:
    gto(project, "deprecate", "churn")  # GTO's artifact deprecation: churn@deprecated
    assert "churn@deprecated" in git(project, "tag").split()
    assert gto(project, "show", "--json") == {}
    listing = api.models(project)
    assert [listing.state_of(e).value for e in listing.entries] == ["released", "released"]
    (warning,) = listing.warnings
    assert "GTO deprecated churn as a whole (tag churn@deprecated)" in warning
    assert "git tag -d churn@deprecated" in warning
    shown = mlcycle("models", cwd=project)
    assert shown.code == 0 and "GTO deprecated churn" in shown.err + shown.out
    git(project, "tag", "-d", "churn@deprecated")
    assert api.models(project).warnings == ()


def test_retire_one_generation_in_the_registry(project: Path) -> None:
    result = api.retire(project, ref="0.1.0/1")
    assert (result.refs, result.tag, result.current) == (("0.1.0/1",), None, "0.2.0/1")
    assert "!" not in git(project, "tag")
    assert registry(project).get("0.1.0/1").state.value == "retired"


def test_retiring_every_release_leaves_nothing_current(project: Path) -> None:
    api.retire(project, ref="0.2.0")
    assert api.retire(project, ref="0.1.0").current is None
    with pytest.raises(Exception, match="no model is current"):
        serve_target(project, no_store=True)


def test_a_dynamic_manifest_never_serves_a_retired_generation(project: Path) -> None:
    from mlcycle.registry.manifests import FOLLOW

    reg = registry(project)
    model = reg.load_model(reg.get("0.2.0/1"))
    for _ in range(2):
        reg.register(
            model,
            release="0.2.0",
            metrics={},
            gate=None,
            data=None,
            spec_hash=None,
            git_commit=None,
            procurement="unattended",
            status="candidate",
        )
    manifest = reg.manifests().publish(
        release="0.2.0", selector={"kind": "latest"}, mode=FOLLOW, arms=2
    )
    assert [str(e.ref) for e in manifest.resolve(reg)] == ["0.2.0/3", "0.2.0/2"]
    api.retire(project, ref="0.2.0/3")
    assert [str(e.ref) for e in manifest.resolve(reg)] == ["0.2.0/2", "0.2.0/1"]


# --- deploy by stage --------------------------------------------------------------------


def _with_stage(root: Path, stage: str) -> None:
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    assert "\ndeployment:\n" in text
    spec.write_text(text.replace("\ndeployment:\n", f"\ndeployment:\n  stage: {stage}\n", 1))


def test_a_wrapped_deploy_builds_the_model_in_the_spec_stage(project: Path, tmp_path: Path) -> None:
    _with_stage(project, "prod")
    assert api.validate(project / "lifecycle.yaml").ok
    with pytest.raises(UsageError, match="no model is in stage 'prod'"):
        api.deploy(project, context_only=tmp_path / "none")
    api.promote(project, ref="0.1.0", stage="prod")
    result = api.deploy(project, context_only=tmp_path / "ctx")
    assert result.entry is not None and str(result.entry.ref) == "0.1.0/1"
    assert str(api.deploy(project, ref="0.2.0", context_only=tmp_path / "c2").entry.ref) == (
        "0.2.0/1"
    )


def test_a_stage_whose_generation_was_retired_deploys_nothing(
    project: Path, tmp_path: Path
) -> None:
    # Retiring one generation writes no GTO tag (GTO has no generations), yet the stage
    # that named it is empty from then on: deploying by stage builds no retired model.
    _with_stage(project, "prod")
    api.promote(project, ref="0.1.0", stage="prod")
    api.retire(project, ref="0.1.0/1")
    with pytest.raises(UsageError) as info:
        api.deploy(project, context_only=tmp_path / "ctx")
    assert str(info.value) == "churn: no model is in stage 'prod' (stages: none)"
    assert info.value.exit_code == ExitCode.USAGE
    assert info.value.hint == "promote one: mlcycle promote RELEASE --stage prod"
    assert not (tmp_path / "ctx").exists()


def test_a_stage_that_is_not_a_name_is_a_spec_error(project: Path) -> None:
    _with_stage(project, '"pro d"')
    report = api.validate(project / "lifecycle.yaml")
    assert not report.ok
    assert [d.line for d in report.errors] == [70]


# --- the CLI: exit codes, one status vocabulary, versioned JSON ---------------------------


def test_cli_promote_retire_and_listings(project: Path) -> None:
    promoted = mlcycle("promote", "0.2.0", "--stage", "prod", "--json", cwd=project)
    assert promoted.code == 0, promoted.err
    assert promoted.json()["format"] == "mlcycle/promote@1"
    assert promoted.json()["tag"] == "churn#prod#1"

    unknown = mlcycle("promote", "7.0.0", "--stage", "prod", cwd=project)
    assert unknown.code == ExitCode.USAGE and "names no model" in unknown.err
    assert "Traceback" not in unknown.err
    assert mlcycle("retire", "7.0.0", cwd=project).code == ExitCode.USAGE
    nowhere = mlcycle("promote", "0.1.0", "-s", "qa", "--push", "--remote", "x", cwd=project)
    assert nowhere.code == ExitCode.RUNTIME, nowhere.err

    models = mlcycle("models", "--json", cwd=project).json()
    assert models["format"] == "mlcycle/models@1"
    rows = {e["ref"]: (e["status"], e["stages"], e["current"]) for e in models["entries"]}
    # The released, current model is `released` in both listings (it was `candidate`).
    assert rows == {"0.1.0/1": ("released", [], False), "0.2.0/1": ("released", ["prod"], True)}
    history = mlcycle("history", "--json", cwd=project).json()
    assert history["format"] == "mlcycle/history@1"
    assert [(r["version"], r["status"], r["stages"]) for r in history["releases"]] == [
        ("0.1.0", "released", []),
        ("0.2.0", "released", ["prod"]),
    ]

    retired = mlcycle("retire", "0.2.0", "--reason", "drift", cwd=project)
    assert retired.code == 0, retired.err
    assert "churn@v0.2.0!#2" in retired.out and "current model: 0.1.0/1" in retired.out
    table = mlcycle("models", cwd=project).out
    assert "retired" in table and "released" in table and "candidate" not in table
    assert "retired" in mlcycle("history", cwd=project).out


@pytest.mark.parametrize(
    ("args", "kind"),
    [
        (("validate", "--json"), "validation"),
        (("plan", "--json"), "plan"),
        (("models", "--json"), "models"),
        (("history", "--json"), "history"),
    ],
)
def test_every_json_document_names_its_format(
    project: Path, args: tuple[str, ...], kind: str
) -> None:
    result = mlcycle(*args, cwd=project)
    document = json.loads(result.out)
    assert document["format"] == f"mlcycle/{kind}@1", result.err


def test_history_shows_the_author_by_name_and_json_keeps_the_email(project: Path) -> None:
    table = mlcycle("history", cwd=project)
    assert table.code == 0, table.err
    assert "mlcycle tests" in table.out and "tests@mlcycle.invalid" not in table.out
    rows = mlcycle("history", "--json", cwd=project).json()["releases"]
    assert {r["author"] for r in rows} == {"mlcycle tests <tests@mlcycle.invalid>"}


def test_retire_of_a_moving_ref_hints_only_at_models_that_exist(
    project: Path, tmp_path: Path
) -> None:
    import re

    from mlcycle.registry import CURRENT, LATEST, LocalRegistry
    from tests.spec.helpers import cli

    known = {"0.1.0", "0.1.0/1", "0.2.0", "0.2.0/1"}
    for word in ("current", "latest"):
        refused = cli("retire", word, cwd=project)
        assert refused.code == ExitCode.USAGE, refused.output
        hint = " ".join(refused.stderr.split()).split("hint: ", 1)[1]
        assert hint == (
            f"{word} is 0.2.0/1 now: mlcycle retire 0.2.0/1 (that generation), or mlcycle "
            "retire 0.2.0 (its release)"
        )
        assert set(re.findall(r"\d+\.\d+\.\d+(?:/\d+)?", hint)) <= known
    # The registry says the same when called directly.
    for ref in (CURRENT, LATEST):
        with pytest.raises(UsageError) as info:
            registry(project).retire(ref)
        assert info.value.hint is not None and info.value.hint.startswith(
            f"{ref} is 0.2.0/1 now: mlcycle retire 0.2.0/1"
        )
    # With no model at all, no model is named.
    with pytest.raises(UsageError) as empty:
        LocalRegistry(tmp_path / "empty", "churn").retire(CURRENT)
    assert empty.value.hint == "the registry is empty; train or release a model first"
