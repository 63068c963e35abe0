"""fence_node and fence_ack_manual end to end: real subprocesses, a cluster.conf under a temporary CLUSTER_ROOT,
real agents, and the real control socket (cman.control) answered by a stand-in daemon thread."""
from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cluster_conf import edit
from cman import control
from cman.control import ControlError
from cman.fence_agents import FenceHistory
from tests.test_fence_agents import SECRET, cluster, make_agent_bin

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def agent_bin(tmp_path: Path) -> Path:
    return make_agent_bin(tmp_path)


@pytest.fixture
def root() -> Iterator[Path]:
    """A short node root under /tmp (the control socket path must stay under the unix socket length limit)."""
    path = Path(tempfile.mkdtemp(prefix="fn-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_conf(root: Path, conf) -> None:
    path = root / "etc/cluster/cluster.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    conf.save(path)


def run_cmd(module: str, args: list[str], root: Path, bindir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLUSTER_ROOT": str(root), "FENCE_NODE_TIMEOUT": "20"}
    if bindir is not None:
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', os.defpath)}"
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def fence_node(args: list[str], root: Path, bindir: Path | None = None) -> subprocess.CompletedProcess:
    return run_cmd("cman.cli.fence_node", args, root, bindir)


def ack(args: list[str], root: Path) -> subprocess.CompletedProcess:
    return run_cmd("cman.cli.fence_ack_manual", args, root)


@contextlib.contextmanager
def daemon(root: Path, handlers: Mapping[str, Any]) -> Iterator[list[dict]]:
    """Answer control requests on root's socket with `handlers` (cman.control.handle_line) until the block ends;
    yields the list of requests received."""
    import json

    received: list[dict] = []

    def record(name: str, handler: Any) -> Any:
        def wrapped(message: Mapping[str, Any]) -> Any:
            received.append(dict(message))
            return handler(message)
        return wrapped

    wrapped = {name: record(name, h) for name, h in handlers.items()}
    sock = control.listen(root)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.05)
            if not ready:
                continue
            with contextlib.suppress(BlockingIOError):
                conn, _ = sock.accept()
                with conn:
                    conn.settimeout(5)
                    line = conn.makefile("rb").readline()
                    conn.sendall(control.handle_line(line, wrapped))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
        json.dumps(received)  # plain data only


def basic_conf(**devices_params: Any):
    return cluster({"lab": ("fence_test", {"login": "root", "passwd": SECRET, **devices_params})},
                   {"power": [("lab", {"port": "2"})]})


# -- fence_node --------------------------------------------------------------------------------------------
def test_success_exit_0(agent_bin, root):
    write_conf(root, basic_conf())
    done = fence_node(["node2"], root, agent_bin)
    assert (done.returncode, done.stderr, done.stdout) == (0, "fence node2 success\n", "")
    [entry] = FenceHistory(root).entries()
    assert (entry["actor"], entry["node"], entry["status"], entry["action"]) == ("fence_node", "node2", "success",
                                                                                  "fence")
    assert (entry["method"], entry["device"], entry["agent"]) == ("power", "lab", "fence_test")


def test_verbose_lines_and_masked_args(agent_bin, root):
    write_conf(root, basic_conf(echo="1"))
    done = fence_node(["-vv", "node2"], root, agent_bin)
    assert done.returncode == 0 and done.stderr == "fence node2 success\n"
    assert done.stdout.splitlines() == [
        "fence node2 dev 1.1 agent fence_test result: success",
        "agent args: port=2 nodename=node2 agent=fence_test login=root passwd=******** echo=1",
    ]
    one_v = fence_node(["-v", "node2"], root, agent_bin)
    assert one_v.stdout == "fence node2 dev 1.1 agent fence_test result: success\n"
    history = (root / "var/lib/cluster/fence_history.jsonl").read_text()
    assert "got: port=2" in history  # the agent's echo is kept, with the password masked
    assert SECRET not in done.stdout + done.stderr + one_v.stdout + history


def test_failed_exit_1_with_per_device_results(agent_bin, root):
    conf = cluster({"bad": ("fence_test", {"exit": "1", "passwd": SECRET, "echo": "1"}),
                    "gone": ("fence_test", {})},
                   {"first": [("bad", {})], "second": [("gone", {})]})
    edit.remove_fence_device(conf, "gone")
    write_conf(root, conf)
    done = fence_node(["-v", "node2"], root, agent_bin)
    assert (done.returncode, done.stderr) == (1, "fence node2 failed\n")
    assert done.stdout.splitlines() == ["fence node2 dev 1.1 agent fence_test result: error from agent",
                                        "fence node2 dev 2.1 agent - result: error no device"]
    [entry] = FenceHistory(root).entries(node="node2")
    assert entry["status"] == "failed" and SECRET not in str(entry)


def test_undefined_exit_2(root):
    write_conf(root, basic_conf())
    done = fence_node(["-v", "node1"], root)
    assert (done.returncode, done.stderr, done.stdout) == (2, "fence node1 undefined\n", "")


def test_unfence(agent_bin, root):
    conf = cluster({"lab": ("fence_test", {})}, {"power": [("lab", {})]}, unfence=[("lab", {"action": "on"})])
    write_conf(root, conf)
    done = fence_node(["-U", "-vv", "node2"], root, agent_bin)
    assert (done.returncode, done.stderr) == (0, "unfence node2 success\n")
    assert done.stdout.splitlines() == ["unfence node2 dev 1.1 agent fence_test result: success",
                                        "agent args: action=on nodename=node2 agent=fence_test"]
    assert fence_node(["-U", "node1"], root).stderr == "unfence node1 undefined\n"


def test_manual_fence_is_reported_failed_with_the_way_out(agent_bin, root):
    write_conf(root, cluster({"human": ("fence_manual", {})}, {"m": [("human", {})]}))
    done = fence_node(["node2"], root, agent_bin)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "fence_node: node2 needs a manual fence: power it off by hand, then run fence_ack_manual node2",
        "fence node2 failed"]


@pytest.mark.parametrize(("args", "message"), [
    (["nosuch"], "fence_node: node nosuch is not in {root}/etc/cluster/cluster.conf"),
    ([], "fence_node: no node name given; usage: fence_node [-U] [-v|-vv] [-h] [-V] <node>"),
    (["-x", "node2"], "fence_node: unrecognized arguments: -x; try 'fence_node -h'"),
])
def test_bad_input_is_one_line_exit_1(root, args, message):
    write_conf(root, basic_conf())
    done = fence_node(args, root)
    assert (done.returncode, done.stderr, done.stdout) == (1, message.format(root=root) + "\n", "")


def test_missing_config_is_one_line(root):
    done = fence_node(["node2"], root)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "cluster.conf" in done.stderr and "Traceback" not in done.stderr


def test_help_and_version(root):
    help_ = fence_node(["-h"], root)
    assert help_.returncode == 0 and help_.stdout.startswith("usage: fence_node [-U] [-v|-vv] [-h] [-V] <node>")
    version = fence_node(["-V"], root)
    assert version.returncode == 0 and version.stdout.startswith("fence_node ")


def test_the_daemon_is_told_of_a_success(agent_bin, root):
    write_conf(root, basic_conf())
    with daemon(root, {"fence_done": lambda m: {"recorded": True}}) as received:
        done = fence_node(["node2"], root, agent_bin)
    assert (done.returncode, done.stderr) == (0, "fence node2 success\n")
    [message] = received
    assert message["command"] == "fence_done"
    assert {k: message[k] for k in ("node", "ok", "method", "device", "agent")} == {
        "node": "node2", "ok": True, "method": "power", "device": "lab", "agent": "fence_test"}
    assert SECRET not in str(message)


def test_a_refusing_daemon_is_a_warning_not_a_failure(agent_bin, root):
    write_conf(root, basic_conf())

    def refuse(message: Mapping[str, Any]) -> Any:
        raise ControlError("unknown_node", "node2 is not a member")

    with daemon(root, {"fence_done": refuse}):
        done = fence_node(["node2"], root, agent_bin)
    assert done.returncode == 0
    assert done.stderr.splitlines() == ["fence_node: warning: the cluster manager was not told of the fence: "
                                        "node2 is not a member", "fence node2 success"]


def test_no_daemon_is_told_of_a_failure(agent_bin, root):
    write_conf(root, cluster({"bad": ("fence_test", {"exit": "1"})}, {"m": [("bad", {})]}))
    with daemon(root, {"fence_done": lambda m: {}}) as received:
        assert fence_node(["node2"], root, agent_bin).returncode == 1
    assert received == []


# -- fence_ack_manual --------------------------------------------------------------------------------------
def test_ack_without_a_daemon(root):
    done = ack(["node2"], root)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("fence_ack_manual: the cluster manager is not running on this node")
    assert done.stderr.count("\n") == 1


def test_ack_accepted(root):
    with daemon(root, {"fence_ack": lambda m: {"node": m["node"], "state": "succeeded"}}) as received:
        done = ack(["node2"], root)
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "fence_ack_manual: node2: manual fence acknowledged\n", "")
    assert received == [{"command": "fence_ack", "node": "node2"}]


def test_ack_refused(root):
    def refuse(message: Mapping[str, Any]) -> Any:
        raise ControlError("not_waiting", f"{message['node']} is not waiting for a manual fence (not a fence victim)")

    with daemon(root, {"fence_ack": refuse}):
        done = ack(["node3"], root)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "fence_ack_manual: node3 is not waiting for a manual fence (not a fence victim)\n"


def test_ack_usage(root):
    done = ack([], root)
    assert done.returncode == 1 and done.stderr.startswith("fence_ack_manual: no node name given")
