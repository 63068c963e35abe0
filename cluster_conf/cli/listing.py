"""The ccs_tool list commands as pure functions: a ClusterView in, text or a JSON-ready dict out.

Text layouts of lsnode and lsfence are the original ccs_tool's (rhcs-facts §4.3); the others are ours and are
documented in docs/cli.md. Secret attribute values (schema.is_secret) are always shown as ********.
"""
from __future__ import annotations

from collections.abc import Iterator

from cluster_conf.cli.common import format_properties, masked
from cluster_conf.model import ClusterView, FailoverDomain, FenceDevice, Node, Resource, Service
from cluster_conf.schema import resource_type

NODE_HEADER = "Nodename                        Votes Nodeid Fencetype"
FENCE_HEADER = "Name             Agent"
SERVICE_COLUMNS = ("Service", "Domain", "Autostart", "Exclusive", "Recovery")
DOMAIN_COLUMNS = ("Name", "Ordered", "Restricted", "Nofailback", "Nodes")
RESOURCE_COLUMNS = ("Type", "Key", "Properties")


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


# -- lsnode ------------------------------------------------------------------------------------------------
def lsnode_text(view: ClusterView, *, verbose: bool = False) -> str:
    version = view.attrs.get("config_version", "")
    lines = ["", f"Cluster name: {view.name or ''}, config_version: {version}", ""]
    if view.multicast_addr:
        lines += [f"Multicast address for cluster: {view.multicast_addr}", ""]
    lines.append(NODE_HEADER)
    for node in view.nodes:
        lines.append(_node_row(node))
        if verbose:
            lines.extend(_node_details(node))
    return "\n".join(lines) + "\n"


def _node_row(node: Node) -> str:
    votes = node.votes if node.votes is not None else 0
    nodeid = node.nodeid if node.nodeid is not None else 0
    return f"{node.name:<32} {votes:3d}  {nodeid:3d}    {node.fence_type}"


def _node_details(node: Node) -> Iterator[str]:
    for altname in node.altnames:
        yield f" altname name={altname}"
    props = format_properties(node.attrs, skip=("name", "votes", "nodeid"))
    if props:
        yield f"  Node properties: {props}"
    first = _first_device_params(node)
    fence_props = format_properties(first, skip=("name", "agent")) if first else ""
    if fence_props:
        yield f"  Fence properties: {fence_props}"


def _first_device_params(node: Node) -> dict[str, str] | None:
    for method in node.methods:
        for device in method.devices:
            return device.params
    return None


def lsnode_json(view: ClusterView) -> dict:
    return {
        "cluster": view.name,
        "config_version": view.config_version,
        "multicast_addr": view.multicast_addr,
        "nodes": [_node_dict(n) for n in view.nodes],
    }


def _node_dict(node: Node) -> dict:
    return {
        "name": node.name,
        "nodeid": node.nodeid,
        "votes": node.votes,
        "fence_type": node.fence_type or None,
        "altnames": list(node.altnames),
        "attrs": masked(node.attrs, skip=("name", "votes", "nodeid")),
        "fence_methods": [
            {"name": m.name, "devices": [{"name": d.name, "params": masked(d.params)} for d in m.devices]}
            for m in node.methods
        ],
        "unfence": [{"name": d.name, "params": masked(d.params)} for d in node.unfence],
    }


# -- lsfence -----------------------------------------------------------------------------------------------
def lsfence_text(view: ClusterView, *, verbose: bool = False) -> str:
    lines = [FENCE_HEADER]
    for device in view.fence_devices:
        lines.append(f"{device.name:<16} {device.agent or ''}")
        props = format_properties(device.params) if verbose else ""
        if props:
            lines.append(f"  Properties: {props}")
    return "\n".join(lines) + "\n"


def fence_device_users(view: ClusterView, name: str) -> list[str]:
    """Nodes whose fence methods or unfence section name the device."""
    users = []
    for node in view.nodes:
        refs = [d for m in node.methods for d in m.devices] + list(node.unfence)
        if any(d.name == name for d in refs):
            users.append(node.name)
    return users


def lsfence_json(view: ClusterView) -> dict:
    return {"fence_devices": [_fence_dict(view, d) for d in view.fence_devices]}


def _fence_dict(view: ClusterView, device: FenceDevice) -> dict:
    return {
        "name": device.name,
        "agent": device.agent,
        "params": masked(device.params),
        "used_by": fence_device_users(view, device.name),
    }


# -- lsdomain ----------------------------------------------------------------------------------------------
_DOMAIN_ROW = "{:<20} {:<7} {:<10} {:<10} {}"


def lsdomain_text(view: ClusterView, *, verbose: bool = False) -> str:
    lines = [_DOMAIN_ROW.format(*DOMAIN_COLUMNS).rstrip()]
    for domain in view.domains:
        members = " ".join(_member(n.name, n.priority, domain.ordered) for n in domain.nodes)
        flags = (_yes_no(domain.ordered), _yes_no(domain.restricted), _yes_no(domain.nofailback))
        lines.append(_DOMAIN_ROW.format(domain.name, *flags, members).rstrip())
        if verbose:
            lines.extend(_domain_details(view, domain))
    return "\n".join(lines) + "\n"


def _member(name: str, priority: int | None, ordered: bool) -> str:
    return f"{name}:{priority}" if ordered and priority is not None else name


def _domain_details(view: ClusterView, domain: FailoverDomain) -> Iterator[str]:
    for member in domain.nodes:
        priority = "" if member.priority is None else f" priority={member.priority}"
        yield f"  Node: {member.name}{priority}"
    users = domain_users(view, domain.name)
    if users:
        yield f"  Used by: {' '.join(users)}"


def domain_users(view: ClusterView, name: str) -> list[str]:
    return [s.id for s in view.services if s.domain == name]


def lsdomain_json(view: ClusterView) -> dict:
    return {
        "domains": [
            {
                "name": d.name,
                "ordered": d.ordered,
                "restricted": d.restricted,
                "nofailback": d.nofailback,
                "nodes": [{"name": n.name, "priority": n.priority} for n in d.nodes],
                "used_by": domain_users(view, d.name),
            }
            for d in view.domains
        ]
    }


# -- lsresource --------------------------------------------------------------------------------------------
_RESOURCE_ROW = "{:<12} {:<24} {}"


def lsresource_text(view: ClusterView, *, verbose: bool = False) -> str:
    lines = [_RESOURCE_ROW.format(*RESOURCE_COLUMNS)]
    for res in view.resources:
        key = res.key or ""
        props = format_properties(res.attrs, skip=(_key_attr(res),))
        lines.append(_RESOURCE_ROW.format(res.type, key, props).rstrip())
        users = resource_users(view, res) if verbose else []
        if users:
            lines.append(f"  Used by: {' '.join(users)}")
    return "\n".join(lines) + "\n"


def _key_attr(res: Resource) -> str:
    if res.ref is not None:
        return "ref"
    rtype = resource_type(res.type)
    return rtype.primary if rtype else "name"


def resource_users(view: ClusterView, res: Resource) -> list[str]:
    """Services whose trees reference the global resource `res` with ref=."""
    return [s.id for s in view.services if any(_refers(c, res) for c in s.children)]


def _refers(node: Resource, target: Resource) -> bool:
    if node.type == target.type and node.ref is not None and node.ref == target.key:
        return True
    return any(_refers(c, target) for c in node.children)


def lsresource_json(view: ClusterView) -> dict:
    return {
        "resources": [
            {"type": r.type, "key": r.key, "attrs": masked(r.attrs), "used_by": resource_users(view, r)}
            for r in view.resources
        ]
    }


# -- lsservice ---------------------------------------------------------------------------------------------
_SERVICE_ROW = "{:<32} {:<16} {:<9} {:<9} {}"
_SERVICE_SHOWN = ("name", "domain", "autostart", "exclusive", "recovery")


def lsservice_text(view: ClusterView, *, verbose: bool = False) -> str:
    lines = [_SERVICE_ROW.format(*SERVICE_COLUMNS)]
    for service in view.services:
        lines.append(_service_row(service))
        if verbose:
            props = format_properties(service.attrs, skip=_SERVICE_SHOWN)
            if props:
                lines.append(f"  Properties: {props}")
        lines.extend(_tree_lines(service.children, depth=1, verbose=verbose))
    return "\n".join(lines) + "\n"


def _service_row(service: Service) -> str:
    return _SERVICE_ROW.format(
        service.id,
        service.domain or "-",
        _yes_no(service.autostart),
        _yes_no(service.exclusive),
        service.recovery,
    )


def _tree_lines(children: tuple[Resource, ...], *, depth: int, verbose: bool) -> Iterator[str]:
    for res in children:
        yield "  " * depth + f"{res.type} {_resource_label(res, verbose)}".rstrip()
        yield from _tree_lines(res.children, depth=depth + 1, verbose=verbose)


def _resource_label(res: Resource, verbose: bool) -> str:
    if verbose:
        return format_properties(res.attrs)
    key_attr = _key_attr(res)
    value = res.attrs.get(key_attr)
    return f"{key_attr}={value}" if value is not None else ""


def lsservice_json(view: ClusterView) -> dict:
    return {
        "services": [
            {
                "id": s.id,
                "kind": s.kind,
                "name": s.name,
                "domain": s.domain,
                "autostart": s.autostart,
                "exclusive": s.exclusive,
                "recovery": s.recovery,
                "attrs": masked(s.attrs, skip=("name",)),
                "resources": [_resource_dict(c) for c in s.children],
            }
            for s in view.services
        ]
    }


def _resource_dict(res: Resource) -> dict:
    return {
        "type": res.type,
        "ref": res.ref,
        "key": res.key,
        "attrs": masked(res.attrs),
        "children": [_resource_dict(c) for c in res.children],
    }
