"""cman.fence_agents against real agents: Debian's fence_dummy and fence_ipmilan, and small script agents
(`fence_test`, a real executable on PATH) that log their stdin, fail, echo secrets, or hang with children."""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import pytest

from cluster_conf import edit
from cluster_conf.document import ClusterConf
from cluster_conf.model import view
from cman import fence_agents
from cman.fence_agents import (
    AgentCall,
    FenceHistory,
    device_calls,
    fence,
    is_fence_secret,
    masked,
    run_call,
)

SECRET = "Sup3r-s3cret-pw"
REPO = Path(__file__).resolve().parents[1]

# A configurable test agent: behaviour from its own stdin lines (log=, exit=, echo=, hang=, marker=).
TEST_AGENT = textwrap.dedent("""\
    #!{python}
    import json, os, subprocess, sys, time
    lines = [l.rstrip("\\n") for l in sys.stdin]
    opts = dict(l.split("=", 1) for l in lines if "=" in l)
    if "log" in opts:
        with open(opts["log"], "a") as f:
            f.write(json.dumps(lines) + "\\n")
    if "marker" in opts:
        open(opts["marker"], "w").close()
    if opts.get("echo") == "1":
        print("got: " + " ".join(lines))
        print("stderr got: " + " ".join(lines), file=sys.stderr)
    if "hang" in opts:
        child = subprocess.Popen(["sleep", "300"])
        with open(opts["hang"], "w") as f:
            f.write(f"{{os.getpid()}} {{child.pid}}\\n")
        time.sleep(300)
    code = int(opts.get("exit", "0"))
    print("Success: Rebooted" if code == 0 else "Unable to connect/login to fencing device")
    sys.exit(code)
    """)


def make_agent_bin(directory: Path) -> Path:
    """A bin directory holding `fence_test` (and `fence_manual`, which must never run)."""
    bindir = directory / "bin"
    bindir.mkdir()
    for name in ("fence_test", "fence_manual"):
        script = bindir / name
        script.write_text(TEST_AGENT.format(python=sys.executable))
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bindir


@pytest.fixture
def agent_bin(tmp_path: Path) -> Path:
    return make_agent_bin(tmp_path)


def agent_env(bindir: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}


def cluster(
    devices: Mapping[str, tuple[str, Mapping[str, str]]],
    methods: Mapping[str, list[tuple[str, Mapping[str, str]]]],
    *,
    node: str = "node2",
    unfence: list[tuple[str, Mapping[str, str]]] = (),
) -> ClusterConf:
    """A cluster with node1 (no fencing) and `node` fenced by `methods` {method: [(device, params), ...]}."""
    conf = edit.new_cluster("labcluster")
    for name, (agent, params) in devices.items():
        edit.add_fence_device(conf, name, agent, params)
    edit.add_node(conf, "node1", nodeid=1)
    edit.add_node(conf, node, nodeid=2)
    for method, devs in methods.items():
        for device, params in devs:
            edit.add_method_device(conf, node, method, device, params)
    for device, params in unfence:
        edit.add_unfence_device(conf, node, device, params)
    return conf


def runner_for(bindir: Path):
    return partial(run_call, env=agent_env(bindir))


def logged(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# -- building the stdin ------------------------------------------------------------------------------------
def test_stdin_lines_follow_the_calling_convention():
    conf = cluster({"apc": ("fence_apc", {"ipaddr": "10.0.0.9", "login": "apc", "passwd": SECRET})},
                   {"power": [("apc", {"port": "3", "switch": "1"})]})
    [method] = device_calls(view(conf), "node2")
    assert (method.name, method.index) == ("power", 1)
    [call] = method.calls
    assert call.device == "apc" and call.agent == "fence_apc" and call.error is None
    assert call.lines == ("port=3", "switch=1", "nodename=node2", "agent=fence_apc", "ipaddr=10.0.0.9",
                          "login=apc", f"passwd={SECRET}")
    assert not any(line.startswith("action=") for line in call.lines)  # the agent's default (reboot) applies
    assert SECRET not in call.shown_args and "passwd=********" in call.shown_args


def test_nodename_given_by_the_device_is_not_repeated():
    conf = cluster({"d": ("fence_x", {})}, {"m": [("d", {"nodename": "host2.example", "action": "off"})]})
    [call] = device_calls(view(conf), "node2")[0].calls
    assert call.lines == ("nodename=host2.example", "action=off", "agent=fence_x")


def test_fencedevice_attributes_keep_document_order_with_agent_where_it_sits():
    text = b"""<?xml version="1.0"?>
<cluster name="c" config_version="1"><clusternodes>
 <clusternode name="n1" nodeid="1"><fence><method name="1"><device name="d" port="7"/></method></fence></clusternode>
 <clusternode name="n2" nodeid="2"/></clusternodes>
 <fencedevices><fencedevice name="d" ipaddr="10.0.0.9" agent="fence_dummy" login="root"/></fencedevices>
</cluster>"""
    (method,) = device_calls(view(ClusterConf.from_bytes(text)), "n1")
    assert list(method.calls[0].lines) == ["port=7", "nodename=n1", "ipaddr=10.0.0.9", "agent=fence_dummy",
                                           "login=root"]


def test_config_errors_are_data():
    conf = cluster({"gone": ("fence_x", {}), "noagent": ("fence_y", {})},
                   {"a": [("gone", {})], "b": [("noagent", {})]})
    edit.remove_fence_device(conf, "gone")
    edit.set_fence_device_attrs(conf, "noagent", {"agent": None})
    first, second = device_calls(view(conf), "node2")
    assert first.calls[0].error == "error no device" and first.calls[0].agent is None
    assert second.calls[0].error == "error config agent"
    assert device_calls(view(conf), "node1") == []  # no methods: undefined
    assert device_calls(view(conf), "nosuchnode") == []


def test_unfence_uses_the_unfence_devices():
    conf = cluster({"scsi": ("fence_scsi", {"devices": "/dev/sdb"})}, {"m": [("scsi", {})]},
                   unfence=[("scsi", {"action": "on"})])
    [method] = device_calls(view(conf), "node2", unfence=True)
    assert method.calls[0].lines == ("action=on", "nodename=node2", "agent=fence_scsi", "devices=/dev/sdb")
    assert device_calls(view(conf), "node1", unfence=True) == []


# -- secrets -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "secret"), [
    ("passwd", True), ("password", True), ("passwd_script", True), ("snmp_priv_passwd", True),
    ("secret_key", True), ("apikey", True), ("access_token", True), ("hexadecimal_kg", True),
    ("no_password", False), ("login", False), ("ipaddr", False), ("port", False), ("delay", False),
])
def test_which_keys_are_secret(key, secret):
    assert is_fence_secret(key) is secret


def test_masked_lines():
    assert masked(["login=a", f"passwd={SECRET}", "passwd_script=/root/pw.sh", "odd line"]) == [
        "login=a", "passwd=********", "passwd_script=********", "odd line"]


def test_secrets_never_leave_even_when_the_agent_echoes_them(agent_bin, tmp_path):
    conf = cluster({"echo": ("fence_test", {"echo": "1", "exit": "1", "passwd": SECRET, "api_token": "tok-987"})},
                   {"m": [("echo", {})]})
    seen = []
    outcome = fence(view(conf), "node2", timeout=20, runner=runner_for(agent_bin), on_attempt=seen.append)
    assert outcome.status == "failed"
    [attempt] = outcome.attempts
    assert "got: " in attempt.output and "stderr got: " in attempt.output  # the agent did echo its stdin...
    history = FenceHistory(tmp_path)
    history.append(outcome.history_entry("test", 1.0))
    texts = [attempt.output, attempt.args, outcome.message, repr(outcome), repr(seen),
             history.path.read_text(), json.dumps(history.entries())]
    for text in texts:  # ...but the password is masked everywhere it goes
        assert SECRET not in text and "tok-987" not in text
    assert "passwd=********" in attempt.output


# -- running agents ----------------------------------------------------------------------------------------
def test_fence_dummy_off_reboot_status(tmp_path):
    if shutil.which("fence_dummy", path=fence_agents.agent_path()) is None:
        pytest.skip("fence_dummy not installed (Debian package fence-agents)")
    status = tmp_path / "status"
    status.write_text("on")
    conf = cluster({"dummy": ("fence_dummy", {"type": "file", "status_file": str(status)})},
                   {"m": [("dummy", {"action": "off"})]})
    outcome = fence(view(conf), "node2", timeout=30)
    assert outcome.status == "success", outcome.message
    assert status.read_text().strip() == "off"
    [attempt] = outcome.attempts
    assert attempt.result == "success" and attempt.exit_code == 0 and "Success: Powered OFF" in attempt.output

    [call] = device_calls(view(conf), "node2")[0].calls
    status_call = AgentCall(call.device, call.agent, (*call.lines, "action=status"))
    result = run_call(status_call, timeout=30)
    assert (result.ok, result.exit_code) == (False, 2) and "Status: OFF" in result.output

    reboot = cluster({"dummy": ("fence_dummy", {"type": "file", "status_file": str(status)})},
                     {"m": [("dummy", {})]})  # no action line: the agent's default, reboot
    assert fence(view(reboot), "node2", timeout=30).status == "success"
    assert status.read_text().strip() == "on"
    assert run_call(status_call, timeout=30).exit_code == 0


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_hanging_agent_and_its_children_are_killed_at_the_timeout(agent_bin, tmp_path):
    pids = tmp_path / "pids"
    conf = cluster({"hang": ("fence_test", {"hang": str(pids)})}, {"m": [("hang", {})]})
    started = time.monotonic()
    outcome = fence(view(conf), "node2", timeout=1.5, runner=runner_for(agent_bin))
    elapsed = time.monotonic() - started
    assert outcome.status == "failed"
    [attempt] = outcome.attempts
    assert attempt.result == "error from agent" and attempt.exit_code is None
    assert "timed out after 1.5 s" in attempt.output
    assert elapsed < 15
    agent_pid, child_pid = (int(p) for p in pids.read_text().split())
    deadline = time.monotonic() + 5
    while (_alive(agent_pid) or _alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(agent_pid) and not _alive(child_pid)


def test_first_method_fails_second_succeeds(agent_bin, tmp_path):
    log = tmp_path / "log"
    conf = cluster({"bad": ("fence_test", {"exit": "1", "log": str(log)}),
                    "good": ("fence_test", {"log": str(log)})},
                   {"primary": [("bad", {"port": "1"})], "backup": [("good", {"port": "2"})]})
    outcome = fence(view(conf), "node2", timeout=20, runner=runner_for(agent_bin))
    assert outcome.status == "success"
    assert [(a.position, a.device, a.result) for a in outcome.attempts] == [
        ("1.1", "bad", "error from agent"), ("2.1", "good", "success")]
    assert (outcome.method, outcome.device, outcome.agent) == ("backup", "good", "fence_test")
    assert [lines[0] for lines in logged(log)] == ["port=1", "port=2"]  # really run, in config order
    assert "Unable to connect/login" in outcome.attempts[0].output


def test_every_device_of_a_method_must_succeed(agent_bin, tmp_path):
    log = tmp_path / "log"
    conf = cluster({"psu1": ("fence_test", {"log": str(log)}),
                    "psu2": ("fence_test", {"exit": "1", "log": str(log)}),
                    "never": ("fence_test", {"log": str(log)})},
                   {"dual": [("psu1", {"port": "a"}), ("psu2", {"port": "b"}), ("never", {"port": "c"})]})
    outcome = fence(view(conf), "node2", timeout=20, runner=runner_for(agent_bin))
    assert outcome.status == "failed"
    assert [(a.position, a.result) for a in outcome.attempts] == [("1.1", "success"), ("1.2", "error from agent")]
    assert [lines[0] for lines in logged(log)] == ["port=a", "port=b"]  # stopped at the failing device
    assert outcome.message.startswith("fence node2 failed: dev 1.2 (psu2, agent fence_test): error from agent")


def test_a_missing_agent(tmp_path):
    conf = cluster({"x": ("fence_nosuchagent", {})}, {"m": [("x", {})]})
    outcome = fence(view(conf), "node2", timeout=5)
    assert outcome.status == "failed"
    [attempt] = outcome.attempts
    assert attempt.result == "error from agent" and attempt.output == "agent fence_nosuchagent not found"
    assert run_call(device_calls(view(conf), "node2")[0].calls[0], timeout=5).ok is False


def test_config_errors_show_in_attempts_and_the_next_method_runs(agent_bin, tmp_path):
    conf = cluster({"gone": ("fence_x", {}), "ok": ("fence_test", {})}, {"a": [("gone", {})], "b": [("ok", {})]})
    edit.remove_fence_device(conf, "gone")
    outcome = fence(view(conf), "node2", timeout=20, runner=runner_for(agent_bin))
    assert [(a.position, a.result) for a in outcome.attempts] == [("1.1", "error no device"), ("2.1", "success")]
    assert outcome.status == "success"


def test_undefined_without_methods():
    conf = cluster({}, {})
    outcome = fence(view(conf), "node2")
    assert (outcome.status, outcome.attempts) == ("undefined", ())


def test_fence_manual_is_not_run(agent_bin, tmp_path):
    marker = tmp_path / "ran"
    conf = cluster({"human": ("fence_manual", {"marker": str(marker)})}, {"m": [("human", {})]})
    outcome = fence(view(conf), "node2", timeout=20, runner=runner_for(agent_bin))
    assert outcome.status == "manual" and outcome.agent == "fence_manual"
    assert "fence_ack_manual node2" in outcome.message
    assert [a.result for a in outcome.attempts] == ["manual"]
    assert not marker.exists()


def test_fence_ipmilan_against_an_unused_local_port_fails_cleanly():
    if shutil.which("fence_ipmilan", path=fence_agents.agent_path()) is None:
        pytest.skip("fence_ipmilan not installed (Debian package fence-agents)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a free UDP port on loopback
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    conf = cluster({"ipmi": ("fence_ipmilan", {"ipaddr": "127.0.0.1", "ipport": port, "login": "admin",
                                               "passwd": SECRET, "lanplus": "1", "power_timeout": "2",
                                               "login_timeout": "2", "shell_timeout": "2"})},
                   {"m": [("ipmi", {})]})
    outcome = fence(view(conf), "node2", timeout=20)
    assert outcome.status == "failed"
    [attempt] = outcome.attempts
    assert attempt.result == "error from agent" and attempt.exit_code not in (0, None)
    assert attempt.output  # the agent's reason (no ipmitool, or no answer) is kept...
    assert SECRET not in attempt.output + attempt.args + outcome.message  # ...without the password


# -- history -----------------------------------------------------------------------------------------------
def test_history_append_and_query(tmp_path):
    history = FenceHistory(tmp_path)
    assert history.entries() == []
    for i, node in enumerate(["a", "b", "a", "c"]):
        history.append({"node": node, "status": "success", "n": i})
    assert history.path == tmp_path / "var/lib/cluster/fence_history.jsonl"
    assert [e["n"] for e in history.entries()] == [0, 1, 2, 3]
    assert [e["n"] for e in history.entries(node="a")] == [0, 2]
    assert [e["n"] for e in history.entries(limit=2)] == [2, 3]
    assert all("time" in e for e in history.entries())
    with open(history.path, "a") as f:
        f.write('{"torn": \n')
    assert len(history.entries()) == 4


def test_history_rotates_keeping_the_newest(tmp_path):
    history = FenceHistory(tmp_path)
    history.path.parent.mkdir(parents=True)
    history.path.write_text("".join(json.dumps({"node": "a", "n": i}) + "\n" for i in range(2000)))
    history.append({"node": "a", "n": 2000})
    lines = history.path.read_text().splitlines()
    assert len(lines) == 1000
    assert json.loads(lines[0])["n"] == 1001 and json.loads(lines[-1])["n"] == 2000
    assert stat.S_IMODE(history.path.stat().st_mode) == 0o600


def test_history_writers_in_two_processes_do_not_interleave(tmp_path):
    code = ("import sys; from cman.fence_agents import FenceHistory\n"
            "h = FenceHistory(sys.argv[1])\n"
            "for i in range(40): h.append({'node': sys.argv[2], 'n': i, 'pad': 'x' * 3000})\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), name], cwd=REPO) for name in "ab"]
    try:
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    entries = FenceHistory(tmp_path).entries(limit=1000)
    assert len(entries) == 80
    for name in "ab":
        assert [e["n"] for e in entries if e["node"] == name] == list(range(40))



def test_an_agent_that_exits_but_leaves_a_child_holding_its_output(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "fence_bg"
    script.write_text("#!/bin/sh\nsleep 300 &\necho $! > \"$0.child\"\necho 'Success: Rebooted'\nexit 0\n")
    script.chmod(0o755)
    call = AgentCall("bg", "fence_bg", ("nodename=node2", "agent=fence_bg"))
    result = run_call(call, timeout=1.0, env=agent_env(bindir))
    assert (result.ok, result.exit_code) == (True, 0)  # the agent's own verdict counts
    assert result.output.splitlines() == ["Success: Rebooted", "agent fence_bg left processes running; killed "
                                          "after 1 s"]
    child = int((bindir / "fence_bg.child").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
