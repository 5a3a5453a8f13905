"""`mlcycle plan`: the stages of each pattern, who runs them, human and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlcycle.spec import load_spec
from mlcycle.spec.plan import Actor, build_plan
from tests.spec.helpers import FIXTURES, assert_clean_failure_output, cli, spec_text, write_spec

STAGES = {
    "interactive": {
        "rnd": ["implement", "explore", "learn", "finalize"],
        "production": ["integrate", "deploy", "serve"],
        "agents": [],
    },
    "open": {
        "rnd": ["implement", "data-source", "explore", "experiment", "finalize"],
        "production": ["integrate", "deploy", "serve"],
        "agents": ["feedback", "evaluate"],
    },
    "adaptive": {
        "rnd": ["implement", "data-source", "explore", "experiment", "finalize"],
        "production": ["integrate", "deploy", "serve"],
        "agents": ["feedback", "evaluate", "train"],
    },
    "dual": {
        "rnd": [
            "research",
            "implement",
            "data-source",
            "explore",
            "experiment",
            "reproduce",
            "finalize",
        ],
        "production": ["integrate", "deploy", "serve"],
        "agents": ["feedback", "evaluate"],
    },
}


@pytest.mark.parametrize("pattern", list(STAGES))
def test_stages_of_each_pattern(pattern: str) -> None:
    plan = build_plan(load_spec(FIXTURES / pattern))
    assert plan.pattern.pattern == pattern
    assert {lane.key: [s.key for s in lane.stages] for lane in plan.lanes} == STAGES[pattern]
    for stage in plan.stages():
        # Automated stages name the mlcycle command that runs them; manual ones none.
        if stage.by is Actor.MLCYCLE:
            assert stage.command is not None and stage.command.startswith("mlcycle ")
        else:
            assert stage.command is None


def test_interactive_plan_is_mostly_by_hand() -> None:
    plan = build_plan(load_spec(FIXTURES / "interactive"))
    by = {s.key: s.by for s in plan.stages()}
    assert by["implement"] is by["explore"] is by["learn"] is Actor.HAND
    assert by["finalize"] is Actor.MLCYCLE
    (agents,) = [lane for lane in plan.lanes if lane.key == "agents"]
    assert agents.note is not None and "no agents" in agents.note


def test_adaptive_plan_speaks_of_generations_manifest_and_selector() -> None:
    plan = build_plan(load_spec(FIXTURES / "adaptive"))
    stages = {s.key: s for s in plan.stages()}
    assert "bare artifact" in stages["integrate"].detail
    assert "manifest" in stages["deploy"].detail and "Thompson" in stages["deploy"].detail
    assert stages["train"].command == "mlcycle update"
    assert "1d" in stages["train"].detail and "500 new rows" in stages["train"].detail
    assert stages["evaluate"].command == "mlcycle evaluate --production"


def test_open_plan_has_an_integration_agent_that_trains_and_packages() -> None:
    plan = build_plan(load_spec(FIXTURES / "open"))
    integrate = next(s for s in plan.stages() if s.key == "integrate")
    assert integrate.title == "Integration agent"
    assert "roc_auc >= 0.75" in integrate.detail
    assert integrate.command == "mlcycle release"


@pytest.mark.parametrize("pattern", list(STAGES))
def test_plan_cli_renders_a_tree(pattern: str) -> None:
    result = cli("plan", str(FIXTURES / pattern))
    assert result.code == 0, result.output
    assert f"{pattern} lifecycle" in result.stdout.splitlines()[0]
    for title in ("R&D", "Production", "Agents", "by hand", "mlcycle release"):
        assert title in result.stdout
    assert "stages automated by mlcycle" in result.stdout


def test_plan_json() -> None:
    result = cli("plan", "--json", str(FIXTURES / "adaptive"))
    assert result.code == 0
    payload = json.loads(result.stdout)
    assert set(payload) == {"format", "name", "classification", "pattern", "lanes"}
    assert payload["pattern"]["name"] == "adaptive"
    assert [lane["key"] for lane in payload["lanes"]] == ["rnd", "production", "agents"]
    stage = payload["lanes"][0]["stages"][0]
    assert set(stage) == {"key", "title", "detail", "by", "command"}
    assert stage["by"] in ("mlcycle", "hand")


def test_plan_of_a_custom_lifecycle(tmp_path: Path) -> None:
    write_spec(tmp_path, spec_text(deployment="dynamic"))
    result = cli("plan", "--json", str(tmp_path))
    assert result.code == 0
    payload = json.loads(result.stdout)
    assert payload["pattern"]["name"] == "custom"
    deploy = next(s for s in payload["lanes"][1]["stages"] if s["key"] == "deploy")
    assert "manifest" in deploy["detail"]


def test_plan_of_an_invalid_spec_shows_the_diagnostics(tmp_path: Path) -> None:
    write_spec(tmp_path, spec_text(update="autonomous", data_access="adhoc"))
    result = cli("plan", str(tmp_path))
    assert result.code == 2
    assert_clean_failure_output(result)
    assert "autonomous-needs-programmatic" not in result.stderr  # ids are for --json
    assert "error: autonomous updates need programmatic data access" in result.stderr
    assert "error: invalid spec" in result.stderr
