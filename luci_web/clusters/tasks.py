"""Celery tasks: the long operations. Each entry point re-checks the requesting user's right (the request that
queued it was checked too, but rights can be withdrawn in between), reports per-node progress through
luci_web.clusters.operations, and writes the audit entry with the result.

Every task entry point is wrapped in `guarded(action)` (node_tasks and registry_tasks use it too): an unexpected
exception finishes the operation as failed with one line naming the kind of error (never its text, which may
hold a value the user typed) and audits it, instead of leaving the operation "running". `enqueue` is the one way
to queue such a task: a broker that cannot be reached fails the operation, audits it and raises
configs.QueueUnavailable (one line) instead of a 500."""
from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, close_old_connections

from luci_web.access.rights import require
from luci_web.audit.log import record
from luci_web.celery import app
from luci_web.clusters import gateway, operations
from luci_web.clusters.models import ConfigNote, Operation
from ricci_agent.protocol import AUTH_FAILED, HOST_KEY_CHANGED, HOST_KEY_UNKNOWN, UNREACHABLE, RicciError

log = logging.getLogger("luci.tasks")

# a push that failed with one of these never reached the node's agent: another node may be asked. After a
# timeout or a lost connection the request may have been received and propagated: it is never sent again.
NOT_SENT = frozenset({UNREACHABLE, HOST_KEY_UNKNOWN, HOST_KEY_CHANGED, AUTH_FAILED})
QUEUE_DOWN = "the worker queue is not reachable: nothing was changed; try again when it is back"


def load(operation_id: str, right: str, action: str = "", target: str = "",
         detail: dict[str, Any] | None = None) -> tuple[Operation, Any]:
    """The operation and its user, after checking the user still holds `right` on its cluster. A refusal
    finishes the operation, is audited as `action` (default: the operation's kind) and raises PermissionDenied."""
    op = Operation.objects.select_related("cluster", "user").get(pk=operation_id)
    user = op.user or get_user_model()()
    if op.cluster is not None:
        try:
            require(user, op.cluster, right)
        except PermissionDenied as exc:
            record(user, action or op.kind, cluster=op.cluster, target=target, detail=detail, result="refused",
                   message=str(exc))
            operations.finish(op, False, str(exc))
            raise
    return op, user


def fail_operation(operation_id: str, action: str, message: str) -> None:
    """Finish the operation as failed with `message` and audit it, unless it is finished already; nothing when
    the operation (or its cluster) was removed meanwhile."""
    try:
        close_old_connections()
        op = Operation.objects.select_related("cluster", "user").filter(pk=operation_id).first()
        if op is None or op.state in (Operation.DONE, Operation.FAILED):
            return
        user = op.user or get_user_model()()
        record(user, action or op.kind, cluster=op.cluster or op.cluster_name, result="failed", message=message)
        operations.finish(op, False, message)
    except DatabaseError as exc:
        log.error("operation %s: could not record its failure (%s)", operation_id, type(exc).__name__)


def guarded(action: str | Callable[..., str]) -> Callable[[Callable[..., dict[str, Any]]],
                                                           Callable[..., dict[str, Any]]]:
    """Wrap a task whose first argument is the operation id: a refusal (PermissionDenied, audited by `load`)
    returns {"ok": False}; any other exception finishes the operation as failed with one line and audits it as
    `action` (a name, or a function of the task's arguments giving it). The log has the error's kind and where
    it happened, never its text (it may hold a value the user typed)."""

    def wrap(task: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        @functools.wraps(task)
        def run(operation_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
            try:
                return task(operation_id, *args, **kwargs)
            except PermissionDenied:
                return {"ok": False, "refused": True}
            except Exception as exc:
                kind = type(exc).__name__
                where = _where(exc)
                log.error("task %s, operation %s: %s at %s", task.__name__, operation_id, kind, where)
                try:
                    name = action(operation_id, *args, **kwargs) if callable(action) else action
                except Exception:
                    name = ""
                fail_operation(operation_id, name, f"internal error ({kind}); the operation stopped: see the "
                               "nodes' state before trying again")
                return {"ok": False, "error": kind}
        return run
    return wrap


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"


def enqueue(op: Operation, user: Any, action: str, task: Any, *args: Any, target: str = "",
            detail: dict[str, Any] | None = None) -> None:
    """`task.delay(*args)` for the pending operation `op`; when the broker cannot take it (Redis down:
    kombu.exceptions.OperationalError, or any other error while queueing), the operation is finished as failed,
    the failure audited as `action`, and configs.QueueUnavailable raised with one line."""
    from luci_web.clusters.configs import QueueUnavailable

    try:
        task.delay(*args)
    except Exception as exc:  # the broker's error text may carry its URL (and password): never shown nor logged
        log.error("queueing %s for operation %s failed: %s", getattr(task, "name", task), op.id, type(exc).__name__)
        record(user, action, cluster=op.cluster or op.cluster_name, target=target, detail=detail, result="failed",
               message=QUEUE_DOWN)
        with contextlib.suppress(DatabaseError):  # the operation is gone with its cluster: the audit says it
            operations.finish(op, False, QUEUE_DOWN)
        raise QueueUnavailable(QUEUE_DOWN) from None


@app.task(name="luci.push_config")
@guarded(lambda operation_id, xml, meta: str(meta.get("action") or "config"))
def push_config(operation_id: str, xml: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Send a new configuration to one node with propagate=true; that node stages it on every node and commits.
    The first node that answers takes it; each node's outcome is the operation's progress."""
    right = meta.get("right", "config")
    if right not in ("config", "membership"):
        raise ValueError(f"push_config: right {right!r}")
    action, target = meta.get("action", "config"), meta.get("target", "")
    op, user = load(operation_id, right, action, target, meta.get("detail"))
    cluster = op.cluster
    operations.running(op)
    failure = "no node answered"
    for node in cluster.nodes.all():
        try:
            answer = gateway.call(node, "cluster.set_config", {"xml": xml, "propagate": True})
        except RicciError as exc:
            if exc.code in NOT_SENT:  # the request never reached this node: the next one may take it
                operations.step(op, node.name, "unreachable", exc.message)
                failure = exc.message
                continue
            if exc.code in gateway.NO_ANSWER:  # sent, but no reply: it may have been applied; never resend
                message = f"outcome unknown: check the nodes' versions ({exc.message})"
                operations.step(op, node.name, "unknown", exc.message)
                record(user, action, cluster=cluster, target=target, detail=meta.get("detail"), result="failed",
                       message=message)
                operations.finish(op, False, message, {"code": exc.code, "unknown": True})
                return {"ok": False, "code": exc.code, "unknown": True}
            record(user, action, cluster=cluster, target=target, detail=meta.get("detail"), result="failed",
                   message=exc.message)
            operations.finish(op, False, exc.message, {"code": exc.code})
            return {"ok": False, "code": exc.code}
        for name, outcome in (answer.get("nodes") or {}).items():
            operations.step(op, name, outcome.get("outcome", "?"), outcome.get("message") or "")
        new = int(answer.get("new_version") or 0)
        ConfigNote.objects.update_or_create(cluster=cluster, version=new, defaults={
            "author": user.get_username() or "luci", "reason": meta.get("reason", "")[:500]})
        refused = [n for n, o in (answer.get("nodes") or {}).items() if o.get("outcome") in ("refused", "unreachable")]
        message = f"version {new} accepted" + (f"; not on {', '.join(sorted(refused))}" if refused else "")
        record(user, action, cluster=cluster, target=target, detail={**(meta.get("detail") or {}), "version": new},
               result="ok", message=message)
        operations.finish(op, True, message, {"version": new, "old_version": answer.get("old_version")})
        return {"ok": True, "version": new}
    record(user, action, cluster=cluster, target=target, detail=meta.get("detail"), result="failed", message=failure)
    operations.finish(op, False, failure)
    return {"ok": False}
from luci_web.clusters import node_tasks  # noqa: E402,F401  (registers luci.node_* with the worker)
