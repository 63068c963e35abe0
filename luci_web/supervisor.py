"""Child processes of `manage.py demo`, supervised: each in its own process group, its output prefixed with its
name, restarted when it dies (at most MAX_RESTARTS within RESTART_WINDOW seconds, then given up), stopped with
SIGTERM to the whole group and SIGKILL after a grace period. Every loop is bounded. No Django here.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

MAX_RESTARTS = 3
RESTART_WINDOW = 60.0
STOP_GRACE = 5.0
KILL_WAIT = 3.0


class ChildFailed(Exception):
    """A child died more often than the restart policy allows (one line, for the user)."""


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)  # when it was restarted, within RESTART_WINDOW
    reader: threading.Thread | None = None

    @property
    def pgid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def group_alive(pgid: int) -> bool:
    """True while any process of group `pgid` exists (zombies of other parents included: they are not gone)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Supervisor:
    def __init__(self, out: TextIO | None = None, *, max_restarts: int = MAX_RESTARTS,
                 window: float = RESTART_WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.children: list[Child] = []
        self.out = out if out is not None else sys.stdout
        self.max_restarts = max_restarts
        self.window = window
        self.clock = clock
        self._write_lock = threading.Lock()

    def add(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.children.append(Child(name, list(argv), dict(env)))

    def say(self, line: str) -> None:
        with self._write_lock:
            self.out.write(line.rstrip("\n") + "\n")
            self.out.flush()

    # -- start -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv, env=child.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            process_group=0, close_fds=True,
        )
        child.reader = threading.Thread(target=self._relay, args=(child.name, child.process), daemon=True,
                                        name=f"relay-{child.name}")
        child.reader.start()

    def _relay(self, name: str, process: subprocess.Popen[bytes]) -> None:
        """Copy the child's output, each line prefixed with its name; ends at EOF (the child and its group are
        gone, or closed the pipe)."""
        assert process.stdout is not None
        for raw in process.stdout:
            self.say(f"{name:<8}| {raw.decode(errors='replace').rstrip()}")
        process.stdout.close()

    # -- watch -------------------------------------------------------------------------------------------------
    def poll(self) -> list[str]:
        """Restart the children that died; return what happened, one line each. ChildFailed when a child died
        more than max_restarts times within the window."""
        events = []
        now = self.clock()
        for child in self.children:
            if child.process is None or child.process.poll() is None:
                continue
            code = child.process.returncode
            self._stop_group(child, 0.5)  # whatever it left in its group goes with it
            while child.restarts and now - child.restarts[0] > self.window:
                child.restarts.popleft()
            if len(child.restarts) >= self.max_restarts:
                raise ChildFailed(f"{child.name} exited (status {code}) {self.max_restarts + 1} times within "
                                  f"{self.window:g} s; giving up")
            child.restarts.append(now)
            events.append(f"{child.name} exited (status {code}); restarted")
            self._spawn(child)
        return events

    def running(self) -> dict[str, bool]:
        return {c.name: c.process is not None and c.process.poll() is None for c in self.children}

    # -- stop --------------------------------------------------------------------------------------------------
    def stop(self, grace: float = STOP_GRACE) -> list[str]:
        """SIGTERM to every child's group, SIGKILL to the groups left after `grace` s; return the names of the
        children whose group survived even SIGKILL (empty when everything is gone)."""
        live = [c for c in self.children if c.pgid is not None]
        for child in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pgid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = self.clock() + grace
        while self.clock() < deadline and any(self._alive(c) for c in live):
            time.sleep(0.05)
        survivors = [c.name for c in live if not self._stop_group(c, 0)]
        for child in live:
            if child.reader is not None:
                child.reader.join(1.0)
        return survivors

    def _alive(self, child: Child) -> bool:
        assert child.process is not None and child.pgid is not None
        child.process.poll()  # collect the leader, so it is not counted as a zombie
        return group_alive(child.pgid)

    def _stop_group(self, child: Child, grace: float) -> bool:
        """SIGTERM then (after `grace`) SIGKILL to the child's group, until it is gone (bounded); True if gone."""
        assert child.process is not None and child.pgid is not None
        if grace > 0 and self._alive(child):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pgid, signal.SIGTERM)
            deadline = self.clock() + grace
            while self.clock() < deadline and self._alive(child):
                time.sleep(0.02)
        deadline = self.clock() + KILL_WAIT
        while self._alive(child):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pgid, signal.SIGKILL)
            if self.clock() >= deadline:
                return False
            time.sleep(0.02)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(1.0)
        return True
