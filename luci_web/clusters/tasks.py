"""Celery tasks: the long operations. Each entry point re-checks the requesting user's right (the request that
queued it was checked too, but rights can be withdrawn in between), reports per-node progress through
luci_web.clusters.operations, and writes the audit entry with the result."""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from luci_web.access.rights import require
from luci_web.audit.log import record
from luci_web.celery import app
from luci_web.clusters import gateway, operations
from luci_web.clusters.models import ConfigNote, Operation
from ricci_agent.protocol import RicciError


def load(operation_id: str, right: str) -> tuple[Operation, Any]:
    """The operation and its user, after checking the user still holds `right` on its cluster."""
    op = Operation.objects.select_related("cluster", "user").get(pk=operation_id)
    user = op.user or get_user_model()()
    if op.cluster is not None:
        try:
            require(user, op.cluster, right)
        except PermissionDenied as exc:
            operations.finish(op, False, str(exc))
            raise
    return op, user


@app.task(name="luci.push_config")
def push_config(operation_id: str, xml: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Send a new configuration to one node with propagate=true; that node stages it on every node and commits.
    The first node that answers takes it; each node's outcome is the operation's progress."""
    right = meta.get("right", "config")
    if right not in ("config", "membership"):
        raise ValueError(f"push_config: right {right!r}")
    op, user = load(operation_id, right)
    cluster = op.cluster
    operations.running(op)
    action, target = meta.get("action", "config"), meta.get("target", "")
    failure = "no node answered"
    for node in cluster.nodes.all():
        try:
            answer = gateway.call(node, "cluster.set_config", {"xml": xml, "propagate": True})
        except RicciError as exc:
            if exc.code in gateway.NO_ANSWER:
                operations.step(op, node.name, "unreachable", exc.message)
                failure = exc.message
                continue
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
