"""Immutable inputs of the planner: the membership snapshot, the service state table, and the events.

Everything here is a frozen value; the planner never mutates its inputs and never reads a clock: time is carried
by each event (`now`, seconds since the epoch, as the original's transition times). 0 is reserved for "never
transitioned", so that a record the planner writes is never mistaken for a new one.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType

from cluster_conf.model import ClusterView
from rgmanager.states import ACTIVE_STATES, Flag, State


def service_id(name: str) -> str:
    """rgmanager's id of a service: plain names get the `service:` prefix (as clusvcadm does)."""
    return name if ":" in name else f"service:{name}"


# -- membership ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NodeState:
    """One cluster node as cman sees it.

    `clean` matters only for an offline node: True when it is known to run nothing any more (it was fenced, or it
    left the cluster cleanly). Services owned by an offline node that is not clean are never moved.
    """

    name: str
    id: int = 0
    online: bool = True
    clean: bool = True


@dataclass(frozen=True, slots=True)
class Membership:
    """The nodes in membership order (cman's order: by node id), quorum, and the node the caller runs on.

    `locked` is the rgmanager lock (`clusvcadm -l`): while set, starts are refused with RG_EAGAIN.
    The planner's decisions do not depend on `local` (placement is central); adapters use it to pick their share.
    """

    nodes: tuple[NodeState, ...]
    quorate: bool = True
    local: str | None = None
    locked: bool = False
    _index: Mapping[str, NodeState] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {n.name: n for n in self.nodes}
        if len(index) != len(self.nodes):
            raise ValueError("membership lists a node twice")
        object.__setattr__(self, "_index", MappingProxyType(index))

    def node(self, name: str | None) -> NodeState | None:
        return self._index.get(name) if name is not None else None

    def is_online(self, name: str | None) -> bool:
        node = self.node(name)
        return node is not None and node.online

    def is_clean(self, name: str | None) -> bool:
        """An owner is safe to take over from: offline and fenced/left, or not a member at all any more."""
        node = self.node(name)
        return node is None or (not node.online and node.clean)

    @property
    def online(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if n.online)

    def with_node(self, name: str, *, online: bool, clean: bool = True, node_id: int = 0) -> Membership:
        """A copy with `name` up or down. An unknown node is inserted in node-id order (before the first node with
        a higher id; id 0, unknown, goes last), so the membership order stays cman's."""
        nodes = list(self.nodes)
        for i, n in enumerate(nodes):
            if n.name == name:
                nodes[i] = replace(n, online=online, clean=clean)
                break
        else:
            at = len(nodes)
            if node_id > 0:
                at = next((i for i, n in enumerate(nodes) if n.id == 0 or n.id > node_id), len(nodes))
            nodes.insert(at, NodeState(name, node_id, online, clean))
        return replace(self, nodes=tuple(nodes))

    def with_quorum(self, quorate: bool) -> Membership:
        return replace(self, quorate=quorate)

    @classmethod
    def from_config(
        cls,
        config: ClusterView,
        online: Iterable[str] | None = None,
        *,
        unclean: Iterable[str] = (),
        quorate: bool = True,
        local: str | None = None,
    ) -> Membership:
        """Every configured node in id order; `online=None` means all of them. Offline nodes are clean unless
        listed in `unclean` (down but not yet fenced)."""
        up = None if online is None else set(online)
        dirty = set(unclean)
        ordered = sorted(
            enumerate(config.nodes), key=lambda p: (p[1].nodeid if p[1].nodeid is not None else 1 << 30, p[0])
        )
        nodes = tuple(
            NodeState(n.name, n.nodeid or 0, up is None or n.name in up, n.name not in dirty) for _, n in ordered
        )
        return cls(nodes, quorate, local)


# -- service records ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """The cluster-wide record of one service (rg_state_t), plus the restart history the recovery policy reads.

    `restarts` holds the times of the local restarts counted against max_restarts; `inline_restarts` the same
    per independent subtree (subtree root id -> times), for `__max_restarts`; `failures` the status failures
    ignored so far per resource (resource id, "" for the service itself -> times), for `__max_failures`.
    """

    name: str
    state: State = State.STOPPED
    owner: str | None = None
    last_owner: str | None = None
    restarts: tuple[float, ...] = ()
    last_transition: float = 0.0
    flags: Flag = Flag.NONE
    inline_restarts: tuple[tuple[str, tuple[float, ...]], ...] = ()
    failures: tuple[tuple[str, tuple[float, ...]], ...] = ()

    @property
    def frozen(self) -> bool:
        return Flag.FROZEN in self.flags

    @property
    def partial(self) -> bool:
        return Flag.PARTIAL in self.flags

    @property
    def active(self) -> bool:
        """It may hold resources on its owner."""
        return self.state in ACTIVE_STATES and self.owner is not None

    @property
    def is_new(self) -> bool:
        """Never transitioned: stopped with transition time 0 (the autostart="0" rule reads this)."""
        return self.state in (State.STOPPED, State.UNINITIALIZED) and self.last_transition == 0 and self.owner is None

    def inline_history(self, resource: str) -> tuple[float, ...]:
        return _history(self.inline_restarts, resource)

    def with_inline_history(self, resource: str, times: tuple[float, ...]) -> ServiceRecord:
        return replace(self, inline_restarts=_with_history(self.inline_restarts, resource, times))

    def failure_history(self, resource: str) -> tuple[float, ...]:
        return _history(self.failures, resource)

    def with_failure_history(self, resource: str, times: tuple[float, ...]) -> ServiceRecord:
        return replace(self, failures=_with_history(self.failures, resource, times))


History = tuple[tuple[str, tuple[float, ...]], ...]


def _history(items: History, key: str) -> tuple[float, ...]:
    for k, times in items:
        if k == key:
            return times
    return ()


def _with_history(items: History, key: str, times: tuple[float, ...]) -> History:
    kept = tuple((k, t) for k, t in items if k != key)
    return (*kept, (key, times)) if times else kept


class ServiceTable(Mapping[str, ServiceRecord]):
    """Service id -> record, read-only. A configured service with no record reads as a new, stopped record."""

    __slots__ = ("_records",)

    def __init__(self, records: Iterable[ServiceRecord] | Mapping[str, ServiceRecord] = ()) -> None:
        items = records.values() if isinstance(records, Mapping) else records
        self._records: dict[str, ServiceRecord] = {r.name: r for r in items}

    def __getitem__(self, name: str) -> ServiceRecord:
        return self._records[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def record(self, name: str) -> ServiceRecord:
        return self._records.get(name) or ServiceRecord(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServiceTable) and self._records == other._records

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ServiceTable({list(self._records.values())!r})"

    @classmethod
    def _adopt(cls, records: dict[str, ServiceRecord]) -> ServiceTable:
        """Wrap a dict the caller hands over (the planner's working copy) without copying it."""
        table = cls.__new__(cls)
        table._records = records
        return table

    def copy_records(self) -> dict[str, ServiceRecord]:
        return dict(self._records)


# -- events -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QuorumFormed:
    """Quorum formed (or regained): initialise and evaluate every service."""

    now: float = 1.0


@dataclass(frozen=True, slots=True)
class QuorumLost:
    """"#1: Quorum Dissolved": every node emergency-stops its services and waits."""

    now: float = 1.0


@dataclass(frozen=True, slots=True)
class NodeDown:
    """A node left the membership and has been fenced (only then is this event given)."""

    node: str
    now: float = 1.0


@dataclass(frozen=True, slots=True)
class NodeUp:
    node: str
    now: float = 1.0


@dataclass(frozen=True, slots=True)
class ServiceFailed:
    """A status check of `service` failed on `node` (None: its current owner).

    `resource` is the failed resource's id (`type:primary`, e.g. `script:httpd`, as `restree` names it) when
    known; `subtree` says whether it lies in an independent (1) or non-critical (2) subtree, or neither (0). None:
    read it from the config's `__independent_subtree` attributes (0 when there is no resource). A report naming a
    node that no longer owns the service is late and is dropped.
    """

    service: str
    resource: str | None = None
    subtree: int | None = None
    now: float = 1.0
    node: str | None = None


@dataclass(frozen=True, slots=True)
class StopFailed:
    """Stopping `service` on `node` failed: "#12: RG %s failed to stop; intervention required".

    The node matters because the plan that asked for the stop already recorded the service as stopped (or started
    it elsewhere): the record is marked failed with last_owner = node whatever it says now."""

    service: str
    node: str
    now: float = 1.0


@dataclass(frozen=True, slots=True)
class MigrateFailed:
    """Live-migrating `service` away from `node` (the source) failed with agent return code `rc`.

    150 means the VM still runs on the source (RG_ERELO); any other code leaves it in an unknown place (failed)."""

    service: str
    node: str
    rc: int
    now: float = 1.0


ERELO_RC = 150  # the vm agent's "migration failed, still running on the source"


@dataclass(frozen=True, slots=True)
class ConfigChanged:
    """A new configuration was activated; the planner's `config` argument is the new one, `previous` the one it
    replaces (needed for the reconfiguration delta: without it, running services are not reconfigured)."""

    now: float = 1.0
    previous: ClusterView | None = field(default=None, hash=False, repr=False)


class UserOp(Enum):
    """clusvcadm requests."""

    ENABLE = "enable"  # -e [-m node]
    DISABLE = "disable"  # -d
    RELOCATE = "relocate"  # -r [-m node]
    RESTART = "restart"  # -R
    STOP = "stop"  # -s
    FREEZE = "freeze"  # -Z
    UNFREEZE = "unfreeze"  # -U
    MIGRATE = "migrate"  # -M -m node
    CONVALESCE = "convalesce"  # -c


@dataclass(frozen=True, slots=True)
class UserRequest:
    op: UserOp
    service: str
    target: str | None = None
    now: float = 1.0


Event = (QuorumFormed | QuorumLost | NodeDown | NodeUp | ServiceFailed | StopFailed | MigrateFailed | ConfigChanged
         | UserRequest)


def describe_event(event: Event) -> str:
    """A short human form: "node-down n2", "relocate service:www n3", "service-fail service:db script:db"."""
    match event:
        case QuorumFormed():
            return "quorum-formed"
        case QuorumLost():
            return "quorum-lost"
        case NodeDown(node=node):
            return f"node-down {node}"
        case NodeUp(node=node):
            return f"node-up {node}"
        case ServiceFailed(service=service, resource=resource, subtree=subtree, node=node):
            text = f"service-fail {service}" + (f" {resource}" if resource else "")
            return text + (f" subtree={subtree}" if subtree else "") + (f" node={node}" if node else "")
        case StopFailed(service=service, node=node):
            return f"stop-failed {service} {node}"
        case MigrateFailed(service=service, node=node, rc=rc):
            return f"migrate-failed {service} {node} {rc}"
        case ConfigChanged():
            return "config-changed"
        case UserRequest(op=op, service=service, target=target):
            return f"{op.value} {service}" + (f" {target}" if target else "")
    raise TypeError(f"not an event: {event!r}")
