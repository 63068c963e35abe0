"""The one table of rights, checked by every view, task entry point and websocket subscription.

Per cluster: view, config, service_cmd, node_cmd, membership, remove (luci's internal roles). Global:
administrator (a superuser: every right everywhere, and user management), create_clusters, import_clusters.
A right other than view implies view.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

CLUSTER_RIGHTS: dict[str, str] = {
    "view": "Can View This Cluster",
    "config": "Can Change the Cluster Configuration",
    "service_cmd": "Can Enable/Disable/Relocate/Migrate Service Groups",
    "node_cmd": "Can Stop/Start/Reboot/Fence Cluster Nodes",
    "membership": "Can Add and Delete Nodes",
    "remove": "Can Remove This Cluster from Luci",
}
GLOBAL_RIGHTS: dict[str, str] = {
    "administrator": "Luci Administrator",
    "create_clusters": "Can Create Clusters",
    "import_clusters": "Can Import Existing Clusters",
}


def _active(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and user.is_active)


def has_global(user: Any, right: str) -> bool:
    if right not in GLOBAL_RIGHTS:
        raise ValueError(f"unknown global right {right!r}")
    if not _active(user):
        return False
    if user.is_superuser:
        return True
    return right != "administrator" and user.has_perm(f"access.{right}")


def cluster_rights(user: Any, cluster: Any) -> frozenset[str]:
    """Every right `user` holds on `cluster` (a Cluster or its id)."""
    if not _active(user):
        return frozenset()
    if user.is_superuser:
        return frozenset(CLUSTER_RIGHTS)
    from luci_web.access.models import ClusterGrant

    cluster_id = getattr(cluster, "pk", cluster)
    grant = ClusterGrant.objects.filter(user=user, cluster_id=cluster_id).first()
    if grant is None:
        return frozenset()
    held = {r for r in CLUSTER_RIGHTS if getattr(grant, r)}
    if held:
        held.add("view")
    return frozenset(held)


def can(user: Any, cluster: Any, right: str) -> bool:
    if right not in CLUSTER_RIGHTS:
        raise ValueError(f"unknown cluster right {right!r}")
    return right in cluster_rights(user, cluster)


def require(user: Any, cluster: Any, right: str) -> None:
    """PermissionDenied (403 in views, a refusal in tasks and websockets) unless `user` holds `right`."""
    if not can(user, cluster, right):
        raise PermissionDenied(f"you may not {CLUSTER_RIGHTS[right][4:].lower()} on this cluster")


def require_global(user: Any, right: str) -> None:
    if not has_global(user, right):
        raise PermissionDenied(f"this needs the right: {GLOBAL_RIGHTS[right]}")


def visible_clusters(user: Any):  # type: ignore[no-untyped-def]
    """The clusters `user` may view, as a queryset."""
    from luci_web.clusters.models import Cluster

    if not _active(user):
        return Cluster.objects.none()
    if user.is_superuser:
        return Cluster.objects.all()
    from django.db.models import Q

    held = Q()
    for right in CLUSTER_RIGHTS:
        held |= Q(**{f"grants__{right}": True})
    return Cluster.objects.filter(Q(grants__user=user) & held).distinct()
