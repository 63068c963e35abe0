"""The audit log: every change and action taken through luci, with who, when, which cluster, what and the result.
Secrets never reach it: luci_web.audit.log.record masks them before anything is stored."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    OK, FAILED, REFUSED = "ok", "failed", "refused"

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    username = models.CharField(max_length=150, blank=True)
    cluster_name = models.CharField(max_length=64, blank=True, db_index=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=255, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    result = models.CharField(max_length=16, default=OK)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username} {self.action} {self.target}: {self.result}"
