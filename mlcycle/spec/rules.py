"""The consistency rules of the lifecycle taxonomy, and its anti-patterns.

Each rule is a small function registered with an id (shown in `--json`
output and after `--strict`), a severity and a one-line summary. Rules run on
a schema-valid spec: they read the typed `Spec` for meaning and the located
document for where to point. A finding names candidate places, most precise
first; the first one present in the file is where the diagnostic goes, so a
rule points at the attribute or section that breaks it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from mlcycle import extras
from mlcycle.redact import has_password, mask_url
from mlcycle.spec.classpath import (
    ALL_METRICS,
    ALLOWED_PREFIXES,
    METRICS_BY_TASK,
    check_class_path,
    constructor_params,
)
from mlcycle.spec.code import project_names
from mlcycle.spec.code import scan as scan_code
from mlcycle.spec.diagnostics import Diagnostic, Severity
from mlcycle.spec.loader import LoadedDocument, Loc
from mlcycle.spec.model import (
    Condition,
    DataAccess,
    Deployment,
    Distribution,
    DistributionKind,
    Liaison,
    Procurement,
    RewardKind,
    SelectorKind,
    Spec,
    Update,
)

# --- the machinery ----------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One breach of a rule: what is wrong, where (candidates, best first), how to fix it."""

    message: str
    at: tuple[Loc, ...]
    hint: str | None = None
    on_key: bool = False  # point at the key written at `at`, not at its value


@dataclass(frozen=True)
class RuleContext:
    """What a rule reads: the typed spec and the located document."""

    spec: Spec
    doc: LoadedDocument

    def raw(self, *path: str | int) -> Any:
        """The value written at `path`, or None when it is not in the file."""
        node: Any = self.doc.data
        for part in path:
            if isinstance(node, Mapping) and isinstance(part, str):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                return None
        return node

    def written(self, *path: str | int) -> bool:
        """Whether `path` is written in the file (defaults do not count)."""
        return self.doc.has(path)


Check = Callable[[RuleContext], Iterable[Finding]]


@dataclass(frozen=True)
class Rule:
    """A named consistency rule (error) or anti-pattern (warning)."""

    id: str
    severity: Severity
    summary: str
    check: Check
    # "spec": reads the file only; "files": the project's files too; "imports": module specs
    scope: str = "spec"


RULES: list[Rule] = []


def rule(
    rule_id: str, severity: Severity, summary: str, *, scope: str = "spec"
) -> Callable[[Check], Check]:
    """Register a check under `rule_id` (`scope`: see `Rule`)."""

    def register(check: Check) -> Check:
        RULES.append(Rule(rule_id, severity, summary, check, scope))
        return check

    return register


def check_rules(
    spec: Spec, doc: LoadedDocument, *, scopes: frozenset[str] = frozenset({"spec"})
) -> list[Diagnostic]:
    """Run every rule of `scopes` on a schema-valid spec; diagnostics sorted by position."""
    context = RuleContext(spec, doc)
    diagnostics = []
    for r in RULES:
        if r.scope not in scopes:
            continue
        for finding in r.check(context):
            diagnostics.append(_place(doc, r, finding))
    return sorted(diagnostics, key=lambda d: (d.line, d.col, d.message))


def _place(doc: LoadedDocument, r: Rule, finding: Finding) -> Diagnostic:
    path: Loc = next((p for p in finding.at if doc.has(p)), ())
    node: Any = doc.data
    for part in path:
        node = node[part]
    # A section is pointed at by its key (its line names it); a scalar by its value.
    on_key = (finding.on_key or isinstance(node, (dict, list))) and bool(path)
    return doc.diagnostic(
        path,
        finding.message,
        at_key=on_key,
        severity=r.severity,
        hint=finding.hint,
        rule=r.id,
    )


# Where the five attributes are written.
DATA_ACCESS: Loc = ("lifecycle", "data_access")
PROCUREMENT: Loc = ("lifecycle", "procurement")
UPDATE: Loc = ("lifecycle", "update")
DEPLOYMENT: Loc = ("lifecycle", "deployment")
LIAISON: Loc = ("lifecycle", "liaison")


def _selector_at() -> tuple[Loc, ...]:
    return (("deployment", "selector", "kind"), ("deployment", "selector"), DEPLOYMENT)


# --- update ------------------------------------------------------------------------------


@rule("autonomous-needs-programmatic", "error", "autonomous updates need programmatic access")
def _autonomous_programmatic(ctx: RuleContext) -> Iterator[Finding]:
    lc = ctx.spec.lifecycle
    if lc.update is Update.AUTONOMOUS and lc.data_access is DataAccess.ADHOC:
        yield Finding(
            "autonomous updates need programmatic data access: the training agent fetches "
            "new data through data.source, which a static dump cannot give",
            (DATA_ACCESS,),
            hint="set `data_access: programmatic` and describe `data.source`, "
            "or set `update: release-forced`",
        )


@rule("autonomous-needs-unattended", "error", "autonomous updates need unattended procurement")
def _autonomous_unattended(ctx: RuleContext) -> Iterator[Finding]:
    lc = ctx.spec.lifecycle
    if lc.update is Update.AUTONOMOUS and lc.procurement is Procurement.INTERACTIVE:
        yield Finding(
            "autonomous updates need unattended procurement: the training agent trains each "
            "generation itself, but a hand-trained model cannot be retrained by mlcycle",
            (PROCUREMENT,),
            hint="set `procurement: unattended` with `model.pipeline` and `data.label`, "
            "or set `update: release-forced`",
        )


@rule("autonomous-needs-registry", "error", "autonomous updates publish to a registry")
def _autonomous_registry(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.spec.lifecycle.update is Update.AUTONOMOUS and ctx.spec.registry.backend == "none":
        yield Finding(
            "autonomous updates publish generations to the model registry, "
            "but registry.backend is none",
            (("registry", "backend"),),
            hint="set `registry.backend: local` (the default) or remove it",
        )


@rule("release-forced-update-settings", "error", "release-forced lifecycles run no update")
def _release_forced_settings(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.spec.lifecycle.update is Update.RELEASE_FORCED and ctx.raw("update"):
        keys = ", ".join(ctx.raw("update"))
        yield Finding(
            f"lifecycle.update is release-forced, so the update settings ({keys}) would never "
            "run: only a new release refreshes the model",
            (("update",),),
            hint="remove the `update` section, or set `lifecycle.update: autonomous`",
        )


@rule("window-needs-size", "error", "`update.data: window` needs `update.window`")
def _window_size(ctx: RuleContext) -> Iterator[Finding]:
    u = ctx.spec.update
    if u.data == "window" and u.window is None:
        yield Finding(
            "update.data is window but update.window (how many recent rows) is not set",
            (("update", "data"),),
            hint="add `window: 10000` (rows) to the update section, or use `data: all`",
        )


@rule("window-unused", "warning", "`update.window` is used only with `data: window`")
def _window_unused(ctx: RuleContext) -> Iterator[Finding]:
    u = ctx.spec.update
    if u.window is not None and u.data != "window":
        yield Finding(
            f"update.window is ignored: update.data is {u.data}",
            (("update", "window"),),
            hint="set `data: window`, or remove `window`",
        )


@rule(
    "trigger-window-unused",
    "warning",
    "`update.triggers.window` narrows only the metric and drift triggers",
)
def _trigger_window_unused(ctx: RuleContext) -> Iterator[Finding]:
    t = ctx.spec.update.triggers
    if t.window is not None and t.metric is None and t.drift is None:
        yield Finding(
            "update.triggers.window is ignored: it narrows what the metric and drift "
            "triggers look at, and neither is declared",
            (("update", "triggers", "window"),),
            hint="add `metric: ...` or `drift: ...` to update.triggers, or remove `window`",
        )


@rule("increment-needs-ordinal", "error", "incremental updates need an ordinal column")
def _increment_ordinal(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    source = spec.data.source
    if spec.lifecycle.update is not Update.AUTONOMOUS or source is None or source.ordinal:
        return
    needs = []
    if spec.update.data in ("increment", "window"):
        needs.append(f"update.data: {spec.update.data}")
    if spec.update.triggers.new_rows is not None:
        needs.append("the new_rows trigger")
    if needs:
        yield Finding(
            f"{' and '.join(needs)} {'need' if len(needs) > 1 else 'needs'} "
            "data.source.ordinal: the training agent counts and "
            "fetches rows after the last watermark of that column",
            (("data", "source"), ("update", "data")),
            hint="add `ordinal: COLUMN` (a timestamp or increasing id) to data.source, "
            "or set `update.data: all`",
        )


# --- data --------------------------------------------------------------------------------


@rule("programmatic-needs-source", "error", "programmatic data access needs `data.source`")
def _programmatic_source(ctx: RuleContext) -> Iterator[Finding]:
    d = ctx.spec.data
    if ctx.spec.lifecycle.data_access is DataAccess.PROGRAMMATIC and d.source is None:
        if d.dump is not None:
            return  # dump-with-programmatic says it, with the fix
        yield Finding(
            "programmatic data access needs a data source descriptor: data.source is missing",
            (("data",), DATA_ACCESS),
            hint="add `source: {path: data/events.csv, ordinal: ts}` (a file) or "
            "`source: {url: sqlite:///data.db, table: events, ordinal: ts}` under data",
        )


@rule("dump-with-programmatic", "error", "a data dump is ad-hoc data access")
def _dump_programmatic(ctx: RuleContext) -> Iterator[Finding]:
    d = ctx.spec.data
    if ctx.spec.lifecycle.data_access is DataAccess.PROGRAMMATIC and d.dump is not None:
        yield Finding(
            "data.dump is an ad-hoc data dump, but lifecycle.data_access is programmatic",
            (("data", "dump"),),
            hint="did you mean `data_access: adhoc`? For programmatic access replace the dump "
            f"with `source: {{path: {d.dump}, ordinal: COLUMN}}`",
        )


@rule("source-with-adhoc", "error", "a data source is programmatic data access")
def _source_adhoc(ctx: RuleContext) -> Iterator[Finding]:
    d = ctx.spec.data
    if ctx.spec.lifecycle.data_access is DataAccess.ADHOC and d.source is not None:
        yield Finding(
            "data.source is a data source descriptor (programmatic data access), "
            "but lifecycle.data_access is adhoc",
            (("data", "source"),),
            hint="did you mean `data_access: programmatic`? An ad-hoc spec names its file "
            "as `data.dump`",
        )


@rule("adhoc-needs-dump", "error", "unattended training from ad-hoc data needs `data.dump`")
def _adhoc_dump(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    if (
        spec.lifecycle.data_access is DataAccess.ADHOC
        and spec.lifecycle.procurement is Procurement.UNATTENDED
        and spec.data.dump is None
        and spec.data.source is None
    ):
        yield Finding(
            "unattended procurement trains from data, but data.dump (the ad-hoc data file) "
            "is missing",
            (("data",), DATA_ACCESS),
            hint="add `dump: data/train.csv` under data",
        )


def _sources(ctx: RuleContext) -> Iterator[tuple[Loc, Mapping[str, Any]]]:
    for path in (("data", "source"), ("data", "outcomes")):
        raw = ctx.raw(*path)
        if isinstance(raw, Mapping):
            yield path, raw


def _name(path: Loc) -> str:
    return ".".join(str(p) for p in path)


@rule("source-path-or-url", "error", "a source has exactly one of `path` or `url`")
def _source_path_or_url(ctx: RuleContext) -> Iterator[Finding]:
    for path, raw in _sources(ctx):
        if "path" in raw and "url" in raw:
            yield Finding(
                f"{_name(path)} has both path (a file) and url (a database): give one",
                ((*path, "url"),),
                hint="keep `path` for a CSV/Parquet file, or `url` with `table`/`query`",
            )
        elif "path" not in raw and "url" not in raw:
            yield Finding(
                f"{_name(path)} names no data: give path (a CSV/Parquet file) "
                "or url (a database, with table or query)",
                (path,),
                hint="e.g. `path: data/events.csv`, or `url: sqlite:///data.db` and "
                "`table: events`",
            )


@rule("source-table-or-query", "error", "a database source reads exactly one table or query")
def _source_table_or_query(ctx: RuleContext) -> Iterator[Finding]:
    for path, raw in _sources(ctx):
        if "url" not in raw:
            for key in ("table", "query"):
                if key in raw and "path" in raw:
                    yield Finding(
                        f"{_name(path)}.{key} reads from a database, but the source is a "
                        "file (path)",
                        ((*path, key),),
                        hint=f"remove `{key}`, or replace `path` with a database `url`",
                    )
            continue
        if "table" in raw and "query" in raw:
            yield Finding(
                f"{_name(path)} has both table and query: give one",
                ((*path, "query"),),
                hint="`table: NAME` reads a whole table; `query: SELECT ...` reads a query",
            )
        elif "table" not in raw and "query" not in raw:
            yield Finding(
                f"{_name(path)} has a database url but neither table nor query",
                ((*path, "url"), path),
                hint="add `table: NAME` or `query: SELECT ...`",
            )


@rule("source-options", "error", "source options belong to their kind of source")
def _source_options(ctx: RuleContext) -> Iterator[Finding]:
    for path, raw in _sources(ctx):
        if "format" in raw and "url" in raw and "path" not in raw:
            yield Finding(
                f"{_name(path)}.format applies to files (path), not to database sources",
                ((*path, "format"),),
                hint="remove `format`",
            )
        if "params" in raw and "query" not in raw:
            yield Finding(
                f"{_name(path)}.params binds `:name` placeholders of a query, but there is "
                "no query",
                ((*path, "params"),),
                hint="remove `params`, or read with `query: SELECT ... WHERE x = :name`",
            )


# --- procurement -------------------------------------------------------------------------


@rule("model-pipeline-xor-entrypoint", "error", "a model is a pipeline or an entry point")
def _pipeline_xor_entrypoint(ctx: RuleContext) -> Iterator[Finding]:
    m = ctx.spec.model
    if m.pipeline and m.entrypoint:
        yield Finding(
            "model has both pipeline and entrypoint: give one",
            (("model", "entrypoint"),),
            hint="`pipeline` lists scikit-learn steps; `entrypoint: module:function` builds "
            "the estimator in code",
        )


@rule(
    "model-code-paths", "error", "model.code names Python files inside the project", scope="files"
)
def _model_code(ctx: RuleContext) -> Iterator[Finding]:
    if not ctx.spec.model.code:
        return
    _, problems = scan_code(ctx.spec.root, ctx.spec.model.code)
    for problem in problems:
        yield Finding(
            problem.message, (("model", "code", problem.index), ("model", "code")), problem.hint
        )


def _steps(ctx: RuleContext) -> Iterator[tuple[int, str, Loc]]:
    """Each pipeline step's number (from 0), class path and where it is written."""
    for i, step in enumerate(ctx.spec.model.pipeline):
        raw = ctx.raw("model", "pipeline", i)
        at: Loc = ("model", "pipeline", i)
        if isinstance(raw, Mapping):
            at = ("model", "pipeline", i, step.class_path)
        yield i, step.class_path, at


@rule("pipeline-step-allowed", "error", "pipeline steps are model-library classes", scope="files")
def _step_allowed(ctx: RuleContext) -> Iterator[Finding]:
    project = project_names(ctx.spec.root, ctx.spec.model.code) if ctx.spec.model.code else ()
    for i, path, at in _steps(ctx):
        if path in project or path.split(".")[0] in ALLOWED_PREFIXES:
            continue
        yield Finding(
            f"model.pipeline step {i + 1}: '{path}' is not allowed: steps are classes from "
            f"{', '.join(ALLOWED_PREFIXES)}, or classes the project's model.code defines",
            (at,),
            hint="list your own module in `model.code` (e.g. `code: [features.py]`) and name "
            "its class, or build the estimator in `model.entrypoint`",
        )


@rule("pipeline-step-resolves", "error", "pipeline steps name classes that exist", scope="imports")
def _step_resolves(ctx: RuleContext) -> Iterator[Finding]:
    for i, path, at in _steps(ctx):
        if path.split(".")[0] not in ALLOWED_PREFIXES:
            continue  # refused by pipeline-step-allowed, or the project's own (checked there)
        problem = check_class_path(path)
        if problem is None:
            continue
        hint = (
            f"did you mean '{problem.suggestion}'?"
            if problem.suggestion
            else "check the spelling against the library's documentation; `--no-import` "
            "skips this check on machines without the model libraries"
        )
        yield Finding(f"model.pipeline step {i + 1}: '{path}': {problem.message}", (at,), hint)


@rule(
    "entrypoint-module-exists", "error", "the entry point's module is in the project", scope="files"
)
def _entrypoint_module(ctx: RuleContext) -> Iterator[Finding]:
    entrypoint = ctx.spec.model.entrypoint
    if not entrypoint:
        return
    module = entrypoint.partition(":")[0]
    parts = module.split(".")
    base = ctx.spec.root
    if base.joinpath(*parts).with_suffix(".py").is_file():
        return
    if base.joinpath(*parts, "__init__.py").is_file():
        return
    yield Finding(
        f"model.entrypoint: there is no module '{module}' beside lifecycle.yaml "
        f"({base.joinpath(*parts)}.py)",
        (("model", "entrypoint"),),
        hint="the entry point's module is a file of the project; create it or fix the name",
    )


def _declared_task(spec: Spec) -> str | None:
    """The task `model.task` declares, else what the last step's class name says, if it does."""
    if spec.model.task:
        return spec.model.task
    if not spec.model.pipeline:
        return None
    name = spec.model.pipeline[-1].class_path.rpartition(".")[2]
    if name.endswith("Classifier") or name in ("LogisticRegression", "SVC", "LinearSVC"):
        return "classification"
    if name.endswith(("Regressor", "Regression")) or name in (
        "SVR",
        "LinearSVR",
        "Ridge",
        "Lasso",
        "ElasticNet",
    ):
        return "regression"
    return None


def _metric_problem(name: str, task: str | None) -> tuple[str, str] | None:
    """(message, hint) when `name` is no scorer, or one that does not fit `task`."""
    if name not in ALL_METRICS:
        close = difflib.get_close_matches(
            name, sorted(METRICS_BY_TASK.get(task or "", ALL_METRICS)), n=1
        )
        hint = f"did you mean '{close[0]}'?" if close else "metrics are scikit-learn scorer names"
        return f"unknown metric '{name}'", hint
    if task is not None and name not in METRICS_BY_TASK[task]:
        examples = ", ".join(sorted(METRICS_BY_TASK[task])[:4])
        return (
            f"metric '{name}' does not fit a {task} model",
            f"{task} metrics include {examples}, ...",
        )
    return None


@rule("metric-fits-task", "error", "metrics are scorer names that fit the task")
def _metric_names(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    task = _declared_task(spec)
    places: list[tuple[str, Loc]] = [
        (m, ("evaluation", "metrics", i)) for i, m in enumerate(spec.evaluation.metrics)
    ]
    if not spec.evaluation.metrics:  # otherwise metric-not-evaluated covers the conditions
        places += [
            (c.metric, ("evaluation", "gate", i)) for i, c in enumerate(spec.evaluation.gate)
        ]
    if spec.model.tuning is not None and spec.model.tuning.scoring:
        places.append((spec.model.tuning.scoring, ("model", "tuning", "scoring")))
    for name, at in places:
        problem = _metric_problem(name, task)
        if problem is not None:
            yield Finding(f"{_name(at)}: {problem[0]}", (at,), problem[1])


def _step_names(spec: Spec) -> list[str]:
    """make_pipeline's names of the steps: the class name in lowercase, numbered if repeated."""
    lowered = [s.class_path.rpartition(".")[2].lower() for s in spec.model.pipeline]
    return [
        f"{n}-{lowered[: i + 1].count(n)}" if lowered.count(n) > 1 else n
        for i, n in enumerate(lowered)
    ]


def _step_params(ctx: RuleContext) -> list[frozenset[str] | None]:
    """Each step's constructor parameter names, read from source (None: unknown)."""
    spec = ctx.spec
    code = {}
    if spec.model.code:
        files, _ = scan_code(spec.root, spec.model.code)
        code = {f.module: spec.root / f.path for f in files}
    found: list[frozenset[str] | None] = []
    for step in spec.model.pipeline:
        module = step.class_path.rpartition(".")[0]
        if module in code:
            found.append(constructor_params(step.class_path, file=code[module]))
        elif module.split(".")[0] in ALLOWED_PREFIXES:
            found.append(constructor_params(step.class_path))
        else:
            found.append(None)  # refused by pipeline-step-allowed
    return found


def _unknown_param(name: str, known: frozenset[str], owner: str) -> tuple[str, str]:
    """(message, hint) for a parameter `owner`'s constructor does not take."""
    close = _close_param(name, known)
    listed = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
    hint = (
        f"did you mean '{close}'?"
        if close
        else (f"its parameters: {listed}" if known else f"{owner} takes no parameters")
    )
    return f"{owner} has no parameter '{name}'", hint


def _close_param(name: str, known: frozenset[str]) -> str | None:
    exact = [k for k in sorted(known) if k.lower() == name.lower()]
    if exact:
        return exact[0]
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.7)
    return close[0] if close else None


@rule(
    "step-params-exist",
    "error",
    "pipeline step and tuning parameters are ones the step's class takes",
    scope="imports",
)
def _step_params_exist(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    if not spec.model.pipeline or spec.model.entrypoint:
        return
    params = _step_params(ctx)
    for (i, path, at), step, known in zip(_steps(ctx), spec.model.pipeline, params, strict=True):
        if known is None:
            continue
        for name in step.params:
            if name in known:
                continue
            message, hint = _unknown_param(name, known, path.rpartition(".")[2])
            yield Finding(
                f"model.pipeline step {i + 1}: {message}", ((*at, name), at), hint, on_key=True
            )
    if spec.model.tuning is None:
        return
    steps = zip(spec.model.pipeline, params, strict=True)
    by_name = dict(zip(_step_names(spec), steps, strict=True))
    for key in spec.model.tuning.params:
        step_name, sep, rest = key.partition("__")
        if not sep or step_name not in by_name:
            continue  # tuning-names-steps says so
        step, known = by_name[step_name]
        # `step__estimator__C` sets a parameter of a nested estimator: only the first is checked.
        name = rest.partition("__")[0]
        if known is None or name in known:
            continue
        message, hint = _unknown_param(name, known, step.class_path.rpartition(".")[2])
        close = _close_param(name, known)
        if close:
            hint = f"did you mean '{step_name}__{close}{rest[len(name) :]}'?"
        yield Finding(
            f"model.tuning.params: '{key}': {message}",
            (("model", "tuning", "params", key), ("model", "tuning", "params")),
            hint,
            on_key=True,
        )


@rule("tuning-names-steps", "error", "tuning parameters name pipeline steps")
def _tuning_steps(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    if spec.model.tuning is None or not spec.model.pipeline or spec.model.entrypoint:
        return
    names = set(_step_names(spec))
    for param in spec.model.tuning.params:
        step, sep, _ = param.partition("__")
        if not sep or step in names:
            continue
        close = difflib.get_close_matches(step, sorted(names), n=1)
        yield Finding(
            f"model.tuning.params: '{param}' names the step '{step}', which the pipeline does "
            f"not have (its steps: {', '.join(sorted(names))})",
            (("model", "tuning", "params", param), ("model", "tuning", "params")),
            hint=f"did you mean '{close[0]}__{param.partition('__')[2]}'?"
            if close
            else "name parameters STEP__PARAM, STEP the class name in lowercase",
        )


@rule("tuning-distribution", "error", "tuning distributions are ranges the search can sample")
def _tuning_distributions(ctx: RuleContext) -> Iterator[Finding]:
    tuning = ctx.spec.model.tuning
    if tuning is None:
        return
    for param, space in tuning.params.items():
        if not isinstance(space, Distribution):
            continue
        at: Loc = ("model", "tuning", "params", param)
        name = f"model.tuning.params.{param}"
        if tuning.search == "grid":
            yield Finding(
                f"{name}: grid search tries listed values only; a {space.kind.value} "
                "distribution needs random or halving search",
                (("model", "tuning", "search"), at),
                hint="set model.tuning.search to random or halving, or list the values",
            )
        if space.low >= space.high:
            yield Finding(
                f"{name}: low ({space.low:g}) must be below high ({space.high:g})",
                ((*at, "low"), at),
                hint="swap low and high, or list the one value",
            )
        if space.kind is DistributionKind.LOG_UNIFORM and space.low <= 0:
            yield Finding(
                f"{name}: a log-uniform distribution needs low > 0 (got {space.low:g})",
                ((*at, "low"), at),
                hint="use e.g. low: 0.001, or the uniform distribution for ranges from 0",
            )
        if space.kind is DistributionKind.INT and not (
            space.low.is_integer() and space.high.is_integer()
        ):
            yield Finding(
                f"{name}: an int distribution needs whole numbers for low and high",
                ((*at, "low"), at),
                hint="use whole numbers, or the uniform distribution for floats",
            )
    if tuning.search != "halving" and ctx.written("model", "tuning", "factor"):
        yield Finding(
            "model.tuning.factor: only successive halving uses a factor",
            (("model", "tuning", "factor"),),
            hint="set model.tuning.search: halving, or remove factor",
        )


def _local_files(ctx: RuleContext) -> Iterator[tuple[str, Loc]]:
    """Files the spec names that must exist before anything runs, and where."""
    data = ctx.spec.data
    if data.source is not None:
        yield from _source_files(data.source, ("data", "source"))
    if data.dump:
        yield data.dump, ("data", "dump")
    if data.outcomes is not None:
        yield from _source_files(data.outcomes.source, ("data", "outcomes"))
    research = ctx.spec.release.research
    if research is not None:
        if research.data:
            yield research.data, ("release", "research", "data")
        if research.predictions:
            yield research.predictions, ("release", "research", "predictions")


def _source_files(source: Any, at: Loc) -> Iterator[tuple[str, Loc]]:
    if source.path:
        yield source.path, (*at, "path")
    elif source.url and source.url.startswith("sqlite:///") and "${" not in source.url:
        path = source.url.removeprefix("sqlite:///").split("?")[0]
        if path and path != ":memory:":
            yield path, (*at, "url")


# A warning, not an error: data files are often kept out of git (a CI checkout validates
# without them) or written by an export before training; `train` refuses them if absent.
@rule("file-exists", "warning", "data and reference files exist", scope="files")
def _files_exist(ctx: RuleContext) -> Iterator[Finding]:
    for relative, at in _local_files(ctx):
        if "${" in relative or any(ch in relative for ch in "*?["):
            continue  # resolved at run time, or a pattern of files
        if not ctx.spec.resolve(relative).exists():
            yield Finding(
                f"{_name(at)}: {relative} does not exist (looked in {ctx.spec.root})",
                (at,),
                hint="paths are relative to lifecycle.yaml; create the file or fix the path "
                "before `mlcycle train`",
            )


@rule("unattended-needs-model", "error", "unattended procurement needs a pipeline")
def _unattended_model(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    if spec.lifecycle.procurement is Procurement.UNATTENDED and not (
        spec.model.pipeline or spec.model.entrypoint
    ):
        yield Finding(
            "unattended procurement trains the model, but neither model.pipeline nor "
            "model.entrypoint says what to train",
            (("model",), PROCUREMENT),
            hint="add `model: {pipeline: [sklearn.preprocessing.StandardScaler, "
            "sklearn.linear_model.LogisticRegression]}`",
        )


@rule("unattended-needs-label", "error", "unattended procurement needs `data.label`")
def _unattended_label(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    if spec.lifecycle.procurement is Procurement.UNATTENDED and spec.data.label is None:
        yield Finding(
            "unattended procurement trains the model, but data.label (the column to predict) "
            "is missing",
            (("data",), PROCUREMENT),
            hint="add `label: COLUMN` under data",
        )


@rule("interactive-needs-model", "warning", "interactive procurement ships a model file")
def _interactive_model(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    if spec.lifecycle.procurement is Procurement.INTERACTIVE and spec.release.model is None:
        yield Finding(
            "interactive procurement ships a hand-trained model, but release.model is not set: "
            "every `mlcycle release` must be given `--model FILE`",
            (("release",), PROCUREMENT),
            hint="add `release: {model: models/model.skops}`",
        )


@rule("unattended-without-gate", "warning", "without a gate any trained model is released")
def _no_gate(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    if spec.lifecycle.procurement is Procurement.UNATTENDED and not spec.evaluation.gate:
        yield Finding(
            "no evaluation.gate: any model mlcycle trains will be released and served, "
            "however poor",
            (("evaluation",), PROCUREMENT),
            hint="add `gate: ['roc_auc >= 0.8']` (or your metric) under evaluation",
        )


# --- evaluation ---------------------------------------------------------------------------


@rule("time-split-needs-ordinal", "error", "a time split orders rows by the source's ordinal")
def _time_split(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    source = spec.data.source
    if spec.evaluation.split == "time" and (source is None or not source.ordinal):
        where = "data.source has no ordinal" if source else "there is no data.source"
        yield Finding(
            f"evaluation.split is time, but {where} to order the rows by",
            (("evaluation", "split"),),
            hint="add `ordinal: COLUMN` to data.source, or use `split: holdout`",
        )


def _metric_findings(ctx: RuleContext, condition: Condition, at: Loc) -> Iterator[Finding]:
    metrics = ctx.spec.evaluation.metrics
    if metrics and condition.metric not in metrics:
        close = difflib.get_close_matches(condition.metric, metrics, n=1)
        hint = (
            f"did you mean '{close[0]}'?"
            if close
            else f"add '{condition.metric}' to evaluation.metrics"
        )
        yield Finding(
            f"'{condition}' uses metric {condition.metric}, which is not among "
            f"evaluation.metrics ({', '.join(metrics)})",
            (at,),
            hint=hint,
        )


@rule("metric-not-evaluated", "error", "gates and triggers use evaluated metrics")
def _metric_evaluated(ctx: RuleContext) -> Iterator[Finding]:
    for i, condition in enumerate(ctx.spec.evaluation.gate):
        yield from _metric_findings(ctx, condition, ("evaluation", "gate", i))
    trigger = ctx.spec.update.triggers.metric
    if trigger is not None:
        yield from _metric_findings(ctx, trigger, ("update", "triggers", "metric"))


def _feedback_missing(ctx: RuleContext) -> list[str]:
    missing = []
    if ctx.spec.lifecycle.data_access is not DataAccess.PROGRAMMATIC:
        missing.append("programmatic data access")
    if ctx.spec.data.outcomes is None:
        missing.append("an outcomes source (data.outcomes)")
    return missing


_OUTCOMES_HINT = (
    "set `data_access: programmatic` and add `outcomes: {path: FILE, key: COLUMN, "
    "outcome: COLUMN}` under data"
)


@rule("metric-trigger-needs-feedback", "error", "a metric trigger needs true outcomes")
def _metric_trigger_feedback(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.spec.update.triggers.metric is None:
        return
    missing = _feedback_missing(ctx)
    if missing:
        yield Finding(
            "update.triggers.metric watches the production metric, which needs served "
            f"predictions scored against true outcomes: missing {' and '.join(missing)}",
            (("update", "triggers", "metric"),),
            hint=_OUTCOMES_HINT,
        )


# --- deployment ---------------------------------------------------------------------------


@rule("dynamic-needs-registry", "error", "dynamic deployment loads models from a registry")
def _dynamic_registry(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    if spec.lifecycle.deployment is Deployment.DYNAMIC and spec.registry.backend == "none":
        yield Finding(
            "dynamic deployment loads models from the registry at run time, "
            "but registry.backend is none",
            (("registry", "backend"),),
            hint="set `registry.backend: local` (the default), or `deployment: wrapped`",
        )


@rule("selector-needs-dynamic", "error", "only a dynamic engine routes by selector")
def _selector_dynamic(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    kind = spec.deployment.selector.kind
    if spec.lifecycle.deployment is Deployment.WRAPPED and kind not in (
        SelectorKind.LATEST,
        SelectorKind.PINNED,
    ):
        yield Finding(
            f"the {kind} selector routes requests between models, which only a dynamic "
            "deployment does; a wrapped image serves the one model baked into it",
            _selector_at(),
            hint="set `lifecycle.deployment: dynamic`, or remove deployment.selector",
        )


@rule("selector-needs-feedback", "error", "bandit and fallback selectors need true outcomes")
def _selector_feedback(ctx: RuleContext) -> Iterator[Finding]:
    kind = ctx.spec.deployment.selector.kind
    if not kind.needs_feedback:
        return
    missing = _feedback_missing(ctx)
    if missing:
        yield Finding(
            f"the {kind} selector learns from true outcomes of served predictions: "
            f"missing {' and '.join(missing)}",
            _selector_at(),
            hint=_OUTCOMES_HINT,
        )


@rule("reward-fits-task", "error", "a bandit's reward is declared and fits the task")
def _reward_fits_task(ctx: RuleContext) -> Iterator[Finding]:
    selector = ctx.spec.deployment.selector
    reward = selector.reward
    task = _declared_task(ctx.spec)
    at = (("deployment", "selector", "reward"), *_selector_at())
    if reward is not None and reward.kind is RewardKind.ERROR and reward.scale is None:
        yield Finding(
            "deployment.selector.reward: kind `error` needs `scale`, the absolute error "
            "that earns nothing",
            at,
            hint="e.g. `reward: {kind: error, scale: 5}` when an error of 5 is as bad as any",
        )
    if reward is not None and reward.kind is RewardKind.CORRECT and reward.scale is not None:
        yield Finding(
            "deployment.selector.reward: `scale` belongs to kind `error`; `correct` earns 1 or 0",
            (("deployment", "selector", "reward", "scale"), *at),
            hint="remove `scale`, or use `kind: error` for a regression model",
        )
    if task == "regression":
        if reward is None and selector.kind.needs_feedback:
            yield Finding(
                f"the {selector.kind} selector learns from rewards, and a regression "
                "prediction is never exactly right: declare its reward",
                at,
                hint="add `reward: {kind: error, scale: S}` under deployment.selector: "
                "1 for an exact prediction, 0 for one off by S or more",
            )
        elif reward is not None and reward.kind is RewardKind.CORRECT:
            yield Finding(
                "deployment.selector.reward: `correct` compares labels, and this model "
                "predicts numbers (model.task regression)",
                at,
                hint="use `reward: {kind: error, scale: S}`",
            )
    elif task == "classification" and reward is not None and reward.kind is RewardKind.ERROR:
        yield Finding(
            "deployment.selector.reward: `error` measures how far a number is off, and "
            "this model predicts labels (model.task classification)",
            at,
            hint="use `reward: {kind: correct}` (the default) or remove `reward`",
        )


@rule("pinned-needs-model", "error", "a pinned selector names its model")
def _pinned_model(ctx: RuleContext) -> Iterator[Finding]:
    selector = ctx.spec.deployment.selector
    if selector.kind is SelectorKind.PINNED and selector.model is None:
        yield Finding(
            "the pinned selector serves one model, but deployment.selector.model is not set",
            _selector_at(),
            hint="write `selector: {kind: pinned, model: '1.0.0'}` (or '1.0.0/2' for a generation)",
        )


@rule("ab-weights", "error", "an A/B split has one weight per arm")
def _ab_weights(ctx: RuleContext) -> Iterator[Finding]:
    selector = ctx.spec.deployment.selector
    if selector.kind is not SelectorKind.AB or selector.weights is None:
        return
    at = (("deployment", "selector", "weights"),)
    if len(selector.weights) != selector.arms:
        arms = "arms" if ctx.written("deployment", "selector", "arms") else "arms (default 2)"
        yield Finding(
            f"deployment.selector.weights has {len(selector.weights)} weights but there are "
            f"{selector.arms} {arms}",
            at,
            hint=f"give {selector.arms} weights, newest arm first, or set "
            f"`arms: {len(selector.weights)}`",
        )
    elif not any(w > 0 for w in selector.weights):
        yield Finding(
            "deployment.selector.weights are all zero: no arm would get traffic",
            at,
            hint="give at least one arm a positive weight",
        )


# --- liaison ------------------------------------------------------------------------------


@rule("dual-needs-research", "error", "dual liaison reproduces a research specification")
def _dual_research(ctx: RuleContext) -> Iterator[Finding]:
    spec = ctx.spec
    if spec.lifecycle.liaison is not Liaison.DUAL:
        return
    research = spec.release.research
    if research is None or (research.predictions is None and not research.metrics):
        yield Finding(
            "dual liaison needs the research specification to reproduce: release.research "
            "with reference predictions and/or expected metrics",
            (("release", "research"), LIAISON),
            hint="add `release: {research: {data: research/inputs.csv, predictions: "
            "research/predictions.csv, metrics: {roc_auc: 0.83}}}`",
        )


@rule("dual-needs-programmatic", "error", "dual liaison needs programmatic data access")
def _dual_programmatic(ctx: RuleContext) -> Iterator[Finding]:
    lc = ctx.spec.lifecycle
    if lc.liaison is Liaison.DUAL and lc.data_access is not DataAccess.PROGRAMMATIC:
        yield Finding(
            "dual liaison needs programmatic data access: development re-implements the "
            "research against the same data source descriptor",
            (DATA_ACCESS,),
            hint="set `data_access: programmatic` and describe data.source",
        )


@rule("dual-needs-unattended", "error", "dual liaison needs unattended procurement")
def _dual_unattended(ctx: RuleContext) -> Iterator[Finding]:
    lc = ctx.spec.lifecycle
    if lc.liaison is Liaison.DUAL and lc.procurement is not Procurement.UNATTENDED:
        yield Finding(
            "dual liaison needs unattended procurement: each release retrains the "
            "re-implementation and checks it reproduces the research",
            (PROCUREMENT,),
            hint="set `procurement: unattended`",
        )


@rule("research-predictions-need-data", "error", "reference predictions need their inputs")
def _research_data(ctx: RuleContext) -> Iterator[Finding]:
    research = ctx.spec.release.research
    if research is not None and research.predictions is not None and research.data is None:
        yield Finding(
            "release.research.predictions cannot be reproduced without the reference inputs: "
            "release.research.data is missing",
            (("release", "research", "predictions"),),
            hint="add `data: FILE` (the inputs research predicted on) to release.research",
        )


# --- anti-patterns -----------------------------------------------------------------------


@rule("adhoc-data-access", "warning", "ad-hoc data dumps are an anti-pattern")
def _adhoc(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.spec.lifecycle.data_access is DataAccess.ADHOC:
        yield Finding(
            "ad-hoc data access (an anti-pattern): a static dump cannot be refreshed, so you "
            "lose reproducible data windows, autonomous updates and the evaluation of served "
            "predictions against true outcomes",
            (DATA_ACCESS,),
            hint="describe the data as `data.source` (a file or database with an `ordinal` "
            "column) and set `data_access: programmatic`",
        )


@rule("interactive-procurement", "warning", "hand-trained models are an anti-pattern")
def _interactive(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.spec.lifecycle.procurement is Procurement.INTERACTIVE:
        yield Finding(
            "interactive procurement (an anti-pattern): a model trained by hand is not "
            "evaluated or gated by mlcycle and cannot be reproduced from the release",
            (PROCUREMENT,),
            hint="declare `model.pipeline` and `data.label` and set "
            "`procurement: unattended`; mlcycle then trains, evaluates and gates each release",
        )


# --- secrets --------------------------------------------------------------------------


def _strings(node: Any, path: Loc = ()) -> Iterator[tuple[Loc, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, (*path, index))


# The variable a container is given a URL by instead of the spec (the serving image's
# copy of the spec has its secrets masked), for the keys that have one.
_URL_VARIABLES: Final[Mapping[Loc, str]] = {
    ("registry", "url"): "MLCYCLE_REGISTRY_URL",
    ("registry", "artifacts"): "MLCYCLE_ARTIFACTS_URL",
    ("store", "url"): "MLCYCLE_STORE_URL",
}


@rule("literal-secret", "warning", "a password written in the spec")
def _literal_secret(ctx: RuleContext) -> Iterator[Finding]:
    for path, value in _strings(ctx.doc.data):
        if has_password(value):
            variable = _URL_VARIABLES.get(tuple(path))
            where = f" (for the serving image, {variable})" if variable else ""
            yield Finding(
                f"{_name(path)} holds a literal password or token ({mask_url(value)}): the spec "
                "is committed to git, and bundles and images carry it with the secret masked, "
                "so a container could not use it anyway",
                (path,),
                hint="write it as ${env:NAME}, e.g. postgresql://user:${env:PGPASSWORD}@host/db, "
                f"and set NAME where mlcycle runs{where}",
            )


def rule_ids() -> list[str]:
    """Every rule id, in registration order."""
    return [r.id for r in RULES]


__all__ = ["RULES", "Finding", "Rule", "RuleContext", "check_rules", "rule", "rule_ids"]


# --- optional extras ---------------------------------------------------------------------


def _parquet_path(value: Any, declared: Any = None) -> bool:
    if declared is not None:
        return str(declared).lower() == "parquet"
    return isinstance(value, str) and value.lower().endswith((".parquet", ".pq", ".parq"))


@rule("extra-not-installed", "error", "the spec needs an extra mlcycle was installed without")
def _extra_not_installed(ctx: RuleContext) -> Iterator[Finding]:
    # Checked here so that `validate` (and every command, which loads the spec first)
    # names the extra to install before anything runs, not a ModuleNotFoundError later.
    needs: list[tuple[Loc, str, extras.Extra]] = []
    for path, raw in _sources(ctx):
        if "url" in raw:
            extra = extras.for_url(str(raw["url"]))
            if extra is not None:
                needs.append(((*path, "url"), f"{_name(path)}.url", extra))
        elif _parquet_path(raw.get("path"), raw.get("format")):
            needs.append(((*path, "path"), f"{_name(path)} (Parquet)", extras.PARQUET))
    if _parquet_path(ctx.raw("data", "dump")):
        needs.append((("data", "dump"), "data.dump (Parquet)", extras.PARQUET))
    store = ctx.raw("store", "url")
    if isinstance(store, str) and extras.for_url(store) is not None:
        needs.append((("store", "url"), "store.url", extras.POSTGRES))
    artifacts = ctx.raw("registry", "artifacts")
    if isinstance(artifacts, str) and artifacts.startswith("oci:"):
        needs.append((("registry", "artifacts"), "registry.artifacts", extras.OCI))
    if ctx.raw("tracking", "mlflow"):
        needs.append((("tracking", "mlflow"), "tracking.mlflow", extras.MLFLOW))
    for at, what, extra in needs:
        if not extra.installed():
            yield Finding(
                f"{what} needs the [{extra.name}] extra ({extra.module} is not installed)",
                (at,),
                hint=f"install it: {extra.command}",
            )
