"""The estimator a spec declares: pipeline steps resolved safely, or the project's entry point.

Class paths name code that will run, so they are resolved against an allowlist of
module prefixes *before* anything is imported: a lifecycle.yaml cannot make mlcycle
import `os` or `subprocess`. The project's own code enters only through
`model.entrypoint`, whose module must live under the spec's directory, and as
pipeline steps naming exactly a class its `model.code` files define.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.machinery
import inspect
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlcycle.errors import MlcycleError, TrainingError
from mlcycle.spec.classpath import ALLOWED_PREFIXES
from mlcycle.spec.code import project_names, without_bytecode
from mlcycle.train._util import describe, did_you_mean, listing

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

    from mlcycle.spec.model import ModelSpec, StepSpec


TASKS = ("classification", "regression")


def build_estimator(model: ModelSpec, *, root: Path) -> BaseEstimator:
    """The unfitted estimator `model` declares, with `model.seed` applied.

    Pipeline steps become a scikit-learn `Pipeline` named like `make_pipeline` does
    (`standardscaler`, `logisticregression`), so tuning parameters read
    `logisticregression__C`. An entry point `module:function` is imported with `root`
    on `sys.path` and must return an unfitted estimator. Every `random_state` left
    unset (None) anywhere in the estimator gets `model.seed`; explicit values win.
    Raises TrainingError saying which step is wrong and how to fix it.
    """
    if model.entrypoint and model.pipeline:
        raise TrainingError(
            "model: both `pipeline` and `entrypoint` are set; declare one of them",
            hint="keep `pipeline` for scikit-learn steps, or `entrypoint` for your own code",
        )
    if model.entrypoint:
        estimator = load_entrypoint(model.entrypoint, root=root)
    elif model.pipeline:
        project = project_names(root, model.code) if model.code else frozenset()
        estimator = build_pipeline(model.pipeline, project=project, root=root)
    else:
        raise TrainingError(
            "model: no `pipeline` and no `entrypoint`; there is nothing to train",
            hint="add e.g. `model: {pipeline: [sklearn.linear_model.LogisticRegression]}`",
        )
    apply_seed(estimator, model.seed)
    return estimator


def build_pipeline(
    steps: tuple[StepSpec, ...], *, project: frozenset[str] = frozenset(), root: Path = Path()
) -> BaseEstimator:
    """A `Pipeline` of the declared steps (imbalanced-learn's when a step resamples).

    A step may name a class of the project's `model.code` (`features.AddBmiSquared`,
    listed in `project`): it is imported from `root`.
    """
    built = []
    for number, step in enumerate(steps, start=1):
        where = f"model.pipeline step {number} ({step.class_path})"
        if step.class_path in project:
            cls = resolve_project_class(step.class_path, root=root, where=where)
        else:
            cls = resolve_class(step.class_path, where=f"model.pipeline step {number}")
        built.append(construct(cls, step.params, where=where))
    for number, (step, obj) in enumerate(zip(steps, built, strict=True), start=1):
        last = number == len(built)
        if not last and not _is_transformer(obj):
            raise TrainingError(
                f"model.pipeline step {number} ({step.class_path}) is not a transformer "
                "(it has no `transform`); only the last step may be a predictor",
                hint="put the model last and preprocessing steps before it",
            )
    if any(hasattr(obj, "fit_resample") for obj in built):
        # Samplers (imbalanced-learn) only work inside imbalanced-learn's pipeline.
        from imblearn.pipeline import make_pipeline as make_resampling_pipeline

        return make_resampling_pipeline(*built)
    from sklearn.pipeline import make_pipeline

    return make_pipeline(*built)


def resolve_class(class_path: str, *, where: str) -> type:
    """The estimator class at `class_path`, imported only if its module is allowed."""
    module_name, _, attr = class_path.rpartition(".")
    if not module_name:
        raise TrainingError(
            (
                f"{where}: '{class_path}' is not a class path; write `module.Class`;"
                + _catalogue_hint(class_path)
            ).rstrip(";"),
            hint="e.g. sklearn.linear_model.LogisticRegression",
        )
    top = module_name.split(".")[0]
    if top not in ALLOWED_PREFIXES:
        raise TrainingError(
            f"{where}: '{class_path}' is not allowed: pipeline steps must be classes from "
            f"{', '.join(ALLOWED_PREFIXES)}",
            hint="list your own module in `model.code` (e.g. `code: [features.py]`) and "
            "name its class as the step, or build the estimator in `model.entrypoint`",
        )
    module = _import_allowed(module_name, class_path=class_path, where=where)
    obj = getattr(module, attr, None)
    if obj is None:
        public = [n for n in dir(module) if not n.startswith("_")]
        suggestion = did_you_mean(attr, public) or _catalogue_hint(attr)
        raise TrainingError(
            f"{where}: {module_name} has no class '{attr}';{suggestion}".rstrip(";")
        )
    if not inspect.isclass(obj):
        kind = "function" if callable(obj) else type(obj).__name__
        raise TrainingError(
            f"{where}: '{class_path}' is a {kind}, not an estimator class",
            hint="name a scikit-learn estimator or transformer class",
        )
    from sklearn.base import BaseEstimator

    if not (issubclass(obj, BaseEstimator) or callable(getattr(obj, "fit", None))):
        raise TrainingError(
            f"{where}: '{class_path}' is not a scikit-learn estimator (it has no `fit`)",
            hint="name a scikit-learn estimator or transformer class",
        )
    return obj


def construct(cls: type, params: Mapping[str, Any], *, where: str) -> Any:
    """`cls(**params)`, with unknown, missing and ill-typed parameters reported by name."""
    names, open_ended = _param_names(cls)
    unknown = [name for name in params if name not in names]
    if unknown and not open_ended:
        first = unknown[0]
        raise TrainingError(
            f"{where}: unknown parameter '{first}';"
            f"{did_you_mean(first, names)} valid parameters: {listing(sorted(names))}",
        )
    try:
        obj = cls(**dict(params))
    except MlcycleError:
        raise
    except Exception as e:  # third-party constructors raise anything
        raise TrainingError(f"{where}: cannot be constructed: {e}") from e
    problem = validation_problem(obj)
    if problem is not None and any(isinstance(v, list) for v in params.values()):
        # YAML has no tuples; parameters such as feature_range want one.
        retry = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
        obj_retry = cls(**retry)
        if validation_problem(obj_retry) is None:
            return obj_retry
    if problem is not None:
        raise TrainingError(f"{where}: {problem}")
    return obj


def validation_problem(estimator: Any) -> str | None:
    """What scikit-learn's parameter validation says about `estimator` and its parts."""
    parts = [estimator]
    get_params = getattr(estimator, "get_params", None)
    if callable(get_params):
        parts += [v for v in get_params(deep=True).values() if hasattr(v, "get_params")]
    for part in parts:
        # Only classes that declare constraints: BaseEstimator has `_validate_params`
        # for every subclass, and a project's own transformer declares none.
        if not isinstance(getattr(type(part), "_parameter_constraints", None), dict):
            continue
        validate = getattr(part, "_validate_params", None)
        if not callable(validate):
            continue
        try:
            validate()
        except (ValueError, TypeError) as e:
            return str(e)
    return None


def import_project_module(module_name: str, *, root: Path, where: str) -> ModuleType:
    """Import the project's `module_name` from `root` (on sys.path for the import only)."""
    root = root.resolve()
    top = module_name.split(".")[0]
    if importlib.machinery.PathFinder.find_spec(top, [str(root)]) is None:
        raise TrainingError(
            f"{where}: there is no module '{top}' in {root}",
            hint=f"the project's modules live beside lifecycle.yaml: {root / top}.py",
        )
    _forget_foreign_module(top, root, where=where)
    importlib.invalidate_caches()
    sys.path.insert(0, str(root))
    try:
        with without_bytecode():
            return importlib.import_module(module_name)
    except Exception as e:  # the project's code may raise anything while importing
        raise TrainingError(f"{where}: importing {module_name} failed: {_exc(e)}") from e
    finally:
        # Only for the duration of the import: the project's path must not leak.
        with contextlib.suppress(ValueError):
            sys.path.remove(str(root))


def resolve_project_class(class_path: str, *, root: Path, where: str) -> type:
    """A class of the project's model code, imported from `root`."""
    module_name, _, attr = class_path.rpartition(".")
    module = import_project_module(module_name, root=root, where=where)
    obj = getattr(module, attr, None)
    if not inspect.isclass(obj) or not callable(getattr(obj, "fit", None)):
        raise TrainingError(
            f"{where}: '{class_path}' is not an estimator class (a class with `fit`)",
            hint="name a transformer or estimator class your model.code defines",
        )
    return obj


def load_entrypoint(entrypoint: str, *, root: Path) -> Any:
    """Call the project's `module:function` (imported with `root` on sys.path)."""
    module_name, _, func_name = entrypoint.partition(":")
    where = f"model.entrypoint '{entrypoint}'"
    if not module_name or not func_name:
        raise TrainingError(f"{where}: write it as module:function, e.g. model:build")
    module = import_project_module(module_name, root=root, where=where)
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        functions = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")]
        raise TrainingError(
            f"{where}: {module_name} has no function '{func_name}';"
            f"{did_you_mean(func_name, functions)}".rstrip(";")
        )
    try:
        estimator = func()
    except Exception as e:  # the project's code may raise anything
        raise TrainingError(f"{where} raised {_exc(e)}") from e
    if inspect.isclass(estimator):
        raise TrainingError(
            f"{where} returned the class {estimator.__name__}, not an estimator",
            hint=f"return an instance: `return {estimator.__name__}()`",
        )
    if not (callable(getattr(estimator, "fit", None)) and hasattr(estimator, "get_params")):
        raise TrainingError(
            f"{where} returned {type(estimator).__name__}, not a scikit-learn estimator "
            "(an object with `fit` and `get_params`)",
        )
    problem = validation_problem(estimator)
    if problem is not None:
        raise TrainingError(f"{where}: {problem}")
    return estimator


def apply_seed(estimator: Any, seed: int) -> None:
    """Set every unset (None) `random_state`, at any depth, to `seed`."""
    params = estimator.get_params(deep=True)
    updates = {
        name: seed
        for name, value in params.items()
        if (name == "random_state" or name.endswith("__random_state")) and value is None
    }
    if updates:
        estimator.set_params(**updates)


def infer_task(estimator: Any, model: ModelSpec) -> str:
    """`classification` or `regression`: `model.task` when declared, else the estimator's kind."""
    from sklearn.base import is_classifier, is_regressor

    try:
        classifier, regressor = is_classifier(estimator), is_regressor(estimator)
    except Exception:  # estimators without tags: only a declared task can tell
        classifier = regressor = False
    name = describe(estimator)
    if model.task is not None:
        if model.task not in TASKS:
            raise TrainingError(f"model.task: '{model.task}' is not one of {', '.join(TASKS)}")
        declared_clf = model.task == "classification"
        if (declared_clf and regressor and not classifier) or (
            not declared_clf and classifier and not regressor
        ):
            actual = "regressor" if regressor else "classifier"
            raise TrainingError(
                f"model.task is {model.task} but {name} is a {actual}",
                hint="change model.task or the final pipeline step",
            )
        return model.task
    if classifier:
        return "classification"
    if regressor:
        return "regression"
    raise TrainingError(
        f"cannot tell whether {name} is a classifier or a regressor",
        hint="set `model.task: classification` or `model.task: regression`",
    )


# --- internals -----------------------------------------------------------------------


def _is_transformer(obj: Any) -> bool:
    return any(
        callable(getattr(obj, name, None))
        for name in ("transform", "fit_transform", "fit_resample")
    )


def _param_names(cls: type) -> tuple[list[str], bool]:
    """Constructor parameter names, and whether it also takes **kwargs."""
    try:
        signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    except (TypeError, ValueError):
        return [], True
    names: list[str] = []
    open_ended = False
    for name, param in signature.parameters.items():
        if name == "self" or param.kind is param.VAR_POSITIONAL:
            continue
        if param.kind is param.VAR_KEYWORD:
            open_ended = True
            continue
        names.append(name)
    return names, open_ended


def _import_allowed(module_name: str, *, class_path: str, where: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or module_name
        if "." not in missing:
            raise TrainingError(
                f"{where}: '{class_path}' needs the package '{missing}', which is not installed",
                hint=f"pip install {missing}",
            ) from e
        parent_name, _, child = missing.rpartition(".")
        siblings: list[str] = []
        try:
            import pkgutil

            parent = importlib.import_module(parent_name)
            siblings = [m.name for m in pkgutil.iter_modules(getattr(parent, "__path__", []))]
        except ImportError:
            pass
        attr = class_path.rpartition(".")[2]
        suggestion = _catalogue_hint(attr) or did_you_mean(child, siblings)
        raise TrainingError(
            f"{where}: there is no module '{missing}';{suggestion}".rstrip(";")
        ) from e
    except Exception as e:
        raise TrainingError(f"{where}: importing {module_name} failed: {_exc(e)}") from e


def _catalogue_hint(class_name: str) -> str:
    """` did you mean 'sklearn.x.Class'?` when scikit-learn has a class of (nearly) that name."""
    try:
        from sklearn.utils import all_estimators

        catalogue = {name: f"{cls.__module__}.{name}" for name, cls in all_estimators()}
    except Exception:  # a suggestion is a courtesy; never fail because of it
        return ""
    exact = [path for name, path in catalogue.items() if name.lower() == class_name.lower()]
    close = exact[:1] or [catalogue[n] for n in difflib.get_close_matches(class_name, catalogue)]
    if not close:
        return ""
    return " did you mean " + " or ".join(f"'{_public_path(p)}'" for p in close) + "?"


def _public_path(path: str) -> str:
    """`sklearn.linear_model._logistic.X` → `sklearn.linear_model.X`."""
    *modules, name = path.split(".")
    public: list[str] = []
    for part in modules:
        if part.startswith("_"):
            break  # scikit-learn re-exports a private module's classes from its parent
        public.append(part)
    return ".".join([*public, name])


def _forget_foreign_module(top: str, root: Path, *, where: str) -> None:
    """Drop a cached module of the same name imported from another project's directory."""
    cached = sys.modules.get(top)
    if cached is None:
        return
    origin = _module_location(cached)
    found = importlib.machinery.PathFinder.find_spec(top, [str(root)])
    expected = _spec_location(found)
    # The project's own file, not merely a file under the project: a generation's stored
    # copy of the code (under .mlcycle/registry) answers to the same name.
    if origin is not None and expected is not None and origin == expected:
        return
    if origin is None or top in sys.stdlib_module_names or _is_installed(origin):
        raise TrainingError(
            f"{where}: the module name '{top}' is already taken by an installed module",
            hint=f"rename {root / top}.py to a name of its own",
        )
    for name in list(sys.modules):
        if name == top or name.startswith(top + "."):
            del sys.modules[name]


def _module_location(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    if file:
        return Path(file).resolve()
    paths = list(getattr(module, "__path__", []) or [])
    return Path(paths[0]).resolve() if paths else None


def _spec_location(spec: Any) -> Path | None:
    if spec is None:
        return None
    if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
        return Path(spec.origin).resolve()
    locations = list(spec.submodule_search_locations or [])
    return Path(locations[0]).resolve() if locations else None


def _is_installed(path: Path) -> bool:
    install_paths = {
        sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    return any(path.is_relative_to(Path(p).resolve()) for p in install_paths)


def _exc(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"
