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


# -- what each console URL needs -----------------------------------------------------------------------------------
# Every named route of the console (luci_web.console.urls) is classified here, and tests/test_luci_access.py walks
# the URL resolver and fails on a route missing from this table, so a new view must be classified to ship.
# A value is "GET-right:POST-right" or one right for both. Rights: a cluster right (CLUSTER_RIGHTS: the route takes
# the cluster's `pk`; a right other than view implies view), a global right (GLOBAL_RIGHTS; "administrator" is a
# superuser), LOGIN (any signed-in user) or PUBLIC.
PUBLIC, LOGIN = "public", "login"
URL_RIGHTS: dict[str, str] = {
    # session
    "login": PUBLIC, "logout": PUBLIC,
    # overview and operations (an operation is shown to its author and to the viewers of its cluster)
    "overview": LOGIN, "overview_fragment": LOGIN, "operation": LOGIN, "operation_fragment": LOGIN,
    # clusters in luci
    "cluster_add": "import_clusters", "cluster_create": "create_clusters", "cluster_remove": "remove",
    # users, permissions and the audit log
    "users": "administrator", "user_add": "administrator", "user_edit": "administrator",
    "user_delete": "administrator", "user_password": "administrator", "audit": "administrator",
    # each user's own API tokens (make one, revoke one)
    "tokens": LOGIN, "token_revoke": LOGIN,
    # cluster pages: the tabs and the fragments the live script re-fetches (viewing)
    "cluster": "view", "cluster_head": "view",
    "nodes": "view", "nodes_fragment": "view", "services": "view", "services_fragment": "view",
    "service_definition": "view", "history": "view", "events": "view", "events_fragment": "view",
    "whatif": "view", "logs": "view",
    # tabs whose own forms change the configuration
    "fence": "view:config", "domains": "view:config", "resources": "view:config", "configure": "view:config",
    # configuration changes
    "service_create": "config", "service_save_attrs": "config", "service_add_resource": "config",
    "service_remove_resource": "config", "service_set_flags": "config", "service_delete": "config",
    "history_rollback": "config",
    # service commands (enable, disable, relocate, migrate, restart, freeze ...)
    "service_command": "service_cmd",
    # node commands (join, leave, fence, reboot)
    "nodes_action": "node_cmd",
    # membership
    "node_add": "membership", "node_delete": "membership",
    # -- the REST API (luci_web.api; route names in the "api" namespace). Every write method of a route (POST,
    # PUT, PATCH, DELETE) needs the right after the colon. tests/test_api_access.py walks these as the console's
    # matrix walks the console's; a cluster the user may not view answers 404 there (not 403).
    "api:schema": LOGIN, "api:docs": LOGIN,
    "api:cluster_list": "login:create_clusters", "api:cluster_import": "import_clusters",
    "api:cluster_detail": "view:remove", "api:cluster_status": "view",
    "api:node_list": "view:membership", "api:node_detail": "view:membership", "api:node_action": "node_cmd",
    "api:service_list": "view:config", "api:service_detail": "view:config", "api:service_action": "service_cmd",
    "api:domain_list": "view:config", "api:domain_detail": "view:config",
    "api:fence_device_list": "view:config", "api:fence_device_detail": "view:config",
    "api:resource_list": "view:config", "api:resource_detail": "view:config",
    "api:settings": "view:config",
    "api:config": "view:config", "api:history_list": "view", "api:history_version": "view",
    "api:history_diff": "view", "api:history_rollback": "config",
    "api:whatif": "view",  # a POST that changes nothing: the engine's plan for a scenario
    "api:events": "view", "api:fence_history": "view",
    # tasks: shown to their author and to the viewers of their cluster; tokens: each user's own
    "api:task_list": LOGIN, "api:task_detail": LOGIN, "api:token_list": LOGIN, "api:token_detail": LOGIN,
    "api:unknown": PUBLIC,  # any other path under /api/: a 404 problem, which tells nothing
}


def url_right(name: str, method: str = "GET") -> str:
    """The right that `method` on the route `name` needs (KeyError for an unclassified route): the right before the
    colon for reading (GET, HEAD, OPTIONS), the one after it (or the only one) for every other method."""
    spec = URL_RIGHTS[name]
    get_right, _, post_right = spec.partition(":")
    return get_right if method in ("GET", "HEAD", "OPTIONS") else (post_right or get_right)


def holds(user: Any, right: str, cluster: Any = None) -> bool:
    """Whether `user` holds `right` of any kind (URL_RIGHTS' vocabulary); a cluster right needs `cluster`."""
    if right == PUBLIC:
        return True
    if right == LOGIN:
        return _active(user)
    if right in GLOBAL_RIGHTS:
        return has_global(user, right)
    return cluster is not None and can(user, cluster, right)


# -- changing rights (the Users & Permissions page and `manage.py luci_user` share these) ---------------------------
def global_rights(user: Any) -> frozenset[str]:
    """The global rights `user` holds (an administrator holds all three)."""
    return frozenset(r for r in GLOBAL_RIGHTS if has_global(user, r))


def set_global_rights(user: Any, rights: set[str] | frozenset[str]) -> None:
    """Make `user`'s global rights exactly `rights` (administrator = superuser and staff, for Django's admin)."""
    from django.contrib.auth.models import Permission

    unknown = set(rights) - set(GLOBAL_RIGHTS)
    if unknown:
        raise ValueError(f"unknown global right(s): {', '.join(sorted(unknown))}")
    admin = "administrator" in rights
    if user.is_superuser != admin or user.is_staff != admin:
        user.is_superuser = user.is_staff = admin
        user.save(update_fields=["is_superuser", "is_staff"])
    for right in ("create_clusters", "import_clusters"):
        perm = Permission.objects.get(content_type__app_label="access", codename=right)
        if right in rights:
            user.user_permissions.add(perm)
        else:
            user.user_permissions.remove(perm)
    for cache_name in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
        user.__dict__.pop(cache_name, None)


def set_cluster_rights(user: Any, cluster: Any, rights: set[str] | frozenset[str]) -> None:
    """Make `user`'s grant on `cluster` exactly `rights` (none: the grant is deleted). A right other than view
    implies view, so view is stored whenever any right is."""
    from luci_web.access.models import ClusterGrant

    unknown = set(rights) - set(CLUSTER_RIGHTS)
    if unknown:
        raise ValueError(f"unknown cluster right(s): {', '.join(sorted(unknown))}")
    cluster_id = getattr(cluster, "pk", cluster)
    if not rights:
        ClusterGrant.objects.filter(user=user, cluster_id=cluster_id).delete()
        return
    values = {r: (r in rights or r == "view") for r in CLUSTER_RIGHTS}
    ClusterGrant.objects.update_or_create(user=user, cluster_id=cluster_id, defaults=values)
