"""The What-if tab."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from luci_web.console.views.common import cluster_view, render_tab


@cluster_view("view")
def tab(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    return render_tab(request, cluster, rights, "whatif", "console/whatif.html")


urlpatterns = [
    path("clusters/<int:pk>/whatif/", tab, name="whatif"),
]
