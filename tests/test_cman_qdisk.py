"""The quorum disk: the pure election core under a simulated clock, the on-disk format, heuristics with real
programs, and two real QuorumDiskService instances sharing one file."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cluster_conf.document import ClusterConf
from cluster_conf.model import view
from cman.qdisk import (
    BLOCK_SIZE,
    HeuristicConfig,
    HeuristicRunner,
    HeuristicState,
    Local,
    NodeBlock,
    NodeState,
    QdiskConfig,
    QdiskError,
    QuorumDiskService,
    claims_votes,
    cycle,
    decode_block,
    decode_disk,
    encode_block,
    init_disk,
    record,
    run_program,
)

# ------------------------------------------------------------------------------------- simulated cluster


class Sim:
    """N nodes sharing a dict of blocks, cycling in node order once per interval of a simulated clock."""

    def __init__(self, ids: list[int], *, master_wins: bool = False, tko: int = 3, min_score: int = 1) -> None:
        self.config = QdiskConfig("sim", "c", max(ids), interval=1.0, tko=tko, votes=1, min_score=min_score,
                                  master_wins=master_wins, heuristics=(HeuristicConfig("true", 1),))
        self.now = 0.0
        self.disk: dict[int, NodeBlock | None] = dict.fromkeys(range(1, max(ids) + 1))
        self.nodes = {n: Local(n, incarnation=100 + n) for n in ids}
        self.scores = dict.fromkeys(ids, 1)
        self.running = set(ids)
        self.logs: dict[int, list[str]] = {n: [] for n in ids}

    def step(self, rounds: int = 1, *, reverse: bool = False) -> None:
        for _ in range(rounds):
            self.now += self.config.interval
            for n in sorted(self.running, reverse=reverse):
                local, block, events = cycle(self.nodes[n], dict(self.disk), self.now, self.scores[n], self.config)
                self.nodes[n] = local
                self.disk[n] = block
                self.logs[n] += events

    def masters(self) -> list[int]:
        return [n for n in sorted(self.running) if self.nodes[n].state == NodeState.MASTER]

    def claimers(self) -> list[int]:
        return [n for n in sorted(self.running)
                if claims_votes(self.nodes[n], self.scores[n], self.now, self.config)]


def test_lowest_live_node_is_elected_and_all_claim_without_master_wins() -> None:
    sim = Sim([1, 2, 3])
    sim.step(1)
    assert sim.masters() == []  # nobody is master before a full bidding round
    sim.step(5)
    assert sim.masters() == [1]
    assert sim.claimers() == [1, 2, 3]
    assert "Assuming master role" in sim.logs[1]
    assert "Node 1 is the master" in sim.logs[2]
    assert all(sim.disk[n].vote == 1 for n in (1, 2, 3))  # type: ignore[union-attr]


@pytest.mark.parametrize("reverse", [False, True])
def test_nodes_starting_together_never_see_two_masters(reverse: bool) -> None:
    sim = Sim([1, 2, 3], master_wins=True)
    for _ in range(12):
        sim.step(1, reverse=reverse)
        assert len(sim.masters()) <= 1 and len(sim.claimers()) <= 1
    assert sim.masters() == [1]


def test_master_wins_only_the_master_claims() -> None:
    sim = Sim([1, 2, 3], master_wins=True)
    sim.step(6)
    assert sim.masters() == [1]
    assert sim.claimers() == [1]


def test_two_masters_the_higher_id_steps_down() -> None:
    sim = Sim([1, 2])
    sim.step(6)
    # force a split brain on the disk: node 2 believes it is master too
    sim.nodes[2] = replace(sim.nodes[2], state=NodeState.MASTER)
    sim.disk[2] = replace(sim.disk[2], state=NodeState.MASTER, seq=sim.disk[2].seq + 1)  # type: ignore[arg-type]
    sim.step(1)
    assert sim.masters() == [1]
    assert "Node 1 is also master; stepping down" in sim.logs[2]


def test_a_live_master_stays_when_a_lower_id_node_joins() -> None:
    sim = Sim([1, 2, 3])
    sim.running = {2, 3}
    sim.step(6)
    assert sim.masters() == [2]
    sim.running.add(1)
    sim.step(10)
    assert sim.masters() == [2]
    assert sim.nodes[1].state == NodeState.RUNNING and sim.nodes[1].master == 2
    assert sim.claimers() == [1, 2, 3]


def test_dead_master_is_replaced_by_the_next_lowest_only_after_tko_and_evicted() -> None:
    sim = Sim([1, 2, 3], tko=3)
    sim.step(6)
    died_at = sim.now
    sim.running.discard(1)
    while sim.masters() != [2]:
        assert sim.now - died_at < 20, "no new master"
        assert sim.masters() == [], "a second master appeared"
        sim.step(1)
    assert sim.now - died_at > sim.config.timeout  # never before tko × interval
    assert (1, 101) in sim.disk[2].evicted  # type: ignore[union-attr]
    assert "Node 1 evicted" in sim.logs[2]
    assert sim.claimers() == [2, 3]

    # node 1 was only paused: it resumes with its old incarnation, finds its eviction and never counts again
    sim.running.add(1)
    assert not claims_votes(sim.nodes[1], 1, sim.now, sim.config)  # lease expired while it was stopped
    sim.step(3)
    assert sim.nodes[1].state == NodeState.EVICTED
    assert sim.masters() == [2] and sim.claimers() == [2, 3]
    assert any(line.startswith("Evicted by node 2") for line in sim.logs[1])

    # a restart (new incarnation) clears the eviction
    sim.nodes[1] = Local(1, incarnation=999)
    sim.step(4)
    assert sim.nodes[1].state == NodeState.RUNNING
    assert sim.disk[2].evicted == ()  # type: ignore[union-attr]
    assert sim.claimers() == [1, 2, 3]
    assert sim.masters() == [2]


def test_score_drop_stops_claiming_at_once_and_the_master_steps_down() -> None:
    sim = Sim([1, 2])
    sim.step(6)
    assert sim.masters() == [1]
    sim.scores[1] = 0
    assert sim.claimers() == [2]  # at once, before any disk cycle
    sim.step(1)
    assert "Score insufficient for master operation (0/1; required=1); downgrading" in sim.logs[1]
    assert sim.nodes[1].state == NodeState.RUNNING
    sim.step(4)
    assert sim.masters() == [2]
    assert sim.claimers() == [2]  # node 1 is listed alive by the master but its own score is too low
    sim.scores[1] = 1
    sim.step(2)
    assert sim.masters() == [2] and sim.claimers() == [1, 2]
    assert any(line.startswith("Score sufficient for master operation") for line in sim.logs[1])


def test_no_node_with_enough_score_means_no_master_and_no_votes() -> None:
    sim = Sim([1, 2])
    sim.scores = {1: 0, 2: 0}
    sim.step(8)
    assert sim.masters() == [] and sim.claimers() == []


def test_claims_expire_with_the_lease() -> None:
    sim = Sim([1])
    sim.step(4)
    assert sim.claimers() == [1]
    sim.now += sim.config.lease + 0.01
    assert sim.claimers() == []


def test_node_first_seen_is_not_alive_until_its_sequence_changes() -> None:
    sim = Sim([1, 2])
    sim.disk[2] = NodeBlock(2, 5, 40, NodeState.MASTER, score=1, min_score=1)  # a stale block from a crash
    sim.running = {1}
    sim.step(1)
    assert 2 not in sim.nodes[1].alive
    sim.step(6)
    assert sim.masters() == [1]  # the stale "master" never counted


def test_torn_block_reads_as_no_node() -> None:
    sim = Sim([1, 2])
    sim.step(6)
    raw = bytearray(encode_block(sim.disk[2]))  # type: ignore[arg-type]
    raw[20] ^= 0xFF
    assert decode_block(bytes(raw), 2) is None
    assert decode_block(b"\xff" * BLOCK_SIZE, 2) is None
    assert decode_block(b"short", 2) is None


# ------------------------------------------------------------------------------------- format


def test_block_round_trip() -> None:
    block = NodeBlock(7, 1763712345123, 99, NodeState.BIDDING, score=3, min_score=2, vote=7,
                      alive=frozenset({1, 7, 255}), evicted=((3, 11), (4, 12)), written=1.5)
    data = encode_block(block)
    assert len(data) == BLOCK_SIZE
    assert decode_block(data, 7) == block
    assert decode_block(data, 6) is None  # a block in the wrong slot is not trusted


def test_init_disk_creates_reopens_and_refuses_another_cluster(tmp_path: Path) -> None:
    path = tmp_path / "qdisk"
    header = init_disk(path, "lab", 3)
    assert path.stat().st_size == BLOCK_SIZE * 4
    assert init_disk(path, "lab", 3).created == header.created  # not recreated
    got, blocks = decode_disk(path.read_bytes())
    assert got is not None and got.cluster_name == "lab" and blocks == {1: None, 2: None, 3: None}
    with pytest.raises(QdiskError, match="belongs to cluster 'lab', not 'other'"):
        init_disk(path, "other", 3)
    junk = tmp_path / "junk"
    junk.write_bytes(b"hello" * 300)
    with pytest.raises(QdiskError, match="not a quorum disk"):
        init_disk(junk, "lab", 3)
    assert junk.read_bytes() == b"hello" * 300  # never overwritten
    raw = bytearray(path.read_bytes())
    raw[2 * BLOCK_SIZE:3 * BLOCK_SIZE] = encode_block(NodeBlock(2, 1, 1, NodeState.RUNNING))
    raw[2 * BLOCK_SIZE + 30] ^= 0x55  # torn write
    raw[1 * BLOCK_SIZE:2 * BLOCK_SIZE] = encode_block(NodeBlock(1, 1, 1, NodeState.RUNNING))
    _, blocks = decode_disk(bytes(raw))
    assert blocks[2] is None and blocks[1] is not None and blocks[1].seq == 1
    assert decode_disk(bytes(raw[:BLOCK_SIZE + 100]))[1] == {1: None, 2: None, 3: None}  # short read
    empty = tmp_path / "empty"
    empty.touch()
    assert init_disk(empty, "lab", 2).max_nodes == 2


def conf(tmp_path: Path, quorumd_attrs: str, heuristics: str = "", nodes: int = 2) -> ClusterConf:
    body = "".join(f'<clusternode name="n{i}" nodeid="{i}"/>' for i in range(1, nodes + 1))
    return ClusterConf.from_string(
        f'<cluster name="lab" config_version="1"><clusternodes>{body}</clusternodes>'
        f"<quorumd {quorumd_attrs}>{heuristics}</quorumd></cluster>"
    )


def test_config_defaults_and_label_refused(tmp_path: Path) -> None:
    cfg = QdiskConfig.from_view(view(conf(tmp_path, f'device="{tmp_path}/q"', '<heuristic program="true"/>', 3)))
    assert (cfg.interval, cfg.tko, cfg.votes, cfg.min_score, cfg.master_wins) == (1.0, 10, 2, 1, False)
    assert cfg.heuristics == (HeuristicConfig("true", 1, 2.0, 1),)
    assert cfg.max_nodes == 3
    bare = QdiskConfig.from_view(view(conf(tmp_path, f'device="{tmp_path}/q" master_wins="1" votes="1"')))
    assert (bare.min_score, bare.max_score, bare.master_wins, bare.votes) == (0, 0, True, 1)
    with pytest.raises(QdiskError, match=r"label= is not supported.*use device="):
        QdiskConfig.from_view(view(conf(tmp_path, 'label="qdisk1"')))


# ------------------------------------------------------------------------------------- heuristics


def test_heuristic_results_follow_tko() -> None:
    s = HeuristicState()
    s = record(s, True, 2)
    assert s.ok
    s = record(s, False, 2)
    assert s.ok and s.failures == 1  # one failure of two allowed
    s = record(s, False, 2)
    assert not s.ok and s.failures == 2
    assert record(s, True, 2) == HeuristicState(True, 0, 4)


def test_real_programs_pass_and_fail() -> None:
    assert run_program("true", 2.0)
    assert not run_program("false", 2.0)
    assert not run_program("exit 3", 2.0)
    assert run_program("test 1 -eq 1 && echo via the shell", 2.0)


def test_hanging_program_is_killed_at_its_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    assert not run_program(f"echo $$ > {pidfile}; exec sleep 30", 0.3)
    assert time.monotonic() - started < 5
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_heuristic_runner_flips_with_a_file(tmp_path: Path) -> None:
    flag = tmp_path / "fail"
    logs: list[str] = []
    runner = HeuristicRunner(HeuristicConfig(f"test ! -e {flag}", 2, 0.5, 1), log=logs.append)
    assert runner.run_once().ok
    flag.touch()
    assert not runner.run_once().ok
    assert runner.snapshot() == {"program": f"test ! -e {flag}", "score": 2, "ok": False, "failures": 1}
    assert logs == [f"Heuristic: 'test ! -e {flag}' DOWN (1/1)"]
    flag.unlink()
    assert runner.run_once().ok


# ------------------------------------------------------------------------------------- real services


def wait_for(predicate: Callable[[], bool], timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)


@pytest.fixture
def services() -> Iterator[list[QuorumDiskService]]:
    started: list[QuorumDiskService] = []
    before = threading.active_count()
    yield started
    for s in started:
        s.stop()
    assert wait_for(lambda: threading.active_count() <= before, 3.0), "qdisk threads left behind"


def start(services: list[QuorumDiskService], cc: ClusterConf, nodeid: int, log: Log) -> QuorumDiskService:
    svc = QuorumDiskService(view(cc), nodeid, incarnation=1000 + nodeid, log=log)
    services.append(svc)
    svc.start()
    return svc


def test_two_services_elect_one_master_and_fail_over_on_heuristic(
    tmp_path: Path, services: list[QuorumDiskService]
) -> None:
    disk = tmp_path / "qdisk"
    attrs = f'device="{disk}" interval="0.2" tko="3" votes="1" master_wins="1"'

    def heuristic(n: int) -> str:  # each node's own flag file, so one node's heuristic can fail alone
        return f'<heuristic program="test ! -e {tmp_path}/fail{n}" score="1" interval="1" tko="1"/>'

    logs = {1: Log(), 2: Log()}
    s1 = start(services, conf(tmp_path, attrs, heuristic(1)), 1, logs[1])
    s2 = start(services, conf(tmp_path, attrs, heuristic(2)), 2, logs[2])
    assert wait_for(lambda: s1.status()["is_master"] and s2.status()["master"] == 1)
    assert not s2.status()["is_master"]
    assert (s1.votes_now(), s2.votes_now()) == (1, 0)  # master_wins: exactly one claims
    st = s1.status()
    assert st["heuristics"] == [{"program": f"test ! -e {tmp_path}/fail1", "score": 1, "ok": True, "failures": 0}]
    assert st["nodes"] == {1: "master", 2: "running"} and st["alive"] and st["score"] == 1

    (tmp_path / "fail1").touch()
    assert wait_for(lambda: s2.status()["is_master"])
    assert wait_for(lambda: (s1.votes_now(), s2.votes_now()) == (0, 1))
    assert not s1.status()["is_master"] and s1.status()["score"] == 0
    assert any(line.startswith("Score insufficient for master operation (0/1; required=1)") for line in logs[1].lines)
    assert "Assuming master role" in logs[2].lines


def test_master_crash_the_other_takes_over_after_tko(tmp_path: Path, services: list[QuorumDiskService]) -> None:
    disk = tmp_path / "qdisk"
    cc = conf(tmp_path, f'device="{disk}" interval="0.2" tko="3" votes="1"')  # no heuristics: score 0 ≥ 0
    logs = {1: Log(), 2: Log()}
    s1 = start(services, cc, 1, logs[1])
    s2 = start(services, cc, 2, logs[2])
    assert wait_for(lambda: s1.status()["is_master"] and s2.status()["master"] == 1 and s2.votes_now() == 1)
    assert s1.votes_now() == 1  # master_wins=0: master and every node it lists alive claim
    s1.stop(clean=False)
    assert s1.votes_now() == 0  # a stopped service claims nothing
    assert wait_for(lambda: s2.status()["is_master"])
    took_over = time.time()
    _, blocks = decode_disk(disk.read_bytes())
    assert blocks[1] is not None and blocks[1].state == NodeState.MASTER  # crashed: its block still says master
    assert took_over - blocks[1].written > s2.config.timeout  # not before tko × interval after its last write
    assert wait_for(lambda: "Node 1 evicted" in logs[2].lines)
    _, blocks = decode_disk(disk.read_bytes())
    assert (1, 1001) in blocks[2].evicted  # type: ignore[union-attr]
    assert s2.votes_now() == 1


def test_clean_stop_hands_over_without_waiting_for_tko(tmp_path: Path, services: list[QuorumDiskService]) -> None:
    disk = tmp_path / "qdisk"
    cc = conf(tmp_path, f'device="{disk}" interval="0.2" tko="50" votes="1"')  # tko 10 s: far above the wait
    logs = {1: Log(), 2: Log()}
    s1 = start(services, cc, 1, logs[1])
    s2 = start(services, cc, 2, logs[2])
    assert wait_for(lambda: s1.status()["is_master"] and s2.status()["master"] == 1)
    s1.stop()
    assert wait_for(lambda: s2.status()["is_master"], timeout=5.0)
    assert "Node 1 shutdown" in logs[2].lines
    _, blocks = decode_disk(disk.read_bytes())
    assert blocks[1] is not None and blocks[1].state == NodeState.NONE
    assert blocks[2] is not None and blocks[2].evicted == ()


def test_service_refuses_a_disk_of_another_cluster(tmp_path: Path) -> None:
    disk = tmp_path / "qdisk"
    init_disk(disk, "someone-else", 2)
    svc = QuorumDiskService(view(conf(tmp_path, f'device="{disk}"')), 1, 1)
    with pytest.raises(QdiskError, match="belongs to cluster 'someone-else'"):
        svc.start()
    svc.stop()


def test_stop_is_prompt_even_with_a_hanging_heuristic(tmp_path: Path, services: list[QuorumDiskService]) -> None:
    pidfile = tmp_path / "pid"
    cc = conf(tmp_path, f'device="{tmp_path}/qdisk" interval="0.2"',
              f'<heuristic program="echo $$ > {pidfile}; exec sleep 30" interval="20"/>')
    svc = start(services, cc, 1, Log())
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    began = time.monotonic()
    svc.stop()
    assert time.monotonic() - began < 3.0
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)
    assert svc.status()["heuristics"][0]["ok"] is False and svc.votes_now() == 0
