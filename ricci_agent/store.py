"""The versioned configuration store of one node: what "nothing lost" means for cluster.conf.

Layout under `$CLUSTER_ROOT`:
- `etc/cluster/cluster.conf`: the live configuration; `cluster.conf.old` beside it is the one before.
- `var/lib/cluster/history/<version>-<hash16>.conf`: every accepted version, byte for byte.
- `var/lib/cluster/history.jsonl`: one JSON record per accepted version: version, hash, time, author, size.
- `var/lib/cluster/.lock`: serializes writers across processes (flock).

Rules (`ConfigStore.install`):
- a configuration is accepted only if it parses and `cluster_conf.validation.validate` finds no error;
- only a greater `config_version` replaces the current one; the same version with the same bytes is an idempotent
  success ("already"); the same version with other bytes is refused; a smaller version is refused with ccs_tool's
  message ("Proposed updated config file does not have greater version number.");
- catch-up (`tie_break=True`) may also replace the same version when the other copy's hash is smaller: every node
  then settles on the same copy.

Accepted versus live (`accepted()`, `local_edit()`): the configuration a node *accepted* is the last one recorded in
its history (through install, a two-phase commit, catch-up, or a push of the live file itself, which is what
`cman_tool version -r` does). An admin may edit cluster.conf in place (RHEL6: edit, raise config_version, then
`cman_tool version -r`); until that edit is pushed it is a *local edit*: the agent advertises and serves only the
accepted copy, and reports the edit beside it. The rules above still compare against the live file: a copy of the
same version as a local edit but other content is refused (`local_edit_differs`, also for catch-up: no tie-break
against a local edit); a strictly newer copy replaces the edit, which is kept as `cluster.conf.old` and logged.
The live file is adopted without a push only when the history is empty (a node's first configuration).

Write order: the history copy (atomic), its index record (appended, fsync'd), then cluster.conf (atomic, keeping
`.old`). A kill -9 anywhere leaves cluster.conf old or new, whole; a record whose install did not finish is rolled
forward by `recover()` when the agent starts (the record is the promise that this version was accepted).

Two-phase updates (`Staging`): a propagating agent stages the file on every node, then commits. The rules make
two concurrent pushes of one version with different content end with exactly one winner: a node refuses to stage
a copy while a copy with a smaller hash is staged for that version; a commit waits (bounded) while a smaller-hash
copy is staged, and is refused once another copy of that version is live. See docs/ricci-protocol.md.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cluster_conf.document import ClusterConf, atomic_write
from cluster_conf.reports import ConfigError, Report
from cluster_conf.validation import validate

CONF_PATH = Path("etc/cluster/cluster.conf")
STATE_DIR = Path("var/lib/cluster")
HISTORY_DIR = STATE_DIR / "history"
HISTORY_INDEX = STATE_DIR / "history.jsonl"
LOCK_FILE = STATE_DIR / ".lock"

# Refusal codes (they travel as protocol error codes; docs/ricci-protocol.md lists them).
INVALID = "config_invalid"
NOT_GREATER = "version_not_greater"
SAME_VERSION = "same_version_differs"
RACE_LOST = "race_lost"
NOT_STAGED = "not_staged"
NOT_FOUND = "version_not_found"
NO_CONFIG = "no_config"
LOCAL_EDIT = "local_edit_differs"

LOCAL_EDIT_NOTE = "edited locally, not distributed: run cman_tool version -r"

NOT_GREATER_TEXT = "Proposed updated config file does not have greater version number."
RACE_TEXT = "Warning:: Simultaneous update requests detected. You have lost the race."

STAGE_TTL = 30.0  # seconds a staged copy waits for its commit before it is dropped
# Seconds a commit waits for a competing staged copy (smaller hash) to be settled. It must cover the longest
# staging round of the rival push (the pushing agent's connect + stage timeouts, 3 + 6 s): a shorter wait could
# tell both pushers they lost while the rival's copy goes live. The agent passes its own figure to Staging.
COMMIT_WAIT = 10.0
TEMP_LEFTOVERS = (".*.tmp", ".*.tmp.old")  # atomic_write's temporary names, left behind by a kill -9

log = logging.getLogger("ricci.store")


class StoreRefusal(Exception):
    """The store will not take a configuration. `code` is stable, `message` one line, `details` plain data."""

    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def better_copy(version_a: int, hash_a: str, version_b: int, hash_b: str) -> bool:
    """True when copy A beats copy B: the newer version wins; for one version, the smaller hash."""
    return version_a > version_b or (version_a == version_b and hash_a < hash_b)


@dataclass(frozen=True, slots=True)
class StoredConfig:
    data: bytes
    version: int
    hash: str
    cluster_name: str | None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A proposed configuration that parsed and validated; `warnings` are the non-blocking reports."""

    data: bytes
    version: int
    hash: str
    cluster_name: str | None
    conf: ClusterConf
    warnings: tuple[Report, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    version: int
    hash: str
    time: float
    author: str
    size: int

    def to_dict(self) -> dict:
        return asdict(self)


@functools.cache
def validator_version() -> str:
    """What identifies the validation `check_candidate` applies: a hash of the cluster_conf package's sources (the
    parser, schema, structure, semantic and RelaxNG layers), of this module's, and of the lxml and libxml2
    versions. Two agents with the same value run the same pure function of the document's bytes, so one of them
    validating a copy is as good as both doing it (see `validated_elsewhere`). Computed once per process; the
    agent computes it when it starts, so a later upgrade on disk cannot change what a running agent claims."""
    from lxml import etree

    import cluster_conf

    digest = hashlib.sha256()
    package = Path(cluster_conf.__file__).parent
    for path in [*sorted(package.glob("*.py")), Path(__file__)]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(repr((etree.LXML_VERSION, etree.LIBXML_VERSION, etree.LIBXML_COMPILED_VERSION)).encode())
    return "cluster_conf-" + digest.hexdigest()[:32]


def validated_elsewhere(data: bytes, digest: str, cluster_name: str, source: str = "staged cluster.conf"
                        ) -> Candidate | None:
    """A copy that an agent running the same `validator_version()` validated in full before it staged it here:
    the bytes must match the hash it named (else StoreRefusal), they are parsed with the hardened parser and must
    carry an integer config_version; the copy must belong to `cluster_name` (this node's cluster). The schema,
    semantic and RelaxNG checks are skipped: they are a pure function of (bytes, validator), both equal. None
    when the copy is for another cluster: the caller then validates it in full, as for any other sender."""
    if content_hash(data) != digest:
        raise StoreRefusal(INVALID, f"{source}: its bytes do not match the hash the sender named ({digest[:16]})",
                           reports=[])
    try:
        conf = ClusterConf.from_bytes(data, source)
    except ConfigError as exc:
        raise StoreRefusal(INVALID, str(exc), reports=[exc.report.to_dict()]) from None
    version = conf.config_version
    if version is None:
        raise StoreRefusal(INVALID, f"{source}: <cluster> has no integer config_version", reports=[])
    if conf.name != cluster_name:
        return None
    return Candidate(data, version, digest, conf.name, conf)


def check_candidate(data: bytes, source: str = "proposed cluster.conf") -> Candidate:
    """Parse and validate; StoreRefusal(INVALID) carries every report (as dicts) when there is an error."""
    try:
        conf = ClusterConf.from_bytes(data, source)
    except ConfigError as exc:
        raise StoreRefusal(INVALID, str(exc), reports=[exc.report.to_dict()]) from None
    reports = validate(conf, lint=False)
    errors = [r for r in reports if r.is_error]
    if errors:
        first = errors[0].format(source)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StoreRefusal(INVALID, f"{first}{more}", reports=[r.to_dict() for r in reports])
    version = conf.config_version
    if version is None:
        raise StoreRefusal(INVALID, f"{source}: <cluster> has no integer config_version", reports=[])
    return Candidate(data, version, content_hash(data), conf.name, conf, tuple(r for r in reports if not r.is_error))


class ConfigStore:
    """cluster.conf plus its history under one root. Thread-safe; writers in other processes are locked out."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.conf_path = self.root / CONF_PATH
        self._lock = threading.RLock()
        self._depth = 0  # nesting of locked() in the thread holding _lock
        self._cache: tuple[tuple[int, int, int], StoredConfig] | None = None
        self.installed: Candidate | None = None  # the last candidate install() made (or found) live
        self._accepted_cache: tuple[tuple[int, int, int], StoredConfig | None] | None = None

    # -- reading -------------------------------------------------------------------------------------------
    def current(self) -> StoredConfig | None:
        """The live configuration (cached by inode, size and mtime), or None when there is none or it is unreadable."""
        try:
            st = os.stat(self.conf_path)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            data = self.conf_path.read_bytes()
            conf = ClusterConf.from_bytes(data, str(self.conf_path))
        except (OSError, ConfigError):
            return None
        stored = StoredConfig(data, conf.config_version or 0, content_hash(data), conf.name)
        self._cache = (stamp, stored)
        return stored

    def accepted(self) -> StoredConfig | None:
        """The configuration this node accepted last: the newest record of its history whose copy is whole (cached
        by the index's inode, size and mtime). None when the history is empty."""
        index = self.root / HISTORY_INDEX
        try:
            st = os.stat(index)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._accepted_cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found: StoredConfig | None = None
        for entry in reversed(list(self._read_index())):
            data = self._history_copy(entry)
            if data is None:
                continue
            installed = self.installed
            if installed is not None and installed.hash == entry.hash:
                name = installed.cluster_name
            else:
                try:
                    name = ClusterConf.from_bytes(data, str(self._history_path(entry.version, entry.hash))).name
                except ConfigError:
                    continue
            found = StoredConfig(data, entry.version, entry.hash, name)
            break
        self._accepted_cache = (stamp, found)
        return found

    def local_edit(self) -> StoredConfig | None:
        """The live file when it is not the accepted copy (edited in place and not pushed yet); else None. A live
        file that is missing or unreadable while a copy is accepted shows as a StoredConfig with version 0."""
        accepted = self.accepted()
        if accepted is None:
            return None
        live = self.current()
        if live is None:
            return StoredConfig(b"", 0, "", None)
        return None if live.hash == accepted.hash else live

    def versions(self) -> list[HistoryEntry]:
        """Accepted versions, oldest first; one entry per (version, hash)."""
        seen: dict[tuple[int, str], HistoryEntry] = {}
        for entry in self._read_index():
            seen.setdefault((entry.version, entry.hash), entry)
        return list(seen.values())

    def get_version(self, version: int) -> tuple[HistoryEntry, bytes]:
        """The newest accepted copy of `version` (StoreRefusal NOT_FOUND when history has none)."""
        for entry in reversed(self.versions()):
            if entry.version == version:
                data = self._history_copy(entry)
                if data is not None:
                    return entry, data
        raise StoreRefusal(NOT_FOUND, f"version {version} is not in the history of this node", version=version)

    def _read_index(self) -> Iterator[HistoryEntry]:
        try:
            text = (self.root / HISTORY_INDEX).read_text(errors="replace")
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                record = json.loads(line)
                yield HistoryEntry(
                    int(record["version"]), str(record["hash"]), float(record["time"]), str(record["author"]),
                    int(record["size"]),
                )
            except (ValueError, KeyError, TypeError):
                continue  # a record cut short by a crash: its install never started

    def _history_path(self, version: int, digest: str) -> Path:
        return self.root / HISTORY_DIR / f"{version}-{digest[:16]}.conf"

    def _history_copy(self, entry: HistoryEntry) -> bytes | None:
        try:
            data = self._history_path(entry.version, entry.hash).read_bytes()
        except FileNotFoundError:
            return None
        return data if content_hash(data) == entry.hash else None

    # -- writing -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store for one read-decide-write step (threads of this process and other processes)."""
        with self._lock:
            if self._depth:  # re-entered by the thread that holds it: the flock is already ours
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            lock_path = self.root / LOCK_FILE
            make_dirs(lock_path.parent)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._depth = 1
                yield
            finally:
                self._depth = 0
                os.close(fd)

    def install(self, cand: Candidate, author: str, *, tie_break: bool = False) -> str:
        """Make `cand` the live configuration: "updated", or "already" when it is; StoreRefusal otherwise."""
        with self.locked():
            current = self.current()
            edit = None
            if current is not None:
                if current.hash == cand.hash:
                    self.ensure_recorded(cand, author)
                    self.installed = cand
                    return "already"
                edit = self.refuse_local_edit(current, cand)
                check_version(current, cand.version, cand.hash, tie_break=tie_break and edit is None)
            self._write(cand, author)
            self.installed = cand
            if edit is not None:
                log.warning("cluster.conf edited locally (config_version %s, not distributed) was replaced by "
                            "config_version %s from %s; the edit is kept as cluster.conf.old", edit.version,
                            cand.version, author)
            return "updated"

    def refuse_local_edit(self, current: StoredConfig, cand: Candidate) -> StoredConfig | None:
        """When `current` (the live file) is a local edit: refuse a copy of its version with other content
        (LOCAL_EDIT) and return the edit; None when the live file is the accepted copy (or nothing is accepted)."""
        accepted = self.accepted()
        if accepted is None or accepted.hash == current.hash:
            return None
        if cand.version == current.version and cand.hash != current.hash:
            raise StoreRefusal(
                LOCAL_EDIT,
                f"cluster.conf on this node was edited locally to config_version {current.version} with other "
                f"content and not distributed; raise config_version, or run cman_tool version -r on this node",
                current=current.version, proposed=cand.version, accepted=accepted.version,
            )
        return current

    def adopt(self, author: str = "found on disk") -> bool:
        """Record the live file as accepted when the history is empty (a node's first configuration, written
        before or after the agent started); True when it did."""
        with self.locked():
            if any(True for _ in self._read_index()):
                return False
            current = self.current()
            if current is None:
                return False
            self._record(current.data, current.version, current.hash, author)
            return True

    def ensure_recorded(self, cand: Candidate, author: str) -> None:
        """A live file that reached cluster.conf without the agent (a hand edit) gets its history record."""
        if not any(e.version == cand.version and e.hash == cand.hash for e in self._read_index()):
            self._record(cand.data, cand.version, cand.hash, author)

    def _write(self, cand: Candidate, author: str) -> None:
        self._record(cand.data, cand.version, cand.hash, author)
        make_dirs(self.conf_path.parent)
        atomic_write(self.conf_path, cand.data, keep_old=True)
        self._remember(cand)

    def _remember(self, cand: Candidate) -> None:
        """Prime current()'s cache with the file just written, so the next reader neither reads nor parses it
        again. Under the store lock: only a hand edit could slip in between, and it would show in the size."""
        try:
            st = os.stat(self.conf_path)
        except OSError:
            return
        if st.st_size == len(cand.data):
            stored = StoredConfig(cand.data, cand.version, cand.hash, cand.cluster_name)
            self._cache = ((st.st_ino, st.st_size, st.st_mtime_ns), stored)

    def _record(self, data: bytes, version: int, digest: str, author: str) -> None:
        copy = self._history_path(version, digest)
        make_dirs(copy.parent)
        if not copy.exists() or content_hash(copy.read_bytes()) != digest:
            atomic_write(copy, data, keep_old=False)
        record = {"version": version, "hash": digest, "time": time.time(), "author": author, "size": len(data)}
        index = self.root / HISTORY_INDEX
        created = not index.exists()
        fd = os.open(index, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            if created:
                fsync_dir(index.parent)  # the new index's name must survive a crash with its first record
            size = os.fstat(fd).st_size
            prefix = b""
            if size:
                with open(index, "rb") as f:
                    f.seek(size - 1)
                    prefix = b"" if f.read(1) == b"\n" else b"\n"  # end a record cut short by a crash
            os.write(fd, prefix + json.dumps(record, ensure_ascii=False).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)

    def recover(self) -> str | None:
        """At agent start: delete temporary files a crash left behind, and roll forward an accepted version whose
        install a crash interrupted; returns what was done, if anything."""
        with self.locked():
            self._remove_leftovers()
            entries = list(self._read_index())
            if not entries:  # the node's first configuration; afterwards a hand edit waits for cman_tool -r
                self.adopt()
                return None
            current = self.current()
            last = entries[-1]
            if current is not None and (current.hash == last.hash or current.version >= last.version):
                return None
            data = self._history_copy(last)
            if data is None:
                return None
            make_dirs(self.conf_path.parent)
            atomic_write(self.conf_path, data, keep_old=True)
            return f"finished installing config_version {last.version} (interrupted by a crash)"

    def _remove_leftovers(self) -> None:
        """atomic_write's temporary files (`.cluster.conf.XXXX.tmp`, `.old` links) that a kill -9 left behind.
        Only called at start, under the store lock: no writer of this store is running then."""
        for directory in (self.conf_path.parent, self.root / HISTORY_DIR):
            removed = False
            for pattern in TEMP_LEFTOVERS:
                for leftover in directory.glob(pattern):
                    with contextlib.suppress(FileNotFoundError):
                        leftover.unlink()
                        removed = True
            if removed:
                fsync_dir(directory)


def make_dirs(directory: Path) -> None:
    """mkdir -p, fsyncing the parent of each directory created so the new names survive a crash."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):
            new.mkdir()
        fsync_dir(new.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_version(current: StoredConfig, version: int, digest: str, *, tie_break: bool = False) -> None:
    """Refuse a copy that may not replace `current` (same bytes are handled by the caller)."""
    if version < current.version or (version == current.version and not tie_break):
        if version == current.version:
            raise StoreRefusal(
                SAME_VERSION,
                f"Proposed updated config file has the same version number ({version}) as the current one but "
                "different content; increase config_version.",
                current=current.version, proposed=version,
            )
        raise StoreRefusal(
            NOT_GREATER,
            f"{NOT_GREATER_TEXT} Current config_version: {current.version}, proposed: {version}.",
            current=current.version, proposed=version,
        )
    if version == current.version and digest > current.hash:
        raise StoreRefusal(SAME_VERSION, f"this node keeps its copy of version {version} (smaller hash)")


# -- two-phase updates --------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Staged:
    cand: Candidate
    author: str
    expires: float = field(default=0.0)


class Staging:
    """Copies staged for a two-phase update, in memory (a staged copy that was never committed leaves no trace)."""

    def __init__(self, store: ConfigStore, commit_wait: float = COMMIT_WAIT) -> None:
        self.store = store
        self.commit_wait = commit_wait
        self._pending: dict[tuple[int, str], _Staged] = {}
        self._changed = threading.Condition(threading.Lock())

    def _purge(self, now: float) -> None:
        for key in [k for k, s in self._pending.items() if s.expires <= now]:
            del self._pending[key]

    def _smaller_rival(self, version: int, digest: str) -> bool:
        return any(v == version and h < digest for v, h in self._pending)

    def stage(self, cand: Candidate, author: str) -> str:
        """Phase 1: "staged", or "already" when the node runs this copy (recorded in its history if it was not, as
        for a hand-edited file); StoreRefusal otherwise."""
        with self.store.locked(), self._changed:  # no commit can install between these checks and the staging
            current = self.store.current()
            if current is not None:
                if current.hash == cand.hash:
                    self.store.ensure_recorded(cand, author)  # the live file may be a hand edit (cman_tool -r)
                    return "already"
                self.store.refuse_local_edit(current, cand)
                refuse_for_race(current, cand)
            now = time.monotonic()
            self._purge(now)
            if self._smaller_rival(cand.version, cand.hash):
                raise StoreRefusal(RACE_LOST, RACE_TEXT, version=cand.version)
            self._pending[(cand.version, cand.hash)] = _Staged(cand, author, now + STAGE_TTL)
        return "staged"

    def commit(self, version: int, digest: str) -> str:
        """Phase 2: install a staged copy ("updated" / "already"); waits up to `commit_wait` for a smaller rival."""
        deadline = time.monotonic() + self.commit_wait
        try:
            while True:
                with self._changed:
                    while self._smaller_rival(version, digest) and time.monotonic() < deadline:
                        self._changed.wait(min(0.05, max(0.0, deadline - time.monotonic())))
                        self._purge(time.monotonic())
                with self.store.locked(), self._changed:  # stage() cannot slip in from here to the install
                    current = self.store.current()
                    if current is not None and current.hash == digest:
                        return "already"
                    self._purge(time.monotonic())
                    staged = self._pending.get((version, digest))
                    if staged is None:
                        raise StoreRefusal(NOT_STAGED, f"no staged copy of version {version} with hash {digest[:16]}")
                    if self._smaller_rival(version, digest):
                        if time.monotonic() >= deadline:
                            raise StoreRefusal(RACE_LOST, RACE_TEXT, version=version)
                        continue  # a rival staged since the wait: wait again
                    if current is not None:
                        self.store.refuse_local_edit(current, staged.cand)
                        refuse_for_race(current, staged.cand)
                    return self.store.install(staged.cand, staged.author)
        finally:
            self.abort(version, digest)

    def abort(self, version: int, digest: str) -> None:
        with self._changed:
            self._pending.pop((version, digest), None)
            self._changed.notify_all()


def refuse_for_race(current: StoredConfig, cand: Candidate) -> None:
    """A node that already runs this version with other content, during a two-phase update: the race is lost."""
    if cand.version == current.version:
        raise StoreRefusal(RACE_LOST, RACE_TEXT, version=cand.version)
    check_version(current, cand.version, cand.hash)
