"""`cmand`: the cluster manager of one node (what corosync with cman's plugin, fenced and qdiskd were together).

One process, one loop: it reads heartbeats and agreement messages from its UDP socket, requests from its control
socket, and every tick asks the pure parts what to do: `membership` (view agreement), `quorum` (votes), `fencing`
(whom to fence, when), `qdisk` (the quorum disk's votes). Fence agents run in a worker thread, the quorum disk in
its own threads; their results come back to the loop, which alone changes the state. `cman_tool join` starts it
(in the caller's process group), `cman_tool leave` stops it. See docs/membership.md.

Files under $CLUSTER_ROOT: var/run/cluster/cman.sock (control, 0600), var/run/cluster/cmand.pid,
var/lib/cluster/cman_epoch, var/lib/cluster/fence_history.jsonl, var/log/cluster/cman.log.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cluster_conf.document import ClusterConf, atomic_write
from cluster_conf.model import ClusterView, to_int, view
from cluster_conf.quorum import QuorumState, expected_votes
from cluster_conf.reports import ConfigError
from cman import control, fence_agents, fencing, identity, membership, wire
from cman import quorum as cquorum

PROG = "cmand"
DEFAULT_PORT = 5405
LOG_PATH = Path("var/log/cluster/cman.log")
EPOCH_FILE = Path("var/lib/cluster/cman_epoch")
CONFIG_POLL = 0.5  # seconds between checks for a newer accepted configuration
BOOK_SHARE_SUCCEEDED = 600.0  # seconds a succeeded fence stays in the heartbeats (open ones stay until closed)
FENCE_TIMEOUT = 60.0
EVICTED_EXIT = 3
MAX_ANNOUNCEMENT = 512  # bytes of JSON per announced value (it rides in every heartbeat)
CONTROL_DEADLINE = 0.2  # seconds a control client has to send its request line (and to take the reply)
TWO_NODE_TEXT = "the two-node option requires exactly two nodes with one vote each and expected votes of 1"

log = logging.getLogger("cman")


class DaemonError(Exception):
    """The daemon cannot start (one line)."""


def running_config(root: Path) -> ClusterConf:
    """The configuration this node runs: the one its ricci agent accepted last (ricci_agent.store), else the live
    cluster.conf when there is no history (a node set up by hand)."""
    from ricci_agent.store import ConfigStore  # no paramiko: the store is plain files

    store = ConfigStore(root)
    accepted = store.accepted()
    path = root / "etc/cluster/cluster.conf"
    try:
        if accepted is not None:
            return ClusterConf.from_bytes(accepted.data, str(path))
        return ClusterConf.load(path)
    except FileNotFoundError:
        raise DaemonError(f"{path}: no such file (this node has no cluster configuration)") from None
    except ConfigError as exc:
        raise DaemonError(str(exc)) from None  # it names the file and line


def accepted_version(store) -> int | None:  # store: ricci_agent.store.ConfigStore (cached by the index's stat)
    accepted = store.accepted()
    return accepted.version if accepted is not None else None


def two_node_error(cv: ClusterView, nodes: Mapping[int, identity.NodeAddress]) -> bool:
    """cman refused two_node="1" unless exactly two nodes with one vote each and expected_votes 1 (§5.1): with
    more nodes, quorum 1 would let both sides of a split act."""
    if not cv.two_node:
        return False
    expected = to_int((cv.cman or {}).get("expected_votes"))
    return len(nodes) != 2 or any(n.votes != 1 for n in nodes.values()) or expected not in (None, 1)


def token_seconds(cv: ClusterView) -> float:
    token = to_int((cv.totem or {}).get("token"))
    return (token if token and token > 0 else membership.DEFAULT_TOKEN_MS) / 1000


def udp_port(cv: ClusterView) -> int:
    port = to_int((cv.cman or {}).get("port"))
    return port if port and 0 < port < 65536 else DEFAULT_PORT


def multicast_address(cluster_id: int) -> str:
    """cman's default multicast address 239.192.X.Y from the cluster id (shown only: heartbeats are unicast)."""
    return f"239.192.{(cluster_id >> 8) & 0xFF}.{cluster_id & 0xFF}"


class Daemon:
    def __init__(self, root: Path, *, now: float | None = None) -> None:
        self.root = root
        self.stopping = False
        self.exit_code = 0
        from ricci_agent.store import ConfigStore  # plain files, no paramiko

        self.store = ConfigStore(root)
        self.conf = running_config(root)
        self.cv = view(self.conf)
        self.config_version = self.conf.config_version or 0
        self.name = identity.local_name(root)
        self.nodes = identity.cluster_nodes(self.cv, root)
        self.me = identity.find_self(self.nodes, self.name)
        self.node_names = {a.name for a in self.nodes.values()}
        if two_node_error(self.cv, self.nodes):
            raise DaemonError(TWO_NODE_TEXT)
        try:
            self.key = wire.load_key(root)
        except wire.WireError as exc:
            raise DaemonError(str(exc)) from None
        self.cluster_id = wire.cluster_id(self.cv)
        self.port = udp_port(self.cv)
        self.incarnation = time.time_ns() // 1000
        start = time.monotonic() if now is None else now
        self.engine = membership.Membership(self._settings(), self.incarnation, start, epoch_floor=self._read_epoch())
        self.guard = wire.ReplayGuard()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.udp.bind((self.me.address, self.port))
        except OSError as exc:
            self.udp.close()
            raise DaemonError(f"cannot bind {self.me.address}:{self.port}/udp: {exc.strerror}") from None
        self.udp.setblocking(False)
        self.control = control.listen(root)
        self.clients = control.Clients(self.control, CONTROL_DEADLINE)  # control clients being read
        self.announcements: dict[str, tuple[Any, float]] = {}  # key → (value, monotonic expiry): cmd_announce
        self.fence_config = fencing.fence_daemon_config(self.cv.fence_daemon)
        self.book = fencing.FenceBook()
        self.history = fence_agents.FenceHistory(root)
        self.fence_results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.fencing_now: set[str] = set()
        self.first_quorate: float | None = None
        self.qdisk = None
        self.quorum_state: QuorumState | None = None
        self.allow_decrease = True
        self.quorum_state = cquorum.evaluate(self._quorum_inputs())
        self.joined_at: dict[int, float] = {}  # wall time each member joined (cman_tool nodes "Joined")
        self.fenced_at: dict[str, float] = {}
        self.victim_incarnations: dict[str, int] = {}  # victim → the incarnation it had when lost (0: never seen)
        self.last_config_check = start
        self.dropped_packets = 0
        self.view_installed_at: float | None = None  # wall time of the last view change (benchmarks read it)
        self.qdisk = self._start_qdisk()
        self._write_pid()

    # -- configuration -----------------------------------------------------------------------------------------
    def _settings(self) -> membership.Settings:
        return membership.Settings(
            nodeid=self.me.nodeid,
            node_votes={n: a.votes for n, a in self.nodes.items()},
            token=token_seconds(self.cv),
            config_version=self.config_version,
            expected=expected_votes(self.cv, os.environ),
        )

    def _read_epoch(self) -> int:
        """The highest epoch this node proposed. Missing: 0 (a new node). Unreadable or corrupt: the daemon
        refuses to start, since proposing from 0 again could reuse a generation other nodes still hold."""
        path = self.root / EPOCH_FILE
        try:
            return int(path.read_text().strip())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, UnicodeDecodeError):
            raise DaemonError(f"{path} is unreadable or corrupt; remove it only once no node of the cluster is "
                              "running (a restarted node must never reuse a view generation)") from None

    def _write_pid(self) -> None:
        path = self.root / control.PIDFILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, f"{os.getpid()}\n".encode(), keep_old=False)

    def _start_qdisk(self):  # -> QuorumDiskService | None
        if self.cv.quorumd is None:
            return None
        from cman import qdisk

        try:
            service = qdisk.QuorumDiskService(self.cv, self.me.nodeid, self.incarnation,
                                              log=lambda text: log.info("qdisk: %s", text))
            service.start()
        except qdisk.QdiskError as exc:
            log.error("qdisk: %s (the quorum disk's votes do not count)", exc)
            return None
        return service

    def check_config(self, now: float) -> None:
        """Reload when the ricci agent accepted a newer version (pushed, or pulled by its catch-up)."""
        self.last_config_check = now
        version = accepted_version(self.store)
        if version is None or version <= self.config_version:
            return
        try:
            conf = running_config(self.root)
            nodes = identity.cluster_nodes(view(conf), self.root)
            me = identity.find_self(nodes, self.name)
        except (DaemonError, identity.IdentityError) as exc:
            log.error("Can't get updated config version %d: %s. Activity suspended on this node", version, exc)
            return
        if two_node_error(view(conf), nodes):
            log.error("Can't get updated config version %d: %s. Activity suspended on this node", version,
                      TWO_NODE_TEXT)
            return
        if me.nodeid != self.me.nodeid or me.address != self.me.address:
            log.error("config version %d changes this node's id or address: restart cman to take it", version)
            return
        log.info("config version %d -> %d", self.config_version, conf.config_version or 0)
        self.conf, self.cv, self.nodes = conf, view(conf), nodes
        self.node_names = {a.name for a in nodes.values()}
        self.config_version = conf.config_version or 0
        self.fence_config = fencing.fence_daemon_config(self.cv.fence_daemon)
        self.engine.reconfigure(self._settings())
        self.allow_decrease = True

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self) -> int:
        log.info("cmand starting: node %s (id %d) %s:%d, cluster %s, config version %d, token %d ms",
                 self.me.name, self.me.nodeid, self.me.address, self.port, self.cv.name, self.config_version,
                 int(token_seconds(self.cv) * 1000))
        tick = min(self.engine.settings.interval / 4, 0.025)
        try:
            while not self.stopping:
                readable, _, _ = select.select([self.udp, *self.clients.sockets()], [], [], tick)
                now = time.monotonic()
                if self.udp in readable:
                    self.read_packets(now)
                self.serve_control(readable, now)
                self.step(time.monotonic())
        finally:
            self.shutdown()
        return self.exit_code

    def read_packets(self, now: float) -> None:
        for _ in range(256):  # bounded per pass: the tick must run
            try:
                data, _ = self.udp.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.receive(data, now)

    def receive(self, data: bytes, now: float) -> None:
        try:
            packet = wire.unseal(self.key, data, self.cluster_id)
        except wire.WireError as exc:
            self.dropped_packets += 1
            if exc.code != "cluster":
                log.debug("dropped a packet: %s", exc.code)
            return
        if packet.sender == self.me.nodeid or packet.sender not in self.nodes:
            return
        refused = self.guard.admit(packet.sender, packet.incarnation, packet.seq)
        if refused:
            self.dropped_packets += 1
            return
        body = membership.parse_body(packet.kind, packet.body)
        if body is None:  # signed by a member but not a body this version reads: dropped, nothing applied
            self.dropped_packets += 1
            log.warning("dropped a malformed %s packet from node %d", packet.kind, packet.sender)
            return
        try:
            effects = self.engine.receive(packet.sender, packet.incarnation, packet.seq, packet.kind, body, now)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            # Signed by a member but not understood (a peer of another version, or a bug): dropped, never fatal.
            self.dropped_packets += 1
            log.warning("dropped a %s packet of node %d that could not be read: %s", packet.kind, packet.sender,
                        type(exc).__name__)
            return
        self.apply(effects, now)

    def step(self, now: float) -> None:
        self.engine.extra = self._heartbeat_extra(now)
        self.apply(self.engine.tick(now), now)
        self.merge_peer_books(now)
        self.update_quorum(now)
        self.collect_fence_results(now)
        self.fence_due(now)
        if now - self.last_config_check >= CONFIG_POLL:
            self.check_config(now)

    def apply(self, effects: list[membership.Effect], now: float) -> None:
        for effect in effects:
            if isinstance(effect, membership.Send):
                self.send(effect)
            elif isinstance(effect, membership.PersistEpoch):
                atomic_write(self.root / EPOCH_FILE, f"{effect.epoch}\n".encode(), keep_old=False)
            elif isinstance(effect, membership.ViewChange):
                self.view_changed(effect, now)
            elif isinstance(effect, membership.Evicted):
                log.error("view %d of node %d leaves this node out: it was declared dead and is being fenced; "
                          "leaving the cluster (restart cman to rejoin)", effect.generation, effect.by)
                self.exit_code = EVICTED_EXIT
                self.stopping = True
            elif isinstance(effect, membership.ExpectedSet):
                log.info("expected votes set to %d by node %d", effect.votes, effect.by)
                self.allow_decrease = True
            elif isinstance(effect, membership.Log):
                getattr(log, effect.level if effect.level in ("debug", "info", "warning", "error") else "info")(
                    "%s", effect.text)

    def send(self, effect: membership.Send) -> None:
        data = wire.seal(self.key, wire.Packet(self.cluster_id, self.me.nodeid, self.incarnation, effect.seq,
                                               effect.kind, effect.body))
        for dest in effect.dests:
            node = self.nodes.get(dest)
            if node is None or not node.address:
                continue
            with contextlib.suppress(OSError):  # a firewall (the lab's partition) or a vanished address
                self.udp.sendto(data, (node.address, self.port))

    # -- views, quorum, fencing ------------------------------------------------------------------------------
    def names(self, ids) -> list[str]:
        return [self.nodes[i].name for i in sorted(ids) if i in self.nodes]

    def view_changed(self, change: membership.ViewChange, now: float) -> None:
        wall = time.time()
        self.view_installed_at = wall
        for n in change.joined:
            self.joined_at[n] = wall
        for n in change.lost:
            self.joined_at.pop(n, None)
        if change.removed:
            removed_votes = sum(self.nodes[n].votes for n in change.removed if n in self.nodes)
            expected = self.engine.advertised_expected()
            self.engine.expected_override = cquorum.after_remove(expected, removed_votes)
            self.allow_decrease = True
        self.update_quorum(now)
        quorate = self.quorum_state.quorate
        previous = self.names(change.previous.members)
        members = self.names(change.view.members)
        for name in self.names(change.restarted):
            self.book = fencing.rejoined(self.book, name)
        for name in self.names(change.joined - change.restarted):
            self.book = fencing.rejoined(self.book, name)
        for n in change.lost - change.left_cleanly:
            if n in self.nodes:  # which life of the node the fence is for (shared records are matched on it)
                self.victim_incarnations[self.nodes[n].name] = self.engine.dropped.get(n, 0)
        self.book = fencing.victims_after_view(self.book, previous, members, self.names(change.left_cleanly),
                                               quorate, now, self.fence_config.post_fail_delay)
        if change.lost:
            log.info("members lost: %s%s", ", ".join(self.names(change.lost)),
                     f" (left cleanly: {', '.join(self.names(change.left_cleanly))})" if change.left_cleanly else "")

    def _quorum_inputs(self) -> cquorum.QuorumInputs:
        engine = self.engine
        members = engine.view.members if engine.state == membership.MEMBER else frozenset({self.me.nodeid})
        return cquorum.QuorumInputs(
            node_votes={n: a.votes for n, a in self.nodes.items()},
            members=frozenset(members),
            member_expected=engine.member_expected(),
            qdisk_votes=self.qdisk.votes_now() if self.qdisk is not None else 0,
            two_node=self.cv.two_node,
            previous_quorum=self.quorum_state.quorum if self.quorum_state is not None else None,
            allow_decrease=self.allow_decrease,
        )

    def update_quorum(self, now: float) -> None:
        before = self.quorum_state
        self.quorum_state = cquorum.evaluate(self._quorum_inputs())
        self.allow_decrease = False
        if before.quorate and not self.quorum_state.quorate:
            log.warning("quorum lost, blocking activity")
        elif not before.quorate and self.quorum_state.quorate:
            log.info("quorum regained, resuming activity")
        if self.quorum_state.quorate and self.first_quorate is None and self.engine.state == membership.MEMBER:
            self.first_quorate = now
            if self.domain_exists():
                log.info("joined an existing fence domain: no startup fencing")
                return
            configured = [a.name for a in self.nodes.values()]
            self.book = fencing.startup_victims(self.book, configured, self.names(self.engine.view.members), now, now,
                                                self.fence_config.post_join_delay, self.fence_config.clean_start)

    def confirmed(self, now: float) -> bool:
        return self.engine.confirmed(now, self.quorum_state.quorum, self.quorum_state.qdisk_votes)

    def is_fencer(self) -> bool:
        """The lowest nodeid of the view fences (fenced's domain master did the same)."""
        members = self.engine.view.members
        return self.engine.state == membership.MEMBER and bool(members) and min(members) == self.me.nodeid

    def fencer_name(self) -> str | None:
        members = self.engine.view.members
        return self.nodes[min(members)].name if members and min(members) in self.nodes else None

    def fence_due(self, now: float) -> None:
        if not self.is_fencer():
            return
        for name, record in self.book.items():
            if record.state == "running" and name not in self.fencing_now:
                # Mirrored from a fencer that is gone (or left over): its attempt's end is unknown; try again.
                self.book = self.book.with_record(fencing.FenceRecord(
                    name, "pending", now, "the previous fencer did not report a result; fencing again",
                    next_retry=now + fencing.retry_delay(1), attempts=record.attempts))
        for name in fencing.due(self.book, now, self.quorum_state.quorate, self.confirmed(now)):
            if name in self.fencing_now:
                continue
            self.book = fencing.started(self.book, name, now)
            self.fencing_now.add(name)
            log.info("fencing node %s", name)
            threading.Thread(target=self._fence_worker, args=(name, self.cv), daemon=True,
                             name=f"fence-{name}").start()

    def _fence_worker(self, name: str, cv: ClusterView) -> None:
        try:
            outcome = fence_agents.fence(cv, name, timeout=FENCE_TIMEOUT)
        except Exception as exc:  # an agent that cannot even be started: recorded as a failure, retried
            outcome = fencing.FenceReport("failed", f"fencing {name} failed: {exc}")
        self.fence_results.put((name, outcome))

    def collect_fence_results(self, now: float) -> None:
        while True:
            try:
                name, outcome = self.fence_results.get_nowait()
            except queue.Empty:
                return
            self.fencing_now.discard(name)
            current = self.book.get(name)
            if current is not None and current.state == "succeeded" and outcome.status != "success":
                # fence_node or fence_ack_manual closed it while this attempt ran: the late failure changes nothing
                self.history.append(outcome.history_entry("cmand", time.time()) if hasattr(outcome, "history_entry")
                                    else {"time": time.time(), "actor": "cmand", "node": name, "action": "fence",
                                          "status": outcome.status, "message": outcome.message})
                continue
            self.book = fencing.record_result(self.book, name, outcome, now)
            entry = outcome.history_entry("cmand", time.time()) if hasattr(outcome, "history_entry") else {
                "time": time.time(), "actor": "cmand", "node": name, "action": "fence", "status": outcome.status,
                "message": outcome.message}
            self.history.append(entry)
            if outcome.status == "success":
                self.fenced_at[name] = time.time()
                log.info("fence %s success", name)
            elif outcome.status == "manual":
                log.warning("fence %s: waiting for fence_ack_manual %s", name, name)
            else:
                log.error("fence %s failed: %s", name, outcome.message)

    def _heartbeat_extra(self, now: float) -> dict:
        """What every node tells the others in its heartbeats: whether it has been in a quorate view (the fence
        domain exists: a node that joins it does no startup fencing) and its fence book, so that whoever fences
        next knows every open victim and every fence already done (fenced's domain state)."""
        extra: dict = {}
        if self.first_quorate is not None:
            extra["d"] = 1
        announced = self.announced(now)
        if announced:
            extra["an"] = announced
        offset = time.time() - now
        book = {n: [r.state, round(r.since + offset, 3), r.message[:200], r.attempts,
                    self.victim_incarnations.get(n, 0)]
                for n, r in self.book.items()
                if r.state in fencing.OPEN_STATES or now - r.since < BOOK_SHARE_SUCCEEDED}
        if book:
            extra["f"] = book
        return extra

    def merge_peer_books(self, now: float) -> None:
        """Take what the other members of the view know, matched on the victim's incarnation (the life of the
        node that was lost), never on clocks: a victim they fenced (or an operator acknowledged there) is done
        here too; a victim open there and unknown here (or known here only for an older life) is opened here, so
        the fencer may change hands. A victim that is a member of the view now is never opened from a stale
        heartbeat."""
        view = self.engine.view
        members = {self.nodes[m].name for m in view.members if m in self.nodes}
        for nodeid in sorted(view.members - {self.me.nodeid}):
            peer = self.engine.peers.get(nodeid)
            entries = peer.extra.get("f") if peer is not None else None
            if not isinstance(entries, dict):
                continue
            reporter = self.nodes[nodeid].name if nodeid in self.nodes else str(nodeid)
            for name, entry in entries.items():
                if name not in self.node_names or not isinstance(entry, list) or len(entry) != 5:
                    continue
                state, since_wall, message, attempts, incarnation = entry
                if not (isinstance(state, str) and isinstance(incarnation, int) and isinstance(attempts, int)
                        and isinstance(since_wall, int | float)):
                    continue
                self._merge_entry(name, state, since_wall, str(message)[:200], attempts, incarnation, reporter,
                                  members, now)

    def _merge_entry(self, name: str, state: str, since_wall: float, message: str, attempts: int,
                     incarnation: int, reporter: str, members: set[str], now: float) -> None:
        mine = self.book.get(name)
        same_life = mine is not None and self.victim_incarnations.get(name, 0) == incarnation
        if state == "succeeded":
            if same_life and mine.state in fencing.OPEN_STATES and name not in self.fencing_now:
                self.book = fencing.record_result(self.book, name, fencing.FenceReport(
                    "success", f"fenced, reported by {reporter}"), now)
                self.fenced_at[name] = since_wall
                self.history.append({"time": since_wall, "actor": reporter, "node": name, "action": "fence",
                                     "status": "success", "message": f"fenced by {reporter} (reported in its "
                                                                     "heartbeats)"})
                log.info("fence %s success (reported by %s)", name, reporter)
            return
        if state not in fencing.OPEN_STATES or name in members:
            return
        if same_life:
            if mine.state in fencing.OPEN_STATES and mine.state != state and not self.is_fencer() \
                    and reporter == self.fencer_name():
                # Mirror the fencer's progress (running, failed, waiting for a manual ack) for status and acks.
                self.book = self.book.with_record(fencing.FenceRecord(
                    name, state, now, f"{message} (reported by {reporter})", next_retry=mine.next_retry,
                    attempts=attempts))
            return
        if mine is not None and self.victim_incarnations.get(name, 0) > incarnation:
            return  # ours is about a later life of the node
        waiting = "manual_wait" if state == "manual_wait" else "pending"
        due = now + (fencing.retry_delay(1) if state == "running" else 0.0)  # a fence running there: let it end
        self.victim_incarnations[name] = incarnation
        self.book = self.book.with_record(fencing.FenceRecord(
            name, waiting, now, f"{message} (reported by {reporter})",
            next_retry=None if waiting == "manual_wait" else due, attempts=attempts))

    def domain_exists(self) -> bool:
        """Has another member of the view been in a quorate view before (the fence domain already exists)?"""
        for nodeid in self.engine.view.members - {self.me.nodeid}:
            peer = self.engine.peers.get(nodeid)
            if peer is not None and peer.extra.get("d"):
                return True
        return False

    # -- control requests --------------------------------------------------------------------------------------
    def serve_control(self, readable: list, now: float) -> None:
        """Accept control clients and answer complete requests; a client never makes the loop wait."""
        if self.control in readable:
            self.clients.accept(now)
        for conn, line in self.clients.requests(readable, now):
            control.answer(conn, control.handle_line(line, self.handlers(), on_error=self._handler_failed),
                           CONTROL_DEADLINE)

    def _handler_failed(self, command: str, exc: BaseException) -> None:
        log.error("control request %r failed: %s (a bug: please report it)", command, type(exc).__name__)

    def handlers(self) -> Mapping[str, control.Handler]:
        return {
            "status": lambda _: self.status(time.monotonic()),
            "nodes": lambda _: self.status(time.monotonic())["nodes"],
            "expected": self.cmd_expected,
            "leave": self.cmd_leave,
            "fence_ack": self.cmd_fence_ack,
            "fence_done": self.cmd_fence_done,
            "fence_history": self.cmd_fence_history,
            "announce": self.cmd_announce,
        }

    def cmd_expected(self, args: Mapping[str, Any]) -> dict:
        votes = args.get("votes")
        if not isinstance(votes, int) or isinstance(votes, bool):
            raise control.ControlError("bad_request", "expected needs an integer 'votes'")
        error = cquorum.expected_change_error(votes, self.quorum_state.total_votes, two_node=self.cv.two_node,
                                               members=len(self.engine.view.members))
        if error:
            raise control.ControlError("refused", error)
        now = time.monotonic()
        self.apply(self.engine.set_expected(votes, now), now)
        self.allow_decrease = True
        self.update_quorum(now)
        log.info("expected votes set to %d (cman_tool expected)", votes)
        return {"expected_votes": self.quorum_state.expected_votes, "quorum": self.quorum_state.quorum}

    def cmd_leave(self, args: Mapping[str, Any]) -> dict:
        now = time.monotonic()
        remove = bool(args.get("remove"))
        self.apply(self.engine.leave(remove, now), now)
        log.info("leaving the cluster%s", " (remove)" if remove else "")
        self.stopping = True
        return {"leaving": True, "remove": remove}

    def _known(self, args: Mapping[str, Any]) -> str:
        name = str(args.get("node", ""))
        if name not in self.node_names:
            raise control.ControlError("unknown_node", f"{name!r} is not a node of cluster {self.cv.name}")
        return name

    def cmd_fence_ack(self, args: Mapping[str, Any]) -> dict:
        name = self._known(args)
        try:
            self.book = fencing.acknowledge_manual(self.book, name, time.monotonic())
        except fencing.NotWaiting as exc:
            raise control.ControlError("not_waiting", str(exc)) from None
        self.fenced_at[name] = time.time()
        self.history.append({"time": time.time(), "actor": "fence_ack_manual", "node": name, "action": "fence",
                             "status": "success", "message": "manual fence acknowledged"})
        log.info("fence %s acknowledged manually", name)
        return {"node": name, "message": "manual fence acknowledged"}

    def cmd_fence_done(self, args: Mapping[str, Any]) -> dict:
        """fence_node fenced a node: it will not be fenced again for this failure."""
        name = self._known(args)
        if not bool(args.get("ok")):
            return {"node": name, "recorded": False}
        report = fencing.FenceReport("success", str(args.get("message", "fenced by fence_node")),
                                     args.get("method"), args.get("device"), args.get("agent"))
        self.book = fencing.record_result(self.book, name, report, time.monotonic())
        self.fenced_at[name] = time.time()
        return {"node": name, "recorded": True}

    def cmd_announce(self, args: Mapping[str, Any]) -> dict:
        """A local daemon (rgmanager) publishes a small value in this node's heartbeats under `key`, for `ttl`
        seconds (it refreshes it while it runs; a value of null withdraws it at once). Every node's status shows
        every member's announcements: how rgmanager daemons know which peers run one (cman's port-bound rule)."""
        key, ttl = args.get("key"), args.get("ttl", 3.0)
        if not isinstance(key, str) or not key or len(key) > 16 or not isinstance(ttl, int | float) or ttl <= 0:
            raise control.ControlError("bad_request", "announce needs a short 'key' and a positive 'ttl'")
        value = args.get("value")
        if value is None:
            self.announcements.pop(key, None)
        elif len(json.dumps(value)) > MAX_ANNOUNCEMENT:
            raise control.ControlError("bad_request", f"an announcement is at most {MAX_ANNOUNCEMENT} bytes")
        else:
            self.announcements[key] = (value, time.monotonic() + min(float(ttl), 60.0))
        return {"key": key}

    def announced(self, now: float) -> dict:
        for key in [k for k, (_, until) in self.announcements.items() if until < now]:
            del self.announcements[key]
        return {k: v for k, (v, _) in self.announcements.items()}

    def cmd_fence_history(self, args: Mapping[str, Any]) -> list:
        limit = args.get("limit", 100)
        return self.history.entries(node=args.get("node") or None, limit=limit if isinstance(limit, int) else 100)

    # -- status ------------------------------------------------------------------------------------------------
    def status(self, now: float) -> dict[str, Any]:
        engine = self.engine
        q = self.quorum_state
        members = engine.view.members if engine.state == membership.MEMBER else frozenset()
        alive = engine.alive(now)
        fence_view = self._fence_view(now)
        rows = []
        for nodeid in sorted(self.nodes):
            node = self.nodes[nodeid]
            peer = engine.peers.get(nodeid)
            state = "M" if nodeid in members else ("d" if nodeid in engine.disallowed else "X")
            rows.append({
                "nodeid": nodeid, "name": node.name, "state": state,
                "incarnation": self.incarnation if nodeid == self.me.nodeid else (peer.incarnation if peer else 0),
                "joined": self.joined_at.get(nodeid), "addresses": [node.address], "votes": node.votes,
                "expected": engine.advertised_expected() if nodeid == self.me.nodeid else (peer.expected if peer
                                                                                             else 0),
                "config_version": self.config_version if nodeid == self.me.nodeid else (peer.config_version
                                                                                        if peer else 0),
                "alive": nodeid in alive, "local": nodeid == self.me.nodeid,
                "last_seq": peer.last_seq if peer else None,
                "left": bool(peer.left) if peer else False,
                "announced": (self.announced(now) if nodeid == self.me.nodeid
                              else (peer.extra.get("an") if peer and nodeid in alive
                                    and isinstance(peer.extra.get("an"), dict) else {})),
                "fenced_at": fence_view.get(node.name, {}).get("fenced_at") or self.fenced_at.get(node.name),
            })
        flags = []
        if self.cv.two_node:
            flags.append("2node")
        if engine.disallowed:
            flags.append("DisallowedNodes")
        qdisk_status = self.qdisk.status() if self.qdisk is not None else None
        return {
            "node": {"name": self.me.name, "nodeid": self.me.nodeid, "address": self.me.address,
                     "votes": self.me.votes, "incarnation": self.incarnation},
            "cluster": {"name": self.cv.name, "id": self.cluster_id, "config_version": self.config_version,
                        "port": self.port, "two_node": self.cv.two_node,
                        "token_ms": int(token_seconds(self.cv) * 1000)},
            "membership_state": engine.state,
            "generation": engine.view.generation,
            "view_installed_at": self.view_installed_at,
            "coordinator": engine.view.coordinator,
            "view_confirmed": self.confirmed(now),
            "members": sorted(members),
            "nodes": rows,
            "quorum": {"expected_votes": q.expected_votes, "total_votes": q.total_votes,
                       "node_votes": self.me.votes, "quorum": q.quorum, "quorate": q.quorate,
                       "qdisk_votes": q.qdisk_votes},
            "qdisk": qdisk_status,
            "fencing": fence_view,
            "flags": flags,
            "activity_blocked": not q.quorate,
            "ports_bound": [0],
            "multicast": multicast_address(self.cluster_id),
            "active_subsystems": 1 + (1 if self.qdisk is not None else 0),
            "disallowed": self.names(engine.disallowed),
            "dropped_packets": self.dropped_packets,
        }

    def _fence_view(self, now: float) -> dict[str, dict]:
        """The fence states this node knows: its book, kept in step with the other members' by their heartbeats."""
        wall_offset = time.time() - now
        result: dict[str, dict] = {}
        for name, record in self.book.items():
            entry = record.as_status()
            entry["since"] = record.since + wall_offset
            if record.next_retry is not None:
                entry["next_retry"] = record.next_retry + wall_offset
            entry["fenced_at"] = self.fenced_at.get(name)
            entry["incarnation"] = self.victim_incarnations.get(name, 0)  # the life of the node this is about
            result[name] = entry
        return result

    # -- stopping --------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        self.clients.close()
        if self.qdisk is not None:
            with contextlib.suppress(Exception):
                self.qdisk.stop()
        with contextlib.suppress(OSError):
            self.udp.close()
        with contextlib.suppress(OSError):
            self.control.close()
        for path in (self.root / control.SOCKET, self.root / control.PIDFILE):
            with contextlib.suppress(OSError):
                path.unlink()
        log.info("cmand stopped")


def log_formatter(program: str) -> logging.Formatter:
    """`2025-01-01T12:00:00.123 PROGRAM[PID]: LEVEL message`: the line ricci's `log.get` reads (the same time
    format as ricci's own log), for cmand and rgmanager."""
    formatter = logging.Formatter(f"%(asctime)s {program}[%(process)d]: %(levelname)s %(message)s")
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03d"
    return formatter


def setup_logging(root: Path) -> None:
    path = root / LOG_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(log_formatter("cmand"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if os.environ.get("CMAN_DEBUG") else logging.INFO)
    log.propagate = False


def realtime_priority() -> str:
    """Run the loop at a real-time priority (SCHED_RR 1), as corosync did: a heartbeat that waits behind busy
    processes for a whole token is a node declared dead. Programs it starts (fence agents, heuristics) get the
    normal policy back (SCHED_RESET_ON_FORK). Without the privilege the daemon runs at normal priority."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR | getattr(os, "SCHED_RESET_ON_FORK", 0), os.sched_param(1))
    except (OSError, AttributeError) as exc:
        return f"normal scheduling ({getattr(exc, 'strerror', None) or exc})"
    return "real-time scheduling (SCHED_RR 1)"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        sys.stdout.write("usage: cmand\n\nThe cluster manager daemon of the node at $CLUSTER_ROOT (started by "
                         "'cman_tool join', stopped by 'cman_tool leave'). See docs/membership.md.\n")
        return 0
    root = Path(os.environ.get("CLUSTER_ROOT", "/"))
    setup_logging(root)
    try:
        daemon = Daemon(root)
    except (DaemonError, identity.IdentityError) as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        log.error("%s", exc)
        return 1
    except OSError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1

    def stop(signum: int, _frame: object) -> None:
        now = time.monotonic()
        if not daemon.stopping:
            daemon.apply(daemon.engine.leave(False, now), now)
        daemon.stopping = True

    log.info("%s", realtime_priority())
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
