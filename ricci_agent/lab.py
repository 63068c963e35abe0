"""The local lab: a whole cluster of ricci agents on loopback, one folder per node (no Django here).

    lab = Lab("var/lab")
    lab.up(nodes=3)                  # roots, keys, cluster.conf, agents on 127.0.0.11.. port 11111
    lab.node("node1").root           # that node's CLUSTER_ROOT
    with lab.client() as c: ...      # a RicciClient that every node trusts
    lab.kill("node2"); lab.start("node2")
    lab.power_off("node2")           # fence_lab off: no wait behind the lab's lock
    lab.down()                       # every agent stopped, none left behind

Layout under the lab folder DIR:

    DIR/lab.json                     what is running: nodes, addresses, ports, roots, pids, host key fingerprints
    DIR/<node>/                      the node's CLUSTER_ROOT (etc/cluster, etc/ricci, etc/hosts, var/...)
    DIR/_client/etc/ricci/           the lab's own client key and known_hosts (the lab, tests and scripts use it)
    DIR/_lab/<service>               the LSB scripts of the lab's services (ricci_agent.lab_services): the sample
                                     `webservice` serving `nodeN server` on 127.0.0.222:8080 by default

Every node's client key (and the lab's) is authorised on every node, and every host key is pinned in every
known_hosts, so the agents can propagate among themselves and the lab can call any of them. Each agent runs in
its own session (process group = its pid). A node's processes are every process whose environment carries
`CLUSTER_ROOT=<its root>` (its agent, the daemons the agent starts, services that left the agent's session):
stopping, killing, pausing or fencing a node signals exactly those. `partition` drops packets between the nodes'
addresses with nftables (root only). See docs/lab.md.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ricci_agent import lab_services
from ricci_agent.lab_services import LabService

if TYPE_CHECKING:
    from ricci_agent.client import RicciClient

DEFAULT_DIR = "var/lab"
DEFAULT_CLUSTER_NAME = "labcluster"
DEFAULT_NODES = 3
FIRST_ADDRESS = "127.0.0.11"
AGENT_PORT = 11111
MAX_NODES = 200  # 127.0.0.11 .. 127.0.0.210: stays inside 127.0.0.0/24
LAB_FILE = "lab.json"
LOCK_FILE = ".lab.lock"
CLIENT_DIR = "_client"  # node names start with a letter or digit, so this never clashes with a node's root
AGENT_OUTPUT = "var/log/cluster/ricci.out"  # the agent's stdout/stderr (its own log is ricci.log)
FORMAT = 1
AUTHOR = "localcluster up"  # who wrote version 1, in each node's configuration history

FENCE_DEVICE = "labfence"
FENCE_AGENT = "fence_lab"
FENCE_LAB_ATTRIBUTE = "lab"  # the labfence device names the lab's folder: how fence_lab finds the lab
FAILOVER_DOMAIN = lab_services.LAB_DOMAIN  # "labdomain"
TOKEN_MS = 1000  # <totem token>: the lab detects a failed node within a second (cman's default is 10000)
POST_JOIN_DELAY = 3  # <fence_daemon post_join_delay>: what luci wrote for new clusters (fenced's default is 6)
AUTHKEY = "etc/cluster/authkey"  # the cluster key every node shares (0600, 64 random bytes)
AUTHKEY_BYTES = 64

STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
KILL_GRACE = 3.0  # seconds to wait for a SIGKILLed group to vanish
PAUSE_GRACE = 2.0  # seconds to wait until every process of a paused node is stopped (state T)
HELLO_POLL = 0.1
LOCK_POLL = 0.02
RECORD_LOCK_WAIT = 1.0  # seconds fence_lab off waits for the lab's lock to record a node it powered off
NODE_START_TIMEOUT = 60.0  # node.start runs `cman_tool join -w` on the node: bounded by the agent, and by this
TABLE_PREFIX = "rhcs_lab_"  # nftables: table inet rhcs_lab_<hash of the lab folder> holds a lab's partition

_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}")


class LabError(Exception):
    """A lab operation that cannot be done; the message is one line, fit to print after `localcluster: `."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class LabNode:
    name: str
    nodeid: int
    address: str
    port: int
    root: Path
    pid: int | None = None
    fingerprint: str = ""
    paused: bool = False  # SIGSTOPped by `pause` (a hung node) until `resume`

    @property
    def endpoint(self) -> tuple[str, int]:
        return self.address, self.port

    @property
    def key(self) -> str:
        """How the client library names this node in fan-out results: `address:port`."""
        return f"{self.address}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.root / "etc/cluster/cluster.conf"

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default os.environ) with this node's CLUSTER_ROOT, and this Python's bin first on PATH so
        the suite's commands (ccs_tool, cman_tool, ricci) resolve to the ones installed next to it."""
        env = dict(os.environ if base is None else base)
        env["CLUSTER_ROOT"] = str(self.root)
        bindir = str(Path(sys.executable).parent)
        path = env.get("PATH", "")
        if bindir not in path.split(os.pathsep):
            env["PATH"] = bindir + (os.pathsep + path if path else "")
        return env

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["root"] = str(self.root)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LabNode:
        return cls(
            name=str(data["name"]),
            nodeid=int(data["nodeid"]),
            address=str(data["address"]),
            port=int(data["port"]),
            root=Path(data["root"]),
            pid=int(data["pid"]) if data.get("pid") is not None else None,
            fingerprint=str(data.get("fingerprint", "")),
            paused=bool(data.get("paused", False)),
        )


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node as `status` sees it: is its agent process there, does it answer, with which configuration."""

    node: LabNode
    running: bool
    answering: bool
    config_version: int | None = None
    config_hash: str | None = None
    problem: str = ""
    paused: bool = False
    cman: dict[str, Any] | None = None  # the node's cman status (cman.control "status"), None when none answers
    cman_problem: str = ""  # why no cman status: "not running", a timeout, ...


@dataclass(slots=True)
class LabState:
    cluster_name: str
    nodes: list[LabNode] = field(default_factory=list)
    partition: list[list[str]] | None = None  # the groups of the current partition (None: healed)
    daemons: bool = True  # do nodes start their cluster daemons when they boot (`up --no-daemons`: no)
    ledger: str | None = None  # the nemesis' ledger: kill, stop, down and fence_lab off record "off" there

    def to_json(self, directory: Path) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "cluster_name": self.cluster_name,
            "directory": str(directory),
            "client_root": str(directory / CLIENT_DIR),
            "nodes": [n.to_json() for n in self.nodes],
            "partition": self.partition,
            "daemons": self.daemons,
            "ledger": self.ledger,
        }


# -- names and addresses -----------------------------------------------------------------------------------
def node_names(nodes: int | None = None, names: Sequence[str] | None = None) -> list[str]:
    """The lab's node names: `names` as given (checked), else node1..nodeN (N default 3)."""
    if names is not None and nodes is not None and nodes != len(names):
        raise LabError(f"--nodes {nodes} and --node-names ({len(names)} names) disagree; give one of them")
    if names is None:
        count = DEFAULT_NODES if nodes is None else nodes
        if not 1 <= count <= MAX_NODES:
            raise LabError(f"the number of nodes must be between 1 and {MAX_NODES}, not {count}")
        return [f"node{i}" for i in range(1, count + 1)]
    result = [name.strip() for name in names]
    if not result or not 1 <= len(result) <= MAX_NODES:
        raise LabError(f"give between 1 and {MAX_NODES} node names")
    for name in result:
        if not _NODE_NAME.fullmatch(name):
            raise LabError(
                f"invalid node name {name!r}: use letters, digits, '.' and '-', starting with a letter or digit"
            )
    seen: set[str] = set()
    for name in result:
        if name in seen:
            raise LabError(f"node name {name} is given twice")
        seen.add(name)
    return result


def check_cluster_name(name: str) -> str:
    if not _CLUSTER_NAME.fullmatch(name):
        raise LabError(f"invalid cluster name {name!r}: 1 to 16 letters, digits, '_', '.' or '-'")
    return name


def node_address(index: int, first: str = FIRST_ADDRESS) -> str:
    """The loopback address of the index-th node (0-based): 127.0.0.11, 127.0.0.12, ..."""
    address = ipaddress.IPv4Address(first) + index
    if address not in ipaddress.IPv4Network("127.0.0.0/8"):
        raise LabError(f"node address {address} is outside 127.0.0.0/8")
    return str(address)


# -- the files of a node's root -----------------------------------------------------------------------------
def lab_cluster_conf(
    cluster_name: str,
    names: Sequence[str],
    port: int = AGENT_PORT,
    lab_dir: Path | None = None,
    *,
    services: Sequence[LabService] = (),
) -> bytes:
    """The lab's first cluster.conf (version 1): every node with 1 vote and its nodeid, fenced by the lab's
    fence device, and an ordered failover domain holding all nodes in order (two nodes get cman two_node).
    Agents on another port than 11111 are named on each clusternode (`ricci_port`), which is how peers find them.
    The lab's timings: `<totem token="1000"/>` and `<fence_daemon post_join_delay="3"/>`; the fence device names
    the lab's folder (`lab="<lab_dir>"`) when it is given, for fence_lab. `services` (which need `lab_dir`: their
    scripts live in DIR/_lab) are added under `<rm>` (add_lab_services)."""
    from cluster_conf import edit, validate
    from ricci_agent.server import PORT_ATTRIBUTE

    conf = edit.new_cluster(cluster_name, two_node=len(names) == 2)  # two nodes: cman two_node, as luci did
    edit.set_section_attrs(conf, "totem", {"token": str(TOKEN_MS)})
    edit.set_section_attrs(conf, "fence_daemon", {"post_join_delay": str(POST_JOIN_DELAY)})
    device_attrs = {FENCE_LAB_ATTRIBUTE: str(lab_dir)} if lab_dir is not None else {}
    edit.add_fence_device(conf, FENCE_DEVICE, FENCE_AGENT, device_attrs)
    extra = {PORT_ATTRIBUTE: str(port)} if port != AGENT_PORT else {}
    for nodeid, name in enumerate(names, start=1):
        edit.add_node(conf, name, nodeid=nodeid, votes=1, fence_device=FENCE_DEVICE, device_params={"port": name},
                      attrs=extra)
    edit.add_domain(
        conf, FAILOVER_DOMAIN, ordered=True, members=[(name, i) for i, name in enumerate(names, start=1)]
    )
    if services:
        if lab_dir is None:
            raise LabError("the lab's services need the lab folder (their scripts live in DIR/_lab)")
        add_lab_services(conf, services, lab_dir)
    errors = [r for r in validate(conf, lint=False) if r.is_error]
    if errors:  # a bug in this module, not bad input: the names were checked already
        raise LabError(f"the generated cluster.conf is invalid: {errors[0].format('cluster.conf')}")
    return conf.to_bytes()


def add_lab_services(conf: Any, services: Sequence[LabService], lab_dir: Path) -> None:
    """Each service under `<rm>`: global resources (an `ip` with monitor_link 0 for a service with an address,
    then a `script` named like the service, file DIR/_lab/<service>) referenced by the service, which runs in its
    domain with its recovery policy and autostart. The scripts themselves are written by Lab.create."""
    from cluster_conf import edit

    for service in services:
        refs = []
        if service.address:
            edit.add_resource(conf, "ip", {"address": service.address, "monitor_link": "0"})
            refs.append(("ip", service.address))
        script = str(lab_services.script_path(lab_dir, service.name))
        edit.add_resource(conf, "script", {"name": service.name, "file": script})
        refs.append(("script", service.name))
        attrs = {"recovery": service.recovery, "autostart": "1" if service.autostart else "0"}
        if service.domain:
            attrs = {"domain": service.domain, **attrs}
        edit.add_service(conf, service.name, attrs)
        for rtype, key in refs:
            edit.add_child_resource(conf, service.name, rtype, {"ref": key})


def default_services(first_address: str) -> list[LabService]:
    """The lab's sample service: `webservice` in labdomain, an ip resource (.222 of the nodes' /24) and a script
    serving `nodeN server` on port 8080 of that address."""
    return [lab_services.web_service(lab_services.web_address(first_address))]


def hosts_file(nodes: Sequence[LabNode]) -> str:
    """etc/hosts (hosts(5)): how an agent finds the address of a clusternode name."""
    width = max(len(n.address) for n in nodes)
    lines = ["# written by the local lab (ricci_agent.lab): cluster node names on loopback"]
    lines += [f"{n.address:<{width}} {n.name}" for n in nodes]
    return "\n".join(lines) + "\n"


def ricci_json(node: LabNode, settings: Mapping[str, Any] | None = None) -> str:
    """The agent's ricci.json: its name, address and port, plus any further `settings` (tests use these)."""
    data = {"node_name": node.name, "address": node.address, "port": node.port, **(settings or {})}
    return json.dumps(data, indent=2) + "\n"


def _write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    from cluster_conf.document import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data.encode() if isinstance(data, str) else data, keep_old=False)
    os.chmod(path, mode)


def make_root(root: Path) -> None:
    for sub in ("etc/cluster", "etc/ricci", "var/lib/cluster", "var/log/cluster"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "etc/ricci", 0o700)


def trust_all(nodes: Sequence[LabNode], client_root: Path) -> dict[str, str]:
    """Create the keys and make every party trust every other; return each node's host key fingerprint.

    Each node's client key and the lab's client key are authorised on every node; each host key is pinned in
    every node's known_hosts and the lab's, under the node's address and under its name. All nodes trust the
    same keys, so the two files are written once through ricci_agent.keys (in the first node's root) and copied
    to the others: quadratic work instead of cubic, which matters for a 64-node lab."""
    from ricci_agent import keys

    make_root(client_root)
    fingerprints = {n.name: keys.ensure_host_key(n.root) for n in nodes}
    client_keys = [keys.ensure_client_key(n.root) for n in nodes] + [keys.ensure_client_key(client_root)]
    first = nodes[0].root
    for line in client_keys:
        keys.authorize(first, line)
    for peer in nodes:
        host_key = keys.host_public_key(peer.root)
        for host in (peer.address, peer.name):
            keys.pin_host_key(first, host, peer.port, host_key)
    for root in [n.root for n in nodes[1:]] + [client_root]:
        if root != client_root:
            shutil.copy2(first / keys.AUTHORIZED_KEYS, root / keys.AUTHORIZED_KEYS)
        shutil.copy2(first / keys.KNOWN_HOSTS, root / keys.KNOWN_HOSTS)
    return fingerprints


def ensure_authkey(nodes: Sequence[LabNode]) -> None:
    """Every node holds the same cluster key at etc/cluster/authkey (0600): the first node's when it has one
    (a lab made before the key existed gets one on its next `up`), else a new one."""
    existing = [n.root / AUTHKEY for n in nodes if (n.root / AUTHKEY).is_file()]
    key = existing[0].read_bytes() if existing else None
    if key is not None and len(existing) == len(nodes):
        return
    try:
        from cman import wire
    except ImportError:
        wire = None  # type: ignore[assignment]
    if key is None:
        key = wire.new_key() if wire is not None and hasattr(wire, "new_key") else secrets.token_bytes(AUTHKEY_BYTES)
    for node in nodes:
        if wire is not None and hasattr(wire, "write_key"):
            wire.write_key(node.root, key)
        else:
            _write(node.root / AUTHKEY, key, mode=0o600)


# -- processes ------------------------------------------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a live process, or None when it is gone (zombies count as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rfind(")") + 2 :].split()
    state, pgrp = fields[0], int(fields[2])
    return (None if state in ("Z", "X") else (state, pgrp))


_EXIT_CODES: dict[int, int] = {}  # pid -> exit status of the agents this process started and collected


def _reap(pid: int) -> None:
    """Collect `pid` if it is our own exited child, so it does not linger as a zombie (its status is kept)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            _EXIT_CODES[pid] = os.waitstatus_to_exitcode(status)


def exit_code(pid: int, wait: float = 2.0) -> int | None:
    """The exit status of an agent this process started (after stop, kill, down...): 0 for a clean exit, -N when
    signal N ended it; None when unknown (not our child, or still running after `wait` s). A process that is
    exiting no longer shows its environment (so node_processes counts it gone) a moment before it becomes a
    zombie: the bounded wait covers that moment."""
    deadline = time.monotonic() + wait
    while True:
        _reap(pid)
        if pid in _EXIT_CODES or time.monotonic() >= deadline:
            return _EXIT_CODES.get(pid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return _EXIT_CODES.get(pid)  # gone and collected by someone else: unknown
        except PermissionError:
            return None  # not ours
        time.sleep(0.02)


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) of process group `pgid`."""
    _reap(pgid)
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid:
                members.append(int(entry.name))
    return members


def _parent(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text[text.rfind(")") + 2 :].split()[1])


def _environ_root(pid: int) -> bytes | None:
    """The CLUSTER_ROOT a process was started with (b"" when it has none), or None when its environment cannot be
    read (gone, or another user's)."""
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in entries:
        if entry.startswith(b"CLUSTER_ROOT="):
            return entry[len(b"CLUSTER_ROOT="):]
    return b""


def _self_and_ancestors() -> set[int]:
    """This process, and its ancestors as far up as they run as the same node (the same CLUSTER_ROOT as this
    process, or none when it has none): never signalled by the lab. fence_lab runs as a child of the fencing node's
    daemon and `localcluster exec node1 -- ...` runs as node1: those chains are spared. The walk stops at the first
    ancestor of another node (or one whose environment cannot be read): a process carrying another node's marker
    is never spared because it happens to be an ancestor (say node1's daemon, if node2 had been booted beneath it),
    so fencing that node still reaches every one of its processes."""
    me = os.getpid()
    spared = {me}
    own = _environ_root(me)
    pid = _parent(me)
    while pid and pid not in spared and len(spared) < 1000 and _environ_root(pid) == own:
        spared.add(pid)
        pid = _parent(pid)
    return spared


def node_processes(node: LabNode) -> list[int]:
    """Every live process of the node: those whose environment carries `CLUSTER_ROOT=<its root>`, in any process
    group (its agent's group, and the daemons and services that left it with setsid).

    Only the marker counts, never a recorded pid or group: a stale lab.json (after a reboot, say) cannot make the
    lab signal some other program. This process, and its ancestors that run as the same node, are never listed
    (_self_and_ancestors)."""
    if node.pid is not None:
        _reap(node.pid)
    marker = str(node.root).encode()
    spared = _self_and_ancestors()
    ours = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            pid = int(entry.name)
            if pid not in spared and _proc_stat(pid) is not None and _environ_root(pid) == marker:
                ours.append(pid)
    return ours


def _signal(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_nodes(nodes: Sequence[LabNode], timeout: float = KILL_GRACE) -> list[LabNode]:
    """SIGKILL every process of the nodes until none is left (each round rescans, so a process forked meanwhile
    is caught too); bounded by `timeout`. Return the nodes that still have processes."""
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending:
        for node in pending:
            _signal(node_processes(node), signal.SIGKILL)
        time.sleep(0.01)
        pending = [n for n in pending if node_processes(n)]
        if time.monotonic() >= deadline:
            break
    return pending


def stop_nodes(nodes: Sequence[LabNode], grace: float = STOP_GRACE) -> list[LabNode]:
    """Stop the nodes: SIGTERM to every process of each (newcomers too, while waiting), SIGKILL to those left
    after `grace` seconds. A paused node is SIGKILLed at once: resumed, its daemons could act on a view they
    hold from before the pause. Return the nodes that still have processes."""
    survivors = kill_nodes([n for n in nodes if n.paused])
    live = [n for n in nodes if not n.paused]
    signalled: set[int] = set()
    deadline = time.monotonic() + grace
    while live:
        for node in live:
            fresh = [pid for pid in node_processes(node) if pid not in signalled]
            _signal(fresh, signal.SIGTERM)
            signalled.update(fresh)
        live = [n for n in live if node_processes(n)]
        if not live or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return survivors + kill_nodes(live)


def _stopped(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is None or stat[0] in ("T", "t")


def pause_processes(node: LabNode, timeout: float = PAUSE_GRACE) -> list[int]:
    """SIGSTOP every process of the node until all of them are stopped (rescanning: one forked meanwhile is
    stopped too); bounded. Return the pids stopped."""
    deadline = time.monotonic() + timeout
    stopped: set[int] = set()
    while True:
        pids = node_processes(node)
        _signal([p for p in pids if not _stopped(p)], signal.SIGSTOP)
        stopped.update(pids)
        time.sleep(0.01)
        running = [p for p in node_processes(node) if not _stopped(p)]
        if not running:
            return sorted(p for p in stopped if _proc_stat(p) is not None)
        if time.monotonic() >= deadline:
            raise LabError(f"{node.name}: processes {', '.join(map(str, running))} did not stop within {timeout:g} s")


def is_agent(pid: int | None, node: LabNode) -> bool:
    """Is `pid` a live `ricci serve` for `node` (and not some other process that reused the pid)?"""
    if pid is None:
        return False
    _reap(pid)
    if _proc_stat(pid) is None:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"serve" in argv and node.address.encode() in argv and str(node.port).encode() in argv


def agent_command(node: LabNode, *, boot: bool = False) -> list[str]:
    """`ricci serve` for this node: the console script next to this Python, else the module. `boot`: the agent
    starts the node's cluster daemons by itself once it listens (a machine powering on with cman and rgmanager
    enabled)."""
    script = Path(sys.executable).parent / "ricci"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "ricci_agent.cli"]
    return [*base, "serve", "--address", node.address, "--port", str(node.port), *(["--boot"] if boot else [])]


def spawn_agent(node: LabNode, *, detach: bool = False, boot: bool = False) -> int:
    """Start the node's agent in the background, in its own session, output to its root's log folder.

    `detach` (fence_lab on/reboot): start it through a short-lived intermediate child (a double fork), so the
    agent is reparented at once and never descends from the caller, which may be another node's daemon."""
    if detach:
        return _spawn_detached(node, boot)
    output = node.root / AGENT_OUTPUT
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "ab") as log:
        process = subprocess.Popen(
            agent_command(node, boot=boot),
            cwd=node.root,
            env=node.environ(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return process.pid


def _spawn_detached(node: LabNode, boot: bool = False) -> int:
    """spawn_agent in a forked child that reports the agent's pid through a pipe and exits without waiting for
    it. Only for single-threaded callers (fence_lab): fork copies no other thread."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the intermediate: start the agent, report its pid, exit at once
        code = 1
        try:
            os.close(reader)
            os.write(writer, str(spawn_agent(node, boot=boot)).encode())
            code = 0
        except BaseException as exc:  # reported to the parent, which raises LabError
            with contextlib.suppress(OSError):
                os.write(writer, f"!{exc}".encode())
        finally:
            os._exit(code)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        reply = pipe.read().decode(errors="replace")
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child, 0)
    if not reply.isdigit():
        reason = reply[1:] if reply.startswith("!") else "the intermediate process died"
        raise LabError(f"could not start the agent of {node.name}: {' '.join(reason.split())}")
    return int(reply)


def port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


def free_port(nodes: int, first_address: str = FIRST_ADDRESS, attempts: int = 50) -> int:
    """A port that is free on all `nodes` lab addresses: for tests and benchmarks that must not collide with a
    lab on 11111 or with each other. Bounded: LabError after `attempts` tries."""
    for _ in range(attempts):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((first_address, 0))
            port = sock.getsockname()[1]
        if all(port_free(node_address(i, first_address), port) for i in range(nodes)):
            return port
    raise LabError(f"found no port free on {nodes} addresses from {first_address} in {attempts} tries")


def free_block(nodes: int, port: int = AGENT_PORT, attempts: int = 50) -> str:
    """The first address of a block 127.A.B.11.. (A >= 1, away from the default 127.0.0.11..) whose `nodes`
    addresses all have `port` free: for tests and benchmarks, so that each lab keeps the real port 11111 and
    never meets another lab. Random, bounded: LabError after `attempts` tries."""
    import random

    for _ in range(attempts):
        first = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.11"
        if all(port_free(node_address(i, first), port) for i in range(nodes)):
            return first
    raise LabError(f"found no block of {nodes} loopback addresses with port {port} free in {attempts} tries")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def last_lines(path: Path, count: int = 3) -> str:
    """The last lines of a log, joined on one line, for an error message."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in lines[-count:])


# -- partitions (nftables) -------------------------------------------------------------------------------------
def parse_groups(words: Sequence[str]) -> list[list[str]]:
    """`node1 / node2,node3` (as argv words, in any spacing) -> [["node1"], ["node2", "node3"]]: groups are
    separated by `/`, names inside a group by commas or spaces."""
    groups = []
    for part in " ".join(words).split("/"):
        names = [n for n in re.split(r"[\s,]+", part) if n]
        if not names:
            raise LabError("empty group in the partition: write groups of node names separated by '/' "
                           "(partition node1 / node2,node3)")
        groups.append(names)
    return groups


def partition_groups(names: Sequence[str], groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """The partition's groups, checked against the lab's node `names`; the nodes named in no group form one more
    group together (so `partition node1` cuts node1 off from all the others)."""
    seen: set[str] = set()
    for group in groups:
        for name in group:
            if name not in names:
                raise LabError(f"no node {name} in the lab (nodes: {', '.join(names)})")
            if name in seen:
                raise LabError(f"node {name} is in two groups of the partition")
            seen.add(name)
    result = [list(g) for g in groups]
    rest = [n for n in names if n not in seen]
    if rest:
        result.append(rest)
    if len(result) < 2:
        raise LabError("a partition needs at least two groups (partition node1 / node2,node3)")
    return result


def table_name(directory: Path) -> str:
    """The lab's nftables table: one per lab folder, so labs side by side never touch each other's rules."""
    import hashlib

    return TABLE_PREFIX + hashlib.sha256(str(directory).encode()).hexdigest()[:12]


def partition_ruleset(table: str, groups: Sequence[Sequence[LabNode]]) -> str:
    """An nft script that (re)creates `table inet <table>` dropping, on the input hook, every IPv4 packet from a
    node's address to the address of a node in another group (both ways). Loopback packets pass the input hook,
    so the sender sees no error: the packets are simply lost, as on a real network."""
    rules = []
    for i, group in enumerate(groups):
        for j, other in enumerate(groups):
            if i != j:
                rules += [f"    ip saddr {a.address} ip daddr {b.address} drop" for a in group for b in other]
    return "\n".join([
        f"table inet {table}",  # the add-then-delete idiom: replaces a table that may exist, in one transaction
        f"delete table inet {table}",
        f"table inet {table} {{",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        *rules,
        "  }",
        "}",
        "",
    ])


def nft_command() -> str:
    """The nft program, or LabError (one line) when partitions cannot be made here: not root, or no nft."""
    prefix = "partition needs root and nftables (nft)"
    if os.geteuid() != 0:
        raise LabError(f"{prefix}: not running as root")
    program = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), None)
    if program is None:
        raise LabError(f"{prefix}: nft is not installed (apt-get install nftables)")
    return program


def run_nft(args: Sequence[str], script: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run nft with an argv list (never a shell); `script` goes to `nft -f -` on stdin."""
    argv = [nft_command(), *args] + (["-f", "-"] if script is not None else [])
    try:
        return subprocess.run(argv, input=script, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"cannot run nft: {exc}") from None


def cman_status(node: LabNode, timeout: float = 1.0) -> tuple[dict[str, Any] | None, str]:
    """(the status of the node's cman, "") or (None, why not): "not running" when no daemon answers."""
    try:
        from cman import control
    except ImportError:
        return None, "not running (the cman package is not installed)"
    try:
        result = control.request(node.root, "status", timeout=timeout)
    except control.ControlError as exc:
        return None, "not running" if exc.code == "not_running" else f"{exc.code}: {exc.message}"
    if not isinstance(result, dict):
        return None, "bad_reply: the status is not an object"
    return result, ""


# -- the lab ----------------------------------------------------------------------------------------------------
class Lab:
    """A local lab in `directory` (default var/lab). Every method is safe to call from several processes: the
    ones that change lab.json hold a lock on the folder."""

    def __init__(self, directory: str | os.PathLike[str] = DEFAULT_DIR) -> None:
        self.directory = Path(directory).absolute()

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.directory / LAB_FILE

    @property
    def client_root(self) -> Path:
        return self.directory / CLIENT_DIR

    def exists(self) -> bool:
        return self.state_path.is_file()

    def load(self) -> LabState:
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab in {self.directory} (no {LAB_FILE}); create one with 'localcluster up'") from None
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read {self.state_path}: {exc}") from None
        try:
            partition = data.get("partition")
            return LabState(
                str(data["cluster_name"]),
                [LabNode.from_json(n) for n in data["nodes"]],
                [[str(name) for name in group] for group in partition] if partition else None,
                bool(data.get("daemons", True)),
                str(data["ledger"]) if data.get("ledger") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LabError(f"{self.state_path} is not a lab description (bad or missing {exc})") from None

    def save(self, state: LabState) -> None:
        _write(self.state_path, json.dumps(state.to_json(self.directory), indent=2) + "\n")

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the lab's lock (flock on DIR/.lab.lock). With `timeout`, give up after that many seconds with a
        LabError instead of waiting as long as the holder keeps it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_FILE, "a") as lock:
            if timeout is None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise LabError(f"the lab in {self.directory} is busy: another lab operation has held "
                                           f"{LOCK_FILE} for {timeout:g} s") from None
                        time.sleep(LOCK_POLL)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @property
    def nodes(self) -> list[LabNode]:
        return self.load().nodes

    @property
    def cluster_name(self) -> str:
        return self.load().cluster_name

    def node(self, name: str) -> LabNode:
        return self._find(self.load(), name)

    def _find(self, state: LabState, name: str) -> LabNode:
        for node in state.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in state.nodes)
        raise LabError(f"no node {name} in the lab in {self.directory} (nodes: {known})")

    def client(
        self,
        *,
        connect_timeout: float | None = None,
        request_timeout: float | None = None,
        long_request_timeout: float | None = None,
    ) -> RicciClient:
        """A client with the lab's own key: trusted by every node, and pinning every node's host key. Timeouts
        not given are the client library's defaults (ricci_agent.client)."""
        from ricci_agent import client

        return client.RicciClient.for_root(
            self.client_root,
            connect_timeout=connect_timeout or client.CONNECT_TIMEOUT,
            request_timeout=request_timeout or client.REQUEST_TIMEOUT,
            long_request_timeout=long_request_timeout or client.LONG_REQUEST_TIMEOUT,
        )

    # -- up ------------------------------------------------------------------------------------------------
    def up(
        self,
        nodes: int | None = None,
        names: Sequence[str] | None = None,
        cluster_name: str = DEFAULT_CLUSTER_NAME,
        *,
        first_address: str = FIRST_ADDRESS,
        port: int = AGENT_PORT,
        timeout: float | None = None,
        no_daemons: bool = False,
        services: bool | Sequence[LabService] = True,
    ) -> list[LabNode]:
        """Create the lab (or start the agents of an existing one again), wait until every agent answers `hello`,
        then start every node's cluster daemons (`node.start`: `cman_tool join`) unless `no_daemons`. `services`:
        what a new lab's cluster.conf runs (Lab.create); ignored for an existing lab. On any
        failure the processes started here are stopped again before the error is raised. The lab's lock is held
        while the lab is checked and the agents are spawned and recorded, not during the waits (up to ~80 s)."""
        with self.locked():
            state = self._existing_or_new(nodes, names, cluster_name, first_address, port, services)
            ensure_authkey(state.nodes)
            state.daemons = not no_daemons
            running = [n.name for n in state.nodes if is_agent(n.pid, n)]
            if running:
                raise LabError(
                    f"the lab in {self.directory} is already running ({', '.join(running)}); "
                    "run 'localcluster down' first"
                )
            self._check_addresses_free(state.nodes)
            try:
                for i, node in enumerate(state.nodes):
                    pid = spawn_agent(node)
                    state.nodes[i] = replace(node, pid=pid)
                    self.save(state)
            except BaseException:
                self._undo_start(state.nodes, locked=True)
                raise
        # The waits run without the lock: fence_lab and the other verbs must not queue behind them.
        try:
            self._wait_hello(state.nodes, timeout)
            if not no_daemons:
                self._start_daemons(state.nodes)
        except BaseException:
            self._undo_start(state.nodes)
            raise
        return list(state.nodes)

    def _undo_start(self, started: Sequence[LabNode], *, locked: bool = False) -> None:
        """Stop the nodes an `up` or `start` started, and record them stopped: only those lab.json still names
        with the pid started here (another operation may have started a node again meanwhile)."""
        stop_nodes(started)
        pids = {n.name: n.pid for n in started}
        with contextlib.nullcontext() if locked else self.locked():
            state = self.load()
            state.nodes = [replace(n, pid=None, paused=False) if n.name in pids and n.pid == pids[n.name] else n
                           for n in state.nodes]
            self.save(state)

    def _existing_or_new(
        self,
        nodes: int | None,
        names: Sequence[str] | None,
        cluster_name: str,
        first_address: str,
        port: int,
        services: bool | Sequence[LabService] = True,
    ) -> LabState:
        if self.exists():
            state = self.load()
            wanted = node_names(nodes, names) if (nodes is not None or names is not None) else None
            have = [n.name for n in state.nodes]
            if wanted is not None and wanted != have:
                raise LabError(
                    f"{self.directory} already holds a lab with nodes {', '.join(have)}; "
                    "use another --dir, or remove that folder after 'localcluster down'"
                )
            return state
        if not 1 <= port <= 65535:
            raise LabError(f"port {port} is not between 1 and 65535")
        return self.create(node_names(nodes, names), check_cluster_name(cluster_name), first_address, port,
                           services=services)

    def create(
        self,
        names: Sequence[str],
        cluster_name: str,
        first_address: str,
        port: int,
        *,
        config: bytes | None = None,
        settings: Mapping[str, Any] | None = None,
        services: bool | Sequence[LabService] = True,
    ) -> LabState:
        """Write every node's root (keys, trust, cluster.conf, etc/hosts, ricci.json), the services' scripts
        (DIR/_lab/) and lab.json.

        `config` replaces the lab's own first cluster.conf (it must be valid: it is installed as every node's
        accepted version); `settings` are added to every node's ricci.json. Tests use both. `services`: True (the
        default) is the sample `webservice` (default_services), False none, or a list of LabService (the
        nemesis' ledger services, say); their scripts are written in any case, and they go into the lab's own
        cluster.conf when `config` is not given (a test's own `config` refers to them by script_path)."""
        if self.directory.exists() and any(p.name != LOCK_FILE for p in self.directory.iterdir()):
            raise LabError(f"{self.directory} exists and is not a lab (no {LAB_FILE}); choose an empty or new --dir")
        lab_nodes = [
            LabNode(name, nodeid, node_address(nodeid - 1, first_address), port, self.directory / name)
            for nodeid, name in enumerate(names, start=1)
        ]
        from ricci_agent.store import ConfigStore, check_candidate

        if services is True:
            services = default_services(first_address)
        elif services is False:
            services = []
        first_config = (lab_cluster_conf(cluster_name, names, port, self.directory, services=services)
                        if config is None else config)
        candidate = check_candidate(first_config, "the lab's cluster.conf")
        hosts = hosts_file(lab_nodes)
        scripts_dir = self.directory / lab_services.SCRIPTS_DIR
        try:
            for service in services:
                lab_services.write_script(self.directory, service)
            for node in lab_nodes:
                make_root(node.root)
                ConfigStore(node.root).install(candidate, author=AUTHOR)  # in the history, as if pushed
                _write(node.root / "etc/hosts", hosts)
                _write(node.root / "etc/ricci/ricci.json", ricci_json(node, settings))
            fingerprints = trust_all(lab_nodes, self.client_root)
            ensure_authkey(lab_nodes)
            state = LabState(cluster_name, [replace(n, fingerprint=fingerprints[n.name]) for n in lab_nodes])
            self.save(state)
        except BaseException:  # leave no half-made lab behind: a retry would find a folder that is not a lab
            for root in [n.root for n in lab_nodes] + [self.client_root, scripts_dir]:
                shutil.rmtree(root, ignore_errors=True)
            raise
        return state

    def _check_addresses_free(self, nodes: Sequence[LabNode]) -> None:
        for node in nodes:
            if not port_free(node.address, node.port):
                raise LabError(
                    f"{node.key} (for {node.name}) is already in use; another lab may be running there "
                    "(stop it with 'localcluster down --dir ITS_DIR')"
                )

    def _wait_hello(self, nodes: Sequence[LabNode], timeout: float | None) -> None:
        """Bounded wait until every agent answers hello; an agent that exits or stays silent is named."""
        limit = timeout if timeout is not None else 20.0 + 0.5 * len(nodes)
        deadline = time.monotonic() + limit
        pending = {n.key: n for n in nodes}
        with self.client(connect_timeout=1.0, request_timeout=3.0) as client:
            while pending:
                for node in pending.values():
                    if not is_agent(node.pid, node):
                        output = last_lines(node.root / AGENT_OUTPUT)
                        raise LabError(
                            f"the agent of {node.name} exited before answering"
                            + (f": {output}" if output else f" (see {node.root / AGENT_OUTPUT})")
                        )
                # An agent that is not listening yet refuses the TCP connection at once: no need to probe first.
                results = client.fan_out([n.endpoint for n in pending.values()], "hello")
                for key, result in results.items():
                    if result.ok:
                        pending.pop(key, None)
                if not pending:
                    break
                if time.monotonic() >= deadline:
                    names = ", ".join(sorted(n.name for n in pending.values()))
                    raise LabError(f"no hello from {names} within {limit:.0f} s (see their {AGENT_OUTPUT})")
                time.sleep(HELLO_POLL)

    def _start_daemons(self, nodes: Sequence[LabNode]) -> None:
        """`node.start` on every node at once (the agent runs `cman_tool join -w`); the first failure is a
        one-line LabError naming its node."""
        by_key = {n.key: n for n in nodes}
        with self.client(connect_timeout=3.0, request_timeout=NODE_START_TIMEOUT) as client:
            results = client.fan_out([n.endpoint for n in nodes], "node.start", timeout=NODE_START_TIMEOUT)
        for key, result in results.items():
            if not result.ok:
                message = " ".join(str(result.message).split())
                raise LabError(f"{by_key[key].name} could not start its cluster daemons (node.start): "
                               f"{result.code}: {message}")

    # -- down, kill, stop, start, pause, resume ----------------------------------------------------------
    def down(self, grace: float = STOP_GRACE) -> list[str]:
        """Stop every node (SIGTERM to all its processes, then SIGKILL after `grace` s; a paused node SIGKILL at
        once) and heal any partition; return the names of the nodes that had processes."""
        with self.locked():
            state = self.load()
            running = [n for n in state.nodes if node_processes(n)]
            survivors = {n.name for n in stop_nodes(running, grace)}
            self._record_off(state, [n.name for n in running if n.name not in survivors], "down")
            state.nodes = [n if n.name in survivors else replace(n, pid=None, paused=False) for n in state.nodes]
            self.save(state)
            self._heal(state, quiet=True)
            if survivors:
                raise LabError(f"processes of {', '.join(sorted(survivors))} survived SIGKILL")
            return [n.name for n in running]

    def kill(self, name: str) -> int | None:
        """SIGKILL every process of the node (a crash, or a power-off: fence_lab uses this); return the agent's
        pid as recorded (None when the agent was gone and only other processes of the node were left)."""
        with self.locked():
            state = self.load()
            node = self._find(state, name)
            if not node_processes(node):
                raise LabError(f"{name} is not running")
            if kill_nodes([node]):
                raise LabError(f"{name}'s processes survived SIGKILL: {', '.join(map(str, node_processes(node)))}")
            self._record_off(state, [name], "kill")
            self._set_node(state, name, pid=None, paused=False)
            return node.pid

    def stop(self, name: str, grace: float = STOP_GRACE) -> int | None:
        """Shut one node down cleanly, as `shutdown -h` does on a cluster node: its cluster daemons stop first
        (`node.stop`: rgmanager stops its services, which then move by the normal rules, and cman leaves the
        cluster), then SIGTERM to its processes and SIGKILL after `grace` s."""
        node = self.node(name)
        if self.load().daemons and is_agent(node.pid, node) and not node.paused:
            with contextlib.suppress(Exception), self.client(connect_timeout=2.0) as client:
                client.call(*node.endpoint, "node.stop")
        with self.locked():
            state = self.load()
            node = self._find(state, name)
            if not node_processes(node):
                raise LabError(f"{name} is not running")
            if stop_nodes([node], grace):
                raise LabError(f"{name}'s processes survived SIGKILL: {', '.join(map(str, node_processes(node)))}")
            self._record_off(state, [name], "stop")
            self._set_node(state, name, pid=None, paused=False)
            return node.pid

    def start(self, name: str, timeout: float = 20.0, *, no_daemons: bool | None = None,
              detach: bool = False, boot: bool = False) -> LabNode:
        """Start one node's agent again, wait until it answers hello, then start its cluster daemons
        (`node.start`) unless `no_daemons` (default: as the lab was brought `up`, with or without daemons).
        On failure whatever was started is stopped again. The lab's lock is held only while the agent is
        spawned and recorded, not during the waits. `detach`: see spawn_agent (fence_lab on)."""
        with self.locked():
            state = self.load()
            if no_daemons is None:
                no_daemons = not state.daemons
            node = self._find(state, name)
            if is_agent(node.pid, node):
                raise LabError(f"{name} is already running (pid {node.pid})")
            self._check_addresses_free([node])
            node = replace(node, pid=spawn_agent(node, detach=detach, boot=boot and not no_daemons), paused=False)
            self._set_node(state, name, pid=node.pid, paused=False)
        if boot:
            return node  # powered on: the node boots by itself (its agent starts its daemons), nobody waits
        # The waits run without the lock (as in `up`): a fence must never queue behind a node that boots.
        try:
            self._wait_hello([node], timeout)
            if not no_daemons:
                self._start_daemons([node])
        except BaseException:
            self._undo_start([node])
            raise
        return node

    def power_off(self, name: str, *, lock_wait: float = RECORD_LOCK_WAIT) -> tuple[bool, str]:
        """fence_lab off: SIGKILL every process of the node without taking the lab's lock (a lab operation may
        hold it, and a fence must not wait), then record the node stopped in lab.json, waiting at most
        `lock_wait` s for the lock. Return (whether the node had processes, a warning when lab.json could not be
        updated: it then still names the dead agent's pid, which every reader checks against /proc anyway)."""
        state = self.load()
        node = self._find(state, name)
        if not node_processes(node):
            return False, ""
        if kill_nodes([node]):
            raise LabError(f"{name}'s processes survived SIGKILL: {', '.join(map(str, node_processes(node)))}")
        self._record_off(state, [name], "fence")
        try:
            with self.locked(timeout=lock_wait):
                state = self.load()
                if not node_processes(self._find(state, name)):  # not started again meanwhile
                    self._set_node(state, name, pid=None, paused=False)
        except LabError as exc:
            return True, f"{name} is off, but {LAB_FILE} was not updated: {exc}"
        return True, ""

    def pause(self, name: str) -> list[int]:
        """SIGSTOP every process of the node (a hung node: it neither answers nor acts); return their pids."""
        with self.locked():
            state = self.load()
            node = self._find(state, name)
            if node.paused:
                raise LabError(f"{name} is already paused (resume it with 'localcluster resume {name}')")
            if not node_processes(node):
                raise LabError(f"{name} is not running")
            self._set_node(state, name, paused=True)  # first: a failure below still leaves it marked for resume
            return pause_processes(node)

    def resume(self, name: str) -> list[int]:
        """SIGCONT every process of a paused node; return their pids."""
        with self.locked():
            state = self.load()
            node = self._find(state, name)
            if not node.paused:
                raise LabError(f"{name} is not paused")
            pids = node_processes(node)
            _signal(pids, signal.SIGCONT)
            self._set_node(state, name, paused=False)
            return pids

    # -- the nemesis' ledger ---------------------------------------------------------------------------------
    def set_ledger(self, path: str | os.PathLike[str] | None) -> None:
        """Record the nemesis' ledger in lab.json (None: no ledger). From then on every node that `kill`, `stop`,
        `down` or `power_off` (fence_lab off) leaves without processes gets an "off" line there, written after its
        processes are gone: `{"node", "event": "off", "time", "cause": "kill"|"stop"|"down"|"fence"}`."""
        with self.locked():
            state = self.load()
            state.ledger = str(Path(path).absolute()) if path is not None else None
            self.save(state)

    @property
    def ledger(self) -> Path | None:
        ledger = self.load().ledger
        return Path(ledger) if ledger else None

    @staticmethod
    def _record_off(state: LabState, names: Sequence[str], cause: str) -> None:
        if state.ledger:
            for name in names:
                lab_services.record_off(state.ledger, name, cause)

    def _set_node(self, state: LabState, name: str, **changes: Any) -> None:
        state.nodes = [replace(n, **changes) if n.name == name else n for n in state.nodes]
        self.save(state)

    # -- partition and heal --------------------------------------------------------------------------------
    def partition(self, groups: Sequence[Sequence[str]]) -> list[list[str]]:
        """Drop every packet between the addresses of nodes in different groups (nftables, input hook, both
        ways), replacing any earlier partition; nodes named in no group form one more group. Return the groups.
        Needs root and nft (LabError otherwise)."""
        with self.locked():
            state = self.load()
            full = partition_groups([n.name for n in state.nodes], groups)
            by_name = {n.name: n for n in state.nodes}
            script = partition_ruleset(table_name(self.directory), [[by_name[n] for n in g] for g in full])
            result = run_nft([], script)
            if result.returncode != 0:
                raise LabError(f"nft refused the partition: {_first_line(result.stderr)}")
            state.partition = full
            self.save(state)
            return full

    def heal(self) -> bool:
        """Remove the lab's partition (its nftables table); return whether there was one."""
        with self.locked():
            return self._heal(self.load(), quiet=False)

    def _heal(self, state: LabState, *, quiet: bool) -> bool:
        """Delete the lab's table. `quiet` (down): when no partition is recorded and nft cannot be run here,
        there is nothing to do."""
        try:
            nft_command()
        except LabError:
            if quiet and state.partition is None:
                return False
            raise
        table = table_name(self.directory)
        existed = run_nft(["list", "table", "inet", table]).returncode == 0
        if existed:
            result = run_nft(["delete", "table", "inet", table])
            if result.returncode != 0:
                raise LabError(f"nft could not remove the partition (table inet {table}): "
                               f"{_first_line(result.stderr)}")
        had = existed or state.partition is not None
        if state.partition is not None:
            state.partition = None
            self.save(state)
        return had

    # -- status and exec ---------------------------------------------------------------------------------
    def status(self, timeout: float = 3.0) -> list[NodeStatus]:
        """Each node: process there or not, paused or not, answering hello or not, the config version and hash it
        holds (different versions or hashes among running nodes are drift), and its cman's status when one
        answers on the node's control socket."""
        state = self.load()
        running = {n.name: is_agent(n.pid, n) for n in state.nodes}
        live = [n for n in state.nodes if running[n.name] and not n.paused]
        results: dict[str, Any] = {}
        if live:
            with self.client(connect_timeout=timeout, request_timeout=timeout) as client:
                results = client.fan_out([n.endpoint for n in live], "hello")
        statuses = []
        for node in state.nodes:
            result = results.get(node.key)
            if node.paused:
                status = NodeStatus(node, running[node.name], False, problem="paused", paused=True)
            elif result is not None and result.ok:
                hello = result.result
                status = NodeStatus(node, True, True, hello.get("config_version"), hello.get("config_hash"))
            elif result is not None:
                status = NodeStatus(node, True, False, problem=f"{result.code}: {result.message}")
            else:
                status = NodeStatus(node, False, False, problem="not running")
            if not node.paused:
                cman, problem = cman_status(node)
                status = replace(status, cman=cman, cman_problem=problem)
            statuses.append(status)
        return statuses

    def partition_state(self) -> list[list[str]] | None:
        """The groups of the current partition as lab.json records it (None: no partition)."""
        return self.load().partition

    def exec(self, name: str, argv: Sequence[str], *, timeout: float | None = None) -> int:
        """Run `argv` with the node's CLUSTER_ROOT (and this Python's bin on PATH); return its exit status
        (127 when the command does not exist, 128+N when killed by signal N, like a shell)."""
        node = self.node(name)
        if not argv:
            raise LabError("exec needs a command after the node name (localcluster exec NODE -- COMMAND...)")
        env = node.environ()
        program = shutil.which(argv[0], path=env["PATH"]) if "/" not in argv[0] else argv[0]
        if program is None:
            raise LabError(f"command not found: {argv[0]}", exit_code=127)
        try:
            completed = subprocess.run([program, *argv[1:]], env=env, timeout=timeout, check=False)
        except PermissionError:
            raise LabError(f"cannot run {argv[0]}: permission denied", exit_code=126) from None
        except FileNotFoundError:
            raise LabError(f"command not found: {argv[0]}", exit_code=127) from None
        code = completed.returncode
        return 128 - code if code < 0 else code
