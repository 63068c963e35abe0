"""Resource trees: each service/vm of a cluster.conf as an immutable tree of resource nodes (rhcs-facts §1.5, §2.8).

`build_trees(conf)` reads `<rm>` once and returns a `ResourceTrees` snapshot:

- the **resource list**: every global definition of `<rm><resources>` (and every inline definition met while
  building the trees), each with its own attributes in agent-metadata order and how many tree nodes reference
  it;
- one **tree** per top-level `service`, then per `vm`, in config order. A node refers to its list entry and
  carries the resolved attribute values (inherited ones included) plus the special `__` attributes parsed into
  typed fields;
- the **warnings** the original printed while building (a max-instance resource referenced twice, a reference to
  a resource that does not exist, ...).

`start_sequence(node)` and `stop_sequence(node)` give the exact order of §2.8: typed children by level (levels
from the parent type's `ChildRule`s in `cluster_conf.schema.RESOURCE_TYPES`), untyped children in tree order
(reversed on stop), parent before children on start, children before parent on stop.

Quirks kept from the 2007 code because rg_test's conformance files depend on them (see docs/rg_test.md):
an inherited parameter `inherit("T%x")` resolves only from the *direct* parent, and only if that parent is of
type T; `inherit("x")` resolves from the nearest ancestor that has or declares `x`. Children of a node are
ordered with the typed ones first (grouped by the parent type's child-rule order, config order within a type),
then the untyped ones in config order.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from types import MappingProxyType
from typing import Any

from lxml import etree

from cluster_conf.schema import OPEN_PARAM_TYPES, RESOURCE_TYPES, ResourceType, is_true, parse_time

TOP_LEVEL_TYPES = ("service", "vm")  # printed and built in this order (the original's alphabetical rule order)
SPECIAL_PREFIX = "__"
REF_ATTR = "ref"


# -- data --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Threshold:
    """`count` events within `window` seconds (0 = they never expire)."""

    count: int
    window: int


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Resource:
    """One entry of the resource list: a global definition or an inline one.

    `attrs` holds the attributes set in the configuration that the type knows (every attribute for open types
    such as `ocf`), in metadata order, plus the metadata defaults of unset parameters (not for service/vm, whose
    2007 metadata declared none); inherited parameters that are not set are not in it."""

    type: str
    rtype: ResourceType = field(repr=False)
    attrs: Mapping[str, str]
    primary: str
    inline: bool = False
    line: int | None = None
    id: str = ""  # "type:primary"

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", f"{self.type}:{self.primary}")

    @property
    def primary_attr(self) -> str:
        return self.rtype.primary

    def __repr__(self) -> str:
        return f"Resource({self.id}{', inline' if self.inline else ''})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class ResourceNode:
    """One resource in a service tree. Nodes compare by identity (the same resource may appear in two trees).

    `attrs` are the values the agent gets: the resource's own attributes (metadata order), then the inherited
    ones that resolved. Special attributes (`__independent_subtree`, ...) are read from the referencing element,
    falling back to the global definition, and are not in `attrs`."""

    type: str
    resource: Resource = field(repr=False)
    attrs: Mapping[str, str] = field(repr=False)
    children: tuple[ResourceNode, ...] = field(default=(), repr=False)
    parent: ResourceNode | None = field(default=None, repr=False)
    independent: bool = False  # __independent_subtree 1/yes (also true for non-critical)
    non_critical: bool = False  # __independent_subtree 2/non-critical
    enforce_timeouts: bool = False  # __enforce_timeouts
    failure_threshold: Threshold | None = None  # __max_failures + __failure_expire_time
    restart_threshold: Threshold | None = None  # __max_restarts + __restart_expire_time (independent subtrees)
    actions: tuple[Mapping[str, str], ...] = field(default=(), repr=False)  # <action name= timeout= .../>
    line: int | None = None

    @property
    def primary(self) -> str:
        return self.resource.primary

    def __repr__(self) -> str:
        return f"ResourceNode({self.id}, {len(self.children)} children)"

    @property
    def id(self) -> str:
        return self.resource.id

    @property
    def rtype(self) -> ResourceType:
        return self.resource.rtype

    @property
    def root(self) -> ResourceNode:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def value(self, name: str) -> str | None:
        """The attribute's value, else the agent metadata default, else None."""
        got = self.attrs.get(name)
        if got is not None:
            return got
        param = self.resource.rtype.param(name)
        return param.default if param is not None else None

    def walk(self) -> Iterator[ResourceNode]:
        """This node and every node below it, parents first, in tree order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


@dataclass(frozen=True, slots=True)
class ResourceTrees:
    """What `build_trees` read from `<rm>`: the resource list, one tree per service/vm, the warnings."""

    resources: tuple[Resource, ...]  # list order: type alphabetical, then config order (inline ones last)
    trees: tuple[ResourceNode, ...]  # services then vms, each in config order
    instances: Mapping[str, int]  # resource id -> number of tree nodes referencing it
    warnings: tuple[str, ...] = ()

    def tree(self, name: str) -> ResourceNode | None:
        """The tree of service `name` (or `vm:name`, `service:name`); a service wins over a vm of that name."""
        if ":" in name:
            rtype, _, key = name.partition(":")
            candidates = [t for t in self.trees if t.type == rtype and t.primary == key]
        else:
            candidates = [t for t in self.trees if t.primary == name]
        return candidates[0] if candidates else None

    def resource(self, resource_id: str) -> Resource | None:
        for res in self.resources:
            if res.id == resource_id:
                return res
        return None

    def instance_count(self, resource: Resource) -> int:
        return self.instances.get(resource.id, 0)


# -- ordering ----------------------------------------------------------------------------------------------
@cache
def _child_order(parent_type: str) -> tuple[dict[str, int], tuple[tuple[int, tuple[str, ...]], ...],
                                            tuple[tuple[int, tuple[str, ...]], ...]]:
    """For children of `parent_type`: the declaration index of each listed, non-forbidden type; and the start
    and stop levels, ascending, each with its types in declaration order."""
    rtype = RESOURCE_TYPES.get(parent_type)
    rules = rtype.children if rtype is not None else ()
    declared = {r.type: i for i, r in enumerate(rules) if not r.forbid}
    start: dict[int, list[str]] = {}
    stop: dict[int, list[str]] = {}
    for r in rules:
        if r.forbid:
            continue
        if r.start:
            start.setdefault(r.start, []).append(r.type)
        if r.stop:
            stop.setdefault(r.stop, []).append(r.type)
    return (
        declared,
        tuple((lvl, tuple(types)) for lvl, types in sorted(start.items())),
        tuple((lvl, tuple(types)) for lvl, types in sorted(stop.items())),
    )


def _start_children(node: ResourceNode) -> list[ResourceNode]:
    children = node.children
    if not children:
        return []
    _, start_levels, _ = _child_order(node.type)
    leveled = {t for _, types in start_levels for t in types}
    ordered: list[ResourceNode] = []
    for _, types in start_levels:
        for t in types:
            ordered.extend(c for c in children if c.type == t)
    ordered.extend(c for c in children if c.type not in leveled)
    return ordered


def _stop_children(node: ResourceNode) -> list[ResourceNode]:
    children = node.children
    if not children:
        return []
    _, _, stop_levels = _child_order(node.type)
    leveled = {t for _, types in stop_levels for t in types}
    ordered = [c for c in reversed(children) if c.type not in leveled]
    for _, types in stop_levels:
        for t in types:
            ordered.extend(c for c in reversed(children) if c.type == t)
    return ordered


def start_sequence(node: ResourceNode) -> list[ResourceNode]:
    """Every node of the subtree in start (and status) order: the node, then its children by start level, then
    its untyped children in tree order, each child followed by its own subtree."""
    out: list[ResourceNode] = []
    _start_into(node, out)
    return out


def _start_into(node: ResourceNode, out: list[ResourceNode]) -> None:
    out.append(node)
    for child in _start_children(node):
        _start_into(child, out)


def stop_sequence(node: ResourceNode) -> list[ResourceNode]:
    """Every node of the subtree in stop order: untyped children in reverse tree order, then typed children by
    stop level (reverse config order within a type), each child's subtree before the child; the node last."""
    out: list[ResourceNode] = []
    _stop_into(node, out)
    return out


def _stop_into(node: ResourceNode, out: list[ResourceNode]) -> None:
    for child in _stop_children(node):
        _stop_into(child, out)
    out.append(node)


def independent_subtrees(root: ResourceNode) -> list[ResourceNode]:
    """The nodes below `root` marked `__independent_subtree` (1/yes or 2/non-critical), in tree order.

    Each can be restarted on its own (and a non-critical one stopped on failure, leaving the service partial).
    A marked node inside another marked subtree is listed too; the top-level service itself never is."""
    return [n for n in root.walk() if n is not root and n.independent]


def non_critical_subtrees(root: ResourceNode) -> list[ResourceNode]:
    return [n for n in independent_subtrees(root) if n.non_critical]


# -- building ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _TypeInfo:
    """What building needs of a resource type, precomputed once (the tree builder runs for thousands of
    services)."""

    rtype: ResourceType
    primary: str
    position: Mapping[str, int]  # param name -> metadata index
    defaults: Mapping[str, str]  # param name -> default copied into the resource's attributes
    inherit_specs: tuple[tuple[str, str], ...]  # (param name, inherit spec), metadata order
    inherited: frozenset[str]
    open_params: bool
    declared: Mapping[str, int]  # child type -> declaration index, for listed, non-forbidden child types
    forbidden: frozenset[str]


@cache
def _info(type_name: str) -> _TypeInfo:
    rtype = RESOURCE_TYPES[type_name]
    # The original copied metadata defaults into a resource's attributes when not set. Not for top-level types:
    # the 2007 service.sh metadata declared no defaults (rg_test prints a service with its name only); their
    # defaults are engine behaviour, read through `ResourceNode.value`.
    defaults = {} if rtype.top_level else {p.name: p.default for p in rtype.params if p.default and not p.inherit}
    declared, _, _ = _child_order(type_name)
    return _TypeInfo(
        rtype,
        rtype.primary,
        MappingProxyType({p.name: i for i, p in enumerate(rtype.params)}),
        MappingProxyType(defaults),
        tuple((p.name, p.inherit) for p in rtype.params if p.inherit),
        frozenset(p.name for p in rtype.params if p.inherit),
        type_name in OPEN_PARAM_TYPES,
        MappingProxyType(declared),
        frozenset(r.type for r in rtype.children if r.forbid),
    )


def _own_attrs(info: _TypeInfo, raw: Mapping[str, str], site: Mapping[str, str] | None = None) -> dict[str, str]:
    """The attributes of a resource element that its type knows, in metadata order (open types: all, extras in
    document order after the known ones), with the defaults filled in: the site's `<resource-defaults>` for the
    type over the metadata defaults. Inherited parameters set explicitly keep their value. `ref` and special `__`
    attributes are not resource attributes."""
    if site:
        merged = {**info.defaults, **{k: v for k, v in site.items() if k in info.position}, **raw}
    else:
        merged = {**info.defaults, **raw} if info.defaults else raw
    position = info.position
    known = [name for name in merged if name in position]
    known.sort(key=position.__getitem__)
    own = {name: merged[name] for name in known}
    if info.open_params:
        for name, value in raw.items():
            if name not in own and name != REF_ATTR and not name.startswith(SPECIAL_PREFIX):
                own[name] = value
    return own


def _resolve_inherited(spec: str, parent: ResourceNode | None) -> str | None:
    """The value of `inherit(spec)` seen from a child of `parent` (see the module docstring for the rules)."""
    if parent is None:
        return None
    wanted_type, sep, name = spec.partition("%")
    if sep:
        return parent.attrs.get(name) if parent.type == wanted_type else None
    node: ResourceNode | None = parent
    while node is not None:
        value = node.attrs.get(spec)
        if value is not None:
            return value
        if spec in _info(node.type).inherited:  # declared but unresolved: stop here, as the original does
            return None
        node = node.parent
    return None


def _specials(raw: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in raw.items() if k.startswith(SPECIAL_PREFIX)}


def _threshold(specials: Mapping[str, str], count_name: str, window_name: str, where: str,
               warnings: list[str]) -> Threshold | None:
    count_text, window_text = specials.get(count_name), specials.get(window_name)
    if count_text is None and window_text is None:
        return None
    if count_text is None or window_text is None:
        warnings.append(f"Warning: {where}: {count_name} and {window_name} work only together; ignored")
        return None
    try:
        count = int(count_text.strip())
        window = parse_time(window_text)
    except ValueError:
        warnings.append(f"Warning: {where}: bad {count_name}/{window_name} value; ignored")
        return None
    if count < 0:
        warnings.append(f"Warning: {where}: {count_name} cannot be negative; ignored")
        return None
    return Threshold(count, window)


def _special_fields(specials: Mapping[str, str], where: str, top: bool, warnings: list[str]) -> dict[str, Any]:
    """The typed fields of a node from its `__` attributes (rhcs-facts §1.4)."""
    fields: dict[str, Any] = {}
    if not top:  # __independent_subtree is ignored on top-level services
        mode = specials.get("__independent_subtree", "").strip().lower()
        if mode in ("2", "non-critical"):
            fields["independent"] = fields["non_critical"] = True
        elif is_true(mode):
            fields["independent"] = True
    fields["enforce_timeouts"] = is_true(specials.get("__enforce_timeouts"))
    fields["failure_threshold"] = _threshold(specials, "__max_failures", "__failure_expire_time", where, warnings)
    restart = _threshold(specials, "__max_restarts", "__restart_expire_time", where, warnings)
    if restart is not None and not fields.get("independent"):
        warnings.append(f"Warning: {where}: __max_restarts applies only to independent subtrees; ignored")
        restart = None
    fields["restart_threshold"] = restart
    return fields


_ACTION = "action"


def _site_defaults(rm: etree._Element | None) -> dict[str, dict[str, str]]:
    """`<rm><resource-defaults><TYPE param="value" .../></resource-defaults>`: the site's own defaults per resource
    type, which replace the agent metadata's (the first element per type counts). Not applied to service and vm,
    whose defaults are engine behaviour (docs/rg_test.md)."""
    found: dict[str, dict[str, str]] = {}
    holder = rm.find("resource-defaults") if rm is not None else None
    if holder is not None:
        for el in holder.iterchildren(etree.Element):
            if el.tag in RESOURCE_TYPES and el.tag not in found:
                found[el.tag] = dict(el.items())
    return found


class _Builder:
    def __init__(self, rm: etree._Element | None) -> None:
        self.rm = rm
        self.resources: dict[str, Resource] = {}  # id -> entry, insertion = config order
        # id -> (specials, actions) of the global definition, read when a reference uses it
        self.definitions: dict[str, tuple[dict[str, str], tuple[Mapping[str, str], ...]]] = {}
        self.counts: dict[str, int] = {}
        self.warnings: list[str] = []
        self.site_defaults = _site_defaults(rm)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    # global definitions --------------------------------------------------------------------------------
    def load_globals(self) -> None:
        resources = self.rm.find("resources") if self.rm is not None else None
        if resources is None:
            return
        for el in resources.iterchildren(etree.Element):
            if el.tag not in RESOURCE_TYPES:
                continue  # not a resource type (the original had no rule for it); validation reports it
            raw = dict(el.items())
            res = self.make_resource(_info(el.tag), raw, el, inline=False)
            if res is None:
                continue
            if res.id in self.resources:
                self.warn(f"Warning: Resource {res.primary_attr} {res.primary} (type {res.type}) defined more "
                          "than once; the first definition is used")
                continue
            self.resources[res.id] = res
            actions = tuple(MappingProxyType(dict(a.items())) for a in el.iterchildren(_ACTION))
            self.definitions[res.id] = (_specials(raw), actions)

    def make_resource(self, info: _TypeInfo, raw: Mapping[str, str], el: etree._Element, *,
                      inline: bool) -> Resource | None:
        primary = raw.get(info.primary)
        rtype = info.rtype
        if primary is None:
            self.warn(f"Warning: {rtype.name} resource without {info.primary} (line {el.sourceline}); ignored")
            return None
        site = None if rtype.top_level else self.site_defaults.get(rtype.name)
        return Resource(rtype.name, rtype, MappingProxyType(_own_attrs(info, raw, site)), primary, inline,
                        el.sourceline, f"{rtype.name}:{primary}")

    # trees ---------------------------------------------------------------------------------------------
    def build(self) -> list[ResourceNode]:
        roots: list[ResourceNode] = []
        if self.rm is None:
            return roots
        for top in TOP_LEVEL_TYPES:
            info = _info(top)
            for el in self.rm.iterchildren(top):
                node = self.node(info, el, None)
                if node is not None:
                    roots.append(node)
        return roots

    def node(self, info: _TypeInfo, el: etree._Element, parent: ResourceNode | None) -> ResourceNode | None:
        raw = dict(el.items())
        ref = raw.get(REF_ATTR)
        if ref is not None:
            rid = f"{info.rtype.name}:{ref}"
            res = self.resources.get(rid)
            if res is None or res.inline:
                self.warn(f"Warning: Reference to nonexistent resource {ref} (type {info.rtype.name}); ignored")
                return None
            definition = self.definitions.get(rid)
        else:
            res = self.make_resource(info, raw, el, inline=True)
            if res is None:
                return None
            if res.id in self.resources:
                self.warn(f"Warning: Inline {res.type} resource {res.primary} conflicts with another definition "
                          "of the same name; ignored")
                return None
            self.resources[res.id] = res
            definition = None

        rid = res.id
        limit = info.rtype.max_instances
        count = self.counts.get(rid, 0)
        if limit is not None and count >= limit:
            self.warn(f"Warning: Max references exceeded for resource {info.primary} (type {res.type})")
            return None
        self.counts[rid] = count + 1

        attrs: Mapping[str, str] = res.attrs
        if info.inherit_specs:
            resolved: dict[str, str] | None = None
            for name, spec in info.inherit_specs:
                if name not in attrs:
                    value = _resolve_inherited(spec, parent)
                    if value is not None:
                        if resolved is None:
                            resolved = dict(attrs)
                        resolved[name] = value
            if resolved is not None:
                attrs = MappingProxyType(resolved)

        specials = _specials(raw) if "__" in "".join(raw) else {}
        actions: tuple[Mapping[str, str], ...] = ()
        if definition is not None:
            specials = {**definition[0], **specials} if definition[0] else specials
            actions = definition[1]
        fields = _special_fields(specials, rid, parent is None, self.warnings) if specials else {}
        node = ResourceNode(res.type, res, attrs, (), parent, line=el.sourceline, **fields)

        typed: list[tuple[int, int, ResourceNode]] = []
        untyped: list[ResourceNode] = []
        own_actions: list[Mapping[str, str]] = []
        for index, child_el in enumerate(el.iterchildren(etree.Element)):
            tag = child_el.tag
            if tag not in RESOURCE_TYPES:
                if tag == _ACTION:
                    own_actions.append(MappingProxyType(dict(child_el.items())))
                continue  # unknown elements are not resources (validation reports them)
            if tag in info.forbidden:
                self.warn(f"Warning: Resource type {tag} is not allowed as a child of {rid}; ignored")
                continue
            cinfo = _info(tag)
            if cinfo.rtype.top_level:
                self.warn(f"Warning: {tag} cannot be a child of {rid}; ignored")
                continue
            child = self.node(cinfo, child_el, node)
            if child is None:
                continue
            level = info.declared.get(tag)
            if level is None:
                untyped.append(child)
            else:
                typed.append((level, index, child))
        if typed:
            typed.sort(key=_sort_key)
            object.__setattr__(node, "children", (*(c for _, _, c in typed), *untyped))
        elif untyped:
            object.__setattr__(node, "children", tuple(untyped))
        if own_actions:
            actions = (*actions, *own_actions)
        if actions:
            object.__setattr__(node, "actions", actions)
        return node


def _sort_key(item: tuple[int, int, ResourceNode]) -> tuple[int, int]:
    return item[0], item[1]


def _rm_of(conf: Any) -> etree._Element | None:
    """`<rm>` of a ClusterConf, an lxml tree or a root element."""
    root = conf.tree.getroot() if hasattr(conf, "tree") else conf
    if isinstance(root, etree._ElementTree):
        root = root.getroot()
    if root is None:
        return None
    return root if root.tag == "rm" else root.find("rm")


def build_trees(conf: Any) -> ResourceTrees:
    """Build the resource list and every service/vm tree of `conf` (a ClusterConf, an lxml tree or element)."""
    builder = _Builder(_rm_of(conf))
    builder.load_globals()
    trees = tuple(builder.build())
    ordered = sorted(builder.resources.values(), key=lambda r: r.type)  # stable: config order within a type
    return ResourceTrees(
        tuple(ordered),
        trees,
        MappingProxyType({rid: builder.counts.get(rid, 0) for rid in builder.resources}),
        tuple(builder.warnings),
    )
