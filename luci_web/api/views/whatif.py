"""What-if: the engine's own planner on "these members fail, those nodes return", over the configuration and the
status luci last read (read-only: nothing is sent to the cluster)."""
from __future__ import annotations

from dataclasses import asdict

from django.urls import path
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from cluster_conf.model import view
from luci_web.api.base import ClusterApiView, with_version
from luci_web.api.problems import Problem, problem_responses
from luci_web.api.serializers_config import WhatIfRequestSerializer, WhatIfSerializer
from luci_web.clusters import whatif
from luci_web.clusters.status import read_status


class WhatIf(ClusterApiView):
    @extend_schema(
        operation_id="whatif_run", request=WhatIfRequestSerializer,
        responses={200: WhatIfSerializer, **problem_responses(422, 503)},
        summary="Where every service would go if these members failed and those nodes returned",
        description="Failed members are taken as fenced (only then does rgmanager move their services); quorum is "
                    "re-computed after each change. Runs on the status luci's watcher read last (read from the "
                    "nodes now when there is none). 422 WHATIF_REFUSED: a node the configuration does not have, a "
                    "node asked to fail that is not a member, or to return that is one.",
        examples=[OpenApiExample("a member fails", value={"fail": ["node1"], "return": []}, request_only=True)])
    def post(self, request: Request, cluster: str) -> Response:
        body = WhatIfRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        current = self.current()
        status = self.cluster.status or {}
        if not status.get("members"):
            status = read_status(list(self.cluster.nodes.all()), self.cluster.name)
        try:
            outcome = whatif.simulate(current.conf, status, body.validated_data["fail"],
                                      body.validated_data["return"])
        except whatif.BadInput as exc:
            raise Problem(422, "WHATIF_REFUSED", str(exc)) from None
        result = asdict(outcome)
        return with_version(Response({
            "config_version": current.version, "status_at": status.get("at"),
            "nodes": whatif.nodes_of(view(current.conf), status), "placement": result["rows"],
            "steps": result["steps"], "quorate_after": result["quorate_after"],
            "online_after": result["online_after"]}), current.version)


urlpatterns = [
    path("clusters/<str:cluster>/whatif/", WhatIf.as_view(), name="whatif"),
]
