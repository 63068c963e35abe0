"""The What-if tab: choose members to fail and absent nodes to return; the engine's planner (read-only, on the
configuration and the status luci last read) says where every service would go and what it would do."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from cluster_conf import ConfigError
from cluster_conf.model import view
from luci_web.clusters import configs, whatif
from luci_web.console.views.common import cluster_view, render_tab


@cluster_view("view")
def tab(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    context: dict[str, Any] = {"nodes": [], "outcome": None, "error": "", "fail": [], "back": []}
    try:
        current = configs.fetch(cluster)
    except (configs.ConfigUnavailable, ConfigError) as exc:
        context["error"] = str(exc)
        return render_tab(request, cluster, rights, "whatif", "console/whatif.html", **context)
    status = cluster.status or {}
    context["nodes"] = whatif.nodes_of(view(current.conf), status)
    context["version"] = current.version
    fail, back = request.GET.getlist("fail"), request.GET.getlist("back")
    context.update(fail=fail, back=back)
    if "run" in request.GET:
        try:
            context["outcome"] = whatif.simulate(current.conf, status, fail, back)
        except whatif.BadInput as exc:
            context["error"] = str(exc)
    return render_tab(request, cluster, rights, "whatif", "console/whatif.html", **context)


urlpatterns = [
    path("clusters/<int:pk>/whatif/", tab, name="whatif"),
]
