"""Typed, read-only views of a cluster.conf, derived from the XML tree (which stays the source of truth).

`view(conf)` returns one immutable ClusterView snapshot: the engine, the CLIs and the checks read it instead of
walking XML. Numbers that do not parse are None here; validation reports them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from cluster_conf.document import ClusterConf
from cluster_conf.schema import RESOURCE_TYPES, is_true, parse_time


def to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def element_votes(element: etree._Element) -> int:
    """A <clusternode>'s votes: default 1; a malformed or out-of-range value counts as 1 (validation reports it)."""
    votes = to_int(element.get("votes"))
    return votes if votes is not None and 0 <= votes <= 255 else 1


def to_seconds(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Where:
    """Where an element is: for reports."""

    line: int | None
    path: str


@dataclass(frozen=True, slots=True)
class FenceDeviceRef:
    """A <device> inside a fence method or <unfence>: the device name plus per-node parameters."""

    name: str
    params: dict[str, str]
    where: Where


@dataclass(frozen=True, slots=True)
class FenceMethod:
    name: str
    devices: tuple[FenceDeviceRef, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    nodeid: int | None
    votes: int | None  # None when the attribute is present but not an integer
    attrs: dict[str, str]
    altnames: tuple[str, ...]
    methods: tuple[FenceMethod, ...]
    unfence: tuple[FenceDeviceRef, ...]
    where: Where

    @property
    def fence_type(self) -> str:
        """The first device of the first method, as `ccs_tool lsnode` prints it."""
        for method in self.methods:
            for device in method.devices:
                return device.name
        return ""


@dataclass(frozen=True, slots=True)
class FenceDevice:
    name: str
    agent: str | None
    params: dict[str, str]  # every attribute but name and agent
    where: Where
    attrs: dict[str, str] = field(default_factory=dict)  # every attribute, in document order (fence agents' stdin)


@dataclass(frozen=True, slots=True)
class DomainNode:
    name: str
    priority: int | None
    where: Where


@dataclass(frozen=True, slots=True)
class FailoverDomain:
    name: str
    ordered: bool
    restricted: bool
    nofailback: bool
    nodes: tuple[DomainNode, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource node: a global definition, a `ref=` use, or an inline definition inside a service tree."""

    type: str
    attrs: dict[str, str]
    children: tuple[Resource, ...]
    where: Where

    @property
    def ref(self) -> str | None:
        return self.attrs.get("ref")

    @property
    def key(self) -> str | None:
        """The primary-key value (`ref` for a reference), or None when it has none."""
        if self.ref is not None:
            return self.ref
        rtype = RESOURCE_TYPES.get(self.type)
        return self.attrs.get(rtype.primary if rtype else "name")

    @property
    def known(self) -> bool:
        return self.type in RESOURCE_TYPES


@dataclass(frozen=True, slots=True)
class Service:
    """A top-level resource group: <service> or <vm> (kind)."""

    kind: str
    name: str
    attrs: dict[str, str]
    children: tuple[Resource, ...]
    where: Where

    @property
    def id(self) -> str:
        """rgmanager's internal name: `service:foo` or `vm:bar`."""
        return f"{self.kind}:{self.name}"

    @property
    def domain(self) -> str | None:
        return self.attrs.get("domain")

    @property
    def autostart(self) -> bool:
        return is_true(self.attrs.get("autostart", "1"))

    @property
    def exclusive(self) -> bool:
        return is_true(self.attrs.get("exclusive", "0"))

    @property
    def recovery(self) -> str:
        return self.attrs.get("recovery", "restart")

    @property
    def max_restarts(self) -> int | None:
        return to_int(self.attrs.get("max_restarts", "0"))

    @property
    def restart_expire_time(self) -> int | None:
        return to_seconds(self.attrs.get("restart_expire_time", "0"))

    @property
    def depend(self) -> str | None:
        return self.attrs.get("depend")

    @property
    def depend_mode(self) -> str:
        return self.attrs.get("depend_mode", "hard")


@dataclass(frozen=True, slots=True)
class Heuristic:
    program: str | None
    score: int | None
    interval: int | None
    tko: int | None
    where: Where


@dataclass(frozen=True, slots=True)
class QuorumDisk:
    attrs: dict[str, str]
    heuristics: tuple[Heuristic, ...]
    where: Where

    @property
    def votes(self) -> int | None:
        return to_int(self.attrs.get("votes"))


@dataclass(frozen=True, slots=True)
class ClusterView:
    name: str | None
    config_version: int | None
    attrs: dict[str, str]
    cman: dict[str, str] | None
    totem: dict[str, str] | None
    fence_daemon: dict[str, str] | None
    logging: dict[str, str] | None
    rm: dict[str, str] | None
    quorumd: QuorumDisk | None
    multicast_addr: str | None
    nodes: tuple[Node, ...]
    fence_devices: tuple[FenceDevice, ...]
    domains: tuple[FailoverDomain, ...]
    resources: tuple[Resource, ...]  # global definitions under <rm><resources>
    services: tuple[Service, ...]  # <service> and <vm>, in document order
    sections: dict[str, Where] = field(default_factory=dict)  # first occurrence of each top-level section

    @property
    def two_node(self) -> bool:
        return is_true((self.cman or {}).get("two_node", "0"))

    def node(self, name: str) -> Node | None:
        for n in self.nodes:
            if n.name == name:
                return n
        return None

    def fence_device(self, name: str) -> FenceDevice | None:
        for d in self.fence_devices:
            if d.name == name:
                return d
        return None

    def domain(self, name: str) -> FailoverDomain | None:
        for d in self.domains:
            if d.name == name:
                return d
        return None

    def service(self, name: str) -> Service | None:
        """By plain name (`foo`) or rgmanager id (`service:foo`, `vm:bar`)."""
        for s in self.services:
            if name in (s.name, s.id):
                return s
        return None


# -- building ----------------------------------------------------------------------------------------------
def _elements(parent: etree._Element | None, tag: str) -> list[etree._Element]:
    if parent is None:
        return []
    return [c for c in parent if c.tag == tag]


class _Builder:
    def __init__(self, conf: ClusterConf) -> None:
        self.getpath = conf.tree.getpath

    def where(self, el: etree._Element) -> Where:
        return Where(el.sourceline, self.getpath(el))

    def device_ref(self, el: etree._Element) -> FenceDeviceRef:
        attrs = dict(el.attrib)
        name = attrs.pop("name", "")
        return FenceDeviceRef(name, attrs, self.where(el))

    def node(self, el: etree._Element) -> Node:
        attrs = dict(el.attrib)
        methods: list[FenceMethod] = []
        unfence: list[FenceDeviceRef] = []
        altnames: list[str] = []
        for child in el:
            if child.tag == "fence":
                for m in _elements(child, "method"):
                    devices = tuple(self.device_ref(d) for d in _elements(m, "device"))
                    methods.append(FenceMethod(m.get("name", ""), devices, self.where(m)))
            elif child.tag == "unfence":
                unfence.extend(self.device_ref(d) for d in _elements(child, "device"))
            elif child.tag == "altname":
                altnames.append(child.get("name", ""))
        votes = to_int(attrs["votes"]) if "votes" in attrs else 1
        return Node(
            attrs.get("name", ""),
            to_int(attrs.get("nodeid")),
            votes,
            attrs,
            tuple(altnames),
            tuple(methods),
            tuple(unfence),
            self.where(el),
        )

    def fence_device(self, el: etree._Element) -> FenceDevice:
        attrs = dict(el.attrib)
        params = dict(attrs)
        name = params.pop("name", "")
        agent = params.pop("agent", None)
        return FenceDevice(name, agent, params, self.where(el), attrs)

    def domain(self, el: etree._Element) -> FailoverDomain:
        nodes = tuple(
            DomainNode(n.get("name", ""), to_int(n.get("priority")), self.where(n))
            for n in _elements(el, "failoverdomainnode")
        )
        return FailoverDomain(
            el.get("name", ""),
            is_true(el.get("ordered")),
            is_true(el.get("restricted")),
            is_true(el.get("nofailback")),
            nodes,
            self.where(el),
        )

    def resource(self, el: etree._Element) -> Resource:
        children = tuple(
            self.resource(c) for c in el if isinstance(c.tag, str) and c.tag != "action"
        )
        return Resource(el.tag, dict(el.attrib), children, self.where(el))

    def service(self, el: etree._Element) -> Service:
        res = self.resource(el)
        return Service(el.tag, el.get("name", el.get("ref", "")), res.attrs, res.children, res.where)


def view(conf: ClusterConf) -> ClusterView:
    """Build the read-only snapshot of `conf` (cheap enough to call after every edit)."""
    b = _Builder(conf)
    root = conf.root
    first: dict[str, etree._Element] = {}
    for child in root:
        if isinstance(child.tag, str) and child.tag not in first:
            first[child.tag] = child

    def attrs(tag: str) -> dict[str, str] | None:
        el = first.get(tag)
        return dict(el.attrib) if el is not None else None

    rm = first.get("rm")
    rm_children: dict[str, etree._Element] = {}
    if rm is not None:
        for child in rm:
            if isinstance(child.tag, str) and child.tag not in rm_children:
                rm_children[child.tag] = child

    quorumd_el = first.get("quorumd")
    quorumd = None
    if quorumd_el is not None:
        heuristics = tuple(
            Heuristic(
                h.get("program"),
                to_int(h.get("score", "1")),
                to_int(h.get("interval")),
                to_int(h.get("tko")),
                b.where(h),
            )
            for h in _elements(quorumd_el, "heuristic")
        )
        quorumd = QuorumDisk(dict(quorumd_el.attrib), heuristics, b.where(quorumd_el))

    cman_el = first.get("cman")
    multicast = None
    if cman_el is not None:
        mc = cman_el.find("multicast")
        multicast = mc.get("addr") if mc is not None else None

    services = tuple(
        b.service(el) for el in (rm if rm is not None else ()) if el.tag in ("service", "vm")
    )
    resources_el = rm_children.get("resources")
    return ClusterView(
        name=root.get("name"),
        config_version=to_int(root.get("config_version")),
        attrs=dict(root.attrib),
        cman=attrs("cman"),
        totem=attrs("totem"),
        fence_daemon=attrs("fence_daemon"),
        logging=attrs("logging"),
        rm=dict(rm.attrib) if rm is not None else None,
        quorumd=quorumd,
        multicast_addr=multicast,
        nodes=tuple(b.node(el) for el in _elements(first.get("clusternodes"), "clusternode")),
        fence_devices=tuple(
            b.fence_device(el) for el in _elements(first.get("fencedevices"), "fencedevice")
        ),
        domains=tuple(
            b.domain(el) for el in _elements(rm_children.get("failoverdomains"), "failoverdomain")
        ),
        resources=tuple(
            b.resource(el) for el in (resources_el if resources_el is not None else ()) if isinstance(el.tag, str)
        ),
        services=services,
        sections={tag: b.where(el) for tag, el in first.items()},
    )
