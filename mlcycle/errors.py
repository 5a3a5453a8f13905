"""The exception families of mlcycle and the exit codes they carry.

Every error a user can cause derives from :class:`MlcycleError`. The CLI's one
error funnel prints the message and exits with ``exit_code``; nothing else in
the code base decides an exit code. Third-party errors are wrapped where they
enter (``raise DataError(...) from e``) so that the funnel never sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlcycle.spec.diagnostics import Diagnostic


class ExitCode(IntEnum):
    """The documented exit codes (README.md, Exit codes; docs/architecture.md, The invariants)."""

    OK = 0
    RUNTIME = 1
    USAGE = 2
    GATE_REJECTED = 3
    INTERRUPTED = 130


class MlcycleError(Exception):
    """Base of every error mlcycle raises on purpose."""

    exit_code: ExitCode = ExitCode.RUNTIME

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


# --- usage and spec errors (exit 2) -------------------------------------------------


class UsageError(MlcycleError, ValueError):
    """A flag, argument or request that cannot be honoured as given."""

    exit_code = ExitCode.USAGE


class SpecError(MlcycleError, ValueError):
    """The lifecycle spec is invalid; carries every problem found, each positioned."""

    exit_code = ExitCode.USAGE

    def __init__(
        self,
        *,
        diagnostics: Sequence[Diagnostic],
        message: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.diagnostics = list(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        if message is None:
            count = len(errors) or len(self.diagnostics)
            message = f"invalid spec: {count} problem{'s' if count != 1 else ''}"
        super().__init__(message, hint=hint)


class SpecNotFoundError(MlcycleError, FileNotFoundError):
    """No spec where one was expected."""

    exit_code = ExitCode.USAGE

    def __init__(self, *, path: str, reason: str = "no such file") -> None:
        super().__init__(
            f"{path}: {reason}",
            hint="run `mlcycle init NAME` to create a project, or pass the spec's path",
        )
        self.path = path


# --- runtime errors (exit 1) --------------------------------------------------------


class RuntimeFailure(MlcycleError, RuntimeError):
    """Something failed while carrying the lifecycle out."""

    exit_code = ExitCode.RUNTIME


class DataError(RuntimeFailure):
    """A data source could not be read, or gave data that cannot be used."""


class WindowError(DataError):
    """A window bound the user gave (--lower/--upper) does not fit the data's ordinal.

    A data problem by where it is found, a usage error by whose it is: the fix is in the
    command line, so it exits 2 like every other bad argument.
    """

    exit_code = ExitCode.USAGE


class TrainingError(RuntimeFailure):
    """The pipeline could not be built, tuned or fitted."""


class RegistryError(RuntimeFailure):
    """The model registry is unreadable, locked, or holds a damaged entry."""


class IntegrityError(RegistryError):
    """An artifact's SHA-256 does not match what the registry recorded."""


class GitError(RuntimeFailure):
    """A git operation (tag, push, inspection) failed."""


class PackagingError(RuntimeFailure):
    """A bundle or container image could not be built or loaded."""


class ServingError(RuntimeFailure):
    """The serving engine could not start or serve."""


# --- gate (exit 3) ------------------------------------------------------------------


@dataclass(frozen=True)
class GateFailure:
    """One gate condition a model did not meet."""

    condition: str
    metric: str
    value: float | None
    threshold: float
    shortfall: float


class GateRejectedError(MlcycleError):
    """A validation gate rejected the model; it is not registered as current."""

    exit_code = ExitCode.GATE_REJECTED

    def __init__(self, *, failures: Sequence[GateFailure], message: str | None = None) -> None:
        self.failures = list(failures)
        if message is None:
            names = ", ".join(f.condition for f in self.failures)
            message = f"the validation gate rejected the model: {names}"
        super().__init__(message, hint="see the gate table above; the model was not made current")
