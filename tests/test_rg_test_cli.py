"""rg_test's command line: modes, the ignored AGENTDIR, dispatch to the runner and the what-if tools, and bad
input (one line on stderr, non-zero exit, never a traceback)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from rgmanager.cli.rg_test import main

REPO = Path(__file__).resolve().parents[1]
RG_TEST = Path(sys.executable).parent / "rg_test"

CONF = """<?xml version="1.0"?>
<cluster name="c" config_version="1">
  <rm>
    <resources><ip address="10.0.0.1"/></resources>
    <service name="web"><ip ref="10.0.0.1"/><script name="httpd" file="/etc/init.d/httpd"/></service>
    <service name="db"><ip ref="10.0.0.1"/></service>
  </rm>
</cluster>
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.conf"
    path.write_text(CONF)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_test_mode_prints_list_then_tree(capsys, conf: Path) -> None:
    status, out, err = run(capsys, "test", str(conf))
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "Warning: Max references exceeded for resource address (type ip)"
    assert lines[1] == "=== Resources List ==="
    assert "Resource type: script [INLINE]" in lines and "Instances: 1/1" in lines
    assert "=== Resource Tree ===" in lines and 'service {' in lines and '    service_name = "web";' in lines


def test_agentdir_first_argument_is_ignored(capsys, conf: Path) -> None:
    plain = run(capsys, "noop", str(conf), "start", "service", "web")
    with_dir = run(capsys, "../../resources", "noop", str(conf), "start", "service", "web")
    assert plain == with_dir
    assert plain[1].splitlines()[1:] == [
        "Starting web...", "[start] service:web", "[start] ip:10.0.0.1", "[start] script:httpd",
        "Start of web complete",
    ]


def test_noop_stop(capsys, conf: Path) -> None:
    status, out, _ = run(capsys, "noop", str(conf), "stop", "service", "web")
    assert status == 0
    assert out.splitlines()[1:] == [
        "Stopping web...", "[stop] script:httpd", "[stop] ip:10.0.0.1", "[stop] service:web", "Stop of web complete",
    ]


def test_delta_mode(capsys, conf: Path, tmp_path: Path) -> None:
    new = tmp_path / "new.conf"
    new.write_text(CONF.replace("/etc/init.d/httpd", "/etc/init.d/nginx"))
    status, out, _ = run(capsys, "delta", str(conf), str(new))
    assert status == 0
    sections = [line for line in out.splitlines() if line.startswith("===")]
    assert sections == ["=== Old Resource List ===", "=== New Resource List ===", "=== Old Resource Tree ===",
                        "=== New Resource Tree ==="]
    assert "Resource type: script [INLINE] [NEEDSTOP]" in out and "Resource type: script [INLINE] [NEEDSTART]" in out
    assert "  script [ NEEDSTOP ] {" in out and "  script [ NEEDSTART ] {" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["noop", "FILE", "start", "service", "nope"], "no service named 'nope'"),
        (["noop", "FILE", "restart", "service", "web"], "usage: rg_test noop FILE start|stop service NAME"),
        (["noop", "FILE", "start", "group", "web"], "expected 'service NAME' or 'vm NAME'"),
        (["delta", "FILE"], "usage: rg_test delta OLD NEW"),
        (["test"], "usage: rg_test test FILE"),
        (["frobnicate", "x"], "unknown mode 'frobnicate'"),
        (["test", "/no/such/cluster.conf"], "/no/such/cluster.conf: error FILE_NOT_FOUND: no such file"),
    ],
)
def test_bad_input_one_line_nonzero(capsys, conf: Path, argv: list[str], message: str) -> None:
    status, out, err = run(capsys, *[str(conf) if a == "FILE" else a for a in argv])
    assert status != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("rg_test: ") and message in err


def test_malformed_xml(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("<cluster><rm><service name='x'></rm></cluster>")
    status, out, err = run(capsys, "test", str(bad))
    assert status == 1 and out == "" and err.count("\n") == 1 and "XML_MALFORMED" in err and str(bad) in err


def test_no_arguments_prints_usage(capsys) -> None:
    status, out, err = run(capsys)
    assert status == 2 and out == "" and err.startswith("usage: rg_test")


def test_run_modes_dispatch_to_the_runner(capsys, conf: Path, monkeypatch) -> None:
    calls = []
    fake = types.ModuleType("rgmanager.runner")
    fake.run_service = lambda c, tree, op: calls.append((c.name, tree.id, op)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rgmanager.runner", fake)
    assert run(capsys, "test", str(conf), "status", "service", "web")[0] == 0
    assert run(capsys, str(conf), "start", "service", "db")[0] == 0
    assert run(capsys, "../../resources", str(conf), "stop", "service", "web")[0] == 0
    assert calls == [("c", "service:web", "status"), ("c", "service:db", "start"), ("c", "service:web", "stop")]
    fake.run_service = lambda c, tree, op: 3  # type: ignore[attr-defined]
    assert run(capsys, str(conf), "start", "service", "db")[0] == 3


def test_run_modes_without_a_runner(capsys, conf: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "rgmanager.runner", None)  # import fails
    status, _, err = run(capsys, str(conf), "start", "service", "web")
    assert status == 1 and err.count("\n") == 1 and "running agents is not available" in err


def test_whatif_dispatch(capsys, monkeypatch) -> None:
    fake = types.ModuleType("rgmanager.cli.whatif")
    fake.place_main = lambda rest: 0 if rest == ["F", "--online", "n1"] else 9  # type: ignore[attr-defined]
    fake.simulate_main = lambda rest: 4  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rgmanager.cli.whatif", fake)
    import rgmanager.cli

    monkeypatch.setattr(rgmanager.cli, "whatif", fake, raising=False)
    assert run(capsys, "place", "F", "--online", "n1")[0] == 0
    assert run(capsys, "simulate", "F")[0] == 4
    monkeypatch.setitem(sys.modules, "rgmanager.cli.whatif", None)
    monkeypatch.delattr(rgmanager.cli, "whatif")
    status, _, err = run(capsys, "place", "F")
    assert status == 1 and "what-if tools are not available" in err


@pytest.mark.skipif(not RG_TEST.exists(), reason=f"console script not installed at {RG_TEST} (pip install -e .)")
def test_console_script(conf: Path) -> None:
    done = subprocess.run([str(RG_TEST), "../../resources", "noop", str(conf), "start", "service", "db"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "Start of db complete" in done.stdout
    done = subprocess.run([str(RG_TEST), "test", str(conf) + ".missing"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1


REAL_CONF = """<?xml version="1.0"?>
<cluster name="c" config_version="1">
  <clusternodes><clusternode name="n1" nodeid="1"/></clusternodes>
  <rm>
    <service name="real">
      <ip address="{addr}">
        <script name="sleeper" file="{script}"/>
      </ip>
    </service>
  </rm>
</cluster>
"""

SLEEPER = """#!/bin/sh
PIDFILE='{pidfile}'
case "$1" in
  start) sleep 300 >/dev/null 2>&1 & echo $! > "$PIDFILE"; exit 0 ;;
  stop) [ -f "$PIDFILE" ] && kill "$(cat "$PIDFILE")" 2>/dev/null; rm -f "$PIDFILE"; exit 0 ;;
  status) [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && exit 0; exit 3 ;;
esac
exit 2
"""


def test_real_start_status_stop_runs_the_agents(tmp_path: Path) -> None:
    from rgmanager.agents.base import pid_alive

    pidfile = tmp_path / "sleeper.pid"
    script = tmp_path / "sleeper-init"
    script.write_text(SLEEPER.format(pidfile=pidfile))
    script.chmod(0o755)
    conf = tmp_path / "cluster.conf"
    conf.write_text(REAL_CONF.format(addr="127.0.0.93", script=script))
    command = [str(RG_TEST)] if RG_TEST.exists() else [sys.executable, "-m", "rgmanager.cli.rg_test"]

    def rg_test(op: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, str(conf), op, "service", "real"], capture_output=True, text=True,
                              timeout=120, check=False, cwd=REPO)

    pid = None
    try:
        started = rg_test("start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "[start] ip:127.0.0.93 ok: loopback mode" in started.stdout
        pid = int(pidfile.read_text())
        assert pid_alive(pid)
        status = rg_test("status")
        assert status.returncode == 0 and "[status] script:sleeper ok" in status.stdout, status.stdout
        stopped = rg_test("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid)
        assert rg_test("status").returncode != 0
    finally:
        if pid is None and pidfile.exists():
            pid = int(pidfile.read_text())
        if pid is not None and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
