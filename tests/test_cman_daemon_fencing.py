"""cmand's fencing across nodes: fence books shared in heartbeats, the fencer changing hands, acks on any member.

Real `Daemon` objects are built on the roots of a created (not started) lab and driven through their own
view_changed / collect_fence_results / control handlers; a heartbeat is carried by copying what one daemon puts in
its heartbeats (`_heartbeat_extra`) into the other's record of that peer, as the engine does on receipt.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from cman import control, fencing, membership
from cman.daemon import Daemon
from ricci_agent.lab import Lab, free_block, lab_cluster_conf


def make_lab(tmp_path: Path, count: int, *, clean_start: bool = False) -> Lab:
    lab = Lab(tmp_path / "lab")
    names = [f"node{i}" for i in range(1, count + 1)]
    conf = lab_cluster_conf("fencebook", names, lab_dir=lab.directory)
    if clean_start:
        conf = conf.replace(b'<fence_daemon post_join_delay="3"/>',
                            b'<fence_daemon post_join_delay="3" clean_start="1"/>')
        assert b"clean_start" in conf
    lab.create(names, "fencebook", free_block(count), 11111, config=conf)
    return lab


@pytest.fixture
def daemons(monkeypatch):
    made: list[Daemon] = []

    def build(lab: Lab, name: str) -> Daemon:
        monkeypatch.setenv("CMAN_NODENAME", name)
        d = Daemon(lab.node(name).root)
        made.append(d)
        return d

    yield build
    for d in made:
        d.shutdown()


def install(d: Daemon, generation: int, members: set[int], *, lost=(), joined=(), left=()) -> None:
    """Install a view on `d` as its engine would (dropped incarnations included), then let the daemon react."""
    engine = d.engine
    for n in lost:
        engine.dropped[n] = engine.peers[n].incarnation
    previous = engine.view
    new = membership.View(generation, frozenset(members), min(members))
    engine.view, engine.state = new, membership.MEMBER
    change = membership.ViewChange(previous, new, frozenset(lost), frozenset(joined), frozenset(left), frozenset())
    d.view_changed(change, time.monotonic())
    d.update_quorum(time.monotonic())


def heartbeat(src: Daemon, dst: Daemon) -> None:
    """`src`'s heartbeat reaches `dst`: its extra (fence book, domain flag) as dst's engine records it."""
    now = time.monotonic()
    dst.engine.peers[src.me.nodeid].extra = src._heartbeat_extra(now)
    dst.merge_peer_books(now)


def finish(d: Daemon, node: str, status: str) -> None:
    """The fence worker of `d` reports `status` for `node` (as _fence_worker does)."""
    d.book = fencing.started(d.book, node, time.monotonic())
    d.fencing_now.add(node)
    d.fence_results.put((node, fencing.FenceReport(status, f"fence {node} {status}")))
    d.collect_fence_results(time.monotonic())


def test_a_new_fencer_does_not_fence_again_what_the_old_fencer_fenced(tmp_path, daemons):
    lab = make_lab(tmp_path, 5)
    d1, d2 = daemons(lab, "node1"), daemons(lab, "node2")
    for d in (d1, d2):
        install(d, 1001, {1, 2, 3, 4, 5}, joined={1, 2, 3, 4, 5})
        install(d, 2001, {1, 2, 3, 4}, lost={5})
    assert d1.is_fencer() and not d2.is_fencer()
    finish(d1, "node5", "success")
    heartbeat(d1, d2)
    assert d2.book["node5"].state == "succeeded"
    entries = d2.history.entries(node="node5")  # every member's history shows the fence, not only the fencer's
    assert [(e["actor"], e["status"]) for e in entries] == [("node1", "success")]
    install(d2, 3002, {2, 3, 4}, lost={1}, left={1})  # node1 leaves cleanly: node2 fences from now on
    assert d2.is_fencer() and d2.quorum_state.quorate
    assert "node5" not in fencing.due(d2.book, time.monotonic() + 1, True, True)


def test_an_open_victim_survives_the_fencer_changing_hands(tmp_path, daemons):
    lab = make_lab(tmp_path, 5, clean_start=True)
    d2 = daemons(lab, "node2")
    install(d2, 1002, {2, 3, 4, 5}, joined={2, 3, 4, 5})
    install(d2, 2002, {2, 3, 4}, lost={5})
    finish(d2, "node5", "failed")  # the agent failed: node5 may still be up
    d1 = daemons(lab, "node1")  # node1 boots (clean_start: no startup fencing) and is the lowest nodeid
    install(d1, 3001, {1, 2, 3, 4}, joined={1, 2, 3, 4})
    install(d2, 3001, {1, 2, 3, 4}, joined={1})
    heartbeat(d2, d1)
    assert d1.is_fencer() and not d2.is_fencer()
    assert "node5" in fencing.due(d1.book, time.monotonic() + 1, True, True)
    assert d1.status(time.monotonic())["fencing"]["node5"]["state"] == "pending"


def test_fence_ack_manual_on_any_member_reaches_the_fencer(tmp_path, daemons):
    lab = make_lab(tmp_path, 3)
    d1, d2 = daemons(lab, "node1"), daemons(lab, "node2")
    for d in (d1, d2):
        install(d, 1001, {1, 2, 3}, joined={1, 2, 3})
        install(d, 2001, {1, 2}, lost={3})
    finish(d1, "node3", "manual")
    heartbeat(d1, d2)
    assert d2.book["node3"].state == "manual_wait"
    d2.cmd_fence_ack({"node": "node3"})  # the operator runs fence_ack_manual node3 on node2
    heartbeat(d2, d1)
    assert d1.book["node3"].state == "succeeded"


def test_a_success_from_an_earlier_life_does_not_close_a_new_failure(tmp_path, daemons):
    lab = make_lab(tmp_path, 3)
    d1, d2 = daemons(lab, "node1"), daemons(lab, "node2")
    for d in (d1, d2):
        install(d, 1001, {1, 2, 3}, joined={1, 2, 3})
        d.engine.peers[3].incarnation = 111
        install(d, 2001, {1, 2}, lost={3})
    finish(d1, "node3", "success")
    old_extra = d1._heartbeat_extra(time.monotonic())  # a heartbeat about node3's first life
    heartbeat(d1, d2)
    for d in (d1, d2):  # node3 comes back (a new life), then fails again
        d.engine.peers[3].incarnation = 222
        install(d, 3001, {1, 2, 3}, joined={3})
        install(d, 4001, {1, 2}, lost={3})
    assert d2.book["node3"].state == "pending"
    d2.engine.peers[1].extra = old_extra  # a late heartbeat still reporting the first life's success
    d2.merge_peer_books(time.monotonic())
    assert d2.book["node3"].state == "pending", "an old success closed a new failure: node3 would go unfenced"


def test_joining_an_existing_domain_does_no_startup_fencing(tmp_path, daemons):
    lab = make_lab(tmp_path, 3)
    d2 = daemons(lab, "node2")
    install(d2, 1002, {2, 3}, joined={2, 3})  # node1 is down: node2 is in a quorate view (2 of 3)
    d1 = daemons(lab, "node1")
    d1.engine.peers[2].extra = d2._heartbeat_extra(time.monotonic())
    install(d1, 2001, {1, 2}, joined={1, 2})  # node1 boots into a view with node2, not node3
    assert "node3" not in d1.book, "a node joining an existing fence domain fenced at startup"


def test_a_late_failure_does_not_undo_a_success_reported_meanwhile(tmp_path, daemons):
    lab = make_lab(tmp_path, 3)
    d1 = daemons(lab, "node1")
    install(d1, 1001, {1, 2, 3}, joined={1, 2, 3})
    install(d1, 2001, {1, 2}, lost={3})
    now = time.monotonic()
    d1.book = fencing.started(d1.book, "node3", now)
    d1.fencing_now.add("node3")
    d1.cmd_fence_done({"node": "node3", "ok": True, "message": "fenced by fence_node"})
    d1.fence_results.put(("node3", fencing.FenceReport("failed", "error from agent")))
    d1.collect_fence_results(now + 1)
    assert d1.book["node3"].state == "succeeded"


def test_fence_requests_for_unknown_nodes_are_refused(tmp_path, daemons):
    lab = make_lab(tmp_path, 3)
    d1 = daemons(lab, "node1")
    for command in (d1.cmd_fence_done, d1.cmd_fence_ack):
        with pytest.raises(control.ControlError) as refused:
            command({"node": "no-such-node", "ok": True})
        assert refused.value.code == "unknown_node"
    assert "no-such-node" not in d1.book


def test_a_fence_running_on_a_fencer_that_dies_is_taken_over(tmp_path, daemons):
    lab = make_lab(tmp_path, 4)
    d1, d2 = daemons(lab, "node1"), daemons(lab, "node2")
    for d in (d1, d2):
        install(d, 1001, {1, 2, 3, 4}, joined={1, 2, 3, 4})
        install(d, 2001, {1, 2, 3}, lost={4})
    d1.book = fencing.started(d1.book, "node4", time.monotonic())  # node1 runs the agents...
    heartbeat(d1, d2)
    assert d2.book["node4"].state == "running"
    install(d2, 3002, {2, 3}, lost={1})  # ...and dies before it reports
    d2.fence_due(time.monotonic())
    assert d2.book["node4"].state in ("pending", "running")
    assert "node4" in fencing.due(d2.book, time.monotonic() + fencing.retry_delay(1) + 1, True, True) \
        or "node4" in d2.fencing_now
