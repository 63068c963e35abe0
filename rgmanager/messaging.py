"""Messages between rgmanager daemons: one request and one reply per TCP connection on the node's cluster address.

The original rgmanager talked over cman's cluster messaging (its port 177). Here each daemon listens on its node's
address, port `RG_PORT` (11177), and every frame is authenticated with HMAC-SHA256 under the cluster key
(`etc/cluster/authkey`, the cman layer's) and bound to a nonce the server sends when the connection opens, so a
recorded exchange replays nothing and a forged one is refused. Payloads are JSON objects.

    frame = length (4 bytes, big endian) + MAC (32 bytes) + payload
    MAC   = HMAC(key, "rgm1" + nonce + direction + payload)     direction: b"Q" request, b"R" reply
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import struct
import threading
from collections.abc import Callable

from rgmanager.endpoints import RG_PORT  # noqa: F401 (re-exported: messaging.RG_PORT)

MAGIC = b"rgm1"
NONCE_BYTES = 16
MAX_FRAME = 64 << 20
ACCEPT_BACKLOG = 64

Handler = Callable[[dict], dict]


class MessageError(Exception):
    """A message that could not be delivered or answered (one line; `code` is stable)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _mac(key: bytes, nonce: bytes, direction: bytes, payload: bytes) -> bytes:
    return hmac.new(key, MAGIC + nonce + direction + payload, hashlib.sha256).digest()


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise MessageError("closed", "the peer closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _send_frame(sock: socket.socket, key: bytes, nonce: bytes, direction: bytes, message: dict) -> None:
    payload = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(struct.pack(">I", len(payload)) + _mac(key, nonce, direction, payload) + payload)


def _read_frame(sock: socket.socket, key: bytes, nonce: bytes, direction: bytes) -> dict:
    (size,) = struct.unpack(">I", _recv_exact(sock, 4))
    if size > MAX_FRAME:
        raise MessageError("oversize", f"a frame of {size} bytes is over the limit")
    mac = _recv_exact(sock, 32)
    payload = _recv_exact(sock, size)
    if not hmac.compare_digest(mac, _mac(key, nonce, direction, payload)):
        raise MessageError("forged", "a frame failed authentication")
    try:
        message = json.loads(payload)
    except ValueError:
        raise MessageError("format", "a frame is not JSON") from None
    if not isinstance(message, dict):
        raise MessageError("format", "a frame is not a JSON object")
    return message


def call(key: bytes, address: str, port: int, message: dict, *, timeout: float) -> dict:
    """Send `message` to the daemon at address:port and return its reply (MessageError when none comes)."""
    try:
        with socket.create_connection((address, port), timeout=min(timeout, 2.0)) as sock:
            sock.settimeout(timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nonce = _recv_exact(sock, NONCE_BYTES)
            _send_frame(sock, key, nonce, b"Q", message)
            return _read_frame(sock, key, nonce, b"R")
    except TimeoutError:
        raise MessageError("timeout", f"no answer from {address}:{port} within {timeout:g} s") from None
    except OSError as exc:
        raise MessageError("unreachable", f"{address}:{port}: {exc.strerror or exc}") from None


class Server:
    """Serves requests on (address, port) in threads: one per connection, each one request, one reply."""

    def __init__(self, key: bytes, address: str, port: int, handler: Handler, *, log: Callable[[str], None]) -> None:
        self.key = key
        self.handler = handler
        self.log = log
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(ACCEPT_BACKLOG)
        self.sock.settimeout(0.5)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True, name="rg-messages")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        self.thread.join(2.0)

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="rg-message").start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            nonce = os.urandom(NONCE_BYTES)
            try:
                conn.sendall(nonce)
                message = _read_frame(conn, self.key, nonce, b"Q")
            except (MessageError, OSError) as exc:
                if isinstance(exc, MessageError) and exc.code == "forged":
                    self.log("refused a message that failed authentication")
                return
            try:
                reply = self.handler(message)
            except Exception as exc:  # a bug in a handler: answered, logged by type only, never fatal
                self.log(f"handling a {message.get('kind')!r} message failed: {type(exc).__name__}")
                reply = {"ok": False, "error": f"internal error ({type(exc).__name__})"}
            conn.settimeout(30.0)
            with contextlib.suppress(OSError):
                _send_frame(conn, self.key, nonce, b"R", reply)
