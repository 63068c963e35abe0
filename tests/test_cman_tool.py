"""cman_tool status/nodes/fence/join/leave/wait/expected (rhcs-facts §4.4): the output layout from the daemon's
status dict, and the commands against a small fake daemon (a real process serving cman.control on a real unix
socket), since cmand itself is tested elsewhere."""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_conf.cli.common import suite_version
from cman.cli import cman_tool
from cman.control import PIDFILE

BIN = Path(sys.executable).parent
JOINED = time.mktime((2025, 11, 21, 9, 30, 5, 0, 0, -1))
JOINED_TEXT = "2025-11-21 09:30:05"

STATUS = {
    "node": {"name": "node1", "nodeid": 1, "address": "127.0.0.11", "votes": 1, "incarnation": 1763712345123},
    "cluster": {"name": "labcluster", "id": 4242, "config_version": 3, "port": 5405, "two_node": False,
                "token_ms": 1000},
    "membership_state": "Cluster-Member",
    "generation": 3001, "coordinator": 1, "view_confirmed": True, "members": [1, 2, 3],
    "nodes": [
        {"nodeid": 2, "name": "node2", "state": "M", "incarnation": 1763712399001, "joined": JOINED,
         "addresses": ["127.0.0.12"], "votes": 1, "expected": 3, "config_version": 3, "fenced_at": None},
        {"nodeid": 1, "name": "node1", "state": "M", "incarnation": 1763712345123, "joined": JOINED,
         "addresses": ["127.0.0.11", "10.0.0.1"], "votes": 1, "expected": 3, "config_version": 3,
         "fenced_at": None},
        {"nodeid": 3, "name": "node3", "state": "X", "incarnation": 0, "joined": None,
         "addresses": ["127.0.0.13"], "votes": 2, "expected": 4, "config_version": 3, "fenced_at": JOINED},
    ],
    "quorum": {"expected_votes": 3, "total_votes": 3, "node_votes": 1, "quorum": 2, "quorate": True,
               "qdisk_votes": 0},
    "qdisk": None,
    "fencing": {"node3": {"state": "succeeded", "message": "", "since": JOINED, "next_retry": None,
                          "method": "1", "device": "labfence", "agent": "fence_lab"}},
    "flags": [], "activity_blocked": False, "ports_bound": [0], "multicast": "239.192.16.146",
    "active_subsystems": 1,
}


def status(**changes: object) -> dict:
    result = copy.deepcopy(STATUS)
    result.update(changes)
    return result


# -- status --------------------------------------------------------------------------------------------------
def test_status_layout_of_a_quorate_member() -> None:
    assert cman_tool.format_status(STATUS, "1.2.3") == (
        "Version: 1.2.3\n"
        "Config Version: 3\n"
        "Cluster Name: labcluster\n"
        "Cluster Id: 4242\n"
        "Cluster Member: Yes\n"
        "Cluster Generation: 3001\n"
        "Membership state: Cluster-Member\n"
        "Nodes: 3\n"
        "Expected votes: 3\n"
        "Total votes: 3\n"
        "Node votes: 1\n"
        "Quorum: 2  \n"
        "Active subsystems: 1\n"
        "Flags: \n"
        "Ports Bound: 0\n"
        "Node name: node1\n"
        "Node ID: 1\n"
        "Multicast addresses: 239.192.16.146\n"
        "Node addresses: 127.0.0.11\n"
    )


def test_inquorate_says_activity_blocked() -> None:
    text = cman_tool.format_status(status(members=[1], quorum={
        "expected_votes": 3, "total_votes": 1, "node_votes": 1, "quorum": 2, "quorate": False, "qdisk_votes": 0},
        activity_blocked=True), "1.2.3")
    assert "Nodes: 1\nExpected votes: 3\nTotal votes: 1\nNode votes: 1\nQuorum: 2 Activity blocked\n" in text


def test_two_node_flag_and_qdisk_votes_only_when_the_qdisk_is_alive() -> None:
    qdisk = {"device": "/lab/qdisk", "alive": True, "score": 1, "min_score": 1, "master": 1, "is_master": True,
             "votes": 1, "claims_votes": True, "heuristics": []}
    quorum = {"expected_votes": 3, "total_votes": 3, "node_votes": 1, "quorum": 2, "quorate": True,
              "qdisk_votes": 1}
    alive = cman_tool.format_status(status(flags=["2node", "HaveState"], qdisk=qdisk, quorum=quorum), "1")
    assert "Flags: 2node HaveState \n" in alive
    assert "Expected votes: 3\nQuorum device votes: 1\nTotal votes: 3\n" in alive
    dead = cman_tool.format_status(status(qdisk={**qdisk, "alive": False}, quorum=quorum), "1")
    assert "Quorum device votes" not in dead
    assert "Quorum device votes" not in cman_tool.format_status(STATUS, "1")


def test_joining_node_and_disallowed_nodes() -> None:
    nodes = copy.deepcopy(STATUS["nodes"])
    nodes[2]["state"] = "d"
    text = cman_tool.format_status(status(membership_state="Joining", nodes=nodes), "1")
    assert "Cluster Member: No\n" in text and "Membership state: Joining\n" in text
    assert text.endswith("Node addresses: 127.0.0.11\nDisallowed nodes: node3\n")


# -- nodes ---------------------------------------------------------------------------------------------------
def test_nodes_table() -> None:
    assert cman_tool.format_nodes(STATUS) == (
        "Node  Sts   Inc   Joined               Name\n"
        f"   1   M  45123   {JOINED_TEXT}  node1\n"
        f"   2   M  99001   {JOINED_TEXT}  node2\n"
        f"   3   X      0   {' ' * 19}  node3\n"
    )


def test_nodes_addresses_name_filter_and_fencing() -> None:
    assert cman_tool.format_nodes(STATUS, addresses=True, name="node1") == (
        "Node  Sts   Inc   Joined               Name\n"
        f"   1   M  45123   {JOINED_TEXT}  node1\n"
        "       Addresses: 127.0.0.11 10.0.0.1\n"
    )
    fenced = cman_tool.format_nodes(STATUS, fenced=True)
    assert fenced.endswith(f"node3\n       Last fenced:   {JOINED_TEXT} by fence_lab\n")
    failing = status(fencing={"node3": {"state": "failed", "message": "agent timed out", "since": JOINED,
                                        "next_retry": JOINED + 20, "method": "1", "device": "labfence",
                                        "agent": "fence_lab"}})
    assert ("       Fencing:       failed since 2025-11-21 09:30:05 (method 1, device labfence, agent fence_lab) "
            "- agent timed out - next retry 2025-11-21 09:30:25\n") in cman_tool.format_nodes(failing, fenced=True)
    with pytest.raises(cman_tool.CliError, match="node9 is not in the cluster configuration"):
        cman_tool.format_nodes(STATUS, name="node9")


def test_disallowed_note_comes_first() -> None:
    nodes = copy.deepcopy(STATUS["nodes"])
    nodes[0]["state"] = "d"
    text = cman_tool.format_nodes(status(nodes=nodes))
    assert text.startswith("NOTE: There are 1 disallowed nodes,\n"
                           "      members list may seem inconsistent across the cluster\n"
                           "Node  Sts   Inc   Joined               Name\n")
    assert f"   2   d  99001   {JOINED_TEXT}  node2\n" in text


def test_nodes_fields() -> None:
    fields = cman_tool.parse_fields("id,name,type,addr,votes,exp,state")
    assert cman_tool.format_nodes(STATUS, fields=fields) == (
        "1 node1 M 127.0.0.11 1 3 Member\n"
        "2 node2 M 127.0.0.12 1 3 Member\n"
        "3 node3 X 127.0.0.13 2 4 Not-member\n"
    )
    assert cman_tool.format_nodes(STATUS, fields=["name", "id"], name="node2") == "node2 2\n"
    with pytest.raises(cman_tool.UsageError, match="unknown field 'nope' in -F"):
        cman_tool.parse_fields("id,nope")


def test_fence_summary_and_history() -> None:
    assert cman_tool.format_fencing({}) == "No fencing actions\n"
    assert cman_tool.format_fencing(STATUS["fencing"]) == (
        "node3: succeeded since 2025-11-21 09:30:05 (method 1, device labfence, agent fence_lab)\n")
    history = [{"time": JOINED, "actor": "node1", "node": "node3", "action": "fence", "status": "error",
                "method": "1", "device": "labfence", "agent": "fence_lab", "message": "timed out", "attempts": []},
               {"time": JOINED + 5, "node": "node3", "action": "fence", "status": "success", "agent": "fence_lab"}]
    assert cman_tool.format_fence_history(history) == (
        f"{JOINED_TEXT}  node3  fence error  method 1 device labfence agent fence_lab  timed out  (by node1)\n"
        "2025-11-21 09:30:10  node3  fence success  agent fence_lab\n")
    assert cman_tool.format_fence_history({"history": history[1:]}) == (
        "2025-11-21 09:30:10  node3  fence success  agent fence_lab\n")
    assert cman_tool.format_fence_history([]) == "No fence history\n"


# -- without a daemon ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [["status"], ["nodes"], ["nodes", "-F", "id"], ["fence"], ["expected", "-e", "2"],
                                  ["leave"], ["wait", "-t", "0.3"], ["fence", "--history"]])
def test_not_running(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    assert cman_tool.main(argv) == 1
    assert capsys.readouterr() == ("", "cman_tool: Cannot open connection to cman, is it running ?\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["votes", "-v", "2"], "cman_tool: 'votes' is not supported by this cluster manager\n"),
        (["kill", "-n", "node2"], "cman_tool: 'kill' is not supported by this cluster manager\n"),
        (["expected", "-e", "x"], "cman_tool: argument to -e (x) is not an integer\n"),
        (["expected"], "cman_tool: the following arguments are required: -e; try 'cman_tool expected -h'\n"),
        (["nodes", "-F", "id,bogus"], "cman_tool: unknown field 'bogus' in -F; fields are "
                                      "id,name,type,addr,votes,exp,state\n"),
        (["leave", "now"], "cman_tool: unknown leave option 'now'; use remove and/or force\n"),
        (["wait", "-t", "soon"], "cman_tool: argument to -t (soon) is not a number of seconds\n"),
    ],
)
def test_usage_errors(argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    assert cman_tool.main(argv) == 1
    assert capsys.readouterr() == ("", message)


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cman_tool.main(["-h"]) == 0
    out = capsys.readouterr().out
    assert "<join|leave|expected|version|wait|status|nodes|fence>" in out and "-F <fields>" in out


def test_daemon_command(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cman_tool.daemon_command({"CMAN_DAEMON": "/usr/bin/env python3 -X dev fake.py"}) == [
        "/usr/bin/env", "python3", "-X", "dev", "fake.py"]
    default = cman_tool.daemon_command({})
    assert default in ([str(BIN / "cmand")], [sys.executable, "-m", "cman.daemon"])


# -- against a fake daemon -----------------------------------------------------------------------------------
FAKE_DAEMON = textwrap.dedent('''
    """A stand-in for cmand: serves the control socket; member after FAKE_MEMBER_AFTER s, quorate after
    FAKE_QUORATE_AFTER s; exits on `leave`; FAKE_FAIL makes it die at once. Lives at most 60 s."""
    import json, os, select, sys, time
    from pathlib import Path
    from cman.control import ControlError, handle_line, listen, PIDFILE

    root = Path(os.environ["CLUSTER_ROOT"])
    if os.environ.get("FAKE_FAIL"):
        print("cmand: starting")
        print("cmand: no cluster key at etc/cluster/authkey", flush=True)
        sys.exit(3)
    started = time.monotonic()
    state = {"expected": 3, "leave": None}
    member_after = float(os.environ.get("FAKE_MEMBER_AFTER", "0"))
    quorate_after = float(os.environ.get("FAKE_QUORATE_AFTER", "0"))

    def status(message):
        age = time.monotonic() - started
        return {"membership_state": "Cluster-Member" if age >= member_after else "Joining",
                "quorum": {"expected_votes": state["expected"], "quorate": age >= quorate_after},
                "node": {"name": "node1", "nodeid": 1}, "nodes": [], "members": [1]}

    def expected(message):
        if message["votes"] > 10:
            raise ControlError("bad_expected", f"cannot set expected votes to {message['votes']}: "
                               "quorum would exceed the total votes")
        state["expected"] = message["votes"]
        return {}

    def leave(message):
        state["leave"] = {"remove": message["remove"], "force": message["force"]}
        return {}

    sock = listen(root)
    pidfile = root / PIDFILE
    pidfile.write_text(f"{os.getpid()}\\n")
    print("cmand: running", flush=True)
    handlers = {"status": status, "expected": expected, "leave": leave}
    while time.monotonic() - started < 60 and state["leave"] is None:
        ready, _, _ = select.select([sock], [], [], 0.1)
        if not ready:
            continue
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(2)
            data = conn.recv(65536)
            conn.sendall(handle_line(data.split(b"\\n")[0], handlers))
    (root / "leave.json").write_text(json.dumps(state["leave"]))
    time.sleep(0.3)  # a daemon takes a moment to leave: cman_tool leave waits for it
    pidfile.unlink()
    (root / "var/run/cluster/cman.sock").unlink()
''')


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Path]:
    """A node root with the fake daemon script; any daemon left running is killed at the end."""
    (tmp_path / "fake_cmand.py").write_text(FAKE_DAEMON)
    yield tmp_path
    for pid in fake_daemons(tmp_path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def fake_daemons(root: Path) -> list[int]:
    """Pids of the fake daemons of this node root (found by the script's path in their command line)."""
    script = str(root / "fake_cmand.py").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if script in (entry / "cmdline").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
    return pids


def tool(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CLUSTER_ROOT": str(root),
               "CMAN_DAEMON": f"{sys.executable} {root / 'fake_cmand.py'}", **env}
    return subprocess.run([str(BIN / "cman_tool"), *args], env=environ, capture_output=True, text=True,
                          timeout=60, check=False)


def daemon_pid(root: Path) -> int:
    return int((root / PIDFILE).read_text())


def test_join_starts_the_daemon_in_our_process_group_then_leave_stops_it(node: Path) -> None:
    result = tool(node, "join", "-w", "-t", "10", FAKE_MEMBER_AFTER="0.5")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    pid = daemon_pid(node)
    assert os.getpgid(pid) == os.getpgrp()  # the lab stops/kills a node by process group
    assert fake_daemons(node) == [pid]
    assert (node / "var/log/cluster/cmand.out").read_text() == "cmand: running\n"
    assert Path(f"/proc/{pid}/cwd").resolve() == node.resolve()
    assert tool(node, "wait", "-q", "-t", "5").returncode == 0

    again = tool(node, "join")
    assert (again.returncode, again.stderr) == (1, "cman_tool: Node is already active\n")

    left = tool(node, "leave", "remove", "-t", "10")
    assert (left.returncode, left.stderr) == (0, "")
    assert json.loads((node / "leave.json").read_text()) == {"remove": True, "force": False}
    assert not cman_tool._alive(pid)  # leave returned only once the daemon was gone
    assert not (node / PIDFILE).exists()
    assert [p for p in fake_daemons(node) if cman_tool._alive(p)] == []
    gone = tool(node, "leave")
    assert (gone.returncode, gone.stderr) == (1, "cman_tool: Cannot open connection to cman, is it running ?\n")


def test_join_reports_a_daemon_that_dies_at_once(node: Path) -> None:
    result = tool(node, "join", "-t", "10", FAKE_FAIL="1")
    assert result.returncode == 1
    assert result.stderr == ("cman_tool: cmand exited with status 3 before it answered: cmand: starting | "
                             "cmand: no cluster key at etc/cluster/authkey\n")


def test_join_q_times_out_while_inquorate_and_wait_follows_quorum(node: Path) -> None:
    result = tool(node, "join", "-q", "-t", "0.5", FAKE_QUORATE_AFTER="30")
    assert result.returncode == 1
    assert result.stderr.startswith("cman_tool: cmand started but the cluster is not quorate within 0.5 s; "
                                    "it keeps trying")
    assert tool(node, "wait", "-t", "5").returncode == 0  # a member already, not quorate
    waited = tool(node, "wait", "-q", "-t", "0.3")
    assert (waited.returncode, waited.stderr) == (1, "cman_tool: timed out after 0.3 s: the cluster is not "
                                                     "quorate\n")
    assert tool(node, "leave", "force").returncode == 0
    assert json.loads((node / "leave.json").read_text()) == {"remove": False, "force": True}


def test_expected_and_status_json_through_the_daemon(node: Path) -> None:
    assert tool(node, "join", "-t", "10").returncode == 0
    assert tool(node, "expected", "-e", "5").returncode == 0
    shown = tool(node, "status", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["quorum"]["expected_votes"] == 5
    refused = tool(node, "expected", "-e", "11")
    assert (refused.returncode, refused.stderr) == (
        1, "cman_tool: cannot set expected votes to 11: quorum would exceed the total votes\n")
    text = tool(node, "status")
    assert text.returncode == 0
    assert text.stdout.startswith(f"Version: {suite_version()}\n")
    assert "Cluster Member: Yes\n" in text.stdout and "Expected votes: 5\n" in text.stdout
    assert tool(node, "leave").returncode == 0
