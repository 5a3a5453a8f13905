"""YAML → plain data plus the position of every node, read safely.

The document is built straight from the parser's events (libyaml when
available), never through PyYAML's constructor graph, so that:

- every key and value keeps its `line:col`, addressed by the same path
  (a tuple of keys and indices) that JSON Schema errors report;
- anchors and aliases are refused where they appear, before anything is
  expanded (no alias bombs), and so are duplicate keys, non-standard tags,
  several documents and absurd nesting;
- problems are collected as positioned diagnostics, not raised one by one.

Only plain JSON-like data comes out: mappings with string keys, lists,
strings, numbers, booleans and null. YAML timestamps stay the strings they
were written as (the spec has no dates, and the document must hash as JSON).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlcycle.errors import SpecError
from mlcycle.spec.diagnostics import Diagnostic, Severity

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64

Loc = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_SCALAR_TAGS = frozenset(
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "timestamp")
)
_MAPPING_TAGS = frozenset({None, "!", "tag:yaml.org,2002:map"})
_SEQUENCE_TAGS = frozenset({None, "!", "tag:yaml.org,2002:seq"})

# libyaml when it is there: an order of magnitude faster than the pure-Python parser.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, order=True)
class Mark:
    """A 1-based `line:col` in the source."""

    line: int
    col: int


@dataclass(frozen=True)
class NodePosition:
    """Where a node's value starts, and where its key is when it is a mapping entry."""

    value: Mark
    key: Mark | None = None


@dataclass(frozen=True)
class LoadedDocument:
    """A parsed YAML document: its data, every node's position, and the problems found.

    `data` is None when the file could not be parsed at all; `diagnostics`
    then says why.
    """

    file: str
    data: Any
    positions: Mapping[Loc, NodePosition] = field(default_factory=dict)
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the YAML itself was acceptable (the schema is checked elsewhere)."""
        return not any(d.severity == "error" for d in self.diagnostics)

    def value_mark(self, path: Loc) -> Mark:
        """Position of the value at `path`, or of its nearest existing ancestor."""
        return self._position(path).value

    def key_mark(self, path: Loc) -> Mark:
        """Position of the key of the entry at `path` (its value's for list items and the root)."""
        position = self._position(path)
        return position.key or position.value

    def has(self, path: Loc) -> bool:
        """Whether a node exists at `path`."""
        return tuple(path) in self.positions

    def diagnostic(
        self,
        path: Loc,
        message: str,
        *,
        at_key: bool = False,
        severity: Severity = "error",
        hint: str | None = None,
        rule: str | None = None,
    ) -> Diagnostic:
        """A diagnostic positioned at the node (or its key) at `path`."""
        mark = self.key_mark(path) if at_key else self.value_mark(path)
        return Diagnostic(
            self.file,
            mark.line,
            mark.col,
            severity,
            printable(message),
            None if hint is None else printable(hint),
            rule,
        )

    def _position(self, path: Loc) -> NodePosition:
        path = tuple(path)
        while path:
            found = self.positions.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.positions.get((), NodePosition(Mark(1, 1)))


def read_document(path: Path, *, display: str | None = None) -> LoadedDocument:
    """Read and parse a spec file; unreadable, oversized or non-text files become diagnostics.

    Raises nothing for content problems. The file must exist (see `find_spec`).
    """
    file = display if display is not None else str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            return _failed(file, Mark(1, 1), _too_large(size))
        with path.open("rb") as stream:
            # Read one byte past the cap: a file that grows (or /dev/zero) is caught too.
            raw = stream.read(MAX_BYTES + 1)
    except IsADirectoryError:
        return _failed(file, Mark(1, 1), "is a directory, not a YAML file")
    except OSError as e:
        return _failed(file, Mark(1, 1), f"cannot read the file: {e.strerror or e}")
    if len(raw) > MAX_BYTES:
        return _failed(file, Mark(1, 1), _too_large(len(raw)))
    return parse_bytes(raw, file=file)


def parse_bytes(raw: bytes, *, file: str) -> LoadedDocument:
    """Decode (UTF-8, or UTF-16 with a BOM) and parse; problems become diagnostics."""
    try:
        text = _decode(raw)
    except UnicodeDecodeError as e:
        mark = _mark_at_byte(raw, e.start)
        return _failed(
            file,
            mark,
            f"not UTF-8 text: byte 0x{raw[e.start]:02x} cannot be decoded",
            hint="lifecycle.yaml must be a UTF-8 text file; is this a binary file?",
        )
    return parse_text(text, file=file)


def parse_text(text: str, *, file: str) -> LoadedDocument:
    """Parse YAML text into located data; problems become diagnostics."""
    builder = _Builder(file)
    try:
        builder.build(yaml.parse(text, Loader=_Loader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Mark(mark.line + 1, mark.column + 1) if mark is not None else Mark(1, 1)
        return _failed(file, where, _syntax_message(e), hint=_syntax_hint(e, text))
    except yaml.reader.ReaderError as e:
        encoded = text.encode("utf-8", errors="surrogatepass")
        character = f"U+{e.character:04X}" if isinstance(e.character, int) else repr(e.character)
        return _failed(
            file,
            _mark_at_byte(encoded, e.position),
            f"unacceptable character {character}: {e.reason}",
            hint="lifecycle.yaml must be printable text; is this a binary file?",
        )
    except yaml.YAMLError as e:
        return _failed(file, Mark(1, 1), f"YAML error: {e}")
    except UnicodeError as e:
        # A lone surrogate cannot be handed to libyaml; report it where it sits.
        offset = getattr(e, "start", 0)
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return _failed(file, Mark(line, col), "the text contains an invalid character")
    return builder.result()


def _with_empty_reported(doc: LoadedDocument) -> LoadedDocument:
    """Turn an empty document (no content, or only `null`) into a positioned error."""
    if doc.ok and doc.data is None:
        return LoadedDocument(
            doc.file,
            None,
            doc.positions,
            (
                *doc.diagnostics,
                doc.diagnostic(
                    (),
                    "the spec is empty",
                    hint="a spec needs at least `apiVersion: mlcycle/v1`, `name` and `lifecycle`; "
                    "`mlcycle init NAME` writes a complete one",
                    rule="yaml",
                ),
            ),
        )
    return doc


def load_document(path: Path, *, display: str | None = None) -> LoadedDocument:
    """`read_document`, with an empty document reported as an error."""
    return _with_empty_reported(read_document(path, display=display))


def require_document(path: Path, *, display: str | None = None) -> LoadedDocument:
    """Like `load_document`, but raises SpecError when the YAML itself is unacceptable."""
    doc = load_document(path, display=display)
    if not doc.ok:
        raise SpecError(diagnostics=doc.diagnostics)
    return doc


# --- building the document from events ----------------------------------------------


class _Frame:
    """An open mapping or sequence while its events arrive."""

    __slots__ = ("container", "is_mapping", "key", "key_mark", "keys", "path", "skip")

    def __init__(self, container: Any, path: Loc, *, is_mapping: bool) -> None:
        self.container = container
        self.path = path
        self.is_mapping = is_mapping
        self.key: str | None = None  # the pending key of a mapping, until its value arrives
        self.key_mark: Mark | None = None
        self.keys: dict[str, Mark] = {}  # first position of each key, for duplicate reports
        self.skip = False  # the pending value belongs to a rejected key


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.positions: dict[Loc, NodePosition] = {}
        self.diagnostics: list[Diagnostic] = []
        self.data: Any = None
        self.stack: list[_Frame] = []
        self.documents = 0
        self.skip_depth = 0  # > 0 while inside a node that is being dropped
        self.constructor = yaml.constructor.SafeConstructor()
        self.resolver = yaml.resolver.Resolver()

    def error(self, mark: Mark, message: str, hint: str | None = None) -> None:
        self.diagnostics.append(
            Diagnostic(self.file, mark.line, mark.col, "error", printable(message), hint, "yaml")
        )

    def result(self) -> LoadedDocument:
        return LoadedDocument(self.file, self.data, self.positions, tuple(self.diagnostics))

    def build(self, events: Iterator[yaml.Event]) -> None:
        for event in events:
            start = event.start_mark
            mark = Mark(start.line + 1, start.column + 1) if start is not None else Mark(1, 1)
            if isinstance(event, yaml.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    self.error(
                        mark,
                        "a second YAML document: lifecycle.yaml holds exactly one",
                        hint="remove the `---` line and what follows, or merge the documents",
                    )
                    return
                continue
            if isinstance(event, yaml.StreamStartEvent | yaml.StreamEndEvent):
                continue
            if isinstance(event, yaml.DocumentEndEvent):
                continue
            if self.skip_depth:
                if isinstance(event, yaml.CollectionStartEvent):
                    self.skip_depth += 1
                elif isinstance(event, yaml.CollectionEndEvent):
                    self.skip_depth -= 1
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                self.stack.pop()
                continue
            anchor = getattr(event, "anchor", None)
            if anchor is not None and not isinstance(event, yaml.AliasEvent):
                self.error(
                    mark,
                    f"YAML anchor '&{anchor}' is not allowed in lifecycle.yaml",
                    hint="write the value out where it is needed; anchors and aliases are "
                    "refused so that a small file cannot expand into a huge one",
                )
            self.node(event, mark)

    def node(self, event: yaml.Event, mark: Mark) -> None:
        frame = self.stack[-1] if self.stack else None
        # A scalar that arrives where a mapping expects a key is a key, not a value.
        if frame is not None and frame.is_mapping and frame.key is None and not frame.skip:
            self.mapping_key(frame, event, mark)
            return
        if frame is not None and frame.skip:
            frame.skip = False
            if isinstance(event, yaml.CollectionStartEvent):
                self.skip_depth = 1
            return
        path: Loc
        if frame is None:
            path = ()
        elif frame.is_mapping:
            assert frame.key is not None
            path = (*frame.path, frame.key)
        else:
            path = (*frame.path, len(frame.container))
        if len(path) > MAX_DEPTH:
            self.error(mark, f"the document nests deeper than {MAX_DEPTH} levels")
            value: Any = None
            if isinstance(event, yaml.CollectionStartEvent):
                self.skip_depth = 1
            self.store(frame, path, value, mark)
            return
        if isinstance(event, yaml.AliasEvent):
            self.error(
                mark,
                f"YAML alias '*{event.anchor}' is not allowed in lifecycle.yaml",
                hint="write the value out where it is needed; anchors and aliases are "
                "refused so that a small file cannot expand into a huge one",
            )
            self.store(frame, path, None, mark)
        elif isinstance(event, yaml.ScalarEvent):
            self.store(frame, path, self.scalar(event, mark), mark)
        elif isinstance(event, yaml.MappingStartEvent):
            self.check_collection_tag(event, _MAPPING_TAGS, mark)
            container: dict[str, Any] = {}
            self.store(frame, path, container, mark)
            self.stack.append(_Frame(container, path, is_mapping=True))
        elif isinstance(event, yaml.SequenceStartEvent):
            self.check_collection_tag(event, _SEQUENCE_TAGS, mark)
            items: list[Any] = []
            self.store(frame, path, items, mark)
            self.stack.append(_Frame(items, path, is_mapping=False))

    def store(self, frame: _Frame | None, path: Loc, value: Any, mark: Mark) -> None:
        if frame is None:
            self.data = value
            self.positions[()] = NodePosition(mark)
        elif frame.is_mapping:
            assert frame.key is not None
            frame.container[frame.key] = value
            self.positions[path] = NodePosition(mark, frame.key_mark)
            frame.key = None
            frame.key_mark = None
        else:
            frame.container.append(value)
            self.positions[path] = NodePosition(mark)

    def mapping_key(self, frame: _Frame, event: yaml.Event, mark: Mark) -> None:
        if not isinstance(event, yaml.ScalarEvent):
            kind = "alias" if isinstance(event, yaml.AliasEvent) else "collection"
            self.error(mark, f"a mapping key must be a plain name, not a {kind}")
            frame.skip = True  # drop the value that belongs to this key
            if isinstance(event, yaml.CollectionStartEvent):
                self.skip_depth = 1  # and the key's own contents
            return
        key = event.value
        self.check_scalar_tag(event, mark)
        first = frame.keys.get(key)
        if first is not None:
            self.error(
                mark,
                f"duplicate key '{key}' (first defined at line {first.line})",
                hint="each key may appear once in a mapping; remove or merge one of them",
            )
            frame.skip = True
            return
        frame.keys[key] = mark
        frame.key = key
        frame.key_mark = mark

    def check_collection_tag(
        self, event: yaml.Event, allowed: frozenset[str | None], mark: Mark
    ) -> None:
        tag = getattr(event, "tag", None)
        if tag not in allowed:
            self.error(mark, f"YAML tag '{_short_tag(tag)}' is not allowed in lifecycle.yaml")

    def check_scalar_tag(self, event: yaml.ScalarEvent, mark: Mark) -> bool:
        if event.tag is None or event.tag == "!" or event.tag in _SCALAR_TAGS:
            return True
        self.error(
            mark,
            f"YAML tag '{_short_tag(event.tag)}' is not allowed in lifecycle.yaml",
            hint="lifecycle.yaml holds plain data: strings, numbers, booleans, lists and mappings",
        )
        return False

    def scalar(self, event: yaml.ScalarEvent, mark: Mark) -> Any:
        if not self.check_scalar_tag(event, mark):
            return event.value
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag in (_STR, "tag:yaml.org,2002:timestamp") or tag not in _SCALAR_TAGS:
            # Timestamps stay text; merge keys (`<<`) and `=` are plain strings here.
            return event.value
        node = yaml.ScalarNode(tag, event.value, style=event.style)
        try:
            return self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError):
            kind = tag.rsplit(":", 1)[-1]
            shown = event.value if len(event.value) <= 40 else event.value[:40] + "..."
            self.error(mark, f"cannot read {shown!r} as {kind}")
            return event.value


# --- helpers ------------------------------------------------------------------------


def printable(text: str) -> str:
    """`text` with control characters and line breaks escaped: one diagnostic, one line."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def _failed(file: str, mark: Mark, message: str, *, hint: str | None = None) -> LoadedDocument:
    diagnostic = Diagnostic(file, mark.line, mark.col, "error", printable(message), hint, "yaml")
    return LoadedDocument(file, None, {(): NodePosition(mark)}, (diagnostic,))


def _too_large(size: int) -> str:
    return f"the file is {size:,} bytes or more; a lifecycle spec may be at most {MAX_BYTES:,}"


def _decode(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


def _mark_at_byte(raw: bytes, offset: int) -> Mark:
    offset = max(0, min(offset, len(raw)))
    line_start = raw.rfind(b"\n", 0, offset) + 1
    col = len(raw[line_start:offset].decode("utf-8", errors="replace")) + 1
    return Mark(raw.count(b"\n", 0, offset) + 1, col)


def _short_tag(tag: str | None) -> str:
    if tag and tag.startswith("tag:yaml.org,2002:"):
        return "!!" + tag[len("tag:yaml.org,2002:") :]
    return str(tag)


def _syntax_message(e: yaml.MarkedYAMLError) -> str:
    problem = (e.problem or "invalid YAML").strip()
    if e.context:
        return f"YAML syntax error: {problem} ({e.context.strip()})"
    return f"YAML syntax error: {problem}"


def _syntax_hint(e: yaml.MarkedYAMLError, text: str) -> str | None:
    problem = e.problem or ""
    if "cannot start any token" in problem:
        mark = e.problem_mark
        # libyaml's marks carry no buffer, but their index is a character offset into `text`.
        if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
            return "YAML indents with spaces, not tabs"
        return "quote the value if it starts with a special character such as @ or `"
    if "mapping values are not allowed" in problem:
        return "a value containing ': ' must be quoted, or a key is indented wrongly"
    if "expected <block end>" in problem or "did not find expected key" in problem:
        return "check the indentation of this line against the lines above it"
    if "found undefined alias" in problem:
        return "anchors and aliases are not allowed in lifecycle.yaml"
    return None
