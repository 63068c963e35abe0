"""Child processes of `manage.py demo`, supervised: each in its own process group, its output prefixed with its
name, restarted when it dies (at most MAX_RESTARTS within RESTART_WINDOW seconds, then given up), stopped with
SIGTERM to the whole group and SIGKILL after a grace period. Every loop is bounded. No Django here.

A process group is signalled only while its leader (the child) is not yet reaped: an unreaped leader, running or a
zombie, keeps its PID, and so the group ID, from being reused by an unrelated process. So a child's death is seen
without reaping it (waitid WNOWAIT), the rest of its group is stopped while the zombie leader holds the ID, and only
then is the leader reaped. Once reaped, the group is never signalled again. Linux only (/proc).
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
    def reaped(self) -> bool:
        """Its leader was collected: the group ID may belong to someone else now, never signal it again."""
        return self.process is not None and self.process.returncode is not None

    @property
    def pgid(self) -> int | None:
        return self.process.pid if self.process is not None else None


def live_members(pgid: int) -> list[int]:
    """The processes of group `pgid` that are not zombies (from /proc; reaps nothing)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                text = stat.read()
        except OSError:
            continue
        fields = text[text.rfind(b")") + 2:].split()
        if len(fields) > 2 and fields[0] not in (b"Z", b"X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def leader_exited(process: subprocess.Popen[bytes]) -> bool:
    """True once `process` has exited, without reaping it (an exited, unreaped leader is a zombie that keeps its
    PID, and with it its process group ID, reserved)."""
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # collected elsewhere: let Popen record it
        process.poll()
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
            if child.process is None or child.reaped or not leader_exited(child.process):
                continue
            if not self._stop_group(child, 0.5):  # whatever it left in its group goes with it, then it is reaped
                events.append(f"{child.name}: processes of its group survived SIGKILL")
            code = child.process.returncode
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
        return {c.name: c.process is not None and not leader_exited(c.process) for c in self.children}

    # -- stop --------------------------------------------------------------------------------------------------
    def stop(self, grace: float = STOP_GRACE) -> list[str]:
        """SIGTERM to the group of every child not yet reaped, SIGKILL to the groups left after `grace` s, then
        reap every leader; return the names of the children whose group survived even SIGKILL (empty when
        everything is gone). A child already reaped (it died and was restarted or given up) is not signalled:
        its group ID may have been reused by an unrelated process."""
        live = [c for c in self.children if c.process is not None and not c.reaped]
        for child in live:
            self._signal(child, signal.SIGTERM)
        deadline = self.clock() + grace
        while self.clock() < deadline and any(self._group_live(c) for c in live):
            time.sleep(0.05)
        survivors = [c.name for c in live if not self._stop_group(c, 0)]
        for child in self.children:
            if child.reader is not None:
                child.reader.join(1.0)
        return survivors

    def _signal(self, child: Child, sig: int) -> None:
        """`sig` to the child's group, only while its leader is unreaped (its group ID is still ours)."""
        if child.process is None or child.reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, sig)

    def _group_live(self, child: Child) -> bool:
        """Whether the leader or another process of its group still runs (a zombie leader does not count)."""
        if child.process is None or child.reaped:
            return False
        return not leader_exited(child.process) or bool(live_members(child.process.pid))

    def _stop_group(self, child: Child, grace: float) -> bool:
        """SIGTERM then (after `grace`) SIGKILL to the child's group until no process of it runs (bounded), then
        reap the leader; True if the group is gone."""
        assert child.process is not None
        if child.reaped:
            return True
        if grace > 0 and self._group_live(child):
            self._signal(child, signal.SIGTERM)
            deadline = self.clock() + grace
            while self.clock() < deadline and self._group_live(child):
                time.sleep(0.02)
        deadline = self.clock() + KILL_WAIT
        gone = True
        while self._group_live(child):
            self._signal(child, signal.SIGKILL)
            if self.clock() >= deadline:
                gone = False
                break
            time.sleep(0.02)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(1.0)  # reap the leader: from here on its group is not ours to signal
        return gone
