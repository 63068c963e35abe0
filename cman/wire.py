"""What travels between cman daemons: authenticated UDP packets, the replay guard, the cluster key and id.

A packet is one datagram (at most MAX_PACKET bytes):

    header  magic b"RHCM" | version u8 (1) | cluster_id u16 | sender u32 | incarnation u64 | seq u64 | kind_len u8
    kind    kind_len ASCII bytes (1..MAX_KIND), the message type ("hb", "propose", ...)
    body    compact JSON object (sorted keys, no spaces; JSON object keys are strings, so {1: 5} arrives {"1": 5})
    mac     HMAC-SHA256(authkey, header + kind + body), 32 bytes

All integers are big-endian. `unseal` checks, in order: size (`oversize`, `short`), `magic`, `version`, `cluster`
(a packet of another cluster sharing the port: the caller ignores it), `hmac` (forged, corrupt or another key;
compared in constant time), `format` (kind or body unreadable). Nothing of a packet is trusted before its MAC
checks, except the cluster id used to drop other clusters' traffic early.

`ReplayGuard` then refuses replayed and stale packets per sender: feed it only packets that `unseal` accepted,
or a forger could move a sender's window.

The cluster key lives at $CLUSTER_ROOT/etc/cluster/authkey (64 random bytes, mode 0600); whoever creates the
cluster creates it and gives every node the same file.

The cluster id: `<cman cluster_id=>` when set, else `cluster_id_for(name)`: the first two bytes of SHA-256 of the
UTF-8 cluster name, big-endian (0 is mapped to 1, so an id is never 0). cman derived its default from the name
too, with a different hash; ours is only stable across our own nodes, which is all that matters since every
node of a cluster runs this code.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"RHCM"
VERSION = 1
MAX_PACKET = 60000
MAX_KIND = 32
KEY_BYTES = 64
MIN_KEY_BYTES = 32
AUTHKEY = "etc/cluster/authkey"
REPLAY_WINDOW = 64

_HEADER = struct.Struct(">4sBHIQQB")  # magic, version, cluster_id, sender, incarnation, seq, kind_len
_MAC_BYTES = hashlib.sha256().digest_size
_U16, _U32, _U64 = (1 << 16) - 1, (1 << 32) - 1, (1 << 64) - 1


class WireError(Exception):
    """A packet or key that cannot be used; `code` is stable (short, magic, version, cluster, hmac, format,
    oversize, no_key), `message` one line that never shows key material."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- the cluster key -----------------------------------------------------------------------------------------
def key_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / AUTHKEY


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def write_key(root: str | os.PathLike[str], key: bytes) -> Path:
    """Install `key` as the node's cluster key (mode 0600, atomically: never a half-written key)."""
    from cluster_conf.document import atomic_write

    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a cluster key needs at least {MIN_KEY_BYTES} bytes, got {len(key)}")
    path = key_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, key, keep_old=False, mode=0o600)
    return path


def load_key(root: str | os.PathLike[str]) -> bytes:
    path = key_path(root)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise WireError("no_key", f"no cluster key at {path}: create the cluster key first") from None
    except OSError as exc:
        raise WireError("no_key", f"cannot read the cluster key {path}: {exc.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise WireError("no_key", f"the cluster key {path} is too short ({len(key)} bytes; at least "
                                  f"{MIN_KEY_BYTES})")
    return key


# -- the cluster id ------------------------------------------------------------------------------------------
def cluster_id_for(name: str) -> int:
    """A deterministic 16-bit id (1..65535) for a cluster name: see the module docstring."""
    value = int.from_bytes(hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()[:2], "big")
    return value or 1


def cluster_id(view: Any) -> int:
    """`<cman cluster_id=>` of a cluster_conf.model.ClusterView when it is an integer 1..65535, else the id
    derived from the cluster name."""
    text = (view.cman or {}).get("cluster_id") if getattr(view, "cman", None) is not None else None
    if text is not None and text.strip().isdigit():
        value = int(text.strip())
        if 0 < value <= _U16:
            return value
    return cluster_id_for(view.name or "")


# -- packets -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Packet:
    cluster_id: int
    sender: int
    incarnation: int
    seq: int
    kind: str
    body: dict[str, Any] = field(default_factory=dict)


def seal(key: bytes, packet: Packet) -> bytes:
    """The datagram for `packet`, authenticated under `key`. Raises WireError(`format`|`oversize`) for a packet
    that cannot be sent (a caller's bug, or a body too large for one datagram)."""
    kind = packet.kind.encode("ascii", "replace")
    if not 0 < len(kind) <= MAX_KIND or not packet.kind.isascii():
        raise WireError("format", f"packet kind {packet.kind!r} must be 1..{MAX_KIND} ASCII characters")
    for name, value, limit in (("cluster_id", packet.cluster_id, _U16), ("sender", packet.sender, _U32),
                               ("incarnation", packet.incarnation, _U64), ("seq", packet.seq, _U64)):
        if not isinstance(value, int) or not 0 <= value <= limit:
            raise WireError("format", f"packet {name} {value!r} is out of range 0..{limit}")
    if not isinstance(packet.body, dict):
        raise WireError("format", "a packet body must be a JSON object")
    try:
        body = json.dumps(packet.body, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise WireError("format", f"packet body is not JSON: {exc}") from None
    header = _HEADER.pack(MAGIC, VERSION, packet.cluster_id, packet.sender, packet.incarnation, packet.seq,
                          len(kind))
    signed = header + kind + body
    if len(signed) + _MAC_BYTES > MAX_PACKET:
        raise WireError("oversize", f"{packet.kind} packet of {len(signed) + _MAC_BYTES} bytes exceeds "
                                    f"{MAX_PACKET}")
    return signed + hmac.new(key, signed, hashlib.sha256).digest()


def unseal(key: bytes, data: bytes, cluster_id: int) -> Packet:
    """The packet in datagram `data` if it is ours (this cluster, this key, well formed), else WireError."""
    if len(data) > MAX_PACKET:
        raise WireError("oversize", f"packet of {len(data)} bytes exceeds {MAX_PACKET}")
    if len(data) < _HEADER.size + 1 + _MAC_BYTES:
        raise WireError("short", f"packet of {len(data)} bytes is too short")
    magic, version, cid, sender, incarnation, seq, kind_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireError("magic", "not a cman packet (bad magic)")
    if version != VERSION:
        raise WireError("version", f"packet version {version} is not supported (want {VERSION})")
    if cid != cluster_id:
        raise WireError("cluster", f"packet of cluster id {cid}, not ours ({cluster_id})")
    signed, mac = data[:-_MAC_BYTES], data[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, hmac.new(key, signed, hashlib.sha256).digest()):
        raise WireError("hmac", f"packet from node {sender} fails authentication (forged, corrupt or another key)")
    kind_end = _HEADER.size + kind_len
    if kind_len == 0 or kind_len > MAX_KIND or kind_end > len(signed):
        raise WireError("format", f"packet from node {sender} has a bad kind length {kind_len}")
    try:
        kind = signed[_HEADER.size:kind_end].decode("ascii")
        body = json.loads(signed[kind_end:])
    except (UnicodeDecodeError, ValueError):
        raise WireError("format", f"packet from node {sender} has an unreadable kind or body") from None
    if not isinstance(body, dict):
        raise WireError("format", f"packet from node {sender} has a body that is not a JSON object")
    return Packet(cid, sender, incarnation, seq, kind, body)


# -- replay protection ---------------------------------------------------------------------------------------
@dataclass
class _Window:
    incarnation: int
    highest: int
    seen: int  # bit i set: seq `highest - i` was admitted


class ReplayGuard:
    """Per sender: the newest incarnation wins (a restart resets the window; an older incarnation is stale);
    within it, each seq is admitted once, out of order allowed up to REPLAY_WINDOW below the highest seen."""

    def __init__(self, window: int = REPLAY_WINDOW) -> None:
        self.window = window
        self._senders: dict[int, _Window] = {}

    def admit(self, sender: int, incarnation: int, seq: int) -> str | None:
        """None to accept the packet (and remember it); else the reason: `replay` or `stale_incarnation`."""
        state = self._senders.get(sender)
        if state is None or incarnation > state.incarnation:
            self._senders[sender] = _Window(incarnation, seq, 1)
            return None
        if incarnation < state.incarnation:
            return "stale_incarnation"
        full = (1 << self.window) - 1
        if seq > state.highest:
            shift = seq - state.highest
            state.seen = ((state.seen << shift) | 1) & full if shift < self.window else 1
            state.highest = seq
            return None
        age = state.highest - seq
        if age >= self.window or state.seen >> age & 1:
            return "replay"
        state.seen |= 1 << age
        return None

    def forget(self, sender: int) -> None:
        self._senders.pop(sender, None)

    def incarnation(self, sender: int) -> int | None:
        """The newest incarnation admitted from `sender`, None when none yet."""
        state = self._senders.get(sender)
        return None if state is None else state.incarnation
