"""The local lab's services: the sample web service and the nemesis' ledger services (no Django here).

Each service is an LSB init script (`FILE start|stop|status`, what rgmanager's `script` resource runs) that the
lab writes into `DIR/_lab/<service>`: a two-line `/bin/sh` wrapper that runs this module with this Python
(`sys.executable`) and the service's settings baked in, since a script resource passes nothing but its `file`:

    web     `nodeN server` over HTTP on ADDRESS:PORT (the lab's webservice: 127.0.0.222:8080)
    ledger  records its start and stop, and a heartbeat while it runs, in a ledger file outside the node roots
            (the nemesis test reads it to prove a service never ran on two nodes at once)

Both start a detached process (its own session) that inherits the caller's environment, CLUSTER_ROOT included, so
the lab's kill and fence_lab (which find a node's processes by that marker) reach it. Its pid goes to
`$CLUSTER_ROOT/var/run/<service>.pid`, its output to `$CLUSTER_ROOT/var/log/cluster/<service>.out`.

LSB exit codes: start/stop 0 success (also: start of a running service, stop of a stopped one), 1 generic error,
2 usage, 6 not configured (no CLUSTER_ROOT), 7 not running; status 0 running, 1 dead but the pid file exists (or,
for web, alive but not answering), 3 not running.

The ledger is JSON lines, each appended under flock: `{"service", "node", "event": "start"|"stop"|"alive",
"time", "instance"}` from the services (`instance` tells apart two runs of a service on one node), `{"node",
"event": "off", "time", "cause"}` from the lab when it kills, stops or fences a node (ricci_agent.lab).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAB_DOMAIN = "labdomain"  # the lab's ordered failover domain (all nodes in order)
SCRIPTS_DIR = "_lab"  # DIR/_lab/<service>: node names start with a letter or digit, so this never clashes
WEB_SERVICE = "webservice"
WEB_PORT = 8080
WEB_HOST = 222  # the web service's address is .222 of the nodes' /24: 127.0.0.222 for the default lab
HEARTBEAT = 0.2  # seconds between the ledger services' "alive" lines

START_WAIT = 5.0  # seconds start waits for the service to answer
STOP_WAIT = 5.0  # seconds stop waits after SIGTERM before SIGKILL
KILL_WAIT = 2.0
PROBE_TIMEOUT = 1.0  # an HTTP probe of status
POLL = 0.05
ROOT_CHECK = 1.0  # the detached processes exit when their node's root is gone (a deleted test folder)

LSB_OK, LSB_ERROR, LSB_USAGE, LSB_NOT_CONFIGURED, LSB_NOT_RUNNING = 0, 1, 2, 6, 7
STATUS_DEAD, STATUS_STOPPED = 1, 3


@dataclass(frozen=True, slots=True)
class LabService:
    """A service of the lab's cluster.conf: `kind` "web" (serves `nodeN server` on address:port, with an ip
    resource for the address) or "ledger" (records itself in `ledger`)."""

    name: str
    kind: str = "ledger"
    address: str | None = None
    port: int = WEB_PORT
    ledger: Path | None = None
    heartbeat: float = HEARTBEAT
    domain: str | None = LAB_DOMAIN
    recovery: str = "relocate"
    autostart: bool = True


def web_address(first_address: str) -> str:
    """The web service's address: host .222 of the /24 holding the lab's first node address (127.0.0.222 for the
    default lab, 127.A.B.222 for a test block), so labs side by side never share it."""
    return ".".join([*first_address.split(".")[:3], str(WEB_HOST)])


def web_service(address: str) -> LabService:
    return LabService(WEB_SERVICE, "web", address=address)


def ledger_services(count: int, ledger: Path, *, prefix: str = "svc", heartbeat: float = HEARTBEAT,
                    domain: str | None = LAB_DOMAIN) -> list[LabService]:
    """`count` ledger services `svc1`..`svcN` writing to `ledger`."""
    return [LabService(f"{prefix}{i}", "ledger", ledger=Path(ledger).absolute(), heartbeat=heartbeat, domain=domain)
            for i in range(1, count + 1)]


def script_path(lab_dir: Path, service: str) -> Path:
    return Path(lab_dir) / SCRIPTS_DIR / service


def script_text(service: LabService) -> str:
    """The service's LSB script: /bin/sh running this module with this Python and the settings baked in."""
    if service.kind == "web":
        if not service.address:
            raise ValueError(f"web service {service.name} needs an address")
        args = ["web", "--service", service.name, "--address", service.address, "--port", str(service.port)]
    elif service.kind == "ledger":
        if service.ledger is None:
            raise ValueError(f"ledger service {service.name} needs a ledger path")
        args = ["ledger", "--service", service.name, "--ledger", str(service.ledger),
                "--heartbeat", f"{service.heartbeat:g}"]
    else:
        raise ValueError(f"unknown lab service kind {service.kind!r} (web or ledger)")
    command = " ".join(shlex.quote(w) for w in [sys.executable, "-m", "ricci_agent.lab_services", *args])
    return (
        "#!/bin/sh\n"
        f"# {service.name}: a service of the local lab, an LSB init script (start|stop|status).\n"
        "# Written by ricci_agent.lab; the logic is ricci_agent/lab_services.py.\n"
        f'exec {command} "$@"\n'
    )


def write_script(lab_dir: Path, service: LabService) -> Path:
    """Write the service's script to DIR/_lab/<name> (0755) and return its path."""
    path = script_path(lab_dir, service.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(script_text(service))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path


# -- the ledger ---------------------------------------------------------------------------------------------
def append_record(ledger: Path | str, record: Mapping[str, Any], *, sync: bool = True) -> None:
    """Append one JSON line under an exclusive flock; fsync unless `sync` is False (the heartbeats: a process
    kill loses nothing written, and the lab simulates no power loss of the machine)."""
    line = (json.dumps(dict(record), sort_keys=True) + "\n").encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)  # releases the lock


def read_ledger(ledger: Path | str) -> list[dict[str, Any]]:
    """The ledger's records, in file order; a torn last line (a writer killed mid-write) is skipped."""
    records = []
    try:
        text = Path(ledger).read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def record_off(ledger: Path | str, node: str, cause: str) -> None:
    """The lab's power event: every process of `node` is gone (SIGKILL, stop or fence)."""
    append_record(ledger, {"node": node, "event": "off", "time": time.time(), "cause": cause})


# -- the node this runs on ----------------------------------------------------------------------------------
class ServiceError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def cluster_root() -> Path:
    root = os.environ.get("CLUSTER_ROOT")
    if not root:
        raise ServiceError(LSB_NOT_CONFIGURED, "CLUSTER_ROOT is not set: this script runs as a lab node")
    return Path(root)


def node_name(root: Path) -> str:
    """The node's name from its agent's ricci.json (the lab writes it), else the host name."""
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        name = json.loads((root / "etc/ricci/ricci.json").read_text()).get("node_name")
        if isinstance(name, str) and name:
            return name
    return socket.gethostname()


def pid_file(root: Path, service: str) -> Path:
    return root / "var/run" / f"{service}.pid"


def output_file(root: Path, service: str) -> Path:
    return root / "var/log/cluster" / f"{service}.out"


def _read_pid_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_pid_file(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dict(data)) + "\n")
    os.replace(tmp, path)


def _is_ours(pid: object, service: str) -> bool:
    """Is `pid` alive (not a zombie) and this module's process for `service` (not a process that reused it)?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat[stat.rfind(")") + 2 :].split()[0] in ("Z", "X"):
        return False
    return b"ricci_agent.lab_services" in argv and service.encode() in argv


def _spawn(root: Path, service: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
    """This module's `args` as a detached process (own session), with our environment (CLUSTER_ROOT included)."""
    out = output_file(root, service)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ricci_agent.lab_services", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd="/", start_new_session=True, close_fds=True,
        )


def _stop_process(pid: int, service: str) -> bool:
    """SIGTERM, wait (bounded), SIGKILL, wait (bounded); True when it is gone."""
    for sig, wait in ((signal.SIGTERM, STOP_WAIT), (signal.SIGKILL, KILL_WAIT)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _is_ours(pid, service):
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL)
        else:
            return True
    return not _is_ours(pid, service)


def _last_output(root: Path, service: str) -> str:
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in output_file(root, service).read_text(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln]
        if lines:
            return lines[-1]
    return ""


# -- web: nodeN server over HTTP -----------------------------------------------------------------------------
def http_get(address: str, port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """The body of GET / on address:port, or None when nothing answers with 200."""
    import http.client

    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return body if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def web_start(root: Path, service: str, address: str, port: int) -> tuple[int, str]:
    if web_status(root, service, address, port)[0] == LSB_OK:
        return LSB_OK, f"{service} is already running"
    text = f"{node_name(root)} server"
    process = _spawn(root, service, ["serve-http", "--service", service, "--address", address,
                                     "--port", str(port), "--text", text])
    _write_pid_file(pid_file(root, service), {"pid": process.pid})
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file(root, service).unlink(missing_ok=True)
            said = _last_output(root, service)
            return LSB_ERROR, f"{service} exited at once ({process.returncode})" + (f": {said}" if said else "")
        if http_get(address, port, timeout=0.5) == text + "\n":
            return LSB_OK, f"{service} serves on {address}:{port}"
        time.sleep(POLL)
    _stop_process(process.pid, service)
    pid_file(root, service).unlink(missing_ok=True)
    return LSB_ERROR, f"{service} did not answer on {address}:{port} within {START_WAIT:g} s"


def web_stop(root: Path, service: str) -> tuple[int, str]:
    data = _read_pid_file(pid_file(root, service))
    if data is None:
        return LSB_OK, f"{service} is not running"
    pid = data.get("pid")
    if _is_ours(pid, service) and not _stop_process(int(pid), service):  # type: ignore[arg-type]
        return LSB_ERROR, f"{service} (pid {pid}) survived SIGKILL"
    pid_file(root, service).unlink(missing_ok=True)
    return LSB_OK, f"{service} stopped"


def web_status(root: Path, service: str, address: str, port: int) -> tuple[int, str]:
    data = _read_pid_file(pid_file(root, service))
    if data is None:
        return STATUS_STOPPED, f"{service} is stopped"
    pid = data.get("pid")
    if not _is_ours(pid, service):
        return STATUS_DEAD, f"{service} is dead but {pid_file(root, service)} exists"
    if http_get(address, port) is None:
        return STATUS_DEAD, f"{service} (pid {pid}) does not answer on {address}:{port}"
    return LSB_OK, f"{service} (pid {pid}) is running"


def serve_http(address: str, port: int, text: str) -> int:
    """Serve `text` on address:port until killed, or until the node's root is gone."""
    import http.server  # here, not at the top: the start/stop/status path must start fast (failover time)

    body = (text + "\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    try:
        server = http.server.HTTPServer((address, port), Handler)
    except OSError as exc:
        print(f"cannot serve on {address}:{port}: {exc.strerror or exc}", flush=True)
        return LSB_ERROR
    root = os.environ.get("CLUSTER_ROOT")
    server.timeout = ROOT_CHECK
    with server:
        while root is None or os.path.isdir(root):
            server.handle_request()
    return LSB_OK


# -- ledger: records start, stop and heartbeats ----------------------------------------------------------------
def ledger_start(root: Path, service: str, ledger: Path, heartbeat: float) -> tuple[int, str]:
    if ledger_status(root, service)[0] == LSB_OK:
        return LSB_OK, f"{service} is already running"
    node = node_name(root)
    instance = uuid.uuid4().hex[:12]
    record = {"service": service, "node": node, "instance": instance}
    append_record(ledger, {**record, "event": "start", "time": time.time()})  # before the service runs
    try:
        process = _spawn(root, service, ["keep", "--service", service, "--ledger", str(ledger), "--node", node,
                                         "--instance", instance, "--heartbeat", f"{heartbeat:g}"])
    except OSError as exc:
        append_record(ledger, {**record, "event": "stop", "time": time.time()})
        return LSB_ERROR, f"cannot start {service}: {exc}"
    _write_pid_file(pid_file(root, service), {"pid": process.pid, "instance": instance})
    return LSB_OK, f"{service} started on {node} (instance {instance})"


def ledger_stop(root: Path, service: str, ledger: Path) -> tuple[int, str]:
    data = _read_pid_file(pid_file(root, service))
    if data is None:
        return LSB_OK, f"{service} is not running"
    pid = data.get("pid")
    if _is_ours(pid, service) and not _stop_process(int(pid), service):  # type: ignore[arg-type]
        return LSB_ERROR, f"{service} (pid {pid}) survived SIGKILL"
    append_record(ledger, {"service": service, "node": node_name(root), "instance": data.get("instance"),
                           "event": "stop", "time": time.time()})  # after the process is gone
    pid_file(root, service).unlink(missing_ok=True)
    return LSB_OK, f"{service} stopped"


def ledger_status(root: Path, service: str) -> tuple[int, str]:
    data = _read_pid_file(pid_file(root, service))
    if data is None:
        return STATUS_STOPPED, f"{service} is stopped"
    if not _is_ours(data.get("pid"), service):
        return STATUS_DEAD, f"{service} is dead but {pid_file(root, service)} exists"
    return LSB_OK, f"{service} (pid {data.get('pid')}) is running"


def keep(service: str, ledger: Path, node: str, instance: str, heartbeat: float) -> int:
    """The ledger service's process: an "alive" line every `heartbeat` s until killed or the root is gone."""
    root = os.environ.get("CLUSTER_ROOT")
    record = {"service": service, "node": node, "instance": instance, "event": "alive"}
    while root is None or os.path.isdir(root):
        append_record(ledger, {**record, "time": time.time()}, sync=False)
        time.sleep(heartbeat)
    return LSB_OK


# -- the command line ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab-service", description="The local lab's service scripts.")
    sub = parser.add_subparsers(dest="kind", required=True)
    web = sub.add_parser("web")
    web.add_argument("--service", required=True)
    web.add_argument("--address", required=True)
    web.add_argument("--port", type=int, default=WEB_PORT)
    web.add_argument("action")
    ledger = sub.add_parser("ledger")
    ledger.add_argument("--service", required=True)
    ledger.add_argument("--ledger", type=Path, required=True)
    ledger.add_argument("--heartbeat", type=float, default=HEARTBEAT)
    ledger.add_argument("action")
    serve = sub.add_parser("serve-http")
    serve.add_argument("--service", required=True)
    serve.add_argument("--address", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--text", required=True)
    kept = sub.add_parser("keep")
    for option in ("--service", "--node", "--instance"):
        kept.add_argument(option, required=True)
    kept.add_argument("--ledger", type=Path, required=True)
    kept.add_argument("--heartbeat", type=float, default=HEARTBEAT)
    return parser


def _lsb(args: argparse.Namespace) -> tuple[int, str]:
    root = cluster_root()
    if args.kind == "web":
        actions = {
            "start": lambda: web_start(root, args.service, args.address, args.port),
            "stop": lambda: web_stop(root, args.service),
            "status": lambda: web_status(root, args.service, args.address, args.port),
        }
    else:
        actions = {
            "start": lambda: ledger_start(root, args.service, args.ledger, args.heartbeat),
            "stop": lambda: ledger_stop(root, args.service, args.ledger),
            "status": lambda: ledger_status(root, args.service),
        }
    if args.action == "restart":
        code, said = actions["stop"]()
        return (code, said) if code != LSB_OK else actions["start"]()
    if args.action not in actions:
        raise ServiceError(LSB_USAGE, f"usage: {args.service} start|stop|status|restart (not {args.action!r})")
    return actions[args.action]()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.kind == "serve-http":
        return serve_http(args.address, args.port, args.text)
    if args.kind == "keep":
        return keep(args.service, args.ledger, args.node, args.instance, args.heartbeat)
    try:
        code, said = _lsb(args)
    except ServiceError as exc:
        code, said = exc.code, str(exc)
    except OSError as exc:
        code, said = LSB_ERROR, f"{args.service}: {exc}"
    print(said, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
