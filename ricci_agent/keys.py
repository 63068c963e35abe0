"""Keys and trust files of a ricci node, all under `$CLUSTER_ROOT/etc/ricci/`:

- `host_ed25519`: the agent's SSH host key (OpenSSH private key format, mode 0600);
- `id_ed25519` / `id_ed25519.pub`: this node's client key, used when it talks to its peers;
- `authorized_keys`: the client keys allowed in (OpenSSH format; lines with options are ignored, see below);
- `known_hosts`: pinned host keys of peers, `[host]:port keytype base64` (OpenSSH format).

No paramiko here: command-line tools that only manage files stay light. Keys are generated with `cryptography`
(paramiko cannot generate Ed25519 keys) and written in the OpenSSH format that paramiko and OpenSSH both read.

`authorized_keys` lines that carry options (`from=`, `command=`, `no-pty`, ...) are ignored, with a warning in
the agent log: the agent does not implement options, and accepting such a key without them would widen what
its owner meant to allow.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cluster_conf.document import atomic_write

RICCI_DIR = Path("etc/ricci")
HOST_KEY = RICCI_DIR / "host_ed25519"
CLIENT_KEY = RICCI_DIR / "id_ed25519"
AUTHORIZED_KEYS = RICCI_DIR / "authorized_keys"
KNOWN_HOSTS = RICCI_DIR / "known_hosts"
KEY_TYPES = frozenset(
    {"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"}
)


class KeyFileError(ValueError):
    """A key line or key file that cannot be used; the message says which and why (never the key's secret)."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """One public key: its type, its base64 blob and an optional comment."""

    key_type: str
    blob_b64: str
    comment: str = ""

    @property
    def line(self) -> str:
        return f"{self.key_type} {self.blob_b64}" + (f" {self.comment}" if self.comment else "")

    @property
    def fingerprint(self) -> str:
        return fingerprint_of_blob(base64.b64decode(self.blob_b64))

    def same_key(self, other: PublicKey) -> bool:
        return (self.key_type, self.blob_b64) == (other.key_type, other.blob_b64)


# -- parsing and fingerprints -------------------------------------------------------------------------------
def fingerprint_of_blob(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint: `SHA256:` + unpadded base64 of the SHA-256 of the key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def parse_public_key(line: str) -> PublicKey:
    """`keytype base64 [comment]` → PublicKey; KeyFileError when the line is not a public key we can use."""
    fields = line.strip().split(None, 2)
    if len(fields) < 2:
        raise KeyFileError("not a public key line: expected 'KEYTYPE BASE64 [COMMENT]'")
    key_type, blob_b64 = fields[0], fields[1]
    if key_type not in KEY_TYPES:
        raise KeyFileError(f"unsupported key type '{key_type[:40]}' (expected one of {', '.join(sorted(KEY_TYPES))})")
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("the key's base64 part is not valid base64") from None
    embedded = _embedded_type(blob)
    if embedded != key_type:
        raise KeyFileError(f"the key blob is not a {key_type} key")
    return PublicKey(key_type, blob_b64, fields[2].strip() if len(fields) > 2 else "")


def _embedded_type(blob: bytes) -> str | None:
    """The key type string at the start of an SSH public key blob (uint32 length + name)."""
    if len(blob) < 4:
        return None
    size = int.from_bytes(blob[:4], "big")
    if size > 64 or len(blob) < 4 + size:
        return None
    return blob[4 : 4 + size].decode("ascii", "replace")


def fingerprint(public_key_line: str) -> str:
    """The SHA256 fingerprint of a public key line (`ssh-ed25519 AAAA... comment`)."""
    return parse_public_key(public_key_line).fingerprint


# -- key files ----------------------------------------------------------------------------------------------
def _generate_private_key_bytes() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )


def _public_line_of_private(path: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{path}: not an unencrypted OpenSSH private key") from None
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _create_exclusive(path: Path, data: bytes, mode: int) -> bool:
    """Write `path` whole with `mode` unless it exists (then leave it: another process made it first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic, and fails instead of replacing a key someone else just wrote
        except FileExistsError:
            return False
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _replace_file(path: Path, data: bytes, mode: int) -> None:
    """Atomically replace a small trust file with `mode` (temp, fsync, rename, directory fsync)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, keep_old=False, mode=mode)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_host_key(root: str | os.PathLike[str]) -> str:
    """Create the host key on first use (mode 0600); return its SHA256 fingerprint."""
    path = Path(root) / HOST_KEY
    if not path.exists():
        _create_exclusive(path, _generate_private_key_bytes(), 0o600)
    return fingerprint(_public_line_of_private(path))


def host_public_key(root: str | os.PathLike[str]) -> str:
    """The host key's public line (`ssh-ed25519 AAAA...`); the host key must exist."""
    path = Path(root) / HOST_KEY
    if not path.exists():
        raise KeyFileError(f"{path}: no host key yet (run 'ricci keygen' or 'ricci serve')")
    return _public_line_of_private(path)


def ensure_client_key(root: str | os.PathLike[str]) -> str:
    """Create this node's client key pair on first use; return the public key line."""
    path = Path(root) / CLIENT_KEY
    pub = path.with_name(path.name + ".pub")
    if not path.exists():
        _create_exclusive(path, _generate_private_key_bytes(), 0o600)
    line = _public_line_of_private(path)
    comment = f"ricci@{_node_label(Path(root))}"
    expected = f"{line} {comment}\n"
    if not pub.exists() or not pub.read_text().startswith(line):
        _replace_file(pub, expected.encode(), 0o644)
    return pub.read_text().strip()


def _node_label(root: Path) -> str:
    import json
    import socket

    try:
        name = json.loads((root / RICCI_DIR / "ricci.json").read_text()).get("node_name")
    except (OSError, ValueError, AttributeError):
        name = None
    return str(name) if name else socket.gethostname()


def client_key_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / CLIENT_KEY


# -- authorized_keys ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AuthorizedKeys:
    keys: tuple[PublicKey, ...]
    ignored: tuple[str, ...]  # one line per ignored entry: why (no key material)

    def find(self, key_type: str, blob_b64: str) -> PublicKey | None:
        for key in self.keys:
            if key.key_type == key_type and key.blob_b64 == blob_b64:
                return key
        return None


def load_authorized_keys(root: str | os.PathLike[str]) -> AuthorizedKeys:
    path = Path(root) / AUTHORIZED_KEYS
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return AuthorizedKeys((), ())
    keys: list[PublicKey] = []
    ignored: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.split(None, 1)[0] not in KEY_TYPES:
            ignored.append(f"{path}:{number}: ignored: key options or an unknown key type are not supported")
            continue
        try:
            keys.append(parse_public_key(line))
        except KeyFileError as exc:
            ignored.append(f"{path}:{number}: ignored: {exc}")
    return AuthorizedKeys(tuple(keys), tuple(ignored))


def authorize(root: str | os.PathLike[str], pubkey_line: str) -> bool:
    """Add a client key to authorized_keys (mode 0600); False when it was already there. A key whose comment
    holds a control character (a newline would smuggle a second key line in) is refused."""
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in pubkey_line.strip()):
        raise KeyFileError("the public key line contains a control character (a newline?): give exactly one key")
    key = parse_public_key(pubkey_line)
    path = Path(root) / AUTHORIZED_KEYS
    if load_authorized_keys(root).find(key.key_type, key.blob_b64):
        return False
    existing = path.read_bytes() if path.exists() else b""
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"
    _replace_file(path, existing + (key.line + "\n").encode(), 0o600)
    return True


# -- known_hosts --------------------------------------------------------------------------------------------
def host_pattern(host: str, port: int) -> str:
    """The known_hosts name OpenSSH uses: `host` on port 22, `[host]:port` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def known_host_key(root: str | os.PathLike[str], host: str, port: int) -> PublicKey | None:
    """The pinned key for host:port, or None. Hashed (`|1|`) and wildcard entries are not supported."""
    wanted = host_pattern(host, port)
    for names, key in _known_host_entries(Path(root) / KNOWN_HOSTS):
        if wanted in names:
            return key
    return None


def _known_host_entries(path: Path) -> list[tuple[list[str], PublicKey]]:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    entries = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "@")):
            continue
        names, _, rest = line.partition(" ")
        try:
            entries.append((names.split(","), parse_public_key(rest)))
        except KeyFileError:
            continue
    return entries


def pin_host_key(root: str | os.PathLike[str], host: str, port: int, public_key_line: str) -> None:
    """Pin `public_key_line` for host:port in known_hosts, replacing any earlier key for that name."""
    key = parse_public_key(public_key_line)
    name = host_pattern(host, port)
    path = Path(root) / KNOWN_HOSTS
    kept: list[str] = []
    if path.exists():
        for raw in path.read_text(errors="replace").splitlines():
            names, sep, rest = raw.strip().partition(" ")
            if sep and name in names.split(","):
                others = [n for n in names.split(",") if n != name]
                if not others:
                    continue
                raw = f"{','.join(others)} {rest}"
            kept.append(raw)
    kept.append(f"{name} {key.key_type} {key.blob_b64}")
    _replace_file(path, ("\n".join(kept) + "\n").encode(), 0o644)
