"""Clusters: the list (those you may view), one cluster, its status; create, import and remove."""
from __future__ import annotations

from typing import Any

from django.urls import path, reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from luci_web.access.rights import cluster_rights, visible_clusters
from luci_web.api.base import ApiView, ClusterApiView
from luci_web.api.problems import Problem, problem_responses
from luci_web.api.serializers import ClusterSerializer, StatusSerializer
from luci_web.clusters.models import Cluster
from luci_web.clusters.status import read_status, summary


def cluster_dict(cluster: Cluster, rights: frozenset[str]) -> dict[str, Any]:
    return {"name": cluster.name, "url": reverse("api:cluster_detail", args=[cluster.name]),
            "nodes": [n.name for n in cluster.nodes.all()], "added_at": cluster.added_at,
            "status_at": cluster.status_at, "summary": summary(cluster.status or {}), "rights": sorted(rights)}


class ClusterList(ApiView):
    @extend_schema(operation_id="clusters_list", responses={200: ClusterSerializer(many=True)},
                   summary="The clusters you may view")
    def get(self, request: Request) -> Response:
        clusters = visible_clusters(request.user).prefetch_related("nodes")
        return Response([cluster_dict(c, cluster_rights(request.user, c)) for c in clusters])


class ClusterDetail(ClusterApiView):
    @extend_schema(operation_id="clusters_retrieve", responses={200: ClusterSerializer}, summary="One cluster")
    def get(self, request: Request, cluster: str) -> Response:
        return Response(cluster_dict(self.cluster, self.rights))


class ClusterStatus(ClusterApiView):
    @extend_schema(
        operation_id="clusters_status", responses={200: StatusSerializer, **problem_responses(400)},
        summary="Quorum, members and services (clustat --json's facts)",
        description="The reading luci's watcher made last (every 0.25 s while it runs; its time is `at`). "
                    "`?fresh=1` asks the nodes now instead (at most about 1.5 s).",
        parameters=[OpenApiParameter("fresh", bool, description="read the status from the nodes now")])
    def get(self, request: Request, cluster: str) -> Response:
        fresh = request.query_params.get("fresh", "")
        if fresh not in ("", "0", "1", "true", "false"):
            raise Problem(400, "BAD_REQUEST", "fresh must be 1 or 0")
        status = self.cluster.status or {}
        if fresh in ("1", "true") or not status:
            status = read_status(list(self.cluster.nodes.all()), self.cluster.name)
        return Response(status_body(status, self.cluster.name))


def status_body(status: dict[str, Any], name: str) -> dict[str, Any]:
    """The stored reading with every documented key present (an empty or older reading fills in nulls)."""
    return {
        "cluster": status.get("cluster") or {"name": name, "id": None, "generation": None},
        "quorum": status.get("quorum") or {"quorate": None, "groupmember": False},
        "rgmanager": status.get("rgmanager") or "unknown",
        "members": status.get("members") or [],
        "services": status.get("services") or [],
        "reported_by": status.get("reported_by"),
        "at": status.get("at"),
        "config_version": status.get("config_version"),
        "drift": bool(status.get("drift")),
        "edited_locally": status.get("edited_locally") or [],
        "unreachable": status.get("unreachable") or [],
        "message": status.get("message") or "",
    }


urlpatterns = [
    path("clusters/", ClusterList.as_view(), name="cluster_list"),
    path("clusters/<str:cluster>/", ClusterDetail.as_view(), name="cluster_detail"),
    path("clusters/<str:cluster>/status/", ClusterStatus.as_view(), name="cluster_status"),
]
