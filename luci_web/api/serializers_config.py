"""The JSON shapes of the configuration document, its history, what-if and events (request bodies are validated
with these; answers are built as plain dicts and documented by them)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from django.utils.dateparse import parse_datetime
from rest_framework import serializers

PAGE_MAX = 500  # events per page at most
PAGE_DEFAULT = 100


class MomentField(serializers.Field):
    """A moment given as ISO 8601 (`2024-05-01T12:00:00Z`; no zone: UTC) or as epoch seconds (`1714564800.5`)."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "invalid": "give a moment as ISO 8601 (e.g. 2024-05-01T12:00:00Z) or as epoch seconds",
    }

    def to_internal_value(self, data: Any) -> datetime:
        text = str(data).strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = None
        if seconds is not None:
            try:
                return datetime.fromtimestamp(seconds, tz=UTC)
            except (ValueError, OverflowError, OSError):
                self.fail("invalid")
        try:
            moment = parse_datetime(text)
        except ValueError:
            moment = None
        if moment is None:
            self.fail("invalid")
        assert moment is not None
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


# -- the document ---------------------------------------------------------------------------------------------
class ElementSerializer(serializers.Serializer):
    tag = serializers.CharField()
    attributes = serializers.DictField(child=serializers.CharField(), help_text="secret values are ********")
    children = serializers.ListField(child=serializers.DictField(), help_text="elements of the same shape")
    text = serializers.CharField(required=False, help_text="the element's text, when it has any")


class ConfigDocumentSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="the cluster's name in cluster.conf")
    version = serializers.IntegerField(help_text="config_version (also the ETag)")
    xml = serializers.CharField(help_text="cluster.conf's text as the cluster has it, secret values ********")
    document = ElementSerializer(help_text="the element tree (comments are only in xml)")


class ConfigPutSerializer(serializers.Serializer):
    xml = serializers.CharField(trim_whitespace=False, help_text="the whole new cluster.conf")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                   help_text="why (kept with the version in the history)")


# -- history --------------------------------------------------------------------------------------------------
class VersionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    hash = serializers.CharField(help_text="the first 12 hex digits of the document's SHA-256")
    time = serializers.DateTimeField(help_text="when the cluster accepted it")
    author = serializers.CharField(allow_blank=True, help_text="ricci's: who set it on the node")
    size = serializers.IntegerField(allow_null=True)
    note_author = serializers.CharField(allow_blank=True, help_text="luci's user who pushed it")
    reason = serializers.CharField(allow_blank=True, help_text="why, as that user said")
    current = serializers.BooleanField()


class HistorySerializer(serializers.Serializer):
    current_version = serializers.IntegerField(allow_null=True)
    answered_by = serializers.CharField(help_text="the node whose history this is")
    versions = VersionSerializer(many=True, help_text="newest first")


class DiffSerializer(serializers.Serializer):
    from_version = serializers.IntegerField()
    to_version = serializers.IntegerField()
    diff = serializers.JSONField(help_text="cluster_conf's diff, JSON shape version 1 (docs/diff.md); secrets "
                                           "are never in it")
    text = serializers.CharField(help_text="one line per change, as `ccs_tool diff` prints it")


class RollbackSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


# -- what-if --------------------------------------------------------------------------------------------------
class WhatIfRequestSerializer(serializers.Serializer):
    fail = serializers.ListField(child=serializers.CharField(max_length=255), required=False, default=list,
                                 max_length=256, help_text="members that fail (and are fenced)")
    locals()["return"] = serializers.ListField(child=serializers.CharField(max_length=255), required=False,
                                               default=list, max_length=256, help_text="absent nodes that return")


class WhatIfRowSerializer(serializers.Serializer):
    service = serializers.CharField()
    state = serializers.CharField()
    owner = serializers.CharField(allow_null=True)
    new_state = serializers.CharField()
    new_owner = serializers.CharField(allow_null=True)
    moves = serializers.BooleanField()
    reason = serializers.CharField(allow_blank=True)
    code = serializers.IntegerField(allow_null=True)


class WhatIfStepSerializer(serializers.Serializer):
    event = serializers.CharField()
    actions = serializers.ListField(child=serializers.CharField())
    result = serializers.CharField(allow_blank=True)
    message = serializers.CharField(allow_blank=True)
    pending = serializers.ListField(child=serializers.CharField())


class WhatIfSerializer(serializers.Serializer):
    config_version = serializers.IntegerField()
    status_at = serializers.FloatField(allow_null=True, help_text="when the status used was read (epoch seconds)")
    nodes = serializers.ListField(child=serializers.DictField(), help_text="name, online (before the scenario)")
    placement = WhatIfRowSerializer(many=True)
    steps = WhatIfStepSerializer(many=True)
    quorate_after = serializers.BooleanField()
    online_after = serializers.ListField(child=serializers.CharField())


# -- events ---------------------------------------------------------------------------------------------------
class EventQuerySerializer(serializers.Serializer):
    since = MomentField(required=False)
    until = MomentField(required=False)
    service = serializers.CharField(required=False, max_length=255)
    node = serializers.CharField(required=False, max_length=255, help_text="the owner")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=PAGE_MAX, default=PAGE_DEFAULT)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1, default=0)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["until"] < attrs["since"]:
            raise serializers.ValidationError({"until": ["until is before since"]})
        return attrs


class EventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    service = serializers.CharField()
    state = serializers.CharField()
    owner = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField()
    reported_by = serializers.CharField(allow_blank=True)


class EventPageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="events matching the filters")
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    next = serializers.CharField(allow_null=True, help_text="the next page's URL")
    events = EventSerializer(many=True, help_text="oldest first")


class FenceQuerySerializer(serializers.Serializer):
    since = MomentField(required=False)
    until = MomentField(required=False)
    node = serializers.CharField(required=False, max_length=255, help_text="the fenced node")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=PAGE_MAX, default=200,
                                     help_text="entries asked of each node")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "since" in attrs and "until" in attrs and attrs["until"] < attrs["since"]:
            raise serializers.ValidationError({"until": ["until is before since"]})
        return attrs


class FenceEntrySerializer(serializers.Serializer):
    time = serializers.DateTimeField(allow_null=True)
    victim = serializers.CharField()
    action = serializers.CharField()
    status = serializers.CharField()
    actor = serializers.CharField(allow_blank=True)
    how = serializers.CharField(allow_blank=True, help_text="method, device, agent")
    message = serializers.CharField(allow_blank=True)
    recorded_on = serializers.ListField(child=serializers.CharField())


class FenceHistorySerializer(serializers.Serializer):
    entries = FenceEntrySerializer(many=True, help_text="newest first")
    silent = serializers.ListField(child=serializers.CharField(), help_text="nodes that did not answer")
