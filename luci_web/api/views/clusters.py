"""Clusters: the list (those you may view), one cluster, its status; create, import and remove."""
from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from django.urls import path, reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from luci_web.access.rights import cluster_rights, visible_clusters
from luci_web.api.base import ApiView, ClusterApiView, accepted
from luci_web.api.problems import Problem, problem_responses
from luci_web.api.serializers import ClusterSerializer, StatusSerializer, TaskSerializer
from luci_web.clusters import registry
from luci_web.clusters.models import Cluster
from luci_web.clusters.registry import (
    ClusterExists,
    FingerprintMismatch,
    FingerprintRequired,
    NodeCandidate,
    RegistryError,
    endpoint_key,
)
from luci_web.clusters.status import read_status, summary
from luci_web.clusters.tasks import QUEUE_DOWN
from ricci_agent.protocol import DEFAULT_PORT


def cluster_dict(cluster: Cluster, rights: frozenset[str]) -> dict[str, Any]:
    return {"name": cluster.name, "url": reverse("api:cluster_detail", args=[cluster.name]),
            "nodes": [n.name for n in cluster.nodes.all()], "added_at": cluster.added_at,
            "status_at": cluster.status_at, "summary": summary(cluster.status or {}), "rights": sorted(rights)}


# -- host keys: a script confirms each node's fingerprint, as an admin does in the console -------------------
CLUSTER_EXISTS = "a cluster with this name is already in luci"


def probed(nodes: list[NodeCandidate]) -> list[NodeCandidate]:
    """The nodes with the host keys their agents offer now (probed in parallel); 503 NODE_UNREACHABLE when one
    does not answer (nothing was done)."""
    fresh = registry.probe_all(nodes)
    failed = {endpoint_key(n.address, n.port): n.error for n in fresh if n.error}
    if failed:
        first = next(iter(failed))
        raise Problem(503, "NODE_UNREACHABLE", f"{first}: {failed[first]}; nothing was done", unreachable=failed)
    return fresh


def registry_problem(exc: RegistryError) -> Problem:
    """A refusal of luci_web.clusters.registry (audited there, when it audits) as a problem: a fingerprint not
    confirmed is 409 FINGERPRINT_REQUIRED / FINGERPRINT_MISMATCH with `fingerprints` (endpoint -> what every node
    offers, for the script to compare and send back)."""
    if isinstance(exc, FingerprintMismatch):
        return Problem(409, "FINGERPRINT_MISMATCH", str(exc), fingerprints=exc.offered)
    if isinstance(exc, FingerprintRequired):
        return Problem(409, "FINGERPRINT_REQUIRED", f"{exc}; compare `fingerprints` with the nodes' keys and "
                       "send them", fingerprints=exc.offered)
    if isinstance(exc, ClusterExists):
        return Problem(409, "CLUSTER_EXISTS", CLUSTER_EXISTS)
    if str(exc) == QUEUE_DOWN:
        return Problem(503, "QUEUE_UNAVAILABLE", QUEUE_DOWN)
    return Problem(422, "CLUSTER_REFUSED", str(exc))


class EndpointSerializer(serializers.Serializer):
    address = serializers.CharField(max_length=253, help_text="host name or IP address of the node's ricci agent")
    port = serializers.IntegerField(min_value=1, max_value=65535, default=DEFAULT_PORT)
    fingerprint = serializers.CharField(
        required=False, allow_blank=True, max_length=200,
        help_text="the SHA256 fingerprint of the host key you expect the agent to offer (SHA256:…); omitted: the "
                  "answer is 409 FINGERPRINT_REQUIRED with the offered ones in `fingerprints`")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            attrs["address"], attrs["port"] = registry.check_endpoint(attrs["address"], attrs["port"])
        except RegistryError as exc:
            raise serializers.ValidationError({"address": [str(exc)]}) from None
        attrs["fingerprint"] = (attrs.get("fingerprint") or "").strip()
        return attrs


class NewClusterNodeSerializer(EndpointSerializer):
    name = serializers.CharField(max_length=63, help_text="the node's name in cluster.conf")

    def validate_name(self, value: str) -> str:
        if not registry.NODE_NAME.fullmatch(value):
            raise serializers.ValidationError("letters, digits, '.', '_' and '-', starting with a letter or digit")
        return value


def unique_endpoints(nodes: list[dict[str, Any]]) -> None:
    keys = [endpoint_key(n["address"], n["port"]) for n in nodes]
    if len(set(keys)) != len(keys):
        raise serializers.ValidationError({"nodes": ["a node's address and port are given twice"]})


class NewClusterSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64, help_text="the new cluster's name")
    nodes = NewClusterNodeSerializer(many=True, min_length=1, max_length=registry.MAX_NODES,
                                     help_text="the nodes, whose agents hold no cluster configuration yet")
    lab_dir = serializers.CharField(required=False, allow_null=True, max_length=1000,
                                    help_text="administrators only: the nodes are a local lab's (its directory)")

    def validate_name(self, value: str) -> str:
        try:
            return registry.check_cluster_name(value)
        except RegistryError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        names = [n["name"] for n in attrs["nodes"]]
        if len(set(names)) != len(names):
            raise serializers.ValidationError({"nodes": ["a node's name is given twice"]})
        unique_endpoints(attrs["nodes"])
        return attrs


class ImportNodeSerializer(EndpointSerializer):
    name = serializers.CharField(required=False, max_length=255,
                                 help_text="the member's name (optional: members are matched by address and port, "
                                           "or by this name)")


class ImportClusterSerializer(serializers.Serializer):
    nodes = ImportNodeSerializer(
        many=True, min_length=1, max_length=registry.MAX_NODES,
        help_text="the first is asked which cluster it belongs to and who its members are; give every member's "
                  "fingerprint")
    only_given = serializers.BooleanField(
        default=False, help_text="add only the members given in `nodes` (default: every member that answers)")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unique_endpoints(attrs["nodes"])
        return attrs


class ImportedClusterSerializer(ClusterSerializer):
    left_out = serializers.DictField(child=serializers.CharField(),
                                     help_text="members not added: name -> why (no answer, or not given)")


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class ClusterList(ApiView):
    @extend_schema(operation_id="clusters_list", responses={200: ClusterSerializer(many=True)},
                   summary="The clusters you may view")
    def get(self, request: Request) -> Response:
        clusters = visible_clusters(request.user).prefetch_related("nodes")
        return Response([cluster_dict(c, cluster_rights(request.user, c)) for c in clusters])

    @extend_schema(
        operation_id="clusters_create", request=NewClusterSerializer,
        responses={202: TaskSerializer, **problem_responses(409, 422, 503)},
        summary="Create a new cluster on nodes whose agents hold no configuration yet",
        description="The name (the name `import` is reserved), a cluster of that name in luci (409 CLUSTER_EXISTS) "
                    "and `lab_dir` (422) are checked first, before any node is contacted. "
                    "Every node's agent is then probed; each must offer the fingerprint given for it (else 409 "
                    "FINGERPRINT_REQUIRED or FINGERPRINT_MISMATCH with `fingerprints`: address -> offered, and "
                    "nothing is done; a mismatch is audited). The task (kind create_cluster) makes the agents "
                    "trust each other, gives "
                    "them one cluster key, pushes the first cluster.conf, starts every node and then saves the "
                    "cluster in luci.")
    def post(self, request: Request) -> Response:
        body = validated(NewClusterSerializer, request.data)
        try:  # what needs no node first: a request that will be refused never connects out
            name = registry.check_new_cluster(request.user, body["name"], body.get("lab_dir"))
        except RegistryError as exc:
            raise registry_problem(exc) from None
        nodes = probed([NodeCandidate(n["name"], n["address"], n["port"]) for n in body["nodes"]])
        expected = {endpoint_key(n["address"], n["port"]): n["fingerprint"] for n in body["nodes"]}
        try:
            registry.confirm_fingerprints(nodes, expected, user=request.user, action="cluster.create", cluster=name)
            op = registry.create_cluster(request.user, name, nodes, lab_dir=body.get("lab_dir"))
        except RegistryError as exc:
            raise registry_problem(exc) from None
        return accepted(op)


class ClusterImport(ApiView):
    @extend_schema(
        operation_id="clusters_import", request=ImportClusterSerializer,
        responses={201: ImportedClusterSerializer, **problem_responses(409, 422, 503)},
        summary="Add an existing cluster to luci",
        description="The first node given is probed (its fingerprint must match) and asked for its cluster and "
                    "members; every member that answers is probed, and each must offer the fingerprint given "
                    "for it (409 FINGERPRINT_REQUIRED / FINGERPRINT_MISMATCH with `fingerprints`: address -> "
                    "offered, nothing saved). Members whose agent does not answer are left out (`left_out`). "
                    "luci's key must be authorised on the nodes first (`ricci authorize`).")
    def post(self, request: Request) -> Response:
        body = validated(ImportClusterSerializer, request.data)
        given = body["nodes"]
        expected = {endpoint_key(n["address"], n["port"]): n["fingerprint"] for n in given}
        seed = probed([NodeCandidate("seed", given[0]["address"], given[0]["port"])])[0]
        try:
            registry.confirm_fingerprints([seed], expected, user=request.user, action="cluster.add")
        except RegistryError as exc:
            raise registry_problem(exc) from None
        try:
            found = registry.discover(seed.address, seed.port, seed.host_key or "")
        except RegistryError as exc:
            raise Problem(409, "DISCOVERY_FAILED", str(exc)) from None
        picked, left_out = members_to_add(found.nodes, given, only_given=body["only_given"])
        by_name = {n["name"]: n["fingerprint"] for n in given if n.get("name")}
        for member in picked:  # a member given by name only is confirmed under its address
            key = endpoint_key(member.address, member.port)
            if not expected.get(key) and by_name.get(member.name):
                expected[key] = by_name[member.name]
        try:
            registry.confirm_fingerprints(picked, expected, user=request.user, action="cluster.add",
                                          cluster=found.cluster_name)
            cluster = registry.add_existing(request.user, found.cluster_name, picked)
        except RegistryError as exc:
            raise registry_problem(exc) from None
        response = Response(cluster_dict(cluster, cluster_rights(request.user, cluster)) | {"left_out": left_out},
                            status=201)
        response["Location"] = reverse("api:cluster_detail", args=[cluster.name])
        return response


def members_to_add(members: list[NodeCandidate], given: list[dict[str, Any]], *, only_given: bool
                   ) -> tuple[list[NodeCandidate], dict[str, str]]:
    """(the members to save, {member left out: why}); 422 NOT_A_MEMBER when a node given after the first is none
    of the members (the first is only where luci asked)."""
    def matches(member: NodeCandidate, node: dict[str, Any]) -> bool:
        return ((member.address, member.port) == (node["address"], node["port"])
                or (bool(node.get("name")) and member.name == node.get("name")))

    strangers = [n for n in given[1:] if not any(matches(m, n) for m in members)]
    if strangers:
        raise Problem(422, "NOT_A_MEMBER", f"{endpoint_key(strangers[0]['address'], strangers[0]['port'])} is not a "
                      f"member of the cluster (members: {', '.join(m.name for m in members)[:300]})")
    picked, left_out = [], {}
    for member in members:
        if member.error:
            left_out[member.name] = member.error
        elif only_given and not any(matches(member, n) for n in given):
            left_out[member.name] = "not given"
        else:
            picked.append(member)
    if not picked:
        raise Problem(422, "NO_MEMBER_ANSWERED", "no member of the cluster could be added: "
                      + "; ".join(f"{k}: {v}" for k, v in left_out.items())[:500])
    return picked, left_out


class ClusterDetail(ClusterApiView):
    @extend_schema(operation_id="clusters_retrieve", responses={200: ClusterSerializer}, summary="One cluster")
    def get(self, request: Request, cluster: str) -> Response:
        return Response(cluster_dict(self.cluster, self.rights))

    @extend_schema(operation_id="clusters_destroy", responses={204: None},
                   summary="Remove the cluster from luci (its nodes are not changed)")
    def delete(self, request: Request, cluster: str) -> Response:
        registry.remove(request.user, self.cluster)
        return Response(status=204)


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
        if fresh in ("1", "true"):
            return Response(status_body(read_status(list(self.cluster.nodes.all()), self.cluster.name),
                                        self.cluster.name))
        return HttpResponse(stored_status_json(self.cluster), content_type="application/json")


# (cluster id, name) -> (status_at, the encoded answer): a script polling a 1000-service cluster gets the same
# bytes until the watcher saves a new reading (status_at changes with every save, and at least every 5 s),
# without decoding and encoding 140 KB of JSON each time. One entry per cluster; dict assignment is atomic.
_encoded: dict[tuple[int, str], tuple[Any, bytes]] = {}


def stored_status_json(cluster: Cluster) -> bytes:
    """The watcher's last reading as the status answer's JSON (read from the nodes when none is stored yet)."""
    stamp = Cluster.objects.filter(pk=cluster.pk).values_list("status_at", flat=True).first()
    key = (cluster.pk, cluster.name)
    cached = _encoded.get(key)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    row = Cluster.objects.filter(pk=cluster.pk).values_list("status", "status_at").first()
    status, stamp = row if row is not None else ({}, None)
    if not status:
        status = read_status(list(cluster.nodes.all()), cluster.name)
    body = json.dumps(status_body(status, cluster.name), ensure_ascii=False, separators=(",", ":")).encode()
    if stamp is not None and status:
        _encoded[key] = (stamp, body)
    return body


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
    path("clusters/import/", ClusterImport.as_view(), name="cluster_import"),  # before clusters/<cluster>/
    path("clusters/<str:cluster>/", ClusterDetail.as_view(), name="cluster_detail"),
    path("clusters/<str:cluster>/status/", ClusterStatus.as_view(), name="cluster_status"),
]
