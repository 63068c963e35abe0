"""Fencing decisions and the fence state of each node: pure functions over an immutable `FenceBook`.

No clock reads and no I/O: the daemon passes `now` (seconds, any monotonic or wall scale as long as it is the
same everywhere) and applies what these functions return. Running agents is `cman.fence_agents`.

The life of a victim (rhcs-facts §1.2, §7):

    unclean loss ──victims_after_view──▶ pending (not before now + post_fail_delay)
    first quorate view ──startup_victims──▶ pending (not before first_quorate_at + post_join_delay),
                                            nothing with clean_start=1
    pending / failed ──due (quorate AND confirmed view AND time reached)──▶ the daemon calls started() and
                                            runs cman.fence_agents.fence()
    running ──record_result──▶ succeeded | failed (retry 5 s, doubling, at most 60 s) | manual_wait
    manual_wait / failed ──acknowledge_manual (fence_ack_manual NODE)──▶ succeeded
    pending / failed / manual_wait ──rejoined (the node came back with a NEW incarnation)──▶ dropped

The daemon calls `rejoined` only for a node that restarted (new incarnation): a node heard again with its old
incarnation is disallowed and stays a victim (docs/membership.md).

Two-node fence races (rhcs-facts §7): after a split of a two_node cluster both halves are quorate and each
fences the other. The remedy is the per-device `delay` parameter (`<device name="ipmi" delay="15"/>` on ONE
node): it goes to the agent on stdin like any other parameter and the agent itself sleeps `delay` seconds before
acting, so the undelayed side wins. The real agents do this (fencing.py honours `delay`); `fence_lab` must
honour it the same way. Nothing here adds a delay of its own.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Literal, Protocol

from cluster_conf.model import to_int
from cluster_conf.schema import is_true

State = Literal["pending", "running", "failed", "succeeded", "manual_wait"]
# Victims the daemon still has to deal with (shown by cman_tool, keep activity blocked for recovery).
OPEN_STATES: frozenset[str] = frozenset({"pending", "running", "failed", "manual_wait"})

RETRY_FIRST = 5.0  # seconds before the first retry after a failed fence
RETRY_MAX = 60.0  # the retry interval doubles up to this

DEFAULT_POST_FAIL_DELAY = 0
DEFAULT_POST_JOIN_DELAY = 6  # the code's default (the RHEL docs say 3)


# -- configuration -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FenceDaemonConfig:
    """`<fence_daemon>`: seconds to wait before fencing a failed node / nodes absent at startup."""

    post_fail_delay: int = DEFAULT_POST_FAIL_DELAY
    post_join_delay: int = DEFAULT_POST_JOIN_DELAY
    clean_start: bool = False


def fence_daemon_config(attrs: Mapping[str, str] | None) -> FenceDaemonConfig:
    """From `ClusterView.fence_daemon` (None when the element is absent). A value that is not a non-negative
    integer falls back to the default (validation reports it)."""
    attrs = attrs or {}
    return FenceDaemonConfig(
        post_fail_delay=_seconds(attrs.get("post_fail_delay"), DEFAULT_POST_FAIL_DELAY),
        post_join_delay=_seconds(attrs.get("post_join_delay"), DEFAULT_POST_JOIN_DELAY),
        clean_start=is_true(attrs.get("clean_start")),
    )


def _seconds(value: str | None, default: int) -> int:
    number = to_int(value)
    return number if number is not None and number >= 0 else default


# -- state ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FenceRecord:
    """One victim. `next_retry` is the earliest time to (re)try: for pending the end of the delay, for failed
    the backoff; None when nothing is scheduled (running, succeeded, manual_wait)."""

    node: str
    state: State
    since: float
    message: str = ""
    next_retry: float | None = None
    attempts: int = 0  # failed attempts so far (drives the backoff)
    method: str | None = None
    device: str | None = None
    agent: str | None = None

    def as_status(self) -> dict[str, object]:
        """The daemon's `status` → `fencing` entry for this node."""
        return {"state": self.state, "message": self.message, "since": self.since, "next_retry": self.next_retry,
                "attempts": self.attempts, "method": self.method, "device": self.device, "agent": self.agent}


class FenceBook(Mapping[str, FenceRecord]):
    """Immutable mapping node name → FenceRecord. Transitions return a new book."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[str, FenceRecord] | Iterable[FenceRecord] = ()) -> None:
        items = records.values() if isinstance(records, Mapping) else records
        self._records = MappingProxyType({r.node: r for r in items})

    def __getitem__(self, node: str) -> FenceRecord:
        return self._records[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"FenceBook({list(self._records.values())!r})"

    def with_record(self, record: FenceRecord) -> FenceBook:
        return FenceBook({**self._records, record.node: record})

    def without(self, node: str) -> FenceBook:
        return FenceBook({n: r for n, r in self._records.items() if n != node})

    def open_victims(self) -> list[str]:
        """Nodes still to be fenced or waiting (pending, running, failed, manual_wait), sorted."""
        return sorted(n for n, r in self._records.items() if r.state in OPEN_STATES)

    def as_status(self) -> dict[str, dict[str, object]]:
        return {n: r.as_status() for n, r in sorted(self._records.items())}


class OutcomeLike(Protocol):
    """What record_result needs from a fence attempt (cman.fence_agents.FenceOutcome or FenceReport)."""

    @property
    def status(self) -> str: ...  # success | failed | undefined | manual
    @property
    def message(self) -> str: ...
    @property
    def method(self) -> str | None: ...
    @property
    def device(self) -> str | None: ...
    @property
    def agent(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class FenceReport:
    """An outcome reported from outside, e.g. the control command `fence_done` sent by fence_node."""

    status: str
    message: str = ""
    method: str | None = None
    device: str | None = None
    agent: str | None = None


# -- transitions ---------------------------------------------------------------------------------------------
def victims_after_view(
    book: FenceBook,
    previous_members: Iterable[str],
    new_members: Iterable[str],
    left_cleanly: Iterable[str],
    quorate: bool,
    now: float,
    post_fail_delay: float,
) -> FenceBook:
    """Nodes that were members and are not any more, without a clean leave, become pending, not before
    now + post_fail_delay. While inquorate they are recorded the same way but `due` holds them until quorum
    returns (the message says so). A node already an open victim keeps its record."""
    lost = set(previous_members) - set(new_members) - set(left_cleanly)
    for node in sorted(lost):
        current = book.get(node)
        if current is not None and current.state in OPEN_STATES:
            continue
        why = "left the cluster uncleanly" + ("" if quorate else "; waiting for quorum")
        book = book.with_record(FenceRecord(node, "pending", now, why, next_retry=now + post_fail_delay))
    return book


def startup_victims(
    book: FenceBook,
    configured: Iterable[str],
    members: Iterable[str],
    first_quorate_at: float,
    now: float,
    post_join_delay: float,
    clean_start: bool,
) -> FenceBook:
    """Startup fencing: called once, when this node first sees a quorate view. Configured nodes that are not
    members become pending, not before first_quorate_at + post_join_delay; a node that joins before then is
    dropped by `rejoined`. clean_start=1 fences nobody at startup."""
    if clean_start:
        return book
    not_before = first_quorate_at + post_join_delay
    for node in sorted(set(configured) - set(members)):
        if node in book and book[node].state in OPEN_STATES:
            continue
        book = book.with_record(FenceRecord(node, "pending", now, "not a member of the first quorate view "
                                            "(startup fencing after post_join_delay)", next_retry=not_before))
    return book


def due(book: FenceBook, now: float, quorate: bool, confirmed: bool) -> list[str]:
    """Victims to fence now: only in a quorate AND confirmed view; pending or failed whose time has come."""
    if not (quorate and confirmed):
        return []
    return sorted(
        n for n, r in book.items()
        if r.state in ("pending", "failed") and r.next_retry is not None and r.next_retry <= now
    )


def started(book: FenceBook, node: str, now: float) -> FenceBook:
    """The daemon began running the agents for `node`."""
    record = book[node]
    return book.with_record(replace(record, state="running", since=now, next_retry=None,
                                    message="running fence agents"))


def retry_delay(failures: int) -> float:
    """Seconds before the next try after `failures` failed attempts: 5, 10, 20, 40, 60, 60, ..."""
    return min(RETRY_FIRST * 2 ** max(failures - 1, 0), RETRY_MAX)


def record_result(book: FenceBook, node: str, outcome: OutcomeLike, now: float) -> FenceBook:
    """Apply a fence attempt's outcome. success → succeeded; manual → manual_wait (until fence_ack_manual);
    failed or undefined (no method configured) → failed with the next retry after the backoff."""
    previous = book.get(node)
    attempts = previous.attempts if previous is not None else 0
    where = {"method": outcome.method, "device": outcome.device, "agent": outcome.agent}
    if outcome.status == "success":
        record = FenceRecord(node, "succeeded", now, outcome.message or "fenced", attempts=attempts, **where)
    elif outcome.status == "manual":
        record = FenceRecord(node, "manual_wait", now, outcome.message or
                             f"waiting for a manual fence: power {node} off, then run fence_ack_manual {node}",
                             attempts=attempts, **where)
    else:
        attempts += 1
        message = outcome.message or ("no fence method configured" if outcome.status == "undefined"
                                      else "fencing failed")
        record = FenceRecord(node, "failed", now, message, next_retry=now + retry_delay(attempts),
                             attempts=attempts, **where)
    return book.with_record(record)


def rejoined(book: FenceBook, node: str) -> FenceBook:
    """`node` became a member again with a NEW incarnation (it restarted) before it was fenced: it is safe, so
    a pending, failed or manual_wait record is dropped (cman/fenced skip fencing a node that rejoined cleanly
    during post_fail_delay). A running fence is left to finish; a succeeded record stays as history."""
    record = book.get(node)
    if record is None or record.state not in ("pending", "failed", "manual_wait"):
        return book
    return book.without(node)


class NotWaiting(ValueError):
    """fence_ack_manual for a node that is not waiting for a (manual) fence."""


def acknowledge_manual(book: FenceBook, node: str, now: float) -> FenceBook:
    """fence_ack_manual NODE: the operator states the node is powered off. Accepted for a node in manual_wait,
    or whose fencing failed (the override cman 3's fence_ack_manual offered); anything else raises NotWaiting
    with the message to show."""
    record = book.get(node)
    if record is None or record.state not in ("manual_wait", "failed"):
        state = "not a fence victim" if record is None else f"in state {record.state}"
        raise NotWaiting(f"{node} is not waiting for a manual fence ({state})")
    return book.with_record(replace(record, state="succeeded", since=now, next_retry=None,
                                    message="manual fence acknowledged"))
