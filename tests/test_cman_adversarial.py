"""Adversarial cases for the cman layer (step 4), written by a review: packets of wrong types from signed peers,
slow and lossy networks, non-transitive partitions, restarts with and without the epoch file, control clients
that stall, quorum edge cases. Each pins a behaviour a review found broken once, or one that held up.

No sockets except one real unix control socket (under tmp_path); the membership runs under the simulator of
tests/test_cman_membership.py with a simulated clock.
"""
from __future__ import annotations

import contextlib
import heapq
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from cman import control, daemon, fencing, wire
from cman import membership as mb
from cman.quorum import QuorumInputs, evaluate
from tests.test_cman_membership import TOKEN, Sim, all_agree


# -- helpers -------------------------------------------------------------------------------------------------
def engine(me: int = 2, n: int = 3, now: float = 0.0) -> mb.Membership:
    return mb.Membership(mb.Settings(nodeid=me, node_votes={i: 1 for i in range(1, n + 1)}, token=TOKEN,
                                     config_version=1, expected=n), incarnation=10, now=now)


class AdversarialSim(Sim):
    """The simulator with jittered latency (reordering beyond a heartbeat interval), duplicated datagrams, a
    per-receiver ReplayGuard as in cmand, and restarts that keep the persisted epoch as cmand does."""

    jitter: float = 0.25
    dup: float = 0.2
    base_latency: float = 0.001

    def __post_init__(self) -> None:
        self.guards: dict[int, wire.ReplayGuard] = {}
        self.epochs: dict[int, int] = {}
        super().__post_init__()

    def start(self, i: int, incarnation: int | None = None) -> None:
        inc = incarnation if incarnation is not None else int(self.now * 1000) + 1
        self.engines[i] = mb.Membership(self.settings(i), inc, self.now, epoch_floor=self.epochs.get(i, 0))
        self.guards[i] = wire.ReplayGuard()
        self.alive.add(i)
        self.changes.setdefault(i, [])
        self.evicted.setdefault(i, [])

    def _apply(self, i: int, effects: list) -> None:
        for e in effects:
            if isinstance(e, mb.PersistEpoch):
                self.epochs[i] = e.epoch
            elif isinstance(e, mb.Send):
                for d in e.dests:
                    if (i, d) in self.blocked or self.rng.random() < self.loss:
                        continue
                    copies = 2 if self.rng.random() < self.dup else 1
                    for _ in range(copies):
                        self.counter += 1
                        packet = (i, self.engines[i].incarnation, e.seq, e.kind, e.body)
                        delay = self.base_latency + self.rng.random() * self.jitter
                        heapq.heappush(self.queue, (self.now + delay, self.counter, d, packet))
        super()._apply(i, [e for e in effects if not isinstance(e, (mb.Send, mb.PersistEpoch))])

    def _deliver(self, dest: int, packet) -> None:
        sender, inc, seq, kind, body = packet
        if self.guards[dest].admit(sender, inc, seq) is not None:
            return
        self._apply(dest, self.engines[dest].receive(sender, inc, seq, kind, body, self.now))


# == Finding: a fresh node in a non-transitive partition re-proposes forever (proposal storm, view churn) =====
def test_fresh_node_in_non_transitive_partition_settles_instead_of_churning():
    """1<->2 cut both ways, both hear 3. Node 2 (re)started during that: its clique wants {2,3}, node 3 refuses
    (it hears the lower node 1), after a token node 2 installs {2} alone; its desired set is still {2,3} != {2},
    so it proposes again at once: a new generation every heartbeat interval (each one an fsync'd epoch) and a new
    singleton view every ~token, forever."""
    sim = Sim(3)
    sim.kill(2)
    sim.run(2.0)
    sim.blocked = {(1, 2), (2, 1)}
    sim.start(2)
    sim.run(20.0)
    assert sim.view(1).members == {1, 3} and sim.view(3).members == {1, 3}
    installs = len(sim.changes[2])
    epochs = mb.epoch_of(sim.view(2).generation, 1000)
    assert installs <= 2, f"node 2 installed {installs} views in 20 s (one every ~{20 / installs:.1f} s)"
    assert epochs <= 10, f"node 2 burnt {epochs} epochs (each persisted with fsync on the loop) in 20 s"


# == Finding: one view per generation rests entirely on the epoch file; an unreadable one reads as 0 ========
def test_restart_that_lost_its_epoch_reuses_a_generation_with_other_members():
    """cmand reads var/lib/cluster/cman_epoch and falls back to 0 on any OSError/ValueError (daemon.py
    _read_epoch). A node that restarts isolated with epoch 0 proposes epoch 1 again: generation 1001 = {1}
    while {2,3} hold 1001 = {1,2,3}. (The simulator's own `start` also always passes epoch_floor=0, so its
    restart tests model a lost epoch file, not cmand.)"""
    sim = Sim(3)
    sim.run(2.0)
    first = sim.view(2)
    assert first.generation == 1001 and first.members == {1, 2, 3}
    sim.kill(1)
    sim.partition({1}, {2, 3})
    sim.run(2.0)
    sim.start(1)  # epoch_floor 0: what cmand does when cman_epoch is unreadable or corrupt
    sim.run(6.0)  # Sim._apply asserts, on every install, that a generation keeps one member set


def test_a_corrupt_epoch_file_stops_cmand_instead_of_restarting_generations(tmp_path):
    path = tmp_path / daemon.EPOCH_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00garbage")
    stub = SimpleNamespace(root=tmp_path)
    with pytest.raises(daemon.DaemonError, match="unreadable or corrupt"):
        daemon.Daemon._read_epoch(stub)
    path.unlink()
    assert daemon.Daemon._read_epoch(stub) == 0  # missing: a new node


def test_repeat_accept_ignores_the_member_set():
    """membership.py _on_propose: a PROPOSE of the generation already accepted is answered ACCEPT again
    ('a repeat') without comparing the member set: defence in depth against a reused generation is missing."""
    e = engine(me=2)
    e.receive(1, 5, 1, mb.HB, {"g": 0, "m": [], "c": 0, "h": [2, 3], "a": {}, "cv": 1, "e": 3, "s": mb.JOINING}, 0.1)
    first = e.receive(1, 5, 2, mb.PROPOSE, {"g": 5001, "m": [1, 2, 3]}, 0.2)
    assert [s.kind for s in first if isinstance(s, mb.Send)] == [mb.ACCEPT]
    other = e.receive(1, 5, 3, mb.PROPOSE, {"g": 5001, "m": [1, 2]}, 0.3)
    kinds = [s.kind for s in other if isinstance(s, mb.Send)]
    assert kinds == [mb.NACK], f"a different member set under an accepted generation was answered {kinds}"


# == Finding: a malformed-but-signed body leaves half-applied peer state (daemon now catches the exception) ==
@pytest.mark.parametrize("body", [
    {"g": 9001, "m": 5},                       # members not a list
    {"g": 9001, "m": [1, 2, 3], "h": None},    # hears not a list
    {"g": 9001, "m": [1, 2, 3], "a": {"2": "x"}},  # an ack that is not a number
    {"g": 9001, "m": [1, 2, 3], "cv": [1]},
])
def test_malformed_heartbeat_is_rejected_whole(body):
    e = engine(me=2)
    good = {"g": 1001, "m": [1, 2, 3], "c": 1, "h": [2, 3], "a": {}, "cv": 1, "e": 3, "s": mb.MEMBER}
    e.receive(1, 5, 1, mb.HB, good, 0.1)
    # cmand now drops the packet on these (daemon.py receive); the state must be untouched though
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        e.receive(1, 5, 2, mb.HB, body, 0.2)
    assert e.peers[1].generation == 1001, "a rejected heartbeat already changed the peer's generation"


@pytest.mark.parametrize("kind,body", [
    (mb.PROPOSE, {"g": 2001, "m": 7}),
    (mb.COMMIT, {"g": "x", "m": [1, 2]}),
    (mb.EXPECTED, {"votes": [2]}),
    (mb.NACK, {"g": 1, "promised": {"a": 1}}),
    (mb.HB, {"g": [1]}),
])
def test_engine_never_raises_on_a_signed_body_of_wrong_types(kind, body):
    """The pure engine raises TypeError/ValueError on these; cmand catches them since 92b6a39, but the engine's
    contract (every signed packet in, effects out) should hold without relying on the caller."""
    e = engine(me=2)
    e.receive(1, 5, 1, mb.HB, {"g": 0, "m": [], "c": 0, "h": [2, 3], "a": {}, "cv": 1, "e": 3, "s": mb.JOINING}, 0.1)
    e.receive(1, 5, 2, kind, body, 0.2)


def test_daemon_receive_drops_a_malformed_signed_packet():
    """Regression for the fix in 92b6a39: Daemon.receive on a validly signed heartbeat with wrong types."""
    key = b"k" * 64
    eng = engine(me=2)
    stub = SimpleNamespace(key=key, cluster_id=7, me=SimpleNamespace(nodeid=2), nodes={1: None, 2: None, 3: None},
                           guard=wire.ReplayGuard(), engine=eng, dropped_packets=0, apply=lambda *a: None)
    data = wire.seal(key, wire.Packet(7, 1, 5, 1, mb.HB, {"g": "x", "m": 5}))
    daemon.Daemon.receive(stub, data, 0.1)
    assert stub.dropped_packets == 1


# == Finding: the coordinator's fence states in heartbeats ("x": {"f": ...}) can crash `status` ==============
@pytest.mark.parametrize("extra", [{"f": ["node3"]}, {"f": {"node3": "succeeded"}}, {"f": {"node3": [1, 2, 3]}}])
def test_malformed_fence_states_from_the_coordinator_do_not_break_status(extra):
    eng = engine(me=2)
    eng.receive(1, 5, 1, mb.HB, {"g": 1001, "m": [1, 2, 3], "c": 1, "h": [2, 3], "a": {}, "cv": 1, "e": 3,
                                 "s": mb.MEMBER, "x": extra}, 0.1)
    eng.view = mb.View(1001, frozenset({1, 2, 3}), 1)
    eng.state = mb.MEMBER
    stub = SimpleNamespace(book=fencing.FenceBook(), fenced_at={}, engine=eng, is_fencer=lambda: False,
                           nodes={1: SimpleNamespace(name="node1")})
    daemon.Daemon._fence_view(stub, 0.2)  # raises AttributeError / ValueError: `cman_tool status` kills cmand


def test_a_handler_bug_is_answered_not_raised_into_the_loop():
    """control.handle_line catches ControlError only; anything else escapes serve_control (which catches OSError
    only) and run() (no except): any bug in a handler, or in status(), stops cmand."""
    def broken(_args):
        raise KeyError("bug")

    reply = control.handle_line(b'{"command": "status"}\n', {"status": broken})
    assert b'"ok": false' in reply


# == Finding: serve_control reads the request on the loop thread (1 s per recv, unbounded in total) =========
class ControlStub:
    """The daemon's control-socket half, on a real unix socket, without the rest of the daemon."""

    serve_control = daemon.Daemon.serve_control
    _handler_failed = daemon.Daemon._handler_failed

    def __init__(self, root) -> None:
        self.control = control.listen(root)
        self.clients = control.Clients(self.control, daemon.CONTROL_DEADLINE)

    def handlers(self):
        return {"status": lambda _: {"ok": 1}}

    def loop_for(self, seconds: float) -> float:
        """Run the loop's control part for `seconds`; return the longest single pass (what it cost the loop)."""
        import select

        longest = 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            readable, _, _ = select.select(self.clients.sockets(), [], [], 0.01)
            started = time.monotonic()
            self.serve_control(readable, time.monotonic())
            longest = max(longest, time.monotonic() - started)
        return longest

    def close(self) -> None:
        self.clients.close()
        self.control.close()


def connect(root) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with control._short_path(control.socket_path(root)) as name:
        client.connect(name)
    return client


def test_a_silent_control_client_does_not_stall_the_loop(tmp_path):
    stub = ControlStub(tmp_path)
    client = connect(tmp_path)
    try:
        longest = stub.loop_for(0.5)
        assert longest < 0.05, f"cmand's loop was blocked {longest:.2f} s by an idle control client"
        assert not stub.clients.pending, "the idle client was not dropped after its deadline"
    finally:
        client.close()
        stub.close()


def test_a_trickling_control_client_does_not_hold_the_loop(tmp_path):
    stub = ControlStub(tmp_path)
    client = connect(tmp_path)
    try:
        for _ in range(4):  # a byte every 0.1 s, never a newline
            with contextlib.suppress(OSError):  # once dropped, the daemon's end is closed
                client.send(b" ")
            assert stub.loop_for(0.1) < 0.05
        assert not stub.clients.pending, "a client trickling bytes kept its connection past the deadline"
    finally:
        client.close()
        stub.close()


def test_a_control_request_is_answered_through_the_loop(tmp_path):
    stub = ControlStub(tmp_path)
    answers: list = []
    worker = threading.Thread(target=lambda: answers.append(control.request(tmp_path, "status", timeout=2.0)))
    worker.start()
    try:
        stub.loop_for(0.3)
    finally:
        worker.join(3)
        stub.close()
    assert answers == [{"ok": 1}]


# == Finding: two_node with more than two nodes: every partition of <= 2 nodes is quorate ===================
def test_two_node_flag_with_three_nodes_is_not_quorate_on_both_sides():
    """rhcs-facts §5.1: two_node needs exactly two nodes of one vote (cman refuses to start otherwise).
    cman.quorum.evaluate applies quorum 1 to any view of <= 2 members whatever the configuration, and cmand
    runs the live cluster.conf unvalidated when the node has no ricci history (daemon.running_config)."""
    votes = {1: 1, 2: 1, 3: 1}
    minority = evaluate(QuorumInputs(votes, frozenset({1}), {1: 3}, two_node=True))
    majority = evaluate(QuorumInputs(votes, frozenset({2, 3}), {2: 3, 3: 3}, two_node=True))
    assert not (minority.quorate and majority.quorate), "{1} and {2,3} are both quorate: split brain"


# == Finding: EXPECTED is applied from any configured node, member of our view or not, disallowed or not ====
def test_expected_votes_from_a_node_outside_the_view_are_ignored():
    e = engine(me=2)
    e.view = mb.View(1002, frozenset({2, 3}), 2)
    e.state = mb.MEMBER
    e.disallowed[1] = 5
    effects = e.receive(1, 5, 1, mb.EXPECTED, {"votes": 1}, 0.1)
    assert e.advertised_expected() == 3, f"node 1 (disallowed, not a member) set expected votes: {effects}"


# == Adversarial scenarios that held up (pass) ===============================================================
@pytest.mark.parametrize("seed", range(4))
def test_duplicates_and_reordering_converge_and_keep_generations_unique(seed):
    sim = AdversarialSim(4, seed=seed, loss=0.1)
    sim.jitter = 0.12  # reorders heartbeats across more than one interval; RTT stays under the consensus timeout
    sim.run(4.0)
    assert all_agree(sim, {1, 2, 3, 4})
    sim.kill(4)
    sim.run(5.0)
    sim.loss, sim.jitter, sim.dup = 0.0, 0.0, 0.0
    sim.run(3.0)
    assert all_agree(sim, {1, 2, 3})


def test_partition_flapping_faster_than_the_token_changes_nothing():
    sim = Sim(3)
    sim.run(2.0)
    generation = sim.view(1).generation
    for _ in range(20):  # 0.3 s cut, 0.2 s healed: heard within every token
        sim.partition({1}, {2, 3})
        sim.run(0.3)
        sim.heal()
        sim.run(0.2)
    assert all_agree(sim, {1, 2, 3}) and sim.view(1).generation == generation


# == Finding: agreement never completes once the round trip exceeds the consensus timeout ====================
@pytest.mark.parametrize("latency", [0.15, 0.25])
def test_agreement_completes_with_a_round_trip_above_the_consensus_timeout(latency):
    """Token 1 s (the lab's): consensus timeout max(token/5, 0.2) = 0.2 s. With a one-way latency of 150 ms
    every proposal is abandoned (a new generation) before its ACCEPTs arrive, and the late ACCEPTs no longer
    match; after a token the coordinator goes on 'without the silent ones': nobody ever forms {1,2,3}."""
    sim = AdversarialSim(3, seed=0)
    sim.jitter, sim.dup = 0.0, 0.0
    sim.base_latency = latency
    sim.run(10.0)
    assert all_agree(sim, {1, 2, 3}), [sim.view(i) for i in (1, 2, 3)]


@pytest.mark.parametrize("seed", range(6))
def test_jitter_below_the_token_never_evicts_a_healthy_node(seed):
    """Random one-way delays of 1..250 ms (no loss, all nodes alive): healthy nodes are left out of views, learn
    it from a newer generation, and exit (Evicted, status 3) to be fenced."""
    sim = AdversarialSim(4, seed=seed)
    sim.jitter, sim.dup = 0.25, 0.0
    sim.run(4.0)
    sim.kill(4)  # one real failure: the view change runs under the jitter
    sim.run(8.0)
    assert not any(sim.evicted.values()), sim.evicted
    assert all_agree(sim, {1, 2, 3}), [sim.view(i) for i in (1, 2, 3)]


def test_an_older_heartbeat_arriving_late_does_not_roll_back_a_peer():
    """ReplayGuard admits out-of-order seqs within 64; _take_heartbeat then overwrites the peer with the older
    heartbeat (generation, members, hears, acks): superseded() forgets the newer view it just saw."""
    e = engine(me=2)
    hb = {"m": [1, 2, 3], "c": 1, "h": [2, 3], "a": {}, "cv": 1, "e": 3, "s": mb.MEMBER}
    e.receive(1, 5, 11, mb.HB, {**hb, "g": 2001}, 0.1)
    e.receive(1, 5, 10, mb.HB, {**hb, "g": 1001}, 0.1)
    assert e.peers[1].generation == 2001


def test_partition_flapping_near_the_token_settles_after_heal():
    sim = AdversarialSim(3, seed=3)
    sim.jitter, sim.dup = 0.0, 0.0
    sim.run(2.0)
    for _ in range(6):
        sim.partition({1}, {2, 3})
        sim.run(1.1)
        sim.heal()
        sim.run(0.6)
    sim.run(5.0)
    # the majority settles; node 1, dropped and heard again with its old incarnation, is disallowed (to be fenced)
    assert all_agree(sim, {2, 3}), [sim.view(i) for i in (1, 2, 3)]
    assert 1 in sim.engines[2].disallowed and 1 in sim.engines[3].disallowed


def test_node_restarting_repeatedly_then_joins_and_others_stay_confirmed():
    sim = AdversarialSim(3, seed=1)
    sim.jitter, sim.dup = 0.0, 0.0
    sim.run(2.0)
    unconfirmed = []

    def check(s: Sim) -> None:
        if not s.engines[1].confirmed(s.now, 2):
            unconfirmed.append(s.now)

    for _ in range(10):  # restart node 3 every 0.4 s, faster than the token
        sim.kill(3)
        sim.run(0.05)
        sim.start(3)
        sim.run(0.35, check)
    sim.run(4.0)
    assert all_agree(sim, {1, 2, 3})
    assert len(unconfirmed) < 100, f"node 1 unconfirmed for {len(unconfirmed) * 0.01:.1f} s of 3.5 s"


def test_coordinator_restarting_mid_proposal_with_its_epoch_kept():
    sim = AdversarialSim(3, seed=2)
    sim.jitter, sim.dup = 0.0, 0.0
    sim.run(2.0)
    sim.kill(3)  # node 1 will propose {1,2}
    for _ in range(200):
        sim.run(0.01)
        if sim.engines[1].proposal is not None:
            break
    assert sim.engines[1].proposal is not None
    sim.kill(1)  # crash with the proposal in flight (node 2 may have promised it)
    sim.run(0.1)
    sim.start(1)
    sim.run(5.0)
    assert all_agree(sim, {1, 2})
