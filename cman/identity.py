"""Who this node is in the cluster, and where its peers are: names from cluster.conf, addresses from the node's
`etc/hosts` (hosts(5), as cman resolved clusternode names) under its CLUSTER_ROOT.

The local node's name comes from CMAN_NODENAME, else the agent's `etc/ricci/ricci.json` `node_name`, else the
host name (cman matched the clusternode name against the host's names the same way).
"""
from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cluster_conf.model import ClusterView

HOSTS_FILE = Path("etc/hosts")
RICCI_SETTINGS = Path("etc/ricci/ricci.json")


class IdentityError(Exception):
    """This node cannot find itself in the configuration (one line, fit for `cmand: ...`)."""


@dataclass(frozen=True, slots=True)
class NodeAddress:
    name: str
    nodeid: int
    address: str  # "" when it cannot be resolved (etc/hosts, then the resolver)
    votes: int


def read_hosts(root: str | os.PathLike[str]) -> dict[str, str]:
    """`etc/hosts` (hosts(5)): name and aliases → address; the first line naming a host wins."""
    mapping: dict[str, str] = {}
    try:
        text = (Path(root) / HOSTS_FILE).read_text(errors="replace")
    except FileNotFoundError:
        return mapping
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            mapping.setdefault(name, fields[0])
    return mapping


def local_name(root: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if env.get("CMAN_NODENAME"):
        return env["CMAN_NODENAME"]
    try:
        name = json.loads((Path(root) / RICCI_SETTINGS).read_text()).get("node_name")
    except (OSError, ValueError, AttributeError):
        name = None
    return str(name) if name else socket.gethostname()


def cluster_nodes(view: ClusterView, root: str | os.PathLike[str]) -> dict[int, NodeAddress]:
    """Every configured node with its nodeid, address (etc/hosts, else the name itself when it is an address)
    and votes. Nodes without a nodeid cannot take part (cluster 3 needs one: 'ccs_tool addnodeids')."""
    hosts = read_hosts(root)
    nodes: dict[int, NodeAddress] = {}
    for node in view.nodes:
        if node.nodeid is None:
            raise IdentityError(f"clusternode {node.name} has no nodeid; run 'ccs_tool addnodeids' to fix")
        address = hosts.get(node.name) or _literal_address(node.name)
        if address is None:
            try:
                address = socket.gethostbyname(node.name)
            except OSError:
                address = ""  # unknown: no heartbeat can reach it or come from it (find_self refuses it for us)
        nodes[node.nodeid] = NodeAddress(node.name, node.nodeid, address, node.votes if node.votes is not None else 1)
    return nodes


def _literal_address(name: str) -> str | None:
    try:
        socket.inet_aton(name)
    except OSError:
        return None
    return name if name.count(".") == 3 else None


def find_self(nodes: Mapping[int, NodeAddress], name: str) -> NodeAddress:
    for node in nodes.values():
        if node.name == name:
            if not node.address:
                raise IdentityError(f"cannot resolve the address of this node ({name}): add it to etc/hosts")
            return node
    raise IdentityError(f"this node ({name}) is not a clusternode of cluster.conf")
