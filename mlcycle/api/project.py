"""A project as the verbs see it: the spec file, the typed spec and what hangs off it."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mlcycle.errors import GitError, UsageError
from mlcycle.spec import find_spec, load_spec, recipe_hash, spec_hash
from mlcycle.spec.loader import require_document
from mlcycle.spec.model import Procurement

if TYPE_CHECKING:
    from mlcycle.registry import Registry
    from mlcycle.spec.model import Spec


@dataclass
class Project:
    """The spec at `file`, loaded and valid, with lazy access to its registry and git state."""

    file: Path
    spec: Spec
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def root(self) -> Path:
        """The directory holding the spec; relative paths in the spec start here."""
        return self.spec.root

    @property
    def registry(self) -> Registry:
        """The registry the spec declares (RegistryError when it declares none)."""
        if self._registry is None:
            # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
            from mlcycle.registry import open_registry

            self._registry = open_registry(self.spec)
        return self._registry

    @cached_property
    def spec_hash(self) -> str:
        """SHA-256 of the spec's canonical content."""
        return spec_hash(self.file)

    @cached_property
    def recipe_hash(self) -> str:
        """SHA-256 of the spec's training recipe: its data, model and evaluation sections."""
        return recipe_hash(require_document(self.file).data)

    def git_commit(self) -> str | None:
        """HEAD's commit when the project is in a git repository with commits, else None."""
        # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
        from mlcycle.gitops import Repo

        try:
            with Repo.find(self.root) as repo:
                return repo.head_commit()
        except GitError:
            return None

    def uncommitted(self, paths: list[Path]) -> tuple[Path, ...]:
        """Those of `paths` that git would commit (new or changed, not ignored).

        A release needs a clean tree, so output a command writes into the project
        must either be committed or go where git ignores it; empty outside git.
        """
        # lazy: `mlcycle validate` loads all of mlcycle.api; keep the other layers off it
        from mlcycle.gitops import Repo

        try:
            with Repo.find(self.root) as repo:
                dirty = {(repo.root / p).resolve() for p in repo.dirty_paths()}
        except GitError:
            return ()
        return tuple(p for p in paths if p.resolve() in dirty)

    def require_unattended(self, verb: str) -> None:
        """UsageError when the spec procures models by hand, so `verb` cannot train."""
        if self.spec.lifecycle.procurement is Procurement.INTERACTIVE:
            raise UsageError(
                f"{self.file}: {self.spec.name} procures its models interactively "
                f"(lifecycle.procurement: interactive), so mlcycle does not train it ({verb})",
                hint="train by hand and hand the file over with `mlcycle release --model PATH`, "
                "or set lifecycle.procurement: unattended and declare model.pipeline",
            )


def open_project(path: str | Path | None = None) -> Project:
    """The project whose spec is at `path` (a file or a directory; default: the cwd).

    Raises SpecNotFoundError when there is no spec and SpecError when it is invalid.
    """
    file = find_spec(path)
    return Project(file=file, spec=load_spec(file))
