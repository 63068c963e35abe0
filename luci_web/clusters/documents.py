"""The whole configuration document as the REST API gives and takes it: secrets masked on the way out (fence
passwords are write-only everywhere in luci), the masked ones taken back from the current document on the way in,
a JSON form of the element tree, and the edit that replaces the current document by a new one (so a whole-document
PUT goes through configs.change like every other change: If-Match, validation, one version bump, the push task).

Pure: no database, no network."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from lxml import etree

from cluster_conf import ClusterConf, xmlsafe
from cluster_conf.reports import error
from cluster_conf.schema import is_secret
from luci_web.audit.log import MASK
from luci_web.clusters.configs import ConfigRejected

Key = tuple[tuple[str, str, int], ...]


# In a comment (free text, where quotes need not pair): a name followed by `=`, and the value after it.
_ASSIGNMENT = re.compile(r"([A-Za-z_][\w.-]*)\s*=\s*")
_VALUE = re.compile(r""""[^"]*"?|'[^']*'?|[^\s"'<>]+""")
_COMMENT = re.compile(r"<!--.*?-->", re.S)


def masked_xml(xml: str) -> str:
    """The document's text as the cluster has it, but every secret attribute's value (passwd, password,
    community, ...: cluster_conf.schema.is_secret) replaced by MASK, and so is a secret written `name="value"` in
    a comment (a fence device commented out keeps its password). The document is parsed (cluster_conf's hardened
    parser) and masked in its element tree, so no quote in a comment or a value can put the masking out of step;
    it is serialised again as ClusterConf writes an edited document (prolog, comments and epilog kept). A
    document without a secret is given back unchanged."""
    conf = ClusterConf.from_string(xml, source="the document")
    changed = mask_tree(conf.root)
    if not changed:
        return _masked_outside_root(xml)
    conf.mark_edited()
    return _masked_outside_root(conf.to_string())


def mask_tree(root: etree._Element) -> bool:
    """Replace in place every non-empty secret attribute's value by MASK and mask the secrets comments name;
    whether anything changed."""
    changed = False
    for element in root.iter():
        if isinstance(element.tag, str):
            for name, value in element.attrib.items():
                if value and value != MASK and is_secret(name):
                    element.set(name, MASK)
                    changed = True
        elif isinstance(element, etree._Comment) and element.text:
            text = masked_comment(element.text)
            if text != element.text:
                element.text = text
                changed = True
    return changed


def masked_comment(text: str) -> str:
    """A comment's text with the value of every secret `name=value` in it replaced by MASK (quotes kept)."""
    out: list[str] = []
    pos = 0
    for match in _ASSIGNMENT.finditer(text):
        if match.start() < pos or not is_secret(match.group(1)):
            continue
        value = _VALUE.match(text, match.end())
        if value is None:
            continue
        quote = value.group()[0] if value.group()[0] in "\"'" else ""
        out.append(f"{text[pos:match.end()]}{quote}{MASK}{quote}")
        pos = value.end()
    return "".join(out) + text[pos:] if out else text


def _masked_outside_root(text: str) -> str:
    """The comments before and after the root element (kept as text by ClusterConf) masked like the others."""
    head, tail = xmlsafe.prolog_end(text), xmlsafe.epilog_start(text)
    if tail < head:
        return text

    def comments(part: str) -> str:
        return _COMMENT.sub(lambda m: f"<!--{masked_comment(m.group()[4:-3])}-->", part)

    return comments(text[:head]) + text[head:tail] + comments(text[tail:])


def as_json(root: etree._Element) -> dict[str, Any]:
    """The element tree as JSON: {"tag", "attributes", "children", "text"?}, secrets masked; comments and
    processing instructions are left out (the XML form keeps them)."""
    node: dict[str, Any] = {
        "tag": root.tag,
        "attributes": {k: (MASK if is_secret(k) and v else v) for k, v in root.attrib.items()},
        "children": [as_json(child) for child in root if isinstance(child.tag, str)],
    }
    text = (root.text or "").strip()
    if text:
        node["text"] = text
    return node


def _keyed(root: etree._Element) -> Iterator[tuple[Key, etree._Element]]:
    """Every element with its key: per level the tag, the name attribute and the position among the siblings with
    the same tag and name (so reordering differently named siblings keeps the keys)."""

    def walk(parent: etree._Element, prefix: Key) -> Iterator[tuple[Key, etree._Element]]:
        seen: dict[tuple[str, str], int] = {}
        for child in parent:
            if not isinstance(child.tag, str):
                continue
            ident = (child.tag, child.get("name") or "")
            index = seen.get(ident, 0)
            seen[ident] = index + 1
            key = (*prefix, (*ident, index))
            yield key, child
            yield from walk(child, key)

    yield (), root
    yield from walk(root, ())


def _where(key: Key) -> str:
    return "/".join(f"{tag}[name={name}]" if name else tag for tag, name, _ in key) or "cluster"


def restore_secrets(new: etree._Element, current: etree._Element) -> list[str]:
    """Put back the current value of every secret attribute the new document gives as MASK (what GET gave); the
    places where the current document has no such value (where: `fencedevices/fencedevice[name=apc]@passwd`)."""
    old = dict(_keyed(current))
    missing = []
    for key, element in _keyed(new):
        for name, value in element.attrib.items():
            if value != MASK or not is_secret(name):
                continue
            before = old.get(key)
            kept = before.get(name) if before is not None else None
            if kept is None:
                missing.append(f"{_where(key)}@{name}")
            else:
                element.set(name, kept)
    return missing


def _node_names(root: etree._Element) -> list[str]:
    return sorted(n.get("name") or "" for n in root.iterfind("clusternodes/clusternode"))


def replace_with(new: ClusterConf) -> Callable[[ClusterConf], None]:
    """The edit that makes the current document `new` (run by configs.change inside a transaction, which then
    sets config_version to the current one + 1, whatever `new` says). Refused (ConfigRejected, one report) when
    `new` renames the cluster, adds or removes nodes (the nodes endpoints do that, with the membership right), or
    masks a secret the current document does not hold."""

    def edit(conf: ClusterConf) -> None:
        root, incoming = conf.root, new.root
        if (incoming.get("name") or "") != (root.get("name") or ""):
            raise _refused("CLUSTER_RENAMED", "the document renames the cluster; a cluster's name cannot change")
        if _node_names(incoming) != _node_names(root):
            raise _refused("NODES_CHANGED", "the document adds or removes nodes; use the nodes endpoints for that "
                           "(they need the membership right)")
        missing = restore_secrets(incoming, root)
        if missing:
            raise _refused("SECRET_MASKED", f"{missing[0]} is the mask {MASK!r} but the current configuration has "
                           "no value there to keep; give the value")
        version = root.get("config_version")
        root.attrib.clear()
        for name, value in incoming.attrib.items():
            root.set(name, value)
        if version is not None:
            root.set("config_version", version)
        root.text = incoming.text
        for child in list(root):
            root.remove(child)
        for child in list(incoming):
            root.append(child)

    return edit


def _refused(code: str, message: str) -> ConfigRejected:
    return ConfigRejected(message, [error(code, message).to_dict()])
