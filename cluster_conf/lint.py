"""Lint: configurations cman and rgmanager accept, but an experienced administrator would change.

Every finding is a warning with a one-line hint. Each check rests on documented behaviour (rhcs-facts §1, §2,
§5, §7) rather than taste; checks that would fire on most healthy clusters (a service without a failover
domain, an unused failover domain) are deliberately left out.
"""
from __future__ import annotations

import ipaddress
import os

from cluster_conf.codes import report
from cluster_conf.document import ClusterConf
from cluster_conf.model import element_votes, to_int
from cluster_conf.quorum import qdisk_votes as default_votes
from cluster_conf.reports import Report
from cluster_conf.schema import is_true, parse_time
from cluster_conf.structure import Element, Inventory, ResourceUse, label, shown

MAX_CLUSTER_NAME = 15  # cman's limit (16 bytes with the terminating NUL); luci enforces it too
MIN_TOKEN_MS = 1000
MIN_POST_JOIN_DELAY = 3  # the value Red Hat's documentation uses; below it nodes booting together fence each other


class Lint:
    def __init__(self, conf: ClusterConf, inventory: Inventory) -> None:
        self.conf = conf
        self.inv = inventory
        self.reports: list[Report] = []

    def warn(self, code: str, message: str, el: Element, hint: str) -> None:
        self.reports.append(report(code, message, line=el.sourceline, path=self.conf.path_of(el), hint=hint))

    def run(self) -> list[Report]:
        self.cluster_name()
        self.node_names()
        self.fencing()
        self.fence_daemon()
        self.quorum()
        self.totem()
        self.domains()
        self.services()
        self.resources()
        return self.reports

    # -- cluster -------------------------------------------------------------------------------------------
    def cluster_name(self) -> None:
        name = self.inv.root.get("name")
        if name is not None and len(name) > MAX_CLUSTER_NAME:
            self.warn(
                "CLUSTER_NAME_TOO_LONG",
                f"cluster name {shown(name)} has {len(name)} characters; cman and luci accept at most "
                f"{MAX_CLUSTER_NAME}",
                self.inv.root,
                f"choose a name of at most {MAX_CLUSTER_NAME} characters (renaming needs a full cluster restart)",
            )

    def node_names(self) -> None:
        nodes = self.inv.nodes
        if not nodes:
            where = self.inv.first("clusternodes")
            self.warn(
                "NO_NODES",
                "no clusternode is defined",
                where if where is not None else self.inv.root,
                "add the nodes under <clusternodes> (ccs_tool addnode)",
            )
            return
        by_ip = [n for n in nodes if _is_ip(n.get("name", ""))]
        if by_ip and len(by_ip) != len(nodes):
            self.warn(
                "NODE_NAMES_MIXED",
                f"{label(by_ip[0])}: some nodes are named by IP address, others by host name",
                by_ip[0],
                "name all nodes the same way (host names that resolve to the cluster interface)",
            )

    # -- fencing -------------------------------------------------------------------------------------------
    def fencing(self) -> None:
        inv = self.inv
        used = {d.get("name") for d in inv.device_uses}
        if inv.nodes and not inv.fence_devices:
            where = inv.first("fencedevices")
            self.warn(
                "NO_FENCE_DEVICES",
                "no fence device is defined: a failed node cannot be fenced and recovery will block",
                where if where is not None else inv.root,
                "define a <fencedevice> (power switch, IPMI, ...) and a fence method for every node",
            )
        if inv.fence_devices:
            fenced = {_node_of(method) for method in inv.methods}
            for node in inv.nodes:
                if node not in fenced:
                    self.warn(
                        "NODE_NOT_FENCED",
                        f"{label(node)}: no fence method; if it fails, recovery blocks until someone intervenes",
                        node,
                        "add <fence><method name=\"1\"><device name=\"...\"/></method></fence>",
                    )
        for method in inv.methods:
            if not any(child.tag == "device" for child in method):
                node = _node_of(method)
                self.warn(
                    "METHOD_NO_DEVICES",
                    f"{label(node) if node is not None else 'fence'}: method {shown(method.get('name', ''))} "
                    "lists no device",
                    method,
                    "add a <device name=\"...\"/> to the method, or remove the method",
                )
        for fd in inv.fence_devices:
            name = fd.get("name")
            agent = os.path.basename(fd.get("agent", ""))
            if name not in used:
                self.warn(
                    "FENCE_DEVICE_UNUSED",
                    f"{label(fd)}: defined but no node's fence method uses it",
                    fd,
                    "use it in a node's fence method, or remove it",
                )
            elif agent == "fence_manual":
                self.warn(
                    "FENCE_MANUAL",
                    f"{label(fd)}: fence_manual waits for an operator to run fence_ack_manual after every failure",
                    fd,
                    "use a real fence device (power switch, IPMI, SAN); fence_manual is not supported",
                )

    def fence_daemon(self) -> None:
        fd = self.inv.first("fence_daemon")
        if fd is None:
            return
        if fd.get("clean_start") == "1":
            self.warn(
                "CLEAN_START",
                "fence_daemon: clean_start=1 skips startup fencing; a node that was not cleanly stopped is "
                "trusted and shared storage can be corrupted",
                fd,
                "remove clean_start (default 0) unless every node is known to be clean at startup",
            )
        delay = to_int(fd.get("post_join_delay"))
        if delay is not None and delay < MIN_POST_JOIN_DELAY and len(self.inv.nodes) > 2:
            self.warn(
                "POST_JOIN_DELAY_LOW",
                f"fence_daemon: post_join_delay={delay} s; with {len(self.inv.nodes)} nodes, nodes that boot a "
                "little later are fenced at startup",
                fd,
                "use at least 3 seconds; 20 or more if nodes boot at different speeds",
            )

    # -- quorum --------------------------------------------------------------------------------------------
    def quorum(self) -> None:
        inv = self.inv
        nodes = inv.nodes
        cman = inv.first("cman")
        quorumd = inv.first("quorumd")
        two_node = cman is not None and cman.get("two_node") == "1"
        node_total = sum(element_votes(n) for n in nodes)
        qdisk_votes = 0
        if quorumd is not None:
            explicit = to_int(quorumd.get("votes"))
            qdisk_votes = default_votes(explicit, len(nodes))
            self.qdisk(quorumd, two_node, explicit)
        if len(nodes) >= 2 and len(nodes) % 2 == 0 and not two_node and quorumd is None:
            self.warn(
                "EVEN_NODE_COUNT",
                f"{len(nodes)} nodes, neither two_node nor a quorum disk: an even split leaves no half quorate",
                cman if cman is not None else inv.root,
                'add a quorum disk (<quorumd>), or a node; for exactly two nodes use two_node="1"',
            )
        expected = to_int(cman.get("expected_votes")) if cman is not None else None
        if expected is None or two_node or not nodes:
            return
        available = node_total + qdisk_votes
        if expected > available:
            self.warn(
                "EXPECTED_VOTES_UNREACHABLE",
                f"cman: expected_votes={expected} but the nodes and quorum disk provide only {available} votes",
                cman,
                f"set expected_votes to {available} (the sum of node votes plus quorum-disk votes)",
            )
        elif expected < available // 2 + 1:
            self.warn(
                "EXPECTED_VOTES_LOW",
                f"cman: expected_votes={expected} is below a majority of the {available} configured votes; "
                "two partitions can both be quorate (split brain)",
                cman,
                f"set expected_votes to {available}, or remove it to use the sum of the votes",
            )

    def qdisk(self, quorumd: Element, two_node: bool, explicit_votes: int | None) -> None:
        nodes = self.inv.nodes
        if two_node:
            self.warn(
                "TWO_NODE_WITH_QDISK",
                "two_node=1 together with a quorum disk: both nodes stay quorate without the disk",
                quorumd,
                "remove two_node and set expected_votes to 3 (2 nodes + 1 quorum-disk vote)",
            )
        odd = next((n for n in nodes if element_votes(n) != 1), None)
        if odd is not None:
            self.warn(
                "QDISK_NODE_VOTES",
                f"quorum disk with {label(odd)} having {element_votes(odd)} votes; qdisk assumes one vote per node",
                quorumd,
                "give every node votes=\"1\" (luci refuses a quorum disk otherwise)",
            )
        heuristics = [h for h in self.inv.heuristics if h.getparent() is quorumd]
        min_score = to_int(quorumd.get("min_score"))
        if heuristics and min_score is not None:
            total = sum(to_int(h.get("score", "1")) or 0 for h in heuristics)
            if min_score > total:
                self.warn(
                    "QDISK_MIN_SCORE_UNREACHABLE",
                    f"quorumd: min_score={min_score} but the heuristics can score at most {total}; the quorum "
                    "disk never contributes its votes",
                    quorumd,
                    f"lower min_score to at most {total}, or remove it (default: half the total, rounded up)",
                )
        if explicit_votes is not None and explicit_votes < len(nodes) - 1:
            self.warn(
                "QDISK_VOTES_LOW",
                f"quorumd: votes={explicit_votes} is below node count - 1 ({len(nodes) - 1}); the last node "
                "standing cannot stay quorate",
                quorumd,
                f"set votes to {len(nodes) - 1}, or remove it (that is the default)",
            )

    def totem(self) -> None:
        totem = self.inv.first("totem")
        if totem is None:
            return
        token = to_int(totem.get("token"))
        if token is not None and token < MIN_TOKEN_MS:
            self.warn(
                "TOTEM_TOKEN_LOW",
                f"totem: token={token} ms; a short network hiccup or a busy node then triggers a fence",
                totem,
                "use at least 1000 ms; the default is 10000",
            )
        consensus = to_int(totem.get("consensus"))
        effective_token = token if token is not None else 10000
        if consensus is not None and consensus < 1.2 * effective_token:
            self.warn(
                "TOTEM_CONSENSUS_LOW",
                f"totem: consensus={consensus} ms is below 1.2 x token ({effective_token} ms); corosync refuses "
                "to start with it",
                totem,
                f"remove consensus (the default follows token) or set it to at least {int(1.2 * effective_token)}",
            )

    # -- domains and services ------------------------------------------------------------------------------
    def domains(self) -> None:
        for domain in self.inv.domains:
            members = [c for c in domain if c.tag == "failoverdomainnode"]
            ordered = is_true(domain.get("ordered"))
            if not members and is_true(domain.get("restricted")):
                self.warn(
                    "DOMAIN_EMPTY",
                    f"{label(domain)}: restricted domain without members; its services can run nowhere",
                    domain,
                    "add <failoverdomainnode> entries, or make the domain unrestricted",
                )
            if ordered:
                for member in members:
                    if member.get("priority") is None:
                        self.warn(
                            "DOMAIN_PRIORITY_MISSING",
                            f"{label(domain)}: member {shown(member.get('name', ''))} has no priority; the "
                            "original rgmanager ranked it above priority 1, this engine ranks it last",
                            member,
                            'give it priority="N" (1 is most preferred)',
                        )
            elif any(m.get("priority") is not None for m in members):
                self.warn(
                    "DOMAIN_PRIORITY_IGNORED",
                    f"{label(domain)}: priorities are set but the domain is not ordered, so they are ignored",
                    domain,
                    'set ordered="1" if the priorities should count, or drop them',
                )

    def services(self) -> None:
        domains = {d.get("name"): d for d in self.inv.domains}
        rm = self.inv.first("rm")
        central = rm is not None and is_true(rm.get("central_processing"))
        for svc in self.inv.services:
            domain = domains.get(svc.get("domain"))
            if domain is not None and is_true(svc.get("exclusive")) and is_true(domain.get("restricted")):
                members = [c for c in domain if c.tag == "failoverdomainnode"]
                if len(members) == 1:
                    self.warn(
                        "EXCLUSIVE_SINGLE_NODE",
                        f"{label(svc)}: exclusive in restricted one-node domain {shown(domain.get('name', ''))}; "
                        "if anything else runs there, it cannot start anywhere",
                        svc,
                        "add nodes to the domain, or drop exclusive",
                    )
            self.restart_policy(svc)
            if svc.get("depend_mode") == "soft" and svc.get("depend") is not None and not central:
                self.warn(
                    "DEPEND_SOFT_IGNORED",
                    f"{label(svc)}: depend_mode=soft is only honoured with central processing; it acts as hard",
                    svc,
                    'set <rm central_processing="1"> (needs an rgmanager restart on all nodes), or drop depend_mode',
                )

    def restart_policy(self, svc: Element) -> None:
        if svc.get("recovery", "restart") not in ("restart", "restart-disable"):
            return
        max_restarts = to_int(svc.get("max_restarts", "0")) or 0
        try:
            expire = parse_time(svc.get("restart_expire_time", "0"))
        except ValueError:
            return  # TIME_VALUE_INVALID already
        if max_restarts > 0 and expire == 0:
            self.warn(
                "RESTARTS_NEVER_EXPIRE",
                f"{label(svc)}: max_restarts={max_restarts} without restart_expire_time; restarts are never "
                "forgotten, so the service eventually relocates after any max_restarts failures",
                svc,
                'add restart_expire_time (e.g. "10m")',
            )

    # -- resources -----------------------------------------------------------------------------------------
    def resources(self) -> None:
        referenced = {(u.type, u.el.get("ref")) for u in self.inv.resources if u.is_ref}
        addresses: dict[str, Element] = {}
        for use in self.inv.resources:
            el = use.el
            if self._unused_global(use, referenced):
                self.warn(
                    "RESOURCE_UNUSED",
                    f"{label(el)}: global resource that no service uses",
                    el,
                    f"use it with <{use.type} ref=\"{use.key}\"/> in a service, or remove it",
                )
            address = use.el.get("address") if use.type == "ip" and not use.is_ref else None
            if address:
                address = address.split("/")[0].strip()
                first = addresses.get(address)
                if first is None:
                    addresses[address] = el
                else:
                    self.warn(
                        "IP_ADDRESS_DUPLICATE",
                        f"{label(el)}: address already defined at line {first.sourceline}; rgmanager drops "
                        "this copy, so its service starts without it",
                        el,
                        "define the address once (under <resources>) and use it in one service only",
                    )
        for el in self.inv.special:
            if el.get("__max_restarts") is not None and el.get("__independent_subtree") not in _INDEPENDENT:
                self.warn(
                    "THRESHOLD_NOT_INDEPENDENT",
                    f"{label(el)}: __max_restarts only applies to an independent subtree",
                    el,
                    'add __independent_subtree="1", or remove __max_restarts/__restart_expire_time',
                )


    @staticmethod
    def _unused_global(use: ResourceUse, referenced: set[tuple[str, str | None]]) -> bool:
        rtype = use.rtype
        if rtype is None or not use.is_global or use.is_ref or rtype.top_level:
            return False
        return (use.type, use.key) not in referenced


_INDEPENDENT = ("1", "yes", "2", "non-critical")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _node_of(el: Element) -> Element | None:
    for ancestor in el.iterancestors("clusternode"):
        return ancestor
    return None


def check(conf: ClusterConf, inventory: Inventory) -> list[Report]:
    return Lint(conf, inventory).run()
