"""The History tab: every accepted configuration version (ricci's history, with luci's notes of who pushed it and
why), the semantic diff between any two, and rollback: an old version's content pushed as a new version."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_POST

from cluster_conf import ConfigError
from luci_web.audit.log import record
from luci_web.clusters import configs, history
from luci_web.clusters.history import int_or_none as _int
from luci_web.clusters.history import versions_of
from luci_web.console.views.common import cluster_view, render_tab, show_error


@cluster_view("view")
def tab(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    versions, node, note = versions_of(cluster)
    numbers = [v["version"] for v in versions]
    current = next((v["version"] for v in versions if v["current"]), numbers[0] if numbers else None)
    old, new = _int(request.GET.get("old")), _int(request.GET.get("new"))
    if new not in numbers:
        new = current
    if old not in numbers:
        old = next((n for n in numbers if new is not None and n < new), new)
    diff_text, diff_error = "", ""
    if old is not None and new is not None and "old" in request.GET:
        try:
            diff_text = history.versions_diff(cluster, old, new).to_text()
        except (configs.ConfigUnavailable, history.VersionNotFound, ConfigError) as exc:
            diff_error = str(exc)
    return render_tab(request, cluster, rights, "history", "console/history.html", versions=versions,
                      answered_by=node, note=note, current=current, old=old, new=new, diff_text=diff_text,
                      diff_error=diff_error)


@require_POST
@cluster_view("config")
def rollback(request: HttpRequest, cluster, rights, version: int) -> HttpResponse:  # type: ignore[no-untyped-def]
    reason = (request.POST.get("reason") or "").strip()[:500]
    base = _int(request.POST.get("base_version"))
    target = f"version {version}"
    if request.POST.get("confirm") != "yes":
        show_error(request, "Rollback not confirmed: tick the confirmation box.")
        return redirect("console:history", cluster.pk)
    if base is None:
        message = "the form did not say which version it was loaded on; reload the page"
        record(request.user, "config.rollback", cluster=cluster, target=target, detail={"reason": reason},
               result="refused", message=message)
        show_error(request, f"Rollback refused: {message}")
        return redirect("console:history", cluster.pk)
    try:
        op, new_version = history.rollback(cluster, request.user, version, base, reason)
    except configs.QueueUnavailable as exc:  # failed and audited by the push already
        show_error(request, f"Rollback not started: {exc}")
        return redirect("console:history", cluster.pk)
    except (configs.ConfigConflict, configs.ConfigRejected, configs.ConfigUnavailable, history.VersionNotFound,
            ConfigError) as exc:  # audited by history.rollback
        show_error(request, f"Rollback refused: {exc}")
        return redirect("console:history", cluster.pk)
    messages.success(request, f"Rolling back to the content of version {version} as version {new_version}.")
    return redirect("console:operation", op.id)


urlpatterns = [
    path("clusters/<int:pk>/history/", tab, name="history"),
    path("clusters/<int:pk>/history/<int:version>/rollback/", rollback, name="history_rollback"),
]
