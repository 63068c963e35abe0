"""The clusters luci knows: adding an existing cluster (probe a seed node's host key, the admin confirms its
fingerprint, discover the members through it, confirm theirs), creating a new one (a Celery task:
luci_web.clusters.registry_tasks) and removing one from luci (the nodes are left as they are).

No HTTP here: the console's views (luci_web.console.views.registry) call these functions. Host keys are only
ever taken from a probe made by luci itself, never from what a browser sends back.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from django.db import IntegrityError, transaction

from cluster_conf.lint import MAX_CLUSTER_NAME
from luci_web.access.rights import require, require_global
from luci_web.audit.log import record
from luci_web.clusters import gateway, operations
from luci_web.clusters.models import Cluster, Node, Operation
from ricci_agent.protocol import DEFAULT_PORT, RicciError

CLUSTER_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_CLUSTER_NAME - 1}}}")
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,252}")
MAX_NODES = 64


RESERVED_CLUSTER_NAMES = ("import",)  # /api/v1/clusters/import/ would shadow a cluster of that name


class RegistryError(Exception):
    """Why a registry step cannot be done: one line, fit for the console's messages."""


class ClusterExists(RegistryError):
    """The cluster's name is taken in luci."""


class FingerprintError(RegistryError):
    """A node's host key fingerprint is not the one confirmed; `offered`: endpoint_key -> the fingerprint every
    node checked offers, for the admin (or the script) to compare."""

    def __init__(self, message: str, offered: dict[str, str]) -> None:
        super().__init__(message)
        self.offered = offered


class FingerprintMismatch(FingerprintError):
    """A node offers another host key than the one confirmed (another machine may answer at its address): audited
    as refused, nothing done."""


class FingerprintRequired(FingerprintError):
    """Some node's fingerprint was not confirmed yet (the probe step: not audited)."""


@dataclass
class NodeCandidate:
    """A node about to be saved in luci: where its agent answers, and the host key luci probed there (None with
    `error` when it could not be probed)."""

    name: str
    address: str
    port: int = DEFAULT_PORT
    host_key: str | None = None
    fingerprint: str | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeCandidate:
        return cls(name=str(data["name"]), address=str(data["address"]), port=int(data["port"]),
                   host_key=data.get("host_key"), fingerprint=data.get("fingerprint"),
                   error=str(data.get("error") or ""))


@dataclass
class Discovery:
    cluster_name: str
    config_version: int | None
    nodes: list[NodeCandidate]


# -- checks --------------------------------------------------------------------------------------------------
def check_cluster_name(name: str) -> str:
    name = name.strip()
    if not CLUSTER_NAME.fullmatch(name):
        raise RegistryError(f"invalid cluster name {name[:40]!r}: 1 to {MAX_CLUSTER_NAME} letters, digits, '_', '.' "
                            "or '-', starting with a letter or digit")
    _check_not_reserved(name)
    return name


def _check_not_reserved(name: str) -> None:
    if name in RESERVED_CLUSTER_NAMES:
        raise RegistryError(f"the cluster name {name!r} is reserved (luci's API uses /api/v1/clusters/{name}/): "
                            "choose another")


def check_new_cluster(user: Any, name: str, lab_dir: str | None = None) -> str:
    """The checks of a new cluster that need no node: the right, the name, not in luci yet, the lab directory.
    Made before any node is probed, so a request that will be refused never connects out; refusals audited
    (cluster.create). Returns the name, stripped."""
    try:
        require_global(user, "create_clusters")
        name = check_cluster_name(name)
        if Cluster.objects.filter(name=name).exists():
            raise ClusterExists(f"a cluster named {name} is already in luci")
        check_lab_dir(user, lab_dir)
    except Exception as exc:
        record(user, "cluster.create", cluster=name, result="refused", message=str(exc))
        raise
    return name


def check_endpoint(address: str, port: Any) -> tuple[str, int]:
    address = str(address).strip()
    if not ADDRESS.fullmatch(address):
        raise RegistryError(f"invalid node address {address[:60]!r}: give a host name or an IP address")
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise RegistryError(f"invalid port {str(port)[:20]!r}: give a number between 1 and 65535") from None
    if not 0 < number < 65536:
        raise RegistryError(f"invalid port {number}: give a number between 1 and 65535")
    return address, number


def parse_node_lines(text: str) -> list[NodeCandidate]:
    """`name address[:port]` per line (blank lines and # comments skipped) → candidates without host keys."""
    found: list[NodeCandidate] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise RegistryError(f"line {number}: expected 'name address[:port]', got {line[:60]!r}")
        name, endpoint = fields
        if not NODE_NAME.fullmatch(name):
            raise RegistryError(f"line {number}: invalid node name {name[:40]!r}: letters, digits, '.', '_' and '-'")
        address, sep, port = endpoint.rpartition(":") if endpoint.count(":") == 1 else (endpoint, "", "")
        address, port_number = check_endpoint(address, port if sep else DEFAULT_PORT)
        if any(c.name == name for c in found):
            raise RegistryError(f"line {number}: node {name} is given twice")
        if any((c.address, c.port) == (address, port_number) for c in found):
            raise RegistryError(f"line {number}: {address}:{port_number} is given twice")
        found.append(NodeCandidate(name, address, port_number))
    if not found:
        raise RegistryError("give at least one node, as 'name address[:port]'")
    if len(found) > MAX_NODES:
        raise RegistryError(f"at most {MAX_NODES} nodes")
    return found


# -- host keys: every node must offer the fingerprint the admin (or a script) confirmed ----------------------
def endpoint_key(address: str, port: int) -> str:
    """How a node's agent is named next to its fingerprint: its address, with :port when not on 11111."""
    return address if port == DEFAULT_PORT else f"{address}:{port}"


def confirm_fingerprints(nodes: Iterable[NodeCandidate], expected: Mapping[str, str], *, user: Any, action: str,
                         cluster: Any = None, target: str = "") -> None:
    """Nothing when every node (as probed now) offers the fingerprint `expected` gives for it (endpoint_key ->
    fingerprint). Otherwise FingerprintMismatch, audited as `action` refused (the address and both fingerprints,
    never a key): another machine may answer at that address. FingerprintRequired (not audited) when some
    fingerprint is not given: the caller shows the offered ones to confirm."""
    offered = {endpoint_key(n.address, n.port): n.fingerprint or "" for n in nodes}
    wrong = [k for k in offered if expected.get(k) and expected[k] != offered[k]]
    if wrong:
        where = wrong[0]
        message = (f"{where} now offers another host key ({offered[where] or 'none'}) than the one confirmed "
                   f"({expected[where]}): nothing was saved; check that node")
        record(user, action, cluster=cluster, target=target or where, result="refused", message=message,
               detail={"address": where, "offered": offered[where], "confirmed": expected[where]})
        raise FingerprintMismatch(message, offered)
    missing = [k for k in offered if not expected.get(k)]
    if missing:
        raise FingerprintRequired(
            f"confirm the host key fingerprint of every node (not given: {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}); nothing was done", offered)


def reprobe(nodes: list[NodeCandidate], *, user: Any, action: str, cluster: Any = None) -> list[NodeCandidate]:
    """The nodes probed again now, each of which must still offer the fingerprint it carries (the one the admin
    was shown): RegistryError when one does not answer, FingerprintMismatch (audited) when one offers another."""
    fresh = probe_all(nodes)
    for now in fresh:
        if now.error:
            raise RegistryError(f"{now.name}: {now.error}")
    confirm_fingerprints(fresh, {endpoint_key(n.address, n.port): n.fingerprint or "" for n in nodes}, user=user,
                         action=action, cluster=cluster)
    return fresh


# -- probing and discovery -----------------------------------------------------------------------------------
def probe(address: str, port: int) -> tuple[str, str]:
    """(host key line, SHA256 fingerprint) the agent at address:port offers, for the admin to confirm."""
    address, port = check_endpoint(address, port)
    try:
        return gateway.probe_host_key(address, port)
    except RicciError as exc:
        raise RegistryError(exc.message) from None
    except ValueError as exc:  # an offered key we cannot read
        raise RegistryError(f"{address}:{port}: {exc}") from None


def probe_all(nodes: list[NodeCandidate]) -> list[NodeCandidate]:
    """Each candidate with its probed host key and fingerprint (or its error), probed in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    def one(node: NodeCandidate) -> NodeCandidate:
        try:
            key, shown = probe(node.address, node.port)
        except RegistryError as exc:
            return NodeCandidate(node.name, node.address, node.port, None, None, str(exc))
        return NodeCandidate(node.name, node.address, node.port, key, shown, "")

    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        return list(pool.map(one, nodes))


def discover(address: str, port: int, host_key: str) -> Discovery:
    """The cluster the seed node belongs to (its accepted configuration) and its members, each with the host key
    it offers now. The seed is called under `host_key`, the key the admin confirmed."""
    address, port = check_endpoint(address, port)
    try:
        status = gateway.call_unpinned(address, port, host_key, "cluster.status")
    except RicciError as exc:
        raise RegistryError(_call_error(exc, address, port)) from None
    name = status.get("cluster_name")
    if not name:
        raise RegistryError(f"{address}:{port} answers but holds no cluster configuration: it is not in a cluster "
                            "yet (create the cluster instead)")
    candidates = []
    for member, info in sorted((status.get("nodes") or {}).items()):
        try:
            member_address, member_port = check_endpoint(info.get("address") or member, info.get("port") or 11111)
        except RegistryError as exc:
            candidates.append(NodeCandidate(member, str(info.get("address")), DEFAULT_PORT, error=str(exc)))
            continue
        candidates.append(NodeCandidate(member, member_address, member_port))
    version = status.get("config_version")
    return Discovery(str(name), int(version) if isinstance(version, int) else None, probe_all(candidates))


def _call_error(exc: RicciError, address: str, port: int) -> str:
    if exc.code == "auth_failed":
        return (f"{address}:{port} refused luci's key: authorise it on that node first "
                f"(ricci authorize \"{gateway.luci_public_key()}\")")
    return exc.message


# -- add and remove ------------------------------------------------------------------------------------------
def add_existing(user: Any, cluster_name: str, nodes: list[NodeCandidate]) -> Cluster:
    """Save the cluster and its confirmed nodes in luci. Every node needs a probed host key."""
    try:
        require_global(user, "import_clusters")
    except Exception as exc:
        record(user, "cluster.add", cluster=cluster_name, result="refused", message=str(exc))
        raise
    try:
        cluster = save_cluster(user, cluster_name, nodes)
    except RegistryError as exc:
        record(user, "cluster.add", cluster=cluster_name, result="refused", message=str(exc),
               detail={"nodes": [n.name for n in nodes]})
        raise
    record(user, "cluster.add", cluster=cluster, detail={"nodes": {n.name: f"{n.address}:{n.port} {n.fingerprint}"
                                                                   for n in nodes}},
           message=f"added with {len(nodes)} node(s)")
    return cluster


def save_cluster(user: Any, cluster_name: str, nodes: list[NodeCandidate]) -> Cluster:
    """The Cluster row and its Node rows, in one transaction; RegistryError when the name is taken or a node
    has no confirmed host key."""
    if not 0 < len(cluster_name) <= 64 or any(c.isspace() or ord(c) < 32 for c in cluster_name):
        raise RegistryError(f"invalid cluster name {cluster_name[:40]!r}")
    _check_not_reserved(cluster_name)
    if not nodes:
        raise RegistryError("no node confirmed: a cluster needs at least one")
    for node in nodes:
        if not node.host_key or not node.fingerprint:
            raise RegistryError(f"{node.name}: no confirmed host key ({node.error or 'not probed'})")
    if Cluster.objects.filter(name=cluster_name).exists():
        raise ClusterExists(f"a cluster named {cluster_name} is already in luci")
    try:
        with transaction.atomic():
            cluster = Cluster.objects.create(name=cluster_name,
                                             added_by=user if getattr(user, "is_authenticated", False) else None)
            Node.objects.bulk_create([Node(cluster=cluster, name=n.name, address=n.address, port=n.port,
                                           host_key=n.host_key or "", fingerprint=n.fingerprint or "")
                                      for n in nodes])
    except IntegrityError:
        if Cluster.objects.filter(name=cluster_name).exists():
            raise ClusterExists(f"a cluster named {cluster_name} is already in luci") from None
        raise RegistryError(f"a node is given twice in {cluster_name}") from None
    from luci_web.live.publish import overview_changed

    overview_changed("clusters")  # no name: every logged-in user listens on the overview
    return cluster


def remove(user: Any, cluster: Cluster) -> None:
    """Forget the cluster in luci (its nodes keep running, untouched)."""
    try:
        require(user, cluster, "remove")
    except Exception as exc:
        record(user, "cluster.remove", cluster=cluster, result="refused", message=str(exc))
        raise
    name, nodes = cluster.name, [n.name for n in cluster.nodes.all()]
    cluster.delete()
    record(user, "cluster.remove", cluster=name, detail={"nodes": nodes},
           message="removed from luci; the nodes were not changed")
    from luci_web.live.publish import overview_changed

    overview_changed("clusters")  # no name: every logged-in user listens on the overview


# -- create --------------------------------------------------------------------------------------------------
def create_cluster(user: Any, name: str, nodes: list[NodeCandidate], *, lab_dir: str | None = None) -> Operation:
    """Start creating a new cluster on `nodes` (confirmed host keys, agents with no configuration yet): the task
    luci.create_cluster distributes trust and the cluster key, pushes the first cluster.conf and starts every
    node. `lab_dir`: the nodes are the local lab's (ricci_agent.lab), fenced by its fence_lab device."""
    name = check_new_cluster(user, name, lab_dir)
    try:
        for node in nodes:
            if not node.host_key:
                raise RegistryError(f"{node.name}: no confirmed host key ({node.error or 'not probed'})")
        first_config(name, nodes, lab_dir)  # refuse a configuration that would not validate before starting
    except Exception as exc:
        record(user, "cluster.create", cluster=name, result="refused", message=str(exc))
        raise
    from luci_web.clusters.configs import QueueUnavailable
    from luci_web.clusters.registry_tasks import create_cluster as task
    from luci_web.clusters.tasks import enqueue

    op = operations.start(user, "create_cluster", None, [n.name for n in nodes])
    op.cluster_name = name
    op.save(update_fields=["cluster_name"])
    try:
        enqueue(op, user, "cluster.create", task, str(op.id), name, [n.to_dict() for n in nodes], lab_dir)
    except QueueUnavailable as exc:
        raise RegistryError(str(exc)) from None
    return op


def check_lab_dir(user: Any, lab_dir: str | None) -> None:
    """RegistryError unless `lab_dir` is None, or given by a Luci Administrator and an existing directory holding
    a lab's state file (ricci_agent.lab.LAB_FILE): it is written into the new cluster's fence device."""
    if lab_dir is None:
        return
    from pathlib import Path

    from ricci_agent.lab import LAB_FILE

    if not getattr(user, "is_superuser", False):
        raise RegistryError("only a Luci Administrator may create a cluster on a local lab (lab directory)")
    if not lab_dir.isprintable() or not Path(lab_dir).is_absolute():
        raise RegistryError("the lab directory must be an absolute path of printable characters")
    if not (Path(lab_dir) / LAB_FILE).is_file():
        raise RegistryError(f"{lab_dir[:200]} is not a lab directory (it has no {LAB_FILE})")


def first_config(name: str, nodes: list[NodeCandidate], lab_dir: str | None = None) -> str:
    """The new cluster's first cluster.conf (version 1): nodeids 1..n, one vote each, `<cman two_node="1"
    expected_votes="1"/>` for two nodes, `ricci_port` on a node whose agent is not on 11111. Lab nodes (all on
    one port) get the lab's own configuration (ricci_agent.lab.lab_cluster_conf: its fence device, timings and
    failover domain)."""
    from cluster_conf import ConfigError, edit, validate
    from ricci_agent.server import PORT_ATTRIBUTE

    if not nodes:
        raise RegistryError("give at least one node")
    ports = {n.port for n in nodes}
    try:
        if lab_dir is not None and len(ports) == 1:
            from pathlib import Path

            from ricci_agent.lab import LabError, lab_cluster_conf

            try:
                return lab_cluster_conf(name, [n.name for n in nodes], ports.pop(), Path(lab_dir)).decode()
            except LabError as exc:
                raise RegistryError(str(exc)) from None
        conf = edit.new_cluster(name, two_node=len(nodes) == 2)
        for nodeid, node in enumerate(nodes, start=1):
            attrs = {PORT_ATTRIBUTE: str(node.port)} if node.port != DEFAULT_PORT else {}
            edit.add_node(conf, node.name, nodeid=nodeid, votes=1, attrs=attrs)
    except ConfigError as exc:
        raise RegistryError(exc.report.message) from None
    except ValueError:  # lxml refuses a string XML cannot hold
        raise RegistryError("a name or path contains a control character XML cannot hold") from None
    errors = [r for r in validate(conf, lint=False) if r.is_error]
    if errors:
        raise RegistryError(f"the new configuration does not validate: {errors[0].message}")
    return conf.to_string()
