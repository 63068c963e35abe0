"""The overview of every cluster the user may view, and the cluster header and operation fragments that the
live script re-fetches when the watcher or the worker says something changed."""
from __future__ import annotations

import time

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path

from luci_web.access.rights import has_global, visible_clusters
from luci_web.clusters.models import Operation
from luci_web.clusters.operations import as_dict, may_see
from luci_web.clusters.status import summary
from luci_web.console.views.common import cluster_view, tab_context


def overview_rows(user) -> list[dict]:  # type: ignore[no-untyped-def]
    now = time.time()
    rows = []
    for cluster in visible_clusters(user).only("id", "name", "status", "status_at"):
        status = cluster.status or {}
        age = now - status["at"] if status.get("at") else None
        rows.append({"cluster": cluster, "status": status, "summary": summary(status), "age": age})
    return rows


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    return render(request, "console/overview.html", {
        "rows": overview_rows(request.user),
        "can_create": has_global(request.user, "create_clusters"),
        "can_import": has_global(request.user, "import_clusters"),
    })


@login_required
def overview_fragment(request: HttpRequest) -> HttpResponse:
    return render(request, "console/_overview_rows.html", {"rows": overview_rows(request.user)})


@cluster_view("view")
def cluster_home(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    return redirect("console:nodes", cluster.pk)


@cluster_view("view")
def cluster_head(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    return render(request, "console/_cluster_head.html", tab_context(cluster, rights, ""))


def _visible_operation(request: HttpRequest, op_id) -> Operation:  # type: ignore[no-untyped-def]
    if not request.user.is_authenticated:
        raise Http404
    op = get_object_or_404(Operation.objects.select_related("cluster"), pk=op_id)
    if not may_see(request.user, op):
        raise Http404
    return op


@login_required
def operation(request: HttpRequest, op_id) -> HttpResponse:  # type: ignore[no-untyped-def]
    op = _visible_operation(request, op_id)
    return render(request, "console/operation.html", {"op": op, "data": as_dict(op)})


@login_required
def operation_fragment(request: HttpRequest, op_id) -> HttpResponse:  # type: ignore[no-untyped-def]
    op = _visible_operation(request, op_id)
    return render(request, "console/_operation.html", {"op": op, "data": as_dict(op)})


urlpatterns = [
    path("", overview, name="overview"),
    path("fragments/overview/", overview_fragment, name="overview_fragment"),
    path("clusters/<int:pk>/", cluster_home, name="cluster"),
    path("clusters/<int:pk>/fragments/head/", cluster_head, name="cluster_head"),
    path("operations/<uuid:op_id>/", operation, name="operation"),
    path("operations/<uuid:op_id>/fragment/", operation_fragment, name="operation_fragment"),
]
