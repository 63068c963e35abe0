"""The cman layer on real lab clusters: ricci agents, `cmand` daemons exchanging authenticated UDP heartbeats on
loopback, fence_lab really killing a node's processes, nftables partitions (root only).

Each scenario builds its own lab on a free 127.x block with the lab's timings (token 1000 ms), so scenarios
never meet. Every wait is bounded; teardown stops every process of the lab and removes its partition.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster_conf import edit
from cluster_conf.document import ClusterConf
from cman import control, wire
from cman.fence_agents import FenceHistory
from tests.ricci_fixtures import tear_down, wait_until

pytestmark = pytest.mark.slow
paramiko = pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

from ricci_agent.lab import Lab, free_block, lab_cluster_conf, node_names, node_processes  # noqa: E402

NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None,
    reason="partitions need root and nftables (nft); CI runs as root with nftables installed",
)



def wait_for(what: str, predicate: Callable[[], object], timeout: float = 20.0, step: float = 0.1):
    return wait_until(what, predicate, timeout, step)


def running(pids: list[int]) -> list[int]:
    """The pids still alive (a zombie waiting for its parent is gone)."""
    left = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] not in "ZX":
            left.append(pid)
    return left


def status(lab: Lab, name: str) -> dict | None:
    try:
        return control.request(lab.node(name).root, "status", timeout=1.0)
    except control.ControlError:
        return None


def members(lab: Lab, name: str) -> list[str]:
    s = status(lab, name)
    if not s or s["membership_state"] != "Cluster-Member":
        return []
    return [n["name"] for n in s["nodes"] if n["state"] == "M"]


def fence_successes(lab: Lab, fencer: str, victim: str) -> list[dict]:
    return [e for e in FenceHistory(lab.node(fencer).root).entries(node=victim) if e.get("status") == "success"]


def cman_tool(lab: Lab, name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["cman_tool", *args], env=lab.node(name).environ(), capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.fixture
def make_lab(tmp_path: Path):
    labs: list[Lab] = []

    def make(count: int = 3, change: Callable[[ClusterConf, Lab], None] | None = None) -> Lab:
        lab = Lab(tmp_path / f"lab{len(labs)}")
        labs.append(lab)
        names = node_names(count)
        conf = ClusterConf.from_bytes(lab_cluster_conf("labcluster", names, 11111, lab.directory))
        if change is not None:
            change(conf, lab)
            conf.mark_edited()  # direct element changes: make to_bytes() serialize the tree
        lab.create(names, "labcluster", free_block(count), 11111, config=conf.to_bytes())
        lab.up()
        for name in names:
            wait_for(f"{name} to see all {count} nodes", lambda n=name: len(members(lab, n)) == count)
        return lab

    yield make
    for lab in labs:
        tear_down(lab)


def set_device(conf: ClusterConf, node: str, **attrs: str) -> None:
    device = conf.root.find(f"clusternodes/clusternode[@name='{node}']/fence/method/device")
    for key, value in attrs.items():
        device.set(key, value)


# -- the scenarios ---------------------------------------------------------------------------------------------
def test_three_nodes_form_a_quorate_cluster_and_a_killed_node_is_fenced(make_lab):
    lab = make_lab(3)
    views = {name: status(lab, name) for name in ("node1", "node2", "node3")}
    generations = {s["generation"] for s in views.values()}
    assert len(generations) == 1 and all(s["quorum"]["quorate"] for s in views.values())
    assert all(s["view_confirmed"] for s in views.values())
    out = cman_tool(lab, "node2", "status")
    assert out.returncode == 0 and "Cluster Member: Yes" in out.stdout
    assert f"Cluster Generation: {generations.pop()}" in out.stdout and "Activity blocked" not in out.stdout

    old = node_processes(lab.node("node3"))
    lab.kill("node3")
    wait_for("node1 to fence node3", lambda: fence_successes(lab, "node1", "node3"), timeout=20)
    s = status(lab, "node1")
    assert s["quorum"]["quorate"]
    assert s["fencing"]["node3"]["state"] == "succeeded"
    assert not running(old)
    # fence_lab rebooted it (the device's default action): it comes back with a new incarnation and rejoins.
    wait_for("node3 back in the view", lambda: "node3" in members(lab, "node1"), timeout=30)
    nodes = cman_tool(lab, "node1", "nodes")
    assert nodes.returncode == 0 and "node3" in nodes.stdout


def test_paused_node_is_fenced_and_does_not_act_on_its_old_view(make_lab):
    def slow_fence(conf: ClusterConf, lab: Lab) -> None:
        edit.set_section_attrs(conf, "fence_daemon", {"post_fail_delay": "3"})

    lab = make_lab(3, slow_fence)
    old_generation = status(lab, "node3")["generation"]
    old = node_processes(lab.node("node3"))
    lab.pause("node3")
    wait_for("node1 to drop node3", lambda: members(lab, "node1") == ["node1", "node2"], timeout=10)
    lab.resume("node3")  # before the fence lands (post_fail_delay 3 s)
    acted = []
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        s = status(lab, "node3")
        if s is not None and s["generation"] == old_generation and s["view_confirmed"]:
            acted.append(s)
        time.sleep(0.05)
    assert not acted, "node3 trusted its old view after it was resumed"
    log = (lab.node("node3").root / "var/log/cluster/cman.log").read_text()
    assert "leaves this node out" in log
    wait_for("node1 to fence node3", lambda: fence_successes(lab, "node1", "node3"), timeout=20)
    assert not running(old), "the paused node's processes survived the fence"


@NEEDS_ROOT
def test_partition_majority_fences_the_minority_which_blocks(make_lab):
    lab = make_lab(3)
    lab.partition([["node1"], ["node2", "node3"]])
    wait_for("node2 to fence node1", lambda: fence_successes(lab, "node2", "node1"), timeout=20)
    s = status(lab, "node2")
    assert s["quorum"]["quorate"] and [n["name"] for n in s["nodes"] if n["state"] == "M"] == ["node2", "node3"]
    # node1 was rebooted by the fence and is alone behind the partition: its own view, inquorate.
    wait_for("node1 alone in its view", lambda: members(lab, "node1") == ["node1"], timeout=30)
    out = cman_tool(lab, "node1", "status")
    assert "Activity blocked" in out.stdout
    assert not status(lab, "node1")["quorum"]["quorate"]


@NEEDS_ROOT
def test_two_node_partition_leaves_exactly_one_node(make_lab):
    def off_with_delay(conf: ClusterConf, lab: Lab) -> None:
        set_device(conf, "node1", action="off", delay="2")  # fencing node1 waits: node1 wins the race
        set_device(conf, "node2", action="off")

    lab = make_lab(2, off_with_delay)
    lab.partition([["node1"], ["node2"]])
    wait_for("node2 to be powered off", lambda: not node_processes(lab.node("node2")), timeout=20)
    time.sleep(3.0)  # past node2's fence delay: had node2 survived, node1 would be gone by now
    assert node_processes(lab.node("node1")), "both nodes were fenced"
    assert not node_processes(lab.node("node2"))
    assert status(lab, "node1")["quorum"]["quorate"]


@NEEDS_ROOT
def test_two_nodes_with_a_quorum_disk_and_a_heuristic(make_lab):
    def qdisk(conf: ClusterConf, lab: Lab) -> None:
        cman = conf.section("cman", create=True)
        for key in ("two_node", "expected_votes"):
            cman.attrib.pop(key, None)
        cman.set("expected_votes", "3")
        quorumd = edit.set_section_attrs(conf, "quorumd", {
            "device": str(lab.directory / "qdisk"), "interval": "1", "tko": "3", "votes": "1",
            "master_wins": "1", "min_score": "1"})
        heuristic = quorumd.makeelement("heuristic", {"program": 'test ! -e "$CLUSTER_ROOT/heuristic_down"',
                                                      "score": "1", "interval": "1", "tko": "1"})
        quorumd.append(heuristic)
        set_device(conf, "node1", action="off")
        set_device(conf, "node2", action="off")

    lab = make_lab(2, qdisk)
    wait_for("a quorum disk master", lambda: (status(lab, "node1")["qdisk"] or {}).get("master"), timeout=20)
    wait_for("3 votes", lambda: status(lab, "node1")["quorum"]["total_votes"] == 3, timeout=20)
    # node1's heuristic fails: it stops claiming the disk's votes and node2 becomes the master.
    (lab.node("node1").root / "heuristic_down").touch()
    wait_for("node2 master", lambda: (status(lab, "node2")["qdisk"] or {}).get("is_master"), timeout=20)
    lab.partition([["node1"], ["node2"]])
    wait_for("node1 to be powered off by node2", lambda: not node_processes(lab.node("node1")), timeout=20)
    wait_for("node2's fence record", lambda: fence_successes(lab, "node2", "node1"), timeout=10)
    s = status(lab, "node2")
    assert s["quorum"]["quorate"] and s["quorum"]["qdisk_votes"] == 1


def test_node_with_an_older_config_catches_up_before_joining(make_lab):
    lab = make_lab(3)
    lab.stop("node3")  # a clean leave: no fencing
    wait_for("node1 to see node3 leave", lambda: members(lab, "node1") == ["node1", "node2"], timeout=10)
    root1 = lab.node("node1").root
    assert subprocess.run(["ccs_tool", "addnode", "-n", "4", "-f", "labfence", "node4"], env=lab.node("node1")
                          .environ(), capture_output=True, check=False).returncode == 0
    assert cman_tool(lab, "node1", "version", "-r").returncode == 0  # node3 is down: it misses version 2
    wait_for("node1 running version 2", lambda: status(lab, "node1")["cluster"]["config_version"] == 2)
    lab.start("node3")
    wait_for("node3 a member again", lambda: "node3" in members(lab, "node1"), timeout=30)
    s3 = status(lab, "node3")
    assert s3["cluster"]["config_version"] == 2
    assert not fence_successes(lab, "node1", "node3")
    assert root1.exists()


def test_forged_and_replayed_heartbeats_are_ignored(make_lab):
    lab = make_lab(3)
    node1, node3 = lab.node("node1"), lab.node("node3")
    # A replay must be one node1 has seen: wait until node3's sequence numbers are well past the 64-packet window.
    wait_for("node3's traffic", lambda: next(n["last_seq"] for n in status(lab, "node1")["nodes"]
                                             if n["name"] == "node3") > 80, timeout=20)
    s1 = status(lab, "node1")
    node3_incarnation = next(n["incarnation"] for n in s1["nodes"] if n["name"] == "node3")
    key = wire.load_key(node1.root)
    cluster_id = s1["cluster"]["id"]
    port = s1["cluster"]["port"]
    leave = {"remove": True}
    packets = [
        # forged: the right header, a wrong key
        wire.seal(os.urandom(64), wire.Packet(cluster_id, 3, node3_incarnation, 10**9, "leave", leave)),
        # replayed: node3's current life, a sequence number node1 received long ago
        wire.seal(key, wire.Packet(cluster_id, 3, node3_incarnation, 1, "leave", leave)),
        # stale: node3's life before this one
        wire.seal(key, wire.Packet(cluster_id, 3, node3_incarnation - 1, 10**9, "leave", leave)),
        # another cluster's packet
        wire.seal(key, wire.Packet((cluster_id + 1) % 65536, 3, node3_incarnation, 10**9, "leave", leave)),
    ]
    before = s1["dropped_packets"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((node3.address, 0))  # from node3's address, as an attacker on its host would
        for data in packets:
            for _ in range(3):
                sock.sendto(data, (node1.address, port))
    wait_for("node1 to drop the packets", lambda: status(lab, "node1")["dropped_packets"] >= before + 9, timeout=5)
    time.sleep(1.5)  # more than a token: a LEAVE that got through would have changed the view by now
    assert members(lab, "node1") == ["node1", "node2", "node3"]
    assert status(lab, "node1")["generation"] == s1["generation"]


def test_leave_remove_lowers_quorum_and_expected_votes_can_be_set(make_lab):
    lab = make_lab(3)
    out = cman_tool(lab, "node3", "leave", "remove")
    assert out.returncode == 0, out.stderr
    wait_for("node1 without node3", lambda: members(lab, "node1") == ["node1", "node2"], timeout=10)
    # node2 lowers its expected votes when it installs the view; node1 sees it in node2's next heartbeat.
    wait_for("expected votes 2", lambda: status(lab, "node1")["quorum"]["expected_votes"] == 2, timeout=5)
    s = status(lab, "node1")
    assert s["quorum"]["expected_votes"] == 2 and s["quorum"]["quorum"] == 2 and s["quorum"]["quorate"]
    assert not fence_successes(lab, "node1", "node3")  # a clean leave is not fenced
    refused = cman_tool(lab, "node1", "expected", "-e", "9")
    assert refused.returncode == 1 and refused.stderr.startswith("cman_tool: ")


def start_cman(lab: Lab, *names: str) -> None:
    with lab.client() as client:
        results = client.fan_out([lab.node(n).endpoint for n in names], "node.start", timeout=60)
    assert all(r.ok for r in results.values()), results


def make_agents_only(tmp_path: Path, clean_start: str) -> Lab:
    lab = Lab(tmp_path / "lab")
    names = node_names(3)
    conf = ClusterConf.from_bytes(lab_cluster_conf("labcluster", names, 11111, lab.directory))
    edit.set_section_attrs(conf, "fence_daemon", {"post_join_delay": "2", "clean_start": clean_start})
    conf.mark_edited()
    lab.create(names, "labcluster", free_block(3), 11111, config=conf.to_bytes())
    lab.up(no_daemons=True)
    return lab


@pytest.mark.parametrize("clean_start", ["0", "1"])
def test_startup_fencing_after_post_join_delay_unless_clean_start(tmp_path, clean_start):
    lab = make_agents_only(tmp_path, clean_start)
    try:
        start_cman(lab, "node1", "node2")  # node3's agent runs, its cman does not: it "did not boot in time"
        wait_for("node1 and node2 quorate", lambda: members(lab, "node1") == ["node1", "node2"], timeout=20)
        if clean_start == "1":
            time.sleep(4.0)  # twice post_join_delay
            assert not FenceHistory(lab.node("node1").root).entries(node="node3")
            assert "node3" not in status(lab, "node1")["fencing"]
        else:
            wait_for("startup fencing of node3", lambda: fence_successes(lab, "node1", "node3"), timeout=20)
            assert status(lab, "node1")["fencing"]["node3"]["state"] == "succeeded"
    finally:
        lab.down()


def test_fence_manual_waits_for_fence_ack_manual(make_lab):
    def manual(conf: ClusterConf, lab: Lab) -> None:
        edit.add_fence_device(conf, "human", "fence_manual")
        device = conf.root.find("clusternodes/clusternode[@name='node3']/fence/method/device")
        device.attrib.clear()
        device.set("name", "human")

    lab = make_lab(3, manual)
    lab.kill("node3")
    wait_for("node3 waiting for a manual fence",
             lambda: (status(lab, "node1")["fencing"].get("node3") or {}).get("state") == "manual_wait", timeout=15)
    refused = subprocess.run(["fence_ack_manual", "node2"], env=lab.node("node1").environ(), capture_output=True,
                             text=True, timeout=10, check=False)
    assert refused.returncode == 1 and "node2" in refused.stderr
    acked = subprocess.run(["fence_ack_manual", "node3"], env=lab.node("node1").environ(), capture_output=True,
                           text=True, timeout=10, check=False)
    assert acked.returncode == 0, acked.stderr
    assert status(lab, "node1")["fencing"]["node3"]["state"] == "succeeded"
    assert fence_successes(lab, "node1", "node3")
