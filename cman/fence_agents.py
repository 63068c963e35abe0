"""Fencing on the machine: the agent calls a node's config asks for, running them, the fence history on disk.

Calling convention (rhcs-facts §5.3): the `agent` executable is looked up on PATH and run with no argv; its
stdin gets `key=value` lines, in this order:
  1. the per-node `<device>` attributes except `name`;
  2. `nodename=<victim>` unless the device already gave one;
  3. the `<fencedevice>` attributes except `name`, in document order, `agent=` where it sits (device_attributes).
No `action` line is added (the agent's default, reboot, applies) unless the config sets one. Exit 0 is success.

Methods are tried in config order; inside a method every device must succeed, the first failing device ends
that method and the next method is tried. `fence_manual` as the agent is never executed: the outcome is
`manual` and the daemon waits for `fence_ack_manual NODE`.

Secrets (passwd, password, passwd_script, anything with passw/secret/token/key in its name) never leave this
module unmasked: the argument lines shown (-vv), the agent's own output (which may echo its stdin) and history
entries all carry the masked form.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster_conf.cli.common import SECRET_MASK
from cluster_conf.document import atomic_write
from cluster_conf.model import ClusterView, FenceDevice
from cluster_conf.schema import is_secret

DEFAULT_TIMEOUT = 60.0  # seconds an agent may run before its whole process group is killed
MANUAL_AGENT = "fence_manual"
EXTRA_PATH = ("/usr/sbin", "/sbin")  # where Debian's fence-agents live; plus the venv's bin (fence_lab)
OUTPUT_LIMIT = 4000  # characters of agent output kept (the tail: the reason is usually last)

# result texts, as fence_node -v prints them (rhcs-facts §4.5)
SUCCESS = "success"
ERROR_FROM_AGENT = "error from agent"
ERROR_NO_DEVICE = "error no device"
ERROR_CONFIG_AGENT = "error config agent"
MANUAL = "manual"

_SECRET_PARTS = ("passw", "secret", "token", "key")
_NOT_SECRET = frozenset({"no_password"})  # a boolean flag, not a password


# -- secrets -------------------------------------------------------------------------------------------------
def is_fence_secret(key: str) -> bool:
    """cluster_conf's secret names, plus what agents take as credentials: passwd_script (masked too, its
    value names where the password comes from), tokens, keys (apikey, access_key, ...)."""
    low = key.strip().lower()
    if low in _NOT_SECRET:
        return False
    return is_secret(low) or any(part in low for part in _SECRET_PARTS)


def secret_values(lines: Iterable[str]) -> tuple[str, ...]:
    """The values of the secret keys among `key=value` lines (non-empty, longest first for replacement)."""
    values = {value for key, sep, value in (line.partition("=") for line in lines) if sep and value
              and is_fence_secret(key)}
    return tuple(sorted(values, key=len, reverse=True))


def masked(lines: Iterable[str]) -> list[str]:
    """`key=value` lines with the values of secret keys replaced by the mask."""
    out = []
    for line in lines:
        key, sep, _value = line.partition("=")
        out.append(f"{key}={SECRET_MASK}" if sep and is_fence_secret(key) else line)
    return out


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """`text` (an agent's output, an error) with every occurrence of a secret value replaced by the mask."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, SECRET_MASK)
    return text


# -- building the calls --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgentCall:
    """One device of a method: the fencedevice's name, its agent and the stdin lines. `error` (a result text)
    when the config cannot produce a call: the device names no fencedevice, or the fencedevice has no agent."""

    device: str
    agent: str | None
    lines: tuple[str, ...]
    error: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        return secret_values(self.lines)

    @property
    def shown_args(self) -> str:
        """`k=v k=v` with secrets masked (fence_node -vv)."""
        return " ".join(masked(self.lines))


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    index: int  # 1-based, as fence_node -v numbers them
    calls: tuple[AgentCall, ...]


def device_calls(view: ClusterView, node_name: str, *, unfence: bool = False) -> list[Method]:
    """The methods to fence (or, with unfence, the one `<unfence>` method to unfence) `node_name`, each with its
    agent calls. An empty list means undefined: the node is unknown or has no method / no unfence device."""
    node = view.node(node_name)
    if node is None:
        return []
    if unfence:
        return [Method("unfence", 1, tuple(_call(view, node_name, ref.name, ref.params) for ref in node.unfence))] \
            if node.unfence else []
    return [
        Method(method.name, index, tuple(_call(view, node_name, ref.name, ref.params) for ref in method.devices))
        for index, method in enumerate(node.methods, start=1)
        if method.devices
    ]


def _call(view: ClusterView, victim: str, device_name: str, node_params: Mapping[str, str]) -> AgentCall:
    lines = [f"{k}={v}" for k, v in node_params.items()]
    if "nodename" not in node_params:
        lines.append(f"nodename={victim}")
    device = view.fence_device(device_name)
    if device is None:
        return AgentCall(device_name, None, tuple(lines), ERROR_NO_DEVICE)
    if not device.agent:
        return AgentCall(device_name, None, tuple(lines), ERROR_CONFIG_AGENT)
    lines.extend(f"{k}={v}" for k, v in device_attributes(device))
    return AgentCall(device_name, device.agent, tuple(lines))


def device_attributes(device: FenceDevice) -> list[tuple[str, str]]:
    """The <fencedevice>'s attributes but `name`, in document order with `agent` where it sits (§5.3).

    The order is `FenceDevice.attrs` (every attribute, in document order, as cluster_conf.model.view fills it); a
    FenceDevice built by hand without `attrs` gets `agent` first, then its params."""
    ordered = device.attrs or {"agent": device.agent or "", **device.params}
    return [(k, v) for k, v in ordered.items() if k != "name"]


# -- running one agent ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgentResult:
    ok: bool
    exit_code: int | None  # None: not run, or killed at the timeout
    output: str  # stdout+stderr, trimmed, secrets masked; or why it did not run
    duration: float
    timed_out: bool = False


def agent_path(env: Mapping[str, str] | None = None) -> str:
    """PATH for finding and running agents: the caller's PATH plus /usr/sbin, /sbin and the venv's bin."""
    base = (os.environ if env is None else env).get("PATH", os.defpath)
    parts = [p for p in base.split(os.pathsep) if p]
    for extra in (*EXTRA_PATH, str(Path(sys.executable).parent)):
        if extra not in parts:
            parts.append(extra)
    return os.pathsep.join(parts)


def run_call(call: AgentCall, *, timeout: float = DEFAULT_TIMEOUT, env: Mapping[str, str] | None = None) -> AgentResult:
    """Run `call`'s agent: found on PATH, no argv, the lines on stdin, in its own process group; the whole group
    is killed at `timeout`. Nothing goes through a shell."""
    if call.error or not call.agent:
        return AgentResult(False, None, call.error or ERROR_CONFIG_AGENT, 0.0)
    run_env = dict(os.environ if env is None else env)
    run_env["PATH"] = agent_path(run_env)
    run_env.setdefault("PYTHONWARNINGS", "ignore")  # keep Python agents' deprecation noise out of the output
    executable = shutil.which(call.agent, path=run_env["PATH"])
    if executable is None:
        return AgentResult(False, None, f"agent {call.agent} not found", 0.0)
    data = ("\n".join(call.lines) + "\n").encode()
    started = time.monotonic()
    try:
        proc = subprocess.Popen([executable], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=run_env, start_new_session=True, close_fds=True)
    except OSError as exc:
        return AgentResult(False, None, f"agent {call.agent} could not be started: {exc.strerror}", 0.0)
    timed_out = False
    try:
        out, _ = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        out = _kill_group(proc)
    finally:
        if proc.returncode is None:  # an exception other than the timeout: leave nothing behind
            _kill_group(proc)
    duration = time.monotonic() - started
    text = _trim(mask_text(out.decode(errors="replace"), call.secrets))
    if timed_out and proc.returncode is not None and proc.returncode >= 0:
        # The agent itself had exited; only processes it left behind held the output open until the timeout.
        note = f"agent {call.agent} left processes running; killed after {timeout:g} s"
        return AgentResult(proc.returncode == 0, proc.returncode, f"{text}\n{note}" if text else note, duration)
    if timed_out:
        note = f"agent {call.agent} timed out after {timeout:g} s (killed)"
        return AgentResult(False, None, f"{note}: {text}" if text else note, duration, timed_out=True)
    return AgentResult(proc.returncode == 0, proc.returncode, text, duration)


def _kill_group(proc: subprocess.Popen[bytes]) -> bytes:
    """SIGKILL the agent's process group (the agent is not reaped yet, so its pid still names the group), then
    collect what it wrote. Bounded: a descendant that left the group and holds the pipe does not block us."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        for stream in (proc.stdout, proc.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.wait(timeout=5)
        out = b""
    return out or b""


def _trim(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())
    return text if len(text) <= OUTPUT_LIMIT else "..." + text[-OUTPUT_LIMIT:]


# -- fencing a node ------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceAttempt:
    """One device tried: `result` is the fence_node -v text (success, error from agent, error no device, ...)."""

    method_index: int
    device_index: int
    method: str
    device: str
    agent: str | None
    result: str
    args: str  # masked k=v k=v
    output: str = ""  # masked
    exit_code: int | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.result == SUCCESS

    @property
    def position(self) -> str:
        return f"{self.method_index}.{self.device_index}"

    def as_dict(self) -> dict[str, Any]:
        return {"dev": self.position, "method": self.method, "device": self.device, "agent": self.agent,
                "result": self.result, "output": self.output, "exit_code": self.exit_code,
                "duration": round(self.duration, 3)}


@dataclass(frozen=True, slots=True)
class FenceOutcome:
    """The result of fencing (or unfencing) one node; satisfies cman.fencing.OutcomeLike.

    status: success | failed | undefined (no method) | manual (a fence_manual device: wait for fence_ack_manual).
    method/device/agent: the method that succeeded (or the last one tried)."""

    node: str
    status: str
    attempts: tuple[DeviceAttempt, ...] = ()
    method: str | None = None
    device: str | None = None
    agent: str | None = None
    message: str = ""
    action: str = "fence"

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def history_entry(self, actor: str, now: float) -> dict[str, Any]:
        """The fence history line for this outcome (only masked text in it)."""
        return {"time": now, "actor": actor, "node": self.node, "action": self.action, "status": self.status,
                "method": self.method, "device": self.device, "agent": self.agent, "message": self.message,
                "attempts": [a.as_dict() for a in self.attempts]}


Runner = Callable[..., AgentResult]  # run_call's signature: (call, *, timeout) -> AgentResult
AttemptCallback = Callable[[DeviceAttempt], None]


def fence(
    view: ClusterView,
    victim: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    runner: Runner = run_call,
    on_attempt: AttemptCallback | None = None,
    unfence: bool = False,
) -> FenceOutcome:
    """Fence (or unfence) `victim` as the config says: methods in order, every device of a method must succeed.
    `on_attempt` sees each DeviceAttempt as soon as it is known (fence_node -v, the daemon's log)."""
    action = "unfence" if unfence else "fence"
    methods = device_calls(view, victim, unfence=unfence)
    if not methods:
        return FenceOutcome(victim, "undefined", message=f"no {action} method configured for {victim}",
                            action=action)
    attempts: list[DeviceAttempt] = []
    last: DeviceAttempt | None = None
    for method in methods:
        method_ok = True
        for device_index, call in enumerate(method.calls, start=1):
            if call.agent is not None and Path(call.agent).name == MANUAL_AGENT:
                attempt = DeviceAttempt(method.index, device_index, method.name, call.device, call.agent, MANUAL,
                                        call.shown_args)
                _note(attempts, attempt, on_attempt)
                return FenceOutcome(victim, "manual", tuple(attempts), method.name, call.device, call.agent,
                                    f"waiting for a manual fence: power {victim} off, then run "
                                    f"fence_ack_manual {victim}", action)
            attempt = _attempt(method, device_index, call, runner, timeout)
            _note(attempts, attempt, on_attempt)
            last = attempt
            if not attempt.ok:
                method_ok = False
                break
        if method_ok:
            return FenceOutcome(victim, "success", tuple(attempts), method.name, _devices(method),
                                _agents(method), f"{action} {victim} success (method {method.name or method.index})",
                                action)
    assert last is not None
    return FenceOutcome(victim, "failed", tuple(attempts), last.method, last.device, last.agent,
                        _failure_message(action, victim, last), action)


def _attempt(method: Method, device_index: int, call: AgentCall, runner: Runner, timeout: float) -> DeviceAttempt:
    common = (method.index, device_index, method.name, call.device, call.agent)
    if call.error:
        return DeviceAttempt(*common, call.error, call.shown_args)
    result = runner(call, timeout=timeout)
    text = SUCCESS if result.ok else ERROR_FROM_AGENT
    return DeviceAttempt(*common, text, call.shown_args, mask_text(result.output, call.secrets), result.exit_code,
                         result.duration)


def _note(attempts: list[DeviceAttempt], attempt: DeviceAttempt, on_attempt: AttemptCallback | None) -> None:
    attempts.append(attempt)
    if on_attempt is not None:
        on_attempt(attempt)


def _devices(method: Method) -> str:
    return ",".join(c.device for c in method.calls)


def _agents(method: Method) -> str:
    return ",".join(c.agent or "" for c in method.calls)


def _failure_message(action: str, victim: str, last: DeviceAttempt) -> str:
    """`fence node2 failed: dev 2.1 (ipmi, agent fence_ipmilan): error from agent: <last output line>`."""
    where = f"dev {last.position} ({last.device}, agent {last.agent or '-'})"
    detail = last.output.splitlines()[-1] if last.output else ""
    return f"{action} {victim} failed: {where}: {last.result}" + (f": {detail}" if detail else "")


# -- history -------------------------------------------------------------------------------------------------
HISTORY = "var/lib/cluster/fence_history.jsonl"
HISTORY_MAX_LINES = 2000  # past this, the file is rewritten with the newest HISTORY_KEEP entries
HISTORY_KEEP = 1000


@dataclass
class FenceHistory:
    """The node's fence history: one JSON object per line, appended by fence_node and the daemon alike
    (an fcntl lock on a sidecar lock file serialises writers, the rotation included)."""

    root: Path | str
    path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.root) / HISTORY

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def append(self, entry: Mapping[str, Any]) -> None:
        """Add one entry (a `time` is stamped when missing); durable (fsync) before returning."""
        record = dict(entry)
        record.setdefault("time", time.time())
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self._locked():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._rotate_if_long()

    def _rotate_if_long(self) -> None:
        with open(self.path, "rb") as f:
            lines = f.readlines()
        if len(lines) > HISTORY_MAX_LINES:
            atomic_write(self.path, b"".join(lines[-HISTORY_KEEP:]), keep_old=False, mode=0o600)

    def entries(self, node: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` entries (of `node` when given), newest last. Unreadable lines are skipped."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
        found: list[dict[str, Any]] = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and (node is None or entry.get("node") == node):
                found.append(entry)
        return found[-limit:] if limit > 0 else []

