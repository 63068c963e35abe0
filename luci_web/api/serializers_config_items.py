"""The JSON shapes of failover domains, fence devices, global resources and cluster-wide settings: answers
(documented here, built as plain dicts by luci_web.clusters.edits.*) and request bodies (validated here).

Attribute values are strings as in cluster.conf (a number is taken and written as its digits); JSON null removes
an attribute. Secrets (cluster_conf.schema.is_secret) are write-only: answers name the ones set (`secrets_set`),
never their values; validation messages never echo a value."""
from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from cluster_conf.schema import ELEMENTS
from luci_web.clusters.edits.resources import GLOBAL_TYPES
from luci_web.clusters.fence_metadata import AGENT_NAME
from luci_web.clusters.values import xml_unsafe

ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def xml_safe(value: Any) -> None:
    if isinstance(value, str) and (problem := xml_unsafe(value)):
        raise serializers.ValidationError(f"the value {problem}")


def item_name(value: str) -> None:
    """A domain's or a device's name: also a URL path segment."""
    xml_safe(value)
    if "/" in value:
        raise serializers.ValidationError("a name cannot contain /")


class ValueField(serializers.CharField):
    """An attribute's value: a string (or a number, taken as its digits); null removes the attribute."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 4096)
        super().__init__(validators=[xml_safe], **kwargs)


class AttrMapField(serializers.DictField):
    """name -> value (string, or null to remove). Names are XML attribute names."""

    def __init__(self, *, reserved: tuple[str, ...] = (), **kwargs: Any) -> None:
        self.reserved = reserved
        super().__init__(child=ValueField(), **kwargs)

    def to_internal_value(self, data: Any) -> dict[str, str | None]:
        values = super().to_internal_value(data)
        for name in values:
            if not ATTR_NAME.fullmatch(name):
                raise serializers.ValidationError(f"{name[:64]!r} is not an attribute name")
            if name in self.reserved:
                raise serializers.ValidationError(f"{name} has its own field")
        return values


class StrictSerializer(serializers.Serializer):
    """A body with a key this serializer does not know is refused (400), not silently ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [k for k in data if k not in self.fields]
            if unknown:
                raise serializers.ValidationError({str(k)[:64]: ["unknown field"] for k in unknown})
        return super().to_internal_value(data)


# -- failover domains ------------------------------------------------------------------------------------------
class DomainMemberSerializer(StrictSerializer):
    node = serializers.CharField(max_length=255, validators=[xml_safe])
    priority = serializers.IntegerField(min_value=1, max_value=100, allow_null=True, required=False,
                                        help_text="1 (most preferred) to 100; used when the domain is ordered")


class DomainSerializer(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.CharField()
    ordered = serializers.BooleanField(help_text="prioritized: services prefer members with lower priority values")
    restricted = serializers.BooleanField(help_text="services run only on members")
    nofailback = serializers.BooleanField(help_text="a service does not move back when a preferred member returns")
    members = DomainMemberSerializer(many=True)


class DomainWriteSerializer(StrictSerializer):
    """POST: name required; PUT: the whole domain (absent flags are false, absent members none); PATCH: what is
    given (members, when given, is the whole new list)."""

    name = serializers.CharField(max_length=255, validators=[item_name])
    ordered = serializers.BooleanField(default=False)
    restricted = serializers.BooleanField(default=False)
    nofailback = serializers.BooleanField(default=False)
    members = DomainMemberSerializer(many=True, default=list)

    def validate_members(self, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        nodes = [m["node"] for m in members]
        if len(nodes) != len(set(nodes)):
            raise serializers.ValidationError("a node is a member at most once")
        return members


class DomainPutSerializer(DomainWriteSerializer):
    name = serializers.CharField(max_length=255, required=False, help_text="if given, the name in the URL")


class DomainPatchSerializer(DomainPutSerializer):
    ordered = serializers.BooleanField(required=False)
    restricted = serializers.BooleanField(required=False)
    nofailback = serializers.BooleanField(required=False)
    members = DomainMemberSerializer(many=True, required=False)


# -- fence devices ---------------------------------------------------------------------------------------------
class FenceDeviceSerializer(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.CharField()
    agent = serializers.CharField(allow_null=True)
    params = serializers.DictField(child=serializers.CharField(allow_blank=True),
                                   help_text="every parameter but the secrets")
    secrets_set = serializers.ListField(child=serializers.CharField(),
                                        help_text="the secret parameters (passwd, ...) that hold a value; "
                                                  "write-only, never shown")


class FenceDeviceWriteSerializer(StrictSerializer):
    """POST: name, agent and params; PUT: the parameters become `params` (secrets not named are kept); PATCH:
    the parameters named are set (null removes one)."""

    name = serializers.CharField(max_length=255, validators=[item_name])
    agent = serializers.RegexField(AGENT_NAME, max_length=64, help_text="fence_<name>, e.g. fence_ipmilan")
    params = AttrMapField(reserved=("name", "agent"), default=dict,
                          help_text="parameter -> value; a secret given here is stored, never shown again")


class FenceDevicePutSerializer(FenceDeviceWriteSerializer):
    name = serializers.CharField(max_length=255, required=False, help_text="if given, the name in the URL")
    agent = serializers.RegexField(AGENT_NAME, max_length=64, required=False, help_text="absent: unchanged")


class FenceDevicePatchSerializer(FenceDevicePutSerializer):
    params = AttrMapField(reserved=("name", "agent"), required=False)


# -- global resources ------------------------------------------------------------------------------------------
class ResourceSerializer(serializers.Serializer):
    type = serializers.CharField(help_text="the resource type (ip, fs, script, ...)")
    key = serializers.CharField(allow_blank=True, help_text="the value of the type's key attribute")
    key_attr = serializers.CharField(help_text="the type's key attribute (name; address for ip)")
    known = serializers.BooleanField(help_text="the type is one cluster_conf describes")
    url = serializers.CharField()
    attrs = serializers.DictField(child=serializers.CharField(allow_blank=True),
                                  help_text="every attribute but the secrets (the key attribute included)")
    secrets_set = serializers.ListField(child=serializers.CharField())


class ResourceCreateSerializer(StrictSerializer):
    type = serializers.ChoiceField(GLOBAL_TYPES)
    attrs = AttrMapField(help_text="attribute -> value; must hold the type's key attribute")


class ResourceWriteSerializer(StrictSerializer):
    """PUT: the attributes become `attrs` (the key stays; secrets not named are kept); PATCH: the attributes
    named are set (null removes one)."""

    attrs = AttrMapField()


# -- cluster-wide settings --------------------------------------------------------------------------------------
def _attr_fields(element: str, *, skip: tuple[str, ...] = ()) -> dict[str, serializers.Field]:
    """A field for every attribute cluster_conf.schema knows for `element` (values are checked by validation)."""
    fields: dict[str, serializers.Field] = {}
    for attr in ELEMENTS[element].attrs:
        if attr.name in skip:
            continue
        notes = [attr.doc, f"{attr.type} value" if attr.type != "string" else "",
                 f"one of: {', '.join(attr.choices)}" if attr.choices else "",
                 f"default {attr.default}" if attr.default is not None else ""]
        fields[attr.name] = ValueField(help_text="; ".join(n for n in notes if n))
    return fields


def _section(name: str, element: str, extra: dict[str, serializers.Field] | None = None,
             skip: tuple[str, ...] = ()) -> type[StrictSerializer]:
    fields = {**_attr_fields(element, skip=skip), **(extra or {})}
    return type(name, (StrictSerializer,), {**fields, "__doc__": f"<{element}>'s attributes (null removes one)"})


HeuristicSerializer = _section("HeuristicSerializer", "heuristic", {"program": serializers.CharField(
    max_length=4096, validators=[xml_safe], help_text="the command whose success scores")})
LoggingDaemonSerializer = _section("LoggingDaemonSerializer", "logging_daemon", skip=("name",))
CmanSettingsSerializer = _section("CmanSettingsSerializer", "cman", {"multicast_addr": ValueField(
    help_text="<cman><multicast addr>: null = cman's default, derived from the cluster id")})
TotemSettingsSerializer = _section("TotemSettingsSerializer", "totem")
QuorumdSettingsSerializer = _section("QuorumdSettingsSerializer", "quorumd", {"heuristics": HeuristicSerializer(
    many=True, required=False, help_text="when given, the whole list (kept by program)")})
FenceDaemonSettingsSerializer = _section("FenceDaemonSettingsSerializer", "fence_daemon")
LoggingSettingsSerializer = _section("LoggingSettingsSerializer", "logging", {"daemons": serializers.DictField(
    child=LoggingDaemonSerializer(allow_null=True), required=False,
    help_text="daemon name -> its own settings (merged; null removes them: the global ones apply)")})


class SettingsSerializer(StrictSerializer):
    """Every section; PATCH changes only what it names (a section given as null is removed: defaults apply)."""

    cman = CmanSettingsSerializer(required=False, allow_null=True)
    totem = TotemSettingsSerializer(required=False, allow_null=True)
    quorumd = QuorumdSettingsSerializer(required=False, allow_null=True,
                                        help_text="PATCH null: remove the quorum disk (the section and heuristics)")
    fence_daemon = FenceDaemonSettingsSerializer(required=False, allow_null=True)
    logging = LoggingSettingsSerializer(required=False, allow_null=True)

    def validate_quorumd(self, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if value.get("device") and value.get("label"):
            raise serializers.ValidationError("give a device or a label, not both")
        programs = [h["program"] for h in value.get("heuristics") or []]
        if len(programs) != len(set(programs)):
            raise serializers.ValidationError("two heuristics run the same program")
        return value
