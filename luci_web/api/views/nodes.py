"""Nodes: each node as luci knows it (its agent's address, port and host-key fingerprint) with its member row from
the watcher's last status; join, leave, reboot and fence one node (node_cmd); add and delete nodes (membership).
Every one of these writes runs as a task (202): the console's (luci_web.clusters.node_tasks), audited as there."""
from __future__ import annotations

from typing import Any

from django.urls import path, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from luci_web.api.base import ClusterApiView, accepted, if_match, reason_of
from luci_web.api.problems import Problem, problem_responses
from luci_web.api.serializers import TaskSerializer
from luci_web.api.views.clusters import EndpointSerializer, registry_problem, validated
from luci_web.clusters.edits.nodes import NODE_NAME, node_rows
from luci_web.clusters.node_tasks import (
    NODE_ACTIONS,
    NodeRefused,
    start_node_action,
    start_node_add,
    start_node_delete,
)
from luci_web.clusters.registry import RegistryError

# NodeRefused's code -> (status, the problem's code)
REFUSALS = {"UNKNOWN_ACTION": (404, "NOT_FOUND"), "NODE_NOT_FOUND": (404, "NODE_NOT_FOUND"),
            "NODE_EXISTS": (409, "NODE_EXISTS"), "NODE_ACTION_REFUSED": (409, "NODE_ACTION_REFUSED"),
            "NODE_UNREACHABLE": (503, "NODE_UNREACHABLE")}


class NodeSerializer(serializers.Serializer):
    """A node: where luci reaches its agent, and its member row from the last status reading."""

    name = serializers.CharField()
    url = serializers.CharField()
    address = serializers.CharField(allow_null=True, help_text="null: a member luci has no agent address for")
    port = serializers.IntegerField(allow_null=True)
    fingerprint = serializers.CharField(allow_null=True, help_text="the agent's pinned host key (SHA256:…)")
    nodeid = serializers.IntegerField(allow_null=True)
    # a CharField: a second component with this enum makes drf-spectacular's enum names collide (see the report)
    state = serializers.CharField(help_text="online, offline or unknown (the node's agent did not answer, or no "
                                            "reading names it)")
    online = serializers.BooleanField(help_text="a cluster member")
    rgmanager = serializers.BooleanField()
    master = serializers.BooleanField(help_text="the RG-Master")
    config_version = serializers.IntegerField(allow_null=True)
    version_differs = serializers.BooleanField(help_text="it runs another configuration version than the cluster")
    message = serializers.CharField(allow_blank=True)


class NewNodeSerializer(EndpointSerializer):
    name = serializers.CharField(max_length=255, help_text="the node's name in cluster.conf")
    address = serializers.CharField(required=False, max_length=253, help_text="its agent's address (default: name)")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("address") and isinstance(data.get("name"), str):
            data = {**data, "address": data["name"]}
        return super().to_internal_value(data)

    def validate_name(self, value: str) -> str:
        if not NODE_NAME.fullmatch(value):
            raise serializers.ValidationError("letters, digits, dot, dash or underscore, starting with a letter or "
                                              "digit")
        return value


def node_dict(row: dict[str, Any], cluster: str) -> dict[str, Any]:
    agent = row["agent"]
    return {"name": row["name"], "url": reverse("api:node_detail", args=[cluster, row["name"]]),
            "address": agent.address if agent else None, "port": agent.port if agent else None,
            "fingerprint": agent.fingerprint if agent else None, "nodeid": row["nodeid"], "state": row["state"],
            "online": row["member"], "rgmanager": row["rgmanager"], "master": row["master"],
            "config_version": row["config_version"], "version_differs": row["version_differs"],
            "message": row["message"]}


def node_problem(exc: NodeRefused) -> Problem:
    """A refusal of node_tasks' start_* (audited there, when it audits) as a problem."""
    status, code = REFUSALS.get(exc.code, (409, exc.code))
    return Problem(status, code, str(exc), **exc.extra)


class NodeList(ClusterApiView):
    @extend_schema(operation_id="nodes_list", responses={200: NodeSerializer(many=True)},
                   summary="The nodes: luci's agent address and host key, and the last status's member row")
    def get(self, request: Request, cluster: str) -> Response:
        return Response([node_dict(row, self.cluster.name) for row in node_rows(self.cluster)])

    @extend_schema(
        operation_id="nodes_create", request=NewNodeSerializer,
        responses={202: TaskSerializer, **problem_responses(409, 412, 422, 503)},
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER,
                                     description="the configuration version this change is based on"),
                    OpenApiParameter("X-Luci-Reason", str, OpenApiParameter.HEADER, description="why (History)")],
        summary="Add a node (membership)",
        description="The node's agent is probed: it must offer the fingerprint given (else 409 "
                    "FINGERPRINT_REQUIRED / FINGERPRINT_MISMATCH with `fingerprints`, nothing done). The task "
                    "(kind node_add) makes the agents trust each other, pushes the configuration naming the node "
                    "and only then saves it in luci.")
    def post(self, request: Request, cluster: str) -> Response:
        body = validated(NewNodeSerializer, request.data)
        name = body["name"]
        try:
            op = start_node_add(self.cluster, request.user, name, body["address"], body["port"], body["fingerprint"],
                                base_version=if_match(request), reason=reason_of(request) or f"add node {name}")
        except NodeRefused as exc:
            raise node_problem(exc) from None
        except RegistryError as exc:  # FINGERPRINT_REQUIRED / FINGERPRINT_MISMATCH
            raise registry_problem(exc) from None
        return accepted(op)


class NodeDetail(ClusterApiView):
    def row(self, node: str) -> dict[str, Any]:
        for row in node_rows(self.cluster):
            if row["name"] == node:
                return row
        raise Problem(404, "NODE_NOT_FOUND", f"{self.cluster.name} has no node {node[:64]!r}")

    @extend_schema(operation_id="nodes_retrieve", responses={200: NodeSerializer}, summary="One node")
    def get(self, request: Request, cluster: str, node: str) -> Response:
        return Response(node_dict(self.row(node), self.cluster.name))

    @extend_schema(
        operation_id="nodes_destroy", request=None,
        responses={202: TaskSerializer, **problem_responses(409, 412, 422, 503)},
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER,
                                     description="the configuration version this change is based on"),
                    OpenApiParameter("X-Luci-Reason", str, OpenApiParameter.HEADER, description="why (History)")],
        summary="Delete a node from the cluster (membership)",
        description="The task (kind node_delete) stops the node's cluster daemons, pushes the configuration "
                    "without it and only then forgets it in luci.")
    def delete(self, request: Request, cluster: str, node: str) -> Response:
        try:
            op = start_node_delete(self.cluster, request.user, node, base_version=if_match(request),
                                   reason=reason_of(request) or f"delete node {node}")
        except NodeRefused as exc:
            raise node_problem(exc) from None
        return accepted(op)


class NodeAction(ClusterApiView):
    @extend_schema(
        operation_id="nodes_action", request=None, responses={202: TaskSerializer, **problem_responses(409, 503)},
        parameters=[OpenApiParameter("action", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(NODE_ACTIONS),
                                     description="join or leave the cluster, reboot, or be fenced by another node")],
        summary="Join, leave, reboot or fence one node (node_cmd)")
    def post(self, request: Request, cluster: str, node: str, action: str) -> Response:
        try:
            op = start_node_action(self.cluster, request.user, action, [node])
        except NodeRefused as exc:
            raise node_problem(exc) from None
        return accepted(op)


urlpatterns = [
    path("clusters/<str:cluster>/nodes/", NodeList.as_view(), name="node_list"),
    path("clusters/<str:cluster>/nodes/<str:node>/", NodeDetail.as_view(), name="node_detail"),
    path("clusters/<str:cluster>/nodes/<str:node>/<str:action>/", NodeAction.as_view(), name="node_action"),
]
