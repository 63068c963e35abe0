"""The audit log in Django's admin: read-only (no add, change or delete, even for a superuser)."""
from django.contrib import admin

from luci_web.audit.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "username", "cluster_name", "action", "target", "result", "message")
    list_filter = ("result", "action", "cluster_name")
    search_fields = ("username", "cluster_name", "action", "target", "message")
    date_hierarchy = "at"

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
