"""Application agents: apache, mysql, postgres-8, tomcat-5/6 and samba, wrapping each daemon's own command.

They share one shape (`DaemonAgent`): a pid file under RUN_DIR/TYPE/ (RUN_DIR is /run/cluster by default), start
runs the daemon's command and waits for the pid file to name a live process (startup_wait, else the start
timeout), status checks that process, stop signals it and waits shutdown_wait seconds before SIGKILL. The
`*_options` attributes are split into argv elements with shlex (quotes honoured, nothing expanded).

A pid file is trusted only when the process it names is the daemon: pid > 1, /proc/PID/exe (or comm) one of
the agent's `daemon_names`, and, for an agent that runs as a service user (postgres-8, tomcat), owned by that
user. A stale pid file (the pid reused by an unrelated process) or a forged one (the pid directory belongs to
the service user) therefore names "no daemon": it is never reported running and never signalled.

- apache: `httpd|apache2 -d SERVER_ROOT -f CONFIG_FILE -c 'PidFile "PIDFILE"' [httpd_options] -k start`.
- mysql: `mysqld_safe --defaults-file=CONFIG_FILE --pid-file=PIDFILE [--bind-address=ADDR] [mysqld_options]`,
  detached.
- postgres-8: `postgres -c config_file=CONFIG_FILE -c external_pid_file=PIDFILE [postmaster_options]` detached,
  run as postmaster_user; stopped with SIGINT (PostgreSQL's fast shutdown).
- tomcat-5/6: `catalina.sh start` with CATALINA_PID; CATALINA_HOME, CATALINA_BASE, JAVA_HOME, ... are read
  from config_file as plain NAME=value lines (we never source it). catalina.sh itself `eval`s CATALINA_OPTS,
  JAVA_OPTS and CATALINA_BASE, so the catalina_options and catalina_base attributes are refused when they hold
  shell metacharacters.
- samba: `smbd -D -s CONFIG_FILE --option=pid directory=DIR [smbd_options]` and the same for nmbd.
"""
from __future__ import annotations

import contextlib
import glob
import os
import re
import shlex
import signal

from rgmanager.agents.base import (
    OCF,
    Agent,
    AgentError,
    Result,
    find_program,
    one_line,
    pid_alive,
    pid_is_daemon,
    read_pid,
    register,
    require_program,
    spawn_daemon,
)


class DaemonAgent(Agent):
    """A daemon tracked through pid files in its own directory under run_dir."""

    stop_signal: signal.Signals = signal.SIGTERM
    default_shutdown_wait = 30.0
    daemon_names: tuple[str, ...] = ()  # program names the pid in a pid file must run (/proc/PID/exe or comm)

    def pid_dir(self) -> str:
        return os.path.join(self.run_dir, self.type_name, _safe_name(self.primary_value))

    def pid_file(self) -> str:
        return os.path.join(self.pid_dir(), f"{self.type_name}.pid")

    def pid_files(self) -> list[str]:
        return [self.pid_file()]

    def log_file(self) -> str:
        """Where a detached daemon's own output goes; its last line explains a failed start."""
        return os.path.join(self.pid_dir(), f"{self.type_name}.log")

    def last_log_line(self) -> str:
        try:
            with open(self.log_file(), "rb") as fh:
                fh.seek(max(0, os.path.getsize(self.log_file()) - 4096))
                lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return one_line(lines[-1]) if lines else ""

    def options(self, name: str) -> list[str]:
        try:
            return shlex.split(self.param(name) or "")
        except ValueError as exc:
            raise AgentError(
                OCF.ERR_CONFIGURED, f"{self.type_name}: {name} cannot be split into arguments: {exc}"
            ) from None

    def run_as(self) -> str | None:
        return None

    def require(self) -> str:
        """The daemon's program; AgentError naming it when it is not installed (checked before anything else)."""
        return require_program(*self.programs)

    def launch(self) -> None:
        raise NotImplementedError

    def daemon_uid(self) -> int | None:
        """The uid the daemon must run as: the service user's, when the agent has one."""
        user = self.run_as()
        if not user:
            return None
        import pwd

        try:
            return pwd.getpwnam(user).pw_uid
        except KeyError:
            return -1  # no such user: no process can match

    def is_daemon(self, pid: int) -> bool:
        return pid_is_daemon(pid, self.daemon_names or self.programs, self.daemon_uid())

    def pids(self) -> tuple[list[int], list[str]]:
        """(pids that are the daemon, pid files that are missing, stale or name another process)."""
        live, bad = [], []
        for path in self.pid_files():
            pid = read_pid(path)
            if pid is not None and self.is_daemon(pid):
                live.append(pid)
            else:
                bad.append(path)
        return live, bad

    def _prepare_pid_dir(self) -> None:
        os.makedirs(self.pid_dir(), mode=0o755, exist_ok=True)
        user = self.run_as()
        if user:
            import pwd

            try:
                entry = pwd.getpwnam(user)
            except KeyError:
                raise AgentError(OCF.ERR_CONFIGURED, f"{self.type_name}: user {user!r} does not exist") from None
            os.chown(self.pid_dir(), entry.pw_uid, entry.pw_gid)

    def _start(self) -> Result:
        live, bad = self.pids()
        if live and not bad:
            return Result(OCF.SUCCESS, f"{self.type_name} {self.primary_value} is already running (pid {live[0]})")
        self.require()
        self._prepare_pid_dir()
        self.launch()
        wait = self.seconds("startup_wait", self.remaining())
        if self.wait_until(lambda: not self.pids()[1], limit=wait):
            return Result(OCF.SUCCESS, f"{self.type_name} {self.primary_value} started (pid {self.pids()[0][0]})")
        said = self.last_log_line()
        raise AgentError(OCF.ERR_GENERIC,
                         f"{self.type_name} {self.primary_value} did not write a live pid to {self.pids()[1][0]} "
                         f"within {wait:.0f}s" + (f"; its log says: {said}" if said else ""))

    def _stop(self) -> Result:
        live, _bad = self.pids()
        if not live:
            self._remove_pid_files()
            return Result(OCF.SUCCESS, f"{self.type_name} {self.primary_value} is not running")
        for pid in live:
            _signal(pid, self.stop_signal)
        wait = min(self.seconds("shutdown_wait", self.default_shutdown_wait), self.remaining())
        if not self.wait_until(lambda: not any(pid_alive(p) for p in live), limit=wait):
            for pid in live:
                if self.is_daemon(pid):  # checked again: the pid may have been reused while we waited
                    _signal(pid, signal.SIGKILL)
            self.wait_until(lambda: not any(pid_alive(p) for p in live), limit=5.0)
            if any(pid_alive(p) for p in live):
                raise AgentError(OCF.ERR_GENERIC, f"{self.type_name} {self.primary_value} survived SIGKILL")
            self._remove_pid_files()
            return Result(OCF.SUCCESS, f"{self.type_name} {self.primary_value} killed after {wait:.0f}s")
        self._remove_pid_files()
        return Result(OCF.SUCCESS, f"{self.type_name} {self.primary_value} stopped")

    def _remove_pid_files(self) -> None:
        for path in self.pid_files():
            if os.path.exists(path):
                os.unlink(path)

    def _status(self, depth: int) -> Result:
        live, bad = self.pids()
        if live and not bad:
            pids = ", ".join(map(str, live))
            return Result(OCF.SUCCESS, f"{self.type_name} {self.primary_value} is running (pid {pids})")
        if not live and all(not os.path.exists(p) for p in bad):
            return Result(OCF.NOT_RUNNING, f"{self.type_name} {self.primary_value} is not running")
        return Result(
            OCF.ERR_GENERIC,
            f"{self.type_name} {self.primary_value}: {bad[0]} is missing or does not name a live "
            f"{'/'.join(self.daemon_names or self.programs)} process",
        )

    def require_file(self, name: str) -> str:
        path = self.param(name) or ""
        if not os.path.isfile(path):
            raise AgentError(OCF.ERR_CONFIGURED, f"{self.type_name}: {name} {path!r} does not exist")
        return path


def _signal(pid: int, sig: signal.Signals) -> None:
    if pid <= 1:  # never init, never a process group or "every process"
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _safe_name(name: str) -> str:
    """A resource name as one path component (no separators, no dot-dot)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.@+-]", "_", name) or "_"
    return "_" + cleaned if cleaned.startswith(".") else cleaned


@register
class ApacheAgent(DaemonAgent):
    type_name = "apache"
    description = "The Apache HTTP server, started with its own -k start/-k stop interface."
    programs = ("httpd", "apache2")
    daemon_names = ("httpd", "apache2")

    def config_path(self) -> str:
        config = self.param("config_file") or ""
        return config if os.path.isabs(config) else os.path.join(self.param("server_root") or "", config)

    def launch(self) -> None:
        program = self.require()
        if not os.path.isfile(self.config_path()):
            raise AgentError(OCF.ERR_CONFIGURED, f"apache: config file {self.config_path()!r} does not exist")
        self.execute([program, "-d", self.param("server_root") or "", "-f", self.config_path(),
                      "-c", f'PidFile "{self.pid_file()}"', *self.options("httpd_options"), "-k", "start"],
                     check=True, what="httpd -k start")


@register
class MysqlAgent(DaemonAgent):
    type_name = "mysql"
    description = "The MySQL/MariaDB server, started detached through mysqld_safe."
    programs = ("mysqld_safe", "mariadbd-safe")
    daemon_names = ("mysqld", "mariadbd")  # the server writes the pid file, not the mysqld_safe wrapper

    def launch(self) -> None:
        program = self.require()
        config = self.require_file("config_file")
        argv = [program, f"--defaults-file={config}", f"--pid-file={self.pid_file()}"]
        if self.param("listen_address"):
            argv.append(f"--bind-address={self.param('listen_address')}")
        spawn_daemon([*argv, *self.options("mysqld_options")], log_path=self.log_file())


@register
class PostgresAgent(DaemonAgent):
    type_name = "postgres-8"
    description = "The PostgreSQL server, run detached as postmaster_user; stopped with a fast shutdown (SIGINT)."
    programs = ("postgres", "postmaster")
    daemon_names = ("postgres", "postmaster")
    stop_signal = signal.SIGINT

    def run_as(self) -> str | None:
        return self.param("postmaster_user") or "postgres"

    def launch(self) -> None:
        program = self.require()
        config = self.require_file("config_file")
        spawn_daemon(
            [program, "-c", f"config_file={config}", "-c", f"external_pid_file={self.pid_file()}",
             *self.options("postmaster_options")],
            user=self.run_as(),
            log_path=self.log_file(),
        )


def read_plain_assignments(path: str) -> dict[str, str]:
    """NAME=value and NAME="value" lines of a shell-style config file, read as data (nothing expanded)."""
    values: dict[str, str] = {}
    try:
        with open(path) as fh:
            lines = fh.readlines()
    except OSError:
        return values
    for line in lines:
        match = re.fullmatch(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*?)\s*", line.rstrip("\n"))
        if not match:
            continue
        raw = match.group(2)
        try:
            parts = shlex.split(raw, comments=True)
        except ValueError:
            continue
        if "$" not in raw and "`" not in raw:
            values[match.group(1)] = parts[0] if parts else ""
    return values


CATALINA_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -_.,:=/+@%")


@register
class TomcatAgent(DaemonAgent):
    type_name = "tomcat-6"
    description = "Apache Tomcat through catalina.sh, with settings read (not executed) from config_file."
    programs = ("catalina.sh",)
    daemon_names = ("java",)  # catalina.sh writes the JVM's pid to CATALINA_PID

    def check(self) -> None:
        for name in ("catalina_options", "catalina_base"):
            value = self.param(name) or ""
            bad = sorted(set(value) - set(CATALINA_SAFE))
            if bad:
                raise AgentError(OCF.ERR_CONFIGURED,
                                 f"tomcat: {name}={value!r} holds {''.join(bad)!r}; catalina.sh evaluates it with "
                                 "the shell, so only letters, digits, spaces and -_.,:=/+@% are allowed")

    def settings(self) -> dict[str, str]:
        return read_plain_assignments(self.param("config_file") or "")

    def catalina(self) -> str:
        home = self.settings().get("CATALINA_HOME")
        candidates = [os.path.join(home, "bin", "catalina.sh")] if home else []
        candidates += sorted(glob.glob("/usr/share/tomcat*/bin/catalina.sh"), reverse=True)
        for path in candidates:
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return find_program("catalina.sh") or require_program("catalina.sh")

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in self.settings().items() if k.startswith(("CATALINA_", "JAVA_", "JRE_", "TOMCAT_"))}
        env["CATALINA_PID"] = self.pid_file()
        if self.param("catalina_base"):
            env["CATALINA_BASE"] = self.param("catalina_base") or ""
        if self.param("catalina_options"):
            env["CATALINA_OPTS"] = self.param("catalina_options") or ""
        return env

    def run_as(self) -> str | None:
        return self.param("tomcat_user") or self.settings().get("TOMCAT_USER")

    def require(self) -> str:
        return self.catalina()

    def launch(self) -> None:
        self.execute([self.catalina(), "start"], env=self.environment(), user=self.run_as(), check=True,
                     what="catalina.sh start")


@register
class Tomcat5Agent(TomcatAgent):
    type_name = "tomcat-5"


@register
class SambaAgent(DaemonAgent):
    type_name = "samba"
    description = "Samba's smbd and nmbd daemons, with their pid files in the resource's own directory."
    programs = ("smbd", "nmbd")
    daemon_names = ("smbd", "nmbd")

    def pid_files(self) -> list[str]:
        found = sorted(glob.glob(os.path.join(self.pid_dir(), "*.pid")))
        names = {os.path.basename(p).split("-")[0].split(".")[0] for p in found}
        missing = [os.path.join(self.pid_dir(), f"{d}.pid") for d in self.programs if d not in names]
        return found + missing

    def require(self) -> str:
        found = [require_program(daemon) for daemon in self.programs]  # each one must be installed
        return found[0]

    def launch(self) -> None:
        config = self.require_file("config_file")
        for daemon, opts in (("smbd", "smbd_options"), ("nmbd", "nmbd_options")):
            program = require_program(daemon)
            self.execute([program, "-D", "-s", config, f"--option=pid directory={self.pid_dir()}",
                          *self.options(opts)], check=True, what=f"{daemon} -D")
