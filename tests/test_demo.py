"""`manage.py demo` (what `make demo` runs): Redis, the database, an admin with a printed password, a 3-node lab
added to luci, daphne + worker + watcher supervised, and everything stopped on exit or Ctrl-C with nothing left
behind. Also the supervisor's restart policy and group stop, and the older `--walkthrough`."""
from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from luci_web.supervisor import ChildFailed, Supervisor, live_members
from ricci_agent.lab import Lab, free_block, node_processes, run_nft, table_name
from tests.ricci_fixtures import tear_down

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def marked_processes(home: Path) -> list[int]:
    """Live processes started with LUCI_HOME=<home>: the demo and every child it started (redis-server too)."""
    marker = f"LUCI_HOME={home}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            found.append(int(entry.name))
    return found


def lab_processes(lab_dir: Path) -> set[int]:
    lab = Lab(lab_dir)
    return {pid for node in lab.nodes for pid in node_processes(node)} if lab.exists() else set()


class DemoRun:
    """`manage.py demo` as a subprocess on a free port, a temporary database, LUCI_HOME and lab folder; its output
    collected line by line. kill_all() leaves nothing behind whatever happened."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.home = tmp / "luci"
        self.lab_dir = tmp / "lab"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "LUCI_EMBEDDED_REDIS", "SECRET_KEY")}
        env.update({"DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}", "LUCI_HOME": str(self.home),
                    "PYTHONUNBUFFERED": "1"})
        argv = [sys.executable, "manage.py", "demo", "--port", str(self.port), "--dir", str(self.lab_dir),
                "--first-address", free_block(3), "--no-browser-hint", *extra]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader catch the last lines
                break
            time.sleep(0.1)
        for line in list(self.lines):
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r} within {timeout} s:\n{self.output}")

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code

    def leftovers(self) -> list[str]:
        left = [f"pid {pid}" for pid in marked_processes(self.home)]
        lab = Lab(self.lab_dir)
        if lab.exists():
            left += [f"{n.name}: {node_processes(n)}" for n in lab.nodes if node_processes(n)]
            if os.geteuid() == 0 and run_nft(["list", "table", "inet", table_name(lab.directory)]).returncode == 0:
                left.append("nft table")
        return left

    def kill_all(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in marked_processes(self.home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        tear_down(Lab(self.lab_dir))


def log_in(port: int, username: str, password: str) -> tuple[str, str]:
    """(final URL, page) after logging in through the real form, CSRF token and cookie included."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = f"http://127.0.0.1:{port}/login/"
    with opener.open(login, timeout=10) as reply:
        page = reply.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, page
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), "username": username,
                                   "password": password}).encode()
    request = urllib.request.Request(login, data=data, headers={"Referer": login})
    with opener.open(request, timeout=10) as reply:
        return reply.geturl(), reply.read().decode()


@pytest.mark.slow
def test_demo_runs_everything_then_stops_cleanly(tmp_path: Path) -> None:
    run = DemoRun(tmp_path, "--exit-after", "15")
    try:
        url = run.wait_line("URL: ", 150).split(" ", 1)[1]
        assert url == f"http://127.0.0.1:{run.port}/"
        assert run.wait_line("username: ", 1) == "username: admin"
        password = run.wait_line("password: ", 1).split(" ", 1)[1]
        assert len(password) >= 16
        final, page = log_in(run.port, "admin", password)
        assert not final.endswith("/login/"), page[:2000]
        assert "labcluster" in page  # the lab cluster, added through the registry, is on the overview
        final, _ = log_in(run.port, "admin", password + "x")
        assert final.endswith("/login/")  # a wrong password does not log in
        code = run.wait(120)
        out = run.output
        assert code == 0, out
        for part in ("redis", "lab", "worker", "watcher"):
            assert f"check: {part} answers" in out, out
        assert out.count("= the node's own host key") == 3
        assert "password: " + password in out and out.count(password) == 1  # printed once
        assert "nothing left running" in out
        assert "Traceback" not in out
        assert run.leftovers() == []
    finally:
        run.kill_all()


@pytest.mark.slow
def test_second_run_keeps_the_cluster_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """Run 1 leaves its lab running (--keep-lab); run 2 reuses the lab and the cluster already in luci, sets a new
    password, and on SIGINT (what Ctrl-C sends) stops everything it started, exit status 0. It did not start the
    lab, so the lab keeps running."""
    first = DemoRun(tmp_path, "--exit-after", "0", "--keep-lab")
    try:
        assert first.wait(150) == 0, first.output
        old = first.wait_line("password: ", 1)
        assert "The lab keeps running (--keep-lab)" in first.output
        assert all(node_processes(n) for n in Lab(first.lab_dir).nodes)  # kept running
        assert set(marked_processes(first.home)) <= lab_processes(first.lab_dir)  # but nothing else
    except BaseException:
        first.kill_all()
        raise
    run = DemoRun(tmp_path)
    try:
        assert run.wait_line("password: ", 150) != old
        assert "the lab is already running: using it" in run.output
        assert "cluster labcluster is already in luci with these nodes: kept" in run.output
        # the demo, daphne, worker, watcher (and redis-server), beside the lab's processes
        assert len(set(marked_processes(run.home)) - lab_processes(run.lab_dir)) >= 4
        run.proc.send_signal(signal.SIGINT)
        assert run.wait(60) == 0, run.output
        assert "nothing left running (the lab keeps running)" in run.output
        assert "The lab was running before the demo: left running" in run.output
        assert "Traceback" not in run.output
        assert all(node_processes(n) for n in Lab(run.lab_dir).nodes)  # not the demo's to stop
        assert set(marked_processes(run.home)) <= lab_processes(run.lab_dir)  # but nothing else is left
    finally:
        run.kill_all()


def test_port_in_use_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "LUCI_HOME": str(tmp_path)}
        result = subprocess.run([sys.executable, "manage.py", "demo", "--port", str(port), "--dir",
                                 str(tmp_path / "lab")], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr == f"demo: 127.0.0.1:{port} is already in use (another luci?); stop it or choose another " \
                            "--port\n"
    assert not (tmp_path / "lab").exists() and not (tmp_path / "redis").exists()


# -- the teardown -------------------------------------------------------------------------------------------------
def demo_options(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {"port": free_port(), "nodes": 1, "dir": str(tmp_path / "lab"), "first_address": free_block(1),
            "keep_lab": False, "exit_after": None, "no_browser_hint": True, **extra}


def test_the_demo_leaves_running_a_lab_it_did_not_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from luci_web.management.commands.demo import Demo

    lab = Lab(tmp_path / "lab")
    try:
        lab.up(1, first_address=free_block(1), no_daemons=True)
        demo = Demo(demo_options(tmp_path))
        assert [n.name for n in demo.start_lab()] == ["node1"]
        assert demo.tear_down() == []
        assert all(node_processes(n) for n in lab.nodes), "the user's own lab was stopped by the demo"
        out = capsys.readouterr().out
        assert "the lab is already running: using it (the demo leaves it running when it stops)" in out
        assert f"The lab was running before the demo: left running (manage.py localcluster down --dir {lab.directory}" \
               in out
        assert "Stopping the lab" not in out
    finally:
        tear_down(lab)


class FailingLab(Lab):
    """A lab whose down() fails with an error the demo does not expect (its bookkeeping broke)."""

    def down(self, grace: float = 0) -> list[str]:
        raise RuntimeError("lab.json changed under the demo")


def test_teardown_stops_redis_and_the_children_whatever_the_lab_raises(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import redis

    from luci_web.embedded_redis import ensure_redis
    from luci_web.management.commands.demo import Demo

    demo = Demo(demo_options(tmp_path))
    demo.lab = FailingLab(tmp_path / "lab")
    demo.lab_owned = True
    demo.supervisor.add("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
    try:
        demo.redis_url, _, demo.redis_stop = ensure_redis(tmp_path, environ={})
        client = redis.Redis.from_url(demo.redis_url, socket_timeout=2)
        assert client.ping()
        demo.supervisor.start()
        sleeper = demo.supervisor.children[0].process
        assert sleeper is not None
        problems = demo.tear_down()
        assert problems == ["stopping the lab: RuntimeError: lab.json changed under the demo"]
        assert sleeper.returncode is not None  # the child was stopped and reaped
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(demo.redis_url, socket_timeout=2, socket_connect_timeout=2).ping()
        assert demo.redis_stop is None
        assert "Traceback" not in capsys.readouterr().out
    finally:
        demo.supervisor.stop(1)
        if demo.redis_stop is not None:
            demo.redis_stop()


# -- the supervisor -----------------------------------------------------------------------------------------------
def test_supervisor_restarts_a_dying_child_then_gives_up(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with open(out, "w") as stream:
        sup = Supervisor(stream, max_restarts=2, window=60)
        sup.add("flaky", [sys.executable, "-c", "print('hello'); raise SystemExit(3)"], dict(os.environ))
        sup.start()
        events: list[str] = []
        with pytest.raises(ChildFailed, match=r"^flaky exited \(status 3\) 3 times within 60 s; giving up$"):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                events += sup.poll()
                time.sleep(0.05)
        assert events == ["flaky exited (status 3); restarted"] * 2
        sup.stop(1)
    assert out.read_text().count("flaky   | hello") == 3  # output prefixed with the child's name


def test_supervisor_stop_kills_the_whole_group(tmp_path: Path) -> None:
    """A child whose own child ignores SIGTERM: stop() SIGTERMs the group, then SIGKILLs what is left."""
    script = ("import signal, subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, "
              "signal.SIG_IGN); print(\"ready\", flush=True); time.sleep(60)'])\n"
              "time.sleep(60)\n")
    with open(tmp_path / "out.txt", "w") as stream:
        sup = Supervisor(stream)
        sup.add("stubborn", [sys.executable, "-c", script], dict(os.environ))
        sup.start()
        pgid = sup.children[0].pgid
        assert pgid is not None and pgid != os.getpgid(0)
        deadline = time.monotonic() + 10
        while "ready" not in (tmp_path / "out.txt").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        assert sup.stop(grace=0.5) == []
        assert time.monotonic() - started < 5
        assert live_members(pgid) == []  # an orphan's zombie may wait a moment for init: it runs nothing


def killpg_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every os.killpg the supervisor makes, recorded (and still sent)."""
    calls: list[tuple[int, int]] = []
    real = os.killpg

    def recording(pgid: int, sig: int) -> None:
        calls.append((pgid, sig))
        real(pgid, sig)

    monkeypatch.setattr(os, "killpg", recording)
    return calls


def test_supervisor_never_signals_the_group_of_a_child_it_reaped(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A child that was given up (its leader reaped) is not signalled again by stop(): its PID, and so its group
    ID, may belong to an unrelated process by then. The child still running is stopped, and every leader reaped."""
    with open(tmp_path / "out.txt", "w") as stream:
        sup = Supervisor(stream, max_restarts=0)
        sup.add("dies", [sys.executable, "-c", "raise SystemExit(4)"], dict(os.environ))
        sup.add("sleeps", [sys.executable, "-c", "import time; time.sleep(60)"], dict(os.environ))
        sup.start()
        dead, alive = sup.children
        with pytest.raises(ChildFailed, match=r"^dies exited \(status 4\) 1 times"):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                sup.poll()
                time.sleep(0.05)
        assert dead.process is not None and dead.process.returncode == 4 and dead.reaped
        calls = killpg_calls(monkeypatch)
        assert sup.stop(grace=2) == []
        assert dead.pgid not in {pgid for pgid, _ in calls}
        assert (alive.pgid, signal.SIGTERM) in calls
        assert alive.process is not None and alive.process.returncode is not None  # reaped
        assert sup.poll() == []  # a given-up child is not looked at again


def test_supervisor_stops_what_a_dead_child_left_before_reaping_it(tmp_path: Path) -> None:
    """The leader exits and leaves a process in its group: poll() sees the death without reaping the leader,
    stops the leftover while the zombie leader keeps the group ID reserved, then reaps and restarts."""
    marker = tmp_path / "left.pid"
    script = ("import os, subprocess, sys\n"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              f"open({str(marker)!r}, 'w').write(str(p.pid))\n")
    with open(tmp_path / "out.txt", "w") as stream:
        sup = Supervisor(stream, max_restarts=1)
        sup.add("leaves", [sys.executable, "-c", script], dict(os.environ))
        sup.start()
        child = sup.children[0]
        first = child.process
        assert first is not None
        deadline = time.monotonic() + 20
        while not marker.exists() or not marker.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        left = int(marker.read_text())
        events: list[str] = []
        while not events and time.monotonic() < deadline:
            events = sup.poll()
            time.sleep(0.02)
        try:
            assert events == ["leaves exited (status 0); restarted"]
            assert first.returncode == 0  # reaped, after its group was stopped
            assert left not in live_members(first.pid)
        finally:
            assert sup.stop(2) == []


def test_walkthrough_runs_end_to_end() -> None:
    result = subprocess.run([sys.executable, "manage.py", "demo", "--walkthrough"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Nodename                        Votes Nodeid Fencetype" in out
    assert "[start] ip:127.0.0.50" in out  # rg_test noop: the engine's start order
    assert "start service:web on node2" in out  # node1 fails: taken over by the next node of the domain
    assert "relocate service:web from node2 to node1" in out  # node1 returns: failback
    assert "Demo complete" in out
    assert "secret" not in out  # the fence password is masked in listings and diffs
    assert "Traceback" not in out + result.stderr
