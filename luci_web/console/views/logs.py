"""The Logs tab: the nodes' cluster logs (ricci's log.get) from one node or every answering node merged by time,
over 15 minutes, 1 hour or 5 hours (the original luci's choices), filtered by program. A node that does not answer
is one line of note. Lines pass through the audit masking on the way to the page."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from luci_web.audit.log import mask_text
from luci_web.clusters import gateway
from luci_web.console.views.common import cluster_view, render_tab

AGES = [(900, "15 min"), (3600, "1 hour"), (18000, "5 hours")]
DEFAULT_AGE = 3600
TAGS = ["cmand", "rgmanager", "ricci"]
SHOWN = 2000  # lines on the page at most (the newest)
LOG_TIMEOUT = 4.0  # each node's answer, bounded


def read_logs(nodes: list[Any], age: int, tags: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(entries of every answering node, newest first, masked; one note per node that did not answer)."""
    answers = gateway.fan_out(nodes, "log.get", {"age": age, "tags": tags}, timeout=LOG_TIMEOUT) if nodes else {}
    entries, notes = [], []
    for node in nodes:
        answer = answers[node.name]
        if not answer.ok:
            notes.append(f"{node.name} did not answer: {answer.message or 'no answer'}")
            continue
        for entry in (answer.result or {}).get("entries") or []:
            entries.append({"node": node.name, "time": str(entry.get("time") or ""), "tag": str(entry.get("tag") or ""),
                            "pid": entry.get("pid"), "msg": mask_text(str(entry.get("msg") or ""))})
    entries.sort(key=lambda e: e["time"], reverse=True)
    return entries, notes


def _age(value: str | None) -> int:
    try:
        age = int(value or DEFAULT_AGE)
    except ValueError:
        return DEFAULT_AGE
    return age if age in dict(AGES) else DEFAULT_AGE


@cluster_view("view")
def tab(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    all_nodes = list(cluster.nodes.all())
    chosen = request.GET.get("node") or ""
    nodes = [n for n in all_nodes if n.name == chosen] or all_nodes
    if not any(n.name == chosen for n in all_nodes):
        chosen = ""
    age = _age(request.GET.get("age"))
    tags = [t for t in request.GET.getlist("tag") if t in TAGS]
    entries, notes = read_logs(nodes, age, tags)
    return render_tab(request, cluster, rights, "logs", "console/logs.html", entries=entries[:SHOWN],
                      total=len(entries), shown=SHOWN, notes=notes, node_names=[n.name for n in all_nodes],
                      chosen=chosen, age=age, ages=AGES, tags=tags, all_tags=TAGS)


urlpatterns = [
    path("clusters/<int:pk>/logs/", tab, name="logs"),
]
