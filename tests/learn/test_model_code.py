"""Models that use the project's own code (`model.code`): trained, stored with their code,
served from that copy, and nothing else of the project trusted (issue 13, finding 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlcycle import api
from mlcycle.api.project import open_project
from mlcycle.errors import RegistryError, UsageError
from mlcycle.package import BUNDLE_FILE, build_bundle, load_bundle, write_archive
from mlcycle.registry.artifacts import sha256_file
from tests.conftest import build_file_tree
from tests.learn.conftest import mlcycle
from tests.serve.conftest import Server, free_port, wait_ready

FEATURES = '''"""The project's feature engineering."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mypkg.steps import Clip


class AddRadiusSquared(BaseEstimator, TransformerMixin):
    """Appends the square of the first column (a plain transformer: no constraints)."""

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=float)
        return np.hstack([X, self.scale * X[:, :1] ** 2])


def log_area(X):
    X = np.asarray(X, dtype=float)
    return np.hstack([X, np.log1p(np.abs(X[:, 3:4]))])


def build():
    return make_pipeline(
        AddRadiusSquared(),
        FunctionTransformer(log_area),
        Clip(limit=1e6),
        StandardScaler(),
        LogisticRegression(max_iter=1000),
    )
'''

STEPS = """import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Clip(BaseEstimator, TransformerMixin):
    def __init__(self, limit=1e6):
        self.limit = limit

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.clip(np.asarray(X, dtype=float), -self.limit, self.limit)
"""

HELPERS = "def shout(X):\n    return X\n"


def coded_project(root: Path, *, model: str) -> Path:
    """`mlcycle init` an open project, add its feature code, use it in `model`; committed."""
    from mlcycle.api.init import init

    init(root.name, pattern="open", directory=root)
    build_file_tree(
        root,
        {
            "features.py": FEATURES,
            "helpers.py": HELPERS,  # project code that model.code does not list
            "mypkg": {"__init__.py": "", "steps.py": STEPS},
        },
    )
    spec = root / "lifecycle.yaml"
    text = spec.read_text()
    start = text.index("  pipeline:\n")
    end = text.index("  seed:")
    spec.write_text(text[:start] + model + text[end:])
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "feature code"], cwd=root, check=True)
    return root


ENTRYPOINT = "  entrypoint: features:build\n  code: [features.py, mypkg/]\n"
PIPELINE = (
    "  code: [features.py, mypkg]\n"
    "  pipeline:\n"
    "    - features.AddRadiusSquared: {scale: 0.5}\n"
    "    - mypkg.steps.Clip\n"
    "    - sklearn.preprocessing.StandardScaler\n"
    "    - sklearn.linear_model.LogisticRegression: {max_iter: 1000}\n"
)


def rows(root: Path, n: int = 5) -> list[dict[str, Any]]:
    import sqlite3

    with sqlite3.connect(root / "data" / "events.db") as con:
        cursor = con.execute(f"select * from events order by seq limit {n}")
        names = [d[0] for d in cursor.description]
        records = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    return [{k: v for k, v in r.items() if k not in ("id", "seq", "malignant")} for r in records]


def test_project_classes_as_pipeline_steps_train_and_are_stored_with_their_code(
    tmp_path: Path,
) -> None:
    root = coded_project(tmp_path / "steps", model=PIPELINE)
    assert api.validate(root).ok
    entry = api.train(root).entry
    assert entry is not None and entry.artifact.format == "skops"
    assert set(entry.code) == {"features.py", "mypkg/__init__.py", "mypkg/steps.py"}
    project = open_project(root)
    stored = project.registry.code_dir(entry)
    assert sha256_file(stored / "mypkg" / "steps.py") == entry.code["mypkg/steps.py"]
    model = project.registry.load_model(entry)
    assert model.named_steps["addradiussquared"].scale == 0.5
    # Loaded from the generation's copy, not from the project's working copy.
    assert Path(sys.modules["features"].__file__ or "").resolve().is_relative_to(stored.resolve())
    assert str(stored) not in sys.path and str(stored.resolve()) not in sys.path


def test_importing_the_code_writes_no_bytecode_into_the_project_or_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python writes __pycache__ beside what it imports (this suite's environment may
    # turn that off: PYTHONDONTWRITEBYTECODE). In a project whose .gitignore does not
    # list it, that made the tree dirty after `train`, and `release` refused it.
    root = coded_project(tmp_path / "nocache", model=PIPELINE)
    (root / ".gitignore").write_text(".mlcycle/\n")
    subprocess.run(["git", "commit", "-qam", "ignore only the registry"], cwd=root, check=True)
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    for name in ("features", "mypkg", "mypkg.steps"):  # imported afresh, from this project
        monkeypatch.delitem(sys.modules, name, raising=False)
    entry = api.train(root).entry
    assert entry is not None
    open_project(root).registry.load_model(entry)
    assert sys.dont_write_bytecode is False  # restored after each import
    assert not list(root.rglob("__pycache__")), list(root.rglob("__pycache__"))
    assert api.release(root, bump="minor").entry is not None


@pytest.mark.slow
def test_release_serve_and_a_change_of_code_without_a_release(tmp_path: Path) -> None:
    root = coded_project(tmp_path / "shop", model=ENTRYPOINT)
    released = mlcycle("release", "--bump", "minor", cwd=root)
    assert released.code == 0, released.err
    from mlcycle.api.serving import serve_target

    assert serve_target(root, no_store=True).warnings == ()  # the code released
    # The project's code changes after the release: serving keeps the released code.
    features = root / "features.py"
    features.write_text(FEATURES.replace("np.log1p", "np.sqrt"))
    drift = open_project(root)
    from mlcycle.registry.code import code_drift, refuse_code_drift

    entry = drift.registry.current()
    assert entry is not None
    assert code_drift(drift.spec, entry.code).changed == ("features.py",)
    with pytest.raises(UsageError, match=r"differs from release 0\.1\.0") as info:
        refuse_code_drift(drift.spec, entry.code, release=entry.release)
    assert info.value.exit_code == 2 and "mlcycle release" in (info.value.hint or "")

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "serve", "--port", str(port), "--no-store"],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    server = Server(process, port, None, log)
    try:
        wait_ready(server)
        reply = server.post("/v1/predict", {"instances": rows(root)})
        assert reply.status == 200, reply.body
        assert reply.json["model"]["release"] == "0.1.0"
        assert len(reply.json["predictions"]) == 5
    finally:
        server.stop()
    output = server.output()
    assert "differs from the code 0.1.0/1 was trained with (changed: features.py)" in output
    # What the server answered is what the released model says, with its stored code.
    model = open_project(root).registry.load_model(entry)
    import pandas as pd

    expected = model.predict(pd.DataFrame(rows(root)))
    np.testing.assert_array_equal(np.asarray(reply.json["predictions"]), expected)
    # The code gone from the working copy: still served, from the stored copy, said so.
    features.unlink()
    assert serve_target(root, no_store=True).warnings == (
        f"model.code cannot be read (model.code: features.py does not exist in {root}); "
        "serving the code stored with 0.1.0/1",
    )


def swap_model(bundle: Path, model: Any) -> None:
    """Replace the bundle's model by `model` (skops); bundle.json vouches for it, as anyone can."""
    import skops.io as sio

    data = sio.dumps(model)
    (bundle / "model.skops").write_bytes(data)
    manifest = bundle / BUNDLE_FILE
    raw = json.loads(manifest.read_text())
    raw["artifact"].update(sha256=sha256_file(bundle / "model.skops"), size=len(data))
    manifest.write_text(json.dumps(raw))


def test_only_the_names_model_code_defines_are_trusted(tmp_path: Path) -> None:
    root = coded_project(tmp_path / "trust", model=ENTRYPOINT)
    entry = api.train(root).entry
    assert entry is not None
    project = open_project(root)
    bundle = build_bundle(project.spec, project.registry, entry, tmp_path / "bundle")
    assert set(bundle.code) == {"features.py", "mypkg/__init__.py", "mypkg/steps.py"}
    archive = write_archive(bundle, tmp_path / "bundle.tar.gz")
    unpacked = load_bundle(archive, extract_to=tmp_path / "unpacked")
    assert unpacked.load_model().predict(__import__("pandas").DataFrame(rows(root))).shape == (5,)

    from sklearn.preprocessing import FunctionTransformer

    sys.path.insert(0, str(root))
    try:
        import helpers  # type: ignore[import-not-found]

        not_listed = FunctionTransformer(helpers.shout)
    finally:
        sys.path.remove(str(root))
    canary = tmp_path / "canary"
    for model, name in (
        (not_listed, "helpers.shout"),  # in the project, but not in model.code
        (
            FunctionTransformer(exec, kw_args={"__source": f"open('{canary}', 'w')"}),
            "builtins.exec",
        ),
    ):
        swap_model(unpacked.path, model)
        with pytest.raises(RegistryError, match=rf"untrusted types: {name}"):
            load_bundle(unpacked.path).load_model()
        # The registry refuses to store it too.
        with pytest.raises(RegistryError, match=rf"does not trust: {name}"):
            project.registry.register(
                model,
                release="dev",
                metrics={},
                gate=None,
                data=None,
                spec_hash=None,
                git_commit=None,
                procurement="unattended",
                status="candidate",
                code={"features.py": (root / "features.py").read_bytes()},
            )
    assert not canary.exists()
