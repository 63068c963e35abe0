"""The Events tab: a timeline of every service's state and owner (from the ServiceEvent rows the watcher writes),
the latest transitions, and fencing (cman's fence states on an answering node, and every node's fence history
through ricci's `fence.history`). The timeline and the transitions are a live fragment (console/_events.html)."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone

from luci_web.audit.log import mask_text
from luci_web.clusters import configs, timeline
from luci_web.clusters.fence_history import fence_history
from luci_web.clusters.fence_history import when_of as _when
from luci_web.clusters.models import ServiceEvent
from luci_web.console.views.common import cluster_view, render_tab

LATEST = 50  # transitions listed under the picture


def events_context(cluster, window_key: str | None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    window = timeline.window_of(window_key)
    end = timezone.now()
    start = end - timeline.WINDOWS[window][1]
    # the last change of each service before the window gives the state the picture opens with
    rows = list(ServiceEvent.objects.filter(cluster=cluster, at__gte=start, at__lte=end))
    opening = []
    for service in ServiceEvent.objects.filter(cluster=cluster, at__lt=start).values_list("service", flat=True) \
            .distinct():
        last = ServiceEvent.objects.filter(cluster=cluster, service=service, at__lt=start).order_by("-at", "-id") \
            .first()
        if last is not None:
            opening.append(last)
    picture = timeline.picture(opening + rows, end, window)
    latest = sorted(rows, key=lambda e: (e.at, e.id), reverse=True)[:LATEST]
    return {"picture": picture, "layout": picture["layout"], "legend": timeline.LEGEND, "window": window,
            "windows": [(k, label) for k, (label, _) in timeline.WINDOWS.items()], "latest": latest,
            "latest_limit": LATEST}


def fence_states(cluster) -> tuple[list[dict[str, Any]], str]:  # type: ignore[no-untyped-def]
    """cman's fence states (`cman.status` → fencing) from the first node whose cmand answers: one row per node
    with state, message, since, fenced_at, attempts, method, device, agent; and a note when none answered.
    Nodes are asked as configs.fetch asks them (the watcher's answering nodes first, a few in parallel), and the
    call returns within configs.DEADLINE (3 s) however many nodes hang."""

    def accept(node: Any, answer: dict[str, Any]) -> dict[str, Any]:
        if not answer.get("running"):
            raise configs.Unusable(str(answer.get("message") or "cman is not running"))
        return answer

    try:
        node, answer = configs.first_answer(configs.ordered_nodes(cluster), "cman.status", None, accept)
    except configs.NoAnswer as exc:
        return [], "no node's cluster manager answered" + (f" ({exc.reasons[0]})" if exc.reasons else "")
    rows = []
    for name, entry in sorted((answer.get("fencing") or {}).items()):
        entry = entry if isinstance(entry, dict) else {}
        rows.append({"node": name, "state": entry.get("state") or "", "message": mask_text(str(
            entry.get("message") or "")), "since": _when(entry.get("since")),
            "fenced_at": _when(entry.get("fenced_at")), "attempts": entry.get("attempts"),
            "how": " ".join(f"{k} {entry[k]}" for k in ("method", "device", "agent") if entry.get(k)),
            "reported_by": node.name})
    return rows, ""


@cluster_view("view")
def tab(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    context = events_context(cluster, request.GET.get("window"))
    fencing, fencing_note = fence_states(cluster)
    age = int(timeline.WINDOWS[context["window"]][1].total_seconds())
    fence_lines, silent = fence_history(cluster, timezone.now().timestamp() - age)
    return render_tab(request, cluster, rights, "events", "console/events.html", fencing=fencing,
                      fencing_note=fencing_note, fence_lines=fence_lines, silent=silent, **context)


@cluster_view("view")
def fragment(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    return render(request, "console/_events.html", {"cluster": cluster, "rights": rights,
                                                    **events_context(cluster, request.GET.get("window"))})


urlpatterns = [
    path("clusters/<int:pk>/events/", tab, name="events"),
    path("clusters/<int:pk>/fragments/events/", fragment, name="events_fragment"),
]
