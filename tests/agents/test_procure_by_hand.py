"""Interactive procurement through the integration agent: evaluate → gate → register.

`release` of an interactive lifecycle goes through `procure_by_hand`, beside `procure`:
the same gate and the same registration (with the ONNX form), without training and
without a run record (nothing was trained).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlcycle.agents.integration import HandProcurement, procure_by_hand
from mlcycle.api.project import Project, open_project
from mlcycle.errors import GateRejectedError
from mlcycle.registry import TrustPolicy
from mlcycle.registry.handmade import model_file, read_model_file

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "interactive"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interactive example with its model trained by hand, once for the module."""
    root = tmp_path_factory.mktemp("byhand") / "interactive"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".mlcycle"))
    subprocess.run([sys.executable, "train_by_hand.py"], cwd=root, check=True, capture_output=True)
    return root


def _project(trained: Path, tmp_path: Path, edit: str = "") -> Project:
    root = tmp_path / "p"
    shutil.copytree(trained, root)
    spec = root / "lifecycle.yaml"
    spec.write_text(spec.read_text() + edit)
    return open_project(root)


def _procure(project: Project, release: str = "0.1.0") -> HandProcurement:
    path = model_file(project.spec, None)
    trust = TrustPolicy.for_project(project.spec.root, project.spec.model.code)
    model = read_model_file(path, trust=trust)
    return procure_by_hand(
        project.spec,
        project.registry,
        model,
        release=release,
        name=path.name,
        location=str(path),
        extra={"tag": f"x@v{release}"},
    )


def test_a_hand_trained_model_is_evaluated_gated_and_registered_current(
    trained: Path, tmp_path: Path
) -> None:
    project = _project(trained, tmp_path)
    result = _procure(project)

    entry = result.entry
    assert project.registry.current() == entry
    assert str(entry.ref) == "0.1.0/1"
    assert entry.procurement.value == "interactive"
    assert entry.metrics["roc_auc"] > 0.9
    assert result.gate.passed
    assert [f["name"] for f in entry.data["features"]][:2] == ["mean_radius", "mean_texture"]
    assert entry.onnx is not None and "verified on 569 rows" in entry.onnx.note
    assert entry.extra["tag"] == "x@v0.1.0"
    assert any("can flatter it" in w for w in result.warnings)
    assert project.registry.runs().runs() == []  # nothing was trained: no run


def test_a_gate_that_refuses_leaves_the_registry_empty(trained: Path, tmp_path: Path) -> None:
    project = _project(trained, tmp_path, "\nevaluation:\n  gate:\n    - roc_auc >= 0.9999\n")
    with pytest.raises(GateRejectedError, match=r"roc_auc >= 0\.9999"):
        _procure(project)
    assert project.registry.entries() == []
    assert project.registry.current() is None


def test_without_declared_data_the_model_is_registered_unevaluated(
    trained: Path, tmp_path: Path
) -> None:
    project = _project(trained, tmp_path)
    spec = project.file
    text = spec.read_text()
    start = text.index("\ndata:\n")
    end = text.index("\n# What a release", start)
    spec.write_text(text[:start] + "\n" + text[end:])
    project = open_project(spec.parent)

    result = _procure(project)

    entry = result.entry
    assert entry.metrics == {}
    assert result.gate is None
    assert entry.data["kind"] == "model file"
    assert entry.data["reproducible"] is False
    assert any("without any evaluation" in w for w in result.warnings)
