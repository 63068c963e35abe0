"""The permission of every API view: the right its route and method need, from the one table shared with the
console (luci_web.access.rights.URL_RIGHTS, under "api:<route name>"). A cluster the user may not view answers
404, exactly as a cluster that does not exist; a right missing on a visible cluster is 403 PERMISSION_DENIED."""
from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission

from luci_web.access.rights import CLUSTER_RIGHTS, GLOBAL_RIGHTS, LOGIN, PUBLIC, cluster_rights, has_global, url_right
from luci_web.api.problems import Problem, not_found


def route_right(request: Any) -> str:
    """The right the request's route and method need (KeyError: a route missing from URL_RIGHTS)."""
    match = request.resolver_match
    return url_right(f"api:{match.url_name}", request.method)


class RouteRight(BasePermission):
    """Every API view's permission: the route's right from URL_RIGHTS. For a cluster right, the view's cluster
    is loaded here (404 when not visible) and kept on the view as `cluster` and `rights`."""

    def has_permission(self, request: Any, view: Any) -> bool:
        right = route_right(request)
        if right == PUBLIC:
            return True
        user = request.user
        if not (user and user.is_authenticated and user.is_active):
            return False  # DRF answers 401 (NotAuthenticated) with WWW-Authenticate
        if right == LOGIN:
            return True
        if right in GLOBAL_RIGHTS:
            if not has_global(user, right):
                raise Problem(403, "PERMISSION_DENIED", f"this needs the right: {GLOBAL_RIGHTS[right]}")
            return True
        if right not in CLUSTER_RIGHTS:
            raise KeyError(right)
        name = view.kwargs.get("cluster")
        if any("\x00" in str(value) for value in view.kwargs.values()):  # PostgreSQL refuses NUL in a query
            raise not_found("no such path (a path segment holds a NUL character)")
        from luci_web.clusters.models import Cluster

        # status (up to 140 KB of JSON) is loaded only by the views that read it
        cluster = Cluster.objects.defer("status").filter(name=name).first() if isinstance(name, str) else None
        rights = cluster_rights(user, cluster) if cluster is not None else frozenset()
        if "view" not in rights:
            raise not_found(f"no cluster named {str(name)[:64]!r} that you may view")
        if right not in rights:
            raise Problem(403, "PERMISSION_DENIED",
                          f"you may not {CLUSTER_RIGHTS[right][4:].lower()} on this cluster")
        view.cluster, view.rights = cluster, rights
        return True
