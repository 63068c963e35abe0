"""Events: the services' state changes as luci's watcher saw them (ServiceEvent rows; paged, filterable by time,
service and owner), and the nodes' fence history (ricci's `fence.history`, merged across the nodes that recorded
each entry; filterable by the fenced node and time)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from luci_web.api.base import ClusterApiView
from luci_web.api.serializers_config import (
    PAGE_DEFAULT,
    PAGE_MAX,
    EventPageSerializer,
    EventQuerySerializer,
    FenceHistorySerializer,
    FenceQuerySerializer,
)
from luci_web.clusters.fence_history import fence_history
from luci_web.clusters.models import ServiceEvent

FENCE_DEFAULT_AGE = timedelta(hours=24)
TIME_PARAMETERS = [
    OpenApiParameter("since", str, description="from this moment on: ISO 8601 (no zone: UTC) or epoch seconds"),
    OpenApiParameter("until", str, description="up to this moment (included): ISO 8601 or epoch seconds"),
]


def _query(serializer_class: Any, request: Request) -> dict[str, Any]:
    """The query parameters validated (400 BAD_REQUEST with `errors` otherwise)."""
    query = serializer_class(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    return query.validated_data


class Events(ClusterApiView):
    @extend_schema(
        operation_id="events_list", responses={200: EventPageSerializer},
        parameters=[*TIME_PARAMETERS,
                    OpenApiParameter("service", str, description="one service, e.g. service:web"),
                    OpenApiParameter("node", str, description="events whose owner is this node"),
                    OpenApiParameter("limit", int, description=f"page size, 1..{PAGE_MAX} (default {PAGE_DEFAULT})"),
                    OpenApiParameter("offset", int, description="events to skip (default 0)")],
        summary="Service state changes, oldest first, paged")
    def get(self, request: Request, cluster: str) -> Response:
        q = _query(EventQuerySerializer, request)
        events = ServiceEvent.objects.filter(cluster=self.cluster)
        if "since" in q:
            events = events.filter(at__gte=q["since"])
        if "until" in q:
            events = events.filter(at__lte=q["until"])
        if "service" in q:
            events = events.filter(service=q["service"])
        if "node" in q:
            events = events.filter(owner=q["node"])
        limit, offset = q["limit"], q["offset"]
        count = events.count()
        rows = events.order_by("at", "id").values("id", "service", "state", "owner", "at", "reported_by")[
            offset:offset + limit]
        page = [{**row, "at": row["at"].isoformat()} for row in rows]
        following = None
        if offset + limit < count:
            params = request.query_params.copy()
            params["offset"] = str(offset + limit)
            params["limit"] = str(limit)
            following = f"{request.path}?{params.urlencode()}"
        return Response({"count": count, "limit": limit, "offset": offset, "next": following, "events": page})


class FenceHistory(ClusterApiView):
    @extend_schema(
        operation_id="fence_history_list", responses={200: FenceHistorySerializer},
        parameters=[*TIME_PARAMETERS,
                    OpenApiParameter("node", str, description="entries about this (fenced) node"),
                    OpenApiParameter("limit", int, description=f"entries asked of each node, 1..{PAGE_MAX} "
                                                               "(default 200)")],
        summary="The nodes' fence history, newest first (default: the last 24 hours)",
        description="Every node's `cman_tool fence --history`, merged: an entry several nodes recorded shows once "
                    "with the nodes that recorded it (recorded_on); `silent` lists the nodes that did not answer.")
    def get(self, request: Request, cluster: str) -> Response:
        q = _query(FenceQuerySerializer, request)
        since = q["since"] if "since" in q else timezone.now() - FENCE_DEFAULT_AGE
        until = q["until"].timestamp() if "until" in q else None
        lines, silent = fence_history(self.cluster, since.timestamp(), until, q.get("node"), q["limit"])
        entries = [{"time": e["when"].isoformat() if e["when"] else None, "victim": e["victim"],
                    "action": e["action"], "status": e["status"], "actor": e["actor"], "how": e["how"],
                    "message": e["msg"], "recorded_on": e["recorded_on"]} for e in lines]
        return Response({"entries": entries, "silent": silent})


urlpatterns = [
    path("clusters/<str:cluster>/events/", Events.as_view(), name="events"),
    path("clusters/<str:cluster>/fence-history/", FenceHistory.as_view(), name="fence_history"),
]
