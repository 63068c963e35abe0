"""`rgmanager`: the resource group manager of one node (rhcs-facts §2).

Every node runs one. The lowest node id of the quorate cman view whose rgmanager runs is the coordinator
(RG-Master): it reads one snapshot (the configuration, the membership from cmand, its service table), decides with
the pure planner (`rgmanager.planner.plan`), then hands each action to the node that must act and replicates the
resulting table to every rgmanager. Every node acts for itself: it runs the agents (`rgmanager.executor`), checks
its services' status and reports failures, and stops everything it runs the moment its node loses quorum.

    cmand (membership, quorum, fencing)  --status-->  rgmanager  --plan-->  actions to nodes  -->  agents

Safety (field-anchors §4.2): a node's services move only after cman reports the node fenced (or it left
cleanly, or its rgmanager stopped them and said so); nothing starts without quorum (the planner refuses, and an
inquorate node stops what it runs); a service is started on a node only after its stop elsewhere returned.

Files under $CLUSTER_ROOT: var/run/cluster/rgmanager.sock (control, 0600), var/run/cluster/rgmanager.pid,
var/lib/cluster/rgmanager/local.json (what this node runs), var/log/cluster/rgmanager.log and
var/log/cluster/rgmanager-events.jsonl (the structured event stream). See docs/rgmanager.md.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import signal
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cluster_conf.document import atomic_write
from cluster_conf.model import ClusterView, to_int, view
from cman import control, identity, wire
from cman.daemon import DaemonError, log_formatter, running_config
from rgmanager import messaging
from rgmanager.endpoints import RG_PIDFILE as PIDFILE
from rgmanager.endpoints import RG_SOCKET
from rgmanager.executor import LocalServices
from rgmanager.planner import Action, ActionKind, plan
from rgmanager.records import record_to_dict, table_from_list, table_to_list
from rgmanager.snapshot import (
    ConfigChanged,
    Membership,
    MigrateFailed,
    NodeDown,
    NodeState,
    NodeUp,
    QuorumFormed,
    ServiceFailed,
    ServiceTable,
    StopFailed,
    UserOp,
    UserRequest,
    service_id,
)
from rgmanager.states import Flag, RGCode, State

PROG = "rgmanager"
LOG_PATH = Path("var/log/cluster/rgmanager.log")
EVENTS_PATH = Path("var/log/cluster/rgmanager-events.jsonl")
TICK = 0.05
CMAN_POLL = 0.05
ANNOUNCE_EVERY, ANNOUNCE_TTL = 0.5, 2.0
DOWN_TTL = 10.0  # the last announcement ("down", after the local stops) stays this long for the RG-Master to see
CONFIG_POLL = 1.0
ACTION_TIMEOUT = 120.0  # a start or stop on a node: agents have their own timeouts below this
REQUEST_TIMEOUT = 110.0  # a clusvcadm request waits this long for its outcome
WORKERS = 8
PUBLISH_EVERY = 0.02  # seconds between two replications of the service table
FRESH = 0.5  # seconds a cman snapshot is trusted for starting something
MASTER_SETTLE = 0.3  # seconds the same lowest rgmanager must hold before it takes the RG-Master role
RG_JOIN_WAIT = 3.0  # seconds a new view waits for every member's rgmanager before the master starts anyway

log = logging.getLogger("rgmanager")


# -- what cmand says ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CmanSnapshot:
    generation: int
    quorate: bool
    member: bool
    confirmed: bool
    nodes: Mapping[str, dict]  # name -> cmand's node row
    fencing: Mapping[str, dict]
    cluster: Mapping[str, Any]
    taken: float  # wall time
    qdisk: Mapping[str, Any] | None = None

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> CmanSnapshot:
        return cls(
            generation=int(status.get("generation", 0)),
            quorate=bool(status.get("quorum", {}).get("quorate")),
            member=status.get("membership_state") == "Cluster-Member",
            confirmed=bool(status.get("view_confirmed")),
            nodes={row["name"]: row for row in status.get("nodes", [])},
            fencing=dict(status.get("fencing") or {}),
            cluster=dict(status.get("cluster") or {}),
            taken=time.time(),
            qdisk=status.get("qdisk") if isinstance(status.get("qdisk"), dict) else None,
        )

    def rg(self, name: str) -> dict | None:
        """The rgmanager announcement of a member (None when it runs none, or is not a member)."""
        row = self.nodes.get(name)
        if row is None or row.get("state") != "M":
            return None
        announced = (row.get("announced") or {}).get("rg")
        return announced if isinstance(announced, dict) else None

    def rg_members(self) -> list[str]:
        """Members of the view whose rgmanager runs (and is not shutting down), by node id."""
        names = [n for n, row in self.nodes.items() if (self.rg(n) or {}).get("up")]
        return sorted(names, key=lambda n: self.nodes[n]["nodeid"])

    def master(self) -> str | None:
        if not (self.quorate and self.member):
            return None
        members = self.rg_members()
        return members[0] if members else None


# -- the daemon ---------------------------------------------------------------------------------------------------
class RGManager:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.stopping = threading.Event()
        self.initialized = threading.Event()
        from ricci_agent.store import ConfigStore

        self.store = ConfigStore(root)
        self.conf = running_config(root)
        self.cv: ClusterView = view(self.conf)
        self.config_version = self.conf.config_version or 0
        self.name = identity.local_name(root)
        self.nodes = identity.cluster_nodes(self.cv, root)
        self.me = identity.find_self(self.nodes, self.name)
        try:
            self.key = wire.load_key(root)
        except wire.WireError as exc:
            raise DaemonError(str(exc)) from None
        self.incarnation = time.time_ns() // 1000
        poll = to_int((self.cv.rm or {}).get("status_poll_interval")) or 10
        self.local = LocalServices(root, self.name, log=lambda line: log.info("%s", line), poll=float(poll))
        self.local.set_config(self.conf)
        self.table = ServiceTable()  # the replicated copy (the coordinator's own when this node coordinates)
        self.table_version = (0, 0, 0)
        self.table_lock = threading.Lock()
        self.locked = False  # clusvcadm -l (this node only)
        self.cman: CmanSnapshot | None = None
        self.running_ok = False  # quorate member: services may run here
        self.coordinator: Coordinator | None = None
        self.candidate: tuple[str | None, float, int] = (None, 0.0, 0)  # (master, since, generation)
        self.node_incarnation: dict[str, int] = {}
        self.last_master: str | None = None
        self.node_lost_at: dict[str, float] = {}
        self.events_file = root / EVENTS_PATH
        self.events_file.parent.mkdir(parents=True, exist_ok=True)
        self.control = control.listen(root, RG_SOCKET)
        self.clients = control.Clients(self.control, 0.5)
        try:
            self.server = messaging.Server(self.key, self.me.address, messaging.RG_PORT, self.on_message,
                                           log=lambda line: log.warning("%s", line))
        except OSError as exc:
            self.control.close()
            raise DaemonError(f"cannot listen on {self.me.address}:{messaging.RG_PORT}: {exc.strerror}") from None
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="rg-act")
        self.senders = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rg-send")
        atomic_write(root / PIDFILE, f"{os.getpid()}\n".encode(), keep_old=False)

    # -- events stream -----------------------------------------------------------------------------------------
    def event(self, kind: str, **fields: Any) -> None:
        """One JSON line in rgmanager-events.jsonl (the console reads it)."""
        entry = {"time": round(time.time(), 3), "node": self.name, "event": kind, **fields}
        with contextlib.suppress(OSError), open(self.events_file, "a") as out:
            out.write(json.dumps(entry, sort_keys=True) + "\n")

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self) -> int:
        log.info("Resource Group Manager starting: node %s (id %d), config version %d", self.name, self.me.nodeid,
                 self.config_version)
        self.server.start()
        # "Initializing Services" stops every configured service here (a thousand of them take a while): it runs
        # beside the loop, so the daemon answers at once; it announces itself to the cluster only once done.
        threading.Thread(target=self._initialize, daemon=True, name="rg-init").start()
        last_poll = last_announce = last_check = last_config = 0.0
        waiting_logged = ""
        try:
            while not self.stopping.is_set():
                readable, _, _ = select.select(self.clients.sockets(), [], [], TICK)
                now = time.monotonic()
                self._serve_control(readable, now)
                if now - last_poll >= CMAN_POLL:
                    last_poll = now
                    waiting_logged = self._poll_cman(waiting_logged)
                if now - last_announce >= ANNOUNCE_EVERY and self.initialized.is_set():
                    last_announce = now
                    self._announce(up=True)
                if self.running_ok and self.initialized.is_set() and now - last_check >= 1.0:
                    last_check = now
                    self._status_checks()
                if now - last_config >= CONFIG_POLL:
                    last_config = now
                    self._check_config()
        finally:
            self.shutdown()
        return 0

    def _initialize(self) -> None:
        try:
            self.local.initialize()
        except Exception as exc:  # logged; the node then never announces itself, so nothing is placed here
            log.error("initializing services failed: %s", type(exc).__name__)
            return
        self.initialized.set()

    def _announce(self, *, up: bool, failed: list[str] | None = None) -> None:
        value: dict[str, Any] = {"up": up, "inc": self.incarnation}
        if failed:
            value["failed"] = failed[:20]  # services whose stop failed here: this node is not safe to take from
        with contextlib.suppress(control.ControlError):
            control.request(self.root, "announce", timeout=0.5, key="rg", value=value,
                            ttl=ANNOUNCE_TTL if up else DOWN_TTL)

    def _poll_cman(self, waiting_logged: str) -> str:
        try:
            status = control.request(self.root, "status", timeout=0.5)
        except control.ControlError:
            self.cman = None
            if self.running_ok:
                self._dissolve("cman is not running")
            if waiting_logged != "cman":
                log.info("Waiting for CMAN to start")
            return "cman"
        snapshot = CmanSnapshot.from_status(status)
        self.cman = snapshot
        self._track_nodes(snapshot)
        if not (snapshot.quorate and snapshot.member):
            if self.running_ok:
                self._dissolve("#1: Quorum Dissolved")
            if waiting_logged != "quorum":
                log.info("Waiting for quorum to form")
            return "quorum"
        if not self.running_ok:
            self.running_ok = True
            log.info("Quorum formed")
            self.event("quorum", quorate=True)
        master = self._settled_master(snapshot)
        if master == self.name and self.coordinator is None:
            log.info("This node is now the RG-Master (generation %d)", snapshot.generation)
            self.coordinator = Coordinator(self)
            self.coordinator.start()
        elif master != self.name and self.coordinator is not None:
            self.coordinator.stop()
            self.coordinator = None
        if self.coordinator is not None:
            self.coordinator.observe(snapshot)
        return ""

    def _settled_master(self, snapshot: CmanSnapshot) -> str | None:
        """The RG-Master this node takes the role for: the lowest member running rgmanager, once that has held for
        MASTER_SETTLE and every member of the view announced its rgmanager (or the view is RG_JOIN_WAIT old), so a
        cluster starting up does not get a short-lived master that the next daemon to announce replaces."""
        master = snapshot.master()
        now = time.monotonic()
        if master != self.candidate[0] or snapshot.generation != self.candidate[2]:
            self.candidate = (master, now, snapshot.generation)
        previous = self.last_master
        self.last_master = master
        if master != self.name:
            return master  # another node comes first: step down at once (only taking the role waits)
        if previous is not None and previous != master and previous not in snapshot.rg_members():
            return master  # the master is gone (dead, fenced, or stopped): take over without waiting
        if now - self.candidate[1] < MASTER_SETTLE:
            return self.coordinator and self.name  # keep the role while deciding (the caller compares names)
        members = [n for n, row in snapshot.nodes.items() if row.get("state") == "M"]
        everyone = all(snapshot.rg(n) is not None for n in members)
        if not everyone and now - self.candidate[1] < RG_JOIN_WAIT:
            return self.coordinator and self.name
        return master

    def _track_nodes(self, snapshot: CmanSnapshot) -> None:
        """Every node's cman incarnation while it is a member, and when it left: what `node_clean` matches a
        fence against (kept on every node, so a new RG-Master knows it too)."""
        for name, row in snapshot.nodes.items():
            if row.get("state") == "M":
                self.node_incarnation[name] = int(row.get("incarnation") or 0)
                self.node_lost_at.pop(name, None)
            elif name in self.node_incarnation and name not in self.node_lost_at:
                self.node_lost_at[name] = snapshot.taken

    def node_clean(self, name: str) -> bool:
        """Is a node that is not running rgmanager safe to take services from? It left the cluster cleanly, its
        rgmanager stopped its services and said so, or cman fenced *the life it had* (never an older fence)."""
        cman = self.cman
        if cman is None:
            return False
        row = cman.nodes.get(name, {})
        if row.get("state") == "M":
            announced = (row.get("announced") or {}).get("rg")
            return isinstance(announced, dict) and announced.get("up") is False and not announced.get("failed")
        if row.get("left"):
            return True
        fence = cman.fencing.get(name) or {}
        if fence.get("state") != "succeeded":
            return False
        known = self.node_incarnation.get(name)
        if known and fence.get("incarnation"):
            return fence.get("incarnation") == known
        if name not in self.node_lost_at:
            return True  # never seen alive by this daemon: the cluster's fence record is all there is
        fenced_at = fence.get("fenced_at") or fence.get("since") or 0
        return fenced_at >= self.node_lost_at[name] - 1.0

    def _dissolve(self, why: str) -> None:
        """Quorum lost (or cman gone): stop everything here at once, without asking anyone, and wait."""
        log.warning("%s", why)
        self.event("quorum", quorate=False, reason=why)
        self.running_ok = False
        self.locked = False  # a user lock is cleared when quorum dissolves (§2.9)
        if self.coordinator is not None:
            self.coordinator.stop()
            self.coordinator = None
        failed = self.local.emergency_stop_all("emergency stop: " + why)
        for service in failed:
            log.error("#69: Unclean stop of %s", service)

    def _status_checks(self) -> None:
        frozen = {name for name, rec in self.table.items() if Flag.FROZEN in rec.flags}
        for failure in self.local.check_due(time.time(), frozen):
            self.event("status-failed", service=failure["service"], resource=failure["resource"])
            self.report({"kind": "event", "event": "service-failed", "service": failure["service"],
                         "resource": failure["resource"], "node": self.name})

    def _check_config(self) -> None:
        accepted = self.store.accepted()
        if accepted is None or accepted.version <= self.config_version:
            return
        try:
            conf = running_config(self.root)
        except DaemonError as exc:
            log.error("Can't get updated config version %d: %s", accepted.version, exc)
            return
        previous = self.cv
        self.conf, self.cv, self.config_version = conf, view(conf), conf.config_version or 0
        self.nodes = identity.cluster_nodes(self.cv, self.root)
        self.local.set_config(conf)
        log.info("Reconfiguring: config version %d", self.config_version)
        if self.coordinator is not None:
            self.coordinator.submit(ConfigChanged(now=time.time(), previous=previous))

    # -- reports to the coordinator -----------------------------------------------------------------------------
    def master_name(self) -> str | None:
        return self.cman.master() if self.cman is not None else None

    def report(self, message: dict) -> dict | None:
        """Send an event to the coordinator (itself, or over the network)."""
        master = self.master_name()
        if master is None:
            return None
        if master == self.name and self.coordinator is not None:
            return self.coordinator.on_report(message)
        node = next((n for n in self.nodes.values() if n.name == master), None)
        if node is None:
            return None
        try:
            return messaging.call(self.key, node.address, messaging.RG_PORT, message, timeout=5.0)
        except messaging.MessageError as exc:
            log.warning("could not report to the RG-Master %s: %s", master, exc.message)
            return None

    # -- messages from other rgmanagers -------------------------------------------------------------------------
    def on_message(self, message: dict) -> dict:
        kind = message.get("kind")
        if kind == "act":
            return self.act(message)
        if kind == "table":
            self.take_table(message)
            return {"ok": True}
        if kind == "truth":
            return {"ok": True, "services": self.local.truth(), "inc": self.incarnation}
        if kind in ("event", "request"):
            if self.coordinator is None:
                return {"ok": False, "error": "not the RG-Master"}
            return self.coordinator.on_report(message)
        return {"ok": False, "error": f"unknown message kind {kind!r}"}

    def take_table(self, message: Mapping[str, Any], *, own: bool = False) -> None:
        """A replicated table: taken only from the node this one takes for the RG-Master, and only if newer:
        versions are (view generation, that master's incarnation, sequence number), so a new master in the same
        generation is taken at once and a stale master's late table never replaces a newer one."""
        version = message.get("version")
        if not (isinstance(version, list) and len(version) == 3 and all(isinstance(v, int) for v in version)):
            return
        if not own and message.get("master") != self.master_name():
            return
        version_t = (int(version[0]), int(version[1]), int(version[2]))
        with self.table_lock:
            current = self.table_version
            same_master = version_t[:2] == current[:2]
            if (same_master and version_t[2] <= current[2]) or (not same_master and version_t[0] < current[0]):
                return
            self.table = table_from_list(message.get("records"))
            self.table_version = version_t

    def act(self, message: Mapping[str, Any]) -> dict:
        """Carry out one action of the coordinator's plan on this node: only when it comes from the node this one
        takes for the RG-Master (two nodes that both think they coordinate never both get obeyed)."""
        sender = message.get("master")
        master = self.master_name()
        if sender != master:
            return {"ok": False, "refused": True, "message": f"{sender} is not the RG-Master here ({master})"}
        op = message.get("op")
        service = str(message.get("service", ""))
        if not self.running_ok and op in ("start", "recover", "convalesce", "reconfigure"):
            return {"ok": False, "message": "this node has no quorum"}
        if self.locked and op == "start":
            return {"ok": False, "message": "Resource groups locked"}
        if self.stopping.is_set() and op != "stop":
            return {"ok": False, "message": "rgmanager is shutting down on this node"}
        if not self.initialized.is_set():
            return {"ok": False, "refused": True, "message": "rgmanager is still initializing its services"}
        if op != "stop" and not self._fresh_enough():
            return {"ok": False, "refused": True, "message": "this node's view of the cluster is not current"}
        if op == "start":
            result = self.local.start(service)
            if result.get("ok") and (not self.running_ok or self.stopping.is_set()):
                # quorum went or shutdown began while it started: it must not stay up here
                self.local.stop(service, reason="quorum lost or shutting down during the start")
                result = {"ok": False, "message": "quorum lost or shutting down during the start"}
        elif op == "stop":
            result = self.local.stop(service, reason=str(message.get("reason", "stop")))
        elif op == "recover":
            result = self.local.subtree(service, str(message.get("resource")), "recover")
        elif op == "partial":
            result = self.local.subtree(service, str(message.get("resource")), "partial")
        elif op == "convalesce":
            result = self.local.convalesce(service)
        elif op == "reconfigure":
            result = self.local.reconfigure(service, list(message.get("stop_ids") or []),
                                            list(message.get("start_ids") or []))
        else:
            return {"ok": False, "message": f"unknown action {op!r}"}
        self.event(f"{op}-{'done' if result.get('ok') else 'failed'}", service=service)
        return result

    # -- control requests (clustat, clusvcadm, ricci) -------------------------------------------------------------
    def _serve_control(self, readable: list, now: float) -> None:
        if self.control in readable:
            self.clients.accept(now)
        for conn, line in self.clients.requests(readable, now):
            # A service request waits for its outcome: answer it from its own thread, never from the loop, and
            # never from the pool the RG-Master's actions run on.
            threading.Thread(target=self._answer, args=(conn, line), daemon=True, name="rg-answer").start()

    def _answer(self, conn: Any, line: bytes) -> None:
        reply = control.handle_line(line, self.handlers(),
                                    on_error=lambda cmd, exc: log.error("control %s failed: %s", cmd,
                                                                        type(exc).__name__))
        control.answer(conn, reply, 2.0)

    def handlers(self) -> Mapping[str, control.Handler]:
        return {
            "status": lambda _: self.status(),
            "service": self.cmd_service,
            "lock": lambda _: self._set_lock(True),
            "unlock": lambda _: self._set_lock(False),
            "lock_status": lambda _: {"locked": self.locked},
        }

    def _fresh_enough(self) -> bool:
        """Is the cman snapshot recent? After a pause (SIGSTOP) an action may arrive before the loop has polled
        cmand again: ask cmand now rather than act on a view from before the pause."""
        cman = self.cman
        if cman is not None and time.time() - cman.taken <= FRESH:
            return cman.quorate and cman.member
        try:
            snapshot = CmanSnapshot.from_status(control.request(self.root, "status", timeout=0.5))
        except control.ControlError:
            return False
        return snapshot.quorate and snapshot.member and snapshot.master() == self.master_name()

    def _set_lock(self, locked: bool) -> dict:
        self.locked = locked
        log.info("Resource groups %s", "locked" if locked else "unlocked")
        return {"locked": self.locked}

    def cmd_service(self, args: Mapping[str, Any]) -> dict:
        op, service = args.get("op"), args.get("service")
        if not isinstance(op, str) or not isinstance(service, str):
            raise control.ControlError("bad_request", "service needs 'op' and 'service'")
        try:
            UserOp(op)
        except ValueError:
            raise control.ControlError("bad_request", f"unknown operation {op!r}") from None
        sid = service_id(service)
        target = args.get("target") if isinstance(args.get("target"), str) else None
        if self.locked and op in ("enable", "relocate", "restart", "migrate"):
            return _reply(RGCode.EAGAIN, None, "Resource groups locked")
        if not self.running_ok:
            return _reply(RGCode.EQUORUM, None, "this node has no quorum")
        message = {"kind": "request", "op": op, "service": sid, "target": target, "from": self.name}
        master = self.master_name()
        if master == self.name and self.coordinator is not None:
            return self.coordinator.request(message)
        node = next((n for n in self.nodes.values() if n.name == master), None)
        if node is None:
            return _reply(RGCode.EAGAIN, None, "no RG-Master yet; try again")
        try:
            return messaging.call(self.key, node.address, messaging.RG_PORT, message, timeout=REQUEST_TIMEOUT)
        except messaging.MessageError as exc:
            return _reply(RGCode.EAGAIN, None, f"the RG-Master {master} did not answer: {exc.message}")

    def status(self) -> dict:
        cman = self.cman
        master = self.master_name()
        members = []
        for node in sorted(self.nodes.values(), key=lambda n: n.nodeid):
            row = cman.nodes.get(node.name, {}) if cman is not None else {}
            online = row.get("state") == "M"
            members.append({"name": node.name, "nodeid": node.nodeid, "online": online,
                            "local": node.name == self.name, "rgmanager": bool(cman and cman.rg(node.name)),
                            "master": node.name == master, "estranged": False, "qdisk": False})
        if cman is not None and cman.qdisk:  # the quorum disk shows as member 0 (clustat's ", Quorum Disk")
            members.insert(0, {"name": str(cman.qdisk.get("device") or "qdisk"), "nodeid": 0,
                               "online": bool(cman.qdisk.get("alive")), "local": False, "rgmanager": False,
                               "master": False, "estranged": False, "qdisk": True})
        with self.table_lock:
            table, version = self.table, self.table_version
        services = []
        for sid in sorted(set(self.local.services()) | set(table)):
            record = table.record(sid)
            if sid not in table:
                record = replace(record, state=State.STOPPED)
            services.append(record_to_dict(record))
        cluster = dict(cman.cluster) if cman is not None else {}
        return {
            "local": self.name, "master": master, "quorate": bool(cman and cman.quorate), "locked": self.locked,
            "cluster": {"name": cluster.get("name") or self.cv.name, "id": cluster.get("id"),
                        "generation": cman.generation if cman else 0},
            "table_version": list(version), "members": members, "services": services,
        }

    # -- stopping ------------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop local services (stop-exiting) and tell the cluster, so the others take them over."""
        log.info("Shutting down")
        if self.coordinator is not None:
            self.coordinator.stop()
            self.coordinator = None
        # Stop everything here first, and only then say so: the RG-Master takes a node's services over once its
        # rgmanager announces it is down, and they must not run here any more by then.
        stopped = list(self.local.truth())
        failed = self.local.emergency_stop_all("stop (shutdown)")
        self._announce(up=False, failed=failed)
        if stopped:
            self.report({"kind": "event", "event": "node-stopped", "node": self.name,
                         "services": [s for s in stopped if s not in failed], "failed": failed})
        self.server.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.senders.shutdown(wait=False, cancel_futures=True)
        self.clients.close()
        with contextlib.suppress(OSError):
            self.control.close()
        for path in (self.root / RG_SOCKET, self.root / PIDFILE):
            with contextlib.suppress(OSError):
                path.unlink()
        log.info("Resource Group Manager stopped")


class NotMaster(Exception):
    """A node refused an action: it takes another node for the RG-Master."""


def _reply(code: RGCode, owner: str | None, message: str = "") -> dict:
    return {"code": int(code), "text": code.text, "owner": owner, "message": message}


# -- the coordinator ----------------------------------------------------------------------------------------------
def _in_flight_state(action: Action) -> tuple[State, str | None] | None:
    """What the published table shows for a service while `action` is pending or running: starting on the
    target of a start, relocation or migration, stopping on the node of a stop; None for record-only actions."""
    if action.kind in (ActionKind.START, ActionKind.RELOCATE, ActionKind.MIGRATE):
        return (State.STARTING, action.node)
    if action.kind is ActionKind.STOP:
        return (State.STOPPING, action.node)
    return None


@dataclass(slots=True)
class _Waiter:
    service: str
    future: Future = field(default_factory=Future)


class Coordinator:
    """The RG-Master's work: one event at a time through the planner; actions handed to the nodes, each
    service's actions in order, services in parallel; the table replicated to every rgmanager."""

    def __init__(self, daemon: RGManager) -> None:
        self.d = daemon
        self.events: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="rg-master")
        self.table = daemon.table
        self.generation = daemon.cman.generation if daemon.cman else 0
        self.seq = 0
        self.online: set[str] = set()
        self.lost: set[str] = set()  # offline nodes not yet safe (not fenced, not left): their services wait
        self.rg_inc: dict[str, int] = {}
        self.service_queues: dict[str, list] = {}
        self.busy: set[str] = set()
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.membership: Membership | None = None
        self.in_flight: dict[str, tuple[State, str | None]] = {}  # service -> what the published table shows
        self.publish_wanted = threading.Event()
        self.publisher = threading.Thread(target=self._publisher, daemon=True, name="rg-publish")

    def start(self) -> None:
        self.thread.start()
        self.publisher.start()

    def stop(self) -> None:
        self.stopping.set()
        self.events.put(None)
        self.publish_wanted.set()
        with self.lock:
            waiters = [w for items in self.service_queues.values() for _, w in items if w is not None]
        while True:
            try:
                item = self.events.get_nowait()
            except queue.Empty:
                break
            if item is not None and item[1] is not None:
                waiters.append(item[1])
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_result(_reply(RGCode.EAGAIN, None, "the RG-Master changed; try again"))

    def submit(self, event: Any, waiter: _Waiter | None = None) -> None:
        self.events.put((event, waiter))

    # -- membership ----------------------------------------------------------------------------------------------
    def observe(self, cman: CmanSnapshot) -> None:
        """Turn cmand's view into NodeUp / NodeDown events (down only once the node is safe: fenced, left
        cleanly, or its rgmanager stopped its services and said so)."""
        online_now = set(cman.rg_members())
        for name in online_now:
            inc = (cman.rg(name) or {}).get("inc")
            if self.rg_inc.get(name) not in (None, inc):
                # its rgmanager restarted (and stopped everything at start-up): down, then up
                self.submit(NodeDown(name, now=time.time()))
                self.online.discard(name)
                self.lost.discard(name)
            self.rg_inc[name] = inc
        for name in sorted(self.online - online_now):
            self.online.discard(name)
            self.lost.add(name)
            self.d.event("node-lost", member=name)
        for name in sorted(self.lost):
            if name in online_now:
                self.lost.discard(name)
            elif self.d.node_clean(name):
                self.lost.discard(name)
                self.d.event("node-down", member=name)
                self.submit(NodeDown(name, now=time.time()))
        for name in sorted(online_now - self.online):
            self.online.add(name)
            self.submit(NodeUp(name, now=time.time()))
        self.membership = self._membership(cman)

    def _nodeid(self, name: str) -> int:
        return next((n.nodeid for n in self.d.nodes.values() if n.name == name), 1 << 30)

    def _membership(self, cman: CmanSnapshot) -> Membership:
        nodes = []
        for node in sorted(self.d.nodes.values(), key=lambda n: n.nodeid):
            online = node.name in self.online
            clean = online or node.name not in self.lost
            nodes.append(NodeState(node.name, node.nodeid, online=online, clean=clean))
        return Membership(tuple(nodes), quorate=cman.quorate, local=self.d.name, locked=self.d.locked)

    # -- the loop ------------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._rebuild()
        except Exception as exc:  # never leave the master role half-done: log and carry on with what we have
            log.error("rebuilding the service table failed: %s", type(exc).__name__)
        self.submit(QuorumFormed(now=time.time()))
        while not self.stopping.is_set():
            item = self.events.get()
            if item is None:
                break
            event, waiter = item
            try:
                self._process(event, waiter)
            except Exception as exc:
                log.exception("planning %s failed: %s", type(event).__name__, exc)
                if waiter is not None and not waiter.future.done():
                    waiter.future.set_result(_reply(RGCode.FAIL, None, f"internal error ({type(exc).__name__})"))

    def _rebuild(self) -> None:
        """A new coordinator: the table is rebuilt from what every live node runs (its local truth) over the
        replicated copy this node holds."""
        records = self.table.copy_records()
        truths: dict[str, dict] = {}
        cman = self.d.cman
        members = cman.rg_members() if cman else [self.d.name]
        for name in members:
            if name == self.d.name:
                truths[name] = self.d.local.truth()
                continue
            node = next((n for n in self.d.nodes.values() if n.name == name), None)
            if node is None:
                continue
            try:
                reply = messaging.call(self.d.key, node.address, messaging.RG_PORT, {"kind": "truth"}, timeout=5.0)
            except messaging.MessageError:
                continue
            truths[name] = reply.get("services") or {}
        now = time.time()
        for sid in set(records) | {s for t in truths.values() for s in t}:
            holders = sorted((n for n, t in truths.items() if sid in t), key=self._nodeid)
            record = records.get(sid)
            if holders:
                owner = holders[0]
                state = truths[owner][sid].get("state")
                if state == "failed":  # its stop failed there: intervention required, whatever the old table says
                    base = record or table_from_list([{"name": sid}]).record(sid)
                    records[sid] = replace(base, state=State.FAILED, owner=None, last_owner=owner,
                                           last_transition=base.last_transition or now)
                    continue
                flags = (record.flags if record else Flag.NONE) & Flag.FROZEN
                if state == "partial":
                    flags |= Flag.PARTIAL
                base = record or table_from_list([{"name": sid}]).record(sid)
                records[sid] = replace(base, state=State.STARTED, owner=owner, flags=flags,
                                       last_transition=base.last_transition or now)
                for extra in holders[1:]:  # more than one node runs it: keep the first, stop the others
                    log.error("%s runs on %s and %s: stopping it on %s", sid, owner, extra, extra)
                    self._enqueue(sid, [Action(ActionKind.STOP, sid, node=extra, reason="running twice")], None)
            elif record is not None and record.active and record.owner in truths:
                records[sid] = replace(record, state=State.STOPPED, owner=None, last_owner=record.owner,
                                       last_transition=now)
        self.table = ServiceTable(records)
        self.online = set(members)
        # Nodes that are not here and own services: unsafe until cman says fenced or left (never assumed clean).
        self.lost = {r.owner for r in records.values() if r.active and r.owner is not None
                     and r.owner not in self.online and not self.d.node_clean(r.owner)}
        silent = set(members) - set(truths)  # announced, but it did not say what it runs: nothing of it moves
        if silent:
            log.warning("no answer from the rgmanager of %s: their services stay where they are", sorted(silent))
            self.online -= silent
            self.lost |= silent
        self.rg_inc = {n: (cman.rg(n) or {}).get("inc") for n in members} if cman else {}
        if cman is not None:
            self.membership = self._membership(cman)
        self._publish()

    def _process(self, event: Any, waiter: _Waiter | None) -> None:
        cman = self.d.cman
        if cman is None or self.membership is None:
            if waiter is not None:
                waiter.future.set_result(_reply(RGCode.EAGAIN, None, "no membership yet"))
            return
        membership = replace(self.membership, locked=self.d.locked)
        with self.lock:  # workers may correct the table (a stop that never arrived): plan on one snapshot
            result = plan(self.d.cv, membership, self.table, event)
            self.table = result.table
            for action in result.actions:  # never publish a planned outcome as done before its action has run
                shown = _in_flight_state(action)
                if shown is not None:
                    self.in_flight.setdefault(action.service, shown)
        if result.actions:
            log.info("%s: %s", type(event).__name__, "; ".join(a.describe() for a in result.actions))
        for action in result.actions:
            self.d.event("action", action=action.to_dict())
        self._publish()
        by_service: dict[str, list[Action]] = {}
        for action in result.actions:
            by_service.setdefault(action.service, []).append(action)
        waits = waiter is not None and result.result is RGCode.SUCCESS and waiter.service in by_service
        for sid, actions in by_service.items():
            self._enqueue(sid, actions, waiter if waits and waiter.service == sid else None)
        if waiter is not None and not waits:  # refused, or nothing to do: answer now
            record = self.table.record(waiter.service)
            waiter.future.set_result(_reply(result.result, record.owner if record.active else None, result.message))

    # -- acting -------------------------------------------------------------------------------------------------
    def _enqueue(self, sid: str, actions: list[Action], waiter: _Waiter | None) -> None:
        with self.lock:
            self.service_queues.setdefault(sid, []).append((actions, waiter))
            if sid in self.busy:
                return
            self.busy.add(sid)
        self.d.pool.submit(self._drain, sid)

    def _drain(self, sid: str) -> None:
        while True:
            with self.lock:
                queue_ = self.service_queues.get(sid) or []
                if not queue_ or self.stopping.is_set():
                    self.busy.discard(sid)
                    self.service_queues.pop(sid, None)
                    self.in_flight.pop(sid, None)
                    self.idle.notify_all()
                    return
                actions, waiter = queue_.pop(0)
            ok = True
            try:
                try:
                    for action in actions:
                        self._show(action)
                        ok = self._carry_out(action) and ok
                        if not ok:
                            break
                finally:  # the batch is over: the table shows its outcome (or what a failure made of it)
                    self._shown(sid)
            except NotMaster as exc:  # another node coordinates now: it rebuilds from what nodes really run
                log.warning("stopped acting as RG-Master: %s", exc)
                ok = False
            if waiter is not None:
                threading.Thread(target=self._settle, args=(waiter, ok), daemon=True, name="rg-settle").start()

    def _settle(self, waiter: _Waiter, ok: bool) -> None:
        """Answer a user request once its service is quiet (no event waiting, no action queued or running for
        it, twice in a row): the owner it ended on after any recovery a failure caused, or the failure."""
        deadline = time.monotonic() + REQUEST_TIMEOUT - 10
        quiet = 0
        while time.monotonic() < deadline and quiet < 2:
            time.sleep(0.05)
            with self.lock:
                busy = waiter.service in self.busy
            quiet = quiet + 1 if (not busy and self.events.empty()) else 0
        record = self.table.record(waiter.service)
        if quiet < 2 and not waiter.future.done():
            waiter.future.set_result(_reply(RGCode.EAGAIN, None, f"{waiter.service} did not settle in time"))
            return
        if not waiter.future.done():
            if record.state is State.STARTED or (ok and record.state in (State.STOPPED, State.DISABLED)):
                waiter.future.set_result(_reply(RGCode.SUCCESS, record.owner if record.active else None))
            else:
                waiter.future.set_result(_reply(RGCode.FAIL, record.owner if record.active else None,
                                                f"{waiter.service} is {record.state.label}"))

    def _unsafe(self, sid: str, node: str | None, reply: Mapping[str, Any]) -> None:
        """A stop that never reached its node is not a stop: the service is recorded as still running there,
        and the node is unsafe (its services wait) until cman reports it fenced or left, or its rgmanager says
        it stopped them (then NodeDown recovers them by the normal rules)."""
        log.warning("could not stop %s on %s (%s): it stays recorded there until that node is safe", sid, node,
                    reply.get("message"))
        if node is None:
            return
        with self.lock:
            record = self.table.record(sid)
            self.table = ServiceTable({**self.table.copy_records(),
                                       sid: replace(record, state=State.STARTED, owner=node)})
            self.online.discard(node)
            self.lost.add(node)
        self._publish()

    def _call(self, node: str | None, message: dict) -> dict:
        if node is None:
            return {"ok": False, "message": "no node"}
        message = {**message, "master": self.d.name}
        if node == self.d.name:
            reply = self.d.act(message)
            if reply.get("refused"):
                raise NotMaster(str(reply.get("message")))
            return reply
        address = next((n.address for n in self.d.nodes.values() if n.name == node), None)
        if address is None:
            return {"ok": False, "message": f"{node} is not configured"}
        try:
            reply = messaging.call(self.d.key, address, messaging.RG_PORT, {"kind": "act", **message},
                                   timeout=ACTION_TIMEOUT)
        except messaging.MessageError as exc:
            return {"ok": False, "unreachable": True, "message": exc.message}
        if reply.get("refused"):
            raise NotMaster(f"{node} refused: {reply.get('message')}")
        return reply

    def _carry_out(self, action: Action) -> bool:
        """Run one action where it belongs; a failure comes back as the planner's event."""
        kind, sid, now = action.kind, action.service, time.time()
        if kind is ActionKind.START:
            reply = self._call(action.node, {"op": "start", "service": sid})
            if not reply.get("ok"):
                if reply.get("stop_ok") is False:
                    self.submit(StopFailed(sid, action.node, now=now))
                else:
                    self.submit(ServiceFailed(sid, now=now, node=action.node))
                return False
            return True
        if kind is ActionKind.STOP:
            reply = self._call(action.node, {"op": "stop", "service": sid, "reason": action.reason[:80]})
            if reply.get("unreachable"):
                self._unsafe(sid, action.node, reply)
                return False
            if not reply.get("ok"):
                self.submit(StopFailed(sid, action.node, now=now))
                return False
            return True
        if kind in (ActionKind.RELOCATE, ActionKind.MIGRATE):
            if action.source is not None and not self.d.node_clean(action.source):
                reply = self._call(action.source, {"op": "stop", "service": sid, "reason": kind.value})
                if reply.get("unreachable"):  # not a stop: the target must not start it
                    self._unsafe(sid, action.source, reply)
                    return False
                if not reply.get("ok"):
                    if kind is ActionKind.MIGRATE:
                        self.submit(MigrateFailed(sid, action.source, rc=1, now=now))
                    else:
                        self.submit(StopFailed(sid, action.source, now=now))
                    return False
            reply = self._call(action.node, {"op": "start", "service": sid})
            if not reply.get("ok"):
                self.submit(ServiceFailed(sid, now=now, node=action.node))
                return False
            return True
        if kind is ActionKind.RECOVER_SUBTREE:
            reply = self._call(action.node, {"op": "recover", "service": sid, "resource": action.resource})
        elif kind is ActionKind.SET_PARTIAL:
            reply = self._call(action.node, {"op": "partial", "service": sid, "resource": action.resource})
        elif kind is ActionKind.CLEAR_PARTIAL:
            reply = self._call(action.node, {"op": "convalesce", "service": sid})
        elif kind is ActionKind.RECONFIGURE:
            reply = self._call(action.node, {"op": "reconfigure", "service": sid, "stop_ids": list(action.stop_ids),
                                             "start_ids": list(action.start_ids)})
        else:
            return True  # records only (mark-*, freeze, unfreeze)
        if not reply.get("ok"):
            self.submit(ServiceFailed(sid, now=now, node=action.node))
            return False
        return True

    # -- replication and reports -----------------------------------------------------------------------------
    def _show(self, action: Action) -> None:
        """While an action runs, the published table shows its service `starting` (or `stopping`) on the node
        acting; the planning table already holds the outcome the plan expects. (_process marks a plan's services
        before the planned table can be published, so clustat and luci never see an outcome before it is one.)"""
        shown = _in_flight_state(action)
        if shown is None:
            return
        with self.lock:
            self.in_flight[action.service] = shown
        self._publish()

    def _shown(self, sid: str) -> None:
        with self.lock:
            self.in_flight.pop(sid, None)
        self._publish()

    def _publish(self) -> None:
        """Ask for the table to be replicated; a publisher thread sends the newest one, at most every
        PUBLISH_EVERY s (a thousand services change at once on a quorum change: one message, not a thousand)."""
        self.publish_wanted.set()

    def _publisher(self) -> None:
        while not self.stopping.is_set():
            if not self.publish_wanted.wait(0.5):
                continue
            self.publish_wanted.clear()
            with self.lock:
                table, shown = self.table, dict(self.in_flight)
            records = table_to_list(table)
            for record in records:
                if record["name"] in shown:
                    state, node = shown[record["name"]]
                    record.update(state=int(state), state_str=state.label, owner=node)
            self.seq += 1
            message = {"kind": "table", "version": [self.generation, self.d.incarnation, self.seq],
                       "master": self.d.name, "records": records}
            self.d.take_table(message, own=True)
            for name in sorted(self.online - {self.d.name}):
                address = next((n.address for n in self.d.nodes.values() if n.name == name), None)
                if address is not None:
                    self.d.senders.submit(_send_quietly, self.d.key, address, message)
            time.sleep(PUBLISH_EVERY)

    def on_report(self, message: Mapping[str, Any]) -> dict:
        kind = message.get("kind")
        if kind == "request":
            return self.request(message)
        event = message.get("event")
        now = time.time()
        if event == "service-failed":
            self.submit(ServiceFailed(str(message.get("service")), resource=message.get("resource"), now=now,
                                      node=message.get("node")))
        elif event == "node-stopped":
            node = str(message.get("node"))
            for sid in message.get("failed") or []:
                self.submit(StopFailed(str(sid), node, now=now))
        return {"ok": True}

    def request(self, message: Mapping[str, Any]) -> dict:
        sid = str(message.get("service"))
        op = UserOp(str(message.get("op")))
        waiter = _Waiter(sid)
        self.submit(UserRequest(op, sid, target=message.get("target"), now=time.time()), waiter)
        try:
            return waiter.future.result(timeout=REQUEST_TIMEOUT)
        except Exception:
            return _reply(RGCode.EAGAIN, None, "the request did not finish in time")


def _send_quietly(key: bytes, address: str, message: dict) -> None:
    with contextlib.suppress(messaging.MessageError):
        messaging.call(key, address, messaging.RG_PORT, message, timeout=5.0)


# -- entry point -------------------------------------------------------------------------------------------------
def setup_logging(root: Path) -> None:
    path = root / LOG_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(log_formatter("rgmanager"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if os.environ.get("RGMANAGER_DEBUG") else logging.INFO)
    log.propagate = False


USAGE = """usage: rgmanager [-f | --stop]

The resource group manager of the node at $CLUSTER_ROOT (see docs/rgmanager.md).
  rgmanager          start it in the background; return once it answers on its control socket (as
                     `service rgmanager start` did; the ricci agent's node.start runs this after cman)
  rgmanager -f       run in the foreground
  rgmanager --stop   stop it: its services stop here and move by the normal rules; return once it is gone
"""
START_WAIT, STOP_WAIT = 30.0, 90.0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(os.environ.get("CLUSTER_ROOT", "/"))
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0
    if argv == ["--stop"]:
        return stop_daemon(root)
    if argv == ["-f"]:
        return run_foreground(root)
    if argv:
        sys.stderr.write(USAGE)
        return 2
    return start_background(root)


def _answers(root: Path) -> bool:
    try:
        control.request(root, "status", timeout=1.0, socket_name=RG_SOCKET)
    except control.ControlError:
        return False
    return True


def _pid(root: Path) -> int | None:
    try:
        pid = int((root / PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    try:  # a zombie is gone
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return pid
    return None if state in ("Z", "X") else pid


def start_background(root: Path) -> int:
    """Spawn `rgmanager -f` in this process group (not a new session: the lab signals a node by its group), then
    wait, bounded, until it answers."""
    import subprocess

    if _answers(root):
        sys.stderr.write("rgmanager: already running\n")
        return 0
    out = root / "var/log/cluster/rgmanager.out"
    out.parent.mkdir(parents=True, exist_ok=True)
    script = Path(sys.executable).parent / "rgmanager"
    command = [str(script), "-f"] if script.exists() else [sys.executable, "-m", "rgmanager.daemon", "-f"]
    with open(out, "ab") as output:
        child = subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                 close_fds=True, env={**os.environ, "CLUSTER_ROOT": str(root)})
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if _answers(root):
            return 0
        if child.poll() is not None:
            lines = out.read_text(errors="replace").strip().splitlines()[-2:]
            sys.stderr.write(f"rgmanager: exited with status {child.returncode} before it answered"
                             + (f": {' | '.join(lines)}" if lines else "") + "\n")
            return 1
        time.sleep(0.1)
    sys.stderr.write(f"rgmanager: no answer within {START_WAIT:.0f} s (see {out})\n")
    return 1


def stop_daemon(root: Path) -> int:
    pid = _pid(root)
    if pid is None:
        return 0
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        if _pid(root) != pid:
            return 0
        time.sleep(0.1)
    sys.stderr.write(f"rgmanager: pid {pid} did not stop within {STOP_WAIT:.0f} s\n")
    return 1


def run_foreground(root: Path) -> int:
    setup_logging(root)
    try:
        daemon = RGManager(root)
    except (DaemonError, identity.IdentityError, OSError) as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        log.error("%s", exc)
        return 1

    def stop(signum: int, _frame: object) -> None:
        daemon.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
