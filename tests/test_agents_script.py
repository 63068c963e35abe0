"""The script agent and the process runner against real processes: an LSB init script serving HTTP on a
127.0.0.x address, timeouts that kill the whole process group, and hostile attribute values."""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rgmanager.agents import OCF, Agent, agent_for, run_process
from rgmanager.agents.base import pid_alive

HTTP_INIT_SCRIPT = """#!/bin/sh
# LSB init script for a tiny HTTP server (written by the test).
PIDFILE='{pidfile}'
case "$1" in
  start)
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then exit 0; fi
    '{python}' -m http.server --bind '{addr}' --directory '{docroot}' {port} >/dev/null 2>&1 &
    echo $! > "$PIDFILE"
    i=0
    while [ $i -lt 100 ]; do
      '{python}' -c "import socket; socket.create_connection(('{addr}', {port}), 0.2).close()" 2>/dev/null && exit 0
      i=$((i+1)); sleep 0.1
    done
    echo "server did not start listening" >&2
    exit 1 ;;
  stop)
    [ -f "$PIDFILE" ] || exit 0
    pid=$(cat "$PIDFILE")
    kill "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do i=$((i+1)); sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && exit 1
    rm -f "$PIDFILE"; exit 0 ;;
  status)
    [ -f "$PIDFILE" ] || exit 3
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null && exit 0
    exit 1 ;;
  *) exit 2 ;;
esac
"""


def _write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _free_loopback() -> tuple[str, int]:
    addr = f"127.{random.randint(1, 254)}.{random.randint(0, 254)}.{random.randint(1, 254)}"
    with socket.socket() as sock:
        sock.bind((addr, 0))
        return addr, sock.getsockname()[1]


def _kill_pidfile(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(path.read_text().split()[0]), signal.SIGKILL)


def _http_get(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy: 127.0.0.0/8 only
    with opener.open(url, timeout=5) as response:
        return response.read()


@pytest.fixture
def http_service(tmp_path: Path):
    addr, port = _free_loopback()
    docroot = tmp_path / "www"
    docroot.mkdir()
    (docroot / "hello.txt").write_text("hello from the cluster\n")
    pidfile = tmp_path / "httpd.pid"
    script = _write_script(tmp_path / "httpd-init", HTTP_INIT_SCRIPT.format(
        pidfile=pidfile, python=sys.executable, addr=addr, port=port, docroot=docroot))
    try:
        yield script, addr, port, pidfile
    finally:
        _kill_pidfile(pidfile)


def test_lsb_script_serves_http_then_stops(http_service) -> None:
    script, addr, port, pidfile = http_service
    agent = agent_for("script")({"name": "httpd", "file": str(script)})

    assert agent.status().rc == OCF.NOT_RUNNING  # LSB 3 -> OCF 7
    assert "exited 3" in agent.status().message

    started = agent.start()
    assert started.ok, started
    assert agent.status().ok
    assert _http_get(f"http://{addr}:{port}/hello.txt") == b"hello from the cluster\n"
    pid = int(pidfile.read_text())
    assert pid_alive(pid)

    stopped = agent.stop()
    assert stopped.ok, stopped
    assert not pid_alive(pid)
    assert agent.status().rc == OCF.NOT_RUNNING
    with pytest.raises(OSError):
        _http_get(f"http://{addr}:{port}/hello.txt")


def test_lsb_status_dead_with_pidfile_is_a_failure(http_service) -> None:
    script, _addr, _port, pidfile = http_service
    agent = agent_for("script")({"name": "httpd", "file": str(script)})
    assert agent.start().ok
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    # wait until init has reaped it too: the script's `kill -0` still sees a zombie
    assert agent.wait_until(lambda: not os.path.exists(f"/proc/{pid}"), limit=10)
    status = agent.status()
    assert status.rc == OCF.ERR_GENERIC
    assert "exited 1" in status.message


def test_start_failure_carries_the_scripts_exit_code_and_last_line(tmp_path: Path) -> None:
    script = _write_script(tmp_path / "broken", "#!/bin/sh\necho 'config error: no port' >&2\nexit 6\n")
    result = agent_for("script")({"name": "broken", "file": str(script)}).start()
    assert result.rc == OCF.ERR_CONFIGURED
    assert result.message == "config error: no port"


def test_hung_script_times_out_and_its_whole_process_group_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The script ignores SIGTERM and leaves a child in its group: both must die (SIGTERM, then SIGKILL).
    script = _write_script(tmp_path / "hang", f"""#!/bin/sh
trap '' TERM
sleep 300 &
echo $$ $! > '{pids}'
wait
""")
    agent = agent_for("script")({"name": "hang", "file": str(script)}, timeouts={"start": 1.0})
    began = time.monotonic()
    result = agent.start()
    elapsed = time.monotonic() - began
    try:
        assert result.rc == OCF.ERR_GENERIC and result.timed_out
        assert "timed out" in result.message and "process group was killed" in result.message
        assert elapsed < 15
        leader, child = (int(p) for p in pids.read_text().split())
        assert agent.wait_until(lambda: not pid_alive(leader) and not pid_alive(child), limit=5)
    finally:
        with contextlib.suppress(OSError, ValueError):
            for pid in pids.read_text().split():
                os.kill(int(pid), signal.SIGKILL)


def test_run_process_timeout_kills_grandchildren(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild"
    code = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(300)"
    )
    result = run_process([sys.executable, "-c", code], timeout=1.5)
    try:
        assert result.timed_out
        grandchild = int(marker.read_text())
        deadline = time.monotonic() + 5
        while pid_alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(grandchild)
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(marker.read_text()), signal.SIGKILL)


HOSTILE = [
    "x; rm -rf {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "line1\nline2; touch {canary}",
    "a' \"b\" \\c | touch {canary} && touch {canary}",
    "--help",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_attribute_values_reach_the_script_verbatim(tmp_path: Path, template: str) -> None:
    canary = tmp_path / "canary"
    canary.touch()  # `rm -rf` would remove it, `touch` would not matter: check both ways below
    canary2 = tmp_path / "canary2"
    value = template.format(canary=canary2 if "touch" in template else canary)
    record = tmp_path / "record.json"
    # The init script is itself a Python program that records exactly what it received.
    recorder = _write_script(tmp_path / "recorder", f"""#!{sys.executable}
import json, os, sys
json.dump({{"argv": sys.argv[1:], "env": {{k: v for k, v in os.environ.items() if k.startswith("OCF_RESKEY_")}}}},
          open({str(record)!r}, "w"))
""")
    agent = agent_for("script")({"name": value, "file": str(recorder), "service_name": value})
    assert agent.start().ok
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["start"]
    assert seen["env"]["OCF_RESKEY_name"] == value
    assert seen["env"]["OCF_RESKEY_service_name"] == value
    assert canary.exists() and not canary2.exists()


def test_hostile_script_path_is_one_argv_element(tmp_path: Path) -> None:
    name = f"rgm-canary-{os.getpid()}"
    # programs run with cwd "/", so a shell would create /NAME; the file name holds no "/" to stay one file
    canaries = [Path("/") / name, tmp_path / name]
    weird = tmp_path / f"init; touch {name} $(touch {name}) `touch {name}`"
    _write_script(weird, "#!/bin/sh\nexit 0\n")
    assert agent_for("script")({"name": "w", "file": str(weird)}).start().ok
    assert not any(c.exists() for c in canaries)
    canary = tmp_path / "canary"
    missing = agent_for("script")({"name": "m", "file": f"{tmp_path}/nope $(touch {canary})"}).start()
    assert missing.rc == OCF.ERR_INSTALLED and "does not exist" in missing.message
    assert not canary.exists()


def test_run_process_passes_hostile_argv_and_env_verbatim() -> None:
    value = "$(id) `id` ; id | id && id\n$HOME *"
    result = run_process(["printf", "%s", value], timeout=10)
    assert result.rc == 0 and result.stdout == value
    result = run_process([sys.executable, "-c", "import os; print(os.environ['HOSTILE'], end='')"],
                         timeout=10, env={"HOSTILE": value})
    assert result.stdout == value


def test_absent_or_invalid_script_file_gives_one_clear_line(tmp_path: Path) -> None:
    relative = agent_for("script")({"name": "r", "file": "etc/init.d/x"}).start()
    assert relative.rc == OCF.ERR_CONFIGURED and "absolute path" in relative.message
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    noexec = agent_for("script")({"name": "p", "file": str(plain)}).start()
    assert noexec.rc == OCF.ERR_PERM and "not executable" in noexec.message
    missing = agent_for("script")({"name": "m"}).validate()
    assert missing.rc == OCF.ERR_CONFIGURED and missing.message == "script: required parameter 'file' is missing"
    # stopping a script that does not exist is a success: nothing of it can be running
    assert agent_for("script")({"name": "g", "file": str(tmp_path / "gone")}).stop().ok


def test_run_process_reports_a_missing_program() -> None:
    result = run_process(["no-such-program-rgm"], timeout=5)
    assert result.missing == "no-such-program-rgm" and result.rc == OCF.ERR_INSTALLED


# -- exit codes, timeouts and unexpected errors --------------------------------------------------------------
@pytest.mark.parametrize(("code", "message"), [
    (42, "start exited 42, which is not an LSB exit code: broke"),
    (9, "start exited 9, which is not an LSB exit code: broke"),
    (255, "start exited 255, which is not an LSB exit code: broke"),
])
def test_lsb_exit_code_outside_0_to_7_is_a_generic_error_naming_it(tmp_path: Path, code: int, message: str) -> None:
    script = _write_script(tmp_path / "odd", f"#!/bin/sh\necho broke >&2\nexit {code}\n")
    result = agent_for("script")({"name": "odd", "file": str(script)}).start()
    assert result.rc == OCF.ERR_GENERIC and result.message == message


def test_timed_out_comes_from_the_deadline_not_from_the_message(tmp_path: Path) -> None:
    script = _write_script(tmp_path / "says", "#!/bin/sh\necho 'upstream connection timed out' >&2\nexit 1\n")
    result = agent_for("script")({"name": "says", "file": str(script)}).start()
    assert result.rc == OCF.ERR_GENERIC and result.message == "upstream connection timed out"
    assert not result.timed_out


def test_a_process_group_that_cannot_be_killed_is_reported_not_waited_for(tmp_path: Path, monkeypatch) -> None:
    # A process stuck in the kernel survives SIGKILL; none can be made here, so the kill is switched off and
    # the bounded wait after it is what is tested.
    import rgmanager.agents.base as base

    monkeypatch.setattr(base, "kill_group", lambda pgid, proc=None, grace=0.0: None)
    monkeypatch.setattr(base, "KILL_WAIT", 0.5)
    pidfile = tmp_path / "pid"
    script = _write_script(tmp_path / "stuck", f"#!/bin/sh\necho $$ > '{pidfile}'\nexec sleep 300\n")
    began = time.monotonic()
    try:
        result = agent_for("script")({"name": "stuck", "file": str(script)}, timeouts={"start": 0.5}).start()
        assert time.monotonic() - began < 10
        assert result.rc == OCF.ERR_GENERIC and result.timed_out
        assert result.message == "script start timed out; its process group could not be killed"
    finally:
        _kill_pidfile(pidfile)


def test_spawn_daemon_that_does_not_return_is_an_error_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    import rgmanager.agents.base as base

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write_script(bin_dir / "setsid", "#!/bin/sh\nexec sleep 30\n")  # a setsid that hangs
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(base, "SPAWN_TIMEOUT", 0.5)
    with pytest.raises(base.AgentError) as caught:
        base.spawn_daemon(["sleep", "1"])
    assert caught.value.message == "setsid --fork sleep did not return within 0.5s" and caught.value.timed_out


class _Buggy(Agent):
    """An agent with a bug: its status raises KeyError."""

    type_name = "script"

    def _status(self, depth: int):  # type: ignore[no-untyped-def]
        return {}["missing"]


def test_an_unexpected_exception_in_an_agent_is_one_line_naming_its_type() -> None:
    result = _Buggy({"name": "b", "file": "/bin/true"}).status()
    assert result.rc == OCF.ERR_GENERIC
    assert result.message == "script status: internal error KeyError: 'missing'"
