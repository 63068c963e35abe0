"""What luci knows of the clusters it manages: their nodes (with pinned host keys), the last status read from
them, service state changes over time, notes on configuration versions, and long operations with progress."""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Cluster(models.Model):
    name = models.CharField(max_length=64, unique=True)
    added_at = models.DateTimeField(auto_now_add=True)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    # the last status the watcher read (luci_web.clusters.status.read_status's shape), and when
    status = models.JSONField(default=dict, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Node(models.Model):
    """A cluster node as luci reaches its ricci agent. The host key is pinned here when an admin confirms its
    fingerprint; a node offering another key is refused (host_key_changed)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=255)
    address = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=11111)
    host_key = models.TextField(help_text="the agent's public host key, 'ssh-ed25519 AAAA...'")
    fingerprint = models.CharField(max_length=100)

    class Meta:
        ordering = ["cluster", "id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="unique_node_per_cluster")]

    def __str__(self) -> str:
        return f"{self.name} ({self.address}:{self.port})"

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.address, self.port)


class ConfigNote(models.Model):
    """Who pushed a configuration version through luci, and why (ricci's history has the bytes and the time)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="config_notes")
    version = models.PositiveIntegerField()
    author = models.CharField(max_length=150)
    reason = models.CharField(max_length=500, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [models.UniqueConstraint(fields=["cluster", "version"], name="unique_note_per_version")]


class ServiceEvent(models.Model):
    """A service's state or owner as the watcher saw it change (the Events tab's timeline)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="service_events")
    service = models.CharField(max_length=255)
    state = models.CharField(max_length=32)
    owner = models.CharField(max_length=255, blank=True)
    at = models.DateTimeField(db_index=True)
    reported_by = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["at", "id"]


class Operation(models.Model):
    """A long operation run by the Celery worker; `progress` is {node: {"state": ..., "message": ...}}."""

    PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
    STATES = [(s, s) for s in (PENDING, RUNNING, DONE, FAILED)]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.CASCADE, related_name="operations")
    cluster_name = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=16, choices=STATES, default=PENDING)
    progress = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
