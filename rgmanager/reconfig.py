"""Reconfiguration delta: what to stop and start when a new cluster.conf replaces the old one (rhcs-facts §2.8).

`delta(old, new)` compares two `ResourceTrees` the way rgmanager did, in two steps:

1. **Resource list.** Each old resource is looked up in the new list by type and primary value. Missing, or with
   different attributes: the old entry gets NEEDSTOP and (if present) the new one NEEDSTART. Different only in
   parameters flagged `reconfig` in the agent metadata: the new entry gets NEEDSTART|RECONFIG (the daemon runs
   the agent's `reconfig` action instead of a restart). A new resource with no old counterpart gets NEEDSTART.
   Whether a resource is inline or global does not matter, only its type and attributes.
2. **Trees.** Sibling lists are matched pairwise, starting with the top-level services. An old node whose
   resource is NEEDSTOP, or that has no identical sibling in the new list, gets NEEDSTOP; its subtree is not
   compared (everything below a stopped node stops with it). Matched pairs compare their children the same way.
   A new node that no old node matched gets NEEDSTART (everything below it starts with it).

The flags are the rg_test `delta` marks. `ServiceDelta` turns them into what the daemon does for each service:
the flagged subtrees, and every node to stop / start in the §2.8 order.
Special `__` attributes take no part in the comparison (as in the original): changing them restarts nothing.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from rgmanager.restree import Resource, ResourceNode, ResourceTrees, start_sequence, stop_sequence


class Change(enum.Flag):
    NONE = 0
    NEEDSTOP = enum.auto()
    NEEDSTART = enum.auto()
    RECONFIG = enum.auto()


SAME, DIFFERENT, RECONFIGURABLE = 0, 1, 2


def compare_resources(left: Resource, right: Resource) -> int:
    """SAME, DIFFERENT, or RECONFIGURABLE (they differ only in parameters flagged `reconfig`)."""
    if left.type != right.type:
        return DIFFERENT
    a, b = left.attrs, right.attrs
    if a == b:
        return SAME
    rtype = right.rtype
    for name in a.keys() | b.keys():
        if a.get(name) != b.get(name):
            param = rtype.param(name)
            if param is None or not param.reconfig:
                return DIFFERENT
    return RECONFIGURABLE


@dataclass(frozen=True, slots=True)
class ServiceDelta:
    """What changes inside one service/vm (`id` is `service:NAME` or `vm:NAME`).

    `stop_roots` / `start_roots` are the flagged subtrees (old tree / new tree); `stop_order` / `start_order`
    are all the nodes to act on, in the service's §2.8 stop / start order. `reconfig` are new-tree nodes whose
    resource changed only in reconfigurable parameters."""

    id: str
    old: ResourceNode | None
    new: ResourceNode | None
    stop_roots: tuple[ResourceNode, ...]
    start_roots: tuple[ResourceNode, ...]
    stop_order: tuple[ResourceNode, ...]
    start_order: tuple[ResourceNode, ...]
    reconfig: tuple[ResourceNode, ...] = ()

    @property
    def added(self) -> bool:
        return self.old is None

    @property
    def removed(self) -> bool:
        return self.new is None

    @property
    def whole_service(self) -> bool:
        """True when the service itself stops or starts (added, removed, or its own attributes changed)."""
        return (self.old is not None and self.old in self.stop_roots) or (
            self.new is not None and self.new in self.start_roots
        )

    @property
    def unchanged(self) -> bool:
        return not (self.stop_roots or self.start_roots or self.reconfig)


@dataclass(frozen=True, slots=True)
class Delta:
    old: ResourceTrees
    new: ResourceTrees
    old_resource_flags: Mapping[Resource, Change]  # by identity: entries of old.resources
    new_resource_flags: Mapping[Resource, Change]
    old_node_flags: Mapping[ResourceNode, Change]  # by identity: nodes of old.trees
    new_node_flags: Mapping[ResourceNode, Change]
    services: tuple[ServiceDelta, ...]  # old services in order (removed ones included), then added ones

    def resource_flags(self, resource: Resource) -> Change:
        flags = self.old_resource_flags.get(resource)
        if flags is None:
            flags = self.new_resource_flags.get(resource, Change.NONE)
        return flags

    def node_flags(self, node: ResourceNode) -> Change:
        flags = self.old_node_flags.get(node)
        if flags is None:
            flags = self.new_node_flags.get(node, Change.NONE)
        return flags

    @property
    def added(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.services if s.added)

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.services if s.removed)

    @property
    def changed(self) -> tuple[str, ...]:
        """Services present in both configs with something to stop, start or reconfigure."""
        return tuple(s.id for s in self.services if not s.added and not s.removed and not s.unchanged)

    def service(self, service_id: str) -> ServiceDelta | None:
        for s in self.services:
            if s.id == service_id:
                return s
        return None


def _list_delta(old: ResourceTrees, new: ResourceTrees) -> tuple[dict[Resource, Change], dict[Resource, Change]]:
    new_by_id = {r.id: r for r in new.resources}
    old_flags: dict[Resource, Change] = {}
    new_flags: dict[Resource, Change] = {}
    common: set[int] = set()
    for left in old.resources:
        right = new_by_id.get(left.id)
        if right is None:
            old_flags[left] = Change.NEEDSTOP
            continue
        common.add(id(right))
        verdict = compare_resources(left, right)
        if verdict == SAME:
            continue
        if verdict == RECONFIGURABLE:
            new_flags[right] = Change.NEEDSTART | Change.RECONFIG
            continue
        old_flags[left] = Change.NEEDSTOP
        new_flags[right] = Change.NEEDSTART
    for right in new.resources:
        if id(right) not in common:
            new_flags[right] = Change.NEEDSTART
    return old_flags, new_flags


def _tree_delta(
    left: Sequence[ResourceNode],
    right: Sequence[ResourceNode],
    old_res_flags: Mapping[Resource, Change],
    old_flags: dict[ResourceNode, Change],
    new_flags: dict[ResourceNode, Change],
) -> None:
    candidates: dict[str, list[ResourceNode]] = {}  # id -> new siblings not matched yet, in order
    for rn in right:
        candidates.setdefault(rn.resource.id, []).append(rn)
    for ln in left:
        if Change.NEEDSTOP in old_res_flags.get(ln.resource, Change.NONE):
            old_flags[ln] = Change.NEEDSTOP
            continue
        partner = None
        verdict = DIFFERENT
        pool = candidates.get(ln.resource.id, ())
        for i, rn in enumerate(pool):
            verdict = compare_resources(ln.resource, rn.resource)
            if verdict != DIFFERENT:
                partner = rn
                del pool[i]  # type: ignore[attr-defined]
                break
        if partner is None:
            old_flags[ln] = Change.NEEDSTOP
            continue
        if verdict == RECONFIGURABLE:
            new_flags[partner] = Change.RECONFIG
        if ln.children or partner.children:
            _tree_delta(ln.children, partner.children, old_res_flags, old_flags, new_flags)
    for pool in candidates.values():
        for rn in pool:
            new_flags[rn] = Change.NEEDSTART


def _flagged(nodes: list[ResourceNode], flags: Mapping[ResourceNode, Change], flag: Change) -> set[int]:
    """ids of every node inside a subtree whose root carries `flag` (nodes given parents first)."""
    inside: set[int] = set()
    for node in nodes:
        if flag in flags.get(node, Change.NONE) or (node.parent is not None and id(node.parent) in inside):
            inside.add(id(node))
    return inside


def _service_delta(
    sid: str,
    old: ResourceNode | None,
    new: ResourceNode | None,
    old_flags: Mapping[ResourceNode, Change],
    new_flags: Mapping[ResourceNode, Change],
) -> ServiceDelta:
    stop_roots: list[ResourceNode] = []
    stop_order: list[ResourceNode] = []
    if old is not None:
        walk = list(old.walk())
        stop_roots = [n for n in walk if n in old_flags]  # old-tree flags are only ever NEEDSTOP
        if stop_roots:
            inside = _flagged(walk, old_flags, Change.NEEDSTOP)
            stop_order = [n for n in stop_sequence(old) if id(n) in inside]
    start_roots: list[ResourceNode] = []
    start_order: list[ResourceNode] = []
    reconfig: list[ResourceNode] = []
    if new is not None:
        walk = list(new.walk())
        start_roots = [n for n in walk if n in new_flags and Change.NEEDSTART in new_flags[n]]
        inside = _flagged(walk, new_flags, Change.NEEDSTART) if start_roots else set()
        if start_roots:
            start_order = [n for n in start_sequence(new) if id(n) in inside]
        reconfig = [n for n in walk if n in new_flags and Change.RECONFIG in new_flags[n] and id(n) not in inside]
    return ServiceDelta(sid, old, new, tuple(stop_roots), tuple(start_roots), tuple(stop_order),
                        tuple(start_order), tuple(reconfig))


def delta(old: ResourceTrees, new: ResourceTrees) -> Delta:
    """Flag what changed between `old` and `new` and say, per service, what to stop and start."""
    old_res, new_res = _list_delta(old, new)
    old_nodes: dict[ResourceNode, Change] = {}
    new_nodes: dict[ResourceNode, Change] = {}
    _tree_delta(old.trees, new.trees, old_res, old_nodes, new_nodes)

    new_by_id = {t.id: t for t in new.trees}
    services = []
    seen: set[str] = set()
    for tree in old.trees:
        seen.add(tree.id)
        services.append(_service_delta(tree.id, tree, new_by_id.get(tree.id), old_nodes, new_nodes))
    for tree in new.trees:
        if tree.id not in seen:
            services.append(_service_delta(tree.id, None, tree, old_nodes, new_nodes))
    return Delta(
        old,
        new,
        MappingProxyType(old_res),
        MappingProxyType(new_res),
        MappingProxyType(old_nodes),
        MappingProxyType(new_nodes),
        tuple(services),
    )
