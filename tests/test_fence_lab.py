"""fence_lab, the lab's fence agent, run as fenced/fence_node run agents: the console script, key=value lines on
stdin, with the fencing node's CLUSTER_ROOT. It really powers lab nodes off (every process gone) and on."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from cman import fence_agents
from ricci_agent.fence_lab import parse_stdin
from ricci_agent.lab import Lab, free_block, group_members, node_processes

pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

FENCE_LAB = str(Path(sys.executable).parent / "fence_lab")


def answering_soon(lab: Lab, name: str, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if {s.node.name: s.answering for s in lab.status()}[name]:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("fence") / "lab")
    try:
        lab.up(nodes=3, first_address=free_block(3), no_daemons=True)
        yield lab
    finally:
        pids = [n.pid for n in lab.nodes if n.pid] if lab.exists() else []
        try:
            lab.down(grace=3.0)
        finally:
            for pid in pids:
                if group_members(pid):
                    os.killpg(pid, signal.SIGKILL)


def fence(lab: Lab, stdin: str, *, fencer: str = "node1", args: list[str] | None = None,
          timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run fence_lab as a child of `fencer` would: with its CLUSTER_ROOT, the request on stdin."""
    return subprocess.run([FENCE_LAB, *(args or [])], input=stdin, env=lab.node(fencer).environ(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def request(lab: Lab, node: str, action: str | None, **extra: str) -> str:
    """The lines fence_node writes: device attributes, nodename, then the fencedevice's (agent=, lab=)."""
    lines = [f"port={node}", f"nodename={node}", "agent=fence_lab", f"lab={lab.directory}"]
    lines += [f"action={action}"] if action else []
    lines += [f"{k}={v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def test_stdin_lines_blank_comments_aliases_and_unknown_keys() -> None:
    class Errors:
        text = ""

        def write(self, data: str) -> None:
            self.text += data

    errors = Errors()
    options = parse_stdin(["# comment", "", "option=off", "plug=node2", "ipaddr=10.0.0.1", "nodename=node2"],
                          errors)  # type: ignore[arg-type]
    assert options == {"action": "off", "port": "node2", "nodename": "node2"}
    assert errors.text == "Parse error: Ignoring unknown option 'ipaddr=10.0.0.1'\n"


def test_metadata_is_xml_naming_the_parameters(lab: Lab) -> None:
    result = fence(lab, "action=metadata\n")
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(result.stdout)
    assert root.get("name") == "fence_lab"
    assert [p.get("name") for p in root.iter("parameter")] == ["action", "port", "nodename", "lab", "delay"]
    assert {a.get("name") for a in root.iter("action")} >= {"on", "off", "reboot", "status", "list", "monitor"}


def test_status_list_and_monitor(lab: Lab) -> None:
    on = fence(lab, request(lab, "node2", "status") + "bogus line\n")
    assert (on.returncode, on.stdout) == (0, "Status: ON\n")
    assert on.stderr == "Parse error: Ignoring unknown option 'bogus line'\n"
    listed = fence(lab, f"action=list\nlab={lab.directory}\n")
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [f"{n.name},{n.address}" for n in lab.nodes]
    assert fence(lab, "action=monitor\n").returncode == 0  # the lab found from CLUSTER_ROOT's parent
    missing = fence(lab, "action=monitor\nlab=/nonexistent/lab\n")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "Failed: no lab in /nonexistent/lab (no lab.json)\n"


def test_command_line_options_like_real_agents(lab: Lab) -> None:
    result = subprocess.run([FENCE_LAB, "-o", "status", "-n", "node3", "--lab", str(lab.directory)],
                            capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stdout) == (0, "Status: ON\n"), result.stderr


def test_bad_requests_fail_in_one_line(lab: Lab) -> None:
    for stdin, message in (
        ("action=explode\nport=node2\n", "Failed: Unrecognised action 'explode'\n"),
        ("action=off\nport=node9\n", "Failed: no node node9 in the lab"),
        ("action=off\n", "Failed: no node given"),
        ("action=off\nport=node2\ndelay=soon\n", "Failed: delay must be a number of seconds, not 'soon'\n"),
    ):
        result = fence(lab, stdin)
        assert result.returncode == 1 and result.stderr.startswith(message), (stdin, result.stderr)
        assert result.stderr.count("\n") == 1
    assert all(node_processes(n) for n in lab.nodes)


def test_a_node_never_powers_itself_off(lab: Lab) -> None:
    result = fence(lab, request(lab, "node2", "off"), fencer="node2")
    assert result.returncode == 1
    assert result.stderr == "Failed: refusing to power off node2: fence_lab runs on node2 itself (CLUSTER_ROOT)\n"
    assert node_processes(lab.node("node2"))


def test_off_kills_every_process_then_on_boots_the_node(lab: Lab) -> None:
    node = lab.node("node2")
    service = subprocess.Popen(["sleep", "60"], env=node.environ(), start_new_session=True)  # a setsid'd service
    try:
        off = fence(lab, request(lab, "node2", "off"))
        assert (off.returncode, off.stdout, off.stderr) == (0, "Success: Powered OFF\n", "")
        assert node_processes(node) == [] and service.wait(timeout=5) == -signal.SIGKILL
        assert json.loads(lab.state_path.read_text())["nodes"][1]["pid"] is None
        assert fence(lab, request(lab, "node2", "off")).stdout == "Success: Already OFF\n"
        status = fence(lab, request(lab, "node2", "status"))
        assert (status.returncode, status.stdout) == (2, "Status: OFF\n")
        on = fence(lab, request(lab, "node2", "on"))
        assert (on.returncode, on.stdout) == (0, "Success: Powered ON\n"), on.stderr
        assert answering_soon(lab, "node2")  # "on" is a power switch: the node boots after it returns
        assert fence(lab, request(lab, "node2", "enable")).stdout == "Success: Already ON\n"
    finally:
        service.kill()
        service.wait()
        if not node_processes(lab.node("node2")):
            lab.start("node2")


def test_reboot_is_the_default_and_gives_the_node_new_processes(lab: Lab) -> None:
    before = lab.node("node3").pid
    result = fence(lab, request(lab, "node3", None))  # no action line: the agent's default
    assert (result.returncode, result.stdout) == (0, "Success: Rebooted\n"), result.stderr
    after = lab.node("node3")
    assert after.pid not in (None, before) and before not in node_processes(after)
    assert answering_soon(lab, "node3")


def test_a_paused_node_is_powered_off(lab: Lab) -> None:
    lab.pause("node3")
    try:
        result = fence(lab, request(lab, "node3", "off"))
        assert (result.returncode, result.stdout) == (0, "Success: Powered OFF\n"), result.stderr
        assert node_processes(lab.node("node3")) == [] and not lab.node("node3").paused
    finally:
        if lab.node("node3").paused:
            lab.resume("node3")
        if not node_processes(lab.node("node3")):
            lab.start("node3")


def test_delay_is_waited_before_off(lab: Lab) -> None:
    started = time.monotonic()
    result = fence(lab, request(lab, "node2", "off", delay="1.5"))
    waited = time.monotonic() - started
    try:
        assert (result.returncode, result.stdout) == (0, "Success: Powered OFF\n"), result.stderr
        assert waited >= 1.5  # the delay is a lower bound on when the node goes down
        status = fence(lab, request(lab, "node2", "status", delay="30"))  # status ignores the delay
        assert status.returncode == 2
    finally:
        if not node_processes(lab.node("node2")):
            lab.start("node2")


def test_on_starts_the_agent_detached_from_the_caller(lab: Lab) -> None:
    """fence_lab on runs as a child of the fencer's daemon: the node it boots must not descend from it."""
    lab.kill("node2")
    try:
        node = lab.start("node2", detach=True)
        assert node.pid in node_processes(node)
        assert _parent(node.pid) != os.getpid(), "the agent is still a child of the process that started it"
        assert answering_soon(lab, "node2")  # "on" is a power switch: the node boots after it returns
    finally:
        if not node_processes(lab.node("node2")):
            lab.start("node2")


def _parent(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    return int(text[text.rfind(")") + 2:].split()[1])


# -- a created (not started) lab: fence_lab against processes that carry a node's marker ----------------------
def created_lab(tmp_path: Path) -> Lab:
    lab = Lab(tmp_path / "lab")
    lab.create(["node1", "node2", "node3"], "fencetest", free_block(3), 11111)  # fence_lab fences every node
    return lab


def fake_node_process(root: Path) -> subprocess.Popen[bytes]:
    """A process of the node as the lab defines it: it carries the node's CLUSTER_ROOT."""
    return subprocess.Popen(["sleep", "60"], env={**os.environ, "CLUSTER_ROOT": str(root)}, start_new_session=True)


def lab_call(lab: Lab, action: str, node: str) -> fence_agents.AgentCall:
    """What fence_node sends for the lab's device (run here without a CLUSTER_ROOT: the test is no lab node)."""
    return fence_agents.AgentCall("labfence", "fence_lab", (f"port={node}", f"nodename={node}", "agent=fence_lab",
                                                            f"lab={lab.directory}", f"action={action}"))


def test_reboot_succeeds_once_the_node_is_off_even_if_power_on_fails(tmp_path: Path) -> None:
    lab = created_lab(tmp_path)
    node = lab.node("node2")
    proc = fake_node_process(node.root)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # node2's agent port taken: it cannot boot
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((node.address, node.port))
    blocker.listen(1)
    try:
        result = fence_agents.run_call(lab_call(lab, "reboot", "node2"), timeout=30)
        assert proc.wait(timeout=5) == -signal.SIGKILL and not node_processes(node), "node2 was powered off"
        assert result.ok and result.exit_code == 0, f"fence_lab reboot failed although node2 is off: {result.output}"
        warning, success = result.output.splitlines()  # stderr and stdout share the pipe: the warning comes first
        assert warning.startswith("Warning: Unable to power ON: ") and warning.endswith("(node2 stays OFF)")
        assert success == "Success: Rebooted"
        assert lab.node("node2").pid is None
    finally:
        blocker.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_off_is_not_blocked_by_a_lab_operation_holding_the_lock(tmp_path: Path) -> None:
    lab = created_lab(tmp_path)
    node = lab.node("node2")
    proc = fake_node_process(node.root)
    try:
        with lab.locked():  # what a lab operation holds (up to seconds: down's SIGTERM grace, say)
            result = fence_agents.run_call(lab_call(lab, "off", "node2"), timeout=3)
        assert not result.timed_out, f"fence_lab off blocked on the lab lock: {result.output}"
        assert result.ok, result.output
        assert proc.wait(timeout=5) == -signal.SIGKILL and not node_processes(node)
        warning, success = result.output.splitlines()
        assert warning.startswith("Warning: node2 is off, but lab.json was not updated: the lab in ")
        assert success == "Success: Powered OFF"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
