"""The ricci client library: one persistent SSH connection per node, parallel fan-out, per-node timeouts.

    with RicciClient.for_root(root) as client:
        info = client.call("127.0.0.11", 11111, "hello")
        results = client.fan_out([("127.0.0.11", 11111), ("127.0.0.12", 11111)], "cluster.get_version",
                                 {"version": 3})
        for node, r in results.items():
            print(node, r.ok, r.code, r.message, r.elapsed)

- Authentication: this node's client key (`etc/ricci/id_ed25519`); the agent's host key must be pinned in
  `etc/ricci/known_hosts` under `[host]:port`: an unknown or changed key is refused (RicciError showing the
  fingerprint), never accepted.
- TCP_NODELAY on every socket (paramiko never sets it: without it every exchange waits for delayed ACKs).
- AES-GCM offered first; an established connection's transport thread wakes once a second when idle
  (IDLE_WAKEUP), not paramiko's ten times; fan-out threads are kept and arguments encoded once per fan-out.
- Each connection carries one `ricci` subsystem channel, kept open and reused; requests on one connection are
  serialized; different nodes run in parallel. A connection that timed out or broke is closed and reopened by the
  next call.
- Timeouts: `connect_timeout` (3 s) bounds name resolution + TCP connect + SSH handshake + host-key check +
  authentication + channel open (a watchdog closes the transport when it expires); `request_timeout` (6 s, a short
  request) or `long_request_timeout` (30 s, used for LONG_FUNCTIONS: the updates that stage and commit on every
  peer before they answer), or `timeout=` per call, bounds one request, including the wait for the connection
  while another thread's request is on it. A node that accepts TCP and never answers costs at most
  `connect_timeout`; one that stops answering on an open channel costs the request's timeout.
- A name that is not an IP address is resolved in a worker thread bounded by `connect_timeout` (a hung resolver
  makes the node `unreachable`, it never blocks the caller longer).
"""
from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from ricci_agent import keys
from ricci_agent.protocol import (
    AUTH_FAILED,
    CONNECTION_LOST,
    DEFAULT_PORT,
    HOST_KEY_CHANGED,
    HOST_KEY_UNKNOWN,
    MALFORMED,
    MAX_MESSAGE_BYTES,
    NO_ANSWER,
    SUBSYSTEM,
    TIMEOUT,
    TOO_LARGE_MARK,
    UNREACHABLE,
    EncodedArgs,
    LineReader,
    RicciError,
    encode_args,
    parse_reply,
    request_line,
)

# paramiko logs a traceback of its own for a failed handshake (a refused or unreachable agent), which this library
# reports as one RicciError line: without a handler of paramiko's, Python's last-resort handler would print it.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

SETTINGS_FILE = keys.RICCI_DIR / "ricci.json"
USERNAME = "ricci"  # the agent ignores the user name; the key is what authenticates
MAX_FAN_OUT_THREADS = 128
CONNECT_TIMEOUT, REQUEST_TIMEOUT, LONG_REQUEST_TIMEOUT = 3.0, 6.0, 30.0  # seconds (issue §3)
# paramiko's transport thread reads its socket with a 0.1 s timeout, to notice a close or a keepalive due: ten
# wake-ups a second for every open connection, idle or not (a 64-node lab burnt 0.4 s of CPU per second doing
# nothing). Once a connection is up, its socket waits IDLE_WAKEUP s instead; closing it shuts the socket down
# first (close_transport), which wakes the reader at once and sends the FIN without waiting for the timeout.
IDLE_WAKEUP = 1.0
AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# Functions that stage and commit on every peer before they answer: the agent's own budget for the peers
# (ricci_agent.server.PUSH_BUDGET) is below LONG_REQUEST_TIMEOUT, so a hung peer shows in the reply as unreachable.
LONG_FUNCTIONS = frozenset({"cluster.set_config", "cluster.stage", "cluster.commit", "node.start", "node.stop",
                            "node.reboot", "node.fence",
                            *(f"service.{op}" for op in ("enable", "disable", "relocate", "restart", "stop", "freeze",
                                                         "unfreeze", "migrate", "convalesce"))})

__all__ = ["LONG_FUNCTIONS", "AgentSettings", "NodeResult", "RicciClient", "RicciError", "fetch_host_key",
           "local_agent"]


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """`etc/ricci/ricci.json`: the agent's defaults, and how local tools find their own agent."""

    node_name: str
    address: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_message_bytes: int = MAX_MESSAGE_BYTES
    login_grace: float = 10.0  # seconds a new connection has to authenticate (sshd's LoginGraceTime)

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> AgentSettings:
        path = Path(root) / SETTINGS_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise RicciError(MALFORMED, f"{path}: not readable JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RicciError(MALFORMED, f"{path}: expected a JSON object")
        try:
            return cls(
                node_name=str(data.get("node_name") or socket.gethostname()),
                address=str(data.get("address") or "127.0.0.1"),
                port=_port(data.get("port", DEFAULT_PORT)),
                max_message_bytes=int(data.get("max_message_bytes", MAX_MESSAGE_BYTES)),
                login_grace=_positive(data.get("login_grace", 10.0), "login_grace"),
            )
        except (TypeError, ValueError) as exc:
            raise RicciError(MALFORMED, f"{path}: {exc}") from None


def _port(value: object) -> int:
    port = int(value)  # type: ignore[call-overload]
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return port


def _positive(value: object, name: str) -> float:
    number = float(value)  # type: ignore[arg-type]
    if not number > 0:
        raise ValueError(f"{name} must be a positive number of seconds")
    return number


def local_agent(root: str | os.PathLike[str]) -> tuple[str, int]:
    """(address, port) of this root's own agent, from ricci.json (127.0.0.1:11111 without one)."""
    settings = AgentSettings.load(root)
    return settings.address, settings.port


@dataclass(frozen=True, slots=True)
class NodeResult:
    """One node's answer in a fan-out: the result, or the error code and message; `elapsed` in seconds."""

    ok: bool
    result: dict[str, Any] | None
    code: str | None
    message: str | None
    elapsed: float

    @property
    def answered(self) -> bool:
        """False when the node gave no answer at all (unreachable, timed out, connection lost)."""
        return self.ok or self.code not in NO_ANSWER


class _Connection:
    """One SSH transport with one open `ricci` channel."""

    def __init__(self, transport: paramiko.Transport, channel: paramiko.Channel, name: str) -> None:
        self.transport = transport
        self.channel = channel
        self.name = name
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._reader = LineReader(MAX_MESSAGE_BYTES)
        self._lines: list[bytes | object] = []

    def request(self, fn: str, args: dict[str, Any] | EncodedArgs | None, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        request_id = next(self._ids)
        try:
            self.channel.settimeout(timeout)
            self.channel.sendall(request_line(request_id, fn, args))
            while True:
                while self._lines:
                    line = self._lines.pop(0)
                    if line is TOO_LARGE_MARK:
                        raise RicciError(MALFORMED, f"{self.name}: the reply is larger than {MAX_MESSAGE_BYTES} bytes")
                    reply_id, outcome = parse_reply(line)  # type: ignore[arg-type]
                    if reply_id != request_id:
                        continue  # a late reply to an earlier request: not ours
                    if isinstance(outcome, RicciError):
                        raise outcome
                    return outcome
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                self.channel.settimeout(remaining)
                data = self.channel.recv(1 << 16)
                if not data:
                    raise RicciError(CONNECTION_LOST, f"{self.name}: the agent closed the connection")
                self._lines.extend(self._reader.feed(data))
        except TimeoutError:
            raise RicciError(TIMEOUT, f"{self.name}: no reply within {timeout:g} s") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise RicciError(CONNECTION_LOST, f"{self.name}: connection lost ({_reason(exc)})") from None

    def close(self) -> None:
        try:
            self.channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the agent is gone already
        finally:
            close_transport(self.transport)


def prefer_aead(transport: paramiko.Transport) -> None:
    """Offer AES-GCM first (the client's order decides): it authenticates each packet inside the cipher, where
    the default aes-ctr + hmac-sha2 computes an HMAC object and compares the MACs in Python for every packet."""
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    aead = tuple(c for c in offered if c in AEAD_CIPHERS)
    options.ciphers = aead + tuple(c for c in offered if c not in aead)


def settle_transport(transport: paramiko.Transport) -> None:
    """An established connection: its transport thread wakes every IDLE_WAKEUP s when idle, not every 0.1 s."""
    transport.sock.settimeout(IDLE_WAKEUP)


def close_transport(transport: paramiko.Transport) -> None:
    """Close a connection now: shutting the socket down wakes paramiko's reader thread (a close alone would leave
    it, and the TCP connection, waiting for its socket timeout)."""
    with contextlib.suppress(OSError):
        transport.sock.shutdown(socket.SHUT_RDWR)
    transport.close()


BANNER_RETRIES = 4  # connection attempts when an agent closes before its banner (too many waiting to log in)


class _TurnedAway(Exception):
    """The agent closed the connection before its SSH banner: nothing was sent yet. `error`: what to raise when
    no attempt is left."""

    def __init__(self, error: RicciError) -> None:
        super().__init__(error.message)
        self.error = error


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class RicciClient:
    """A pool of connections to ricci agents. Thread-safe; use as a context manager, or call close()."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        client_key: paramiko.PKey,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int | None = None,
        source_address: str | None = None,
        long_request_timeout: float = LONG_REQUEST_TIMEOUT,
    ) -> None:
        self.root = Path(root)
        self.source_address = (source_address, 0) if source_address else None
        self.client_key = client_key
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.long_request_timeout = long_request_timeout
        self.max_connections = max_connections
        self._connections: OrderedDict[tuple[str, int], _Connection] = OrderedDict()
        self._connecting: dict[tuple[str, int], threading.Lock] = {}
        self._pool_lock = threading.Lock()
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None  # fan-out workers, kept between fan-outs

    @classmethod
    def for_root(
        cls,
        root: str | os.PathLike[str],
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int | None = None,
        source_address: str | None = None,
        long_request_timeout: float = LONG_REQUEST_TIMEOUT,
    ) -> RicciClient:
        """A client that authenticates with `root`'s client key and trusts `root`'s known_hosts."""
        path = keys.client_key_path(root)
        try:
            key = paramiko.Ed25519Key.from_private_key_file(str(path))
        except FileNotFoundError:
            raise RicciError(AUTH_FAILED, f"{path}: no client key (run 'ricci keygen')") from None
        except (OSError, paramiko.SSHException) as exc:
            raise RicciError(AUTH_FAILED, f"{path}: cannot load the client key ({_reason(exc)})") from None
        return cls(root, key, connect_timeout=connect_timeout, request_timeout=request_timeout,
                   max_connections=max_connections, source_address=source_address,
                   long_request_timeout=long_request_timeout)

    def __enter__(self) -> RicciClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------------------------------------
    def call(
        self, host: str, port: int, function: str, args: dict[str, Any] | EncodedArgs | None = None, *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One request to one agent; its result, or RicciError (an error reply, or no answer).

        `timeout` (default: the long request timeout for LONG_FUNCTIONS, else the short one) bounds the wait for
        the connection (another thread's request may be on it) and the request; connecting has its own bound."""
        if timeout is None:
            timeout = self.long_request_timeout if function in LONG_FUNCTIONS else self.request_timeout
        conn = self._connection(host, port)
        started = time.monotonic()
        if not conn.lock.acquire(timeout=max(0.0, timeout)):
            raise RicciError(TIMEOUT, f"{conn.name}: no reply within {timeout:g} s (the connection stayed busy "
                             "with an earlier request)")
        try:
            return conn.request(function, args, max(0.001, timeout - (time.monotonic() - started)))
        except RicciError as exc:
            if exc.code in NO_ANSWER or exc.code == MALFORMED:
                self._drop((host, port), conn)
            raise
        finally:
            conn.lock.release()

    def fan_out(
        self,
        targets: list[tuple[str, int]],
        function: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, NodeResult]:
        """The same request to every target in parallel; results keyed "host:port" in the order of `targets`.
        The arguments are encoded once for all targets (a push's stage request carries the whole document)."""
        unique = list(dict.fromkeys(targets))
        if not unique:
            return {}
        encoded = encode_args(args)

        def one(target: tuple[str, int]) -> NodeResult:
            started = time.monotonic()
            try:
                result = self.call(target[0], target[1], function, encoded, timeout=timeout)
            except RicciError as exc:
                return NodeResult(False, None, exc.code, exc.message, time.monotonic() - started)
            except Exception as exc:  # a bug must not take the other nodes' answers with it
                return NodeResult(False, None, "internal_error", _reason(exc), time.monotonic() - started)
            return NodeResult(True, result, None, None, time.monotonic() - started)

        if len(unique) == 1:
            return {_key(unique[0]): one(unique[0])}
        pool = self._workers()
        try:
            answers = list(pool.map(one, unique)) if pool is not None else [one(t) for t in unique]
        except RuntimeError:  # close() shut the pool down meanwhile: every call answers "the client is closed"
            answers = [one(t) for t in unique]
        return {_key(t): r for t, r in zip(unique, answers, strict=True)}

    def _workers(self) -> ThreadPoolExecutor | None:
        """The fan-out threads (None once the client is closed): started as needed, at most MAX_FAN_OUT_THREADS,
        and kept (idle ones block without waking), so a push does not start and join a thread per peer."""
        with self._pool_lock:
            if self._closed:
                return None
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=MAX_FAN_OUT_THREADS, thread_name_prefix="ricci-fan-out")
            return self._pool

    def close(self) -> None:
        with self._pool_lock:
            self._closed = True
            connections = list(self._connections.values())
            self._connections.clear()
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        for conn in connections:
            conn.close()

    def forget(self, host: str, port: int) -> None:
        """Close the connection to host:port, if any (the next call reconnects)."""
        with self._pool_lock:
            conn = self._connections.pop((host, port), None)
        if conn is not None:
            conn.close()

    # -- connections ---------------------------------------------------------------------------------------
    def _connection(self, host: str, port: int) -> _Connection:
        key = (host, port)
        with self._pool_lock:
            if self._closed:
                raise RicciError(CONNECTION_LOST, "the client is closed")
            conn = self._connections.get(key)
            if conn is not None and conn.transport.is_active():
                self._connections.move_to_end(key)
                return conn
            connecting = self._connecting.setdefault(key, threading.Lock())
        with connecting:
            with self._pool_lock:
                conn = self._connections.get(key)
                if conn is not None and conn.transport.is_active():
                    return conn
            conn = self._connect(host, port)
            evicted: list[_Connection] = []
            with self._pool_lock:
                if self._closed:  # close() ran while this connection was being made: never pool it
                    evicted.append(conn)
                    conn = None
                old = self._connections.pop(key, None) if conn is not None else None
                if old is not None:
                    evicted.append(old)
                if conn is not None:
                    self._connections[key] = conn
                while self.max_connections and len(self._connections) > self.max_connections:
                    _, victim = self._connections.popitem(last=False)
                    evicted.append(victim)
        for victim in evicted:
            victim.close()
        if conn is None:
            raise RicciError(CONNECTION_LOST, "the client is closed")
        return conn

    def _drop(self, key: tuple[str, int], conn: _Connection) -> None:
        with self._pool_lock:
            if self._connections.get(key) is conn:
                del self._connections[key]
        conn.close()

    def _connect(self, host: str, port: int) -> _Connection:
        """A new session, within connect_timeout. An agent admits only a few connections per source that have not
        authenticated yet and closes any other before its banner (ricci_agent.server); such a refusal happens
        before anything was sent, so it is tried again after a short pause while the deadline allows."""
        deadline = time.monotonic() + self.connect_timeout
        for attempt in range(1, BANNER_RETRIES + 1):
            try:
                return self._connect_once(host, port, deadline)
            except _TurnedAway as refused:
                pause = 0.1 * attempt
                if attempt == BANNER_RETRIES or time.monotonic() + pause >= deadline:
                    raise refused.error from None
                time.sleep(pause)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _connect_once(self, host: str, port: int, deadline: float) -> _Connection:
        name = f"{host}:{port}"
        address = resolve(host, max(0.05, deadline - time.monotonic()))
        try:
            sock = socket.create_connection((address, port), timeout=max(0.05, deadline - time.monotonic()),
                                            source_address=self.source_address)
        except TimeoutError:
            raise RicciError(UNREACHABLE, f"{name}: no TCP connection within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise RicciError(UNREACHABLE, f"{name}: cannot connect ({exc.strerror or _reason(exc)})") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(sock)
        prefer_aead(transport)
        remaining = max(0.05, deadline - time.monotonic())
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = remaining
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            transport.close()

        watchdog = threading.Timer(remaining, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            transport.start_client(timeout=remaining)
            self._check_host_key(transport, host, port)
            transport.auth_publickey(USERNAME, self.client_key)
            channel = transport.open_session(timeout=max(0.05, deadline - time.monotonic()))
            channel.invoke_subsystem(SUBSYSTEM)
            settle_transport(transport)
        except RicciError:
            transport.close()
            raise
        except paramiko.AuthenticationException:
            transport.close()
            if expired.is_set():
                raise RicciError(TIMEOUT, f"{name}: no answer within {self.connect_timeout:g} s") from None
            raise RicciError(
                AUTH_FAILED, f"{name}: authentication failed: this node's client key is not authorised there"
            ) from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            transport.close()
            if expired.is_set():
                raise RicciError(TIMEOUT, f"{name}: no answer within {self.connect_timeout:g} s") from None
            error = RicciError(UNREACHABLE, f"{name}: SSH session failed ({_reason(exc)})")
            if "protocol banner" in str(exc) and transport.remote_version in ("", None):
                raise _TurnedAway(error) from None
            raise error from None
        finally:
            watchdog.cancel()
        return _Connection(transport, channel, name)

    def _check_host_key(self, transport: paramiko.Transport, host: str, port: int) -> None:
        offered = transport.get_remote_server_key()
        line = f"{offered.get_name()} {offered.get_base64()}"
        shown = f"{offered.get_name()} {keys.fingerprint(line)}"
        pinned = keys.known_host_key(self.root, host, port)
        if pinned is None:
            raise RicciError(
                HOST_KEY_UNKNOWN,
                f"{host}:{port}: host key not known ({shown}); if that is the agent's fingerprint "
                f"('ricci fingerprint' on it), pin it with: ricci trust {host}:{port} --fingerprint "
                f"{keys.fingerprint(line)}",
                {"fingerprint": keys.fingerprint(line)},
            )
        if (pinned.key_type, pinned.blob_b64) != (offered.get_name(), offered.get_base64()):
            raise RicciError(
                HOST_KEY_CHANGED,
                f"{host}:{port}: HOST KEY CHANGED: it offered {shown} but {pinned.key_type} {pinned.fingerprint} "
                f"is pinned; refusing to connect (someone may be impersonating it, or it was reinstalled)",
                {"fingerprint": keys.fingerprint(line), "pinned": pinned.fingerprint},
            )


def resolve(host: str, timeout: float) -> str:
    """`host` as an address: an IP literal as is; a name through getaddrinfo in a daemon thread, waited for at
    most `timeout` (a stuck resolver must not hold a caller that promised a bounded connect)."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    answer: list[str] = []
    failure: list[str] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            answer.append(str(infos[0][4][0]))
        except (OSError, UnicodeError, IndexError) as exc:
            failure.append(getattr(exc, "strerror", None) or _reason(exc))

    worker = threading.Thread(target=lookup, daemon=True, name=f"ricci-resolve-{host[:40]}")
    worker.start()
    worker.join(timeout)
    if answer:
        return answer[0]
    if failure:
        raise RicciError(UNREACHABLE, f"{host}: cannot resolve the name ({failure[0]})")
    raise RicciError(UNREACHABLE, f"{host}: the name did not resolve within {timeout:g} s")


def _key(target: tuple[str, int]) -> str:
    return f"{target[0]}:{target[1]}"


def fetch_host_key(host: str, port: int, timeout: float = 3.0) -> str:
    """The host key an agent offers (`ssh-ed25519 AAAA...`), read without authenticating (for `ricci trust`)."""
    name = f"{host}:{port}"
    address = resolve(host, timeout)
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise RicciError(UNREACHABLE, f"{name}: cannot connect ({exc.strerror or _reason(exc)})") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.handshake_timeout = timeout
    watchdog = threading.Timer(timeout, transport.close)
    watchdog.daemon = True
    watchdog.start()
    try:
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
        return f"{key.get_name()} {key.get_base64()}"
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise RicciError(UNREACHABLE, f"{name}: no SSH handshake ({_reason(exc)})") from None
    finally:
        watchdog.cancel()
        transport.close()
