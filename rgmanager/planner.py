"""The planner: one pure entry point, `plan(config, membership, table, event) -> Plan`.

It reads one snapshot (the configuration, the membership, the service state table) and one event, and returns the
ordered actions the cluster should take, each with a reason (and an RG code where one applies), plus the table as
it will be once they are done. Nothing here reads a clock, a file or the network: the same input always gives the
same plan. The plan assumes every action succeeds; a failing action comes back as a new event (ServiceFailed,
StopFailed, MigrateFailed) naming the node it failed on, as in the original, where a failed start is followed by
recovery.

Rules: rhcs-facts §2.2-2.7, §2.9, §2.11; the decisions taken where the original is silent or quirky are listed in
docs/engine.md.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from cluster_conf.model import ClusterView
from rgmanager import recovery
from rgmanager.placement import (
    Catalog,
    Placer,
    Score,
    ServiceRule,
    catalog_of,
    dependency_met,
    dependency_reason,
    trees_of,
)
from rgmanager.reconfig import delta
from rgmanager.snapshot import (
    ERELO_RC,
    ConfigChanged,
    Event,
    Membership,
    MigrateFailed,
    NodeDown,
    NodeUp,
    QuorumFormed,
    QuorumLost,
    ServiceFailed,
    ServiceRecord,
    ServiceTable,
    StopFailed,
    UserOp,
    UserRequest,
    describe_event,
)
from rgmanager.states import Flag, Request, RGCode, State, allowed, check_path


class ActionKind(StrEnum):
    START = "start"  # start the tree on `node`
    STOP = "stop"  # stop the tree on `node`; `state` says how the record ends (stopped, disabled, recovering)
    RELOCATE = "relocate"  # stop on `source`, start on `node`
    MIGRATE = "migrate"  # live-migrate a VM from `source` to `node`
    MARK_STOPPED = "mark-stopped"  # record only: nothing runs (its owner is down and fenced, ...)
    MARK_DISABLED = "mark-disabled"
    MARK_FAILED = "mark-failed"
    MARK_STARTED = "mark-started"  # record only: a failed migration left the VM running on `node` (its source)
    MARK_RECOVERING = "mark-recovering"
    RECOVER_SUBTREE = "recover-subtree"  # inline stop + start of an independent subtree (`resource`)
    SET_PARTIAL = "set-partial"  # stop a non-critical subtree and flag the service partial
    CLEAR_PARTIAL = "clear-partial"  # convalesce: start the stopped non-critical parts, clear the flag
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    RECONFIGURE = "reconfigure"  # a config change inside a running service: stop, start, reconfig resources


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    service: str
    node: str | None = None  # where it happens (start/stop/subtree) or the destination (relocate/migrate)
    source: str | None = None  # relocate/migrate: the node it leaves
    request: Request | None = None  # the rgmanager request the agent side runs ("start (recovery)", ...)
    reason: str = ""
    code: RGCode | None = None
    state: State | None = None  # the record's state afterwards
    resource: str | None = None  # subtree actions: the subtree root (`type:primary`)
    # reconfigure: resource ids (`type:primary`) to stop, then start, in the §2.8 order, and to `reconfig` in place
    stop_ids: tuple[str, ...] = ()
    start_ids: tuple[str, ...] = ()
    reconfig_ids: tuple[str, ...] = ()

    def describe(self) -> str:
        k = self.kind
        if k in (ActionKind.RELOCATE, ActionKind.MIGRATE):
            text = f"{k.value} {self.service} from {self.source or '(none)'} to {self.node}"
        elif k in (ActionKind.START, ActionKind.STOP):
            text = f"{k.value} {self.service} on {self.node}"
            if self.request not in (None, Request.START, Request.STOP):
                text += f" [{self.request.label}]"
            if k is ActionKind.STOP and self.state not in (None, State.STOPPED):
                text += f" -> {self.state.label}"
        elif self.resource:
            text = f"{k.value} {self.service} {self.resource} on {self.node}"
        elif k is ActionKind.RECONFIGURE:
            parts = [f"{word} {','.join(ids)}" for word, ids in (("stop", self.stop_ids), ("start", self.start_ids),
                                                                  ("reconfig", self.reconfig_ids)) if ids]
            text = f"{k.value} {self.service} on {self.node} ({'; '.join(parts)})"
        else:
            text = f"{k.value} {self.service}"
        return f"{text}: {self.reason}" if self.reason else text

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"action": self.kind.value, "service": self.service}
        for key in ("node", "source", "resource"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.request is not None:
            data["request"] = self.request.label
        if self.state is not None:
            data["state"] = self.state.label
        if self.code is not None:
            data["code"] = int(self.code)
        for key in ("stop_ids", "start_ids", "reconfig_ids"):
            if getattr(self, key):
                data[key.removesuffix("_ids")] = list(getattr(self, key))
        data["reason"] = self.reason
        return data


@dataclass(frozen=True, slots=True)
class Pending:
    """A service that should run but cannot now (or whose record the planner must not touch), and why."""

    service: str
    reason: str
    code: RGCode

    def to_dict(self) -> dict[str, object]:
        return {"service": self.service, "code": int(self.code), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Plan:
    event: Event
    actions: tuple[Action, ...]
    table: ServiceTable  # the records once the actions are done
    membership: Membership  # the membership the plan was made for (the event applied)
    result: RGCode = RGCode.SUCCESS  # for a user request: what clusvcadm would print; otherwise SUCCESS/EQUORUM
    message: str = ""
    pending: tuple[Pending, ...] = field(default=())

    @property
    def placement(self) -> dict[str, str]:
        """Service id -> owner, for every service that runs (or is starting) afterwards."""
        return {sid: r.owner for sid, r in self.table.items() if r.active and r.owner is not None}

    def actions_on(self, node: str) -> tuple[Action, ...]:
        """The share of the plan a node's daemon carries out."""
        return tuple(a for a in self.actions if node in (a.node, a.source))

    def to_dict(self) -> dict[str, object]:
        return {
            "event": describe_event(self.event),
            "result": int(self.result),
            "result_text": self.result.text,
            "message": self.message,
            "actions": [a.to_dict() for a in self.actions],
            "pending": [p.to_dict() for p in self.pending],
        }


class Refused(Exception):
    """A user request refused before anything changed."""

    def __init__(self, code: RGCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def plan(config: ClusterView, membership: Membership, table: ServiceTable, event: Event) -> Plan:
    """The actions for `event`, given the configuration, the membership and the service state table.

    `membership` is the snapshot before the event; the node or quorum change an event describes is applied to it
    (NodeDown marks the node offline and fenced, NodeUp online, QuorumFormed/QuorumLost set quorum).

    A configuration whose dependencies form a cycle is refused (RG_EDEADLCK, nothing done), except for QuorumLost,
    whose emergency stops happen whatever the configuration says.
    """
    catalog = catalog_of(config)
    membership = _apply_membership(membership, event)
    if catalog.cycle and not isinstance(event, QuorumLost):
        return Plan(event, (), table, membership, RGCode.EDEADLCK,
                    f"services depend on each other in a cycle: {' -> '.join(catalog.cycle)}; fix the "
                    "configuration (ccs_tool lint reports DEPEND_CYCLE)")
    return _Planner(catalog, membership, table, event).run()


def _apply_membership(membership: Membership, event: Event) -> Membership:
    match event:
        case NodeDown(node=node):
            return membership.with_node(node, online=False, clean=True)
        case NodeUp(node=node):
            return membership.with_node(node, online=True, clean=True)
        case QuorumFormed():
            return membership.with_quorum(True)
        case QuorumLost():
            return membership.with_quorum(False)
    return membership


_STOP_PATH = (State.STOPPING, State.STOPPED)
_START_PATH = (State.STARTING, State.STARTED)


class _Planner:
    def __init__(self, catalog: Catalog, membership: Membership, table: ServiceTable, event: Event) -> None:
        self.catalog = catalog
        self.membership = membership
        self.event = event
        self.now = float(event.now)
        self.records = table.copy_records()
        for rule in catalog.services:
            if rule.id not in self.records:
                self.records[rule.id] = ServiceRecord(rule.id)
        self.placer = Placer(membership)
        for sid, rec in self.records.items():
            if rec.active:
                self.placer.occupy(rec.owner, self._exclusive(sid))  # type: ignore[arg-type]
        self.actions: list[Action] = []
        self.pending: dict[str, Pending] = {}
        self.result = RGCode.SUCCESS
        self.message = ""

    # -- driver ---------------------------------------------------------------------------------------------
    def run(self) -> Plan:
        handlers: dict[type, Callable] = {
            QuorumFormed: self.on_quorum_formed,
            QuorumLost: self.on_quorum_lost,
            NodeDown: self.on_node_change,
            NodeUp: self.on_node_up,
            ServiceFailed: self.on_service_failed,
            StopFailed: self.on_stop_failed,
            MigrateFailed: self.on_migrate_failed,
            ConfigChanged: self.on_config_changed,
            UserRequest: self.on_request,
        }
        handler = handlers.get(type(self.event))
        if handler is None:
            raise TypeError(f"not an event: {self.event!r}")
        if not self.membership.quorate and not isinstance(self.event, QuorumLost | QuorumFormed):
            self.result, self.message = RGCode.EQUORUM, "no quorum: nothing is started, stopped or moved"
        else:
            saved = (dict(self.records), list(self.actions), dict(self.pending))
            try:
                handler(self.event)
            except Refused as refusal:  # a refused request changes nothing
                self.records, self.actions, self.pending = saved[0], saved[1], saved[2]
                self.result, self.message = refusal.code, refusal.message
        return Plan(
            self.event,
            tuple(self.actions),
            ServiceTable._adopt(self.records),
            self.membership,
            self.result,
            self.message,
            tuple(self.pending.values()),
        )

    # -- small helpers ----------------------------------------------------------------------------------------
    def _exclusive(self, sid: str) -> bool:
        rule = self.catalog.by_id.get(sid)
        return rule is not None and rule.exclusive

    def _all_ids(self) -> list[str]:
        """Configured services in evaluation order, then records of unknown services (sorted)."""
        extra = sorted(s for s in self.records if s not in self.catalog.by_id)
        return [*self.catalog.order, *extra]

    def _write(self, sid: str, new: ServiceRecord) -> None:
        old = self.records[sid]
        exclusive = self._exclusive(sid)
        if old.active:
            self.placer.release(old.owner, exclusive)  # type: ignore[arg-type]
        if new.active:
            self.placer.occupy(new.owner, exclusive)  # type: ignore[arg-type]
        self.records[sid] = new

    def _transition(self, sid: str, path: tuple[State, ...], request: Request | None, **changes: object) -> None:
        """Move the record along `path` (each step checked by the guard) and apply `changes`."""
        old = self.records[sid]
        final = check_path(sid, old.state, path, request)
        self._write(sid, replace(old, state=final, last_transition=self.now, **changes))  # type: ignore[arg-type]

    def _emit(self, kind: ActionKind, sid: str, reason: str, **fields: object) -> None:
        self.actions.append(Action(kind, sid, reason=reason, **fields))  # type: ignore[arg-type]
        self.pending.pop(sid, None)

    def _wait(self, sid: str, reason: str, code: RGCode) -> None:
        self.pending[sid] = Pending(sid, reason, code)

    def online(self, node: str | None) -> bool:
        return self.membership.is_online(node)

    # -- primitive operations (each: guard, record, action) ----------------------------------------------------
    def start(self, sid: str, node: str, request: Request, reason: str) -> None:
        old = self.records[sid]
        keep = request is Request.START_RECOVER
        self._transition(sid, _START_PATH, request, owner=node, restarts=old.restarts if keep else (),
                         flags=old.flags & ~Flag.PARTIAL, inline_restarts=old.inline_restarts if keep else ())
        self._emit(ActionKind.START, sid, reason, node=node, request=request, state=State.STARTED)

    def stop(self, sid: str, request: Request, reason: str, end: State = State.STOPPED) -> None:
        """Stop a service running on a live owner; hard dependents are stopped first."""
        self.cascade(sid)
        self._stop_one(sid, request, reason, end)

    def _stop_one(self, sid: str, request: Request, reason: str, end: State = State.STOPPED) -> None:
        old = self.records[sid]
        if request is Request.STOP_RECOVER:
            path: tuple[State, ...] = (State.RECOVERABLE, State.RECOVERING)
        elif old.state in (State.STARTED, State.STARTING, State.FAILED):
            path = (State.STOPPING, end)
        elif old.state is State.STOPPING:
            path = (end,)
        else:  # recoverable, migrating: the stop just ends it
            path = (State.STOPPED,) if end is State.STOPPED else (State.STOPPED, end)
        self._transition(sid, path, request, owner=None, last_owner=old.owner or old.last_owner,
                         flags=old.flags & ~Flag.PARTIAL)
        self._emit(ActionKind.STOP, sid, reason, node=old.owner or old.last_owner, request=request,
                   state=path[-1])

    def mark(self, sid: str, kind: ActionKind, state: State, request: Request | None, reason: str,
             code: RGCode | None = None) -> None:
        """A record-only change (no agent runs)."""
        old = self.records[sid]
        if state in (State.STOPPED, State.DISABLED, State.FAILED) and old.active:
            self.cascade(sid)
        changes: dict[str, object] = {"owner": None}
        if old.owner is not None:
            changes["last_owner"] = old.owner
        if state is State.FAILED:
            changes["restarts"] = ()
        self._transition(sid, (state,), request, **changes)
        self._emit(kind, sid, reason, node=old.owner, request=request, state=state, code=code)

    def relocate(self, sid: str, target: str, request: Request, reason: str) -> None:
        old = self.records[sid]
        source = old.owner
        self.cascade(sid)
        self._transition(sid, (*_STOP_PATH, *_START_PATH), request, owner=target, last_owner=source,
                         restarts=(), inline_restarts=(), flags=old.flags & ~Flag.PARTIAL)
        self._emit(ActionKind.RELOCATE, sid, reason, node=target, source=source, request=request,
                   state=State.STARTED)

    def migrate(self, sid: str, target: str, reason: str) -> None:
        old = self.records[sid]
        self._transition(sid, (State.MIGRATING, State.STARTED), Request.MIGRATE, owner=target, last_owner=old.owner)
        self._emit(ActionKind.MIGRATE, sid, reason, node=target, source=old.owner, request=Request.MIGRATE,
                   state=State.STARTED)

    def cascade(self, sid: str) -> None:
        """§2.7: before `sid` stops, stop its active hard dependents on live owners ("Dependency missing"), the
        deepest first (c, then b, then a); soft ones stay, frozen ones stay with a note. Transitional dependents
        (starting, stopping, recoverable, migrating) are stopped too. Iterative with a visited set, so a long
        chain cannot exhaust the stack and a cycle cannot loop."""
        dependents = self.catalog.dependents
        visited = {sid}
        stack: list[tuple[str, int]] = [(sid, 0)]  # (service, index of the next dependent to look at)
        ordered: list[tuple[str, str]] = []  # (dependent, its dependency), deepest first
        while stack:
            current, index = stack[-1]
            children = dependents.get(current, ())
            if index >= len(children):
                stack.pop()
                if stack:
                    ordered.append((current, stack[-1][0]))
                continue
            stack[-1] = (current, index + 1)
            dependent = children[index]
            if dependent in visited:
                continue
            visited.add(dependent)
            rec = self.records[dependent]
            if not self.catalog.by_id[dependent].depend_hard or not rec.active:
                continue
            if rec.frozen:
                self._wait(dependent, f"frozen: left running although its dependency {current} stops",
                           RGCode.EFROZEN)
            elif self.online(rec.owner):
                stack.append((dependent, 0))
        for dependent, dependency in ordered:
            self._stop_one(dependent, Request.STOP,
                           f"Stopping service {dependent}: Dependency missing ({dependency} stops)")

    # -- automatic evaluation (§2.3.4, §2.7) --------------------------------------------------------------------
    def evaluate(self, hold: frozenset[str] = frozenset()) -> None:
        """Every service, dependencies first: take over from fenced owners, start what should run."""
        for sid in self.catalog.order:
            self.evaluate_one(sid, hold)

    def evaluate_one(self, sid: str, hold: frozenset[str] = frozenset()) -> None:
        rule = self.catalog.by_id[sid]
        rec = self.records[sid]
        if rec.frozen:
            if rec.active and not self.online(rec.owner):
                self._wait(sid, f"frozen: not moved although its owner {rec.owner} is down", RGCode.EFROZEN)
            return
        takeover = ""
        if rec.active:
            owner = rec.owner
            if self.online(owner):
                if (rule.depend_hard and rec.state is State.STARTED
                        and not dependency_met(rule, self.records, self.catalog)):
                    self.stop(sid, Request.STOP, f"Stopping service {sid}: {dependency_reason(rule, self.catalog)}")
                return
            if not self.membership.is_clean(owner):
                self._wait(sid, f"owner {owner} is down but not fenced yet; waiting for fencing", RGCode.EFENCE)
                return
            self.mark(sid, ActionKind.MARK_STOPPED, State.STOPPED, None, f"owner {owner} is down and fenced")
            takeover = f"Taking over service {sid} from down member {owner}"
            rec = self.records[sid]
        if rec.state is State.RECOVERABLE and rec.owner is None:  # the stop for recovery is over
            self._transition(sid, (State.RECOVERING,), None)
            rec = self.records[sid]
        if rec.state is State.RECOVERING and sid not in hold:
            if self.membership.locked:
                self._wait(sid, "recovering, but resource groups are locked (clusvcadm -l)", RGCode.EAGAIN)
            else:
                self.recover(rule, rec.last_owner)
            return
        if rec.state is not State.STOPPED or sid in hold:
            return
        if rec.is_new and not rule.autostart:
            self.mark(sid, ActionKind.MARK_DISABLED, State.DISABLED, Request.INIT, 'autostart="0": not started')
            return
        self.try_start(rule, Request.START, takeover or "automatic start")

    def try_start(self, rule: ServiceRule, request: Request, why: str, skip: str | None = None) -> str | None:
        """Start `rule` on its best node, or record why it cannot start. Returns the node."""
        sid = rule.id
        if self.membership.locked:
            self._wait(sid, "resource groups are locked (clusvcadm -l)", RGCode.EAGAIN)
            return None
        if not dependency_met(rule, self.records, self.catalog):
            self._wait(sid, f"Skipping RG {sid}: {dependency_reason(rule, self.catalog)}", RGCode.EDEPEND)
            return None
        found = self.placer.best_target(rule, self.records[sid], skip)
        if found is None:
            reason, code = self.placer.why_unplaced(rule, skip)
            self._wait(sid, reason, code)
            return None
        node, score = found
        self.start(sid, node, request, f"{why}: {self.explain(rule, score)}")
        return node

    def explain(self, rule: ServiceRule, score: Score) -> str:
        if rule.domain is None:
            if rule.domain_name:
                return f"{score.name} (#66: Domain '{rule.domain_name}' specified for resource group {rule.id} " \
                       "nonexistent!)"
            return f"{score.name} (no failover domain)"
        return f"{score.name} in {rule.domain.describe()}"

    # -- events ----------------------------------------------------------------------------------------------
    def on_quorum_formed(self, event: QuorumFormed) -> None:
        for sid in self.catalog.order:
            if self.records[sid].state is State.UNINITIALIZED:
                self._transition(sid, (State.STOPPED,), Request.INIT)
                self.records[sid] = replace(self.records[sid], last_transition=0.0)
        self.evaluate()

    def on_quorum_lost(self, event: QuorumLost) -> None:
        """§2.9: every node emergency-stops its services; the records are re-initialised (disabled ones too, as
        quorum re-formation decides again); frozen and failed records and those of unfenced owners are kept."""
        for sid in self._all_ids():
            rec = self.records[sid]
            if rec.frozen:
                self._wait(sid, "frozen: left as it is while quorum is lost", RGCode.EFROZEN)
                continue
            if rec.state is State.FAILED:
                continue
            if rec.active and not self.membership.is_clean(rec.owner) and not self.online(rec.owner):
                self._wait(sid, f"owner {rec.owner} is down but not fenced; record kept", RGCode.EFENCE)
                continue
            if rec.active and not self.online(rec.owner):
                self.mark(sid, ActionKind.MARK_STOPPED, State.STOPPED, None, f"owner {rec.owner} is down and fenced")
            elif rec.active:
                node = rec.owner
                self._transition(sid, (State.STOPPED,), Request.STOP_EXITING, owner=None, last_owner=node)
                self._emit(ActionKind.STOP, sid, "#1: Quorum Dissolved: emergency stop", node=node,
                           request=Request.STOP_EXITING, state=State.STOPPED)
            elif rec.state in (State.DISABLED, State.RECOVERING):
                self._transition(sid, (State.STOPPED,), Request.INIT)
                self._emit(ActionKind.MARK_STOPPED, sid,
                           f"#1: Quorum Dissolved: {rec.state.label} state forgotten until quorum forms again",
                           request=Request.INIT, state=State.STOPPED)
            self.records[sid] = replace(self.records[sid], last_transition=0.0, restarts=(), inline_restarts=(),
                                        flags=self.records[sid].flags & ~Flag.PARTIAL)

    def on_node_change(self, event: NodeDown) -> None:
        self.evaluate()

    def on_node_up(self, event: NodeUp) -> None:
        self.failback(event.node)
        self.evaluate()

    def failback(self, joiner: str) -> None:
        """§2.3.5: a running service moves to the joining node when the joiner scores strictly higher."""
        if not self.online(joiner) or self.membership.locked:  # clusvcadm -l: nothing starts or moves
            return
        for sid in self.catalog.order:
            rule = self.catalog.by_id[sid]
            rec = self.records[sid]
            if rec.state is not State.STARTED or rec.frozen or rec.owner == joiner or not self.online(rec.owner):
                continue
            if rule.domain is None:
                continue
            owner_score = self.placer.score(rule, rec.owner, rec)  # type: ignore[arg-type]
            joiner_score = self.placer.score(rule, joiner, rec)
            if joiner_score <= owner_score or self.placer.blocked(rule, joiner):
                continue
            reason = f"Relocating {sid} to better node {joiner} ({joiner_score.name} > {owner_score.name} on " \
                     f"{rec.owner})"
            if rule.migratory:
                self.migrate(sid, joiner, reason)
            else:
                self.relocate(sid, joiner, Request.RELOCATE, reason)

    def on_service_failed(self, event: ServiceFailed) -> None:
        rule = self.catalog.find(event.service)
        if rule is None:
            raise Refused(RGCode.ENOSERVICE, f"{event.service}: no such service")
        sid = rule.id
        rec = self.records[sid]
        if rec.frozen:
            self.message = f"{sid} is frozen: status failures are ignored"
            return
        if event.node is not None and event.node != rec.owner:
            self.message = f"late report dropped: {sid} no longer runs on {event.node}" + \
                (f" (owner: {rec.owner})" if rec.owner else "")
            return
        if rec.state is not State.STARTED or not self.online(rec.owner):
            self.message = f"{sid} is {rec.state.label}" + (f" on {rec.owner}" if rec.owner else "") + \
                ": a status failure is only handled for a started service on a live owner"
            return
        owner: str = rec.owner  # type: ignore[assignment]
        tree = trees_of(self.catalog.view).tree(sid)
        failed = recovery.find_node(tree, event.resource) if event.resource else tree
        if self.failure_ignored(sid, event.resource or "", failed):
            return
        rec = self.records[sid]
        root = recovery.subtree_root(failed) if event.resource else None
        kind = recovery.subtree_kind(root) if event.subtree is None else event.subtree
        escalated = ""
        if kind in (1, 2):
            subtree: str = root.id if root is not None else event.resource  # type: ignore[assignment]
            threshold = root.restart_threshold if root is not None else None
            inline_ok, history = recovery.inline_allowed(threshold, rec.inline_history(subtree), self.now)
            if inline_ok and (kind == 1 or threshold is not None):
                self.records[sid] = rec.with_inline_history(subtree, history)
                self._emit(ActionKind.RECOVER_SUBTREE, sid,
                           f"Some independent resources in {sid} failed; Attempting inline recovery",
                           node=owner, resource=subtree, request=Request.CONDSTART, state=State.STARTED)
                return
            if kind == 2:
                self.records[sid] = replace(rec.with_inline_history(subtree, ()), flags=rec.flags | Flag.PARTIAL)
                self._emit(ActionKind.SET_PARTIAL, sid,
                           "Note: Some non-critical resources were stopped during recovery. "
                           f"Run 'clusvcadm -c {sid}' to restore them to operation.",
                           node=owner, resource=subtree, request=Request.CONDSTOP, state=State.STARTED)
                return
            self.records[sid] = rec.with_inline_history(subtree, ())
            escalated = f"inline restart threshold of {subtree} exceeded; "
        failed_text = f" ({event.resource})" if event.resource else ""
        self.stop(sid, Request.STOP_RECOVER, f"{escalated}status check failed{failed_text}; stopping for recovery",
                  end=State.RECOVERING)
        self.recover(rule, owner)
        self.evaluate(frozenset({sid}))

    def failure_ignored(self, sid: str, key: str, node: object) -> bool:
        """§2.5 `__max_failures`/`__failure_expire_time` of the failed resource (the service's own when the event
        names none): below the threshold the failure is only counted."""
        threshold = getattr(node, "failure_threshold", None)
        rec = self.records[sid]
        ignored, history = recovery.failure_ignored(threshold, rec.failure_history(key), self.now)
        self.records[sid] = rec.with_failure_history(key, history)
        if ignored:
            what = key or sid
            self.message = f"status failure of {what} ignored: {len(history)} of __max_failures={threshold.count} " \
                f"within {threshold.window}s"  # type: ignore[union-attr]
        return ignored

    def recover(self, rule: ServiceRule, owner: str | None) -> None:
        """§2.6: apply the recovery policy to a service stopped for recovery on `owner` (its last owner; None when
        unknown). A restart needs that owner online and free; otherwise the service goes to its best node."""
        sid = rule.id
        rec = self.records[sid]
        outcome = recovery.decide(rule.recovery, rule.max_restarts, rule.restart_expire_time, rec.restarts,
                                  self.now, sid)
        self.records[sid] = replace(rec, restarts=outcome.restarts)
        if outcome.decision is recovery.Decision.DISABLE:
            self.mark(sid, ActionKind.MARK_DISABLED, State.DISABLED, Request.DISABLE, outcome.reason)
            return
        if not dependency_met(rule, self.records, self.catalog):
            self.mark(sid, ActionKind.MARK_STOPPED, State.STOPPED, None,
                      f"{outcome.reason}, but {dependency_reason(rule, self.catalog)}", RGCode.EDEPEND)
            return
        home = owner if owner is not None and self.online(owner) and not self.placer.blocked(rule, owner) else None
        if outcome.decision is recovery.Decision.RESTART and home is not None:
            self.start(sid, home, Request.START_RECOVER, outcome.reason)
            return
        found = self.placer.best_target(rule, self.records[sid], skip=owner)
        if found is not None:
            self.start(sid, found[0], Request.START_RECOVER,
                       f"{outcome.reason}: relocating from {owner or '(unknown)'} ({self.explain(rule, found[1])})")
        elif home is not None:
            self.start(sid, home, Request.START_RECOVER, f"#70: Failed to relocate {sid}; restarting locally")
        else:
            reason, code = self.placer.why_unplaced(rule)
            self.mark(sid, ActionKind.MARK_STOPPED, State.STOPPED, None, f"{outcome.reason}, but {reason}", code)

    def fail(self, sid: str, node: str, reason: str, code: RGCode = RGCode.EABORT) -> None:
        """Mark `sid` failed because something went wrong on `node`: owner none, last_owner = node (where its
        resources may still be allocated), counters cleared, hard dependents stopped first."""
        self.cascade(sid)
        self._transition(sid, (State.FAILED,), None, owner=None, last_owner=node, restarts=(), inline_restarts=(),
                         failures=())
        self._emit(ActionKind.MARK_FAILED, sid, reason, node=node, state=State.FAILED, code=code)

    def on_stop_failed(self, event: StopFailed) -> None:
        """The stop on `event.node` failed. The plan that asked for it recorded its end already (stopped,
        disabled, or started elsewhere by a later action): whatever the record says now, the service is failed with
        last_owner = that node, and a copy started on another live node meanwhile is stopped first."""
        rule = self.catalog.find(event.service)
        sid = rule.id if rule is not None else event.service
        if sid not in self.records:
            raise Refused(RGCode.ENOSERVICE, f"{event.service}: no such service")
        rec = self.records[sid]
        if not allowed(rec.state, State.FAILED):
            self.message = f"{sid} is {rec.state.label}: it was never started, so no stop can have failed"
            return
        if rec.active and rec.owner != event.node and self.online(rec.owner):
            self.stop(sid, Request.STOP, f"the stop on {event.node} failed: {sid} must not run elsewhere meanwhile")
        self.fail(sid, event.node, f"#12: RG {sid} failed to stop; intervention required")
        self.evaluate(frozenset({sid}))

    def on_migrate_failed(self, event: MigrateFailed) -> None:
        """§2.2 Migrate: return code 150 leaves the VM on its source (RG_ERELO); any other code -> failed."""
        rule = self.catalog.find(event.service)
        if rule is None:
            raise Refused(RGCode.ENOSERVICE, f"{event.service}: no such service")
        sid, node = rule.id, event.node
        rec = self.records[sid]
        migrated_from = rec.state in (State.STARTED, State.MIGRATING) and node in (rec.owner, rec.last_owner)
        if not migrated_from or rec.owner is None:
            self.message = f"late report dropped: {sid} was not migrating from {node}"
            return
        if event.rc == ERELO_RC and self.online(node):
            if rec.owner != node:
                self._write(sid, replace(rec, owner=None))  # release the target before checking exclusivity
                if self.placer.blocked(rule, node):
                    self._write(sid, rec)
                    self.fail(sid, node, f"migration of {sid} failed (rc {event.rc}): it still runs on {node}, which "
                              "now runs an exclusive service; intervention required", RGCode.EEXCL)
                    self.result = RGCode.FAIL
                    self.message = f"{sid} failed: {node} is shared with an exclusive service"
                    return
                self._write(sid, rec)
                self._transition(sid, (State.STARTED,), Request.MIGRATE, owner=node, last_owner=rec.owner)
            self._emit(ActionKind.MARK_STARTED, sid, f"migration of {sid} failed (rc {event.rc}): still running on "
                       f"{node}", node=node, request=Request.MIGRATE, state=State.STARTED, code=RGCode.ERELO)
            self.result, self.message = RGCode.ERELO, f"{sid} is still running on {node}"
            return
        self.fail(sid, node, f"migration of {sid} from {node} failed (rc {event.rc}); intervention required")
        self.result, self.message = RGCode.FAIL, f"{sid} failed: migration returned {event.rc}"
        self.evaluate(frozenset({sid}))

    def on_config_changed(self, event: ConfigChanged) -> None:
        """Removed services are stopped and forgotten (in sorted order; one whose owner is down but not fenced is
        kept, waiting for fencing); a running service whose node the new domain rules forbid moves; the running
        services whose resources changed get a `reconfigure` action (the delta against `event.previous`); then
        every service is evaluated (new ones included, autostart="0" ones are disabled)."""
        for sid in sorted(s for s in self.records if s not in self.catalog.by_id):
            rec = self.records[sid]
            if rec.frozen and rec.active:
                self._wait(sid, "removed from the configuration but frozen: left running", RGCode.EFROZEN)
                continue
            if rec.active and self.online(rec.owner):
                self.stop(sid, Request.STOP, "removed from the configuration")
            elif rec.active and not self.membership.is_clean(rec.owner):
                self._wait(sid, f"removed from the configuration, but its owner {rec.owner} is down and not fenced "
                           "yet; record kept until it is", RGCode.EFENCE)
                continue
            del self.records[sid]
        for sid in self.catalog.order:
            rule = self.catalog.by_id[sid]
            rec = self.records[sid]
            if rec.state is not State.STARTED or rec.frozen or not self.online(rec.owner):
                continue
            if self.placer.score(rule, rec.owner, rec) is not Score.ILLEGAL:  # type: ignore[arg-type]
                continue
            owner: str = rec.owner  # type: ignore[assignment]
            stopped = replace(rec, state=State.STOPPED, owner=None)
            found = self.placer.best_target(rule, stopped, skip=owner) if dependency_met(
                rule, self.records, self.catalog) else None
            if found is not None:
                where = rule.domain.describe() if rule.domain else "the configuration"
                self.relocate(sid, found[0], Request.RELOCATE, f"{owner} is no longer allowed by {where}")
            else:
                reason, _ = self.placer.why_unplaced(rule, skip=owner)
                self.stop(sid, Request.STOP, f"{owner} is no longer allowed; {reason}")
        if event.previous is not None:
            self.reconfigure(event.previous)
        self.evaluate()

    def reconfigure(self, previous: ClusterView) -> None:
        """§2.8 reconfiguration: for each service running on a live owner and not already stopped or moved by
        this plan, the resources the delta flags are stopped, started or reconfigured in place."""
        touched = {a.service for a in self.actions}
        changes = delta(trees_of(previous), trees_of(self.catalog.view))
        for sid in self.catalog.order:
            rec = self.records[sid]
            if sid in touched or rec.frozen or rec.state is not State.STARTED or not self.online(rec.owner):
                continue
            change = changes.service(sid)
            if change is None or change.added or change.unchanged:
                continue
            whole = "the service's own attributes changed: the whole tree restarts" if change.whole_service else ""
            self._emit(ActionKind.RECONFIGURE, sid, whole or "configuration changed: only the flagged resources "
                       "restart", node=rec.owner, state=State.STARTED,
                       stop_ids=tuple(n.id for n in change.stop_order),
                       start_ids=tuple(n.id for n in change.start_order),
                       reconfig_ids=tuple(n.id for n in change.reconfig))

    # -- user requests (clusvcadm) ------------------------------------------------------------------------------
    def on_request(self, event: UserRequest) -> None:
        rule = self.catalog.find(event.service)
        if rule is None:
            raise Refused(RGCode.ENOSERVICE, f"{event.service}: no such service")
        if event.target is not None and not self.online(event.target):
            known = self.membership.node(event.target) is not None
            raise Refused(RGCode.ENODE, f"{event.target} is {'offline' if known else 'not a cluster member'}")
        rec = self.records[rule.id]
        op = event.op
        if rec.frozen and op not in (UserOp.FREEZE, UserOp.UNFREEZE):
            raise Refused(RGCode.EFROZEN, f"{rule.id} is frozen; unfreeze it first (clusvcadm -U)")
        if rec.state is State.FAILED and op not in (UserOp.DISABLE, UserOp.FREEZE, UserOp.UNFREEZE):
            if op is UserOp.ENABLE:
                raise Refused(RGCode.FAIL, f"#43: Service {rule.id} has failed; can not start.")
            raise Refused(RGCode.EINVAL, f"{rule.id} has failed: only disable is accepted (clean up, then -d)")
        handler = {
            UserOp.ENABLE: self.req_enable,
            UserOp.DISABLE: self.req_disable,
            UserOp.RELOCATE: self.req_relocate,
            UserOp.RESTART: self.req_restart,
            UserOp.STOP: self.req_stop,
            UserOp.FREEZE: self.req_freeze,
            UserOp.UNFREEZE: self.req_unfreeze,
            UserOp.MIGRATE: self.req_migrate,
            UserOp.CONVALESCE: self.req_convalesce,
        }[op]
        handler(rule, event.target)
        self.evaluate(frozenset() if op is UserOp.UNFREEZE else frozenset({rule.id}))

    def _running_owner(self, rule: ServiceRule) -> str | None:
        """The live owner of a running service; None if it does not run. A fenced dead owner's record is marked
        stopped first; an unfenced one refuses the request (RG_EFENCE)."""
        rec = self.records[rule.id]
        if not rec.active:
            return None
        if self.online(rec.owner):
            return rec.owner
        if not self.membership.is_clean(rec.owner):
            raise Refused(RGCode.EFENCE, f"owner {rec.owner} of {rule.id} is down and not fenced yet")
        self.mark(rule.id, ActionKind.MARK_STOPPED, State.STOPPED, None, f"owner {rec.owner} is down and fenced")
        return None

    def _require_startable(self, rule: ServiceRule) -> None:
        if self.membership.locked:
            raise Refused(RGCode.EAGAIN, "resource groups are locked (clusvcadm -l)")
        if not dependency_met(rule, self.records, self.catalog):
            raise Refused(RGCode.EDEPEND, dependency_reason(rule, self.catalog))

    def _require_settled(self, rule: ServiceRule) -> None:
        state = self.records[rule.id].state
        if state is not State.STARTED:
            raise Refused(RGCode.EAGAIN, f"{rule.id} is {state.label}; try again when it settles")

    def _start_anywhere(self, rule: ServiceRule, request: Request, why: str, skip: str | None = None) -> str:
        found = self.placer.best_target(rule, self.records[rule.id], skip)
        if found is None:
            reason, code = self.placer.why_unplaced(rule, skip)
            raise Refused(code, f"{rule.id}: {reason}")
        self.start(rule.id, found[0], request, f"{why}: {self.explain(rule, found[1])}")
        return found[0]

    def req_enable(self, rule: ServiceRule, target: str | None) -> None:
        """-e [-m node] (§2.4): placement by domain rules (as central mode and -F do) unless a node is given."""
        owner = self._running_owner(rule)
        if owner is not None:
            raise Refused(RGCode.ERUN, f"{rule.id} is already running on {owner}")
        self._require_startable(rule)
        sid = rule.id
        if target is None:
            self._start_anywhere(rule, Request.ENABLE, "user enable")
            return
        if self.placer.score(rule, target, self.records[sid]) is Score.ILLEGAL:
            where = rule.domain.describe() if rule.domain else "the configuration"
            raise Refused(RGCode.ENORUN, f"{target} is not allowed to run {sid} ({where})")
        if self.placer.blocked(rule, target):
            what = "runs other services" if rule.exclusive else "runs an exclusive service"
            node = self._start_anywhere(rule, Request.ENABLE, f"user enable: {target} {what}", skip=target)
            self.message = f"Warning: {sid} is now running on {node}, not {target}"
            return
        self.start(sid, target, Request.ENABLE, f"user enable on {target}")

    def req_disable(self, rule: ServiceRule, target: str | None) -> None:
        sid = rule.id
        rec = self.records[sid]
        if rec.state is State.FAILED and self.online(rec.last_owner):
            self.stop(sid, Request.DISABLE, f"disable a failed service: Marking {sid} as 'disabled', but some "
                      "resources may still be allocated!", end=State.DISABLED)
            return
        owner = self._running_owner(rule)
        if owner is not None:
            if rec.state not in (State.STARTED, State.STOPPING, State.STARTING):
                self._require_settled(rule)
            self.stop(sid, Request.DISABLE, "user disable", end=State.DISABLED)
        elif self.records[sid].state is not State.DISABLED:
            self.mark(sid, ActionKind.MARK_DISABLED, State.DISABLED, Request.DISABLE, "user disable")

    def req_relocate(self, rule: ServiceRule, target: str | None) -> None:
        """-r [-m node] (§2.4)."""
        sid = rule.id
        if self.records[sid].state in (State.DISABLED, State.UNINITIALIZED):
            raise Refused(RGCode.EINVAL, f"{sid} is {self.records[sid].state.label}; enable it instead")
        owner = self._running_owner(rule)
        if owner is not None:
            self._require_settled(rule)
            if target == owner:
                raise Refused(RGCode.ERUN, f"{sid} is already running on {target}")
        if target is not None and self.placer.blocked(rule, target):
            what = "runs other services" if rule.exclusive else "runs an exclusive service"
            raise Refused(RGCode.EDEPEND, f"{target} {what}")
        self._require_startable(rule)
        target_ok = target is not None and self.placer.remote_start_allowed(rule, target)
        refused = f"{target} refused it (not in {rule.domain.describe()}); " if target and rule.domain else ""
        if owner is None:  # not running: relocate is a start on the target, or by the domain rules
            if target_ok:
                self.start(sid, target, Request.RELOCATE, f"user relocate to {target}")  # type: ignore[arg-type]
            else:
                node = self._start_anywhere(rule, Request.RELOCATE, f"user relocate: {refused}".rstrip("; "))
                if target is not None:
                    self.message = f"Warning: {sid} is now running on {node}, not {target}"
            return
        if target_ok:
            self.relocate(sid, target, Request.RELOCATE, f"user relocate to {target}")  # type: ignore[arg-type]
            return
        stopped = replace(self.records[sid], state=State.STOPPED, owner=None)
        found = self.placer.best_target(rule, stopped, skip=owner)
        if found is None:
            raise Refused(RGCode.ERELO, f"#70: Failed to relocate {sid}; no other node can take it, so it keeps "
                          f"running on {owner}")
        self.relocate(sid, found[0], Request.RELOCATE, f"user relocate: {refused}{self.explain(rule, found[1])}")
        if target is not None:
            self.message = f"Warning: {sid} is now running on {found[0]}, not {target}"

    def req_restart(self, rule: ServiceRule, target: str | None) -> None:
        """-R: stop and start on the same node (no domain check); a stopped service starts by domain rules."""
        sid = rule.id
        if self.records[sid].state in (State.DISABLED, State.UNINITIALIZED):
            raise Refused(RGCode.EINVAL, f"{sid} is {self.records[sid].state.label}; enable it instead")
        owner = self._running_owner(rule)
        self._require_startable(rule)
        if owner is None:
            self._start_anywhere(rule, Request.RESTART, "user restart of a stopped service")
            return
        self._require_settled(rule)
        self.stop(sid, Request.RESTART, "user restart")
        self.start(sid, owner, Request.RESTART, "user restart")

    def req_stop(self, rule: ServiceRule, target: str | None) -> None:
        """-s: stopped until the next node or service transition."""
        owner = self._running_owner(rule)
        if owner is None:
            return
        self._require_settled(rule)
        self.stop(rule.id, Request.STOP_USER, "user stop (started again at the next node or service transition)")

    def _require_freezable(self, rule: ServiceRule) -> None:
        state = self.records[rule.id].state
        if state not in (State.STOPPED, State.STARTED, State.DISABLED):
            raise Refused(RGCode.EAGAIN, f"{rule.id} is {state.label}; freeze/unfreeze needs stopped, started or "
                          "disabled")

    def req_freeze(self, rule: ServiceRule, target: str | None) -> None:
        self._require_freezable(rule)
        rec = self.records[rule.id]
        if not rec.frozen:
            self.records[rule.id] = replace(rec, flags=rec.flags | Flag.FROZEN)
            self._emit(ActionKind.FREEZE, rule.id, "user freeze: no status checks, starts, stops or failover",
                       node=rec.owner, request=Request.FREEZE, state=rec.state)

    def req_unfreeze(self, rule: ServiceRule, target: str | None) -> None:
        self._require_freezable(rule)
        rec = self.records[rule.id]
        if rec.frozen:
            self.records[rule.id] = replace(rec, flags=rec.flags & ~Flag.FROZEN)
            self._emit(ActionKind.UNFREEZE, rule.id, "user unfreeze", node=rec.owner, request=Request.UNFREEZE,
                       state=rec.state)

    def req_migrate(self, rule: ServiceRule, target: str | None) -> None:
        """-M -m node (§2.2 Migrate): VMs only; the target must be allowed and free; the VM must be started."""
        sid = rule.id
        if not rule.migratory:
            raise Refused(RGCode.EINVAL, f"{sid} is not a virtual machine; only vm:NAME can migrate")
        if target is None:
            raise Refused(RGCode.EINVAL, "Migration requires a target cluster member")
        owner = self._running_owner(rule)
        if owner is None or self.records[sid].state is not State.STARTED:
            raise Refused(RGCode.EINVAL, f"{sid} is not running; migrate needs a started VM")
        if target == owner:
            raise Refused(RGCode.ERUN, f"{sid} is already running on {target}")
        if self.membership.locked:
            raise Refused(RGCode.EAGAIN, "resource groups are locked (clusvcadm -l)")
        if self.placer.score(rule, target, self.records[sid]) is Score.ILLEGAL:
            raise Refused(RGCode.EDEPEND, f"{target} is not allowed by "
                          f"{rule.domain.describe() if rule.domain else 'the configuration'}")
        if self.placer.blocked(rule, target):
            what = "runs other services" if rule.exclusive else "runs an exclusive service"
            raise Refused(RGCode.EDEPEND, f"{target} {what}")
        self.migrate(sid, target, f"user migrate to {target}")

    def req_convalesce(self, rule: ServiceRule, target: str | None) -> None:
        sid = rule.id
        rec = self.records[sid]
        if rec.state is not State.STARTED or not self.online(rec.owner):
            raise Refused(RGCode.EINVAL, f"{sid} is {rec.state.label}; convalesce needs a started service")
        if not rec.partial:
            raise Refused(RGCode.ERUN, f"{sid} is not partial: every resource already runs")
        self.records[sid] = replace(rec, flags=rec.flags & ~Flag.PARTIAL, inline_restarts=())
        self._emit(ActionKind.CLEAR_PARTIAL, sid, "convalesce: start the stopped non-critical resources",
                   node=rec.owner, request=Request.CONVALESCE, state=State.STARTED)
