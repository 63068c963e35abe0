"""clusvcadm (rhcs-facts §4.2) against a fake rgmanager and a fake cmand served on real unix sockets under a
temporary CLUSTER_ROOT: the requests each option sends, the exact output lines, the result strings and exit
codes, member matching, and the refusals."""
from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cman.control import SOCKET as CMAN_SOCKET
from cman.control import ControlError, handle_line, listen
from rgmanager.cli import clusvcadm
from rgmanager.cli.clusvcadm import RG_SOCKET
from rgmanager.states import RGCode

REPO = Path(__file__).resolve().parents[1]
Handler = Callable[[Mapping[str, Any]], Any]


class FakeDaemon:
    """A control socket served by a thread: each request is recorded, then answered by `handlers`."""

    def __init__(self, root: Path, socket_name: str, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers
        self.drop: set[str] = set()  # commands whose connection is closed without an answer (a daemon dying)
        self.requests: list[dict[str, Any]] = []
        self.sock = listen(root, socket_name)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 60  # bounded even if a test forgets to stop it
        while not self.stopping.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            with contextlib.suppress(BlockingIOError):
                conn, _ = self.sock.accept()
                with conn:
                    self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        import json

        conn.setblocking(True)
        conn.settimeout(5)
        data = b""
        while b"\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        line = data.split(b"\n", 1)[0]
        self.requests.append(json.loads(line))
        if self.requests[-1]["command"] in self.drop:
            return
        with contextlib.suppress(OSError):
            conn.sendall(handle_line(line, self.handlers))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()

    def commands(self) -> list[str]:
        return [r["command"] for r in self.requests]

    def service_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["command"] == "service"]


NODES = [
    {"nodeid": 1, "name": "node1", "state": "M", "local": True},
    {"nodeid": 2, "name": "node2", "state": "M", "local": False},
    {"nodeid": 3, "name": "node3", "state": "X", "local": False},
    {"nodeid": 4, "name": "web-a.lab", "state": "M", "local": False},
    {"nodeid": 5, "name": "web-b.lab", "state": "M", "local": False},
    {"nodeid": 6, "name": "db1.lab", "state": "M", "local": False},
]


class Cluster:
    """A node root with a fake cmand (NODES) and a fake rgmanager whose `service` answer tests choose."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.reply: dict[str, Any] = {"code": 0, "text": "Success", "owner": "node1", "message": ""}
        self.locked = False
        self.cman: FakeDaemon | None = None
        self.rg: FakeDaemon | None = None

    def start_cman(self) -> None:
        self.cman = FakeDaemon(self.root, CMAN_SOCKET, {"status": lambda _: {"nodes": NODES, "members": [1, 2]}})

    def start_rgmanager(self, **extra: Handler) -> None:
        self.rg = FakeDaemon(self.root, RG_SOCKET, {
            "service": self._service, "lock": self._lock, "unlock": self._unlock,
            "lock_status": lambda _: {"locked": self.locked}, **extra})

    def _service(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.reply)

    def _lock(self, _: Mapping[str, Any]) -> dict[str, bool]:
        self.locked = True
        return {"locked": True}

    def _unlock(self, _: Mapping[str, Any]) -> dict[str, bool]:
        self.locked = False
        return {"locked": False}

    def stop(self) -> None:
        for daemon in (self.cman, self.rg):
            if daemon is not None:
                daemon.stop()


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    c = Cluster(tmp_path)
    c.start_cman()
    c.start_rgmanager()
    yield c
    c.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = clusvcadm.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- each action: the request it sends and its line ---------------------------------------------------------
@pytest.mark.parametrize(("argv", "op", "target", "line"), [
    (["-e", "web"], "enable", None, "Local machine trying to enable service:web...Success"),
    (["-e", "web", "-m", "node2"], "enable", "node2", "Member node2 trying to enable service:web...Success"),
    (["-e", "web", "-n", "node2"], "enable", "node2", "Member node2 trying to enable service:web...Success"),
    (["-d", "web"], "disable", None, "Local machine disabling service:web...Success"),
    (["-r", "web"], "relocate", None, "Trying to relocate service:web...Success"),
    (["-r", "web", "-m", "node2"], "relocate", "node2", "Trying to relocate service:web to node2...Success"),
    (["-M", "vm:guest", "-m", "node2"], "migrate", "node2", "Trying to migrate vm:guest to node2...Success"),
    (["-R", "web"], "restart", None, "Local machine trying to restart service:web...Success"),
    (["-s", "web"], "stop", None, "Local machine stopping service:web...Success"),
    (["-Z", "web"], "freeze", None, "Local machine freezing service:web...Success"),
    (["-U", "web"], "unfreeze", None, "Local machine unfreezing service:web...Success"),
    (["-c", "web"], "convalesce", None, "Local machine convalescing service:web...Success"),
])
def test_each_action_sends_its_request_and_prints_its_line(cluster: Cluster, capsys: pytest.CaptureFixture[str],
                                                           argv: list[str], op: str, target: str | None,
                                                           line: str) -> None:
    cluster.reply["owner"] = target or "node1"
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert out.splitlines()[0] == line
    assert cluster.rg is not None and cluster.cman is not None
    [sent] = cluster.rg.service_requests()
    service = argv[1] if ":" in argv[1] else f"service:{argv[1]}"
    assert sent == {"command": "service", "op": op, "service": service, "target": target, "policy": False}
    assert cluster.cman.commands() == ["status"]  # the cluster service is asked first, once


def test_enable_and_relocate_report_where_the_service_runs(cluster: Cluster,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    cluster.reply["owner"] = "node2"
    assert run(capsys, "-r", "web", "-m", "node2")[1] == (
        "Trying to relocate service:web to node2...Success\nservice:web is now running on node2\n")
    assert run(capsys, "-e", "web")[1] == (
        "Local machine trying to enable service:web...Success\nservice:web is now running on node2\n")
    # not for migrate, nor for the other actions
    assert run(capsys, "-M", "web", "-m", "node2")[1] == "Trying to migrate service:web to node2...Success\n"
    assert run(capsys, "-d", "web")[1] == "Local machine disabling service:web...Success\n"


def test_a_service_that_ended_elsewhere_gets_a_warning(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.reply["owner"] = "node1"
    status, out, _ = run(capsys, "-e", "web", "-m", "node2")
    assert status == 0
    assert out == "Member node2 trying to enable service:web...Success\nWarning: service:web is now running on node1\n"


def test_enable_with_F_asks_for_domain_placement(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "-e", "web", "-F")
    assert status == 0
    assert cluster.rg is not None
    assert cluster.rg.service_requests()[0]["policy"] is True
    assert out.startswith("Local machine trying to enable service:web...Success\n")


def test_the_prefix_is_on_stdout_before_the_answer(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    """The part before `...` is flushed before rgmanager is asked: a long relocation shows what it is doing."""
    seen: list[str] = []

    def slow_service(message: Mapping[str, Any]) -> dict[str, Any]:
        seen.append(capsys.readouterr().out)  # what the tool had written by the time the daemon got the request
        return {"code": 0, "text": "Success", "owner": "node2"}

    assert cluster.rg is not None
    cluster.rg.handlers["service"] = slow_service
    status, out, _ = run(capsys, "-r", "web", "-m", "node2")
    assert status == 0
    assert seen == ["Trying to relocate service:web to node2..."]
    assert out == "Success\nservice:web is now running on node2\n"


# -- result strings and exit codes --------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "text", "exit_code"), [
    (-1, "Failure", 255),
    (-2, "Aborted; service failed", 254),
    (-4, "Service does not exist", 252),
    (-6, "Temporary failure; try again", 250),
    (-9, "Operation requires quorum", 247),
    (-10, "Service is already running", 0),
    (-11, "Failure: Service is frozen", 245),
    (-12, "Target node dead / nonexistent", 244),
    (-17, "Failed; service running on original owner", 239),
    (-18, "Permissing denied", 238),
])
def test_result_strings_and_exit_codes(cluster: Cluster, capsys: pytest.CaptureFixture[str], code: int, text: str,
                                       exit_code: int) -> None:
    cluster.reply = {"code": code, "text": "whatever the daemon says", "owner": None}
    status, out, _ = run(capsys, "-r", "web", "-m", "node2")
    assert status == exit_code
    assert out == f"Trying to relocate service:web to node2...{text}\n"  # no "is now running" after a failure
    assert RGCode(code).text == text


def test_an_unknown_code_prints_the_daemons_text(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.reply = {"code": -42, "text": "Something new", "owner": None}
    status, out, _ = run(capsys, "-d", "web")
    assert (status, out) == (-42 % 256, "Local machine disabling service:web...Something new\n")


def test_a_reply_without_a_code_is_one_error_line(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.reply = {"text": "Success"}
    status, out, err = run(capsys, "-d", "web")
    assert status == 1
    assert out == "Local machine disabling service:web...\n"
    assert err == "clusvcadm: the resource group manager sent a reply without a result code\n"


# -- member names -------------------------------------------------------------------------------------------
def test_closest_member_is_used(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.reply["owner"] = "db1.lab"
    status, out, _ = run(capsys, "-r", "web", "-m", "db1")
    assert status == 0
    assert out.splitlines() == ["'db1' not in membership list", "Closest match: 'db1.lab'",
                                "Trying to relocate service:web to db1.lab...Success",
                                "service:web is now running on db1.lab"]
    assert cluster.rg is not None
    assert cluster.rg.service_requests()[0]["target"] == "db1.lab"


def test_longest_prefix_wins(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    """'node22' shares 5 characters with node2, 4 with node1 and node3: node2 is the one closest."""
    cluster.reply["owner"] = "node2"
    status, out, _ = run(capsys, "-e", "web", "-m", "node22")
    assert status == 0
    assert out.splitlines()[:2] == ["'node22' not in membership list", "Closest match: 'node2'"]


def test_no_matching_member(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "-r", "web", "-m", "xyz")
    assert status == 1
    assert out == "'xyz' not in membership list\n"
    assert err == "clusvcadm: No matches for 'xyz' found\n"
    assert cluster.rg is not None and cluster.rg.requests == []


def test_several_equally_close_members(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "-e", "web", "-m", "web-")
    assert status == 1
    assert out == "'web-' not in membership list\n"
    assert err == "clusvcadm: More than one possible match for 'web-' found\n"
    assert cluster.rg is not None and cluster.rg.requests == []


def test_migrate_to_an_offline_member_is_refused(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "-M", "vm:guest", "-m", "node3")
    assert (status, out, err) == (1, "", "clusvcadm: 'node3' is offline\n")
    assert cluster.rg is not None and cluster.rg.requests == []
    # other actions pass an offline member on: rgmanager answers (Target node dead / nonexistent)
    cluster.reply = {"code": -12, "text": "", "owner": None}
    status, out, _ = run(capsys, "-r", "web", "-m", "node3")
    assert (status, out) == (244, "Trying to relocate service:web to node3...Target node dead / nonexistent\n")


# -- refusals -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["-e", "web", "-F", "-m", "node2"], "Cannot use '-F' with '-n' or '-m'"),
    (["-e", "web", "-F", "-n", "node2"], "Cannot use '-F' with '-n' or '-m'"),
    (["-M", "web"], "Migration requires a target cluster member"),
    (["-e", "web", "-d", "web"], "give one action at a time, not -e and -d"),
    (["-m", "node2"], "no action given"),
    (["-e", ""], "the service name is empty"),
    (["-l", "-m", "node2"], "-l takes no member and no -F"),
    (["-x"], "unrecognized arguments: -x"),
    (["-e"], "argument -e: expected one argument"),
])
def test_usage_errors(cluster: Cluster, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 1
    assert out == ""
    assert err.startswith(f"clusvcadm: {message}") and err.count("\n") == 1
    assert cluster.rg is not None and cluster.rg.requests == []


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "-h")
    assert status == 0 and "-M <service> -m <member>" in out
    status, out, _ = run(capsys, "-v")
    assert status == 0 and out.startswith("clusvcadm ") and out.endswith("(rhcs-py)\n")
    status, out, err = run(capsys)
    assert (status, out) == (1, "") and err.startswith("usage: clusvcadm")


# -- quiet --------------------------------------------------------------------------------------------------
def test_quiet_prints_nothing_but_keeps_the_exit_status(cluster: Cluster,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cluster.reply = {"code": -9, "text": "", "owner": None}
    status, out, err = run(capsys, "-q", "-r", "web", "-m", "nod")  # also the member-matching lines
    assert (status, out, err) == (1, "", "clusvcadm: More than one possible match for 'nod' found\n")
    status, out, err = run(capsys, "-q", "-e", "web")
    assert (status, out, err) == (247, "", "")
    assert cluster.rg is not None and len(cluster.rg.service_requests()) == 1
    cluster.reply = {"code": 0, "text": "", "owner": "node1"}
    assert run(capsys, "-q", "-e", "web") == (0, "", "")
    assert sys.stdout is not None and run(capsys, "-S")[1] == "Resource groups unlocked\n"  # stdout is back


# -- the lock -----------------------------------------------------------------------------------------------
def test_lock_unlock_and_query(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-S") == (0, "Resource groups unlocked\n", "")
    assert run(capsys, "-l") == (0, "Resource groups locked\n", "")
    assert cluster.locked
    assert run(capsys, "-S") == (0, "Resource groups locked\n", "")
    assert run(capsys, "-u") == (0, "Resource groups unlocked\n", "")
    assert not cluster.locked
    assert cluster.rg is not None
    assert cluster.rg.commands() == ["lock_status", "lock", "lock_status", "unlock"]


@pytest.mark.parametrize(("flag", "line"), [("-l", "Lock operation failed"), ("-u", "Unlock operation failed"),
                                            ("-S", "Query operation failed")])
def test_lock_operations_that_fail(cluster: Cluster, capsys: pytest.CaptureFixture[str], flag: str,
                                   line: str) -> None:
    def refuse(_: Mapping[str, Any]) -> None:
        raise ControlError("busy", "no")

    assert cluster.rg is not None
    cluster.rg.handlers.update(lock=refuse, unlock=refuse, lock_status=refuse)
    assert run(capsys, flag) == (1, f"{line}\n", "")


def test_lock_reply_that_does_not_hold_is_a_failure(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster.rg is not None
    cluster.rg.handlers["lock"] = lambda _: {"locked": False}
    assert run(capsys, "-l") == (1, "Lock operation failed\n", "")


# -- daemons that do not answer -----------------------------------------------------------------------------
def test_rgmanager_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    c = Cluster(tmp_path)
    c.start_cman()
    try:
        for argv in (["-e", "web"], ["-r", "web", "-m", "node2"], ["-l"], ["-S"]):
            status, out, err = run(capsys, *argv)
            assert (status, out, err) == (1, "", "clusvcadm: Could not connect to resource group manager\n"), argv
    finally:
        c.stop()


def test_cmand_not_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    c = Cluster(tmp_path)
    c.start_rgmanager()
    try:
        for argv in (["-e", "web"], ["-r", "web", "-m", "node2"], ["-u"]):
            status, out, err = run(capsys, *argv)
            assert (status, out, err) == (1, "", "clusvcadm: Could not connect to cluster service\n"), argv
        assert c.rg is not None and c.rg.requests == []
    finally:
        c.stop()


def test_rgmanager_going_away_after_the_prefix(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    """rgmanager answered the probe, then closed the connection unanswered: the prefix's line is ended and the
    error stands on its own line; once its socket is gone, nothing is printed but the connection error."""
    assert cluster.rg is not None
    cluster.rg.drop.add("service")
    status, out, err = run(capsys, "-d", "web")
    assert status == 1
    assert out == "Local machine disabling service:web...\n"
    assert err == ("clusvcadm: the resource group manager sent no readable answer; the request may still complete "
                   "(see clustat)\n")
    cluster.rg.stop()
    (cluster.root / RG_SOCKET).unlink()
    status, out, err = run(capsys, "-d", "web")
    assert (status, out, err) == (1, "", "clusvcadm: Could not connect to resource group manager\n")


def test_a_control_refusal_is_one_line(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(_: Mapping[str, Any]) -> None:
        raise ControlError("bad_request", "unknown op 'frobnicate'")

    assert cluster.rg is not None
    cluster.rg.handlers["service"] = refuse
    status, out, err = run(capsys, "-c", "web")
    assert (status, out) == (1, "Local machine convalescing service:web...\n")
    assert err == "clusvcadm: the resource group manager refused the request: unknown op 'frobnicate'\n"


def test_a_request_without_an_answer_times_out(cluster: Cluster, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def stuck(_: Mapping[str, Any]) -> dict[str, Any]:
        release.wait(5)
        return {"code": 0}

    monkeypatch.setattr(clusvcadm, "REQUEST_TIMEOUT", 0.3)
    assert cluster.rg is not None
    cluster.rg.handlers["service"] = stuck
    try:
        status, out, err = run(capsys, "-r", "web")
    finally:
        release.set()
    assert status == 1
    assert out == "Trying to relocate service:web...\n"
    assert err == ("clusvcadm: the resource group manager did not answer within 0.3 s; the request may still "
                   "complete (see clustat)\n")


# -- as a command -------------------------------------------------------------------------------------------
def clusvcadm_command(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLUSTER_ROOT": str(root), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "rgmanager.cli.clusvcadm", *argv], env=env, capture_output=True,
                          text=True, timeout=30, cwd=REPO)


def test_as_a_process(cluster: Cluster) -> None:
    cluster.reply = {"code": 0, "text": "Success", "owner": "node1"}
    result = clusvcadm_command(cluster.root, "-r", "web", "-m", "node2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Trying to relocate service:web to node2...Success\nWarning: service:web is now running " \
        "on node1\n"
    cluster.reply = {"code": -1, "text": "Failure", "owner": None}
    result = clusvcadm_command(cluster.root, "-q", "-d", "web")
    assert (result.returncode, result.stdout, result.stderr) == (255, "", "")
    result = clusvcadm_command(cluster.root, "-e", "web", "-F", "-m", "node2")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "clusvcadm: Cannot use '-F' with '-n' or '-m'\n"
    assert cluster.rg is not None
    assert [r["op"] for r in cluster.rg.service_requests()] == ["relocate", "disable"]


def test_as_a_process_without_daemons(tmp_path: Path) -> None:
    result = clusvcadm_command(tmp_path, "-e", "web")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "clusvcadm: Could not connect to cluster service\n"


def test_as_a_process_the_prefix_shows_while_rgmanager_works(cluster: Cluster) -> None:
    """Through a pipe (block-buffered stdout) the prefix still arrives while rgmanager has not answered yet."""
    release = threading.Event()

    def slow(_: Mapping[str, Any]) -> dict[str, Any]:
        release.wait(20)
        return {"code": 0, "text": "Success", "owner": "node2"}

    assert cluster.rg is not None
    cluster.rg.handlers["service"] = slow
    env = {**os.environ, "CLUSTER_ROOT": str(cluster.root), "PYTHONPATH": str(REPO)}
    env.pop("PYTHONUNBUFFERED", None)  # stdout block-buffered, as for any user's pipe
    proc = subprocess.Popen([sys.executable, "-m", "rgmanager.cli.clusvcadm", "-r", "web", "-m", "node2"], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        early = b""
        deadline = time.monotonic() + 15
        while not early.endswith(b"...") and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                early += chunk
        assert early == b"Trying to relocate service:web to node2..."
        assert proc.poll() is None  # still waiting for the answer
        release.set()
        rest, err = proc.communicate(timeout=15)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    assert early + rest == b"Trying to relocate service:web to node2...Success\nservice:web is now running on node2\n"
