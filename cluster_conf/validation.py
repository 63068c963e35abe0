"""Validation: the schema, the semantic checks, and (optionally) lint, as one sorted list of coded reports.

    reports = validate(conf)            # errors and warnings, sorted by line
    errors = [r for r in reports if r.is_error]

Layers:
1. structure (`cluster_conf.structure`): the RelaxNG schema's rules checked in one Python pass (every
   violation, precisely located), plus unknown/legacy/misplaced elements and repeated sections.
2. the RelaxNG schema itself (`cluster_conf.rng`): run when layer 1 found no schema violation, as a safety
   net; anything it rejects is reported as SCHEMA_INVALID.
3. semantic checks (this module): cross-references and uniqueness, what cman and rgmanager refuse or drop.
4. lint (`cluster_conf.lint`): legal configurations an experienced administrator would still change.

Decisions:
- A service and a vm share rgmanager's namespace only through their full ids (`service:x`, `vm:x` are
  distinct), so two services (or two vms) with one name are an error, while a service and a vm with the same
  name are a warning (SERVICE_VM_NAME_CLASH): luci refuses it, and tools that take bare names become ambiguous.
- Domain members are checked against the nodes only when the file has a <clusternodes> section (rg_test
  inputs have none).
- No report ever contains the value of a secret attribute (`schema.is_secret`).

Every check is linear in the size of the document: dictionaries and sets built in one pass, no XPath.
"""
from __future__ import annotations

import gc
import ipaddress
from collections import Counter

from cluster_conf import lint as lint_checks
from cluster_conf import rng, structure
from cluster_conf.codes import report
from cluster_conf.document import ClusterConf
from cluster_conf.model import element_votes, to_int
from cluster_conf.reports import Report
from cluster_conf.schema import RESOURCE_TYPES
from cluster_conf.structure import Element, Inventory, ResourceUse, label, shown

# Up to this size the RelaxNG safety net runs by default (a few ms); above it, it would dominate the run time
# (~170 ms for 2 MB: unknown-element alternatives keep libxml2 from compiling content models to automata).
RELAXNG_AUTO_LIMIT = 256 * 1024


def validate(conf: ClusterConf, *, lint: bool = True, relaxng: bool | None = None) -> list[Report]:
    """Schema, semantic and (when `lint`) lint reports for `conf`, sorted by line (stable within a line).

    `relaxng`: also run libxml2's RelaxNG validation with the generated schema when the Python pass found no
    schema violation (True: always, False: never, None: for documents up to RELAXNG_AUTO_LIMIT bytes). The
    Python pass applies the same rules; the tests keep both in agreement.
    """
    # The passes allocate tens of thousands of objects that all live until the end: the cyclic collector
    # would only re-scan them (about a tenth of the run time on large files), so it pauses meanwhile.
    collecting = gc.isenabled()
    gc.disable()
    try:
        walk = structure.check(conf)
        reports = list(walk.reports)
        if relaxng is None:
            relaxng = conf.size <= RELAXNG_AUTO_LIMIT
        if relaxng and not walk.schema_failed and not rng.is_valid(conf):
            reports.extend(rng.validate_schema(conf))
        reports.extend(SemanticCheck(conf, walk.inventory).run())
        if lint:
            reports.extend(lint_checks.check(conf, walk.inventory))
    finally:
        if collecting:
            gc.enable()
    reports.sort(key=lambda r: r.line or 0)
    return reports


class SemanticCheck:
    def __init__(self, conf: ClusterConf, inventory: Inventory) -> None:
        self.conf = conf
        self.inv = inventory
        self.reports: list[Report] = []

    def run(self) -> list[Report]:
        self.check_nodes()
        self.check_fencing()
        self.check_domains()
        self.check_services()
        self.check_resources()
        self.check_quorum_options()
        self.check_multicast()
        return self.reports

    def emit(self, code: str, message: str, el: Element, hint: str | None = None) -> None:
        self.reports.append(report(code, message, line=el.sourceline, path=self.conf.path_of(el), hint=hint))

    @staticmethod
    def held_before(index: dict, key: object, el: Element) -> Element | None:
        """Index `el` under `key`; return the earlier element that already holds the key, if any."""
        first = index.setdefault(key, el)
        return None if first is el else first

    # -- nodes ---------------------------------------------------------------------------------------------
    def check_nodes(self) -> None:
        names: dict[str, Element] = {}
        ids: dict[int, Element] = {}
        for node in self.inv.nodes:
            name = node.get("name")
            first = self.held_before(names, name, node) if name is not None else None
            if first is not None:
                self.emit(
                    "NODE_NAME_DUPLICATE",
                    f"{label(node)}: name already used by the clusternode at line {first.sourceline}",
                    node,
                    "give every clusternode its own name (the host name cman finds on that node)",
                )
            raw = node.get("nodeid")
            if raw is None:
                self.emit(
                    "NODEID_MISSING",
                    f"{label(node)}: CCS does not have a nodeid for this node, run 'ccs_tool addnodeids' to fix",
                    node,
                    'add nodeid="N" with a positive number unique in the cluster',
                )
                continue
            nodeid = to_int(raw)
            if nodeid is None or nodeid < 1:
                continue  # the schema check reported it
            first = self.held_before(ids, nodeid, node)
            if first is not None:
                self.emit(
                    "NODEID_DUPLICATE",
                    f"{label(node)}: nodeid {nodeid} already used by {label(first)}",
                    node,
                    "give every clusternode its own nodeid",
                )

    # -- fencing -------------------------------------------------------------------------------------------
    def check_fencing(self) -> None:
        devices: dict[str, Element] = {}
        for fd in self.inv.fence_devices:
            name = fd.get("name")
            if name is None:
                continue
            first = self.held_before(devices, name, fd)
            if first is not None:
                self.emit(
                    "FENCEDEVICE_NAME_DUPLICATE",
                    f"{label(fd)}: name already used by the fencedevice at line {first.sourceline}",
                    fd,
                    "rename one of them and update the nodes' <device name=...> entries",
                )
        for use in self.inv.device_uses:
            name = use.get("name")
            if name is not None and name not in devices:
                node = _owning_node(use)
                owner = f"{label(node)}: " if node is not None else ""
                self.emit(
                    "FENCE_DEVICE_UNDEFINED",
                    f"{owner}fence device {shown(name)} is not defined in <fencedevices>",
                    use,
                    structure.did_you_mean(name, devices) or "add a <fencedevice> with that name, or fix the name",
                )
        seen: dict[tuple[Element, str], Element] = {}
        for method in self.inv.methods:
            name = method.get("name")
            fence = method.getparent()
            if name is None or fence is None:
                continue
            key = (fence, name)
            if key in seen:
                node = _owning_node(method)
                self.emit(
                    "METHOD_NAME_DUPLICATE",
                    f"{label(node) if node is not None else 'fence'}: method {shown(name)} is defined twice",
                    method,
                    "give each fence method of a node its own name (they are tried in order)",
                )
            else:
                seen[key] = method

    # -- failover domains ----------------------------------------------------------------------------------
    def check_domains(self) -> None:
        check_members = "clusternodes" in self.inv.sections
        node_names = {n.get("name") for n in self.inv.nodes}
        domains: dict[str, Element] = {}
        for domain in self.inv.domains:
            name = domain.get("name")
            if name is None:
                continue
            if self.held_before(domains, name, domain) is not None:
                self.emit(
                    "DOMAIN_NAME_DUPLICATE",
                    f"#31: Domain {name} defined multiple times",
                    domain,
                    "rename or merge the two failover domains",
                )
        members: set[tuple[Element, str]] = set()
        for member in self.inv.domain_nodes:
            name = member.get("name")
            domain = member.getparent()
            if name is None or domain is None:
                continue
            key = (domain, name)
            if key in members:
                self.emit(
                    "DOMAIN_NODE_DUPLICATE",
                    f"#30: Node {name} defined multiple times in domain {domain.get('name', '')}",
                    member,
                    "list each node once per failover domain",
                )
            members.add(key)
            if check_members and name not in node_names:
                self.emit(
                    "DOMAIN_NODE_UNKNOWN",
                    f"failover domain {shown(domain.get('name', ''))}: node {shown(name)} is not a clusternode",
                    member,
                    structure.did_you_mean(name, [n for n in node_names if n]) or "add the node, or remove it here",
                )

    # -- services ------------------------------------------------------------------------------------------
    def check_services(self) -> None:
        domains = {d.get("name") for d in self.inv.domains}
        by_id: dict[str, Element] = {}
        bare: dict[str, Element] = {}
        for svc in self.inv.services:
            name = svc.get("name") or svc.get("ref")
            domain = svc.get("domain")
            if domain is not None and domain not in domains:
                self.emit(
                    "SERVICE_DOMAIN_UNDEFINED",
                    f"{label(svc)}: failover domain {shown(domain)} does not exist",
                    svc,
                    structure.did_you_mean(domain, [d for d in domains if d])
                    or "define the domain under <failoverdomains>, or remove domain=",
                )
            if name is None:
                continue
            sid = f"{svc.tag}:{name}"
            if sid in by_id:
                self.emit(
                    "SERVICE_NAME_DUPLICATE",
                    f"{label(svc)}: a {svc.tag} with this name is already defined at line {by_id[sid].sourceline}",
                    svc,
                    f"rename one of them; rgmanager knows a {svc.tag} only by its name",
                )
                continue
            by_id[sid] = svc
            if name in bare and bare[name].tag != svc.tag:
                self.emit(
                    "SERVICE_VM_NAME_CLASH",
                    f"{label(svc)}: a {bare[name].tag} has the same name (line {bare[name].sourceline})",
                    svc,
                    "use distinct names; luci refuses this, and commands given a bare name become ambiguous",
                )
            bare.setdefault(name, svc)
        self.check_dependencies(by_id, bare)

    def check_dependencies(self, by_id: dict[str, Element], bare: dict[str, Element]) -> None:
        edges: dict[str, str] = {}
        for sid, svc in by_id.items():
            depend = svc.get("depend")
            if depend is None:
                continue
            if depend in by_id:
                edges[sid] = depend
                continue
            hint = "name an existing service as service:NAME (or a vm as vm:NAME)"
            if ":" not in depend and depend in bare:
                hint = f'write depend="{bare[depend].tag}:{depend}"'
            self.emit("DEPEND_UNRESOLVED", f"{label(svc)}: depend {shown(depend)} names no service or vm", svc, hint)
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for start in edges:
            path: list[str] = []
            current: str | None = start
            while current is not None and state.get(current, 0) == 0:
                state[current] = 1
                path.append(current)
                current = edges.get(current)
            if current is not None and state.get(current) == 1:
                cycle = path[path.index(current) :]
                svc = by_id[min(cycle, key=lambda s: by_id[s].sourceline or 0)]
                self.emit(
                    "DEPEND_CYCLE",
                    f"{label(svc)}: services depend on each other in a cycle: {' -> '.join([*cycle, cycle[0]])}",
                    svc,
                    "remove one depend= so that the dependencies form a chain",
                )
            for sid in path:
                state[sid] = 2

    # -- resources -----------------------------------------------------------------------------------------
    def check_resources(self) -> None:
        uses = self.inv.resources
        globals_by_type: dict[str, dict[str, ResourceUse]] = {}
        for use in uses:
            if use.is_global and not use.is_ref and use.rtype is not None:
                key = use.key
                if key is not None:
                    globals_by_type.setdefault(use.type, {}).setdefault(key, use)
        self.check_definition_keys(uses)
        ref_counts: Counter[tuple[str, str]] = Counter()
        for use in uses:
            if use.rtype is None:
                continue
            if use.is_ref and not use.is_global:
                self.check_reference(use, globals_by_type, ref_counts)
            self.check_child_rule(use)
        for el in self.inv.special:
            self.check_thresholds(el)

    def check_definition_keys(self, uses: list[ResourceUse]) -> None:
        """Primary keys and unique parameters, per type, over every definition (global or inline).

        Services and vms are left to SERVICE_NAME_DUPLICATE, ip addresses to IP_ADDRESS_DUPLICATE (lint: rgmanager
        keeps running, only without the second copy).
        """
        seen: dict[tuple[str, str], dict[str, ResourceUse]] = {}  # (type, param) -> value -> first definition
        for use in uses:
            rtype = use.rtype
            if rtype is None or use.is_ref:
                continue
            get = use.el.get
            for param in _KEY_PARAMS.get(rtype.name, ()):
                value = get(param.name)
                if value is None:
                    continue
                by_value = seen.get((rtype.name, param.name))
                if by_value is None:
                    by_value = seen[(rtype.name, param.name)] = {}
                first = by_value.get(value)
                if first is None:
                    by_value[value] = use
                    continue
                where = "global resource" if first.is_global else "resource"
                if param.primary:
                    self.emit(
                        "RESOURCE_KEY_DUPLICATE",
                        f"{label(use.el)}: a {where} of type {rtype.name} with this {param.name} is already "
                        f"defined at line {first.el.sourceline}; rgmanager keeps only the first",
                        use.el,
                        f"give each {rtype.name} its own {param.name}, or use ref= to share one definition",
                    )
                else:
                    self.emit(
                        "RESOURCE_UNIQUE_DUPLICATE",
                        f"{label(use.el)}: {param.name} {shown(value)} is already used by {label(first.el)} "
                        f"(line {first.el.sourceline}); it must be unique among {rtype.name} resources",
                        use.el,
                        f"use a different {param.name}, or refer to the existing resource with ref=",
                    )

    def check_reference(
        self,
        use: ResourceUse,
        globals_by_type: dict[str, dict[str, ResourceUse]],
        ref_counts: Counter[tuple[str, str]],
    ) -> None:
        rtype = use.rtype
        assert rtype is not None
        ref = use.el.get("ref", "")
        if ref not in globals_by_type.get(rtype.name, {}):
            self.emit(
                "RESOURCE_REF_UNRESOLVED",
                f"<{rtype.name} ref={shown(ref)}>: no global {rtype.name} resource has {rtype.primary} {shown(ref)}",
                use.el,
                structure.did_you_mean(ref, globals_by_type.get(rtype.name, {}))
                or f"define <{rtype.name} {rtype.primary}=...> under <rm><resources>, or fix the reference",
            )
            return
        ref_counts[(rtype.name, ref)] += 1
        limit = rtype.max_instances
        if limit is not None and not rtype.top_level and ref_counts[(rtype.name, ref)] > limit:
            self.emit(
                "RESOURCE_MAX_INSTANCES",
                f"Warning: Max references exceeded for resource {ref} (type {rtype.name}); "
                f"rgmanager drops this reference (a {rtype.name} may be used {limit} time(s))",
                use.el,
                f"use each {rtype.name} in one place only; define another {rtype.name} for the other service",
            )

    def check_child_rule(self, use: ResourceUse) -> None:
        parent = use.parent
        if parent is None or parent.rtype is None:
            return
        rule = parent.rtype.child_rule(use.type)
        if rule is not None and rule.forbid:
            self.emit(
                "RESOURCE_CHILD_FORBIDDEN",
                f"{label(use.el)}: a {parent.type} resource may not contain a {use.type} resource",
                use.el,
                f"move the <{use.type}> out of the <{parent.type}>, e.g. under a <fs> or the service itself",
            )

    def check_thresholds(self, el: Element) -> None:
        for count, window in (("__max_failures", "__failure_expire_time"), ("__max_restarts", "__restart_expire_time")):
            has_count, has_window = el.get(count) is not None, el.get(window) is not None
            if has_count != has_window:
                present, absent = (count, window) if has_count else (window, count)
                self.emit(
                    "THRESHOLD_INCOMPLETE",
                    f"{label(el)}: {present} is set without {absent}; rgmanager needs both and ignores it",
                    el,
                    f"add {absent}, or remove {present}",
                )

    # -- quorum options ------------------------------------------------------------------------------------
    def check_quorum_options(self) -> None:
        cman = self.inv.first("cman")
        if cman is not None and cman.get("two_node") == "1":
            nodes = self.inv.nodes
            expected = cman.get("expected_votes")
            votes = [element_votes(n) for n in nodes]
            if len(nodes) != 2 or any(v != 1 for v in votes) or (expected is not None and expected != "1"):
                self.emit(
                    "TWO_NODE_INVALID",
                    "the two-node option requires exactly two nodes with one vote each and expected votes of 1 "
                    f"(nodes: {len(nodes)}, votes: {sum(votes)}, expected_votes: {expected or 'not set'})",
                    cman,
                    'set expected_votes="1" and give both nodes votes="1", or remove two_node for more nodes',
                )
        quorumd = self.inv.first("quorumd")
        if quorumd is not None:
            has_device, has_label = quorumd.get("device") is not None, quorumd.get("label") is not None
            if has_device == has_label:
                what = "both device= and label=" if has_device else "neither device= nor label="
                self.emit(
                    "QDISK_DEVICE_LABEL",
                    f"quorumd: {what}; qdiskd needs exactly one of them",
                    quorumd,
                    "use label= (found by mkqdisk -L on every node) or device=, not both",
                )

    # -- network -------------------------------------------------------------------------------------------
    def check_multicast(self) -> None:
        """cman and totem multicast addresses must be multicast addresses (224.0.0.0/4, ff00::/8)."""
        places = []
        cman = self.inv.first("cman")
        if cman is not None:
            places += [(el, "addr") for el in cman if el.tag in ("multicast", "altmulticast")]
        totem = self.inv.first("totem")
        if totem is not None:
            places += [(el, "mcastaddr") for el in totem if el.tag == "interface"]
        for el, attr in places:
            value = el.get(attr)
            if value is None:
                continue
            try:
                multicast = ipaddress.ip_address(value.strip()).is_multicast
            except ValueError:
                multicast = False
            if not multicast:
                self.emit(
                    "MULTICAST_ADDR_INVALID",
                    f"{el.tag}: {attr} {shown(value)} is not a multicast address",
                    el,
                    "use an address in 239.192.0.0/16 (cman's own range) or ff15::/16, or remove it to let cman "
                    "derive one from the cluster id",
                )


_KEY_PARAMS = {
    name: tuple(p for p in rtype.params if p.unique or p.primary)
    for name, rtype in RESOURCE_TYPES.items()
    if not rtype.top_level and name != "ip"
}


def _owning_node(el: Element) -> Element | None:
    for ancestor in el.iterancestors("clusternode"):
        return ancestor
    return None

