"""The rgmanager daemon's safety and liveness rules, each pinned by a test (several written by a review that found
them broken): a member that did not answer keeps its services; a stop that never arrived is not a stop; a node
shutting down is taken as clean only once it says it stopped everything; tables of a new master are taken; queued
requests are answered when the master changes; requests never starve the master's actions; a stale cman view
starts nothing.

Real `RGManager` / `Coordinator` objects are built on the roots of a created (not started) lab whose services are
the lab's ledger services (real LSB scripts: a start spawns a real process that records itself in a ledger outside
the node roots). cmand does not run: the daemon's cman snapshot is set by hand from a cmand-shaped status, as
`_poll_cman` would set it. Peers that "run" rgmanager are announced in that snapshot but have no daemon, which is
what a crashed, paused or unreachable rgmanager looks like to the network.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from rgmanager import daemon as rgd
from rgmanager.daemon import CmanSnapshot, Coordinator, RGManager, _Waiter
from rgmanager.planner import Action, ActionKind, plan
from rgmanager.records import table_to_list
from rgmanager.snapshot import QuorumFormed, ServiceRecord, ServiceTable, UserOp, UserRequest
from rgmanager.states import State
from ricci_agent import lab_services
from ricci_agent.lab import Lab, free_block

NAMES = ["node1", "node2", "node3"]
GEN = 3001


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    lab = Lab(tmp_path / "lab")
    ledger = tmp_path / "ledger.jsonl"
    lab.create(NAMES, "rgreview", free_block(len(NAMES)), 11111,
               services=lab_services.ledger_services(2, ledger, heartbeat=0.2))
    return lab


@pytest.fixture
def daemons(monkeypatch):
    made: list[RGManager] = []

    def build(lab: Lab, name: str) -> RGManager:
        root = lab.node(name).root
        monkeypatch.setenv("CMAN_NODENAME", name)
        monkeypatch.setenv("CLUSTER_ROOT", str(root))
        d = RGManager(root)
        d.initialized.set()  # as run() does once "Initializing Services" is done
        d.server.start()  # as run() does: peers reach it
        made.append(d)
        return d

    yield build
    for d in made:
        if d.coordinator is not None:
            d.coordinator.stop()
        for service in list(d.local.truth()):  # leave no ledger process behind
            d.local.stop(service, reason="test teardown")
        if not getattr(d, "_review_shut", False):
            d.shutdown()


def snapshot(up: dict[str, dict | None], *, generation: int = GEN, quorate: bool = True) -> CmanSnapshot:
    """A cmand status with every node of `up` a member; its value is the node's rg announcement (None: no
    rgmanager). Nodes not in `up` are not members."""
    nodes = []
    for nodeid, name in enumerate(NAMES, start=1):
        row: dict = {"name": name, "nodeid": nodeid, "state": "M" if name in up else "X", "incarnation": 7}
        if name in up and up[name] is not None:
            row["announced"] = {"rg": up[name]}
        nodes.append(row)
    return CmanSnapshot.from_status({
        "generation": generation, "quorum": {"quorate": quorate}, "membership_state": "Cluster-Member",
        "view_confirmed": True, "nodes": nodes, "fencing": {}, "cluster": {"name": "rgreview", "id": 1},
    })


RG_UP = {"up": True, "inc": 11}


def started_on(sid: str, node: str) -> ServiceRecord:
    return ServiceRecord(sid, state=State.STARTED, owner=node, last_transition=time.time() - 60)


# -- 1. rebuild: a member whose truth did not come is taken to run nothing -------------------------------------------
def test_rebuild_does_not_free_the_services_of_a_member_whose_truth_did_not_come(lab, daemons):
    """node3 owns service:svc1; its rgmanager just crashed (kill -9: the service keeps running, cman stays up, the
    announcement lives for ANNOUNCE_TTL) or is paused. node1 becomes RG-Master and rebuilds: the truth call to
    node3 fails, yet node3 is in `members`, so the record is turned to stopped and QuorumFormed starts the
    service on another node while node3 still runs it."""
    d1 = daemons(lab, "node1")
    d1.cman = snapshot({"node1": RG_UP, "node2": RG_UP, "node3": RG_UP})
    d1.table = ServiceTable([started_on("service:svc1", "node3")])
    coord = Coordinator(d1)
    coord._rebuild()
    record = coord.table.record("service:svc1")
    # Safe outcomes: the record still shows node3 (unknown truth) or node3 is held as lost until fenced.
    assert (record.active and record.owner == "node3") or "node3" in coord.lost, \
        f"rebuild freed service:svc1 from node3 without hearing from node3: {record}"
    result = plan(d1.cv, coord.membership, coord.table, QuorumFormed(now=time.time()))
    starts = [a for a in result.actions if a.kind is ActionKind.START and a.service == "service:svc1"]
    assert not starts, f"service:svc1 started elsewhere while node3 may still run it: {starts}"


# -- 2. shutdown says "clean" before its services are stopped ----------------------------------------------------------
def test_shutdown_announces_rgmanager_down_only_after_its_services_stopped(lab, daemons, monkeypatch):
    """`node_clean` takes a member whose rgmanager announced up=False as safe to take services from, so
    `shutdown` must announce up=False only after `emergency_stop_all` (fixed in 32221ee while this review ran;
    kept as a regression test)."""
    d2 = daemons(lab, "node2")
    assert d2.local.start("service:svc1")["ok"]
    seen: list[tuple[bool, list[str]]] = []
    monkeypatch.setattr(d2, "_announce", lambda *, up, failed=None: seen.append((up, sorted(d2.local.truth()))))
    d2.shutdown()
    d2._review_shut = True
    downs = [running for up, running in seen if up is False]
    assert downs, "shutdown never announced its rgmanager down"
    assert downs[0] == [], f"announced 'rgmanager down' (= clean, for node_clean) while still running {downs[0]}"


def test_shutdown_with_a_failed_stop_does_not_announce_clean_before_reporting_it(lab, daemons, monkeypatch):
    """A stop that fails at shutdown: `node_clean` takes `up: false` as "everything stopped", and the master
    frees the node's services on it (observe -> NodeDown, 50 ms) before the node-stopped report naming the failed
    stop arrives, so a service whose resources are still held here is started elsewhere. The failing agent is
    stood in for by emergency_stop_all's return value (the service it could not stop)."""
    d2 = daemons(lab, "node2")
    monkeypatch.setattr(d2.local, "emergency_stop_all", lambda why: ["service:svc1"])
    d2.local.running["service:svc1"] = {"state": "started", "since": time.time()}
    announced: list[dict] = []
    monkeypatch.setattr(d2, "_announce", lambda *, up, failed=None: announced.append({"up": up, "failed": failed}))
    monkeypatch.setattr(d2, "report", lambda message: None)
    d2.shutdown()
    d2._review_shut = True
    d2.local.running.clear()
    # The "down" announcement itself names the failed stop, so the RG-Master never takes this node as clean.
    assert announced == [{"up": False, "failed": ["service:svc1"]}], announced
    d1 = daemons(lab, "node1")
    d1.cman = snapshot({"node1": RG_UP, "node2": {"up": False, "inc": 1, "failed": ["service:svc1"]}})
    assert not d1.node_clean("node2")
    d1.cman = snapshot({"node1": RG_UP, "node2": {"up": False, "inc": 1}})
    assert d1.node_clean("node2")


# -- 3. an unreachable stop counts as done ----------------------------------------------------------------------------
def test_relocate_does_not_start_on_the_target_when_the_stop_never_reached_the_source(lab, daemons):
    """RELOCATE service:svc1 node3 -> node1: node3's rgmanager does not answer (crashed with cman alive: its
    services still run), `_call` returns unreachable, `_carry_out` treats that as a successful stop and starts
    the service on node1: two nodes at once."""
    d1 = daemons(lab, "node1")
    d1.cman = snapshot({"node1": RG_UP, "node2": RG_UP, "node3": RG_UP})
    d1.running_ok = True
    coord = Coordinator(d1)
    coord.online = {"node1", "node2", "node3"}
    action = Action(ActionKind.RELOCATE, "service:svc1", node="node1", source="node3", reason="test")
    coord._carry_out(action)
    assert "service:svc1" not in d1.local.truth(), \
        "service:svc1 was started on node1 although its stop on node3 never happened"


def test_a_stop_that_never_reached_its_node_is_not_reported_done(lab, daemons):
    d1 = daemons(lab, "node1")
    d1.cman = snapshot({"node1": RG_UP, "node2": RG_UP, "node3": RG_UP})
    coord = Coordinator(d1)
    coord.online = {"node1", "node2", "node3"}
    ok = coord._carry_out(Action(ActionKind.STOP, "service:svc1", node="node3", reason="test"))
    assert ok is False, "an unreachable node's stop counted as done: the planner's table says stopped, the " \
        "next evaluation starts the service elsewhere"


# -- 4. a new master in the same cman generation is ignored -----------------------------------------------------------
def test_tables_of_a_new_master_in_the_same_generation_are_accepted(lab, daemons):
    """Master changes without a cman view change (an rgmanager stopped or started) keep the generation; the new
    coordinator's seq starts at 1, so every rgmanager (its own daemon too) drops its tables as older than what the
    previous master sent: clustat shows the old table, and a later rebuild starts from it (freeze / disable lost)."""
    d2 = daemons(lab, "node2")
    d2.cman = snapshot({"node2": RG_UP, "node3": RG_UP})
    old = ServiceTable([started_on("service:svc1", "node1")])
    d2.take_table({"kind": "table", "version": [GEN, 500], "records": table_to_list(old)})  # from node1
    coord = Coordinator(d2)
    coord.table = ServiceTable([started_on("service:svc1", "node3")])
    coord.publisher.start()
    try:
        coord._publish()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and coord.seq == 0:
            time.sleep(0.02)
        time.sleep(0.1)
    finally:
        coord.stop()
    assert coord.seq >= 1
    assert d2.table.record("service:svc1").owner == "node3", \
        f"the new master's own table was dropped: replicated copy still {d2.table.record('service:svc1')}"


# -- 5. a coordinator that stops leaves its queued requests unanswered -------------------------------------------------
def test_a_coordinator_that_loses_the_role_answers_its_queued_requests(lab, daemons):
    d1 = daemons(lab, "node1")
    d1.cman = snapshot({"node1": RG_UP})
    coord = Coordinator(d1)
    waiter = _Waiter("service:svc1")
    coord.submit(UserRequest(UserOp.ENABLE, "service:svc1", now=time.time()), waiter)
    coord.stop()  # quorum dissolved / another node comes first before the loop got to it
    thread = threading.Thread(target=coord._loop, daemon=True)
    thread.start()
    thread.join(10.0)
    assert waiter.future.done(), "a queued user request is never answered (clusvcadm waits REQUEST_TIMEOUT)"


# -- 6. the control socket's requests starve the coordinator's actions ------------------------------------------------
def test_waiting_control_requests_do_not_use_the_coordinators_action_threads(lab, daemons):
    """Service requests wait for their outcome (up to REQUEST_TIMEOUT): they are answered on threads of their
    own, never on the pool the RG-Master's actions (failover included) run on; replication has its own too."""
    d1 = daemons(lab, "node1")
    d1.cman = snapshot({"node1": RG_UP})
    d1.running_ok = True
    release = threading.Event()
    d1.handlers = lambda: {"service": lambda _args: release.wait(30.0) and {"code": 0}}  # a request that waits
    clients = []
    for _ in range(rgd.WORKERS + 2):
        client, server = socket.socketpair()
        clients.append(client)
        client.sendall(b'{"command": "service"}\n')
        d1.clients.pending[server] = (bytearray(), time.monotonic() + 5.0)
    try:
        d1._serve_control(list(d1.clients.pending), time.monotonic())
        ran = d1.pool.submit(lambda: True)  # an action of the RG-Master still gets a thread at once
        assert ran.result(timeout=2.0)
    finally:
        release.set()
        for client in clients:
            client.close()


# -- 7. a stale cman snapshot lets a stale master act on itself -------------------------------------------------------
def test_act_refuses_on_a_cman_snapshot_older_than_the_token(lab, daemons):
    """After SIGSTOP/SIGCONT of the master's node its threads resume before `_poll_cman` refreshes: `act` checks
    the master against the snapshot taken before the pause and starts a service locally (the rest of the cluster
    may have removed this node and re-planned meanwhile)."""
    d1 = daemons(lab, "node1")
    d1.cman = snapshot({"node1": RG_UP, "node2": RG_UP})
    object.__setattr__(d1.cman, "taken", time.time() - 30.0)  # taken before a 30 s pause
    d1.running_ok = True
    reply = d1.act({"kind": "act", "master": "node1", "op": "start", "service": "service:svc1"})
    assert not reply.get("ok"), "a start was carried out on a 30 s old view of the cluster"
