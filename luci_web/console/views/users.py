"""Users & Permissions and the audit log: administrators (superusers) only. Every change is audited
(user.add, user.rights, user.password, user.delete), and so is every refusal of one."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth.forms import SetPasswordForm, UserCreationForm
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods, require_POST

from luci_web.access.models import ClusterGrant
from luci_web.access.rights import (
    CLUSTER_RIGHTS,
    GLOBAL_RIGHTS,
    cluster_rights,
    global_rights,
    set_cluster_rights,
    set_global_rights,
)
from luci_web.audit.log import record
from luci_web.audit.models import AuditEntry
from luci_web.clusters.models import Cluster

AUDIT_PAGE_SIZE = 50
AUDIT_RESULTS = [AuditEntry.OK, AuditEntry.FAILED, AuditEntry.REFUSED]
RESULT_CLASSES = {AuditEntry.OK: "st-ok", AuditEntry.FAILED: "st-bad", AuditEntry.REFUSED: "st-warn"}


def administrators_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in (else the login page) and a Luci Administrator (else 403)."""
    @functools.wraps(view)
    def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (request.user.is_active and request.user.is_superuser):
            raise PermissionDenied("this needs the right: Luci Administrator")
        return view(request, *args, **kwargs)

    return inner


class GlobalRightsForm(forms.Form):
    rights = forms.MultipleChoiceField(choices=list(GLOBAL_RIGHTS.items()), required=False,
                                       widget=forms.CheckboxSelectMultiple)


class NewUserForm(UserCreationForm):
    """User name, password twice (Django's validators), and the global rights."""

    rights = forms.MultipleChoiceField(choices=list(GLOBAL_RIGHTS.items()), required=False,
                                       widget=forms.CheckboxSelectMultiple, label="Global rights")


def _user_rows() -> list[dict[str, Any]]:
    grants: dict[int, list[ClusterGrant]] = {}
    for grant in ClusterGrant.objects.select_related("cluster").order_by("cluster__name"):
        grants.setdefault(grant.user_id, []).append(grant)
    rows = []
    for user in get_user_model().objects.order_by("username"):
        held = global_rights(user)
        rows.append({
            "user": user,
            "global": [label for key, label in GLOBAL_RIGHTS.items() if key in held],
            "grants": [{"cluster": g.cluster, "rights": sorted(cluster_rights(user, g.cluster))}
                       for g in grants.get(user.pk, [])],
        })
    return rows


@administrators_only
def users(request: HttpRequest) -> HttpResponse:
    return render(request, "console/users.html", {"rows": _user_rows(), "global_rights": GLOBAL_RIGHTS})


@administrators_only
@require_http_methods(["GET", "POST"])
def user_add(request: HttpRequest) -> HttpResponse:
    form = NewUserForm(request.POST or None)
    if request.method == "POST":
        if not form.is_valid():
            record(request.user, "user.add", target=request.POST.get("username", "")[:150], result="failed",
                   message="; ".join(e for errors in form.errors.values() for e in errors))
        else:
            with transaction.atomic():
                user = form.save()
                set_global_rights(user, set(form.cleaned_data["rights"]))
                record(request.user, "user.add", target=user.get_username(),
                       detail={"global": sorted(form.cleaned_data["rights"])})
            messages.success(request, f"User {user.get_username()} added.")
            return redirect("console:user_edit", user.pk)
    return render(request, "console/user_add.html", {"form": form})


def _edit_context(request: HttpRequest, subject: Any, **extra: Any) -> dict[str, Any]:
    clusters = list(Cluster.objects.order_by("name"))
    held_global = global_rights(subject)
    grid = [{"cluster": c, "held": cluster_rights(subject, c)} for c in clusters]
    return {"subject": subject, "global_rights": GLOBAL_RIGHTS, "held_global": held_global,
            "cluster_rights": CLUSTER_RIGHTS, "grid": grid, "is_self": subject.pk == request.user.pk,
            "password_form": extra.pop("password_form", None) or SetPasswordForm(subject), **extra}


def _posted_cluster_rights(request: HttpRequest, clusters: list[Cluster]) -> dict[Cluster, set[str]]:
    """The grid's checkboxes: `grant-<cluster pk>` carries the rights ticked on that cluster's row."""
    return {c: {r for r in request.POST.getlist(f"grant-{c.pk}") if r in CLUSTER_RIGHTS} for c in clusters}


@administrators_only
@require_http_methods(["GET", "POST"])
def user_edit(request: HttpRequest, user_id: int) -> HttpResponse:
    subject = get_object_or_404(get_user_model(), pk=user_id)
    if request.method == "GET":
        return render(request, "console/user_edit.html", _edit_context(request, subject))
    wanted_global = {r for r in request.POST.getlist("global") if r in GLOBAL_RIGHTS}
    if subject.pk == request.user.pk and "administrator" not in wanted_global:
        record(request.user, "user.rights", target=subject.get_username(), result="refused",
               message="an administrator may not remove their own administrator right")
        messages.error(request, "You may not remove your own administrator right (ask another administrator).")
        return redirect("console:user_edit", subject.pk)
    clusters = list(Cluster.objects.order_by("name"))
    before = {"global": sorted(global_rights(subject)),
              "clusters": {c.name: sorted(cluster_rights(subject, c)) for c in clusters}}
    wanted = _posted_cluster_rights(request, clusters)
    with transaction.atomic():
        set_global_rights(subject, wanted_global)
        for cluster, rights in wanted.items():
            set_cluster_rights(subject, cluster, rights)
        after = {"global": sorted(global_rights(subject)),
                 "clusters": {c.name: sorted(cluster_rights(subject, c)) for c in clusters}}
        changed = {name: after["clusters"][name] for name in after["clusters"]
                   if after["clusters"][name] != before["clusters"][name]}
        record(request.user, "user.rights", target=subject.get_username(),
               detail={"global": after["global"], "clusters": changed},
               message=_rights_summary(before, after))
    messages.success(request, f"Rights of {subject.get_username()} saved.")
    return redirect("console:user_edit", subject.pk)


def _rights_summary(before: dict[str, Any], after: dict[str, Any]) -> str:
    parts = []
    if before["global"] != after["global"]:
        parts.append(f"global: {', '.join(after['global']) or 'none'}")
    for name, rights in after["clusters"].items():
        if rights != before["clusters"].get(name):
            parts.append(f"{name}: {', '.join(rights) or 'none'}")
    return "; ".join(parts) or "no change"


@administrators_only
@require_POST
def user_password(request: HttpRequest, user_id: int) -> HttpResponse:
    subject = get_object_or_404(get_user_model(), pk=user_id)
    form = SetPasswordForm(subject, request.POST)
    if not form.is_valid():
        record(request.user, "user.password", target=subject.get_username(), result="failed",
               message="; ".join(e for errors in form.errors.values() for e in errors))
        return render(request, "console/user_edit.html", _edit_context(request, subject, password_form=form),
                      status=400)
    form.save()
    if subject.pk == request.user.pk:
        update_session_auth_hash(request, subject)
    record(request.user, "user.password", target=subject.get_username())
    messages.success(request, f"Password of {subject.get_username()} reset.")
    return redirect("console:user_edit", subject.pk)


@administrators_only
@require_POST
def user_delete(request: HttpRequest, user_id: int) -> HttpResponse:
    subject = get_object_or_404(get_user_model(), pk=user_id)
    name = subject.get_username()
    if subject.pk == request.user.pk:
        record(request.user, "user.delete", target=name, result="refused", message="you may not delete yourself")
        messages.error(request, "You may not delete yourself.")
        return redirect("console:user_edit", subject.pk)
    with transaction.atomic():
        subject.delete()
        record(request.user, "user.delete", target=name)
    messages.success(request, f"User {name} deleted.")
    return redirect("console:users")


# -- the audit log ------------------------------------------------------------------------------------------------
FILTERS = ("cluster", "user", "action", "result")


def audit_entries(filters: dict[str, str]):  # type: ignore[no-untyped-def]
    """The audit entries matching the page's filters (exact matches; empty = any)."""
    entries = AuditEntry.objects.all()
    if filters.get("cluster"):
        entries = entries.filter(cluster_name=filters["cluster"])
    if filters.get("user"):
        entries = entries.filter(username=filters["user"])
    if filters.get("action"):
        entries = entries.filter(action=filters["action"])
    if filters.get("result"):
        entries = entries.filter(result=filters["result"])
    return entries


def _choices(field: str) -> list[str]:
    return [v for v in AuditEntry.objects.order_by(field).values_list(field, flat=True).distinct() if v]


@administrators_only
def audit(request: HttpRequest) -> HttpResponse:
    filters = {k: request.GET.get(k, "").strip()[:150] for k in FILTERS}
    page = Paginator(audit_entries(filters), AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"entry": e, "result_class": RESULT_CLASSES.get(e.result, "st-unknown")} for e in page]
    active = {k: v for k, v in filters.items() if v}
    return render(request, "console/audit.html", {
        "rows": rows, "page": page, "filters": filters, "query": urlencode(active),
        "clusters": sorted(set(_choices("cluster_name")) | set(Cluster.objects.values_list("name", flat=True))),
        "usernames": _choices("username"), "actions": _choices("action"), "results": AUDIT_RESULTS,
    })


urlpatterns = [
    path("users/", users, name="users"),
    path("users/add/", user_add, name="user_add"),
    path("users/<int:user_id>/", user_edit, name="user_edit"),
    path("users/<int:user_id>/password/", user_password, name="user_password"),
    path("users/<int:user_id>/delete/", user_delete, name="user_delete"),
    path("audit/", audit, name="audit"),
]
