"""The JSON shapes the API answers with, shared by the views that give them (docs/api.md lists them).

Large answers (the status of a 1000-service cluster) are built as plain dicts by the code that reads them; these
serializers document them in the OpenAPI schema and validate request bodies."""
from __future__ import annotations

from rest_framework import serializers


class ClusterIdentitySerializer(serializers.Serializer):
    name = serializers.CharField()
    id = serializers.IntegerField(allow_null=True)
    generation = serializers.IntegerField(allow_null=True)


class QuorumSerializer(serializers.Serializer):
    quorate = serializers.BooleanField(allow_null=True)
    groupmember = serializers.BooleanField()


class MemberSerializer(serializers.Serializer):
    """A member row: `clustat --json`'s, plus what luci saw of the node's agent."""

    name = serializers.CharField()
    nodeid = serializers.IntegerField(allow_null=True)
    online = serializers.BooleanField()
    local = serializers.BooleanField()
    estranged = serializers.BooleanField()
    rgmanager = serializers.BooleanField()
    master = serializers.BooleanField(help_text="the RG-Master")
    qdisk = serializers.BooleanField()
    state = serializers.ChoiceField(["online", "offline", "unknown"],
                                    help_text="unknown: the node's agent did not answer")
    agent = serializers.BooleanField(help_text="the node's ricci agent answered")
    config_version = serializers.IntegerField(allow_null=True)
    message = serializers.CharField(allow_blank=True)


class ServiceStateSerializer(serializers.Serializer):
    """A service row: exactly `clustat --json`'s."""

    name = serializers.CharField(help_text="service:<name> or vm:<name>")
    state = serializers.IntegerField()
    state_str = serializers.CharField(help_text="started, stopped, failed, disabled, recovering, ...")
    flags = serializers.IntegerField()
    flags_str = serializers.CharField(allow_blank=True, help_text="e.g. frozen, partial")
    owner = serializers.CharField(allow_null=True)
    last_owner = serializers.CharField(allow_null=True)
    restarts = serializers.IntegerField()
    last_transition = serializers.FloatField(allow_null=True, help_text="epoch seconds")


class StatusSerializer(serializers.Serializer):
    cluster = ClusterIdentitySerializer()
    quorum = QuorumSerializer()
    rgmanager = serializers.CharField(help_text="running, not_running, timeout or unknown")
    members = MemberSerializer(many=True)
    services = ServiceStateSerializer(many=True)
    reported_by = serializers.CharField(allow_null=True, help_text="the node whose cmand and rgmanager answered")
    at = serializers.FloatField(allow_null=True, help_text="when the reading started, epoch seconds")
    config_version = serializers.IntegerField(allow_null=True, help_text="the highest version a node runs")
    drift = serializers.BooleanField(help_text="the nodes do not all run the same configuration")
    edited_locally = serializers.ListField(child=serializers.CharField())
    unreachable = serializers.ListField(child=serializers.CharField())
    message = serializers.CharField(allow_blank=True)


class SummarySerializer(serializers.Serializer):
    quorate = serializers.BooleanField(allow_null=True)
    online = serializers.IntegerField()
    unknown = serializers.IntegerField()
    total = serializers.IntegerField()
    started = serializers.IntegerField()
    failed = serializers.IntegerField()
    services = serializers.IntegerField()


class ClusterSerializer(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.CharField()
    nodes = serializers.ListField(child=serializers.CharField())
    added_at = serializers.DateTimeField()
    status_at = serializers.DateTimeField(allow_null=True, help_text="when luci last read the status")
    summary = SummarySerializer()
    rights = serializers.ListField(child=serializers.CharField(), help_text="your rights on this cluster")


class TaskSerializer(serializers.Serializer):
    """A long operation (202 Accepted answers with it; poll its url until state is done or failed)."""

    id = serializers.UUIDField()
    url = serializers.CharField()
    kind = serializers.CharField(help_text="push_config, node_join, create_cluster, ...")
    cluster = serializers.CharField(allow_blank=True)
    state = serializers.ChoiceField(["pending", "running", "done", "failed"])
    progress = serializers.DictField(child=serializers.DictField(),
                                     help_text="node -> {state, message}")
    result = serializers.DictField(help_text="e.g. {version: 8} after a configuration push")
    message = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
