"""The whole console as an admin runs it, for browser tests and the live benchmark: `manage.py demo` in a
subprocess (embedded Redis, a 3-node lab with the sample web service, daphne, the Celery worker and the watcher),
with its own database, LUCI_HOME and lab folder; stopped with SIGINT (Ctrl-C) and checked to leave nothing."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT = 240.0  # seconds for the demo to print its URL (the lab's daemons start on 2 busy cores)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    url: str
    username: str
    password: str
    env: dict[str, str]
    lab_dir: Path
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def manage(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """`manage.py ARGS` against the stack's database."""
        return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=60)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                return -9
        return self.proc.returncode


def start(base: Path, *, nodes: int = 3) -> Stack:
    from ricci_agent.lab import free_block

    port = free_port()
    lab_dir = base / "lab"
    first = free_block(nodes)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{base}/luci.sqlite3", "LUCI_HOME": str(base / "home"),
           "PYTHONUNBUFFERED": "1"}
    for name in ("REDIS_URL", "CLUSTER_ROOT", "CELERY_EAGER"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "manage.py", "demo", "--port", str(port), "--dir", str(lab_dir),
                             "--nodes", str(nodes), "--first-address", first, "--no-browser-hint"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    found: dict[str, str] = {}
    ready = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            for key in ("username", "password", "URL"):
                match = re.match(rf"^{key}: (\S+)", line.strip())
                if match:
                    found[key] = match.group(1)
            if len(found) == 3:
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    ready.wait(START_TIMEOUT)
    stack = Stack(found.get("URL", f"http://127.0.0.1:{port}/"), found.get("username", ""),
                  found.get("password", ""), env, lab_dir, proc, output)
    if len(found) < 3 or proc.poll() is not None:
        stack.stop()
        raise RuntimeError("manage.py demo did not come up:\n" + "\n".join(output[-40:]))
    return stack


def wait_until(check, timeout: float, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout:g} s")
