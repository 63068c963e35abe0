"""The History tab: every accepted configuration version (ricci's history, with luci's notes of who pushed it and
why), the semantic diff between any two, and rollback: an old version's content pushed as a new version."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.http import require_POST

from cluster_conf import ClusterConf, ConfigError
from cluster_conf.diff import diff
from luci_web.audit.log import record
from luci_web.clusters import configs
from luci_web.clusters.models import ConfigNote
from luci_web.console.views.common import cluster_view, render_tab, show_error


def versions_of(cluster) -> tuple[list[dict[str, Any]], str, str]:  # type: ignore[no-untyped-def]
    """(versions newest first, the answering node, a note when none answered). Each version: version, time (a
    datetime), author (ricci's), note_author / reason (luci's ConfigNote), current. Nodes are asked as
    configs.fetch asks them (the watcher's answering nodes first), and the call returns within configs.DEADLINE
    (3 s) however many nodes hang."""
    try:
        node, answer = configs.first_answer(configs.ordered_nodes(cluster), "cluster.versions", None,
                                            lambda node, answer: answer)
    except configs.NoAnswer as exc:
        return [], "", "no node gave its configuration history" + (f" ({exc.reasons[0]})" if exc.reasons else "")
    notes = {n.version: n for n in ConfigNote.objects.filter(cluster=cluster)}
    accepted = (answer.get("accepted") or {}).get("version")
    rows = []
    for entry in reversed(answer.get("versions") or []):
        version = _int(entry.get("version")) or 0
        note = notes.get(version)
        rows.append({
            "version": version, "hash": str(entry.get("hash") or "")[:12],
            "time": _time(entry.get("time")),
            "author": entry.get("author") or "", "size": entry.get("size"),
            "note_author": note.author if note else "", "reason": note.reason if note else "",
            "current": version == accepted,
        })
    return rows, node.name, ""


def _time(value: Any) -> datetime:
    try:
        return datetime.fromtimestamp(float(value or 0), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(0, tz=UTC)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


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
            diff_text = diff(configs.fetch_version(cluster, old), configs.fetch_version(cluster, new)).to_text()
        except (configs.ConfigUnavailable, ConfigError) as exc:
            diff_error = str(exc)
    return render_tab(request, cluster, rights, "history", "console/history.html", versions=versions,
                      answered_by=node, note=note, current=current, old=old, new=new, diff_text=diff_text,
                      diff_error=diff_error)


def rollback_xml(old: ClusterConf, current_version: int) -> str:
    """The old content as version current+1: the version is set to the current one, then the editing API bumps it
    once (so the new copy beats every node's, whatever version the old content carried)."""
    old.root.set("config_version", str(current_version))
    old.bump_version()
    return old.to_string()


@require_POST
@cluster_view("config")
def rollback(request: HttpRequest, cluster, rights, version: int) -> HttpResponse:  # type: ignore[no-untyped-def]
    reason = (request.POST.get("reason") or "").strip()[:500]
    base = _int(request.POST.get("base_version"))
    target = f"version {version}"
    if request.POST.get("confirm") != "yes":
        show_error(request, "Rollback not confirmed: tick the confirmation box.")
        return redirect("console:history", cluster.pk)
    try:
        current = configs.fetch(cluster)
        if base is None:
            raise configs.ConfigRejected("the form did not say which version it was loaded on; reload the page")
        if current.version != base:
            raise configs.ConfigConflict(base, current.version, configs.conflict_diff(cluster, base, current))
        if version == current.version:
            raise configs.ConfigRejected(f"version {version} is the current version already")
        old = configs.fetch_version(cluster, version)
        xml = rollback_xml(old, current.version)
        errors = [r for r in configs.errors_of(ClusterConf.from_string(xml)) if r["severity"] == "error"]
        if errors:
            raise configs.ConfigRejected(f"version {version} does not validate any more: {errors[0]['message']}")
    except (configs.ConfigConflict, configs.ConfigRejected, configs.ConfigUnavailable, ConfigError) as exc:
        record(request.user, "config.rollback", cluster=cluster, target=target, detail={"reason": reason},
               result="refused", message=str(exc))
        show_error(request, f"Rollback refused: {exc}")
        return redirect("console:history", cluster.pk)
    try:
        op = configs.push(cluster, request.user, xml, action="config.rollback", target=target, reason=reason,
                          detail={"from_version": version, "base_version": current.version})
    except configs.QueueUnavailable as exc:  # failed and audited by the push already
        show_error(request, f"Rollback not started: {exc}")
        return redirect("console:history", cluster.pk)
    messages.success(request, f"Rolling back to the content of version {version} as version {current.version + 1}.")
    return redirect("console:operation", op.id)


urlpatterns = [
    path("clusters/<int:pk>/history/", tab, name="history"),
    path("clusters/<int:pk>/history/<int:version>/rollback/", rollback, name="history_rollback"),
]
