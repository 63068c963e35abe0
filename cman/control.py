"""The daemon's local control socket: JSON lines over a unix socket (mode 0600) under the node's root.

    request(root, "status")                    -> the daemon's status dict (docs/membership.md)
    request(root, "expected", votes=2)

A request is one line `{"command": ..., **args}`; the reply is one line `{"ok": true, "result": ...}` or
`{"ok": false, "code": ..., "message": ...}`. Clients (cman_tool, fence_node, fence_ack_manual, ricci) raise
`ControlError`; code `not_running` means no daemon answers on this node.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

SOCKET = "var/run/cluster/cman.sock"
PIDFILE = "var/run/cluster/cmand.pid"
MAX_LINE = 1 << 20
DEFAULT_TIMEOUT = 2.0


class ControlError(Exception):
    """A control request that failed; `code` is stable (not_running, timeout, bad_reply, or the daemon's code)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def socket_path(root: str | os.PathLike[str], socket_name: str = SOCKET) -> Path:
    return Path(root) / socket_name


MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """A name for `path` that fits a unix socket address: the path itself when short enough, else the socket's
    name inside its directory opened as /proc/self/fd/N (roots deep in temporary folders exceed 108 bytes)."""
    if len(os.fsencode(str(path))) <= MAX_UNIX_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def request(root: str | os.PathLike[str], command: str, *, timeout: float = DEFAULT_TIMEOUT,
            socket_name: str = SOCKET, **args: Any) -> Any:
    """Send one request to the daemon of the node at `root` (cmand; `socket_name` names another daemon's socket,
    e.g. rgmanager's) and return its result."""
    path = socket_path(root, socket_name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            with _short_path(path) as name:
                sock.connect(name)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError("not_running", "the cluster manager is not running on this node (cman is not "
                               f"started: no daemon on {path})") from None
        except OSError as exc:
            raise ControlError("not_running", f"cannot reach the cluster manager on {path}: "
                               f"{exc.strerror or exc}") from None
        try:
            sock.sendall(json.dumps({"command": command, **args}).encode() + b"\n")
            data = _read_line(sock)
        except TimeoutError:
            raise ControlError("timeout", f"the cluster manager did not answer '{command}' within {timeout:g} s") \
                from None
        except OSError as exc:
            raise ControlError("not_running", f"the cluster manager closed the connection: {exc.strerror}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError("bad_reply", f"the cluster manager sent an unreadable reply to '{command}'") from None
    if not isinstance(reply, dict):
        raise ControlError("bad_reply", f"the cluster manager sent an unreadable reply to '{command}'")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("code", "error")), str(reply.get("message", "request failed")))
    return reply.get("result")


def _read_line(sock: socket.socket) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if b"\n" in chunk or size > MAX_LINE:
            break
    return b"".join(chunks).split(b"\n", 1)[0]


def listen(root: str | os.PathLike[str], socket_name: str = SOCKET) -> socket.socket:
    """The daemon's listening socket (non-blocking), created with mode 0600; a stale socket file is replaced."""
    path = socket_path(root, socket_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        with _short_path(path) as name:
            sock.bind(name)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


Handler = Callable[[Mapping[str, Any]], Any]


class Clients:
    """The control clients of a daemon's loop, read without ever blocking it: each has `deadline` seconds to send
    its request line; one that stays silent or trickles bytes is dropped. The loop selects on `sockets()`, calls
    `accept()` when the listener is readable and `requests()` every pass, and answers each complete line."""

    def __init__(self, listener: socket.socket, deadline: float) -> None:
        self.listener = listener
        self.deadline = deadline
        self.pending: dict[socket.socket, tuple[bytearray, float]] = {}

    def sockets(self) -> list[socket.socket]:
        return [self.listener, *self.pending]

    def accept(self, now: float) -> None:
        for _ in range(16):
            try:
                conn, _ = self.listener.accept()
            except OSError:  # BlockingIOError: nobody is waiting any more
                return
            conn.setblocking(False)
            self.pending[conn] = (bytearray(), now + self.deadline)

    def requests(self, readable: list, now: float) -> list[tuple[socket.socket, bytes]]:
        """Complete request lines, each with its connection (no longer pending: the caller answers, then closes
        it); expired or closed connections are dropped."""
        done = []
        for conn in list(self.pending):
            buffer, deadline = self.pending[conn]
            if conn in readable:
                try:
                    chunk = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    chunk = None
                except OSError:
                    chunk = b""
                if chunk == b"":
                    self.drop(conn)
                    continue
                if chunk:
                    buffer.extend(chunk)
            if b"\n" in buffer or len(buffer) > MAX_LINE:
                del self.pending[conn]
                done.append((conn, bytes(buffer).split(b"\n", 1)[0]))
            elif now > deadline:
                self.drop(conn)
        return done

    def drop(self, conn: socket.socket) -> None:
        self.pending.pop(conn, None)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        for conn in list(self.pending):
            self.drop(conn)


def answer(conn: socket.socket, reply: bytes, timeout: float) -> None:
    """Send a reply line and close the connection (a client that does not read it is not waited for long)."""
    with contextlib.suppress(OSError):
        conn.setblocking(True)
        conn.settimeout(timeout)
        conn.sendall(reply)
    with contextlib.suppress(OSError):
        conn.close()


def handle_line(line: bytes, handlers: Mapping[str, Handler],
                on_error: Callable[[str, BaseException], None] | None = None) -> bytes:
    """One request line in, one reply line out. A handler raises ControlError to refuse; any other exception is
    a bug, answered as `internal_error` (and passed to `on_error`), never raised into the daemon's loop."""
    try:
        message = json.loads(line)
    except ValueError:
        return _reply_error("bad_request", "the request is not JSON")
    if not isinstance(message, dict) or not isinstance(message.get("command"), str):
        return _reply_error("bad_request", "the request names no command")
    handler = handlers.get(message["command"])
    if handler is None:
        return _reply_error("unknown_command", f"unknown command {message['command']!r}")
    try:
        result = handler(message)
        return json.dumps({"ok": True, "result": result}).encode() + b"\n"
    except ControlError as exc:
        return _reply_error(exc.code, exc.message)
    except Exception as exc:
        if on_error is not None:
            on_error(message["command"], exc)
        return _reply_error("internal_error", f"{message['command']} failed ({type(exc).__name__}); see the log")


def _reply_error(code: str, message: str) -> bytes:
    return json.dumps({"ok": False, "code": code, "message": message}).encode() + b"\n"
