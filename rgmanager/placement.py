"""Failover-domain placement: node scores (rhcs-facts §2.3), `best_target_node`, exclusivity and dependencies.

The configuration is compiled once into a `Catalog` (rules per domain and per service, dependency order); a
`Placer` answers placement questions for one membership and a live view of which nodes run what.

Decisions this module takes (docs/engine.md explains them):
- In an ordered domain a member without a priority (or with one outside 1..100) ranks *after* every prioritised
  member (the original ranked it as 0, above priority 1; cluster_conf's lint warns about such members).
- Placement is central: an automatic start goes to the best-scoring eligible node, not only to a BEST one.
- Equal scores are broken by domain priority, then by the later node in membership order (§2.3.7).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from lxml import etree

from cluster_conf.model import ClusterView, Resource, Service
from rgmanager.restree import ResourceTrees, build_trees
from rgmanager.snapshot import Membership, ServiceRecord, service_id
from rgmanager.states import RGCode, State

UNPRIORITISED = 101  # an ordered-domain member without a valid priority ranks after priority 100


class Score(IntEnum):
    """node_should_start's verdict for one node."""

    ILLEGAL = 0
    GOOD = 1
    BETTER = 2
    BEST = 3


# -- the compiled configuration ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DomainRule:
    name: str
    ordered: bool
    restricted: bool
    nofailback: bool
    priority: Mapping[str, int]  # member -> effective priority (0 for every member of an unordered domain)

    def describe(self) -> str:
        traits = [t for t, on in (("ordered", self.ordered), ("restricted", self.restricted),
                                  ("nofailback", self.nofailback)) if on]
        return f"domain {self.name}" + (f" ({', '.join(traits)})" if traits else "")


def effective_priority(ordered: bool, priority: int | None) -> int:
    """Priorities count only in ordered domains; a missing or out-of-range one ranks last (our choice, §2.3)."""
    if not ordered:
        return 0
    if priority is None or not 1 <= priority <= 100:
        return UNPRIORITISED
    return priority


@dataclass(frozen=True, slots=True)
class ServiceRule:
    """What placement and recovery need from one <service>/<vm>."""

    id: str
    kind: str
    domain: DomainRule | None
    domain_name: str | None  # as configured; set while `domain` is None means "#66: Domain ... nonexistent"
    autostart: bool
    exclusive: bool
    recovery: str
    max_restarts: int
    restart_expire_time: int
    depend: str | None  # service id
    depend_hard: bool
    definition: Service

    @property
    def migratory(self) -> bool:
        """VMs live-migrate instead of relocating (failback uses migrate for them)."""
        return self.kind == "vm"


@dataclass(frozen=True, slots=True)
class Catalog:
    """The configuration as the engine reads it."""

    view: ClusterView
    services: tuple[ServiceRule, ...]
    by_id: Mapping[str, ServiceRule]
    dependents: Mapping[str, tuple[str, ...]]  # service id -> services that depend on it (config order)
    order: tuple[str, ...]  # evaluation order: exclusive services first, every dependency before its dependents
    cycle: tuple[str, ...] = ()  # the first dependency cycle found (a, b, a), or () when the dependencies chain

    def find(self, name: str) -> ServiceRule | None:
        """By id (`service:foo`, `vm:bar`) or, when unambiguous, by plain name."""
        rule = self.by_id.get(name) or self.by_id.get(service_id(name))
        if rule is None and ":" not in name:
            matches = [r for r in self.services if r.definition.name == name]
            rule = matches[0] if len(matches) == 1 else None
        return rule


def compile_domains(view: ClusterView) -> dict[str, DomainRule]:
    domains: dict[str, DomainRule] = {}
    for d in view.domains:
        if d.name in domains:  # "#31: Domain %s defined multiple times": the first one counts
            continue
        priority: dict[str, int] = {}
        for member in d.nodes:
            priority.setdefault(member.name, effective_priority(d.ordered, member.priority))
        domains[d.name] = DomainRule(d.name, d.ordered, d.restricted, d.nofailback, priority)
    return domains


def evaluation_order(services: tuple[ServiceRule, ...], by_id: Mapping[str, ServiceRule]) -> tuple[str, ...]:
    """Exclusive services first (a node-wide reservation must not lose its node to a service that could run
    anywhere), each group in config order, and every dependency hoisted before its dependents (cycles: as found)."""
    base = [s for s in services if s.exclusive] + [s for s in services if not s.exclusive]
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    for start in base:
        stack = [(start.id, False)]
        while stack:
            sid, expanded = stack.pop()
            if expanded:
                state[sid] = 2
                order.append(sid)
                continue
            if state.get(sid):
                continue
            state[sid] = 1
            stack.append((sid, True))
            dep = by_id[sid].depend
            if dep is not None and dep in by_id and not state.get(dep):
                stack.append((dep, False))
    return tuple(order)


def dependency_cycle(by_id: Mapping[str, ServiceRule]) -> tuple[str, ...]:
    """The first `depend` cycle, closed (a, b, a), in config order; () when there is none. Each service depends on
    at most one other, so following the chain from every service finds every cycle in linear time. (The
    configuration check reports the same as DEPEND_CYCLE; this is the planner's cheap guard.)"""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    for start in by_id:
        path: list[str] = []
        current: str | None = start
        while current is not None and current in by_id and not state.get(current):
            state[current] = 1
            path.append(current)
            current = by_id[current].depend
        if current is not None and state.get(current) == 1:
            loop = path[path.index(current):]
            return (*loop, loop[0])
        for sid in path:
            state[sid] = 2
    return ()


def compile_config(view: ClusterView) -> Catalog:
    domains = compile_domains(view)
    rules: list[ServiceRule] = []
    seen: set[str] = set()
    for svc in view.services:
        if svc.id in seen:
            continue
        seen.add(svc.id)
        depend = svc.depend.strip() if svc.depend else None
        rules.append(
            ServiceRule(
                id=svc.id,
                kind=svc.kind,
                domain=domains.get(svc.domain) if svc.domain else None,
                domain_name=svc.domain or None,
                autostart=svc.autostart,
                exclusive=svc.exclusive,
                recovery=svc.recovery,
                max_restarts=max(0, svc.max_restarts or 0),
                restart_expire_time=max(0, svc.restart_expire_time or 0),
                depend=service_id(depend) if depend else None,
                depend_hard=svc.depend_mode.strip().lower() != "soft",
                definition=svc,
            )
        )
    services = tuple(rules)
    by_id = {r.id: r for r in services}
    dependents: dict[str, list[str]] = {}
    for r in services:
        if r.depend is not None:
            dependents.setdefault(r.depend, []).append(r.id)
    return Catalog(view, services, by_id, {k: tuple(v) for k, v in dependents.items()},
                   evaluation_order(services, by_id), dependency_cycle(by_id))


def rm_element(view: ClusterView) -> etree._Element:
    """`<rm>` rebuilt from a view (attributes, global resources, services and their trees), for
    `restree.build_trees`: the view is what the planner is given, and it keeps every attribute the tree builder
    reads (`<action>` children excepted, which placement and recovery do not use)."""
    rm = etree.Element("rm", view.rm or {})
    if view.resources:
        holder = etree.SubElement(rm, "resources")
        for res in view.resources:
            _append_resource(holder, res)
    for svc in view.services:
        el = etree.SubElement(rm, svc.kind, svc.attrs)
        for child in svc.children:
            _append_resource(el, child)
    return rm


def _append_resource(parent: etree._Element, res: Resource) -> None:
    stack = [(parent, res)]
    while stack:
        holder, item = stack.pop()
        el = etree.SubElement(holder, item.type, item.attrs)
        stack.extend((el, c) for c in reversed(item.children))


_Cached = TypeVar("_Cached")
_CACHES: dict[str, list[tuple[ClusterView, object]]] = {}


def _cached(kind: str, view: ClusterView, make: Callable[[ClusterView], _Cached]) -> _Cached:
    """`make(view)`, remembered for the last few views (a view is immutable, so identity is enough)."""
    cache = _CACHES.setdefault(kind, [])
    for cached_view, value in cache:
        if cached_view is view:
            return value  # type: ignore[return-value]
    value = make(view)
    cache.insert(0, (view, value))
    del cache[4:]
    return value


def catalog_of(view: ClusterView) -> Catalog:
    """compile_config, cached for the last few views (the daemon replans against the same config many times)."""
    return _cached("catalog", view, compile_config)


def trees_of(view: ClusterView) -> ResourceTrees:
    """`restree.build_trees` of the view's `<rm>`, cached like `catalog_of`; built only when a plan needs a
    resource tree (a status failure, a config change)."""
    return _cached("trees", view, lambda v: build_trees(rm_element(v)))


# -- scoring -------------------------------------------------------------------------------------------------
class Placer:
    """Placement questions for one membership. `load`/`exclusive_load` count the active services per node and are
    kept current by the caller (`occupy`/`release`) as it plans."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.online_order = tuple(n.name for n in membership.nodes if n.online)
        self.position = {name: i for i, name in enumerate(self.online_order)}
        self.load: dict[str, int] = {}
        self.exclusive_load: dict[str, int] = {}
        self._domains: dict[str, tuple[tuple[str, ...], int]] = {}

    # occupancy ------------------------------------------------------------------------------------------------
    def occupy(self, node: str, exclusive: bool) -> None:
        self.load[node] = self.load.get(node, 0) + 1
        if exclusive:
            self.exclusive_load[node] = self.exclusive_load.get(node, 0) + 1

    def release(self, node: str, exclusive: bool) -> None:
        self.load[node] = self.load.get(node, 0) - 1
        if exclusive:
            self.exclusive_load[node] = self.exclusive_load.get(node, 0) - 1

    def blocked(self, rule: ServiceRule, node: str) -> bool:
        """Exclusivity: an exclusive service needs an empty node; others avoid nodes running an exclusive one."""
        if rule.exclusive:
            return self.load.get(node, 0) > 0
        return self.exclusive_load.get(node, 0) > 0

    # domains ----------------------------------------------------------------------------------------------------
    def domain_status(self, domain: DomainRule) -> tuple[tuple[str, ...], int]:
        """The domain's online members in membership order, and the preferred (lowest) priority among them."""
        cached = self._domains.get(domain.name)
        if cached is None:
            members = sorted((m for m in domain.priority if m in self.position), key=self.position.__getitem__)
            preferred = min((domain.priority[m] for m in members), default=0)
            cached = self._domains[domain.name] = (tuple(members), preferred)
        return cached

    def score(self, rule: ServiceRule, node: str, record: ServiceRecord) -> Score:
        """node_should_start (§2.3.1-3) with our rank for unprioritised members."""
        if node not in self.position:
            return Score.ILLEGAL
        domain = rule.domain
        if domain is None:
            return Score.BEST
        members, preferred = self.domain_status(domain)
        priority = domain.priority.get(node)
        if priority is None:
            if domain.restricted:
                return Score.ILLEGAL
            return Score.GOOD if members else Score.BEST
        started = record.state is State.STARTED and record.owner in self.position
        if priority > preferred:  # only possible in an ordered domain
            return Score.BEST if domain.nofailback and started and record.owner == node else Score.BETTER
        if domain.nofailback and started and record.owner != node:
            return Score.BETTER
        return Score.BEST

    def remote_start_allowed(self, rule: ServiceRule, node: str) -> bool:
        """A remote start judges itself "as if it were the only member online": only a restricted domain that
        does not list the node refuses it."""
        if node not in self.position:
            return False
        domain = rule.domain
        return domain is None or not domain.restricted or node in domain.priority

    def best_target(
        self, rule: ServiceRule, record: ServiceRecord, skip: str | None = None
    ) -> tuple[str, Score] | None:
        """best_target_node (§2.3.7): the highest-scoring online node that exclusivity allows, `skip` excluded;
        among equal scores the lower domain priority wins (so a relocation away from the preferred member goes to
        priority 2, not to whichever BETTER member comes last, as central mode's ordered node list did), and a
        remaining tie goes to the later node in membership order. None when no node scores above ILLEGAL.

        Members of the domain are looked at first: while one is online every non-member scores at most GOOD, below
        any member, so the full node list is read only when no member can take the service (linear in the domain
        size, not in the cluster size). The +2 the original gives an exclusive service on an empty node changes
        nothing here: an exclusive service only ever considers empty nodes.
        """
        domain = rule.domain
        best: str | None = None
        best_key = (Score.ILLEGAL, 0)
        if domain is not None:
            members, _ = self.domain_status(domain)
            for node in members:
                if node == skip or self.blocked(rule, node):
                    continue
                key = (self.score(rule, node, record), -domain.priority[node])
                if key >= best_key and key[0] > Score.ILLEGAL:
                    best, best_key = node, key
            if best is not None:
                return best, best_key[0]
            if domain.restricted:
                return None
        for node in reversed(self.online_order):
            if node == skip or self.blocked(rule, node) or (domain is not None and node in domain.priority):
                continue
            return node, self.score(rule, node, record)
        return None

    def why_unplaced(self, rule: ServiceRule, skip: str | None = None) -> tuple[str, RGCode]:
        """The reason best_target found nothing, in the original's words where it had some."""
        candidates = [n for n in self.online_order if n != skip]
        domain = rule.domain
        if domain is not None and domain.restricted:
            members, _ = self.domain_status(domain)
            if not members:
                return "Restricted domain unavailable", RGCode.ENORUN
            candidates = [n for n in members if n != skip]
        if not candidates:
            if skip is not None:
                return f"no allowed node other than {skip}", RGCode.ENORUN
            return "no node is online", RGCode.ENORUN
        if rule.exclusive:
            return "cannot run exclusive: every allowed node runs other services", RGCode.EEXCL
        return "every allowed node runs an exclusive service", RGCode.EEXCL


def dependency_met(rule: ServiceRule, records: Mapping[str, ServiceRecord], catalog: Catalog) -> bool:
    """§2.7: a service with `depend` starts only while that service is started."""
    if rule.depend is None:
        return True
    if rule.depend not in catalog.by_id:
        return False
    dep = records.get(rule.depend)
    return dep is not None and dep.state is State.STARTED


def dependency_reason(rule: ServiceRule, catalog: Catalog) -> str:
    if rule.depend is not None and rule.depend not in catalog.by_id:
        return f"Dependency missing: {rule.depend} does not exist"
    return f"Dependency missing: {rule.depend} is not started"
