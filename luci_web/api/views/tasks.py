"""Tasks: the long operations (configuration pushes, node actions, cluster creation, ...) that answered 202.
Poll /api/v1/tasks/<id>/ until `state` is done or failed. A task is shown to its author, to administrators and
to the viewers of its cluster (the console's operation pages follow the same rule)."""
from __future__ import annotations

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from luci_web.api.base import ApiView, task_url
from luci_web.api.problems import Problem, not_found
from luci_web.api.serializers import TaskSerializer
from luci_web.clusters import operations
from luci_web.clusters.models import Operation

STATES = ("pending", "running", "done", "failed")


def task_dict(op: Operation) -> dict:
    return operations.as_dict(op) | {"url": task_url(op)}


class TaskList(ApiView):
    @extend_schema(operation_id="tasks_list", responses={200: TaskSerializer(many=True)},
                   summary="Your tasks and those of the clusters you may view, newest first (at most 100)",
                   parameters=[OpenApiParameter("state", str, enum=list(STATES)),
                               OpenApiParameter("cluster", str, description="a cluster's name")])
    def get(self, request: Request) -> Response:
        tasks = operations.visible(request.user)
        state = request.query_params.get("state")
        if state is not None:
            if state not in STATES:
                raise Problem(400, "BAD_REQUEST", f"state must be one of: {', '.join(STATES)}")
            tasks = tasks.filter(state=state)
        if (cluster := request.query_params.get("cluster")) is not None:
            tasks = tasks.filter(cluster_name=cluster)
        return Response([task_dict(op) for op in tasks.order_by("-created_at")[:100]])


class TaskDetail(ApiView):
    @extend_schema(operation_id="tasks_retrieve", responses={200: TaskSerializer}, summary="One task",
                   parameters=[OpenApiParameter("task", OpenApiTypes.UUID, OpenApiParameter.PATH)])
    def get(self, request: Request, task: str) -> Response:
        op = Operation.objects.select_related("cluster").filter(pk=task).first()
        if op is None or not operations.may_see(request.user, op):
            raise not_found("no such task (or not one you may see)")
        return Response(task_dict(op))


urlpatterns = [
    path("tasks/", TaskList.as_view(), name="task_list"),
    path("tasks/<uuid:task>/", TaskDetail.as_view(), name="task_detail"),
]
