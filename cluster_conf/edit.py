"""The editing API: every kind of element a console, an API or ccs_tool changes.

Functions mutate the XML tree in place and touch nothing else: unknown elements, unknown attributes and
comments stay where they are, and new elements are appended after their siblings with matching indentation.
Call them inside `with conf.transaction():`, which bumps config_version by exactly one on success and restores
the tree on any exception. Refusals raise ConfigError with a coded Report; where the original ccs_tool had a
message, the message is the same.

    with conf.transaction():
        edit.add_fence_device(conf, "apc", "fence_apc", {"ipaddr": "10.0.0.9", "login": "apc"})
        edit.add_node(conf, "n3", nodeid=3, fence_device="apc", device_params={"port": "3"})
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from lxml import etree

from cluster_conf.document import ClusterConf, indent_new_element
from cluster_conf.reports import ConfigError, error
from cluster_conf.schema import ELEMENTS, RESOURCE_TYPES

SECTIONS = ("cman", "totem", "quorumd", "fence_daemon", "logging", "rm", "dlm", "fence_xvmd", "gfs_controld")


# -- helpers -----------------------------------------------------------------------------------------------
def _fail(conf: ClusterConf, code: str, message: str, element: etree._Element | None = None) -> ConfigError:
    line = element.sourceline if element is not None else None
    path = conf.path_of(element) if element is not None else None
    return ConfigError(error(code, message, line=line, path=path), conf.source)


def _append(parent: etree._Element, tag: str, attrs: Mapping[str, str] | None = None) -> etree._Element:
    """Append <tag attrs/> as the last element child of `parent`, after any trailing comment stays put."""
    child = etree.SubElement(parent, tag)
    for key, value in (attrs or {}).items():
        child.set(key, str(value))
    indent_new_element(child)
    return child


def _remove(element: etree._Element) -> None:
    """Remove an element with its own whitespace, keeping the layout of its neighbours."""
    parent = element.getparent()
    if parent is None:
        return
    prev = element.getprevious()
    tail = element.tail or ""
    before = (prev.tail if prev is not None else parent.text) or ""
    # Text around the element is content: keep all of it. Layout only: the element's tail (the indentation
    # of what follows) takes over.
    joined = before + tail if before.strip() or tail.strip() else tail
    if prev is not None:
        prev.tail = joined or None
    else:
        parent.text = joined or None
    parent.remove(element)
    if len(parent) == 0 and parent.text is not None and not parent.text.strip():
        parent.text = None


def _set_attrs(element: etree._Element, attrs: Mapping[str, str | None]) -> None:
    """Set (or, with None, remove) attributes; existing attributes keep their position."""
    for key, value in attrs.items():
        if value is None:
            element.attrib.pop(key, None)
        else:
            element.set(key, str(value))


def _check_name_attr(conf: ClusterConf, attrs: Mapping[str, object], what: str) -> None:
    if "name" in attrs:
        raise _fail(conf, "BAD_ARGUMENT", f"Can't use \"name\" as a {what} argument name")


def _children(parent: etree._Element | None, tag: str) -> list[etree._Element]:
    return [] if parent is None else [c for c in parent if c.tag == tag]


def _find_named(parent: etree._Element | None, tag: str, name: str, key: str = "name") -> etree._Element | None:
    for child in _children(parent, tag):
        if child.get(key) == name:
            return child
    return None


# -- cluster ---------------------------------------------------------------------------------------------
def new_cluster(
    name: str, *, two_node: bool = False, nodes: int = 0, fence_agent: str | None = None
) -> ClusterConf:
    """The document `ccs_tool create` writes: version 1, empty sections, optional two_node and placeholders."""
    if not name or any(c.isspace() for c in name):
        raise ConfigError(error("BAD_ARGUMENT", f"invalid cluster name {name!r}"))
    conf = ClusterConf.new(name)
    root = conf.root
    if two_node:
        cman = etree.Element("cman", {"two_node": "1", "expected_votes": "1"})
        root.insert(0, cman)
        cman.tail = root.text
    if fence_agent:
        add_fence_device(conf, fence_agent, fence_agent, {})
    clusternodes = conf.section("clusternodes", create=True)
    assert clusternodes is not None
    for i in range(1, nodes + 1):
        # Placeholders are new and distinct, so no lookups: linear even for thousands of nodes.
        node = _append(clusternodes, "clusternode", {"name": f"NEEDNAME-{i:02d}", "votes": "1", "nodeid": str(i)})
        method = _append(_append(node, "fence"), "method", {"name": "single"})
        if fence_agent:
            _append(method, "device", {"name": fence_agent})
    conf.mark_edited()
    return conf


def set_cluster_attrs(conf: ClusterConf, attrs: Mapping[str, str | None]) -> None:
    """Set attributes of <cluster> itself (alias, …). name and config_version are not edited this way."""
    for key in attrs:
        if key in ("name", "config_version"):
            raise _fail(conf, "BAD_ARGUMENT", f"{key} of the cluster cannot be changed this way", conf.root)
    _set_attrs(conf.root, attrs)


def set_section_attrs(conf: ClusterConf, section: str, attrs: Mapping[str, str | None]) -> etree._Element:
    """Set attributes of a cluster-wide section (cman, totem, quorumd, fence_daemon, logging, rm, ...),
    creating the section when it does not exist yet."""
    if section not in SECTIONS:
        raise _fail(conf, "BAD_ARGUMENT", f"unknown section {section!r}; one of: {', '.join(SECTIONS)}")
    element = conf.section(section, create=True)
    assert element is not None
    _set_attrs(element, attrs)
    return element


def remove_section(conf: ClusterConf, section: str) -> None:
    element = conf.section(section)
    if element is None:
        raise _fail(conf, "SECTION_NOT_FOUND", f"<{section}> is not in the configuration")
    _remove(element)


def set_multicast(conf: ClusterConf, addr: str | None) -> None:
    """Set <cman><multicast addr=…/> (None removes it)."""
    cman = conf.section("cman", create=addr is not None)
    if cman is None:
        return
    multicast = cman.find("multicast")
    if addr is None:
        if multicast is not None:
            _remove(multicast)
        return
    if multicast is None:
        multicast = _append(cman, "multicast")
    multicast.set("addr", addr)


def add_heuristic(conf: ClusterConf, program: str, *, score: int = 1, interval: int | None = None,
                  tko: int | None = None) -> etree._Element:
    quorumd = conf.section("quorumd", create=True)
    assert quorumd is not None
    if _find_named(quorumd, "heuristic", program, key="program") is not None:
        raise _fail(conf, "HEURISTIC_EXISTS", f"heuristic {program!r} already exists", quorumd)
    attrs = {"program": program, "score": str(score)}
    if interval is not None:
        attrs["interval"] = str(interval)
    if tko is not None:
        attrs["tko"] = str(tko)
    return _append(quorumd, "heuristic", attrs)


def remove_heuristic(conf: ClusterConf, program: str) -> None:
    element = _find_named(conf.section("quorumd"), "heuristic", program, key="program")
    if element is None:
        raise _fail(conf, "HEURISTIC_NOT_FOUND", f"heuristic {program!r} does not exist")
    _remove(element)


def set_logging_daemon(conf: ClusterConf, name: str, attrs: Mapping[str, str | None]) -> etree._Element:
    """Create or update <logging><logging_daemon name=…/>."""
    logging = conf.section("logging", create=True)
    element = _find_named(logging, "logging_daemon", name)
    if element is None:
        element = _append(logging, "logging_daemon", {"name": name})
    _set_attrs(element, attrs)
    return element


def remove_logging_daemon(conf: ClusterConf, name: str) -> None:
    element = _find_named(conf.section("logging"), "logging_daemon", name)
    if element is None:
        raise _fail(conf, "LOGGING_DAEMON_NOT_FOUND", f"logging_daemon {name!r} does not exist")
    _remove(element)


# -- nodes -----------------------------------------------------------------------------------------------
def find_node(conf: ClusterConf, name: str) -> etree._Element | None:
    return _find_named(conf.section("clusternodes"), "clusternode", name)


def _node(conf: ClusterConf, name: str) -> etree._Element:
    node = find_node(conf, name)
    if node is None:
        raise _fail(conf, "NODE_NOT_FOUND", f"node {name} does not exist in {conf.source}")
    return node


def _used_nodeids(conf: ClusterConf) -> dict[str, str]:
    return {
        n.get("nodeid", ""): n.get("name", "")
        for n in _children(conf.section("clusternodes"), "clusternode")
        if n.get("nodeid")
    }


def add_node(
    conf: ClusterConf,
    name: str,
    *,
    nodeid: int | None = None,
    votes: int | None = None,
    altname: str | None = None,
    fence_device: str | None = None,
    method: str = "single",
    device_params: Mapping[str, str] | None = None,
    attrs: Mapping[str, str] | None = None,
) -> etree._Element:
    """Add a <clusternode>; with `fence_device`, also a fence method holding that device."""
    if find_node(conf, name) is not None:
        raise _fail(conf, "NODE_EXISTS", f"node {name} already exists in {conf.source}")
    if nodeid is not None:
        if nodeid < 1:
            raise _fail(conf, "BAD_ARGUMENT", f"nodeid must be a positive integer, not {nodeid}")
        if str(nodeid) in _used_nodeids(conf):
            raise _fail(conf, "NODEID_IN_USE", f"nodeid {nodeid} already in use")
    if votes is not None and not 0 <= votes <= 255:
        raise _fail(conf, "BAD_ARGUMENT", f"votes must be between 0 and 255, not {votes}")
    if fence_device is not None and find_fence_device(conf, fence_device) is None:
        raise _fail(conf, "FENCE_DEVICE_NOT_FOUND", f"fence type '{fence_device}' not known")
    _check_name_attr(conf, device_params or {}, "fence")
    node_attrs = {"name": name}
    if votes is not None:
        node_attrs["votes"] = str(votes)
    if nodeid is not None:
        node_attrs["nodeid"] = str(nodeid)
    node_attrs.update(attrs or {})
    clusternodes = conf.section("clusternodes", create=True)
    assert clusternodes is not None
    node = _append(clusternodes, "clusternode", node_attrs)
    if altname:
        _append(node, "altname", {"name": altname})
    if fence_device is not None:
        add_method_device(conf, name, method, fence_device, device_params or {})
    return node


def remove_node(conf: ClusterConf, name: str) -> list[str]:
    """Remove a node and its failover-domain memberships (which would dangle); returns those domains."""
    _remove(_node(conf, name))
    domains = []
    for domain in _children(conf.section("rm", "failoverdomains"), "failoverdomain"):
        member = _find_named(domain, "failoverdomainnode", name)
        if member is not None:
            _remove(member)
            domains.append(domain.get("name", ""))
    return domains


def set_node_attrs(conf: ClusterConf, name: str, attrs: Mapping[str, str | None]) -> etree._Element:
    node = _node(conf, name)
    new_id = attrs.get("nodeid")
    if new_id is not None and _used_nodeids(conf).get(str(new_id), name) != name:
        raise _fail(conf, "NODEID_IN_USE", f"nodeid {new_id} already in use", node)
    new_name = attrs.get("name")
    if new_name is not None and new_name != name and find_node(conf, new_name) is not None:
        raise _fail(conf, "NODE_EXISTS", f"node {new_name} already exists in {conf.source}", node)
    _set_attrs(node, attrs)
    return node


def add_fence_method(conf: ClusterConf, node_name: str, method: str) -> etree._Element:
    node = _node(conf, node_name)
    fence = node.find("fence")
    if fence is None:
        fence = _append(node, "fence")
    if _find_named(fence, "method", method) is not None:
        raise _fail(conf, "METHOD_EXISTS", f"node {node_name} already has a fence method {method!r}", fence)
    return _append(fence, "method", {"name": method})


def remove_fence_method(conf: ClusterConf, node_name: str, method: str) -> None:
    element = _find_named(_node(conf, node_name).find("fence"), "method", method)
    if element is None:
        raise _fail(conf, "METHOD_NOT_FOUND", f"node {node_name} has no fence method {method!r}")
    _remove(element)


def add_method_device(
    conf: ClusterConf, node_name: str, method: str, device: str, params: Mapping[str, str] | None = None
) -> etree._Element:
    """Add a device to a node's fence method (the method is created when missing)."""
    if find_fence_device(conf, device) is None:
        raise _fail(conf, "FENCE_DEVICE_NOT_FOUND", f"fence type '{device}' not known")
    _check_name_attr(conf, params or {}, "fence")
    node = _node(conf, node_name)
    method_el = _find_named(node.find("fence"), "method", method)
    if method_el is None:
        method_el = add_fence_method(conf, node_name, method)
    return _append(method_el, "device", {"name": device, **dict(params or {})})


def remove_method_device(conf: ClusterConf, node_name: str, method: str, device: str) -> None:
    method_el = _find_named(_node(conf, node_name).find("fence"), "method", method)
    element = _find_named(method_el, "device", device)
    if element is None:
        raise _fail(conf, "DEVICE_NOT_FOUND", f"node {node_name} method {method!r} has no device {device!r}")
    _remove(element)


def add_unfence_device(
    conf: ClusterConf, node_name: str, device: str, params: Mapping[str, str] | None = None
) -> etree._Element:
    if find_fence_device(conf, device) is None:
        raise _fail(conf, "FENCE_DEVICE_NOT_FOUND", f"fence type '{device}' not known")
    node = _node(conf, node_name)
    unfence = node.find("unfence")
    if unfence is None:
        unfence = _append(node, "unfence")
    return _append(unfence, "device", {"name": device, **dict(params or {"action": "on"})})


def add_node_ids(conf: ClusterConf, start: int | None = None) -> list[tuple[str, int]]:
    """Number the nodes that have no nodeid (ccs_tool addnodeids): from `start`, or after the highest used."""
    nodes = _children(conf.section("clusternodes"), "clusternode")
    used = {int(i) for i in _used_nodeids(conf) if i.isdigit()}
    next_id = start if start is not None else (max(used) + 1 if used else 1)
    assigned: list[tuple[str, int]] = []
    for node in nodes:
        if node.get("nodeid"):
            continue
        while next_id in used:
            next_id += 1
        node.set("nodeid", str(next_id))
        used.add(next_id)
        assigned.append((node.get("name", ""), next_id))
    return assigned


# -- fence devices ---------------------------------------------------------------------------------------
def find_fence_device(conf: ClusterConf, name: str) -> etree._Element | None:
    return _find_named(conf.section("fencedevices"), "fencedevice", name)


def add_fence_device(
    conf: ClusterConf, name: str, agent: str, params: Mapping[str, str] | None = None
) -> etree._Element:
    if find_fence_device(conf, name) is not None:
        raise _fail(conf, "FENCE_DEVICE_EXISTS", f"fence type {name} already exists")
    _check_name_attr(conf, params or {}, "fence")
    devices = conf.section("fencedevices", create=True)
    assert devices is not None
    return _append(devices, "fencedevice", {"name": name, "agent": agent, **dict(params or {})})


def remove_fence_device(conf: ClusterConf, name: str) -> list[str]:
    """Remove a fence device; returns the nodes whose methods still name it (as ccs_tool, this is allowed)."""
    element = find_fence_device(conf, name)
    if element is None:
        raise _fail(conf, "FENCE_DEVICE_NOT_FOUND", f"fence type {name} does not exist")
    _remove(element)
    users = []
    for node in _children(conf.section("clusternodes"), "clusternode"):
        if any(d.get("name") == name for d in node.iter("device")):
            users.append(node.get("name", ""))
    return users


def set_fence_device_attrs(conf: ClusterConf, name: str, attrs: Mapping[str, str | None]) -> etree._Element:
    element = find_fence_device(conf, name)
    if element is None:
        raise _fail(conf, "FENCE_DEVICE_NOT_FOUND", f"fence type {name} does not exist")
    if "name" in attrs and attrs["name"] != name:
        raise _fail(conf, "BAD_ARGUMENT", "rename a fence device by adding a new one and moving its users", element)
    _set_attrs(element, attrs)
    return element


# -- failover domains ------------------------------------------------------------------------------------
def find_domain(conf: ClusterConf, name: str) -> etree._Element | None:
    return _find_named(conf.section("rm", "failoverdomains"), "failoverdomain", name)


def _domain(conf: ClusterConf, name: str) -> etree._Element:
    element = find_domain(conf, name)
    if element is None:
        raise _fail(conf, "DOMAIN_NOT_FOUND", f"failover domain {name} does not exist")
    return element


def _flag(value: bool | None) -> str | None:
    return None if value is None else ("1" if value else "0")


def add_domain(
    conf: ClusterConf,
    name: str,
    *,
    ordered: bool = False,
    restricted: bool = False,
    nofailback: bool = False,
    members: Iterable[tuple[str, int | None]] = (),
) -> etree._Element:
    if find_domain(conf, name) is not None:
        raise _fail(conf, "DOMAIN_EXISTS", f"failover domain {name} already exists")
    domains = conf.section("rm", "failoverdomains", create=True)
    assert domains is not None
    element = _append(
        domains,
        "failoverdomain",
        {"name": name, "ordered": _flag(ordered), "restricted": _flag(restricted), "nofailback": _flag(nofailback)},
    )
    for node, priority in members:
        add_domain_node(conf, name, node, priority)
    return element


def set_domain_attrs(
    conf: ClusterConf,
    name: str,
    *,
    ordered: bool | None = None,
    restricted: bool | None = None,
    nofailback: bool | None = None,
) -> etree._Element:
    element = _domain(conf, name)
    changes = {"ordered": _flag(ordered), "restricted": _flag(restricted), "nofailback": _flag(nofailback)}
    _set_attrs(element, {k: v for k, v in changes.items() if v is not None})
    return element


def remove_domain(conf: ClusterConf, name: str) -> list[str]:
    """Remove a domain; returns the services that still name it (they fall back to "any node")."""
    _remove(_domain(conf, name))
    rm = conf.section("rm")
    return [s.get("name", "") for s in _children(rm, "service") + _children(rm, "vm") if s.get("domain") == name]


def add_domain_node(conf: ClusterConf, domain: str, node: str, priority: int | None = None) -> etree._Element:
    element = _domain(conf, domain)
    if find_node(conf, node) is None:
        raise _fail(conf, "NODE_NOT_FOUND", f"node {node} does not exist in {conf.source}")
    if _find_named(element, "failoverdomainnode", node) is not None:
        raise _fail(conf, "DOMAIN_NODE_EXISTS", f"Node {node} defined multiple times in domain {domain}", element)
    if priority is not None and not 1 <= priority <= 100:
        raise _fail(conf, "BAD_ARGUMENT", f"priority must be between 1 and 100, not {priority}")
    attrs = {"name": node}
    if priority is not None:
        attrs["priority"] = str(priority)
    return _append(element, "failoverdomainnode", attrs)


def remove_domain_node(conf: ClusterConf, domain: str, node: str) -> None:
    element = _find_named(_domain(conf, domain), "failoverdomainnode", node)
    if element is None:
        raise _fail(conf, "DOMAIN_NODE_NOT_FOUND", f"node {node} is not a member of domain {domain}")
    _remove(element)


# -- resources -------------------------------------------------------------------------------------------
def _primary(rtype: str) -> str:
    known = RESOURCE_TYPES.get(rtype)
    return known.primary if known else "name"


def find_resource(conf: ClusterConf, rtype: str, key: str) -> etree._Element | None:
    """A global resource (under <rm><resources>) by type and primary-key value."""
    return _find_named(conf.section("rm", "resources"), rtype, key, key=_primary(rtype))


def _check_resource_type(conf: ClusterConf, rtype: str) -> None:
    if rtype in ELEMENTS or rtype in ("service", "vm"):
        raise _fail(conf, "BAD_ARGUMENT", f"<{rtype}> is not a resource type that can be defined here")


def add_resource(conf: ClusterConf, rtype: str, attrs: Mapping[str, str]) -> etree._Element:
    """Define a global resource (unknown types are allowed and kept; validation warns about them)."""
    _check_resource_type(conf, rtype)
    key_attr = _primary(rtype)
    key = attrs.get(key_attr)
    if not key:
        raise _fail(conf, "BAD_ARGUMENT", f"a {rtype} resource needs its {key_attr} attribute")
    if find_resource(conf, rtype, key) is not None:
        raise _fail(conf, "RESOURCE_EXISTS", f"{rtype} resource {key!r} already exists")
    resources = conf.section("rm", "resources", create=True)
    assert resources is not None
    return _append(resources, rtype, attrs)


def set_resource_attrs(conf: ClusterConf, rtype: str, key: str, attrs: Mapping[str, str | None]) -> etree._Element:
    element = find_resource(conf, rtype, key)
    if element is None:
        raise _fail(conf, "RESOURCE_NOT_FOUND", f"{rtype} resource {key!r} does not exist")
    _set_attrs(element, attrs)
    return element


def remove_resource(conf: ClusterConf, rtype: str, key: str) -> list[str]:
    """Remove a global resource; returns the services whose trees still reference it."""
    element = find_resource(conf, rtype, key)
    if element is None:
        raise _fail(conf, "RESOURCE_NOT_FOUND", f"{rtype} resource {key!r} does not exist")
    _remove(element)
    users = []
    rm = conf.section("rm")
    for service in _children(rm, "service") + _children(rm, "vm"):
        if any(el.tag == rtype and el.get("ref") == key for el in service.iter(rtype)):
            users.append(service.get("name", ""))
    return users


# -- services and their resource trees -------------------------------------------------------------------
def find_service(conf: ClusterConf, name: str) -> etree._Element | None:
    """A <service> or <vm> by name, `service:name` or `vm:name`."""
    kind, _, plain = name.partition(":") if ":" in name else ("", "", name)
    rm = conf.section("rm")
    for element in _children(rm, "service") + _children(rm, "vm"):
        if element.get("name") == plain and kind in ("", element.tag):
            return element
    return None


def _service(conf: ClusterConf, name: str) -> etree._Element:
    element = find_service(conf, name)
    if element is None:
        raise _fail(conf, "SERVICE_NOT_FOUND", f"service {name} does not exist")
    return element


def add_service(conf: ClusterConf, name: str, attrs: Mapping[str, str] | None = None, *,
                kind: str = "service") -> etree._Element:
    if kind not in ("service", "vm"):
        raise _fail(conf, "BAD_ARGUMENT", f"kind must be service or vm, not {kind!r}")
    if find_service(conf, name) is not None:
        raise _fail(conf, "SERVICE_EXISTS", f"service {name} already exists")
    domain = (attrs or {}).get("domain")
    if domain and find_domain(conf, domain) is None:
        raise _fail(conf, "DOMAIN_NOT_FOUND", f"failover domain {domain} does not exist")
    rm = conf.section("rm", create=True)
    assert rm is not None
    return _append(rm, kind, {"name": name, **dict(attrs or {})})


def set_service_attrs(conf: ClusterConf, name: str, attrs: Mapping[str, str | None]) -> etree._Element:
    element = _service(conf, name)
    domain = attrs.get("domain")
    if domain and find_domain(conf, domain) is None:
        raise _fail(conf, "DOMAIN_NOT_FOUND", f"failover domain {domain} does not exist", element)
    new_name = attrs.get("name")
    if new_name and new_name != element.get("name") and find_service(conf, new_name) is not None:
        raise _fail(conf, "SERVICE_EXISTS", f"service {new_name} already exists", element)
    _set_attrs(element, attrs)
    return element


def remove_service(conf: ClusterConf, name: str) -> list[str]:
    """Remove a service or vm; returns the services that still depend on it."""
    element = _service(conf, name)
    full = f"{element.tag}:{element.get('name')}"
    _remove(element)
    rm = conf.section("rm")
    return [s.get("name", "") for s in _children(rm, "service") + _children(rm, "vm") if s.get("depend") == full]


def resource_at(conf: ClusterConf, service: str, path: Iterable[tuple[str, str]] = ()) -> etree._Element:
    """The node of a service tree reached by (type, key) steps, e.g. [("fs", "data"), ("nfsexport", "exp")];
    a step's key matches the child's `ref` or its primary-key attribute."""
    node = _service(conf, service)
    for rtype, key in path:
        found = None
        for child in node:
            if child.tag == rtype and key in (child.get("ref"), child.get(_primary(rtype))):
                found = child
                break
        if found is None:
            raise _fail(conf, "RESOURCE_NOT_FOUND", f"service {service}: no {rtype} {key!r} at that place", node)
        node = found
    return node


def add_child_resource(
    conf: ClusterConf,
    service: str,
    rtype: str,
    attrs: Mapping[str, str],
    *,
    parent_path: Iterable[tuple[str, str]] = (),
) -> etree._Element:
    """Add a resource to a service tree: `{"ref": key}` uses a global resource, other attrs define one inline."""
    _check_resource_type(conf, rtype)
    parent = resource_at(conf, service, parent_path)
    ref = attrs.get("ref")
    if ref is not None and find_resource(conf, rtype, ref) is None:
        raise _fail(conf, "RESOURCE_NOT_FOUND", f"{rtype} resource {ref!r} does not exist", parent)
    known = RESOURCE_TYPES.get(parent.tag)
    rule = known.child_rule(rtype) if known else None
    if rule is not None and rule.forbid:
        raise _fail(conf, "CHILD_FORBIDDEN", f"a {parent.tag} may not contain a {rtype}", parent)
    return _append(parent, rtype, attrs)


def remove_child_resource(conf: ClusterConf, service: str, path: Iterable[tuple[str, str]]) -> None:
    steps = list(path)
    if not steps:
        raise _fail(conf, "BAD_ARGUMENT", "give the path of the resource to remove")
    _remove(resource_at(conf, service, steps))


def set_child_resource_attrs(
    conf: ClusterConf, service: str, path: Iterable[tuple[str, str]], attrs: Mapping[str, str | None]
) -> etree._Element:
    element = resource_at(conf, service, path)
    _set_attrs(element, attrs)
    return element


def set_action(
    conf: ClusterConf, element: etree._Element, name: str, *, depth: str | None = None,
    interval: str | None = None, timeout: str | None = None
) -> etree._Element:
    """Add or update an <action name= depth=> override on a resource element."""
    for action in _children(element, "action"):
        if action.get("name") == name and action.get("depth") == depth:
            break
    else:
        action = _append(element, "action", {"name": name})
        if depth is not None:
            action.set("depth", depth)
    _set_attrs(action, {"interval": interval, "timeout": timeout} | ({"depth": depth} if depth else {}))
    return action


# -- events (central processing) -------------------------------------------------------------------------
def add_event(conf: ClusterConf, name: str, attrs: Mapping[str, str], script: str | None = None) -> etree._Element:
    events = conf.section("rm", "events", create=True)
    if _find_named(events, "event", name) is not None:
        raise _fail(conf, "EVENT_EXISTS", f"event {name} already exists")
    assert events is not None
    element = _append(events, "event", {"name": name, **dict(attrs)})
    if script is not None:
        element.text = script
    return element


def remove_event(conf: ClusterConf, name: str) -> None:
    element = _find_named(conf.section("rm", "events"), "event", name)
    if element is None:
        raise _fail(conf, "EVENT_NOT_FOUND", f"event {name} does not exist")
    _remove(element)


# -- every edit marks the document edited ------------------------------------------------------------------------
def _marks_edited(function):  # type: ignore[no-untyped-def]
    """An edit made outside a transaction still reaches `to_bytes()`/`save()` (which otherwise write the original
    bytes of a document they take as unchanged)."""
    import functools

    @functools.wraps(function)
    def edit_and_mark(conf: ClusterConf, *args, **kwargs):  # type: ignore[no-untyped-def]
        result = function(conf, *args, **kwargs)
        conf.mark_edited()
        return result

    return edit_and_mark


for _name in [n for n in list(globals()) if n.startswith(("add_", "remove_", "set_"))]:
    globals()[_name] = _marks_edited(globals()[_name])
del _name
