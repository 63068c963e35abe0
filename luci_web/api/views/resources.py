"""Global resources (<rm><resources>): list (optionally of one type), add, one resource, replace (PUT), change
(PATCH), remove. A resource is addressed by its type and key — the value of the type's key attribute (name; the
address for ip) — as resources/<type>/<key>/; the key is the rest of the path, so a key holding slashes or dots
(/dev/sdb1, 10.0.0.1) needs no escaping beyond what a URL needs (%, ?, #). Secret attributes are write-only."""
from __future__ import annotations

from typing import Any

from django.urls import path, reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from cluster_conf.model import Resource, view
from luci_web.api.base import ClusterApiView, accepted, with_version
from luci_web.api.problems import Problem, not_found, problem_responses
from luci_web.api.serializers import TaskSerializer
from luci_web.api.serializers_config_items import (
    ResourceCreateSerializer,
    ResourceSerializer,
    ResourceWriteSerializer,
)
from luci_web.clusters.edits.resources import (
    add_resource,
    delete_resource,
    key_attr,
    replace_resource,
    resource_dict,
    update_resource,
)

WRITE_PROBLEMS = problem_responses(409, 412, 422, 503)
DELETE_PROBLEMS = problem_responses(412, 422, 503)


def _row(cluster: str, resource: Resource) -> dict[str, Any]:
    row = resource_dict(resource)
    return row | {"url": reverse("api:resource_detail", args=[cluster, resource.type, row["key"] or "-"])}


class ResourceList(ClusterApiView):
    @extend_schema(operation_id="resources_list",
                   responses={200: ResourceSerializer(many=True), **problem_responses(503)},
                   parameters=[OpenApiParameter("type", str, description="only resources of this type")],
                   summary="The global resources, without secrets (ETag: the configuration version)")
    def get(self, request: Request, cluster: str) -> Response:
        current = self.current()
        wanted = request.query_params.get("type")
        rows = [_row(cluster, r) for r in view(current.conf).resources if wanted is None or r.type == wanted]
        return with_version(Response(rows), current.version)

    @extend_schema(operation_id="resources_create", request=ResourceCreateSerializer,
                   responses={202: TaskSerializer, **WRITE_PROBLEMS}, summary="Add a global resource",
                   description="409 RESOURCE_EXISTS when a resource of the type has the key already.")
    def post(self, request: Request, cluster: str) -> Response:
        body = ResourceCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        rtype, attrs = body.validated_data["type"], body.validated_data["attrs"]
        key = attrs.get(key_attr(rtype))
        if not key:
            raise Problem(400, "BAD_REQUEST", f"attrs: a {rtype} resource needs its {key_attr(rtype)} attribute",
                          errors={"attrs": [f"{key_attr(rtype)} is required"]})
        return accepted(self.change(add_resource(rtype, attrs), action="resource.add", target=f"{rtype}:{key}"))


class ResourceDetail(ClusterApiView):
    @extend_schema(operation_id="resources_retrieve", responses={200: ResourceSerializer, **problem_responses(503)},
                   summary="One global resource, without secrets (ETag: the configuration version)")
    def get(self, request: Request, cluster: str, rtype: str, key: str) -> Response:
        current = self.current()
        found = next((r for r in view(current.conf).resources
                      if r.type == rtype and r.attrs.get(key_attr(rtype)) == key), None)
        if found is None:
            raise not_found(f"no {rtype[:32]} resource {key[:64]!r}")
        return with_version(Response(_row(cluster, found)), current.version)

    def _attrs(self, request: Request, rtype: str, key: str) -> dict[str, str | None]:
        body = ResourceWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        attrs = dict(body.validated_data["attrs"])
        primary = key_attr(rtype)
        if attrs.pop(primary, key) != key:
            raise Problem(400, "BAD_REQUEST", f"attrs: {primary} is the key, not edited: add a new resource instead",
                          errors={"attrs": [f"{primary} differs from the key in the URL"]})
        return attrs

    @extend_schema(operation_id="resources_update", request=ResourceWriteSerializer,
                   responses={202: TaskSerializer, **WRITE_PROBLEMS},
                   summary="Replace a global resource's attributes (its key stays; secrets not named are kept)")
    def put(self, request: Request, cluster: str, rtype: str, key: str) -> Response:
        fn = replace_resource(rtype, key, self._attrs(request, rtype, key))
        return accepted(self.change(fn, action="resource.edit", target=f"{rtype}:{key}"))

    @extend_schema(operation_id="resources_partial_update", request=ResourceWriteSerializer,
                   responses={202: TaskSerializer, **WRITE_PROBLEMS},
                   summary="Set some attributes of a global resource (null removes one)")
    def patch(self, request: Request, cluster: str, rtype: str, key: str) -> Response:
        fn = update_resource(rtype, key, self._attrs(request, rtype, key), [])
        return accepted(self.change(fn, action="resource.edit", target=f"{rtype}:{key}"))

    @extend_schema(operation_id="resources_destroy", request=None, responses={202: TaskSerializer, **DELETE_PROBLEMS},
                   summary="Remove a global resource",
                   description="422 (RESOURCE_REF_UNRESOLVED) while a service still references it.")
    def delete(self, request: Request, cluster: str, rtype: str, key: str) -> Response:
        return accepted(self.change(delete_resource(rtype, key), action="resource.delete", target=f"{rtype}:{key}"))


urlpatterns = [
    path("clusters/<str:cluster>/resources/", ResourceList.as_view(), name="resource_list"),
    path("clusters/<str:cluster>/resources/<str:rtype>/<path:key>/", ResourceDetail.as_view(),
         name="resource_detail"),
]
