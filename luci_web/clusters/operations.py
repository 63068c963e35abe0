"""Long operations (Operation rows) and their per-node progress, as the worker reports them to the pages."""
from __future__ import annotations

from typing import Any

from django.utils import timezone

from luci_web.clusters.models import Operation
from luci_web.live.publish import operation_group, publish


def as_dict(op: Operation) -> dict[str, Any]:
    return {"id": str(op.id), "kind": op.kind, "cluster": op.cluster_name, "state": op.state,
            "progress": op.progress, "result": op.result, "message": op.message,
            "created_at": op.created_at.isoformat() if op.created_at else None,
            "finished_at": op.finished_at.isoformat() if op.finished_at else None}


def may_see(user: Any, op: Operation) -> bool:
    """An operation is shown to its author, to administrators and to the viewers of its cluster."""
    from luci_web.access.rights import can

    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return False
    if op.user_id == user.pk or user.is_superuser:
        return True
    return op.cluster_id is not None and can(user, op.cluster_id, "view")


def visible(user: Any):  # type: ignore[no-untyped-def]
    """The operations `user` may see (may_see's rule), newest first, as a queryset."""
    from django.db.models import Q

    from luci_web.access.rights import visible_clusters

    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return Operation.objects.none()
    if user.is_superuser:
        return Operation.objects.all()
    return Operation.objects.filter(Q(user=user) | Q(cluster__in=visible_clusters(user)))


def start(user: Any, kind: str, cluster: Any = None, nodes: list[str] | None = None) -> Operation:
    """A pending operation, each node in `nodes` "waiting"."""
    return Operation.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None, kind=kind, cluster=cluster,
        cluster_name=getattr(cluster, "name", "") or "",
        progress={n: {"state": "waiting", "message": ""} for n in nodes or []})


def _save(op: Operation, *fields: str) -> None:
    op.save(update_fields=list(fields))
    publish(operation_group(op.id), "operation", as_dict(op))


def running(op: Operation) -> None:
    op.state = Operation.RUNNING
    _save(op, "state")


def step(op: Operation, node: str, state: str, message: str = "") -> None:
    """One node's progress: waiting, running, done, failed (or an operation-specific word)."""
    op.progress = {**op.progress, node: {"state": state, "message": message}}
    _save(op, "progress")


def finish(op: Operation, ok: bool, message: str = "", result: dict[str, Any] | None = None) -> None:
    op.state = Operation.DONE if ok else Operation.FAILED
    op.message = message
    op.result = result or {}
    op.finished_at = timezone.now()
    _save(op, "state", "message", "result", "finished_at")
