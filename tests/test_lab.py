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
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cluster_conf import ClusterConf, validate
from cluster_conf.model import view
from ricci_agent import keys
from ricci_agent.lab import (
    AGENT_OUTPUT,
    CLIENT_DIR,
    Lab,
    LabError,
    LabNode,
    free_block,
    free_port,
    group_members,
    lab_cluster_conf,
    node_address,
    node_names,
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
        lab.up(nodes=3, first_address=free_block(3))
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
        up = _manage("up", "--node-names", "alpha,beta", "--name", "webfarm", "--dir", lab_dir, "--port", str(port))
        assert up.returncode == 0, up.stderr
        assert f"Lab webfarm is up in {lab_dir} (2 nodes):" in up.stdout
        assert f"alpha        127.0.0.11:{port}" in up.stdout
        status = _manage("status", "--dir", lab_dir)
        assert status.returncode == 0 and status.stdout.count("answering") == 2, status.stdout
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
