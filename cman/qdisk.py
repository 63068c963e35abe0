"""The quorum disk (qdiskd's role) on a plain file every node can see.

Layout of the file (block size 512 bytes, little endian, each block ends with a CRC32 of its first 508 bytes):

    block 0          header: magic, format version, block size, slot count, created (unix time), cluster name
    block n (1..N)   the status block of node id n, written only by node n

A node's block holds its incarnation, a sequence number that increases on every write, its state
(none | running | bidding | master | evicted), its heuristic score and min_score, the node it votes for as
master, the set of nodes it sees alive on the disk (the master's copy is the one that counts), the
(nodeid, incarnation) pairs it evicted (a master only) and a wall-clock time for humans. Every cycle a node
reads the whole file with one pread and writes its own block with one pwrite on a descriptor opened O_DSYNC.
A block that fails its magic or CRC (torn, garbage) reads as "no node".

Liveness never compares clocks: a node is alive on the disk when *my* monotonic clock saw its sequence number
change within tko × interval seconds. The pure core (`observe`, `DiskView`, `elect`, `cycle`,
`claims_votes`) takes the time as an argument; `QuorumDiskService` is the thin threaded adapter.

Election (qdiskd's bidding, simplified; docs/qdisk.md): a live master stays master. Without one, the lowest-id
live node whose score >= min_score bids; every node writes whom it votes for (the live master, else the lowest
eligible live node). A bidder becomes master after BID_ROUNDS consecutive bidding cycles once every other live
node votes for it and no node's liveness is still undetermined. Two masters: the higher id steps down. A master
whose score drops below min_score steps down at its next cycle and stops claiming votes at once. The master
evicts a node whose block stopped changing for tko x interval; an evicted node (same incarnation) never counts
again until it restarts.

Heuristics are admin-written programs from cluster.conf, run as `/bin/sh -c PROGRAM` (as qdiskd did).
"""
from __future__ import annotations

import contextlib
import enum
import os
import signal
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cluster_conf.model import ClusterView, to_int
from cluster_conf.quorum import qdisk_min_score, qdisk_votes
from cluster_conf.schema import is_true

BLOCK_SIZE = 512
MAGIC = b"RHPYQDSK"
NODE_MAGIC = b"QDNB"
FORMAT_VERSION = 1
MAX_NODES = 255
MAX_EVICTED = 40  # (nodeid, incarnation) pairs one master block can list
BID_ROUNDS = 2  # consecutive bidding cycles before a bidder may take the master role
NAME_BYTES = 64

DEFAULT_INTERVAL = 1.0
DEFAULT_TKO = 10
DEFAULT_HEURISTIC_INTERVAL = 2.0
DEFAULT_HEURISTIC_TKO = 1

_HEADER = struct.Struct("<8sIIId64s")
_NODE = struct.Struct("<4sHHQQBBHHHHd32s")
_EVICTED = struct.Struct("<HQ")
_CRC = struct.Struct("<I")
_CRC_AT = BLOCK_SIZE - _CRC.size


class QdiskError(Exception):
    """A quorum disk that cannot be used; the message is one line for the admin."""


class NodeState(enum.IntEnum):
    NONE = 0
    RUNNING = 1
    BIDDING = 2
    MASTER = 3
    EVICTED = 4

    @property
    def label(self) -> str:
        return self.name.lower()


# ---------------------------------------------------------------------------------------------------- format


@dataclass(frozen=True, slots=True)
class DiskHeader:
    cluster_name: str
    max_nodes: int
    created: float
    version: int = FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class NodeBlock:
    nodeid: int
    incarnation: int
    seq: int
    state: NodeState
    score: int = 0
    min_score: int = 0
    vote: int = 0  # the node this one supports as master (0: none)
    alive: frozenset[int] = frozenset()  # nodes this one sees alive on the disk
    evicted: tuple[tuple[int, int], ...] = ()  # (nodeid, incarnation) evicted by this node while master
    written: float = 0.0  # wall clock, for humans only

    @property
    def eligible(self) -> bool:
        """May this node be master, by what it wrote?"""
        return self.state in (NodeState.RUNNING, NodeState.BIDDING, NodeState.MASTER) and self.score >= self.min_score


def _sealed(body: bytes) -> bytes:
    padded = body.ljust(_CRC_AT, b"\0")
    return padded + _CRC.pack(zlib.crc32(padded))


def _unsealed(block: bytes) -> bytes | None:
    if len(block) != BLOCK_SIZE:
        return None
    (crc,) = _CRC.unpack_from(block, _CRC_AT)
    return block[:_CRC_AT] if zlib.crc32(block[:_CRC_AT]) == crc else None


def _mask(ids: Iterable[int]) -> bytes:
    value = 0
    for n in ids:
        if 0 <= n <= MAX_NODES:
            value |= 1 << n
    return value.to_bytes(32, "little")


def _unmask(data: bytes) -> frozenset[int]:
    value = int.from_bytes(data, "little")
    return frozenset(n for n in range(MAX_NODES + 1) if value >> n & 1)


def encode_header(header: DiskHeader) -> bytes:
    name = header.cluster_name.encode()
    if len(name) > NAME_BYTES:
        raise QdiskError(f"cluster name {header.cluster_name!r} is longer than {NAME_BYTES} bytes")
    return _sealed(_HEADER.pack(MAGIC, header.version, BLOCK_SIZE, header.max_nodes, header.created, name))


def decode_header(block: bytes) -> DiskHeader | None:
    body = _unsealed(block)
    if body is None:
        return None
    magic, version, block_size, max_nodes, created, name = _HEADER.unpack_from(body)
    if magic != MAGIC or block_size != BLOCK_SIZE or not 1 <= max_nodes <= MAX_NODES:
        return None
    return DiskHeader(name.rstrip(b"\0").decode(errors="replace"), max_nodes, created, version)


def encode_block(block: NodeBlock) -> bytes:
    evicted = block.evicted[-MAX_EVICTED:]
    head = _NODE.pack(
        NODE_MAGIC, FORMAT_VERSION, block.nodeid, block.incarnation, block.seq, int(block.state), 0,
        block.score, block.min_score, block.vote, len(evicted), block.written, _mask(block.alive),
    )
    return _sealed(head + b"".join(_EVICTED.pack(n, inc) for n, inc in evicted))


def decode_block(data: bytes, nodeid: int) -> NodeBlock | None:
    """The block of slot `nodeid`, or None when it is empty, torn or garbage (never raises)."""
    body = _unsealed(data)
    if body is None:
        return None
    try:
        magic, version, nid, inc, seq, state, _, score, min_score, vote, n_evicted, written, mask = (
            _NODE.unpack_from(body)
        )
        if magic != NODE_MAGIC or version != FORMAT_VERSION or nid != nodeid or n_evicted > MAX_EVICTED:
            return None
        evicted = tuple(_EVICTED.unpack_from(body, _NODE.size + i * _EVICTED.size) for i in range(n_evicted))
        return NodeBlock(nid, inc, seq, NodeState(state), score, min_score, vote, _unmask(mask), evicted, written)
    except (struct.error, ValueError):
        return None


def decode_disk(data: bytes) -> tuple[DiskHeader | None, dict[int, NodeBlock | None]]:
    """Header and every node slot of a whole-disk read; a short read leaves the missing slots None."""
    header = decode_header(data[:BLOCK_SIZE])
    if header is None:
        return None, {}
    blocks = {
        n: decode_block(data[n * BLOCK_SIZE:(n + 1) * BLOCK_SIZE], n) for n in range(1, header.max_nodes + 1)
    }
    return header, blocks


def init_disk(path: str | os.PathLike[str], cluster_name: str, max_nodes: int) -> DiskHeader:
    """Create the quorum disk when absent (as `mkqdisk -c`), or check an existing one belongs to this cluster.

    Creation writes a complete file next to `path` and hard-links it into place, so a node racing another
    sees either no disk or a whole one. An empty existing file is initialised in place.
    """
    target = Path(path)
    if not 1 <= max_nodes <= MAX_NODES:
        raise QdiskError(f"quorum disk {target}: {max_nodes} node slots; allowed 1..{MAX_NODES}")
    image = encode_header(DiskHeader(cluster_name, max_nodes, time.time())) + bytes(BLOCK_SIZE * max_nodes)
    try:
        if not target.exists():
            _create_atomically(target, image)
        elif target.stat().st_size == 0:
            with open(target, "r+b") as f:
                f.write(image)
                f.flush()
                os.fsync(f.fileno())
        with open(target, "rb") as f:
            header = decode_header(f.read(BLOCK_SIZE))
    except OSError as e:
        raise QdiskError(f"quorum disk {target}: {e.strerror or e}") from None
    if header is None:
        raise QdiskError(f"quorum disk {target}: not a quorum disk (no valid header); remove it or use another file")
    if header.cluster_name != cluster_name:
        raise QdiskError(
            f"quorum disk {target} belongs to cluster {header.cluster_name!r}, not {cluster_name!r}; refusing to use it"
        )
    return header


def _create_atomically(target: Path, image: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, image)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, target)
    except FileExistsError:
        pass  # another node created it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class HeuristicConfig:
    program: str
    score: int = 1
    interval: float = DEFAULT_HEURISTIC_INTERVAL
    tko: int = DEFAULT_HEURISTIC_TKO


@dataclass(frozen=True, slots=True)
class QdiskConfig:
    device: str
    cluster_name: str
    max_nodes: int
    interval: float = DEFAULT_INTERVAL
    tko: int = DEFAULT_TKO
    votes: int = 1
    min_score: int = 0
    master_wins: bool = False
    heuristics: tuple[HeuristicConfig, ...] = ()

    @property
    def timeout(self) -> float:
        """Seconds without a sequence change after which a node is dead on the disk."""
        return self.interval * self.tko

    @property
    def lease(self) -> float:
        """How long after its last successful disk cycle a node may still claim votes (shorter than timeout,
        so a paused node stops claiming before the others evict it)."""
        return self.interval * max(1.5, self.tko / 2)

    @property
    def max_score(self) -> int:
        return sum(h.score for h in self.heuristics)

    @classmethod
    def from_view(cls, view: ClusterView) -> QdiskConfig:
        qd = view.quorumd
        if qd is None:
            raise QdiskError("cluster.conf has no <quorumd>")
        attrs = qd.attrs
        if attrs.get("label") is not None and attrs.get("device") is None:
            raise QdiskError("quorumd: label= is not supported (no device scanning here); use device=/path/to/file")
        device = attrs.get("device")
        if not device:
            raise QdiskError("quorumd: device= is missing")
        nodeids = [n.nodeid for n in view.nodes if n.nodeid is not None]
        max_nodes = max(nodeids, default=0)
        if not 1 <= max_nodes <= MAX_NODES:
            raise QdiskError(f"quorumd: node ids must be within 1..{MAX_NODES} (largest is {max_nodes})")
        interval = _positive_float(attrs.get("interval"), DEFAULT_INTERVAL, "interval")
        tko = _positive_int(to_int(attrs.get("tko")), DEFAULT_TKO)
        heuristics = tuple(
            HeuristicConfig(
                h.program,
                h.score if h.score is not None else 1,
                float(_positive_int(h.interval, 0)) or DEFAULT_HEURISTIC_INTERVAL,
                _positive_int(h.tko, DEFAULT_HEURISTIC_TKO),
            )
            for h in qd.heuristics
            if h.program
        )
        return cls(
            device=device,
            cluster_name=view.name or "",
            max_nodes=max_nodes,
            interval=interval,
            tko=tko,
            votes=qdisk_votes(qd.votes, len(view.nodes)),
            min_score=qdisk_min_score(view),
            master_wins=is_true(attrs.get("master_wins", "0")),
            heuristics=heuristics,
        )


def _positive_int(value: int | None, default: int) -> int:
    return value if value is not None and value > 0 else default


def _positive_float(text: str | None, default: float, what: str) -> float:
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise QdiskError(f"quorumd: {what}={text!r} is not a number") from None
    if value <= 0:
        raise QdiskError(f"quorumd: {what}={text!r} must be positive")
    return value


# ---------------------------------------------------------------------------------------------------- pure core


@dataclass(frozen=True, slots=True)
class Seen:
    """What my clock observed of one node's block."""

    incarnation: int
    seq: int
    since: float  # my monotonic time of the last change (or of first sight)
    changed: bool  # seen the sequence change at least once (a first sight alone proves nothing)


def observe(previous: Mapping[int, Seen], blocks: Mapping[int, NodeBlock | None], now: float) -> dict[int, Seen]:
    """Update my observations with one read. A torn block changes nothing (its node simply ages)."""
    seen = dict(previous)
    for nid, block in blocks.items():
        if block is None:
            continue
        before = previous.get(nid)
        if before is None:
            seen[nid] = Seen(block.incarnation, block.seq, now, False)
        elif (before.incarnation, before.seq) != (block.incarnation, block.seq):
            seen[nid] = Seen(block.incarnation, block.seq, now, True)
    return seen


@dataclass(frozen=True, slots=True)
class DiskView:
    """One node's view of the disk at one instant."""

    me: int
    blocks: Mapping[int, NodeBlock]  # valid blocks only
    alive: frozenset[int]  # alive on the disk and not evicted (me included)
    evicted: frozenset[tuple[int, int]]  # (nodeid, incarnation) evicted by a live master
    undetermined: frozenset[int] = frozenset()  # blocks first seen less than tko × interval ago, unchanged yet

    @classmethod
    def build(
        cls,
        me: int,
        blocks: Mapping[int, NodeBlock | None],
        seen: Mapping[int, Seen],
        now: float,
        timeout: float,
        my_evictions: Iterable[tuple[int, int]] = (),
    ) -> DiskView:
        valid = {n: b for n, b in blocks.items() if b is not None and n != me}
        raw = {
            n
            for n, b in valid.items()
            if b.state not in (NodeState.NONE, NodeState.EVICTED)
            and (s := seen.get(n)) is not None
            and s.changed
            and (s.incarnation, s.seq) == (b.incarnation, b.seq)
            and now - s.since <= timeout
        }
        evicted = set(my_evictions)
        for n in raw:
            if valid[n].state == NodeState.MASTER:
                evicted.update(valid[n].evicted)
        alive = {n for n in raw if (n, valid[n].incarnation) not in evicted} | {me}
        undetermined = {
            n
            for n, b in valid.items()
            if b.state not in (NodeState.NONE, NodeState.EVICTED)
            and (s := seen.get(n)) is not None
            and not s.changed
            and now - s.since <= timeout
        }
        return cls(me, valid, frozenset(alive), frozenset(evicted), frozenset(undetermined))

    def masters(self) -> list[int]:
        """Live masters other than me, lowest first."""
        return sorted(n for n in self.alive if n != self.me and self.blocks[n].state == NodeState.MASTER)

    def candidate(self, my_score_ok: bool) -> int:
        """The lowest-id live node that may become master (0: none)."""
        eligible = [n for n in self.alive if (my_score_ok if n == self.me else self.blocks[n].eligible)]
        return min(eligible, default=0)


def elect(me: int, state: NodeState, bid_cycles: int, score_ok: bool, view: DiskView) -> tuple[NodeState, int]:
    """My next role and bidding-cycle count.

    A bidder takes the master role only after BID_ROUNDS consecutive bids, when every other live node votes
    for it and no block's liveness is still undetermined (a node first seen less than tko × interval ago that
    has not written since: it may be alive and about to outrank me). Two nodes starting together therefore see
    each other before either can become master.
    """
    if state == NodeState.EVICTED:
        return NodeState.EVICTED, 0
    if not score_ok:
        return NodeState.RUNNING, 0
    masters = view.masters()
    if state == NodeState.MASTER:
        return (NodeState.RUNNING, 0) if masters and masters[0] < me else (NodeState.MASTER, 0)
    if masters or view.candidate(score_ok) != me:
        return NodeState.RUNNING, 0
    bid_cycles += 1
    if (
        bid_cycles >= BID_ROUNDS
        and not view.undetermined
        and all(view.blocks[n].vote == me for n in view.alive if n != me)
    ):
        return NodeState.MASTER, 0
    return NodeState.BIDDING, bid_cycles


def vote_for(me: int, state: NodeState, view: DiskView, score_ok: bool) -> int:
    """Whom I support as master: myself when master, else the lowest live master, else the lowest candidate."""
    if state == NodeState.MASTER:
        return me
    masters = view.masters()
    return masters[0] if masters else view.candidate(score_ok and state != NodeState.EVICTED)


@dataclass(frozen=True, slots=True)
class Local:
    """This node's qdisk memory between cycles."""

    nodeid: int
    incarnation: int
    seq: int = 0
    state: NodeState = NodeState.RUNNING
    bid_cycles: int = 0
    score_ok: bool | None = None  # None before the first cycle
    seen: Mapping[int, Seen] = field(default_factory=dict)
    alive: frozenset[int] = frozenset()
    master: int = 0  # the live master I see (me when I am), 0 when none
    in_master_mask: bool = False  # the master lists me alive
    evictions: tuple[tuple[int, int], ...] = ()  # mine while master
    nodes: Mapping[int, str] = field(default_factory=dict)  # nodeid -> state label, for status
    last_cycle: float | None = None  # my monotonic time of the last successful write

    @property
    def evicted(self) -> bool:
        return self.state == NodeState.EVICTED


def cycle(
    local: Local,
    blocks: Mapping[int, NodeBlock | None],
    now: float,
    score: int,
    config: QdiskConfig,
) -> tuple[Local, NodeBlock, list[str]]:
    """One disk cycle of node `local.nodeid` given what it read: its next memory, its block to write, log lines."""
    me, events = local.nodeid, []
    seen = observe(local.seen, blocks, now)
    view = DiskView.build(me, blocks, seen, now, config.timeout, local.evictions)
    score_ok = score >= config.min_score
    if local.score_ok is not None and score_ok != local.score_ok:
        if score_ok:
            events.append(f"Score sufficient for master operation ({score}/{config.max_score}; "
                          f"required={config.min_score}); upgrading")
        else:
            events.append(f"Score insufficient for master operation ({score}/{config.max_score}; "
                          f"required={config.min_score}); downgrading")
    elif local.score_ok is None:
        events.append(f"Initial score {score}/{config.max_score}")

    state = local.state
    if state != NodeState.EVICTED and any(
        (me, local.incarnation) in view.blocks[m].evicted for m in view.alive if m != me
        if view.blocks[m].state == NodeState.MASTER
    ):
        by = min(m for m in view.masters() if (me, local.incarnation) in view.blocks[m].evicted)
        events.append(f"Evicted by node {by}; not counting quorum disk votes until restarted")
        state = NodeState.EVICTED
    new_state, bids = elect(me, state, local.bid_cycles, score_ok, view)
    if new_state == NodeState.MASTER and local.state != NodeState.MASTER:
        events.append("Assuming master role")
    elif local.state == NodeState.MASTER and new_state != NodeState.MASTER and score_ok and state != NodeState.EVICTED:
        events.append(f"Node {view.masters()[0]} is also master; stepping down")
    masters = view.masters()
    master = me if new_state == NodeState.MASTER else (masters[0] if masters else 0)
    if master and master != me and master != local.master:
        events.append(f"Node {master} is the master")

    for n in sorted(view.alive - local.alive - {me}):
        if local.score_ok is not None:
            events.append(f"Node {n} is UP")
    for n in sorted(local.alive - view.alive - {me}):
        block = view.blocks.get(n)
        events.append(f"Node {n} shutdown" if block is not None and block.state == NodeState.NONE else
                      f"Node {n} is DOWN")

    evictions = _evictions(local, view, seen, now, config, new_state, events)
    in_mask = new_state == NodeState.MASTER or (bool(master) and me in view.blocks[master].alive)
    block = NodeBlock(
        nodeid=me,
        incarnation=local.incarnation,
        seq=local.seq + 1,
        state=new_state,
        score=score,
        min_score=config.min_score,
        vote=vote_for(me, new_state, view, score_ok),
        alive=view.alive,
        evicted=evictions,
        written=time.time(),
    )
    nodes = {n: _node_label(n, view) for n in sorted(view.blocks)}
    nodes[me] = new_state.label
    nodes = dict(sorted(nodes.items()))
    nxt = replace(
        local, seq=block.seq, state=new_state, bid_cycles=bids, score_ok=score_ok, seen=seen, alive=view.alive,
        master=master, in_master_mask=in_mask, evictions=evictions, nodes=nodes, last_cycle=now,
    )
    return nxt, block, events


def _evictions(
    local: Local, view: DiskView, seen: Mapping[int, Seen], now: float, config: QdiskConfig, state: NodeState,
    events: list[str],
) -> tuple[tuple[int, int], ...]:
    """The master's eviction list: nodes whose block stopped changing for tko cycles; an entry goes once its
    node shows another incarnation (it restarted)."""
    if state != NodeState.MASTER:
        return ()
    kept = [(n, inc) for n, inc in local.evictions if (b := view.blocks.get(n)) is None or b.incarnation == inc]
    listed = set(kept)
    for n, b in sorted(view.blocks.items()):
        s = seen.get(n)
        if n in view.alive or b.state in (NodeState.NONE, NodeState.EVICTED) or (n, b.incarnation) in listed:
            continue
        if s is not None and now - s.since > config.timeout:
            kept.append((n, b.incarnation))
            events.append(f"Node {n} evicted")
    return tuple(kept[-MAX_EVICTED:])


def _node_label(n: int, view: DiskView) -> str:
    block = view.blocks[n]
    if (n, block.incarnation) in view.evicted:
        return "evicted"
    if n in view.alive:
        return block.state.label
    return "none" if block.state == NodeState.NONE else "offline"


def claims_votes(local: Local, score: int, now: float, config: QdiskConfig) -> bool:
    """May this node count the quorum disk's votes now?

    Never when evicted, when its score is below min_score, or when its last successful disk cycle is older
    than the lease. With master_wins only the master claims; otherwise the master and every node the master
    lists alive.
    """
    if local.evicted or local.last_cycle is None or now - local.last_cycle > config.lease:
        return False
    if score < config.min_score:
        return False
    if local.state == NodeState.MASTER:
        return True
    return not config.master_wins and bool(local.master) and local.in_master_mask


# ---------------------------------------------------------------------------------------------------- heuristics


@dataclass(frozen=True, slots=True)
class HeuristicState:
    ok: bool = False
    failures: int = 0  # consecutive
    runs: int = 0


def record(state: HeuristicState, passed: bool, tko: int) -> HeuristicState:
    """A heuristic passes again at its first success and fails after `tko` consecutive failures."""
    if passed:
        return HeuristicState(True, 0, state.runs + 1)
    failures = state.failures + 1
    return HeuristicState(state.ok and failures < tko, failures, state.runs + 1)


def run_program(program: str, timeout: float, stop: threading.Event | None = None) -> bool:
    """Run `/bin/sh -c program`; True on exit status 0 within `timeout` seconds. A program still running at
    its timeout (or at `stop`) is killed with its whole process group."""
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", program], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
    except OSError:
        return False
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return proc.wait(timeout=max(0.0, min(0.05, deadline - time.monotonic()))) == 0
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                    return False
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class HeuristicRunner:
    """Runs one heuristic every `interval` seconds in its own thread (timeout = interval)."""

    def __init__(self, config: HeuristicConfig, *, log: Callable[[str], None] = lambda line: None) -> None:
        self.config = config
        self.state = HeuristicState()
        self._log = log
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"qdisk-heuristic {self.config.program}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> HeuristicState:
        passed = run_program(self.config.program, self.config.interval, self._stop)
        if self._stop.is_set():
            return self.state
        with self._lock:
            before, self.state = self.state, record(self.state, passed, self.config.tko)
        if before.runs and before.ok != self.state.ok:
            self._log(f"Heuristic: '{self.config.program}' UP" if self.state.ok else
                      f"Heuristic: '{self.config.program}' DOWN ({self.state.failures}/{self.config.tko})")
        return self.state

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            s = self.state
        return {"program": self.config.program, "score": self.config.score, "ok": s.ok, "failures": s.failures}

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.run_once()
            self._stop.wait(max(0.0, self.config.interval - (time.monotonic() - started)))


# ---------------------------------------------------------------------------------------------------- service


class QuorumDiskService:
    """qdiskd inside the node daemon: a disk thread every `interval` and one thread per heuristic.

    The daemon calls `start()` once, `votes_now()` whenever it computes quorum, `status()` for the control
    socket's `qdisk` entry and `stop()` at shutdown (a clean stop writes state none so the others need not wait
    for tko).
    """

    def __init__(
        self,
        view: ClusterView,
        nodeid: int,
        incarnation: int,
        *,
        log: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = QdiskConfig.from_view(view)
        if not 1 <= nodeid <= self.config.max_nodes:
            raise QdiskError(f"quorumd: node id {nodeid} is outside 1..{self.config.max_nodes}")
        self.nodeid = nodeid
        self._log = log
        self._clock = clock
        self._local = Local(nodeid, incarnation)
        self._heuristics = [HeuristicRunner(h, log=log) for h in self.config.heuristics]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._size = BLOCK_SIZE * (self.config.max_nodes + 1)
        self._sync = hasattr(os, "O_DSYNC")
        self._last_error = ""

    # -- lifecycle
    def start(self) -> None:
        header = init_disk(self.config.device, self.config.cluster_name, self.config.max_nodes)
        if self.nodeid > header.max_nodes:
            raise QdiskError(
                f"quorum disk {self.config.device} has {header.max_nodes} node slots; node id {self.nodeid} "
                "needs a larger disk (remove the file while the cluster is stopped and restart)"
            )
        flags = os.O_RDWR | (os.O_DSYNC if self._sync else 0)
        try:
            self._fd = os.open(self.config.device, flags)
        except OSError as e:
            raise QdiskError(f"quorum disk {self.config.device}: {e.strerror or e}") from None
        self._size = BLOCK_SIZE * (header.max_nodes + 1)
        c = self.config
        self._log(f"Quorum disk {c.device}: node {self.nodeid}, interval {c.interval:g}s, tko {c.tko}, "
                  f"votes {c.votes}, min_score {c.min_score}, master_wins {int(c.master_wins)}")
        for h in self._heuristics:
            h.start()
        self._thread = threading.Thread(target=self._loop, name="qdisk", daemon=True)
        self._thread.start()

    def stop(self, *, clean: bool = True) -> None:
        """Stop the threads (within about a second). `clean` writes state none; False leaves the block as it
        was, as a crash would."""
        self._stop.set()
        for h in self._heuristics:
            h.stop()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:  # a stopped service claims nothing
            block = NodeBlock(self.nodeid, self._local.incarnation, self._local.seq + 1, NodeState.NONE,
                              written=time.time())
            self._local = replace(self._local, state=NodeState.NONE, master=0, last_cycle=None)
        if self._fd is not None:
            if clean:
                with contextlib.suppress(OSError):
                    self._write(block)
            os.close(self._fd)
            self._fd = None

    # -- queries
    def score(self) -> int:
        return sum(h.config.score for h in self._heuristics if h.state.ok)

    def claims_votes(self) -> bool:
        with self._lock:
            local = self._local
        return claims_votes(local, self.score(), self._clock(), self.config)

    def votes_now(self) -> int:
        """The quorum disk votes this node may count now."""
        return self.config.votes if self.claims_votes() else 0

    def status(self) -> dict[str, Any]:
        with self._lock:
            local = self._local
        now = self._clock()
        fresh = local.last_cycle is not None and now - local.last_cycle <= self.config.lease
        claims = claims_votes(local, self.score(), now, self.config)
        return {
            "device": self.config.device,
            "alive": fresh,
            "state": local.state.label,
            "evicted": local.evicted,
            "score": self.score(),
            "min_score": self.config.min_score,
            "master": local.master or None,
            "is_master": local.state == NodeState.MASTER,
            "votes": self.config.votes,
            "claims_votes": claims,
            "master_wins": self.config.master_wins,
            "heuristics": [h.snapshot() for h in self._heuristics],
            "nodes": dict(local.nodes),
        }

    # -- the disk loop
    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._cycle_once()
            next_at += self.config.interval
            now = time.monotonic()
            if next_at < now:  # overran (slow disk): do not try to catch up
                next_at = now
            self._stop.wait(next_at - now)

    def _cycle_once(self) -> None:
        try:
            assert self._fd is not None
            data = os.pread(self._fd, self._size, 0)
        except OSError as e:
            self._error(f"Error reading quorum disk {self.config.device}: {e.strerror or e}")
            return
        header, blocks = decode_disk(data)
        if header is None or header.cluster_name != self.config.cluster_name:
            self._error(f"Quorum disk {self.config.device} lost its header (reinitialised?); not writing")
            return
        score = self.score()
        claimed = self.claims_votes()
        with self._lock:
            nxt, block, events = cycle(self._local, blocks, self._clock(), score, self.config)
        try:
            self._write(block)
        except OSError as e:
            self._error(f"Error writing to quorum disk {self.config.device}: {e.strerror or e}")
            return
        with self._lock:
            self._local = replace(nxt, last_cycle=self._clock())
        self._last_error = ""
        for line in events:
            self._log(line)
        if self.claims_votes() != claimed:
            self._log(f"Quorum disk votes claimed ({self.config.votes})" if not claimed else
                      "Quorum disk votes released")

    def _write(self, block: NodeBlock) -> None:
        assert self._fd is not None
        os.pwrite(self._fd, encode_block(block), block.nodeid * BLOCK_SIZE)
        if not self._sync:
            os.fsync(self._fd)

    def _error(self, line: str) -> None:
        if line != self._last_error:
            self._log(line)
            self._last_error = line
