"""ClusterConf: one cluster.conf document. The lxml tree is the source of truth.

What "nothing lost" means here:
- A document that was not edited is written back byte for byte.
- An edited document keeps every element, attribute, comment and processing instruction it had, in order,
  known to this library or not. The byte-order mark, the encoding, the line endings (LF or CRLF) and the prolog
  and epilog (XML declaration, DOCTYPE, comments and PIs before and after the root element) are kept as they
  were. Inside the root element lxml's serializer applies the normalisations listed in docs/cluster-conf.md
  (attribute quotes become double quotes, whitespace inside tags is collapsed, `<a></a>` becomes `<a/>`,
  character references are resolved).
- Saving is atomic (temp file, fsync, rename, fsync of the directory) and keeps the previous file as
  `cluster.conf.old`.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lxml import etree

from cluster_conf import xmlsafe
from cluster_conf.reports import ConfigError, error

NEW_FILE_MODE = 0o640  # the original tools wrote cluster.conf with umask 026


class ClusterConf:
    """A loaded (or new) cluster.conf. Edit it through `cluster_conf.edit` inside `transaction()`."""

    def __init__(self, tree: etree._ElementTree, raw: bytes, source: str = "<string>") -> None:
        self.tree = tree
        self.source = source
        self._raw: bytes = raw
        self._edited = False
        self._depth = 0  # nesting of transaction()
        self._layout_from(raw)

    def _layout_from(self, raw: bytes) -> None:
        """Remember what lxml does not keep: the BOM, the codec, the prolog and epilog as written, CRLF."""
        self._bom, self._codec, self._prolog = xmlsafe.prolog(raw)
        self._epilog = xmlsafe.epilog(raw, self._codec)
        head = raw[len(self._bom) : len(self._bom) + 4096].decode(self._codec, "surrogateescape")
        first_newline = head.find("\n")
        self._crlf = first_newline > 0 and head[first_newline - 1] == "\r"

    # -- loading -------------------------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<string>") -> ClusterConf:
        tree = xmlsafe.parse(data, source)
        if tree.getroot().tag != "cluster":
            raise ConfigError(
                error(
                    "ROOT_NOT_CLUSTER",
                    f"the root element is <{tree.getroot().tag}>; cluster.conf starts with <cluster>",
                    line=tree.getroot().sourceline,
                ),
                source,
            )
        return cls(tree, data, source)

    @classmethod
    def from_string(cls, text: str, source: str = "<string>") -> ClusterConf:
        return cls.from_bytes(text.encode("utf-8"), source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ClusterConf:
        """Read and parse a file; every failure is a ConfigError with a one-line report."""
        source = os.fspath(path)
        try:
            with open(path, "rb") as f:
                data = f.read(xmlsafe.MAX_BYTES + 1)
        except FileNotFoundError:
            raise ConfigError(error("FILE_NOT_FOUND", "no such file"), source) from None
        except IsADirectoryError:
            raise ConfigError(error("FILE_UNREADABLE", "is a directory, not a file"), source) from None
        except PermissionError:
            raise ConfigError(error("FILE_UNREADABLE", "permission denied"), source) from None
        except OSError as exc:
            raise ConfigError(error("FILE_UNREADABLE", exc.strerror or str(exc)), source) from None
        return cls.from_bytes(data, source)

    @classmethod
    def new(cls, name: str) -> ClusterConf:
        """An empty cluster as `ccs_tool create` writes it."""
        text = (
            '<?xml version="1.0"?>\n<cluster name="" config_version="1">\n'
            "  <clusternodes/>\n  <fencedevices/>\n  <rm>\n    <failoverdomains/>\n    <resources/>\n"
            "  </rm>\n</cluster>\n"
        )
        conf = cls.from_string(text)
        conf.root.set("name", name)
        conf._edited = True
        return conf

    # -- properties ----------------------------------------------------------------------------------------
    @property
    def root(self) -> etree._Element:
        return self.tree.getroot()

    @property
    def name(self) -> str | None:
        return self.root.get("name")

    @property
    def config_version(self) -> int | None:
        """The integer config_version, or None when absent or not an integer."""
        value = self.root.get("config_version")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    @property
    def size(self) -> int:
        """Bytes of the document as loaded or last saved (cheap; edits since are not counted)."""
        return len(self._raw)

    @property
    def edited(self) -> bool:
        return self._edited

    def mark_edited(self) -> None:
        """Record that the tree changed, so that saving serializes it instead of writing the original bytes."""
        self._edited = True

    def path_of(self, element: etree._Element) -> str:
        """The element's path, e.g. `/cluster/clusternodes/clusternode[2]`."""
        return self.tree.getpath(element)

    def section(self, *names: str, create: bool = False) -> etree._Element | None:
        """The element at root/names[0]/names[1]/...; created (appended) on the way when `create`."""
        node = self.root
        for name in names:
            child = node.find(name)
            if child is None:
                if not create:
                    return None
                child = _append_child(node, name)
                self._edited = True
            node = child
        return node

    # -- editing -------------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, bump: bool = True) -> Iterator[ClusterConf]:
        """Group edits: on success config_version goes up by exactly one; on an exception nothing changes.

        Transactions nest: an inner one rolls back its own edits on an exception, and only the outermost one
        bumps the version. The rollback copy is the serialized root (a few ms even for megabytes, against
        ~100 ms for a deepcopy); it is parsed back only when an edit fails.
        """
        outermost = self._depth == 0
        if bump and outermost:
            self._check_version_editable()
        backup = etree.tostring(self.root)
        edited_before = self._edited
        self._depth += 1
        try:
            yield self
            if bump and outermost:
                self.bump_version()
        except BaseException:
            self._restore(backup)
            self._edited = edited_before
            raise
        finally:
            self._depth -= 1
        self._edited = True

    def _restore(self, backup: bytes) -> None:
        """Put the root back as it was, in place: the tree, its docinfo and the root element object stay."""
        padding = b"\n" * ((self.root.sourceline or 1) - 1)  # keeps the restored elements' line numbers
        fresh = etree.fromstring(padding + backup, xmlsafe.make_parser())
        root = self.root
        root.attrib.clear()
        for key, value in fresh.attrib.items():
            root.set(key, value)
        root.text = fresh.text
        for child in list(root):
            root.remove(child)
        for child in list(fresh):
            root.append(child)

    def _check_version_editable(self) -> None:
        if self.config_version is None and self.root.get("config_version") is not None:
            raise ConfigError(
                error(
                    "VERSION_NOT_INTEGER",
                    f"config_version {self.root.get('config_version')!r} is not an integer; fix it before editing",
                    line=self.root.sourceline,
                ),
                self.source,
            )

    def bump_version(self) -> int:
        self._check_version_editable()
        new = (self.config_version or 0) + 1
        self.root.set("config_version", str(new))
        self._edited = True
        return new

    # -- writing -------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        if not self._edited:
            return self._raw
        body = etree.tostring(self.root, encoding="unicode", with_tail=False)
        if self._crlf:
            body = body.replace("\n", "\r\n")  # libxml2 read CRLF as LF; newlines in values are &#10;
        return b"".join(
            (
                self._bom,
                self._prolog.encode(self._codec, "surrogateescape"),
                body.encode(self._codec, "xmlcharrefreplace"),
                self._epilog.encode(self._codec, "surrogateescape"),
            )
        )

    def to_string(self) -> str:
        return self.to_bytes()[len(self._bom) :].decode(self._codec, "surrogateescape")

    def save(self, path: str | os.PathLike[str] | None = None, *, keep_old: bool = True) -> Path:
        """Write atomically to `path` (default: where it was loaded from); keep the previous file as `.old`."""
        target = Path(path if path is not None else self.source)
        data = self.to_bytes()
        atomic_write(target, data, keep_old=keep_old)
        self._raw, self._edited = data, False  # what is on disk now: saving again writes the same bytes
        return target


def _append_child(parent: etree._Element, tag: str) -> etree._Element:
    """Append <tag/> to parent, indented like its siblings so hand-written layouts stay readable."""
    child = etree.SubElement(parent, tag)
    indent_new_element(child)
    return child


def _leading_ws(element: etree._Element) -> str:
    """The whitespace text right before `element` (its previous sibling's tail, or its parent's text)."""
    prev = element.getprevious()
    parent = element.getparent()
    text = prev.tail if prev is not None else (parent.text if parent is not None else None)
    return text if text is not None and not text.strip() else ""


def _indent_unit(element: etree._Element) -> str:
    """The document's indentation step, read from the whitespace before the root's first child."""
    root = element.getroottree().getroot()
    text = root.text or ""
    if "\n" in text and not text.strip():
        return text.rsplit("\n", 1)[1]
    return "  "


def indent_new_element(child: etree._Element) -> None:
    """Give a freshly appended last child the layout of its neighbours (best effort, never reorders).

    After an existing sibling it copies the whitespace that sibling has before it; as a first child it indents
    one document step deeper than its parent.
    """
    parent = child.getparent()
    if parent is None:
        return
    prev = child.getprevious()
    if prev is not None:
        if prev.tail is not None and prev.tail.strip():
            return  # text after the previous element is content, not layout: leave it alone
        closing = prev.tail
        prev.tail = _leading_ws(prev) or None
        child.tail = closing
        return
    outer = _leading_ws(parent)
    if "\n" not in outer:
        outer = "\n" + outer.lstrip(" \t")
    parent_indent = outer.rsplit("\n", 1)[1]
    parent.text = "\n" + parent_indent + _indent_unit(parent)
    child.tail = "\n" + parent_indent


def atomic_write(path: Path, data: bytes, *, keep_old: bool = True, mode: int | None = None) -> None:
    """Write `data` to `path` so that a crash at any point leaves either the old or the new file, whole.

    The previous file is kept as `<path>.old` (hard-linked before the switch, so `path` never disappears). The
    new file gets `mode` when given (set before it appears under its name), else the old file's mode, else
    NEW_FILE_MODE.
    """
    directory = path.parent if str(path.parent) else Path(".")
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = NEW_FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        if keep_old and path.exists():
            old_tmp = f"{tmp}.old"
            os.link(path, old_tmp)
            os.replace(old_tmp, f"{path}.old")
        os.replace(tmp, path)
    except BaseException:
        for leftover in (tmp, f"{tmp}.old"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
