"""The local lab (ricci_agent.lab and `manage.py localcluster`): real agents on loopback, real processes.

Every lab here runs in an address block of its own (127.A.B.11.., port 11111; never the default 127.0.0.11.., so a
developer's var/lab is left alone) and is stopped by its fixture or test, failures included; `_no_process_left`
checks that nothing survives.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cluster_conf import ClusterConf, validate
from cluster_conf.model import view
from ricci_agent import keys, lab_services
from ricci_agent.lab import (
    AGENT_OUTPUT,
    AGENT_PORT,
    AUTHKEY,
    CLIENT_DIR,
    Lab,
    LabError,
    LabNode,
    default_services,
    free_block,
    free_port,
    group_members,
    kill_nodes,
    lab_cluster_conf,
    node_address,
    node_names,
    node_processes,
    parse_groups,
    partition_groups,
    partition_ruleset,
    table_name,
)

pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

REPO = Path(__file__).resolve().parents[1]
MANAGE = [sys.executable, str(REPO / "manage.py"), "localcluster"]


def _no_process_left(pids: list[int]) -> None:
    for pid in pids:
        assert group_members(pid) == [], f"process group {pid} still has processes"


def _stop(lab: Lab) -> None:
    """Teardown that cannot leave agents behind, even when the lab's own bookkeeping is wrong."""
    if not lab.exists():
        return
    pids = [n.pid for n in lab.nodes if n.pid]
    try:
        lab.down(grace=3.0)
    finally:
        for pid in pids:
            if group_members(pid):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("lab") / "lab")
    try:
        lab.up(nodes=3, first_address=free_block(3), no_daemons=True)  # agents only: nothing fences behind a test
        yield lab
    finally:
        _stop(lab)


# -- pure parts ----------------------------------------------------------------------------------------------
def test_node_names_default_to_node1_to_node3_and_are_checked() -> None:
    assert node_names() == ["node1", "node2", "node3"]
    assert node_names(5)[-1] == "node5"
    assert node_names(names=["web-a", "web-b"]) == ["web-a", "web-b"]
    for bad, message in (
        ({"nodes": 0}, "between 1 and"),
        ({"names": ["a", "a"]}, "node name a is given twice"),
        ({"names": ["a b"]}, "invalid node name 'a b'"),
        ({"names": ["_client"]}, "invalid node name '_client'"),
        ({"nodes": 2, "names": ["a"]}, "disagree"),
    ):
        with pytest.raises(LabError, match=message):
            node_names(**bad)  # type: ignore[arg-type]


def test_addresses_follow_127_0_0_11() -> None:
    assert [node_address(i) for i in range(3)] == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    with pytest.raises(LabError, match=r"outside 127\.0\.0\.0/8"):
        node_address(1, "127.255.255.255")


def test_the_initial_cluster_conf_is_valid_with_votes_nodeids_fencing_and_a_domain() -> None:
    conf = ClusterConf.from_bytes(lab_cluster_conf("labcluster", ["node1", "node2", "node3"]))
    assert validate(conf) == []  # no error and no lint warning
    cluster = view(conf)
    assert (conf.name, conf.config_version) == ("labcluster", 1)
    nodes = list(conf.root.iter("clusternode"))
    assert [(n.get("name"), n.get("votes"), n.get("nodeid")) for n in nodes] == [
        ("node1", "1", "1"), ("node2", "1", "2"), ("node3", "1", "3")
    ]
    assert [d.get("name") for d in conf.root.iter("device")] == ["labfence"] * 3
    assert [f.get("agent") for f in conf.root.iter("fencedevice")] == ["fence_lab"]
    members = [m.get("name") for m in conf.root.iter("failoverdomainnode")]
    assert members == ["node1", "node2", "node3"] and len(cluster.nodes) == 3


def test_the_lab_conf_has_the_lab_timings_and_names_the_lab_on_its_fence_device(tmp_path: Path) -> None:
    conf = ClusterConf.from_bytes(lab_cluster_conf("labcluster", ["node1", "node2", "node3"], lab_dir=tmp_path))
    assert validate(conf) == []
    assert conf.root.find("totem").get("token") == "1000"
    assert conf.root.find("fence_daemon").get("post_join_delay") == "3"
    assert dict(conf.root.find("fencedevices/fencedevice").attrib) == {
        "name": "labfence", "agent": "fence_lab", "lab": str(tmp_path)
    }
    path = tmp_path / "cluster.conf"
    path.write_bytes(conf.to_bytes())
    checked = subprocess.run([str(Path(sys.executable).parent / "ccs_config_validate"), "-f", str(path)],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_two_node_lab_gets_cman_two_node() -> None:
    conf = ClusterConf.from_bytes(lab_cluster_conf("labcluster", ["a", "b"]))
    assert dict(conf.root.find("cman").attrib) == {"two_node": "1", "expected_votes": "1"}
    assert [r for r in validate(conf) if r.is_error] == []


# -- a running lab -------------------------------------------------------------------------------------------
def test_up_writes_a_root_per_node_and_lab_json(lab: Lab) -> None:
    data = json.loads(lab.state_path.read_text())
    assert data["cluster_name"] == "labcluster"
    assert [n["name"] for n in data["nodes"]] == ["node1", "node2", "node3"]
    first = data["nodes"][0]["address"]
    assert first.startswith("127.") and first.endswith(".11")
    assert [n["address"] for n in data["nodes"]] == [node_address(i, first) for i in range(3)]
    assert {n["port"] for n in data["nodes"]} == {11111}
    for entry in data["nodes"]:
        node = LabNode.from_json(entry)
        root = node.root
        assert root == lab.directory / node.name and entry["pid"] > 0
        assert entry["fingerprint"] == keys.fingerprint(keys.host_public_key(root))
        for secret in (keys.HOST_KEY, keys.CLIENT_KEY, keys.AUTHORIZED_KEYS):
            assert stat.S_IMODE((root / secret).stat().st_mode) == 0o600, secret
        settings = json.loads((root / "etc/ricci/ricci.json").read_text())
        assert settings == {"node_name": node.name, "address": node.address, "port": node.port}
        hosts = (root / "etc/hosts").read_text()
        assert f"{node_address(1, first)} node2" in hosts
        history = (root / "var/lib/cluster/history.jsonl").read_text().splitlines()
        assert [json.loads(line)["version"] for line in history] == [1]
        assert (root / AGENT_OUTPUT).exists()
        assert stat.S_IMODE((root / AUTHKEY).stat().st_mode) == 0o600
    keys_ = {(lab.directory / n["name"] / AUTHKEY).read_bytes() for n in data["nodes"]}
    assert len(keys_) == 1 and len(keys_.pop()) == 64  # one cluster key, shared by every node
    assert ClusterConf.from_bytes(lab.node("node1").config_path.read_bytes()).root.find(
        "fencedevices/fencedevice").get("lab") == str(lab.directory)


def test_every_node_and_the_lab_trust_every_node(lab: Lab) -> None:
    from ricci_agent.client import RicciClient

    endpoints = [n.endpoint for n in lab.nodes]
    for root in [n.root for n in lab.nodes] + [lab.directory / CLIENT_DIR]:
        with RicciClient.for_root(root) as client:
            answers = client.fan_out(endpoints, "hello")
        assert all(a.ok for a in answers.values()), (root, answers)
        assert [a.result["node_name"] for a in answers.values()] == ["node1", "node2", "node3"]  # type: ignore[index]


def test_status_shows_each_node_answering_with_version_1(lab: Lab) -> None:
    statuses = lab.status()
    assert [(s.node.name, s.running, s.answering, s.config_version) for s in statuses] == [
        ("node1", True, True, 1), ("node2", True, True, 1), ("node3", True, True, 1)
    ]
    assert len({s.config_hash for s in statuses}) == 1


def test_kill_removes_the_node_processes_and_start_brings_it_back(lab: Lab) -> None:
    pid = lab.kill("node2")
    _no_process_left([pid])
    assert lab.node("node2").pid is None
    statuses = {s.node.name: s for s in lab.status()}
    assert not statuses["node2"].running and statuses["node1"].answering and statuses["node3"].answering
    with pytest.raises(LabError, match="node2 is not running"):
        lab.kill("node2")
    node = lab.start("node2")
    assert node.pid is not None and node.pid != pid and lab.node("node2").pid == node.pid
    assert all(s.answering for s in lab.status())
    with pytest.raises(LabError, match="node2 is already running"):
        lab.start("node2")


def test_exec_runs_a_command_with_the_node_root_and_returns_its_status(
    lab: Lab, capfd: pytest.CaptureFixture[str]
) -> None:
    script = "import os, sys; print(os.environ['CLUSTER_ROOT']); sys.exit(7)"
    code = lab.exec("node3", [sys.executable, "-c", script])
    assert code == 7
    assert capfd.readouterr().out.strip() == str(lab.node("node3").root)
    assert lab.exec("node1", ["ccs_tool", "lsnode"]) == 0
    assert "node3                              1    3    labfence" in capfd.readouterr().out
    with pytest.raises(LabError, match="command not found: no-such-command") as info:
        lab.exec("node1", ["no-such-command"])
    assert info.value.exit_code == 127
    with pytest.raises(LabError, match="no node node9 in the lab"):
        lab.exec("node9", ["true"])


def test_a_second_lab_on_the_same_addresses_is_refused_and_starts_nothing(lab: Lab, tmp_path: Path) -> None:
    other = Lab(tmp_path / "other")
    node1 = lab.node("node1")
    with pytest.raises(LabError, match=re.escape(f"{node1.key} (for node1) is already in use")):
        other.up(nodes=2, first_address=node1.address, port=node1.port)
    assert all(n.pid is None for n in other.nodes)


def test_up_on_a_running_lab_is_refused(lab: Lab) -> None:
    with pytest.raises(LabError, match="already running"):
        lab.up()
    with pytest.raises(LabError, match="already holds a lab with nodes node1, node2, node3"):
        lab.up(nodes=5)


def _state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2]


def _sleeper(env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A process in a session of its own (as a service that called setsid), with the given environment."""
    return subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)


def test_node_processes_follow_the_cluster_root_marker_across_sessions(lab: Lab) -> None:
    node = lab.node("node3")
    escaped = _sleeper(node.environ())  # left the agent's process group, still carries the node's CLUSTER_ROOT
    stranger = _sleeper()  # no marker: never the node's, whatever its group
    try:
        found = node_processes(node)
        assert node.pid in found and escaped.pid in found and stranger.pid not in found
        assert os.getpgid(escaped.pid) != node.pid
        # A process carrying the marker never lists itself (fence_lab runs with its fencer's CLUSTER_ROOT).
        script = ("import os, json; from ricci_agent.lab import Lab, node_processes; "
                  "print(json.dumps([os.getpid(), node_processes(Lab(os.environ['LAB']).node('node3'))]))")
        listed = subprocess.run([sys.executable, "-c", script], env={**node.environ(), "LAB": str(lab.directory)},
                                capture_output=True, text=True, check=True)
        me, theirs = json.loads(listed.stdout)
        assert me not in theirs and escaped.pid in theirs
    finally:
        for process in (escaped, stranger):
            process.kill()
            process.wait()


def test_kill_reaches_a_setsid_child_with_the_marker_and_spares_others(lab: Lab) -> None:
    node = lab.node("node2")
    escaped = _sleeper(node.environ())
    stranger = _sleeper()
    try:
        agent = lab.kill("node2")
        assert agent == node.pid and node_processes(node) == []
        assert escaped.wait(timeout=5) == -signal.SIGKILL
        assert stranger.poll() is None, "the lab killed a process without the node's marker"
    finally:
        for process in (escaped, stranger):
            process.kill()
            process.wait()
        lab.start("node2", no_daemons=True)


CHAIN_PROBE = """
import json, os, subprocess, sys
from pathlib import Path
from ricci_agent.lab import LabNode, node_processes
code, roots, inner = sys.argv[1], sys.argv[2], sys.argv[3:]  # python -c CODE CODE ROOTS [INNER_ROOT]
if inner:  # the outer process: run the inner one as its child, as a process of the node of INNER_ROOT
    env = {**os.environ, "CLUSTER_ROOT": inner[0]}
    sys.exit(subprocess.run([sys.executable, "-c", code, code, roots], env=env, check=False).returncode)
nodes = {name: LabNode(name, 1, "127.0.0.1", 1, Path(root)) for name, root in json.loads(roots).items()}
print(json.dumps({"me": os.getpid(), "parent": os.getppid(),
                  "seen": {name: node_processes(node) for name, node in nodes.items()}}))
"""


def _probe_chain(outer_root: Path, inner_root: Path, roots: dict[str, Path]) -> dict:
    """A process of `outer_root`'s node runs a child of `inner_root`'s node, which lists node_processes."""
    argv = [sys.executable, "-c", CHAIN_PROBE, CHAIN_PROBE, json.dumps({k: str(v) for k, v in roots.items()}),
            str(inner_root)]
    done = subprocess.run(argv, env={**os.environ, "CLUSTER_ROOT": str(outer_root)}, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ancestors_are_spared_only_while_they_run_as_the_same_node(tmp_path: Path) -> None:
    roots = {"node1": tmp_path / "node1", "node2": tmp_path / "node2"}
    # node2 booted beneath node1's daemon (fence_lab on, before it detached): fencing node1 from node2 must reach
    # node1's process although it is an ancestor of the caller
    crossed = _probe_chain(roots["node1"], roots["node2"], roots)
    assert crossed["parent"] in crossed["seen"]["node1"], "an ancestor of another node is spared"
    assert crossed["me"] not in crossed["seen"]["node2"], "the caller itself is listed"
    # `localcluster exec node1 -- ...` runs as node1: the caller and its node1 ancestors are spared
    same = _probe_chain(roots["node1"], roots["node1"], roots)
    assert same["seen"]["node1"] == [] and same["seen"]["node2"] == []


def test_a_bounded_lock_wait_gives_up_in_one_line(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    busy = r"^the lab in .* is busy: another lab operation has held \.lab\.lock"
    # another operation holds it (flock: a second open file conflicts, even in one process)
    with lab.locked(), pytest.raises(LabError, match=busy), Lab(lab.directory).locked(timeout=0.2):
        pass
    with Lab(lab.directory).locked(timeout=0.2):  # free again
        pass


def test_pause_stops_every_process_and_resume_continues_them(lab: Lab) -> None:
    node = lab.node("node3")
    escaped = _sleeper(node.environ())
    try:
        pids = lab.pause("node3")
        assert node.pid in pids and escaped.pid in pids
        assert {_state(pid) for pid in pids} == {"T"}
        assert lab.node("node3").paused and json.loads(lab.state_path.read_text())["nodes"][2]["paused"] is True
        status = {s.node.name: s for s in lab.status(timeout=2.0)}
        assert status["node3"].paused and not status["node3"].answering and status["node1"].answering
        with pytest.raises(LabError, match="node3 is already paused"):
            lab.pause("node3")
        assert sorted(lab.resume("node3")) == sorted(pids)
        assert all(_state(pid) in "SR" for pid in pids) and not lab.node("node3").paused
        assert all(s.answering for s in lab.status())
        with pytest.raises(LabError, match="node3 is not paused"):
            lab.resume("node3")
    finally:
        escaped.kill()
        escaped.wait()
        if lab.node("node3").paused:
            lab.resume("node3")


def test_start_daemons_names_the_node_that_fails(lab: Lab) -> None:
    lab.kill("node1")
    try:
        with pytest.raises(LabError, match=r"^node1 could not start its cluster daemons \(node.start\): ") as info:
            lab._start_daemons([lab.node("node1")])
        assert "\n" not in str(info.value)
    finally:
        lab.start("node1", no_daemons=True)


# -- partitions ----------------------------------------------------------------------------------------------
def test_partition_groups_are_parsed_and_checked() -> None:
    assert parse_groups(["node1", "/", "node2,node3"]) == [["node1"], ["node2", "node3"]]
    assert parse_groups(["node1/node2", "node3"]) == [["node1"], ["node2", "node3"]]
    names = ["node1", "node2", "node3", "node4"]
    assert partition_groups(names, [["node1"]]) == [["node1"], ["node2", "node3", "node4"]]
    assert partition_groups(names, [["node1"], ["node2"]]) == [["node1"], ["node2"], ["node3", "node4"]]
    for groups, message in (
        ([["node1", "node2", "node3", "node4"]], "at least two groups"),
        ([["node1"], ["node1"]], "node node1 is in two groups"),
        ([["node9"]], "no node node9 in the lab"),
    ):
        with pytest.raises(LabError, match=message):
            partition_groups(names, groups)
    with pytest.raises(LabError, match="empty group"):
        parse_groups(["node1", "/"])


def test_the_ruleset_drops_both_ways_between_groups_only(tmp_path: Path) -> None:
    nodes = [LabNode(f"n{i}", i, f"127.9.9.{10 + i}", 11111, tmp_path) for i in (1, 2, 3)]
    script = partition_ruleset("rhcs_lab_x", [[nodes[0]], nodes[1:]])
    drops = sorted(line.strip() for line in script.splitlines() if line.strip().endswith("drop"))
    assert drops == sorted(
        f"ip saddr {a} ip daddr {b} drop" for a, b in [
            ("127.9.9.11", "127.9.9.12"), ("127.9.9.11", "127.9.9.13"),
            ("127.9.9.12", "127.9.9.11"), ("127.9.9.13", "127.9.9.11"),
        ]
    )
    assert "hook input" in script and table_name(tmp_path) != table_name(tmp_path / "other")


def _needs_nft() -> None:
    import shutil as _shutil

    if os.geteuid() != 0:
        pytest.skip("partition needs root (nftables rules): run the tests as root, as CI does")
    if not (_shutil.which("nft") or os.access("/usr/sbin/nft", os.X_OK)):
        pytest.skip("partition needs nft (apt-get install nftables)")


def _arrivals(nodes: list[LabNode]) -> set[tuple[str, str]]:
    """Send one UDP datagram from every node's address to every other; return the (from, to) pairs that arrived."""
    sockets = {}
    try:
        for node in nodes:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((node.address, 0))
            sock.setblocking(False)
            sockets[node.name] = sock
        for sender in nodes:
            for receiver in nodes:
                if sender is not receiver:
                    sockets[sender.name].sendto(sender.name.encode(), sockets[receiver.name].getsockname())
        import time as _time

        _time.sleep(0.3)  # loopback delivers at once; this only bounds the wait
        arrived = set()
        for receiver in nodes:
            while True:
                try:
                    data, _ = sockets[receiver.name].recvfrom(100)
                except BlockingIOError:
                    break
                arrived.add((data.decode(), receiver.name))
        return arrived
    finally:
        for sock in sockets.values():
            sock.close()


def test_partition_loses_packets_across_groups_and_heal_restores_them(tmp_path: Path) -> None:
    _needs_nft()
    lab = Lab(tmp_path / "lab")
    lab.create(["node1", "node2", "node3"], "labcluster", free_block(3), 11111)  # addresses only: no agent needed
    nodes = lab.nodes
    everything = {(a.name, b.name) for a in nodes for b in nodes if a is not b}
    try:
        assert _arrivals(nodes) == everything
        assert lab.partition([["node1"]]) == [["node1"], ["node2", "node3"]]
        assert json.loads(lab.state_path.read_text())["partition"] == [["node1"], ["node2", "node3"]]
        assert _arrivals(nodes) == {("node2", "node3"), ("node3", "node2")}
        assert lab.partition([["node1", "node2"], ["node3"]]) == [["node1", "node2"], ["node3"]]  # replaces it
        assert _arrivals(nodes) == {("node1", "node2"), ("node2", "node1")}
        assert lab.heal() is True
        assert _arrivals(nodes) == everything
        assert lab.heal() is False and lab.partition_state() is None
        lab.partition([["node2"]])
        assert lab.down() == []  # no agent ran, but down heals too
        assert _arrivals(nodes) == everything
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table_name(lab.directory)], capture_output=True, check=False)


def test_partition_without_root_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = Lab(tmp_path / "lab")
    lab.create(["node1", "node2"], "labcluster", free_block(2), 11111)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # the check itself; running as another user needs root
    with pytest.raises(LabError, match=r"^partition needs root and nftables \(nft\): not running as root$"):
        lab.partition([["node1"]])
    with pytest.raises(LabError, match=r"^partition needs root"):
        lab.heal()
    assert lab.partition_state() is None and lab.down() == []  # down has nothing to heal: no refusal


# -- lifecycles of their own ---------------------------------------------------------------------------------
def test_down_stops_everything_and_up_starts_the_same_lab_again(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    try:
        nodes = lab.up(nodes=2, first_address=free_block(2))
        pids = [n.pid for n in nodes if n.pid]
        fingerprints = [n.fingerprint for n in nodes]
        assert lab.down() == ["node1", "node2"]
        _no_process_left(pids)
        assert all(n.pid is None for n in lab.nodes)
        assert lab.down() == []
        again = lab.up()
        assert [n.fingerprint for n in again] == fingerprints  # same roots, same keys
        assert all(s.answering for s in lab.status())
    finally:
        _stop(lab)


def test_an_agent_that_cannot_start_is_named_and_the_others_are_stopped(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    lab.create(["node1", "node2", "node3"], "labcluster", free_block(3), 11111)
    (lab.node("node2").root / keys.HOST_KEY).write_text("not a key\n")
    try:
        with pytest.raises(LabError, match="the agent of node2 exited before answering"):
            lab.up(timeout=30)
        assert all(n.pid is None for n in lab.nodes)
    finally:
        _stop(lab)
    for node in lab.nodes:  # nothing listens any more: the two healthy agents were stopped too
        with pytest.raises(OSError):
            socket.create_connection(node.endpoint, timeout=1).close()


def test_up_refuses_an_address_another_program_holds(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    first, port = free_block(1), 11111
    lab.create(["node1"], "labcluster", first, port)
    with socket.socket() as squatter:  # something else listens there: refused before any agent starts
        squatter.bind((first, port))
        squatter.listen(1)
        with pytest.raises(LabError, match=r"already in use"):
            lab.up(timeout=5)
    assert lab.node("node1").pid is None


# -- manage.py localcluster ----------------------------------------------------------------------------------
def _manage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MANAGE, *args], capture_output=True, text=True, cwd=REPO, timeout=timeout, check=False)


def test_manage_py_localcluster_up_status_exec_kill_down(tmp_path: Path) -> None:
    lab_dir = str(tmp_path / "lab")
    port = free_port(2)  # the default addresses 127.0.0.11 and .12, on a port of its own (--port, ricci_port)
    try:
        up = _manage("up", "--node-names", "alpha,beta", "--name", "webfarm", "--dir", lab_dir, "--port", str(port),
                     "--no-daemons")
        assert up.returncode == 0, up.stderr
        assert f"Lab webfarm is up in {lab_dir} (2 nodes):" in up.stdout
        assert f"alpha        127.0.0.11:{port}" in up.stdout
        status = _manage("status", "--dir", lab_dir)
        assert status.returncode == 0 and status.stdout.count("answering") == 2, status.stdout
        assert "Cluster views:\n  alpha: cman: not running\n  beta: cman: not running\n" in status.stdout
        paused = _manage("pause", "beta", "--dir", lab_dir)
        assert paused.returncode == 0 and paused.stdout.startswith("Paused beta ("), paused.stderr
        status = _manage("status", "--dir", lab_dir)
        assert status.returncode == 3 and "  beta: paused" in status.stdout
        assert re.search(r"^beta .* paused", status.stdout, re.M), status.stdout
        resumed = _manage("resume", "beta", "--dir", lab_dir)
        assert resumed.returncode == 0 and resumed.stdout.startswith("Resumed beta ("), resumed.stderr
        if os.geteuid() == 0:
            cut = _manage("partition", "alpha", "/", "beta", "--dir", lab_dir)
            assert (cut.returncode, cut.stdout) == (0, "Partitioned: alpha / beta\n"), cut.stderr
            assert "Partition: alpha / beta" in _manage("status", "--dir", lab_dir).stdout
            assert _manage("heal", "--dir", lab_dir).stdout == "Healed.\n"
        bad = _manage("partition", "alpha", "/", "gamma", "--dir", lab_dir)
        assert (bad.returncode, bad.stderr) == (1, "localcluster: no node gamma in the lab (nodes: alpha, beta)\n")
        listed = _manage("exec", "alpha", "--dir", lab_dir, "--", "ccs_tool", "lsnode")
        assert listed.returncode == 0 and "Cluster name: webfarm, config_version: 1" in listed.stdout
        ports = _manage("exec", "alpha", "--dir", lab_dir, "--", "ccs_tool", "query", "//clusternode/@ricci_port")
        assert ports.stdout == f"{port}\n{port}\n"  # how the agents find each other off port 11111
        failing = _manage("exec", "--dir", lab_dir, "beta", "--", "sh", "-c", 'test "$CLUSTER_ROOT" = "$0" || exit 9;'
                          " exit 4", str(Path(lab_dir) / "beta"))
        assert failing.returncode == 4, failing.stderr
        killed = _manage("kill", "beta", "--dir", lab_dir)
        assert killed.returncode == 0 and killed.stdout.startswith("Killed beta")
        status = _manage("status", "--dir", lab_dir)
        assert status.returncode == 3 and "stopped" in status.stdout
        again = _manage("kill", "beta", "--dir", lab_dir)
        assert (again.returncode, again.stderr) == (1, "localcluster: beta is not running\n")
        down = _manage("down", "--dir", lab_dir)
        assert (down.returncode, down.stdout) == (0, "Stopped alpha.\n")
    finally:
        _stop(Lab(lab_dir))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status"], "localcluster: no lab in {dir} (no lab.json); create one with 'localcluster up'\n"),
        (["up", "--nodes", "0"], "localcluster: the number of nodes must be between 1 and 200, not 0\n"),
        (["up", "--node-names", "a,a"], "localcluster: node name a is given twice\n"),
        (["up", "--name", "bad name"], "localcluster: invalid cluster name 'bad name': 1 to 16 letters, digits, "
                                       "'_', '.' or '-'\n"),
        (["exec", "node1", "--", "true"], "localcluster: no lab in {dir} (no lab.json); create one with "
                                           "'localcluster up'\n"),
    ],
)
def test_manage_py_localcluster_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    lab_dir = tmp_path / "lab"
    result = _manage(*args, "--dir", str(lab_dir)) if args[0] != "exec" else _manage(
        "exec", "--dir", str(lab_dir), *args[1:]
    )
    assert (result.returncode, result.stdout, result.stderr) == (1, "", message.format(dir=lab_dir))
    assert not (lab_dir / "lab.json").exists()


def test_a_stale_pid_in_lab_json_never_signals_another_program(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    state = lab.create(["node1"], "labcluster", free_block(1), 11111)
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        state.nodes[0] = replace(state.nodes[0], pid=stranger.pid)  # as if the agent's pid had been reused
        lab.save(state)
        with pytest.raises(LabError, match="node1 is not running"):
            lab.kill("node1")
        assert lab.down() == []
        assert stranger.poll() is None, "the lab signalled a process that is not one of its agents"
        assert lab.node("node1").pid is None
    finally:
        stranger.kill()
        stranger.wait()


# -- the lab's services (ricci_agent.lab_services) -------------------------------------------------------------
def _service_address() -> str:
    """127.A.B.222 of a random free block, with the web port free."""
    return lab_services.web_address(free_block(1, port=lab_services.WEB_PORT))


@pytest.fixture
def node_root(tmp_path: Path) -> Iterator[LabNode]:
    """A node's root with its ricci.json, as a lab writes it; every process left carrying it is killed after."""
    node = LabNode("node7", 7, "127.0.0.1", AGENT_PORT, tmp_path / "node7")
    (node.root / "etc/ricci").mkdir(parents=True)
    (node.root / "etc/ricci/ricci.json").write_text(json.dumps({"node_name": "node7"}))
    try:
        yield node
    finally:
        leftovers = node_processes(node)
        kill_nodes([node])
        assert leftovers == [], f"processes left behind: {leftovers}"


def _lsb(script: Path, action: str, node: LabNode) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(script), action], env=node.environ(), capture_output=True, text=True, timeout=30,
                          check=False)


def _get(address: str, port: int = lab_services.WEB_PORT) -> str:
    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=3) as response:
        return response.read().decode()


def test_the_lab_conf_with_the_sample_service_is_valid(tmp_path: Path) -> None:
    services = default_services("127.0.0.11")
    conf = ClusterConf.from_bytes(lab_cluster_conf("labcluster", ["node1", "node2", "node3"], lab_dir=tmp_path,
                                                   services=services))
    assert [r for r in validate(conf) if r.is_error] == []
    service = conf.root.find("rm/service")
    assert dict(service.attrib) == {"name": "webservice", "domain": "labdomain", "recovery": "relocate",
                                    "autostart": "1"}
    assert [(c.tag, c.get("ref")) for c in service] == [("ip", "127.0.0.222"), ("script", "webservice")]
    assert dict(conf.root.find("rm/resources/ip").attrib) == {"address": "127.0.0.222", "monitor_link": "0"}
    assert conf.root.find("rm/resources/script").get("file") == str(tmp_path / "_lab/webservice")
    assert lab_services.web_address("127.83.20.11") == "127.83.20.222"
    with pytest.raises(LabError, match="need the lab folder"):
        lab_cluster_conf("labcluster", ["node1"], services=services)


def test_create_writes_the_service_script_and_services_false_leaves_it_out(tmp_path: Path) -> None:
    with_service = Lab(tmp_path / "a")
    with_service.create(["node1", "node2", "node3"], "labcluster", "127.83.20.11", 11111)
    script = with_service.directory / "_lab/webservice"
    assert script.is_file() and os.access(script, os.X_OK)
    conf = ClusterConf.load(with_service.node("node2").config_path)
    assert conf.root.find("rm/service").get("name") == "webservice"
    assert conf.root.find("rm/resources/ip").get("address") == "127.83.20.222"
    bare = Lab(tmp_path / "b")
    bare.create(["node1", "node2", "node3"], "labcluster", "127.83.20.11", 11111, services=False)
    assert not (bare.directory / "_lab").exists()
    assert ClusterConf.load(bare.node("node1").config_path).root.find("rm/service") is None


def test_the_web_script_serves_the_node_name_and_speaks_lsb(tmp_path: Path, node_root: LabNode) -> None:
    address = _service_address()
    script = lab_services.write_script(tmp_path / "lab", lab_services.web_service(address))
    assert _lsb(script, "status", node_root).returncode == 3  # LSB: not running
    assert _lsb(script, "stop", node_root).returncode == 0  # stopping a stopped service succeeds
    started = _lsb(script, "start", node_root)
    assert started.returncode == 0, started.stdout + started.stderr
    assert _get(address) == "node7 server\n"
    assert _lsb(script, "status", node_root).returncode == 0
    assert _lsb(script, "start", node_root).returncode == 0  # already running: success, no second server
    pid = json.loads((node_root.root / "var/run/webservice.pid").read_text())["pid"]
    assert node_processes(node_root) == [pid]  # it carries CLUSTER_ROOT: the lab's kill and fence reach it
    stopped = _lsb(script, "stop", node_root)
    assert stopped.returncode == 0 and node_processes(node_root) == []  # gone (at most a zombie until reaped)
    assert _lsb(script, "status", node_root).returncode == 3
    with pytest.raises(OSError):
        _get(address)
    assert _lsb(script, "reload", node_root).returncode == 2


def test_the_web_script_reports_a_dead_server_and_refuses_a_second_node(tmp_path: Path, node_root: LabNode) -> None:
    address = _service_address()
    script = lab_services.write_script(tmp_path / "lab", lab_services.web_service(address))
    assert _lsb(script, "start", node_root).returncode == 0
    other = LabNode("node8", 8, "127.0.0.1", AGENT_PORT, tmp_path / "node8")
    (other.root / "etc/ricci").mkdir(parents=True)
    (other.root / "etc/ricci/ricci.json").write_text(json.dumps({"node_name": "node8"}))
    try:
        second = _lsb(script, "start", other)  # the port is taken: a service never serves from two nodes
        assert second.returncode == 1 and "in use" in second.stdout
        assert node_processes(other) == []
    finally:
        kill_nodes([other])
    kill_nodes([node_root])  # kill -9 of the server
    dead = _lsb(script, "status", node_root)
    assert dead.returncode == 1 and "dead" in dead.stdout
    assert _lsb(script, "stop", node_root).returncode == 0
    assert _lsb(script, "status", node_root).returncode == 3
    unset = subprocess.run([str(script), "start"], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True,
                           timeout=30, check=False)
    assert unset.returncode == 6 and "CLUSTER_ROOT" in unset.stdout


def test_rg_test_runs_the_lab_service_from_the_lab_conf(tmp_path: Path, node_root: LabNode) -> None:
    lab = Lab(tmp_path / "lab")
    first = free_block(3, port=lab_services.WEB_PORT)
    lab.create(["node1", "node2", "node3"], "labcluster", first, 11111)
    node = replace(lab.node("node2"), pid=None)
    conf = str(node.config_path)
    rg_test = str(Path(sys.executable).parent / "rg_test")
    address = lab_services.web_address(first)
    try:
        for action, code in (("start", 0), ("status", 0)):
            done = subprocess.run([rg_test, "test", conf, action, "service", "webservice"], env=node.environ(),
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == code, done.stdout + done.stderr
            assert _get(address) == "node2 server\n"
        done = subprocess.run([rg_test, "test", conf, "stop", "service", "webservice"], env=node.environ(),
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert node_processes(node) == []
    finally:
        kill_nodes([node])


def test_the_ledger_script_records_start_heartbeats_and_stop(tmp_path: Path, node_root: LabNode) -> None:
    ledger = tmp_path / "ledger.jsonl"
    [service] = lab_services.ledger_services(1, ledger)
    script = lab_services.write_script(tmp_path / "lab", service)
    assert _lsb(script, "start", node_root).returncode == 0
    assert _lsb(script, "status", node_root).returncode == 0
    deadline = time.monotonic() + 10
    while sum(r["event"] == "alive" for r in lab_services.read_ledger(ledger)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _lsb(script, "stop", node_root).returncode == 0
    assert _lsb(script, "status", node_root).returncode == 3
    records = lab_services.read_ledger(ledger)
    events = [r["event"] for r in records]
    assert events[0] == "start" and events[-1] == "stop" and events.count("alive") >= 2
    assert {(r["service"], r["node"]) for r in records} == {("svc1", "node7")}
    assert len({r["instance"] for r in records}) == 1
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)


def test_lab_kill_records_off_in_the_ledger_and_ends_the_service_run(tmp_path: Path) -> None:
    from tests.nemesis import intervals

    lab = Lab(tmp_path / "lab")
    ledger = tmp_path / "ledger.jsonl"
    lab.create(["node1"], "labcluster", free_block(1), 11111, services=lab_services.ledger_services(1, ledger))
    lab.set_ledger(ledger)
    assert lab.ledger == ledger and json.loads(lab.state_path.read_text())["ledger"] == str(ledger)
    try:
        lab.up(no_daemons=True)
        assert lab.exec("node1", [str(lab.directory / "_lab/svc1"), "start"]) == 0
        time.sleep(0.5)
        lab.kill("node1")  # kill -9: the service's process dies with the node, no stop is written
        records = lab_services.read_ledger(ledger)
        assert [r["event"] for r in records if r["event"] != "alive"] == ["start", "off"]
        assert records[-1]["node"] == "node1" and records[-1]["cause"] == "kill"
        [run] = intervals(records)
        assert run.ended_by in ("off", "silence") and run.end <= records[-1]["time"]
        lab.start("node1")
        lab.stop("node1")
        assert lab_services.read_ledger(ledger)[-1]["cause"] == "stop"
    finally:
        _stop(lab)
