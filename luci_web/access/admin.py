"""Django's admin for users and per-cluster grants (the console's Users & Permissions page is the usual way).

Every change made here is audited as the console audits it (user.add, user.rights, user.password, user.delete),
with the message "Django admin": the admin is another door to the same rights, not a way around the audit log.
Groups are audited too, as they can carry the global rights (create_clusters, import_clusters)."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group

from luci_web.access.models import ClusterGrant
from luci_web.access.rights import CLUSTER_RIGHTS, global_rights
from luci_web.audit.log import record

VIA = "Django admin"


def grant_rights(grant: ClusterGrant | None) -> list[str]:
    """The rights a grant row gives, as rights.cluster_rights reads them (any right implies view)."""
    if grant is None:
        return []
    held = {r for r in CLUSTER_RIGHTS if getattr(grant, r)}
    return sorted(held | {"view"}) if held else []


def fresh_global_rights(user: Any) -> list[str]:
    """Global rights as the database holds them now (a user object caches its permissions)."""
    fresh = type(user).objects.filter(pk=user.pk).first()
    return sorted(global_rights(fresh)) if fresh is not None else []


@admin.register(ClusterGrant)
class ClusterGrantAdmin(admin.ModelAdmin):
    list_display = ("user", "cluster", "view", "config", "service_cmd", "node_cmd", "membership", "remove")
    list_filter = ("cluster",)
    search_fields = ("user__username", "cluster__name")

    def save_model(self, request, obj, form, change) -> None:  # type: ignore[no-untyped-def]
        before = ClusterGrant.objects.select_related("user", "cluster").filter(pk=obj.pk).first() if change else None
        super().save_model(request, obj, form, change)
        if before is not None and (before.user_id, before.cluster_id) != (obj.user_id, obj.cluster_id):
            self._audit(request, before, [])  # the grant moved: its old holder lost these rights
            before = None
        rights = grant_rights(obj)
        if before is None or grant_rights(before) != rights:
            self._audit(request, obj, rights)

    def delete_model(self, request, obj) -> None:  # type: ignore[no-untyped-def]
        super().delete_model(request, obj)
        self._audit(request, obj, [])

    def delete_queryset(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        grants = list(queryset.select_related("user", "cluster"))
        super().delete_queryset(request, queryset)
        for grant in grants:
            self._audit(request, grant, [])

    @staticmethod
    def _audit(request: Any, grant: ClusterGrant, rights: list[str]) -> None:
        record(request.user, "user.rights", cluster=grant.cluster, target=grant.user.get_username(),
               detail={"clusters": {grant.cluster.name: rights}},
               message=f"{grant.cluster.name}: {', '.join(rights) or 'none'} ({VIA})")


User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)
if admin.site.is_registered(Group):
    admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(UserAdmin):
    """Django's user admin, audited. Rights (superuser, permissions, groups) are saved with the many-to-many
    fields after save_model, so the entry is written in save_related, when they are final."""

    def save_model(self, request, obj, form, change) -> None:  # type: ignore[no-untyped-def]
        request._luci_rights_before = fresh_global_rights(obj) if change else []
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change) -> None:  # type: ignore[no-untyped-def]
        super().save_related(request, form, formsets, change)
        user = form.instance
        after = fresh_global_rights(user)
        if not change:
            record(request.user, "user.add", target=user.get_username(), detail={"global": after}, message=VIA)
            return
        fields = sorted(f for f in form.changed_data if f != "password")
        before = getattr(request, "_luci_rights_before", [])
        record(request.user, "user.rights", target=user.get_username(), detail={"global": after, "fields": fields},
               message=f"global: {', '.join(after) or 'none'}; changed: {', '.join(fields) or 'nothing'} ({VIA})"
               if before != after or fields else f"no change ({VIA})")

    def user_change_password(self, request, id, form_url=""):  # type: ignore[no-untyped-def]
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST":
            subject = User.objects.filter(pk=id).first()
            name = subject.get_username() if subject is not None else str(id)
            if response.status_code == 302:
                record(request.user, "user.password", target=name, message=VIA)
            elif response.status_code == 200:
                record(request.user, "user.password", target=name, result="failed", message=VIA)
        return response

    def delete_model(self, request, obj) -> None:  # type: ignore[no-untyped-def]
        name = obj.get_username()
        super().delete_model(request, obj)
        record(request.user, "user.delete", target=name, message=VIA)

    def delete_queryset(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        names = [u.get_username() for u in queryset]
        super().delete_queryset(request, queryset)
        for name in names:
            record(request.user, "user.delete", target=name, message=VIA)


@admin.register(Group)
class AuditedGroupAdmin(GroupAdmin):
    """Groups carry permissions, the global rights among them: a change is audited as user.rights of the group."""

    def save_related(self, request, form, formsets, change) -> None:  # type: ignore[no-untyped-def]
        super().save_related(request, form, formsets, change)
        group = form.instance
        perms = sorted(p.codename for p in group.permissions.filter(content_type__app_label="access"))
        record(request.user, "user.rights", target=f"group {group.name}",
               detail={"global": perms, "users": sorted(u.get_username() for u in group.user_set.all())},
               message=f"group {group.name}: luci rights {', '.join(perms) or 'none'} ({VIA})")

    def delete_model(self, request, obj) -> None:  # type: ignore[no-untyped-def]
        name = obj.name
        super().delete_model(request, obj)
        record(request.user, "user.rights", target=f"group {name}", message=f"group {name} deleted ({VIA})")

    def delete_queryset(self, request, queryset) -> None:  # type: ignore[no-untyped-def]
        names = [g.name for g in queryset]
        super().delete_queryset(request, queryset)
        for name in names:
            record(request.user, "user.rights", target=f"group {name}", message=f"group {name} deleted ({VIA})")
