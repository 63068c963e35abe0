"""clustat against real unix sockets: canned cmand and rgmanager `status` replies served by small server threads
(cman.control.listen + handle_line) at both socket paths under a temporary CLUSTER_ROOT.

`python -m tests.test_clustat` prints the wall time of clustat on a 16-node, 1000-service cluster (bench_clustat).
"""
from __future__ import annotations

import copy
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cman.control import SOCKET as CMAN_SOCKET
from cman.control import handle_line, listen
from rgmanager.cli import clustat

BIN = Path(sys.executable).parent
RG_SOCKET = clustat.RG_SOCKET

CMAN_STATUS: dict[str, Any] = {
    "node": {"name": "node1", "nodeid": 1},
    "cluster": {"name": "labcluster", "id": 4242},
    "generation": 3001,
    "quorum": {"quorate": True},
    "nodes": [{"nodeid": 1, "name": "node1", "state": "M", "local": True},
              {"nodeid": 2, "name": "node2", "state": "M", "local": False},
              {"nodeid": 3, "name": "node3", "state": "X", "local": False}],
    "qdisk": None,
}


def _svc(name: str, state: int, owner: str | None, last: str | None, flags: int = 0) -> dict[str, Any]:
    words = ",".join(w for bit, w in ((1, "frozen"), (2, "partial")) if flags & bit)
    return {"name": name, "state": state, "state_str": clustat.State(state).label, "flags": flags,
            "flags_str": words, "owner": owner, "last_owner": last, "restarts": 0,
            "last_transition": 1795254601.25}


RG_STATUS: dict[str, Any] = {
    "local": "node1", "master": "node1", "quorate": True, "locked": False,
    "cluster": {"name": "labcluster", "id": 4242, "generation": 3001},
    "table_version": [3001, 17],
    "members": [
        {"name": "node1", "nodeid": 1, "online": True, "local": True, "rgmanager": True, "master": True,
         "estranged": False, "qdisk": False},
        {"name": "node2", "nodeid": 2, "online": True, "local": False, "rgmanager": True, "master": False,
         "estranged": False, "qdisk": False},
        {"name": "node3", "nodeid": 3, "online": False, "local": False, "rgmanager": False, "master": False,
         "estranged": False, "qdisk": False},
    ],
    "services": [_svc("service:web", 112, "node1", "node2"),
                 _svc("service:db", 110, None, "node2"),
                 _svc("service:frozen", 112, "node2", "node1", flags=1),
                 _svc("vm:guest", 119, None, None)],
}


class FakeDaemon:
    """A daemon's control socket answering `status` with a canned reply (or, `hang`, never answering).
    Lives at most 60 s; stop() closes everything."""

    def __init__(self, root: Path, socket_name: str, status: dict[str, Any] | None, *, hang: bool = False) -> None:
        self.status, self.hang = status, hang
        self.sock = listen(root, socket_name)
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        held: list[socket.socket] = []
        until = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < until:
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            conn, _ = self.sock.accept()
            self.requests += 1
            if self.hang:
                held.append(conn)
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(handle_line(data.split(b"\n")[0], {"status": lambda _m: self.status}))
        for conn in held:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.daemons: list[FakeDaemon] = []

    def serve(self, socket_name: str, status: dict[str, Any] | None, *, hang: bool = False) -> FakeDaemon:
        daemon = FakeDaemon(self.root, socket_name, status, hang=hang)
        self.daemons.append(daemon)
        return daemon

    def both(self, cman: dict[str, Any] | None = None, rg: dict[str, Any] | None = None) -> None:
        self.serve(CMAN_SOCKET, cman or CMAN_STATUS)
        self.serve(RG_SOCKET, rg or RG_STATUS)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    c = Cluster(tmp_path)
    yield c
    for daemon in c.daemons:
        daemon.stop()


def clustat_run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = clustat.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


MEMBERS_TABLE = [
    " Member Name                             ID   Status",
    " ------ ----                             ---- ------",
    " node1                                       1 Online, Local, RG-Master",
    " node2                                       2 Online, rgmanager",
    " node3                                       3 Offline",
]
SERVICES_TABLE = [
    " Service Name                   Owner (Last)                   State         ",
    " ------- ----                   ----- ------                   -----         ",
    " service:db                     (node2)                        stopped       ",
    " service:frozen                 node2                          started    [Z]",
    " service:web                    node1                          started       ",
    " vm:guest                       (none)                         disabled      ",
]


def _check_head(out: str, quorum: str) -> list[str]:
    lines = out.split("\n")
    assert lines[0].startswith("Cluster Status for labcluster @ ")
    time.strptime(lines[0].split(" @ ", 1)[1], "%a %b %d %H:%M:%S %Y")  # ctime's layout
    assert lines[1] == f"Member Status: {quorum}"
    return lines[2:]


# -- the text layout -----------------------------------------------------------------------------------------
def test_quorate_text_layout_exactly(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.both()
    code, out, err = clustat_run(capsys)
    assert (code, err) == (0, "")
    assert _check_head(out, "Quorate") == ["", *MEMBERS_TABLE, "", *SERVICES_TABLE, ""]


def test_inquorate_cluster_and_partial_flag(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cman = copy.deepcopy(CMAN_STATUS)
    cman["quorum"]["quorate"] = False
    rg = copy.deepcopy(RG_STATUS)
    rg["services"] = [_svc("service:web", 112, "node1", None, flags=3), _svc("service:x", 117, "node2", "node2"),
                      _svc("service:y", 114, "node1", "nodeX")]
    cluster.both(cman, rg)
    code, out, _ = clustat_run(capsys)
    assert code == 0
    _check_head(out, "Inquorate")
    tail = out.split("\n")[-5:]
    assert tail == [" ------- ----                   ----- ------                   -----         ",
                    " service:web                    node1                          started   [ZP]",
                    " service:x                      (node2)                        recoverable   ",
                    " service:y                      (unknown)                      failed        ",
                    ""]


def test_quorum_disk_is_member_zero_and_rgmanager_flags_merge(cluster: Cluster,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cman = copy.deepcopy(CMAN_STATUS)
    cman["qdisk"] = {"device": "/shared/qdisk", "alive": True, "votes": 1}
    rg = copy.deepcopy(RG_STATUS)
    rg["members"].append({"name": "node9", "nodeid": 9, "online": True, "local": False, "rgmanager": True,
                          "master": False, "estranged": True, "qdisk": False})
    cluster.both(cman, rg)
    _, out, _ = clustat_run(capsys)
    lines = out.split("\n")
    assert lines[5] == " /shared/qdisk                               0 Online, Quorum Disk"
    assert lines[6:9] == MEMBERS_TABLE[2:]
    assert lines[9] == " node9                                       9 Online, Estranged, rgmanager"


def test_widths_follow_the_terminal_only_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot = clustat.snapshot_from(CMAN_STATUS, RG_STATUS, "running")
    text = clustat.format_text(snapshot, cols=100, now=0)
    assert " node1" + " " * 45 + "    1 Online, Local, RG-Master" in text  # name width 50
    assert " service:web" + " " * 29 + " node1" + " " * 35 + " started       " in text  # 40 and 40
    monkeypatch.setenv("COLUMNS", "100")
    assert clustat.terminal_columns() == 80  # pytest's stdout is not a terminal


def test_long_format_blocks(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.both()
    code, out, _ = clustat_run(capsys, "-l", "-s", "frozen")
    assert code == 0
    stamp = time.ctime(1795254601.25)
    assert out == ("Service Information\n------- -----------\n\n"
                   "Service Name      : service:frozen\n"
                   "  Current State   : started (112)\n"
                   "  Flags           : frozen (1)\n"
                   "  Owner           : node2\n"
                   "  Last Owner      : node1\n"
                   f"  Last Transition : {stamp}\n")
    code, out, _ = clustat_run(capsys, "-l")
    assert out.count("Service Name      : ") == 4
    assert "  Flags           : none (0)\n  Owner           : none\n  Last Owner      : node2\n" in out
    assert out.index("Member Name") < out.index("Service Information")


# -- XML -----------------------------------------------------------------------------------------------------
def test_xml_whole_cluster(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.both()
    code, out, _ = clustat_run(capsys, "-x")
    assert code == 0
    stamp = time.ctime(1795254601.25)
    lines = out.split("\n")
    assert lines[:5] == ['<?xml version="1.0"?>', '<clustat version="4.1.1">',
                         '  <cluster name="labcluster" id="4242" generation="3001"/>',
                         '  <quorum quorate="1" groupmember="1"/>', "  <nodes>"]
    assert lines[5] == ('    <node name="node1" state="1" local="1" estranged="0" rgmanager="1" rgmanager_master="1" '
                        'qdisk="0" nodeid="0x00000001"/>')
    assert lines[7] == ('    <node name="node3" state="0" local="0" estranged="0" rgmanager="0" rgmanager_master="0" '
                        'qdisk="0" nodeid="0x00000003"/>')
    assert lines[8:10] == ["  </nodes>", "  <groups>"]
    assert lines[10] == ('    <group name="service:db" state="110" state_str="stopped" flags="0" flags_str="" '
                         'owner="none" last_owner="node2" restarts="0" last_transition="1795254601" '
                         f'last_transition_str="{stamp}"/>')
    assert lines[-3:] == ["  </groups>", "</clustat>", ""]
    from xml.etree import ElementTree

    root = ElementTree.fromstring(out)
    assert [g.get("name") for g in root.iter("group")] == ["service:db", "service:frozen", "service:web", "vm:guest"]


def test_xml_inquorate_newline_quirk_and_filters(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cman = copy.deepcopy(CMAN_STATUS)
    cman["quorum"]["quorate"] = False
    cluster.both(cman)
    _, out, _ = clustat_run(capsys, "-x")
    assert '  <quorum quorate="0"\n groupmember="1"/>\n' in out
    code, out, _ = clustat_run(capsys, "-x", "-m", "node3")
    assert code == 1
    assert out == ('<?xml version="1.0"?>\n<clustat version="4.1.1">\n  <nodes>\n'
                   '    <node name="node3" state="0" local="0" estranged="0" rgmanager="0" rgmanager_master="0" '
                   'qdisk="0" nodeid="0x00000003"/>\n  </nodes>\n</clustat>\n')
    code, out, _ = clustat_run(capsys, "-x", "-s", "web")
    assert code == 0
    assert "<cluster" not in out and "<quorum" not in out and "<nodes>" not in out
    assert out.count("<group ") == 1 and 'name="service:web"' in out


# -- exit codes ----------------------------------------------------------------------------------------------
def test_service_exit_codes(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.both()
    code, out, _ = clustat_run(capsys, "-s", "web")
    assert code == 0
    assert out.split("\n") == [*SERVICES_TABLE[:2], SERVICES_TABLE[4], ""]
    assert clustat_run(capsys, "-s", "service:db")[0] == 110
    assert clustat_run(capsys, "-s", "vm:guest")[0] == 119
    code, out, err = clustat_run(capsys, "-s", "nosuch")
    assert (code, out) == (255, "")
    assert err == "clustat: service 'service:nosuch' does not exist\n"


def test_member_and_quorum_exit_codes(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cman = copy.deepcopy(CMAN_STATUS)
    cluster.both(cman)
    code, out, _ = clustat_run(capsys, "-m", "node2")
    assert code == 0
    assert out.split("\n") == [*MEMBERS_TABLE[:2], MEMBERS_TABLE[3], ""]
    assert clustat_run(capsys, "-m", "node3")[0] == 1
    code, _, err = clustat_run(capsys, "-m", "nodeX")
    assert code == 1 and err == "clustat: member 'nodeX' is not in the membership list\n"
    assert clustat_run(capsys, "-Q") == (0, "", "")
    cman["quorum"]["quorate"] = False  # the fake daemon serves this very dict
    assert clustat_run(capsys, "-Q") == (1, "", "")
    assert clustat_run(capsys, "-I") == (0, "0x00000001\n", "")


# -- daemons missing or silent -------------------------------------------------------------------------------
def test_rgmanager_not_running_still_shows_members(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.serve(CMAN_SOCKET, CMAN_STATUS)
    code, out, _ = clustat_run(capsys)
    assert code == 0
    assert _check_head(out, "Quorate") == [
        "", *MEMBERS_TABLE[:2], " node1                                       1 Online, Local",
        " node2                                       2 Online", MEMBERS_TABLE[4], "",
        "Resource Group Manager not running; no service information available.", ""]
    assert clustat_run(capsys, "-s", "web") == (1, f"{clustat.RG_NOT_RUNNING_TEXT}\n", "")
    data = json.loads(clustat_run(capsys, "--json")[1])
    assert (data["rgmanager"], data["services"], data["quorum"]["groupmember"]) == ("not_running", None, False)


def test_cman_not_running(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert clustat_run(capsys) == (1, "", "Could not connect to CMAN: Connection refused\n")
    assert clustat_run(capsys, "-Q")[0] == 1


def test_silent_rgmanager_times_out_within_two_seconds(cluster: Cluster,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cluster.serve(CMAN_SOCKET, CMAN_STATUS)
    cluster.serve(RG_SOCKET, None, hang=True)
    started = time.monotonic()
    code, out, _ = clustat_run(capsys)
    assert time.monotonic() - started < 2.2
    assert code == 0
    assert out.endswith("\n\nTimed out waiting for a response from Resource Group Manager\n")
    assert " node2                                       2 Online\n" in out


def test_silent_cman_is_reported_not_waited_for(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.serve(CMAN_SOCKET, None, hang=True)
    started = time.monotonic()
    assert clustat_run(capsys) == (1, "", "Could not connect to CMAN: Connection timed out\n")
    assert time.monotonic() - started < 2.2


def test_fast_mode_asks_rgmanager_alone(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cman = cluster.serve(CMAN_SOCKET, CMAN_STATUS)
    cluster.serve(RG_SOCKET, RG_STATUS)
    code, out, _ = clustat_run(capsys, "-f")
    assert code == 0 and cman.requests == 0
    assert _check_head(out, "Quorate") == ["", *MEMBERS_TABLE, "", *SERVICES_TABLE, ""]


# -- options -------------------------------------------------------------------------------------------------
def test_interval_with_xml_is_refused(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert clustat_run(capsys, "-i", "1", "-x") == (1, "", "Error: Options '-i' and '-x' are mutually exclusive\n")


def test_interval_refreshes_count_times(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cman = cluster.serve(CMAN_SOCKET, CMAN_STATUS)
    cluster.serve(RG_SOCKET, RG_STATUS)
    code, out, _ = clustat_run(capsys, "-i", "0.1", "--count", "3")
    assert code == 0 and cman.requests == 3
    assert out.count(clustat.CLEAR_SCREEN) == 3 and out.count("Cluster Status for labcluster") == 3
    assert clustat_run(capsys, "-i", "0")[0] == 1
    assert clustat_run(capsys, "-i", "1", "--count", "0")[2] == "clustat: argument to --count must be at least 1\n"


def test_interval_stops_cleanly_on_ctrl_c(cluster: Cluster) -> None:
    cluster.both()
    env = {**os.environ, "CLUSTER_ROOT": str(cluster.root)}
    proc = subprocess.Popen([str(BIN / "clustat"), "-i", "0.2"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        proc.send_signal(2)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and err == ""
    assert out.count(clustat.CLEAR_SCREEN) >= 2


def test_version_help_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = clustat_run(capsys, "-v")
    assert code == 0 and out.startswith("clustat version ") and out.count("\n") == 1
    code, out, _ = clustat_run(capsys, "-h")
    assert code == 0 and "-i <interval>" in out and "--json" in out
    code, _, err = clustat_run(capsys, "-z")
    assert code == 1 and err.startswith("clustat: unrecognized arguments: -z")


def test_json_shape(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.both()
    code, out, _ = clustat_run(capsys, "--json")
    data = json.loads(out)
    assert code == 0
    assert set(data) == {"cluster", "quorum", "rgmanager", "members", "services"}
    assert data["cluster"] == {"name": "labcluster", "id": 4242, "generation": 3001}
    assert data["quorum"] == {"quorate": True, "groupmember": True}
    assert data["members"][0] == {"name": "node1", "nodeid": 1, "online": True, "local": True, "estranged": False,
                                  "rgmanager": True, "master": True, "qdisk": False}
    assert [s["name"] for s in data["services"]] == ["service:db", "service:frozen", "service:web", "vm:guest"]
    assert set(data["services"][0]) == set(clustat.SERVICE_KEYS)
    filtered = json.loads(clustat_run(capsys, "--json", "-s", "db")[1])
    assert [s["name"] for s in filtered["services"]] == ["service:db"]


# -- the installed command, and its speed --------------------------------------------------------------------
def big_cluster(nodes: int = 16, services: int = 1000) -> tuple[dict[str, Any], dict[str, Any]]:
    names = [f"node{i}" for i in range(1, nodes + 1)]
    cman = copy.deepcopy(CMAN_STATUS)
    cman["nodes"] = [{"nodeid": i, "name": n, "state": "M", "local": i == 1} for i, n in enumerate(names, 1)]
    rg = copy.deepcopy(RG_STATUS)
    rg["members"] = [{"name": n, "nodeid": i, "online": True, "local": i == 1, "rgmanager": True,
                      "master": i == 1, "estranged": False, "qdisk": False} for i, n in enumerate(names, 1)]
    rg["services"] = [_svc(f"service:svc{k:04d}", (112, 110, 119)[k % 3], names[k % nodes],
                           names[(k + 1) % nodes], flags=k % 4) for k in range(services)]
    return cman, rg


def test_installed_command_on_a_big_cluster(cluster: Cluster) -> None:
    cman, rg = big_cluster()
    cluster.both(cman, rg)
    env = {**os.environ, "CLUSTER_ROOT": str(cluster.root)}
    done = subprocess.run([str(BIN / "clustat")], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert sum(line.startswith(" service:svc") for line in lines) == 1000
    assert sum(" Online, " in line for line in lines) == 16
    assert " service:svc0001                node2                          stopped    [Z]" not in lines
    assert " service:svc0001                (node3)                        stopped    [Z]" in lines
    imported = subprocess.run([sys.executable, "-c", "import sys, rgmanager.cli.clustat; "
                               "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                               "('django', 'paramiko')))"], capture_output=True, text=True, timeout=30)
    assert imported.stdout.strip() == "[]"


def bench_clustat(runs: int = 20) -> float:
    """The median wall time (s) of `clustat` as a process on a 16-node, 1000-service cluster."""
    cman, rg = big_cluster()
    with tempfile.TemporaryDirectory() as tmp:
        c = Cluster(Path(tmp))
        c.both(cman, rg)
        env = {**os.environ, "CLUSTER_ROOT": tmp}
        try:
            times = []
            for _ in range(runs + 1):
                started = time.perf_counter()
                subprocess.run([str(BIN / "clustat")], env=env, stdout=subprocess.DEVNULL, check=True, timeout=30)
                times.append(time.perf_counter() - started)
        finally:
            for daemon in c.daemons:
                daemon.stop()
    return statistics.median(times[1:])


if __name__ == "__main__":
    print(f"clustat, 16 nodes, 1000 services: median {bench_clustat() * 1000:.1f} ms wall")
