"""Failover domains: list, add, one domain, replace (PUT), change (PATCH), remove. Reads carry the configuration
version as their ETag; writes honour If-Match and answer 202 with the push task (luci_web.clusters.configs)."""
from __future__ import annotations

from typing import Any

from django.urls import path, reverse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from cluster_conf.model import FailoverDomain, view
from luci_web.api.base import ClusterApiView, accepted, with_version
from luci_web.api.problems import Problem, not_found, problem_responses
from luci_web.api.serializers import TaskSerializer
from luci_web.api.serializers_config_items import (
    DomainPatchSerializer,
    DomainPutSerializer,
    DomainSerializer,
    DomainWriteSerializer,
)
from luci_web.clusters.edits.domains import (
    Members,
    add_domain,
    delete_domain,
    domain_dict,
    members_are_nodes,
    patch_domain,
    update_domain,
)

WRITE_PROBLEMS = problem_responses(409, 412, 422, 503)
DELETE_PROBLEMS = problem_responses(412, 422, 503)


def _row(cluster: str, domain: FailoverDomain) -> dict[str, Any]:
    return domain_dict(domain) | {"url": reverse("api:domain_detail", args=[cluster, domain.name])}


def _members(data: dict[str, Any]) -> Members | None:
    if "members" not in data:
        return None
    return [(m["node"], m.get("priority")) for m in data["members"]]


def _same_name(data: dict[str, Any], name: str) -> None:
    if data.get("name", name) != name:
        raise Problem(400, "BAD_REQUEST", "name: a domain is renamed by adding a new one and removing this one",
                      errors={"name": ["differs from the name in the URL"]})


class DomainList(ClusterApiView):
    @extend_schema(operation_id="domains_list", responses={200: DomainSerializer(many=True), **problem_responses(503)},
                   summary="The failover domains (ETag: the configuration version)")
    def get(self, request: Request, cluster: str) -> Response:
        current = self.current()
        return with_version(Response([_row(cluster, d) for d in view(current.conf).domains]), current.version)

    @extend_schema(operation_id="domains_create", request=DomainWriteSerializer,
                   responses={202: TaskSerializer, **WRITE_PROBLEMS}, summary="Add a failover domain",
                   description="409 DOMAIN_EXISTS when the name is taken; 422 when a member is not a node.")
    def post(self, request: Request, cluster: str) -> Response:
        body = DomainWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        members = _members(data) or []
        fn = add_domain(data["name"], data["ordered"], data["restricted"], data["nofailback"], members)
        op = self.change(members_are_nodes(members, fn), action="domain.add", target=data["name"],
                         detail={"members": [m for m, _ in members]})
        return accepted(op)


class DomainDetail(ClusterApiView):
    @extend_schema(operation_id="domains_retrieve", responses={200: DomainSerializer, **problem_responses(503)},
                   summary="One failover domain (ETag: the configuration version)")
    def get(self, request: Request, cluster: str, name: str) -> Response:
        current = self.current()
        domain = view(current.conf).domain(name)
        if domain is None:
            raise not_found(f"no failover domain named {name[:64]!r}")
        return with_version(Response(_row(cluster, domain)), current.version)

    @extend_schema(operation_id="domains_update", request=DomainPutSerializer,
                   responses={202: TaskSerializer, **WRITE_PROBLEMS},
                   summary="Replace a failover domain (absent flags are false, absent members none)")
    def put(self, request: Request, cluster: str, name: str) -> Response:
        body = DomainPutSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        _same_name(data, name)
        members = _members(data) or []
        fn = update_domain(name, data["ordered"], data["restricted"], data["nofailback"], members)
        op = self.change(members_are_nodes(members, fn), action="domain.edit", target=name,
                         detail={"members": [m for m, _ in members]})
        return accepted(op)

    @extend_schema(operation_id="domains_partial_update", request=DomainPatchSerializer,
                   responses={202: TaskSerializer, **WRITE_PROBLEMS},
                   summary="Change a failover domain's flags or members (members: the whole new list)")
    def patch(self, request: Request, cluster: str, name: str) -> Response:
        body = DomainPatchSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        _same_name(data, name)
        members = _members(data)
        fn = patch_domain(name, ordered=data.get("ordered"), restricted=data.get("restricted"),
                          nofailback=data.get("nofailback"), members=members)
        detail = {"members": [m for m, _ in members]} if members is not None else {}
        op = self.change(members_are_nodes(members or [], fn), action="domain.edit", target=name, detail=detail)
        return accepted(op)

    @extend_schema(operation_id="domains_destroy", request=None, responses={202: TaskSerializer, **DELETE_PROBLEMS},
                   summary="Remove a failover domain (services naming it may then run on any node)")
    def delete(self, request: Request, cluster: str, name: str) -> Response:
        return accepted(self.change(delete_domain(name), action="domain.delete", target=name))


urlpatterns = [
    path("clusters/<str:cluster>/domains/", DomainList.as_view(), name="domain_list"),
    path("clusters/<str:cluster>/domains/<str:name>/", DomainDetail.as_view(), name="domain_detail"),
]
