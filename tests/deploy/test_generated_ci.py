"""The CI files `mlcycle init` writes, run verbatim as their CI would run them (issue 11, 3d).

For each pattern and each CI (GitHub Actions, GitLab CI), the generated YAML is
parsed and every job runs, in the file's order, exactly the `run:` / `script:`
lines it holds, with that CI's variables set, in the checkout that CI makes: a
shallow (`--depth 1`), tagless, detached clone of a bare remote in tmp_path,
which already holds a release tag pushed from a laptop. mlcycle is the one a
user gets: this checkout's wheel installed in a fresh venv from a local package
index (`PIP_INDEX_URL`), so each job's `pip install "mlcycle-cli==X.Y.Z"` must
resolve there. `mlcycle deploy` builds its image with the real Docker engine.

Only what the CI itself provides is emulated, and each emulation is named:
- `uses: actions/checkout` → the clone above; `uses: actions/setup-python` →
  the venv first on PATH; no other action may appear;
- GitLab's `image: python:3.11-slim` → the host, with an `apt-get` that only
  accepts installing git (git is already there); `services: docker:dind` →
  the host's Docker engine in place of the job's DOCKER_HOST;
- `${{ inputs.NAME }}` → the workflow_dispatch input's default, and a job's
  `if:` / `rules:` condition → the event that makes it run;
- the push URL GitLab jobs build from CI_SERVER_HOST → the bare remote, through
  git's `url.<base>.insteadOf` in the runner's global git config.
The runner has a fresh HOME and no git identity: the jobs must set their own.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlcycle.scaffold import PATTERNS
from tests.package.conftest import docker_engine

__all__ = ["docker_engine"]  # fixture

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NAME = "churn"
LAPTOP_TAG = f"{NAME}@v0.1.0"
GITLAB_HOST = "gitlab.example.test"
GITLAB_PROJECT = f"team/{NAME}"
RELEASE_TOKEN = "glpat-test-token"
KNOWN_ACTIONS = {"actions/checkout", "actions/setup-python"}

APT_GET = """#!/bin/sh
# python:3.11-slim has no git; the job installs it. On this host git is there already.
case "$*" in
  "update -qq"|"install -y -qq git") exit 0 ;;
esac
echo "apt-get (test image): unexpected arguments: $*" >&2
exit 100
"""


@dataclass
class Job:
    """One CI job: its name, its environment and the shell scripts it runs, in order."""

    name: str
    event: str
    variables: dict[str, str]
    scripts: list[str]
    docker_service: bool = False
    log: list[str] = field(default_factory=list)


# --- reading the generated files ------------------------------------------------------


def github_jobs(path: Path) -> list[Job]:
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # PyYAML reads `on` as True
    inputs = {
        name: str(spec["default"])
        for name, spec in (triggers.get("workflow_dispatch") or {}).get("inputs", {}).items()
    }
    jobs = []
    for name, job in workflow["jobs"].items():
        event = _github_event(job.get("if"))
        scripts = []
        for step in job["steps"]:
            if "uses" in step:
                assert step["uses"].split("@")[0] in KNOWN_ACTIONS, step
                continue
            scripts.append(_github_expressions(step["run"], inputs))
        jobs.append(
            Job(name, event, {str(k): str(v) for k, v in job.get("env", {}).items()}, scripts)
        )
    return jobs


def _github_event(condition: str | None) -> str:
    if condition is None:
        return "push"
    match = re.fullmatch(r"github\.event_name == '(\w+)'", condition.strip())
    assert match, f"the test cannot evaluate the condition {condition!r}"
    return match.group(1)


def _github_expressions(script: str, inputs: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        expression = match.group(1).strip()
        assert expression.startswith("inputs."), f"cannot evaluate ${{{{ {expression} }}}}"
        return inputs[expression.removeprefix("inputs.")]

    return re.sub(r"\$\{\{(.+?)\}\}", value, script)


def gitlab_jobs(path: Path) -> list[Job]:
    pipeline = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert str(pipeline["image"]).startswith("python:3.11")  # emulated by the host
    before = pipeline.get("default", {}).get("before_script", [])
    stages = pipeline["stages"]
    found = [(k, v) for k, v in pipeline.items() if isinstance(v, dict) and "script" in v]
    found.sort(key=lambda item: stages.index(item[1]["stage"]))
    jobs = []
    for name, job in found:
        rules = job.get("rules", [])
        assert len(rules) <= 1, rules
        event = _gitlab_source(rules[0]["if"]) if rules else "push"
        variables = {**pipeline.get("variables", {}), **job.get("variables", {})}
        services = job.get("services", [])
        assert services in ([], ["docker:dind"]), services
        script = "\n".join(job.get("before_script", before) + job["script"])
        jobs.append(
            Job(
                name,
                event,
                {str(k): str(v) for k, v in variables.items()},
                [script],
                docker_service=bool(services),
            )
        )
    return jobs


def _gitlab_source(condition: str) -> str:
    match = re.fullmatch(r'\$CI_PIPELINE_SOURCE == "(\w+)"', condition.strip())
    assert match, f"the test cannot evaluate the rule {condition!r}"
    return match.group(1)


# --- the CI's side ----------------------------------------------------------------------


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def checkout(remote: Path, workspace: Path) -> str:
    """What the CI checks out: the branch's last commit only, no tags, HEAD detached."""
    git(
        workspace.parent,
        "clone",
        "-q",
        "--depth",
        "1",
        "--no-tags",
        f"file://{remote}",
        str(workspace),
    )
    git(workspace, "checkout", "-q", "--detach")
    return git(workspace, "rev-parse", "HEAD")


def ci_variables(ci: str, job: Job, commit: str) -> dict[str, str]:
    if ci == "github":
        return {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": job.event,
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_REF_NAME": "main",
            "GITHUB_REF_TYPE": "branch",
            "GITHUB_SHA": commit,
            "GITHUB_REPOSITORY": GITLAB_PROJECT,
            "GITHUB_JOB": job.name,
        }
    return {
        "CI": "true",
        "GITLAB_CI": "true",
        "CI_PIPELINE_SOURCE": job.event,
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_REF_NAME": "main",
        "CI_DEFAULT_BRANCH": "main",
        "CI_COMMIT_SHA": commit,
        "CI_JOB_NAME": job.name,
        "CI_SERVER_HOST": GITLAB_HOST,
        "CI_PROJECT_PATH": GITLAB_PROJECT,
        "GITLAB_USER_NAME": "Ada Lovelace",
        "GITLAB_USER_EMAIL": "ada@example.test",
        "RELEASE_TOKEN": RELEASE_TOKEN,  # the CI/CD variable the file asks for
    }


def runner_environment(tmp: Path, venv_bin: Path, index: str, remote: Path) -> dict[str, str]:
    """A fresh runner: its own HOME without a git identity, the venv first on PATH."""
    home = tmp / "runner-home"
    tools = tmp / "runner-tools"
    home.mkdir()
    tools.mkdir()
    apt_get = tools / "apt-get"
    apt_get.write_text(APT_GET)
    apt_get.chmod(0o755)
    push_url = f"https://oauth2:{RELEASE_TOKEN}@{GITLAB_HOST}/{GITLAB_PROJECT}.git"
    (home / ".gitconfig").write_text(f'[url "file://{remote}"]\n\tinsteadOf = {push_url}\n')
    keep = ("LANG", "LC_ALL", "TMPDIR", "DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    env.pop("PIP_EXTRA_INDEX_URL", None)
    env.update(
        {
            "HOME": str(home),
            "PATH": os.pathsep.join([str(tools), str(venv_bin), os.environ["PATH"]]),
            "GIT_CONFIG_NOSYSTEM": "1",
            "PIP_INDEX_URL": index,  # the `pip install "mlcycle-cli==X"` line resolves here
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "NO_COLOR": "1",
        }
    )
    return env


def run_job(ci: str, job: Job, remote: Path, runner: dict[str, str], tmp: Path) -> str:
    workspace = tmp / f"{ci}-{job.name}"
    commit = checkout(remote, workspace)
    env = {**runner, **job.variables, **ci_variables(ci, job, commit)}
    if job.docker_service:  # services: docker:dind is this host's engine
        for variable in ("DOCKER_HOST", "DOCKER_TLS_CERTDIR"):
            env.pop(variable, None)
        if "DOCKER_HOST" in os.environ:
            env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    output = []
    for script in job.scripts:
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        output.append(f"$ {script}\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, f"{ci} job {job.name} failed:\n" + "\n".join(output)
    return "\n".join(output)


# --- the project, as a team pushes it ------------------------------------------------


def laptop_project(tmp: Path, pattern: str, env: dict[str, str], shared: Path) -> Path:
    """`mlcycle init`, the steps the pattern asks for before CI can release, a first
    release tag made on the laptop, a commit after it, everything pushed to a bare remote."""
    laptop = tmp / "laptop"
    run = {"cwd": tmp, "env": env, "capture_output": True, "text": True, "check": False}
    init = subprocess.run(["mlcycle", "init", NAME, "--pattern", pattern, "-d", str(laptop)], **run)
    assert init.returncode == 0, init.stderr
    run["cwd"] = laptop
    if pattern == "interactive":  # its "Next:" list: train by hand, commit the model
        trained = subprocess.run(["python", "train_by_hand.py"], **run)
        assert trained.returncode == 0, trained.stderr
        git(laptop, "add", "model.skops")
        git(laptop, "commit", "-qm", "Model trained by hand")
    if pattern == "adaptive":  # as its CI file says: a registry and store CI jobs share
        spec = laptop / "lifecycle.yaml"
        text = spec.read_text()
        text = text.replace("path: .mlcycle/registry", f"path: {shared / 'registry'}")
        text = text.replace("sqlite:///.mlcycle/store.db", f"sqlite:///{shared / 'store.db'}")
        spec.write_text(text)
        git(laptop, "commit", "-qam", "Shared registry and store for the CI agents")
    git(laptop, "tag", "-a", "-m", "released on a laptop", LAPTOP_TAG)
    # CI releases the work done since: a commit holds one version (GTO), and `release`
    # refuses a commit that already carries one.
    (laptop / "CHANGES.md").write_text("- work after the laptop release\n")
    git(laptop, "add", "CHANGES.md")
    git(laptop, "commit", "-qm", "Work after the laptop release")
    remote = tmp / "remote.git"
    git(tmp, "init", "-q", "--bare", str(remote))
    git(laptop, "remote", "add", "origin", str(remote))
    git(laptop, "push", "-q", "origin", "main", "--tags")
    return laptop


@pytest.mark.parametrize("ci", ["github", "gitlab"])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_generated_ci_jobs_pass_verbatim(
    pattern: str,
    ci: str,
    stranger: tuple[Path, dict[str, str]],
    package_index: str,
    docker_engine: Any,
    tmp_path: Path,
) -> None:
    home, env = stranger
    shared = tmp_path / "shared"
    shared.mkdir()
    laptop = laptop_project(tmp_path, pattern, env, shared)
    remote = tmp_path / "remote.git"
    if ci == "github":
        jobs = github_jobs(laptop / ".github" / "workflows" / "mlcycle.yml")
    else:
        jobs = gitlab_jobs(laptop / ".gitlab-ci.yml")
    assert [j.name for j in jobs][:2] == ["validate", "release"]
    runner = runner_environment(tmp_path, home / "venv" / "bin", package_index, remote)

    logs = {job.name: run_job(ci, job, remote, runner, tmp_path) for job in jobs}

    # The release saw the laptop's tag in a shallow, tagless, detached clone: it made
    # the next version, said where its branch and the tag came from, and pushed.
    release = logs["release"]
    assert f"fetched 1 release tag(s) from origin that this clone lacked: {LAPTOP_TAG}" in release
    source = "GitHub Actions: GITHUB_REF" if ci == "github" else "GitLab CI: CI_COMMIT_BRANCH"
    assert f"branch main (from {source})" in release
    assert f"released {NAME}@v0.2.0 (after 0.1.0)" in release
    assert git(remote, "tag", "--list").split() == [LAPTOP_TAG, f"{NAME}@v0.2.0"]
    assert "Traceback" not in "\n".join(logs.values())
