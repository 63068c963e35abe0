"""Nodes, shared by the console's Nodes tab and the API: the edits that add a node to cluster.conf and remove one,
the patterns a new node's fields must match, and the node rows read from the watcher's last status (luci's own
node rows merged in). The checks made before a node task starts are luci_web.clusters.node_tasks' start_*."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cluster_conf import ClusterConf, edit, model
from luci_web.clusters.models import Cluster

DEFAULT_PORT = 11111
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:_-]{0,254}")


# -- what luci knows of each node ---------------------------------------------------------------------------
def node_rows(cluster: Cluster) -> list[dict[str, Any]]:
    """One row per node: the status's member rows (clustat's, with state online/offline/unknown), with luci's
    agent address; nodes luci knows that no status named yet come last, state unknown."""
    status = cluster.status or {}
    agents = {n.name: n for n in cluster.nodes.all()}
    cluster_version = status.get("config_version")
    rows = []
    for member in status.get("members") or []:
        if member.get("qdisk"):
            continue
        version = member.get("config_version")
        agent = agents.pop(member.get("name"), None)
        rows.append({
            "name": member.get("name"), "nodeid": member.get("nodeid"), "state": member.get("state") or "unknown",
            "member": bool(member.get("online")), "rgmanager": bool(member.get("rgmanager")),
            "master": bool(member.get("master")), "config_version": version,
            "version_differs": version is not None and cluster_version is not None and version != cluster_version,
            "agent": agent, "message": member.get("message") or "",
        })
    for name, agent in agents.items():
        rows.append({"name": name, "nodeid": None, "state": "unknown", "member": False, "rgmanager": False,
                     "master": False, "config_version": None, "version_differs": False, "agent": agent,
                     "message": "not in the last status reading"})
    return rows


# -- the edits -----------------------------------------------------------------------------------------------
def fence_shape(conf: ClusterConf, new_name: str) -> tuple[str, str, dict[str, str]] | None:
    """(method, device, params) for a new node when every node is fenced the same simple way: one method with
    one device, each parameter either the same on every node or each node's own name (port="node1"). None when
    the nodes differ in any other way: the admin then sets the new node's fence method on the Fence tab."""
    nodes = model.view(conf).nodes
    if not nodes or any(len(n.methods) != 1 or len(n.methods[0].devices) != 1 for n in nodes):
        return None
    first = nodes[0].methods[0]
    device = first.devices[0]
    params: dict[str, str] = {}
    for node in nodes:
        method, ref = node.methods[0], node.methods[0].devices[0]
        if method.name != first.name or ref.name != device.name or set(ref.params) != set(device.params):
            return None
    for key, value in device.params.items():
        values = [n.methods[0].devices[0].params[key] for n in nodes]
        if all(v == value for v in values) and not (len(nodes) == 1 and value == nodes[0].name):
            params[key] = value
        elif all(v == n.name for v, n in zip(values, nodes, strict=True)):
            params[key] = new_name
        else:
            return None
    return first.name, device.name, params


def add_node_edit(name: str, port: int) -> Callable[[ClusterConf], None]:
    """The edit that names the new node in cluster.conf: the next nodeid after the highest, its agent's port
    when not 11111, and the others' fence method when they share a simple one."""

    def change(conf: ClusterConf) -> None:
        ids = [n.nodeid for n in model.view(conf).nodes if n.nodeid]
        shape = fence_shape(conf, name)
        attrs = {"ricci_port": str(port)} if port != DEFAULT_PORT else {}
        if shape is None:
            edit.add_node(conf, name, nodeid=max(ids, default=0) + 1, votes=1, attrs=attrs)
        else:
            method, device, params = shape
            edit.add_node(conf, name, nodeid=max(ids, default=0) + 1, votes=1, attrs=attrs, fence_device=device,
                          method=method, device_params=params)

    return change


def remove_node_edit(name: str) -> Callable[[ClusterConf], None]:
    """The edit that removes the node from cluster.conf."""

    def change(conf: ClusterConf) -> None:
        edit.remove_node(conf, name)

    return change
