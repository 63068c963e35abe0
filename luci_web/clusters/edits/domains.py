"""Failover domains: the pure edit functions the console's Failover Domains tab and the API share, and the one
way to show a domain as a dict (name, the three flags, members with priorities in document order)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cluster_conf import ClusterConf, edit
from cluster_conf.model import FailoverDomain, view
from cluster_conf.reports import ConfigError, error

Members = list[tuple[str, int | None]]


def domain_dict(domain: FailoverDomain) -> dict[str, Any]:
    return {"name": domain.name, "ordered": domain.ordered, "restricted": domain.restricted,
            "nofailback": domain.nofailback,
            "members": [{"node": m.name, "priority": m.priority} for m in domain.nodes]}


# -- edit functions (pure: data in, cluster_conf.edit calls out) ----------------------------------------------
def add_domain(name: str, ordered: bool, restricted: bool, nofailback: bool,
               members: Members) -> Callable[[ClusterConf], None]:
    def apply(conf: ClusterConf) -> None:
        edit.add_domain(conf, name, ordered=ordered, restricted=restricted, nofailback=nofailback,
                        members=members)
    return apply


def update_domain(name: str, ordered: bool, restricted: bool, nofailback: bool,
                  members: Members) -> Callable[[ClusterConf], None]:
    """Flags set; members not wanted removed, new ones appended, priorities of kept ones set in place (so a
    member's unknown attributes stay)."""
    def apply(conf: ClusterConf) -> None:
        edit.set_domain_attrs(conf, name, ordered=ordered, restricted=restricted, nofailback=nofailback)
        element = edit.find_domain(conf, name)
        assert element is not None
        wanted = dict(members)
        present = {m.get("name"): m for m in element if m.tag == "failoverdomainnode"}
        for node in present:
            if node not in wanted:
                edit.remove_domain_node(conf, name, node)
        for node, priority in members:
            if node not in present:
                edit.add_domain_node(conf, name, node, priority)
                continue
            current = present[node].get("priority")
            if priority is None and current is not None:
                del present[node].attrib["priority"]
            elif priority is not None and current != str(priority):
                if not 1 <= priority <= 100:
                    raise ConfigError(error(
                        "BAD_ARGUMENT", f"priority must be between 1 and 100, not {priority}"), conf.source)
                present[node].set("priority", str(priority))
        conf.mark_edited()
    return apply


def patch_domain(name: str, *, ordered: bool | None = None, restricted: bool | None = None,
                 nofailback: bool | None = None, members: Members | None = None) -> Callable[[ClusterConf], None]:
    """update_domain for the values given; None keeps the domain's current flag or member list."""
    def apply(conf: ClusterConf) -> None:
        domain = view(conf).domain(name)
        if domain is None:
            edit.set_domain_attrs(conf, name)  # raises DOMAIN_NOT_FOUND
            return
        kept = [(m.name, m.priority) for m in domain.nodes]
        update_domain(name, domain.ordered if ordered is None else ordered,
                      domain.restricted if restricted is None else restricted,
                      domain.nofailback if nofailback is None else nofailback,
                      kept if members is None else members)(conf)
    return apply


def delete_domain(name: str) -> Callable[[ClusterConf], None]:
    def apply(conf: ClusterConf) -> None:
        edit.remove_domain(conf, name)
    return apply


def members_are_nodes(members: Members, then: Callable[[ClusterConf], None]) -> Callable[[ClusterConf], None]:
    """`then`, after checking that every member is a node of the cluster: a member that is not one is a bad
    value in the request (BAD_ARGUMENT), not a missing item of the URL."""
    def apply(conf: ClusterConf) -> None:
        nodes = {n.name for n in view(conf).nodes}
        for node, _ in members:
            if node not in nodes:
                raise ConfigError(error("BAD_ARGUMENT", f"member {node} is not a node of the cluster"), conf.source)
        then(conf)
    return apply
