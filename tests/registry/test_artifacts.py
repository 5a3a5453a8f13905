"""Artifacts: skops only, names checked by the trust policy, SHA-256 checked before any read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlcycle.errors import ExitCode, IntegrityError, RegistryError, UsageError
from mlcycle.registry import TrustPolicy, library_versions, load_model, save_model
from mlcycle.registry.artifacts import sha256_file
from tests.registry.conftest import same_predictions


def test_sklearn_pipeline_round_trips_as_skops(tmp_path: Path, logit: Any) -> None:
    info = save_model(logit, tmp_path / "model.bin")
    path = tmp_path / "model.skops"
    assert (info.file, info.format, info.trusted_code) == ("model.skops", "skops", ())
    assert info.sha256 == sha256_file(path)
    assert info.size == path.stat().st_size
    assert not (tmp_path / "model.bin").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["model.skops"]  # no temporary left
    loaded = load_model(path, sha256=info.sha256, format="skops")
    assert same_predictions(loaded, logit)


def test_trees_are_trusted_sklearn_types(tmp_path: Path, forest: Any) -> None:
    info = save_model(forest, tmp_path / "model")
    assert info.format == "skops"
    loaded = load_model(tmp_path / info.file, sha256=info.sha256, format="skops")
    from sklearn.datasets import load_breast_cancer

    X, _ = load_breast_cancer(return_X_y=True)
    assert (loaded.predict_proba(X) == forest.predict_proba(X)).all()


# Behaviour changed (issue 10): a custom class is no longer stored as a pickle; it is
# skops when the policy trusts its exact name (the project's declared code), refused otherwise.
CUSTOM = TrustPolicy(project_code=frozenset({"tests.registry.custom.Doubler"}))


def test_custom_class_trusted_by_name_is_stored_as_skops(tmp_path: Path, custom_model: Any) -> None:
    info = save_model(custom_model, tmp_path / "model.skops", trust=CUSTOM)
    assert (info.file, info.format, info.trusted_code) == ("model.skops", "skops", ())
    loaded = load_model(tmp_path / info.file, sha256=info.sha256, format="skops", trust=CUSTOM)
    assert same_predictions(loaded, custom_model)


def test_custom_class_not_declared_is_refused_when_saving(
    tmp_path: Path, custom_model: Any
) -> None:
    with pytest.raises(RegistryError) as info:
        save_model(custom_model, tmp_path / "model")
    assert str(info.value) == (
        "cannot store the model: it holds code mlcycle does not trust: "
        "tests.registry.custom.Doubler"
    )
    assert "model.code" in (info.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_a_model_skops_cannot_hold_is_refused(tmp_path: Path) -> None:
    from sklearn.preprocessing import FunctionTransformer

    model = FunctionTransformer(lambda x: x)
    with pytest.raises(RegistryError) as info:
        save_model(model, tmp_path / "model")
    message = str(info.value)
    assert message.startswith("cannot store the model: it holds code mlcycle does not trust")
    assert "<lambda>" in message
    assert info.value.exit_code == ExitCode.RUNTIME
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("offset", [0, 100, -1])
def test_a_flipped_byte_is_an_integrity_error(tmp_path: Path, logit: Any, offset: int) -> None:
    info = save_model(logit, tmp_path / "model")
    path = tmp_path / info.file
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as err:
        load_model(path, sha256=info.sha256, format="skops")
    actual = sha256_file(path)
    assert str(err.value) == (
        f"{path}: SHA-256 mismatch: the registry recorded {info.sha256}, the file has {actual}"
    )
    assert err.value.exit_code == ExitCode.RUNTIME


def test_a_tampered_pickle_is_refused_before_it_is_read(tmp_path: Path) -> None:
    # A pickle that would run code when read: never read, whatever its hash.
    marker = tmp_path / "pwned"
    payload = (
        b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."
    )  # protocol 0: os.system("touch ...")
    path = tmp_path / "model.pkl"
    path.write_bytes(payload)
    with pytest.raises(RegistryError):
        load_model(path, sha256="0" * 64, format="pickle")
    assert not marker.exists()


def test_untrusted_types_in_a_skops_file_are_refused(tmp_path: Path, custom_model: Any) -> None:
    import skops.io as sio

    path = tmp_path / "model.skops"
    sio.dump(custom_model, path)
    with pytest.raises(RegistryError) as info:
        load_model(path, sha256=sha256_file(path), format="skops")
    assert str(info.value) == (
        f"{path}: refusing to load untrusted types: tests.registry.custom.Doubler"
    )
    assert "scikit-learn estimators" in (info.value.hint or "")


def test_a_dangerous_function_in_a_skops_file_is_refused(tmp_path: Path) -> None:
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(os.system), path)
    with pytest.raises(RegistryError, match=r"untrusted types: posix\.system$"):
        load_model(path, sha256=sha256_file(path), format="skops")


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="model artifact is missing"):
        load_model(tmp_path / "nope.skops", sha256="0" * 64, format="skops")
    with pytest.raises(UsageError, match="unknown model format 'onnx'"):
        load_model(tmp_path / "nope.onnx", sha256="0" * 64, format="onnx")


def test_library_versions() -> None:
    import sklearn

    import mlcycle

    versions = library_versions()
    assert set(versions) == {"python", "sklearn", "numpy", "pandas", "skops", "mlcycle"}
    assert versions["sklearn"] == sklearn.__version__
    assert versions["mlcycle"] == mlcycle.__version__
