"""Django's admin for the per-cluster grants (the console's Users & Permissions page is the usual way)."""
from django.contrib import admin

from luci_web.access.models import ClusterGrant


@admin.register(ClusterGrant)
class ClusterGrantAdmin(admin.ModelAdmin):
    list_display = ("user", "cluster", "view", "config", "service_cmd", "node_cmd", "membership", "remove")
    list_filter = ("cluster",)
    search_fields = ("user__username", "cluster__name")
