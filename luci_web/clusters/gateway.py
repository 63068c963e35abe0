"""luci's one way to reach the clusters: the ricci client library with luci's own client key and the host keys
pinned in luci's database (Node.host_key). One persistent connection per node, shared by the process.

luci's identity is a client key in LUCI_HOME/etc/ricci/id_ed25519 (created on first use). An admin authorises
it on each node with `ricci authorize "<luci's public key>"` (the console shows the line), as the original
luci's first contact needed ricci's password.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import paramiko
from django.conf import settings

from ricci_agent import keys
from ricci_agent.client import NodeResult, RicciClient, fetch_host_key
from ricci_agent.protocol import HOST_KEY_CHANGED, HOST_KEY_UNKNOWN, NO_ANSWER, UNREACHABLE, RicciError

__all__ = ["NO_ANSWER", "NodeResult", "RicciError", "call", "client", "fan_out", "luci_public_key", "probe_host_key"]

CONNECT_TIMEOUT = 1.5  # a hung node must show as unknown within 2 s (issue 7 §4)
REQUEST_TIMEOUT = 6.0
STATUS_TIMEOUT = 1.5
PROBE_ATTEMPTS = 3


class PinnedClient(RicciClient):
    """A RicciClient whose host keys come from `pins` ({(address, port): "ssh-ed25519 AAAA..."}), not a file."""

    def __init__(self, key: paramiko.PKey, **kwargs: Any) -> None:
        super().__init__(settings.LUCI_HOME, key, **kwargs)
        self.pins: dict[tuple[str, int], str] = {}
        self._pins_lock = threading.Lock()

    def pin(self, entries: Mapping[tuple[str, int], str]) -> None:
        with self._pins_lock:
            for target, line in entries.items():
                if self.pins.get(target) not in (None, line):
                    self.forget(*target)  # a new key pinned for that address: the old connection must go
                self.pins[target] = line

    def _check_host_key(self, transport: paramiko.Transport, host: str, port: int) -> None:
        offered = transport.get_remote_server_key()
        line = f"{offered.get_name()} {offered.get_base64()}"
        shown = keys.fingerprint(line)
        with self._pins_lock:
            pinned = self.pins.get((host, port))
        if pinned is None:
            raise RicciError(HOST_KEY_UNKNOWN, f"{host}:{port}: host key not confirmed in luci ({shown})",
                             {"fingerprint": shown})
        if pinned.split()[:2] != line.split()[:2]:
            raise RicciError(HOST_KEY_CHANGED, f"{host}:{port}: HOST KEY CHANGED: it offered {shown} but "
                             f"{keys.fingerprint(pinned)} is confirmed in luci; refusing to connect",
                             {"fingerprint": shown, "pinned": keys.fingerprint(pinned)})


_lock = threading.Lock()
_client: PinnedClient | None = None


def luci_public_key() -> str:
    """luci's client public key line (created on first use)."""
    home = settings.LUCI_HOME
    (home / "etc" / "ricci").mkdir(parents=True, exist_ok=True)
    return keys.ensure_client_key(home)


def client() -> PinnedClient:
    """The process's client (created on first use)."""
    global _client
    with _lock:
        if _client is None or _client._closed:
            luci_public_key()
            key = paramiko.Ed25519Key.from_private_key_file(str(keys.client_key_path(settings.LUCI_HOME)))
            _client = PinnedClient(key, connect_timeout=CONNECT_TIMEOUT, request_timeout=REQUEST_TIMEOUT)
        return _client


def reset() -> None:
    """Close every connection (tests; a worker after fork)."""
    global _client
    with _lock:
        if _client is not None:
            _client.close()
        _client = None


def pin_nodes(nodes: Iterable[Any]) -> PinnedClient:
    """The client, with the host keys of `nodes` (Node rows or objects with address, port, host_key) pinned."""
    c = client()
    c.pin({(n.address, int(n.port)): n.host_key for n in nodes})
    return c


def call(node: Any, function: str, args: dict[str, Any] | None = None, *, timeout: float | None = None
         ) -> dict[str, Any]:
    """One request to one node (a Node row); RicciError on an error reply or no answer."""
    return pin_nodes([node]).call(node.address, int(node.port), function, args, timeout=timeout)


def fan_out(nodes: list[Any], function: str, args: dict[str, Any] | None = None, *, timeout: float | None = None
            ) -> dict[str, NodeResult]:
    """The same request to every node in parallel; results keyed by node name."""
    c = pin_nodes(nodes)
    by_target = c.fan_out([(n.address, int(n.port)) for n in nodes], function, args, timeout=timeout)
    return {n.name: by_target[f"{n.address}:{n.port}"] for n in nodes}


def probe_host_key(address: str, port: int, timeout: float = 3.0) -> tuple[str, str]:
    """(host key line, SHA256 fingerprint) an agent offers, read without authenticating: shown to the admin
    for confirmation before anything is pinned."""
    deadline = time.monotonic() + timeout
    for attempt in range(1, PROBE_ATTEMPTS):
        try:
            line = fetch_host_key(address, port, max(0.5, deadline - time.monotonic()))
            return line, keys.fingerprint(line)
        except RicciError as exc:
            # an agent admits only a few connections from one address that have not authenticated yet, and
            # counts a probe out once it notices the close: a probe right after another may be turned away
            # before the banner. Try again briefly; a node that is down fails at once with "cannot connect".
            pause = 0.3 * attempt
            if exc.code != UNREACHABLE or "handshake" not in exc.message or time.monotonic() + pause >= deadline:
                raise
            time.sleep(pause)
    line = fetch_host_key(address, port, max(0.5, deadline - time.monotonic()))
    return line, keys.fingerprint(line)


def call_unpinned(address: str, port: int, host_key: str, function: str, args: dict[str, Any] | None = None,
                  *, timeout: float | None = None) -> dict[str, Any]:
    """A request to an agent not yet saved in luci, under the host key the admin just confirmed."""
    c = client()
    c.pin({(address, int(port)): host_key})
    return c.call(address, int(port), function, args, timeout=timeout)
