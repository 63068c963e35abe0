"""What every console view shares: loading a cluster with a right checked, the tab context, and how a refused or
failed action is shown. Views stay thin: the work is in luci_web.clusters."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from luci_web.access.rights import CLUSTER_RIGHTS, cluster_rights
from luci_web.clusters.models import Cluster
from luci_web.clusters.status import summary

TABS = [
    ("nodes", "Nodes"), ("fence", "Fence Devices"), ("domains", "Failover Domains"), ("resources", "Resources"),
    ("services", "Service Groups"), ("configure", "Configure"), ("history", "History"), ("events", "Events"),
    ("whatif", "What-if"), ("logs", "Logs"),
]


def cluster_view(right: str = "view") -> Callable[..., Any]:
    """Decorator: login required, the cluster `pk` loaded, `right` checked (403 otherwise); the view gets
    (request, cluster, rights, ...)."""
    if right not in CLUSTER_RIGHTS:
        raise ValueError(right)

    def wrap(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def inner(request: HttpRequest, pk: int, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            cluster = get_object_or_404(Cluster, pk=pk)
            rights = cluster_rights(request.user, cluster)
            if "view" not in rights:
                raise PermissionDenied("you may not view this cluster")
            if right not in rights:
                raise PermissionDenied(f"you may not {CLUSTER_RIGHTS[right][4:].lower()} on this cluster")
            return view(request, cluster, rights, *args, **kwargs)

        return inner

    return wrap


def tab_context(cluster: Cluster, rights: frozenset[str], tab: str, **extra: Any) -> dict[str, Any]:
    status = cluster.status or {}
    return {"cluster": cluster, "rights": rights, "tab": tab, "tabs": TABS, "status": status,
            "summary": summary(status), **extra}


def render_tab(request: HttpRequest, cluster: Cluster, rights: frozenset[str], tab: str, template: str,
               **extra: Any) -> HttpResponse:
    return render(request, template, tab_context(cluster, rights, tab, **extra))


def show_error(request: HttpRequest, text: str) -> None:
    messages.error(request, text)
