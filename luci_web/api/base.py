"""What every API view shares: the right each route needs (from the one table, luci_web.access.rights.URL_RIGHTS,
under "api:<route name>"), the cluster a route names, and how changes and long operations are answered.

    class DomainDetail(ClusterApiView):           # /api/v1/clusters/<cluster>/domains/<name>/
        def put(self, request, cluster, name):     # the right was checked before this runs
            op = self.change(edit_fn, action="domain.edit", target=name)   # 412/422/404/409/503 raised as problems
            return accepted(op)                                             # 202 + Location of the task

A cluster the user may not view answers 404, exactly as a cluster that does not exist (a script without the
right learns nothing of the cluster's layout, not even its name); a right missing on a visible cluster is 403.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.urls import reverse
from rest_framework.response import Response
from rest_framework.views import APIView

from cluster_conf import ClusterConf
from luci_web.api.problems import Problem
from luci_web.clusters import configs, operations
from luci_web.clusters.models import Cluster, Operation


class ApiView(APIView):
    """Every API view: its permission is RouteRight (REST_FRAMEWORK's default), its right the route's."""


class ClusterApiView(ApiView):
    """A view under /api/v1/clusters/<cluster>/: `self.cluster` and `self.rights` are set before the handler."""

    cluster: Cluster
    rights: frozenset[str]

    def current(self) -> configs.Current:
        """The cluster's accepted configuration (503 NO_NODE_ANSWERED when no node gives it)."""
        return configs.fetch(self.cluster)

    def change(self, edit: Callable[[ClusterConf], Any], *, action: str, target: str = "", reason: str = "",
               detail: dict[str, Any] | None = None) -> Operation:
        """configs.change on the version the request's If-Match names (none: the current one); refusals are
        audited by configs.change and raised, and the exception handler answers them (412, 422, 404, 409, 503)."""
        return configs.change(self.cluster, self.request.user, if_match(self.request), edit, action=action,
                              target=target, reason=reason or reason_of(self.request), detail=detail)


def if_match(request: Any, *, required: bool = False) -> int | None:
    """The configuration version in If-Match (`"17"`, `W/"17"` or `17`); None when absent (428 if required)."""
    raw = request.headers.get("If-Match")
    if raw is None or not raw.strip():
        if required:
            raise Problem(428, "IF_MATCH_REQUIRED", "this change needs If-Match: \"<config version>\" (the ETag of "
                          "GET …/config/)")
        return None
    text = raw.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise Problem(400, "BAD_IF_MATCH", "If-Match must be the configuration version, e.g. \"17\"")
    return int(text)


def reason_of(request: Any) -> str:
    """The optional X-Luci-Reason header: why this change is made (kept with the version in the History)."""
    return (request.headers.get("X-Luci-Reason") or "")[:500]


def etag(version: int | None) -> str:
    return f'"{version}"' if version is not None else ""


def with_version(response: Response, version: int | None) -> Response:
    """A read of configuration-backed data carries the version it was read at as its ETag."""
    if version is not None:
        response["ETag"] = etag(version)
    return response


def task_url(op: Operation) -> str:
    return reverse("api:task_detail", args=[op.id])


def accepted(op: Operation) -> Response:
    """202 Accepted for a long operation: the task's representation, and Location to poll it."""
    response = Response(operations.as_dict(op) | {"url": task_url(op)}, status=202)
    response["Location"] = task_url(op)
    return response
