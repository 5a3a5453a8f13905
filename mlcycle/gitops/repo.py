"""The project's git repository: state checks and release tags (through GitPython).

GitPython is imported when a repository is opened, never at module import.
Every git failure becomes a GitError saying what failed and where, with a hint.
The user's git configuration is never written: when git knows no identity (a
fresh CI runner), tags are made with a fallback identity passed in the
environment of that one git call.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlcycle.errors import GitError, UsageError
from mlcycle.gitops.tags import (
    EventTag,
    ReleaseTag,
    TagEvent,
    TagFormat,
    check_ref_name,
    deprecates_artifact,
    parse_release_message,
    tag_counter,
)
from mlcycle.gitops.version import Version, first_version
from mlcycle.registry.refs import SEMVER_RE

if TYPE_CHECKING:
    import git

log = logging.getLogger(__name__)

FALLBACK_NAME: Final = "mlcycle"
FALLBACK_EMAIL: Final = "mlcycle@localhost"

# A push must fail rather than wait for a password nobody will type.
_NO_PROMPT: Final = {"GIT_TERMINAL_PROMPT": "0"}


def _import_git() -> None:
    """Import GitPython; GitError when it cannot find the git program."""
    try:
        import git  # noqa: F401
    except ImportError as e:
        # GitPython's message is a page of advice; its first line says what happened.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GitError(
            f"git is not usable (is it installed and on PATH?): {first}",
            hint="install git (Debian/Ubuntu: apt-get install git) and make sure it is on PATH",
        ) from None


class Repo:
    """A git working tree holding an mlcycle project. Open one with `Repo.find`."""

    def __init__(self, repo: git.Repo) -> None:
        """Wrap a GitPython repository with a working tree (use `Repo.find`)."""
        if repo.working_tree_dir is None:
            raise GitError(f"{repo.git_dir}: a bare repository has no working tree")
        self._repo = repo
        self.root: Path = Path(repo.working_tree_dir)

    @classmethod
    def find(cls, path: Path | str) -> Repo:
        """The repository whose working tree holds `path` (searching parent folders)."""
        _import_git()
        import git

        where = Path(path)
        try:
            repo = git.Repo(where, search_parent_directories=True)
        except git.NoSuchPathError:
            raise GitError(f"{where}: no such file or folder") from None
        except git.InvalidGitRepositoryError:
            raise GitError(
                f"{where}: not a git repository (nor any of its parent folders)",
                hint="run `git init` there (`mlcycle init` creates the repository for you)",
            ) from None
        if repo.bare:
            raise GitError(
                f"{where}: a bare repository has no working tree",
                hint="run mlcycle in a clone of it",
            )
        return cls(repo)

    def __repr__(self) -> str:
        return f"Repo({str(self.root)!r})"

    def close(self) -> None:
        """End the git helper processes GitPython keeps (long-lived callers should)."""
        self._repo.close()

    def __enter__(self) -> Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- running git ---------------------------------------------------------------

    def _run(
        self, command: str, *args: str, env: Mapping[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Run `git COMMAND ARGS` in the working tree; (status, stdout, stderr), never raises."""
        runner = getattr(self._repo.git, command)
        status, out, err = runner(
            *args,
            with_extended_output=True,
            with_exceptions=False,
            strip_newline_in_stdout=False,
            env=dict(env or {}),
        )
        return int(status), str(out), str(err)

    def _identity_env(self) -> dict[str, str]:
        """Environment for a git call that records a tagger/committer.

        Adds the fallback name and/or email only where git has none configured
        (in the environment or any config file), so a configured identity always wins.
        """
        import os

        env: dict[str, str] = {}
        if not os.environ.get("GIT_COMMITTER_NAME"):
            status, out, _ = self._run("config", "--get", "user.name")
            if status != 0 or not out.strip():
                env["GIT_COMMITTER_NAME"] = FALLBACK_NAME
        if not (os.environ.get("GIT_COMMITTER_EMAIL") or os.environ.get("EMAIL")):
            status, out, _ = self._run("config", "--get", "user.email")
            if status != 0 or not out.strip():
                env["GIT_COMMITTER_EMAIL"] = FALLBACK_EMAIL
        if env:
            log.debug("git has no identity configured; tagging as %s", env)
        return env

    # --- state -------------------------------------------------------------------------

    def head_commit(self) -> str | None:
        """Hex SHA-1 of HEAD's commit; None in a repository without commits."""
        head = self._repo.head
        if not head.is_valid():
            return None
        return head.commit.hexsha

    def is_detached(self) -> bool:
        """Whether HEAD points at a commit rather than a branch."""
        return bool(self._repo.head.is_detached)

    def branch(self) -> str | None:
        """The checked-out branch (also before the first commit); None when detached."""
        if self.is_detached():
            return None
        return str(self._repo.head.reference.name)

    def dirty_paths(self) -> list[str]:
        """Paths (relative to the root, sorted) with changes git would commit.

        Modified, staged, deleted and untracked files count; files git ignores
        do not. Both sides of a rename are listed.
        """
        status, out, err = self._run(
            "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"
        )
        if status != 0:
            raise GitError(f"{self.root}: git status failed: {err.strip()}")
        paths = {entry[3:] for entry in out.split("\0") if len(entry) > 3}
        return sorted(paths)

    def is_dirty(self) -> bool:
        """Whether `dirty_paths` is non-empty."""
        return bool(self.dirty_paths())

    def file_at(self, commit: str, path: Path) -> str | None:
        """The text of `path` (in the working tree) as committed in `commit`.

        None when the commit is not in this clone or did not hold the file.
        """
        relative = Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        status, out, _ = self._run("show", f"{commit}:{relative}")
        return out if status == 0 else None

    def changed_since(self, commit: str, paths: list[Path]) -> list[str]:
        """Those of `paths` (files or folders) whose working-tree content differs from `commit`.

        Uncommitted edits, new untracked files and deletions count; what git ignores
        does not. Relative to the root, sorted. GitError when `commit` is unknown.
        """
        if not paths:
            return []
        root = self.root.resolve()
        relative = [Path(p).resolve().relative_to(root).as_posix() for p in paths]
        status, out, err = self._run("diff", "--name-only", "-z", commit, "--", *relative)
        if status != 0:
            raise GitError(f"{self.root}: cannot compare with commit {commit[:12]}: {_gist(err)}")
        changed = {p for p in out.split("\0") if p}
        status, out, err = self._run(
            "ls-files", "-z", "--others", "--exclude-standard", "--", *relative
        )
        if status != 0:
            raise GitError(f"{self.root}: git ls-files failed: {_gist(err)}")
        changed |= {p for p in out.split("\0") if p}
        return sorted(changed)

    # --- release tags ------------------------------------------------------------------

    def tag_exists(self, tag: str) -> bool:
        """Whether the tag exists locally."""
        status, _, _ = self._run("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}")
        return status == 0

    def artifact_deprecation(self, name: str) -> str | None:
        """The tag by which GTO deprecated project `name` as a whole, if one exists."""
        for ref in self._repo.tags:
            if deprecates_artifact(ref.name, name):
                return str(ref.name)
        return None

    def release_tags(self, fmt: TagFormat, name: str) -> list[ReleaseTag]:
        """The release tags of project `name`, oldest version first.

        Tags of other projects and tags that do not fit `fmt` are skipped, as
        are tags that do not point to a commit. Lightweight tags that fit count
        (someone tagged by hand); their date is the commit's and tagger None.
        """
        found: list[ReleaseTag] = []
        for ref in self._repo.tags:
            version = fmt.parse(ref.name, name)
            if version is None:
                continue
            release = self._release_tag(ref, version)
            if release is not None:
                found.append(release)
        found.sort(key=lambda r: r.version)
        return found

    def release_tag(self, tag: str, version: Version) -> ReleaseTag:
        """The tag named `tag` as a ReleaseTag of `version`; GitError if there is none."""
        import git

        try:
            ref = git.TagReference(self._repo, f"refs/tags/{tag}")
            release = self._release_tag(ref, version) if ref.is_valid() else None
        except ValueError:
            release = None
        if release is None:
            raise GitError(f"{self.root}: no tag {tag} pointing to a commit")
        return release

    def _release_tag(self, ref: git.TagReference, version: Version) -> ReleaseTag | None:
        import git

        try:
            commit = ref.commit
        except ValueError:  # a tag of a tree or blob
            log.debug("skipping tag %s: it does not point to a commit", ref.name)
            return None
        obj = ref.tag
        if obj is None:
            return ReleaseTag(
                name=ref.name,
                version=version,
                commit=commit.hexsha,
                date=commit.committed_datetime.isoformat(),
                tagger=None,
                message="",
                metadata={},
                annotated=False,
            )
        assert isinstance(obj, git.TagObject)
        date, message, metadata = _annotation(ref.name, obj)
        return ReleaseTag(
            name=ref.name,
            version=version,
            commit=commit.hexsha,
            date=date.isoformat(),
            tagger=f"{obj.tagger.name} <{obj.tagger.email}>",
            message=message,
            metadata=metadata,
            annotated=True,
        )

    def event_tags(self, name: str) -> list[TagEvent]:
        """Project `name`'s stage and deregistration tags (GTO's grammar), oldest first.

        Lightweight tags are skipped, as GTO skips them. Order: by tagging time, then
        counter (GTO numbers an artifact's tags in the order it wrote them).
        """
        import git

        found: list[TagEvent] = []
        for ref in self._repo.tags:
            parsed = EventTag.parse(ref.name, name)
            if parsed is None:
                continue
            obj = ref.tag
            if obj is None:
                continue
            try:
                commit = ref.commit.hexsha
            except ValueError:
                continue
            assert isinstance(obj, git.TagObject)
            date, message, metadata = _annotation(ref.name, obj)
            found.append(
                TagEvent(
                    tag=parsed,
                    commit=commit,
                    date=date.isoformat(),
                    tagger=f"{obj.tagger.name} <{obj.tagger.email}>",
                    message=message,
                    metadata=metadata,
                )
            )
        found.sort(key=lambda e: (dt.datetime.fromisoformat(e.date), e.tag.counter or 0))
        return found

    def next_counter(self, name: str) -> int:
        """The `#N` of project `name`'s next GTO event tag: one more than any so far."""
        counters = [tag_counter(ref.name, name) for ref in self._repo.tags]
        return max((c for c in counters if c is not None), default=0) + 1

    def latest_version(self, fmt: TagFormat, name: str) -> Version | None:
        """The greatest released version of project `name` (pre-releases count); None if none."""
        tags = self.release_tags(fmt, name)
        return tags[-1].version if tags else None

    def next_version(self, fmt: TagFormat, name: str, bump: str) -> Version:
        """The version after the latest release, raising `bump` (major, minor or patch).

        Without releases: 1.0.0, 0.1.0 or 0.0.1.
        """
        latest = self.latest_version(fmt, name)
        return first_version(bump) if latest is None else latest.bump(bump)

    def create_tag(
        self,
        tag: str,
        message: str,
        *,
        commit: str | None = None,
        version: Version | None = None,
    ) -> ReleaseTag:
        """Create the annotated tag `tag` on `commit` (default HEAD) with `message`, verbatim.

        `version` is the release the tag stands for; by default the semantic
        version the tag name ends with (`churn@v1.2.0` → 1.2.0). GitError when
        the tag exists, the commit is unknown or the repository has no commits.
        """
        problem = check_ref_name(tag)
        if problem is not None:
            raise UsageError(f"{tag!r} is not a valid git tag name: {problem}")
        if version is None:
            version = _version_in_tag(tag)
        if self.tag_exists(tag):
            raise self._exists_error(tag)
        target = self._resolve_commit(commit)
        status, _, err = self._run(
            "tag",
            "--annotate",
            "--cleanup=verbatim",
            f"--message={message}",
            "--",
            tag,
            target,
            env=self._identity_env(),
        )
        if status != 0:
            if "already exists" in err:
                raise self._exists_error(tag)
            raise GitError(f"{self.root}: could not create tag {tag}: {_gist(err)}")
        log.info("created tag %s on %s", tag, target[:12])
        return self.release_tag(tag, version)

    def _exists_error(self, tag: str) -> GitError:
        return GitError(
            f"{self.root}: tag {tag} already exists",
            hint=f"release another version, or delete the tag first: git tag -d {tag}",
        )

    def _resolve_commit(self, commit: str | None) -> str:
        if commit is None:
            head = self.head_commit()
            if head is None:
                raise GitError(
                    f"{self.root}: the repository has no commits to tag",
                    hint="commit the project first (git add -A && git commit)",
                )
            return head
        status, out, _ = self._run("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
        if status != 0:
            raise GitError(f"{self.root}: {commit!r} is not a commit in this repository")
        return out.strip()

    def delete_tag(self, tag: str) -> None:
        """Delete the local tag `tag` (a rollback); GitError when there is none."""
        if not self.tag_exists(tag):
            raise GitError(f"{self.root}: no tag {tag} to delete")
        status, _, err = self._run("tag", "--delete", tag)
        if status != 0:
            raise GitError(f"{self.root}: could not delete tag {tag}: {_gist(err)}")
        log.info("deleted tag %s", tag)

    def remotes(self) -> list[str]:
        """Names of the configured remotes."""
        return [remote.name for remote in self._repo.remotes]

    def is_shallow(self) -> bool:
        """Whether this is a shallow clone (`git clone --depth N`), missing older history."""
        status, out, _ = self._run("rev-parse", "--is-shallow-repository")
        return status == 0 and out.strip() == "true"

    def default_remote(self) -> str | None:
        """Where release tags live: the branch's upstream remote, else origin, else the only one."""
        names = self.remotes()
        branch = self.branch()
        if branch is not None:
            status, out, _ = self._run("config", "--get", f"branch.{branch}.remote")
            if status == 0 and out.strip() in names:
                return out.strip()
        if "origin" in names:
            return "origin"
        return names[0] if len(names) == 1 else None

    def remote_tags(self, remote: str) -> list[str]:
        """Names of the tags `remote` has (`git ls-remote`: reads, never writes)."""
        status, out, err = self._run("ls-remote", "--tags", "--refs", remote, env=_NO_PROMPT)
        if status != 0:
            raise GitError(f"{self.root}: could not list the tags of {remote}: {_gist(err)}")
        return sorted(
            line.split("\t", 1)[1].removeprefix("refs/tags/")
            for line in out.splitlines()
            if "\trefs/tags/" in line
        )

    def fetch_tags(self, remote: str, tags: Iterable[str]) -> None:
        """Fetch `tags` from `remote`, with the commits they tag.

        In a shallow clone only those commits come (depth 1), not their history:
        a version is read from the tag, and a CI job should not pay for a full clone.
        """
        names = list(tags)
        refspecs = [f"refs/tags/{t}:refs/tags/{t}" for t in names]
        if not refspecs:
            return
        depth = ["--depth=1"] if self.is_shallow() else []
        status, _, err = self._run(
            "fetch", "--quiet", "--no-tags", *depth, remote, *refspecs, env=_NO_PROMPT
        )
        if status != 0:
            raise GitError(f"{self.root}: could not fetch tags from {remote}: {_gist(err)}")
        log.info("fetched %d tag(s) from %s: %s", len(names), remote, ", ".join(names))

    def sync_release_tags(self, remote: str | None, wanted: Callable[[str], bool]) -> list[str]:
        """Make sure every `wanted` tag of `remote` is here before a version is chosen.

        The tags `remote` has and this clone lacks (a CI's shallow or `--no-tags`
        clone) are fetched; their names are returned. When the remote cannot be
        read and this clone cannot be trusted on its own (it is shallow, or has
        no `wanted` tag), UsageError with the command that fixes it: choosing a
        version blind would re-issue an existing one. A full clone that has tags
        goes on without the remote (offline work), with a warning.
        """
        if remote is None:
            if not self.is_shallow():
                return []  # a full repository without remotes: its tags are all there is
            # A shallow clone's tags are whatever the clone brought (often none, with
            # --no-tags); with no remote to read, a version chosen here could re-issue one.
            names = self.remotes()
            if names:
                hint = (
                    "name the remote the release tags live on (--remote NAME; remotes here: "
                    f"{', '.join(names)}), or fetch its tags: git fetch --unshallow --tags NAME"
                )
            else:
                hint = (
                    "add the remote and fetch its tags: git remote add origin URL && "
                    "git fetch --tags origin"
                )
            raise UsageError(
                f"{self.root}: this clone is shallow and has no remote to fetch the release "
                "tags from, so the next version cannot be told from it (it could re-issue a "
                "version that exists)",
                hint=hint,
            )
        names = self.remotes()
        if remote not in names:
            hint = f"add it: git remote add {remote} URL"
            if names:
                hint += "; remotes here: " + ", ".join(names)
            raise UsageError(f"{self.root}: no git remote named {remote!r}", hint=hint)
        local = {ref.name for ref in self._repo.tags}
        try:
            missing = [t for t in self.remote_tags(remote) if wanted(t) and t not in local]
            self.fetch_tags(remote, missing)
        except GitError as e:
            shallow = self.is_shallow()
            if not shallow and any(wanted(t) for t in local):
                log.warning("%s; choosing the version from the local tags", e.message)
                return []
            why = "this clone is shallow" if shallow else "this clone has no release tags"
            raise UsageError(
                f"{e.message}\n{why}, so the next version cannot be told from it "
                "(it could re-issue a version that exists)",
                hint=f"fetch the tags, then release again: git fetch --tags {remote}",
            ) from e
        return missing

    def push_tag(self, tag: str, remote: str = "origin") -> None:
        """Push the tag to `remote`; GitError with the remote's words when it refuses."""
        names = self.remotes()
        if remote not in names:
            hint = f"add it: git remote add {remote} URL"
            if names:
                hint += "; remotes here: " + ", ".join(names)
            raise GitError(f"{self.root}: no git remote named {remote!r}", hint=hint)
        if not self.tag_exists(tag):
            raise GitError(f"{self.root}: no tag {tag} to push")
        refspec = f"refs/tags/{tag}:refs/tags/{tag}"
        status, out, err = self._run("push", "--porcelain", remote, refspec, env=_NO_PROMPT)
        if status == 0:
            log.info("pushed tag %s to %s", tag, remote)
            return
        # --porcelain puts the per-ref verdict on stdout: "!<TAB>src:dst<TAB>[rejected] (why)".
        verdicts = [
            line.split("\t")[2]
            for line in out.splitlines()
            if line.startswith("!") and line.count("\t") >= 2
        ]
        said = [
            "remote: " + line.removeprefix("remote:").strip()
            for line in err.splitlines()
            if line.startswith("remote:") and line.removeprefix("remote:").strip()
        ]
        reason = "; ".join(verdicts) or _gist(err)
        message = "\n".join([f"pushing tag {tag} to {remote} failed: {reason}", *said])
        if any("already exists" in v for v in verdicts):
            hint = (
                f"{remote} already has a tag {tag} on another commit; fetch it "
                f"(git fetch {remote} tag {tag}) and release a new version"
            )
        elif verdicts:
            hint = f"the remote {remote} refused the tag; its hooks or permissions decide"
        else:
            hint = f"check that {remote} is reachable and that you may push to it"
        raise GitError(message, hint=hint)


def _version_in_tag(tag: str) -> Version:
    """The semantic version `tag` ends with (the longest such suffix)."""
    for start in range(len(tag)):
        if tag[start].isdigit() and SEMVER_RE.match(tag[start:]):
            return Version.parse(tag[start:])
    raise UsageError(
        f"tag {tag!r} does not end with a semantic version",
        hint="pass the release's version explicitly",
    )


def _gist(stderr: str) -> str:
    """The informative lines of git's stderr, joined (hints dropped)."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("hint:")
    ]
    return " ".join(lines) or "git gave no reason"


def _annotation(name: str, obj: Any) -> tuple[dt.datetime, str, dict[str, Any]]:
    """An annotated tag's date, message and the metadata its message carries."""
    # GitPython keeps the offset the way `time.altzone` does: seconds west of UTC.
    zone = dt.timezone(dt.timedelta(seconds=-obj.tagger_tz_offset))
    date = dt.datetime.fromtimestamp(obj.tagged_date, zone)
    message = obj.message if isinstance(obj.message, str) else obj.message.decode()
    try:
        metadata = parse_release_message(message)
    except GitError as e:
        log.warning("tag %s: %s", name, e)
        metadata = {}
    return date, message, metadata
