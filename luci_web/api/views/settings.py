"""Cluster-wide settings: GET every section (cman with its multicast address, totem, quorumd with its
heuristics, fence_daemon, logging with its per-daemon settings); PATCH changes only what the body names (a value
sets an attribute, null removes it, a section given as null is removed; heuristics, when given, is the whole
list; a daemon's settings are merged, null removes them). The attributes are cluster_conf.schema's; their
values are checked by validation (422)."""
from __future__ import annotations

from typing import Any

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from luci_web.api.base import ClusterApiView, accepted, with_version
from luci_web.api.problems import problem_responses
from luci_web.api.serializers import TaskSerializer
from luci_web.api.serializers_config_items import SettingsSerializer
from luci_web.clusters.edits.settings import patch_settings, settings_dict


def _heuristic(h: dict[str, Any]) -> dict[str, str]:
    return {a: "" if h.get(a) is None else str(h[a]) for a in ("program", "score", "interval", "tko")}


def settings_change(data: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """(the edit function, the audit detail: the attribute names each section changes) for a validated body."""
    sections: dict[str, dict[str, str | None]] = {}
    multicast: tuple[str | None] | None = None
    heuristics: list[dict[str, str]] | None = None
    daemons: dict[str, Any] | None = None
    removed = [section for section, values in data.items() if values is None]
    for section, values in data.items():
        if values is None:
            continue
        attrs = dict(values)
        if section == "cman" and "multicast_addr" in attrs:
            multicast = (attrs.pop("multicast_addr"),)
        if section == "quorumd" and "heuristics" in attrs:
            heuristics = [_heuristic(h) for h in attrs.pop("heuristics")]
        if section == "logging" and "daemons" in attrs:
            daemons = attrs.pop("daemons")
        if attrs:
            sections[section] = attrs
    detail = {section: sorted(values) if values is not None else None for section, values in data.items()}
    return patch_settings(sections, multicast=multicast, heuristics=heuristics, daemons=daemons,
                          removed=removed), detail


class Settings(ClusterApiView):
    @extend_schema(operation_id="settings_retrieve", responses={200: SettingsSerializer, **problem_responses(503)},
                   summary="The cluster-wide settings (ETag: the configuration version)")
    def get(self, request: Request, cluster: str) -> Response:
        current = self.current()
        return with_version(Response(settings_dict(current.conf)), current.version)

    @extend_schema(operation_id="settings_partial_update", request=SettingsSerializer,
                   responses={202: TaskSerializer, **problem_responses(412, 422, 503)},
                   summary="Change some cluster-wide settings (null removes an attribute)",
                   description="Quorum disk and cman changes take effect when the cluster is restarted.")
    def patch(self, request: Request, cluster: str) -> Response:
        body = SettingsSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        fn, detail = settings_change(body.validated_data)
        return accepted(self.change(fn, action="settings.edit", target="settings", detail=detail))


urlpatterns = [
    path("clusters/<str:cluster>/settings/", Settings.as_view(), name="settings"),
]
