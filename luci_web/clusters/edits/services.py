"""Service groups (<service> and <vm>): the pure reading and edit functions the console's Service Groups tab and
the API share. A definition is a service's attributes plus its resource tree; in the tree a node is addressed by
the (type, key) steps from the service down to it, the key being its `ref` or its primary attribute (Path).

Subtree flags are shown as the console shows them: `__independent_subtree` "1" (independent) or "2"
(non-critical), `__enforce_timeouts` (cluster_conf.schema.SPECIAL_RESOURCE_ATTRS); the other `__` attributes are
plain attributes. A resource without a key (unknown XML without a name) cannot be addressed: it is shown, and
replacing a tree keeps it.

Secret attributes (cluster_conf.schema.is_secret: a vm's migrate_passwd, a resource's password, ...) are write-only
as fence devices' are: a definition names the ones set (`secrets_set`), never their values; replacing a definition
keeps every secret it does not name (a value replaces one, None removes it).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from cluster_conf import ClusterConf, edit
from cluster_conf.model import to_int
from cluster_conf.schema import RESOURCE_TYPES, is_secret, is_true, parse_time
from luci_web.audit.log import MASK
from luci_web.clusters.edits.fence_devices import public_attrs
from luci_web.clusters.values import whole_number, xml_unsafe

Path = tuple[tuple[str, str], ...]
Edit = Callable[[ClusterConf], None]

RECOVERY = ("restart", "relocate", "disable", "restart-disable")
SUBTREE_CHOICES = (("", "critical (default)"), ("1", "independent"), ("2", "non-critical"))
SUBTREE_LABELS = {"": "critical", "1": "independent", "2": "non-critical"}
SUBTREE_VALUES = {label: value for value, label in SUBTREE_LABELS.items()}
SPECIAL = ("__independent_subtree", "__enforce_timeouts", "__max_failures", "__failure_expire_time",
           "__max_restarts", "__restart_expire_time")
FLAGS = ("__independent_subtree", "__enforce_timeouts")  # shown as `subtree` and `enforce_timeouts`
INLINE_TYPES = tuple(sorted(t for t, rt in RESOURCE_TYPES.items() if not rt.top_level))
SERVICE_REF = re.compile(r"^(service|vm):[^\s/]+$")
SERVICE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
RESOURCE_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
MAX_RESTARTS = 1_000_000
TYPED = ("domain", "autostart", "exclusive", "recovery", "max_restarts", "restart_expire_time")
MAX_TREE_NODES = 500
MAX_TREE_DEPTH = 16


class FormError(ValueError):
    """Bad form input: `field` names the field (or "" for the form), the message says what is wrong."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


def check_xml_safe(field_name: str, label: str, value: str) -> None:
    """FormError when `value` holds a character cluster.conf cannot (the console forms' one rule, forms.xml_safe)."""
    if problem := xml_unsafe(value):
        raise FormError(field_name, f"{label} {problem}")


# -- reading ----------------------------------------------------------------------------------------------------
@dataclass
class TreeNode:
    type: str
    key: str | None  # the ref or primary-key value; None: not addressable (no key)
    ref: bool
    path: Path
    attrs: dict[str, str]  # the element's own attributes but the special ones
    subtree: str  # "", "1" (independent) or "2" (non-critical)
    enforce_timeouts: bool
    children: list[TreeNode] = field(default_factory=list)

    @property
    def path_json(self) -> str:
        return encode_path(self.path)

    @property
    def subtree_label(self) -> str:
        return {"1": "independent", "2": "non-critical"}.get(self.subtree, "")


def encode_path(steps: Path) -> str:
    return json.dumps([list(step) for step in steps])


def decode_path(text: str) -> Path:
    """A path posted by the page: a JSON list of [type, key] pairs (FormError when it is anything else)."""
    try:
        steps = json.loads(text or "[]")
    except ValueError:
        raise FormError("path", "the resource path is not readable; reload the page") from None
    if not isinstance(steps, list) or not all(
            isinstance(s, list) and len(s) == 2 and all(isinstance(p, str) and p for p in s) for s in steps):
        raise FormError("path", "the resource path is not readable; reload the page")
    return tuple((t, k) for t, k in steps)


def subtree_value(element: Any) -> str:
    """"", "1" or "2" from an element's (or an attribute mapping's) `__independent_subtree`."""
    value = (element.get("__independent_subtree") or "").strip().lower()
    return {"1": "1", "yes": "1", "2": "2", "non-critical": "2"}.get(value, "")


def primary_of(rtype: str) -> str:
    known = RESOURCE_TYPES.get(rtype)
    return known.primary if known else "name"


def key_of(element: Any) -> tuple[str | None, bool]:
    """(the key, whether it is a ref) of an element or of a (type, attributes) pair's attributes."""
    ref = element.get("ref")
    if ref:
        return ref, True
    return element.get(primary_of(element.tag)), False


def resource_tree(conf: ClusterConf, service: str) -> list[TreeNode]:
    """The resource tree of a service or vm (`service:web`), as nested TreeNodes (action overrides and non-element
    nodes are not resources and are left out)."""
    def walk(parent: etree._Element, base: Path) -> list[TreeNode]:
        nodes = []
        for child in parent:
            if not isinstance(child.tag, str) or child.tag == "action":
                continue
            key, is_ref = key_of(child)
            here = (*base, (child.tag, key)) if key else base
            node = TreeNode(child.tag, key, is_ref, here, {k: v for k, v in child.attrib.items() if k not in SPECIAL},
                            subtree_value(child), is_true(child.get("__enforce_timeouts") or "0"))
            node.children = walk(child, here) if key else []
            nodes.append(node)
        return nodes

    return walk(edit.resource_at(conf, service), ())


def domain_names(conf: ClusterConf) -> list[str]:
    return [d.get("name", "") for d in conf.root.iterfind("rm/failoverdomains/failoverdomain")]


def global_resources(conf: ClusterConf) -> list[tuple[str, str]]:
    resources = conf.section("rm", "resources")
    out = []
    for element in resources if resources is not None else []:
        if isinstance(element.tag, str):
            key, _ = key_of(element)
            if key:
                out.append((element.tag, key))
    return out


def form_values(element: etree._Element) -> dict[str, str]:
    """The service's attributes as the form shows them: yes/no flags as "1"/"0" with the schema's defaults, a
    secret's value (a vm's migrate_passwd) as MASK."""
    values = {"recovery": "restart", **{k: (MASK if v and is_secret(k) else v) for k, v in element.attrib.items()}}
    for flag, default in (("autostart", "1"), ("exclusive", "0")):
        values[flag] = "1" if is_true(element.get(flag, default)) else "0"
    return values


def resource_dict(element: etree._Element) -> dict[str, Any]:
    """A node of a resource tree as the API shows it (the children cluster_conf.model.view gives a Resource: the
    element children but action overrides); secret attributes by name only (`secrets_set`)."""
    attrs = dict(element.attrib)  # lxml's attribute proxy costs a lookup per access
    shown, secrets = public_attrs({k: v for k, v in attrs.items() if k != "ref" and k not in FLAGS})
    return {"type": element.tag, "ref": attrs.get("ref"), "attributes": shown, "secrets_set": secrets,
            "subtree": SUBTREE_LABELS[subtree_value(attrs)],
            "enforce_timeouts": is_true(attrs.get("__enforce_timeouts") or "0"),
            "children": [resource_dict(c) for c in element if isinstance(c.tag, str) and c.tag != "action"]}


def service_dict(element: etree._Element) -> dict[str, Any]:
    """A <service> or <vm>'s definition: its typed attributes with the schema's defaults (as
    cluster_conf.model.Service gives them), the others as written but the secret ones (named in `secrets_set`),
    and its resource tree. Built from the element rather than model.view, which costs ten times more on a
    1000-service cluster."""
    attrs = dict(element.attrib)
    kind, name = element.tag, attrs.get("name", "")
    shown, secrets = public_attrs({k: v for k, v in attrs.items() if k != "name" and k not in TYPED})
    return {"id": f"{kind}:{name}", "name": name, "kind": kind, "domain": attrs.get("domain") or None,
            "autostart": is_true(attrs.get("autostart", "1")), "exclusive": is_true(attrs.get("exclusive", "0")),
            "recovery": attrs.get("recovery", "restart"), "max_restarts": to_int(attrs.get("max_restarts", "0")),
            "restart_expire_time": attrs.get("restart_expire_time"),
            "attributes": shown, "secrets_set": secrets,
            "resources": [resource_dict(c) for c in element if isinstance(c.tag, str) and c.tag != "action"]}


def service_elements(conf: ClusterConf) -> list[etree._Element]:
    """Every <service> and <vm>, in document order."""
    rm = conf.section("rm")
    return [] if rm is None else [c for c in rm if c.tag in ("service", "vm")]


# -- checking what the console's form or the API's body gives ------------------------------------------------------
def _domain(data: Mapping[str, Any], domains: list[str] | None) -> str | None:
    domain = (data.get("domain") or "").strip()
    check_xml_safe("domain", "the failover domain", domain)
    if domain and domains is not None and domain not in domains:
        raise FormError("domain", f"failover domain {domain!r} does not exist")
    return domain or None


def _recovery(data: Mapping[str, Any]) -> str:
    recovery = (data.get("recovery") or "restart").strip()
    if recovery not in RECOVERY:
        raise FormError("recovery", f"recovery must be one of {', '.join(RECOVERY)}")
    return recovery


def _max_restarts(data: Mapping[str, Any]) -> str | None:
    max_restarts = str(data.get("max_restarts") or "").strip()
    if max_restarts:
        try:
            max_restarts = str(whole_number(max_restarts, 0, MAX_RESTARTS))
        except ValueError as exc:
            raise FormError("max_restarts", f"max_restarts must be {exc} (0: no limit)") from None
    return max_restarts or None


def _expire(data: Mapping[str, Any]) -> str | None:
    expire = (data.get("restart_expire_time") or "").strip()
    check_xml_safe("restart_expire_time", "restart_expire_time", expire)
    try:
        if expire:
            parse_time(expire)
    except ValueError:
        raise FormError("restart_expire_time", "restart_expire_time must be a time such as 300 or 5m") from None
    return expire or None


def service_attrs_from(data: Mapping[str, Any], *, domains: list[str] | None = None) -> dict[str, str | None]:
    """The service attributes of the definition form (autostart, exclusive, domain, recovery, max_restarts,
    restart_expire_time), checked; FormError names the field. `domains`: the known ones (None: the edit checks)."""
    domain = _domain(data, domains)
    recovery = _recovery(data)
    max_restarts = _max_restarts(data)
    expire = _expire(data)
    return {"autostart": "1" if data.get("autostart") else "0",
            "exclusive": "1" if data.get("exclusive") else "0",
            "domain": domain, "recovery": recovery,
            "max_restarts": max_restarts, "restart_expire_time": expire}


def _as_form(body: Mapping[str, Any]) -> dict[str, Any]:
    """The API's typed values as the form's strings (booleans as "1"/"", numbers as digits)."""
    form: dict[str, Any] = {}
    for key, value in body.items():
        if key in ("autostart", "exclusive"):
            form[key] = "1" if value else ""
        elif key == "max_restarts":
            form[key] = "" if value is None else str(value)
        elif key in TYPED:
            form[key] = value or ""
    return form


def extra_attrs(attributes: Mapping[str, str | None], *, where: str = "attributes") -> dict[str, str | None]:
    """The other attributes of a service (depend, depend_mode, a vm's path, ...), checked: names XML can hold,
    neither `name` nor one of the typed attributes, values XML can hold (None: remove it)."""
    out: dict[str, str | None] = {}
    for name, value in attributes.items():
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise FormError(where, f"{name[:64]!r} is not an attribute name")
        if name == "name" or name in TYPED:
            raise FormError(where, f"{name!r} is not set through attributes" + (
                "" if name == "name" else f"; use the field {name}"))
        if value is not None:
            check_xml_safe(where, f"attribute {name}", value)
        out[name] = value
    return out


def definition_attrs(body: Mapping[str, Any]) -> dict[str, str | None]:
    """A whole definition's attributes from the API's body (absent fields take the schema's defaults). A secret
    is kept by replace_service unless named, so an attribute given as None (null) stays in: it removes it."""
    attrs = service_attrs_from({"autostart": "1", **_as_form(body)})
    extras = extra_attrs(body.get("attributes") or {})
    return {k: v for k, v in attrs.items() if v is not None} | extras


def patch_attrs(body: Mapping[str, Any]) -> dict[str, str | None]:
    """The attributes a PATCH body changes (None: remove it, its default applies)."""
    form = _as_form(body)
    out: dict[str, str | None] = {}
    checks: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
        "domain": lambda d: _domain(d, None), "recovery": _recovery, "max_restarts": _max_restarts,
        "restart_expire_time": _expire}
    for key in TYPED:
        if key not in body:
            continue
        if key in ("autostart", "exclusive"):
            out[key] = "1" if body[key] else "0"
        elif key == "recovery" and body[key] is None:
            out[key] = None
        else:
            out[key] = checks[key](form)
    out.update(extra_attrs(body.get("attributes") or {}))
    return out


@dataclass(frozen=True)
class NewResource:
    """A node of a wanted resource tree: its type, its attributes as written (ref and flags included), and the
    attributes given as null (`cleared`: removed; a secret not named at all is kept)."""

    type: str
    attrs: dict[str, str]
    children: tuple[NewResource, ...]
    cleared: frozenset[str] = frozenset()

    @property
    def key(self) -> str | None:
        return self.attrs.get("ref") or self.attrs.get(primary_of(self.type))


def tree_from(nodes: Sequence[Mapping[str, Any]], where: str = "resources") -> tuple[NewResource, ...]:
    """The API's resource tree (nodes of type, ref, attributes, subtree, enforce_timeouts, children), checked;
    FormError names the node (e.g. resources[0].children[1])."""
    count = 0

    def build(items: Sequence[Mapping[str, Any]], at: str, depth: int) -> tuple[NewResource, ...]:
        nonlocal count
        if depth > MAX_TREE_DEPTH:
            raise FormError(at, f"a resource tree is at most {MAX_TREE_DEPTH} levels deep")
        out: list[NewResource] = []
        seen: set[tuple[str, str]] = set()
        for i, item in enumerate(items):
            here = f"{at}[{i}]"
            count += 1
            if count > MAX_TREE_NODES:
                raise FormError(where, f"a resource tree has at most {MAX_TREE_NODES} resources")
            rtype = str(item.get("type") or "")
            if not RESOURCE_TYPE.fullmatch(rtype) or rtype in ("service", "vm", "action"):
                raise FormError(f"{here}.type", f"{rtype[:64]!r} is not a resource type")
            attrs: dict[str, str] = {}
            cleared: set[str] = set()
            for name, value in (item.get("attributes") or {}).items():
                if not ATTRIBUTE_NAME.fullmatch(name) or name == "ref" or name in FLAGS:
                    raise FormError(f"{here}.attributes", f"{name[:64]!r} is not an attribute set here" + (
                        " (use ref, subtree or enforce_timeouts)" if name == "ref" or name in FLAGS else ""))
                if value is None:
                    cleared.add(name)
                    continue
                check_xml_safe(f"{here}.attributes", f"attribute {name}", str(value))
                attrs[name] = str(value)
            ref = item.get("ref")
            if ref:
                check_xml_safe(f"{here}.ref", "the ref", str(ref))
                attrs = {"ref": str(ref), **attrs}
            choice = SUBTREE_VALUES.get(str(item.get("subtree") or "critical"))
            if choice is None:
                raise FormError(f"{here}.subtree", "subtree is critical, independent or non-critical")
            flags = subtree_flags(choice, bool(item.get("enforce_timeouts")))
            attrs.update({k: v for k, v in flags.items() if v is not None})
            node = NewResource(rtype, attrs, build(item.get("children") or [], f"{here}.children", depth + 1),
                               frozenset(cleared))
            key = node.key
            if key is None and node.children:
                raise FormError(here, f"a {rtype} with children needs its ref or its {primary_of(rtype)}")
            if key is not None:
                if (rtype, key) in seen:
                    raise FormError(here, f"{rtype} {key!r} appears twice at the same place")
                seen.add((rtype, key))
            out.append(node)
        return tuple(out)

    return build(nodes, where, 1)


def subtree_flags(choice: str, enforce_timeouts: bool) -> dict[str, str | None]:
    """The special attributes for the subtree choice ("", "1" independent, "2" non-critical)."""
    if choice not in ("", "1", "2"):
        raise FormError("subtree", "choose critical, independent or non-critical")
    return {"__independent_subtree": choice or None, "__enforce_timeouts": "1" if enforce_timeouts else None}


# -- edit functions (pure: data in, cluster_conf.edit calls out) ---------------------------------------------------
def create_service(name: str, attrs: Mapping[str, str | None], tree: Sequence[NewResource] = (), *,
                   kind: str = "service") -> Edit:
    def apply(conf: ClusterConf) -> None:
        edit.add_service(conf, name, {k: v for k, v in attrs.items() if v is not None}, kind=kind)
        _add_tree(conf, f"{kind}:{name}", (), tree)
    return apply


def _add_tree(conf: ClusterConf, service: str, parent: Path, nodes: Sequence[NewResource]) -> None:
    for node in nodes:
        edit.add_child_resource(conf, service, node.type, node.attrs, parent_path=parent)
        if node.children and node.key:
            _add_tree(conf, service, (*parent, (node.type, node.key)), node.children)


def replace_service(service: str, attrs: Mapping[str, str | None], tree: Sequence[NewResource]) -> Edit:
    """PUT: the service's attributes become `attrs` (the others removed but secrets not named, `name` kept; None
    removes one) and its tree `tree`. The elements the new tree keeps (same type and key at the same place) are
    changed in place, so their action overrides, unknown content and secrets not named stay; the others are
    removed, new ones appended; a resource without a key is never removed (the API cannot address it) and one
    given again identically (secrets not named apart) is not added twice."""
    def apply(conf: ClusterConf) -> None:
        element = edit.find_service(conf, service)
        old = {k: None for k in (element.attrib if element is not None else {}) if k != "name" and not is_secret(k)}
        edit.set_service_attrs(conf, service, {**old, **attrs})
        _reconcile(conf, service, (), edit.resource_at(conf, service), tree)
    return apply


def _changes(element: etree._Element, node: NewResource) -> dict[str, str | None]:
    """The attribute changes turning `element` into `node`'s attributes; a flag meaning the same keeps its
    spelling, a secret the node does not name keeps its value."""
    wanted = node.attrs
    desired: dict[str, str | None] = dict(wanted)
    keep = set()
    if subtree_value(element) == subtree_value(wanted):
        keep.add("__independent_subtree")
    if is_true(element.get("__enforce_timeouts")) == is_true(wanted.get("__enforce_timeouts")):
        keep.add("__enforce_timeouts")
    for flag in keep:
        desired.pop(flag, None)
    removed = {k: None for k in element.attrib
               if k not in wanted and k not in keep and (k in node.cleared or not is_secret(k))}
    return {**removed, **desired}


def _same_unkeyed(element: etree._Element, node: NewResource) -> bool:
    """Whether an element without a key is `node` given again: the same type and attributes, a secret the node
    does not name being the element's own (GET does not give it)."""
    attrs = dict(element.attrib)
    kept = {k: v for k, v in attrs.items() if is_secret(k) and k not in node.attrs and k not in node.cleared}
    return element.tag == node.type and {k: v for k, v in attrs.items() if k not in kept} == node.attrs


def _reconcile(conf: ClusterConf, service: str, path: Path, parent: etree._Element,
               nodes: Sequence[NewResource]) -> None:
    present: dict[tuple[str, str], etree._Element] = {}
    unkeyed: list[etree._Element] = []
    for child in parent:
        if not isinstance(child.tag, str) or child.tag == "action":
            continue
        key, _ = key_of(child)
        if key:
            present.setdefault((child.tag, key), child)
        else:
            unkeyed.append(child)
    wanted = {(n.type, n.key) for n in nodes if n.key}
    for rtype, key in list(present):
        if (rtype, key) not in wanted:
            edit.remove_child_resource(conf, service, (*path, (rtype, key)))
    for node in nodes:
        if node.key is None:
            if not any(_same_unkeyed(c, node) for c in unkeyed):
                edit.add_child_resource(conf, service, node.type, node.attrs, parent_path=path)
            continue
        here = (*path, (node.type, node.key))
        element = present.get((node.type, node.key))
        if element is None:
            element = edit.add_child_resource(conf, service, node.type, node.attrs, parent_path=path)
        else:
            edit.set_child_resource_attrs(conf, service, here, _changes(element, node))
        _reconcile(conf, service, here, element, node.children)


def change_service(service: str, attrs: Mapping[str, str | None]) -> Edit:
    def apply(conf: ClusterConf) -> None:
        edit.set_service_attrs(conf, service, attrs)
    return apply


def delete_service(service: str) -> Edit:
    def apply(conf: ClusterConf) -> None:
        edit.remove_service(conf, service)
    return apply


def add_child(service: str, parent: Path, rtype: str, attrs: Mapping[str, str]) -> Edit:
    def apply(conf: ClusterConf) -> None:
        edit.add_child_resource(conf, service, rtype, attrs, parent_path=parent)
    return apply


def remove_child(service: str, at: Path) -> Edit:
    def apply(conf: ClusterConf) -> None:
        edit.remove_child_resource(conf, service, at)
    return apply


def set_subtree(service: str, at: Path, choice: str, enforce_timeouts: bool) -> Edit:
    flags = subtree_flags(choice, enforce_timeouts)
    if not at:
        raise FormError("subtree", "the service itself has no subtree flags; choose a resource under it")

    def apply(conf: ClusterConf) -> None:
        edit.set_child_resource_attrs(conf, service, at, flags)
    return apply
