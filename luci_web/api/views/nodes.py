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
from luci_web.api.views.clusters import EndpointSerializer, confirm_fingerprints, endpoint_key, validated
from luci_web.audit.log import record
from luci_web.clusters import gateway, operations
from luci_web.clusters.configs import ConfigConflict, ConfigRejected, ConfigUnavailable, prepare
from luci_web.clusters.edits.nodes import (
    NODE_NAME,
    action_problem,
    add_node_edit,
    node_rows,
    remove_node_edit,
)
from luci_web.clusters.models import Cluster
from luci_web.clusters.node_tasks import NODE_ACTIONS, node_action, node_add, node_delete
from luci_web.clusters.registry import NodeCandidate
from luci_web.clusters.tasks import enqueue
from ricci_agent.protocol import RicciError


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


def refused(request: Request, cluster: Cluster, action: str, target: str, problem: Problem) -> Problem:
    """A write refused after its request was understood: audited (as the console audits it), then answered."""
    record(request.user, action, cluster=cluster, target=target, result="refused", message=str(problem.detail))
    return problem


def prepared(request: Request, cluster: Cluster, action: str, target: str, edit: Any) -> str:
    """The new configuration's XML (If-Match's version, when given, must be the current one); refusals audited and
    raised (the exception handler answers 412, 422, 404, 409 or 503)."""
    try:
        return prepare(cluster, if_match(request), edit)[1]
    except (ConfigConflict, ConfigRejected, ConfigUnavailable) as exc:
        record(request.user, action, cluster=cluster, target=target, result="refused", message=str(exc))
        raise


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
        name, address, port = body["name"], body["address"], body["port"]
        c = self.cluster
        if c.nodes.filter(name=name).exists():
            raise refused(request, c, "node.add", name,
                          Problem(409, "NODE_EXISTS", f"{c.name} already has a node {name}"))
        try:
            host_key, fingerprint = gateway.probe_host_key(address, port)
        except RicciError as exc:
            raise refused(request, c, "node.add", name, Problem(
                503, "NODE_UNREACHABLE", f"the node's host key could not be read: {exc.message}; nothing was done",
                unreachable={endpoint_key(address, port): exc.message})) from None
        offered = NodeCandidate(name, address, port, host_key, fingerprint)
        if body["fingerprint"]:
            try:
                confirm_fingerprints([offered], {endpoint_key(address, port): body["fingerprint"]})
            except Problem as problem:
                raise refused(request, c, "node.add", name, problem) from None
        else:
            confirm_fingerprints([offered], {})  # 409 FINGERPRINT_REQUIRED: as the console's probe step, not audited
        xml = prepared(request, c, "node.add", name, add_node_edit(name, port))
        op = operations.start(request.user, "node_add", c, [*(n.name for n in c.nodes.all()), name])
        enqueue(op, request.user, "node.add", node_add, str(op.id), name, xml, {
            "reason": reason_of(request) or f"add node {name}",
            "node": {"address": address, "port": port, "host_key": host_key, "fingerprint": fingerprint}},
            target=name)
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
        c = self.cluster
        if not c.nodes.filter(name=node).exists():
            raise Problem(404, "NODE_NOT_FOUND", f"luci does not know the node {node[:64]!r} in {c.name}")
        xml = prepared(request, c, "node.delete", node, remove_node_edit(node))
        op = operations.start(request.user, "node_delete", c, [node])
        enqueue(op, request.user, "node.delete", node_delete, str(op.id), node, xml,
                {"reason": reason_of(request) or f"delete node {node}"}, target=node)
        return accepted(op)


class NodeAction(ClusterApiView):
    @extend_schema(
        operation_id="nodes_action", request=None, responses={202: TaskSerializer, **problem_responses(409, 503)},
        parameters=[OpenApiParameter("action", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(NODE_ACTIONS),
                                     description="join or leave the cluster, reboot, or be fenced by another node")],
        summary="Join, leave, reboot or fence one node (node_cmd)")
    def post(self, request: Request, cluster: str, node: str, action: str) -> Response:
        c = self.cluster
        known = [n.name for n in c.nodes.all()]
        problem = action_problem(action, [node], known, c.name)
        if problem:
            if action not in NODE_ACTIONS:
                answer = Problem(404, "NOT_FOUND", f"no node action {action[:32]!r}: join, leave, reboot or fence")
            elif node not in known:
                answer = Problem(404, "NODE_NOT_FOUND", problem)
            else:
                answer = Problem(409, "NODE_ACTION_REFUSED", problem)
            record(request.user, f"node.{action[:32] or '?'}", cluster=c, target=node, result="refused",
                   message=problem)
            raise answer
        op = operations.start(request.user, f"node_{action}", c, [node])
        enqueue(op, request.user, f"node.{action}", node_action, str(op.id), action, node, target=node)
        return accepted(op)


urlpatterns = [
    path("clusters/<str:cluster>/nodes/", NodeList.as_view(), name="node_list"),
    path("clusters/<str:cluster>/nodes/<str:node>/", NodeDetail.as_view(), name="node_detail"),
    path("clusters/<str:cluster>/nodes/<str:node>/<str:action>/", NodeAction.as_view(), name="node_action"),
]
