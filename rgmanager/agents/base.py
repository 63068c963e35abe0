"""The resource-agent interface, the process runner every agent uses, and the registry of built-in agents.

An agent acts on the real system for one resource: `start`, `stop`, `status(depth)`, `recover` (types whose
metadata has that action), `validate` and `meta_data`. Every operation returns a `Result`: an OCF exit code
and a one-line message. Type metadata (parameters, defaults, actions with timeout/interval/depth) comes from
`cluster_conf.schema.RESOURCE_TYPES`; nothing here repeats it.

The no-shell rule: attribute values reach programs only as argv elements or environment variables. No agent
builds a shell command line, so `; rm -rf /`, `$(...)` and backticks in a value are just bytes. Option strings
that hold several arguments (`httpd_options`, `postmaster_options`, ...) are split with `shlex.split`, which
only tokenises (quotes and backslashes); it never expands variables, globs or commands.

Every operation has a real deadline: programs run in their own process group (a new session), and when the
deadline passes the whole group is killed (SIGTERM, then SIGKILL after a short grace). A descendant that calls
setsid() itself (a daemonising init script) has left the group and is not killed; the wait after SIGKILL is
bounded too, so a process stuck in the kernel is reported ("could not be killed") instead of hanging us.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from cluster_conf.schema import RESOURCE_TYPES, VALUE_TYPES, ResourceType, is_true, parse_time


class OCF(IntEnum):
    """OCF exit codes (the LSB codes for every action but status, plus 7 for "not running")."""

    SUCCESS = 0
    ERR_GENERIC = 1
    ERR_ARGS = 2
    ERR_UNIMPLEMENTED = 3
    ERR_PERM = 4
    ERR_INSTALLED = 5
    ERR_CONFIGURED = 6
    NOT_RUNNING = 7
    RUNNING_PROMOTED = 8
    FAILED_PROMOTED = 9


OCF_NAMES = {code.value: code.name.lower() for code in OCF}

# Timeouts for operations whose type metadata gives none (seconds). rgmanager enforced agent timeouts only
# with __enforce_timeouts="1"; we always enforce one, so a hung program can never hang the engine.
DEFAULT_TIMEOUTS: dict[str, float] = {
    "start": 120.0,
    "stop": 120.0,
    "status": 60.0,
    "recover": 120.0,
    "reload": 60.0,
    "reconfig": 60.0,
    "migrate": 600.0,
    "meta-data": 10.0,
    "validate-all": 10.0,
}
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a timed-out process group
KILL_WAIT = 5.0  # seconds to wait for the leader after SIGKILL before reporting it could not be killed
SPAWN_TIMEOUT = 10.0  # seconds `setsid --fork` may take to return when a daemon is spawned
OUTPUT_LIMIT = 64 * 1024  # bytes of stdout/stderr kept from a program
# Programs such as ip, mount and exportfs live in sbin, which a non-login PATH may lack.
SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
DEFAULT_RUN_DIR = "/run/cluster"  # pid files of the daemons the application agents start


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one agent operation: an OCF code and a one-line message."""

    rc: int
    message: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == OCF.SUCCESS

    @property
    def not_running(self) -> bool:
        """True for a status that found the resource cleanly stopped (OCF 7)."""
        return self.rc == OCF.NOT_RUNNING

    def __str__(self) -> str:
        name = OCF_NAMES.get(self.rc, f"rc {self.rc}")
        return f"{name}: {self.message}" if self.message else name


class AgentError(Exception):
    """Raised inside an agent to end the operation with `rc` and a one-line `message`; `timed_out` says the
    operation's deadline passed (set by `Agent.execute`, carried into `Result.timed_out`)."""

    def __init__(self, rc: int, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.rc = int(rc)
        self.message = one_line(message)
        self.timed_out = timed_out


class UnknownAgentType(ValueError):
    """No built-in agent exists for a resource type."""


def one_line(text: str, limit: int = 300) -> str:
    """The text as a single line (control characters shown escaped), cut to `limit` characters."""
    flat = " ".join(text.replace("\r", "\n").split("\n")).strip()
    flat = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# -- running programs ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProcessResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    missing: str | None = None  # the program that could not be found or executed
    unkillable: bool = False  # timed out, and the leader was still alive KILL_WAIT seconds after SIGKILL

    def last_line(self) -> str:
        """The last non-empty line of stderr, else of stdout: what a program says when it fails."""
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return one_line(lines[-1])
        return ""


def search_path(env: Mapping[str, str] | None = None) -> str:
    """PATH plus the system directories, so sbin programs are found from any environment."""
    current = (env or os.environ).get("PATH", "")
    parts = [p for p in current.split(os.pathsep) if p]
    return os.pathsep.join(parts + [d for d in SYSTEM_DIRS if d not in parts])


def find_program(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """Absolute path of an executable `name` (a bare name searched on PATH and sbin, or a path), or None."""
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name, path=search_path(env))


def not_installed(*names: str) -> AgentError:
    """The one error for an absent program, naming it."""
    listed = " or ".join(repr(n) for n in names)
    return AgentError(OCF.ERR_INSTALLED, f"program {listed} is not installed (not found on PATH or in sbin)")


def require_program(*names: str) -> str:
    """The first of `names` that is installed; AgentError(ERR_INSTALLED) naming them when none is."""
    for name in names:
        found = find_program(name)
        if found:
            return found
    raise not_installed(*names)


def _check_args(argv: Sequence[str], env: Mapping[str, str] | None) -> None:
    for arg in argv:
        if "\0" in arg:
            raise AgentError(OCF.ERR_ARGS, "an argument contains a NUL byte, which no program can receive")
    for key, value in (env or {}).items():
        if "\0" in key or "\0" in value or "=" in key or not key:
            raise AgentError(OCF.ERR_ARGS, f"environment variable {key!r} cannot be passed to a program")


def identity(user: str | None) -> dict[str, object]:
    """Popen arguments that run a program as `user` with that user's primary and supplementary groups
    (Popen(user=...) alone would keep root's groups)."""
    if not user:
        return {}
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise AgentError(OCF.ERR_CONFIGURED, f"user {user!r} does not exist") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": os.getgrouplist(user, entry.pw_gid)}


def _read_tail(handle: tempfile._TemporaryFileWrapper) -> str:  # type: ignore[type-arg]
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - OUTPUT_LIMIT))
    return handle.read().decode("utf-8", "replace")


def kill_group(pgid: int, proc: subprocess.Popen[bytes] | None = None, grace: float = KILL_GRACE) -> None:
    """SIGTERM the process group, wait up to `grace` seconds for the leader, then SIGKILL the group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if proc is not None and sig == signal.SIGTERM:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        # the leader may be gone while other members linger: SIGKILL the group anyway


def run_process(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str = "/",
    user: str | None = None,
) -> ProcessResult:
    """Run a program (never a shell) with a deadline; on timeout kill its whole process group.

    `env` is added to this process's environment; `user` runs it as that user (and groups). The working
    directory is / so that no program keeps a managed file system busy. Output goes to unlinked temporary
    files rather than pipes, so a daemon that a start script leaves running (holding the inherited
    descriptors) cannot block us.
    """
    argv = tuple(argv)
    _check_args(argv, env)
    program = find_program(argv[0], env)
    if program is None:
        return ProcessResult(argv, int(OCF.ERR_INSTALLED), missing=argv[0])
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PATH"] = search_path(full_env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                (program, *argv[1:]),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=full_env,
                cwd=cwd,
                start_new_session=True,  # its own session and process group, so a timeout can kill it all
                close_fds=True,
                **identity(user),  # type: ignore[arg-type]
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            return ProcessResult(argv, int(OCF.ERR_INSTALLED), stderr=exc.strerror or str(exc), missing=argv[0])
        timed_out = unkillable = False
        try:
            rc = proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc.pid, proc)
            try:
                rc = proc.wait(timeout=KILL_WAIT)
            except subprocess.TimeoutExpired:  # e.g. stuck in uninterruptible sleep: report, do not hang
                unkillable = True
                rc = int(OCF.ERR_GENERIC)
        # After a normal exit the group is left alone: an init script may leave its daemon running in it.
        return ProcessResult(argv, rc, _read_tail(out), _read_tail(err), timed_out, unkillable=unkillable)


def spawn_daemon(argv: Sequence[str], *, env: Mapping[str, str] | None = None, user: str | None = None,
                 cwd: str = "/", log_path: str | None = None) -> None:
    """Start a long-running program detached from us (new session, reparented to init via `setsid --fork`).

    For daemons that stay in the foreground (mysqld_safe, postgres): we must not become their parent, or they
    would be killed with our process group and left as zombies when they exit.
    """
    argv = tuple(argv)
    _check_args(argv, env)
    program = find_program(argv[0], env)
    if program is None:
        raise not_installed(argv[0])
    setsid = require_program("setsid")
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PATH"] = search_path(full_env)
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        subprocess.run(
            (setsid, "--fork", program, *argv[1:]),
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=full_env, cwd=cwd,
            check=False, timeout=SPAWN_TIMEOUT, close_fds=True, **identity(user),  # type: ignore[arg-type]
        )
    except (FileNotFoundError, PermissionError) as exc:
        raise AgentError(OCF.ERR_INSTALLED, f"cannot execute {argv[0]!r}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise AgentError(OCF.ERR_GENERIC, f"setsid --fork {argv[0]} did not return within {SPAWN_TIMEOUT:g}s",
                         timed_out=True) from None
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError, OSError):
        return False
    return state not in (b"Z", b"X")


def read_pid(path: str) -> int | None:
    """The pid a pid file names, or None (also for 0 and 1: init is never a daemon we manage)."""
    try:
        with open(path) as fh:
            text = fh.readline().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 1 else None


def process_identity(pid: int) -> tuple[set[str], int | None]:
    """(names, real uid) of a live process: the basename of /proc/PID/exe (when readable) and /proc/PID/comm.
    Empty names and None when the process is gone."""
    names: set[str] = set()
    with contextlib.suppress(OSError):
        names.add(os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)"))
    with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as fh:
        names.add(fh.read().strip())
    uid = None
    with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Uid:"):
                uid = int(line.split()[1])
                break
    return names - {""}, uid


def pid_is_daemon(pid: int, names: Sequence[str], uid: int | None = None) -> bool:
    """True if `pid` (> 1) is a live process running one of the program `names` (as `uid`, when given).

    A pid file can be stale (the pid reused by an unrelated process) or, when its directory belongs to the
    service user, forged: nothing is trusted or signalled without this check. comm is cut to 15 characters.
    """
    if pid <= 1 or not pid_alive(pid):
        return False
    seen, real_uid = process_identity(pid)
    if not any(n in seen or n[:15] in seen for n in names):
        return False
    return uid is None or real_uid == uid


# -- the agent interface ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Action:
    name: str
    timeout: float
    interval: float | None = None
    depth: int | None = None


class Agent:
    """One resource's agent. Subclasses implement `_start`, `_stop`, `_status` (and `_recover` if the type
    has a recover action); callers use the public `start`, `stop`, `status`, `recover`, `validate`, `run`."""

    type_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    programs: ClassVar[tuple[str, ...]] = ()  # the external programs this agent runs, for docs and messages

    def __init__(
        self,
        attrs: Mapping[str, str],
        *,
        timeouts: Mapping[str, float] | None = None,
        run_dir: str = DEFAULT_RUN_DIR,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.attrs: dict[str, str] = {k: str(v) for k, v in attrs.items()}
        self.timeouts = dict(timeouts or {})
        self.run_dir = run_dir
        self.log = log or (lambda _line: None)
        self._deadline: float | None = None

    # -- metadata ------------------------------------------------------------------------------------------
    @classmethod
    def resource_type(cls) -> ResourceType:
        return RESOURCE_TYPES[cls.type_name]

    def param(self, name: str) -> str | None:
        """The attribute's value, else the type's default, else None. Empty strings count as unset."""
        value = self.attrs.get(name)
        if value not in (None, ""):
            return value
        spec = self.resource_type().param(name)
        return spec.default if spec is not None else None

    def flag(self, name: str) -> bool:
        return is_true(self.param(name))

    @property
    def primary_value(self) -> str:
        return self.attrs.get(self.resource_type().primary, "")

    @property
    def resource_id(self) -> str:
        return f"{self.type_name}:{self.primary_value}"

    @classmethod
    def actions(cls) -> list[Action]:
        """start, stop, meta-data, validate-all, plus the type's own actions (status per depth, recover...)."""
        rtype = cls.resource_type()
        declared = [
            Action(name, float(t if t is not None else DEFAULT_TIMEOUTS.get(name, 60.0)),
                   float(i) if i is not None else None, d)
            for name, t, i, d in rtype.actions
        ]
        names = {a.name for a in declared}
        base = [Action(n, DEFAULT_TIMEOUTS[n]) for n in ("start", "stop") if n not in names]
        if "status" not in names:
            base.append(Action("status", DEFAULT_TIMEOUTS["status"], 60.0, 0))
        tail = [Action(n, DEFAULT_TIMEOUTS[n]) for n in ("meta-data", "validate-all")]
        return base + declared + tail

    def timeout(self, op: str, depth: int = 0) -> float:
        """Seconds allowed for `op`: an explicit override, else the type's action, else DEFAULT_TIMEOUTS."""
        if op in self.timeouts:
            return float(self.timeouts[op])
        candidates = [a for a in self.actions() if a.name == op and (a.depth or 0) <= depth]
        if candidates:
            return max(candidates, key=lambda a: a.depth or 0).timeout
        return DEFAULT_TIMEOUTS.get(op, 60.0)

    @classmethod
    def status_interval(cls, depth: int = 0) -> float | None:
        """The check interval of the status action at exactly `depth` (rhcs-facts §2.5), or None."""
        for action in cls.actions():
            if action.name == "status" and (action.depth or 0) == depth:
                return action.interval
        return None

    @classmethod
    def meta_data(cls) -> str:
        """rgmanager-style agent metadata XML, generated from RESOURCE_TYPES."""
        rtype = cls.resource_type()
        root = ET.Element("resource-agent", name=rtype.name, version="rgmanager 2.0")
        ET.SubElement(root, "version").text = "1.0"
        ET.SubElement(root, "longdesc", lang="en").text = cls.description or rtype.name
        ET.SubElement(root, "shortdesc", lang="en").text = (cls.description or rtype.name).split(".")[0]
        params = ET.SubElement(root, "parameters")
        for p in rtype.params:
            attrs = {"name": p.name}
            for flag in ("primary", "unique", "required", "reconfig"):
                if getattr(p, flag):
                    attrs[flag] = "1"
            if p.inherit:
                attrs["inherit"] = p.inherit
            node = ET.SubElement(params, "parameter", attrs)
            content = {"type": p.type}
            if p.default is not None:
                content["default"] = p.default
            c = ET.SubElement(node, "content", content)
            for choice in p.choices:
                ET.SubElement(c, "option", value=choice)
        actions = ET.SubElement(root, "actions")
        for a in cls.actions():
            attrs = {"name": a.name, "timeout": _seconds(a.timeout)}
            if a.interval is not None:
                attrs["interval"] = _seconds(a.interval)
            if a.depth is not None:
                attrs["depth"] = str(a.depth)
            ET.SubElement(actions, "action", attrs)
        special = ET.SubElement(root, "special", tag="rgmanager")
        if rtype.max_instances is not None:
            ET.SubElement(special, "attributes", maxinstances=str(rtype.max_instances))
        for rule in rtype.children:
            attrs = {"type": rule.type}
            if rule.forbid:
                attrs["forbid"] = "1"
            if rule.start is not None:
                attrs["start"] = str(rule.start)
            if rule.stop is not None:
                attrs["stop"] = str(rule.stop)
            ET.SubElement(special, "child", attrs)
        ET.indent(root, "  ")
        return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

    # -- validation ----------------------------------------------------------------------------------------
    def validate(self) -> Result:
        """validate-all: required parameters, value types and choices, then the agent's own checks."""
        return self.run("validate-all")

    def _validate_params(self) -> None:
        import re

        for p in self.resource_type().params:
            value = self.attrs.get(p.name)
            if value in (None, ""):
                if p.required and p.default is None:
                    raise AgentError(OCF.ERR_CONFIGURED, f"{self.type_name}: required parameter '{p.name}' is missing")
                continue
            if p.choices and value not in p.choices:
                raise AgentError(
                    OCF.ERR_CONFIGURED,
                    f"{self.type_name}: {p.name}={value!r} is not one of {', '.join(p.choices)}",
                )
            pattern = VALUE_TYPES.get(p.type)
            if pattern and not re.fullmatch(pattern, value):
                raise AgentError(OCF.ERR_CONFIGURED, f"{self.type_name}: {p.name}={value!r} is not a valid {p.type}")

    def check(self) -> None:
        """Type-specific validation; raise AgentError. Runs before start and in validate-all."""

    # -- operations ----------------------------------------------------------------------------------------
    def start(self) -> Result:
        return self.run("start")

    def stop(self) -> Result:
        return self.run("stop")

    def status(self, depth: int = 0) -> Result:
        return self.run("status", depth)

    def recover(self) -> Result:
        return self.run("recover")

    def has_action(self, op: str) -> bool:
        return op in {"start", "stop", "status", "monitor", "validate-all", "meta-data"} or any(
            a.name == op for a in self.actions()
        )

    def run(self, op: str, depth: int = 0) -> Result:
        """Run one operation with its deadline; errors become a Result, never an exception. An exit code
        outside the OCF range becomes OCF 1 with the raw code in the message."""
        return known_code(self._run(op, depth))

    def _run(self, op: str, depth: int) -> Result:
        if op == "monitor":
            op = "status"
        self._deadline = time.monotonic() + self.timeout(op, depth)
        try:
            if op == "meta-data":
                return Result(OCF.SUCCESS, self.meta_data())
            if op == "validate-all":
                self._validate_params()
                self.check()
                return Result(OCF.SUCCESS, "configuration is valid")
            if not self.has_action(op):
                return Result(OCF.ERR_UNIMPLEMENTED, f"{self.type_name} has no '{op}' action")
            if op == "start":
                self._validate_params()
                self.check()
                return self._start()
            if op == "stop":
                return self._stop()
            if op == "status":
                return self._status(depth)
            method = getattr(self, "_" + op.replace("-", "_"), None)
            if method is None:
                return Result(OCF.ERR_UNIMPLEMENTED, f"{self.type_name} has no '{op}' action")
            return method()
        except AgentError as exc:
            return Result(exc.rc, exc.message, timed_out=exc.timed_out)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            return Result(OCF.ERR_GENERIC, one_line(f"{self.type_name} {op}: {exc.strerror or exc}{where}"))
        except Exception as exc:  # an agent bug must be one line, never a traceback
            return unexpected(f"{self.type_name} {op}", exc)
        finally:
            self._deadline = None

    def _start(self) -> Result:
        raise NotImplementedError

    def _stop(self) -> Result:
        raise NotImplementedError

    def _status(self, depth: int) -> Result:
        raise NotImplementedError

    # -- helpers for subclasses ----------------------------------------------------------------------------
    def remaining(self) -> float:
        """Seconds left before the current operation's deadline (at least 0)."""
        if self._deadline is None:
            return DEFAULT_TIMEOUTS["status"]
        return max(0.0, self._deadline - time.monotonic())

    def execute(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str = "/",
                user: str | None = None, check: bool = False, what: str | None = None) -> ProcessResult:
        """Run a program inside the operation's remaining time. A missing program or a timeout raises
        AgentError; with check=True a non-zero exit does too, with the program's last line of output."""
        result = run_process(argv, timeout=self.remaining(), env=env, cwd=cwd, user=user)
        label = what or os.path.basename(argv[0])
        if result.missing is not None:
            if result.stderr:
                raise AgentError(OCF.ERR_INSTALLED, f"cannot execute {result.missing!r}: {result.stderr}")
            raise not_installed(result.missing)
        if result.unkillable:
            raise AgentError(OCF.ERR_GENERIC, f"{label} timed out; its process group could not be killed",
                             timed_out=True)
        if result.timed_out:
            raise AgentError(OCF.ERR_GENERIC, f"{label} timed out; its process group was killed", timed_out=True)
        if check and result.rc != 0:
            detail = result.last_line()
            raise AgentError(OCF.ERR_GENERIC, f"{label} failed (exit {result.rc})" + (f": {detail}" if detail else ""))
        return result

    def wait_until(self, predicate: Callable[[], bool], limit: float | None = None, step: float = 0.2) -> bool:
        """Poll `predicate` until true, `limit` seconds pass, or the operation's deadline; bounded in time."""
        end = time.monotonic() + min(limit if limit is not None else self.remaining(), self.remaining())
        while True:
            if predicate():
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(min(step, max(0.0, end - time.monotonic())))

    def seconds(self, name: str, default: float) -> float:
        value = self.param(name)
        try:
            return float(parse_time(value)) if value else default
        except ValueError:
            return default


def unexpected(where: str, exc: BaseException) -> Result:
    """An exception no agent expected, as one OCF 1 line naming its type (never a traceback)."""
    detail = one_line(str(exc))
    return Result(OCF.ERR_GENERIC, one_line(f"{where}: internal error {type(exc).__name__}" +
                                            (f": {detail}" if detail else "")))


def known_code(result: Result) -> Result:
    """The result, or OCF 1 naming the raw code when its rc is not an OCF exit code (0-9)."""
    if result.rc in OCF_NAMES:
        return result
    message = f"exit code {result.rc} is not an OCF exit code" + (f": {result.message}" if result.message else "")
    return Result(OCF.ERR_GENERIC, one_line(message), timed_out=result.timed_out)


def ocf_environment(attrs: Mapping[str, str], prefix: str = "OCF_RESKEY_") -> dict[str, str]:
    """Attributes as OCF_RESKEY_<name> variables; names that are not ASCII identifiers are left out."""
    return {prefix + k: v for k, v in attrs.items() if k.isidentifier() and k.isascii()}


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# -- registry -----------------------------------------------------------------------------------------------
_REGISTRY: dict[str, type[Agent]] = {}
_FAMILIES = ("service", "script", "ip", "fs", "netfs", "nfs", "lvm", "apps", "vm", "ocf")


def register(cls: type[Agent]) -> type[Agent]:
    """Class decorator: make `cls` the agent for its type_name (which must be in RESOURCE_TYPES)."""
    if cls.type_name not in RESOURCE_TYPES:
        raise ValueError(f"{cls.__name__}: {cls.type_name!r} is not a resource type of cluster_conf.schema")
    _REGISTRY[cls.type_name] = cls
    return cls


def _load_families() -> None:
    if len(_REGISTRY) < len(_FAMILIES):
        import importlib

        for family in _FAMILIES:
            importlib.import_module(f"rgmanager.agents.{family}")


def agent_for(type_name: str) -> type[Agent]:
    """The agent class for a resource type; UnknownAgentType with a one-line reason if there is none."""
    _load_families()
    cls = _REGISTRY.get(type_name)
    if cls is not None:
        return cls
    if type_name in RESOURCE_TYPES:
        raise UnknownAgentType(
            f"resource type '{type_name}' has no built-in agent; use <ocf provider=\"heartbeat\" type=\"...\"> "
            "with an installed OCF agent instead"
        )
    raise UnknownAgentType(f"unknown resource type '{type_name}' (known: {', '.join(sorted(_REGISTRY))})")


def known_agents() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)
