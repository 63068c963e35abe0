"""The Service Groups tab: the live table of service groups with their commands (service_cmd right), and the
definition editor (config right): a service's attributes and its resource tree, with independent and non-critical
subtrees (`__independent_subtree` "1" and "2", `__enforce_timeouts`: cluster_conf.schema.SPECIAL_RESOURCE_ATTRS).

Commands run synchronously (ricci bounds them at 28 s) through luci_web.clusters.service_commands. Every definition
change is an edit function applied by luci_web.clusters.configs.change with the page's base_version, so a page
loaded before someone else's change is refused with the diff instead of overwriting it (through the console's one
way to change the configuration, luci_web.console.views.config_edit).
"""
from __future__ import annotations

from collections.abc import Mapping
from html import escape  # Django's escape is this one behind a lazy-string wrapper that costs 5x per call
from typing import Any
from urllib.parse import quote

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from cluster_conf import edit
from cluster_conf.schema import RESOURCE_TYPES
from luci_web.clusters import configs, service_commands
from luci_web.clusters.edits.services import (  # noqa: F401 (re-exported: the definition editor's functions)
    INLINE_TYPES,
    RECOVERY,
    RESOURCE_TYPE,
    SERVICE_NAME,
    SERVICE_REF,
    SUBTREE_CHOICES,
    Edit,
    FormError,
    add_child,
    change_service,
    check_xml_safe,
    create_service,
    decode_path,
    delete_service,
    encode_path,
    form_values,
    remove_child,
    resource_tree,
    service_attrs_from,
    set_subtree,
    subtree_flags,
)
from luci_web.clusters.edits.services import domain_names as _domains
from luci_web.clusters.edits.services import global_resources as _global_resources
from luci_web.clusters.values import xml_unsafe
from luci_web.console.forms import ConfigForm
from luci_web.console.views import config_edit
from luci_web.console.views.common import cluster_view, render_tab, tab_context

STATE_CLASS = {"started": "st-ok", "stopped": "st-off", "disabled": "st-off", "failed": "st-bad",
               "recoverable": "st-bad", "starting": "st-warn", "stopping": "st-warn"}


# -- the live table -------------------------------------------------------------------------------------------------
def service_rows(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for s in status.get("services") or []:
        name = str(s.get("name") or "")
        kind, _, plain = name.partition(":") if ":" in name else ("service", "", name)
        state = str(s.get("state_str") or "unknown")
        rows.append({"name": name, "kind": kind, "plain": plain, "state": state,
                     "css": STATE_CLASS.get(state, "st-unknown"), "owner": s.get("owner") or "",
                     "last_owner": s.get("last_owner") or "", "flags": s.get("flags_str") or "",
                     "frozen": "frozen" in str(s.get("flags_str") or ""), "restarts": s.get("restarts") or 0,
                     "is_vm": kind == "vm"})
    return rows


def member_names(cluster: Any, status: Mapping[str, Any]) -> list[str]:
    """The nodes a service may be sent to: the online members, else every node luci knows."""
    online = [m["name"] for m in status.get("members") or [] if m.get("state") == "online" and not m.get("qdisk")]
    return online or [n.name for n in cluster.nodes.all()]


ROW_ACTIONS_MAX = 30  # up to this many services, each row carries its own action buttons
_ROW = ('<tr data-service="{name}"><td><a href="{href}">{name}</a></td><td><span class="st {css}">{state}</span></td>'
        '<td>{owner}</td><td>{last_owner}</td><td>{flags}</td><td>{restarts}</td></tr>')


def plain_rows_html(cluster_pk: int, rows: list[dict[str, Any]]) -> str:
    """The rows without actions as HTML, built here rather than in a template loop: a thousand rows re-fetched on
    every change must render in milliseconds (Django's template engine takes about 0.1 ms a row). Every value is
    escaped; the markup is console/_services.html's."""
    base = reverse("console:service_definition", args=[cluster_pk, "SERVICE"])
    parts = []
    for row in rows:
        flags = f'<span class="st st-warn">{escape(row["flags"])}</span>' if row["flags"] else ""
        parts.append(_ROW.format(
            name=escape(row["name"]), href=escape(base.replace("SERVICE", quote(row["name"], safe=":"))),
            css=escape(row["css"]), state=escape(row["state"]), owner=escape(row["owner"] or "none"),
            last_owner=escape(row["last_owner"] or "none"), flags=flags, restarts=int(row["restarts"] or 0)))
    return "".join(parts)


def _table_context(cluster: Any) -> dict[str, Any]:
    """The live table's rows. Past ROW_ACTIONS_MAX services the rows carry no forms (a thousand rows of forms is
    megabytes of HTML re-fetched on every change): the action bar above the table acts on any service."""
    status = cluster.status or {}
    rows = service_rows(status)
    row_actions = len(rows) <= ROW_ACTIONS_MAX
    return {"rows": rows, "members": member_names(cluster, status), "row_actions": row_actions,
            "rows_html": "" if row_actions else mark_safe(plain_rows_html(cluster.pk, rows))}


@cluster_view("view")
def tab(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    context = _table_context(cluster)
    options = "".join(f'<option value="{escape(r["name"])}">{escape(r["name"])}</option>' for r in context["rows"])
    return render_tab(request, cluster, rights, "services", "console/services.html",
                      service_options=mark_safe(options), **context)  # escaped above


@cluster_view("view")
def fragment(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    return render(request, "console/_services.html", tab_context(cluster, rights, "services",
                                                                  **_table_context(cluster)))


@require_POST
@cluster_view("service_cmd")
def command(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    service = request.POST.get("service", "").strip()
    action = request.POST.get("command", "").strip()
    target = request.POST.get("target", "").strip() or None
    if not SERVICE_REF.match(service):
        messages.error(request, f"no such service group: {service!r}")
        return redirect("console:services", cluster.pk)
    if target is not None and target not in {n.name for n in cluster.nodes.all()}:
        messages.error(request, f"{target!r} is not a node of {cluster.name}")
        return redirect("console:services", cluster.pk)
    try:
        result = service_commands.run(cluster, request.user, service, action, target)
    except service_commands.BadCommand as exc:
        messages.error(request, str(exc))
        return redirect("console:services", cluster.pk)
    (messages.warning if result.warning else messages.success if result.ok else messages.error)(request,
                                                                                                result.message)
    return redirect("console:services", cluster.pk)


# -- the definition pages ----------------------------------------------------------------------------------------
def _apply(request: HttpRequest, cluster: Any, change: Edit, *, action: str, target: str,
           detail: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """config_edit.run_change on the posted base_version: (outcome, {}) when the push started, else (None, the
    problems the page shows: error, conflict diff, reports)."""
    form = ConfigForm(request.POST)
    if not form.is_valid():
        return None, {"error": "the form lacks the configuration version it was made from; reload the page"}
    outcome = config_edit.run_change(request, cluster, form, change, action=action, target=target, detail=detail)
    if outcome.ok:
        return outcome, {}
    return None, {"error": outcome.error, "conflict": (outcome.conflict or {}).get("diff"),
                  "reports": list(outcome.reports), "status": outcome.status}


def _done(request: HttpRequest, cluster: Any, outcome: Any, what: str) -> HttpResponse:
    return config_edit.done(request, cluster, "services", outcome, what)


def _definition(request: HttpRequest, cluster: Any, rights: frozenset[str], ref: str,
                problems: dict[str, Any] | None = None, status: int = 200) -> HttpResponse:
    try:
        current = configs.fetch(cluster)
    except configs.ConfigUnavailable as exc:
        return render_tab(request, cluster, rights, "services", "console/service_unavailable.html",
                          error=str(exc), ref=ref)
    conf = current.conf
    element = edit.find_service(conf, ref)
    if element is None:
        messages.error(request, f"{ref} is not in the configuration (version {current.version})")
        return redirect("console:services", cluster.pk)
    inline_type = request.GET.get("inline_type", "")
    inline = None
    if inline_type in INLINE_TYPES:
        inline = {"type": inline_type, "params": RESOURCE_TYPES[inline_type].params,
                  "parent": request.GET.get("parent", "[]")}
    response = render_tab(
        request, cluster, rights, "services", "console/service_edit.html", ref=ref,
        kind=element.tag, name=element.get("name"), attrs=form_values(element), base_version=current.version,
        domains=_domains(conf), recovery_choices=RECOVERY, tree=resource_tree(conf, ref),
        global_resources=_global_resources(conf), inline_types=INLINE_TYPES, inline=inline,
        subtree_choices=SUBTREE_CHOICES, problems=problems or {}, answered_by=current.node)
    response.status_code = status
    return response


def _check_ref(ref: str) -> None:
    if not SERVICE_REF.match(ref) or xml_unsafe(ref):
        raise FormError("", f"{ref!r} is not a service group (service:NAME or vm:NAME)")


@cluster_view("view")
def definition(request: HttpRequest, cluster, rights, ref: str) -> HttpResponse:  # type: ignore[no-untyped-def]
    if not SERVICE_REF.match(ref):
        messages.error(request, f"{ref!r} is not a service group (service:NAME or vm:NAME)")
        return redirect("console:services", cluster.pk)
    return _definition(request, cluster, rights, ref)


def _after(request: HttpRequest, cluster: Any, rights: frozenset[str], ref: str, outcome: Any,
           problems: dict[str, Any], what: str) -> HttpResponse:
    if outcome is not None:
        return _done(request, cluster, outcome, what)
    return _definition(request, cluster, rights, ref, problems, status=problems.get("status", 400))


@require_POST
@cluster_view("config")
def save_attrs(request: HttpRequest, cluster, rights, ref: str) -> HttpResponse:  # type: ignore[no-untyped-def]
    try:
        _check_ref(ref)
        attrs = service_attrs_from(request.POST)
    except FormError as exc:
        return _definition(request, cluster, rights, ref, {"error": str(exc), "field": exc.field}, 400)
    op, problems = _apply(request, cluster, change_service(ref, attrs), action="service.edit", target=ref,
                          detail={"attrs": attrs})
    return _after(request, cluster, rights, ref, op, problems, f"the new properties of {ref}")


@require_POST
@cluster_view("config")
def add_resource(request: HttpRequest, cluster, rights, ref: str) -> HttpResponse:  # type: ignore[no-untyped-def]
    try:
        _check_ref(ref)
        parent = decode_path(request.POST.get("parent", "[]"))
        if request.POST.get("mode") == "inline":
            rtype = request.POST.get("type", "")
            if rtype not in INLINE_TYPES:
                raise FormError("type", f"unknown resource type {rtype!r}")
            attrs = {p.name: request.POST.get(f"attr_{p.name}", "").strip() for p in RESOURCE_TYPES[rtype].params}
            attrs = {k: v for k, v in attrs.items() if v}
            for name, value in attrs.items():
                check_xml_safe(f"attr_{name}", name, value)
            primary = RESOURCE_TYPES[rtype].primary
            if not attrs.get(primary):
                raise FormError(f"attr_{primary}", f"a {rtype} resource needs its {primary}")
        else:
            rtype, _, key = request.POST.get("resource", "").partition("=")
            if not rtype or not key:
                raise FormError("resource", "choose a global resource")
            if not RESOURCE_TYPE.fullmatch(rtype):
                raise FormError("resource", f"{rtype!r} is not a resource type")
            check_xml_safe("resource", "the resource name", key)
            attrs = {"ref": key}
    except FormError as exc:
        return _definition(request, cluster, rights, ref, {"error": str(exc), "field": exc.field}, 400)
    op, problems = _apply(request, cluster, add_child(ref, parent, rtype, attrs), action="service.add_resource",
                          target=ref, detail={"parent": [list(s) for s in parent], "type": rtype, "attrs": attrs})
    return _after(request, cluster, rights, ref, op, problems, f"the new {rtype} in {ref}")


@require_POST
@cluster_view("config")
def remove_resource(request: HttpRequest, cluster, rights, ref: str) -> HttpResponse:  # type: ignore[no-untyped-def]
    try:
        _check_ref(ref)
        at = decode_path(request.POST.get("path", ""))
        if not at:
            raise FormError("path", "choose the resource to remove")
    except FormError as exc:
        return _definition(request, cluster, rights, ref, {"error": str(exc), "field": exc.field}, 400)
    op, problems = _apply(request, cluster, remove_child(ref, at), action="service.remove_resource", target=ref,
                          detail={"path": [list(s) for s in at]})
    return _after(request, cluster, rights, ref, op, problems, f"the removal of {at[-1][0]} {at[-1][1]} from {ref}")


@require_POST
@cluster_view("config")
def set_flags(request: HttpRequest, cluster, rights, ref: str) -> HttpResponse:  # type: ignore[no-untyped-def]
    try:
        _check_ref(ref)
        at = decode_path(request.POST.get("path", ""))
        choice, enforce = request.POST.get("subtree", ""), bool(request.POST.get("enforce_timeouts"))
        change = set_subtree(ref, at, choice, enforce)
    except FormError as exc:
        return _definition(request, cluster, rights, ref, {"error": str(exc), "field": exc.field}, 400)
    op, problems = _apply(request, cluster, change, action="service.subtree_flags", target=ref,
                          detail={"path": [list(s) for s in at], "subtree": choice, "enforce_timeouts": enforce})
    return _after(request, cluster, rights, ref, op, problems, f"the subtree flags in {ref}")


@cluster_view("config")
def delete(request: HttpRequest, cluster, rights, ref: str) -> HttpResponse:  # type: ignore[no-untyped-def]
    """GET asks for confirmation (with the config version the answer is based on); POST deletes."""
    if not SERVICE_REF.match(ref):
        messages.error(request, f"{ref!r} is not a service group (service:NAME or vm:NAME)")
        return redirect("console:services", cluster.pk)
    if request.method != "POST":
        try:
            current = configs.fetch(cluster)
        except configs.ConfigUnavailable as exc:
            return render_tab(request, cluster, rights, "services", "console/service_unavailable.html",
                              error=str(exc), ref=ref)
        return render_tab(request, cluster, rights, "services", "console/service_delete.html", ref=ref,
                          base_version=current.version)
    op, problems = _apply(request, cluster, delete_service(ref), action="service.delete", target=ref, detail={})
    if op is not None:
        return _done(request, cluster, op, f"the deletion of {ref}")
    response = render_tab(request, cluster, rights, "services", "console/service_delete.html", ref=ref,
                          base_version=request.POST.get("base_version", ""), problems=problems)
    response.status_code = problems.get("status", 400)
    return response


@cluster_view("config")
def create(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    """The new service form (GET) and its creation (POST)."""
    try:
        current = configs.fetch(cluster)
    except configs.ConfigUnavailable as exc:
        return render_tab(request, cluster, rights, "services", "console/service_unavailable.html", error=str(exc))
    domains = _domains(current.conf)
    values: Mapping[str, str] = request.POST if request.method == "POST" else {"autostart": "1", "recovery": "restart"}
    problems: dict[str, Any] = {}
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        try:
            if not SERVICE_NAME.fullmatch(name):
                raise FormError("name", "the name is 1-64 letters, digits, '.', '_' or '-'")
            attrs = service_attrs_from(request.POST, domains=domains)
        except FormError as exc:
            problems = {"error": str(exc), "field": exc.field}
        else:
            op, problems = _apply(request, cluster, create_service(name, attrs), action="service.create",
                                  target=f"service:{name}", detail={"attrs": attrs})
            if op is not None:
                return _done(request, cluster, op, f"the new service group {name}")
    response = render_tab(request, cluster, rights, "services", "console/service_create.html", values=values,
                          domains=domains, recovery_choices=RECOVERY, base_version=current.version, problems=problems)
    if problems:
        response.status_code = problems.get("status", 400)
    return response


urlpatterns = [
    path("clusters/<int:pk>/services/", tab, name="services"),
    path("clusters/<int:pk>/services/fragment/", fragment, name="services_fragment"),
    path("clusters/<int:pk>/services/command/", command, name="service_command"),
    path("clusters/<int:pk>/services/new/", create, name="service_create"),
    path("clusters/<int:pk>/services/<str:ref>/", definition, name="service_definition"),
    path("clusters/<int:pk>/services/<str:ref>/attrs/", save_attrs, name="service_save_attrs"),
    path("clusters/<int:pk>/services/<str:ref>/resources/add/", add_resource, name="service_add_resource"),
    path("clusters/<int:pk>/services/<str:ref>/resources/remove/", remove_resource, name="service_remove_resource"),
    path("clusters/<int:pk>/services/<str:ref>/resources/flags/", set_flags, name="service_set_flags"),
    path("clusters/<int:pk>/services/<str:ref>/delete/", delete, name="service_delete"),
]
